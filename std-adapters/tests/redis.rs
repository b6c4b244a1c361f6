//! The Redis backend against real `redis-server` processes on loopback:
//! the core trace fixtures replayed field by field, concurrency from many
//! connections, policy sets, a 3-master cluster, and bad input.

mod support;

use std::sync::Arc;

use ratebound_core::{Duration, Gcra, Instant, SlidingCounter, SlidingLog};
use ratebound_std::clock::ManualClock;
use ratebound_std::redis::{
    Member, RedisLimitError, RedisOptions, RedisSpec, RedisStore, TimeSource,
};
use serde_json::{json, Value};
use support::redis_server::{RedisCluster, RedisServer};

fn fixtures(kind: &str) -> Value {
    let path = format!(
        "{}/../fixtures/traces/{kind}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn u(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"))
}

fn caller_time(clock: &ManualClock) -> RedisOptions {
    RedisOptions {
        time: TimeSource::Caller(Arc::new(clock.clone())),
        timeout: std::time::Duration::from_secs(5),
        ..RedisOptions::default()
    }
}

fn decision_json(d: &ratebound_core::Decision) -> Value {
    json!({
        "allowed": d.allowed,
        "limit": d.limit,
        "remaining": d.remaining,
        "reset_at": d.reset_at.as_micros(),
        "retry_at": d.retry_at.as_micros(),
    })
}

fn state_json(kind: &str, s: &[u64]) -> Value {
    match kind {
        "gcra" => json!({"tat": s[0], "rem": s[1]}),
        "sliding_log" => json!({
            "last": s[0],
            "entries": s[1..].chunks(2).map(|c| json!({"at": c[0], "cost": c[1]})).collect::<Vec<_>>(),
        }),
        _ => json!({"start": s[0], "prev": s[1], "curr": s[2]}),
    }
}

/// Replays every trace of `kind` through `store`; returns the steps checked.
async fn replay(store: &RedisStore, clock: &ManualClock, kind: &str, run: &str) -> usize {
    let file = fixtures(kind);
    let mut steps = 0;
    for (t, trace) in file["traces"].as_array().unwrap().iter().enumerate() {
        let c = &trace["config"];
        let spec = match kind {
            "gcra" => RedisSpec::Gcra(
                Gcra::new(
                    u(c, "capacity"),
                    u(c, "amount"),
                    Duration::from_micros(u(c, "period_us")),
                )
                .unwrap(),
            ),
            "sliding_log" => RedisSpec::sliding_log(
                &SlidingLog::<8>::new(u(c, "limit"), Duration::from_micros(u(c, "window_us")))
                    .unwrap(),
            ),
            _ => RedisSpec::SlidingCounter(
                SlidingCounter::new(u(c, "limit"), Duration::from_micros(u(c, "window_us")))
                    .unwrap(),
            ),
        };
        // A fresh key per trace; the tag has braces and spaces on purpose.
        let tag = format!("{run} {kind} {{trace}} {t}");
        let mut state = Value::Null;
        for (i, step) in trace["steps"].as_array().unwrap().iter().enumerate() {
            clock.set(Instant::from_micros(u(step, "now")));
            let cost = u(step, "cost");
            let what = format!("{kind}/{} step {i} ({})", trace["name"], step["op"]);
            let (got, new_state): (Value, Option<Vec<u64>>) = match step["op"].as_str().unwrap() {
                op @ ("check" | "peek") => {
                    let m = [Member {
                        name: "x",
                        spec: &spec,
                        cost,
                    }];
                    let r = if op == "check" {
                        store.check(tag.as_bytes(), &m).await
                    } else {
                        store.peek(tag.as_bytes(), &m).await
                    };
                    match r {
                        Ok(d) => {
                            assert_eq!(
                                d.decision.decision, d.members[0].decision,
                                "{what}: a single member is the set"
                            );
                            (
                                json!({"ok": decision_json(&d.members[0].decision)}),
                                Some(d.members[0].state.clone()),
                            )
                        }
                        Err(RedisLimitError::Cost { .. }) => {
                            (json!({"error": "insufficient_capacity"}), None)
                        }
                        Err(e) => panic!("{what}: {e}"),
                    }
                }
                "at_most" => {
                    let RedisSpec::Gcra(g) = spec else {
                        unreachable!()
                    };
                    let o = store
                        .take_at_most(tag.as_bytes(), "x", &g, cost)
                        .await
                        .unwrap();
                    (
                        json!({"decision": decision_json(&o.decision), "taken": o.taken}),
                        Some(o.state),
                    )
                }
                "refund" => {
                    let RedisSpec::Gcra(g) = spec else {
                        unreachable!()
                    };
                    let o = store.refund(tag.as_bytes(), "x", &g, cost).await.unwrap();
                    (decision_json(&o.decision), Some(o.state))
                }
                op => panic!("unknown op {op}"),
            };
            assert_eq!(got, step["expect"], "{what}: decision");
            if let Some(s) = new_state {
                state = state_json(kind, &s);
            } else if state.is_null() {
                state = step["state"].clone(); // an error before any state was stored
            }
            assert_eq!(state, step["state"], "{what}: state");
            steps += 1;
        }
    }
    steps
}

#[tokio::test]
async fn core_fixtures_replay_exactly_through_redis() {
    let server = RedisServer::start();
    let clock = ManualClock::new(Instant::ZERO);
    let store = RedisStore::connect(&server.url(), caller_time(&clock))
        .await
        .unwrap();
    let mut total = 0;
    for kind in ["gcra", "sliding_log", "sliding_counter"] {
        total += replay(&store, &clock, kind, "single").await;
    }
    assert_eq!(total, 480 + 320 + 320);
}
