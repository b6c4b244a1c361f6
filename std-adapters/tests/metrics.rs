//! The metrics a rate-limit layer reports, scraped as Prometheus text from
//! an admin endpoint over real HTTP after a scripted load: the counts equal
//! the requests sent. One test (one process-wide recorder).

mod support;

use std::time::Duration as StdDuration;

use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use ratebound_core::Gcra;
use ratebound_std::clock::SystemClock;
use ratebound_std::fallback::{FailoverOptions, OnUnavailable};
use ratebound_std::http::rate_limit::{HeaderKey, PeerIp, RateLimitLayer};
use ratebound_std::keyed::{AnyKeyedLimiter, KeyedConfig, RedisKeyedLimiter};
use ratebound_std::limiter::{AnyLimiter, LimitSet};
use ratebound_std::redis::{RedisOptions, RedisStore};
use support::axum_app::serve;
use support::log_capture::Captured;
use support::prometheus::sample;
use support::redis_server::RedisServer;

fn per_minute(n: u64) -> LimitSet {
    LimitSet::one("per_minute", AnyLimiter::Gcra(Gcra::per_minute(n).unwrap())).unwrap()
}

async fn get_n(url: &str, n: usize, header: Option<(&str, String)>) -> usize {
    let client = reqwest::Client::new();
    let mut ok = 0;
    for i in 0..n {
        let mut req = client.get(url);
        if let Some((k, v)) = &header {
            req = req.header(*k, format!("{v}{i}"));
        }
        if req.send().await.unwrap().status() == 200 {
            ok += 1;
        }
    }
    ok
}

/// The Prometheus text the admin endpoint serves.
async fn scrape(admin: &str) -> String {
    reqwest::get(format!("{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scraped_counts_equal_the_requests_sent() {
    let logs = Captured::default();
    let sink = logs.clone();
    let captured = logs.clone();
    tracing_subscriber::fmt()
        .with_env_filter("ratebound_std=debug")
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .init();
    // 3 per minute per IP, enforced: of 10 requests, 3 allowed, 7 denied.
    // Built before the recorder is installed: a layer registers its metrics
    // at its first request, so installing before serving is enough.
    let memory =
        AnyKeyedLimiter::memory(per_minute(3), KeyedConfig::default(), SystemClock).unwrap();
    let enforced = RateLimitLayer::new(memory, PeerIp::new()).name("per_ip");
    let recorder: PrometheusHandle = PrometheusBuilder::new().install_recorder().unwrap();
    let admin = serve(Router::new().route(
        "/metrics",
        get(move || {
            let r = recorder.clone();
            async move { r.render() }
        }),
    ))
    .await;

    // The same in shadow mode: 3 allowed, 7 shadow-denied, all served.
    let memory =
        AnyKeyedLimiter::memory(per_minute(3), KeyedConfig::default(), SystemClock).unwrap();
    let shadow = RateLimitLayer::new(memory, PeerIp::new())
        .name("per_ip_shadow")
        .shadow(true);
    // Per API key in Redis: 25 distinct keys, one request each; then Redis
    // stops and 4 more are errors (503 under `closed`).
    let server = RedisServer::start();
    let opts = RedisOptions {
        timeout: StdDuration::from_millis(300),
        ..RedisOptions::default()
    };
    let store = RedisStore::connect(&server.url(), opts).await.unwrap();
    let redis = AnyKeyedLimiter::Redis(Box::new(
        RedisKeyedLimiter::with_set(
            store.clone(),
            per_minute(1),
            FailoverOptions::new(OnUnavailable::Closed),
            KeyedConfig::default(),
            SystemClock,
        )
        .unwrap(),
    ));
    let per_key = RateLimitLayer::new(
        redis,
        HeaderKey::new(http::HeaderName::from_static("x-api-key")),
    );
    // A second layer on the same store (per client IP): one outage is
    // still one transition each way, logged once.
    let redis_per_ip = AnyKeyedLimiter::Redis(Box::new(
        RedisKeyedLimiter::with_set(
            store,
            per_minute(100),
            FailoverOptions::new(OnUnavailable::Closed),
            KeyedConfig::default(),
            SystemClock,
        )
        .unwrap(),
    ));
    let per_ip_redis = RateLimitLayer::new(redis_per_ip, PeerIp::new()).name("per_ip_redis");

    // The service behind it logs when called (under a target the filter
    // shows), to tell where the decision's span ends.
    let enforced = serve(
        Router::new()
            .route("/", get(|| async { "ok" }))
            // One layer (a Router's own layers each defer their call to
            // the first poll): the rate limit, then a service that logs in
            // its `call`.
            .layer(tower::ServiceBuilder::new().layer(enforced).layer(
                tower::util::MapRequestLayer::new(|req| {
                    tracing::info!(target: "ratebound_std::inner", "inner service called");
                    req
                }),
            )),
    )
    .await;
    let shadow = serve(
        Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(shadow),
    )
    .await;
    // Likewise behind the Redis-backed layer, whose decision is awaited.
    let per_key = serve(
        Router::new().route("/", get(|| async { "ok" })).layer(
            tower::ServiceBuilder::new()
                .layer(per_key)
                .layer(tower::util::MapRequestLayer::new(|req| {
                    tracing::info!(target: "ratebound_std::inner", "redis-limited service called");
                    req
                })),
        ),
    )
    .await;

    let per_ip_redis = serve(
        Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(per_ip_redis),
    )
    .await;

    assert_eq!(get_n(&format!("{enforced}/"), 10, None).await, 3);
    assert_eq!(get_n(&format!("{per_ip_redis}/"), 2, None).await, 2);
    assert_eq!(get_n(&format!("{shadow}/"), 10, None).await, 10);
    assert_eq!(
        get_n(
            &format!("{per_key}/"),
            25,
            Some(("x-api-key", "sk-secret-".into()))
        )
        .await,
        25
    );
    // An API key too long is the extractor's rejection, counted as such.
    let long = reqwest::Client::new()
        .get(format!("{per_key}/"))
        .header("x-api-key", "k".repeat(300))
        .send()
        .await
        .unwrap();
    assert_eq!(long.status(), 400);
    server.kill();
    assert_eq!(
        get_n(&format!("{per_key}/"), 4, Some(("x-api-key", "z".into()))).await,
        0
    );
    // Both layers find the store away.
    assert_eq!(get_n(&format!("{per_ip_redis}/"), 2, None).await, 0);

    let text = scrape(&admin).await;
    let count = |limit: &str, outcome: &str| {
        sample(
            &text,
            "ratebound_decisions_total",
            &format!("limit=\"{limit}\",outcome=\"{outcome}\""),
        )
    };
    assert_eq!(count("per_ip", "allowed"), Some(3.0), "{text}");
    assert_eq!(count("per_ip", "denied"), Some(7.0));
    assert_eq!(count("per_ip_shadow", "allowed"), Some(3.0));
    assert_eq!(count("per_ip_shadow", "shadow_denied"), Some(7.0));
    assert_eq!(count("per_ip_shadow", "denied"), Some(0.0));
    // The default name is the members' names.
    assert_eq!(count("per_minute", "allowed"), Some(25.0));
    assert_eq!(count("per_minute", "error"), Some(4.0));
    assert_eq!(count("per_minute", "rejected"), Some(1.0));
    // One client in memory; Redis holds its keys itself.
    assert_eq!(
        sample(&text, "ratebound_keys_held", "limit=\"per_ip\""),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "ratebound_keys_held", "limit=\"per_minute\""),
        Some(0.0)
    );
    // Fail-over: down once, and reported down now.
    assert_eq!(
        sample(&text, "ratebound_store_up", "domain=\"limits\""),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &text,
            "ratebound_store_transitions_total",
            "domain=\"limits\",to=\"down\""
        ),
        Some(1.0)
    );
    // Every Redis call was timed: 25 answered, plus the failed ones that
    // reached the store (the others were skipped by the breaker).
    let calls = sample(
        &text,
        "ratebound_store_call_seconds_count",
        "store=\"redis\",call=\"gcra\"",
    )
    .unwrap();
    // (27 answered with the second layer's 2; each layer's failures: 1 to
    // its requests.)
    assert!((29.0..=33.0).contains(&calls), "{calls}\n{text}");

    // One span per decision, with the limit, the key's hash and the
    // outcome; never the key itself.
    let logs = logs.text();
    let spans = |limit: &str, outcome: &str| {
        logs.lines()
            .filter(|l| l.contains(&format!("rate_limit{{limit=\"{limit}\" key_hash=")))
            .filter(|l| l.contains(&format!("outcome=\"{outcome}\"")))
            .filter(|l| l.contains("close"))
            .count()
    };
    assert_eq!(spans("per_ip", "allowed"), 3, "{logs}");
    assert_eq!(spans("per_ip", "denied"), 7);
    assert_eq!(spans("per_ip_shadow", "shadow_denied"), 7);
    assert_eq!(spans("per_minute", "allowed"), 25);
    assert_eq!(spans("per_minute", "error"), 4);
    assert!(!logs.contains("sk-secret"), "a key was logged:\n{logs}");
    // The span holds the decision and its report (a denial's log), not the
    // service behind the layer.
    let lines = |text: &str| {
        logs.lines()
            .filter(|l| l.contains(text))
            .collect::<Vec<_>>()
    };
    let handler = lines("inner service called");
    assert_eq!(handler.len(), 3, "{logs}");
    assert!(handler.iter().all(|l| !l.contains("rate_limit{")), "{logs}");
    // In Redis too: 25 requests admitted, each service call outside the
    // decision's span (the decision is awaited in it, the call after it).
    let behind_redis = lines("redis-limited service called");
    assert_eq!(behind_redis.len(), 25, "{logs}");
    assert!(
        behind_redis.iter().all(|l| !l.contains("rate_limit{")),
        "{logs}"
    );
    let reached = lines("rate limit reached");
    assert!(
        reached
            .iter()
            .any(|l| l.contains("rate_limit{limit=\"per_ip\"")),
        "{logs}"
    );
    // Per-request lines at DEBUG (a flood or an outage writes no line per
    // request at the levels services usually keep): each denial, shadow
    // denial and undecided request.
    let undecided = lines("rate limit undecided");
    assert_eq!(undecided.len(), 6, "{logs}");
    assert_eq!(reached.len(), 14, "{logs}");
    for l in reached.iter().chain(&undecided) {
        assert!(l.contains(" DEBUG "), "{l}");
    }

    // Redis back (empty): after the skip window one call probes it, and the
    // store is reported up again; each transition counted and logged once.
    server.restart();
    let mut back = 0;
    for i in 0..40 {
        tokio::time::sleep(StdDuration::from_millis(100)).await;
        back = get_n(
            &format!("{per_key}/"),
            1,
            Some(("x-api-key", format!("back-{i}-"))),
        )
        .await;
        if back == 1 {
            break;
        }
    }
    assert_eq!(back, 1, "shared again once Redis is back");
    // The second layer's own probe finds it back too (after its own skip
    // window): the store was already up, nothing more is counted.
    let mut back = 0;
    for _ in 0..40 {
        back = get_n(&format!("{per_ip_redis}/"), 1, None).await;
        if back == 1 {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
    assert_eq!(back, 1, "the second layer shared again once Redis is back");
    let text = scrape(&admin).await;
    assert_eq!(
        sample(&text, "ratebound_store_up", "domain=\"limits\""),
        Some(1.0)
    );
    for to in ["down", "up"] {
        let n = sample(
            &text,
            "ratebound_store_transitions_total",
            &format!("domain=\"limits\",to=\"{to}\""),
        );
        assert_eq!(n, Some(1.0), "to {to}\n{text}");
    }
    let logs = captured.text();
    let lines = |what: &str| logs.lines().filter(|l| l.contains(what)).count();
    assert_eq!(lines("the shared store is unavailable"), 1, "{logs}");
    assert_eq!(lines("the shared store is back"), 1, "{logs}");
}
