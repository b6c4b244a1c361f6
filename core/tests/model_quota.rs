//! Model quotas: the documented bounds, checked as worded, over random traces.

use proptest::prelude::*;
use ratebound_core::model_quota::{
    Blocked, ModelQuota, ModelState, Outcome, Settled, Window, IN_FLIGHT_RETRY,
};
use ratebound_core::{Duration, Instant};

const P: u64 = 1_000_000; // the period, µs

fn quota(window: Window, total: u64, success: u64, ttl: u64) -> ModelQuota {
    ModelQuota::new(
        Some(total),
        success,
        Duration::from_micros(P),
        window,
        Duration::from_micros(ttl),
    )
    .expect("valid quota")
}

/// Settling a success after the clock stepped back (the repro: limit 1 per
/// minute, the settle 100 ms "before" the admission) still counts it.
#[test]
fn a_success_settled_after_a_clock_step_back_is_counted() {
    for window in [Window::Sliding, Window::Bucket] {
        let q = ModelQuota::new(
            None,
            1,
            Duration::from_secs(60),
            window,
            Duration::from_secs(600),
        )
        .unwrap();
        let mut st = ModelState::default();
        let s = |x: u64| Instant::from_millis(x);
        let a = q.admit(&mut st, s(0)).hold.unwrap();
        q.settle(&mut st, s(0), a, Outcome::Success);
        let b = q
            .admit(&mut st, s(60_000))
            .hold
            .expect("the first success left the window");
        assert_eq!(
            q.settle(&mut st, s(59_900), b, Outcome::Success),
            Settled::Held
        );
        let c = q.admit(&mut st, s(60_050));
        assert!(!c.allowed(), "{window:?}: a third success in one minute");
        assert_eq!(c.blocked, Some(Blocked::Success));
    }
}

#[test]
fn a_late_success_is_counted_even_over_the_limit() {
    let q = quota(Window::Sliding, 10, 1, 150);
    let mut st = ModelState::default();
    let t = Instant::from_micros;
    let a = q.admit(&mut st, t(0)).hold.unwrap();
    let b = q.admit(&mut st, t(200)).hold.unwrap(); // a's hold lapsed at 150
    assert_eq!(
        q.settle(&mut st, t(300), a, Outcome::Success),
        Settled::Lapsed
    );
    assert_eq!(
        q.settle(&mut st, t(300), b, Outcome::Success),
        Settled::Held
    );
    assert_eq!(st.success.log.iter().map(|e| e.cost).sum::<u64>(), 2);
    let d = q.admit(&mut st, t(400));
    assert_eq!(d.blocked, Some(Blocked::Success));
    assert_eq!(d.success.retry_at, t(300 + P)); // both must leave the window
}

#[test]
fn in_flight_denials_retry_within_a_second_and_say_why() {
    let q = quota(Window::Sliding, 10, 2, 600 * P);
    let mut st = ModelState::default();
    let t = Instant::from_micros(5 * P);
    q.admit(&mut st, t);
    q.admit(&mut st, t);
    let d = q.admit(&mut st, t);
    assert_eq!(d.blocked, Some(Blocked::InFlight));
    assert_eq!(d.in_flight, 2);
    assert!(d.retry_after() <= IN_FLIGHT_RETRY && d.retry_after() > Duration::ZERO);
}

#[test]
fn ids_of_a_recreated_state_never_repeat_old_ones() {
    let q = quota(Window::Sliding, 10, 5, P);
    let mut st = ModelState::default();
    let old = q.admit(&mut st, Instant::from_micros(1_000)).hold.unwrap();
    let mut fresh = ModelState::default(); // evicted and recreated later
    let new = q
        .admit(&mut fresh, Instant::from_micros(5_000))
        .hold
        .unwrap();
    assert!(new > old);
}

#[derive(Clone, Debug)]
enum Op {
    Admit,
    Settle(usize, bool),
    Peek,
}

fn ops() -> impl Strategy<Value = Vec<(u64, i64, Op)>> {
    let op = prop_oneof![
        5 => Just(Op::Admit),
        4 => (any::<usize>(), any::<bool>()).prop_map(|(i, s)| Op::Settle(i, s)),
        1 => Just(Op::Peek),
    ];
    // (forward step µs, backward step µs (when negative), op)
    prop::collection::vec((0..P / 4, -(P as i64) / 5..P as i64 / 50, op), 1..300)
}

fn max_in_any_window(times: &[u64]) -> u64 {
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..sorted.len() {
        while sorted[hi] - sorted[lo] >= P {
            lo += 1;
        }
        best = best.max((hi - lo + 1) as u64);
    }
    best
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// In any window of one period: admissions ≤ the documented bound, and
    /// successes ≤ the bound plus those settled after their hold expired.
    /// No success is lost, no hold leaks, and admission is all or nothing.
    #[test]
    fn bounds_hold_and_nothing_is_lost(
        bucket in any::<bool>(), total in 1u64..12, success in 1u64..30,
        ttl in 1u64..(2 * P), steps in ops(),
    ) {
        let window = if bucket { Window::Bucket } else { Window::Sliding };
        let q = quota(window, total, success, ttl);
        let mut st = ModelState::default();
        let mut now = 10 * P;
        let (mut admitted, mut successes, mut lapsed) = (vec![], vec![], 0u64);
        let mut live: Vec<(u64, u64)> = vec![]; // (id, expires)
        for (fwd, back, op) in steps {
            now = if back < 0 { now.saturating_sub(back.unsigned_abs()) } else { now + fwd };
            let t = Instant::from_micros(now);
            match op {
                Op::Admit | Op::Peek => {
                    let before = st.clone();
                    let d = if matches!(op, Op::Admit) { q.admit(&mut st, t) } else { q.peek(&st, t) };
                    let at = d.now.as_micros();
                    prop_assert!(at >= before.last);
                    if matches!(op, Op::Peek) {
                        prop_assert_eq!(&st, &before);
                        continue;
                    }
                    match d.hold {
                        Some(id) => {
                            prop_assert!(d.allowed());
                            admitted.push(at);
                            live.push((id, (at + ttl).min(ratebound_core::MAX_TICKS)));
                        }
                        None => {
                            prop_assert!(!d.allowed());
                            prop_assert!(d.retry_after() > Duration::ZERO);
                            // Nothing taken (expired units may be swept).
                            let live = |c: &ratebound_core::model_quota::CountState| {
                                let units: Vec<_> = c.log.iter().filter(|e| e.at + P > at).copied().collect();
                                (units, c.bucket)
                            };
                            prop_assert_eq!(live(&st.total), live(&before.total));
                            prop_assert_eq!(live(&st.success), live(&before.success));
                        }
                    }
                }
                Op::Settle(i, ok) if !live.is_empty() => {
                    let (id, expires) = live.remove(i % live.len());
                    let outcome = if ok { Outcome::Success } else { Outcome::Failure };
                    let at = now.max(st.last);
                    let r = q.settle(&mut st, t, id, outcome);
                    prop_assert_eq!(r == Settled::Lapsed, at >= expires, "hold {} found wrongly", id);
                    if ok {
                        successes.push(at);
                        if r == Settled::Lapsed { lapsed += 1; }
                    }
                }
                Op::Settle(..) => {}
            }
            // Every live hold the state keeps is one we issued.
            prop_assert!(st.holds.iter().all(|h| live.iter().any(|(id, _)| *id == h.id)));
        }
        prop_assert!(max_in_any_window(&admitted) <= q.window_bound(total));
        prop_assert!(max_in_any_window(&successes) <= q.window_bound(success) + lapsed);
        // Every success is in the state: the log (or the bucket's debt) holds them.
        if !bucket {
            let logged: u64 = st.success.log.iter().map(|e| e.cost).sum();
            let recent = successes.iter().filter(|&&s| s + P > st.last).count() as u64;
            prop_assert!(logged >= recent, "{} logged, {} successes in the last period", logged, recent);
        }
    }
}
