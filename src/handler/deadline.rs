//! The invocation's working deadline: Lambda's deadline minus
//! `DEADLINE_MARGIN_MS`, as a monotonic [`Instant`].
//!
//! Past it, delivery stops appending and spills instead, so the spill and
//! the state write finish before Lambda kills the process (DESIGN.md,
//! "Failure routing": "the invocation nears its deadline").

use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// `deadline_ms`: Lambda's `Lambda-Runtime-Deadline-Ms` (epoch ms; 0 when
/// there is no Lambda context, e.g. `invoke` — then `fallback` from now).
/// `now`/`now_wall` are the same moment on both clocks. Never earlier than
/// `now`: a deadline already past means "spill at once", not an underflow.
pub fn working_deadline(
    deadline_ms: u64,
    margin: Duration,
    fallback: Duration,
    now: Instant,
    now_wall: SystemTime,
) -> Instant {
    let remaining = if deadline_ms == 0 {
        fallback
    } else {
        let deadline = UNIX_EPOCH + Duration::from_millis(deadline_ms);
        deadline.duration_since(now_wall).unwrap_or(Duration::ZERO)
    };
    now + remaining.saturating_sub(margin)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn subtracts_the_margin_from_lambdas_deadline() {
        let now = Instant::now();
        let wall = UNIX_EPOCH + S(1_000);
        assert_eq!(working_deadline(1_060_000, S(5), S(900), now, wall), now + S(55));
    }

    #[test]
    fn never_before_now() {
        let now = Instant::now();
        let wall = UNIX_EPOCH + S(1_000);
        assert_eq!(working_deadline(1_003_000, S(5), S(900), now, wall), now);
        assert_eq!(working_deadline(999_000, S(5), S(900), now, wall), now);
    }

    #[test]
    fn no_context_uses_the_fallback() {
        let now = Instant::now();
        assert_eq!(working_deadline(0, S(5), S(60), now, SystemTime::now()), now + S(55));
    }
}
