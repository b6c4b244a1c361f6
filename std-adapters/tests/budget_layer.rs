//! The budget layer over real HTTP on loopback: an axum server with the
//! layer in front of a fake LLM upstream that reports usage, driven by
//! reqwest; in memory and through a real redis-server shared by three layer
//! instances.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration as StdDuration;

use axum::http::StatusCode;
use ratebound_core::budget::llm::{Ending, Estimate};
use ratebound_core::budget::{Dimension, Horizon};
use ratebound_core::Instant;
use ratebound_std::budget::Scope;
use ratebound_std::http::budget_layer::BudgetLayer;
use serde_json::{json, Value};
use support::llm_gateway::*;

#[test]
fn the_estimate_of_the_test_request_is_117_tokens() {
    let r = ratebound_std::http::llm_request::LlmRequest::parse(
        request(1, 100, json!({})).to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(
        r.estimate(0),
        Estimate {
            input: 17,
            max_output: 100
        }
    );
}

/// 50 concurrent requests against a budget that fits 10 of their estimates
/// (117 tokens each; 1 220 per minute): exactly 10 are admitted, and once
/// settled the budget has charged exactly what the upstream reported.
async fn fifty_concurrent(gateways: &[Gateway], up: &Upstream) {
    let client = reqwest::Client::new();
    let sends = (0..50).map(|i| {
        let g = &gateways[i % gateways.len()];
        client
            .post(format!("{}/v1/chat/completions", g.base))
            .bearer_auth("alice")
            .json(&request(i, 100, json!({"hold": 50})))
            .send()
    });
    let answers = join_all(sends).await;
    let mut ok = 0;
    for a in answers {
        let r = a.unwrap();
        match r.status() {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert!(r.headers().contains_key("retry-after"));
                assert_eq!(r.headers()["x-ratelimit-limit-tokens"], "1220");
                let remaining: u64 = r.headers()["x-ratelimit-remaining-tokens"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(
                    remaining < 117,
                    "{remaining} tokens remain but the request was refused"
                );
                assert!(r.headers().contains_key("x-ratelimit-reset-tokens"));
                assert!(r.headers()["ratelimit-policy"]
                    .to_str()
                    .unwrap()
                    .starts_with("\"user-tokens\";q=1220;w=60"));
            }
            s => panic!("unexpected {s}"),
        }
    }
    assert_eq!(ok, 10);
    assert_eq!(up.arrived.load(Ordering::SeqCst), 10);
    let settled: usize = gateways
        .iter()
        .map(|g| g.settled.lock().unwrap().len())
        .sum();
    let deadline = std::time::Instant::now() + StdDuration::from_secs(10);
    let mut n = settled;
    while n < 10 && std::time::Instant::now() < deadline {
        tokio::time::sleep(StdDuration::from_millis(10)).await;
        n = gateways
            .iter()
            .map(|g| g.settled.lock().unwrap().len())
            .sum();
    }
    assert_eq!(n, 10);
    let tokens = used(
        &gateways[0],
        Scope::User,
        "alice",
        Dimension::Tokens,
        Horizon::MINUTE,
    )
    .await;
    assert_eq!(tokens, up.reported_tokens.load(Ordering::SeqCst));
    assert!(tokens > 0);
    let cost = used(
        &gateways[0],
        Scope::User,
        "alice",
        Dimension::Cost,
        Horizon::DAY,
    )
    .await;
    assert_eq!(cost, up.reported_cost.load(Ordering::SeqCst));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_requests_admit_exactly_what_fits_in_memory() {
    let up = Upstream::default();
    let budgets = in_memory(FIFTY, at(1_795_392_000));
    let g = serve(budgets, up.clone(), 4_096).await;
    fifty_concurrent(&[g], &up).await;
}

/// Three layer instances, each with its own connection to `nodes` (one
/// server, or every master of a cluster), sharing the budgets.
#[cfg(feature = "redis")]
async fn three_layers_sharing(nodes: &[String], up: &Upstream) -> Vec<Gateway> {
    use ratebound_std::budget::{ScopedBackend, ScopedBudgets};
    use ratebound_std::fallback::{FailoverOptions, OnUnavailable};
    use ratebound_std::redis::{RedisOptions, RedisStore, TimeSource};
    use std::sync::Arc;
    let clock = at(1_795_392_000);
    let mut gateways = Vec::new();
    for _ in 0..3 {
        let opts = RedisOptions {
            time: TimeSource::Caller(Arc::new(clock.clone())),
            ..RedisOptions::default()
        };
        let store = match nodes {
            [one] => RedisStore::connect(one, opts).await.unwrap(),
            many => {
                let urls: Vec<&str> = many.iter().map(String::as_str).collect();
                RedisStore::connect_cluster(&urls, opts).await.unwrap()
            }
        };
        let backend = ScopedBackend::Redis {
            store,
            prefix: "llm:".into(),
            hold_slots: 64,
            failover: FailoverOptions::new(OnUnavailable::Closed),
        };
        let budgets = Arc::new(ScopedBudgets::new(config(FIFTY), backend, clock.clone()).unwrap());
        gateways.push(serve(budgets, up.clone(), 4_096).await);
    }
    gateways
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_requests_through_three_layers_sharing_redis() {
    let server = support::redis_server::RedisServer::start();
    let up = Upstream::default();
    let gateways = three_layers_sharing(&[server.url()], &up).await;
    fifty_concurrent(&gateways, &up).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_requests_through_three_layers_sharing_a_redis_cluster() {
    let cluster = support::redis_server::RedisCluster::start();
    let up = Upstream::default();
    let gateways = three_layers_sharing(&cluster.urls(), &up).await;
    fifty_concurrent(&gateways, &up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_400_or_429_and_charge_nothing() {
    let up = Upstream::default();
    let cfg = r#"
        per_user = { tokens_per_minute = 1_000, max_tokens_per_request = 500 }
        per_model."gpt-4o-mini" = { cost_per_day = 1_000 }
    "#;
    let budgets = in_memory(cfg, at(1_795_392_000));
    let g = serve(budgets, up.clone(), 4_096).await;
    let client = reqwest::Client::new();
    let post = |body: String| {
        client
            .post(format!("{}/v1/chat/completions", g.base))
            .bearer_auth("alice")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    // Over the per-request cap: can never fit.
    let r = post(request(1, 600, json!({})).to_string()).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "request_too_large"
    );
    // No max_tokens: the default 4 096 is reserved, over the cap too.
    let r = post(json!({"model": "gpt-4o", "messages": []}).to_string())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Two "model" keys.
    let r = post(r#"{"model":"gpt-4o","model":"o1","max_tokens":1}"#.into())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let e = r.json::<Value>().await.unwrap();
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"model\" appears more than once"),
        "{e}"
    );
    // A model whose budget counts money, without a price.
    let r = post(json!({"model": "gpt-4o-mini", "max_tokens": 1}).to_string())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "model_not_priced"
    );
    assert_eq!(up.arrived.load(Ordering::SeqCst), 0);
    assert_eq!(
        g.budgets
            .status(Scope::User, "alice")
            .await
            .map_or(0, |s| s.used(Dimension::Tokens, Horizon::MINUTE).unwrap()),
        0
    );
    // An upstream error: the request, no tokens.
    let r = post(request(2, 400, json!({"note": "fail"})).to_string())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    wait_settled(&g, 1).await;
    assert_eq!(g.settled.lock().unwrap()[0].ending, Ending::Failed);
    assert_eq!(
        used(&g, Scope::User, "alice", Dimension::Tokens, Horizon::MINUTE).await,
        0
    );
}

/// Money per calendar month at UTC+2: a call just before local midnight of
/// 1 February counts in January, one just after in February, each exactly
/// its price.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cost_per_month_follows_local_months_to_the_micro_unit() {
    let feb1_utc = 1_801_440_000; // 2027-02-01 00:00:00 UTC
    assert_eq!(feb1_utc % 86_400, 0);
    let before = feb1_utc - 2 * 3_600 - 60; // 23:59 local on 31 January
    let clock = at(before);
    let cfg = r#"per_user = { cost_per_month = 50_000_000, utc_offset_minutes = 120 }"#;
    let up = Upstream::default();
    let budgets = in_memory(cfg, clock.clone());
    let g = serve(budgets, up.clone(), 4_096).await;
    let client = reqwest::Client::new();
    let send = |n: usize| {
        client
            .post(format!("{}/v1/chat/completions", g.base))
            .bearer_auth("alice")
            .json(&request(n, 100, json!({})))
            .send()
    };
    assert_eq!(send(1).await.unwrap().status(), StatusCode::OK);
    wait_settled(&g, 1).await;
    let jan = PRICE.cost(12, 6);
    assert_eq!(
        used(
            &g,
            Scope::User,
            "alice",
            Dimension::Cost,
            Horizon::CalendarMonth
        )
        .await,
        jan
    );
    let s = g.budgets.status(Scope::User, "alice").await.unwrap();
    assert_eq!(
        s.limits[0].window_end,
        Instant::from_secs(feb1_utc - 2 * 3_600)
    );
    clock.set(Instant::from_secs(before + 120)); // 00:01 local, 1 February
    assert_eq!(send(2).await.unwrap().status(), StatusCode::OK);
    wait_settled(&g, 2).await;
    assert_eq!(
        used(
            &g,
            Scope::User,
            "alice",
            Dimension::Cost,
            Horizon::CalendarMonth
        )
        .await,
        PRICE.cost(12, 7)
    );
    assert_eq!(
        jan + PRICE.cost(12, 7),
        up.reported_cost.load(Ordering::SeqCst)
    );
}

/// Key, user, group and model budgets all apply; the tightest binds, the
/// 429 names it, and a refusal holds nothing in the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scope_applies_and_the_tightest_binds() {
    let cfg = r#"
        per_key = { requests_per_minute = 3 }
        per_user = { tokens_per_minute = 10_000 }
        per_group.team = { tokens_per_minute = 300 }
        per_model."gpt-4o" = { tokens_per_minute = 100_000 }
    "#;
    let up = Upstream::default();
    let budgets = in_memory(cfg, at(1_795_392_000));
    let g = serve(budgets, up.clone(), 4_096).await;
    let client = reqwest::Client::new();
    let send = |key: &'static str, group: Option<&'static str>| {
        let mut r = client
            .post(format!("{}/v1/chat/completions", g.base))
            .bearer_auth("alice")
            .header("x-key", key)
            .json(&request(0, 100, json!({})));
        if let Some(gr) = group {
            r = r.header("x-group", gr);
        }
        r.send()
    };
    // The team (300 tokens a minute) holds two estimates of 117 at a time.
    for _ in 0..2 {
        assert_eq!(
            send("k1", Some("team")).await.unwrap().status(),
            StatusCode::OK
        );
    }
    wait_settled(&g, 2).await;
    // Settled at 17 tokens each: 266 left, two more fit the team.
    assert_eq!(
        used(&g, Scope::Group, "team", Dimension::Tokens, Horizon::MINUTE).await,
        34
    );
    assert_eq!(
        send("k2", Some("team")).await.unwrap().status(),
        StatusCode::OK
    );
    // Key k1 has made 2 of its 3 requests; the third is its last.
    assert_eq!(send("k1", None).await.unwrap().status(), StatusCode::OK);
    let r = send("k1", None).await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["x-ratelimit-limit-requests"], "3");
    assert_eq!(r.headers()["x-ratelimit-remaining-requests"], "0");
    assert!(r.headers()["ratelimit-policy"]
        .to_str()
        .unwrap()
        .starts_with("\"key-requests\";q=3;w=60"));
    wait_settled(&g, 4).await;
    // Every admitted call was charged to the user and the model; the
    // refused one to nobody.
    assert_eq!(
        used(&g, Scope::User, "alice", Dimension::Tokens, Horizon::MINUTE).await,
        4 * 17
    );
    assert_eq!(
        used(
            &g,
            Scope::Model,
            "gpt-4o",
            Dimension::Tokens,
            Horizon::MINUTE
        )
        .await,
        4 * 17
    );
    assert_eq!(
        used(&g, Scope::Key, "k1", Dimension::Requests, Horizon::MINUTE).await,
        3
    );
    assert_eq!(
        g.budgets.status(Scope::User, "alice").await.unwrap().holds,
        0
    );
}

/// A tokenizer plugged in: its count replaces the heuristic's prompt estimate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_counter_replaces_the_heuristic() {
    let up = Upstream::default();
    let budgets = in_memory(FIFTY, at(1_795_392_000));
    let layer = BudgetLayer::new(
        budgets.clone(),
        BTreeMap::from([("gpt-4o".to_owned(), PRICE)]),
    )
    .count_prompt(|r| (r.body().get("tokenize") == Some(&Value::Bool(true))).then_some(50));
    let g = serve_with(budgets, up, layer).await;
    for (n, extra, input) in [
        (0, json!({"tokenize": true}), 50),
        (1, json!({"tokenize": false}), 17),
    ] {
        let r = post_as(&g, "alice", request(1, 100, extra)).await;
        assert_eq!(r.status(), StatusCode::OK);
        r.bytes().await.unwrap();
        wait_settled(&g, n + 1).await;
        assert_eq!(g.settled.lock().unwrap()[n].reserved.tokens, input + 100);
    }
}

/// Usage above the reservation is charged in full: the budget counts what
/// the model used, not what was held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_above_the_reservation_is_charged_in_full() {
    let up = Upstream::default();
    let g = serve(in_memory(FIFTY, at(1_795_392_000)), up.clone(), 4_096).await;
    // max_tokens 1: 17 + 1 held; the upstream reports 12 + 11 (n = 6).
    let r = post_as(&g, "alice", request(6, 1, json!({}))).await;
    assert_eq!(r.status(), StatusCode::OK);
    r.bytes().await.unwrap();
    wait_settled(&g, 1).await;
    let e = g.settled.lock().unwrap()[0].clone();
    assert_eq!((e.reserved.tokens, e.charged.tokens), (18, 23));
    assert_eq!(
        used(&g, Scope::User, "alice", Dimension::Tokens, Horizon::MINUTE).await,
        23
    );
}

/// A limit layer inside the budget layer that refuses (429, marked
/// `LimitRefusal`) releases the request's holds: nothing is charged for it,
/// neither the request nor its estimate; only the admitted call counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_from_a_limit_layer_inside_charges_nothing() {
    use axum::middleware;
    use axum::routing::post;
    use axum::Router;
    use ratebound_core::Gcra;
    use ratebound_std::clock::SystemClock;
    use ratebound_std::http::rate_limit::{RateLimitLayer, RouteKey};
    use ratebound_std::keyed::{AnyKeyedLimiter, KeyedConfig};
    use ratebound_std::limiter::{AnyLimiter, LimitSet};
    use std::sync::{Arc, Mutex};

    let up = Upstream::default();
    let cfg = "per_user = { requests_per_minute = 10, tokens_per_minute = 10_000 }";
    let budgets = in_memory(cfg, at(1_795_392_000));
    let settled = Arc::new(Mutex::new(Vec::new()));
    let s = settled.clone();
    let prices = BTreeMap::from([("gpt-4o".to_owned(), PRICE)]);
    let budget = BudgetLayer::new(budgets.clone(), prices)
        .on_settle(move |e| s.lock().unwrap().push(e.clone()));
    let once = LimitSet::one("per_minute", AnyLimiter::Gcra(Gcra::per_minute(1).unwrap())).unwrap();
    let limits = AnyKeyedLimiter::memory(once, KeyedConfig::default(), SystemClock).unwrap();
    let app = Router::new()
        .route("/v1/chat/completions", post(upstream))
        .route_layer(RateLimitLayer::new(limits, RouteKey))
        .route_layer(budget)
        .route_layer(middleware::from_fn(auth))
        .with_state(up.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let g = Gateway {
        base: format!("http://{addr}"),
        settled,
        budgets,
    };
    let mut statuses = Vec::new();
    for i in 0..3 {
        let r = post_as(&g, "alice", request(i, 100, json!({}))).await;
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [200, 429, 429]);
    assert_eq!(up.arrived.load(Ordering::SeqCst), 1);
    wait_settled(&g, 1).await;
    tokio::time::sleep(StdDuration::from_millis(200)).await; // any late charge would land here
    assert_eq!(
        used(
            &g,
            Scope::User,
            "alice",
            Dimension::Requests,
            Horizon::MINUTE
        )
        .await,
        1
    );
    let tokens = used(&g, Scope::User, "alice", Dimension::Tokens, Horizon::MINUTE).await;
    assert_eq!(
        tokens,
        up.reported_tokens.load(Ordering::SeqCst),
        "only the admitted call's usage"
    );
    let s = g.budgets.status(Scope::User, "alice").await.unwrap();
    assert_eq!(s.holds, 0, "the refused calls' holds were released");
}

/// 1,000 tokens a minute per user in Redis (calls time out after 250 ms),
/// with `failover` deciding while it is away.
#[cfg(feature = "redis")]
async fn redis_budgets(
    server: &support::redis_server::RedisServer,
    failover: ratebound_std::fallback::FailoverOptions,
) -> std::sync::Arc<ratebound_std::budget::ScopedBudgets<ratebound_std::clock::ManualClock>> {
    use ratebound_std::budget::{ScopedBackend, ScopedBudgets};
    use ratebound_std::redis::{RedisOptions, RedisStore};
    let opts = RedisOptions {
        timeout: StdDuration::from_millis(250),
        ..RedisOptions::default()
    };
    let backend = ScopedBackend::Redis {
        store: RedisStore::connect(&server.url(), opts).await.unwrap(),
        prefix: "llm:".into(),
        hold_slots: 64,
        failover,
    };
    let cfg = "per_user = { tokens_per_minute = 1_000 }";
    let clock = at(1_795_392_000);
    std::sync::Arc::new(ScopedBudgets::new(config(cfg), backend, clock).unwrap())
}

/// A gateway over Redis budgets (1,000 tokens a minute per user) failing
/// over `local` with 3 replicas, Redis killed: it decides alone on its
/// share, 333. The server is returned to live as long as the test.
#[cfg(feature = "redis")]
async fn deciding_alone_on_a_share() -> (support::redis_server::RedisServer, Upstream, Gateway) {
    use ratebound_std::fallback::{FailoverOptions, OnUnavailable};
    let server = support::redis_server::RedisServer::start();
    let up = Upstream::default();
    let failover = FailoverOptions::new(OnUnavailable::Local).with_replicas(3);
    let g = serve(redis_budgets(&server, failover).await, up.clone(), 4_096).await;
    server.kill();
    (server, up, g)
}

/// Redis killed under `local` with 3 replicas: this layer decides alone on a
/// third of 1,000 tokens a minute. A request within the budget but above
/// the share (417 tokens of 333) is a 429 that says the store is away, with
/// no budget headers (the usage is in Redis) and a Retry-After; one within
/// the share is served; one above the whole budget is a 400 as ever.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn above_a_replicas_share_while_redis_is_away_is_a_429_that_says_so() {
    let (_server, up, g) = deciding_alone_on_a_share().await;
    let post = |max_tokens: u64| post_as(&g, "alice", request(1, max_tokens, json!({})));
    let r = post(400).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    assert!(!r.headers().contains_key("x-ratelimit-limit-tokens"));
    let e = r.json::<Value>().await.unwrap();
    let message = e["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("The budget store is unavailable"),
        "{e}"
    );
    assert!(message.contains("may grant alone: 333 per minute"), "{e}");
    assert_eq!(up.arrived.load(Ordering::SeqCst), 0);
    assert_eq!(post(100).await.status(), StatusCode::OK);
    assert_eq!(post(2_000).await.status(), StatusCode::BAD_REQUEST);
}

/// Redis killed under `local` with 3 replicas: once this replica's share
/// (333 of 1,000 tokens a minute) is spent, the 429's fields and text name
/// the share that refused, with what is left of it, not the whole budget
/// a client cannot draw on from here.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicas_share_spent_while_redis_is_away_is_a_429_naming_the_share() {
    let (_server, up, g) = deciding_alone_on_a_share().await;
    let mut refused = None;
    for _ in 0..40 {
        let r = post_as(&g, "alice", request(1, 100, json!({}))).await;
        if r.status() != StatusCode::OK {
            refused = Some(r);
            break;
        }
    }
    // Each holds 117 tokens until it settles at the 18 the upstream reports
    // (after its answer: a hold may still be live when the next reserves).
    let r = refused.expect("the share of 333 tokens is spent within 40 requests of 18");
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let charged = up.reported_tokens.load(Ordering::SeqCst);
    assert!((18..=333).contains(&charged), "{charged} tokens served");
    let h = r.headers().clone();
    assert_eq!(h["x-ratelimit-limit-tokens"], "333");
    // What is left of the share, read after the refusal: a hold live then
    // may have settled since, but never more than the share less what was
    // charged.
    let remaining: u64 = h["x-ratelimit-remaining-tokens"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        remaining + charged <= 333,
        "{remaining} of the share left after {charged}"
    );
    let policy = h["ratelimit-policy"].to_str().unwrap();
    assert_eq!(policy, "\"user-tokens\";q=333;w=60");
    let e = r.json::<Value>().await.unwrap();
    let message = e["error"]["message"].as_str().unwrap();
    assert!(message.contains(": 333 per minute"), "{e}");
}

/// Redis killed under `closed`: 503 `budget_store_unavailable` with a
/// fixed message (the connection error, which names the store's address,
/// stays in the log), and the upstream is not called.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_store_away_under_closed_is_a_503_without_the_stores_words() {
    use ratebound_std::fallback::{FailoverOptions, OnUnavailable};
    let server = support::redis_server::RedisServer::start();
    let up = Upstream::default();
    let failover = FailoverOptions::new(OnUnavailable::Closed)
        .with_retry_after(StdDuration::from_millis(2_500));
    let g = serve(redis_budgets(&server, failover).await, up.clone(), 4_096).await;
    server.kill();
    let r = post_as(&g, "alice", request(1, 100, json!({}))).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    // When to try again: the fail-over's skip window, 2.5 s rounded up.
    assert_eq!(r.headers()["retry-after"], "3");
    let e = r.json::<Value>().await.unwrap();
    assert_eq!(e["error"]["code"], "budget_store_unavailable", "{e}");
    assert_eq!(
        e["error"]["message"], "The budget store is unavailable. Please try again later.",
        "{e}"
    );
    assert_eq!(up.arrived.load(Ordering::SeqCst), 0);
}

/// The table of budgets full (`max_budgets = 1`, alice's budget in use):
/// bob's request is 503 `budget_store_full` with `Retry-After: 1` (as the
/// rate-limit and model-limit layers' full stores answer), and is not sent
/// upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_table_of_budgets_is_503_with_retry_after() {
    let up = Upstream::default();
    let budgets = in_memory(
        "max_budgets = 1\nper_user = { tokens_per_minute = 1_000 }",
        at(1_795_392_000),
    );
    let g = serve(budgets, up.clone(), 4_096).await;
    let body = request(1, 100, json!({}));
    assert_eq!(
        post_as(&g, "alice", body.clone()).await.status(),
        StatusCode::OK
    );
    let r = post_as(&g, "bob", body).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()["retry-after"], "1");
    let e = r.json::<Value>().await.unwrap();
    assert_eq!(e["error"]["code"], "budget_store_full", "{e}");
    assert_eq!(up.arrived.load(Ordering::SeqCst), 1);
}

/// `BudgetLayer::new`'s stated defaults, through the layer as built: an
/// output cap of 4 096 tokens for a request that sets none (a budget of
/// the prompt plus 4 096 admits it, one token less can never fit it), and
/// bodies up to 1 MiB (exactly 1 MiB is read, one byte more is 413).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layers_defaults_are_4096_output_tokens_and_1_mib_bodies() {
    use ratebound_std::http::llm_request::LlmRequest;
    let no_cap = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}]});
    let prompt = LlmRequest::parse(no_cap.to_string().as_bytes())
        .unwrap()
        .estimate(0)
        .input;
    let client = reqwest::Client::new();
    for (budget, want) in [
        (prompt + 4_096, StatusCode::OK),
        (prompt + 4_095, StatusCode::BAD_REQUEST),
    ] {
        let up = Upstream::default();
        let budgets = in_memory(
            &format!("per_user = {{ tokens_per_minute = {budget} }}"),
            at(1_795_392_000),
        );
        let prices = BTreeMap::from([("gpt-4o".to_owned(), PRICE)]);
        let g = serve_with(budgets.clone(), up, BudgetLayer::new(budgets, prices)).await;
        let r = client
            .post(format!("{}/v1/chat/completions", g.base))
            .bearer_auth("alice")
            .json(&no_cap)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), want, "a budget of {budget} tokens");
    }

    let up = Upstream::default();
    let budgets = in_memory(
        "per_user = { tokens_per_minute = 1_000_000 }",
        at(1_795_392_000),
    );
    let prices = BTreeMap::from([("gpt-4o".to_owned(), PRICE)]);
    let g = serve_with(budgets.clone(), up, BudgetLayer::new(budgets, prices)).await;
    // A valid request of exactly `len` bytes: its content pads it.
    let body_of = |len: usize| {
        let frame = json!({"model": "gpt-4o", "max_tokens": 1,
            "messages": [{"role": "user", "content": ""}]})
        .to_string();
        let body = frame.replace(
            "\"content\":\"\"",
            &format!("\"content\":\"{}\"", "a".repeat(len - frame.len())),
        );
        assert_eq!(body.len(), len);
        body
    };
    for (len, want) in [
        (1 << 20, StatusCode::OK),
        ((1 << 20) + 1, StatusCode::PAYLOAD_TOO_LARGE),
    ] {
        let r = client
            .post(format!("{}/v1/chat/completions", g.base))
            .bearer_auth("alice")
            .header("content-type", "application/json")
            .body(body_of(len))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), want, "a body of {len} bytes");
    }
}
