//! Model quotas: in any window of one period, admissions stay within the
//! documented bound and successes within it plus those settled after their
//! hold expired; no success is lost (the log holds every recent one); a hold
//! is reported lapsed exactly when it had expired; peek changes nothing; a
//! denial takes nothing and always says when to retry.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ratebound_core::model_quota::{CountState, ModelQuota, ModelState, Outcome, Settled, Window};
use ratebound_core::{Duration, Instant, MAX_TICKS};
use ratebound_fuzz::{Dt, T0};

const P: u64 = 1_000_000;

fn max_in_any_window(times: &[u64]) -> u64 {
    let mut t = times.to_vec();
    t.sort_unstable();
    let (mut best, mut lo) = (0, 0);
    for hi in 0..t.len() {
        while t[hi] - t[lo] >= P {
            lo += 1;
        }
        best = best.max((hi - lo + 1) as u64);
    }
    best
}

fuzz_target!(|inp: (bool, u8, u8, u32, Vec<(Dt, u8)>)| {
    let (bucket, total, success, ttl, ops) = inp;
    let window = if bucket { Window::Bucket } else { Window::Sliding };
    let (total, success) = (u64::from(total % 12) + 1, u64::from(success % 40) + 1);
    let ttl = u64::from(ttl) % (3 * P) + 1;
    let Ok(q) = ModelQuota::new(Some(total), success, Duration::from_micros(P), window, Duration::from_micros(ttl)) else { return };
    let mut st = ModelState::default();
    let mut now = Instant::from_micros(T0);
    let (mut admitted, mut successes, mut lapsed) = (Vec::new(), Vec::new(), 0u64);
    let mut live: Vec<(u64, u64)> = Vec::new();
    for &(dt, op) in ops.iter().take(400) {
        now = dt.apply(now);
        match op % 8 {
            0..=3 => {
                let before = st.clone();
                let d = q.admit(&mut st, now);
                assert!(d.now.as_micros() >= before.last);
                match d.hold {
                    Some(id) => {
                        assert!(d.allowed());
                        admitted.push(d.now.as_micros());
                        // Leases end at the end of time at the latest.
                        live.push((id, (d.now.as_micros() + ttl).min(MAX_TICKS)));
                    }
                    None => {
                        assert!(!d.allowed());
                        // Later than now, unless now is the end of time (saturated).
                        assert!(d.retry_after() > Duration::ZERO || d.now == Instant::MAX);
                        // Nothing taken: the units still in the window and the
                        // buckets are as they were (expired units may be swept).
                        let n = d.now.as_micros();
                        let live = |c: &CountState| {
                            let units: Vec<_> = c.log.iter().filter(|e| e.at.saturating_add(P) > n).copied().collect();
                            (units, c.bucket)
                        };
                        assert_eq!(live(&st.total), live(&before.total));
                        assert_eq!(live(&st.success), live(&before.success));
                    }
                }
            }
            4 => {
                let before = st.clone();
                let _ = q.peek(&st, now);
                assert_eq!(st, before);
            }
            k if !live.is_empty() => {
                let (id, expires) = live.remove(usize::from(op) % live.len());
                let ok = k != 7;
                let at = now.as_micros().max(st.last);
                let r = q.settle(&mut st, now, id, if ok { Outcome::Success } else { Outcome::Failure });
                assert_eq!(r == Settled::Lapsed, at >= expires);
                if ok {
                    successes.push(at);
                    lapsed += u64::from(r == Settled::Lapsed);
                }
            }
            _ => {}
        }
        assert!(st.holds.iter().all(|h| live.iter().any(|(id, _)| *id == h.id)));
    }
    assert!(max_in_any_window(&admitted) <= q.window_bound(total));
    assert!(max_in_any_window(&successes) <= q.window_bound(success) + lapsed);
    if !bucket {
        let logged: u64 = st.success.log.iter().map(|e| e.cost).sum();
        let recent = successes.iter().filter(|&&s| s + P > st.last).count() as u64;
        assert!(logged >= recent, "a success was lost");
    }
});
