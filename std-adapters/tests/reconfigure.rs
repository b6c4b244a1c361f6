//! Limits changed while traffic runs, over real HTTP on loopback: the
//! counts after each change are the ones core's carry-over rule gives
//! (states kept, read by the new limits), the same in memory and in a real
//! redis-server — one test body over both backends.

mod support;

use std::sync::Arc;
use std::time::Duration as StdDuration;

use axum::routing::get;
use axum::Router;
use ratebound_core::{Duration, Gcra, SlidingCounter, SlidingLog};
use ratebound_std::clock::SystemClock;
use ratebound_std::fallback::{FailoverOptions, OnUnavailable};
use ratebound_std::http::rate_limit::{HeaderKey, RateLimitLayer};
use ratebound_std::keyed::{AnyKeyedLimiter, KeyedConfig, RedisKeyedLimiter};
use ratebound_std::limiter::{AnyLimiter, LimitSet};
use ratebound_std::redis::{RedisOptions, RedisStore};
use support::axum_app::serve;
use support::redis_server::RedisServer;

type Limits = AnyKeyedLimiter<SystemClock>;

const HOUR: Duration = Duration::from_secs(3_600);

/// `n` an hour, bursts of `n`: slow enough that no token comes back while
/// a test runs, so every count below is exact.
fn per_hour(n: u64) -> AnyLimiter {
    AnyLimiter::Gcra(Gcra::new(n, n, HOUR).unwrap())
}

fn log_per_hour(n: u64) -> AnyLimiter {
    AnyLimiter::SlidingLog(SlidingLog::new(n, HOUR).unwrap())
}

fn one(l: AnyLimiter) -> LimitSet {
    LimitSet::one("hourly", l).unwrap()
}

fn memory(set: LimitSet) -> Arc<Limits> {
    Arc::new(AnyKeyedLimiter::memory(set, KeyedConfig::default(), SystemClock).unwrap())
}

async fn redis(server: &RedisServer, set: LimitSet) -> Arc<Limits> {
    let opts = RedisOptions {
        timeout: StdDuration::from_millis(500),
        ..RedisOptions::default()
    };
    let store = RedisStore::connect(&server.url(), opts).await.unwrap();
    Arc::new(AnyKeyedLimiter::Redis(Box::new(
        RedisKeyedLimiter::with_set(
            store,
            set,
            FailoverOptions::new(OnUnavailable::Closed),
            KeyedConfig::default(),
            SystemClock,
        )
        .unwrap(),
    )))
}

/// An app limited per `x-api-key` by `limits`.
async fn app(limits: &Arc<Limits>) -> String {
    let layer = RateLimitLayer::new(
        Arc::clone(limits),
        HeaderKey::new(http::HeaderName::from_static("x-api-key")),
    );
    serve(
        Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(layer),
    )
    .await
}

/// How many of `n` requests with API key `key` were answered 200; the
/// others must be 429.
async fn admitted(base: &str, key: &str, n: usize) -> usize {
    let client = reqwest::Client::new();
    let mut ok = 0;
    for _ in 0..n {
        let res = client
            .get(format!("{base}/"))
            .header("x-api-key", key)
            .send()
            .await
            .unwrap();
        match res.status().as_u16() {
            200 => ok += 1,
            429 => {}
            s => panic!("status {s}"),
        }
    }
    ok
}

/// A refused request's `RateLimit-Policy` and body.
async fn refusal(base: &str, key: &str) -> (String, String) {
    let res = reqwest::Client::new()
        .get(format!("{base}/"))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    let policy = res.headers()["ratelimit-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    (policy, res.text().await.unwrap())
}

/// A bucket raised and lowered mid-traffic: 10 an hour, 8 used; raised
/// tenfold, the key has used 80 of 100 (20 more); lowered to 5, it owes
/// more than the bucket holds (none), while a new key gets 5.
async fn bucket_raised_and_lowered(limits: Arc<Limits>) {
    let base = app(&limits).await;
    assert_eq!(admitted(&base, "a", 8).await, 8);

    limits.reconfigure(one(per_hour(100))).unwrap();
    assert_eq!(admitted(&base, "a", 25).await, 20);
    let (policy, body) = refusal(&base, "a").await;
    assert_eq!(policy, "\"hourly\";q=100;w=3600;bucket");
    assert!(body.contains("100 per 3600s"), "{body}");

    limits.reconfigure(one(per_hour(5))).unwrap();
    assert_eq!(admitted(&base, "a", 3).await, 0);
    assert_eq!(admitted(&base, "b", 8).await, 5);
    let (policy, _) = refusal(&base, "b").await;
    assert_eq!(policy, "\"hourly\";q=5;w=3600;bucket");
}

/// A set (sliding log + bucket) whose log is lowered below what a key has
/// used, then raised: lowering forgives nothing, raising grants exactly
/// the difference.
async fn log_lowered_then_raised(limits: Arc<Limits>) {
    let set = |log: u64| LimitSet::new([("log", log_per_hour(log)), ("bucket", per_hour(100))]);
    let base = app(&limits).await;
    assert_eq!(admitted(&base, "k", 8).await, 8);

    limits.reconfigure(set(4).unwrap()).unwrap();
    assert_eq!(admitted(&base, "k", 3).await, 0);
    assert_eq!(admitted(&base, "fresh", 6).await, 4);

    limits.reconfigure(set(12).unwrap()).unwrap();
    assert_eq!(admitted(&base, "k", 6).await, 4);
    assert_eq!(admitted(&base, "fresh", 10).await, 8);
}

/// Changes that would lose states are refused and change nothing.
async fn changes_that_lose_state_are_refused(limits: Arc<Limits>) {
    let base = app(&limits).await;
    assert_eq!(admitted(&base, "k", 3).await, 3);
    let renamed = LimitSet::one("other", per_hour(10)).unwrap();
    let e = limits.reconfigure(renamed).unwrap_err().to_string();
    assert!(e.contains("names and order"), "{e}");
    let e = limits
        .reconfigure(one(log_per_hour(10)))
        .unwrap_err()
        .to_string();
    assert!(e.contains("kind"), "{e}");
    let added = LimitSet::new([("hourly", per_hour(10)), ("more", per_hour(10))]).unwrap();
    assert!(limits.reconfigure(added).is_err());
    // Still 10 an hour with 3 used.
    assert_eq!(admitted(&base, "k", 10).await, 7);
    assert_eq!(limits.limits().limiter(0), Some(&per_hour(10)));
}

/// A premium key's own quota, set and removed at run time, its state kept
/// throughout.
async fn override_for_one_key(limits: Arc<Limits>) {
    let base = app(&limits).await;
    limits.set_override(b"vip", one(per_hour(30))).unwrap();
    assert_eq!(admitted(&base, "vip", 35).await, 30);
    assert_eq!(admitted(&base, "plain", 8).await, 5);
    let (policy, _) = refusal(&base, "vip").await;
    assert_eq!(policy, "\"hourly\";q=30;w=3600;bucket");
    assert_eq!(limits.limits_for(b"plain").limiter(0), Some(&per_hour(5)));

    // Back on 5 an hour, having used 30: nothing left.
    assert!(limits.remove_override(b"vip"));
    assert!(!limits.remove_override(b"vip"));
    assert_eq!(admitted(&base, "vip", 3).await, 0);
    // An override that would lose the state is refused: another kind, or
    // another name (a set of other members).
    assert!(limits.set_override(b"vip", one(log_per_hour(30))).is_err());
    let renamed = LimitSet::one("other", per_hour(60)).unwrap();
    let e = limits
        .set_override(b"vip", renamed)
        .unwrap_err()
        .to_string();
    assert!(e.contains("names and order"), "{e}");
    // A larger one reads the same kept state: the key used all of its
    // quota (full again in an hour), so all of the new one too.
    limits.set_override(b"vip", one(per_hour(60))).unwrap();
    assert_eq!(admitted(&base, "vip", 3).await, 0);
    // Another key under that override from the start: 60.
    limits.set_override(b"vip2", one(per_hour(60))).unwrap();
    assert_eq!(admitted(&base, "vip2", 65).await, 60);
}

#[tokio::test]
async fn a_bucket_raised_and_lowered_mid_traffic_in_memory() {
    bucket_raised_and_lowered(memory(one(per_hour(10)))).await;
}

#[tokio::test]
async fn a_bucket_raised_and_lowered_mid_traffic_in_redis() {
    let server = RedisServer::start();
    bucket_raised_and_lowered(redis(&server, one(per_hour(10))).await).await;
}

#[tokio::test]
async fn a_log_lowered_then_raised_in_memory() {
    let set = LimitSet::new([("log", log_per_hour(10)), ("bucket", per_hour(100))]).unwrap();
    log_lowered_then_raised(memory(set)).await;
}

#[tokio::test]
async fn a_log_lowered_then_raised_in_redis() {
    let server = RedisServer::start();
    let set = LimitSet::new([("log", log_per_hour(10)), ("bucket", per_hour(100))]).unwrap();
    log_lowered_then_raised(redis(&server, set).await).await;
}

#[tokio::test]
async fn changes_that_lose_state_are_refused_in_memory() {
    changes_that_lose_state_are_refused(memory(one(per_hour(10)))).await;
}

#[tokio::test]
async fn changes_that_lose_state_are_refused_in_redis() {
    let server = RedisServer::start();
    changes_that_lose_state_are_refused(redis(&server, one(per_hour(10))).await).await;
}

#[tokio::test]
async fn an_override_for_one_key_in_memory() {
    override_for_one_key(memory(one(per_hour(5)))).await;
}

#[tokio::test]
async fn an_override_for_one_key_in_redis() {
    let server = RedisServer::start();
    override_for_one_key(redis(&server, one(per_hour(5))).await).await;
}

#[tokio::test]
async fn a_counter_keeps_its_window() {
    let counter = |w: u64| {
        one(AnyLimiter::SlidingCounter(
            SlidingCounter::new(10, Duration::from_secs(w)).unwrap(),
        ))
    };
    let limits = memory(counter(60));
    limits.reconfigure(counter(60)).unwrap();
    let e = limits.reconfigure(counter(30)).unwrap_err().to_string();
    assert!(e.contains("window"), "{e}");
}

/// With Redis down under `local` fail-over, each replica decides on its
/// share of the key's own limits: an override and a change of the limits
/// reach the local fallback too (2 replicas: half of each).
#[tokio::test]
async fn overrides_and_changes_reach_the_local_fallback() {
    let server = RedisServer::start();
    let opts = RedisOptions {
        timeout: StdDuration::from_millis(500),
        ..RedisOptions::default()
    };
    let store = RedisStore::connect(&server.url(), opts).await.unwrap();
    let limits = Arc::new(AnyKeyedLimiter::Redis(Box::new(
        RedisKeyedLimiter::with_set(
            store,
            one(per_hour(10)),
            FailoverOptions::new(OnUnavailable::Local).with_replicas(2),
            KeyedConfig::default(),
            SystemClock,
        )
        .unwrap(),
    )));
    limits.set_override(b"vip", one(per_hour(40))).unwrap();
    let base = app(&limits).await;
    server.kill();
    assert_eq!(admitted(&base, "vip", 25).await, 20);
    assert_eq!(admitted(&base, "plain", 8).await, 5);
    limits.reconfigure(one(per_hour(30))).unwrap();
    assert_eq!(admitted(&base, "other", 20).await, 15);
    // Removed: vip is back on the common share, having used 20 of 20.
    assert!(limits.remove_override(b"vip"));
    assert_eq!(admitted(&base, "vip", 3).await, 0);
}
