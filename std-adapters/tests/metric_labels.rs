//! Two rate-limit layers over different limits under one metrics label
//! would add up their counts: the second to serve says so at WARN, once;
//! layers over the same limits, or named apart, share nothing and say
//! nothing. Over real HTTP (a layer registers its metrics at its first
//! request). One test (one process-wide subscriber).

mod support;

use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use ratebound_core::Gcra;
use ratebound_std::clock::SystemClock;
use ratebound_std::http::rate_limit::{HeaderKey, PeerIp, RateLimitLayer};
use ratebound_std::keyed::{AnyKeyedLimiter, KeyedConfig};
use ratebound_std::limiter::{AnyLimiter, LimitSet};
use support::axum_app::serve;
use support::log_capture::Captured;

fn per_minute() -> Arc<AnyKeyedLimiter<SystemClock>> {
    let set = LimitSet::one(
        "per_minute",
        AnyLimiter::Gcra(Gcra::per_minute(60).unwrap()),
    )
    .unwrap();
    Arc::new(AnyKeyedLimiter::memory(set, KeyedConfig::default(), SystemClock).unwrap())
}

fn app() -> Router {
    Router::new().route("/", get(|| async { "ok" }))
}

/// One request to `app` over real HTTP, with an API key header.
async fn one_request(app: Router) {
    let base = serve(app).await;
    let r = reqwest::Client::new()
        .get(format!("{base}/"))
        .header("x-api-key", "k1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metrics_label_shared_by_different_limits_is_warned_of_once() {
    let logs = Captured::default();
    let sink = logs.clone();
    tracing_subscriber::fmt()
        .with_env_filter("ratebound_std=warn")
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .init();
    let warnings = || {
        logs.text()
            .lines()
            .filter(|l| l.contains("report under one metrics label"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let api_key = || HeaderKey::new(http::HeaderName::from_static("x-api-key"));

    // Two layers over the same limits (default name `per_minute`): one
    // store, one set of counts; nothing to say.
    let shared = per_minute();
    one_request(app().layer(RateLimitLayer::new(Arc::clone(&shared), PeerIp::new()))).await;
    one_request(app().layer(RateLimitLayer::new(shared, api_key()))).await;
    // Other limits, named apart.
    one_request(app().layer(RateLimitLayer::new(per_minute(), api_key()).name("per_key"))).await;
    assert_eq!(warnings(), Vec::<String>::new());

    // Other limits under the same default name: warned of, naming the
    // label, at its first request only.
    let other = RateLimitLayer::new(per_minute(), api_key());
    one_request(app().layer(other.clone())).await;
    one_request(app().layer(other)).await;
    let w = warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains(" WARN "), "{w:?}");
    assert!(w[0].contains("limit=\"per_minute\""), "{w:?}");
}
