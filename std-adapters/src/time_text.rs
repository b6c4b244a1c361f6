//! Times and durations as text: Go's `time.Duration` strings, RFC 3339
//! times with offsets, and the RFC 3339 form Go's `encoding/json` writes.
//! Shared by the upstream header parser and the Go policy JSON forms.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A non-negative decimal (`12`, `1.5`) times `unit_ns`, in nanoseconds.
/// Digits past the nanosecond are dropped (rounding down).
pub(crate) fn parse_decimal(v: &str, unit_ns: u128) -> Result<u128, &'static str> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if int.is_empty() && frac.is_empty() {
        return Err("expected a number");
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err("expected a non-negative decimal number");
    }
    if int.len() > 20 {
        return Err("number too large");
    }
    let whole: u128 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| "number too large")?
    };
    let mut total = whole.checked_mul(unit_ns).ok_or("number too large")?;
    let mut scale = unit_ns;
    for d in frac.bytes() {
        scale /= 10;
        if scale == 0 {
            break;
        }
        total += u128::from(d - b'0') * scale;
    }
    Ok(total)
}

/// A Go `time.Duration` string (`6m0s`, `12ms`, `1.5s`, `1h2m3.25s`,
/// `250us`, `0`) in nanoseconds. Units `h`, `m`, `s`, `ms`, `us`/`µs`, `ns`;
/// no sign.
pub(crate) fn parse_go_duration_nanos(v: &str) -> Result<u128, &'static str> {
    if v == "0" {
        return Ok(0);
    }
    if v.is_empty() {
        return Err("empty duration");
    }
    let mut rest = v;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let num_len = rest
            .bytes()
            .position(|b| !(b.is_ascii_digit() || b == b'.'))
            .ok_or("a number without a unit")?;
        if num_len == 0 {
            return Err("expected a number before each unit");
        }
        let (num, tail) = rest.split_at(num_len);
        let unit_len = tail
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(tail.len(), |(i, _)| i);
        let (unit, next) = tail.split_at(unit_len);
        let ns: u128 = match unit {
            "h" => 3_600_000_000_000,
            "m" => 60_000_000_000,
            "s" => 1_000_000_000,
            "ms" => 1_000_000,
            "us" | "µs" | "μs" => 1_000,
            "ns" => 1,
            _ => return Err("unknown unit (expected h, m, s, ms, us or ns)"),
        };
        total = total
            .checked_add(parse_decimal(num, ns)?)
            .ok_or("duration too large")?;
        rest = next;
    }
    Ok(total)
}

/// An RFC 3339 time with `Z` or a `±hh:mm` offset.
pub(crate) fn parse_rfc3339(v: &str) -> Result<SystemTime, &'static str> {
    const BAD: &str = "expected an RFC 3339 time";
    let digits = |s: Option<&str>| -> Result<u64, &'static str> {
        s.filter(|d| d.bytes().all(|b| b.is_ascii_digit()))
            .ok_or(BAD)?
            .parse()
            .map_err(|_| BAD)
    };
    let (local, offset_secs) = match v.len().checked_sub(6).and_then(|i| Some((i, v.get(i..)?))) {
        Some((i, off))
            if (off.starts_with('+') || off.starts_with('-')) && off.get(3..4) == Some(":") =>
        {
            let (h, m) = (digits(off.get(1..3))?, digits(off.get(4..6))?);
            if h > 23 || m > 59 {
                return Err(BAD);
            }
            let secs = (h * 3600 + m * 60) as i64;
            (
                v.get(..i).ok_or(BAD)?,
                if off.starts_with('-') { -secs } else { secs },
            )
        }
        _ => (
            v.strip_suffix('Z')
                .or_else(|| v.strip_suffix('z'))
                .ok_or(BAD)?,
            0,
        ),
    };
    let at = humantime::parse_rfc3339_weak(local).map_err(|_| BAD)?;
    // Local time minus its offset is UTC.
    if offset_secs >= 0 {
        at.checked_sub(Duration::from_secs(offset_secs.unsigned_abs()))
    } else {
        at.checked_add(Duration::from_secs(offset_secs.unsigned_abs()))
    }
    .ok_or(BAD)
}

/// `at` in UTC as Go's `time.Time.MarshalJSON` writes it (RFC 3339 with
/// nanoseconds, trailing zeros of the fraction dropped):
/// `2026-12-02T05:48:21Z`, `2026-12-02T05:48:21.5Z`.
/// `None` outside 1970-01-01 ..= 9999-12-31, which the format cannot hold.
pub(crate) fn format_rfc3339_go(at: SystemTime) -> Option<String> {
    const YEAR_10000: u64 = 253_402_300_800;
    let since = at.duration_since(UNIX_EPOCH).ok()?;
    if since.as_secs() >= YEAR_10000 {
        return None;
    }
    let full = humantime::format_rfc3339_nanos(at).to_string();
    // "YYYY-MM-DDThh:mm:ss.nnnnnnnnnZ": trim the fraction's trailing zeros.
    Some(
        match full.strip_suffix('Z').and_then(|s| s.split_once('.')) {
            Some((secs, frac)) => {
                let frac = frac.trim_end_matches('0');
                if frac.is_empty() {
                    format!("{secs}Z")
                } else {
                    format!("{secs}.{frac}Z")
                }
            }
            None => full,
        },
    )
}

/// Microseconds since the Unix epoch as a `SystemTime`.
pub(crate) fn from_unix_micros(us: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(us)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_time_text() {
        let t = |us| format_rfc3339_go(from_unix_micros(us)).unwrap();
        assert_eq!(t(1_795_392_000_000_000), "2026-11-23T00:00:00Z");
        assert_eq!(t(1_795_392_000_500_000), "2026-11-23T00:00:00.5Z");
        assert_eq!(t(1_795_392_000_000_123), "2026-11-23T00:00:00.000123Z");
        for s in ["2026-11-23T00:00:00.5Z", "2026-11-23T01:30:00.5+01:30"] {
            assert_eq!(
                parse_rfc3339(s),
                Ok(from_unix_micros(1_795_392_000_500_000))
            );
        }
        assert_eq!(format_rfc3339_go(UNIX_EPOCH - Duration::from_secs(1)), None);
        assert_eq!(
            format_rfc3339_go(UNIX_EPOCH + Duration::from_secs(253_402_300_800)),
            None
        );
        assert!(parse_rfc3339("2026-11-23T00:00:00").is_err());
        assert!(parse_rfc3339("2026-11-23T00:00:00+24:00").is_err());
    }
}
