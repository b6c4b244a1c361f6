//! GCRA: exact refill, bounds, the shortcuts equal to the full path.

use super::*;
use crate::time::MAX_SAFE_INTEGER;
use crate::{ConfigError, Duration};

fn t(us: u64) -> Instant {
    Instant::from_micros(us)
}

#[test]
fn burst_then_exact_refill() {
    let g = Gcra::new(3, 3, Duration::from_secs(1)).unwrap();
    let mut s = GcraState::default();
    let now = t(10_000_000);
    for left in [2, 1, 0] {
        let d = g.check(&mut s, now, 1).unwrap();
        assert!(d.allowed);
        assert_eq!(d.remaining, left);
    }
    let d = g.check(&mut s, now, 1).unwrap();
    assert!(!d.allowed);
    assert_eq!(d.retry_at, t(10_333_334));
    assert_eq!(d.reset_at, t(11_000_000));
    // One microsecond early is still denied; on time is allowed.
    assert!(!g.check(&mut s, t(10_333_333), 1).unwrap().allowed);
    assert!(g.check(&mut s, t(10_333_334), 1).unwrap().allowed);
    // Over 30 s after the burst, exactly 90 more tokens, not 89 or 91.
    let mut got = 0;
    for us in (10_333_335..=40_000_335).step_by(1_000) {
        if g.check(&mut s, t(us), 1).unwrap().allowed {
            got += 1;
        }
    }
    // Tokens become available at 10 s + k/3 s; k = 1 was taken above, k = 2..=90 here.
    assert_eq!(got, 89);
}

#[test]
fn cost_above_capacity_is_an_error() {
    let g = Gcra::per_second(5).unwrap();
    let mut s = GcraState::default();
    assert_eq!(
        g.check(&mut s, t(0), 6),
        Err(CostError::InsufficientCapacity {
            cost: 6,
            capacity: 5
        })
    );
    assert_eq!(s, GcraState::default());
    assert!(g.check(&mut s, t(0), u64::MAX).is_err());
}

#[test]
fn denial_writes_nothing_and_peek_agrees() {
    let g = Gcra::new(2, 1, Duration::from_millis(10)).unwrap();
    let mut s = GcraState::default();
    g.check(&mut s, t(1_000), 2).unwrap();
    let before = s;
    let p = g.peek(&s, t(1_000), 1).unwrap();
    let c = g.check(&mut s, t(1_000), 1).unwrap();
    assert_eq!(p, c);
    assert!(!c.allowed);
    assert_eq!(s, before);
}

#[test]
fn clock_going_backwards_grants_nothing() {
    let g = Gcra::per_second(2).unwrap();
    let mut s = GcraState::default();
    let now = t(5_000_000);
    g.check(&mut s, now, 2).unwrap();
    for back in [1, 1_000, 5_000_000] {
        let d = g.check(&mut s, t(5_000_000 - back), 1).unwrap();
        assert!(!d.allowed);
        assert_eq!(d.remaining, 0);
    }
    // Far in the past (more than a burst window back) is still a denial.
    assert!(!g.check(&mut s, t(0), 1).unwrap().allowed);
}

#[test]
fn at_most_takes_what_is_there() {
    let g = Gcra::new(10, 10, Duration::from_secs(1)).unwrap();
    let mut s = GcraState::default();
    let r = g.check_at_most(&mut s, t(0), 7);
    assert_eq!((r.taken, r.decision.remaining), (7, 3));
    let r = g.check_at_most(&mut s, t(0), 100);
    assert_eq!((r.taken, r.decision.remaining), (3, 0));
    let r = g.check_at_most(&mut s, t(0), 5);
    assert_eq!(r.taken, 0);
    assert!(!r.decision.allowed);
    assert_eq!(r.decision.retry_at, t(100_000));
    let r = g.check_at_most(&mut s, t(0), 0);
    assert!(r.decision.allowed);
    assert_eq!(r.taken, 0);
}

#[test]
fn refund_is_capped_at_full() {
    let g = Gcra::new(4, 4, Duration::from_secs(1)).unwrap();
    let mut s = GcraState::default();
    g.check(&mut s, t(0), 3).unwrap();
    assert_eq!(g.refund(&mut s, t(0), 1).remaining, 2);
    assert_eq!(g.refund(&mut s, t(0), 1_000).remaining, 4);
    assert!(g.is_full(&s, t(0)));
    // Refund on a full bucket changes nothing.
    let before = s;
    g.refund(&mut s, t(0), 2);
    assert_eq!(s, before);
}

#[test]
fn config_bounds() {
    assert_eq!(
        Gcra::new(1, 0, Duration::from_secs(1)),
        Err(ConfigError::Zero { field: "amount" })
    );
    assert_eq!(
        Gcra::new(1, 1, Duration::ZERO),
        Err(ConfigError::Zero { field: "period" })
    );
    assert!(matches!(
        Gcra::new(u64::MAX, 1, Duration::from_secs(1)),
        Err(ConfigError::TooLarge { .. })
    ));
    // 2^50 µs burst window is the edge.
    assert!(Gcra::new(1 << 20, 1, Duration::from_micros(1 << 30)).is_ok());
    assert!(Gcra::new((1 << 20) + 1, 1, Duration::from_micros(1 << 30)).is_err());
    // A window of 2^50 µs plus a fraction is over the bound too.
    assert!(Gcra::new(1 << 21, 2, Duration::from_micros((1 << 30) + 1)).is_err());
    // Amounts Lua and JS cannot hold exactly are rejected (they also
    // overflowed the mixed-number arithmetic).
    assert!(matches!(
        Gcra::new(3, u64::MAX, Duration::from_micros(1)),
        Err(ConfigError::TooLarge {
            field: "amount",
            ..
        })
    ));
    assert!(Gcra::new(3, MAX_SAFE_INTEGER, Duration::from_micros(1)).is_ok());
    let g = Gcra::new(7, 3, Duration::from_secs(1)).unwrap();
    assert_eq!(g.reduced_rate(), (1_000_000, 3));
    assert_eq!(g.burst_window(), Duration::from_micros(2_333_334));
}

#[test]
fn retry_at_saturates_at_the_end_of_time() {
    // Found by the gcra fuzz target: at now = Instant::MAX a denial
    // cannot point later; it saturates (documented on Decision).
    let g = Gcra::per_second(1).unwrap();
    let mut s = GcraState::default();
    assert!(g.check(&mut s, Instant::MAX, 1).unwrap().allowed);
    let d = g.check(&mut s, Instant::MAX, 1).unwrap();
    assert!(!d.allowed);
    assert_eq!(d.retry_at, Instant::MAX);
}

#[test]
fn extreme_rates_never_panic() {
    // Regression: with an unbounded amount this sequence overflowed.
    let g = Gcra::new(3, MAX_SAFE_INTEGER, Duration::from_micros(1)).unwrap();
    let mut s = GcraState::default();
    assert!(g.check(&mut s, t(10), 1).unwrap().allowed);
    assert!(g.check(&mut s, t(9), 1).is_ok());
    let mut odd = GcraState {
        tat: 0,
        rem: u64::MAX - 1,
    };
    assert!(g.check(&mut odd, t(0), 2).is_ok());
    let g = Gcra::new(1, 1, Duration::from_micros(MAX_BURST_WINDOW_MICROS)).unwrap();
    let mut s = GcraState {
        tat: u64::MAX,
        rem: 0,
    };
    assert!(!g.check(&mut s, Instant::MAX, 1).unwrap().allowed);
}

#[test]
fn division_by_multiplication_is_exact() {
    let mut ps = [
        1u64,
        2,
        3,
        7,
        10,
        1 << 20,
        (1 << 20) + 1,
        999_983,
        MAX_SAFE_INTEGER,
    ]
    .to_vec();
    let mut r = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..2_000 {
        r ^= r << 13;
        r ^= r >> 7;
        r ^= r << 17;
        ps.push(r % MAX_SAFE_INTEGER + 1);
    }
    for &p in &ps {
        let g = Gcra::new(1, 1, Duration::from_micros(1)).unwrap();
        let g = Gcra {
            p,
            p_inv: u64::MAX / p,
            ..g
        };
        for x in [
            0,
            1,
            p - 1,
            p,
            p + 1,
            2 * p - 1,
            MAX_SAFE_INTEGER - 1,
            MAX_SAFE_INTEGER,
            r % MAX_SAFE_INTEGER,
        ] {
            if x <= MAX_SAFE_INTEGER {
                assert_eq!(g.div_p(x), x / p, "x = {x}, p = {p}");
            }
        }
        for k in [1u64, 2, 3, 1_000, MAX_SAFE_INTEGER / p] {
            let x = (k * p).min(MAX_SAFE_INTEGER);
            for x in [x - 1, x, x.saturating_add(1).min(MAX_SAFE_INTEGER)] {
                assert_eq!(g.div_p(x), x / p, "x = {x}, p = {p}");
            }
        }
    }
}

proptest::proptest! {
    /// The one-token denial decided by one comparison says exactly what
    /// the full path (admission, then the decision's figures) says.
    #[test]
    fn one_token_shortcut_equals_the_full_path(
        capacity in 1u64..50,
        amount in 1u64..5_000,
        period in 1u64..3_000_000,
        steps in proptest::collection::vec((0u64..400_000, 1u64..4), 1..60),
    ) {
        let Ok(g) = Gcra::new(capacity, amount, Duration::from_micros(period)) else {
            return Ok(());
        };
        let mut s = GcraState::default();
        let mut now = 1_000_000_000;
        for (dt, cost) in steps {
            now += dt % (g.burst_window().as_micros() + 2);
            let t = Instant::from_micros(now);
            for cost in [1, cost.min(capacity)] {
                let full = g.admit(&s, t, cost).map(|a| g.decision(&a, t, cost));
                proptest::prop_assert_eq!(g.peek(&s, t, cost), full);
            }
            g.check(&mut s, t, cost.min(capacity)).unwrap();
        }
    }

    /// `allow` is `check`'s verdict with `check`'s change of state, over
    /// every cost from 0 to above the capacity.
    #[test]
    fn allow_is_checks_verdict_with_its_state(
        capacity in 1u64..50,
        amount in 1u64..5_000,
        period in 1u64..3_000_000,
        steps in proptest::collection::vec((0u64..400_000, 0u64..60), 1..80),
    ) {
        let Ok(g) = Gcra::new(capacity, amount, Duration::from_micros(period)) else {
            return Ok(());
        };
        let (mut a, mut c) = (GcraState::default(), GcraState::default());
        let mut now = 1_000_000_000;
        for (dt, cost) in steps {
            now += dt % (g.burst_window().as_micros() + 2);
            let t = Instant::from_micros(now);
            let verdict = g.allow(&mut a, t, cost);
            proptest::prop_assert_eq!(verdict, g.check(&mut c, t, cost).map(|d| d.allowed));
            proptest::prop_assert_eq!(a, c);
        }
    }
}

#[test]
fn oversized_rem_is_normalised_not_trusted() {
    let g = Gcra::new(3, 3, Duration::from_secs(1)).unwrap();
    // rem = 7 is not a number of thirds of a µs core writes: it came from
    // a config with a finer unit, so it was under 1 µs → tat + 1 µs.
    let s = GcraState { tat: 1_000, rem: 7 };
    let d = g.peek(&s, t(1_000), 0).unwrap();
    assert_eq!(d.reset_at, t(1_001));
    assert_eq!(d.remaining, 2); // 1 µs past full: not yet 3
    assert_eq!(g.peek(&s, t(1_001), 0).unwrap().remaining, 3);
    let mut corrupt = GcraState {
        tat: u64::MAX,
        rem: u64::MAX,
    };
    assert!(!g.check(&mut corrupt, t(0), 1).unwrap().allowed);
}
