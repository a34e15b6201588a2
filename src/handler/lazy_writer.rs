//! [`LazyWriter`]: the BigQuery side of delivery (connected client, live
//! table schema, encoder — wrapped with the sinks into a [`DeliveryDeps`]),
//! built on first need and retried on every invocation until it is built.
//!
//! Why lazy: a container that must read the table schema before it can do
//! anything fails every invocation while BigQuery (or its credentials) is
//! out, and the shard stalls until its records expire (issue 12, scenario
//! 4). With the writer side behind this cell, an invocation that cannot
//! build it within a bounded budget spills its records raw instead (no
//! schema needed; the backfill encodes them later), and the next invocation
//! tries again — a failure is never cached.
//!
//! The cell is self-contained (one table's writer side, keyed by nothing),
//! so routing by table can hold one per table.

use std::time::Duration;

use tokio::sync::OnceCell;

use super::deps::{DepsError, Sinks, WriterSide, batch_limits, delivery_deps};
use crate::config::Config;
use crate::delivery::DeliveryDeps;

/// The most one invocation spends trying to build the writer side: a
/// healthy BigQuery answers the schema read in well under a second, and
/// every second spent here during an outage is a second of Lambda billed
/// per invocation. It also stays under Lambda's 10 s init phase, where the
/// cold start makes its first attempt.
pub const CONNECT_BUDGET_CAP: Duration = Duration::from_secs(5);

/// The writer side of one table, built at most once and retried until then.
pub struct LazyWriter {
    cell: OnceCell<DeliveryDeps>,
    /// Cloned into the [`DeliveryDeps`] once connected: the spill and
    /// dead-letter paths of the outage mode use the very same sinks.
    sinks: Sinks,
}

impl LazyWriter {
    /// A cell that has not connected yet.
    pub fn new(sinks: Sinks) -> Self {
        Self { cell: OnceCell::new(), sinks }
    }

    /// The connected delivery, if a connect has succeeded.
    pub fn get(&self) -> Option<&DeliveryDeps> {
        self.cell.get()
    }

    /// As [`LazyWriter::get`], to adjust settings (tests, benchmarks).
    pub fn get_mut(&mut self) -> Option<&mut DeliveryDeps> {
        self.cell.get_mut()
    }

    /// The sinks, usable whether or not BigQuery is reachable.
    pub fn sinks(&self) -> &Sinks {
        &self.sinks
    }

    /// The connected delivery; connects first if no earlier call did,
    /// giving up after `budget`. Concurrent callers wait for one attempt.
    /// A failed attempt leaves the cell empty: the next call tries again.
    ///
    /// # Errors
    /// [`DepsError::Timeout`] when `budget` ran out; otherwise the part of
    /// [`WriterSide::connect`] or [`batch_limits`] that failed.
    pub async fn get_or_connect(
        &self,
        config: &Config,
        budget: Duration,
    ) -> Result<&DeliveryDeps, DepsError> {
        self.cell
            .get_or_try_init(|| async {
                let writer = tokio::time::timeout(budget, WriterSide::connect(config))
                    .await
                    .map_err(|_| DepsError::Timeout(budget))??;
                batch_limits(config, &writer.encoder)?;
                Ok(delivery_deps(config, writer, self.sinks.clone()))
            })
            .await
    }
}

/// How long an invocation may try to connect: at most
/// [`CONNECT_BUDGET_CAP`], and at most half the time left before the
/// working deadline — the other half is the spill's and the state write's.
pub fn connect_budget(time_left: Duration) -> Duration {
    CONNECT_BUDGET_CAP.min(time_left / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_leaves_half_the_time_for_the_spill() {
        assert_eq!(connect_budget(Duration::from_secs(60)), CONNECT_BUDGET_CAP);
        assert_eq!(connect_budget(Duration::from_secs(4)), Duration::from_secs(2));
        assert_eq!(connect_budget(Duration::ZERO), Duration::ZERO);
    }
}
