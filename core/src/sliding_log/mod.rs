//! Exact sliding log: remembers each admitted request's time and cost.
//!
//! At `now`, an entry counts while `entry.at + window > now`; a request of
//! `cost` is admitted when the live total plus `cost` stays within `limit`.
//! The log holds at most `N` entries (`heapless`, no allocator). The slots
//! never lower the limit: when an admission finds them all taken, the two
//! closest adjacent entries are first merged into the later one (their
//! costs summed), so a merged unit counts for longer than its window —
//! capacity comes back later, never sooner — and `remaining` is always what
//! a caller can really still send. While a window's admissions fit in `N`
//! entries (e.g. `limit ≤ N` with costs ≥ 1) the log is exact.
//!
//! A `now` earlier than the latest admitted check's is treated as that time
//! (the state keeps it as `last`): otherwise a clock stepping back after old
//! entries were dropped could admit twice in one window. Denials write
//! nothing, not even `last`.
//!
//! ```
//! use ratebound_core::{Duration, Instant, SlidingLog, SlidingLogState};
//! let log: SlidingLog<8> = SlidingLog::new(3, Duration::from_secs(10))?;
//! let mut state = SlidingLogState::<8>::default();
//! let t = |s| Instant::from_secs(s);
//! assert!(log.check(&mut state, t(0), 2)?.allowed);
//! assert!(log.check(&mut state, t(4), 1)?.allowed);
//! let d = log.check(&mut state, t(5), 1)?;
//! assert!(!d.allowed);
//! assert_eq!(d.retry_at, t(10)); // the entry from t=0 leaves the window
//! assert!(log.check(&mut state, t(10), 2)?.allowed);
//! # Ok::<(), Box<dyn core::error::Error>>(())
//! ```

mod rule;

use heapless::Deque;

use rule::{follows, Rule};
pub use rule::{LogView, LogViewMut};

pub(crate) use rule::closest_pair;

use crate::error::{require_at_most, require_nonzero};
use crate::time::MAX_SAFE_INTEGER;
use crate::{ConfigError, CostError, Decision, Duration, Instant, Limiter};

/// A sliding log of at most `N` requests: `limit` units per `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(try_from = "WindowConfig", into = "WindowConfig")
)]
pub struct SlidingLog<const N: usize = 64> {
    limit: u64,
    window: u64,
}

/// The serialized form of a window limiter's config ([`SlidingLog`], [`SlidingCounter`](crate::SlidingCounter)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct WindowConfig {
    /// Units admitted per window.
    pub limit: u64,
    /// Window length in microseconds.
    pub window_us: u64,
}

/// One admitted request in a [`SlidingLogState`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct LogEntry {
    /// When it was admitted (µs).
    pub at: u64,
    /// Its cost.
    pub cost: u64,
}

/// The state of a [`SlidingLog`]: admitted requests, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SlidingLogState<const N: usize = 64> {
    entries: Deque<LogEntry, N>,
    /// The `now` of the latest admitted check (µs); earlier times are treated as this one.
    last: u64,
}

impl<const N: usize> SlidingLogState<N> {
    /// A log that has admitted nothing (what `default()` gives, usable in
    /// a `static`).
    pub const EMPTY: Self = SlidingLogState {
        entries: Deque::new(),
        last: 0,
    };

    /// The entries, oldest first (expired ones may linger until the next `check`).
    pub fn entries(&self) -> impl Iterator<Item = &LogEntry> + '_ {
        self.entries.iter()
    }
    /// The `now` of the latest admitted check (µs).
    pub fn last(&self) -> u64 {
        self.last
    }

    /// The state read as a log of any slot count ([`SlidingLog::peek_in`]).
    pub fn view(&self) -> LogView<'_> {
        LogView {
            entries: self.entries.as_view(),
            last: self.last,
        }
    }

    /// The state to change as a log of any slot count
    /// ([`SlidingLog::check_in`], [`LogViewMut::restore`]).
    pub fn view_mut(&mut self) -> LogViewMut<'_> {
        LogViewMut {
            entries: self.entries.as_mut_view(),
            last: &mut self.last,
        }
    }

    /// Rebuild a state from [`last`](Self::last) and [`entries`](Self::entries)
    /// (e.g. persisted elsewhere). `None` when they could not have come from
    /// a log: more than `N` entries, entries out of time order, or an entry
    /// later than `last`.
    pub fn from_parts(last: u64, entries: impl IntoIterator<Item = LogEntry>) -> Option<Self> {
        let mut out = SlidingLogState {
            entries: Deque::new(),
            last,
        };
        let mut prev = 0;
        for e in entries {
            if !follows(prev, e, last) {
                return None;
            }
            prev = e.at;
            out.entries.push_back(e).ok()?;
        }
        Some(out)
    }
}

impl<const N: usize> TryFrom<WindowConfig> for SlidingLog<N> {
    type Error = ConfigError;
    fn try_from(c: WindowConfig) -> Result<Self, ConfigError> {
        SlidingLog::new(c.limit, Duration::from_micros(c.window_us))
    }
}
impl<const N: usize> From<SlidingLog<N>> for WindowConfig {
    fn from(l: SlidingLog<N>) -> Self {
        WindowConfig {
            limit: l.limit,
            window_us: l.window,
        }
    }
}

pub(crate) const fn validate_window(limit: u64, window: Duration) -> Result<(), ConfigError> {
    if let Err(e) = require_nonzero(limit, "limit") {
        return Err(e);
    }
    if let Err(e) = require_at_most(limit, MAX_SAFE_INTEGER, "limit") {
        return Err(e);
    }
    require_nonzero(window.as_micros(), "window")
}

impl<const N: usize> SlidingLog<N> {
    /// `limit` units per sliding `window`, remembered in a log of `N` slots.
    pub const fn new(limit: u64, window: Duration) -> Result<Self, ConfigError> {
        if N == 0 {
            return Err(ConfigError::Invalid {
                field: "N",
                reason: "(log slots) must be at least 1",
            });
        }
        if let Err(e) = validate_window(limit, window) {
            return Err(e);
        }
        Ok(SlidingLog {
            limit,
            window: window.as_micros(),
        })
    }

    /// Units admitted per window.
    pub const fn limit(&self) -> u64 {
        self.limit
    }
    /// The window length.
    pub const fn window(&self) -> Duration {
        Duration::from_micros(self.window)
    }

    /// The rule `check` and `peek` apply, apart from `N`: one copy of
    /// the code serves every slot count (the state's deque is read through
    /// its view, whose capacity is known at run time).
    const fn rule(&self) -> Rule {
        Rule {
            limit: self.limit,
            window: self.window,
        }
    }

    /// Admit `cost` if it fits in the window at `now`; otherwise deny, changing
    /// nothing. Errors when `cost > limit`.
    pub fn check(
        &self,
        state: &mut SlidingLogState<N>,
        now: Instant,
        cost: u64,
    ) -> Result<Decision, CostError> {
        self.check_in(state.view_mut(), now, cost)
    }

    /// What [`check`](SlidingLog::check) would decide, changing nothing.
    pub fn peek(
        &self,
        state: &SlidingLogState<N>,
        now: Instant,
        cost: u64,
    ) -> Result<Decision, CostError> {
        self.peek_in(state.view(), now, cost)
    }

    /// [`check`](SlidingLog::check) on a log of any slot count, through
    /// its view: the log's own slots apply, not `N` (one copy of the code
    /// serves a shell holding logs of several sizes).
    ///
    /// ```
    /// use ratebound_core::{Duration, Instant, SlidingLog, SlidingLogState};
    /// let log: SlidingLog = SlidingLog::new(2, Duration::from_secs(10))?;
    /// let mut small = SlidingLogState::<8>::default();
    /// let mut large = SlidingLogState::<256>::default();
    /// for state in [small.view_mut(), large.view_mut()] {
    ///     assert!(log.check_in(state, Instant::from_secs(0), 2)?.allowed);
    /// }
    /// assert!(!log.peek_in(large.view(), Instant::from_secs(9), 1)?.allowed);
    /// # Ok::<(), Box<dyn core::error::Error>>(())
    /// ```
    pub fn check_in(
        &self,
        log: LogViewMut<'_>,
        now: Instant,
        cost: u64,
    ) -> Result<Decision, CostError> {
        self.rule().check(log.entries, log.last, now, cost)
    }

    /// [`peek`](SlidingLog::peek) on a log of any slot count.
    pub fn peek_in(
        &self,
        log: LogView<'_>,
        now: Instant,
        cost: u64,
    ) -> Result<Decision, CostError> {
        self.rule()
            .decide(log.entries, log.last, now, cost)
            .map(|(d, _, _)| d)
    }

    /// [`Limiter::is_idle`] on a log of any slot count: nothing in it counts
    /// at `now`.
    pub fn is_idle_in(&self, log: LogView<'_>, now: Instant) -> bool {
        log.entries
            .back()
            .is_none_or(|e| e.at.saturating_add(self.window) <= now.as_micros())
    }
}

impl<const N: usize> Limiter for SlidingLog<N> {
    type State = SlidingLogState<N>;
    fn check(
        &self,
        state: &mut Self::State,
        now: Instant,
        cost: u64,
    ) -> Result<Decision, CostError> {
        SlidingLog::check(self, state, now, cost)
    }
    fn peek(&self, state: &Self::State, now: Instant, cost: u64) -> Result<Decision, CostError> {
        SlidingLog::peek(self, state, now, cost)
    }
    fn is_idle(&self, state: &Self::State, now: Instant) -> bool {
        self.is_idle_in(state.view(), now)
    }
}

#[cfg(test)]
mod tests;
