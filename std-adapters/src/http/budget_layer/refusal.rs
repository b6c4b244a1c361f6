//! The layer's own answers: a refused reservation (429 with the budget's
//! headers, 400, 503) and malformed requests.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use http_body::Body;
use ratebound_core::budget::{DenyReason, Dimension, Horizon};

use super::metered::{Metered, MeteredBody};
use crate::budget::{ScopedBudgets, ScopedDenied};
use crate::clock::Clock;
use crate::http::headers::{error_body, RATELIMIT, RATELIMIT_POLICY};
use crate::http::layer::LimitRefusal;

pub(super) fn answer_with<B: Body, C: Clock + Clone>(
    status: StatusCode,
    body: String,
) -> Response<MeteredBody<B, C>> {
    let mut res = Response::new(MeteredBody(Metered::Full(Some(Bytes::from(body)))));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res.extensions_mut().insert(LimitRefusal);
    res
}

pub(super) fn refuse<B: Body, C: Clock + Clone>(
    status: StatusCode,
    message: &str,
    kind: &str,
    code: &str,
) -> Response<MeteredBody<B, C>> {
    answer_with(status, error_body(message, kind, code))
}

/// The 429 / 400 / 503 for a refused reservation.
pub(super) async fn denied<B: Body, C: Clock + Clone>(
    budgets: &ScopedBudgets<C>,
    d: ScopedDenied,
) -> Response<MeteredBody<B, C>> {
    match d {
        ScopedDenied::Exhausted { scope, id, denial, limit } => {
            let now = budgets.clock().now();
            let wait = denial.retry_at.duration_after(now).as_secs_ceil().max(1);
            let (what, q, window) = match limit {
                Some(l) => {
                    let what = match l.dimension {
                        Dimension::Requests => "requests",
                        Dimension::Tokens => "tokens",
                        Dimension::Cost => "cost",
                    };
                    (what, Some(l), l.horizon)
                }
                None => ("requests", None, Horizon::MINUTE),
            };
            let per = match window {
                Horizon::CalendarMonth => "per month".to_owned(),
                Horizon::Fixed(d) if d.as_secs() == 60 => "per minute".to_owned(),
                Horizon::Fixed(d) if d.as_secs() == 3_600 => "per hour".to_owned(),
                Horizon::Fixed(d) if d.as_secs() == 86_400 => "per day".to_owned(),
                Horizon::Fixed(d) => format!("per {} s", d.as_secs()),
            };
            let message = match q {
                // Not the budget reached: the store is away and this
                // server alone may not grant that much of it.
                Some(l) if denial.reason == DenyReason::AboveShare => format!(
                    "The budget store is unavailable, and this request needs more {what} ({} {id}) than this server may grant alone: {} {per}. Please try again in {wait}s.",
                    scope.name(),
                    l.max
                ),
                Some(l) => format!(
                    "Budget reached for {what} ({} {id}): {} {per}. Please try again in {wait}s.",
                    scope.name(),
                    l.max
                ),
                None => format!("Budget paused ({} {id}): {:?}. Please try again in {wait}s.", scope.name(), denial.reason),
            };
            let body = serde_json::json!({"error": {"message": message, "type": what, "param": null, "code": "rate_limit_exceeded"}}).to_string();
            let mut res = answer_with(StatusCode::TOO_MANY_REQUESTS, body);
            let h = res.headers_mut();
            h.insert(RETRY_AFTER, HeaderValue::from(wait));
            // Under a share refusal the budget's usage is in the store that
            // is away: no budget headers but Retry-After. Nor when the
            // limit that refused is no longer in the budget's status (the
            // store came back, or the limits changed, since): no figures
            // are better than figures about another limit.
            if let Some(l) = q.filter(|_| denial.reason != DenyReason::AboveShare) {
                let status = budgets.status(scope, &id).await;
                let entry = status.as_ref().and_then(|s| {
                    s.limits.iter().find(|x| x.limit == l)
                });
                if let Some(e) = entry {
                    let reset = e.window_end.duration_after(now).as_secs_ceil();
                    let w = e.window().as_secs();
                    insert_budget_headers(h, what, scope.name(), l.max, e.remaining(), reset, w);
                }
            }
            res
        }
        ScopedDenied::TooLarge { error, .. } => refuse(
            StatusCode::BAD_REQUEST,
            &format!("This request can never fit its budget: {error}. Lower max_tokens or shorten the prompt."),
            "invalid_request_error",
            "request_too_large",
        ),
        // As the rate-limit and model-limit layers' full stores answer.
        ScopedDenied::Full(_) => {
            let mut res = refuse(StatusCode::SERVICE_UNAVAILABLE, &d.to_string(), "server_error", "budget_store_full");
            res.headers_mut().insert(RETRY_AFTER, crate::http::headers::STORE_FULL_RETRY_AFTER);
            res
        }
        // The store's own text (addresses, ACL and script messages) stays
        // in the log: at DEBUG while it is away (per request; the outage
        // is logged once), else WARN (a fault to look at).
        #[cfg(feature = "redis")]
        ScopedDenied::Store(ref e) if e.is_unavailable() => {
            tracing::debug!(error = %e, "budget store unavailable");
            let mut res = refuse(StatusCode::SERVICE_UNAVAILABLE, BUDGET_STORE_AWAY, "server_error", "budget_store_unavailable");
            // When to try again: the fail-over's skip window.
            if let Some(d) = budgets.store_retry_after() {
                res.headers_mut().insert(RETRY_AFTER, crate::http::headers::store_retry_after(d));
            }
            res
        }
        #[cfg(feature = "redis")]
        ScopedDenied::Store(ref e) => {
            tracing::warn!(error = %e, "budget store refused");
            refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The budget store could not decide this request.",
                "server_error",
                "budget_store_error",
            )
        }
        // A settle's answer, never a reservation's: as the store's refusal.
        #[cfg(feature = "redis")]
        ScopedDenied::Unsettled { .. } => {
            tracing::warn!(error = %d, "budget store refused");
            refuse(StatusCode::SERVICE_UNAVAILABLE, BUDGET_STORE_AWAY, "server_error", "budget_store_unavailable")
        }
    }
}

/// What a client is told when the budget store could not answer.
#[cfg(feature = "redis")]
const BUDGET_STORE_AWAY: &str = "The budget store is unavailable. Please try again later.";

/// OpenAI's reset format: `1m30s`, `45s`.
fn reset_text(secs: u64) -> String {
    match (secs / 3_600, secs / 60 % 60, secs % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}

fn insert_budget_headers(
    h: &mut HeaderMap,
    what: &str,
    scope: &str,
    max: u64,
    remaining: u64,
    reset: u64,
    window: u64,
) {
    if what != "cost" {
        let name =
            |k: &str| HeaderName::from_bytes(format!("x-ratelimit-{k}-{what}").as_bytes()).ok();
        if let Some(n) = name("limit") {
            h.insert(n, HeaderValue::from(max));
        }
        if let Some(n) = name("remaining") {
            h.insert(n, HeaderValue::from(remaining));
        }
        if let (Some(n), Ok(v)) = (name("reset"), HeaderValue::from_str(&reset_text(reset))) {
            h.insert(n, v);
        }
    }
    let item = format!("\"{scope}-{what}\"");
    if let Ok(v) = HeaderValue::from_str(&format!("{item};q={max};w={window}")) {
        h.insert(RATELIMIT_POLICY, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("{item};r={remaining};t={reset}")) {
        h.insert(RATELIMIT, v);
    }
}
