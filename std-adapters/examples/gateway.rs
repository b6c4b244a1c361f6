//! The demo LLM gateway: model-level limits (total and successful requests
//! per user and model, group overrides) in front of an OpenAI-compatible
//! upstream, with the in-memory store.
//!
//! ```text
//! cargo run -p ratebound-std --features http,redis --example gateway -- --demo
//! cargo run -p ratebound-std --features http,redis --example gateway            # serve on 127.0.0.1:8080
//! cargo run -p ratebound-std --features http,redis --example gateway -- --config my.toml --upstream http://127.0.0.1:9000
//! cargo run -p ratebound-std --features http,redis --example gateway -- --demo --redis redis://127.0.0.1:6379/
//! ```
//!
//! `--demo` starts the gateway on a free loopback port, drives it with a
//! short scripted load (admitted, then 429 with its headers and body, a
//! failing upstream that uses no success quota, then recovery after
//! `Retry-After`), prints what a client sees, and exits.
//!
//! Serving, try it with curl:
//!
//! ```text
//! for i in $(seq 12); do
//!   curl -s -o /dev/null -w '%{http_code} ' -H 'Authorization: Bearer sk-alice' \
//!     -d '{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}' \
//!     http://127.0.0.1:8080/v1/chat/completions
//! done   # 200 ×10, then 429 429
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use ratebound_core::backoff::Backoff;
use ratebound_std::clock::SystemClock;
use ratebound_std::fallback::{FailoverOptions, OnUnavailable};
use ratebound_std::http::headers::error_body;
use ratebound_std::http::layer::{FromExtensions, Model, ModelLimitLayer};
use ratebound_std::http::upstream::{UpstreamError, UpstreamLimits};
use ratebound_std::keyed::KeyedConfig;
use ratebound_std::model_limit::{AnyModelLimiter, RedisModelLimiter};
use ratebound_std::model_limit::{Identity, ModelLimitConfig, ModelLimiter};
use ratebound_std::redis::{RedisOptions, RedisStore};
use ratebound_std::retry::RetryPolicy;
use serde::Deserialize;

const DEFAULT_CONFIG: &str = include_str!("gateway.toml");
/// Requests larger than this are refused before being parsed.
const MAX_BODY: usize = 1 << 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    listen: SocketAddr,
    upstream: Option<String>,
    keys: std::collections::BTreeMap<String, Key>,
    model_limits: ModelLimitConfig,
    /// Share the limits through Redis (every replica the same counts).
    redis: Option<RedisConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RedisConfig {
    /// `redis://127.0.0.1:6379/`, or several node URLs for a Redis Cluster.
    url: Option<String>,
    #[serde(default)]
    cluster: Vec<String>,
    /// "open", "closed" (default) or "local": what to do while Redis is down.
    #[serde(default)]
    on_unavailable: OnUnavailable,
    /// The longest call to Redis (default "1s").
    #[serde(default, with = "ratebound_std::config::human::option")]
    timeout: Option<std::time::Duration>,
    /// After a failed call, skip Redis for this long (default "1s").
    #[serde(default, with = "ratebound_std::config::human::option")]
    retry_after: Option<std::time::Duration>,
    /// Multiplexed connections per replica (default 1).
    connections: Option<usize>,
    /// Replicas sharing the limits: under "local" each enforces 1/replicas
    /// of every limit (default 1).
    replicas: Option<u32>,
}

impl RedisConfig {
    fn options(&self) -> RedisOptions {
        let d = RedisOptions::default();
        RedisOptions {
            timeout: self.timeout.unwrap_or(d.timeout),
            connections: self.connections.unwrap_or(d.connections),
            ..d
        }
    }

    fn failover(&self) -> FailoverOptions {
        let d = FailoverOptions::new(self.on_unavailable);
        FailoverOptions {
            retry_after: self.retry_after.unwrap_or(d.retry_after),
            replicas: self.replicas.unwrap_or(d.replicas),
            ..d
        }
    }
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct Key {
    user: String,
    group: Option<String>,
}

struct Gateway {
    keys: std::collections::BTreeMap<String, Key>,
    upstream: Option<String>,
    client: reqwest::Client,
    retry: RetryPolicy,
}

fn json_error(status: StatusCode, message: &str, kind: &str, code: &str) -> Response {
    let mut res = (status, error_body(message, kind, code)).into_response();
    res.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    res
}

/// Auth and model: the API key becomes an `Identity`, the JSON body's
/// `model` a `Model` extension, for the limit layer to read.
async fn identify(State(gw): State<Arc<Gateway>>, req: Request, next: Next) -> Response {
    let key = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(k) = key.and_then(|k| gw.keys.get(k)) else {
        return json_error(
            StatusCode::UNAUTHORIZED,
            "invalid API key",
            "authentication_error",
            "invalid_api_key",
        );
    };
    let mut identity = Identity::user(k.user.clone());
    identity.user_group = k.group.clone();
    let (mut parts, body) = req.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_BODY).await else {
        return json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body over 1 MiB",
            "invalid_request_error",
            "body_too_large",
        );
    };
    let model = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("model")?.as_str().map(str::to_owned));
    let Some(model) = model else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "expected a JSON body with a \"model\"",
            "invalid_request_error",
            "missing_model",
        );
    };
    parts.extensions.insert(identity);
    parts.extensions.insert(Model(model));
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Forward to the upstream (retrying 408/429/5xx, waiting at least what its
/// rate-limit headers say), or answer from the built-in fake.
async fn completions(State(gw): State<Arc<Gateway>>, body: Bytes) -> Response {
    let Some(url) = gw.upstream.clone() else {
        return fake_upstream(&body);
    };
    let url = format!("{}/v1/chat/completions", url.trim_end_matches('/'));
    let sent = gw
        .retry
        .run(|| {
            let req = gw
                .client
                .post(&url)
                .header("content-type", "application/json")
                .body(body.clone());
            async move {
                let res = req.send().await.map_err(|e| {
                    UpstreamError {
                        status: StatusCode::BAD_GATEWAY,
                        limits: UpstreamLimits::default(),
                    }
                    .with_log(&e)
                })?;
                if res.status().as_u16() == 429 || res.status().is_server_error() {
                    let (limits, errors) = UpstreamLimits::from_headers_lenient(
                        res.headers(),
                        std::time::SystemTime::now(),
                    );
                    for e in errors {
                        tracing::warn!(error = %e, "ignoring a malformed upstream header");
                    }
                    return Err(UpstreamError {
                        status: res.status(),
                        limits,
                    });
                }
                Ok(res)
            }
        })
        .await;
    match sent {
        Ok(res) => {
            let status = res.status();
            let bytes = res.bytes().await.unwrap_or_default();
            let mut out = (status, bytes).into_response();
            out.headers_mut()
                .insert("content-type", HeaderValue::from_static("application/json"));
            out
        }
        Err(e) => {
            let message = e.to_string();
            let status = e
                .into_inner()
                .map_or(StatusCode::BAD_GATEWAY, |last| last.status);
            json_error(status, &message, "upstream_error", "upstream_failed")
        }
    }
}

trait WithLog {
    fn with_log(self, e: &reqwest::Error) -> Self;
}
impl WithLog for UpstreamError {
    fn with_log(self, e: &reqwest::Error) -> Self {
        tracing::warn!(error = %e, "upstream unreachable");
        self
    }
}

/// A stand-in for an LLM API: a canned completion, or 500 when the prompt
/// says "fail".
fn fake_upstream(body: &[u8]) -> Response {
    let text = String::from_utf8_lossy(body);
    if text.contains("fail") {
        return json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the model failed",
            "server_error",
            "upstream_failed",
        );
    }
    let mut res = (
        StatusCode::OK,
        r#"{"object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hello!"},"finish_reason":"stop"}]}"#,
    )
        .into_response();
    res.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    res
}

async fn app(cfg: Config) -> Result<Router, Box<dyn std::error::Error>> {
    let limits = cfg.model_limits.clone();
    match &cfg.redis {
        None => {
            let limiter = ModelLimiter::new(limits, KeyedConfig::default(), SystemClock)?;
            println!("model limits: in memory (this process only)");
            router(Arc::new(AnyModelLimiter::Memory(Box::new(limiter))), cfg)
        }
        Some(r) => {
            // Opened, not connected: the gateway starts while Redis is down
            // and each call connects when it can (the failure policy
            // answers meanwhile).
            let store = if r.cluster.is_empty() {
                let url = r.url.as_deref().ok_or("[redis] needs url or cluster")?;
                RedisStore::open(url, r.options())?
            } else {
                let nodes: Vec<&str> = r.cluster.iter().map(String::as_str).collect();
                RedisStore::open_cluster(&nodes, r.options())?
            };
            if let Err(e) = store.ready().await {
                println!(
                    "redis not reachable yet ({e}); serving by the failure policy until it is"
                );
                store.connect_in_background(std::time::Duration::from_secs(1));
            }
            println!(
                "model limits: in Redis, shared by every replica (when Redis is down: {:?})",
                r.on_unavailable
            );
            let limiter = RedisModelLimiter::new(store, limits, r.failover(), SystemClock)?;
            router(Arc::new(AnyModelLimiter::Redis(Box::new(limiter))), cfg)
        }
    }
}

fn router(
    limiter: Arc<AnyModelLimiter<SystemClock>>,
    cfg: Config,
) -> Result<Router, Box<dyn std::error::Error>> {
    let limit = ModelLimitLayer::new(limiter, FromExtensions::new());
    let backoff = Backoff::new(
        ratebound_core::Duration::from_millis(100),
        ratebound_core::Duration::from_secs(20),
    )?
    .with_max_retries(2);
    let gw = Arc::new(Gateway {
        keys: cfg.keys,
        upstream: cfg.upstream,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?,
        retry: RetryPolicy::new(backoff).on_retry(|e| {
            tracing::info!(
                attempt = e.attempt,
                delay_ms = e.delay.as_millis() as u64,
                "retrying the upstream"
            );
        }),
    });
    Ok(Router::new()
        .route("/v1/chat/completions", post(completions))
        // Layers run bottom-up: identify first, then the limit.
        .layer(limit)
        .layer(middleware::from_fn_with_state(Arc::clone(&gw), identify))
        .with_state(gw))
}

fn show(label: &str, status: StatusCode, h: &HeaderMap) {
    let get = |n: &str| {
        h.get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    };
    println!(
        "{label:<34} {} | RateLimit: {}",
        status.as_u16(),
        get("ratelimit")
    );
}

/// The scripted walkthrough printed by `--demo`.
async fn demo(base: String) -> Result<(), Box<dyn std::error::Error>> {
    let client = reqwest::Client::new();
    let url = format!("{base}/v1/chat/completions");
    let send = |key: &'static str, model: &'static str, prompt: &'static str| {
        let body =
            serde_json::json!({"model": model, "messages": [{"role": "user", "content": prompt}]});
        client.post(&url).bearer_auth(key).json(&body).send()
    };
    println!("ratebound demo gateway on {base}: 1-minute period, alice may make 20 requests, 10 of them successful, per model\n");
    println!("RateLimit-Policy: \"total\";q=20;w=60, \"success\";q=10;w=60\n");
    for i in 1..=10 {
        let r = send("sk-alice", "gpt-4o", "hi").await?;
        show(&format!("alice gpt-4o #{i}"), r.status(), r.headers());
    }
    let r = send("sk-alice", "gpt-4o", "hi").await?;
    println!("\nalice gpt-4o #11: over the success limit. The client sees:\n");
    println!("HTTP/1.1 {}", r.status());
    for name in [
        "retry-after",
        "ratelimit-policy",
        "ratelimit",
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "content-type",
    ] {
        if let Some(v) = r.headers().get(name) {
            println!("{name}: {}", v.to_str()?);
        }
    }
    let retry_after: u64 = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(1);
    println!("\n{}\n", r.text().await?);
    let r = send("sk-alice", "claude-3-5-sonnet", "hi").await?;
    show(
        "alice claude-3-5-sonnet (own count)",
        r.status(),
        r.headers(),
    );
    let r = send("sk-vera", "gpt-4o", "hi").await?;
    show("vera (group vip: 100 successes)", r.status(), r.headers());
    for i in 1..=3 {
        let r = send("sk-bob", "gpt-4o", "please fail").await?;
        show(
            &format!("bob upstream failure #{i}"),
            r.status(),
            r.headers(),
        );
    }
    let r = send("sk-bob", "gpt-4o", "hi").await?;
    show("bob success (failures gave back)", r.status(), r.headers());
    println!("\nwaiting {retry_after} s (alice's Retry-After) ...");
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    let r = send("sk-alice", "gpt-4o", "hi").await?;
    show("alice gpt-4o after Retry-After", r.status(), r.headers());
    if r.status() != StatusCode::OK {
        return Err("expected recovery after Retry-After".into());
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,gateway=info".into()),
        )
        .init();
    let mut args = std::env::args().skip(1);
    let (mut path, mut listen, mut upstream, mut run_demo) = (None, None, None, false);
    let (mut redis, mut on_unavailable) = (None, OnUnavailable::Closed);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--config" => path = args.next(),
            "--listen" => {
                listen = Some(
                    args.next()
                        .ok_or("--listen needs an address")?
                        .parse::<SocketAddr>()?,
                )
            }
            "--upstream" => upstream = args.next(),
            "--redis" => redis = Some(args.next().ok_or("--redis needs a URL")?),
            "--on-unavailable" => {
                let p = args
                    .next()
                    .ok_or("--on-unavailable needs open, closed or local")?;
                on_unavailable = toml::Value::String(p).try_into()?;
            }
            "--demo" => run_demo = true,
            "-h" | "--help" => {
                println!("gateway [--config FILE] [--listen ADDR] [--upstream URL] [--redis URL [--on-unavailable open|closed|local]] [--demo]");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?} (try --help)").into()),
        }
    }
    let text = match &path {
        Some(p) => std::fs::read_to_string(p).map_err(|e| format!("{p}: {e}"))?,
        None => DEFAULT_CONFIG.to_owned(),
    };
    let mut cfg: Config = toml::from_str(&text)
        .map_err(|e| format!("{}: {e}", path.as_deref().unwrap_or("gateway.toml")))?;
    if let Some(u) = upstream {
        cfg.upstream = Some(u);
    }
    if let Some(url) = redis {
        cfg.redis = Some(RedisConfig {
            url: Some(url),
            cluster: Vec::new(),
            on_unavailable,
            timeout: None,
            retry_after: None,
            connections: None,
            replicas: None,
        });
    }
    if run_demo {
        cfg.upstream = None;
        cfg.listen = "127.0.0.1:0".parse()?;
    } else if let Some(l) = listen {
        cfg.listen = l;
    }
    let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
    let addr = listener.local_addr()?;
    let upstream = cfg
        .upstream
        .clone()
        .unwrap_or_else(|| "the built-in fake".into());
    let router = app(cfg).await?;
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    if run_demo {
        return demo(format!("http://{addr}")).await;
    }
    println!("ratebound gateway on http://{addr}, forwarding to {upstream}; Ctrl-C stops");
    server.await??;
    Ok(())
}
