use super::*;

/// `base_delay` as it was computed with 128-bit division, for the
/// test that the 64-bit steps give the same delays.
fn base_delay_by_128_bit_division(b: &Backoff, n: u32) -> Duration {
    const ONE: u128 = 1 << 32;
    let cap = b.cap.as_micros() as u128;
    let initial = b.initial.as_micros() as u128;
    if initial == 0 {
        return Duration::ZERO;
    }
    let sat = cap * ONE / initial + 1;
    let mul = |x: u128, y: u128| x.checked_mul(y).map_or(sat, |p| (p >> 32).min(sat));
    let mut r = ONE;
    let mut f = (u128::from(b.factor_num) * ONE / u128::from(b.factor_den)).min(sat);
    let mut e = n;
    while e > 0 && r < sat {
        if e & 1 == 1 {
            r = mul(r, f);
        }
        e >>= 1;
        if e > 0 {
            f = mul(f, f);
        }
    }
    Duration::from_micros(((initial * r) >> 32).min(cap) as u64)
}

proptest::proptest! {
    #[test]
    fn saturation_is_the_128_bit_quotient(cap in 0u64.., initial in 1u64.., shift in 0u32..64) {
        let initial = (initial >> shift).max(1);
        let want = (u128::from(cap) << 32) / u128::from(initial) + 1;
        proptest::prop_assert_eq!(saturation(cap, initial), want);
    }

    #[test]
    fn base_delays_equal_those_of_128_bit_division(
        initial in 1u64..u64::MAX,
        cap_shift in 0u32..64,
        num in 1u32..u32::MAX,
        den in 1u32..u32::MAX,
        n in 0u32..200,
    ) {
        let cap = initial.saturating_add(u64::MAX >> cap_shift);
        let Ok(b) = Backoff::new(Duration::from_micros(initial), Duration::from_micros(cap)) else {
            return Ok(());
        };
        let Ok(b) = b.with_factor(num.max(den), den) else {
            return Ok(());
        };
        proptest::prop_assert_eq!(b.base_delay(n), base_delay_by_128_bit_division(&b, n));
    }
}

#[test]
fn exponential_caps_and_stops() {
    let b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350))
        .unwrap()
        .with_jitter(Jitter::None)
        .with_max_retries(5);
    let d: heapless::Vec<u64, 8> = b.delays(0).map(|d| d.as_millis()).collect();
    assert_eq!(&d[..], &[100, 200, 350, 350, 350]);
    let b = b.with_factor(3, 2).unwrap();
    assert_eq!(b.base_delay(2), Duration::from_millis(225));
    assert_eq!(b.base_delay(u32::MAX), Duration::from_millis(350));
    // Regression: tiny initials used to stall on floor(1 × 1.5) = 1.
    let tiny = Backoff::new(Duration::from_micros(3), Duration::from_secs(1))
        .unwrap()
        .with_factor(3, 2)
        .unwrap();
    let d: heapless::Vec<u64, 8> = (0..8).map(|n| tiny.base_delay(n).as_micros()).collect();
    assert_eq!(&d[..], &[3, 4, 6, 10, 15, 22, 34, 51]);
    let one = Backoff::new(Duration::from_micros(1), Duration::from_secs(1))
        .unwrap()
        .with_factor(3, 2)
        .unwrap();
    assert_eq!(one.base_delay(4).as_micros(), 5); // floor(1.5^4 = 5.06)
                                                  // Factor 1 and huge attempt counts return at once.
    let flat = Backoff::new(Duration::from_millis(7), Duration::from_secs(1))
        .unwrap()
        .with_factor(5, 5)
        .unwrap();
    assert_eq!(flat.base_delay(u32::MAX), Duration::from_millis(7));
    let slow = Backoff::new(Duration::from_micros(1), Duration::MAX)
        .unwrap()
        .with_factor(1_000_001, 1_000_000)
        .unwrap();
    assert!(slow.base_delay(u32::MAX) <= Duration::MAX);
}

#[test]
fn jitter_stays_in_bounds() {
    for j in [Jitter::Full, Jitter::Equal, Jitter::Decorrelated] {
        let b = Backoff::new(Duration::from_millis(10), Duration::from_secs(1))
            .unwrap()
            .with_jitter(j)
            .without_max_retries();
        let mut st = b.start(Instant::ZERO, 99);
        for n in 0..200 {
            let Step::Retry { delay, .. } = b.next(&mut st, Instant::ZERO, None) else {
                panic!()
            };
            assert!(delay <= b.cap(), "{j:?}");
            if j == Jitter::Equal {
                assert!(delay.as_micros() >= b.base_delay(n).as_micros() / 2);
            }
            if j == Jitter::Decorrelated {
                assert!(delay >= b.initial());
            }
        }
    }
    assert_eq!(uniform(u64::MAX, 0, u64::MAX), u64::MAX);
    assert_eq!(uniform(0, 5, 5), 5);
}

#[test]
fn hints_and_elapsed() {
    let b = Backoff::new(Duration::from_millis(10), Duration::from_secs(2))
        .unwrap()
        .with_jitter(Jitter::None)
        .with_max_elapsed(Duration::from_secs(3));
    let mut st = b.start(Instant::ZERO, 1);
    assert_eq!(
        b.next(&mut st, Instant::ZERO, Some(Duration::from_secs(3))),
        Step::GiveUp(GiveUp::HintBeyondCap {
            hint: Duration::from_secs(3)
        })
    );
    let Step::Retry { at, .. } = b.next(&mut st, Instant::ZERO, Some(Duration::from_secs(2)))
    else {
        panic!()
    };
    assert_eq!(at, Instant::from_secs(2));
    assert_eq!(
        b.next(
            &mut st,
            Instant::from_secs(2),
            Some(Duration::from_millis(1_001))
        ),
        Step::GiveUp(GiveUp::MaxElapsed)
    );
}

#[test]
fn config_errors() {
    assert!(Backoff::new(Duration::from_secs(2), Duration::from_secs(1)).is_err());
    assert!(Backoff::new(Duration::ZERO, Duration::ZERO).is_err());
    assert!(Backoff::llm_default().with_factor(1, 2).is_err());
    assert!(Backoff::llm_default().with_factor(1, 0).is_err());
}
