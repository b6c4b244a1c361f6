//! The rate-limit layer's tests' app, limits over either backend, and
//! requests.

use std::time::Duration as StdDuration;

use axum::routing::get;
use axum::Router;
use ratebound_core::{Duration, Gcra, SlidingLog};
use ratebound_std::clock::SystemClock;
use ratebound_std::fallback::{FailoverOptions, OnUnavailable};
use ratebound_std::http::rate_limit::{KeyRejection, RateKey};
use ratebound_std::keyed::{AnyKeyedLimiter, KeyedConfig, RedisKeyedLimiter};
use ratebound_std::limiter::{AnyLimiter, LimitSet};
use ratebound_std::redis::{RedisOptions, RedisStore};

use super::redis_server::RedisServer;

pub type Limits = AnyKeyedLimiter<SystemClock>;

pub fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }))
        .route("/users/{id}", get(|| async { "user" }))
        .route("/other", get(|| async { "other" }))
}

pub fn per_minute(n: u64) -> LimitSet {
    LimitSet::one("per_minute", AnyLimiter::Gcra(Gcra::per_minute(n).unwrap())).unwrap()
}

pub fn memory(set: LimitSet) -> Limits {
    AnyKeyedLimiter::memory(set, KeyedConfig::default(), SystemClock).unwrap()
}

pub async fn redis(server: &RedisServer, set: LimitSet, on: OnUnavailable) -> Limits {
    redis_at(&server.url(), set, on).await
}

pub async fn redis_at(url: &str, set: LimitSet, on: OnUnavailable) -> Limits {
    redis_failing_over(url, set, FailoverOptions::new(on)).await
}

/// In Redis at `url` (calls time out after 300 ms), failing over by
/// `failover`.
pub async fn redis_failing_over(url: &str, set: LimitSet, failover: FailoverOptions) -> Limits {
    let opts = RedisOptions {
        timeout: StdDuration::from_millis(300),
        ..RedisOptions::default()
    };
    redis_with(url, opts, set, failover).await
}

pub async fn redis_with(
    url: &str,
    opts: RedisOptions,
    set: LimitSet,
    failover: FailoverOptions,
) -> Limits {
    let store = RedisStore::connect(url, opts).await.unwrap();
    AnyKeyedLimiter::Redis(Box::new(
        RedisKeyedLimiter::with_set(store, set, failover, KeyedConfig::default(), SystemClock)
            .unwrap(),
    ))
}

/// A GET of `base`/ with the API key `key`.
pub async fn get_with_key(base: &str, key: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{base}/"))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap()
}

/// Statuses of `n` GETs of `path`, each with `headers`.
pub async fn statuses(base: &str, path: &str, n: usize, headers: &[(&str, &str)]) -> Vec<u16> {
    let client = reqwest::Client::new();
    let mut out = Vec::new();
    for _ in 0..n {
        let mut req = client.get(format!("{base}{path}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        out.push(req.send().await.unwrap().status().as_u16());
    }
    out
}

pub fn burst_and_minute() -> LimitSet {
    LimitSet::new([
        ("burst", AnyLimiter::Gcra(Gcra::per_second(2).unwrap())),
        (
            "minute",
            AnyLimiter::SlidingLog(SlidingLog::new(3, Duration::from_secs(60)).unwrap()),
        ),
    ])
    .unwrap()
}

/// A closure extractor: `unlimited` (a health check) has no key, the tenant
/// "evil" is refused (403), any other `x-tenant` is the key ("anonymous"
/// without one).
pub fn tenant_key(
    unlimited: &'static str,
) -> impl Fn(&http::Request<axum::body::Body>) -> Result<Option<RateKey>, KeyRejection> + Clone {
    move |req| {
        if req.uri().path() == unlimited {
            return Ok(None);
        }
        match req.headers().get("x-tenant") {
            Some(t) if t == "evil" => Err(KeyRejection::new(http::StatusCode::FORBIDDEN, "no")),
            Some(t) => Ok(Some(RateKey::from(t.as_bytes()))),
            None => Ok(Some(RateKey::from("anonymous"))),
        }
    }
}
