//! The measured invocations of the handler benches: each runs one event
//! through `handler::handle` on a shard no earlier invocation used (so its
//! state has not seen the records), timing the wall clock and the handler
//! thread's own CPU, and counting invocations that did not land everything.

use std::time::{Duration, Instant};

use aws_lambda_events::event::kinesis::KinesisEvent;
use kinesis_bigquery::handler::{self, Deps};

#[derive(Default)]
pub struct Invocations {
    shard: usize,
    pub walls: Vec<Duration>,
    pub cpus: Vec<Duration>,
    /// Invocations whose response reported a failure, or that failed.
    pub failures: usize,
}

impl Invocations {
    /// Runs `template` on a new shard; returns its wall-clock time.
    pub fn run(
        &mut self,
        rt: &tokio::runtime::Runtime,
        deps: &Deps,
        template: &KinesisEvent,
    ) -> Duration {
        self.shard += 1;
        let mut event = template.clone();
        let shard_id = format!("shardId-{:012}", self.shard);
        for r in &mut event.records {
            r.event_id = Some(format!("{shard_id}:{}", r.kinesis.sequence_number));
        }
        let event = handler::local_event(event, Duration::from_secs(900));
        let started = Instant::now();
        let cpu_started = thread_cpu();
        let response = rt.block_on(handler::handle(event, deps));
        let wall = started.elapsed();
        self.walls.push(wall);
        if let (Some(a), Some(b)) = (cpu_started, thread_cpu()) {
            self.cpus.push(b.saturating_sub(a));
        }
        match response {
            Ok(r) if r.batch_item_failures.is_empty() => {}
            other => {
                self.failures += 1;
                eprintln!("unexpected response: {other:?}");
            }
        }
        wall
    }

    /// The median wall-clock and CPU time per invocation.
    pub fn medians(&mut self) -> (Option<Duration>, Option<Duration>) {
        (median(&mut self.walls), median(&mut self.cpus))
    }
}

fn median(v: &mut [Duration]) -> Option<Duration> {
    v.sort_unstable();
    v.get(v.len() / 2).copied()
}

/// CPU time this thread has run (Linux: first field of
/// `/proc/thread-self/schedstat`, in nanoseconds).
pub fn thread_cpu() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}
