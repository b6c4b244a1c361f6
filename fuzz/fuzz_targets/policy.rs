//! Policy sets: all-or-nothing (a denial consumes nothing anywhere), and the
//! decision names a denying member with the latest retry_at.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ratebound_core::policy::{bind, check_all};
use ratebound_core::{Duration, Gcra, GcraState, Instant, SlidingCounter, SlidingCounterState, SlidingLog, SlidingLogState};
use ratebound_fuzz::{Dt, T0};

fuzz_target!(|inp: ([u8; 6], Vec<(Dt, u8, u8, u8)>)| {
    let (c, ops) = inp;
    let g = Gcra::new(u64::from(c[0] % 10) + 1, u64::from(c[1]) + 1, Duration::from_millis(u64::from(c[2]) + 1)).unwrap();
    let l: SlidingLog<8> = SlidingLog::new(u64::from(c[3] % 8) + 1, Duration::from_millis(u64::from(c[4]) + 1)).unwrap();
    let k = SlidingCounter::new(u64::from(c[5] % 20) + 1, Duration::from_millis(u64::from(c[4]) * 3 + 1)).unwrap();
    let (mut a, mut b, mut d) = (GcraState::default(), SlidingLogState::<8>::default(), SlidingCounterState::default());
    let mut now = Instant::from_micros(T0);
    for &(dt, x, y, z) in ops.iter().take(200) {
        now = dt.apply(now);
        let (x, y, z) = (u64::from(x % 12), u64::from(y % 10), u64::from(z % 22));
        let before = (a, b.clone(), d);
        let peeks = [g.peek(&a, now, x), l.peek(&b, now, y), k.peek(&d, now, z)];
        let r = check_all(now, &mut [(&mut bind(&g, &mut a), x), (&mut bind(&l, &mut b), y), (&mut bind(&k, &mut d), z)]);
        match r {
            Err(e) => {
                assert!(peeks[e.member].is_err());
                assert_eq!((a, b.clone(), d), before, "an error consumed something");
            }
            Ok(p) if !p.decision.allowed => {
                assert_eq!((a, b.clone(), d), before, "a denial consumed something");
                let i = p.binding.unwrap();
                let denied: Vec<_> = peeks.iter().filter_map(|r| r.as_ref().ok()).filter(|d| !d.allowed).collect();
                assert!(!peeks[i].as_ref().unwrap().allowed);
                assert!(denied.iter().all(|d| d.retry_at <= p.decision.retry_at));
            }
            Ok(p) => assert!(peeks.iter().all(|r| r.as_ref().is_ok_and(|d| d.allowed)) && p.decision.allowed),
        }
    }
});
