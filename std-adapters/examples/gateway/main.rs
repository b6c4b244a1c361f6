//! The demo LLM gateway in front of an OpenAI- or Anthropic-compatible
//! upstream: model-level limits (total and successful requests per user and
//! model, group overrides) and token, request and money budgets per key,
//! user, group and model (reserved from each request's estimate, settled
//! from the usage the model reports, streams included), in memory by
//! default or in Redis.
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
//! failing upstream that uses no success quota, recovery after
//! `Retry-After`; then budgets: a reservation settled from the reported
//! usage, a stream settled from its last event, a cut-off stream, a 429 for
//! tokens, a request over the per-request cap), prints what a client sees,
//! and exits.
//!
//! `SIGHUP` or `POST /admin/reload` on `admin_listen` reads the config file
//! again: API keys and the per-IP limits change at once, counts kept; a bad
//! file changes nothing (`reload.rs`).
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

use axum::middleware;
use axum::routing::post;
use axum::Router;
use ratebound_core::backoff::Backoff;
use ratebound_std::budget::{ScopedBackend, ScopedBudgets};
use ratebound_std::clock::SystemClock;
use ratebound_std::fallback::OnUnavailable;
use ratebound_std::http::alert_webhook::AlertWebhook;
use ratebound_std::http::budget_layer::{BudgetLayer, SettleEvent};
use ratebound_std::http::layer::{FromExtensions, ModelLimitLayer};
use ratebound_std::http::rate_limit::{PeerIp, RateLimitLayer};
use ratebound_std::keyed::{AnyKeyedLimiter, KeyedConfig, RedisKeyedLimiter};
use ratebound_std::model_limit::ModelLimiter;
use ratebound_std::model_limit::{AnyModelLimiter, RedisModelLimiter};
use ratebound_std::redis::RedisStore;
use ratebound_std::retry::RetryPolicy;

const DEFAULT_CONFIG: &str = include_str!("../gateway.toml");

mod admin;
mod config;
mod demo;
mod fake_upstream;
mod handlers;
mod models;
mod reload;
mod serve;

use admin::Admin;
use config::{Config, RedisConfig};
use demo::{demo, demo_budgets};
use handlers::{completions, identify, Gateway, MAX_BODY};
use models::{allowed_models, cap_models, ModelCap};
use reload::{Keys, Live, Reloader};
use serve::{serve, upstream_headers};

async fn app(mut cfg: Config) -> Result<(Router, Live), Box<dyn std::error::Error>> {
    let cap = allowed_models(&mut cfg)?;
    let limits = cfg.model_limits.clone();
    let budgets = cfg.budgets.clone();
    match &cfg.redis {
        None => {
            let limiter = ModelLimiter::new(limits, KeyedConfig::default(), SystemClock)?;
            let budgets = ScopedBudgets::new(budgets, ScopedBackend::Memory, SystemClock)?;
            println!("model limits and budgets: in memory (this process only)");
            let per_ip = match &cfg.per_ip {
                Some(p) => Some(AnyKeyedLimiter::memory(
                    p.limits()?,
                    KeyedConfig::default(),
                    SystemClock,
                )?),
                None => None,
            };
            router(
                Arc::new(AnyModelLimiter::Memory(Box::new(limiter))),
                budgets,
                per_ip,
                cap.clone(),
                cfg,
            )
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
                "model limits and budgets: in Redis, shared by every replica (when Redis is down: {:?})",
                r.on_unavailable
            );
            let backend = ScopedBackend::Redis {
                store: store.clone(),
                prefix: "gateway:budget:".into(),
                hold_slots: 256,
                failover: r.failover(),
            };
            let budgets = ScopedBudgets::new(budgets, backend, SystemClock)?;
            let per_ip = match &cfg.per_ip {
                Some(p) => Some(AnyKeyedLimiter::Redis(Box::new(
                    RedisKeyedLimiter::with_set(
                        store.clone(),
                        p.limits()?,
                        r.failover(),
                        KeyedConfig::default(),
                        SystemClock,
                    )?,
                ))),
                None => None,
            };
            let limiter = RedisModelLimiter::new(store, limits, r.failover(), SystemClock)?;
            router(
                Arc::new(AnyModelLimiter::Redis(Box::new(limiter))),
                budgets,
                per_ip,
                cap.clone(),
                cfg,
            )
        }
    }
}

fn router(
    limiter: Arc<AnyModelLimiter<SystemClock>>,
    budgets: ScopedBudgets<SystemClock>,
    per_ip: Option<AnyKeyedLimiter<SystemClock>>,
    cap: Option<Arc<ModelCap>>,
    cfg: Config,
) -> Result<(Router, Live), Box<dyn std::error::Error>> {
    let limit = ModelLimitLayer::new(limiter, FromExtensions::new());
    if let Some(url) = &cfg.alert_webhook {
        let webhook = AlertWebhook::spawn(url, AlertWebhook::default_retry(), 1_024)?;
        budgets.on_alert(webhook.handler());
        println!("budget alerts: posted to {url}");
    }
    let budgets = Arc::new(budgets);
    let mut budget = BudgetLayer::new(Arc::clone(&budgets), cfg.prices.clone())
        .max_body(MAX_BODY)
        .on_settle(|e| {
            tracing::debug!(user = %e.user, model = %e.model, reserved = e.reserved.tokens, charged = e.charged.tokens, cost = e.charged.cost, ending = ?e.ending, "budget settled");
            if let Some(tx) = SETTLED.get() {
                let _ = tx.send(e.clone());
            }
        });
    if let Some(n) = cfg.default_max_output_tokens {
        budget = budget.default_max_output(n);
    }
    let backoff = Backoff::new(
        ratebound_core::Duration::from_millis(100),
        ratebound_core::Duration::from_secs(20),
    )?
    .with_max_retries(2);
    let keys: Keys = Arc::new(std::sync::RwLock::new(cfg.keys));
    let gw = Arc::new(Gateway {
        keys: Arc::clone(&keys),
        upstream: cfg.upstream,
        upstream_headers: upstream_headers(&cfg.upstream_headers)?,
        client: reqwest::Client::builder()
            // Per read, not per call: a stream may run for minutes.
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .build()?,
        retry: RetryPolicy::new(backoff).on_retry(|e| {
            tracing::info!(
                attempt = e.attempt,
                delay_ms = e.delay.as_millis() as u64,
                "retrying the upstream"
            );
        }),
        body_timeout: cfg.timeouts.body,
    });
    // Layers on the POST route run only for a matched path and method: an unknown path
    // (404) or method (405) is answered before any limit or budget is
    // charged. They run bottom-up: identify, then budgets, then the limit.
    let chat = post(completions)
        .route_layer(limit)
        .route_layer(middleware::from_fn_with_state(cap, cap_models))
        .route_layer(budget)
        .route_layer(middleware::from_fn_with_state(Arc::clone(&gw), identify));
    let routes = Router::new()
        .route("/v1/chat/completions", chat.clone())
        .route("/v1/responses", chat.clone())
        .route("/v1/messages", chat)
        .with_state(gw);
    // Every request from one client IP counts, whatever it asks for.
    Ok(match (per_ip, &cfg.per_ip) {
        (Some(limits), Some(p)) => {
            let peer = PeerIp::new().trust(&p.trust_proxies)?;
            let limits = Arc::new(limits);
            let layer = RateLimitLayer::new(Arc::clone(&limits), peer.clone()).name("per_ip");
            let live = Live {
                keys,
                per_ip: Some((limits, peer)),
                budgets,
            };
            (routes.layer(layer), live)
        }
        _ => (
            routes,
            Live {
                keys,
                per_ip: None,
                budgets,
            },
        ),
    })
}

/// Settlements, for the demo to print.
static SETTLED: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<SettleEvent>> =
    std::sync::OnceLock::new();

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Logs go to stderr; stdout is what a client sees (the demo's output).
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
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
    let (tx, mut settled) = tokio::sync::mpsc::unbounded_channel();
    if run_demo {
        let _ = SETTLED.set(tx);
    }
    let header_timeout = cfg.timeouts.header;
    let admin = match cfg.admin_listen {
        Some(addr) => Some(Admin::bind(addr).await?),
        None => None,
    };
    let (router, live) = app(cfg).await?;
    let reloader = Arc::new(Reloader::new(path, &text, live)?);
    reload::on_sighup(Arc::clone(&reloader))?;
    if let Some(admin) = admin {
        admin.serve(reloader)?;
    }
    let server = tokio::spawn(serve(listener, router, header_timeout));
    if run_demo {
        demo(format!("http://{addr}")).await?;
        return demo_budgets(&format!("http://{addr}"), &mut settled).await;
    }
    println!("ratebound gateway on http://{addr}, forwarding to {upstream}; Ctrl-C stops");
    server.await?;
    Ok(())
}
