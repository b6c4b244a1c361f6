//! The rate-limit layer's keys over real HTTP on loopback: each built-in
//! extractor (peer IP with and without trusted proxies, header, extension,
//! route, closure), and the key-length bound on both backends.

mod support;

use std::sync::Arc;

use ratebound_std::fallback::{FailoverOptions, OnUnavailable};
use ratebound_std::http::rate_limit::{
    ExtensionKey, ForwardedBy, HeaderKey, KeyRejection, PeerIp, RateKey, RateLimitLayer, RouteKey,
};
use ratebound_std::redis::RedisOptions;
use support::axum_app::serve;
use support::rate_limit::*;
use support::redis_server::RedisServer;

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
    let limits = redis_with(
        &server.url(),
        opts,
        per_minute(5),
        FailoverOptions::new(OnUnavailable::Closed),
    )
    .await;
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
