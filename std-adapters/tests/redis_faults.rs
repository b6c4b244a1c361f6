//! Redis as operators meet it: stalled, down at start, killed and restarted
//! empty, and busy. Every test runs a real `redis-server` on loopback.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::routing::post;
use axum::Router;
use ratebound_core::budget::{BudgetConfig, Dimension, Horizon, Usage};
use ratebound_core::Gcra;
use ratebound_std::budget::RedisBudgetManager;
use ratebound_std::clock::SystemClock;
use ratebound_std::fallback::{FailoverOptions, OnUnavailable, Source};
use ratebound_std::http::layer::{FromExtensions, ModelLimitLayer};
use ratebound_std::keyed::{KeyedConfig, RedisKeyedLimiter};
use ratebound_std::limiter::AnyLimiter;
use ratebound_std::model_limit::{
    AdmitError, AdmitRequests, Admitted, AnyModelLimiter, Identity, ModelLimitConfig, Outcome,
    RedisModelLimiter,
};
use ratebound_std::redis::{RedisOptions, RedisStore};
use support::redis_server::RedisServer;

const POLICIES: [OnUnavailable; 3] = [
    OnUnavailable::Closed,
    OnUnavailable::Open,
    OnUnavailable::Local,
];

fn config(toml: &str) -> ModelLimitConfig {
    ModelLimitConfig::from_toml(toml).unwrap()
}

fn opts(timeout_ms: u64) -> RedisOptions {
    RedisOptions {
        timeout: StdDuration::from_millis(timeout_ms),
        ..RedisOptions::default()
    }
}

fn failover(on: OnUnavailable) -> FailoverOptions {
    FailoverOptions::new(on).with_retry_after(StdDuration::from_millis(200))
}

/// `calls` and `failed_calls` of `FCALL` in `INFO commandstats`.
fn fcalls(server: &RedisServer) -> (u64, u64) {
    let info = server.cli(&["INFO", "commandstats"]).unwrap();
    let line = info
        .lines()
        .find(|l| l.starts_with("cmdstat_fcall:"))
        .unwrap_or("cmdstat_fcall:calls=0,failed_calls=0");
    let field = |name: &str| {
        line.split([':', ','])
            .find_map(|kv| kv.strip_prefix(name))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("calls="), field("failed_calls="))
}

/// Redis frozen (SIGSTOP) for 2.5 s while admissions arrive: the client
/// gives up after 250 ms; when Redis thaws it runs every call it received,
/// and each changes nothing, because each arrived after its deadline. Under
/// `closed` the callers got errors, under `open` uncounted admissions,
/// under `local` this replica's decisions; in no case is anything left in
/// Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_redis_runs_after_the_caller_gave_up_charge_nothing() {
    for on in POLICIES {
        let server = RedisServer::start();
        let store = RedisStore::connect(&server.url(), opts(250)).await.unwrap();
        let model = RedisModelLimiter::new(
            store.clone(),
            config("period_minutes = 1\ntotal_max = 20\nsuccess_max = 10"),
            failover(on),
            SystemClock,
        )
        .unwrap();
        let gcra = AnyLimiter::Gcra(Gcra::per_minute(10).unwrap());
        let keyed = RedisKeyedLimiter::new(
            store.clone(),
            "api",
            gcra,
            failover(on),
            KeyedConfig::default(),
            SystemClock,
        )
        .unwrap();
        let budget = RedisBudgetManager::new(
            store.clone(),
            BudgetConfig::new().limit(Dimension::Tokens, Horizon::MINUTE, 1_000),
            b"ghost-team",
            16,
        )
        .unwrap()
        .with_failover(failover(on), SystemClock)
        .unwrap();
        // The clock sync and the code are in place; a warm-up admission on
        // another key shows the path works.
        let warm = model.admit(&Identity::user("warm"), "m").await.unwrap();
        assert_eq!(warm.source(), Source::Redis);
        warm.settle(Outcome::Success).await;
        let (before, _) = fcalls(&server);

        server.pause();
        let who = Identity::user("ghost-user");
        let (models, keys, holds) = tokio::join!(
            futures_join((0..5).map(|_| model.admit(&who, "m"))),
            futures_join((0..5).map(|_| keyed.check(b"ghost-key", 1))),
            futures_join((0..5).map(|_| budget.reserve(Usage::request(10, 0)))),
        );
        for m in &models {
            match (on, m) {
                (OnUnavailable::Closed, Err(AdmitError::Unavailable(_))) => {}
                (OnUnavailable::Open, Ok(a)) => assert_eq!(a.source(), Source::FailOpen),
                (OnUnavailable::Local, Ok(a)) => assert_eq!(a.source(), Source::Local),
                other => panic!("{on:?}: model admission {other:?}"),
            }
        }
        for k in &keys {
            match (on, k) {
                (OnUnavailable::Closed, Err(e)) => assert!(e.is_unavailable(), "{e}"),
                (OnUnavailable::Open, Ok(d)) => assert_eq!(d.source, Source::FailOpen),
                (OnUnavailable::Local, Ok(d)) => assert_eq!(d.source, Source::Local),
                other => panic!("{on:?}: keyed check {other:?}"),
            }
        }
        for h in &holds {
            match (on, h) {
                (OnUnavailable::Closed, Err(_)) => {}
                (OnUnavailable::Open, Ok(h)) => assert_eq!(h.source(), Source::FailOpen),
                (OnUnavailable::Local, Ok(h)) => assert_eq!(h.source(), Source::Local),
                (_, other) => panic!("{on:?}: budget reserve {:?}", other.as_ref().err()),
            }
        }
        drop(holds);
        for m in models.into_iter().flatten() {
            m.settle(Outcome::Success).await; // open / local: nothing to settle in Redis
        }
        tokio::time::sleep(StdDuration::from_millis(2_250)).await;
        server.resume();
        tokio::time::sleep(StdDuration::from_millis(500)).await;

        let (after, failed) = fcalls(&server);
        assert_eq!(
            after - before,
            15,
            "{on:?}: Redis ran the 15 calls it received while frozen"
        );
        assert_eq!(failed, 15, "{on:?}: every one refused itself as late");
        let left = server.cli(&["KEYS", "*ghost*"]).unwrap();
        assert_eq!(left, "", "{on:?}: nothing charged or held in Redis");
    }
}

async fn futures_join<F: std::future::Future>(fs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let handles: Vec<_> = fs.collect();
    let mut out = Vec::with_capacity(handles.len());
    let mut pinned: Vec<_> = handles.into_iter().map(Box::pin).collect();
    // Poll all together so every call is sent before any times out.
    let mut done: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in pinned.iter_mut().enumerate() {
            if done[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => done[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.extend(done.into_iter().flatten());
    out
}

/// A replica started while Redis is down serves by its policy, and moves
/// its decisions to Redis once Redis is up.
#[tokio::test]
async fn a_replica_starts_without_redis_and_moves_to_it_when_it_is_up() {
    let server = RedisServer::reserved(&[]);
    let mut limiters = Vec::new();
    for on in POLICIES {
        let store = RedisStore::open(&server.url(), opts(250)).unwrap();
        assert!(store.ready().await.is_err(), "nothing listens yet");
        let m = RedisModelLimiter::new(
            store.clone(),
            config("period_minutes = 1\nsuccess_max = 10"),
            failover(on),
            SystemClock,
        )
        .unwrap();
        let k = RedisKeyedLimiter::new(
            store,
            "api",
            AnyLimiter::Gcra(Gcra::per_minute(10).unwrap()),
            failover(on),
            KeyedConfig::default(),
            SystemClock,
        )
        .unwrap();
        limiters.push((on, m, k));
    }
    let who = Identity::user("u");
    for (on, m, k) in &limiters {
        let a = m.admit(&who, "m").await;
        let d = k.check(b"k", 1).await;
        match on {
            OnUnavailable::Closed => {
                assert!(matches!(a, Err(AdmitError::Unavailable(_))));
                assert!(d.unwrap_err().is_unavailable());
            }
            OnUnavailable::Open => {
                assert_eq!(a.unwrap().source(), Source::FailOpen);
                assert_eq!(d.unwrap().source, Source::FailOpen);
            }
            OnUnavailable::Local => {
                assert_eq!(a.unwrap().source(), Source::Local);
                assert_eq!(d.unwrap().source, Source::Local);
            }
        }
    }
    server.launch();
    tokio::time::sleep(StdDuration::from_millis(300)).await; // past retry_after
    for (on, m, k) in &limiters {
        let a = m.admit(&who, "m").await.unwrap();
        assert_eq!(a.source(), Source::Redis, "{on:?}");
        a.settle(Outcome::Success).await;
        assert_eq!(
            k.check(b"k", 1).await.unwrap().source,
            Source::Redis,
            "{on:?}"
        );
    }
    // One count for the three: 3 successes of 10 used in Redis.
    let a = limiters[0].1.admit(&who, "m").await.unwrap();
    assert_eq!(a.decision().success.remaining, 10 - 3 - 1);
}

/// Three `local` replicas of a limit of 30 successes a minute, Redis killed:
/// each enforces its share of 10, so together they admit 30, not 90. Redis
/// restarted without persistence comes back empty, and the replicas share
/// its count again: 30 more in all, not 30 each.
#[tokio::test]
async fn local_replicas_stay_within_their_share_across_a_kill_and_restart() {
    let server = RedisServer::start();
    let mut replicas = Vec::new();
    for _ in 0..3 {
        let store = RedisStore::connect(&server.url(), opts(250)).await.unwrap();
        replicas.push(
            RedisModelLimiter::new(
                store,
                config("period_minutes = 1\nsuccess_max = 30"),
                failover(OnUnavailable::Local).with_replicas(3),
                SystemClock,
            )
            .unwrap(),
        );
    }
    let who = Identity::user("u");
    async fn successes(
        r: &RedisModelLimiter<SystemClock>,
        who: &Identity,
        n: usize,
    ) -> (usize, Vec<Source>) {
        let (mut admitted, mut sources) = (0, Vec::new());
        for _ in 0..n {
            let a = r.admit(who, "m").await.unwrap();
            sources.push(a.source());
            if a.decision().allowed() {
                admitted += 1;
                a.settle(Outcome::Success).await;
            }
        }
        (admitted, sources)
    }
    server.kill();
    let mut during = Vec::new();
    for r in &replicas {
        let (n, sources) = successes(r, &who, 15).await;
        assert!(sources.iter().all(|s| *s == Source::Local));
        during.push(n);
    }
    assert_eq!(
        during,
        [10, 10, 10],
        "each replica within its share of 30 / 3"
    );

    server.restart();
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    let mut after = 0;
    for r in &replicas {
        let (n, sources) = successes(r, &who, 15).await;
        assert!(sources.iter().all(|s| *s == Source::Redis), "{sources:?}");
        after += n;
    }
    assert_eq!(after, 30, "one shared count again (Redis restarted empty)");
}

/// Auth for the burst test: `Authorization: Bearer <user>` and `x-model`.
async fn auth(mut req: Request, next: Next) -> axum::response::Response {
    let user = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    if let Some(user) = user {
        req.extensions_mut().insert(Identity::user(user));
    }
    next.run(req).await
}

/// One gateway replica over real HTTP: the model-limit layer over Redis.
async fn replica(store: RedisStore, on: OnUnavailable) -> String {
    replica_with(store, FailoverOptions::new(on)).await
}

async fn replica_with(store: RedisStore, failover: FailoverOptions) -> String {
    let limiter = RedisModelLimiter::new(
        store,
        config("period_minutes = 1\ntotal_max = 0\nsuccess_max = 100000"),
        failover,
        SystemClock,
    )
    .unwrap();
    let layer = ModelLimitLayer::new(
        Arc::new(AnyModelLimiter::Redis(Box::new(limiter))),
        FromExtensions::new().with_model_header(axum::http::HeaderName::from_static("x-model")),
    );
    let app = Router::new()
        .route("/v1/chat/completions", post(|| async { "{}" }))
        .layer(layer)
        .layer(middleware::from_fn(auth));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/v1/chat/completions",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// Three fresh `closed` replicas on a healthy Redis take bursts of 300
/// concurrent requests: with the default timeout and connections, none is
/// refused for the store (no false 503).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_take_bursts_of_300_without_a_false_503() {
    let server = RedisServer::start();
    let mut urls = Vec::new();
    for _ in 0..3 {
        // Opened, not connected: each replica connects on its first request.
        let store = RedisStore::open(&server.url(), RedisOptions::default()).unwrap();
        urls.push(replica(store, OnUnavailable::Closed).await);
    }
    let client = reqwest::Client::new();
    let unavailable = Arc::new(AtomicUsize::new(0));
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for burst in 0..10 {
        let tasks: Vec<_> = (0..300)
            .map(|i| {
                let (client, url) = (client.clone(), urls[i % 3].clone());
                let unavailable = Arc::clone(&unavailable);
                tokio::spawn(async move {
                    let r = client
                        .post(url)
                        .header("authorization", format!("Bearer user-{}", i % 30))
                        .header("x-model", "m")
                        .body("{}")
                        .send()
                        .await
                        .unwrap();
                    let status = r.status().as_u16();
                    if status == 503 {
                        let body = r.text().await.unwrap_or_default();
                        assert!(body.contains("rate_limit_store_unavailable"), "{body}");
                        unavailable.fetch_add(1, Ordering::SeqCst);
                    }
                    status
                })
            })
            .collect();
        for t in tasks {
            *statuses.entry(t.await.unwrap()).or_default() += 1;
        }
        assert_eq!(
            unavailable.load(Ordering::SeqCst),
            0,
            "burst {burst}: {statuses:?}"
        );
    }
    assert_eq!(statuses.get(&200), Some(&3_000), "{statuses:?}");
}

/// While Redis is down a `closed` replica answers 503 with
/// `rate_limit_store_unavailable`, then serves once Redis is up.
#[tokio::test]
async fn a_closed_replica_answers_store_unavailable_until_redis_is_up() {
    let server = RedisServer::reserved(&[]);
    let store = RedisStore::open(&server.url(), opts(250)).unwrap();
    let failover = FailoverOptions::new(OnUnavailable::Closed)
        .with_retry_after(StdDuration::from_millis(1_500));
    let url = replica_with(store, failover).await;
    let client = reqwest::Client::new();
    let send = || {
        client
            .post(&url)
            .header("authorization", "Bearer u")
            .header("x-model", "m")
            .body("{}")
            .send()
    };
    let r = send().await.unwrap();
    assert_eq!(r.status().as_u16(), 503);
    // When to try again: the skip window, 1.5 s rounded up.
    assert_eq!(r.headers()["retry-after"], "2");
    let body = r.text().await.unwrap();
    assert!(
        body.contains("\"code\":\"rate_limit_store_unavailable\""),
        "{body}"
    );
    // Not the connection error, which names the store's address.
    assert!(
        body.contains("The rate limit store is unavailable. Please try again later."),
        "{body}"
    );
    server.launch();
    tokio::time::sleep(StdDuration::from_millis(1_600)).await; // past retry_after
    assert_eq!(send().await.unwrap().status().as_u16(), 200);
}

/// A store told to connect in the background does so once Redis is up, so
/// the first call after that finds a connection ready (it is answered
/// without connecting: the server has seen a client and the code loaded).
#[tokio::test]
async fn a_store_connects_in_the_background_once_redis_is_up() {
    let server = RedisServer::reserved(&[]);
    let store = RedisStore::open(&server.url(), opts(250)).unwrap();
    store.connect_in_background(StdDuration::from_millis(100));
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    server.launch();
    let deadline = std::time::Instant::now() + StdDuration::from_secs(5);
    loop {
        let clients = server.cli(&["CLIENT", "LIST"]).unwrap_or_default();
        let libs = server.cli(&["FUNCTION", "LIST"]).unwrap_or_default();
        if clients.lines().count() >= 2 && libs.contains("ratebound") {
            break; // this redis-cli and the store's connection
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no background connection: {clients}"
        );
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    drop(store);
}

/// Without persistence a restarted Redis forgets every count (the test
/// above); with an append-only file it keeps them, as the README says.
#[tokio::test]
async fn with_an_append_only_file_a_restart_keeps_the_counts() {
    let server = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let store = RedisStore::connect(&server.url(), opts(1_000))
        .await
        .unwrap();
    let limiter = RedisModelLimiter::new(
        store,
        config("period_minutes = 1\nsuccess_max = 5"),
        failover(OnUnavailable::Closed),
        SystemClock,
    )
    .unwrap();
    let who = Identity::user("u");
    for _ in 0..5 {
        let a = limiter.admit(&who, "m").await.unwrap();
        assert!(a.decision().allowed());
        a.settle(Outcome::Success).await;
    }
    server.kill();
    server.restart();
    // The connection died while idle: its first call fails once (a call
    // that may have reached Redis is never sent twice), the next reconnects.
    let mut a = limiter.admit(&who, "m").await;
    for _ in 0..10 {
        if a.is_ok() {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(250)).await;
        a = limiter.admit(&who, "m").await;
    }
    let a = a.unwrap();
    assert_eq!(a.source(), Source::Redis);
    assert!(
        !a.decision().allowed(),
        "the 5 successes survived the restart"
    );
}

/// A misconfiguration (here a Redis user not allowed to call functions) is
/// an error even under `open`: failing open would hide it.
#[tokio::test]
async fn a_refused_call_is_an_error_not_a_fail_over() {
    let server = RedisServer::start();
    let url = server.url_of_user_denied(&["fcall", "fcall_ro"]);
    let store = RedisStore::connect(&url, opts(1_000)).await.unwrap();
    let limiter = RedisModelLimiter::new(
        store,
        config("period_minutes = 1\nsuccess_max = 5"),
        failover(OnUnavailable::Open),
        SystemClock,
    )
    .unwrap();
    let e = limiter.admit(&Identity::user("u"), "m").await.unwrap_err();
    assert!(matches!(e, AdmitError::StoreError(_)), "{e:?}");
    assert!(e.to_string().contains("fcall"), "{e}");
}

/// After the skip window one call probes the stalled store while the
/// others keep skipping: of 10 concurrent calls, only one waits out the
/// timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_skip_window_one_call_probes_and_the_others_skip() {
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url(), opts(400)).await.unwrap();
    let limiter = RedisKeyedLimiter::new(
        store,
        "api",
        AnyLimiter::Gcra(Gcra::per_minute(100).unwrap()),
        failover(OnUnavailable::Open),
        KeyedConfig::default(),
        SystemClock,
    )
    .unwrap();
    assert_eq!(limiter.check(b"k", 1).await.unwrap().source, Source::Redis);
    server.pause();
    assert_eq!(
        limiter.check(b"k", 1).await.unwrap().source,
        Source::FailOpen
    );
    tokio::time::sleep(StdDuration::from_millis(250)).await; // past retry_after (200 ms)
    let timed = futures_join((0..10).map(|_| async {
        let t = std::time::Instant::now();
        let d = limiter.check(b"k", 1).await.unwrap();
        (d.source, t.elapsed())
    }))
    .await;
    server.resume();
    assert!(timed.iter().all(|(s, _)| *s == Source::FailOpen));
    let waited = timed
        .iter()
        .filter(|(_, t)| *t >= StdDuration::from_millis(350))
        .count();
    assert_eq!(waited, 1, "{timed:?}");
}

/// Under `local`, a cost that fits the whole limit but not this replica's
/// share is refused until the store is back (a denial with a retry time),
/// not reported as a cost that can never fit; a cost above the whole limit
/// still is.
#[tokio::test]
async fn a_cost_above_the_share_is_denied_not_an_error() {
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url(), opts(250)).await.unwrap();
    let limiter = RedisKeyedLimiter::new(
        store,
        "api",
        AnyLimiter::Gcra(Gcra::per_minute(9).unwrap()),
        failover(OnUnavailable::Local).with_replicas(3),
        KeyedConfig::default(),
        SystemClock,
    )
    .unwrap();
    server.kill();
    let d = limiter.check(b"k", 5).await.unwrap();
    assert_eq!(d.source, Source::Local);
    assert!(!d.decision.allowed && d.decision.limit == 3, "{d:?}");
    let wait = d.decision.retry_at.duration_after(d.decision.reset_at);
    assert_eq!(wait, ratebound_core::Duration::from_millis(200));
    assert_eq!((d.binding, d.binding_remaining), (0, 0));
    assert_eq!(d.binding_reset_at, d.decision.reset_at);
    assert!(limiter.check(b"k", 3).await.unwrap().decision.allowed);
    assert!(limiter.check(b"k", 10).await.is_err());
}

/// Failing open, a set admits uncounted and names its binding member as a
/// counted decision does: the one with least left (here the second, the
/// smaller), with its capacity as the limit.
#[tokio::test]
async fn a_set_failing_open_binds_the_member_with_least_left() {
    use ratebound_std::limiter::LimitSet;
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url(), opts(250)).await.unwrap();
    let limits = LimitSet::new([
        (
            "wide".to_owned(),
            AnyLimiter::Gcra(Gcra::per_minute(10).unwrap()),
        ),
        (
            "narrow".to_owned(),
            AnyLimiter::Gcra(Gcra::per_minute(5).unwrap()),
        ),
    ])
    .unwrap();
    let limiter = RedisKeyedLimiter::with_set(
        store,
        limits,
        failover(OnUnavailable::Open),
        KeyedConfig::default(),
        SystemClock,
    )
    .unwrap();
    server.kill();
    let d = limiter.check(b"k", 3).await.unwrap();
    assert_eq!(d.source, Source::FailOpen);
    assert!(d.decision.allowed);
    assert_eq!(
        (d.binding, d.decision.remaining, d.decision.limit),
        (1, 2, 5)
    );
    assert_eq!(
        (d.binding_remaining, d.binding_reset_at),
        (2, d.decision.reset_at)
    );
}

/// A limiter that cannot be built says which field is wrong, by core's
/// or the fail-over's rule: a bad name, no replicas, a retry window over a
/// day, a fallback of no keys.
#[tokio::test]
async fn a_bad_keyed_limiter_names_the_field() {
    use ratebound_std::redis::StoreError;
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url(), opts(250)).await.unwrap();
    let build = |name: &str, limiter, failover, local| {
        RedisKeyedLimiter::new(store.clone(), name, limiter, failover, local, SystemClock)
            .map(|_| ())
    };
    let gcra = || AnyLimiter::Gcra(Gcra::per_minute(9).unwrap());
    let local = || failover(OnUnavailable::Local);
    let cases = [
        (
            "per minute",
            gcra(),
            local(),
            KeyedConfig::default(),
            "limits",
        ),
        (
            "api",
            gcra(),
            local().with_replicas(0),
            KeyedConfig::default(),
            "replicas",
        ),
        (
            "api",
            gcra(),
            local().with_retry_after(StdDuration::from_secs(86_401)),
            KeyedConfig::default(),
            "retry_after",
        ),
        (
            "api",
            gcra(),
            local(),
            KeyedConfig::default().with_max_keys(0),
            "max_keys",
        ),
    ];
    for (name, limiter, failover, keyed, field) in cases {
        match build(name, limiter, failover, keyed) {
            Err(StoreError::Config(e)) => assert_eq!(e.field(), field, "{e}"),
            other => panic!("{field}: {other:?}"),
        }
    }
}

/// A call refused above the share is still a use of its key: with the
/// fallback full and evicting keys not used recently, a key refused while
/// it keeps calling keeps its count and another key is forgotten. Ten
/// stores, so a key kept by luck of the eviction order in each (one in
/// two) does not pass the test.
#[tokio::test]
async fn a_call_refused_above_the_share_is_a_use_of_its_key() {
    use ratebound_std::keyed::OnFull;
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url(), opts(250)).await.unwrap();
    let limiters: Vec<_> = (0..10)
        .map(|_| {
            RedisKeyedLimiter::new(
                store.clone(),
                "api",
                AnyLimiter::Gcra(Gcra::per_minute(9).unwrap()),
                failover(OnUnavailable::Local).with_replicas(3),
                KeyedConfig::default()
                    .with_max_keys(2)
                    .with_shards(1)
                    .with_on_full(OnFull::EvictLru),
                SystemClock,
            )
            .unwrap()
        })
        .collect();
    server.kill();
    for (i, limiter) in limiters.iter().enumerate() {
        assert!(limiter.check(b"a", 2).await.unwrap().decision.allowed);
        assert!(limiter.check(b"b", 1).await.unwrap().decision.allowed);
        let refused = limiter.check(b"a", 5).await.unwrap();
        assert!(!refused.decision.allowed, "{refused:?}");
        assert!(limiter.check(b"c", 1).await.unwrap().decision.allowed);
        // a's share (3) holds 2 already: 1 remains after one more.
        let a = limiter.peek(b"a", 1).await.unwrap();
        assert_eq!(a.decision.remaining, 0, "store {i}: a was forgotten");
    }
}

/// Budgets of many keys on one store share one fail-over: once a call finds
/// Redis frozen, the budgets of other users skip it at once (`Down`)
/// instead of each waiting out its own timeout.
#[tokio::test]
async fn scoped_budgets_share_one_failover_per_store() {
    use ratebound_std::budget::{Payer, ScopedBackend, ScopedBudgets, ScopedDenied};
    use ratebound_std::redis::StoreError;
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url(), opts(300)).await.unwrap();
    let backend = ScopedBackend::Redis {
        store,
        prefix: "t:".into(),
        hold_slots: 16,
        failover: failover(OnUnavailable::Closed),
    };
    let config = toml::from_str("per_user = { tokens_per_minute = 1_000 }").unwrap();
    let budgets = ScopedBudgets::new(config, backend, SystemClock).unwrap();
    let payer = |user| Payer {
        key: None,
        user,
        group: None,
        model: "m",
    };
    let hold = budgets
        .reserve(&payer("warm"), Usage::request(1, 0))
        .await
        .unwrap();
    hold.settle(Usage::request(1, 0)).await.unwrap();

    server.pause();
    let first = budgets.reserve(&payer("a"), Usage::request(1, 0)).await;
    assert!(
        matches!(first, Err(ScopedDenied::Store(ref e)) if !matches!(e, StoreError::Down(_))),
        "the first call meets the frozen store: {first:?}"
    );
    for user in ["b", "c", "d"] {
        let next = budgets.reserve(&payer(user), Usage::request(1, 0)).await;
        assert!(
            matches!(next, Err(ScopedDenied::Store(StoreError::Down(_)))),
            "{user}: {next:?}"
        );
    }
    server.resume();
}

/// Every kind of admission carries its deadline, and only admissions do:
/// with Redis frozen past the timeout, a two-member set, a sliding log, a
/// sliding counter, a take, a reserve, a try-spend and a model admission
/// each time out, and when Redis thaws and runs them each refuses itself
/// (nothing stored); a settle, a record and a refund sent into the same
/// freeze also time out for their callers, but are applied when they arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admissions_carry_a_deadline_settles_records_and_refunds_do_not() {
    use ratebound_core::model_quota::{ModelQuota, Outcome as QuotaOutcome, Window};
    use ratebound_core::{Duration, SlidingCounter, SlidingLog};
    use ratebound_std::redis::{Charge, RedisBudget, RedisModelQuotas, RedisSpec};
    wait_out_midnight();
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url(), opts(250)).await.unwrap();
    let hour = Duration::from_secs(3_600);
    let g = Gcra::new(5, 1, hour).unwrap();
    let gcra = RedisSpec::Gcra(g);
    let log = RedisSpec::sliding_log(&SlidingLog::<8>::new(5, hour).unwrap());
    let counter = RedisSpec::SlidingCounter(SlidingCounter::new(5, hour).unwrap());
    let one = |name, spec| Charge {
        name,
        spec,
        cost: 1,
    };
    let budget = RedisBudget::new(store.clone(), budget_of(), 4);
    let quota = ModelQuota::new(None, 5, hour, Window::Sliding, hour).unwrap();
    let quotas = RedisModelQuotas::new(store.clone());
    // Before the freeze: a hold, a take and a budget for the three to act on.
    let (admitted, _) = quotas.admit(b"kept", &quota).await.unwrap();
    let hold = admitted.hold.expect("admitted");
    assert_eq!(
        store.take_at_most(b"kept", "g", &g, 3).await.unwrap().taken,
        3
    );
    budget
        .record(b"kept", "b", Usage::request(100, 0))
        .await
        .unwrap();
    let (before, failed_before) = fcalls(&server);

    server.pause();
    let set = [one("a", &gcra), one("b", &log)];
    let (log_only, counter_only) = ([one("x", &log)], [one("x", &counter)]);
    let (s, l, c, t, r, ts, a, settle, record, refund) = tokio::join!(
        store.check(b"ghost set", &set),
        store.check(b"ghost log", &log_only),
        store.check(b"ghost counter", &counter_only),
        store.take_at_most(b"ghost take", "g", &g, 2),
        budget.reserve(b"ghost reserve", "b", Usage::request(10, 0)),
        budget.try_spend(b"ghost spend", "b", Usage::request(10, 0)),
        quotas.admit(b"ghost model", &quota),
        quotas.settle(b"kept", &quota, hold, QuotaOutcome::Success),
        budget.record(b"kept", "b", Usage::request(200, 0)),
        store.refund(b"kept", "g", &g, 2),
    );
    let timed_out = [
        s.err(),
        l.err(),
        c.err(),
        t.err(),
        r.err(),
        ts.err(),
        a.err(),
        settle.err(),
        record.err(),
        refund.err(),
    ];
    for (i, e) in timed_out.iter().enumerate() {
        assert!(
            e.as_ref().is_some_and(|e| e.is_unavailable()),
            "call {i}: {e:?}"
        );
    }
    tokio::time::sleep(StdDuration::from_millis(1_000)).await;
    server.resume();
    tokio::time::sleep(StdDuration::from_millis(500)).await;

    let (after, failed) = fcalls(&server);
    assert_eq!(
        after - before,
        10,
        "Redis ran the 10 calls it received while frozen"
    );
    assert_eq!(
        failed - failed_before,
        7,
        "the 7 admissions refused themselves as late"
    );
    assert_eq!(
        server.cli(&["KEYS", "*ghost*"]).unwrap(),
        "",
        "no admission stored anything"
    );
    let store = RedisStore::connect(&server.url(), opts(1_000))
        .await
        .unwrap();
    let quotas = RedisModelQuotas::new(store.clone());
    let (now, _) = quotas.peek(b"kept", &quota).await.unwrap();
    assert_eq!(
        (now.in_flight, now.success.remaining),
        (0, 3),
        "the settle was applied: nothing in flight, one success of 5 (the peek counts itself)"
    );
    let budget = RedisBudget::new(store.clone(), budget_of(), 4);
    let status = budget.status(b"kept", "b").await.unwrap().value.unwrap();
    assert_eq!(status.limits[0].used, 300, "the record was applied");
    let free = Charge {
        name: "g",
        spec: &gcra,
        cost: 0,
    };
    let gcra_now = store.peek(b"kept", &[free]).await.unwrap();
    assert_eq!(
        gcra_now.members[0].decision.remaining, 4,
        "5 − 3 taken + 2 refunded"
    );
}

/// Within a minute of midnight UTC, sleep until the new day: a test whose
/// budget counts per calendar day then cannot straddle the window's end.
fn wait_out_midnight() {
    const DAY_MS: u128 = 86_400_000;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let to_midnight = DAY_MS - now % DAY_MS;
    if to_midnight < 60_000 {
        std::thread::sleep(std::time::Duration::from_millis(to_midnight as u64 + 100));
    }
}

/// 1,000 tokens a UTC day (a minute's window would end mid-test once a
/// minute; the day's, only at midnight: see [`wait_out_midnight`]).
fn budget_of() -> ratebound_core::budget::Budget {
    ratebound_core::budget::Budget::new(BudgetConfig::new().limit(
        Dimension::Tokens,
        Horizon::DAY,
        1_000,
    ))
    .unwrap()
}

/// Three `local` replicas of one budget of 900 tokens a day, Redis killed:
/// each spends within its share of 300, so together they spend 900, not
/// 2,700. A reservation that fits the budget but not the share is denied
/// until the store is back (a denial with a retry time), not reported as an
/// amount that can never fit; one above the whole budget still is.
#[tokio::test]
async fn local_replicas_of_a_budget_stay_within_their_share() {
    use ratebound_core::budget::{Denial, DenyReason};
    use ratebound_core::Instant;
    use ratebound_std::budget::{BudgetDenied, RedisBudgetError};
    use ratebound_std::clock::Clock;
    wait_out_midnight();
    let server = RedisServer::start();
    let cfg = BudgetConfig::new().limit(Dimension::Tokens, Horizon::DAY, 900);
    let mut replicas = Vec::new();
    for _ in 0..3 {
        let store = RedisStore::connect(&server.url(), opts(250)).await.unwrap();
        replicas.push(
            RedisBudgetManager::new(store, cfg.clone(), b"shared", 16)
                .unwrap()
                .with_failover(failover(OnUnavailable::Local).with_replicas(3), SystemClock)
                .unwrap(),
        );
    }
    server.kill();
    let mut spent = Vec::new();
    // Denied until one retry_after (200 ms) from when it was decided.
    let denied_until_the_store_may_be_back = |d: &Denial, before: Instant, after: Instant| {
        let retry = ratebound_core::Duration::from_millis(200);
        assert_eq!(
            (d.reason, d.limit),
            (DenyReason::AboveShare, Some(0)),
            "{d:?}"
        );
        assert!(
            before + retry <= d.retry_at && d.retry_at <= after + retry,
            "{d:?}"
        );
    };
    for r in &replicas {
        let before = SystemClock.now();
        let reserved = r.reserve(Usage::request(400, 0)).await;
        let after = SystemClock.now();
        match reserved {
            Err(RedisBudgetError::Denied(BudgetDenied::Denied(d))) => {
                denied_until_the_store_may_be_back(&d, before, after)
            }
            other => panic!("400 of a share of 300: {:?}", other.map(|h| h.usage())),
        }
        let before = SystemClock.now();
        let checked = r.check_budget(400, 0).await;
        let after = SystemClock.now();
        match checked {
            Err(RedisBudgetError::Denied(BudgetDenied::Denied(d))) => {
                denied_until_the_store_may_be_back(&d, before, after)
            }
            other => panic!("400 of a share of 300: {other:?}"),
        }
        assert!(matches!(
            r.reserve(Usage::request(901, 0)).await,
            Err(RedisBudgetError::Denied(BudgetDenied::Invalid(_)))
        ));
        let mut tokens = 0;
        for _ in 0..5 {
            match r.reserve(Usage::request(100, 0)).await {
                Ok(h) => {
                    assert_eq!(h.source(), Source::Local);
                    h.settle(Usage::request(100, 0)).await.unwrap();
                    tokens += 100;
                }
                // The share's refusal: its limit indexes the same limit of
                // the budget's config (900), of which this replica holds 300.
                Err(RedisBudgetError::Denied(BudgetDenied::Denied(d))) => {
                    assert_eq!(d.limit, Some(0), "{d:?}");
                    let whole = r.budget().config().clone();
                    assert_eq!(whole.limits[0].max, 900);
                    assert_eq!(whole.share(3).limits[0].max, 300);
                }
                Err(e) => panic!("{e}"),
            }
        }
        spent.push(tokens);
    }
    assert_eq!(
        spent,
        [300, 300, 300],
        "each replica within its share of 900 / 3"
    );
}

/// Under `local` the fallback's alerts reach the manager's handlers and
/// subscribers, as Redis's do, measured against the share: with 3 replicas
/// of a 900-token budget, 80 % is crossed at 240 tokens spent here.
#[tokio::test]
async fn local_fallback_alerts_reach_the_managers_subscribers() {
    use ratebound_core::budget::AlertKind;
    wait_out_midnight();
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url(), opts(250)).await.unwrap();
    let cfg = BudgetConfig::new()
        .limit(Dimension::Tokens, Horizon::DAY, 900)
        .alert_threshold_bp(8_000);
    let budget = RedisBudgetManager::new(store, cfg, b"alerted", 16)
        .unwrap()
        .with_failover(failover(OnUnavailable::Local).with_replicas(3), SystemClock)
        .unwrap();
    let alerts = budget.subscribe();
    let handled = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&handled);
    budget.on_alert(move |_| {
        seen.fetch_add(1, Ordering::SeqCst);
    });
    server.kill();
    let hold = budget.reserve(Usage::request(239, 0)).await.unwrap();
    assert_eq!(hold.source(), Source::Local);
    hold.settle(Usage::request(239, 0)).await.unwrap();
    budget.wait_alerts().await;
    assert_eq!(alerts.try_iter().count(), 0, "239 of a 300-token share");
    let hold = budget.reserve(Usage::request(1, 0)).await.unwrap();
    hold.settle(Usage::request(1, 0)).await.unwrap();
    budget.wait_alerts().await;
    let got: Vec<_> = alerts.try_iter().collect();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        (got[0].kind, got[0].threshold_bp),
        (AlertKind::Threshold, 8_000)
    );
    assert_eq!(handled.load(Ordering::SeqCst), 1);
}

/// A scoped settle tries every budget: when the store refuses some (here
/// the user may no longer write their keys), the others are recorded, and
/// the call returns what was recorded and each budget that was not.
#[tokio::test]
async fn a_scoped_settle_records_what_it_can_and_names_every_budget_it_could_not() {
    use ratebound_std::budget::{Payer, Scope, ScopedBackend, ScopedBudgets, ScopedDenied};
    wait_out_midnight();
    let server = RedisServer::start();
    let url = server.url_of_user_denied(&[]);
    let store = RedisStore::connect(&url, opts(1_000)).await.unwrap();
    let backend = ScopedBackend::Redis {
        store,
        prefix: "llm:".into(),
        hold_slots: 16,
        failover: failover(OnUnavailable::Closed),
    };
    let config = toml::from_str(
        "per_user = { tokens_per_day = 1_000 }\nper_model.m = { tokens_per_day = 5_000 }\nper_group.g = { tokens_per_day = 9_000 }",
    )
    .unwrap();
    let budgets = ScopedBudgets::new(config, backend, SystemClock).unwrap();
    let alice = Payer {
        key: None,
        user: "alice",
        group: Some("g"),
        model: "m",
    };
    let reserve = || budgets.reserve(&alice, Usage::request(300, 0));
    let (first, second) = (reserve().await.unwrap(), reserve().await.unwrap());
    assert_eq!(first.budgets().count(), 3);
    // From now on the user may touch only the user budgets' keys.
    server
        .cli(&["ACL", "SETUSER", "limited", "resetkeys", "~*llm:user:*"])
        .unwrap();
    let Err(ScopedDenied::Unsettled {
        settled,
        mut failed,
    }) = first.settle(Usage::request(200, 0)).await
    else {
        panic!("the model and group budgets could not settle");
    };
    assert_eq!(settled.len(), 1, "the user's settlement: {settled:?}");
    failed.sort_by_key(|f| f.scope.name());
    let named: Vec<_> = failed.iter().map(|f| (f.scope, f.id.as_str())).collect();
    assert_eq!(named, [(Scope::Group, "g"), (Scope::Model, "m")]);
    let used = budgets.status(Scope::User, "alice").await.unwrap();
    assert_eq!(
        used.used(Dimension::Tokens, Horizon::DAY),
        Some(200),
        "the user's settle was recorded"
    );
    assert_eq!(used.limits[0].reserved, 300, "the second hold still held");
    // And with every key refused, every budget is named and none recorded.
    server
        .cli(&["ACL", "SETUSER", "limited", "resetkeys", "~nothing:*"])
        .unwrap();
    let Err(e @ ScopedDenied::Unsettled { .. }) = second.settle(Usage::request(200, 0)).await
    else {
        panic!("no budget could settle");
    };
    let text = e.to_string();
    assert!(
        text.starts_with("3 budget settlement(s) not recorded"),
        "{text}"
    );
    let ScopedDenied::Unsettled { settled, failed } = e else {
        unreachable!()
    };
    assert_eq!((settled.len(), failed.len()), (0, 3));
}

/// Alerts fire once per window across all servers: three managers of one
/// Redis budget (100 tokens a day, an alert at 50 %) spend it together,
/// one token per call, 40 calls each; the three hear one threshold alert
/// and one limit-hit alert in all, however the calls interleave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_fire_once_per_window_across_all_servers() {
    use ratebound_core::budget::AlertKind;
    wait_out_midnight();
    let server = RedisServer::start();
    let cfg = BudgetConfig::new()
        .limit(Dimension::Tokens, Horizon::DAY, 100)
        .alert_threshold_bp(5_000);
    let mut managers = Vec::new();
    for _ in 0..3 {
        let store = RedisStore::connect(&server.url(), opts(1_000))
            .await
            .unwrap();
        managers.push(RedisBudgetManager::new(store, cfg.clone(), b"shared", 16).unwrap());
    }
    let alerts: Vec<_> = managers.iter().map(|m| m.subscribe()).collect();
    async fn spend(m: &RedisBudgetManager) -> u64 {
        let mut admitted = 0;
        for _ in 0..40 {
            if let Ok(hold) = m.reserve(Usage::request(1, 0)).await {
                hold.settle(Usage::request(1, 0)).await.unwrap();
                admitted += 1;
            }
        }
        admitted
    }
    let (a, b, c) = tokio::join!(
        spend(&managers[0]),
        spend(&managers[1]),
        spend(&managers[2])
    );
    let admitted: u64 = a + b + c;
    assert_eq!(admitted, 100);
    for m in &managers {
        m.wait_alerts().await;
    }
    let heard: Vec<_> = alerts.iter().flat_map(|a| a.try_iter()).collect();
    let count = |kind| heard.iter().filter(|a| a.kind == kind).count();
    assert_eq!(
        (count(AlertKind::Threshold), count(AlertKind::LimitHit)),
        (1, 1),
        "{heard:?}"
    );
}
