//! The service [`RateLimitLayer`](super::RateLimitLayer) makes: in memory
//! the decision is made while `call` runs, and the response future is the
//! inner service's (nothing boxed) unless fields are to be added to a
//! success (headers on success: then it is boxed with them); in Redis it
//! is awaited in a boxed future. Either way the inner service is called
//! after the decision, outside its span.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower::Service;
#[cfg(feature = "redis")]
use tracing::Instrument;

use super::answer::RateHeaders;
use super::verdict::{count_plain_admission, decide_in_memory, Verdict};
#[cfg(feature = "redis")]
use super::verdict::{key_too_long, verdict};
use super::{ExtractKey, Options, RateKey, RequestCost};
use crate::clock::Clock;
use crate::http::headers::error_body;
use crate::http::layer::respond;
use crate::keyed::{memory_admits, AnyKeyedLimiter};

/// The service made by [`RateLimitLayer`](super::RateLimitLayer).
pub struct RateLimit<S, C: Clock + Clone, X, K> {
    inner: S,
    options: Arc<Options<C, X, K>>,
}

impl<S, C: Clock + Clone, X, K> RateLimit<S, C, X, K> {
    pub(super) fn new(inner: S, options: Arc<Options<C, X, K>>) -> Self {
        RateLimit { inner, options }
    }
}

impl<S: Clone, C: Clock + Clone, X, K> Clone for RateLimit<S, C, X, K> {
    fn clone(&self) -> Self {
        RateLimit {
            inner: self.inner.clone(),
            options: Arc::clone(&self.options),
        }
    }
}

type BoxedFuture<B, E> = Pin<Box<dyn Future<Output = Result<Response<B>, E>> + Send>>;

pin_project! {
    /// The response future of [`RateLimit`].
    #[project = Proj]
    pub struct ResponseFuture<F, B, E> {
        #[pin]
        kind: Kind<F, B, E>,
    }
}

pin_project! {
    // `Admitted` holds the inner future alone, so where the inner future
    // has room beside a niche for the other variants (axum's route future
    // has: see the test below), this enum is the inner future's size and
    // the wrappers above it move no more bytes than they would without the
    // layer.
    #[project = KindProj]
    enum Kind<F, B, E> {
        Refused { res: Option<Box<Response<B>>> },
        Admitted { #[pin] fut: F },
        // `None` once it has answered: polled again, it stays pending (as
        // `Refused` does) rather than resuming a finished `async` block.
        Boxed { fut: Option<BoxedFuture<B, E>> },
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Refused { res } => match res.take() {
                Some(r) => Poll::Ready(Ok(*r)),
                None => Poll::Pending, // polled after completion
            },
            // The service's answer as it comes (not moved through this
            // frame).
            KindProj::Admitted { fut } => fut.poll(cx),
            KindProj::Boxed { fut } => match fut {
                Some(f) => {
                    let out = std::task::ready!(f.as_mut().poll(cx));
                    *fut = None;
                    Poll::Ready(out)
                }
                None => Poll::Pending, // polled after completion
            },
        }
    }
}

#[cfg(feature = "redis")]
impl<S, C, X, K> RateLimit<S, C, X, K>
where
    C: Clock + Clone + Send + Sync + 'static,
    X: Send + Sync + 'static,
    K: Send + Sync + 'static,
{
    /// The Redis path, apart from `call`: its future is large, and built in
    /// `call` it would enlarge the stack frame of every in-memory request.
    #[inline(never)]
    fn call_redis<ReqB, ResB>(
        &mut self,
        req: Request<ReqB>,
        key: RateKey,
        cost: u64,
        span: Option<tracing::Span>,
    ) -> ResponseFuture<S::Future, ResB, S::Error>
    where
        S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
        S::Future: Send,
        S::Error: Send,
        ReqB: Send + 'static,
        ResB: From<String> + Send + 'static,
    {
        // The clone is not ready; the ready one (self.inner) serves
        // this call once the limits have answered.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let options = Arc::clone(&self.options);
        let in_span = span.clone().unwrap_or_else(tracing::Span::none);
        let decide = async move {
            if !options.key_fits(&key) {
                return (key_too_long(&options, span.as_ref()), inner, req);
            }
            let decided = options.limits.check(key.as_bytes(), cost).await;
            (verdict(&options, &key, decided, span.as_ref()), inner, req)
        }
        .instrument(in_span);
        let fut = async move {
            let (verdict, mut inner, req) = decide.await;
            match verdict {
                Verdict::Refuse(res) => Ok(res),
                Verdict::Pass(headers) => {
                    let mut out = inner.call(req).await;
                    if let (Ok(res), Some(h)) = (&mut out, headers) {
                        h.insert(res.headers_mut());
                    }
                    out
                }
            }
        };
        ResponseFuture {
            kind: Kind::Boxed {
                fut: Some(Box::pin(fut)),
            },
        }
    }
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
    type Future = ResponseFuture<S::Future, ResB, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    // Kept out of line: inlined into axum's response-mapping wrapper, the
    // future it returns went through one more temporary on the way out (a
    // copy of the whole future per request, seen in callgrind on x86-64),
    // where called it is written straight into the caller's slot.
    #[inline(never)]
    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        // The commonest request (admitted, nothing to report but the count)
        // runs through this function alone; a rejection, a span and a full
        // decision are out of line, so the code a busy service runs stays
        // small. The inner service is called last, outside the span.
        let key = match self.options.extract.extract(&req) {
            Ok(Some(key)) => key,
            Ok(None) => return self.admitted(req, None),
            Err(r) => return rejected(&self.options, r),
        };
        let cost = self.options.cost.cost(&req);
        // Built only when DEBUG is on: a disabled span still costs its
        // bookkeeping on every request.
        let span = if tracing::enabled!(tracing::Level::DEBUG) {
            Some(decision_span(&self.options, &key))
        } else {
            None
        };
        match &*self.options.limits {
            AnyKeyedLimiter::Memory(m) => {
                // Without the decision's figures; any other answer is
                // decided again in full (a denial wrote nothing, so nothing
                // is counted twice).
                // A key over the layer's bound is answered by the full
                // decision (apart, so this function stays small).
                if span.is_none()
                    && self.options.counts_only()
                    && self.options.key_fits(&key)
                    && memory_admits(m, key.as_key_bytes(), cost)
                {
                    count_plain_admission(&self.options, m.held());
                    return self.admitted(req, None);
                }
                match decide_in_memory(&self.options, m, &key, cost, span) {
                    Verdict::Pass(headers) => self.admitted(req, headers),
                    Verdict::Refuse(res) => refused(res),
                }
            }
            #[cfg(feature = "redis")]
            AnyKeyedLimiter::Redis(_) => self.call_redis(req, key, cost, span),
        }
    }
}

impl<S, C: Clock + Clone, X, K> RateLimit<S, C, X, K> {
    /// The future of an admitted request: the inner service's, built where
    /// it is returned (each path that admits returns it at once), or boxed
    /// with the fields to add to its response.
    #[inline(always)]
    fn admitted<ReqB, ResB>(
        &mut self,
        req: Request<ReqB>,
        headers: Option<RateHeaders>,
    ) -> ResponseFuture<S::Future, ResB, S::Error>
    where
        S: Service<Request<ReqB>, Response = Response<ResB>>,
        S::Future: Send + 'static,
        ResB: 'static,
        S::Error: 'static,
    {
        let fut = self.inner.call(req);
        match headers {
            None => ResponseFuture {
                kind: Kind::Admitted { fut },
            },
            Some(h) => with_headers(fut, h),
        }
    }
}

/// `fut` boxed with `headers`, which it adds to its response: one
/// allocation, made only when a success carries fields (so the common
/// future stays the inner future's size).
#[inline(never)]
fn with_headers<F, B, E>(fut: F, headers: RateHeaders) -> ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>> + Send + 'static,
{
    ResponseFuture {
        kind: Kind::Boxed {
            fut: Some(Box::pin(async move {
                let mut out = fut.await;
                if let Ok(res) = &mut out {
                    headers.insert(res.headers_mut());
                }
                out
            })),
        },
    }
}

/// A request answered here, without calling the service (a rejection, a
/// denial, an error).
fn refused<F, B, E>(res: Response<B>) -> ResponseFuture<F, B, E> {
    ResponseFuture {
        kind: Kind::Refused {
            res: Some(Box::new(res)),
        },
    }
}

/// The answer to a request whose key could not be read (a rejection).
#[cold]
#[inline(never)]
fn rejected<C: Clock + Clone, X, K, F, B: From<String>, E>(
    options: &Options<C, X, K>,
    r: super::KeyRejection,
) -> ResponseFuture<F, B, E> {
    options.metrics().rejected.increment(1);
    let body = error_body(&r.message, "invalid_request_error", "invalid_request");
    refused(respond(r.status, body))
}

/// The span of one decision (DEBUG on): the limit, the key's hash, and
/// the outcome once known.
#[cold]
#[inline(never)]
fn decision_span<C: Clock + Clone, X, K>(
    options: &Options<C, X, K>,
    key: &RateKey,
) -> tracing::Span {
    tracing::debug_span!(
        "rate_limit",
        limit = &*options.name,
        key_hash = key.hash(),
        outcome = tracing::field::Empty
    )
}

#[cfg(all(test, feature = "axum"))]
mod tests {
    use std::convert::Infallible;

    use axum::body::Body;
    use axum::routing::future::RouteFuture;

    use super::ResponseFuture;

    /// In front of an axum route, an admitted request's future is the
    /// route's own future in size: the other variants fit beside its niche,
    /// so what moves it moves no more bytes than without the layer.
    #[test]
    fn response_future_is_the_route_futures_size() {
        assert_eq!(
            std::mem::size_of::<ResponseFuture<RouteFuture<Infallible>, Body, Infallible>>(),
            std::mem::size_of::<RouteFuture<Infallible>>()
        );
    }
}
