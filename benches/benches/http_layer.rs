//! The per-IP rate-limit layer's added time per request: one axum handler
//! bare, behind ratebound's `RateLimitLayer` (in memory, `PeerIp`), behind
//! tower_governor's `GovernorLayer` (`PeerIpKeyExtractor`), and behind a
//! layer that does nothing (what axum charges any layer), in one run. Requests go in process through `tower::ServiceExt::oneshot`, from
//! 1,024 client addresses in turn, every one admitted (both limits a million
//! above the rate). `benches/report.py` turns the three means into the
//! added-time ratio.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use criterion::{criterion_group, criterion_main, Criterion};
use ratebound_core::Gcra;
use ratebound_std::clock::MonotonicClock;
use ratebound_std::http::rate_limit::{PeerIp, RateLimitLayer};
use ratebound_std::keyed::{AnyKeyedLimiter, KeyedConfig};
use ratebound_std::limiter::{AnyLimiter, LimitSet};
use tower::ServiceExt;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::GovernorLayer;

const CLIENTS: u32 = 1_024;

fn app() -> Router {
    Router::new().route("/", get(|| async { "ok" }))
}

/// Routes finalised as a server would (`into_make_service` does the same).
fn served(app: Router) -> Router {
    app.with_state(())
}

fn request(i: u64) -> http::Request<Body> {
    let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + (i as u32 % CLIENTS)));
    let mut req = http::Request::get("/").body(Body::empty()).unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::new(ip, 40_000)));
    req
}

/// `iters` requests through `app`, timed inside one runtime entry.
fn run(rt: &tokio::runtime::Runtime, app: &Router, iters: u64) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        for i in 0..iters {
            let res = app.clone().oneshot(request(i)).await.unwrap();
            assert_eq!(res.status(), 200);
        }
        start.elapsed()
    })
}

fn per_ip(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let bare = served(app());
    let limits = LimitSet::one(
        "per_second",
        AnyLimiter::Gcra(Gcra::per_second(1_000_000).unwrap()),
    )
    .unwrap();
    let limits =
        AnyKeyedLimiter::memory(limits, KeyedConfig::default(), MonotonicClock::new()).unwrap();
    let ours = served(app().layer(RateLimitLayer::new(limits, PeerIp::new())));
    let config = GovernorConfigBuilder::default()
        .per_nanosecond(1_000)
        .burst_size(1_000_000)
        .finish()
        .unwrap();
    let peer = served(app().layer(GovernorLayer::new(config)));
    let noop = served(app().layer(tower::util::MapResponseLayer::new(
        |r: axum::response::Response| r,
    )));

    let mut g = c.benchmark_group("http_layer_per_ip");
    g.bench_function("bare", |b| b.iter_custom(|n| run(&rt, &bare, n)));
    g.bench_function("ratebound", |b| b.iter_custom(|n| run(&rt, &ours, n)));
    g.bench_function("tower_governor", |b| b.iter_custom(|n| run(&rt, &peer, n)));
    g.bench_function("noop_layer", |b| b.iter_custom(|n| run(&rt, &noop, n)));
    g.finish();
}

criterion_group!(benches, per_ip);
criterion_main!(benches);
