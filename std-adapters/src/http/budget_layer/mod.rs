//! The budget layer: token, request and money budgets for OpenAI- and
//! Anthropic-compatible APIs. Each call reserves its estimate in every
//! budget that applies and settles with the usage the model reports.
//!
//! For `POST` to `…/chat/completions`, `…/completions`, `…/responses` and
//! `…/messages` (other paths pass untouched):
//!
//! 1. The body is read (up to [`BudgetLayer::max_body`], else 413) and
//!    parsed ([`LlmRequest`]): not a JSON object, a repeated top-level key,
//!    no `model` or a malformed output cap → 400. The model is set as the
//!    [`Model`] extension for the model-limit layer inside.
//! 2. The estimate ([`Estimate::from_prompt`](ratebound_core::budget::llm::Estimate::from_prompt): the prompt's characters / 4
//!    plus framing, and the output cap or the configured default) is priced
//!    from the price table and reserved in each budget of the caller's key,
//!    user, group and model ([`ScopedBudgets`]). A request that can never
//!    fit (over a per-request cap, or a whole window) → 400
//!    `request_too_large`; no room now → 429 with `Retry-After` and, when a
//!    window limit binds and the budget's status can be read, the IETF
//!    `RateLimit-Policy` / `RateLimit` fields for it plus, for a token or
//!    request limit, OpenAI's
//!    `x-ratelimit-{limit,remaining,reset}-{tokens,requests}` (a money
//!    limit has no OpenAI header; pacing or a full reservation table gives
//!    `Retry-After` only). A model without a price, where a budget counts
//!    money → 400 `model_not_priced`. A Redis budget store away under
//!    `closed` → 503 `budget_store_unavailable` with `Retry-After` (the
//!    fail-over's skip window); one that refused the call → 500
//!    `budget_store_error`; the table of budgets full → 503
//!    `budget_store_full` with `Retry-After: 1`.
//! 3. A streaming OpenAI chat request that did not ask for usage gets
//!    `stream_options.include_usage` (its final event carries the usage).
//!    The forwarded request has one exact `Content-Length` and no
//!    `Accept-Encoding` (the layer reads the answer).
//! 4. The response passes through frame by frame, unbuffered; its usage is
//!    read as it passes ([`UsageScan`]). When the body ends — or the client
//!    goes away — the holds settle by core's rule ([`Ending`]): the
//!    reported usage exactly; an error status (or no answer), the request
//!    only; no usage (a cut-off stream), the prompt as reported (else as
//!    estimated) plus the larger of the output cap and the output seen. A response refused by a limit layer inside
//!    ([`LimitRefusal`]) releases the holds: nothing is charged.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;
use ratebound_core::budget::llm::{Ending, Price};
use ratebound_core::budget::Usage;
use tower::{Layer, Service};

use super::layer::{LimitRefusal, Model};
use super::llm_request::{Api, LlmRequest};
use super::usage::UsageScan;

mod metered;
mod refusal;

use crate::budget::{Payer, ScopedBudgets};
use crate::clock::Clock;
use crate::model_limit::Identity;
pub use metered::MeteredBody;
use metered::{Metered, Settle};
use refusal::{denied, refuse};

/// The API key's id, as a request extension set by auth middleware: the
/// name the per-key budget goes by (never the secret itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyId(pub String);

/// What one call reserved and was charged, for [`BudgetLayer::on_settle`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettleEvent {
    /// The user.
    pub user: String,
    /// The model.
    pub model: String,
    /// What the reservation held.
    pub reserved: Usage,
    /// How the call ended.
    pub ending: Ending,
    /// What was charged to each budget.
    pub charged: Usage,
    /// False when a budget store could not record the charge (logged).
    pub recorded: bool,
}

type SettleHook = Arc<dyn Fn(&SettleEvent) + Send + Sync>;
type PromptCounter = Arc<dyn Fn(&LlmRequest) -> Option<u64> + Send + Sync>;

struct Options {
    prices: BTreeMap<String, Price>,
    default_max_output: u64,
    max_body: usize,
    on_settle: Option<SettleHook>,
    count_prompt: Option<PromptCounter>,
}

/// The tower layer (see the [module docs](self)). Clones share the budgets.
pub struct BudgetLayer<C: Clock + Clone> {
    budgets: Arc<ScopedBudgets<C>>,
    options: Options,
}

impl<C: Clock + Clone> BudgetLayer<C> {
    /// Budgets `budgets`, costs from `prices` (model → price in
    /// micro-units per million tokens); an output cap of 4 096 tokens when
    /// a request sets none; bodies up to 1 MiB.
    pub fn new(budgets: Arc<ScopedBudgets<C>>, prices: BTreeMap<String, Price>) -> Self {
        BudgetLayer {
            budgets,
            options: Options {
                prices,
                default_max_output: 4_096,
                max_body: 1 << 20,
                on_settle: None,
                count_prompt: None,
            },
        }
    }

    /// The output tokens reserved for a request that sets no cap.
    pub fn default_max_output(mut self, tokens: u64) -> Self {
        self.options.default_max_output = tokens;
        self
    }

    /// The largest request body read (larger: 413).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.options.max_body = bytes;
        self
    }

    /// Count a request's prompt tokens with `f` (an exact tokenizer for the
    /// model, say) instead of the characters / 4 heuristic; `None` from `f`
    /// falls back to the heuristic. The output cap is added either way.
    pub fn count_prompt(
        mut self,
        f: impl Fn(&LlmRequest) -> Option<u64> + Send + Sync + 'static,
    ) -> Self {
        self.options.count_prompt = Some(Arc::new(f));
        self
    }

    /// Called once per settled call: at once when its budgets are in memory,
    /// after the store answers when one is in Redis.
    pub fn on_settle(mut self, f: impl Fn(&SettleEvent) + Send + Sync + 'static) -> Self {
        self.options.on_settle = Some(Arc::new(f));
        self
    }
}

impl<C: Clock + Clone> Clone for BudgetLayer<C> {
    fn clone(&self) -> Self {
        BudgetLayer {
            budgets: Arc::clone(&self.budgets),
            options: Options {
                prices: self.options.prices.clone(),
                default_max_output: self.options.default_max_output,
                max_body: self.options.max_body,
                on_settle: self.options.on_settle.clone(),
                count_prompt: self.options.count_prompt.clone(),
            },
        }
    }
}

impl<S, C: Clock + Clone> Layer<S> for BudgetLayer<C> {
    type Service = BudgetService<S, C>;
    fn layer(&self, inner: S) -> Self::Service {
        let l = self.clone();
        BudgetService {
            inner,
            budgets: l.budgets,
            options: Arc::new(l.options),
        }
    }
}

/// The service made by [`BudgetLayer`].
pub struct BudgetService<S, C: Clock + Clone> {
    inner: S,
    budgets: Arc<ScopedBudgets<C>>,
    options: Arc<Options>,
}

impl<S: Clone, C: Clock + Clone> Clone for BudgetService<S, C> {
    fn clone(&self) -> Self {
        BudgetService {
            inner: self.inner.clone(),
            budgets: Arc::clone(&self.budgets),
            options: Arc::clone(&self.options),
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, C, ReqB, ResB> Service<Request<ReqB>> for BudgetService<S, C>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    C: Clock + Clone,
    ReqB: Body<Data = Bytes> + From<Bytes> + Send + 'static,
    ReqB::Error: Into<BoxError>,
    ResB: Body<Data = Bytes> + Send + 'static,
{
    type Response = Response<MeteredBody<ResB, C>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let api = Api::from_path(req.uri().path()).filter(|_| req.method() == http::Method::POST);
        let Some(api) = api else {
            return Box::pin(async move { Ok(inner.call(req).await?.map(MeteredBody::pass)) });
        };
        let budgets = Arc::clone(&self.budgets);
        let options = Arc::clone(&self.options);
        Box::pin(async move {
            let Some(identity) = req.extensions().get::<Identity>().cloned() else {
                return Ok(refuse(
                    StatusCode::UNAUTHORIZED,
                    "missing credentials",
                    "authentication_error",
                    "invalid_api_key",
                ));
            };
            let key = req.extensions().get::<KeyId>().map(|k| k.0.clone());
            let (mut parts, body) = req.into_parts();
            let bytes = match http_body_util::Limited::new(body, options.max_body)
                .collect()
                .await
            {
                Ok(b) => b.to_bytes(),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    let m = format!("request body over {} bytes", options.max_body);
                    return Ok(refuse(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        &m,
                        "invalid_request_error",
                        "body_too_large",
                    ));
                }
                Err(e) => {
                    let m = format!("could not read the request body: {e}");
                    return Ok(refuse(
                        StatusCode::BAD_REQUEST,
                        &m,
                        "invalid_request_error",
                        "invalid_body",
                    ));
                }
            };
            let request = match LlmRequest::parse(&bytes) {
                Ok(r) => r,
                Err(e) => {
                    return Ok(refuse(
                        StatusCode::BAD_REQUEST,
                        &e.to_string(),
                        "invalid_request_error",
                        "invalid_request",
                    ));
                }
            };
            parts.extensions.insert(Model(request.model.clone()));
            let payer = Payer {
                key: key.as_deref(),
                user: &identity.user_id,
                group: identity.group(),
                model: &request.model,
            };
            if !budgets.applies_to(&payer) {
                let req = Request::from_parts(parts, ReqB::from(bytes));
                return Ok(inner.call(req).await?.map(MeteredBody::pass));
            }
            let price = match options.prices.get(&request.model) {
                Some(p) => *p,
                None if budgets.limits_cost(&payer) => {
                    let m = format!(
                        "the model {:?} has no price, and a budget of this caller counts money",
                        request.model
                    );
                    return Ok(refuse(
                        StatusCode::BAD_REQUEST,
                        &m,
                        "invalid_request_error",
                        "model_not_priced",
                    ));
                }
                None => Price::default(),
            };
            let mut estimate = request.estimate(options.default_max_output);
            if let Some(n) = options.count_prompt.as_ref().and_then(|f| f(&request)) {
                estimate.input = n;
            }
            let reserved = estimate.usage(&price);
            let hold = match budgets.reserve(&payer, reserved).await {
                Ok(h) => h,
                Err(d) => return Ok(denied(&budgets, d).await),
            };
            let body = request.rewrite_for(api, &bytes).unwrap_or(bytes);
            // The body is whole now, maybe longer: one exact length, no
            // chunking, for whatever forwards it inside. And an answer the
            // layer can read: not compressed.
            parts.headers.remove(http::header::TRANSFER_ENCODING);
            parts.headers.insert(
                http::header::CONTENT_LENGTH,
                http::HeaderValue::from(body.len()),
            );
            parts.headers.remove(http::header::ACCEPT_ENCODING);
            let req = Request::from_parts(parts, ReqB::from(body));
            let settle = Settle {
                hold: Some(hold),
                estimate,
                price,
                reserved,
                user: identity.user_id.clone(),
                model: request.model.clone(),
                on_settle: options.on_settle.clone(),
            };
            // Dropped here (the client went away while the model may be
            // running): `settle` drops, charging the reservation as unreported.
            let res = match inner.call(req).await {
                Ok(r) => r,
                Err(e) => {
                    settle.finish(Ending::Failed); // no answer at all
                    return Err(e);
                }
            };
            if res.extensions().get::<LimitRefusal>().is_some() {
                settle.release();
                return Ok(res.map(MeteredBody::pass));
            }
            if let Some(ending) = Ending::from_status(res.status().as_u16()) {
                settle.finish(ending);
                return Ok(res.map(MeteredBody::pass));
            }
            let sse = res
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("text/event-stream"));
            Ok(res.map(|b| {
                MeteredBody(Metered::Scan {
                    inner: b,
                    scan: UsageScan::new(sse),
                    settle: Some(Box::new(settle)),
                })
            }))
        })
    }
}
