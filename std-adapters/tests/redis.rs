//! The Redis backend against real `redis-server` processes on loopback:
//! the core trace fixtures replayed field by field, concurrency from many
//! connections, policy sets, a 3-master cluster, and bad input.

mod support;

use std::sync::Arc;

use ratebound_core::{Duration, Gcra, Instant, SlidingCounter, SlidingLog};
use ratebound_std::clock::ManualClock;
use ratebound_std::limiter::AnyLimiter;
use ratebound_std::redis::{Charge, Invocation, RedisOptions, RedisSpec, RedisStore, StoreError};
use serde_json::{json, Value};
use support::redis_server::{RedisCluster, RedisServer};
use support::traces::{caller_time, fixtures, u};

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
        for (i, step) in trace["steps"].as_array().unwrap().iter().enumerate() {
            clock.set(Instant::from_micros(u(step, "now")));
            let cost = u(step, "cost");
            let what = format!("{kind}/{} step {i} ({})", trace["name"], step["op"]);
            let (got, new_state): (Value, Option<Vec<u64>>) = match step["op"].as_str().unwrap() {
                op @ ("check" | "peek") => {
                    let m = [Charge {
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
                        Err(StoreError::Cost { .. }) => {
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
            let s = match new_state {
                Some(s) => s,
                // An error changed nothing: read the state as Redis holds it.
                None => {
                    store
                        .peek(
                            tag.as_bytes(),
                            &[Charge {
                                name: "x",
                                spec: &spec,
                                cost: 0,
                            }],
                        )
                        .await
                        .unwrap()
                        .members
                        .remove(0)
                        .state
                }
            };
            assert_eq!(state_json(kind, &s), step["state"], "{what}: state");
            steps += 1;
        }
    }
    steps
}

/// One policy member of a fixture: its kind, Redis spec, fixed cost, and
/// the limiter std checks a change of config with.
fn policy_member(m: &Value) -> (&'static str, RedisSpec, Option<u64>, AnyLimiter) {
    let (kind, spec, limiter) = if let Some(c) = m.get("gcra") {
        let g = Gcra::new(
            u(c, "capacity"),
            u(c, "amount"),
            Duration::from_micros(u(c, "period_us")),
        )
        .unwrap();
        ("gcra", RedisSpec::Gcra(g), AnyLimiter::Gcra(g))
    } else if let Some(c) = m.get("sliding_log") {
        let (limit, window) = (u(c, "limit"), Duration::from_micros(u(c, "window_us")));
        let l = SlidingLog::<8>::new(limit, window).unwrap();
        let any = AnyLimiter::SlidingLog(SlidingLog::new(limit, window).unwrap());
        ("sliding_log", RedisSpec::sliding_log(&l), any)
    } else {
        let c = &m["sliding_counter"];
        let k =
            SlidingCounter::new(u(c, "limit"), Duration::from_micros(u(c, "window_us"))).unwrap();
        (
            "sliding_counter",
            RedisSpec::SlidingCounter(k),
            AnyLimiter::SlidingCounter(k),
        )
    };
    (kind, spec, m["cost"].as_u64(), limiter)
}

/// Replays the policy-set traces of fixture `file` (members with a fixed
/// cost or the step's, all or nothing; configs changed by `reconfigure`
/// steps, the states staying in Redis) through `store`; returns the steps
/// checked.
async fn replay_policies(store: &RedisStore, clock: &ManualClock, file: &str, run: &str) -> usize {
    use ratebound_core::CarryOver;
    let file_name = file;
    let file = fixtures(file);
    let mut steps = 0;
    for (t, trace) in file["traces"].as_array().unwrap().iter().enumerate() {
        let members = trace["config"]["members"].as_array().unwrap();
        let mut specs: Vec<_> = members.iter().map(policy_member).collect();
        let names: Vec<String> = (0..specs.len()).map(|i| format!("m{i}")).collect();
        let tag = format!("{run} {file_name} {{{t}}}");
        for (i, step) in trace["steps"].as_array().unwrap().iter().enumerate() {
            let what = format!("{file_name}/{} step {i} ({})", trace["name"], step["op"]);
            if step["op"] == "reconfigure" {
                let new: Vec<_> = step["members"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(policy_member)
                    .collect();
                let refused = new.iter().zip(&specs).enumerate().find_map(|(m, (n, o))| {
                    match n.3.carries_over_from(&o.3) {
                        Err(ratebound_core::ConfigError::Invalid { field, .. }) => Some((m, field)),
                        _ => None,
                    }
                });
                let got = match refused {
                    Some((member, field)) => json!({"error": {"member": member, "field": field}}),
                    None => {
                        specs = new;
                        json!({"ok": "kept"})
                    }
                };
                assert_eq!(got, step["expect"], "{what}");
                steps += 1;
                continue;
            }
            clock.set(Instant::from_micros(u(step, "now")));
            let cost = u(step, "cost");
            let set: Vec<Charge> = specs
                .iter()
                .zip(&names)
                .map(|((_, spec, c, _), name)| Charge {
                    name,
                    spec,
                    cost: c.unwrap_or(cost),
                })
                .collect();
            let r = match step["op"].as_str().unwrap() {
                "check" => store.check(tag.as_bytes(), &set).await,
                _ => store.peek(tag.as_bytes(), &set).await,
            };
            let got = match &r {
                Ok(d) => {
                    json!({"ok": {"decision": decision_json(&d.decision.decision), "binding": d.decision.binding}})
                }
                Err(StoreError::Cost { member, .. }) => {
                    json!({"error": {"member": member, "code": "insufficient_capacity"}})
                }
                Err(e) => panic!("{what}: {e}"),
            };
            assert_eq!(got, step["expect"], "{what}: decision");
            // An error changed nothing: read the states as Redis holds them.
            let states = match r {
                Ok(d) => d.members,
                Err(_) => {
                    let zero: Vec<Charge> = set.iter().map(|m| Charge { cost: 0, ..*m }).collect();
                    store.peek(tag.as_bytes(), &zero).await.unwrap().members
                }
            };
            let states: Vec<Value> = specs
                .iter()
                .zip(&states)
                .map(|((kind, ..), m)| state_json(kind, &m.state))
                .collect();
            assert_eq!(Value::Array(states), step["state"], "{what}: states");
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
    assert_eq!(total, 480 + 440 + 320);
    assert_eq!(
        replay_policies(&store, &clock, "policy", "single").await,
        270
    );
    assert_eq!(
        replay_policies(&store, &clock, "reconfigure", "single").await,
        309
    );
}

/// `n` independent connections hammer one key while a controller moves the
/// (caller's) clock one emission interval at a time, only after it has
/// seen a denial (the bucket is empty): the total admitted must be exactly
/// capacity + one token per step, never one more.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_connections_admit_exactly_one_limit() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let server = RedisServer::start();
    let clock = ManualClock::new(Instant::from_secs(1_800_000_000));
    let gcra = RedisSpec::Gcra(Gcra::new(20, 100, Duration::from_secs(1)).unwrap()); // a token per 10 ms
    let log =
        RedisSpec::sliding_log(&SlidingLog::<256>::new(500, Duration::from_secs(60)).unwrap());
    let admitted = Arc::new(AtomicU64::new(0));
    let denied = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let store = RedisStore::connect(&server.url(), caller_time(&clock))
            .await
            .unwrap();
        let (admitted, denied, stop) = (admitted.clone(), denied.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut calls = 0u64;
            while !stop.load(Ordering::SeqCst) {
                // A policy set: the bucket binds, the minute log must agree.
                let m = [
                    Charge {
                        name: "sec",
                        spec: &gcra,
                        cost: 1,
                    },
                    Charge {
                        name: "min",
                        spec: &log,
                        cost: 1,
                    },
                ];
                let d = store.check(b"shared", &m).await.unwrap();
                if d.decision.decision.allowed {
                    admitted.fetch_add(1, Ordering::SeqCst);
                } else {
                    denied.store(true, Ordering::SeqCst);
                }
                calls += 1;
            }
            calls
        }));
    }
    let steps = 100;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    for _ in 0..steps {
        while !denied.swap(false, Ordering::SeqCst) {
            assert!(
                std::time::Instant::now() < deadline,
                "no denial seen: are the workers still running?"
            );
            assert!(
                !workers.iter().any(|w| w.is_finished()),
                "a worker stopped early"
            );
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        clock.advance(Duration::from_millis(10));
    }
    // Let the workers drain the last step's token.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let mut calls = 0;
    for w in workers {
        calls += w.await.unwrap();
    }
    assert!(
        calls >= 2 * steps + 20,
        "{calls} calls: at least a grant and a denial per step"
    );
    assert_eq!(
        admitted.load(Ordering::SeqCst),
        20 + steps,
        "capacity + one per step, from {calls} calls on 8 connections"
    );
}

/// Near the end of time (`Instant::MAX`, 2^52 − 1 µs) the GCRA fast path
/// and the general path (a peek, a policy set) saturate exactly as core does.
#[tokio::test]
async fn gcra_paths_match_core_at_the_end_of_time() {
    use ratebound_core::GcraState;
    let server = RedisServer::start();
    let clock = ManualClock::new(Instant::ZERO);
    let store = RedisStore::connect(&server.url(), caller_time(&clock))
        .await
        .unwrap();
    let max = Instant::MAX.as_micros();
    let g = Gcra::new(4, 1, Duration::from_secs(1)).unwrap(); // whole-µs interval
    let spec = RedisSpec::Gcra(g);
    let mut steps = 0;
    for (i, tat) in [0, max - 3_000_000, max - 10, max, max + 2_500_000]
        .into_iter()
        .enumerate()
    {
        for now in [max - 4_000_000, max - 1, max] {
            for cost in [0, 1, 3, 4] {
                let name = format!("g{i}-{now}-{cost}");
                let key = store.key(b"end", &name).unwrap();
                let key = String::from_utf8(key).unwrap();
                server.cli(&["SET", &key, &tat.to_string()]).unwrap();
                clock.set(Instant::from_micros(now));
                let m = [Charge {
                    name: &name,
                    spec: &spec,
                    cost,
                }];
                let peeked = store.peek(b"end", &m).await.unwrap();
                let got = store.check(b"end", &m).await.unwrap();
                let mut st = GcraState { tat, rem: 0 };
                let want_peek = g.peek(&st, Instant::from_micros(now), cost).unwrap();
                let want = g.check(&mut st, Instant::from_micros(now), cost).unwrap();
                let ctx = format!("tat {tat}, now {now}, cost {cost}");
                assert_eq!(peeked.members[0].decision, want_peek, "peek: {ctx}");
                assert_eq!(got.members[0].decision, want, "check: {ctx}");
                assert_eq!(got.members[0].state, [st.tat, st.rem], "state: {ctx}");
                // What was stored, read back through the general path.
                let stored = store.peek(b"end", &m).await.unwrap();
                assert_eq!(stored.members[0].state, [st.tat, st.rem], "stored: {ctx}");
                steps += 1;
            }
        }
    }
    assert_eq!(steps, 60);
}

/// Policy sets decide exactly like core's `check_all` on the same inputs.
#[tokio::test]
async fn policy_sets_match_core() {
    let server = RedisServer::start();
    let clock = ManualClock::new(Instant::ZERO);
    let store = RedisStore::connect(&server.url(), caller_time(&clock))
        .await
        .unwrap();
    policy_differential(&store, &clock, b"policy").await;
}

async fn policy_differential(store: &RedisStore, clock: &ManualClock, tag: &[u8]) {
    use ratebound_core::policy::{bind, check_all, Member as CoreMember};
    use ratebound_core::{GcraState, SlidingCounterState, SlidingLogState};
    let g = Gcra::new(5, 2, Duration::from_secs(1)).unwrap();
    let l = SlidingLog::<16>::new(9, Duration::from_secs(10)).unwrap();
    let c = SlidingCounter::new(12, Duration::from_secs(5)).unwrap();
    let specs = [
        RedisSpec::Gcra(g),
        RedisSpec::sliding_log(&l),
        RedisSpec::SlidingCounter(c),
    ];
    let (mut gs, mut ls, mut cs) = (
        GcraState::default(),
        SlidingLogState::<16>::default(),
        SlidingCounterState::default(),
    );
    let mut rng = 0x9e3779b97f4a7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut t = 1_800_000_000_000_000u64;
    let (mut allowed, mut denied) = (0, 0);
    for step in 0..300 {
        t += next() % 700_000;
        clock.set(Instant::from_micros(t));
        let costs = [next() % 3, next() % 3, next() % 4];
        let members: Vec<Charge> = ["g", "l", "c"]
            .iter()
            .zip(&specs)
            .zip(costs)
            .map(|((n, s), cost)| Charge {
                name: n,
                spec: s,
                cost,
            })
            .collect();
        let got = store.check(tag, &members).await.unwrap();
        let mut bg = bind(&g, &mut gs);
        let mut bl = bind(&l, &mut ls);
        let mut bc = bind(&c, &mut cs);
        let mut core_members: [(&mut dyn CoreMember, u64); 3] = [
            (&mut bg, costs[0]),
            (&mut bl, costs[1]),
            (&mut bc, costs[2]),
        ];
        let want = check_all(Instant::from_micros(t), &mut core_members).unwrap();
        assert_eq!(got.decision, want, "step {step}");
        assert_eq!(
            got.members[0].state,
            vec![gs.tat, gs.rem],
            "step {step}: gcra state"
        );
        assert_eq!(
            got.members[2].state,
            vec![cs.start, cs.prev, cs.curr],
            "step {step}: counter state"
        );
        let mut log_state = vec![ls.last()];
        for e in ls.entries() {
            log_state.extend([e.at, e.cost]);
        }
        assert_eq!(got.members[1].state, log_state, "step {step}: log state");
        if want.decision.allowed {
            allowed += 1
        } else {
            denied += 1
        }
    }
    assert!(
        allowed > 50 && denied > 50,
        "{allowed} allowed, {denied} denied: both paths exercised"
    );
}

#[tokio::test]
async fn a_three_master_cluster_replays_the_fixtures_and_policy_sets() {
    let cluster = RedisCluster::start();
    let clock = ManualClock::new(Instant::ZERO);
    let urls = cluster.urls();
    let nodes: Vec<&str> = urls.iter().map(String::as_str).collect();
    let store = RedisStore::connect_cluster(&nodes, caller_time(&clock))
        .await
        .unwrap();
    // The function library is on every master.
    assert_eq!(store.invocation(), Invocation::Functions);
    for n in &cluster.nodes {
        let list = n.cli(&["FUNCTION", "LIST"]).unwrap();
        assert!(list.contains("ratebound_"), "{list}");
    }
    // One master loses it (as a replaced node would): calls whose keys live
    // there load it again, on every master.
    cluster.nodes[1].cli(&["FUNCTION", "FLUSH"]).unwrap();
    let mut total = 0;
    for kind in ["gcra", "sliding_log", "sliding_counter"] {
        total += replay(&store, &clock, kind, "cluster").await;
    }
    assert_eq!(total, 1240);
    assert_eq!(
        replay_policies(&store, &clock, "policy", "cluster").await,
        270
    );
    assert_eq!(
        replay_policies(&store, &clock, "reconfigure", "cluster").await,
        309
    );
    assert!(cluster.nodes[1]
        .cli(&["FUNCTION", "LIST"])
        .unwrap()
        .contains("ratebound_"));
    let fcalls: u64 = cluster
        .nodes
        .iter()
        .map(|n| commandstat_calls(n, "fcall") + commandstat_calls(n, "fcall_ro"))
        .sum();
    assert!(fcalls >= 1240, "{fcalls} FCALL / FCALL_RO for 1,240 steps");
    // Tags spread over the masters; each policy set's keys share one slot.
    for tag in ["alice", "bob", "carol", "{odd} tag", ""] {
        policy_differential(&store, &clock, tag.as_bytes()).await;
    }
    let keys: usize = cluster
        .nodes
        .iter()
        .map(|n| n.cli(&["DBSIZE"]).unwrap().parse::<usize>().unwrap())
        .sum();
    let used = cluster
        .nodes
        .iter()
        .filter(|n| n.cli(&["DBSIZE"]).unwrap() != "0")
        .count();
    assert!(keys > 0 && used >= 2, "keys spread over {used} masters");
}

/// `calls=` of `cmdstat_<cmd>` in `INFO commandstats` (0 when never called).
fn commandstat_calls(server: &RedisServer, cmd: &str) -> u64 {
    let info = server.cli(&["INFO", "commandstats"]).unwrap();
    info.lines()
        .find(|l| l.starts_with(&format!("cmdstat_{cmd}:")))
        .and_then(|l| l.split("calls=").nth(1))
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_server_refusing_function_load_runs_the_same_code_as_scripts() {
    // FUNCTION renamed away, as an operator may do: the store falls back to
    // EVALSHA and decides exactly as core does.
    let server = RedisServer::start_with(&["--rename-command", "FUNCTION", "\"\""]);
    assert!(server
        .cli(&["FUNCTION", "LIST"])
        .unwrap_or_default()
        .contains("unknown command"));
    let clock = ManualClock::new(Instant::ZERO);
    let store = RedisStore::connect(&server.url(), caller_time(&clock))
        .await
        .unwrap();
    assert_eq!(store.invocation(), Invocation::Scripts);
    let mut total = 0;
    for kind in ["gcra", "sliding_log", "sliding_counter"] {
        total += replay(&store, &clock, kind, "scripts").await;
        // Scripts vanish between kinds: NOSCRIPT is answered with EVAL.
        server.cli(&["SCRIPT", "FLUSH"]).unwrap();
    }
    assert_eq!(total, 1240);
    assert_eq!(commandstat_calls(&server, "fcall"), 0);
    assert!(commandstat_calls(&server, "evalsha") >= 1240);
    assert!(commandstat_calls(&server, "eval") >= 2);
}

/// A user the server refuses `FUNCTION` to (`NOPERM`, an ACL as an
/// operator may set) runs the same code as scripts, deciding as core does.
#[tokio::test]
async fn a_user_refused_function_load_runs_the_same_code_as_scripts() {
    let server = RedisServer::start();
    let url = server.url_of_user_denied(&["function"]);
    let clock = ManualClock::new(Instant::ZERO);
    let store = RedisStore::connect(&url, caller_time(&clock))
        .await
        .unwrap();
    assert_eq!(store.invocation(), Invocation::Scripts);
    assert_eq!(replay(&store, &clock, "gcra", "scripts").await, 480);
    assert_eq!(commandstat_calls(&server, "fcall"), 0);
    assert!(commandstat_calls(&server, "evalsha") >= 480);
    assert_eq!(
        server.cli(&["FUNCTION", "LIST"]).unwrap(),
        "",
        "no library was loaded"
    );
}

/// Every text in a reply, depth first.
fn texts(v: &redis::Value) -> Vec<String> {
    match v {
        redis::Value::BulkString(b) => vec![String::from_utf8_lossy(b).into_owned()],
        redis::Value::SimpleString(s) => vec![s.clone()],
        redis::Value::Array(items) | redis::Value::Set(items) => {
            items.iter().flat_map(texts).collect()
        }
        redis::Value::Map(pairs) => pairs
            .iter()
            .flat_map(|(k, v)| texts(k).into_iter().chain(texts(v)))
            .collect(),
        _ => Vec::new(),
    }
}

/// Two ratebound versions share a server during a rollout: the library's
/// name and its functions' names carry a hash of its code, so another
/// version's library (ours with other code, hence another hash) loads
/// beside it, and a store of either version connecting again replaces only
/// its own.
#[tokio::test]
async fn two_versions_share_a_server() {
    let server = RedisServer::start();
    let clock = ManualClock::new(Instant::ZERO);
    let store = RedisStore::connect(&server.url(), caller_time(&clock))
        .await
        .unwrap();
    assert_eq!(store.invocation(), Invocation::Functions);
    let mut admin = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let list = |withcode: bool| {
        let mut cmd = redis::cmd("FUNCTION");
        cmd.arg("LIST");
        if withcode {
            cmd.arg("WITHCODE");
        }
        cmd
    };
    let listed: redis::Value = list(true).query_async(&mut admin).await.unwrap();
    let head = "#!lua name=ratebound_";
    let ours = texts(&listed)
        .into_iter()
        .find(|t| t.starts_with(head))
        .expect("this version's library");
    let hash = ours[head.len()..].lines().next().unwrap().to_owned();
    let other_hash = "0123456789ab";
    assert_ne!(hash, other_hash);
    let other = ours.replace(&hash, other_hash) + "\n-- another version\n";
    let loaded: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg(&other)
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(loaded, format!("ratebound_{other_hash}"));
    // This version reconnects (FUNCTION LOAD REPLACE of its own library)
    // and decides, the other version's library beside it.
    let again = RedisStore::connect(&server.url(), caller_time(&clock))
        .await
        .unwrap();
    assert_eq!(again.invocation(), Invocation::Functions);
    assert_eq!(replay(&again, &clock, "gcra", "beside another").await, 480);
    let names = texts(&list(false).query_async(&mut admin).await.unwrap());
    for h in [&hash[..], other_hash] {
        assert!(
            names.contains(&format!("ratebound_{h}")),
            "library ratebound_{h} loaded: {names:?}"
        );
        assert!(
            names.iter().any(|n| n.starts_with(&format!("rb_{h}_"))),
            "functions rb_{h}_* registered: {names:?}"
        );
    }
}

#[tokio::test]
async fn bad_input_gives_clear_errors_or_correct_results() {
    let server = RedisServer::start();
    let clock = ManualClock::new(Instant::from_secs(1_800_000_000));
    let store = RedisStore::connect(&server.url(), caller_time(&clock))
        .await
        .unwrap();
    let g = RedisSpec::Gcra(Gcra::new(3, 3, Duration::from_secs(1)).unwrap());
    let one = |cost| {
        [Charge {
            name: "x",
            spec: &g,
            cost,
        }]
    };
    // Binary tags with braces, percent signs, spaces and NUL are separate keys.
    let tags: [&[u8]; 5] = [
        b"a{b",
        b"a%7Bb",
        b"a}b",
        b"a b\0",
        &[0xff, 0xfe, b'{', b'}'],
    ];
    for t in tags {
        assert_eq!(
            store.check(t, &one(3)).await.unwrap().members[0]
                .decision
                .remaining,
            0,
            "{t:?}"
        );
    }
    assert_eq!(
        server.cli(&["DBSIZE"]).unwrap(),
        "5",
        "five tags, five keys"
    );
    // Oversized tags, absurd and zero costs, malformed calls.
    let long = vec![b'k'; 1025];
    assert!(matches!(
        store.check(&long, &one(1)).await,
        Err(StoreError::TagTooLong {
            len: 1025,
            max: 1024
        })
    ));
    assert!(store.check(&vec![b'k'; 1024], &one(1)).await.is_ok());
    assert!(matches!(
        store.check(b"t", &one(u64::MAX)).await,
        Err(StoreError::Cost {
            cost: u64::MAX,
            capacity: 3,
            ..
        })
    ));
    assert!(matches!(
        store.check(b"t", &one(4)).await,
        Err(StoreError::Cost { .. })
    ));
    let zero = store.check(b"t", &one(0)).await.unwrap();
    assert!(zero.decision.decision.allowed);
    assert_eq!(
        zero.members[0].state,
        vec![0, 0],
        "a zero cost writes nothing"
    );
    assert!(matches!(
        store.check(b"t", &[]).await,
        Err(StoreError::Invalid(_))
    ));
    let dup = [
        Charge {
            name: "x",
            spec: &g,
            cost: 1,
        },
        Charge {
            name: "x",
            spec: &g,
            cost: 1,
        },
    ];
    assert!(matches!(
        store.check(b"t", &dup).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store
            .check(
                b"t",
                &[Charge {
                    name: "x}",
                    spec: &g,
                    cost: 1
                }]
            )
            .await,
        Err(StoreError::Invalid(_))
    ));
    // A key of another kind, or a corrupted state, is an error, never a grant.
    let log = RedisSpec::sliding_log(&SlidingLog::<8>::new(3, Duration::from_secs(1)).unwrap());
    let e = store
        .check(
            b"a{b",
            &[Charge {
                name: "x",
                spec: &log,
                cost: 1,
            }],
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("another kind"), "{e}");
    let key = String::from_utf8(store.key(b"t", "x").unwrap()).unwrap();
    server.cli(&["SET", &key, "g|not-a-number|0"]).unwrap();
    let e = store.check(b"t", &one(1)).await.unwrap_err();
    assert!(e.to_string().contains("corrupt state"), "{e}");
    // The same through the whole-µs GCRA path, for values a plain number
    // parse would take.
    let whole = RedisSpec::Gcra(Gcra::new(3, 1, Duration::from_secs(1)).unwrap());
    let wkey = String::from_utf8(store.key(b"t", "w").unwrap()).unwrap();
    for raw in ["-5", "1.5", "abc", "99999999999999999", "nan", "inf"] {
        server.cli(&["SET", &wkey, raw]).unwrap();
        let m = [Charge {
            name: "w",
            spec: &whole,
            cost: 1,
        }];
        let e = store.check(b"t", &m).await.unwrap_err();
        assert!(e.to_string().contains("corrupt state"), "{raw}: {e}");
    }
    // A budget state with a negative amount in a hold is refused, never read
    // as a smaller number.
    let budget = ratebound_std::redis::RedisBudget::new(
        store.clone(),
        ratebound_core::budget::Budget::new(
            ratebound_core::budget::BudgetConfig::new().tokens_per_minute(100),
        )
        .unwrap(),
        4,
    );
    let bkey = String::from_utf8(store.key(b"t", "b").unwrap()).unwrap();
    for (field, raw) in [("h", "1,1,9999999999999,1,-5,0,0"), ("w", "0,1.5,0,0")] {
        server.cli(&["DEL", &bkey]).unwrap();
        server.cli(&["HSET", &bkey, field, raw]).unwrap();
        let e = budget
            .reserve(b"t", "b", ratebound_core::budget::Usage::request(1, 0))
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("corrupt state"),
            "{field}={raw}: {e}"
        );
    }
    // A prefix with braces would split a call's keys over cluster slots.
    let bad = RedisOptions {
        prefix: "rb{x}:".into(),
        ..RedisOptions::default()
    };
    assert!(matches!(
        RedisStore::connect(&server.url(), bad).await,
        Err(StoreError::Invalid(_))
    ));
    // A key of another Redis type is an error about this call, not an outage.
    server
        .cli(&[
            "RPUSH",
            &String::from_utf8(store.key(b"list", "x").unwrap()).unwrap(),
            "1",
        ])
        .unwrap();
    let e = store.check(b"list", &one(1)).await.unwrap_err();
    assert!(!e.is_unavailable(), "{e}");
    // Idle keys expire by themselves.
    let ttl: i64 = server
        .cli(&[
            "PTTL",
            &String::from_utf8(store.key(b"a}b", "x").unwrap()).unwrap(),
        ])
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        ttl > 60_000 && ttl <= 61_000,
        "full again in 1 s, plus the 60 s margin: {ttl}"
    );
}

// ---------------------------------------------------------------- budgets

use ratebound_core::budget::{Admission, Budget, BudgetConfig, Usage};
use ratebound_std::redis::{BudgetReply, RedisBudget};

fn to_json<T: serde::Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap()
}

fn budget_result<T, F: FnOnce(T) -> Value>(r: BudgetReply<T>, ok: F) -> (Value, Value) {
    let state = to_json(&r.state.to_state::<4>().expect("at most 4 holds"));
    let v = match r.value {
        Ok(v) => json!({ "ok": ok(v) }),
        Err(e) => json!({ "error": e.code() }),
    };
    (v, state)
}

async fn replay_budgets(store: &RedisStore, clock: &ManualClock, run: &str) -> usize {
    let file = fixtures("budget");
    let mut steps = 0;
    for (t, trace) in file["traces"].as_array().unwrap().iter().enumerate() {
        let cfg: BudgetConfig = serde_json::from_value(trace["config"].clone()).unwrap();
        let mut b = RedisBudget::new(store.clone(), Budget::new(cfg).unwrap(), 4);
        let tag = format!("{run} budget {{{t}}}");
        let tag = tag.as_bytes();
        for (i, s) in trace["steps"].as_array().unwrap().iter().enumerate() {
            clock.set(Instant::from_micros(u(s, "now")));
            let usage = || -> Usage { serde_json::from_value(s["usage"].clone()).unwrap() };
            let what = format!("budget/{} step {i} ({})", trace["name"], s["op"]);
            if s["op"] == "reconfigure" {
                // The script reads the new config's arguments; the state in
                // Redis is not touched until the next step.
                let cfg: BudgetConfig = serde_json::from_value(s["config"].clone()).unwrap();
                let got = match b.budget().reconfigure(cfg) {
                    Ok(new) => {
                        b = RedisBudget::new(store.clone(), new, 4);
                        json!({ "ok": "kept" })
                    }
                    Err(
                        ratebound_core::ConfigError::Invalid { field, .. }
                        | ratebound_core::ConfigError::Zero { field },
                    ) => json!({ "error": { "field": field } }),
                    Err(e) => panic!("{what}: {e}"),
                };
                assert_eq!(got, s["expect"], "{what}: result");
                steps += 1;
                continue;
            }
            let (got, state) = match s["op"].as_str().unwrap() {
                "reserve" => budget_result(b.reserve(tag, "b", usage()).await.unwrap(), |r| {
                    let admission = match r.admission {
                        Admission::Granted(h) => json!({ "granted": to_json(&h) }),
                        Admission::Denied(d) => json!({ "denied": to_json(&d) }),
                    };
                    json!({ "admission": admission, "alerts": to_json(&r.alerts) })
                }),
                "settle" => budget_result(
                    b.settle(tag, "b", u(s, "id"), usage()).await.unwrap(),
                    |r| to_json(&r),
                ),
                "release" => budget_result(b.release(tag, "b", u(s, "id")).await.unwrap(), |()| {
                    Value::Null
                }),
                "record" => {
                    budget_result(b.record(tag, "b", usage()).await.unwrap(), |a| to_json(&a))
                }
                "try_spend" => budget_result(b.try_spend(tag, "b", usage()).await.unwrap(), |r| {
                    to_json(&r)
                }),
                "status" => budget_result(b.status(tag, "b").await.unwrap(), |r| to_json(&r)),
                op => panic!("unknown op {op}"),
            };
            assert_eq!(got, s["expect"], "{what}: result");
            assert_eq!(state, s["state"], "{what}: state");
            steps += 1;
        }
    }
    steps
}

#[tokio::test]
async fn budget_fixtures_replay_exactly_through_redis() {
    let server = RedisServer::start();
    let clock = ManualClock::new(Instant::ZERO);
    let store = RedisStore::connect(&server.url(), caller_time(&clock))
        .await
        .unwrap();
    assert_eq!(replay_budgets(&store, &clock, "single").await, 328);
}

/// Eight connections reserve and settle against one budget at once: the
/// committed amount never passes the limit, and what was charged is exactly
/// what the settles said.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_connections_reserve_and_settle_one_budget() {
    use ratebound_core::budget::{Dimension, Horizon};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let server = RedisServer::start();
    let clock = ManualClock::new(Instant::from_secs(1_800_000_000));
    let cfg = BudgetConfig::new()
        .limit(Dimension::Tokens, Horizon::MINUTE, 10_000)
        .alert_threshold_bp(8_000);
    let budget = Budget::new(cfg).unwrap();
    let charged = Arc::new(AtomicU64::new(0));
    let (granted, denied) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let done = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..8u64 {
        let store = RedisStore::connect(&server.url(), caller_time(&clock))
            .await
            .unwrap();
        let b = RedisBudget::new(store, budget.clone(), 64);
        let (charged, granted, denied) = (charged.clone(), granted.clone(), denied.clone());
        workers.push(tokio::spawn(async move {
            for k in 0..150u64 {
                let est = 100 + (w * 37 + k * 53) % 400;
                let r = b
                    .reserve(
                        b"team",
                        "budget",
                        Usage {
                            requests: 1,
                            tokens: est,
                            cost: 0,
                        },
                    )
                    .await
                    .unwrap()
                    .value
                    .unwrap();
                match r.admission {
                    Admission::Granted(h) => {
                        granted.fetch_add(1, Ordering::SeqCst);
                        if k % 4 == 0 {
                            b.release(b"team", "budget", h.id)
                                .await
                                .unwrap()
                                .value
                                .unwrap();
                        } else {
                            let actual = est / 2 + k % 7;
                            b.settle(
                                b"team",
                                "budget",
                                h.id,
                                Usage {
                                    requests: 1,
                                    tokens: actual,
                                    cost: 0,
                                },
                            )
                            .await
                            .unwrap()
                            .value
                            .unwrap();
                            charged.fetch_add(actual, Ordering::SeqCst);
                        }
                    }
                    Admission::Denied(_) => {
                        denied.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }));
    }
    // A monitor on its own connection: used + reserved never exceeds the max.
    let monitor = {
        let store = RedisStore::connect(&server.url(), caller_time(&clock))
            .await
            .unwrap();
        let b = RedisBudget::new(store, budget.clone(), 64);
        let done = done.clone();
        tokio::spawn(async move {
            let mut polls = 0;
            while !done.load(Ordering::SeqCst) {
                let s = b.status(b"team", "budget").await.unwrap().value.unwrap();
                let l = &s.limits[0];
                assert!(l.used + l.reserved <= 10_000, "over the limit: {l:?}");
                polls += 1;
            }
            polls
        })
    };
    for w in workers {
        w.await.unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let polls = monitor.await.unwrap();
    let store = RedisStore::connect(&server.url(), caller_time(&clock))
        .await
        .unwrap();
    let s = RedisBudget::new(store, budget, 64)
        .status(b"team", "budget")
        .await
        .unwrap()
        .value
        .unwrap();
    assert_eq!(
        s.limits[0].used,
        charged.load(Ordering::SeqCst),
        "charged exactly what was settled"
    );
    assert_eq!(s.limits[0].reserved, 0);
    assert_eq!(s.holds, 0);
    assert!(s.limits[0].used <= 10_000);
    assert!(
        granted.load(Ordering::SeqCst) > 20 && denied.load(Ordering::SeqCst) > 100,
        "both paths"
    );
    assert!(polls > 10, "{polls} polls");
}

#[tokio::test]
async fn a_cluster_replays_the_budget_fixtures() {
    let cluster = RedisCluster::start();
    let clock = ManualClock::new(Instant::ZERO);
    let urls = cluster.urls();
    let nodes: Vec<&str> = urls.iter().map(String::as_str).collect();
    let store = RedisStore::connect_cluster(&nodes, caller_time(&clock))
        .await
        .unwrap();
    assert_eq!(replay_budgets(&store, &clock, "cluster").await, 328);
}

/// A sliding log of one slot (the merge has no pair there): Redis and core
/// agree step by step, and the limit holds.
#[tokio::test]
async fn a_one_slot_log_matches_core() {
    use ratebound_core::SlidingLogState;
    let server = RedisServer::start();
    let clock = ManualClock::new(Instant::ZERO);
    let store = RedisStore::connect(&server.url(), caller_time(&clock))
        .await
        .unwrap();
    let log = SlidingLog::<1>::new(4, Duration::from_micros(1_000)).unwrap();
    let spec = RedisSpec::sliding_log(&log);
    let mut st = SlidingLogState::<1>::default();
    let mut t = 1_800_000_000_000_000u64;
    let (mut allowed, mut denied) = (0, 0);
    for step in 0..300u64 {
        t += (step * 7_919) % 300;
        clock.set(Instant::from_micros(t));
        let cost = step % 3;
        let m = [Charge {
            name: "one",
            spec: &spec,
            cost,
        }];
        let r = store.check(b"one slot", &m).await.unwrap();
        let d = log.check(&mut st, Instant::from_micros(t), cost).unwrap();
        assert_eq!(r.members[0].decision, d, "step {step}");
        let core_state = serde_json::to_value(&st).unwrap();
        assert_eq!(
            state_json("sliding_log", &r.members[0].state),
            core_state,
            "step {step}"
        );
        if d.allowed {
            allowed += 1
        } else {
            denied += 1
        }
    }
    assert!(
        allowed > 50 && denied > 50,
        "{allowed} allowed, {denied} denied"
    );
}

// ---------------------------------------------------------------- expiry

/// Every key kind expires once its limiter is idle: a sliding log, a
/// sliding counter, both members of a set and a model quota's state each
/// carry a TTL of their time to idle plus `ttl_margin` (no less, as the key
/// must outlive its counts; no more, so a flood of one-off keys does not fill
/// Redis), and are gone once it has passed.
#[tokio::test]
async fn every_key_kind_expires_once_idle() {
    use ratebound_core::model_quota::{ModelQuota, Window};
    use ratebound_std::redis::RedisModelQuotas;
    use std::time::Instant;
    let server = RedisServer::start();
    let margin = std::time::Duration::from_secs(1);
    let opts = RedisOptions {
        ttl_margin: margin,
        ..RedisOptions::default()
    };
    let store = RedisStore::connect(&server.url(), opts).await.unwrap();
    // PTTL is read a little after the script set it: this much may have passed.
    let pttl_of = |key: &str, since: Instant| -> (u64, u64) {
        let pttl: i64 = server.cli(&["PTTL", key]).unwrap().parse().unwrap();
        assert!(
            pttl > 0,
            "{key}: PTTL {pttl} (-2: gone already; -1: no TTL)"
        );
        (pttl as u64, since.elapsed().as_millis() as u64 + 1)
    };
    let window = Duration::from_secs(2);
    let log = RedisSpec::sliding_log(&SlidingLog::<8>::new(5, window).unwrap());
    let counter = RedisSpec::SlidingCounter(SlidingCounter::new(5, window).unwrap());
    let gcra = RedisSpec::Gcra(Gcra::new(4, 1, Duration::from_millis(500)).unwrap());
    let one = |name, spec| Charge {
        name,
        spec,
        cost: 1,
    };
    let calls: [(&[u8], Vec<Charge<'_>>); 3] = [
        (b"log", vec![one("x", &log)]),
        (b"counter", vec![one("x", &counter)]),
        (b"set", vec![one("a", &gcra), one("b", &log)]),
    ];
    let mut keys = Vec::new();
    // When the last key's TTL runs out (a sliding counter idles only once
    // its previous window has slid past too: up to two windows), by the
    // clock of this process.
    let mut gone_by = Instant::now();
    for (tag, members) in &calls {
        let called = Instant::now();
        let d = store.check(tag, members).await.unwrap();
        for (m, out) in members.iter().zip(&d.members) {
            let key = String::from_utf8(store.key(tag, m.name).unwrap()).unwrap();
            let (pttl, elapsed) = pttl_of(&key, called);
            let idle_in = out.decision.reset_at.saturating_duration_since(d.now);
            let ttl = idle_in.as_millis_ceil() + margin.as_millis() as u64;
            assert!(
                pttl <= ttl && pttl + elapsed >= ttl,
                "{key}: PTTL {pttl} ms read {elapsed} ms after the call; idle in {idle_in:?}, plus the margin"
            );
            // Read after the PTTL was: the key is gone by then plus it.
            gone_by = gone_by.max(Instant::now() + std::time::Duration::from_millis(pttl));
            keys.push(key);
        }
    }
    let hold = Duration::from_millis(1_500);
    let quota = ModelQuota::new(Some(3), 2, window, Window::Sliding, hold).unwrap();
    let called = Instant::now();
    RedisModelQuotas::new(store.clone())
        .admit(b"model", &quota)
        .await
        .unwrap();
    let key = String::from_utf8(store.key(b"model", "m").unwrap()).unwrap();
    let (pttl, elapsed) = pttl_of(&key, called);
    assert!(
        pttl <= 2_000 + 1_000 && pttl + elapsed >= 2_000 + 1_000,
        "{key}: PTTL {pttl} ms read {elapsed} ms after the call; the window (longer than the hold) plus the margin"
    );
    keys.push(key);
    gone_by = gone_by.max(Instant::now() + std::time::Duration::from_millis(pttl));
    tokio::time::sleep_until((gone_by + std::time::Duration::from_millis(50)).into()).await;
    for key in keys {
        assert_eq!(
            server.cli(&["EXISTS", &key]).unwrap(),
            "0",
            "{key} outlived its idle time"
        );
    }
}

/// README: "Time is Redis `TIME` by default, so replicas with skewed
/// clocks agree." Two replicas whose clocks are an hour apart (and weeks
/// from the wall clock) share one limit of 2 a minute: two admitted in all,
/// and every decision is made at Redis's time.
#[tokio::test]
async fn by_default_replicas_with_skewed_clocks_decide_at_redis_time() {
    use ratebound_std::fallback::{FailoverOptions, OnUnavailable};
    use ratebound_std::keyed::{KeyedConfig, RedisKeyedLimiter};
    use ratebound_std::redis::TimeSource;
    assert!(matches!(RedisOptions::default().time, TimeSource::Redis));
    let server = RedisServer::start();
    let mut replicas = Vec::new();
    for skew_hours in [0, 1] {
        let store = RedisStore::connect(&server.url(), RedisOptions::default())
            .await
            .unwrap();
        let clock = ManualClock::new(Instant::from_secs(1_900_000_000 + skew_hours * 3_600));
        let limit = AnyLimiter::Gcra(Gcra::per_minute(2).unwrap());
        let failover = FailoverOptions::new(OnUnavailable::Closed);
        replicas.push(
            RedisKeyedLimiter::new(store, "api", limit, failover, KeyedConfig::default(), clock)
                .unwrap(),
        );
    }
    let wall = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as u64
    };
    let mut allowed = Vec::new();
    for r in [0, 1, 0, 1] {
        let before = wall();
        let d = replicas[r].check(b"k", 1).await.unwrap();
        let after = wall();
        let now = d.now.as_micros();
        assert!(
            before.saturating_sub(1_000_000) <= now && now <= after + 1_000_000,
            "replica {r} decided at {now} µs, the wall clock said {before}..{after}"
        );
        allowed.push(d.decision.allowed);
    }
    assert_eq!(
        allowed,
        [true, true, false, false],
        "one limit of 2 for both"
    );
}
