//! Window boundaries for budget horizons, computed from `now` alone (no reset job).
//!
//! Fixed windows are aligned so that they start at local midnight of a fixed
//! UTC offset (for a 1-day window: local calendar days). Calendar months use
//! the proleptic Gregorian calendar (Howard Hinnant's `days_from_civil` /
//! `civil_from_days`), which assumes the epoch is the Unix epoch.

use super::Horizon;

const DAY_US: i128 = 86_400_000_000;

/// `[start, end)` of the window containing `now`, in µs, for a horizon
/// at a UTC offset of `offset_us`. `start` is clamped at 0.
pub(crate) fn bounds(h: Horizon, offset_us: i64, now: u64) -> (u64, u64) {
    let local = now as i128 + offset_us as i128;
    let (start_local, end_local) = match h {
        Horizon::Fixed(len) => {
            let len = len.as_micros().max(1) as i128;
            let s = local.div_euclid(len) * len;
            (s, s + len)
        }
        Horizon::CalendarMonth => {
            let days = local.div_euclid(DAY_US) as i64;
            let (y, m, _) = civil_from_days(days);
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            (
                days_from_civil(y, m, 1) as i128 * DAY_US,
                days_from_civil(ny, nm, 1) as i128 * DAY_US,
            )
        }
    };
    let clamp = |v: i128| v.clamp(0, u64::MAX as i128) as u64;
    (
        clamp(start_local - offset_us as i128),
        clamp(end_local - offset_us as i128),
    )
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
