//! Keyed table: never above capacity, per-key decisions equal a shadow pure
//! limiter, and only idle keys are ever evicted.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use ratebound_core::keyed::{KeyedError, KeyedTable};
use ratebound_core::{Duration, Gcra, GcraState, Instant, Limiter};
use ratebound_fuzz::{Dt, T0};

fuzz_target!(|inp: (u8, u8, Vec<(Dt, u8, u8)>)| {
    let (cap, rate, ops) = inp;
    let g = Gcra::new(u64::from(cap % 8) + 1, 1, Duration::from_millis(u64::from(rate) + 1)).unwrap();
    let mut table: KeyedTable<u8, GcraState, 8> = KeyedTable::new();
    let mut shadow: HashMap<u8, GcraState> = HashMap::new();
    let mut now = Instant::from_micros(T0);
    for &(dt, key, cost) in ops.iter().take(300) {
        now = dt.apply(now);
        let key = key % 24;
        let cost = u64::from(cost % 10);
        let mut expected_state = shadow.get(&key).copied().unwrap_or_default();
        let expected = g.check(&mut expected_state, now, cost);
        let got = table.check(&g, key, now, cost);
        match got {
            Ok(d) => {
                assert_eq!(Ok(d), expected);
                shadow.insert(key, expected_state);
            }
            Err(KeyedError::TableFull { capacity }) => {
                assert_eq!(capacity, 8);
                // Only a new key can be refused; held keys always get a decision.
                assert!(!shadow.contains_key(&key));
            }
            Err(KeyedError::Cost(e)) => assert_eq!(Err(e), expected),
            Err(e) => panic!("{e}"),
        }
        assert!(table.len() <= 8);
        // Keys gone from the table must have been idle (full) when dropped.
        shadow.retain(|k, s| {
            if table.get(k).is_some() {
                assert_eq!(table.get(k), Some(&*s));
                true
            } else {
                assert!(g.is_idle(s, now), "an active key was evicted");
                false
            }
        });
    }
});
