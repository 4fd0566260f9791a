//! A run's state (running, finished, failed, crashed), derived whenever it is read and never
//! stored as such. [`Activity::state`] is the rule; `store::experiments::state_sql` is the same
//! rule in SQL for the `state:` filter, and a unit test there checks that the two agree.
//!
//! What is stored: when the run was created, when its last point and its last heartbeat
//! arrived, and, if a client ended it, how (`end_state`) and when (`ended_at`).

use serde::Serialize;

/// A run whose last activity is older than this is no longer running: ten missed heartbeats of
/// our SDK (one every 30 s).
pub const STALE_MS: i64 = 5 * 60 * 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// Active within the last 5 minutes and not ended.
    Running,
    /// Ended by its client, or quiet for 5 minutes after a client that never sent heartbeats.
    Finished,
    /// Ended by its client as failed.
    Failed,
    /// Sent heartbeats, then went quiet for 5 minutes without ending.
    Crashed,
}

impl RunState {
    pub const ALL: [RunState; 4] = [
        RunState::Running,
        RunState::Finished,
        RunState::Failed,
        RunState::Crashed,
    ];

    /// The word in JSON, in SQL and in the query language.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Finished => "finished",
            RunState::Failed => "failed",
            RunState::Crashed => "crashed",
        }
    }

    /// A state word, case-insensitive.
    pub fn parse(word: &str) -> Option<RunState> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(word))
    }
}

/// How a client ended a run (the `end_state` column): `failed` after an exception.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EndState {
    Finished,
    Failed,
}

impl EndState {
    pub fn as_str(self) -> &'static str {
        match self {
            EndState::Finished => "finished",
            EndState::Failed => "failed",
        }
    }

    pub fn parse(word: &str) -> Option<EndState> {
        match word {
            "finished" => Some(EndState::Finished),
            "failed" => Some(EndState::Failed),
            _ => None,
        }
    }
}

/// What a run's state is derived from; times are unix milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Activity {
    pub created_at: i64,
    /// When its last point arrived, if any.
    pub last_point_at: Option<i64>,
    /// Its client's last heartbeat; None for a client that never sent one (tora==0.0.12).
    pub heartbeat_at: Option<i64>,
    /// Set, with `end_state`, when its client ended it.
    pub ended_at: Option<i64>,
    pub end_state: Option<EndState>,
}

impl Activity {
    /// The last sign of life: creation, the last point or the last heartbeat.
    pub fn active_at(&self) -> i64 {
        self.created_at
            .max(self.last_point_at.unwrap_or(i64::MIN))
            .max(self.heartbeat_at.unwrap_or(i64::MIN))
    }

    /// The rule, in the order `state_sql` applies it.
    pub fn state(&self, now: i64) -> RunState {
        match self.end_state {
            Some(EndState::Finished) => RunState::Finished,
            Some(EndState::Failed) => RunState::Failed,
            None if now - self.active_at() <= STALE_MS => RunState::Running,
            None if self.heartbeat_at.is_none() => RunState::Finished,
            None => RunState::Crashed,
        }
    }

    /// When it ended: as its client said, or, for a run found finished or crashed by going
    /// quiet, its last activity. None while running.
    pub fn ended_at(&self, now: i64) -> Option<i64> {
        match (self.end_state, self.ended_at) {
            (Some(_), Some(at)) => Some(at),
            _ => match self.state(now) {
                RunState::Running => None,
                _ => Some(self.active_at()),
            },
        }
    }

    /// From creation to its end, or to `now` while running; never negative.
    pub fn duration_ms(&self, now: i64) -> i64 {
        (self.ended_at(now).unwrap_or(now) - self.created_at).max(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_800_000_000_000;

    fn quiet() -> Activity {
        Activity {
            created_at: T0,
            last_point_at: None,
            heartbeat_at: None,
            ended_at: None,
            end_state: None,
        }
    }

    #[test]
    fn the_rule_in_its_order() {
        let fresh = quiet();
        assert_eq!(fresh.state(T0), RunState::Running);
        assert_eq!(
            fresh.state(T0 + STALE_MS),
            RunState::Running,
            "5 min is still running"
        );
        assert_eq!(fresh.ended_at(T0 + 1000), None);
        assert_eq!(fresh.duration_ms(T0 + 1000), 1000);

        // A 0.0.12 client: no heartbeats; quiet for 5 minutes after its last point = finished.
        let old = Activity {
            last_point_at: Some(T0 + 60_000),
            ..quiet()
        };
        let later = T0 + 60_000 + STALE_MS + 1;
        assert_eq!(old.state(later), RunState::Finished);
        assert_eq!(old.ended_at(later), Some(T0 + 60_000));
        assert_eq!(old.duration_ms(later), 60_000);

        // Heartbeats, then silence: crashed, ended at the last heartbeat.
        let gone = Activity {
            heartbeat_at: Some(T0 + 120_000),
            ..old
        };
        assert_eq!(gone.state(T0 + 120_000 + STALE_MS), RunState::Running);
        assert_eq!(gone.state(T0 + 120_001 + STALE_MS), RunState::Crashed);
        assert_eq!(gone.ended_at(T0 + 10 * STALE_MS), Some(T0 + 120_000));

        // What the client said wins, however recent or old the activity.
        for (end, state) in [
            (EndState::Finished, RunState::Finished),
            (EndState::Failed, RunState::Failed),
        ] {
            let ended = Activity {
                ended_at: Some(T0 + 5_000),
                end_state: Some(end),
                ..gone
            };
            assert_eq!(ended.state(T0 + 5_000), state);
            assert_eq!(ended.state(T0 + 100 * STALE_MS), state);
            assert_eq!(ended.ended_at(T0 + 100 * STALE_MS), Some(T0 + 5_000));
            assert_eq!(ended.duration_ms(T0 + 100 * STALE_MS), 5_000);
        }
    }

    #[test]
    fn state_words_parse_case_insensitively_and_only_those() {
        for s in RunState::ALL {
            assert_eq!(RunState::parse(s.as_str()), Some(s));
            assert_eq!(RunState::parse(&s.as_str().to_uppercase()), Some(s));
        }
        assert_eq!(RunState::parse("live"), None);
        assert_eq!(EndState::parse("failed"), Some(EndState::Failed));
        assert_eq!(EndState::parse("crashed"), None);
    }
}
