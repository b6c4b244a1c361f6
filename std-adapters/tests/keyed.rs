//! Keyed stores: bounded under a unique-key flood, and measured memory per key.
// The counting allocator below needs `unsafe impl GlobalAlloc`; test-only.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use ratebound_core::{Duration, Gcra, Instant, SlidingCounter};
use ratebound_std::clock::ManualClock;
use ratebound_std::keyed::{KeyedConfig, KeyedLimiter, OnFull};
use ratebound_std::AcquireError;

/// Counts live heap bytes, to measure bytes per key.
struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

const T0: Instant = Instant::from_secs(1_795_392_000);

/// The tests run one at a time: the byte counts measure one store, not
/// whatever another test allocates meanwhile.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

#[test]
fn a_million_unique_keys_keep_the_store_at_its_bound() {
    let _serial = one_at_a_time();
    let clock = ManualClock::new(T0);
    let limiter = Gcra::per_minute(10).unwrap();
    for on_full in [OnFull::DenyNewKeys, OnFull::EvictLru] {
        let store = KeyedLimiter::new(
            limiter,
            KeyedConfig::default()
                .with_max_keys(10_000)
                .with_shards(16)
                .with_on_full(on_full),
            clock.clone(),
        )
        .unwrap();
        let (mut admitted, mut refused) = (0u64, 0u64);
        for key in 0..1_000_000u64 {
            match store.check(&key, 1) {
                Ok(d) => {
                    assert!(d.allowed);
                    admitted += 1;
                }
                Err(AcquireError::StoreFull { capacity }) => {
                    assert_eq!(capacity, 10_000);
                    refused += 1;
                }
                Err(e) => panic!("{e}"),
            }
            if key % 50_000 == 0 {
                assert!(store.len() <= 10_000, "{on_full:?}: {} keys", store.len());
            }
        }
        let len = store.len();
        assert!(len <= 10_000, "{on_full:?}: {len}");
        // The bound is global: exactly max_keys keys, however they hash.
        assert_eq!(len, 10_000, "{on_full:?}");
        match on_full {
            OnFull::DenyNewKeys => assert_eq!((admitted, refused), (10_000, 990_000)),
            OnFull::EvictLru => assert_eq!((admitted, refused), (1_000_000, 0)),
        }
        // Existing keys keep their own exact limits while the store is full.
        if on_full == OnFull::DenyNewKeys {
            let held = (0..1_000u64)
                .find(|k| store.peek(k, 0).unwrap().remaining < 10)
                .unwrap();
            for _ in 0..9 {
                assert!(store.check(&held, 1).unwrap().allowed);
            }
            assert!(!store.check(&held, 1).unwrap().allowed);
        }
    }
}

#[test]
fn idle_keys_make_room_before_any_policy_applies() {
    let _serial = one_at_a_time();
    let clock = ManualClock::new(T0);
    let store = KeyedLimiter::new(
        Gcra::per_second(1).unwrap(),
        KeyedConfig::default().with_max_keys(4).with_shards(1),
        clock.clone(),
    )
    .unwrap();
    for k in 0..4u32 {
        assert!(store.check(&k, 1).unwrap().allowed);
    }
    assert!(matches!(
        store.check(&9, 1),
        Err(AcquireError::StoreFull { .. })
    ));
    clock.advance(Duration::from_secs(1)); // all four recovered: idle
    assert!(store.check(&9, 1).unwrap().allowed);
    assert_eq!(store.len(), 4);
    assert_eq!(store.evict_idle(), 3, "key 9 is not idle yet");
    // Zero-cost checks and impossible costs take no slot.
    assert!(store.check(&100, 0).unwrap().allowed);
    assert!(matches!(store.check(&101, 2), Err(AcquireError::Cost(_))));
    assert_eq!(store.len(), 1);
}

#[test]
fn bad_sizes_are_rejected_naming_the_field() {
    let _serial = one_at_a_time();
    let l = Gcra::per_second(1).unwrap();
    let e = KeyedLimiter::<u8, _, _>::new(
        l,
        KeyedConfig::default().with_max_keys(0),
        ManualClock::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("max_keys"), "{e}");
    let e = KeyedLimiter::<u8, _, _>::new(
        l,
        KeyedConfig::default().with_max_keys(4).with_shards(8),
        ManualClock::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("shards"), "{e}");
    let e = KeyedLimiter::<u8, _, _>::new(
        l,
        KeyedConfig::default().with_max_keys((1 << 30) + 1),
        ManualClock::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("max_keys"), "{e}");
}

fn bytes_per_key<L: ratebound_core::Limiter + Clone>(limiter: L) -> f64 {
    const N: u64 = 100_000;
    let clock = ManualClock::new(T0);
    let before = LIVE.load(Ordering::SeqCst);
    // One shard, so all N keys fit exactly (shards fill unevenly).
    let store = KeyedLimiter::new(
        limiter,
        KeyedConfig::default()
            .with_max_keys(N as usize)
            .with_shards(1),
        clock,
    )
    .unwrap();
    for k in 0..N {
        store.check(&k, 1).unwrap();
    }
    assert_eq!(store.len() as u64, N);
    let after = LIVE.load(Ordering::SeqCst);
    drop(store);
    (after - before) as f64 / N as f64
}

#[test]
fn memory_per_key_is_measured_and_bounded() {
    let _serial = one_at_a_time();
    let gcra = bytes_per_key(Gcra::per_minute(10).unwrap());
    let counter = bytes_per_key(SlidingCounter::new(10, Duration::from_secs(60)).unwrap());
    println!("bytes per key: GcraState {gcra:.1}, SlidingCounterState {counter:.1}");
    // The bounds the keyed module's docs state.
    assert!(gcra <= 32.0, "{gcra}");
    assert!(counter <= 40.0, "{counter}");
}

#[test]
fn idle_keys_anywhere_in_the_shard_make_room() {
    // Regression: only the 8 least recently used were probed, so idle
    // keys elsewhere left a full store refusing new keys. Here 2 idle keys
    // hide among 40; wherever the eviction hand stands, both make room.
    let _serial = one_at_a_time();
    let clock = ManualClock::new(T0);
    let store = KeyedLimiter::new(
        Gcra::new(10, 1, Duration::from_secs(1)).unwrap(),
        KeyedConfig::default().with_max_keys(40).with_shards(1),
        clock.clone(),
    )
    .unwrap();
    for k in 0..40u32 {
        let cost = if k == 13 || k == 31 { 1 } else { 10 }; // 1 s or 10 s to recover
        assert!(store.check(&k, cost).unwrap().allowed);
    }
    clock.advance(Duration::from_secs(2));
    assert!(
        store.check(&100, 1).unwrap().allowed,
        "an idle key made room"
    );
    assert!(
        store.check(&101, 1).unwrap().allowed,
        "the other idle key made room"
    );
    assert!(
        matches!(
            store.check(&102, 1),
            Err(AcquireError::StoreFull { capacity: 40 })
        ),
        "no idle key is left"
    );
    assert_eq!(store.len(), 40);
}

#[test]
fn a_huge_max_keys_allocates_nothing_up_front() {
    let _serial = one_at_a_time();
    let before = LIVE.load(Ordering::SeqCst);
    let store = KeyedLimiter::new(
        Gcra::per_second(1).unwrap(),
        KeyedConfig::default().with_max_keys(1 << 30).with_shards(1),
        ManualClock::new(T0),
    )
    .unwrap();
    assert!(LIVE.load(Ordering::SeqCst) - before < 4_096);
    assert!(store.check(&1u8, 1).unwrap().allowed);
}

#[test]
fn a_thread_that_evicts_keeps_the_slot_it_freed() {
    // Regression: an evicting thread released the freed slot to the global
    // count and took it back, so a thread of another shard could take it
    // in between and the evicting thread refused its new key while idle
    // keys remained. Every round holds 1,000 idle keys in 2 shards; two
    // threads each bring 200 new keys, fewer than either shard holds, so
    // every new key finds an idle key to replace in its own shard.
    let _serial = one_at_a_time();
    for round in 0..20u64 {
        let clock = ManualClock::new(T0);
        let store = KeyedLimiter::new(
            Gcra::per_second(1_000).unwrap(),
            KeyedConfig::default().with_max_keys(1_000).with_shards(2),
            clock.clone(),
        )
        .unwrap();
        for k in 0..1_000u64 {
            assert!(store.check(&k, 1).unwrap().allowed);
        }
        clock.advance(Duration::from_secs(2)); // every key idle
        std::thread::scope(|s| {
            for t in 0..2u64 {
                let store = &store;
                s.spawn(move || {
                    for i in 0..200u64 {
                        let key = 1_000_000 * (t + 1) + i;
                        let d = store.check(&key, 1);
                        assert!(
                            matches!(d, Ok(ref d) if d.allowed),
                            "round {round}: new key {key} got {d:?} held {} len {}",
                            store.held(),
                            store.len()
                        );
                    }
                });
            }
        });
        assert!(store.len() <= 1_000);
    }
}

/// Eviction looks only in the new key's shard: under `EvictLru`, a new key
/// whose shard holds no key is refused (`StoreFull`), never served by
/// evicting elsewhere, and the store stays at `max_keys`. With 2 keys in 2
/// shards, a store's first two keys share a shard about half the time: 40
/// stores, each with keys of its own (the hash's seed is partly per
/// process, so one pair of keys could split in every store of a run).
#[test]
fn evict_lru_refuses_a_new_key_whose_shard_holds_none() {
    let _serial = one_at_a_time();
    let mut refused = 0;
    for s in 0..40u32 {
        let store = KeyedLimiter::new(
            Gcra::per_second(1).unwrap(),
            KeyedConfig::default()
                .with_max_keys(2)
                .with_shards(2)
                .with_on_full(OnFull::EvictLru),
            ManualClock::new(T0),
        )
        .unwrap();
        for k in (0..66u32).map(|k| s * 1_000_003 + k * 7_919) {
            match store.check(&k, 1) {
                Ok(d) => assert!(d.allowed),
                Err(AcquireError::StoreFull { capacity: 2 }) => refused += 1,
                Err(e) => panic!("key {k}: {e:?}"),
            }
            assert!(store.len() <= 2);
        }
        assert_eq!(store.len(), 2);
    }
    assert!(refused > 0, "no new key ever met an empty shard");
}

/// A full store whose only idle key sits anywhere in the shard finds it
/// within `max(16, max_keys / shards / 16)` refusals after the last sweep
/// (64 for 1,024 keys in one shard), whatever the eviction hand passes.
#[test]
fn an_idle_key_is_found_within_the_sweep_period() {
    let _serial = one_at_a_time();
    for round in 0..5u32 {
        let clock = ManualClock::new(T0);
        let store = KeyedLimiter::new(
            Gcra::new(10, 1, Duration::from_secs(1)).unwrap(),
            KeyedConfig::default().with_max_keys(1_024).with_shards(1),
            clock.clone(),
        )
        .unwrap();
        let idle = 1_000 * round + 7;
        for k in 0..1_024u32 {
            // Key `idle` recovers in 5 s, the others in 10 s.
            let cost = if k == idle % 1_024 { 5 } else { 10 };
            assert!(store.check(&k, cost).unwrap().allowed);
        }
        clock.advance(Duration::from_secs(1));
        assert!(
            store.check(&5_000, 1).is_err(),
            "nothing idle: the first sweep finds none"
        );
        clock.advance(Duration::from_secs(5));
        let mut refusals = 0;
        for k in 5_001..6_000u32 {
            match store.check(&k, 1) {
                Ok(_) => break,
                Err(AcquireError::StoreFull { .. }) => refusals += 1,
                Err(e) => panic!("{e:?}"),
            }
        }
        assert!(
            refusals <= 63,
            "round {round}: {refusals} refusals before the idle key was found"
        );
        assert_eq!(store.len(), 1_024);
    }
}
