//! The gateway's own handlers: who is calling (the API key, read before
//! the limits) and the chat completions route (the upstream, or the
//! built-in fake).

use std::sync::Arc;
use std::time::Duration;

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ratebound_std::http::budget_layer::KeyId;
use ratebound_std::http::headers::error_body;
use ratebound_std::http::upstream::{UpstreamError, UpstreamLimits};
use ratebound_std::model_limit::Identity;
use ratebound_std::retry::RetryPolicy;

use super::fake_upstream::fake_upstream;
use super::reload::Keys;

/// Requests larger than this are refused before being parsed.
pub(crate) const MAX_BODY: usize = 1 << 20;

/// What the handlers share: the API keys, the upstream and how to call it.
pub(crate) struct Gateway {
    /// Replaced whole by a reload.
    pub(crate) keys: Keys,
    pub(crate) upstream: Option<String>,
    /// Sent with every upstream call (its credentials).
    pub(crate) upstream_headers: reqwest::header::HeaderMap,
    pub(crate) client: reqwest::Client,
    pub(crate) retry: RetryPolicy,
    pub(crate) body_timeout: Duration,
}

pub(crate) fn json_error(status: StatusCode, message: &str, kind: &str, code: &str) -> Response {
    let mut res = (status, error_body(message, kind, code)).into_response();
    res.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    res
}

/// Auth: the API key (`Authorization: Bearer …`, the scheme in any case)
/// becomes an `Identity` and a `KeyId`; the body is read within the body
/// timeout. The budget layer reads the model from it.
pub(crate) async fn identify(State(gw): State<Arc<Gateway>>, req: Request, next: Next) -> Response {
    let key = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, k)| k.trim());
    let found = key.and_then(|k| {
        let keys = gw.keys.read().unwrap_or_else(|p| p.into_inner());
        keys.get(k).cloned()
    });
    let Some(k) = found else {
        return json_error(
            StatusCode::UNAUTHORIZED,
            "invalid API key",
            "authentication_error",
            "invalid_api_key",
        );
    };
    let mut identity = Identity::user(k.user.clone());
    identity.user_group = k.group.clone();
    let key_id = KeyId(k.id.clone().unwrap_or_else(|| k.user.clone()));
    let (mut parts, body) = req.into_parts();
    let bytes = match tokio::time::timeout(gw.body_timeout, to_bytes(body, MAX_BODY)).await {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => {
            return json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body over 1 MiB",
                "invalid_request_error",
                "body_too_large",
            )
        }
        Err(_) => {
            return json_error(
                StatusCode::REQUEST_TIMEOUT,
                "the request body was not sent in time",
                "invalid_request_error",
                "body_timeout",
            )
        }
    };
    parts.extensions.insert(identity);
    parts.extensions.insert(key_id);
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Forward to the upstream (retrying 408/429/5xx, waiting at least what its
/// rate-limit headers say), or answer from the built-in fake.
pub(crate) async fn completions(State(gw): State<Arc<Gateway>>, uri: Uri, body: Bytes) -> Response {
    let Some(url) = gw.upstream.clone() else {
        return fake_upstream(&body);
    };
    let url = format!("{}{}", url.trim_end_matches('/'), uri.path());
    let sent = gw
        .retry
        .run(|| {
            let req = gw
                .client
                .post(&url)
                .headers(gw.upstream_headers.clone())
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
            // Streamed through as it arrives (SSE included): the budget layer
            // reads the usage on the way.
            let status = res.status();
            let kind = res
                .headers()
                .get("content-type")
                .cloned()
                .unwrap_or(HeaderValue::from_static("application/json"));
            let mut out = (status, Body::from_stream(res.bytes_stream())).into_response();
            out.headers_mut().insert("content-type", kind);
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
