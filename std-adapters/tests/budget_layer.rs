//! The budget layer over real HTTP on loopback: an axum server with the
//! layer in front of a fake LLM upstream that reports usage (JSON or SSE),
//! driven by reqwest; in memory and through a real redis-server shared by
//! three layer instances.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use ratebound_core::budget::llm::{Ending, Estimate, Price, Tokens};
use ratebound_core::budget::{Dimension, Horizon};
use ratebound_core::Instant;
use ratebound_std::budget::{Scope, ScopedBackend, ScopedBudgetConfig, ScopedBudgets};
use ratebound_std::clock::ManualClock;
use ratebound_std::http::budget_layer::{BudgetLayer, KeyId, SettleEvent};
use ratebound_std::model_limit::Identity;
use serde_json::{json, Value};

const PRICE: Price = Price {
    input_per_million: 2_500_000,
    output_per_million: 10_000_000,
};

/// The fake upstream's books: what it reported, and requests it saw.
#[derive(Clone, Default)]
struct Upstream {
    arrived: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
    reported_tokens: Arc<AtomicU64>,
    reported_cost: Arc<AtomicU64>,
    bodies: Arc<Mutex<Vec<Value>>>,
    /// A stream with "gate" in its prompt waits here before its last events.
    gate: Arc<tokio::sync::Notify>,
}

/// Usage the upstream reports for a request: 12 prompt tokens and 5 + n
/// output, `n` from the prompt's `#n` marker.
fn usage_for(body: &Value) -> Tokens {
    let text = body.to_string();
    let n = text
        .split('#')
        .nth(1)
        .and_then(|t| {
            t.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(0);
    Tokens {
        input: 12,
        output: 5 + n % 7,
    }
}

const SSE_HEAD: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo!\"}}]}\n\n";

async fn upstream(State(u): State<Upstream>, body: Bytes) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap();
    u.bodies.lock().unwrap().push(v.clone());
    let arrived = u.arrived.fetch_add(1, Ordering::SeqCst) + 1;
    let text = v.to_string();
    // Hold admitted requests until `hold` of them arrived: every admitted
    // hold is then live at once (none settled before the last was reserved).
    if let Some(hold) = v.get("hold").and_then(Value::as_u64) {
        let deadline = tokio::time::Instant::now() + StdDuration::from_secs(5);
        while (u.arrived.load(Ordering::SeqCst) as u64) < hold
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(StdDuration::from_millis(5)).await;
        }
    }
    let _ = arrived;
    let t = usage_for(&v);
    if text.contains("fail") {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"error":{"message":"boom"}}"#,
        )
            .into_response();
    }
    u.reported_tokens
        .fetch_add(t.input + t.output, Ordering::SeqCst);
    u.reported_cost
        .fetch_add(PRICE.cost(t.input, t.output), Ordering::SeqCst);
    if v.get("stream") == Some(&Value::Bool(true)) {
        let cut = text.contains("cut");
        let usage = v.pointer("/stream_options/include_usage") == Some(&Value::Bool(true));
        let mut events: Vec<Result<Bytes, std::io::Error>> =
            vec![Ok(Bytes::from_static(SSE_HEAD.as_bytes()))];
        if cut {
            events.push(Err(std::io::Error::other("connection reset")));
        } else {
            if usage {
                let u = json!({"choices": [], "usage": {"prompt_tokens": t.input, "completion_tokens": t.output, "total_tokens": t.input + t.output}});
                events.push(Ok(Bytes::from(format!("data: {u}\n\n"))));
            }
            events.push(Ok(Bytes::from_static(b"data: [DONE]\n\n")));
        }
        let gate = text.contains("gate").then(|| u.gate.clone());
        let stream = futures_stream(events, gate);
        return Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from_stream(stream))
            .unwrap();
    }
    let body = json!({"object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!"}}],
        "usage": {"prompt_tokens": t.input, "completion_tokens": t.output, "total_tokens": t.input + t.output}});
    ([("content-type", "application/json")], body.to_string()).into_response()
}

/// A stream that yields `events` one per poll, with a pause between them.
fn futures_stream(
    events: Vec<Result<Bytes, std::io::Error>>,
    gate: Option<Arc<tokio::sync::Notify>>,
) -> impl futures_core::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        for (i, e) in events.into_iter().enumerate() {
            if i == 1 {
                if let Some(g) = &gate {
                    g.notified().await;
                }
            }
            tokio::time::sleep(StdDuration::from_millis(20)).await;
            if tx.send(e).await.is_err() {
                return;
            }
        }
    });
    Events(rx)
}

struct Events(tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl futures_core::Stream for Events {
    type Item = Result<Bytes, std::io::Error>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

/// `Authorization: Bearer <user>` becomes the `Identity`; `x-group` its group.
async fn auth(mut req: Request, next: Next) -> Response {
    let user = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let group = req
        .headers()
        .get("x-group")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let key = req
        .headers()
        .get("x-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(u) = user {
        let mut id = Identity::user(u);
        id.user_group = group;
        req.extensions_mut().insert(id);
    }
    if let Some(k) = key {
        req.extensions_mut().insert(KeyId(k));
    }
    next.run(req).await
}

async fn count_refusals(State(u): State<Upstream>, req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    if res.status() == StatusCode::TOO_MANY_REQUESTS {
        u.refused.fetch_add(1, Ordering::SeqCst);
    }
    res
}

struct Gateway {
    base: String,
    settled: Arc<Mutex<Vec<SettleEvent>>>,
    budgets: Arc<ScopedBudgets<ManualClock>>,
}

async fn serve(
    budgets: Arc<ScopedBudgets<ManualClock>>,
    up: Upstream,
    default_output: u64,
) -> Gateway {
    let prices = BTreeMap::from([("gpt-4o".to_owned(), PRICE)]);
    let layer = BudgetLayer::new(budgets.clone(), prices).default_max_output(default_output);
    serve_with(budgets, up, layer).await
}

async fn serve_with(
    budgets: Arc<ScopedBudgets<ManualClock>>,
    up: Upstream,
    layer: BudgetLayer<ManualClock>,
) -> Gateway {
    let settled = Arc::new(Mutex::new(Vec::new()));
    let s = settled.clone();
    let layer = layer.on_settle(move |e| s.lock().unwrap().push(e.clone()));
    let app = Router::new()
        .route("/v1/chat/completions", post(upstream))
        .route_layer(layer)
        .route_layer(middleware::from_fn(auth))
        .layer(middleware::from_fn_with_state(up.clone(), count_refusals))
        .with_state(up);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Gateway {
        base: format!("http://{addr}"),
        settled,
        budgets,
    }
}

fn at(secs: u64) -> ManualClock {
    ManualClock::new(Instant::from_secs(secs))
}

fn config(toml: &str) -> ScopedBudgetConfig {
    toml::from_str(toml).unwrap()
}

fn in_memory(toml: &str, clock: ManualClock) -> Arc<ScopedBudgets<ManualClock>> {
    Arc::new(ScopedBudgets::new(config(toml), ScopedBackend::Memory, clock).unwrap())
}

/// A request whose estimate is 17 prompt tokens (44 characters: "user" and
/// a 40-character content, one message) plus `max_tokens`.
fn request(n: usize, max_tokens: u64, extra: Value) -> Value {
    let mut v = json!({"model": "gpt-4o", "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": format!("{:<40}", format!("hello #{n}"))}]});
    if let (Value::Object(o), Value::Object(e)) = (&mut v, extra) {
        o.extend(e);
    }
    v
}

async fn wait_settled(g: &Gateway, n: usize) {
    let deadline = std::time::Instant::now() + StdDuration::from_secs(10);
    while g.settled.lock().unwrap().len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {n} settled",
            g.settled.lock().unwrap().len()
        );
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }
}

async fn used(g: &Gateway, scope: Scope, id: &str, d: Dimension, h: Horizon) -> u64 {
    g.budgets
        .status(scope, id)
        .await
        .unwrap()
        .used(d, h)
        .unwrap()
}

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

async fn join_all<F>(fs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = fs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

const FIFTY: &str = r#"per_user = { tokens_per_minute = 1_220, cost_per_day = 1_000_000 }"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_requests_admit_exactly_what_fits_in_memory() {
    let up = Upstream::default();
    let budgets = in_memory(FIFTY, at(1_795_392_000));
    let g = serve(budgets, up.clone(), 4_096).await;
    fifty_concurrent(&[g], &up).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_requests_through_three_layers_sharing_redis() {
    use ratebound_std::fallback::{FailoverOptions, OnUnavailable};
    use ratebound_std::redis::{RedisOptions, RedisStore, TimeSource};
    let server = support::redis_server::RedisServer::start();
    let up = Upstream::default();
    let clock = at(1_795_392_000);
    let mut gateways = Vec::new();
    for _ in 0..3 {
        let opts = RedisOptions {
            time: TimeSource::Caller(Arc::new(clock.clone())),
            ..RedisOptions::default()
        };
        let store = RedisStore::connect(&server.url(), opts).await.unwrap();
        let backend = ScopedBackend::Redis {
            store,
            prefix: "llm:".into(),
            hold_slots: 64,
            failover: FailoverOptions::new(OnUnavailable::Closed),
        };
        let budgets = Arc::new(ScopedBudgets::new(config(FIFTY), backend, clock.clone()).unwrap());
        gateways.push(serve(budgets, up.clone(), 4_096).await);
    }
    fifty_concurrent(&gateways, &up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_passes_byte_identical_and_settles_from_its_final_usage() {
    let up = Upstream::default();
    let budgets = in_memory(FIFTY, at(1_795_392_000));
    let g = serve(budgets, up.clone(), 4_096).await;
    let r = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", g.base))
        .bearer_auth("alice")
        .json(&request(3, 100, json!({"stream": true})))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    // The layer asked for usage, so the upstream sent it; every byte passed.
    let t = usage_for(&request(3, 100, json!({})));
    let usage = json!({"choices": [], "usage": {"prompt_tokens": t.input, "completion_tokens": t.output, "total_tokens": t.input + t.output}});
    assert_eq!(text, format!("{SSE_HEAD}data: {usage}\n\ndata: [DONE]\n\n"));
    let sent = up.bodies.lock().unwrap()[0].clone();
    assert_eq!(
        sent.pointer("/stream_options/include_usage"),
        Some(&Value::Bool(true))
    );
    wait_settled(&g, 1).await;
    let e = g.settled.lock().unwrap()[0].clone();
    assert_eq!(e.ending, Ending::Reported(t));
    assert_eq!(
        used(&g, Scope::User, "alice", Dimension::Tokens, Horizon::MINUTE).await,
        t.input + t.output
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_stream_is_charged_its_whole_reservation() {
    let up = Upstream::default();
    let budgets = in_memory(FIFTY, at(1_795_392_000));
    let g = serve(budgets, up.clone(), 4_096).await;
    let r = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", g.base))
        .bearer_auth("alice")
        .json(&request(4, 100, json!({"stream": true, "note": "cut"})))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.bytes().await.is_err(), "the body was cut");
    wait_settled(&g, 1).await;
    let e = g.settled.lock().unwrap()[0].clone();
    let est = ratebound_std::http::llm_request::LlmRequest::parse(
        request(4, 100, json!({"stream": true, "note": "cut"}))
            .to_string()
            .as_bytes(),
    )
    .unwrap()
    .estimate(4_096);
    assert_eq!(
        e.ending,
        Ending::Unreported {
            input: None,
            observed_output: 2
        }
    );
    assert_eq!(e.charged, est.usage(&PRICE));
    assert_eq!(
        used(&g, Scope::User, "alice", Dimension::Tokens, Horizon::MINUTE).await,
        est.input + est.max_output
    );
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

/// Alerts reach the webhook as JSON, retried after a 500, while a stalled
/// webhook never holds a request back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_are_posted_to_the_webhook_off_the_request_path() {
    use ratebound_std::http::alert_webhook::AlertWebhook;
    use ratebound_std::retry::RetryPolicy;
    #[derive(Clone, Default)]
    struct Hook {
        calls: Arc<AtomicUsize>,
        got: Arc<Mutex<Vec<Value>>>,
        stall: Arc<std::sync::atomic::AtomicBool>,
    }
    async fn receive(State(h): State<Hook>, body: Bytes) -> StatusCode {
        if h.stall.load(Ordering::SeqCst) {
            tokio::time::sleep(StdDuration::from_secs(30)).await;
        }
        if h.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            return StatusCode::INTERNAL_SERVER_ERROR; // the first attempt fails
        }
        h.got
            .lock()
            .unwrap()
            .push(serde_json::from_slice(&body).unwrap());
        StatusCode::NO_CONTENT
    }
    let hook = Hook::default();
    let app = Router::new()
        .route("/alerts", post(receive))
        .with_state(hook.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/alerts", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let cfg = r#"per_user = { tokens_per_minute = 1_000, alert_at_percent = [1] }"#;
    let up = Upstream::default();
    let budgets = in_memory(cfg, at(1_795_392_000));
    let backoff = ratebound_core::backoff::Backoff::new(
        ratebound_core::Duration::from_millis(10),
        ratebound_core::Duration::from_millis(50),
    )
    .unwrap()
    .with_max_retries(3);
    let webhook = AlertWebhook::spawn(&url, RetryPolicy::new(backoff), 1).unwrap();
    budgets.on_alert(webhook.handler());
    let g = serve(budgets, up, 4_096).await;
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{}/v1/chat/completions", g.base))
        .bearer_auth("alice")
        .json(&request(1, 100, json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let deadline = std::time::Instant::now() + StdDuration::from_secs(10);
    while hook.got.lock().unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "no alert arrived");
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }
    let a = hook.got.lock().unwrap()[0].clone();
    assert_eq!(
        hook.calls.load(Ordering::SeqCst),
        2,
        "one failure, one retry"
    );
    assert_eq!(a["scope"], "user");
    assert_eq!(a["id"], "alice");
    assert_eq!(a["alert"], "token_minute_threshold");
    assert_eq!(a["dimension"], "tokens");
    assert_eq!(a["window"], "minute");
    assert_eq!(a["threshold_percent"], 1);
    assert_eq!(a["at_ms"], 1_795_392_000_000u64);

    // The webhook stalls: alerts queue (then drop, the queue holds one), and
    // requests are answered as fast as ever.
    hook.stall.store(true, Ordering::SeqCst);
    g.budgets.clock().set(Instant::from_secs(1_795_392_060)); // a new minute: new alerts
    for i in 0..3 {
        let started = std::time::Instant::now();
        g.budgets
            .clock()
            .set(Instant::from_secs(1_795_392_060 + 60 * i));
        let r = client
            .post(format!("{}/v1/chat/completions", g.base))
            .bearer_auth("alice")
            .json(&request(2, 100, json!({})))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(
            started.elapsed() < StdDuration::from_secs(5),
            "a request waited for the webhook"
        );
        // Settled in its own minute: one alert each.
        wait_settled(&g, 2 + i as usize).await;
    }
    wait_settled(&g, 4).await;
    assert!(webhook.dropped() >= 1, "the full queue dropped alerts");
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

/// The stream is not buffered: the client reads the first events while the
/// upstream has not yet written the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_the_client_as_the_upstream_writes_them() {
    let up = Upstream::default();
    let budgets = in_memory(FIFTY, at(1_795_392_000));
    let g = serve(budgets, up.clone(), 4_096).await;
    let mut r = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", g.base))
        .bearer_auth("alice")
        .json(&request(5, 100, json!({"stream": true, "note": "gate"})))
        .send()
        .await
        .unwrap();
    let first = tokio::time::timeout(StdDuration::from_secs(10), r.chunk())
        .await
        .expect("the first events were held back")
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], SSE_HEAD.as_bytes());
    assert!(
        g.settled.lock().unwrap().is_empty(),
        "settled before the stream ended"
    );
    up.gate.notify_one();
    let mut rest = Vec::new();
    while let Some(c) = r.chunk().await.unwrap() {
        rest.extend_from_slice(&c);
    }
    assert!(String::from_utf8(rest)
        .unwrap()
        .ends_with("data: [DONE]\n\n"));
    wait_settled(&g, 1).await;
    let t = usage_for(&request(5, 100, json!({})));
    assert_eq!(g.settled.lock().unwrap()[0].ending, Ending::Reported(t));
}

/// A client that leaves mid-stream: charged the reservation (no usage came),
/// and the holds are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gone_mid_stream_is_charged_by_the_rule() {
    let up = Upstream::default();
    let budgets = in_memory(FIFTY, at(1_795_392_000));
    let g = serve(budgets, up.clone(), 4_096).await;
    let body = request(6, 100, json!({"stream": true, "note": "gate"}));
    let mut r = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", g.base))
        .bearer_auth("alice")
        .json(&body)
        .send()
        .await
        .unwrap();
    let first = r.chunk().await.unwrap().unwrap();
    assert_eq!(&first[..], SSE_HEAD.as_bytes());
    drop(r); // the client goes away
    up.gate.notify_one(); // the server notices when it next writes
    wait_settled(&g, 1).await;
    let e = g.settled.lock().unwrap()[0].clone();
    let est = ratebound_std::http::llm_request::LlmRequest::parse(body.to_string().as_bytes())
        .unwrap()
        .estimate(4_096);
    assert_eq!(
        e.ending,
        Ending::Unreported {
            input: None,
            observed_output: 2
        }
    );
    assert_eq!(e.charged, est.usage(&PRICE));
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
    let client = reqwest::Client::new();
    for (n, extra, input) in [
        (0, json!({"tokenize": true}), 50),
        (1, json!({"tokenize": false}), 17),
    ] {
        let r = client
            .post(format!("{}/v1/chat/completions", g.base))
            .bearer_auth("alice")
            .json(&request(1, 100, extra))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.bytes().await.unwrap();
        wait_settled(&g, n + 1).await;
        assert_eq!(g.settled.lock().unwrap()[n].reserved.tokens, input + 100);
    }
}
