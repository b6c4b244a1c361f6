//! The sliding log's rule, written once for every slot count: it decides
//! on the state's deque through its view (capacity known at run time), and
//! [`LogView`] / [`LogViewMut`] hand that view to code outside core that
//! holds logs of several sizes.

use heapless::deque::DequeView;

use super::LogEntry;
use crate::{CostError, Decision, Instant};

/// A [`SlidingLogState`](super::SlidingLogState) of any slot count, read:
/// what [`SlidingLog::peek_in`](super::SlidingLog::peek_in) and
/// [`is_idle_in`](super::SlidingLog::is_idle_in) decide on, so code
/// holding logs of several sizes is written once.
#[derive(Clone, Copy)]
pub struct LogView<'a> {
    pub(super) entries: &'a DequeView<LogEntry>,
    pub(super) last: u64,
}

/// A [`SlidingLogState`](super::SlidingLogState) of any slot count, to
/// change in place: what [`SlidingLog::check_in`](super::SlidingLog::check_in)
/// decides on.
pub struct LogViewMut<'a> {
    pub(super) entries: &'a mut DequeView<LogEntry>,
    pub(super) last: &'a mut u64,
}

impl LogView<'_> {
    /// The entries, oldest first (expired ones may linger until the next check).
    pub fn entries(&self) -> impl Iterator<Item = &LogEntry> + '_ {
        self.entries.iter()
    }
    /// The `now` of the latest admitted check (µs).
    pub fn last(&self) -> u64 {
        self.last
    }
    /// The most entries the log holds (its `N`).
    pub fn slots(&self) -> usize {
        self.entries.storage_capacity()
    }
}

impl LogViewMut<'_> {
    /// The same state, read.
    pub fn as_view(&self) -> LogView<'_> {
        LogView {
            entries: self.entries,
            last: *self.last,
        }
    }

    /// Replace the state with `last` and `entries` (e.g. persisted
    /// elsewhere), as [`SlidingLogState::from_parts`](super::SlidingLogState::from_parts)
    /// builds one; false, changing nothing, when they could not have come
    /// from this log: more entries than its slots, entries out of time
    /// order, or an entry later than `last`. `entries` is read twice,
    /// through a clone to check and then to store, so its clone must yield
    /// the same items (as every iterator over a collection does).
    pub fn restore<I>(&mut self, last: u64, entries: I) -> bool
    where
        I: IntoIterator<Item = LogEntry>,
        I::IntoIter: Clone,
    {
        let entries = entries.into_iter();
        let mut prev = 0;
        let mut n = 0;
        for e in entries.clone() {
            if !follows(prev, e, last) {
                return false;
            }
            prev = e.at;
            n += 1;
        }
        if n > self.entries.storage_capacity() {
            return false;
        }
        self.entries.clear();
        for e in entries {
            // Cannot fail: counted above (the same items, see above).
            let _ = self.entries.push_back(e);
        }
        *self.last = last;
        true
    }
}

/// True when `e` may follow an entry at `prev` in a log whose latest
/// admitted check was at `last`.
pub(super) fn follows(prev: u64, e: LogEntry, last: u64) -> bool {
    e.at >= prev && e.at <= last
}

/// A sliding log's limit and window (µs), deciding on a log of any size.
#[derive(Clone, Copy)]
pub(super) struct Rule {
    pub(super) limit: u64,
    pub(super) window: u64,
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

    pub(super) fn decide(
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

    pub(super) fn check(
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
    // Move the older ones up one, in order, over entry `i`, then drop the
    // front (by copies, not `swap`, whose bounds asserts would carry
    // panic messages into small builds).
    for j in (1..=i).rev() {
        if let Some(older) = entries.get(j - 1).copied() {
            if let Some(e) = entries.get_mut(j) {
                *e = older;
            }
        }
    }
    entries.pop_front();
    true
}
