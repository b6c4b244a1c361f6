//! What a request's limits decided, turned into what the layer does: call
//! the service (with the fields to add, if any) or answer at once; and the
//! metrics, hook, span and log lines of each decision.

use http::header::{HeaderValue, RETRY_AFTER};
use http::{Response, StatusCode};

use super::answer::{describe, rate_headers, refuse_error, seconds, RateHeaders};
use super::{Options, Outcome, RateKey, RateLimitEvent};
use crate::clock::Clock;
use crate::http::headers::error_body;
use crate::http::layer::respond;
use crate::keyed::{memory_decision, KeyedDecision, KeyedError, MemoryKeyed};

/// What to do with a request once its limits have answered.
pub(super) enum Verdict<B> {
    /// Call the service; add these fields to its response.
    Pass(Option<RateHeaders>),
    /// Answer with this.
    Refuse(Response<B>),
}

/// The verdict on `decided`: the commonest (admitted, nothing to report
/// but the count) decided here, inlined where it is used; the rest apart.
#[inline]
pub(super) fn verdict<C: Clock + Clone, X, K, B: From<String>>(
    options: &Options<C, X, K>,
    key: &RateKey,
    decided: Result<KeyedDecision, KeyedError>,
    span: Option<&tracing::Span>,
) -> Verdict<B> {
    match decided {
        Ok(d) if d.decision.allowed && options.counts_only() && span.is_none() => {
            count_plain_admission(options, options.limits.keys_held());
            Verdict::Pass(None)
        }
        decided => {
            options.metrics().set_keys_held(options.limits.keys_held());
            reported_verdict(options, key, decided, span)
        }
    }
}

/// The metrics of an admitted request with nothing else to report: the
/// store's keys `held`, and one more allowed.
#[inline(always)]
pub(super) fn count_plain_admission<C: Clock + Clone, X, K>(
    options: &Options<C, X, K>,
    held: usize,
) {
    let metrics = options.metrics();
    metrics.set_keys_held(held);
    metrics.allowed.increment(1);
}

/// [`verdict`] for a decision with more to do than count: a denial, an
/// error, headers, a hook or a span.
#[inline(never)]
fn reported_verdict<C: Clock + Clone, X, K, B: From<String>>(
    options: &Options<C, X, K>,
    key: &RateKey,
    decided: Result<KeyedDecision, KeyedError>,
    span: Option<&tracing::Span>,
) -> Verdict<B> {
    let limits = &*options.limits;
    let d = match decided {
        Ok(d) => d,
        Err(e) => {
            options.metrics().error.increment(1);
            if let Some(span) = span {
                span.record("outcome", "error");
            }
            // Per request, so at DEBUG while the store is away or full (the
            // fail-over logs going down and coming back once each, and the
            // error counter counts every request) and for a cost that never
            // fits (the client's); any other failure is a fault to look at.
            if e.is_unavailable() || matches!(e, KeyedError::Cost(_) | KeyedError::Full) {
                tracing::debug!(key_hash = key.hash(), error = %e, "rate limit undecided");
            } else {
                tracing::warn!(key_hash = key.hash(), error = %e, "rate limit undecided");
            }
            return if options.shadow {
                Verdict::Pass(None)
            } else {
                Verdict::Refuse(refuse_error(&e, options.limits.store_retry_after()))
            };
        }
    };
    let name = options.members.get(d.binding).map_or("", |n| &**n);
    let outcome = match (d.decision.allowed, options.shadow) {
        (true, _) => Outcome::Allowed,
        (false, false) => Outcome::Denied,
        (false, true) => Outcome::ShadowDenied,
    };
    if let Some(span) = span {
        span.record("outcome", outcome.as_str());
    }
    let metrics = options.metrics();
    match outcome {
        Outcome::Allowed => &metrics.allowed,
        Outcome::Denied => &metrics.denied,
        Outcome::ShadowDenied => &metrics.shadow_denied,
    }
    .increment(1);
    if let Some(hook) = &options.on_decision {
        hook(&RateLimitEvent {
            key,
            decision: &d,
            limit: name,
            outcome,
        });
    }
    match outcome {
        Outcome::Denied => {
            let retry = seconds(d.decision.retry_after(d.now)).max(1);
            // DEBUG: a flood would otherwise write a line per refusal (the
            // denied counter counts them).
            tracing::debug!(
                key_hash = key.hash(),
                limit = name,
                retry_after_s = retry,
                "rate limit reached"
            );
            let set = limits.limits_deciding(key.as_bytes(), d.source);
            let message = format!(
                "Rate limit reached ({name}: {}). Please try again in {retry}s.",
                describe(&set, d.binding)
            );
            let body = error_body(&message, "rate_limit", "rate_limit_exceeded");
            let mut res = respond(StatusCode::TOO_MANY_REQUESTS, body);
            rate_headers(options, &set, name, &d).insert(res.headers_mut());
            res.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(retry));
            Verdict::Refuse(res)
        }
        Outcome::ShadowDenied => {
            tracing::debug!(
                key_hash = key.hash(),
                limit = name,
                "rate limit reached (shadow)"
            );
            Verdict::Pass(options.headers_on_success.then(|| {
                rate_headers(
                    options,
                    &limits.limits_deciding(key.as_bytes(), d.source),
                    name,
                    &d,
                )
            }))
        }
        // Reached only with headers, a hook or a span: `verdict` counts the
        // plain admitted request itself.
        Outcome::Allowed => Verdict::Pass(options.headers_on_success.then(|| {
            rate_headers(
                options,
                &limits.limits_deciding(key.as_bytes(), d.source),
                name,
                &d,
            )
        })),
    }
}

/// An in-memory decision in full, with its figures: whatever the plain
/// admission's shortcut did not answer (a denial, an error, a new key,
/// several limits, headers, a hook, a span, a key over the bound).
#[inline(never)]
pub(super) fn decide_in_memory<C: Clock + Clone, X, K, B: From<String>>(
    options: &Options<C, X, K>,
    m: &MemoryKeyed<C>,
    key: &RateKey,
    cost: u64,
    span: Option<tracing::Span>,
) -> Verdict<B> {
    if !options.key_fits(key) {
        return key_too_long(options, span.as_ref());
    }
    // The decision and what it reports (the events of a denial) in the span.
    let _in = span.as_ref().map(tracing::Span::enter);
    let decided = memory_decision(m, key.as_key_bytes(), cost, true);
    verdict(options, key, decided, span.as_ref())
}

/// A key over the layer's bound, on every backend before it decides:
/// refused 400, or in shadow mode let through undecided; counted as
/// rejected either way.
#[cold]
#[inline(never)]
pub(super) fn key_too_long<C: Clock + Clone, X, K, B: From<String>>(
    options: &Options<C, X, K>,
    span: Option<&tracing::Span>,
) -> Verdict<B> {
    options.metrics().rejected.increment(1);
    if let Some(span) = span {
        span.record("outcome", "rejected");
    }
    if options.shadow {
        return Verdict::Pass(None);
    }
    let message = format!(
        "The rate limit key is longer than {} bytes.",
        options.max_key_len
    );
    let body = error_body(&message, "invalid_request_error", "invalid_request");
    Verdict::Refuse(respond(StatusCode::BAD_REQUEST, body))
}
