//! Retrying a flaky call with hints, a shared retry budget and a hook.
//!
//! `cargo run -p ratebound-std --example retry`

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ratebound_core::backoff::{Backoff, Jitter, RetryBudget};
use ratebound_std::retry::{Classify, RetryPolicy, SharedRetryBudget};

#[derive(Debug)]
enum UpstreamError {
    RateLimited { retry_after: Duration },
    Unavailable,
    BadRequest,
}
impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}
impl Classify for UpstreamError {
    fn is_retryable(&self) -> bool {
        !matches!(self, UpstreamError::BadRequest)
    }
    fn retry_after(&self) -> Option<Duration> {
        match self {
            UpstreamError::RateLimited { retry_after } => Some(*retry_after),
            _ => None,
        }
    }
}

#[tokio::main]
async fn main() {
    let budget = Arc::new(SharedRetryBudget::new(
        RetryBudget::new(10, 100).expect("valid"),
    ));
    let policy = RetryPolicy::new(
        Backoff::new(
            ratebound_core::Duration::from_millis(20),
            ratebound_core::Duration::from_secs(1),
        )
        .expect("valid")
        .with_jitter(Jitter::Equal)
        .with_max_retries(4),
    )
    .with_budget(budget)
    .on_retry(|e| {
        println!(
            "  retry {} in {} ms after: {}",
            e.attempt,
            e.delay.as_millis(),
            e.error
        )
    });
    let calls = AtomicU32::new(0);
    let result: Result<&str, _> = policy
        .run(|| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                match n {
                    0 => Err(UpstreamError::Unavailable),
                    1 => Err(UpstreamError::RateLimited {
                        retry_after: Duration::from_millis(150),
                    }),
                    _ => Ok("completion text"),
                }
            }
        })
        .await;
    println!("flaky call: {result:?}");
    let result: Result<(), _> = policy
        .run(|| async { Err(UpstreamError::BadRequest) })
        .await;
    println!("bad request: {}", result.unwrap_err());
}
