//! Sliding log: peek = check, never more than `limit` within one window (by
//! stamp), retry_at exact, and going back in time never grants more.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ratebound_core::{Duration, Instant, SlidingLog, SlidingLogState};
use ratebound_fuzz::{check_decision, monotone_in_time, peek_check_agree, Dt, T0};

fuzz_target!(|inp: (u64, u64, Vec<(Dt, u64)>)| {
    let (limit, window, ops) = inp;
    let limit = limit % 20 + 1;
    let Ok(l) = SlidingLog::<8>::new(limit, Duration::from_micros(window % 5_000_000 + 1)) else { return };
    let w = l.window().as_micros();
    let mut s = SlidingLogState::<8>::default();
    let mut now = Instant::from_micros(T0);
    for &(dt, cost) in ops.iter().take(300) {
        now = dt.apply(now);
        let cost = cost % (limit + 2);
        match peek_check_agree(&l, &mut s, now, cost) {
            Some(d) => {
                check_decision(&d, now, limit);
                if !d.allowed && d.retry_at < Instant::MAX {
                    assert!(l.peek(&s, d.retry_at, cost).unwrap().allowed);
                    assert!(!l.peek(&s, d.retry_at - Duration::from_micros(1), cost).unwrap().allowed);
                }
            }
            None => assert!(cost > limit),
        }
        let entries: Vec<_> = s.entries().copied().collect();
        for e in &entries {
            let in_window: u64 = entries.iter().filter(|x| x.at >= e.at && x.at < e.at.saturating_add(w)).map(|x| x.cost).sum();
            assert!(in_window <= limit);
        }
        assert!(entries.windows(2).all(|p| p[0].at <= p[1].at), "entries out of order");
        monotone_in_time(&l, &s, now);
    }
});
