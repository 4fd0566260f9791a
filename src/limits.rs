//! Rate limits for the endpoints that take guesses: login, signup and refresh. Token buckets in
//! memory, keyed by client address and by account; a refusal says when to come back.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// A bucket holds `burst` tries and regains one every `every`.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub burst: u32,
    pub every: Duration,
}

pub const LOGIN_PER_ADDRESS: Rule = Rule {
    burst: 20,
    every: Duration::from_secs(3),
};
pub const LOGIN_PER_ACCOUNT: Rule = Rule {
    burst: 10,
    every: Duration::from_secs(6),
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

/// Buckets idle this long are full again and are forgotten, so the map cannot grow forever.
const FORGET_AFTER: Duration = Duration::from_secs(3600);

#[derive(Default)]
pub struct Limiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Limiter {
    /// Takes one try from the bucket `key` under `rule`, or refuses with a 429.
    pub fn check(&self, key: String, rule: Rule) -> Result<()> {
        let now = Instant::now();
        let mut buckets = self
            .buckets
            .lock()
            .map_err(|_| Error::Internal("rate limiter poisoned".into()))?;
        if buckets.len() > 100_000 {
            buckets.retain(|_, b| now.duration_since(b.at) < FORGET_AFTER);
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: f64::from(rule.burst),
            at: now,
        });
        let regained = now.duration_since(bucket.at).as_secs_f64() / rule.every.as_secs_f64();
        bucket.tokens = (bucket.tokens + regained).min(f64::from(rule.burst));
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) * rule.every.as_secs_f64();
            Err(Error::TooManyRequests {
                retry_after: wait.ceil().max(1.0) as u64,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_next_try_waits() {
        let limiter = Limiter::default();
        let rule = Rule {
            burst: 3,
            every: Duration::from_secs(10),
        };
        for _ in 0..3 {
            limiter.check("ip:1".into(), rule).unwrap();
        }
        match limiter.check("ip:1".into(), rule) {
            Err(Error::TooManyRequests { retry_after }) => assert!((1..=10).contains(&retry_after)),
            other => panic!("expected 429, got {other:?}"),
        }
        // Other keys have their own buckets.
        limiter.check("ip:2".into(), rule).unwrap();
    }
}
