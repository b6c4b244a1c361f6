//! The lock-free GCRA decides exactly as the pure one on every operation.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ratebound_core::{AtomicGcra, Duration, Gcra, GcraState, Instant};
use ratebound_fuzz::{Dt, T0};

#[derive(Arbitrary, Debug)]
enum Op {
    Check(Dt, u64),
    Peek(Dt, u64),
    AtMost(Dt, u64),
    Refund(Dt, u64),
}

fuzz_target!(|inp: (u16, u16, u32, Option<(u64, u64)>, Vec<Op>)| {
    let (capacity, amount, period, start, ops) = inp;
    let Ok(g) = Gcra::new(u64::from(capacity), u64::from(amount), Duration::from_micros(u64::from(period))) else { return };
    // From a full bucket, or from any state core could have written (a TAT
    // below 2^53 µs, `rem` below `a`), as `with_state` restores one.
    let mut s = match start {
        Some((tat, rem)) => GcraState {
            tat: tat % (1 << 53),
            rem: rem % g.reduced_rate().1,
        },
        None => GcraState::default(),
    };
    let Ok(a) = AtomicGcra::with_state(g, s) else {
        assert!(g.reduced_rate().1 > 2048);
        return;
    };
    let mut now = Instant::from_micros(T0);
    for op in ops.iter().take(300) {
        match *op {
            Op::Check(dt, c) => {
                now = dt.apply(now);
                assert_eq!(a.check(now, c), g.check(&mut s, now, c));
            }
            Op::Peek(dt, c) => {
                now = dt.apply(now);
                assert_eq!(a.peek(now, c), g.peek(&s, now, c));
            }
            Op::AtMost(dt, n) => {
                now = dt.apply(now);
                assert_eq!(a.check_at_most(now, n), g.check_at_most(&mut s, now, n));
            }
            Op::Refund(dt, n) => {
                now = dt.apply(now);
                assert_eq!(a.refund(now, n), g.refund(&mut s, now, n));
            }
        }
        assert_eq!(a.state(), s);
    }
});
