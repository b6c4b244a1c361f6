//! The rate-limit layer when its store cannot decide, over real HTTP and a
//! real redis-server: each failure policy, a store refusing the call, a
//! full in-memory store, shadow mode, and local fail-over's share.

mod support;

use std::time::Duration as StdDuration;

use ratebound_core::{Duration, Gcra, SlidingLog};
use ratebound_std::clock::SystemClock;
use ratebound_std::fallback::{FailoverOptions, OnUnavailable};
use ratebound_std::http::rate_limit::{HeaderKey, PeerIp, RateLimitLayer};
use ratebound_std::keyed::{AnyKeyedLimiter, KeyedConfig};
use ratebound_std::limiter::{AnyLimiter, LimitSet};
use support::axum_app::serve;
use support::rate_limit::*;
use support::redis_server::RedisServer;

#[tokio::test]
async fn redis_down_under_closed_is_503_and_under_open_admits() {
    let server = RedisServer::start();
    let closed = redis(&server, per_minute(5), OnUnavailable::Closed).await;
    let open = redis(&server, per_minute(5), OnUnavailable::Open).await;
    let closed = serve(app().layer(RateLimitLayer::new(closed, PeerIp::new()))).await;
    let open = serve(app().layer(RateLimitLayer::new(open, PeerIp::new()))).await;
    assert_eq!(statuses(&closed, "/", 1, &[]).await, [200]);
    assert_eq!(statuses(&open, "/", 1, &[]).await, [200]);
    server.kill();
    let res = reqwest::get(format!("{closed}/")).await.unwrap();
    assert_eq!(res.status(), 503);
    // The default skip window: 1 s.
    assert_eq!(res.headers()["retry-after"], "1");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_store_unavailable");
    assert_eq!(
        body["error"]["message"],
        "The rate limit store is unavailable. Please try again later."
    );
    assert_eq!(statuses(&open, "/", 7, &[]).await, [200; 7]);
}

/// Under `closed`, a 503 for a store away says when to try again: the
/// fail-over's skip window (here 2.5 s, so 3 s), for the call that found
/// it away and for those skipped after it alike.
#[tokio::test]
async fn a_store_away_is_503_with_the_fail_overs_retry_after() {
    let server = RedisServer::start();
    let failover = FailoverOptions::new(OnUnavailable::Closed)
        .with_retry_after(StdDuration::from_millis(2_500));
    let limits = redis_failing_over(&server.url(), per_minute(5), failover).await;
    assert_eq!(
        limits.store_retry_after(),
        Some(StdDuration::from_millis(2_500))
    );
    let base = serve(app().layer(RateLimitLayer::new(limits, PeerIp::new()))).await;
    assert_eq!(statuses(&base, "/", 1, &[]).await, [200]);
    server.kill();
    for _ in 0..3 {
        let res = reqwest::get(format!("{base}/")).await.unwrap();
        assert_eq!(res.status(), 503);
        assert_eq!(res.headers()["retry-after"], "3");
    }
}

/// A store that refuses the call itself (here a Redis user denied `FCALL`
/// and `EVALSHA`) is answered 500 `rate_limit_store_error` under every
/// failure policy: it is an answer about the call, not an outage, and never
/// failed over.
#[tokio::test]
async fn a_store_refusing_the_call_is_500_under_every_policy() {
    let server = RedisServer::start();
    let url = server.url_of_user_denied(&[
        "fcall",
        "fcall_ro",
        "evalsha",
        "evalsha_ro",
        "eval",
        "eval_ro",
    ]);
    for on in [
        OnUnavailable::Closed,
        OnUnavailable::Open,
        OnUnavailable::Local,
    ] {
        let limits = redis_at(&url, per_minute(5), on).await;
        let base = serve(app().layer(RateLimitLayer::new(limits, PeerIp::new()))).await;
        for _ in 0..2 {
            let res = reqwest::get(format!("{base}/")).await.unwrap();
            assert_eq!(res.status(), 500, "{on:?}");
            let body: serde_json::Value = res.json().await.unwrap();
            assert_eq!(body["error"]["code"], "rate_limit_store_error", "{on:?}");
            // Redis's own words (NOPERM, the user, the command) stay in the
            // operator's log.
            assert_eq!(
                body["error"]["message"], "The rate limit store could not decide this request.",
                "{on:?}"
            );
        }
    }
}

/// Shadow mode refuses nothing, store errors included: Redis down under
/// `closed` and an in-memory store full of active keys both let requests
/// through (the same limits without shadow answer 503).
#[tokio::test]
async fn shadow_mode_lets_store_errors_through() {
    let server = RedisServer::start();
    let shadow = redis(&server, per_minute(5), OnUnavailable::Closed).await;
    let shadow = serve(app().layer(RateLimitLayer::new(shadow, PeerIp::new()).shadow(true))).await;
    let strict = redis(&server, per_minute(5), OnUnavailable::Closed).await;
    let strict = serve(app().layer(RateLimitLayer::new(strict, PeerIp::new()))).await;
    assert_eq!(statuses(&shadow, "/", 7, &[]).await, [200; 7]);
    server.kill();
    assert_eq!(statuses(&strict, "/", 1, &[]).await, [503]);
    assert_eq!(statuses(&shadow, "/", 3, &[]).await, [200; 3]);
    let full = || {
        AnyKeyedLimiter::memory(
            per_minute(5),
            KeyedConfig::default().with_max_keys(1).with_shards(1),
            SystemClock,
        )
        .unwrap()
    };
    let key = || HeaderKey::new(http::HeaderName::from_static("x-api-key"));
    let shadow = serve(app().layer(RateLimitLayer::new(full(), key()).shadow(true))).await;
    let strict = serve(app().layer(RateLimitLayer::new(full(), key()))).await;
    for base in [&shadow, &strict] {
        assert_eq!(statuses(base, "/", 1, &[("x-api-key", "a")]).await, [200]);
    }
    assert_eq!(
        statuses(&strict, "/", 1, &[("x-api-key", "b")]).await,
        [503]
    );
    assert_eq!(
        statuses(&shadow, "/", 2, &[("x-api-key", "b")]).await,
        [200; 2]
    );
}

#[tokio::test]
async fn a_full_store_refuses_new_keys_with_503() {
    let limits = AnyKeyedLimiter::memory(
        per_minute(5),
        KeyedConfig::default().with_max_keys(1).with_shards(1),
        SystemClock,
    )
    .unwrap();
    let layer = RateLimitLayer::new(
        limits,
        HeaderKey::new(http::HeaderName::from_static("x-api-key")),
    );
    let base = serve(app().layer(layer)).await;
    assert_eq!(statuses(&base, "/", 1, &[("x-api-key", "a")]).await, [200]);
    let res = get_with_key(&base, "b").await;
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "1");
    assert_eq!(statuses(&base, "/", 1, &[("x-api-key", "a")]).await, [200]);
}

/// Redis down under `local` with 2 replicas: each member is halved in this
/// process (burst 4 → 2 per second, minute 6 → 3), still all or nothing,
/// and the headers name the local share.
#[tokio::test]
async fn a_set_under_local_fail_over_decides_on_this_replicas_share() {
    let server = RedisServer::start();
    let set = LimitSet::new([
        ("burst", AnyLimiter::Gcra(Gcra::per_second(4).unwrap())),
        (
            "minute",
            AnyLimiter::SlidingLog(SlidingLog::new(6, Duration::from_secs(60)).unwrap()),
        ),
    ])
    .unwrap();
    let failover = FailoverOptions::new(OnUnavailable::Local).with_replicas(2);
    let limits = redis_failing_over(&server.url(), set, failover).await;
    let layer = RateLimitLayer::new(limits, PeerIp::new())
        .headers_on_success(true)
        .legacy_headers(true);
    let base = serve(app().layer(layer)).await;
    // Shared: the whole burst of 4, and the fields say so.
    let res = reqwest::get(format!("{base}/")).await.unwrap();
    assert_eq!(
        res.headers()["ratelimit-policy"],
        "\"burst\";q=4;w=1;bucket, \"minute\";q=6;w=60"
    );
    assert_eq!(res.headers()["x-ratelimit-limit"], "4");
    assert_eq!(statuses(&base, "/", 4, &[]).await, [200, 200, 200, 429]);
    server.kill();
    // Alone: 2 of the burst, then the minute's share of 3 binds; the
    // fields and the refusal's text name the share, not the whole.
    let res = reqwest::get(format!("{base}/")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["ratelimit"], "\"burst\";r=1;t=1");
    assert_eq!(
        res.headers()["ratelimit-policy"],
        "\"burst\";q=2;w=1;bucket, \"minute\";q=3;w=60"
    );
    assert_eq!(res.headers()["x-ratelimit-limit"], "2");
    assert_eq!(statuses(&base, "/", 1, &[]).await, [200]);
    let res = reqwest::get(format!("{base}/")).await.unwrap();
    assert_eq!(res.status(), 429);
    assert_eq!(
        res.headers()["ratelimit-policy"],
        "\"burst\";q=2;w=1;bucket, \"minute\";q=3;w=60"
    );
    let body = res.text().await.unwrap();
    assert!(
        body.contains("burst: 4 per 2s, at most 2 at once"),
        "{body}"
    );
    tokio::time::sleep(StdDuration::from_millis(1_100)).await;
    assert_eq!(statuses(&base, "/", 2, &[]).await, [200, 429]);
    let res = reqwest::get(format!("{base}/")).await.unwrap();
    assert!(
        res.headers()["ratelimit"]
            .to_str()
            .unwrap()
            .starts_with("\"minute\";r=0"),
        "{:?}",
        res.headers()["ratelimit"]
    );
}
