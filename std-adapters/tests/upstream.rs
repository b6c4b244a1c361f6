//! Upstream rate-limit headers in: OpenAI and Anthropic forms, malformed
//! values, and the hints reaching the retry executor.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue, StatusCode};
use ratebound_core::backoff::Backoff;
use ratebound_std::clock::TokioClock;
use ratebound_std::http::upstream::{Quota, UpstreamError, UpstreamLimits};
use ratebound_std::retry::{Classify, RetryPolicy};

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn now() -> SystemTime {
    httpdate::parse_http_date("Mon, 23 Nov 2026 21:00:00 GMT").unwrap()
}

#[test]
fn openai_headers() {
    let h = headers(&[
        ("x-ratelimit-limit-requests", "500"),
        ("x-ratelimit-remaining-requests", "499"),
        ("x-ratelimit-reset-requests", "120ms"),
        ("x-ratelimit-limit-tokens", "30000"),
        ("x-ratelimit-remaining-tokens", "0"),
        ("x-ratelimit-reset-tokens", "6m0s"),
    ]);
    let l = UpstreamLimits::from_headers(&h, now()).unwrap();
    assert_eq!(
        l.requests,
        Quota {
            limit: Some(500),
            remaining: Some(499),
            reset_after: Some(Duration::from_millis(120))
        }
    );
    assert_eq!(l.tokens.remaining, Some(0));
    assert_eq!(l.tokens.reset_after, Some(Duration::from_secs(360)));
    // Tokens are exhausted: wait for their reset.
    assert_eq!(l.retry_hint(), Some(Duration::from_secs(360)));
}

#[test]
fn anthropic_headers() {
    let h = headers(&[
        ("anthropic-ratelimit-requests-limit", "50"),
        ("anthropic-ratelimit-requests-remaining", "0"),
        ("anthropic-ratelimit-requests-reset", "2026-11-23T21:00:30Z"),
        ("anthropic-ratelimit-input-tokens-limit", "40000"),
        ("anthropic-ratelimit-input-tokens-remaining", "39000"),
        (
            "anthropic-ratelimit-input-tokens-reset",
            "2026-11-23T21:00:01Z",
        ),
        ("anthropic-ratelimit-output-tokens-remaining", "8000"),
    ]);
    let l = UpstreamLimits::from_headers(&h, now()).unwrap();
    assert_eq!(l.requests.limit, Some(50));
    assert_eq!(l.requests.reset_after, Some(Duration::from_secs(30)));
    assert_eq!(l.input_tokens.remaining, Some(39_000));
    assert_eq!(l.output_tokens.remaining, Some(8_000));
    assert_eq!(l.retry_hint(), Some(Duration::from_secs(30)));
}

#[test]
fn retry_after_wins_and_ms_is_finer() {
    let h = headers(&[
        ("retry-after", "7"),
        ("x-ratelimit-remaining-requests", "0"),
        ("x-ratelimit-reset-requests", "1m"),
    ]);
    assert_eq!(
        UpstreamLimits::from_headers(&h, now())
            .unwrap()
            .retry_hint(),
        Some(Duration::from_secs(7))
    );
    let h = headers(&[("retry-after", "7"), ("retry-after-ms", "6500.5")]);
    assert_eq!(
        UpstreamLimits::from_headers(&h, now()).unwrap().retry_after,
        Some(Duration::from_micros(6_500_500))
    );
    let h = headers(&[("retry-after", "Mon, 23 Nov 2026 21:01:00 GMT")]);
    assert_eq!(
        UpstreamLimits::from_headers(&h, now()).unwrap().retry_after,
        Some(Duration::from_secs(60))
    );
    // Nothing said, nothing hinted; remaining > 0 is no reason to wait.
    assert_eq!(
        UpstreamLimits::from_headers(&HeaderMap::new(), now())
            .unwrap()
            .retry_hint(),
        None
    );
    let h = headers(&[
        ("x-ratelimit-remaining-requests", "3"),
        ("x-ratelimit-reset-requests", "1s"),
    ]);
    assert_eq!(
        UpstreamLimits::from_headers(&h, now())
            .unwrap()
            .retry_hint(),
        None
    );
}

#[test]
fn malformed_values_are_errors_naming_the_header() {
    let cases = [
        ("retry-after", "soon"),
        ("retry-after", "-5"),
        ("retry-after", "1e9"),
        ("retry-after", "999999999999"),
        ("retry-after-ms", "NaN"),
        ("x-ratelimit-limit-requests", "-1"),
        ("x-ratelimit-limit-requests", "1.5"),
        ("x-ratelimit-remaining-tokens", "99999999999999999999999"),
        ("x-ratelimit-reset-requests", "6mins"),
        ("x-ratelimit-reset-tokens", "1h-2m"),
        ("x-ratelimit-reset-tokens", ""),
        ("anthropic-ratelimit-tokens-reset", "tomorrow"),
        ("anthropic-ratelimit-requests-remaining", "many"),
    ];
    for (name, value) in cases {
        let e = UpstreamLimits::from_headers(&headers(&[(name, value)]), now()).unwrap_err();
        assert_eq!(e.header, name, "{name}: {value:?}");
        assert_eq!(e.value, value);
        assert!(e.to_string().contains(name), "{e}");
    }
    // Bytes that are not visible ASCII: refused, quoted lossily, no panic.
    let mut h = HeaderMap::new();
    h.insert(
        "retry-after",
        HeaderValue::from_bytes(b"\xff\xfe12").unwrap(),
    );
    let e = UpstreamLimits::from_headers(&h, now()).unwrap_err();
    assert_eq!(e.reason, "not visible ASCII");
    // A huge value is quoted in bounded form.
    let long = "9".repeat(5000);
    let e = UpstreamLimits::from_headers(&headers(&[("x-ratelimit-limit-tokens", &long)]), now())
        .unwrap_err();
    assert_eq!(e.value.len(), 64);
}

#[test]
fn lenient_parsing_keeps_the_good_headers() {
    let h = headers(&[
        ("retry-after", "7"),
        ("x-ratelimit-remaining-tokens", "lots"),
        ("x-ratelimit-limit-requests", "100"),
        ("anthropic-ratelimit-tokens-reset", "soon"),
    ]);
    let (l, errors) = UpstreamLimits::from_headers_lenient(&h, now());
    assert_eq!(l.retry_after, Some(Duration::from_secs(7)));
    assert_eq!(l.requests.limit, Some(100));
    assert_eq!(l.tokens.remaining, None);
    let mut named: Vec<_> = errors.iter().map(|e| e.header.as_str()).collect();
    named.sort();
    assert_eq!(
        named,
        [
            "anthropic-ratelimit-tokens-reset",
            "x-ratelimit-remaining-tokens"
        ]
    );
    // The strict form refuses the same headers.
    assert!(UpstreamLimits::from_headers(&h, now()).is_err());
}

#[test]
fn rfc3339_offsets() {
    let at = |v: &str| {
        UpstreamLimits::from_headers(
            &headers(&[("anthropic-ratelimit-requests-reset", v)]),
            now(),
        )
        .map(|l| l.requests.reset_after)
    };
    // 21:00:00Z is "now".
    assert_eq!(
        at("2026-11-23T21:00:30Z"),
        Ok(Some(Duration::from_secs(30)))
    );
    assert_eq!(
        at("2026-11-23T16:00:30-05:00"),
        Ok(Some(Duration::from_secs(30)))
    );
    assert_eq!(
        at("2026-11-24T06:30:30+09:30"),
        Ok(Some(Duration::from_secs(30)))
    );
    assert_eq!(
        at("2026-11-23T21:00:30.250+00:00"),
        Ok(Some(Duration::from_millis(30_250)))
    );
    assert_eq!(
        at("2026-11-23T20:00:00Z"),
        Ok(Some(Duration::ZERO)),
        "a past reset means no wait"
    );
    for bad in [
        "2026-11-23T21:00:30",
        "2026-11-23T21:00:30+25:00",
        "2026-11-23T21:00:30+0a:00",
        "2026-11-23T21:00:61Z",
        "+05:00",
    ] {
        assert!(at(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn classification_of_upstream_failures() {
    let err = |s: u16| UpstreamError {
        status: StatusCode::from_u16(s).unwrap(),
        limits: UpstreamLimits::default(),
    };
    for s in [408, 429, 500, 502, 503, 504] {
        assert!(err(s).is_retryable(), "{s}");
    }
    for s in [400, 401, 403, 404, 422, 501, 505] {
        assert!(!err(s).is_retryable(), "{s}");
    }
}

#[tokio::test(start_paused = true)]
async fn the_retry_executor_waits_at_least_the_upstream_hint() {
    let policy = RetryPolicy::new(
        Backoff::new(
            ratebound_core::Duration::from_millis(10),
            ratebound_core::Duration::from_secs(10),
        )
        .unwrap()
        .with_max_retries(3),
    )
    .with_clock(TokioClock::new())
    .with_seed(7);
    let attempts = AtomicU32::new(0);
    let start = tokio::time::Instant::now();
    let h = headers(&[("retry-after", "3")]);
    let out: Result<&str, _> = policy
        .run(|| {
            let n = attempts.fetch_add(1, Ordering::SeqCst);
            let limits = UpstreamLimits::from_headers(&h, SystemTime::now());
            async move {
                if n < 2 {
                    Err(UpstreamError {
                        status: StatusCode::TOO_MANY_REQUESTS,
                        limits: limits.unwrap(),
                    })
                } else {
                    Ok("done")
                }
            }
        })
        .await;
    assert_eq!(out.unwrap(), "done");
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    // Two retries, each waiting the upstream's 3 s rather than the ≤ 20 ms backoff.
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(6) && waited < Duration::from_secs(7),
        "{waited:?}"
    );
}
