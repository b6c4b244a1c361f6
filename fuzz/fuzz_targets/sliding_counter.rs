//! Sliding counter: peek = check, at most `limit` per aligned window,
//! retry_at exact, and going back in time never grants more.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ratebound_core::{Duration, Instant, SlidingCounter, SlidingCounterState};
use ratebound_fuzz::{check_decision, monotone_in_time, peek_check_agree, Dt, T0};

fuzz_target!(|inp: (u64, u64, bool, Vec<(Dt, u64)>)| {
    let (limit, window, small, ops) = inp;
    let (limit, window) = if small { (limit % 50 + 1, window % 10_000_000 + 1) } else { (limit, window) };
    let Ok(c) = SlidingCounter::new(limit, Duration::from_micros(window)) else { return };
    let w = c.window().as_micros();
    let mut s = SlidingCounterState::default();
    let mut now = Instant::from_micros(T0);
    let mut per_window: std::collections::HashMap<u64, u64> = Default::default();
    for &(dt, cost) in ops.iter().take(300) {
        now = dt.apply(now);
        let cost = if small { cost % (limit + 2) } else { cost };
        match peek_check_agree(&c, &mut s, now, cost) {
            Some(d) => {
                check_decision(&d, now, limit);
                if d.allowed && cost > 0 {
                    let start = now.as_micros().max(s.start) / w;
                    let n = per_window.entry(start).or_default();
                    *n += cost;
                    assert!(*n <= limit, "aligned window over limit");
                } else if !d.allowed && d.retry_at < Instant::MAX {
                    assert!(c.peek(&s, d.retry_at, cost).unwrap().allowed);
                    assert!(!c.peek(&s, d.retry_at - Duration::from_micros(1), cost).unwrap().allowed);
                }
            }
            None => assert!(cost > limit),
        }
        monotone_in_time(&c, &s, now);
    }
});
