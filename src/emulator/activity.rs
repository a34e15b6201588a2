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

use std::sync::Arc;

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
}

/// The writing side, shared by every connection of one emulator.
#[derive(Clone)]
pub(crate) struct ActivityLog {
    tx: Arc<watch::Sender<Activity>>,
}

impl Default for ActivityLog {
    fn default() -> Self {
        Self { tx: Arc::new(watch::Sender::new(Activity::default())) }
    }
}

impl ActivityLog {
    pub(crate) fn record(&self, change: impl FnOnce(&mut Activity)) {
        self.tx.send_modify(change);
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Activity> {
        self.tx.subscribe()
    }
}
