//! Crash points: a test hook that stops an invocation at a chosen step
//! boundary, the way a Lambda timeout or an out-of-memory kill would, so the
//! crash-matrix tests can retry the batch from every intermediate state.
//! Production passes `None` and pays one branch per boundary.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A step boundary of one invocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Boundary {
    BeforeStateWrite,
    AfterStateWrite,
    BeforeDeadLetter,
    AfterDeadLetter,
    /// Before request `n` of an append round is sent: the requests before it
    /// were sent and answered, this one and the rest never leave.
    BeforeAppend(usize),
    AfterAppendRound,
    BeforeFinalize,
    AfterFinalize,
    BeforeCreateStream,
    AfterCreateStream,
    BeforeSpill,
    AfterSpill,
    /// `UNKNOWN_FIELDS=add` (src/evolve/step.rs): before the `tables.patch`,
    /// after it, and once the writers see the new columns.
    BeforeSchemaPatch,
    AfterSchemaPatch,
    AfterSchemaVisible,
}

/// The invocation was stopped at a crash point.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("crash point {index} at {boundary:?}")]
pub struct Crash {
    pub index: usize,
    pub boundary: Boundary,
}

/// Crashes at the `at`-th boundary passed (0-based), counting across every
/// invocation that shares it; records the boundaries it saw.
#[derive(Debug, Default)]
pub struct CrashPoints {
    at: Option<usize>,
    /// Crash at the first pass of this boundary instead of at an index.
    on: Option<Boundary>,
    seen: AtomicUsize,
    log: Mutex<Vec<Boundary>>,
}

impl CrashPoints {
    /// Crash at the `at`-th boundary from now.
    pub fn at(at: usize) -> Self {
        Self { at: Some(at), ..Self::default() }
    }

    /// Crash the first time `boundary` is passed (whatever comes before it).
    pub fn on(boundary: Boundary) -> Self {
        Self { on: Some(boundary), ..Self::default() }
    }

    /// Never crash; only count (to learn how many boundaries a run has).
    pub fn counting() -> Self {
        Self::default()
    }

    /// Boundaries passed so far.
    pub fn seen(&self) -> usize {
        self.seen.load(Ordering::SeqCst)
    }

    pub fn log(&self) -> Vec<Boundary> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Passes a boundary.
    ///
    /// # Errors
    /// [`Crash`] when this is the chosen boundary.
    pub fn pass(&self, boundary: Boundary) -> Result<(), Crash> {
        let index = self.seen.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut log) = self.log.lock() {
            log.push(boundary);
        }
        let first_on =
            self.on == Some(boundary) && self.log().iter().filter(|b| **b == boundary).count() == 1;
        if self.at == Some(index) || first_on { Err(Crash { index, boundary }) } else { Ok(()) }
    }
}

/// Passes `boundary` on an optional hook.
pub(crate) fn pass(hook: Option<&CrashPoints>, boundary: Boundary) -> Result<(), Crash> {
    hook.map_or(Ok(()), |h| h.pass(boundary))
}
