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

use heapless::deque::DequeView;
use heapless::Deque;

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
            if e.at < prev || e.at > last {
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
        self.rule()
            .check(state.entries.as_mut_view(), &mut state.last, now, cost)
    }

    /// What [`check`](SlidingLog::check) would decide, changing nothing.
    pub fn peek(
        &self,
        state: &SlidingLogState<N>,
        now: Instant,
        cost: u64,
    ) -> Result<Decision, CostError> {
        self.rule()
            .decide(state.entries.as_view(), state.last, now, cost)
            .map(|(d, _, _)| d)
    }
}

/// A sliding log's limit and window (µs), deciding on a log of any size.
#[derive(Clone, Copy)]
struct Rule {
    limit: u64,
    window: u64,
}

impl Rule {
    /// Expired entries at the front, and the live total. Entries are in time
    /// order when core wrote them; in a hand-made state an expired entry behind
    /// a live one keeps counting (conservative) until it reaches the front.
    fn scan(&self, entries: &DequeView<LogEntry>, now: u64) -> (usize, u64) {
        let mut expired = 0;
        let mut used = 0u64;
        let mut prefix = true;
        for e in entries.iter() {
            if prefix && e.at.saturating_add(self.window) <= now {
                expired += 1;
            } else {
                prefix = false;
                used = used.saturating_add(e.cost);
            }
        }
        (expired, used)
    }

    fn decide(
        &self,
        entries: &DequeView<LogEntry>,
        last: u64,
        now: Instant,
        cost: u64,
    ) -> Result<(Decision, usize, Option<u64>), CostError> {
        if cost > self.limit {
            return Err(CostError::InsufficientCapacity {
                cost,
                capacity: self.limit,
            });
        }
        let n = now.as_micros().max(last);
        let (expired, used) = self.scan(entries, n);
        let live = entries.storage_len() - expired;
        let newest = entries.back().map(|e| e.at);
        let room = self.limit.saturating_sub(used);
        if cost == 0 || cost <= room {
            let push_at = if cost == 0 {
                None
            } else {
                Some(newest.map_or(n, |b| if b > n { b } else { n }))
            };
            let last = push_at.or(if live > 0 { newest } else { None });
            let d = Decision {
                allowed: true,
                remaining: room - cost,
                limit: self.limit,
                reset_at: last.map_or(now, |at| {
                    Instant::from_micros(at.saturating_add(self.window))
                }),
                retry_at: now,
            };
            return Ok((d, expired, push_at));
        }
        // Denied: walk the live entries oldest first until enough expires.
        let mut freed = 0u64;
        let mut retry = n;
        for e in entries.iter().skip(expired) {
            freed = freed.saturating_add(e.cost);
            if used.saturating_sub(freed).saturating_add(cost) <= self.limit {
                retry = e.at.saturating_add(self.window);
                break;
            }
        }
        let d = Decision {
            allowed: false,
            remaining: room,
            limit: self.limit,
            reset_at: Instant::from_micros(newest.map_or(n, |b| b.saturating_add(self.window))),
            retry_at: Instant::from_micros(retry),
        };
        Ok((d, expired, None))
    }

    fn check(
        &self,
        entries: &mut DequeView<LogEntry>,
        last: &mut u64,
        now: Instant,
        cost: u64,
    ) -> Result<Decision, CostError> {
        let (d, expired, push_at) = self.decide(entries, *last, now, cost)?;
        if !d.allowed {
            // A denial writes nothing (expired entries are dropped, and the
            // latest time recorded, by the next admitted check).
            return Ok(d);
        }
        for _ in 0..expired {
            entries.pop_front();
        }
        if let Some(at) = push_at {
            if entries.is_full() && !merge_closest(entries) {
                // One slot and it is taken: the new unit joins that entry,
                // which moves to now (it counts longer, never shorter).
                if let Some(e) = entries.back_mut() {
                    e.at = at;
                    e.cost = e.cost.saturating_add(cost);
                }
            } else {
                // Cannot fail: a slot is free (or was just freed by the merge).
                let _ = entries.push_back(LogEntry { at, cost });
            }
        }
        *last = (*last).max(now.as_micros());
        Ok(d)
    }
}

/// Of entries at times `ats` (oldest first), the index `i` of the adjacent
/// pair `(i, i + 1)` closest in time (the oldest pair on a tie): the pair a
/// full log merges into the later entry, so that a unit counts for longer,
/// never shorter. Shared by the sliding log and model quotas.
pub(crate) fn closest_pair(ats: impl Iterator<Item = u64>) -> Option<usize> {
    let mut best: Option<(usize, u64)> = None;
    let mut prev: Option<u64> = None;
    for (i, at) in ats.enumerate() {
        if let Some(p) = prev {
            let gap = at.saturating_sub(p);
            if best.is_none_or(|(_, g)| gap < g) {
                best = Some((i - 1, gap));
            }
        }
        prev = Some(at);
    }
    best.map(|(i, _)| i)
}

/// Merge the pair [`closest_pair`] picks into its later entry, in place;
/// false when there is no pair (a single entry).
fn merge_closest(entries: &mut DequeView<LogEntry>) -> bool {
    let Some(i) = closest_pair(entries.iter().map(|e| e.at)) else {
        return false;
    };
    let cost = entries.get(i).map_or(0, |e| e.cost);
    if let Some(later) = entries.get_mut(i + 1) {
        later.cost = later.cost.saturating_add(cost);
    }
    // Carry entry `i` to the front (the older ones move up one, in order),
    // then drop it.
    for j in (1..=i).rev() {
        entries.swap(j - 1, j);
    }
    entries.pop_front();
    true
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
        state
            .entries
            .back()
            .is_none_or(|e| e.at.saturating_add(self.window) <= now.as_micros())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(us: u64) -> Instant {
        Instant::from_micros(us)
    }

    #[test]
    fn window_edges_are_exact() {
        let l: SlidingLog<4> = SlidingLog::new(2, Duration::from_micros(100)).unwrap();
        let mut s = SlidingLogState::default();
        assert!(l.check(&mut s, t(1_000), 1).unwrap().allowed);
        assert!(l.check(&mut s, t(1_050), 1).unwrap().allowed);
        let d = l.check(&mut s, t(1_099), 1).unwrap();
        assert_eq!(
            (d.allowed, d.retry_at, d.reset_at),
            (false, t(1_100), t(1_150))
        );
        assert!(l.check(&mut s, t(1_100), 1).unwrap().allowed);
        assert!(!l.check(&mut s, t(1_149), 1).unwrap().allowed);
    }

    #[test]
    fn slots_never_lower_the_limit() {
        // 2 slots, limit 100: every unit-cost request up to the limit fits,
        // and remaining says so; merged entries count until the later one
        // leaves the window.
        let l: SlidingLog<2> = SlidingLog::new(100, Duration::from_micros(10)).unwrap();
        let mut s = SlidingLogState::default();
        assert_eq!(l.check(&mut s, t(0), 1).unwrap().remaining, 99);
        assert_eq!(l.check(&mut s, t(1), 1).unwrap().remaining, 98);
        for i in 2..100 {
            let d = l.check(&mut s, t(2 + i % 3), 1).unwrap();
            assert!(d.allowed && d.remaining == 99 - i, "request {i}: {d:?}");
        }
        assert_eq!(s.entries().count(), 2);
        let d = l.check(&mut s, t(5), 1).unwrap();
        assert!(!d.allowed);
        // The entry at 0 was merged forward: nothing comes back before t=11.
        assert!(d.retry_at >= t(11), "{d:?}");
        assert!(l.peek(&s, d.retry_at, 1).unwrap().allowed);
    }

    #[test]
    fn one_slot_still_counts_every_unit() {
        // Found in review: with one slot there is no pair to merge; the new
        // unit must join the entry, not vanish.
        let l: SlidingLog<1> = SlidingLog::new(3, Duration::from_micros(10)).unwrap();
        let mut s = SlidingLogState::default();
        for i in 0..3 {
            assert!(l.check(&mut s, t(i), 1).unwrap().allowed, "unit {i}");
        }
        let d = l.check(&mut s, t(3), 1).unwrap();
        assert!(!d.allowed);
        assert_eq!(d.retry_at, t(12)); // all three moved to t=2
        assert!(l.check(&mut s, t(12), 3).unwrap().allowed);
    }

    #[test]
    fn a_denial_writes_nothing() {
        // Found by the sliding_log fuzz target: a denial used to drop expired
        // entries and advance `last`.
        let l: SlidingLog<4> = SlidingLog::new(7, Duration::from_micros(10)).unwrap();
        let mut s = SlidingLogState::default();
        assert!(l.check(&mut s, t(0), 7).unwrap().allowed);
        let before = s.clone();
        assert!(!l.check(&mut s, t(5), 1).unwrap().allowed);
        assert_eq!(s, before);
    }

    #[test]
    fn backwards_time_after_expiry_grants_nothing() {
        // Regression: check(0), check(10, cost 0) drops the entry, then a
        // step back to 5 must not open a second slot in [0, 10).
        let l: SlidingLog<4> = SlidingLog::new(1, Duration::from_micros(10)).unwrap();
        let mut s = SlidingLogState::default();
        assert!(l.check(&mut s, t(0), 1).unwrap().allowed);
        assert!(l.check(&mut s, t(10), 0).unwrap().allowed);
        assert!(
            l.check(&mut s, t(5), 1).unwrap().allowed,
            "treated as t = 10"
        );
        assert!(!l.check(&mut s, t(15), 1).unwrap().allowed);
        assert_eq!(s.entries().next().map(|e| e.at), Some(10));
    }

    #[test]
    fn backwards_time_records_at_newest() {
        let l: SlidingLog<4> = SlidingLog::new(3, Duration::from_micros(10)).unwrap();
        let mut s = SlidingLogState::default();
        l.check(&mut s, t(100), 1).unwrap();
        l.check(&mut s, t(50), 1).unwrap();
        let ats: heapless::Vec<u64, 4> = s.entries().map(|e| e.at).collect();
        assert_eq!(&ats[..], &[100, 100]);
        // At 105 both still count.
        assert_eq!(l.peek(&s, t(105), 0).unwrap().remaining, 1);
    }

    #[test]
    fn zero_capacity_log_is_rejected() {
        assert!(SlidingLog::<0>::new(1, Duration::from_secs(1)).is_err());
        assert!(SlidingLog::<1>::new(0, Duration::from_secs(1)).is_err());
        assert!(SlidingLog::<1>::new(1, Duration::ZERO).is_err());
    }
}
