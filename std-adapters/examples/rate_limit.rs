//! An axum app limited per client IP and per API key.
//!
//! ```text
//! cargo run -p ratebound-std --example rate_limit --features axum,redis
//! cargo run -p ratebound-std --example rate_limit --features axum,redis -- redis://127.0.0.1:6379
//! curl -i -H 'x-api-key: k1' http://127.0.0.1:3000/
//! ```
//!
//! Every client IP gets 5 requests per second and 100 per minute (decided
//! together: a request refused by one counts against neither); every API
//! key 1,000 per minute. In this process by default; with a Redis URL the
//! limits are shared by every replica running this example against it.

use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use ratebound_core::Gcra;
use ratebound_std::clock::SystemClock;
use ratebound_std::fallback::{FailoverOptions, OnUnavailable};
use ratebound_std::http::rate_limit::{HeaderKey, PeerIp, RateLimitLayer};
use ratebound_std::keyed::{AnyKeyedLimiter, KeyedConfig, RedisKeyedLimiter};
use ratebound_std::limiter::{AnyLimiter, LimitSet};
use ratebound_std::redis::{RedisOptions, RedisStore};

async fn limits(
    set: LimitSet,
    redis: Option<&RedisStore>,
) -> Result<AnyKeyedLimiter<SystemClock>, Box<dyn std::error::Error>> {
    Ok(match redis {
        None => AnyKeyedLimiter::memory(set, KeyedConfig::default(), SystemClock)?,
        Some(store) => AnyKeyedLimiter::Redis(Box::new(RedisKeyedLimiter::with_set(
            store.clone(),
            set,
            // While Redis is down, each of 3 replicas enforces a third.
            FailoverOptions::new(OnUnavailable::Local).with_replicas(3),
            KeyedConfig::default(),
            SystemClock,
        )?)),
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = match std::env::args().nth(1) {
        Some(url) => Some(RedisStore::connect(&url, RedisOptions::default()).await?),
        None => None,
    };
    let per_ip = LimitSet::new([
        ("per_second", AnyLimiter::Gcra(Gcra::per_second(5)?)),
        ("per_minute", AnyLimiter::Gcra(Gcra::per_minute(100)?)),
    ])?;
    let per_key = LimitSet::one("key_per_minute", AnyLimiter::Gcra(Gcra::per_minute(1_000)?))?;

    let app = Router::new()
        .route("/", get(|| async { "hello\n" }))
        // Innermost first: the API key is checked after the IP.
        .layer(
            RateLimitLayer::new(
                limits(per_key, store.as_ref()).await?,
                HeaderKey::new(http::HeaderName::from_static("x-api-key")),
            )
            .headers_on_success(true),
        )
        .layer(
            RateLimitLayer::new(
                limits(per_ip, store.as_ref()).await?,
                // Clients connect directly. Behind a proxy, trust it (and only
                // it) to name the client: PeerIp::new().trust(["10.0.0.0/8"])?
                PeerIp::new(),
            )
            .legacy_headers(true),
        );

    let addr: SocketAddr = std::env::var("ADDR")
        .unwrap_or_else(|_| "127.0.0.1:3000".into())
        .parse()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on http://{addr}");
    let serve = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    );
    // SERVE_FOR (seconds) bounds the run, for scripted checks.
    match std::env::var("SERVE_FOR").ok().and_then(|s| s.parse().ok()) {
        Some(secs) => {
            let _ = tokio::time::timeout(Duration::from_secs(secs), serve).await;
        }
        None => serve.await?,
    }
    Ok(())
}
