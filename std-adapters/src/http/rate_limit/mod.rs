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
//! - Redis unavailable under `closed`: **503** `rate_limit_store_unavailable`;
//!   a store that refused the call: **500** `rate_limit_store_error`.
//! - An extractor's rejection: its status and message.
//!
//! In [`shadow`](RateLimitLayer::shadow) mode every decision is made and
//! counted, but nothing is refused (store errors let requests through).
//!
//! `q` and `w` follow each member: a sliding log or counter allows at most
//! `q` in any `w` seconds; a GCRA (`;bucket`) holds at most `q` at once,
//! refilled smoothly in `w` seconds (rounded up).

mod key;

pub use key::{
    ExtensionKey, ExtractKey, HeaderKey, KeyRejection, PeerIp, ProxyParseError, RateKey, RouteKey,
};

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{HeaderMap, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use http::{Request, Response, StatusCode};
use ratebound_core::Duration;
use tower::{Layer, Service};

use super::headers::{
    error_body, RATELIMIT, RATELIMIT_POLICY, X_RATELIMIT_LIMIT, X_RATELIMIT_REMAINING,
    X_RATELIMIT_RESET,
};
use super::layer::LimitRefusal;
use crate::clock::Clock;
use crate::keyed::{AnyKeyedLimiter, KeyedDecision, KeyedError};
use crate::limiter::{AnyLimiter, LimitSet};

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

struct Options<X, K> {
    extract: Arc<X>,
    cost: Arc<K>,
    shadow: bool,
    headers_on_success: bool,
    legacy_headers: bool,
    on_decision: Option<Hook>,
    /// `RateLimit-Policy`, the same for every response.
    policy: HeaderValue,
}

impl<X, K> Clone for Options<X, K> {
    fn clone(&self) -> Self {
        Options {
            extract: Arc::clone(&self.extract),
            cost: Arc::clone(&self.cost),
            shadow: self.shadow,
            headers_on_success: self.headers_on_success,
            legacy_headers: self.legacy_headers,
            on_decision: self.on_decision.clone(),
            policy: self.policy.clone(),
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
    limits: Arc<AnyKeyedLimiter<C>>,
    options: Options<X, K>,
}

impl<C: Clock + Clone, X, K> Clone for RateLimitLayer<C, X, K> {
    fn clone(&self) -> Self {
        RateLimitLayer {
            limits: Arc::clone(&self.limits),
            options: self.options.clone(),
        }
    }
}

impl<C: Clock + Clone, X> RateLimitLayer<C, X, One> {
    /// Limit requests by `limits` (in memory or in Redis) under the key
    /// `extract` finds.
    pub fn new(limits: impl Into<Arc<AnyKeyedLimiter<C>>>, extract: X) -> Self {
        let limits = limits.into();
        let policy = policy_header(limits.limits());
        RateLimitLayer {
            limits,
            options: Options {
                extract: Arc::new(extract),
                cost: Arc::new(One),
                shadow: false,
                headers_on_success: false,
                legacy_headers: false,
                on_decision: None,
                policy,
            },
        }
    }
}

impl<C: Clock + Clone, X, K> RateLimitLayer<C, X, K> {
    fn with(mut self, f: impl FnOnce(&mut Options<X, K>)) -> Self {
        f(&mut self.options);
        self
    }

    /// Charge each request `cost(req)` instead of 1 (e.g. by route or body
    /// size).
    pub fn cost<K2>(self, cost: K2) -> RateLimitLayer<C, X, K2> {
        let o = self.options;
        RateLimitLayer {
            limits: self.limits,
            options: Options {
                extract: o.extract,
                cost: Arc::new(cost),
                shadow: o.shadow,
                headers_on_success: o.headers_on_success,
                legacy_headers: o.legacy_headers,
                on_decision: o.on_decision,
                policy: o.policy,
            },
        }
    }

    /// Shadow mode: decide and count, report (headers, hook, a `tracing`
    /// event), but never refuse: learn what a limit would do before
    /// enforcing it.
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

    /// Called with every decision (allowed, denied, shadow-denied).
    pub fn on_decision(self, f: impl Fn(&RateLimitEvent<'_>) + Send + Sync + 'static) -> Self {
        self.with(|o| o.on_decision = Some(Arc::new(f)))
    }

    /// The limits.
    pub fn limits(&self) -> &Arc<AnyKeyedLimiter<C>> {
        &self.limits
    }
}

impl<S, C: Clock + Clone, X, K> Layer<S> for RateLimitLayer<C, X, K> {
    type Service = RateLimit<S, C, X, K>;
    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            limits: Arc::clone(&self.limits),
            options: Arc::new(self.options.clone()),
        }
    }
}

/// The service made by [`RateLimitLayer`].
pub struct RateLimit<S, C: Clock + Clone, X, K> {
    inner: S,
    limits: Arc<AnyKeyedLimiter<C>>,
    options: Arc<Options<X, K>>,
}

impl<S: Clone, C: Clock + Clone, X, K> Clone for RateLimit<S, C, X, K> {
    fn clone(&self) -> Self {
        RateLimit {
            inner: self.inner.clone(),
            limits: Arc::clone(&self.limits),
            options: Arc::clone(&self.options),
        }
    }
}

fn seconds(d: Duration) -> u64 {
    d.as_secs_ceil()
}

/// A GCRA's window: the time to refill its whole capacity.
fn window_secs(l: &AnyLimiter) -> (u64, &'static str) {
    match l {
        AnyLimiter::Gcra(g) => (seconds(g.burst_window()).max(1), ";bucket"),
        AnyLimiter::SlidingLog(s) => (seconds(s.window()).max(1), ""),
        AnyLimiter::SlidingCounter(c) => (seconds(c.window()).max(1), ""),
    }
}

fn policy_header(set: &LimitSet) -> HeaderValue {
    let v = set
        .members()
        .map(|(name, l)| {
            let (w, kind) = window_secs(l);
            format!("\"{name}\";q={};w={w}{kind}", l.capacity())
        })
        .collect::<Vec<_>>()
        .join(", ");
    // Names are printable ASCII without quotes or backslashes (LimitSet).
    HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static(""))
}

fn insert_headers<K, X>(
    headers: &mut HeaderMap,
    options: &Options<X, K>,
    name: &str,
    d: &KeyedDecision,
    now: ratebound_core::Instant,
) {
    let reset = seconds(d.decision.reset_after(now));
    headers.insert(RATELIMIT_POLICY, options.policy.clone());
    let state = format!("\"{name}\";r={};t={reset}", d.decision.remaining);
    if let Ok(v) = HeaderValue::from_str(&state) {
        headers.insert(RATELIMIT, v);
    }
    if options.legacy_headers {
        headers.insert(X_RATELIMIT_LIMIT, HeaderValue::from(d.decision.limit));
        headers.insert(
            X_RATELIMIT_REMAINING,
            HeaderValue::from(d.decision.remaining),
        );
        headers.insert(X_RATELIMIT_RESET, HeaderValue::from(reset));
    }
}

fn respond<B: From<String>>(status: StatusCode, body: String) -> Response<B> {
    let mut res = Response::new(B::from(body));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res.extensions_mut().insert(LimitRefusal);
    res
}

/// The answer to a request the limits could not decide.
fn refuse_error<B: From<String>>(e: &KeyedError) -> Response<B> {
    let (status, code) = match e {
        KeyedError::Cost(_) => (StatusCode::PAYLOAD_TOO_LARGE, "rate_limit_cost_too_large"),
        KeyedError::Full => (StatusCode::SERVICE_UNAVAILABLE, "rate_limit_store_full"),
        e if e.is_unavailable() => (
            StatusCode::SERVICE_UNAVAILABLE,
            "rate_limit_store_unavailable",
        ),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "rate_limit_store_error"),
    };
    let mut res = respond(status, error_body(&e.to_string(), "rate_limit", code));
    if matches!(e, KeyedError::Full) {
        res.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    res
}

impl<S, C, X, K, ReqB, ResB> Service<Request<ReqB>> for RateLimit<S, C, X, K>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    C: Clock + Clone + Send + Sync + 'static,
    X: ExtractKey<ReqB>,
    K: RequestCost<ReqB>,
    ReqB: Send + 'static,
    ResB: From<String> + Send + 'static,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResB>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        // The clone is not ready; the ready one (self.inner) serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let key = match self.options.extract.extract(&req) {
            Ok(Some(k)) => k,
            Ok(None) => return Box::pin(inner.call(req)),
            Err(r) => {
                let body = error_body(&r.message, "invalid_request_error", "invalid_request");
                return Box::pin(std::future::ready(Ok(respond(r.status, body))));
            }
        };
        let cost = self.options.cost.cost(&req);
        let limits = Arc::clone(&self.limits);
        let options = Arc::clone(&self.options);
        Box::pin(async move {
            let d = match limits.check(key.as_bytes(), cost).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(key_hash = key.hash(), error = %e, "rate limit undecided");
                    if options.shadow {
                        return inner.call(req).await;
                    }
                    return Ok(refuse_error(&e));
                }
            };
            let set = limits.limits();
            let name = set.name(d.binding);
            let outcome = match (d.decision.allowed, options.shadow) {
                (true, _) => Outcome::Allowed,
                (false, false) => Outcome::Denied,
                (false, true) => Outcome::ShadowDenied,
            };
            if let Some(hook) = &options.on_decision {
                hook(&RateLimitEvent {
                    key: &key,
                    decision: &d,
                    limit: name,
                    outcome,
                });
            }
            let now = d.now;
            if outcome == Outcome::Denied {
                let retry = seconds(d.decision.retry_after(now)).max(1);
                tracing::info!(
                    key_hash = key.hash(),
                    limit = name,
                    retry_after_s = retry,
                    "rate limit reached"
                );
                let message = format!(
                    "Rate limit reached ({name}: {}). Please try again in {retry}s.",
                    describe(set, d.binding)
                );
                let body = error_body(&message, "rate_limit", "rate_limit_exceeded");
                let mut res = respond(StatusCode::TOO_MANY_REQUESTS, body);
                insert_headers(res.headers_mut(), &options, name, &d, now);
                res.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(retry));
                return Ok(res);
            }
            if outcome == Outcome::ShadowDenied {
                tracing::info!(
                    key_hash = key.hash(),
                    limit = name,
                    "rate limit reached (shadow)"
                );
            }
            let result = inner.call(req).await;
            result.map(|mut res| {
                if options.headers_on_success {
                    insert_headers(res.headers_mut(), &options, name, &d, now);
                }
                res
            })
        })
    }
}

/// "10 per 1s, bursts of 10" for a GCRA; "at most 100 in any 60s" for a window.
fn describe(set: &LimitSet, i: usize) -> String {
    match set.limiter(i) {
        Some(AnyLimiter::Gcra(g)) => format!(
            "{} per {}s, at most {} at once",
            g.amount(),
            seconds(g.period()),
            g.capacity()
        ),
        Some(l) => {
            let (w, _) = window_secs(l);
            format!("at most {} in any {w}s", l.capacity())
        }
        None => String::new(),
    }
}
