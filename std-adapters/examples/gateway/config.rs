//! The gateway's config file (gateway.toml).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use ratebound_core::budget::llm::Price;
use ratebound_core::Gcra;
use ratebound_std::budget::ScopedBudgetConfig;
use ratebound_std::fallback::{FailoverOptions, OnUnavailable};
use ratebound_std::limiter::{AnyLimiter, LimitSet};
use ratebound_std::model_limit::ModelLimitConfig;
use ratebound_std::redis::RedisOptions;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    pub(crate) listen: SocketAddr,
    pub(crate) upstream: Option<String>,
    /// Headers sent with every upstream call: its credentials
    /// (`Authorization = "Bearer sk-…"`, or Anthropic's `x-api-key` and
    /// `anthropic-version`). A value `"$NAME"` is read from the environment.
    #[serde(default)]
    pub(crate) upstream_headers: std::collections::BTreeMap<String, String>,
    pub(crate) keys: BTreeMap<String, Key>,
    pub(crate) model_limits: ModelLimitConfig,
    /// Token, request and money budgets per key, user, group and model.
    #[serde(default)]
    pub(crate) budgets: ScopedBudgetConfig,
    /// Model → price in micro-USD per million input and output tokens.
    #[serde(default)]
    pub(crate) prices: BTreeMap<String, Price>,
    /// Output tokens reserved for a request that sets no `max_tokens`.
    pub(crate) default_max_output_tokens: Option<u64>,
    #[serde(default)]
    pub(crate) timeouts: Timeouts,
    /// With `allowed_models = ["*"]`: the most different models one key
    /// may use (counted in each replica).
    pub(crate) max_models_per_key: Option<usize>,
    /// Post budget alerts (thresholds crossed, limits hit) here as JSON.
    pub(crate) alert_webhook: Option<String>,
    /// Share the limits through Redis (every replica the same counts).
    pub(crate) redis: Option<RedisConfig>,
    /// A limit per client IP in front of everything.
    pub(crate) per_ip: Option<PerIp>,
    /// Serve Prometheus metrics at `http://ADDR/metrics` (the admin side:
    /// keep it off the public network).
    pub(crate) admin_listen: Option<SocketAddr>,
}

/// Requests per client IP (either or both windows), decided together.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PerIp {
    pub(crate) per_second: Option<u64>,
    pub(crate) per_minute: Option<u64>,
    /// Proxies trusted to name the client in `Forwarded` / `X-Forwarded-For`.
    #[serde(default)]
    pub(crate) trust_proxies: Vec<String>,
    /// Client IPs (an IPv6 address stands for its /64) with limits of
    /// their own: the same windows, other numbers.
    #[serde(default)]
    pub(crate) overrides: BTreeMap<String, IpLimits>,
}

/// One client IP's own limits.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IpLimits {
    pub(crate) per_second: Option<u64>,
    pub(crate) per_minute: Option<u64>,
}

impl PerIp {
    pub(crate) fn limits(&self) -> Result<LimitSet, Box<dyn std::error::Error>> {
        windows(self.per_second, self.per_minute)
    }
}

impl IpLimits {
    pub(crate) fn limits(&self) -> Result<LimitSet, Box<dyn std::error::Error>> {
        windows(self.per_second, self.per_minute)
    }
}

fn windows(
    per_second: Option<u64>,
    per_minute: Option<u64>,
) -> Result<LimitSet, Box<dyn std::error::Error>> {
    let mut members = Vec::new();
    if let Some(n) = per_second {
        members.push(("per_second", AnyLimiter::Gcra(Gcra::per_second(n)?)));
    }
    if let Some(n) = per_minute {
        members.push(("per_minute", AnyLimiter::Gcra(Gcra::per_minute(n)?)));
    }
    if members.is_empty() {
        return Err("needs per_second or per_minute".into());
    }
    Ok(LimitSet::new(members)?)
}

/// How long a connection may take (each "5s"-style).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Timeouts {
    /// To send a request's headers, and between requests on a kept-alive
    /// connection: past it the connection is closed.
    #[serde(with = "ratebound_std::config::human")]
    pub(crate) header: Duration,
    /// To send a request's body: past it, 408.
    #[serde(with = "ratebound_std::config::human")]
    pub(crate) body: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            header: Duration::from_secs(10),
            body: Duration::from_secs(30),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RedisConfig {
    /// `redis://127.0.0.1:6379/`, or several node URLs for a Redis Cluster.
    pub(crate) url: Option<String>,
    #[serde(default)]
    pub(crate) cluster: Vec<String>,
    /// "open", "closed" (default) or "local": what to do while Redis is down.
    #[serde(default)]
    pub(crate) on_unavailable: OnUnavailable,
    /// The longest call to Redis (default "1s").
    #[serde(default, with = "ratebound_std::config::human::option")]
    pub(crate) timeout: Option<std::time::Duration>,
    /// After a failed call, skip Redis for this long (default "1s").
    #[serde(default, with = "ratebound_std::config::human::option")]
    pub(crate) retry_after: Option<std::time::Duration>,
    /// Multiplexed connections per replica (default 1).
    pub(crate) connections: Option<usize>,
    /// Replicas sharing the limits: under "local" each enforces 1/replicas
    /// of every limit (default 1).
    pub(crate) replicas: Option<u32>,
}

impl RedisConfig {
    pub(crate) fn options(&self) -> RedisOptions {
        let d = RedisOptions::default();
        RedisOptions {
            timeout: self.timeout.unwrap_or(d.timeout),
            connections: self.connections.unwrap_or(d.connections),
            ..d
        }
    }

    pub(crate) fn failover(&self) -> FailoverOptions {
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
pub(crate) struct Key {
    pub(crate) user: String,
    pub(crate) group: Option<String>,
    /// The key's name for its budget (default: the user's name).
    pub(crate) id: Option<String>,
}
