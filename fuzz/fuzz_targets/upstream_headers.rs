//! The upstream header parser (`Retry-After`, `retry-after-ms`, OpenAI
//! `x-ratelimit-*`, Anthropic `anthropic-ratelimit-*`) on arbitrary bytes:
//! it never panics, the strict form fails exactly when the lenient one
//! reports a bad header, and both agree on every field when it does not.
#![no_main]

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use ratebound_std::http::upstream::{parse_go_duration, parse_retry_after, UpstreamLimits};

const NAMES: [&str; 14] = [
    "retry-after",
    "retry-after-ms",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
    "anthropic-ratelimit-requests-limit",
    "anthropic-ratelimit-requests-remaining",
    "anthropic-ratelimit-requests-reset",
    "anthropic-ratelimit-tokens-reset",
    "anthropic-ratelimit-input-tokens-reset",
    "anthropic-ratelimit-output-tokens-remaining",
];

fuzz_target!(|inp: (u32, Vec<(u8, Vec<u8>)>)| {
    let (secs, pairs) = inp;
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(secs) * 7);
    let mut headers = HeaderMap::new();
    for (which, value) in pairs.iter().take(16) {
        if let Ok(text) = std::str::from_utf8(value) {
            let _ = parse_retry_after(text, now);
            let _ = parse_go_duration(text);
        }
        let name = HeaderName::from_static(NAMES[usize::from(*which) % NAMES.len()]);
        if let Ok(v) = HeaderValue::from_bytes(value) {
            headers.append(name, v);
        }
    }
    let (lenient, errors) = UpstreamLimits::from_headers_lenient(&headers, now);
    match UpstreamLimits::from_headers(&headers, now) {
        Ok(strict) => {
            assert!(errors.is_empty());
            assert_eq!(strict, lenient);
        }
        Err(e) => assert_eq!(errors.first(), Some(&e)),
    }
});
