//! The general rate-limit layer over real HTTP on loopback: an axum app
//! served with connect info, a reqwest client, and (where a backend is
//! involved) a real redis-server. One test body runs over both backends.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use axum::routing::get;
use axum::Router;
use ratebound_core::{Duration, Gcra, Instant, SlidingLog};
use ratebound_std::clock::{ManualClock, SystemClock};
use ratebound_std::fallback::{FailoverOptions, OnUnavailable};
use ratebound_std::http::rate_limit::{
    ExtensionKey, ForwardedBy, HeaderKey, KeyRejection, Outcome, PeerIp, RateKey, RateLimitLayer,
    RouteKey,
};
use ratebound_std::keyed::{AnyKeyedLimiter, KeyedConfig, RedisKeyedLimiter};
use ratebound_std::limiter::{AnyLimiter, LimitSet};
use ratebound_std::redis::{RedisOptions, RedisStore};
use support::axum_app::serve;
use support::redis_server::RedisServer;

type Limits = AnyKeyedLimiter<SystemClock>;

fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }))
        .route("/users/{id}", get(|| async { "user" }))
        .route("/other", get(|| async { "other" }))
}

fn per_minute(n: u64) -> LimitSet {
    LimitSet::one("per_minute", AnyLimiter::Gcra(Gcra::per_minute(n).unwrap())).unwrap()
}

fn memory(set: LimitSet) -> Limits {
    AnyKeyedLimiter::memory(set, KeyedConfig::default(), SystemClock).unwrap()
}

async fn redis(server: &RedisServer, set: LimitSet, on: OnUnavailable) -> Limits {
    redis_at(&server.url(), set, on).await
}

async fn redis_at(url: &str, set: LimitSet, on: OnUnavailable) -> Limits {
    let opts = RedisOptions {
        timeout: StdDuration::from_millis(300),
        ..RedisOptions::default()
    };
    redis_with(url, opts, set, on).await
}

async fn redis_with(url: &str, opts: RedisOptions, set: LimitSet, on: OnUnavailable) -> Limits {
    let store = RedisStore::connect(url, opts).await.unwrap();
    AnyKeyedLimiter::Redis(Box::new(
        RedisKeyedLimiter::with_set(
            store,
            set,
            FailoverOptions::new(on),
            KeyedConfig::default(),
            SystemClock,
        )
        .unwrap(),
    ))
}

/// A GET of `base`/ with the API key `key`.
async fn get_with_key(base: &str, key: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{base}/"))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap()
}

/// Statuses of `n` GETs of `path`, each with `headers`.
async fn statuses(base: &str, path: &str, n: usize, headers: &[(&str, &str)]) -> Vec<u16> {
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

/// The same body over memory and Redis: three per minute per IP, a policy
/// set whose binding member is named in the headers, and the 429's fields.
async fn per_ip_limit_answers_429_with_its_fields(limits: Limits, backend: &str) {
    let layer = RateLimitLayer::new(limits, PeerIp::new()).legacy_headers(true);
    let base = serve(app().layer(layer)).await;
    assert_eq!(
        statuses(&base, "/", 3, &[]).await,
        [200, 200, 200],
        "{backend}"
    );
    let res = reqwest::get(format!("{base}/")).await.unwrap();
    assert_eq!(res.status(), 429, "{backend}");
    let h = res.headers();
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(
        (1..=20).contains(&retry),
        "{backend}: one token per 20 s: {retry}"
    );
    assert_eq!(
        h["ratelimit-policy"], "\"per_minute\";q=3;w=60;bucket",
        "{backend}"
    );
    let state = h["ratelimit"].to_str().unwrap();
    assert!(
        state.starts_with("\"per_minute\";r=0;t="),
        "{backend}: {state}"
    );
    assert_eq!(h["x-ratelimit-limit"], "3", "{backend}");
    assert_eq!(h["x-ratelimit-remaining"], "0", "{backend}");
    assert_eq!(h["content-type"], "application/json", "{backend}");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded", "{backend}");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("per_minute") && msg.contains(&format!("{retry}s")),
        "{msg}"
    );
}

#[tokio::test]
async fn per_ip_in_memory() {
    per_ip_limit_answers_429_with_its_fields(memory(per_minute(3)), "memory").await;
}

#[tokio::test]
async fn per_ip_in_redis() {
    let server = RedisServer::start();
    let limits = redis(&server, per_minute(3), OnUnavailable::Closed).await;
    per_ip_limit_answers_429_with_its_fields(limits, "redis").await;
}

/// Two members, all or nothing, over both backends: the per-second member
/// denies the third request and the per-minute one has counted only two.
async fn a_set_counts_nothing_it_denies(limits: Limits, backend: &str) {
    let layer = RateLimitLayer::new(
        limits,
        HeaderKey::new(http::HeaderName::from_static("x-api-key")),
    );
    let base = serve(app().layer(layer)).await;
    let key = [("x-api-key", "k1")];
    assert_eq!(
        statuses(&base, "/", 3, &key).await,
        [200, 200, 429],
        "{backend}"
    );
    let res = get_with_key(&base, "k1").await;
    // `t` is the binding member's own: the burst is full within 1 s, the
    // minute (which has counted two) only in 60.
    assert_eq!(res.headers()["ratelimit"], "\"burst\";r=0;t=1", "{backend}");
    tokio::time::sleep(StdDuration::from_millis(1_100)).await;
    // The minute allows 3: two were counted, the denied ones were not.
    assert_eq!(statuses(&base, "/", 2, &key).await, [200, 429], "{backend}");
    let res = get_with_key(&base, "k1").await;
    assert_eq!(res.status(), 429);
    assert!(
        res.headers()["ratelimit"]
            .to_str()
            .unwrap()
            .starts_with("\"minute\";r=0"),
        "{backend}: {:?}",
        res.headers()["ratelimit"]
    );
    assert_eq!(
        res.headers()["ratelimit-policy"],
        "\"burst\";q=2;w=1;bucket, \"minute\";q=3;w=60",
        "{backend}"
    );
    // Another key, and no key at all (unlimited), are untouched.
    assert_eq!(
        statuses(&base, "/", 2, &[("x-api-key", "k2")]).await,
        [200, 200]
    );
    assert_eq!(statuses(&base, "/", 5, &[]).await, [200; 5]);
}

fn burst_and_minute() -> LimitSet {
    LimitSet::new([
        ("burst", AnyLimiter::Gcra(Gcra::per_second(2).unwrap())),
        (
            "minute",
            AnyLimiter::SlidingLog(SlidingLog::new(3, Duration::from_secs(60)).unwrap()),
        ),
    ])
    .unwrap()
}

#[tokio::test]
async fn a_set_by_header_in_memory() {
    a_set_counts_nothing_it_denies(memory(burst_and_minute()), "memory").await;
}

#[tokio::test]
async fn a_set_by_header_in_redis() {
    let server = RedisServer::start();
    let limits = redis(&server, burst_and_minute(), OnUnavailable::Closed).await;
    a_set_counts_nothing_it_denies(limits, "redis").await;
}

#[tokio::test]
async fn a_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored() {
    // Trusts only 10.0.0.0/8: the test client (127.0.0.1) is not a proxy.
    let extract = PeerIp::new().trust(["10.0.0.0/8"]).unwrap();
    let base = serve(app().layer(RateLimitLayer::new(memory(per_minute(2)), extract))).await;
    let client = reqwest::Client::new();
    let mut got = Vec::new();
    for i in 0..4 {
        let res = client
            .get(format!("{base}/"))
            .header("x-forwarded-for", format!("198.51.100.{i}"))
            .header("forwarded", format!("for=203.0.113.{i}"))
            .send()
            .await
            .unwrap();
        got.push(res.status().as_u16());
    }
    assert_eq!(got, [200, 200, 429, 429], "every request is 127.0.0.1's");
}

#[tokio::test]
async fn a_trusted_proxy_names_the_client() {
    let extract = PeerIp::new().trust(["127.0.0.1"]).unwrap();
    let base = serve(app().layer(RateLimitLayer::new(memory(per_minute(2)), extract))).await;
    let a = [("x-forwarded-for", "6.6.6.6, 198.51.100.1")];
    let b = [("x-forwarded-for", "198.51.100.2")];
    assert_eq!(statuses(&base, "/", 3, &a).await, [200, 200, 429]);
    assert_eq!(statuses(&base, "/", 2, &b).await, [200, 200]);
    // A Forwarded header the proxy passed through from the client is not
    // read (this proxy writes X-Forwarded-For): 198.51.100.2 is still limited.
    let b_spoofing = [
        ("x-forwarded-for", "198.51.100.2"),
        ("forwarded", "for=203.0.113.77"),
    ];
    assert_eq!(statuses(&base, "/", 1, &b_spoofing).await, [429]);
    // IPv6 clients in one /64 share a limit; the next /64 has its own.
    let extract = PeerIp::new()
        .trust(["127.0.0.1"])
        .unwrap()
        .forwarded_by(ForwardedBy::Forwarded);
    let base = serve(app().layer(RateLimitLayer::new(memory(per_minute(2)), extract))).await;
    let v6 = [("forwarded", "for=\"[2001:db8:0:1::a]\"")];
    let v6_same = [("forwarded", "for=\"[2001:db8:0:1:ffff::b]:443\"")];
    let v6_next = [("forwarded", "for=\"[2001:db8:0:2::a]\"")];
    assert_eq!(statuses(&base, "/", 2, &v6).await, [200, 200]);
    assert_eq!(statuses(&base, "/", 1, &v6_same).await, [429]);
    assert_eq!(statuses(&base, "/", 1, &v6_next).await, [200]);
}

#[tokio::test]
async fn a_required_header_rejects_requests_without_it() {
    let extract = HeaderKey::new(http::HeaderName::from_static("x-api-key"))
        .required(http::StatusCode::UNAUTHORIZED, "an API key is required");
    let base = serve(app().layer(RateLimitLayer::new(memory(per_minute(1)), extract))).await;
    let res = reqwest::get(format!("{base}/")).await.unwrap();
    assert_eq!(res.status(), 401);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["message"], "an API key is required");
    // A key longer than 256 bytes is refused on every backend.
    let long = "k".repeat(257);
    let res = get_with_key(&base, &long).await;
    assert_eq!(res.status(), 400);
    assert_eq!(get_with_key(&base, &long[..256]).await.status(), 200);
}

#[derive(Clone)]
struct User(String);

impl std::fmt::Display for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[tokio::test]
async fn an_extension_set_by_earlier_middleware_is_the_key() {
    let layer = RateLimitLayer::new(memory(per_minute(1)), ExtensionKey::<User>::new());
    // The "auth" middleware: the user named by ?u=, none without it.
    let auth = tower::ServiceBuilder::new()
        .map_request(|mut req: http::Request<axum::body::Body>| {
            let user = req.uri().query().and_then(|q| q.strip_prefix("u="));
            if let Some(u) = user.map(str::to_owned) {
                req.extensions_mut().insert(User(u));
            }
            req
        })
        .layer(layer);
    let base = serve(app().layer(auth)).await;
    assert_eq!(statuses(&base, "/?u=ann", 2, &[]).await, [200, 429]);
    assert_eq!(statuses(&base, "/?u=bob", 2, &[]).await, [200, 429]);
    assert_eq!(
        statuses(&base, "/", 3, &[]).await,
        [200; 3],
        "no user: unlimited"
    );
}

#[tokio::test]
async fn the_route_template_is_one_key_for_every_client_and_id() {
    let base = serve(app().layer(RateLimitLayer::new(memory(per_minute(2)), RouteKey))).await;
    assert_eq!(statuses(&base, "/users/1", 1, &[]).await, [200]);
    assert_eq!(statuses(&base, "/users/2", 2, &[]).await, [200, 429]);
    assert_eq!(statuses(&base, "/other", 2, &[]).await, [200, 200]);
    // No route matched: unlimited (made-up paths make no keys).
    assert_eq!(statuses(&base, "/made/up", 3, &[]).await, [404; 3]);
}

/// A closure extractor: `unlimited` (a health check) has no key, the tenant
/// "evil" is refused (403), any other `x-tenant` is the key ("anonymous"
/// without one).
fn tenant_key(
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

#[tokio::test]
async fn a_closure_and_a_pair_of_extractors() {
    // Per IP and route together.
    let base = serve(app().layer(RateLimitLayer::new(
        memory(per_minute(1)),
        (PeerIp::new(), RouteKey),
    )))
    .await;
    assert_eq!(statuses(&base, "/", 2, &[]).await, [200, 429]);
    assert_eq!(statuses(&base, "/other", 1, &[]).await, [200]);
    // A closure: health checks unlimited, a bad tenant refused.
    let tenant = tenant_key("/other");
    let base = serve(app().layer(RateLimitLayer::new(memory(per_minute(1)), tenant))).await;
    assert_eq!(
        statuses(&base, "/", 2, &[("x-tenant", "t1")]).await,
        [200, 429]
    );
    assert_eq!(
        statuses(&base, "/", 1, &[("x-tenant", "evil")]).await,
        [403]
    );
    assert_eq!(statuses(&base, "/other", 3, &[]).await, [200; 3]);
}

#[tokio::test]
async fn cost_shadow_hook_and_headers_on_success() {
    let seen = Arc::new([const { AtomicUsize::new(0) }; 3]);
    let counts = Arc::clone(&seen);
    let layer = RateLimitLayer::new(memory(per_minute(10)), PeerIp::new())
        .cost(|req: &http::Request<axum::body::Body>| {
            if req.uri().path() == "/other" {
                4
            } else if req.uri().path() == "/users/big" {
                11
            } else {
                1
            }
        })
        .shadow(true)
        .headers_on_success(true)
        .on_decision(move |e| {
            let i = match e.outcome {
                Outcome::Allowed => 0,
                Outcome::Denied => 1,
                Outcome::ShadowDenied => 2,
            };
            counts[i].fetch_add(1, Ordering::Relaxed);
        });
    let base = serve(app().layer(layer)).await;
    // 4 + 4 fit 10; the third 4 does not, but shadow mode lets it through.
    let res = reqwest::get(format!("{base}/other")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["ratelimit"], "\"per_minute\";r=6;t=24");
    assert_eq!(statuses(&base, "/other", 2, &[]).await, [200, 200]);
    // A cost over the capacity can never be admitted: 413, even in shadow
    // mode it passes (shadow never refuses).
    assert_eq!(statuses(&base, "/users/big", 1, &[]).await, [200]);
    let c: Vec<usize> = seen.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    assert_eq!(c, [2, 0, 1], "allowed, denied, shadow-denied");
    // Enforced, the same costs: the third is refused, the oversized is 413.
    let layer = RateLimitLayer::new(memory(per_minute(10)), PeerIp::new()).cost(
        |req: &http::Request<axum::body::Body>| {
            if req.uri().path() == "/users/big" {
                11
            } else {
                4
            }
        },
    );
    let base = serve(app().layer(layer)).await;
    assert_eq!(statuses(&base, "/", 3, &[]).await, [200, 200, 429]);
    let res = reqwest::get(format!("{base}/users/big")).await.unwrap();
    assert_eq!(res.status(), 413);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_cost_too_large");
}

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
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_store_unavailable");
    assert_eq!(
        body["error"]["message"],
        "The rate limit store is unavailable. Please try again later."
    );
    assert_eq!(statuses(&open, "/", 7, &[]).await, [200; 7]);
}

/// `Retry-After` is whole seconds rounded up, at least 1, and never early:
/// one token per 20 s, refused 7.5 s after the bucket emptied, the answer is
/// 13 s; 0.1 s before the token is due the answer is 1 s; once due, the
/// request is admitted (a ManualClock holds time still between requests).
#[tokio::test]
async fn retry_after_is_the_wait_rounded_up_and_never_early() {
    let clock = ManualClock::new(Instant::from_secs(1_795_392_000));
    let limits =
        AnyKeyedLimiter::memory(per_minute(3), KeyedConfig::default(), clock.clone()).unwrap();
    let base =
        serve(app().layer(RateLimitLayer::new(limits, PeerIp::new()).legacy_headers(true))).await;
    let retry_after =
        |res: &reqwest::Response| res.headers()["retry-after"].to_str().unwrap().to_owned();
    assert_eq!(statuses(&base, "/", 3, &[]).await, [200; 3]);
    clock.advance(Duration::from_millis(7_500));
    let res = reqwest::get(format!("{base}/")).await.unwrap();
    assert_eq!(
        (res.status().as_u16(), retry_after(&res)),
        (429, "13".to_owned())
    );
    assert_eq!(
        res.headers()["x-ratelimit-reset"],
        "53",
        "full again 60 s after it emptied"
    );
    clock.advance(Duration::from_millis(12_400));
    let res = reqwest::get(format!("{base}/")).await.unwrap();
    assert_eq!(
        (res.status().as_u16(), retry_after(&res)),
        (429, "1".to_owned())
    );
    clock.advance(Duration::from_millis(100));
    assert_eq!(statuses(&base, "/", 1, &[]).await, [200]);
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

/// Without a peer address (a server not passing connect info), `PeerIp`
/// answers 500: it never guesses a key.
#[tokio::test]
async fn peer_ip_without_a_peer_address_is_500() {
    use tower::ServiceExt;
    let app = app().layer(RateLimitLayer::new(memory(per_minute(5)), PeerIp::new()));
    let req = http::Request::get("/")
        .body(axum::body::Body::empty())
        .unwrap();
    let res = app.oneshot(req).await.unwrap();
    assert_eq!(res.status(), 500);
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
    let opts = RedisOptions {
        timeout: StdDuration::from_millis(300),
        ..RedisOptions::default()
    };
    let store = RedisStore::connect(&server.url(), opts).await.unwrap();
    let set = LimitSet::new([
        ("burst", AnyLimiter::Gcra(Gcra::per_second(4).unwrap())),
        (
            "minute",
            AnyLimiter::SlidingLog(SlidingLog::new(6, Duration::from_secs(60)).unwrap()),
        ),
    ])
    .unwrap();
    let limits = AnyKeyedLimiter::Redis(Box::new(
        RedisKeyedLimiter::with_set(
            store,
            set,
            FailoverOptions::new(OnUnavailable::Local).with_replicas(2),
            KeyedConfig::default(),
            SystemClock,
        )
        .unwrap(),
    ));
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

/// In process, with a service that counts its calls and a recorder of its
/// own: a refused request (denied, rejected, an error) never reaches the
/// service, a request without a key reaches it uncounted, and every
/// decision is counted once (with DEBUG off, as here, an admitted request
/// takes the layer's shortcut).
#[tokio::test]
async fn the_service_is_called_once_per_request_let_through_and_each_decision_counted_once() {
    use metrics_exporter_prometheus::PrometheusBuilder;
    use ratebound_std::keyed::OnFull;
    use support::prometheus::sample;
    use tower::{Layer, Service, ServiceExt};

    let recorder = PrometheusBuilder::new().build_recorder();
    let text = recorder.handle();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let service = tower::service_fn(move |_req: http::Request<axum::body::Body>| {
        counted.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, std::convert::Infallible>(http::Response::new(axum::body::Body::empty())) }
    });
    // Health checks unlimited, one tenant refused, the others keyed; room
    // for two keys, a third is refused (an error, 503).
    let tenant = tenant_key("/health");
    let store = AnyKeyedLimiter::memory(
        per_minute(2),
        KeyedConfig::default()
            .with_max_keys(2)
            .with_shards(1)
            .with_on_full(OnFull::DenyNewKeys),
        SystemClock,
    )
    .unwrap();
    let mut svc = RateLimitLayer::new(store, tenant)
        .name("tenants")
        .layer(service);
    let mut send = async |path: &str, tenant: Option<&str>| {
        let mut req = http::Request::get(path);
        if let Some(t) = tenant {
            req = req.header("x-tenant", t);
        }
        let req = req.body(axum::body::Body::empty()).unwrap();
        let ready = svc.ready().await.unwrap();
        // Decided in memory while `call` runs: under this recorder.
        let answer = metrics::with_local_recorder(&recorder, || ready.call(req));
        answer.await.unwrap().status().as_u16()
    };
    let mut got = Vec::new();
    // A key over the layer's 1,024 bytes is rejected like the extractor's own.
    let too_long = "t".repeat(1_025);
    for (path, tenant) in [
        ("/", Some("t1")),
        ("/", Some("t1")),
        ("/", Some("t1")),
        ("/", Some("evil")),
        ("/health", None),
        ("/health", None),
        ("/", Some("t2")),
        ("/", Some("t3")),
        ("/", Some(too_long.as_str())),
    ] {
        got.push(send(path, tenant).await);
    }
    assert_eq!(got, [200, 200, 429, 403, 200, 200, 200, 503, 400]);
    assert_eq!(calls.load(Ordering::SeqCst), 5, "the 200s only");
    let text = text.render();
    let count = |outcome: &str| {
        sample(
            &text,
            "ratebound_decisions_total",
            &format!("limit=\"tenants\",outcome=\"{outcome}\""),
        )
    };
    assert_eq!(count("allowed"), Some(3.0), "{text}");
    assert_eq!(count("denied"), Some(1.0));
    assert_eq!(count("rejected"), Some(2.0));
    assert_eq!(count("error"), Some(1.0));
    assert_eq!(
        sample(&text, "ratebound_keys_held", "limit=\"tenants\""),
        Some(2.0)
    );
}

/// With headers on success the admitted request's future is boxed with its
/// fields: it answers once with them, and polled again after answering it
/// stays pending (as a refused request's future does) rather than resuming
/// a finished `async` block.
#[tokio::test]
async fn a_finished_response_future_stays_pending() {
    use std::future::Future;
    use std::task::{Context, Poll};

    use tower::{Layer, Service, ServiceExt};

    let layer = RateLimitLayer::new(memory(per_minute(10)), PeerIp::new()).headers_on_success(true);
    let mut service = layer.layer(tower::service_fn(|_req: http::Request<String>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(String::from("ok")))
    }));
    let mut req = http::Request::new(String::new());
    req.extensions_mut()
        .insert(std::net::SocketAddr::from(([192, 0, 2, 1], 40_000)));
    let mut fut = Box::pin(service.ready().await.unwrap().call(req));
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let Poll::Ready(Ok(res)) = fut.as_mut().poll(&mut cx) else {
        panic!("the service answers at once");
    };
    assert_eq!(res.headers()["ratelimit"], "\"per_minute\";r=9;t=6");
    assert!(fut.as_mut().poll(&mut cx).is_pending());
}

/// The same body over memory and Redis: a key (here a header's raw value,
/// through a closure) up to the layer's bound is decided, a longer one is
/// answered 400 before either backend sees it, and a smaller bound set on
/// the layer holds too.
async fn keys_over_the_bound_are_400_on_every_backend(limits: Limits, backend: &str) {
    let limits = Arc::new(limits);
    let raw = |req: &http::Request<axum::body::Body>| {
        Ok::<_, KeyRejection>(
            req.headers()
                .get("x-k")
                .map(|v| RateKey::from(v.as_bytes())),
        )
    };
    let default = serve(app().layer(RateLimitLayer::new(Arc::clone(&limits), raw))).await;
    let small =
        serve(app().layer(RateLimitLayer::new(Arc::clone(&limits), raw).max_key_len(8))).await;
    let key = |n: usize| "k".repeat(n);
    assert_eq!(
        statuses(&default, "/", 1, &[("x-k", &key(1024))]).await,
        [200],
        "{backend}"
    );
    let res = reqwest::Client::new()
        .get(format!("{default}/"))
        .header("x-k", key(1025))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400, "{backend}");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_request", "{backend}");
    assert_eq!(
        body["error"]["message"], "The rate limit key is longer than 1024 bytes.",
        "{backend}"
    );
    assert_eq!(
        statuses(&small, "/", 2, &[("x-k", &key(8))]).await,
        [200, 200],
        "{backend}"
    );
    // A key the store holds already (decided by the default layer) is
    // still over the small layer's bound: refused there, and in shadow
    // mode let through without being decided.
    assert_eq!(
        statuses(&default, "/", 1, &[("x-k", &key(9))]).await,
        [200],
        "{backend}"
    );
    assert_eq!(
        statuses(&small, "/", 2, &[("x-k", &key(9))]).await,
        [400, 400],
        "{backend}"
    );
    // Shadow mode lets it through, undecided.
    let shadow = serve(
        app().layer(
            RateLimitLayer::new(Arc::clone(&limits), raw)
                .max_key_len(8)
                .shadow(true),
        ),
    )
    .await;
    assert_eq!(
        statuses(&shadow, "/", 2, &[("x-k", &key(9))]).await,
        [200, 200],
        "{backend}"
    );
    // Neither the refusals nor the shadow passes used the key's quota
    // (5 a minute, 1 used): 4 more, then 429.
    assert_eq!(
        statuses(&default, "/", 5, &[("x-k", &key(9))]).await,
        [200, 200, 200, 200, 429],
        "{backend}"
    );
}

#[tokio::test]
async fn keys_over_the_bound_are_400_in_memory() {
    keys_over_the_bound_are_400_on_every_backend(memory(per_minute(5)), "memory").await;
}

#[tokio::test]
async fn keys_over_the_bound_are_400_in_redis() {
    let server = RedisServer::start();
    let limits = redis(&server, per_minute(5), OnUnavailable::Closed).await;
    keys_over_the_bound_are_400_on_every_backend(limits, "redis").await;
}

/// A Redis store that takes shorter keys than the layer's default caps the
/// layer's bound: a key between the two is a 400, not the store's 500.
#[tokio::test]
async fn a_redis_stores_smaller_key_bound_caps_the_layers() {
    let server = RedisServer::start();
    let opts = RedisOptions {
        max_tag_len: 100,
        ..RedisOptions::default()
    };
    let limits = redis_with(&server.url(), opts, per_minute(5), OnUnavailable::Closed).await;
    let layer = RateLimitLayer::new(limits, HeaderKey::new(http::HeaderName::from_static("x-k")));
    let base = serve(app().layer(layer.max_key_len(200))).await;
    assert_eq!(
        statuses(&base, "/", 1, &[("x-k", &"k".repeat(100))]).await,
        [200]
    );
    assert_eq!(
        statuses(&base, "/", 1, &[("x-k", &"k".repeat(101))]).await,
        [400]
    );
}
