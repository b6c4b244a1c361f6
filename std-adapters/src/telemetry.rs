//! What ratebound reports through the [`metrics`](https://docs.rs/metrics)
//! facade (any exporter: Prometheus, StatsD, OpenTelemetry) and `tracing`.
//!
//! | Metric | Kind | Labels | What |
//! |---|---|---|---|
//! | `ratebound_decisions_total` | counter | `limit`, `outcome` | one per request a rate-limit layer saw (the model-limit layer's `limit` is `model_limits`): `allowed`, `denied`, `shadow_denied`; `error` when the limits could not decide (store unavailable or full, a cost that never fits, a request the model limits cannot read); `rejected` when the request's key could not be used: the key extractor answered it itself (no key, a header too long), or the key is over the layer's `max_key_len` |
//! | `ratebound_keys_held` | gauge | `limit` | keys a layer's in-memory store holds (in Redis: the local fallback's), set when a decision finds it changed |
//! | `ratebound_store_call_seconds` | histogram | `store`, `call` | each call to Redis, reconnection included, answered or not |
//! | `ratebound_store_up` | gauge | `domain` | 1 after a call the shared store answered, 0 after one it did not (the failure policy decides meanwhile); per domain (`limits`, `budgets`, `model limits`): the last report of any limiter of that domain |
//! | `ratebound_store_transitions_total` | counter | `domain`, `to` | the store going `down` or coming back `up`, per store and domain: a change in what the calls of all its limiters on that store find, counted by the call that finds it (two layers on one store count one outage once) |
//!
//! A rate-limit layer's `limit` label is its
//! [`name`](crate::http::rate_limit::RateLimitLayer::name) (by default its
//! members' names): two layers over different limits under one label add
//! up their counts and overwrite each other's keys held, which the second
//! logs at WARN when it registers.
//!
//! A layer registers its counters and gauge when it serves its first
//! request: install the recorder (e.g.
//! `metrics_exporter_prometheus::PrometheusBuilder::install_recorder`) before
//! serving. Without a recorder every update is a no-op.
//!
//! Each decision of a rate-limit layer runs in a `tracing` span
//! `rate_limit` (level DEBUG) with fields `limit`, `key_hash` (never the
//! key, which may be a secret; see `RateKey::hash`
//! for what the hash hides) and `outcome`. The span holds the decision
//! and what it reports (the DEBUG log of a denial, the hook); the service
//! behind the layer is called after it, outside it, in memory as in Redis.
//! A rate-limit layer logs its refusals and undecided requests per request
//! at DEBUG (their counters count them) and a store failure other than its
//! being away or full at WARN; the store going down or coming back is
//! logged once each (per store and domain, however many limiters use it).

use ::metrics::{counter, gauge};
#[cfg(feature = "http")]
use ::metrics::{Counter, Gauge};

/// `ratebound_decisions_total`.
pub const DECISIONS: &str = "ratebound_decisions_total";
/// `ratebound_keys_held`.
pub const KEYS_HELD: &str = "ratebound_keys_held";
/// `ratebound_store_call_seconds`.
pub const STORE_CALL_SECONDS: &str = "ratebound_store_call_seconds";
/// `ratebound_store_up`.
pub const STORE_UP: &str = "ratebound_store_up";
/// `ratebound_store_transitions_total`.
pub const STORE_TRANSITIONS: &str = "ratebound_store_transitions_total";

/// The handles one rate-limit layer updates, registered once.
#[cfg(feature = "http")]
pub(crate) struct LayerMetrics {
    pub(crate) allowed: Counter,
    pub(crate) denied: Counter,
    pub(crate) shadow_denied: Counter,
    pub(crate) error: Counter,
    pub(crate) rejected: Counter,
    keys_held: Gauge,
    /// The keys-held figure last published: the gauge is set only when it
    /// changes, sparing every decision a recorder call. Read without the
    /// lock; written, with the gauge, under it.
    keys_published: std::sync::atomic::AtomicUsize,
    publishing: std::sync::Mutex<()>,
}

#[cfg(feature = "http")]
impl Clone for LayerMetrics {
    fn clone(&self) -> Self {
        LayerMetrics {
            allowed: self.allowed.clone(),
            denied: self.denied.clone(),
            shadow_denied: self.shadow_denied.clone(),
            error: self.error.clone(),
            rejected: self.rejected.clone(),
            keys_held: self.keys_held.clone(),
            keys_published: std::sync::atomic::AtomicUsize::new(usize::MAX),
            publishing: std::sync::Mutex::new(()),
        }
    }
}

#[cfg(feature = "http")]
impl LayerMetrics {
    /// The handles of the layer over `limits` labelled `limit`. Two layers
    /// over different limits under one label would add up their decisions
    /// and overwrite each other's keys held: that is logged (WARN) once,
    /// when the second registers.
    pub(crate) fn new(
        limit: &str,
        limits: std::sync::Weak<dyn std::any::Any + Send + Sync>,
    ) -> Self {
        warn_if_label_taken(limit, limits);
        let decisions = |outcome: &'static str| counter!(DECISIONS, "limit" => limit.to_owned(), "outcome" => outcome);
        LayerMetrics {
            allowed: decisions("allowed"),
            denied: decisions("denied"),
            shadow_denied: decisions("shadow_denied"),
            error: decisions("error"),
            rejected: decisions("rejected"),
            keys_held: gauge!(KEYS_HELD, "limit" => limit.to_owned()),
            keys_published: std::sync::atomic::AtomicUsize::new(usize::MAX),
            publishing: std::sync::Mutex::new(()),
        }
    }

    /// Publish `n` keys held, if that is news. The figure and the gauge
    /// change together under a lock; a decision that finds it taken skips,
    /// and the next one that sees a different figure publishes it. The
    /// check is inlined into every decision; publishing is apart.
    #[inline(always)]
    pub(crate) fn set_keys_held(&self, n: usize) {
        if self
            .keys_published
            .load(std::sync::atomic::Ordering::Relaxed)
            != n
        {
            self.publish_keys_held(n);
        }
    }

    #[cold]
    #[inline(never)]
    fn publish_keys_held(&self, n: usize) {
        if let Ok(_publishing) = self.publishing.try_lock() {
            self.keys_held.set(n as f64);
            self.keys_published
                .store(n, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// The `limit` labels registered by rate-limit layers, with the limits
/// each reports on (held weakly: a label is free again once its limits
/// are dropped).
#[cfg(feature = "http")]
type Labels = Vec<(Box<str>, std::sync::Weak<dyn std::any::Any + Send + Sync>)>;

#[cfg(feature = "http")]
fn warn_if_label_taken(limit: &str, limits: std::sync::Weak<dyn std::any::Any + Send + Sync>) {
    static LABELS: std::sync::Mutex<Labels> = std::sync::Mutex::new(Vec::new());
    let mut labels = LABELS.lock().unwrap_or_else(|p| p.into_inner());
    labels.retain(|(_, l)| l.strong_count() > 0);
    let shared = labels
        .iter()
        .any(|(name, l)| &**name == limit && !l.ptr_eq(&limits));
    let known = labels
        .iter()
        .any(|(name, l)| &**name == limit && l.ptr_eq(&limits));
    if !known {
        labels.push((limit.into(), limits));
    }
    drop(labels);
    if shared {
        tracing::warn!(
            limit,
            "two rate-limit layers over different limits report under one metrics label, adding up their counts; name each with RateLimitLayer::name"
        );
    }
}

/// One decision of a layer whose limit has a fixed name (the model-limit
/// layer: `model_limits`).
#[cfg(feature = "http")]
pub(crate) fn decision(limit: &'static str, outcome: &'static str) {
    counter!(DECISIONS, "limit" => limit, "outcome" => outcome).increment(1);
}

/// One call to the store took `seconds`.
#[cfg(feature = "redis")]
pub(crate) fn store_call(call: &'static str, seconds: f64) {
    ::metrics::histogram!(STORE_CALL_SECONDS, "store" => "redis", "call" => call).record(seconds);
}

/// The store is now up (`true`) or down, for `domain`; `changed` when this
/// call made it so (a transition).
pub(crate) fn store_state(domain: &'static str, up: bool, changed: bool) {
    gauge!(STORE_UP, "domain" => domain).set(if up { 1.0 } else { 0.0 });
    if changed {
        let to = if up { "up" } else { "down" };
        counter!(STORE_TRANSITIONS, "domain" => domain, "to" => to).increment(1);
    }
}
