//! The objects of the main entry and of `ratebound/retry` themselves, natively and in a real wasm
//! runtime (Node, through `wasm-bindgen-test-runner`): odd numbers from
//! JavaScript saturate safely and never grant capacity, malformed states are
//! refused whole, and config errors name their field.
#![cfg(all(feature = "limiters", feature = "retry"))]

use ratebound_wasm::{Backoff, RetryBudget, Single};
// Natively the tests are plain `#[test]`s under the same name.
#[cfg(not(target_arch = "wasm32"))]
use std::prelude::rust_2021::test as wasm_bindgen_test;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test;

const NOW: f64 = 1.79e15; // µs

/// A limiter's exported state, collected.
fn exported(limiter: &Single) -> Vec<f64> {
    let mut v = Vec::new();
    limiter.export_state(|x| v.push(x));
    v
}

#[wasm_bindgen_test]
fn odd_costs_never_grant_capacity() {
    let mut g = Single::gcra(3.0, 1.0, 1e6).unwrap();
    // NaN and negatives saturate to 0 (a no-op check), huge to u64::MAX (never fits).
    assert_eq!(g.check(NOW, f64::NAN), 1);
    assert_eq!(g.last()[0], 3.0);
    assert_eq!(g.check(NOW, -5.0), 1);
    assert_eq!(g.last()[0], 3.0);
    assert_eq!(g.check(NOW, f64::INFINITY), -1);
    assert_eq!(g.check(NOW, 1e300), -1);
    assert_eq!(g.check(NOW, 3.0), 1);
    assert_eq!(g.check(NOW, 1.0), 0);
    // A clock far in the past or NaN does not refill anything.
    assert_eq!(g.check(0.0, 1.0), 0);
    assert_eq!(g.check(f64::NAN, 1.0), 0);
    assert!(g.last()[3] > NOW, "a denial always says to wait");
}

#[wasm_bindgen_test]
fn config_errors_name_the_field() {
    let field = |e: &'static str| e;
    assert_eq!(
        field(Single::gcra(0.0, 1.0, 1e6).err().unwrap()),
        "capacity"
    );
    assert_eq!(field(Single::gcra(1.0, 1.0, 0.0).err().unwrap()), "period");
    assert_eq!(
        field(Single::sliding_log(1.0, 1e6, 7.0).err().unwrap()),
        "slots"
    );
    assert_eq!(
        field(Single::sliding_counter(0.0, 1e6).err().unwrap()),
        "limit"
    );
    assert_eq!(
        field(Backoff::new(10.0, 5.0, 2, 1, 1, 3.0, 0.0).err().unwrap()),
        "initial"
    );
    assert_eq!(
        field(Backoff::new(1.0, 5.0, 2, 1, 9, 3.0, 0.0).err().unwrap()),
        "jitter"
    );
    assert!(RetryBudget::new(0, 100).is_err());
}

#[wasm_bindgen_test]
fn malformed_states_are_refused_whole() {
    let mut g = Single::gcra(2.0, 1.0, 1e6).unwrap();
    assert_eq!(g.check(NOW, 2.0), 1);
    let saved = exported(&g);
    for bad in [
        &[1.5, 0.0][..],
        &[f64::NAN, 0.0],
        &[-1.0, 0.0],
        &[9.1e15, 0.0],
        &[1.0],
        &[1.0, 2.0, 3.0],
    ] {
        assert!(!g.import_state(bad), "{bad:?}");
        assert_eq!(exported(&g), saved, "unchanged after {bad:?}");
    }
    let mut log = Single::sliding_log(2.0, 1e6, 8.0).unwrap();
    assert_eq!(log.check(NOW, 1.0), 1);
    let saved = exported(&log);
    // Out of order, later than `last`, even length, too many entries.
    for bad in [
        vec![NOW, NOW, 1.0, NOW - 1.0, 1.0],
        vec![NOW, NOW + 1.0, 1.0],
        vec![NOW, NOW],
        [NOW]
            .into_iter()
            .chain((0..9).flat_map(|_| [NOW, 1.0]))
            .collect(),
    ] {
        assert!(!log.import_state(&bad), "{bad:?}");
        assert_eq!(exported(&log), saved);
    }
    assert!(log.import_state(&saved));
}

#[wasm_bindgen_test]
fn backoff_codes_and_budget() {
    let mut b = Backoff::new(100.0, 1000.0, 2, 1, 0, 2.0, 0.0).unwrap();
    b.start(NOW, 1.0);
    assert_eq!(b.next(NOW, -1.0), 1);
    assert_eq!(b.next(NOW, 5000.0), 0); // hint beyond the cap
    let mut budget = RetryBudget::new(2, 1000).unwrap();
    let mut c = Backoff::new(100.0, 1000.0, 2, 1, 0, -1.0, 0.0).unwrap();
    c.start(NOW, 1.0);
    assert_eq!(c.next_with_budget(NOW, -1.0, &mut budget), 0); // 1 of 2 left: not above half
    assert!(!budget.can_retry());
    budget.on_success();
    assert!(budget.can_retry());
}

#[wasm_bindgen_test]
fn sliding_counter_idle_and_state() {
    let mut k = Single::sliding_counter(10.0, 1e6).unwrap();
    assert!(k.is_idle(NOW));
    assert_eq!(k.check(NOW, 4.0), 1);
    assert!(!k.is_idle(NOW));
    assert!(k.is_idle(NOW + 2e6));
    let s = exported(&k);
    let mut k2 = Single::sliding_counter(10.0, 1e6).unwrap();
    assert!(k2.import_state(&s));
    assert_eq!(k2.check(NOW, 7.0), 0);
    assert_eq!(k2.check(NOW, 6.0), 1);
}

#[wasm_bindgen_test]
fn only_a_gcra_takes_and_refunds() {
    let mut g = Single::gcra(5.0, 1.0, 1e6).unwrap();
    assert_eq!(g.at_most(NOW, 3.0), 1);
    assert_eq!(g.taken(), 3.0);
    assert_eq!(g.refund(NOW, 1.0), 1);
    assert_eq!(g.last()[0], 3.0);
    for mut other in [
        Single::sliding_log(5.0, 1e6, 8.0).unwrap(),
        Single::sliding_counter(5.0, 1e6).unwrap(),
    ] {
        let before = exported(&other);
        assert_eq!(other.at_most(NOW, 3.0), -1);
        assert_eq!(other.taken(), 0.0);
        assert_eq!(other.refund(NOW, 1.0), -1);
        assert_eq!(exported(&other), before, "nothing taken or given");
        // Another kind's state is refused whole.
        assert!(!other.import_state(&[1.0, 2.0]));
        assert_eq!(exported(&other), before);
    }
}
