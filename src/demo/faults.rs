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
}

impl Fault {
    pub const ALL: [Fault; 4] = [Fault::Retries, Fault::Outage, Fault::Crash, Fault::InDoubt];

    pub fn name(self) -> &'static str {
        match self {
            Self::Retries => "retries",
            Self::Outage => "outage",
            Self::Crash => "crash",
            Self::InDoubt => "in-doubt",
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
                name => match Fault::ALL.iter().find(|f| f.name() == name) {
                    Some(f) => out.push(*f),
                    None => {
                        return Err(format!(
                            "unknown fault {name:?}: use all, none or a list of retries, outage, crash, in-doubt"
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
}

/// The invocation numbers that get a fault: spaced out so each fault hits a
/// different batch, after a clean start.
pub fn plan(faults: &FaultSet, invocation: usize) -> Plan {
    match invocation {
        1 if faults.has(Fault::Retries) => Plan::Retries,
        3 | 4 if faults.has(Fault::Outage) => Plan::Outage,
        6 if faults.has(Fault::Crash) => Plan::KillMidway(Duration::from_millis(150)),
        7 if faults.has(Fault::Crash) => Plan::LoseResponse,
        10 if faults.has(Fault::InDoubt) => Plan::InDoubt,
        _ => Plan::Clean,
    }
}

/// Arms the emulator for `plan`; [`disarm`] afterwards.
pub fn arm(emulator: &Faults, plan: Plan) {
    match plan {
        Plan::Clean | Plan::LoseResponse => {}
        Plan::Retries => {
            emulator.fail_next("AppendRows", 2, Code::Unavailable, "injected by the demo")
        }
        Plan::Outage => emulator.set_down(true),
        Plan::KillMidway(_) => emulator.delay("AppendRows", Duration::from_millis(400)),
        Plan::InDoubt => {
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
        assert_eq!(plan(&all, 0), Plan::Clean);
        assert_eq!(plan(&all, 3), Plan::Outage);
        assert_eq!(plan(&FaultSet(vec![]), 3), Plan::Clean);
    }
}
