//! The general rate-limit layer over real HTTP on loopback: an axum app
//! served with connect info, a reqwest client, and (where a backend is
//! involved) a real redis-server. One test body runs over both backends.
//! Its keys: `rate_limit_keys.rs`; its store failing: `rate_limit_store.rs`.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use ratebound_core::{Duration, Instant};
use ratebound_std::clock::{ManualClock, SystemClock};
use ratebound_std::fallback::OnUnavailable;
use ratebound_std::http::rate_limit::{HeaderKey, Outcome, PeerIp, RateLimitLayer};
use ratebound_std::keyed::{AnyKeyedLimiter, KeyedConfig};
use support::axum_app::serve;
use support::rate_limit::*;
use support::redis_server::RedisServer;

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
