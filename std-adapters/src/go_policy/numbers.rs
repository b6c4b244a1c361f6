//! Exact conversions between Go's JSON numbers and ratebound's integers, and
//! the serde helpers that write numbers, durations and times digit for digit
//! as Go's `encoding/json` does.

use std::time::{Duration, SystemTime};

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use crate::time_text::{format_rfc3339_go, parse_go_duration_nanos, parse_rfc3339};

/// `v`, a float read from JSON, as an integer count of `10^-digits` units,
/// exactly: `0.25` with 6 digits is 250 000. The float's shortest decimal
/// form (what Go and Rust both print) must have at most `digits` places.
pub(super) fn to_units(v: f64, digits: u32, max: u64) -> Result<u64, String> {
    if v == 0.0 {
        return Ok(0); // also -0, which Go reads as 0
    }
    if !v.is_finite() || v < 0.0 {
        return Err(format!("must be a non-negative number, got {v}"));
    }
    // Rust prints the shortest decimal that reads back as the same float,
    // without an exponent: the number the JSON text meant (serde_json's
    // `float_roundtrip` reads every float exactly, 17 digits included).
    let text = format!("{v}");
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let frac = frac.trim_end_matches('0');
    if frac.len() > digits as usize {
        return Err(format!(
            "{text} has more than {digits} decimal places, which ratebound cannot count exactly"
        ));
    }
    let scale = 10u64.pow(digits);
    let too_large = || format!("{text} is too large (at most {})", from_units(max, digits));
    let whole: u64 = int.parse().map_err(|_| too_large())?;
    let part: u64 = if frac.is_empty() {
        0
    } else {
        frac.parse::<u64>().map_err(|_| too_large())? * 10u64.pow(digits - frac.len() as u32)
    };
    let units = whole
        .checked_mul(scale)
        .and_then(|w| w.checked_add(part))
        .ok_or_else(too_large)?;
    if units > max {
        return Err(too_large());
    }
    Ok(units)
}

/// `units` of `10^-digits` as the shortest decimal: `250000` with 6 digits
/// is `0.25`, `10000000` is `10`.
pub(super) fn from_units(units: u64, digits: u32) -> String {
    let scale = 10u64.pow(digits);
    let (whole, part) = (units / scale, units % scale);
    if part == 0 {
        return whole.to_string();
    }
    let frac = format!("{part:0width$}", width = digits as usize);
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

/// A float as Go's `encoding/json` writes it: the shortest decimal that
/// reads back as the same float, with an exponent below 1e-6 and from 1e21
/// (`2e-8`, `1e+21`), `0` for zero. Non-finite values (which Go refuses to
/// write) are written as `0`.
pub(super) fn go_float(v: f64) -> String {
    if !v.is_finite() || v == 0.0 {
        return "0".into();
    }
    let abs = v.abs();
    if (1e-6..1e21).contains(&abs) {
        return format!("{v}");
    }
    // Rust writes `2e-8` / `1e21`; Go writes `2e-08` and cleans it up to
    // `2e-8`, and writes `1e+21`.
    let e = format!("{v:e}");
    match e.split_once('e') {
        Some((m, exp)) if !exp.starts_with('-') => format!("{m}e+{exp}"),
        _ => e,
    }
}

fn raw<S: Serializer>(text: String, s: S) -> Result<S::Ok, S::Error> {
    RawValue::from_string(text)
        .map_err(serde::ser::Error::custom)?
        .serialize(s)
}

/// Serialize an `f64` as Go writes it.
pub(super) fn ser_go_float<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    raw(go_float(*v), s)
}

/// Dollars (a JSON number) as integer micro-USD.
pub(super) mod usd {
    use super::*;
    /// The largest amount: 2^50 micro-USD (about $1.1 billion).
    const MAX: u64 = ratebound_core::budget::MAX_AMOUNT;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        to_units(f64::deserialize(d)?, 6, MAX).map_err(D::Error::custom)
    }
    pub(crate) fn serialize<S: Serializer>(micros: &u64, s: S) -> Result<S::Ok, S::Error> {
        raw(from_units(*micros, 6), s)
    }
}

/// A fraction `0.0..=1.0` (a JSON number) as integer basis points.
pub(super) mod fraction_bp {
    use super::*;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
        let bp = to_units(f64::deserialize(d)?, 4, 10_000).map_err(|e| {
            D::Error::custom(format!("{e}; a fraction from 0 to 1 in steps of 0.0001"))
        })?;
        Ok(bp as u16)
    }
    pub(crate) fn serialize<S: Serializer>(bp: &u16, s: S) -> Result<S::Ok, S::Error> {
        raw(from_units(u64::from(*bp), 4), s)
    }
}

/// A Go `time.Duration`: integer nanoseconds (how `encoding/json` writes
/// it) or a duration string (`"1.5s"`, `"250ms"`), in whole microseconds.
pub(super) mod go_duration {
    use super::*;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        Nanos(i64),
        Text(String),
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let nanos: u128 = match Form::deserialize(d).map_err(|_| {
            D::Error::custom("expected integer nanoseconds or a Go duration string like \"1s\"")
        })? {
            Form::Nanos(n) if n < 0 => {
                return Err(D::Error::custom(format!("must not be negative, got {n}")))
            }
            Form::Nanos(n) => n as u128,
            Form::Text(t) => parse_go_duration_nanos(&t)
                .map_err(|e| D::Error::custom(format!("{e} in {t:?}")))?,
        };
        if !nanos.is_multiple_of(1_000) {
            return Err(D::Error::custom(format!(
                "{nanos}ns: ratebound counts whole microseconds"
            )));
        }
        u64::try_from(nanos)
            .ok()
            .filter(|&n| n <= i64::MAX as u64)
            .map(Duration::from_nanos)
            .ok_or_else(|| D::Error::custom("longer than Go's time.Duration holds"))
    }
    pub(crate) fn serialize<S: Serializer>(v: &Duration, s: S) -> Result<S::Ok, S::Error> {
        match i64::try_from(v.as_nanos()) {
            Ok(n) => s.serialize_i64(n),
            Err(_) => Err(serde::ser::Error::custom(
                "longer than Go's time.Duration holds (about 292 years)",
            )),
        }
    }
}

/// A Go `time.Time` (RFC 3339, UTC on output).
pub(super) mod go_time {
    use super::*;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let t = String::deserialize(d)?;
        parse_rfc3339(&t).map_err(|e| D::Error::custom(format!("{e}, got {t:?}")))
    }
    pub(crate) fn serialize<S: Serializer>(v: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        match format_rfc3339_go(*v) {
            Some(t) => s.serialize_str(&t),
            None => Err(serde::ser::Error::custom(
                "times before 1970 or after 9999 cannot be written",
            )),
        }
    }

    /// Go's zero `time.Time`, written for a time never set.
    const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

    /// The same for `Option`: `null` and Go's zero time read as `None`;
    /// `None` is written as Go's zero time (or left out by
    /// `skip_serializing_if`, as Go's `omitempty` on a pointer).
    pub(crate) mod option {
        use super::*;
        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<SystemTime>, D::Error> {
            match Option::<String>::deserialize(d)? {
                None => Ok(None),
                Some(t) if t == GO_ZERO_TIME => Ok(None),
                Some(t) => parse_rfc3339(&t)
                    .map(Some)
                    .map_err(|e| D::Error::custom(format!("{e}, got {t:?}"))),
            }
        }
        pub(crate) fn serialize<S: Serializer>(
            v: &Option<SystemTime>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match v {
                Some(t) => super::serialize(t, s),
                None => s.serialize_str(GO_ZERO_TIME),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_units() {
        assert_eq!(to_units(0.1, 6, u64::MAX), Ok(100_000));
        assert_eq!(to_units(10.0, 6, u64::MAX), Ok(10_000_000));
        assert_eq!(to_units(0.000001, 6, u64::MAX), Ok(1));
        assert_eq!(to_units(1e-6, 6, u64::MAX), Ok(1));
        assert_eq!(to_units(0.8, 4, 10_000), Ok(8_000));
        assert_eq!(to_units(1.0, 4, 10_000), Ok(10_000));
        assert!(to_units(0.0000001, 6, u64::MAX).is_err());
        assert!(to_units(0.12345, 4, 10_000).is_err());
        assert!(to_units(1.0001, 4, 10_000).is_err());
        assert!(to_units(-0.5, 6, u64::MAX).is_err());
        assert!(to_units(f64::NAN, 6, u64::MAX).is_err());
        assert!(to_units(1e300, 6, u64::MAX).is_err());
        assert_eq!(to_units(-0.0, 6, u64::MAX), Ok(0));
        for units in [0, 1, 10, 250_000, 10_000_000, 1_234_567_891, (1 << 50) - 1] {
            let text = from_units(units, 6);
            assert_eq!(
                to_units(text.parse().unwrap(), 6, u64::MAX),
                Ok(units),
                "{text}"
            );
        }
        assert_eq!(from_units(250_000, 6), "0.25");
        assert_eq!(from_units(10_000_000, 6), "10");
        assert_eq!(from_units(1, 6), "0.000001");
    }

    #[test]
    fn floats_as_go_writes_them() {
        assert_eq!(go_float(0.0), "0");
        assert_eq!(go_float(1.0), "1");
        assert_eq!(go_float(0.8), "0.8");
        assert_eq!(go_float(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(go_float(1e-6), "0.000001");
        assert_eq!(go_float(2e-8), "2e-8");
        assert_eq!(go_float(1.5e-10), "1.5e-10");
        assert_eq!(go_float(1e21), "1e+21");
        assert_eq!(go_float(123456.5), "123456.5");
    }
}
