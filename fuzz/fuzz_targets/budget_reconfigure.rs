//! Budgets whose config changes between operations (core's carry-over
//! rule: windows follow their limits by kind): nothing panics, a refused
//! change is refused for the UTC offset alone, every configured limit's
//! `reserved` is what the live holds hold, peek and try_spend agree, and a
//! state deserialized from arbitrary window tags is laid out without panic.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ratebound_core::budget::{Admission, Budget, BudgetConfig, BudgetState, Dimension, Horizon, Reservation, Usage};
use ratebound_core::{ConfigError, Duration, Instant};
use ratebound_fuzz::{Dt, T0};

const POOL: [(Dimension, Horizon); 6] = [
    (Dimension::Tokens, Horizon::MINUTE),
    (Dimension::Tokens, Horizon::DAY),
    (Dimension::Cost, Horizon::DAY),
    (Dimension::Cost, Horizon::CalendarMonth),
    (Dimension::Requests, Horizon::HOUR),
    (Dimension::Requests, Horizon::Fixed(Duration::from_millis(1_500))),
];

#[derive(Arbitrary, Debug)]
struct Config {
    /// Which pool limits, in this order (each index mod 6; repeats set the max again).
    limits: Vec<(u8, u16)>,
    threshold: Option<u16>,
    offset_hours: i8,
}

impl Config {
    fn build(&self) -> BudgetConfig {
        let mut c = BudgetConfig::new()
            .utc_offset_secs(i32::from(self.offset_hours % 3) * 3_600)
            .hold_ttl(Duration::from_secs(30));
        for &(i, max) in self.limits.iter().take(8) {
            let (d, h) = POOL[usize::from(i) % POOL.len()];
            c = c.limit(d, h, u64::from(max));
        }
        if let Some(t) = self.threshold {
            c = c.alert_threshold_bp(t % 10_000 + 1);
        }
        c
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    Reserve(Dt, u16, u16),
    Settle(Dt, u8, u16),
    Release(Dt, u8),
    Spend(Dt, u16, u16),
    Record(Dt, u16),
    Reconfigure(Config),
    /// Overwrite window `i`'s tags with arbitrary values (a corrupt or
    /// foreign state), then carry on.
    Tag(u8, u64, u64),
}

#[derive(Arbitrary, Debug)]
struct Input {
    first: Config,
    ops: Vec<Op>,
}

fuzz_target!(|inp: Input| {
    let Ok(mut budget) = Budget::new(inp.first.build()) else { return };
    let mut st = BudgetState::<8>::default();
    let mut now = Instant::from_micros(T0);
    let mut holds: Vec<(u64, Usage, Instant)> = Vec::new();
    for op in inp.ops.iter().take(150) {
        match op {
            Op::Reserve(dt, t, c) => {
                now = dt.apply(now);
                if let Ok(r) = budget.reserve(&mut st, now, Usage::request(u64::from(*t), u64::from(*c))) {
                    if let Admission::Granted(h) = r.admission {
                        holds.push((h.id, h.usage, h.expires));
                    }
                }
            }
            Op::Settle(dt, i, t) if !holds.is_empty() => {
                now = dt.apply(now);
                let (id, usage, expires) = holds.remove(usize::from(*i) % holds.len());
                let _ = budget.settle(&mut st, now, Reservation { id, usage, expires }, Usage::request(u64::from(*t), 0));
            }
            Op::Release(dt, i) if !holds.is_empty() => {
                now = dt.apply(now);
                let (id, usage, expires) = holds.remove(usize::from(*i) % holds.len());
                let _ = budget.release(&mut st, now, Reservation { id, usage, expires });
            }
            Op::Spend(dt, t, c) => {
                now = dt.apply(now);
                let u = Usage::request(u64::from(*t), u64::from(*c));
                let peeked = budget.peek(&st, now, u);
                let spent = budget.try_spend(&mut st, now, u);
                assert_eq!(peeked.is_ok(), spent.is_ok());
                if let (Ok(p), Ok(s)) = (peeked, spent) {
                    assert_eq!(p, s.denied, "peek and try_spend disagree");
                }
            }
            Op::Record(dt, t) => {
                now = dt.apply(now);
                budget.record(&mut st, now, Usage::request(u64::from(*t), 0));
            }
            Op::Reconfigure(c) => {
                let config = c.build();
                let offset_moved = config.utc_offset_secs != budget.config().utc_offset_secs;
                match budget.reconfigure(config) {
                    Ok(b) => {
                        assert!(!offset_moved, "an offset change was accepted");
                        budget = b;
                    }
                    Err(ConfigError::Invalid { field: "utc_offset_secs", .. }) => assert!(offset_moved),
                    // Else only an invalid config: a zero max.
                    Err(e) => assert!(c.build().limits.iter().any(|l| l.max == 0), "refused: {e}"),
                }
            }
            Op::Tag(i, kind, digest) => {
                if let Some(w) = st.windows.get_mut(usize::from(*i) % 12) {
                    (w.kind, w.limit) = (*kind, *digest);
                }
                // Foreign tags void the reserved invariant until holds settle.
                holds.clear();
                st.holds.clear();
                for w in st.windows.iter_mut() {
                    w.reserved = 0;
                }
            }
            _ => {}
        }
        // Every configured limit holds what the live holds hold.
        let s = budget.status(&st, now);
        let at = now.as_micros().max(st.last);
        for l in &s.limits {
            let held: u64 = st
                .holds
                .iter()
                .filter(|h| !h.lapsed && h.expires > at)
                .map(|h| h.usage.get(l.limit.dimension))
                .sum();
            assert_eq!(l.reserved, held.min(1 << 52), "{:?} reserved", l.limit);
        }
    }
});
