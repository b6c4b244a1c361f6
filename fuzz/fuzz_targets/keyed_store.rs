//! The std keyed store (`KeyedLimiter`): never above `max_keys`, every held
//! key decided exactly as a shadow pure limiter decides it, a new key
//! refused only when the store is full, and an active key evicted only under
//! `EvictLru`, at most one per new key.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use ratebound_core::{Duration, Gcra, GcraState, Instant, Limiter};
use ratebound_fuzz::{Dt, T0};
use ratebound_std::clock::ManualClock;
use ratebound_std::keyed::{KeyedConfig, KeyedLimiter, OnFull};
use ratebound_std::AcquireError;

fuzz_target!(|inp: (u8, u8, u8, bool, Vec<(Dt, u8, u8)>)| {
    let (max_keys, shards, rate, evict, ops) = inp;
    let max_keys = usize::from(max_keys % 24) + 1;
    let shards = usize::from(shards) % max_keys + 1;
    let on_full = if evict {
        OnFull::EvictLru
    } else {
        OnFull::DenyNewKeys
    };
    let g = Gcra::new(3, 1, Duration::from_millis(u64::from(rate) + 1)).unwrap();
    let clock = ManualClock::new(Instant::from_micros(T0));
    let store = KeyedLimiter::new(
        g,
        KeyedConfig::default()
            .with_max_keys(max_keys)
            .with_shards(shards)
            .with_on_full(on_full),
        clock.clone(),
    )
    .unwrap();
    let mut shadow: HashMap<u8, GcraState> = HashMap::new();
    let mut now = Instant::from_micros(T0);
    for &(dt, key, cost) in ops.iter().take(400) {
        now = dt.apply(now);
        clock.set(now);
        let key = key % 64;
        let cost = u64::from(cost % 5);
        let held = shadow.contains_key(&key);
        let mut expected_state = shadow.get(&key).copied().unwrap_or_default();
        let expected = g.check(&mut expected_state, now, cost);
        match store.check(&key, cost) {
            Ok(d) => {
                assert_eq!(Ok(d), expected);
                if held || !g.is_idle(&expected_state, now) {
                    shadow.insert(key, expected_state);
                }
            }
            Err(AcquireError::StoreFull { capacity }) => {
                assert_eq!(capacity, max_keys);
                assert!(!held, "a held key was refused");
                assert_eq!(shadow.len(), max_keys, "refused below max_keys");
            }
            Err(AcquireError::Cost(e)) => assert_eq!(Err(e), expected),
            Err(e) => panic!("{e}"),
        }
        assert!(store.len() <= max_keys);
        // Keys gone from the store must have been idle when dropped, but
        // for one active key when EvictLru made room for a new one.
        let mut active_evicted = 0;
        shadow.retain(|k, s| {
            let in_store = store.inspect(k, |_, st, _| *st);
            if in_store != GcraState::default() {
                assert_eq!(in_store, *s, "key {k} holds another state");
                true
            } else {
                if !g.is_idle(s, now) {
                    active_evicted += 1;
                }
                false
            }
        });
        if on_full == OnFull::DenyNewKeys || held {
            assert_eq!(active_evicted, 0, "an active key was evicted");
        } else {
            assert!(
                active_evicted <= 1,
                "{active_evicted} active keys evicted for one new key"
            );
        }
        assert_eq!(store.len(), shadow.len());
    }
});
