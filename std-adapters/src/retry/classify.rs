//! How errors are classified: the [`Classify`] trait, errors marked
//! retryable, and lists of retryable error types.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

/// How an error is treated by the retry executor.
pub trait Classify {
    /// True when trying again may succeed.
    fn is_retryable(&self) -> bool;
    /// A server hint (e.g. from `Retry-After`): wait at least this long.
    fn retry_after(&self) -> Option<std::time::Duration> {
        None
    }
}

/// An error marked retryable (Go `policy`'s `RetryableError` / `WrapRetryable`).
#[derive(Debug)]
pub struct RetryableError {
    /// The wrapped error.
    pub source: Box<dyn StdError + Send + Sync>,
    /// An optional server hint.
    pub retry_after: Option<std::time::Duration>,
}

impl fmt::Display for RetryableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "retryable: {}", self.source)
    }
}

impl StdError for RetryableError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.source)
    }
}

/// Mark `err` retryable (Go `policy`'s `WrapRetryable`).
pub fn wrap_retryable(err: impl Into<Box<dyn StdError + Send + Sync>>) -> RetryableError {
    RetryableError {
        source: err.into(),
        retry_after: None,
    }
}

/// True when `err`, or any error in its source chain, is a [`RetryableError`]
/// (Go `policy`'s `IsRetryableError`).
pub fn is_retryable_error(err: &(dyn StdError + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if e.is::<RetryableError>() {
            return true;
        }
        cur = e.source();
    }
    false
}

fn retryable_hint(err: &(dyn StdError + 'static)) -> Option<std::time::Duration> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<RetryableError>() {
            return r.retry_after;
        }
        cur = e.source();
    }
    None
}

impl Classify for RetryableError {
    fn is_retryable(&self) -> bool {
        true
    }
    fn retry_after(&self) -> Option<std::time::Duration> {
        self.retry_after
    }
}

impl Classify for Box<dyn StdError + Send + Sync> {
    /// Retryable when marked with [`wrap_retryable`] anywhere in the chain.
    fn is_retryable(&self) -> bool {
        is_retryable_error(&**self)
    }
    fn retry_after(&self) -> Option<std::time::Duration> {
        retryable_hint(&**self)
    }
}

impl Classify for std::io::Error {
    /// Transient I/O kinds: `TimedOut`, `Interrupted`, `WouldBlock`,
    /// `ConnectionReset`, `ConnectionRefused`, `ConnectionAborted`,
    /// `BrokenPipe` and `UnexpectedEof`; any other kind is not retried.
    fn is_retryable(&self) -> bool {
        use std::io::ErrorKind::*;
        matches!(
            self.kind(),
            TimedOut
                | Interrupted
                | WouldBlock
                | ConnectionReset
                | ConnectionRefused
                | ConnectionAborted
                | BrokenPipe
                | UnexpectedEof
        )
    }
}

type Matcher = Arc<dyn Fn(&(dyn StdError + 'static)) -> bool + Send + Sync>;

/// A list of retryable errors, with Go's `RetryPolicy.RetryableErrors` rule:
/// an error is retried when it, or any error in its `source()` chain,
/// matches an entry; **an empty list retries every error**.
///
/// Use it with [`RetryPolicy::run_with`](super::RetryPolicy::run_with). A
/// [`RetryableError`] anywhere in the chain still supplies its server hint.
///
/// ```
/// use ratebound_std::retry::{RetryPolicy, RetryableErrors};
/// # #[derive(Debug)] struct Timeout;
/// # impl std::fmt::Display for Timeout { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("timeout") } }
/// # impl std::error::Error for Timeout {}
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let retryable = RetryableErrors::new().of::<Timeout>().of::<std::io::Error>();
/// let mut calls = 0;
/// let r: Result<(), _> = RetryPolicy::default()
///     .run_with(|| { calls += 1; async { Err::<(), _>(Timeout) } }, retryable.classifier())
///     .await;
/// assert_eq!(r.unwrap_err().attempts(), 4); // 1 try + 3 retries
/// assert_eq!(calls, 4);
///
/// // An empty list retries every error.
/// assert!(RetryableErrors::new().is_retryable(&std::fmt::Error));
/// assert!(!retryable.is_retryable(&std::fmt::Error));
/// # }
/// ```
#[derive(Clone, Default)]
pub struct RetryableErrors {
    matchers: Vec<Matcher>,
}

impl fmt::Debug for RetryableErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryableErrors")
            .field("entries", &self.matchers.len())
            .finish()
    }
}

impl RetryableErrors {
    /// An empty list: every error is retried.
    pub fn new() -> Self {
        RetryableErrors::default()
    }

    /// Errors of type `T` anywhere in the chain are retryable.
    pub fn of<T: StdError + 'static>(self) -> Self {
        self.matching(|_: &T| true)
    }

    /// Errors of type `T` for which `pred` holds are retryable, e.g.
    /// `matching(|e: &std::io::Error| e.kind() == std::io::ErrorKind::TimedOut)`
    /// (Go's `errors.Is` against one sentinel value).
    pub fn matching<T: StdError + 'static>(
        mut self,
        pred: impl Fn(&T) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.matchers
            .push(Arc::new(move |e| e.downcast_ref::<T>().is_some_and(&pred)));
        self
    }

    /// True when `err` is to be retried.
    pub fn is_retryable(&self, err: &(dyn StdError + 'static)) -> bool {
        if self.matchers.is_empty() {
            return true;
        }
        let mut cur = Some(err);
        while let Some(e) = cur {
            if self.matchers.iter().any(|m| m(e)) {
                return true;
            }
            cur = e.source();
        }
        false
    }

    /// The decision [`RetryPolicy::run_with`](super::RetryPolicy::run_with)
    /// takes: `None` for "do not retry", `Some(hint)` to retry, the hint
    /// coming from a [`RetryableError`] in the chain. For boxed errors call
    /// it as `|e: &Box<dyn Error + Send + Sync>| list.decide(&**e)`.
    pub fn decide(&self, err: &(dyn StdError + 'static)) -> Option<Option<std::time::Duration>> {
        self.is_retryable(err).then(|| retryable_hint(err))
    }

    /// [`decide`](Self::decide) as a closure for one error type.
    pub fn classifier<E: StdError + 'static>(
        &self,
    ) -> impl Fn(&E) -> Option<Option<std::time::Duration>> + '_ {
        move |e: &E| self.decide(e)
    }
}
