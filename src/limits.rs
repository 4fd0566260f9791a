//! Rate limits for the endpoints that take guesses (login, signup, refresh and password
//! changes) and for the mail an account makes the server send. Token buckets in memory; a
//! refusal says when to come back.
//!
//! Buckets are keyed by a typed [`Key`], so an address and an account can never share one (a
//! login for the "e-mail" `10.0.0.7` charges that account, not the client at 10.0.0.7). Guesses
//! at one account are counted per account *and* address: someone guessing from elsewhere uses
//! up their own bucket, not the owner's, and only a much larger per-account ceiling is shared.
//! IPv6 clients are grouped by /64, the block one host usually holds.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// A bucket holds `burst` tries and regains one every `every`.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub burst: u32,
    pub every: Duration,
}

/// Logins (right or wrong) from one address, whatever the account.
pub const LOGIN_PER_ADDRESS: Rule = Rule {
    burst: 20,
    every: Duration::from_secs(3),
};
/// Logins to one account from one address.
pub const LOGIN_PER_ACCOUNT_ADDRESS: Rule = Rule {
    burst: 10,
    every: Duration::from_secs(6),
};
/// Logins to one account from everywhere together: the ceiling a distributed guesser meets.
/// One address alone (10, then one every 6 s) can never drain it (it regains one every 3 s).
pub const LOGIN_PER_ACCOUNT: Rule = Rule {
    burst: 100,
    every: Duration::from_secs(3),
};
pub const SIGNUP_PER_ADDRESS: Rule = Rule {
    burst: 10,
    every: Duration::from_secs(30),
};
pub const REFRESH_PER_ADDRESS: Rule = Rule {
    burst: 60,
    every: Duration::from_secs(1),
};
pub const REFRESH_PER_ACCOUNT: Rule = Rule {
    burst: 20,
    every: Duration::from_secs(3),
};

/// Invitation mails one account makes the server send: on an open server anyone may own a
/// workspace, and the relay must not become their way to mail strangers. Past it the invitation
/// is still made, with its link, and not mailed.
pub const MAIL_PER_ACCOUNT: Rule = Rule {
    burst: 20,
    every: Duration::from_secs(60),
};

/// Buckets idle this long are full again and are forgotten, so the map cannot grow forever.
const FORGET_AFTER: Duration = Duration::from_secs(3600);
/// Past this many buckets, full ones are swept out before a new one is added.
const SWEEP_AT: usize = 100_000;

/// What is being limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Login,
    Signup,
    Refresh,
    /// Changing one's password: it checks the current one, so it is a guess too.
    Password,
    /// Mail sent on an account's behalf (invitation links).
    Mail,
}

/// Whose tries a bucket counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    Address(Action, IpAddr),
    /// An account: its id, or for logins the address typed (which may match no account).
    Account(Action, String),
    AccountAddress(Action, String, IpAddr),
}

impl Key {
    pub fn action(&self) -> Action {
        match self {
            Key::Address(a, _) | Key::Account(a, _) | Key::AccountAddress(a, _, _) => *a,
        }
    }

    pub fn address(action: Action, ip: IpAddr) -> Key {
        Key::Address(action, group(ip))
    }

    pub fn account(action: Action, account: &str) -> Key {
        Key::Account(action, account.to_string())
    }

    pub fn account_address(action: Action, account: &str, ip: IpAddr) -> Key {
        Key::AccountAddress(action, account.to_string(), group(ip))
    }
}

/// The address a client is counted under: IPv4 as is (and IPv4-mapped IPv6 as IPv4), IPv6 by
/// its /64.
fn group(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(prefix.into())
            }
        },
    }
}

#[derive(Default)]
pub struct Limiter {
    buckets: Mutex<HashMap<Key, Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Limiter {
    /// Takes one try from every bucket in `checks`, or none of them: a refusal by one bucket
    /// leaves the others as they were, so being refused never costs a try elsewhere.
    pub fn check_all(&self, checks: &[(Key, Rule)]) -> Result<()> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > SWEEP_AT {
            buckets.retain(|_, b| now.duration_since(b.at) < FORGET_AFTER);
        }
        let mut wait: Option<f64> = None;
        for (key, rule) in checks {
            let tokens = buckets
                .get(key)
                .map_or(f64::from(rule.burst), |b| refilled(b, *rule, now));
            if tokens < 1.0 {
                let w = (1.0 - tokens) * rule.every.as_secs_f64();
                wait = Some(wait.map_or(w, |old: f64| old.max(w)));
            }
        }
        if let (Some(_), Some((key, _))) = (wait, checks.first()) {
            crate::telemetry::note_refusal(key.action());
        }
        if let Some(w) = wait {
            return Err(Error::TooManyRequests {
                retry_after: w.ceil().max(1.0) as u64,
            });
        }
        for (key, rule) in checks {
            let bucket = buckets.entry(key.clone()).or_insert(Bucket {
                tokens: f64::from(rule.burst),
                at: now,
            });
            bucket.tokens = refilled(bucket, *rule, now) - 1.0;
            bucket.at = now;
        }
        Ok(())
    }

    /// Takes one try from the bucket `key` under `rule`, or refuses with a 429.
    pub fn check(&self, key: Key, rule: Rule) -> Result<()> {
        self.check_all(&[(key, rule)])
    }
}

fn refilled(bucket: &Bucket, rule: Rule, now: Instant) -> f64 {
    let regained = now.duration_since(bucket.at).as_secs_f64() / rule.every.as_secs_f64();
    (bucket.tokens + regained).min(f64::from(rule.burst))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: Rule = Rule {
        burst: 3,
        every: Duration::from_secs(10),
    };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_burst_passes_then_the_next_try_waits() {
        let limiter = Limiter::default();
        let key = Key::address(Action::Login, ip("10.0.0.1"));
        for _ in 0..3 {
            limiter.check(key.clone(), RULE).unwrap();
        }
        match limiter.check(key, RULE) {
            Err(Error::TooManyRequests { retry_after }) => assert!((1..=10).contains(&retry_after)),
            other => panic!("expected 429, got {other:?}"),
        }
        limiter
            .check(Key::address(Action::Login, ip("10.0.0.2")), RULE)
            .unwrap();
    }

    #[test]
    fn an_account_named_like_an_address_has_its_own_bucket() {
        let limiter = Limiter::default();
        for _ in 0..3 {
            limiter
                .check(Key::account(Action::Login, "10.0.0.7"), RULE)
                .unwrap();
        }
        limiter
            .check(Key::address(Action::Login, ip("10.0.0.7")), RULE)
            .unwrap();
    }

    #[test]
    fn ipv6_counts_by_64_and_mapped_ipv4_as_ipv4() {
        let limiter = Limiter::default();
        for host in ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::9"] {
            limiter
                .check(Key::address(Action::Login, ip(host)), RULE)
                .unwrap();
        }
        assert!(
            limiter
                .check(Key::address(Action::Login, ip("2001:db8:1:2::77")), RULE)
                .is_err()
        );
        limiter
            .check(Key::address(Action::Login, ip("2001:db8:1:3::1")), RULE)
            .unwrap();
        assert_eq!(
            Key::address(Action::Login, ip("::ffff:10.0.0.1")),
            Key::address(Action::Login, ip("10.0.0.1"))
        );
    }

    #[test]
    fn a_refusal_takes_nothing_from_the_other_buckets() {
        let limiter = Limiter::default();
        let tight = Rule {
            burst: 1,
            every: Duration::from_secs(60),
        };
        let a = Key::account(Action::Refresh, "u1");
        let b = Key::address(Action::Refresh, ip("10.0.0.1"));
        limiter.check(b.clone(), tight).unwrap();
        assert!(limiter.check_all(&[(a.clone(), RULE), (b, tight)]).is_err());
        for _ in 0..3 {
            limiter.check(a.clone(), RULE).unwrap();
        }
    }
}
