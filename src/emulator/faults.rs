//! Deterministic fault injection, so tests can drive every failure path of a
//! client without timing luck.
//!
//! Rules are consulted once per unary call and once per AppendRows request
//! (for `fail`, `random` and `delay`), or once per AppendRows connection
//! (`drop_after`). Set them programmatically through [`Faults`] or over REST
//! (`POST /emulator/v1/faults` with a [`FaultSpec`] as JSON; `DELETE` clears).
//!
//! An injected failure of an AppendRows request writes none of its rows, as
//! the service does for a failed request; only [`FaultSpec::WriteThenDrop`]
//! writes first and then loses the response (a crash after the commit point).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tonic::Code;

/// One fault rule, in the JSON form of the REST endpoint (`"kind"` tags it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultSpec {
    /// Fail the next `times` calls of `method` (an RPC name such as
    /// `AppendRows`, or `*`) with `code`. For AppendRows each request counts;
    /// the connection ends with the status, unless `in_band` asks for an
    /// in-stream `AppendRowsResponse.error` instead.
    Fail {
        method: String,
        #[serde(default = "one")]
        times: u32,
        #[serde(with = "code_serde")]
        code: Code,
        #[serde(default)]
        message: String,
        #[serde(default)]
        in_band: bool,
    },
    /// Fail the next `times` AppendRows requests to streams of `table`
    /// (`projects/p/datasets/d/tables/t` or `p.d.t`) with `code`, ending
    /// the connection; requests to other tables pass. One table of several
    /// failing while the rest write (routing by record).
    FailTable {
        table: String,
        #[serde(default = "one")]
        times: u32,
        #[serde(with = "code_serde")]
        code: Code,
        #[serde(default)]
        message: String,
    },
    /// Delay every response of `method` by `ms` milliseconds.
    Delay {
        method: String,
        ms: u64,
    },
    /// End the next `times` AppendRows connections with UNAVAILABLE (a
    /// reset) after `responses` responses each.
    DropAfter {
        responses: u32,
        #[serde(default = "one")]
        times: u32,
    },
    /// The next `times` AppendRows requests are written, then the connection
    /// ends with UNAVAILABLE instead of their response.
    WriteThenDrop {
        #[serde(default = "one")]
        times: u32,
    },
    /// The next `times` AppendRows requests are written, then their stream
    /// is lost (garbage-collected, as `ExpireStream`) and the connection ends
    /// with UNAVAILABLE: the writer's resend meets NOT_FOUND while its first
    /// send is in the table.
    WriteThenExpire {
        #[serde(default = "one")]
        times: u32,
    },
    /// Fail each call/request of `method` with probability `probability`,
    /// drawn from a generator seeded with `seed` (same seed, same sequence).
    Random {
        method: String,
        probability: f64,
        seed: u64,
        #[serde(with = "code_serde")]
        code: Code,
        #[serde(default)]
        message: String,
    },
    /// Every RPC fails UNAVAILABLE until `Up`.
    Down,
    Up,
    /// The next `times` AppendRows requests are taken but not applied and
    /// their connection is reset; they land at `release_held`, after their
    /// client is gone (a late append, see [`super::lifecycle`]).
    Hold {
        #[serde(default = "one")]
        times: u32,
    },
    /// Applies every held request now.
    ReleaseHeld,
    /// Garbage-collects the named write stream now (NOT_FOUND from then on).
    ExpireStream {
        name: String,
    },
    /// Explicit streams idle for `secs` are garbage-collected; `null` stops it.
    StreamIdleTtl {
        secs: Option<u64>,
    },
    /// `CREATE OR REPLACE TABLE` (`projects/p/datasets/d/tables/t` or
    /// `p.d.t`): same schema, no rows, none of the old streams.
    RecreateTable {
        table: String,
    },
    /// The table is deleted and not re-created.
    DropTable {
        table: String,
    },
}

fn one() -> u32 {
    1
}

/// gRPC codes as their number or canonical name (`"UNAVAILABLE"`, `14`).
mod code_serde {
    use serde::{Deserialize, Deserializer, Serializer};
    use tonic::Code;

    pub fn serialize<S: Serializer>(c: &Code, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i32(*c as i32)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Code, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(i32),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Code::from_i32(n)),
            Raw::S(s) => super::code_from_name(&s)
                .ok_or_else(|| serde::de::Error::custom(format!("unknown gRPC code {s}"))),
        }
    }
}

/// Parses `UNAVAILABLE`, `Unavailable` or `unavailable`.
pub fn code_from_name(s: &str) -> Option<Code> {
    let norm: String = s.chars().filter(|c| *c != '_').collect::<String>().to_ascii_lowercase();
    (0..=16).map(Code::from_i32).find(|c| format!("{c:?}").to_ascii_lowercase() == norm)
}

/// What a rule decided for one call or request.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Pass,
    Fail { code: Code, message: String, in_band: bool },
    WriteThenDrop,
    WriteThenExpire,
    Hold,
}

#[derive(Default)]
struct State {
    down: bool,
    rules: Vec<Rule>,
}

struct Rule {
    spec: FaultSpec,
    left: u32,
    rng: Option<StdRng>,
}

/// Handle to the fault rules; cheap to clone, shared by every connection.
#[derive(Clone, Default)]
pub struct Faults {
    state: Arc<Mutex<State>>,
}

fn matches(rule_method: &str, method: &str) -> bool {
    rule_method == "*" || rule_method.eq_ignore_ascii_case(method)
}

impl Faults {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a rule (`Down`/`Up` switch the service state instead). Stream
    /// and table lifecycle rules act on the store, through
    /// `lifecycle::apply`; here they are ignored.
    pub fn add(&self, spec: FaultSpec) {
        let mut st = self.lock();
        match &spec {
            FaultSpec::Down => st.down = true,
            FaultSpec::Up => st.down = false,
            FaultSpec::ReleaseHeld
            | FaultSpec::ExpireStream { .. }
            | FaultSpec::StreamIdleTtl { .. }
            | FaultSpec::RecreateTable { .. }
            | FaultSpec::DropTable { .. } => {}
            _ => {
                let left = match &spec {
                    FaultSpec::Fail { times, .. }
                    | FaultSpec::FailTable { times, .. }
                    | FaultSpec::DropAfter { times, .. }
                    | FaultSpec::WriteThenDrop { times }
                    | FaultSpec::WriteThenExpire { times }
                    | FaultSpec::Hold { times } => *times,
                    _ => u32::MAX,
                };
                let rng = match &spec {
                    FaultSpec::Random { seed, .. } => Some(StdRng::seed_from_u64(*seed)),
                    _ => None,
                };
                st.rules.push(Rule { spec, left, rng });
            }
        }
    }

    /// Fails the next `times` calls of `method` (or `*`) with `code`.
    pub fn fail_next(&self, method: &str, times: u32, code: Code, message: &str) {
        self.add(FaultSpec::Fail {
            method: method.into(),
            times,
            code,
            message: message.into(),
            in_band: false,
        });
    }

    /// Like [`Self::fail_next`], but AppendRows requests fail in-stream and the connection stays open.
    pub fn fail_next_in_band(&self, times: u32, code: Code, message: &str) {
        self.add(FaultSpec::Fail {
            method: "AppendRows".into(),
            times,
            code,
            message: message.into(),
            in_band: true,
        });
    }

    pub fn delay(&self, method: &str, by: Duration) {
        self.add(FaultSpec::Delay { method: method.into(), ms: by.as_millis() as u64 });
    }

    pub fn drop_after(&self, responses: u32) {
        self.add(FaultSpec::DropAfter { responses, times: 1 });
    }

    pub fn write_then_drop(&self, times: u32) {
        self.add(FaultSpec::WriteThenDrop { times });
    }

    /// See [`FaultSpec::WriteThenExpire`].
    pub fn write_then_expire(&self, times: u32) {
        self.add(FaultSpec::WriteThenExpire { times });
    }

    /// The next `times` AppendRows requests land only at `release_held`.
    pub fn hold(&self, times: u32) {
        self.add(FaultSpec::Hold { times });
    }

    pub fn fail_randomly(&self, method: &str, probability: f64, seed: u64, code: Code) {
        self.add(FaultSpec::Random {
            method: method.into(),
            probability,
            seed,
            code,
            message: String::new(),
        });
    }

    /// Makes every RPC fail UNAVAILABLE (`true`) or serves again (`false`).
    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    pub fn is_down(&self) -> bool {
        self.lock().down
    }

    /// Removes every rule and brings the service back up.
    pub fn clear(&self) {
        let mut st = self.lock();
        st.rules.clear();
        st.down = false;
    }

    /// The rules still active, for the REST `GET`.
    pub fn active(&self) -> Vec<FaultSpec> {
        let st = self.lock();
        let mut out: Vec<FaultSpec> = st.rules.iter().map(|r| r.spec.clone()).collect();
        if st.down {
            out.push(FaultSpec::Down);
        }
        out
    }

    /// Total delay to apply before answering `method`.
    pub fn delay_for(&self, method: &str) -> Duration {
        let st = self.lock();
        let ms = st
            .rules
            .iter()
            .filter_map(|r| match &r.spec {
                FaultSpec::Delay { method: m, ms } if matches(m, method) => Some(*ms),
                _ => None,
            })
            .sum();
        Duration::from_millis(ms)
    }

    /// Consulted once per unary call or AppendRows request.
    pub fn check(&self, method: &str) -> Verdict {
        let mut st = self.lock();
        if st.down {
            return Verdict::Fail {
                code: Code::Unavailable,
                message: "The service is currently unavailable.".into(),
                in_band: false,
            };
        }
        let mut verdict = Verdict::Pass;
        for r in st.rules.iter_mut() {
            if r.left == 0 {
                continue;
            }
            match &r.spec {
                FaultSpec::Fail { method: m, code, message, in_band, .. } if matches(m, method) => {
                    r.left -= 1;
                    verdict = Verdict::Fail {
                        code: *code,
                        message: msg_or(message, *code),
                        in_band: *in_band,
                    };
                    break;
                }
                FaultSpec::WriteThenDrop { .. } if method == "AppendRows" => {
                    r.left -= 1;
                    verdict = Verdict::WriteThenDrop;
                    break;
                }
                FaultSpec::WriteThenExpire { .. } if method == "AppendRows" => {
                    r.left -= 1;
                    verdict = Verdict::WriteThenExpire;
                    break;
                }
                FaultSpec::Hold { .. } if method == "AppendRows" => {
                    r.left -= 1;
                    verdict = Verdict::Hold;
                    break;
                }
                FaultSpec::Random { method: m, probability, code, message, .. }
                    if matches(m, method) =>
                {
                    let p = *probability;
                    let (code, message) = (*code, msg_or(message, *code));
                    if let Some(rng) = r.rng.as_mut()
                        && rng.random::<f64>() < p
                    {
                        verdict = Verdict::Fail { code, message, in_band: false };
                        break;
                    }
                }
                _ => {}
            }
        }
        st.rules.retain(|r| r.left > 0);
        verdict
    }

    /// Consulted once per AppendRows request that passed [`Faults::check`],
    /// with the path of the table its stream belongs to.
    pub fn check_table(&self, table: &str) -> Verdict {
        let same = |a: &str| {
            let parse = |s: &str| s.parse::<crate::table::TableName>().ok();
            a == table || (parse(a).is_some() && parse(a) == parse(table))
        };
        let mut st = self.lock();
        let mut verdict = Verdict::Pass;
        for r in st.rules.iter_mut().filter(|r| r.left > 0) {
            if let FaultSpec::FailTable { table: t, code, message, .. } = &r.spec
                && same(t)
            {
                r.left -= 1;
                verdict =
                    Verdict::Fail { code: *code, message: msg_or(message, *code), in_band: false };
                break;
            }
        }
        st.rules.retain(|r| r.left > 0);
        verdict
    }

    /// Fails the next `times` AppendRows requests to `table`'s streams.
    pub fn fail_table(&self, table: &crate::table::TableName, times: u32, code: Code) {
        self.add(FaultSpec::FailTable { table: table.path(), times, code, message: String::new() });
    }

    /// For a new AppendRows connection: after how many responses to drop it.
    pub fn take_drop_after(&self) -> Option<u32> {
        let mut st = self.lock();
        let found = st.rules.iter_mut().find_map(|r| match r.spec {
            FaultSpec::DropAfter { responses, .. } if r.left > 0 => {
                r.left -= 1;
                Some(responses)
            }
            _ => None,
        });
        st.rules.retain(|r| r.left > 0);
        found
    }
}

fn msg_or(message: &str, code: Code) -> String {
    if message.is_empty() { format!("Injected fault: {code:?}") } else { message.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_next_counts_down_and_random_is_deterministic() {
        let f = Faults::default();
        f.fail_next("AppendRows", 2, Code::Internal, "");
        assert!(matches!(f.check("FlushRows"), Verdict::Pass));
        assert!(matches!(f.check("AppendRows"), Verdict::Fail { code: Code::Internal, .. }));
        assert!(matches!(f.check("appendrows"), Verdict::Fail { .. }));
        assert_eq!(f.check("AppendRows"), Verdict::Pass);

        let run = |seed| {
            let f = Faults::default();
            f.fail_randomly("*", 0.5, seed, Code::Unavailable);
            (0..64).map(|_| f.check("GetWriteStream") != Verdict::Pass).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        let fails = run(7).iter().filter(|x| **x).count();
        assert!((10..54).contains(&fails), "{fails}");
    }

    #[test]
    fn a_table_fault_fails_only_that_tables_requests() {
        let f = Faults::default();
        f.add(
            serde_json::from_str(
                r#"{"kind":"fail_table","table":"p.d.b","code":"INTERNAL","times":2}"#,
            )
            .unwrap(),
        );
        assert_eq!(f.check("AppendRows"), Verdict::Pass);
        assert_eq!(f.check_table("projects/p/datasets/d/tables/a"), Verdict::Pass);
        assert!(matches!(
            f.check_table("projects/p/datasets/d/tables/b"),
            Verdict::Fail { code: Code::Internal, in_band: false, .. }
        ));
        assert!(matches!(f.check_table("projects/p/datasets/d/tables/b"), Verdict::Fail { .. }));
        assert_eq!(f.check_table("projects/p/datasets/d/tables/b"), Verdict::Pass);
    }

    #[test]
    fn specs_parse_from_json() {
        let s: FaultSpec =
            serde_json::from_str(r#"{"kind":"fail","method":"*","code":"UNAVAILABLE","times":3}"#)
                .unwrap();
        assert!(matches!(s, FaultSpec::Fail { code: Code::Unavailable, times: 3, .. }));
        let s: FaultSpec =
            serde_json::from_str(r#"{"kind":"fail","method":"AppendRows","code":6}"#).unwrap();
        assert!(matches!(s, FaultSpec::Fail { code: Code::AlreadyExists, times: 1, .. }));
        assert_eq!(code_from_name("invalid_argument"), Some(Code::InvalidArgument));
        let f = Faults::default();
        f.add(serde_json::from_str(r#"{"kind":"down"}"#).unwrap());
        assert!(f.is_down());
        f.clear();
        assert!(!f.is_down());
    }
}
