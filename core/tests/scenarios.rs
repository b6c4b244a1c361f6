//! Scenario tests on a fake clock: shared and keyed limiters, policy sets.
mod common;

use std::sync::Arc;

use common::FakeClock;
use ratebound_core::keyed::{KeyedError, KeyedTable};
use ratebound_core::policy::{bind, check_all, peek_all, Member};
use ratebound_core::{
    AtomicGcra, CostError, Duration, Gcra, GcraState, Instant, SlidingCounter, SlidingCounterState,
    SlidingLog, SlidingLogState,
};

#[test]
fn threads_hammering_the_atomic_limiter_admit_exactly_the_math() {
    // 8 threads, one bucket of 1000 at 100/s, all at the same instants.
    let l =
        Arc::new(AtomicGcra::new(Gcra::new(1_000, 100, Duration::from_secs(1)).unwrap()).unwrap());
    let clock = FakeClock::new();
    let steps = 50u64; // 50 × 100 ms = 5 s → 1000 + 500 tokens
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let l = Arc::clone(&l);
            std::thread::spawn(move || {
                let mut got = 0u64;
                for step in 0..=steps {
                    let now = clock.now() + Duration::from_millis(step * 100);
                    while l.check(now, 1).unwrap().allowed {
                        got += 1;
                    }
                }
                got
            })
        })
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    // Threads race over the same time points: total is exactly capacity + rate × 5 s,
    // as long as every thread reaches the final instant (each loops until denied).
    assert_eq!(total, 1_500);
}

#[test]
fn keyed_table_survives_a_unique_key_flood() {
    let limiter = Gcra::new(5, 1, Duration::from_secs(1)).unwrap();
    let mut table: KeyedTable<u64, GcraState, 64> = KeyedTable::new();
    let mut clock = FakeClock::new();
    let mut refused = 0;
    for key in 0..100_000u64 {
        match table.check(&limiter, key, clock.now(), 3) {
            Ok(d) => assert!(d.allowed),
            Err(KeyedError::TableFull { capacity }) => {
                assert_eq!(capacity, 64);
                refused += 1;
            }
            Err(e) => panic!("{e}"),
        }
        assert!(table.len() <= 64);
        if key == 99_500 {
            // Mid-flood, table full: a key that holds a slot still gets its own exact decisions.
            assert!(
                !table
                    .check(&limiter, 99_000, clock.now(), 3)
                    .unwrap()
                    .allowed,
                "3 of 5 already taken"
            );
            assert!(
                table
                    .check(&limiter, 99_000, clock.now(), 2)
                    .unwrap()
                    .allowed
            );
        }
        if key % 1_000 == 999 {
            clock.advance(Duration::from_secs(3)); // everyone recovers
        }
    }
    // Each 1000-key burst: 64 admitted, 936 refused.
    assert_eq!(refused, 100 * 936);
    assert_eq!(
        table.evict_idle(&limiter, clock.now() + Duration::from_secs(10)),
        64
    );
    assert!(table.is_empty());
}

#[test]
fn keyed_table_errors_do_not_take_slots() {
    let limiter = SlidingLog::<4>::new(2, Duration::from_secs(1)).unwrap();
    let mut table: KeyedTable<&str, SlidingLogState<4>, 2> = KeyedTable::new();
    let now = FakeClock::new().now();
    assert!(matches!(
        table.check(&limiter, "a", now, 3),
        Err(KeyedError::Cost(CostError::InsufficientCapacity { .. }))
    ));
    assert!(table.check(&limiter, "b", now, 0).unwrap().allowed);
    assert!(
        table.is_empty(),
        "errors and zero-cost checks remember nothing"
    );
    assert_eq!(table.peek(&limiter, &"z", now, 2).unwrap().remaining, 0);
}

#[test]
fn policy_set_names_binding_limit_and_longest_wait() {
    let per_second = Gcra::per_second(2).unwrap();
    let per_minute = SlidingCounter::new(3, Duration::from_secs(60)).unwrap();
    let (mut a, mut b) = (GcraState::default(), SlidingCounterState::default());
    let mut clock = FakeClock::new();
    let now = clock.now();
    let d = check_all(
        now,
        &mut [
            (&mut bind(&per_second, &mut a), 2),
            (&mut bind(&per_minute, &mut b), 2),
        ],
    )
    .unwrap();
    assert!(d.decision.allowed);
    assert_eq!((d.binding, d.decision.remaining), (Some(0), 0));
    // Both deny now; the minute window's wait is longer and binds.
    let d = check_all(
        now,
        &mut [
            (&mut bind(&per_second, &mut a), 2),
            (&mut bind(&per_minute, &mut b), 2),
        ],
    )
    .unwrap();
    assert!(!d.decision.allowed);
    assert_eq!(d.binding, Some(1));
    assert!(d.decision.retry_at > now + Duration::from_secs(1));
    let later = clock.advance(Duration::from_secs(1));
    let (mut a2, mut b2) = (a, b);
    let members: [(&dyn Member, u64); 2] = [
        (&bind(&per_second, &mut a2), 1),
        (&bind(&per_minute, &mut b2), 1),
    ];
    assert!(peek_all(later, &members).unwrap().decision.allowed);
    assert_eq!((a2, b2), (a, b), "peek consumes nothing");
    // A cost that can never fit names the member and consumes nothing.
    let e = check_all(
        later,
        &mut [
            (&mut bind(&per_second, &mut a), 1),
            (&mut bind(&per_minute, &mut b), 4),
        ],
    )
    .unwrap_err();
    assert_eq!(e.member, 1);
    assert_eq!(per_second.peek(&a, later, 0).unwrap().remaining, 2);
    assert!(check_all(Instant::ZERO, &mut []).unwrap().binding.is_none());
}
