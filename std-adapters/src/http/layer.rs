//! The tower layer: model-level limits in front of any HTTP service.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{header::CONTENT_TYPE, HeaderValue, Request, Response, StatusCode};
use tower::{Layer, Service};

use super::headers::{
    error_body, insert_quota_headers, insert_retry_after, rate_limited_body, store_retry_after,
    STORE_AWAY, STORE_FAULT, STORE_FULL_RETRY_AFTER,
};
use crate::model_limit::{AdmitError, Identity, ModelDecision, Outcome};

/// The `limit` label of the model-limit layer's metrics.
const MODEL_LIMITS: &str = "model_limits";

/// Who and which model a request is for, as the layer sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    /// Who.
    pub identity: Identity,
    /// The model.
    pub model: String,
}

/// The model of a request, set as a request extension by whatever read it
/// (e.g. a middleware that parsed the JSON body's `model`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Model(pub String);

/// Marks a response a limit layer wrote when it refused a request (429,
/// 400, 401, 503): the request never reached the service, so a budget
/// layer outside releases its holds instead of charging them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitRefusal;

/// Why a request's subject could not be found: answered with `status` and an
/// OpenAI-style error, without calling the service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRejection {
    /// The status (e.g. 401 without credentials, 400 without a model).
    pub status: StatusCode,
    /// The message.
    pub message: String,
}

impl KeyRejection {
    /// A rejection with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        KeyRejection {
            status,
            message: message.into(),
        }
    }
}

/// Finds a request's [`Subject`]: `Ok(None)` lets the request through
/// unlimited (e.g. health checks), `Err` answers it at once.
///
/// Closures `Fn(&Request<B>) -> Result<Option<Subject>, KeyRejection>`
/// implement it; [`FromExtensions`] reads what an auth middleware set.
pub trait ExtractSubject<B>: Send + Sync + 'static {
    /// The subject of `req`.
    fn extract(&self, req: &Request<B>) -> Result<Option<Subject>, KeyRejection>;
}

impl<B, F> ExtractSubject<B> for F
where
    F: Fn(&Request<B>) -> Result<Option<Subject>, KeyRejection> + Send + Sync + 'static,
{
    fn extract(&self, req: &Request<B>) -> Result<Option<Subject>, KeyRejection> {
        self(req)
    }
}

/// Reads an [`Identity`] extension (set by auth middleware) and the model
/// from a [`Model`] extension, else from the header `model_header`.
/// No identity: 401. No model: 400.
#[derive(Clone, Debug)]
pub struct FromExtensions {
    model_header: Option<http::HeaderName>,
}

impl FromExtensions {
    /// Identity and [`Model`] from extensions only.
    pub fn new() -> Self {
        FromExtensions { model_header: None }
    }

    /// Fall back to this header for the model.
    pub fn with_model_header(mut self, name: http::HeaderName) -> Self {
        self.model_header = Some(name);
        self
    }
}

impl Default for FromExtensions {
    fn default() -> Self {
        Self::new()
    }
}

impl<B> ExtractSubject<B> for FromExtensions {
    fn extract(&self, req: &Request<B>) -> Result<Option<Subject>, KeyRejection> {
        let identity =
            req.extensions().get::<Identity>().cloned().ok_or_else(|| {
                KeyRejection::new(StatusCode::UNAUTHORIZED, "missing credentials")
            })?;
        let from_header = || -> Result<Option<String>, KeyRejection> {
            let Some(v) = self
                .model_header
                .as_ref()
                .and_then(|n| req.headers().get(n))
            else {
                return Ok(None);
            };
            v.to_str().map(|s| Some(s.to_owned())).map_err(|_| {
                KeyRejection::new(
                    StatusCode::BAD_REQUEST,
                    "the model header is not visible ASCII",
                )
            })
        };
        let model = match req.extensions().get::<Model>() {
            Some(m) => Some(m.0.clone()),
            None => from_header()?,
        }
        .filter(|m| !m.is_empty())
        .ok_or_else(|| KeyRejection::new(StatusCode::BAD_REQUEST, "missing model"))?;
        Ok(Some(Subject { identity, model }))
    }
}

pub use crate::model_limit::{AdmitRequests, Admitted};

/// What a request's admission looked like, for [`ModelLimitLayer::on_decision`].
#[derive(Debug)]
pub struct DecisionEvent<'a> {
    /// Whose and which model.
    pub subject: &'a Subject,
    /// The decision.
    pub decision: &'a ModelDecision,
    /// True in shadow mode: a denial was reported, not enforced.
    pub shadow: bool,
}

type Hook = Arc<dyn Fn(&DecisionEvent<'_>) + Send + Sync>;

impl<X> Clone for Options<X> {
    fn clone(&self) -> Self {
        Options {
            extract: Arc::clone(&self.extract),
            shadow: self.shadow,
            headers_on_success: self.headers_on_success,
            classify: self.classify,
            on_decision: self.on_decision.clone(),
        }
    }
}

struct Options<X> {
    extract: Arc<X>,
    shadow: bool,
    headers_on_success: bool,
    classify: fn(StatusCode) -> Outcome,
    on_decision: Option<Hook>,
}

/// A tower [`Layer`] enforcing model-level limits: rejects over-limit
/// requests with 429, an OpenAI-style error and rate-limit headers; adds the
/// remaining-quota headers to admitted responses; settles each request's
/// success slot by the response status.
///
/// Clones (and the services it makes, one per connection) share one store:
/// the limit holds across connections, unlike tower's own `RateLimitLayer`
/// (tower #764), which counts per service instance.
///
/// The response body type must be buildable from a `String` (axum's `Body`,
/// `http_body_util::Full<Bytes>`, `String`).
pub struct ModelLimitLayer<A, X> {
    admit: Arc<A>,
    options: Options<X>,
}

impl<A, X> Clone for ModelLimitLayer<A, X> {
    fn clone(&self) -> Self {
        ModelLimitLayer {
            admit: Arc::clone(&self.admit),
            options: self.options.clone(),
        }
    }
}

impl<A: AdmitRequests, X> ModelLimitLayer<A, X> {
    /// A layer deciding with `admit` for subjects found by `extract`.
    pub fn new(admit: Arc<A>, extract: X) -> Self {
        ModelLimitLayer {
            admit,
            options: Options {
                extract: Arc::new(extract),
                shadow: false,
                headers_on_success: true,
                classify: |s| Outcome::from_status(s.as_u16()),
                on_decision: None,
            },
        }
    }

    /// Shadow mode: evaluate, count, report (headers, [`on_decision`](Self::on_decision),
    /// a `tracing` event) but never reject. Turn it on to learn what a limit
    /// would do before enforcing it.
    pub fn shadow(mut self, on: bool) -> Self {
        self.options.shadow = on;
        self
    }

    /// Add the quota headers to admitted responses too (default: on).
    pub fn headers_on_success(mut self, on: bool) -> Self {
        self.options.headers_on_success = on;
        self
    }

    /// How a response status settles the success slot (default: < 400 is a success).
    pub fn classify(mut self, f: fn(StatusCode) -> Outcome) -> Self {
        self.options.classify = f;
        self
    }

    /// Called with every decision (admitted, denied, or shadow-denied).
    pub fn on_decision(mut self, f: impl Fn(&DecisionEvent<'_>) + Send + Sync + 'static) -> Self {
        self.options.on_decision = Some(Arc::new(f));
        self
    }
}

impl<S, A, X> Layer<S> for ModelLimitLayer<A, X> {
    type Service = ModelLimitService<S, A, X>;
    fn layer(&self, inner: S) -> Self::Service {
        ModelLimitService {
            inner,
            admit: Arc::clone(&self.admit),
            options: Arc::new(self.options.clone()),
        }
    }
}

/// The service made by [`ModelLimitLayer`].
pub struct ModelLimitService<S, A, X> {
    inner: S,
    admit: Arc<A>,
    options: Arc<Options<X>>,
}

impl<S: Clone, A, X> Clone for ModelLimitService<S, A, X> {
    fn clone(&self) -> Self {
        ModelLimitService {
            inner: self.inner.clone(),
            admit: Arc::clone(&self.admit),
            options: Arc::clone(&self.options),
        }
    }
}

/// A refusal: `status`, a JSON `body`, marked [`LimitRefusal`].
pub(crate) fn respond<B: From<String>>(status: StatusCode, body: String) -> Response<B> {
    let mut res = Response::new(B::from(body));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res.extensions_mut().insert(LimitRefusal);
    res
}

impl<S, A, X, ReqB, ResB> Service<Request<ReqB>> for ModelLimitService<S, A, X>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    A: AdmitRequests,
    X: ExtractSubject<ReqB>,
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
        if !self.admit.enabled() {
            return Box::pin(inner.call(req));
        }
        let subject = match self.options.extract.extract(&req) {
            Ok(Some(s)) => s,
            Ok(None) => return Box::pin(inner.call(req)),
            Err(r) => {
                let kind = if r.status == StatusCode::UNAUTHORIZED {
                    "authentication_error"
                } else {
                    "invalid_request_error"
                };
                let body = error_body(&r.message, kind, "invalid_request");
                return Box::pin(std::future::ready(Ok(respond(r.status, body))));
            }
        };
        let admit = Arc::clone(&self.admit);
        let options = Arc::clone(&self.options);
        Box::pin(async move {
            let admission = match admit.admit(&subject.identity, &subject.model).await {
                Ok(a) => a,
                Err(e) if e.is_client_error() => {
                    crate::telemetry::decision(MODEL_LIMITS, "error");
                    let body =
                        error_body(&e.to_string(), "invalid_request_error", "invalid_request");
                    return Ok(respond(StatusCode::BAD_REQUEST, body));
                }
                Err(e) => {
                    crate::telemetry::decision(MODEL_LIMITS, "error");
                    // Per request: at DEBUG while the store is away or full
                    // (the fail-over logs an outage once; the error counter
                    // counts each request), else WARN (a fault to look at).
                    if matches!(e, AdmitError::Unavailable(_) | AdmitError::Store(_)) {
                        tracing::debug!(user = %subject.identity.user_id, error = %e, "model limit store refused");
                    } else {
                        tracing::warn!(user = %subject.identity.user_id, error = %e, "model limit store refused");
                    }
                    if options.shadow {
                        return inner.call(req).await;
                    }
                    // The store's own error text is for the log above, not
                    // the client. A store away or full says when to try
                    // again (as the rate-limit layer's do): after the
                    // fail-over's skip window, or in a second.
                    let (status, code, message, retry) = match e {
                        AdmitError::Unavailable(_) => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "rate_limit_store_unavailable",
                            STORE_AWAY.to_owned(),
                            admit.store_retry_after().map(store_retry_after),
                        ),
                        AdmitError::StoreError(_) => (
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "rate_limit_store_error",
                            STORE_FAULT.to_owned(),
                            None,
                        ),
                        _ => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "rate_limit_store_full",
                            e.to_string(),
                            Some(STORE_FULL_RETRY_AFTER),
                        ),
                    };
                    let body = error_body(&message, "server_error", code);
                    let mut res = respond(status, body);
                    if let Some(v) = retry {
                        res.headers_mut().insert(http::header::RETRY_AFTER, v);
                    }
                    return Ok(res);
                }
            };
            let decision = *admission.decision();
            let quota = *admission.quota();
            let outcome = match (decision.allowed(), options.shadow) {
                (true, _) => "allowed",
                (false, false) => "denied",
                (false, true) => "shadow_denied",
            };
            crate::telemetry::decision(MODEL_LIMITS, outcome);
            if let Some(hook) = &options.on_decision {
                hook(&DecisionEvent {
                    subject: &subject,
                    decision: &decision,
                    shadow: options.shadow,
                });
            }
            if !decision.allowed() {
                let (policy, _) = decision.binding();
                // DEBUG: a flood would otherwise write a line per refusal
                // (the denied counter counts them).
                tracing::debug!(
                    user = %subject.identity.user_id,
                    model = %subject.model,
                    policy = policy.name(),
                    retry_after_ms = decision.retry_after().as_millis(),
                    shadow = options.shadow,
                    "model limit reached"
                );
                if !options.shadow {
                    let body = rate_limited_body(&subject.model, &quota, &decision);
                    let mut res = respond(StatusCode::TOO_MANY_REQUESTS, body);
                    insert_quota_headers(res.headers_mut(), &quota, &decision);
                    insert_retry_after(res.headers_mut(), &decision);
                    return Ok(res);
                }
            }
            // Dropped here (the client went away): the admission's drop
            // settles it as a failure.
            let result = inner.call(req).await;
            let outcome = match &result {
                Ok(res) => (options.classify)(res.status()),
                Err(_) => Outcome::Failure,
            };
            if decision.allowed() {
                admission.settle(outcome).await;
            } else {
                drop(admission); // a shadow denial holds nothing
            }
            result.map(|mut res| {
                if options.headers_on_success || options.shadow {
                    insert_quota_headers(res.headers_mut(), &quota, &decision);
                }
                res
            })
        })
    }
}
