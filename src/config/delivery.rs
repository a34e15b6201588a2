//! [`Delivery`]: the write mode together with what it needs, so that
//! `WRITE_MODE=exactly_once` cannot exist without its state store and the
//! stateless modes carry none.

use crate::delivery::WriteMode;
use crate::sink_url::SinkUrl;

/// `WRITE_MODE`, with `STATE_URL` where the mode uses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// One COMMITTED stream per shard, its offsets kept in `state`.
    ExactlyOnce { state: SinkUrl },
    /// The `_default` stream, no state: duplicates possible on retry.
    AtLeastOnce,
    /// Upserts and deletes through the `_default` stream, no state.
    Cdc,
}

impl Delivery {
    /// The bare mode, for code that only branches on it.
    pub fn write_mode(&self) -> WriteMode {
        match self {
            Self::ExactlyOnce { .. } => WriteMode::ExactlyOnce,
            Self::AtLeastOnce => WriteMode::AtLeastOnce,
            Self::Cdc => WriteMode::Cdc,
        }
    }

    /// The state store's URL; only exactly-once has one.
    pub fn state(&self) -> Option<&SinkUrl> {
        match self {
            Self::ExactlyOnce { state } => Some(state),
            Self::AtLeastOnce | Self::Cdc => None,
        }
    }

    /// Joins a mode and an optional store; `None` when exactly-once has no
    /// store. A store given to a stateless mode is dropped: it would gate
    /// nothing.
    pub fn new(mode: WriteMode, state: Option<SinkUrl>) -> Option<Self> {
        match (mode, state) {
            (WriteMode::ExactlyOnce, Some(state)) => Some(Self::ExactlyOnce { state }),
            (WriteMode::ExactlyOnce, None) => None,
            (WriteMode::AtLeastOnce, _) => Some(Self::AtLeastOnce),
            (WriteMode::Cdc, _) => Some(Self::Cdc),
        }
    }
}
