//! Rate-limit headers out, and the OpenAI-style 429 body.
//!
//! For a decision with the total count limited to 100 and the success count
//! to 10 per minute:
//!
//! ```text
//! RateLimit-Policy: "total";q=100;w=60, "success";q=10;w=60
//! RateLimit: "total";r=97;t=60, "success";r=7;t=60
//! X-RateLimit-Limit: 10
//! X-RateLimit-Remaining: 7
//! X-RateLimit-Reset: 60
//! ```
//!
//! - `RateLimit-Policy` / `RateLimit` follow the IETF draft
//!   (draft-ietf-httpapi-ratelimit-headers): one item per count, `q` the
//!   quota, `w` the window in seconds, `r` what remains, `t` seconds until
//!   the count is full again (every unit counted now has left the window).
//!   With the default sliding window, `q` and `w` mean exactly "at most `q`
//!   in any `w` seconds". A count configured as a token bucket carries the
//!   parameter `bucket` (`"total";q=100;w=60;bucket`): at most `q` at once,
//!   refilled smoothly at `q` per `w`, so one window of `w` may see up to
//!   `2q − 1`.
//! - The legacy `X-RateLimit-*` describe the binding count (the denying one,
//!   else the one with least left); `X-RateLimit-Reset` is seconds until it
//!   is full again (a delta, like `t`, not an epoch time).
//! - A 429 adds `Retry-After` in whole seconds, rounded up (at least 1).
//!   Seconds are rounded up everywhere, so a client that waits what it is
//!   told is never early.

use http::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};

use crate::model_limit::{Blocked, Count, ModelDecision, ModelQuota, Window};

/// `RateLimit-Policy`.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// `X-RateLimit-Limit`.
pub const X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
/// `X-RateLimit-Remaining`.
pub const X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
/// `X-RateLimit-Reset`.
pub const X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

fn items(d: &ModelDecision) -> impl Iterator<Item = (Count, ratebound_core::Decision)> + '_ {
    d.total
        .map(|t| (Count::Total, t))
        .into_iter()
        .chain(std::iter::once((Count::Success, d.success)))
}

fn number(n: u64) -> HeaderValue {
    HeaderValue::from(n)
}

fn text(s: String) -> HeaderValue {
    // Built from names we control and decimal numbers only: always valid.
    HeaderValue::from_str(&s).unwrap_or(HeaderValue::from_static(""))
}

/// Insert the quota headers for `d` under `quota` (replacing any present).
pub fn insert_quota_headers(headers: &mut HeaderMap, quota: &ModelQuota, d: &ModelDecision) {
    let window = quota.period().as_secs();
    let kind = match quota.window() {
        Window::Sliding => "",
        Window::Bucket => ";bucket",
    };
    let policy = items(d)
        .map(|(p, dec)| format!("\"{}\";q={};w={window}{kind}", p.name(), dec.limit))
        .collect::<Vec<_>>()
        .join(", ");
    let state = items(d)
        .map(|(p, dec)| {
            format!(
                "\"{}\";r={};t={}",
                p.name(),
                dec.remaining,
                dec.reset_after(d.now).as_secs_ceil()
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    headers.insert(RATELIMIT_POLICY, text(policy));
    headers.insert(RATELIMIT, text(state));
    let (_, b) = d.binding();
    headers.insert(X_RATELIMIT_LIMIT, number(b.limit));
    headers.insert(X_RATELIMIT_REMAINING, number(b.remaining));
    headers.insert(
        X_RATELIMIT_RESET,
        number(b.reset_after(d.now).as_secs_ceil()),
    );
}

/// Seconds for `Retry-After` on a denial: rounded up, at least 1.
pub fn retry_after_secs(d: &ModelDecision) -> u64 {
    d.retry_after().as_secs_ceil().max(1)
}

/// Insert `Retry-After` for a denial.
pub fn insert_retry_after(headers: &mut HeaderMap, d: &ModelDecision) {
    headers.insert(RETRY_AFTER, number(retry_after_secs(d)));
}

/// The OpenAI-style JSON error body of a 429:
/// `{"error":{"message":…,"type":"requests","param":null,"code":"rate_limit_exceeded"}}`.
/// The message says which count denied, what its limit guarantees, and,
/// when requests in flight hold the remaining slots, that.
pub fn rate_limited_body(model: &str, quota: &ModelQuota, d: &ModelDecision) -> String {
    let (policy, b) = d.binding();
    let what = match policy {
        Count::Total => "requests",
        Count::Success => "successful requests",
    };
    let minutes = quota.period().as_secs() / 60;
    let per = if minutes == 1 {
        "minute".to_owned()
    } else {
        format!("{minutes} minutes")
    };
    let limit = match quota.window() {
        Window::Sliding => format!("at most {} in any {per}", b.limit),
        Window::Bucket => format!(
            "{} per {per}, refilled smoothly (at most {} at once)",
            b.limit, b.limit
        ),
    };
    let why = if d.blocked == Some(Blocked::InFlight) {
        format!(
            " The remaining slots are held by {} requests in flight; one frees as soon as one of them fails.",
            d.in_flight
        )
    } else {
        String::new()
    };
    let message = format!(
        "Rate limit reached for model {model:?} ({what}): {limit}.{why} Please try again in {}s.",
        retry_after_secs(d)
    );
    serde_json::json!({
        "error": {
            "message": message,
            "type": "requests",
            "param": null,
            "code": "rate_limit_exceeded",
        }
    })
    .to_string()
}

/// What a client is told when the rate-limit store is away: the store's
/// own error (with its address) is for the operator's log.
pub(crate) const STORE_AWAY: &str = "The rate limit store is unavailable. Please try again later.";

/// `Retry-After` for a store that is away: `skipped` (the fail-over's skip
/// window: how long the store is left alone after a failure; a request
/// refused late in it is told the whole window) in whole seconds, rounded
/// up, at least 1.
pub(crate) fn store_retry_after(skipped: std::time::Duration) -> HeaderValue {
    let secs = skipped.as_secs() + u64::from(skipped.subsec_nanos() > 0);
    HeaderValue::from(secs.max(1))
}

/// `Retry-After` for a store full of active keys: a second, when some may
/// have gone idle (each layer answers its full store with it).
pub(crate) const STORE_FULL_RETRY_AFTER: HeaderValue = HeaderValue::from_static("1");

/// What a client is told when the rate-limit store refused the call (an
/// ACL, a script error): its own words are for the operator's log.
pub(crate) const STORE_FAULT: &str = "The rate limit store could not decide this request.";

/// An OpenAI-style JSON error body for other refusals (bad key, store full).
pub fn error_body(message: &str, kind: &str, code: &str) -> String {
    serde_json::json!({
        "error": { "message": message, "type": kind, "param": null, "code": code }
    })
    .to_string()
}
