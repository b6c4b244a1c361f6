//! A rate limit in front of any tower service: per client IP, API key,
//! user, route, or any key a closure finds, with one limiter or several
//! decided all or nothing, in this process or in Redis.
//!
//! ```
//! use ratebound_core::Gcra;
//! use ratebound_std::clock::SystemClock;
//! use ratebound_std::http::rate_limit::{PeerIp, RateLimitLayer};
//! use ratebound_std::keyed::{AnyKeyedLimiter, KeyedConfig};
//! use ratebound_std::limiter::{AnyLimiter, LimitSet};
//!
//! // 10 per second and 100 per minute per client IP, in this process.
//! let limits = LimitSet::new([
//!     ("per_second", AnyLimiter::Gcra(Gcra::per_second(10)?)),
//!     ("per_minute", AnyLimiter::Gcra(Gcra::per_minute(100)?)),
//! ])?;
//! let per_ip = AnyKeyedLimiter::memory(limits, KeyedConfig::default(), SystemClock)?;
//! let layer = RateLimitLayer::new(per_ip, PeerIp::new());
//! // axum: Router::new().route(..).layer(layer), served with
//! // into_make_service_with_connect_info::<SocketAddr>()
//! # let _ = layer;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What a client sees
//!
//! - Over the limit: **429** with `Retry-After` (whole seconds, rounded
//!   up, at least 1), the IETF `RateLimit-Policy` (every member:
//!   `"per_second";q=10;w=1;bucket, "per_minute";q=100;w=60;bucket`) and
//!   `RateLimit` (the binding member: `"per_second";r=0;t=1`), and with
//!   [`legacy_headers`](RateLimitLayer::legacy_headers) `X-RateLimit-Limit`,
//!   `-Remaining`, `-Reset` (seconds); a JSON body
//!   `{"error":{"message":…,"type":"rate_limit","param":null,"code":"rate_limit_exceeded"}}`.
//! - Admitted: the service's response, with the same headers only if
//!   [`headers_on_success`](RateLimitLayer::headers_on_success) is set.
//! - A cost no member can ever fit: **413** `rate_limit_cost_too_large`.
//! - The in-memory store full of active keys: **503** `rate_limit_store_full`
//!   with `Retry-After: 1`.
//! - Redis unavailable under `closed`: **503** `rate_limit_store_unavailable`
//!   with `Retry-After`: the fail-over's
//!   [`retry_after`](crate::fallback::FailoverOptions::retry_after) (how
//!   long the store is left alone after a failure); a store that refused
//!   the call: **500** `rate_limit_store_error`; both with a fixed message
//!   (the store's own error goes to the log).
//! - An extractor's rejection: its status and message.
//! - A key over [`max_key_len`](RateLimitLayer::max_key_len) (1,024 bytes
//!   by default): **400** `invalid_request`, on every backend alike (in
//!   shadow mode let through undecided).
//! - Under Redis's local fail-over, the fields and the 429 text describe
//!   this replica's share, which is what decides.
//!
//! In [`shadow`](RateLimitLayer::shadow) mode every decision is made and
//! counted, but the limits refuse nothing (store errors let requests
//! through too); an extractor's own answer (no peer address, a required
//! header missing or too long) still stands.
//!
//! # Changing limits while serving
//!
//! The layer shares its limits ([`RateLimitLayer::limits`], or the `Arc`
//! you built it from): [`AnyKeyedLimiter::reconfigure`] changes them for
//! every key and [`AnyKeyedLimiter::set_override`] for one (a premium API
//! key), from the next request on, every count kept (core's
//! [`reconfigure`](ratebound_core::reconfigure) rule). The 429 text and
//! `RateLimit-Policy` follow the limits each key is decided by.
//!
//! `q` and `w` follow each member: a sliding log allows at most `q` in any
//! `w` seconds; a sliding counter estimates the last `w` seconds from two
//! fixed windows (see its docs for how far one interval can exceed `q`); a
//! GCRA (`;bucket`) holds at most `q` at once, refilled smoothly in `w`
//! seconds (rounded up).

mod answer;
mod key;
mod peer_ip;
mod service;
mod verdict;

pub use key::{ExtensionKey, ExtractKey, HeaderKey, KeyRejection, RateKey, RouteKey};
pub use peer_ip::{ForwardedBy, PeerIp, ProxyParseError};
pub use service::{RateLimit, ResponseFuture};

use std::sync::{Arc, OnceLock};

use http::Request;
use tower::Layer;

use crate::clock::Clock;
use crate::keyed::{AnyKeyedLimiter, KeyedDecision};
use crate::telemetry::LayerMetrics;
use answer::PolicyCache;

/// What became of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Admitted.
    Allowed,
    /// Refused with 429.
    Denied,
    /// Over the limit, let through (shadow mode).
    ShadowDenied,
}

impl Outcome {
    /// `allowed`, `denied`, `shadow_denied`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
            Outcome::ShadowDenied => "shadow_denied",
        }
    }
}

/// One decision, as the hook sees it.
#[derive(Debug)]
pub struct RateLimitEvent<'a> {
    /// The request's key.
    pub key: &'a RateKey,
    /// The decision and where it came from (memory, Redis, fail-over).
    pub decision: &'a KeyedDecision,
    /// The binding member's name.
    pub limit: &'a str,
    /// What became of the request.
    pub outcome: Outcome,
}

/// The cost of a request (1 by default): closures
/// `Fn(&Request<B>) -> u64` implement it.
pub trait RequestCost<B>: Send + Sync + 'static {
    /// The cost of `req`.
    fn cost(&self, req: &Request<B>) -> u64;
}

impl<B, F: Fn(&Request<B>) -> u64 + Send + Sync + 'static> RequestCost<B> for F {
    fn cost(&self, req: &Request<B>) -> u64 {
        self(req)
    }
}

/// Every request costs 1.
#[derive(Clone, Copy, Debug, Default)]
pub struct One;

impl<B> RequestCost<B> for One {
    fn cost(&self, _: &Request<B>) -> u64 {
        1
    }
}

type Hook = Arc<dyn Fn(&RateLimitEvent<'_>) + Send + Sync>;

struct Options<C: Clock + Clone, X, K> {
    /// The limits (in the one `Arc` a service clone takes).
    limits: Arc<AnyKeyedLimiter<C>>,
    extract: Arc<X>,
    cost: Arc<K>,
    shadow: bool,
    headers_on_success: bool,
    legacy_headers: bool,
    on_decision: Option<Hook>,
    /// `RateLimit-Policy` of the limits last answered for.
    policy: Arc<PolicyCache>,
    /// The members' names (fixed for the limits' life: a change of
    /// config keeps them).
    members: Arc<[Box<str>]>,
    /// The `limit` label of its metrics and spans.
    name: Arc<str>,
    /// Registered at the first request, under the final name.
    metrics: OnceLock<LayerMetrics>,
    /// Longer keys are answered 400 (in shadow mode let through
    /// undecided) before any backend sees them.
    max_key_len: usize,
}

impl<C: Clock + Clone, X, K> Options<C, X, K> {
    /// Whether `key` is within the layer's bound (else it is answered by
    /// [`key_too_long`](verdict::key_too_long), on every backend).
    #[inline]
    fn key_fits(&self, key: &RateKey) -> bool {
        key.as_bytes().len() <= self.max_key_len
    }

    fn metrics(&self) -> &LayerMetrics {
        self.metrics.get_or_init(|| self.register_metrics())
    }

    // Apart: once per layer, kept out of the code every request runs.
    #[cold]
    #[inline(never)]
    fn register_metrics(&self) -> LayerMetrics {
        let limits: Arc<dyn std::any::Any + Send + Sync> = self.limits.clone();
        LayerMetrics::new(&self.name, Arc::downgrade(&limits))
    }

    /// True when an admitted request has nothing to report but its count:
    /// no headers on success, no hook (spans are asked apart, per request).
    fn counts_only(&self) -> bool {
        !self.headers_on_success && self.on_decision.is_none()
    }
}

impl<C: Clock + Clone, X, K> Clone for Options<C, X, K> {
    fn clone(&self) -> Self {
        Options {
            limits: Arc::clone(&self.limits),
            extract: Arc::clone(&self.extract),
            cost: Arc::clone(&self.cost),
            shadow: self.shadow,
            headers_on_success: self.headers_on_success,
            legacy_headers: self.legacy_headers,
            on_decision: self.on_decision.clone(),
            policy: Arc::clone(&self.policy),
            members: Arc::clone(&self.members),
            name: Arc::clone(&self.name),
            metrics: self.metrics.clone(),
            max_key_len: self.max_key_len,
        }
    }
}

/// A tower [`Layer`] limiting requests per key (see the [module](self)).
///
/// Clones, and the services they make (one per connection), share one
/// store: the limit holds across connections and, in Redis, across
/// servers. The response body type must be buildable from a `String`
/// (axum's `Body`, `http_body_util::Full<Bytes>`, `String`).
pub struct RateLimitLayer<C: Clock + Clone, X, K = One> {
    // Shared: axum may wrap its routes anew for each request, so `layer`
    // (and each service clone) must cost no more than one reference count.
    options: Arc<Options<C, X, K>>,
}

impl<C: Clock + Clone, X, K> Clone for RateLimitLayer<C, X, K> {
    fn clone(&self) -> Self {
        RateLimitLayer {
            options: Arc::clone(&self.options),
        }
    }
}

impl<C: Clock + Clone, X> RateLimitLayer<C, X, One> {
    /// Limit requests by `limits` (in memory or in Redis) under the key
    /// `extract` finds.
    pub fn new(limits: impl Into<Arc<AnyKeyedLimiter<C>>>, extract: X) -> Self {
        let limits: Arc<AnyKeyedLimiter<C>> = limits.into();
        let set = limits.limits();
        let members: Arc<[Box<str>]> = set.members().map(|(n, _)| n.into()).collect();
        let name: Arc<str> = members.join("+").into();
        let policy = Arc::new(PolicyCache::new(set));
        let max_key_len = DEFAULT_MAX_KEY_LEN.min(backend_max_key_len(&limits));
        RateLimitLayer {
            options: Arc::new(Options {
                limits,
                extract: Arc::new(extract),
                cost: Arc::new(One),
                shadow: false,
                headers_on_success: false,
                legacy_headers: false,
                on_decision: None,
                policy,
                members,
                metrics: OnceLock::new(),
                name,
                max_key_len,
            }),
        }
    }
}

impl<C: Clock + Clone, X, K> RateLimitLayer<C, X, K> {
    fn with(mut self, f: impl FnOnce(&mut Options<C, X, K>)) -> Self {
        f(Arc::make_mut(&mut self.options));
        self
    }

    /// Charge each request `cost(req)` instead of 1 (e.g. by route or body
    /// size).
    pub fn cost<K2>(self, cost: K2) -> RateLimitLayer<C, X, K2> {
        let o = Arc::unwrap_or_clone(self.options);
        RateLimitLayer {
            options: Arc::new(Options {
                limits: o.limits,
                extract: o.extract,
                cost: Arc::new(cost),
                shadow: o.shadow,
                headers_on_success: o.headers_on_success,
                legacy_headers: o.legacy_headers,
                on_decision: o.on_decision,
                policy: o.policy,
                members: o.members,
                name: o.name,
                metrics: o.metrics,
                max_key_len: o.max_key_len,
            }),
        }
    }

    /// Shadow mode: decide and count, report (hook, metrics, a `tracing`
    /// event; headers with [`headers_on_success`](Self::headers_on_success)),
    /// but let every request the limits would refuse through: learn what a
    /// limit would do before enforcing it. An extractor's own rejection
    /// still answers.
    pub fn shadow(self, on: bool) -> Self {
        self.with(|o| o.shadow = on)
    }

    /// Add the rate-limit headers to admitted responses too (default off).
    pub fn headers_on_success(self, on: bool) -> Self {
        self.with(|o| o.headers_on_success = on)
    }

    /// Add the legacy `X-RateLimit-Limit`, `-Remaining`, `-Reset` beside
    /// the IETF fields (default off).
    pub fn legacy_headers(self, on: bool) -> Self {
        self.with(|o| o.legacy_headers = on)
    }

    /// Answer requests whose key is longer than `bytes` with 400 before
    /// deciding (default 1,024), on every backend alike: no client makes
    /// keys of any size, and memory and Redis never differ on a long key.
    /// In [`shadow`](Self::shadow) mode such a request is let through
    /// undecided. Either way it is counted as `rejected`.
    /// Capped at what the backend takes (Redis's
    /// [`max_tag_len`](crate::redis::RedisOptions::max_tag_len)).
    pub fn max_key_len(self, bytes: usize) -> Self {
        let cap = backend_max_key_len(&self.options.limits);
        self.with(|o| o.max_key_len = bytes.min(cap))
    }

    /// Name the layer's limit in metrics and spans (the `limit` label;
    /// default: its members' names joined by `+`, e.g. `per_second+per_minute`).
    /// Give each layer over its own limits its own name: two under one
    /// label add up their counts (logged at WARN when the second serves
    /// its first request). Layers over the same limits may share one.
    pub fn name(self, name: &str) -> Self {
        self.with(|o| o.name = name.into())
    }

    /// Called with every decision (allowed, denied, shadow-denied).
    pub fn on_decision(self, f: impl Fn(&RateLimitEvent<'_>) + Send + Sync + 'static) -> Self {
        self.with(|o| o.on_decision = Some(Arc::new(f)))
    }

    /// The limits.
    pub fn limits(&self) -> &Arc<AnyKeyedLimiter<C>> {
        &self.options.limits
    }
}

/// The longest key a layer takes unless told otherwise.
const DEFAULT_MAX_KEY_LEN: usize = 1024;

fn backend_max_key_len<C: Clock + Clone>(limits: &AnyKeyedLimiter<C>) -> usize {
    limits.max_key_len().unwrap_or(usize::MAX)
}

impl<S, C: Clock + Clone, X, K> Layer<S> for RateLimitLayer<C, X, K> {
    type Service = RateLimit<S, C, X, K>;
    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(inner, Arc::clone(&self.options))
    }
}
