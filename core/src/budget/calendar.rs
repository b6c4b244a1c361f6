//! Window boundaries for budget horizons, computed from `now` alone (no reset job).
//!
//! Fixed windows are aligned so that they start at local midnight of a fixed
//! UTC offset (for a 1-day window: local calendar days). Calendar months use
//! the proleptic Gregorian calendar (Howard Hinnant's `days_from_civil` /
//! `civil_from_days`), which assumes the epoch is the Unix epoch.

use super::Horizon;

const DAY_US: u64 = 86_400_000_000;

/// `[start, end)` of the window containing `now`, in µs, for a horizon
/// at a UTC offset of `offset_us`. `start` is clamped at 0, `end` at
/// `u64::MAX`.
///
/// Exact for every `now` and offset with 64-bit divisions only (a test
/// holds it to the same computation in 128 bits): a 128-bit division is a
/// library call, and this runs for every limit on every budget operation
/// (`budget_reserve_settle`: 2,112 → 1,623 instructions).
pub(crate) fn bounds(h: Horizon, offset_us: i64, now: u64) -> (u64, u64) {
    match h {
        Horizon::Fixed(len) => {
            // The local window starts at a multiple of `len`, so `now` is
            // `(now + offset) mod len` past the window's start.
            let len = len.as_micros().max(1);
            let into = add_mod(now % len, rem_euclid(offset_us, len), len);
            match now.checked_sub(into) {
                Some(start) => (start, start.saturating_add(len)),
                // The window starts before the epoch: clamped.
                None => (0, len - (into - now)),
            }
        }
        Horizon::CalendarMonth => {
            // The local day: ⌊(now + offset) / day⌋, in parts that fit.
            let carry = (now % DAY_US + rem_euclid(offset_us, DAY_US)) / DAY_US;
            let days = (now / DAY_US) as i64 + offset_us.div_euclid(DAY_US as i64) + carry as i64;
            let (y, m, _) = civil_from_days(days);
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            // Multiplied and shifted in 128 bits (no division), then clamped.
            let utc = |days: i64| {
                let us = days as i128 * DAY_US as i128 - offset_us as i128;
                us.clamp(0, u64::MAX as i128) as u64
            };
            (
                utc(days_from_civil(y, m, 1)),
                utc(days_from_civil(ny, nm, 1)),
            )
        }
    }
}

/// `x mod m` in `[0, m)`.
fn rem_euclid(x: i64, m: u64) -> u64 {
    let r = x.unsigned_abs() % m;
    if x >= 0 || r == 0 {
        r
    } else {
        m - r
    }
}

/// `(a + b) mod m` for `a, b < m`, without overflowing.
fn add_mod(a: u64, b: u64, m: u64) -> u64 {
    match a.checked_add(b) {
        Some(s) if s < m => s,
        // a + b − m < m: the wrapped sum less m is it.
        _ => a.wrapping_add(b).wrapping_sub(m),
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub(crate) const fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 } as i64;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date `(year, month, day)` of a day count since 1970-01-01.
pub(crate) const fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Duration;

    /// The bounds computed in 128 bits (no overflow to think about): what
    /// `bounds` must equal.
    fn bounds_wide(h: Horizon, offset_us: i64, now: u64) -> (u64, u64) {
        const DAY: i128 = DAY_US as i128;
        let local = now as i128 + offset_us as i128;
        let (start_local, end_local) = match h {
            Horizon::Fixed(len) => {
                let len = len.as_micros().max(1) as i128;
                let s = local.div_euclid(len) * len;
                (s, s + len)
            }
            Horizon::CalendarMonth => {
                let days = local.div_euclid(DAY) as i64;
                let (y, m, _) = civil_from_days(days);
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                (
                    days_from_civil(y, m, 1) as i128 * DAY,
                    days_from_civil(ny, nm, 1) as i128 * DAY,
                )
            }
        };
        let clamp = |v: i128| v.clamp(0, u64::MAX as i128) as u64;
        (
            clamp(start_local - offset_us as i128),
            clamp(end_local - offset_us as i128),
        )
    }

    fn horizon() -> impl proptest::strategy::Strategy<Value = Horizon> {
        use proptest::prelude::*;
        prop_oneof![
            Just(Horizon::CalendarMonth),
            prop_oneof![
                1u64..=3_600_000_000,
                Just(86_400_000_000),
                Just(604_800_000_000),
                any::<u64>(),
                (u64::MAX - 1_000)..=u64::MAX,
            ]
            .prop_map(|us| Horizon::Fixed(Duration::from_micros(us))),
        ]
    }

    fn now() -> impl proptest::strategy::Strategy<Value = u64> {
        use proptest::prelude::*;
        prop_oneof![
            0u64..=200_000_000_000,
            1_700_000_000_000_000u64..=1_900_000_000_000_000,
            any::<u64>(),
            (u64::MAX - 200_000_000_000)..=u64::MAX,
        ]
    }

    fn offset() -> impl proptest::strategy::Strategy<Value = i64> {
        use proptest::prelude::*;
        prop_oneof![
            // What a budget's config allows (±18 h, whole seconds)…
            (-64_800i64..=64_800).prop_map(|s| s * 1_000_000),
            // …whole and half hours and days (often a multiple of the
            // window)…
            (-36i64..=36).prop_map(|h| h * 1_800_000_000),
            (-3i64..=3).prop_map(|d| d * 86_400_000_000),
            // …and any offset at all.
            any::<i64>(),
            Just(i64::MIN),
            Just(i64::MAX),
        ]
    }

    /// `now`, or the time a local window (a day, for months) starts
    /// nearest it, moved by `delta`: where the arithmetic turns over.
    fn near_a_start(h: Horizon, off: i64, now: u64, delta: i64) -> u64 {
        let len = match h {
            Horizon::Fixed(len) => len.as_micros().max(1),
            Horizon::CalendarMonth => DAY_US,
        } as i128;
        let local = now as i128 + off as i128;
        let start = local - local.rem_euclid(len) - off as i128 + delta as i128;
        start.clamp(0, u64::MAX as i128) as u64
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]
        #[test]
        fn bounds_equal_the_128_bit_computation(
            h in horizon(),
            off in offset(),
            now in now(),
            at_start in proptest::prelude::any::<bool>(),
            delta in -2i64..=2,
        ) {
            let now = if at_start { near_a_start(h, off, now, delta) } else { now };
            proptest::prop_assert_eq!(bounds(h, off, now), bounds_wide(h, off, now));
        }
    }

    const S: u64 = 1_000_000;

    #[test]
    fn civil_round_trip() {
        for z in (-800_000i64..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
    }

    #[test]
    fn months_at_offsets() {
        // 2026-02-28T23:30:00Z
        let now = (days_from_civil(2026, 2, 28) as u64 * 86_400 + 23 * 3_600 + 1_800) * S;
        let feb = days_from_civil(2026, 2, 1) as u64 * 86_400 * S;
        let mar = days_from_civil(2026, 3, 1) as u64 * 86_400 * S;
        assert_eq!(bounds(Horizon::CalendarMonth, 0, now), (feb, mar));
        // At UTC+1 it is already March 1st, 00:30 local; March starts at 23:00Z.
        let h = 3_600 * S;
        let apr = days_from_civil(2026, 4, 1) as u64 * 86_400 * S;
        assert_eq!(
            bounds(Horizon::CalendarMonth, h as i64, now),
            (mar - h, apr - h)
        );
    }

    #[test]
    fn days_at_offsets_and_clamping() {
        let day = Horizon::Fixed(Duration::from_secs(86_400));
        let now = 86_400 * 10 * S + 5 * 3_600 * S; // day 10, 05:00Z
        assert_eq!(bounds(day, 0, now), (86_400 * 10 * S, 86_400 * 11 * S));
        // UTC−8: local day starts at 08:00Z; at 05:00Z we're in the previous local day.
        let o = -(8 * 3_600 * S as i64);
        assert_eq!(
            bounds(day, o, now),
            (
                86_400 * 9 * S + 8 * 3_600 * S,
                86_400 * 10 * S + 8 * 3_600 * S
            )
        );
        // Near the epoch a window start before 0 clamps.
        assert_eq!(bounds(day, 3_600 * S as i64, 0).0, 0);
    }
}
