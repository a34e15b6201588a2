//! The one retry policy: BigQuery (appends and unary RPCs), the S3 state
//! store and the SQS dead-letter queue retry transient failures the same way.
//!
//! A [`RetryPolicy`] is a plain value (STYLE.md §4): it classifies nothing
//! itself (callers pass anything [`Classify`]), holds no counters and never
//! sleeps. The loop owns an [`Attempts`] and the clock, and asks
//! [`RetryPolicy::decide`] after each failure.
//!
//! Delays grow exponentially with jitter (backon's `ExponentialBuilder`).
//! What bounds a run of retries is **time**, not an attempt count: retrying
//! stops once the next delay would end past `budget` (`RETRY_BUDGET_MS`)
//! after the first failure, or past the caller's deadline. Within an
//! invocation ([`within_invocation`]) the budget starts at the invocation's
//! first failure of any client, so a BigQuery that refuses everything costs
//! one budget in all — not one per request, per round, per rotated stream or
//! per state write — and the rest is spilled.

use std::cell::Cell;
use std::future::Future;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::time::Instant;

/// How a failure may be retried. Implemented beside each client's error
/// type, with one comment per case saying why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Retry after a short backoff (connection reset, UNAVAILABLE, a 409 from S3…).
    Transient,
    /// Quota: retry, starting with a longer backoff.
    Throttled,
    /// An offset stream says a retry of ours already landed (ALREADY_EXISTS).
    AlreadyWritten,
    /// Retrying cannot help.
    Permanent,
}

/// Anything a retry decision can be made about.
pub trait Classify {
    fn class(&self) -> Class;
}

/// What to do after a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Try again once this much time has passed.
    RetryAfter(Duration),
    /// Stop: the failure is permanent, the budget or the attempts are used
    /// up, or the delay would end past the deadline.
    GiveUp,
}

/// How hard to retry transient failures.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Total time a run of retries may take, from its first failure
    /// (`RETRY_BUDGET_MS`; within an invocation, from the invocation's
    /// first failure).
    pub budget: Duration,
    /// A cap on failed attempts in a row (the first attempt counts);
    /// `u32::MAX` when only time bounds the retries.
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
    /// Time kept free before the caller's deadline.
    pub reserve: Duration,
}

/// `RETRY_BUDGET_MS`'s default.
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(30);

impl Default for RetryPolicy {
    /// 100 ms initial delay as the GAPIC service config for AppendRows (§1.4); ×2 up to
    /// 10 s; throttling starts at 1 s like Java's samples' RESOURCE_EXHAUSTED backoff;
    /// 30 s in all.
    fn default() -> Self {
        Self::with_budget(DEFAULT_BUDGET)
    }
}

impl RetryPolicy {
    /// The default backoff, bounded by `budget` only.
    pub fn with_budget(budget: Duration) -> Self {
        Self {
            budget,
            max_attempts: u32::MAX,
            initial_delay: Duration::from_millis(100),
            throttled_initial_delay: Duration::from_secs(1),
            factor: 2.0,
            max_delay: Duration::from_secs(10),
            jitter: true,
            reserve: Duration::ZERO,
        }
    }

    /// Retries nothing: the first failure is final.
    pub fn none() -> Self {
        Self { max_attempts: 1, budget: Duration::ZERO, ..Self::default() }
    }

    /// Records the failure in `attempts` and decides. `deadline` is the
    /// caller's own (an invocation's working deadline, an RPC's).
    pub fn decide(
        &self,
        err: &impl Classify,
        attempts: &mut Attempts,
        deadline: Instant,
    ) -> Decision {
        let now = Instant::now();
        let (first, budget) = attempts.fail(now, self.budget);
        let initial = match err.class() {
            Class::Transient => self.initial_delay,
            Class::Throttled => self.throttled_initial_delay,
            Class::AlreadyWritten | Class::Permanent => return Decision::GiveUp,
        };
        if attempts.count >= self.max_attempts {
            return Decision::GiveUp;
        }
        let delay = self.delay(initial, attempts.count);
        let budget_end = first.checked_add(budget).unwrap_or(deadline);
        let end = budget_end.min(deadline.checked_sub(self.reserve).unwrap_or(now));
        match now.checked_add(delay) {
            Some(at) if at <= end => Decision::RetryAfter(delay),
            _ => Decision::GiveUp,
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

    /// Runs `op` until it succeeds, fails for good (`class` says
    /// [`Class::Permanent`]) or the policy gives up; sleeps between attempts.
    ///
    /// # Errors
    /// The last failure.
    pub async fn run<T, E, F, Fut>(
        &self,
        deadline: Instant,
        class: impl Fn(&E) -> Class,
        mut op: F,
    ) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut attempts = Attempts::default();
        loop {
            let err = match op().await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            match self.decide(&Classified(class(&err)), &mut attempts, deadline) {
                Decision::RetryAfter(delay) => tokio::time::sleep(delay).await,
                Decision::GiveUp => return Err(err),
            }
        }
    }
}

struct Classified(Class);

impl Classify for Classified {
    fn class(&self) -> Class {
        self.0
    }
}

/// One loop's failures in a row; owned by the loop, reset by a success.
#[derive(Clone, Debug, Default)]
pub struct Attempts {
    /// Failed attempts in a row.
    pub count: u32,
    first_failure: Option<Instant>,
}

impl Attempts {
    /// A success: the next failure starts a new run (within an invocation
    /// the invocation's budget still counts from its first failure).
    pub fn reset(&mut self) {
        self.count = 0;
        self.first_failure = None;
    }

    /// Counts a failure at `now`; returns when the budget started and how
    /// long it is: the invocation's, within one, else this loop's own.
    fn fail(&mut self, now: Instant, own_budget: Duration) -> (Instant, Duration) {
        self.count = self.count.saturating_add(1);
        let own = *self.first_failure.get_or_insert(now);
        INVOCATION
            .try_with(|inv| {
                let first = inv.first_failure.get().unwrap_or(now);
                inv.first_failure.set(Some(first));
                (first.min(own), inv.budget)
            })
            .unwrap_or((own, own_budget))
    }
}

/// One invocation's retry budget, shared by every client it calls.
struct InvocationBudget {
    budget: Duration,
    first_failure: Cell<Option<Instant>>,
}

tokio::task_local! {
    static INVOCATION: InvocationBudget;
}

/// Runs `fut` (one invocation's delivery of a shard) with one retry budget
/// (`RETRY_BUDGET_MS`) for every client it calls — BigQuery, the state
/// store, the spillover, the dead-letter queue, whatever policy each was
/// built with: the budget starts at the first failure of any of them.
pub async fn within_invocation<F: Future>(budget: Duration, fut: F) -> F::Output {
    INVOCATION.scope(InvocationBudget { budget, first_failure: Cell::new(None) }, fut).await
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
        RetryPolicy { jitter: false, budget: Duration::from_secs(3600), ..RetryPolicy::default() }
    }

    const HOUR: Duration = Duration::from_secs(3600);

    /// The decision after `failures` failures in a row, `time_left` before the deadline.
    fn after(p: &RetryPolicy, class: Class, failures: u32, time_left: Duration) -> Decision {
        let mut attempts = Attempts::default();
        let deadline = Instant::now() + time_left;
        let mut d = Decision::GiveUp;
        for _ in 0..failures {
            d = p.decide(&E(class), &mut attempts, deadline);
        }
        d
    }

    #[test_case(Class::Transient, 1, HOUR => Decision::RetryAfter(Duration::from_millis(100)); "first transient")]
    #[test_case(Class::Transient, 2, HOUR => Decision::RetryAfter(Duration::from_millis(200)); "doubles")]
    #[test_case(Class::Transient, 4, HOUR => Decision::RetryAfter(Duration::from_millis(800)); "fourth")]
    #[test_case(Class::Throttled, 1, HOUR => Decision::RetryAfter(Duration::from_secs(1)); "throttled starts longer")]
    #[test_case(Class::Throttled, 5, HOUR => Decision::RetryAfter(Duration::from_secs(10)); "capped at max delay")]
    #[test_case(Class::Permanent, 1, HOUR => Decision::GiveUp; "permanent")]
    #[test_case(Class::AlreadyWritten, 1, HOUR => Decision::GiveUp; "already written is not retried")]
    #[test_case(Class::Transient, 1, Duration::from_millis(99) => Decision::GiveUp; "delay beyond deadline")]
    #[test_case(Class::Transient, 1, Duration::from_millis(100) => Decision::RetryAfter(Duration::from_millis(100)); "delay exactly fits")]
    #[tokio::test(start_paused = true)]
    async fn decide(class: Class, failures: u32, time_left: Duration) -> Decision {
        after(&fixed(), class, failures, time_left)
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_cap_when_set() {
        let p = RetryPolicy { max_attempts: 3, ..fixed() };
        assert_eq!(after(&p, Class::Transient, 2, HOUR), Decision::RetryAfter(p.initial_delay * 2));
        assert_eq!(after(&p, Class::Transient, 3, HOUR), Decision::GiveUp);
    }

    #[tokio::test(start_paused = true)]
    async fn reserve_is_kept_free() {
        let p = RetryPolicy { reserve: Duration::from_secs(2), ..fixed() };
        assert_eq!(after(&p, Class::Transient, 1, Duration::from_millis(2050)), Decision::GiveUp);
        assert_eq!(
            after(&p, Class::Transient, 1, Duration::from_millis(2100)),
            Decision::RetryAfter(Duration::from_millis(100))
        );
    }

    /// The budget bounds the time from the first failure, whatever the
    /// number of attempts and however long each attempt itself took.
    #[tokio::test(start_paused = true)]
    async fn the_budget_bounds_total_time_from_the_first_failure() {
        let p = RetryPolicy { budget: Duration::from_secs(5), ..fixed() };
        let deadline = Instant::now() + HOUR;
        let start = Instant::now();
        let mut attempts = Attempts::default();
        while let Decision::RetryAfter(d) = p.decide(&E(Class::Throttled), &mut attempts, deadline)
        {
            tokio::time::sleep(d).await;
            // Each attempt also takes a while to fail.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let spent = start.elapsed();
        assert!(spent <= Duration::from_secs(5), "{spent:?}");
        // 1 s + 0.3 s, then 2 s + 0.3 s: the 4 s delay would end past 5 s.
        assert_eq!(attempts.count, 3);
    }

    /// With jitter a delay may double; the budget still holds.
    #[tokio::test(start_paused = true)]
    async fn jitter_never_overruns_the_budget() {
        let p = RetryPolicy::with_budget(Duration::from_secs(30));
        for _ in 0..20 {
            let start = Instant::now();
            let mut attempts = Attempts::default();
            while let Decision::RetryAfter(d) =
                p.decide(&E(Class::Throttled), &mut attempts, start + HOUR)
            {
                tokio::time::sleep(d).await;
            }
            assert!(start.elapsed() <= Duration::from_secs(30), "{:?}", start.elapsed());
        }
    }

    /// Within an invocation, a second loop (another request, another round,
    /// another client with a policy of its own) inherits the budget already
    /// spent, and the invocation's budget is the one that counts.
    #[tokio::test(start_paused = true)]
    async fn one_budget_per_invocation() {
        let p = RetryPolicy { budget: Duration::from_secs(500), ..fixed() };
        within_invocation(Duration::from_secs(5), async {
            let deadline = Instant::now() + HOUR;
            let mut first = Attempts::default();
            assert!(matches!(
                p.decide(&E(Class::Transient), &mut first, deadline),
                Decision::RetryAfter(_)
            ));
            tokio::time::sleep(Duration::from_millis(4950)).await;
            let mut second = Attempts::default();
            assert_eq!(p.decide(&E(Class::Transient), &mut second, deadline), Decision::GiveUp);
        })
        .await;
        // Outside an invocation each loop has its own.
        let p = RetryPolicy { budget: Duration::from_secs(5), ..fixed() };
        let mut fresh = Attempts::default();
        assert!(matches!(
            p.decide(&E(Class::Transient), &mut fresh, Instant::now() + HOUR),
            Decision::RetryAfter(_)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn run_retries_until_success_or_give_up() {
        let p = RetryPolicy { budget: Duration::from_secs(1), ..fixed() };
        let mut calls = 0;
        let got: Result<u32, &str> = p
            .run(
                Instant::now() + HOUR,
                |_| Class::Transient,
                || {
                    calls += 1;
                    let n = calls;
                    async move { if n < 3 { Err("busy") } else { Ok(n) } }
                },
            )
            .await;
        assert_eq!(got, Ok(3));
        let mut calls = 0;
        let got: Result<(), &str> = p
            .run(
                Instant::now() + HOUR,
                |_| Class::Permanent,
                || {
                    calls += 1;
                    async { Err("no") }
                },
            )
            .await;
        assert_eq!((got, calls), (Err("no"), 1));
    }

    #[tokio::test(start_paused = true)]
    async fn none_never_retries() {
        assert_eq!(after(&RetryPolicy::none(), Class::Transient, 1, HOUR), Decision::GiveUp);
    }
}
