//! The function library under load: `FUNCTION FLUSH` and a server restart
//! while many tasks decide, against real `redis-server` processes.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant as StdInstant};

use ratebound_core::{Duration, Gcra, SlidingCounter, SlidingLog};
use ratebound_std::redis::{Charge, Invocation, RedisOptions, RedisSpec, RedisStore};
use support::redis_server::RedisServer;

fn specs() -> [RedisSpec; 3] {
    [
        RedisSpec::Gcra(Gcra::new(1_000_000, 1_000_000, Duration::from_secs(1)).unwrap()),
        RedisSpec::sliding_log(&SlidingLog::<64>::new(1_000_000, Duration::from_secs(1)).unwrap()),
        RedisSpec::SlidingCounter(SlidingCounter::new(1_000_000, Duration::from_secs(1)).unwrap()),
    ]
}

/// One decision of task `t`, step `i`: a single GCRA, a policy set or a peek.
async fn decide(store: &RedisStore, specs: &[RedisSpec; 3], t: u64, i: u64) -> bool {
    let tag = format!("user{}", (t * 7 + i) % 50);
    let members: Vec<Charge> = ["a", "b", "c"]
        .iter()
        .zip(specs)
        .map(|(name, spec)| Charge {
            name,
            spec,
            cost: 1,
        })
        .collect();
    let r = match i % 3 {
        0 => store.check(tag.as_bytes(), &members[..1]).await,
        1 => store.check(tag.as_bytes(), &members).await,
        _ => store.peek(tag.as_bytes(), &members).await,
    };
    match r {
        Ok(d) => d.decision.decision.allowed,
        Err(e) => panic!("task {t} step {i}: {e}"),
    }
}

fn functions_loaded(server: &RedisServer) -> bool {
    server
        .cli(&["FUNCTION", "LIST"])
        .is_some_and(|l| l.contains("ratebound_"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_flush_under_load_fails_no_decision() {
    let server = RedisServer::start();
    let opts = RedisOptions {
        timeout: StdDuration::from_secs(5),
        ..RedisOptions::default()
    };
    let store = RedisStore::connect(&server.url(), opts).await.unwrap();
    assert_eq!(store.invocation(), Invocation::Functions);
    assert!(functions_loaded(&server));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let (store, stop, done) = (store.clone(), stop.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let specs = specs();
            let mut i = 0;
            // Bounded: at most 20,000 decisions per task.
            while !stop.load(Ordering::SeqCst) && i < 20_000 {
                assert!(decide(&store, &specs, t, i).await);
                done.fetch_add(1, Ordering::SeqCst);
                i += 1;
            }
        }));
    }
    for _ in 0..3 {
        tokio::time::sleep(StdDuration::from_millis(150)).await;
        server.cli(&["FUNCTION", "FLUSH"]).unwrap();
    }
    tokio::time::sleep(StdDuration::from_millis(150)).await;
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap(); // a failed decision panics its task
    }
    assert!(functions_loaded(&server), "loaded again after the flushes");
    assert_eq!(store.invocation(), Invocation::Functions);
    let n = done.load(Ordering::SeqCst);
    assert!(n > 200, "only {n} decisions");
    eprintln!("{n} decisions across 3 FUNCTION FLUSHes, none failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_under_load_fails_no_decision_once_redis_is_back() {
    let server = RedisServer::start();
    let opts = RedisOptions {
        timeout: StdDuration::from_millis(500),
        ..RedisOptions::default()
    };
    let store = RedisStore::connect(&server.url(), opts).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // When the restarted server first answered; calls started after it must
    // all succeed (the library is loaded again on the way).
    let back: Arc<Mutex<Option<StdInstant>>> = Arc::default();
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let (store, stop, back) = (store.clone(), stop.clone(), back.clone());
        tasks.push(tokio::spawn(async move {
            let specs = specs();
            let (mut ok, mut failed_while_down, mut failed_after) = (0u64, 0u64, Vec::new());
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) && i < 50_000 {
                let started = StdInstant::now();
                let tag = format!("user{}", (t * 7 + i) % 50);
                let m = [Charge {
                    name: "a",
                    spec: &specs[0],
                    cost: 1,
                }];
                match store.check(tag.as_bytes(), &m).await {
                    Ok(_) => ok += 1,
                    Err(e) => {
                        let was_back = back.lock().unwrap().is_some_and(|b| started > b);
                        if was_back {
                            failed_after.push(e.to_string());
                        } else {
                            failed_while_down += 1;
                            tokio::time::sleep(StdDuration::from_millis(5)).await;
                        }
                    }
                }
                i += 1;
            }
            (ok, failed_while_down, failed_after)
        }));
    }
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    server.kill();
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    server.restart(); // empty: no data, no functions
    *back.lock().unwrap() = Some(StdInstant::now());
    tokio::time::sleep(StdDuration::from_millis(1_000)).await;
    stop.store(true, Ordering::SeqCst);
    let (mut ok, mut down) = (0, 0);
    for t in tasks {
        let (o, d, after) = t.await.unwrap();
        assert!(after.is_empty(), "failed after Redis was back: {after:?}");
        ok += o;
        down += d;
    }
    assert!(
        functions_loaded(&server),
        "the restarted server has the library"
    );
    assert!(ok > 100, "{ok} decisions");
    eprintln!("{ok} decisions; {down} failed while Redis was down; none after");
}

#[tokio::test]
async fn a_restart_while_idle_is_answered_by_loading_again() {
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url(), RedisOptions::default())
        .await
        .unwrap();
    let specs = specs();
    assert!(decide(&store, &specs, 0, 0).await);
    server.kill();
    server.restart();
    // Give the connection manager a moment to notice the dropped
    // connection, as it would between requests.
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    let mut failures = 0;
    let mut answered = false;
    for i in 0..20 {
        match store
            .check(
                b"idle",
                &[Charge {
                    name: "a",
                    spec: &specs[0],
                    cost: 1,
                }],
            )
            .await
        {
            Ok(_) => {
                answered = true;
                break;
            }
            Err(e) => {
                failures += 1;
                eprintln!("attempt {i}: {e}");
                tokio::time::sleep(StdDuration::from_millis(50)).await;
            }
        }
    }
    assert!(
        answered && failures <= 1,
        "{failures} failures before an answer"
    );
    assert!(functions_loaded(&server));
}
