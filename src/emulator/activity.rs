//! What the emulator has done so far, as counters one can wait on.
//!
//! A test that needs the service to have reached some point — a dropped
//! connection released its stream, delayed requests were finally written, a
//! client was refused a few times during an outage — waits for the counter
//! instead of sleeping and hoping the machine was fast enough:
//! `emu.activity().wait_for(|a| a.connections_closed >= 2).await`.
//!
//! Each counter moves before the client can observe the event it counts (a
//! connection is counted closed after it released its stream; a request is
//! counted before its answer is sent), so "the client saw it" implies "the
//! counter says so".

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// Counters since the emulator started; they only grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Activity {
    /// AppendRows requests handled, whatever the outcome (written, rejected,
    /// failed by a fault), including those whose client had already gone.
    pub append_requests: u64,
    /// Calls and AppendRows requests failed by an injected fault, or refused
    /// because the service is down.
    pub refused: u64,
    /// AppendRows connections that have ended, for any reason; a stream held
    /// by one of them is free again.
    pub connections_closed: u64,
    /// Write streams created (CreateWriteStream calls that succeeded).
    pub streams_created: u64,
}

/// The writing side, shared by every connection of one emulator.
#[derive(Clone)]
pub(crate) struct ActivityLog {
    tx: Arc<watch::Sender<Activity>>,
    appends: Arc<Mutex<VecDeque<ReceivedAppend>>>,
}

/// Requests kept in the listing: a long-running `kinesis-bigquery emulator`
/// keeps the newest ones only (~100 bytes each, ~10 MB at most).
const APPENDS_KEPT: usize = 100_000;

/// One AppendRows request as the emulator received it: what a batching test
/// compares against the knobs (`Emulator::appends`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedAppend {
    /// The connection's write stream (named on its first request only).
    pub write_stream: String,
    pub offset: Option<i64>,
    /// Rows it carried (proto rows, or the Arrow batch's row count).
    pub rows: usize,
    /// Its encoded size, as the request size limit counts it.
    pub bytes: usize,
    /// It carried a writer schema (a connection's first request).
    pub with_schema: bool,
    /// When it arrived (tokio's clock: virtual under a paused test clock).
    pub at: tokio::time::Instant,
}

impl Default for ActivityLog {
    fn default() -> Self {
        Self { tx: Arc::new(watch::Sender::new(Activity::default())), appends: Arc::default() }
    }
}

impl ActivityLog {
    pub(crate) fn record(&self, change: impl FnOnce(&mut Activity)) {
        self.tx.send_modify(change);
    }

    pub(crate) fn received(&self, append: ReceivedAppend) {
        let mut appends = self.appends.lock().unwrap_or_else(|e| e.into_inner());
        if appends.len() >= APPENDS_KEPT {
            appends.pop_front();
        }
        appends.push_back(append);
    }

    pub(crate) fn appends(&self) -> Vec<ReceivedAppend> {
        self.appends.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Activity> {
        self.tx.subscribe()
    }
}
