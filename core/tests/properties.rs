//! Property tests for the invariants every backend relies on.
//!
//! Failures are persisted (and committed) in `properties.proptest-regressions` beside this file.

use proptest::prelude::*;
use ratebound_core::backoff::{Backoff, GiveUp, Jitter, Step};
use ratebound_core::budget::{
    Admission, AlertKind, Budget, BudgetConfig, BudgetState, Dimension, Horizon, Usage,
};
use ratebound_core::policy::{bind, check_all};
use ratebound_core::{
    AtomicGcra, Duration, Gcra, GcraState, Instant, Limiter, SlidingCounter, SlidingCounterState,
    SlidingLog, SlidingLogState,
};

const T0: u64 = 1_795_392_000_000_000;

fn gcra_cfg() -> impl Strategy<Value = Gcra> {
    (1u64..40, 1u64..3_000, 1u64..5_000_000).prop_filter_map("valid", |(c, a, p)| {
        Gcra::new(c, a, Duration::from_micros(p)).ok()
    })
}

/// Time deltas, some negative (clock going backwards).
fn deltas(max: i64) -> impl Strategy<Value = Vec<(i64, u64)>> {
    prop::collection::vec((prop_oneof![4 => 0..max, 1 => -max..0], 0u64..50), 1..150)
}

fn walk(deltas: &[(i64, u64)]) -> Vec<(u64, u64)> {
    let mut now = T0 as i64;
    deltas
        .iter()
        .map(|&(d, c)| {
            now = (now + d).max(0);
            (now as u64, c)
        })
        .collect()
}

/// True when `peek(cost 0).remaining` never rises when `now` moves back.
fn monotone_in_time<L: Limiter>(l: &L, s: &L::State, t: u64) -> bool {
    let at = |x: u64| {
        l.peek(s, Instant::from_micros(x), 0)
            .map(|d| d.remaining)
            .unwrap_or(0)
    };
    let r = at(t);
    [1, 1_000, 1_000_000, 100_000_000]
        .iter()
        .all(|&back| at(t.saturating_sub(back)) <= r)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    /// Over any interval [t0, t1] of `now` values (in any order), GCRA admits
    /// at most capacity + rate × (t1 − t0). Also: remaining ≤ capacity, peek
    /// agrees with check, and remaining never rises when time goes back.
    #[test]
    fn gcra_interval_bound(g in gcra_cfg(), ds in deltas(400_000)) {
        let mut s = GcraState::default();
        let mut admitted = Vec::new();
        for (now, cost) in walk(&ds) {
            let cost = cost % (g.capacity() + 1);
            let t = Instant::from_micros(now);
            let p = g.peek(&s, t, cost).unwrap();
            let d = g.check(&mut s, t, cost).unwrap();
            prop_assert_eq!(p, d);
            prop_assert!(d.remaining <= g.capacity());
            prop_assert!(monotone_in_time(&g, &s, now));
            if d.allowed { admitted.push((now, cost)); } else { prop_assert!(d.retry_at > t); }
        }
        admitted.sort();
        for i in 0..admitted.len() {
            let mut sum = 0u128;
            for j in i..admitted.len() {
                sum += admitted[j].1 as u128;
                let span = (admitted[j].0 - admitted[i].0) as u128;
                // sum ≤ capacity + amount × span / period, exactly:
                prop_assert!(sum * g.period().as_micros() as u128 <= g.capacity() as u128 * g.period().as_micros() as u128 + g.amount() as u128 * span,
                    "{} tokens in {} µs", sum, span);
            }
        }
    }

    /// A denial's retry_at is exact: one microsecond earlier is still denied, at retry_at it is allowed.
    #[test]
    fn gcra_retry_at_is_exact(g in gcra_cfg(), ds in deltas(300_000)) {
        let mut s = GcraState::default();
        for (now, cost) in walk(&ds) {
            let cost = 1 + cost % g.capacity();
            let d = g.check(&mut s, Instant::from_micros(now), cost).unwrap();
            if !d.allowed {
                prop_assert!(!g.peek(&s, d.retry_at - Duration::from_micros(1), cost).unwrap().allowed);
                prop_assert!(g.peek(&s, d.retry_at, cost).unwrap().allowed);
            }
        }
    }

    /// Refund never lifts above capacity, nor by more than refunded.
    #[test]
    fn gcra_refund_bounds(g in gcra_cfg(), ds in deltas(300_000), n in 0u64..100) {
        let mut s = GcraState::default();
        for (now, cost) in walk(&ds) {
            let t = Instant::from_micros(now);
            g.check(&mut s, t, cost % (g.capacity() + 1)).unwrap();
            let before = g.peek(&s, t, 0).unwrap().remaining;
            let after = g.refund(&mut s, t, n).remaining;
            prop_assert!(after <= g.capacity());
            prop_assert!(after <= before + n);
            prop_assert!(after >= before);
        }
    }

    /// The atomic limiter and the pure one decide identically.
    #[test]
    fn atomic_matches_pure(g in gcra_cfg(), ds in deltas(300_000)) {
        prop_assume!(g.reduced_rate().1 <= 2048);
        let a = AtomicGcra::new(g).unwrap();
        let mut s = GcraState::default();
        for (i, (now, cost)) in walk(&ds).into_iter().enumerate() {
            let t = Instant::from_micros(now);
            match i % 3 {
                0 => prop_assert_eq!(a.check(t, cost).ok(), g.check(&mut s, t, cost).ok()),
                1 => prop_assert_eq!(a.check_at_most(t, cost), g.check_at_most(&mut s, t, cost)),
                _ => prop_assert_eq!(a.refund(t, cost), g.refund(&mut s, t, cost)),
            }
            prop_assert_eq!(a.state(), s);
        }
    }

    /// The sliding log never admits more than `limit` within any window length
    /// (by admission stamp), and peek agrees with check.
    #[test]
    fn sliding_log_window_bound(limit in 1u64..20, window in 1u64..1_000_000, ds in deltas(200_000)) {
        let l: SlidingLog<16> = SlidingLog::new(limit, Duration::from_micros(window)).unwrap();
        let mut s = SlidingLogState::<16>::default();
        for (now, cost) in walk(&ds) {
            let cost = cost % (limit + 1);
            let t = Instant::from_micros(now);
            let p = l.peek(&s, t, cost).unwrap();
            let d = l.check(&mut s, t, cost).unwrap();
            prop_assert_eq!(p, d);
            prop_assert!(d.remaining <= limit);
            prop_assert!(monotone_in_time(&l, &s, now));
            let entries: Vec<_> = s.entries().copied().collect();
            for e in &entries {
                let in_window: u64 = entries.iter().filter(|x| x.at >= e.at && x.at < e.at + window).map(|x| x.cost).sum();
                prop_assert!(in_window <= limit);
            }
        }
    }

    /// Whatever order `now` values come in (the clock stepping back), the
    /// units a sliding log admits, at the times it admitted them (a `now`
    /// earlier than one it admitted at counts as that time), never exceed
    /// `limit` in any window — also with fewer slots than `limit`, where
    /// entries merge.
    #[test]
    fn sliding_log_admissions_stay_within_the_limit(limit in 1u64..40, window in 1u64..1_000_000, ds in deltas(200_000)) {
        let l: SlidingLog<4> = SlidingLog::new(limit, Duration::from_micros(window)).unwrap();
        let mut s = SlidingLogState::<4>::default();
        let mut admitted: Vec<(u64, u64)> = Vec::new();
        for (now, cost) in walk(&ds) {
            let cost = cost % (limit + 1);
            let d = l.check(&mut s, Instant::from_micros(now), cost).unwrap();
            prop_assert!(d.remaining <= limit);
            if d.allowed && cost > 0 {
                admitted.push((s.last(), cost));
            }
        }
        for &(t, _) in &admitted {
            let in_window: u64 = admitted.iter().filter(|(a, _)| *a >= t && *a < t + window).map(|(_, c)| c).sum();
            prop_assert!(in_window <= limit, "{} units in [{}, {})", in_window, t, t + window);
        }
    }

    /// The counter admits at most `limit` per aligned window and at most
    /// 2 × limit in any interval of one window length (its documented bound).
    #[test]
    fn sliding_counter_bounds(limit in 1u64..30, window in 1u64..1_000_000, ds in deltas(150_000)) {
        let c = SlidingCounter::new(limit, Duration::from_micros(window)).unwrap();
        let mut s = SlidingCounterState::default();
        let mut admitted = Vec::new();
        for (now, cost) in walk(&ds) {
            let cost = cost % (limit + 1);
            let t = Instant::from_micros(now);
            let p = c.peek(&s, t, cost).unwrap();
            let d = c.check(&mut s, t, cost).unwrap();
            prop_assert_eq!(p, d);
            prop_assert!(d.remaining <= limit);
            prop_assert!(monotone_in_time(&c, &s, now));
            // A `now` before the state's window is counted at that window's start.
            if d.allowed && cost > 0 { admitted.push((now.max(s.start), cost)); }
        }
        for &(t, _) in &admitted {
            let aligned: u64 = admitted.iter().filter(|x| x.0 / window == t / window).map(|x| x.1).sum();
            prop_assert!(aligned <= limit);
            let sliding: u64 = admitted.iter().filter(|x| x.0 >= t && x.0 < t + window).map(|x| x.1).sum();
            prop_assert!(sliding <= 2 * limit);
        }
    }

    /// Budget: with actual ≤ estimate and settles in the window of their
    /// reservation, used + reserved never exceeds any limit; threshold alerts
    /// fire at most once per threshold per window and limit hits at most once.
    #[test]
    fn budget_never_overshoots(ops in prop::collection::vec((0u8..4, 0u64..3_000, 0u64..400, 0u64..60_000_000), 1..120)) {
        let b = Budget::new(
            BudgetConfig::new()
                .tokens_per_day(20_000)
                .cost_per_day(3_000)
                .limit(Dimension::Requests, Horizon::DAY, 40)
                .alert_threshold_bp(5_000)
                .alert_threshold_bp(9_000)
                .hold_ttl(Duration::from_secs(86_400)),
        ).unwrap();
        let mut st = BudgetState::<8>::default();
        let mut held = Vec::new();
        let mut now = T0; // a day boundary; ops span < 2 hours
        let mut seen = std::collections::HashSet::new();
        for (op, tokens, cost, dt) in ops {
            now += dt / 60;
            let t = Instant::from_micros(now);
            let alerts = match op {
                0 | 1 => {
                    let r = b.reserve(&mut st, t, Usage::request(tokens, cost)).unwrap();
                    if let Admission::Granted(h) = r.admission { held.push(h); }
                    r.alerts
                }
                2 if !held.is_empty() => {
                    let h = held.remove((tokens as usize) % held.len());
                    let actual = Usage { requests: 1, tokens: h.usage.tokens.min(tokens), cost: h.usage.cost.min(cost) };
                    b.settle(&mut st, t, h, actual).unwrap().alerts
                }
                _ if !held.is_empty() => {
                    let h = held.remove((tokens as usize) % held.len());
                    b.release(&mut st, t, h).unwrap();
                    Default::default()
                }
                _ => Default::default(),
            };
            // peek agrees with what try_spend decides, on a copy.
            let probe = Usage::request(tokens / 2, cost / 2);
            let peeked = b.peek(&st, t, probe).unwrap();
            let spent = b.try_spend(&mut st.clone(), t, probe).unwrap().denied;
            prop_assert_eq!(peeked, spent);
            for a in &alerts {
                let key = (a.limit, a.window_start, a.kind, a.threshold_bp);
                prop_assert!(seen.insert(key), "alert fired twice: {:?}", a);
                if a.kind == AlertKind::LimitHit { prop_assert!(seen.iter().filter(|k| k.0 == a.limit && k.2 == AlertKind::LimitHit).count() == 1); }
            }
            for l in b.status(&st, t).limits {
                prop_assert!(l.used + l.reserved <= l.limit.max, "{:?}", l);
            }
        }
    }

    /// Backoff delays lie in [hint, cap]; hints beyond the cap give up.
    #[test]
    fn backoff_bounds(initial in 0u64..1_000_000, extra in 1u64..10_000_000, jitter in 0u8..4, seed: u64, hints in prop::collection::vec(prop::option::of(0u64..12_000_000), 1..30)) {
        let j = [Jitter::None, Jitter::Full, Jitter::Equal, Jitter::Decorrelated][jitter as usize];
        let b = Backoff::new(Duration::from_micros(initial), Duration::from_micros(initial + extra)).unwrap().with_jitter(j).without_max_retries();
        let mut st = b.start(Instant::from_micros(T0), seed);
        for h in hints {
            let hint = h.map(Duration::from_micros);
            match b.next(&mut st, Instant::from_micros(T0), hint) {
                Step::Retry { delay, .. } => {
                    prop_assert!(delay <= b.cap());
                    if let Some(h) = hint { prop_assert!(delay >= h); }
                }
                Step::GiveUp(GiveUp::HintBeyondCap { hint: h }) => prop_assert!(h > b.cap()),
                Step::GiveUp(other) => prop_assert!(false, "unexpected {:?}", other),
            }
        }
    }

    /// Policy sets are all-or-nothing: a denial consumes nothing anywhere.
    #[test]
    fn policy_all_or_nothing(ds in deltas(200_000)) {
        let g = Gcra::new(5, 5, Duration::from_secs(1)).unwrap();
        let c = SlidingCounter::new(8, Duration::from_secs(2)).unwrap();
        let (mut a, mut b) = (GcraState::default(), SlidingCounterState::default());
        for (now, cost) in walk(&ds) {
            let cost = cost % 6;
            let t = Instant::from_micros(now);
            let (a0, b0) = (a, b);
            let d = check_all(t, &mut [(&mut bind(&g, &mut a), cost), (&mut bind(&c, &mut b), cost)]).unwrap();
            if !d.decision.allowed {
                prop_assert_eq!((a, b), (a0, b0));
                prop_assert!(d.binding.is_some());
            }
        }
    }
}

#[cfg(feature = "serde")]
mod serde_round_trips {
    use super::*;
    use serde::{de::DeserializeOwned, Serialize};

    fn round_trip<T: Serialize + DeserializeOwned + PartialEq + core::fmt::Debug>(
        v: &T,
    ) -> Result<(), TestCaseError> {
        let text = serde_json::to_string(v).unwrap();
        let back: T = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(&back, v);
        prop_assert_eq!(serde_json::to_string(&back).unwrap(), text);
        Ok(())
    }

    proptest! {
        /// Configs and states survive a JSON round trip identically, mid-run.
        #[test]
        fn states_and_configs(g in gcra_cfg(), ds in deltas(300_000)) {
            let l: SlidingLog<8> = SlidingLog::new(g.capacity(), g.period()).unwrap();
            let c = SlidingCounter::new(g.capacity(), g.period()).unwrap();
            let b = Budget::new(BudgetConfig::new().tokens_per_minute(g.capacity() * 10).alert_threshold_bp(7_000)).unwrap();
            round_trip(&g)?; round_trip(&l)?; round_trip(&c)?; round_trip(&b)?;
            let (mut gs, mut ls, mut cs, mut bs) = (GcraState::default(), SlidingLogState::<8>::default(), SlidingCounterState::default(), BudgetState::<4>::default());
            for (now, cost) in walk(&ds) {
                let t = Instant::from_micros(now);
                let _ = g.check(&mut gs, t, cost);
                let _ = l.check(&mut ls, t, cost);
                let _ = c.check(&mut cs, t, cost);
                let _ = b.reserve(&mut bs, t, Usage::request(cost, 0));
                round_trip(&gs)?; round_trip(&ls)?; round_trip(&cs)?; round_trip(&bs)?;
            }
        }
    }

    #[test]
    fn invalid_configs_are_rejected_on_load() {
        let e =
            serde_json::from_str::<Gcra>(r#"{"capacity":0,"amount":1,"period_us":1}"#).unwrap_err();
        assert!(e.to_string().contains("capacity"), "{e}");
        assert!(serde_json::from_str::<Gcra>(r#"{"capacity":1,"amount":1}"#).is_err());
        assert!(
            serde_json::from_str::<Gcra>(r#"{"capacity":1,"amount":1,"period_us":1,"x":2}"#)
                .is_err()
        );
        let e =
            serde_json::from_str::<Budget>(r#"{"alert_thresholds_bp":[9000,8000]}"#).unwrap_err();
        assert!(e.to_string().contains("alert_thresholds_bp"), "{e}");
        assert!(serde_json::from_str::<Budget>("not json").is_err());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A denial's `retry_at` is the earliest instant the usage fits (it fits
    /// then and not a microsecond before), whatever order the holds' expiries
    /// are in: holds made under different TTLs (a reconfigure) expire out of
    /// the order they were made, and the state read with its holds reversed
    /// decides the same. Settled usage makes the window's end matter; holds
    /// made at once with one TTL share an expiry; some hold no tokens.
    #[test]
    fn retry_at_is_the_earliest_fit_in_any_hold_order(
        used in 0u64..900,
        holds in prop::collection::vec(
            (
                prop_oneof![Just(0u64), 0u64..5_000_000],
                0u64..300,
                prop_oneof![Just(30_000_000u64), Just(45_000_000u64), 1_000_000u64..90_000_000],
            ),
            1..12,
        ),
        start in 0u64..60_000_000,
        want in 1u64..1_000,
    ) {
        let cfg = |ttl_us: u64| {
            BudgetConfig::new()
                .tokens_per_minute(1_000)
                .hold_ttl(Duration::from_micros(ttl_us))
        };
        let mut b = Budget::new(cfg(60_000_000)).unwrap();
        let mut st = BudgetState::<16>::default();
        let mut now = T0 + start;
        let _ = b.record(&mut st, Instant::from_micros(now), Usage::request(used, 0));
        for (gap, tokens, ttl_us) in holds {
            now += gap;
            b = b.reconfigure(cfg(ttl_us)).unwrap();
            let _ = b.reserve(&mut st, Instant::from_micros(now), Usage::request(tokens, 0)).unwrap();
        }
        let at = Instant::from_micros(now);
        let Some(d) = b.peek(&st, at, Usage::request(want, 0)).unwrap() else {
            return Ok(()); // it fits now
        };
        let mut reversed = st.clone();
        reversed.holds.reverse();
        prop_assert_eq!(b.peek(&reversed, at, Usage::request(want, 0)).unwrap(), Some(d));
        prop_assert!(d.retry_at > at);
        prop_assert_eq!(b.peek(&st, d.retry_at, Usage::request(want, 0)).unwrap(), None);
        let before = Instant::from_micros(d.retry_at.as_micros() - 1);
        prop_assert!(b.peek(&st, before, Usage::request(want, 0)).unwrap().is_some());
    }
}
