//! The retry policy: a plain value that judges a failure and picks the delay.
//!
//! It does not sleep and counts nothing (STYLE.md §4): the loops in
//! [`super::client`] and [`super::pipeline`] own the attempt number and the
//! clock, and ask [`RetryPolicy::decide`] after each failure. Delays are
//! exponential with jitter, computed by `backon`'s `ExponentialBuilder`.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use super::error::{Class, Classify};

/// What to do after a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Try again once this much time has passed.
    RetryAfter(Duration),
    /// Stop: the failure is permanent, the attempts are used up, or the delay
    /// would not leave `reserve` before the deadline.
    GiveUp,
}

/// How hard to retry transient failures.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Failed attempts in a row after which we give up (the first attempt counts).
    pub max_attempts: u32,
    /// Delay before the first retry of a transient failure.
    pub initial_delay: Duration,
    /// Delay before the first retry of RESOURCE_EXHAUSTED: quota recovers in seconds, not
    /// milliseconds, and hammering it only extends the throttling (fact sheet §6, §7.5).
    pub throttled_initial_delay: Duration,
    /// Growth of the delay per attempt.
    pub factor: f32,
    /// No single delay exceeds this (before jitter).
    pub max_delay: Duration,
    /// Adds a random 0–100 % to each delay so that many writers do not retry in step.
    pub jitter: bool,
    /// Time kept free before the deadline: the caller needs it to spill what did not land.
    pub reserve: Duration,
}

impl Default for RetryPolicy {
    /// 100 ms initial delay as the GAPIC service config for AppendRows (§1.4); ×2 up to
    /// 10 s; 6 attempts, between Go's 4 and Java's samples' 5 plus the first attempt.
    /// Throttling starts at 1 s like Java's samples' RESOURCE_EXHAUSTED backoff order.
    fn default() -> Self {
        Self {
            max_attempts: 6,
            initial_delay: Duration::from_millis(100),
            throttled_initial_delay: Duration::from_secs(1),
            factor: 2.0,
            max_delay: Duration::from_secs(10),
            jitter: true,
            reserve: Duration::ZERO,
        }
    }
}

impl RetryPolicy {
    /// Retries nothing: the first failure is final.
    pub fn none() -> Self {
        Self { max_attempts: 1, ..Self::default() }
    }

    /// `attempt` is the number of failed attempts so far (1 after the first failure);
    /// `time_left` is what remains until the caller's deadline.
    pub fn decide(&self, err: &impl Classify, attempt: u32, time_left: Duration) -> Decision {
        let initial = match err.class() {
            Class::Transient => self.initial_delay,
            Class::Throttled => self.throttled_initial_delay,
            Class::AlreadyWritten | Class::Permanent => return Decision::GiveUp,
        };
        if attempt >= self.max_attempts {
            return Decision::GiveUp;
        }
        let delay = self.delay(initial, attempt);
        if delay.saturating_add(self.reserve) > time_left {
            Decision::GiveUp
        } else {
            Decision::RetryAfter(delay)
        }
    }

    /// The delay before retry number `attempt` (1-based), from backon's exponential backoff.
    fn delay(&self, initial: Duration, attempt: u32) -> Duration {
        let mut builder = ExponentialBuilder::default()
            .with_min_delay(initial)
            .with_max_delay(self.max_delay.max(initial))
            .with_factor(self.factor.max(1.0))
            .without_max_times();
        if self.jitter {
            builder = builder.with_jitter().with_jitter_seed(rand::random());
        }
        let nth = usize::try_from(attempt.saturating_sub(1)).unwrap_or(usize::MAX);
        let delay = builder.build().nth(nth).unwrap_or(self.max_delay);
        // backon multiplies in f32; whole milliseconds hide its rounding noise.
        Duration::from_millis(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_case::test_case;

    struct E(Class);
    impl Classify for E {
        fn class(&self) -> Class {
            self.0
        }
    }

    fn fixed() -> RetryPolicy {
        RetryPolicy { jitter: false, ..RetryPolicy::default() }
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test_case(Class::Transient, 1, HOUR => Decision::RetryAfter(Duration::from_millis(100)); "first transient")]
    #[test_case(Class::Transient, 2, HOUR => Decision::RetryAfter(Duration::from_millis(200)); "doubles")]
    #[test_case(Class::Transient, 4, HOUR => Decision::RetryAfter(Duration::from_millis(800)); "fourth")]
    #[test_case(Class::Transient, 6, HOUR => Decision::GiveUp; "attempts used up")]
    #[test_case(Class::Throttled, 1, HOUR => Decision::RetryAfter(Duration::from_secs(1)); "throttled starts longer")]
    #[test_case(Class::Throttled, 5, HOUR => Decision::RetryAfter(Duration::from_secs(10)); "capped at max delay")]
    #[test_case(Class::Permanent, 1, HOUR => Decision::GiveUp; "permanent")]
    #[test_case(Class::AlreadyWritten, 1, HOUR => Decision::GiveUp; "already written is not retried")]
    #[test_case(Class::Transient, 1, Duration::from_millis(99) => Decision::GiveUp; "delay beyond deadline")]
    #[test_case(Class::Transient, 1, Duration::from_millis(100) => Decision::RetryAfter(Duration::from_millis(100)); "delay exactly fits")]
    fn decide(class: Class, attempt: u32, time_left: Duration) -> Decision {
        fixed().decide(&E(class), attempt, time_left)
    }

    #[test]
    fn reserve_is_kept_free() {
        let p = RetryPolicy { reserve: Duration::from_secs(2), ..fixed() };
        assert_eq!(
            p.decide(&E(Class::Transient), 1, Duration::from_millis(2050)),
            Decision::GiveUp
        );
        assert_eq!(
            p.decide(&E(Class::Transient), 1, Duration::from_millis(2100)),
            Decision::RetryAfter(Duration::from_millis(100))
        );
    }

    #[test]
    fn jitter_stays_within_one_extra_delay() {
        let p = RetryPolicy::default();
        for attempt in 1..=5 {
            let base = fixed().delay(p.initial_delay, attempt);
            for _ in 0..50 {
                let Decision::RetryAfter(d) = p.decide(&E(Class::Transient), attempt, HOUR) else {
                    panic!("expected a retry");
                };
                assert!(d >= base && d < base * 2, "attempt {attempt}: {d:?} vs {base:?}");
            }
        }
    }

    #[test]
    fn none_never_retries() {
        assert_eq!(RetryPolicy::none().decide(&E(Class::Transient), 1, HOUR), Decision::GiveUp);
    }
}
