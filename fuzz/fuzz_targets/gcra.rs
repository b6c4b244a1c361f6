//! GCRA: peek = check, denials write nothing, retry_at exact, refund bounds,
//! and over any interval at most capacity + rate × span admitted.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ratebound_core::{Duration, Gcra, GcraState, Instant};
use ratebound_fuzz::{check_decision, monotone_in_time, peek_check_agree, Dt, T0};

#[derive(Arbitrary, Debug)]
enum Op {
    Check(Dt, u64),
    AtMost(Dt, u64),
    Refund(Dt, u64),
}

#[derive(Arbitrary, Debug)]
struct Input {
    capacity: u64,
    amount: u64,
    period: u64,
    small: bool,
    ops: Vec<Op>,
}

fuzz_target!(|inp: Input| {
    let (capacity, amount, period) = if inp.small {
        (inp.capacity % 64 + 1, inp.amount % 5_000 + 1, inp.period % 10_000_000 + 1)
    } else {
        (inp.capacity, inp.amount, inp.period)
    };
    let Ok(g) = Gcra::new(capacity, amount, Duration::from_micros(period)) else { return };
    // The period as core holds it: `Duration` saturates at 2^52 − 1 µs.
    let period = g.period().as_micros();
    let mut s = GcraState::default();
    let mut now = Instant::from_micros(T0);
    // (now, cost) of admissions since the last refund, for the interval bound.
    let mut admitted: Vec<(u64, u64)> = Vec::new();
    for op in inp.ops.iter().take(300) {
        match *op {
            Op::Check(dt, cost) => {
                now = dt.apply(now);
                let cost = if inp.small { cost % (capacity + 2) } else { cost };
                match peek_check_agree(&g, &mut s, now, cost) {
                    Some(d) => {
                        check_decision(&d, now, capacity);
                        if d.allowed {
                            admitted.push((now.as_micros(), cost));
                        } else if d.retry_at < Instant::MAX {
                            assert!(g.peek(&s, d.retry_at, cost).unwrap().allowed, "not allowed at retry_at");
                            assert!(!g.peek(&s, d.retry_at - Duration::from_micros(1), cost).unwrap().allowed, "allowed before retry_at");
                        }
                    }
                    None => assert!(cost > capacity),
                }
            }
            Op::AtMost(dt, n) => {
                now = dt.apply(now);
                let before = g.peek(&s, now, 0).unwrap().remaining;
                let t = g.check_at_most(&mut s, now, n);
                assert!(t.taken <= n && t.taken <= before);
                assert_eq!(t.taken, n.min(before));
                if t.taken > 0 {
                    admitted.push((now.as_micros(), t.taken));
                }
            }
            Op::Refund(dt, n) => {
                now = dt.apply(now);
                let before = g.peek(&s, now, 0).unwrap().remaining;
                let d = g.refund(&mut s, now, n);
                assert!(d.remaining <= capacity && d.remaining >= before && d.remaining <= before.saturating_add(n));
                admitted.clear();
            }
        }
        monotone_in_time(&g, &s, now);
    }
    admitted.sort_unstable();
    for i in 0..admitted.len() {
        let mut sum = 0u128;
        for j in i..admitted.len() {
            sum += u128::from(admitted[j].1);
            let span = u128::from(admitted[j].0 - admitted[i].0);
            assert!(
                sum * u128::from(period) <= u128::from(capacity) * u128::from(period) + u128::from(amount) * span,
                "{sum} admitted in {span} µs"
            );
        }
    }
});
