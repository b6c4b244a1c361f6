//! What [`RateLimitLayer`](super::RateLimitLayer) answers with besides the
//! service's own response: the rate-limit fields (`RateLimit-Policy`,
//! `RateLimit`, the legacy `X-RateLimit-*`), a 429's message, and the
//! answer to a request the limits could not decide.

use std::sync::{Arc, RwLock};

use http::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use http::{Response, StatusCode};
use ratebound_core::Duration;

use super::Options;
use crate::clock::Clock;
use crate::http::headers::{
    error_body, store_retry_after as retry_after, RATELIMIT, RATELIMIT_POLICY, STORE_AWAY,
    STORE_FAULT, STORE_FULL_RETRY_AFTER, X_RATELIMIT_LIMIT, X_RATELIMIT_REMAINING,
    X_RATELIMIT_RESET,
};
use crate::http::layer::respond;
use crate::keyed::{KeyedDecision, KeyedError};
use crate::limiter::{AnyLimiter, LimitSet};

/// The rate-limit fields of one response.
pub(super) struct RateHeaders {
    policy: HeaderValue,
    state: Option<HeaderValue>,
    /// Limit, remaining, reset (seconds).
    legacy: Option<[u64; 3]>,
}

impl RateHeaders {
    pub(super) fn insert(self, headers: &mut HeaderMap) {
        headers.insert(RATELIMIT_POLICY, self.policy);
        if let Some(v) = self.state {
            headers.insert(RATELIMIT, v);
        }
        if let Some([limit, remaining, reset]) = self.legacy {
            headers.insert(X_RATELIMIT_LIMIT, HeaderValue::from(limit));
            headers.insert(X_RATELIMIT_REMAINING, HeaderValue::from(remaining));
            headers.insert(X_RATELIMIT_RESET, HeaderValue::from(reset));
        }
    }
}

pub(super) fn seconds(d: Duration) -> u64 {
    d.as_secs_ceil()
}

/// A member's window for the policy field; a GCRA's is the time to refill
/// its whole capacity.
fn window_secs(l: &AnyLimiter) -> (u64, &'static str) {
    match l {
        AnyLimiter::Gcra(g) => (seconds(g.burst_window()).max(1), ";bucket"),
        AnyLimiter::SlidingLog(s) => (seconds(s.window()).max(1), ""),
        AnyLimiter::SlidingCounter(c) => (seconds(c.window()).max(1), ""),
    }
}

/// `RateLimit-Policy` for `set`: every member.
pub(super) fn policy_header(set: &LimitSet) -> HeaderValue {
    let v = set
        .members()
        .map(|(name, l)| {
            let (w, kind) = window_secs(l);
            format!("\"{name}\";q={};w={w}{kind}", l.capacity())
        })
        .collect::<Vec<_>>()
        .join(", ");
    // Names are visible ASCII without spaces, quotes or backslashes
    // (core's wire::limit_name_valid, LimitSet's rule).
    HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static(""))
}

/// `RateLimit-Policy` of the limits recently answered for (the common ones
/// and a few keys' own), each built once.
pub(super) struct PolicyCache(RwLock<Vec<(Arc<LimitSet>, HeaderValue)>>);

/// How many limit sets' headers are kept.
const POLICY_CACHE: usize = 8;

impl PolicyCache {
    pub(super) fn new(set: Arc<LimitSet>) -> Self {
        let header = policy_header(&set);
        PolicyCache(RwLock::new(vec![(set, header)]))
    }

    fn header(&self, set: &Arc<LimitSet>) -> HeaderValue {
        // The Arc held here keeps its address from being reused by
        // another set while the entry lives.
        let find = |cached: &[(Arc<LimitSet>, HeaderValue)]| {
            cached
                .iter()
                .find(|(s, _)| Arc::ptr_eq(s, set))
                .map(|(_, h)| h.clone())
        };
        if let Some(h) = find(&self.0.read().unwrap_or_else(|p| p.into_inner())) {
            return h;
        }
        let mut cached = self.0.write().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = find(&cached) {
            return h;
        }
        let header = policy_header(set);
        if cached.len() == POLICY_CACHE {
            cached.remove(0);
        }
        cached.push((Arc::clone(set), header.clone()));
        header
    }
}

pub(super) fn rate_headers<C: Clock + Clone, X, K>(
    options: &Options<C, X, K>,
    set: &Arc<LimitSet>,
    name: &str,
    d: &KeyedDecision,
) -> RateHeaders {
    let reset = seconds(d.binding_reset_at.saturating_duration_since(d.now));
    let state = format!("\"{name}\";r={};t={reset}", d.binding_remaining);
    RateHeaders {
        policy: options.policy.header(set),
        state: HeaderValue::from_str(&state).ok(),
        legacy: options
            .legacy_headers
            .then_some([d.decision.limit, d.binding_remaining, reset]),
    }
}

/// The answer to a request the limits could not decide. While the shared
/// store is away, `Retry-After` is `store_retry_after` (the fail-over's
/// skip window, whole seconds rounded up, at least 1): the store is not
/// tried again within it, so a client retrying sooner is refused again.
pub(super) fn refuse_error<B: From<String>>(
    e: &KeyedError,
    store_retry_after: Option<std::time::Duration>,
) -> Response<B> {
    // Without feature `redis` there is no store error: the last arms are unreachable.
    #[allow(unreachable_patterns)]
    // A store's own error text (addresses, ACL and script messages) is for
    // the operator's log, not the client: those get a fixed message.
    let (status, code, message) = match e {
        KeyedError::Cost(_) => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "rate_limit_cost_too_large",
            e.to_string(),
        ),
        KeyedError::Full => (
            StatusCode::SERVICE_UNAVAILABLE,
            "rate_limit_store_full",
            e.to_string(),
        ),
        _ if e.is_unavailable() => (
            StatusCode::SERVICE_UNAVAILABLE,
            "rate_limit_store_unavailable",
            STORE_AWAY.to_owned(),
        ),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "rate_limit_store_error",
            STORE_FAULT.to_owned(),
        ),
    };
    let mut res = respond(status, error_body(&message, "rate_limit", code));
    if matches!(e, KeyedError::Full) {
        res.headers_mut()
            .insert(RETRY_AFTER, STORE_FULL_RETRY_AFTER);
    } else if let Some(d) = store_retry_after.filter(|_| e.is_unavailable()) {
        res.headers_mut().insert(RETRY_AFTER, retry_after(d));
    }
    res
}

/// "10 per 1s, at most 10 at once" for a GCRA; "at most 100 in any 60s"
/// for a sliding log; "about 100 in any 60s" for a sliding counter, which
/// weighs the previous window's count rather than keeping each admission
/// (so it holds the limit only approximately in an arbitrary window).
pub(super) fn describe(set: &LimitSet, i: usize) -> String {
    match set.limiter(i) {
        Some(AnyLimiter::Gcra(g)) => format!(
            "{} per {}s, at most {} at once",
            g.amount(),
            seconds(g.period()),
            g.capacity()
        ),
        Some(l @ AnyLimiter::SlidingCounter(_)) => {
            let (w, _) = window_secs(l);
            format!("about {} in any {w}s", l.capacity())
        }
        Some(l) => {
            let (w, _) = window_secs(l);
            format!("at most {} in any {w}s", l.capacity())
        }
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use ratebound_core::{Duration, Gcra, SlidingCounter, SlidingLog};

    use super::describe;
    use crate::limiter::{AnyLimiter, LimitSet};

    /// Each kind worded by what it keeps: a bucket's rate and burst, a
    /// log's exact bound, a counter's estimate.
    #[test]
    fn each_limit_is_described_by_what_it_keeps() {
        let set = LimitSet::new([
            ("burst", AnyLimiter::Gcra(Gcra::per_second(10).unwrap())),
            (
                "log",
                AnyLimiter::SlidingLog(SlidingLog::new(100, Duration::from_secs(60)).unwrap()),
            ),
            (
                "counter",
                AnyLimiter::SlidingCounter(
                    SlidingCounter::new(100, Duration::from_secs(60)).unwrap(),
                ),
            ),
        ])
        .unwrap();
        assert_eq!(describe(&set, 0), "10 per 1s, at most 10 at once");
        assert_eq!(describe(&set, 1), "at most 100 in any 60s");
        assert_eq!(describe(&set, 2), "about 100 in any 60s");
        assert_eq!(describe(&set, 3), "");
    }
}
