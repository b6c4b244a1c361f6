//! Budget windows: peek = try_spend, holds never let checked usage exceed a
//! limit, alerts fire at most once per window, denials name a future
//! retry_at at which the same spend succeeds, and nothing panics.
#![no_main]

use std::collections::HashSet;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ratebound_core::budget::{Admission, AlertKind, Budget, BudgetConfig, BudgetState, Dimension, Horizon, Reservation, Usage};
use ratebound_core::{Duration, Instant};
use ratebound_fuzz::{Dt, T0};

#[derive(Arbitrary, Debug, Clone, Copy)]
struct Amt {
    tokens: u16,
    cost: u16,
}

impl Amt {
    fn usage(self) -> Usage {
        Usage::request(u64::from(self.tokens), u64::from(self.cost))
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    Reserve(Dt, Amt),
    /// Settle hold #i with a fraction (in 1/256) of its estimate.
    Settle(Dt, u8, u8),
    Release(Dt, u8),
    Spend(Dt, Amt),
    /// Unchecked usage (breaks the "never exceeds" invariant on purpose).
    Record(Dt, Amt),
    Status(Dt),
}

#[derive(Arbitrary, Debug)]
struct Input {
    maxes: [u16; 4],
    horizons: [u8; 4],
    thresholds: (u16, u16),
    throttle: Option<(u16, u16)>,
    offset_hours: i8,
    ttl_ms: u16,
    ops: Vec<Op>,
}

fuzz_target!(|inp: Input| {
    let horizon = |h: u8| match h % 5 {
        0 => Horizon::MINUTE,
        1 => Horizon::HOUR,
        2 => Horizon::DAY,
        3 => Horizon::CalendarMonth,
        _ => Horizon::Fixed(Duration::from_millis(u64::from(h) * 7 + 1)),
    };
    let dims = [Dimension::Tokens, Dimension::Cost, Dimension::Requests, Dimension::Tokens];
    let mut cfg = BudgetConfig::new().utc_offset_secs(i32::from(inp.offset_hours % 19) * 3_600).hold_ttl(Duration::from_millis(u64::from(inp.ttl_ms) + 1));
    for i in 0..4 {
        cfg = cfg.limit(dims[i], horizon(inp.horizons[i]), u64::from(inp.maxes[i]));
    }
    let (a, b) = inp.thresholds;
    cfg = cfg.alert_threshold_bp(a % 10_000 + 1);
    if b % 10_000 + 1 > a % 10_000 + 1 {
        cfg = cfg.alert_threshold_bp(b % 10_000 + 1);
    }
    if let Some((after, delay)) = inp.throttle {
        cfg = cfg.auto_throttle(after % 10_000 + 1, Duration::from_millis(u64::from(delay)));
    }
    let Ok(budget) = Budget::new(cfg) else { return };
    let mut st = BudgetState::<8>::default();
    let mut now = Instant::from_micros(T0);
    let mut holds: Vec<(u64, Usage, Instant)> = Vec::new();
    let mut checked_only = true; // no record, no upward settle, no late settle yet
    let mut fired = HashSet::new();
    for op in inp.ops.iter().take(200) {
        let mut alerts = Vec::new();
        match *op {
            Op::Reserve(dt, amt) => {
                now = dt.apply(now);
                if let Ok(r) = budget.reserve(&mut st, now, amt.usage()) {
                    alerts.extend(r.alerts);
                    match r.admission {
                        Admission::Granted(h) => holds.push((h.id, h.usage, h.expires)),
                        Admission::Denied(d) => assert!(d.retry_at > now.max(Instant::from_micros(st.last)) || d.retry_at == Instant::MAX),
                    }
                }
            }
            Op::Settle(dt, i, frac) if !holds.is_empty() => {
                now = dt.apply(now);
                let (id, est, expires) = holds.remove(usize::from(i) % holds.len());
                let actual = Usage { requests: est.requests, tokens: est.tokens * u64::from(frac) / 200, cost: est.cost * u64::from(frac) / 200 };
                if frac > 200 {
                    checked_only = false;
                }
                match budget.settle(&mut st, now, Reservation { id, usage: est, expires }, actual) {
                    Ok(s) => {
                        if s.late {
                            checked_only = false;
                        }
                        alerts.extend(s.alerts);
                    }
                    // A lapsed hold may be evicted to make room for new ones (documented).
                    Err(e) => assert!(Instant::from_micros(st.last) >= expires, "live hold unknown: {e}"),
                }
            }
            Op::Release(dt, i) if !holds.is_empty() => {
                now = dt.apply(now);
                let (id, est, expires) = holds.remove(usize::from(i) % holds.len());
                if let Err(e) = budget.release(&mut st, now, Reservation { id, usage: est, expires }) {
                    assert!(Instant::from_micros(st.last) >= expires, "live hold unknown: {e}");
                }
            }
            Op::Spend(dt, amt) => {
                now = dt.apply(now);
                let peeked = budget.peek(&st, now, amt.usage());
                let spent = budget.try_spend(&mut st, now, amt.usage());
                assert_eq!(peeked.is_ok(), spent.is_ok());
                if let (Ok(p), Ok(s)) = (peeked, spent) {
                    assert_eq!(p, s.denied, "peek and try_spend disagree");
                    if let Some(d) = s.denied {
                        // At retry_at the same spend fits if nothing else happens.
                        if d.retry_at < Instant::MAX {
                            assert_eq!(budget.peek(&st, d.retry_at, amt.usage()).unwrap(), None, "still denied at retry_at");
                        }
                    }
                    alerts.extend(s.alerts);
                }
            }
            Op::Record(dt, amt) => {
                now = dt.apply(now);
                checked_only = false;
                alerts.extend(budget.record(&mut st, now, amt.usage()));
            }
            Op::Status(dt) | Op::Settle(dt, ..) | Op::Release(dt, ..) => {
                now = dt.apply(now);
                let s = budget.status(&st, now);
                assert!(s.holds <= 8);
            }
        }
        for al in alerts {
            assert!(fired.insert((al.limit, al.window_start, al.kind, al.threshold_bp)), "alert fired twice: {al:?}");
            if al.kind == AlertKind::Threshold {
                assert!(al.utilization_bp >= u64::from(al.threshold_bp));
            }
        }
        if checked_only {
            for l in budget.status(&st, now).limits {
                assert!(l.used + l.reserved <= l.limit.max, "{l:?}");
            }
        }
    }
});
