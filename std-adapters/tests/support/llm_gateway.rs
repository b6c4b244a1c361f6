//! A fake LLM upstream (usage in JSON or SSE, cut-off and gated streams)
//! behind the budget layer on a loopback axum server, and helpers to drive it.

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
use ratebound_core::budget::llm::{Price, Tokens};
use ratebound_core::budget::{Dimension, Horizon};
use ratebound_core::Instant;
use ratebound_std::budget::{Scope, ScopedBackend, ScopedBudgetConfig, ScopedBudgets};
use ratebound_std::clock::ManualClock;
use ratebound_std::http::budget_layer::{BudgetLayer, KeyId, SettleEvent};
use ratebound_std::model_limit::Identity;
use serde_json::{json, Value};

pub const PRICE: Price = Price {
    input_per_million: 2_500_000,
    output_per_million: 10_000_000,
};

/// The fake upstream's books: what it reported, and requests it saw.
#[derive(Clone, Default)]
pub struct Upstream {
    pub arrived: Arc<AtomicUsize>,
    pub refused: Arc<AtomicUsize>,
    pub reported_tokens: Arc<AtomicU64>,
    pub reported_cost: Arc<AtomicU64>,
    pub bodies: Arc<Mutex<Vec<Value>>>,
    /// A stream with "gate" in its prompt waits here before its last events.
    pub gate: Arc<tokio::sync::Notify>,
}

/// Usage the upstream reports for a request: 12 prompt tokens and 5 + n
/// output, `n` from the prompt's `#n` marker.
pub fn usage_for(body: &Value) -> Tokens {
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

pub const SSE_HEAD: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo!\"}}]}\n\n";

pub async fn upstream(
    State(u): State<Upstream>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    // A proxy would forward this header as is: it must match the body sent.
    if let Some(len) = headers.get("content-length") {
        if len.to_str().ok().and_then(|l| l.parse::<usize>().ok()) != Some(body.len()) {
            return (
                StatusCode::BAD_REQUEST,
                "content-length does not match the body",
            )
                .into_response();
        }
    }
    // The layer reads the answer: it must not come compressed.
    if headers.contains_key("accept-encoding") || headers.contains_key("transfer-encoding") {
        return (
            StatusCode::BAD_REQUEST,
            "accept-encoding or transfer-encoding reached the upstream",
        )
            .into_response();
    }
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
pub fn futures_stream(
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

pub struct Events(tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>);

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
pub async fn auth(mut req: Request, next: Next) -> Response {
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

pub async fn count_refusals(State(u): State<Upstream>, req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    if res.status() == StatusCode::TOO_MANY_REQUESTS {
        u.refused.fetch_add(1, Ordering::SeqCst);
    }
    res
}

pub struct Gateway {
    pub base: String,
    pub settled: Arc<Mutex<Vec<SettleEvent>>>,
    pub budgets: Arc<ScopedBudgets<ManualClock>>,
}

pub async fn serve(
    budgets: Arc<ScopedBudgets<ManualClock>>,
    up: Upstream,
    default_output: u64,
) -> Gateway {
    let prices = BTreeMap::from([("gpt-4o".to_owned(), PRICE)]);
    let layer = BudgetLayer::new(budgets.clone(), prices).default_max_output(default_output);
    serve_with(budgets, up, layer).await
}

pub async fn serve_with(
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

pub fn at(secs: u64) -> ManualClock {
    ManualClock::new(Instant::from_secs(secs))
}

pub fn config(toml: &str) -> ScopedBudgetConfig {
    toml::from_str(toml).unwrap()
}

pub fn in_memory(toml: &str, clock: ManualClock) -> Arc<ScopedBudgets<ManualClock>> {
    Arc::new(ScopedBudgets::new(config(toml), ScopedBackend::Memory, clock).unwrap())
}

/// A request whose estimate is 17 prompt tokens (44 characters: "user" and
/// a 40-character content, one message) plus `max_tokens`.
pub fn request(n: usize, max_tokens: u64, extra: Value) -> Value {
    let mut v = json!({"model": "gpt-4o", "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": format!("{:<40}", format!("hello #{n}"))}]});
    if let (Value::Object(o), Value::Object(e)) = (&mut v, extra) {
        o.extend(e);
    }
    v
}

/// A chat completion request `body` to `g` as `who` (the bearer key).
pub async fn post_as(g: &Gateway, who: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", g.base))
        .bearer_auth(who)
        .json(&body)
        .send()
        .await
        .unwrap()
}

pub async fn wait_settled(g: &Gateway, n: usize) {
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

pub async fn used(g: &Gateway, scope: Scope, id: &str, d: Dimension, h: Horizon) -> u64 {
    g.budgets
        .status(scope, id)
        .await
        .unwrap()
        .used(d, h)
        .unwrap()
}

pub async fn join_all<F>(fs: impl Iterator<Item = F>) -> Vec<F::Output>
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

pub const FIFTY: &str = r#"per_user = { tokens_per_minute = 1_220, cost_per_day = 1_000_000 }"#;
