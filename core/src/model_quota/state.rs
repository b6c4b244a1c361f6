//! The plain-data state of one model-quota key.

use heapless::Vec;

use super::{LOG_SLOTS, MAX_IN_FLIGHT};
use crate::{GcraState, LogEntry};

/// One count's state: a log of `(at, cost)` entries for a sliding window,
/// or a bucket's TAT. Only the field of the configured window is used.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct CountState {
    /// Sliding window: units by time, oldest first (entries may be merged).
    pub log: Vec<LogEntry, LOG_SLOTS>,
    /// Bucket: the GCRA state.
    pub bucket: GcraState,
}

/// A request in flight: it holds a success slot until settled or expired.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ModelHold {
    /// Its id within the state.
    pub id: u64,
    /// When it lapses (µs).
    pub expires: u64,
}

/// The state of one key: both counts, the holds and the clock guard.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ModelState {
    /// The latest `now` an operation used (µs); earlier times are treated as this one.
    pub last: u64,
    /// The id the next hold gets.
    pub next_id: u64,
    /// The total count.
    pub total: CountState,
    /// The success count.
    pub success: CountState,
    /// Requests in flight, oldest first.
    pub holds: Vec<ModelHold, MAX_IN_FLIGHT>,
}

impl ModelState {
    /// Requests in flight (live or not yet swept holds).
    pub fn in_flight(&self) -> u64 {
        self.holds.len() as u64
    }
}
