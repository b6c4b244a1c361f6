//! Rate-limit headers in: what an upstream provider says about its own
//! limits, parsed into hints for the retry executor and for pacing.
//!
//! Understood:
//!
//! | Header | Form |
//! |---|---|
//! | `Retry-After` | delta seconds (`120`, also `1.5`) or an HTTP-date |
//! | `retry-after-ms` (OpenAI) | milliseconds (`250`, `12.5`) |
//! | `x-ratelimit-{limit,remaining}-{requests,tokens}` (OpenAI) | integers |
//! | `x-ratelimit-reset-{requests,tokens}` (OpenAI) | Go durations: `6m0s`, `12ms`, `1.5s`, `1h2m3s` |
//! | `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining}` | integers |
//! | `anthropic-ratelimit-…-reset` | RFC 3339 time (`2026-11-23T21:00:00Z`) |
//!
//! A malformed value is an error naming the header and quoting (a bounded
//! prefix of) the value; nothing here panics, whatever the bytes.
//!
//! ```
//! use http::HeaderMap;
//! use ratebound_std::http::upstream::UpstreamLimits;
//! use std::time::{Duration, SystemTime};
//!
//! let mut h = HeaderMap::new();
//! h.insert("x-ratelimit-remaining-requests", "0".parse()?);
//! h.insert("x-ratelimit-reset-requests", "6m0s".parse()?);
//! let limits = UpstreamLimits::from_headers(&h, SystemTime::now())?;
//! assert_eq!(limits.requests.remaining, Some(0));
//! assert_eq!(limits.retry_hint(), Some(Duration::from_secs(360)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};

use crate::retry::Classify;
use crate::time_text::{parse_decimal, parse_go_duration_nanos, parse_rfc3339};

/// The longest hint accepted from an upstream: 7 days. Longer values are
/// refused as malformed rather than parking a client for a year.
pub const MAX_HINT: Duration = Duration::from_secs(7 * 24 * 3600);

/// A header that could not be understood.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("upstream header {header}: {reason} (got {value:?})")]
pub struct HeaderError {
    /// The header's name.
    pub header: String,
    /// Its value, at most 64 bytes of it, lossily decoded.
    pub value: String,
    /// What is wrong.
    pub reason: &'static str,
}

/// One of the upstream's counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Quota {
    /// Its limit.
    pub limit: Option<u64>,
    /// What is left.
    pub remaining: Option<u64>,
    /// How long until it is reset (replenished).
    pub reset_after: Option<Duration>,
}

impl Quota {
    fn is_exhausted(&self) -> bool {
        self.remaining == Some(0)
    }
}

/// What an upstream response said about its limits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UpstreamLimits {
    /// `Retry-After` (or `retry-after-ms`, which wins being finer).
    pub retry_after: Option<Duration>,
    /// Requests.
    pub requests: Quota,
    /// Tokens (all kinds).
    pub tokens: Quota,
    /// Input tokens (Anthropic).
    pub input_tokens: Quota,
    /// Output tokens (Anthropic).
    pub output_tokens: Quota,
}

impl UpstreamLimits {
    /// Parse every known header in `headers`; `now` turns dates into delays.
    /// Absent headers are `None`; the first malformed one is an error.
    pub fn from_headers(headers: &HeaderMap, now: SystemTime) -> Result<Self, HeaderError> {
        let (limits, errors) = Self::from_headers_lenient(headers, now);
        match errors.into_iter().next() {
            Some(e) => Err(e),
            None => Ok(limits),
        }
    }

    /// Parse what can be parsed: a malformed header leaves its own field
    /// `None` and is reported, without losing the others (a valid
    /// `Retry-After` still counts next to a garbled token count).
    pub fn from_headers_lenient(headers: &HeaderMap, now: SystemTime) -> (Self, Vec<HeaderError>) {
        let mut errors = Vec::new();
        let mut field = |r: Result<Option<u64>, HeaderError>| {
            r.unwrap_or_else(|e| {
                errors.push(e);
                None
            })
        };
        let mut out = UpstreamLimits::default();
        let mut durations = Vec::new();
        for kind in ["requests", "tokens"] {
            let q = if kind == "requests" {
                &mut out.requests
            } else {
                &mut out.tokens
            };
            let name = |f: &str| format!("x-ratelimit-{f}-{kind}");
            q.limit = field(int(headers, &name("limit"))).or(q.limit);
            q.remaining = field(int(headers, &name("remaining"))).or(q.remaining);
            durations.push((name("reset"), kind, false));
        }
        for kind in ["requests", "tokens", "input-tokens", "output-tokens"] {
            let q = match kind {
                "requests" => &mut out.requests,
                "tokens" => &mut out.tokens,
                "input-tokens" => &mut out.input_tokens,
                _ => &mut out.output_tokens,
            };
            let name = |f: &str| format!("anthropic-ratelimit-{kind}-{f}");
            q.limit = field(int(headers, &name("limit"))).or(q.limit);
            q.remaining = field(int(headers, &name("remaining"))).or(q.remaining);
            durations.push((name("reset"), kind, true));
        }
        let mut time =
            |h: &str, parse: &dyn Fn(&str) -> Result<Duration, &'static str>| -> Option<Duration> {
                match get(headers, h) {
                    Ok(Some(v)) => parse(v).map_err(|r| errors.push(err(h, v, r))).ok(),
                    Ok(None) => None,
                    Err(e) => {
                        errors.push(e);
                        None
                    }
                }
            };
        for (h, kind, rfc3339) in durations {
            let d = if rfc3339 {
                time(&h, &|v| parse_rfc3339_after(v, now))
            } else {
                time(&h, &parse_go_duration)
            };
            let q = match kind {
                "requests" => &mut out.requests,
                "tokens" => &mut out.tokens,
                "input-tokens" => &mut out.input_tokens,
                _ => &mut out.output_tokens,
            };
            q.reset_after = d.or(q.reset_after);
        }
        out.retry_after = time("retry-after", &|v| parse_retry_after(v, now));
        let ms = time("retry-after-ms", &|v| bounded(parse_decimal(v, 1_000_000)?));
        out.retry_after = ms.or(out.retry_after);
        (out, errors)
    }

    /// How long to wait before the next attempt: `Retry-After` when given,
    /// else the longest reset among the counts that are exhausted (remaining
    /// 0), else nothing.
    pub fn retry_hint(&self) -> Option<Duration> {
        self.retry_after.or_else(|| {
            [
                self.requests,
                self.tokens,
                self.input_tokens,
                self.output_tokens,
            ]
            .iter()
            .filter(|q| q.is_exhausted())
            .filter_map(|q| q.reset_after)
            .max()
        })
    }
}

/// An upstream's HTTP failure, classified for the retry executor
/// ([`RetryPolicy`](crate::retry::RetryPolicy)): 408, 429 and 5xx are
/// retryable (except 501 and 505); the upstream's own hint is the minimum wait.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("upstream answered {status}")]
pub struct UpstreamError {
    /// The status.
    pub status: StatusCode,
    /// What its headers said.
    pub limits: UpstreamLimits,
}

impl Classify for UpstreamError {
    fn is_retryable(&self) -> bool {
        let s = self.status.as_u16();
        s == 408 || s == 429 || (s >= 500 && s != 501 && s != 505)
    }
    fn retry_after(&self) -> Option<Duration> {
        self.limits.retry_hint()
    }
}

fn err(header: &str, value: &str, reason: &'static str) -> HeaderError {
    let mut cut = value.len().min(64);
    while !value.is_char_boundary(cut) {
        cut -= 1;
    }
    HeaderError {
        header: header.to_owned(),
        value: value.get(..cut).unwrap_or_default().to_owned(),
        reason,
    }
}

fn get<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, HeaderError> {
    let Some(v) = headers.get(name) else {
        return Ok(None);
    };
    match v.to_str() {
        Ok(s) => Ok(Some(s.trim())),
        Err(_) => Err(HeaderError {
            header: name.to_owned(),
            value: String::from_utf8_lossy(v.as_bytes().get(..64).unwrap_or(v.as_bytes()))
                .into_owned(),
            reason: "not visible ASCII",
        }),
    }
}

fn int(headers: &HeaderMap, name: &str) -> Result<Option<u64>, HeaderError> {
    let Some(v) = get(headers, name)? else {
        return Ok(None);
    };
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err(name, v, "expected a non-negative integer"));
    }
    v.parse()
        .map(Some)
        .map_err(|_| err(name, v, "integer too large"))
}

fn bounded(nanos: u128) -> Result<Duration, &'static str> {
    if nanos > MAX_HINT.as_nanos() {
        return Err("longer than 7 days");
    }
    Ok(Duration::from_nanos(nanos as u64))
}

/// `Retry-After`: delta seconds (a non-negative decimal) or an HTTP-date
/// (a date in the past means no wait).
pub fn parse_retry_after(v: &str, now: SystemTime) -> Result<Duration, &'static str> {
    if v.bytes()
        .next()
        .is_some_and(|b| b.is_ascii_digit() || b == b'.')
    {
        return bounded(parse_decimal(v, 1_000_000_000)?);
    }
    let at = httpdate::parse_http_date(v).map_err(|_| "expected delta seconds or an HTTP-date")?;
    bounded(at.duration_since(now).unwrap_or_default().as_nanos())
}

/// An RFC 3339 time (`Z` or a `±hh:mm` offset), as a delay from `now`
/// (zero when past).
fn parse_rfc3339_after(v: &str, now: SystemTime) -> Result<Duration, &'static str> {
    let at = parse_rfc3339(v)?;
    bounded(at.duration_since(now).unwrap_or_default().as_nanos())
}

/// A Go `time.Duration` string as OpenAI sends it: `6m0s`, `12ms`, `1.5s`,
/// `1h2m3.25s`, `250us`, `0`. Units `h`, `m`, `s`, `ms`, `us`/`µs`, `ns`;
/// no sign; at most [`MAX_HINT`].
pub fn parse_go_duration(v: &str) -> Result<Duration, &'static str> {
    bounded(parse_go_duration_nanos(v)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let ok = |s: &str| parse_go_duration(s).unwrap();
        assert_eq!(ok("6m0s"), Duration::from_secs(360));
        assert_eq!(ok("12ms"), Duration::from_millis(12));
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok("1h2m3.25s"), Duration::from_millis(3_723_250));
        assert_eq!(ok("250us"), Duration::from_micros(250));
        assert_eq!(ok("7µs"), Duration::from_micros(7));
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("0.000000001s"), Duration::from_nanos(1));
        for bad in [
            "",
            "6",
            "6x",
            "-1s",
            "s",
            "1..5s",
            "1e3s",
            "168h1s",
            "99999999999999999999999h",
            "1s ",
            "١s",
        ] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn retry_after_forms() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2026 07:28:00 GMT").unwrap();
        assert_eq!(parse_retry_after("120", now), Ok(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("0.5", now),
            Ok(Duration::from_millis(500))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2026 07:28:30 GMT", now),
            Ok(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2026 07:00:00 GMT", now),
            Ok(Duration::ZERO)
        );
        for bad in [
            "",
            "-1",
            "abc",
            "1,5",
            "NaN",
            "inf",
            "99999999999",
            "Wed, 32 Oct 2026 07:28:30 GMT",
        ] {
            assert!(parse_retry_after(bad, now).is_err(), "{bad:?} accepted");
        }
    }
}
