//! Admission, settlement and peeking: the rules of the module docs.

use heapless::Vec;

use super::{
    in_flight_retry, Blocked, CountState, ModelDecision, ModelHold, ModelQuota, ModelState,
    Outcome, Settled, Window, LOG_SLOTS,
};
use crate::sliding_log::closest_pair;
use crate::time::MAX_SAFE_INTEGER;
use crate::{Decision, Gcra, Instant, LogEntry, MAX_TICKS};

type Log = Vec<LogEntry, LOG_SLOTS>;

/// Units the log counts (after pruning: the live ones).
fn used(log: &Log) -> u64 {
    log.iter().fold(0, |a, e| a.saturating_add(e.cost))
}

/// Drop entries that have left the window at `now`.
fn prune(log: &mut Log, now: u64, period: u64) {
    log.retain(|e| e.at.saturating_add(period) > now);
}

/// Log one unit at `now` (never earlier than any entry: callers pass the
/// clamped time). A full log first merges its two closest adjacent entries
/// into the later one: a unit then counts longer, never shorter.
fn record(log: &mut Log, now: u64) {
    if let Some(e) = log.last_mut() {
        if e.at == now {
            e.cost = e.cost.saturating_add(1);
            return;
        }
    }
    if log.is_full() {
        merge_closest(log);
    }
    let _ = log.push(LogEntry { at: now, cost: 1 });
}

/// Merge the pair the sliding log would merge ([`closest_pair`]).
fn merge_closest(log: &mut Log) {
    let Some(i) = closest_pair(log.iter().map(|e| e.at)) else {
        return;
    };
    let cost = log.get(i).map_or(0, |e| e.cost);
    if let Some(next) = log.get_mut(i + 1) {
        next.cost = next.cost.saturating_add(cost);
        // `i + 1` exists, so `i` is in range.
        log.remove(i);
    }
}

/// When `deficit` units will have left the window (oldest first).
fn frees_at(log: &Log, period: u64, deficit: u64) -> Option<u64> {
    let mut acc = 0u64;
    for e in log {
        acc = acc.saturating_add(e.cost);
        if acc >= deficit {
            return Some(e.at.saturating_add(period).min(MAX_TICKS));
        }
    }
    None
}

fn denied(limit: u64, remaining: u64, reset_at: Instant, retry_at: Instant) -> Decision {
    Decision {
        allowed: false,
        remaining,
        limit,
        reset_at: reset_at.max(retry_at),
        retry_at,
    }
}

impl ModelQuota {
    /// Bring `st` to `now`: clamp time, sweep expired holds, prune the logs.
    fn sync(&self, st: &mut ModelState, now: Instant) -> Instant {
        let n = now.as_micros().max(st.last).min(MAX_TICKS);
        st.last = n;
        st.holds.retain(|h| h.expires > n);
        if self.window == Window::Sliding {
            let p = self.period.as_micros();
            prune(&mut st.total.log, n, p);
            prune(&mut st.success.log, n, p);
        }
        Instant::from_micros(n)
    }

    /// One count as a request sees it: room for `held` requests in flight
    /// plus `extra` more. `which` picks the count (and names the denial).
    fn view(
        &self,
        which: Blocked,
        st: &ModelState,
        now: Instant,
        held: u64,
        extra: u64,
    ) -> (Decision, Option<Blocked>) {
        let (count, bucket, max) = match which {
            Blocked::Total => (
                &st.total,
                self.total_bucket.as_ref(),
                self.total.unwrap_or(0),
            ),
            _ => (&st.success, self.success_bucket.as_ref(), self.success),
        };
        match bucket {
            Some(g) => bucket_view(g, count, now, held, extra, which),
            None => self.sliding_view(count, max, now, held, extra, which),
        }
    }

    fn sliding_view(
        &self,
        count: &CountState,
        max: u64,
        now: Instant,
        held: u64,
        extra: u64,
        which: Blocked,
    ) -> (Decision, Option<Blocked>) {
        let n = now.as_micros();
        let period = self.period.as_micros();
        let used = used(&count.log);
        let want = used.saturating_add(held).saturating_add(extra);
        let newest = count.log.last().map_or(n, |e| e.at.saturating_add(period));
        if want <= max {
            // What this request (and every one in flight) adds leaves the
            // window a period after it is counted: now at the earliest.
            let reset = if held + extra > 0 {
                newest.max(n.saturating_add(period))
            } else {
                newest
            };
            return (
                Decision {
                    allowed: true,
                    remaining: max - want,
                    limit: max,
                    reset_at: Instant::from_micros(reset),
                    retry_at: now,
                },
                None,
            );
        }
        let frees = frees_at(&count.log, period, want - max);
        let alone_fits = used.saturating_add(extra) <= max;
        let remaining = max.saturating_sub(used.saturating_add(held));
        let reset = Instant::from_micros(newest);
        if held > 0 && (alone_fits || frees.is_none()) {
            let cap = in_flight_retry(now);
            let at = frees.map_or(cap, |f| Instant::from_micros(f).min(cap));
            return (denied(max, remaining, reset, at), Some(Blocked::InFlight));
        }
        let at = frees.map_or(in_flight_retry(now), Instant::from_micros);
        (denied(max, remaining, reset, at), Some(which))
    }

    /// Admit one request if both counts have room (all or nothing): log one
    /// total unit and a hold whose id the decision carries.
    pub fn admit(&self, st: &mut ModelState, now: Instant) -> ModelDecision {
        let now = self.sync(st, now);
        let held = st.in_flight();
        let total = self.total.map(|_| self.view(Blocked::Total, st, now, 0, 1));
        let mut success = self.view(Blocked::Success, st, now, held, 1);
        if success.1.is_none() && st.holds.is_full() {
            let first = st.holds.iter().map(|h| h.expires).min().unwrap_or(0);
            let at = Instant::from_micros(first).min(in_flight_retry(now));
            let reset = success.0.reset_at;
            success = (denied(self.success, 0, reset, at), Some(Blocked::InFlight));
        }
        let blocked = match (total.and_then(|t| t.1), success.1) {
            (Some(t), Some(s)) => {
                let later = total.is_some_and(|t| t.0.retry_at >= success.0.retry_at);
                Some(if later { t } else { s })
            }
            (t, s) => t.or(s),
        };
        let mut decision = ModelDecision {
            total: total.map(|t| t.0),
            success: success.0,
            now,
            hold: None,
            in_flight: held,
            blocked,
        };
        if blocked.is_some() {
            // Report the counts that had room as they stand (nothing taken).
            if let Some(t) = decision.total.as_mut().filter(|t| t.allowed) {
                *t = self.view(Blocked::Total, st, now, 0, 0).0;
            }
            if decision.success.allowed {
                decision.success = self.view(Blocked::Success, st, now, held, 0).0;
            }
            return decision;
        }
        let n = now.as_micros();
        if self.total.is_some() {
            match self.total_bucket.as_ref() {
                Some(g) => {
                    let _ = g.check(&mut st.total.bucket, now, 1);
                }
                None => record(&mut st.total.log, n),
            }
        }
        // Ids rise with time, so a state created afresh (after eviction or
        // expiry) never reuses an id an old late settle could still name.
        let id = st.next_id.max(n);
        st.next_id = if id >= MAX_SAFE_INTEGER { 0 } else { id + 1 };
        let expires = n.saturating_add(self.hold_ttl.as_micros()).min(MAX_TICKS);
        let _ = st.holds.push(ModelHold { id, expires });
        decision.hold = Some(id);
        decision.in_flight = held + 1;
        decision
    }

    /// Settle the request holding `hold` with its outcome: the hold goes; a
    /// success is counted at `now` whatever the count holds (a success that
    /// happened is never dropped), even when its hold had expired.
    pub fn settle(
        &self,
        st: &mut ModelState,
        now: Instant,
        hold: u64,
        outcome: Outcome,
    ) -> Settled {
        let now = self.sync(st, now);
        let found = match st.holds.iter().position(|h| h.id == hold) {
            Some(i) => {
                st.holds.remove(i);
                true
            }
            None => false,
        };
        if outcome == Outcome::Success {
            match self.success_bucket.as_ref() {
                Some(g) => g.charge(&mut st.success.bucket, now, 1),
                None => record(&mut st.success.log, now.as_micros()),
            }
        }
        if found {
            Settled::Held
        } else {
            Settled::Lapsed
        }
    }

    /// What [`admit`](ModelQuota::admit) would decide, changing nothing
    /// (the decision carries no hold).
    pub fn peek(&self, st: &ModelState, now: Instant) -> ModelDecision {
        let mut copy = st.clone();
        let mut d = self.admit(&mut copy, now);
        if d.hold.take().is_some() {
            d.in_flight -= 1;
        }
        d
    }

    /// True when the state holds nothing a fresh one would not: no hold
    /// live, every logged unit out of the window, both buckets full. Limits
    /// of any scope with the same period agree on this.
    pub fn is_idle(&self, st: &ModelState, now: Instant) -> bool {
        let n = now.as_micros().max(st.last);
        let p = self.period.as_micros();
        let gone = |c: &CountState| {
            c.log.iter().all(|e| e.at.saturating_add(p) <= n)
                && (c.bucket.tat < n || (c.bucket.tat == n && c.bucket.rem == 0))
        };
        st.holds.iter().all(|h| h.expires <= n) && gone(&st.total) && gone(&st.success)
    }
}

fn bucket_view(
    g: &Gcra,
    count: &CountState,
    now: Instant,
    held: u64,
    extra: u64,
    which: Blocked,
) -> (Decision, Option<Blocked>) {
    let cap = g.capacity();
    let st = &count.bucket;
    let want = held.saturating_add(extra);
    // Costs at most the capacity cannot be refused; should one be, it denies.
    let peek = |cost: u64| {
        g.peek(st, now, cost)
            .unwrap_or(denied(cap, 0, now, Instant::MAX))
    };
    let full = (want <= cap).then(|| peek(want));
    if let Some(d) = full.filter(|d| d.allowed) {
        return (d, None);
    }
    let alone = peek(extra);
    let remaining = peek(0).remaining.saturating_sub(held);
    if held > 0 && alone.allowed {
        let cap_at = in_flight_retry(now);
        let at = full.map_or(cap_at, |d| d.retry_at.min(cap_at));
        return (
            denied(cap, remaining, alone.reset_at, at),
            Some(Blocked::InFlight),
        );
    }
    let at = full.map_or(alone.retry_at, |d| d.retry_at);
    (denied(cap, remaining, alone.reset_at, at), Some(which))
}
