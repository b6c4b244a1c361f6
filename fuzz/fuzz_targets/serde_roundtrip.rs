//! Serde: states reached by arbitrary operations round-trip identically, and
//! arbitrary JSON never panics a config or state decoder (configs that load
//! are valid and re-serialize identically).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ratebound_core::backoff::{Backoff, RetryBudget};
use ratebound_core::budget::{Budget, BudgetConfig, BudgetState, Usage};
use ratebound_core::{Duration, Gcra, GcraState, Instant, SlidingCounter, SlidingCounterState, SlidingLog, SlidingLogState};
use ratebound_fuzz::{Dt, T0};
use serde::{de::DeserializeOwned, Serialize};

fn round<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(v: &T) {
    let s = serde_json::to_string(v).unwrap();
    let back: T = serde_json::from_str(&s).unwrap();
    assert_eq!(&back, v);
    assert_eq!(serde_json::to_string(&back).unwrap(), s);
}

fn decode<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(bytes: &[u8]) {
    if let Ok(v) = serde_json::from_slice::<T>(bytes) {
        round(&v);
    }
}

fuzz_target!(|inp: (&[u8], u8, Vec<(Dt, u16)>)| {
    let (bytes, which, ops) = inp;
    match which % 8 {
        0 => decode::<Gcra>(bytes),
        1 => decode::<SlidingLog<8>>(bytes),
        2 => decode::<SlidingCounter>(bytes),
        3 => decode::<Budget>(bytes),
        4 => decode::<Backoff>(bytes),
        5 => decode::<RetryBudget>(bytes),
        6 => decode::<BudgetState<4>>(bytes),
        _ => decode::<SlidingLogState<8>>(bytes),
    }
    let g = Gcra::new(5, 3, Duration::from_secs(1)).unwrap();
    let l: SlidingLog<8> = SlidingLog::new(5, Duration::from_secs(1)).unwrap();
    let c = SlidingCounter::new(5, Duration::from_secs(1)).unwrap();
    let b = Budget::new(BudgetConfig::new().tokens_per_minute(500).alert_threshold_bp(5_000)).unwrap();
    let (mut gs, mut ls, mut cs, mut bs) = (GcraState::default(), SlidingLogState::<8>::default(), SlidingCounterState::default(), BudgetState::<4>::default());
    let mut now = Instant::from_micros(T0);
    for &(dt, cost) in ops.iter().take(100) {
        now = dt.apply(now);
        let cost = u64::from(cost % 8);
        let _ = g.check(&mut gs, now, cost);
        let _ = l.check(&mut ls, now, cost);
        let _ = c.check(&mut cs, now, cost);
        let _ = b.reserve(&mut bs, now, Usage::request(cost * 20, 0));
        round(&gs);
        round(&ls);
        round(&cs);
        round(&bs);
    }
});
