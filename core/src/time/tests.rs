use super::*;

/// `div_wide` against 128-bit division: the edges (divisors 1 and
/// `u64::MAX`, `hi` one below the divisor, normalisation shifts 0 and
/// 63) and random operands, and the two ratios built on it.
#[test]
fn wide_division_is_128_bit_division() {
    let check = |hi: u64, lo: u64, d: u64| {
        let n = (u128::from(hi) << 64) | u128::from(lo);
        let want = ((n / u128::from(d)) as u64, (n % u128::from(d)) as u64);
        assert_eq!(div_wide(hi, lo, d), want, "{hi} {lo} {d}");
    };
    let edges = [
        1,
        2,
        3,
        (1 << 32) - 1,
        1 << 32,
        (1 << 32) + 1,
        1 << 63,
        u64::MAX - 1,
        u64::MAX,
    ];
    for &d in &edges {
        for &lo in &[0, 1, u64::MAX, 1 << 63, (1 << 32) - 1] {
            for hi in [0, 1, d / 2, d.saturating_sub(1)] {
                if hi < d {
                    check(hi, lo, d);
                }
            }
        }
    }
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..200_000 {
        let d = next() >> (next() % 64);
        let d = d.max(1);
        let hi = next() % d;
        check(hi, next(), d);
        let (a, b, c) = (next() >> (next() % 64), next() >> (next() % 64), d);
        let p = u128::from(a) * u128::from(b);
        let sat = |q: u128| u64::try_from(q).unwrap_or(u64::MAX);
        assert_eq!(
            mul_div_floor(a, b, c),
            sat(p / u128::from(c)),
            "{a} {b} {c}"
        );
        assert_eq!(
            mul_div_ceil(a, b, c),
            sat(p.div_ceil(u128::from(c))),
            "{a} {b} {c}"
        );
    }
}

#[test]
fn saturates_everywhere() {
    assert_eq!(Instant::from_micros(u64::MAX), Instant::MAX);
    assert_eq!(Instant::from_secs(u64::MAX), Instant::MAX);
    assert_eq!(Instant::MAX + Duration::MAX, Instant::MAX);
    assert_eq!(Instant::ZERO - Duration::from_secs(1), Instant::ZERO);
    assert_eq!(Duration::MAX.saturating_mul(3), Duration::MAX);
    assert_eq!(
        Instant::from_secs(1) - Instant::from_secs(2),
        Duration::ZERO
    );
    assert_eq!(Duration::from_micros(1_001).as_millis_ceil(), 2);
    assert_eq!(Duration::from_micros(1_000_001).as_secs_ceil(), 2);
}

#[test]
fn unix_now_in_micros_is_far_below_the_bound() {
    // 2026 as Unix microseconds is about 1.8e15 < 2^52 ≈ 4.5e15.
    let y2026 = Instant::from_secs(1_790_000_000);
    assert!(y2026 < Instant::MAX);
    assert_eq!(y2026.as_secs(), 1_790_000_000);
}

fn operand() -> impl proptest::strategy::Strategy<Value = u64> {
    use proptest::prelude::*;
    prop_oneof![
        0u64..=1_000,
        any::<u32>().prop_map(u64::from),
        any::<u64>(),
        (u64::MAX - 3)..=u64::MAX
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]
    /// The 64-bit shortcut agrees with the 128-bit computation, on both
    /// sides of a product that fits.
    #[test]
    fn mul_div_equals_the_128_bit_computation(a in operand(), b in operand(), c in operand()) {
        let wide = |q: u128| if c == 0 { u64::MAX } else { q.min(u64::MAX as u128) as u64 };
        let (p, d) = (a as u128 * b as u128, (c as u128).max(1));
        proptest::prop_assert_eq!(mul_div_floor(a, b, c), wide(p / d));
        proptest::prop_assert_eq!(mul_div_ceil(a, b, c), wide(p.div_ceil(d)));
    }
}

#[test]
fn mul_div_is_exact() {
    assert_eq!(mul_div_floor(u64::MAX, u64::MAX, u64::MAX), u64::MAX);
    assert_eq!(mul_div_floor(7, 3, 2), 10);
    assert_eq!(mul_div_ceil(7, 3, 2), 11);
    assert_eq!(mul_div_ceil(6, 3, 2), 9);
    assert_eq!(mul_div_floor(1, 1, 0), u64::MAX);
    assert_eq!(mul_div_floor(u64::MAX, 2, 1), u64::MAX);
}

#[test]
fn std_duration_round_trip() {
    let d: Duration = core::time::Duration::from_nanos(1_999).into();
    assert_eq!(d.as_micros(), 1);
    let back: core::time::Duration = Duration::from_millis(3).into();
    assert_eq!(back, core::time::Duration::from_millis(3));
}
