//! The faults the demo injects, and when: which invocation sees which.

use crate::emulator::Faults;
use std::str::FromStr;
use std::time::Duration;
use tonic::Code;

/// One kind of trouble, as `--faults` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// Two AppendRows calls fail UNAVAILABLE; the handler retries them within
    /// `RETRY_BUDGET_MS`.
    Retries,
    /// BigQuery is down for two whole invocations: their batches go to the
    /// spillover, Kinesis moves on, the backfill brings them back.
    Outage,
    /// The function is killed mid-invocation (its future dropped while
    /// appends are in flight), and once after finishing but before Lambda
    /// got the response; Kinesis retries the same batch both times.
    Crash,
    /// Appends land but their answers are lost and BigQuery stays
    /// unreachable, even for FinalizeWriteStream: the batch is spilled with
    /// its write stream and offsets, and the backfill skips what landed.
    InDoubt,
    /// The event source mapping gives up on a batch after an attempt that
    /// appended (as `MaximumRetryAttempts` does) and goes on with the next
    /// records: once after a response that was lost (every record landed),
    /// and, in exactly-once mode, once after a kill with appends in flight
    /// (records that never landed are lost by the mapping, not by us).
    Discard,
    /// The shard's write stream is garbage-collected between invocations
    /// (nothing in doubt: a rotation). Exactly-once mode only: CDC writes the
    /// `_default` stream, which is never collected.
    LostStream,
    /// The shard's write stream is garbage-collected during an invocation,
    /// right after an append landed whose answer was lost (in doubt: to be
    /// spilled as `stream_lost` and replayed at least once). Not in `all`:
    /// it makes those records at-least-once, which the every-fault run's
    /// check does not allow (tests/it/demo.rs has its own test).
    LostStreamMidway,
}

impl Fault {
    pub const ALL: [Fault; 6] = [
        Fault::Retries,
        Fault::Outage,
        Fault::Crash,
        Fault::InDoubt,
        Fault::Discard,
        Fault::LostStream,
    ];

    /// Every fault `--faults` knows by name (`all` is [`Self::ALL`]).
    pub const NAMED: [Fault; 7] = [
        Fault::Retries,
        Fault::Outage,
        Fault::Crash,
        Fault::InDoubt,
        Fault::Discard,
        Fault::LostStream,
        Fault::LostStreamMidway,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Retries => "retries",
            Self::Outage => "outage",
            Self::Crash => "crash",
            Self::InDoubt => "in-doubt",
            Self::Discard => "discard",
            Self::LostStream => "lost-stream",
            Self::LostStreamMidway => "lost-stream-midway",
        }
    }
}

/// `--faults`: a comma-separated list of fault names, `all` or `none`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultSet(pub Vec<Fault>);

impl FromStr for FaultSet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "all" => out.extend(Fault::ALL),
                "none" => {}
                name => match Fault::NAMED.iter().find(|f| f.name() == name) {
                    Some(f) => out.push(*f),
                    None => {
                        return Err(format!(
                            "unknown fault {name:?}: use all, none or a list of retries, outage, crash, in-doubt, discard, lost-stream, lost-stream-midway"
                        ));
                    }
                },
            }
        }
        out.dedup();
        Ok(Self(out))
    }
}

impl FaultSet {
    pub fn has(&self, fault: Fault) -> bool {
        self.0.contains(&fault)
    }
}

/// What happens to one invocation (numbered from 0 across all shards).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    Clean,
    Retries,
    Outage,
    /// Cancel the handler after this long; response delays keep appends in flight.
    KillMidway(Duration),
    /// Run to the end, drop the response, and deliver the batch again.
    LoseResponse,
    InDoubt,
    /// Expire the shard's current write stream before the invocation.
    ExpireBefore,
    /// Expire it during the invocation, right after an append landed whose
    /// answer was lost (armed as [`Plan::InDoubt`] until then).
    ExpireMidway,
    /// Run to the end, drop the response, and give up on the batch.
    DiscardAfterLostResponse,
    /// Cancel the handler after this long (appends in flight), and give up
    /// on the batch.
    DiscardAfterKill(Duration),
}

/// The invocation numbers that get a fault: spaced out so each fault hits a
/// different batch, after a clean start. `write_streams`: the mode writes
/// explicit write streams that can be lost, and a batch the mapping drops
/// midway may be checked as partly lost (exactly-once mode, not CDC, whose
/// check wants every change).
pub fn plan(faults: &FaultSet, invocation: usize, write_streams: bool) -> Plan {
    match invocation {
        1 if faults.has(Fault::Retries) => Plan::Retries,
        3 | 4 if faults.has(Fault::Outage) => Plan::Outage,
        6 if faults.has(Fault::Crash) => Plan::KillMidway(Duration::from_millis(150)),
        7 if faults.has(Fault::Crash) => Plan::LoseResponse,
        10 if faults.has(Fault::InDoubt) => Plan::InDoubt,
        // Odd: the other shard than in-doubt's (10), so the stream its
        // spill names stays there for the backfill to resolve.
        11 if write_streams && faults.has(Fault::LostStream) => Plan::ExpireBefore,
        13 if faults.has(Fault::Discard) => Plan::DiscardAfterLostResponse,
        15 if write_streams && faults.has(Fault::LostStreamMidway) => Plan::ExpireMidway,
        17 if write_streams && faults.has(Fault::Discard) => {
            Plan::DiscardAfterKill(Duration::from_millis(150))
        }
        _ => Plan::Clean,
    }
}

/// Arms the emulator for `plan`; [`disarm`] afterwards.
pub fn arm(emulator: &Faults, plan: Plan) {
    match plan {
        Plan::Clean | Plan::LoseResponse | Plan::ExpireBefore | Plan::DiscardAfterLostResponse => {}
        Plan::Retries => {
            emulator.fail_next("AppendRows", 2, Code::Unavailable, "injected by the demo")
        }
        Plan::Outage => emulator.set_down(true),
        Plan::KillMidway(_) | Plan::DiscardAfterKill(_) => {
            emulator.delay("AppendRows", Duration::from_millis(400))
        }
        // Until the watcher in kinesis.rs expires the stream and disarms.
        Plan::InDoubt | Plan::ExpireMidway => {
            // The first request lands, its answer is lost; every reconnect
            // and the finalize that would resolve it fail.
            emulator.write_then_drop(1);
            emulator.fail_next("AppendRows", 1_000, Code::Unavailable, "injected by the demo");
            emulator.fail_next(
                "FinalizeWriteStream",
                1_000,
                Code::Unavailable,
                "injected by the demo",
            );
        }
    }
}

pub fn disarm(emulator: &Faults) {
    emulator.clear();
    emulator.set_down(false);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists() {
        assert_eq!("all".parse::<FaultSet>().unwrap().0, Fault::ALL);
        assert!("none".parse::<FaultSet>().unwrap().0.is_empty());
        let s: FaultSet = "outage, in-doubt".parse().unwrap();
        assert_eq!(s.0, [Fault::Outage, Fault::InDoubt]);
        assert!("flood".parse::<FaultSet>().is_err());
    }

    #[test]
    fn schedule() {
        let all: FaultSet = "all".parse().unwrap();
        assert_eq!(plan(&all, 0, true), Plan::Clean);
        assert_eq!(plan(&all, 3, true), Plan::Outage);
        assert_eq!(plan(&FaultSet(vec![]), 3, true), Plan::Clean);
        assert_eq!(plan(&all, 11, true), Plan::ExpireBefore);
        assert_eq!(plan(&all, 15, true), Plan::Clean);
        let midway: FaultSet = "lost-stream-midway".parse().unwrap();
        assert_eq!(plan(&midway, 15, true), Plan::ExpireMidway);
        // CDC: no write stream to lose, no batch dropped midway.
        assert_eq!(plan(&all, 11, false), Plan::Clean);
        assert_eq!(plan(&all, 13, false), Plan::DiscardAfterLostResponse);
        assert_eq!(plan(&all, 17, false), Plan::Clean);
    }
}
