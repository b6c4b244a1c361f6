//! The retry executor on tokio's paused clock.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use ratebound_core::backoff::{Backoff, GiveUp, Jitter, RetryBudget};
use ratebound_core::Duration;
use ratebound_std::retry::{
    is_retryable_error, wrap_retryable, Classify, RetryError, RetryPolicy, SharedRetryBudget,
};
use tokio::time::Instant as TokioInstant;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, PartialEq)]
enum E {
    Busy(Option<u64>),
    Fatal,
}
impl fmt::Display for E {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}
impl Classify for E {
    fn is_retryable(&self) -> bool {
        matches!(self, E::Busy(_))
    }
    fn retry_after(&self) -> Option<StdDuration> {
        match self {
            E::Busy(ms) => ms.map(StdDuration::from_millis),
            E::Fatal => None,
        }
    }
}

fn fixed(ms: u64) -> Backoff {
    Backoff::new(Duration::from_millis(ms), Duration::from_secs(60))
        .unwrap()
        .with_jitter(Jitter::None)
        .with_factor(1, 1)
        .unwrap()
}

/// Runs `policy` over a script of results, recording when each attempt started.
async fn scripted(
    policy: &RetryPolicy,
    script: Vec<Result<u32, E>>,
) -> (Result<u32, RetryError<E>>, Vec<StdDuration>) {
    let start = TokioInstant::now();
    let at = Arc::new(Mutex::new(Vec::new()));
    let script = Arc::new(Mutex::new(script.into_iter()));
    let r = policy
        .run(|| {
            let (at, script) = (at.clone(), script.clone());
            async move {
                at.lock().unwrap().push(start.elapsed());
                script.lock().unwrap().next().unwrap_or(Err(E::Busy(None)))
            }
        })
        .await;
    let times = at.lock().unwrap().clone();
    (r, times)
}

#[tokio::test(start_paused = true)]
async fn hints_raise_the_delay() {
    let p = RetryPolicy::new(fixed(100).with_max_retries(5));
    let (r, at) = scripted(
        &p,
        vec![Err(E::Busy(Some(2_000))), Err(E::Busy(None)), Ok(7)],
    )
    .await;
    assert_eq!(r.unwrap(), 7);
    let ms: Vec<u128> = at.iter().map(|d| d.as_millis()).collect();
    assert_eq!(ms, [0, 2_000, 2_100]);
}

#[tokio::test(start_paused = true)]
async fn a_hint_beyond_the_cap_gives_up_instead_of_retrying_early() {
    let p =
        RetryPolicy::new(Backoff::new(Duration::from_millis(100), Duration::from_secs(1)).unwrap());
    let (r, at) = scripted(&p, vec![Err(E::Busy(Some(5_000)))]).await;
    assert!(matches!(
        r,
        Err(RetryError::GaveUp {
            reason: GiveUp::HintBeyondCap { .. },
            attempts: 1,
            ..
        })
    ));
    assert_eq!(at.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn non_retryable_errors_stop_at_once() {
    let p = RetryPolicy::new(fixed(100));
    let (r, at) = scripted(&p, vec![Err(E::Busy(None)), Err(E::Fatal), Ok(1)]).await;
    assert!(matches!(
        r,
        Err(RetryError::NotRetryable {
            error: E::Fatal,
            attempts: 2
        })
    ));
    assert_eq!(at.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn max_retries_and_max_elapsed() {
    let p = RetryPolicy::new(fixed(100).with_max_retries(3));
    let (r, at) = scripted(&p, vec![]).await;
    assert!(matches!(
        r,
        Err(RetryError::GaveUp {
            reason: GiveUp::MaxRetries,
            attempts: 4,
            ..
        })
    ));
    assert_eq!(at.len(), 4);

    // Doubling from 300 ms with a 1 s budget: attempts at 0, 0.3 s, 0.9 s; the next (2.1 s) is past it.
    let b = Backoff::new(Duration::from_millis(300), Duration::from_secs(60))
        .unwrap()
        .with_jitter(Jitter::None)
        .without_max_retries()
        .with_max_elapsed(Duration::from_secs(1));
    let p = RetryPolicy::new(b);
    let (r, at) = scripted(&p, vec![]).await;
    assert!(matches!(
        r,
        Err(RetryError::GaveUp {
            reason: GiveUp::MaxElapsed,
            attempts: 3,
            ..
        })
    ));
    assert_eq!(
        at.iter().map(|d| d.as_millis()).collect::<Vec<_>>(),
        [0, 300, 900]
    );
}

#[tokio::test(start_paused = true)]
async fn a_shared_retry_budget_stops_retry_storms_across_calls() {
    // 4 tokens: each failure costs 1; retries allowed while tokens > 2.
    let budget = Arc::new(SharedRetryBudget::new(RetryBudget::new(4, 500).unwrap()));
    let p = RetryPolicy::new(fixed(10).without_max_retries()).with_budget(budget.clone());
    let (r, at) = scripted(&p, vec![]).await;
    assert!(matches!(
        r,
        Err(RetryError::GaveUp {
            reason: GiveUp::RetryBudget,
            attempts: 2,
            ..
        })
    ));
    assert_eq!(at.len(), 2);
    // A second call gets no retry at all while the budget is drained…
    let (r, _) = scripted(&p, vec![Err(E::Busy(None)), Ok(1)]).await;
    assert!(matches!(
        r,
        Err(RetryError::GaveUp {
            reason: GiveUp::RetryBudget,
            attempts: 1,
            ..
        })
    ));
    assert!(!budget.can_retry());
    // …and successes refill it.
    for _ in 0..6 {
        budget.on_success();
    }
    let (r, _) = scripted(&p, vec![Err(E::Busy(None)), Ok(9)]).await;
    assert_eq!(r.unwrap(), 9);
}

#[tokio::test(start_paused = true)]
async fn on_retry_sees_attempt_error_and_delay() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let p = RetryPolicy::new(fixed(250).with_max_retries(2)).on_retry(move |e| {
        s.lock()
            .unwrap()
            .push((e.attempt, e.error.to_string(), e.delay))
    });
    let (r, _) = scripted(&p, vec![Err(E::Busy(None)), Err(E::Busy(Some(400))), Ok(3)]).await;
    assert_eq!(r.unwrap(), 3);
    let seen = seen.lock().unwrap();
    assert_eq!(
        *seen,
        vec![
            (1, "Busy(None)".to_string(), StdDuration::from_millis(250)),
            (
                2,
                "Busy(Some(400))".to_string(),
                StdDuration::from_millis(400)
            )
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn cancellation_stops_a_sleeping_retry() {
    let token = CancellationToken::new();
    let p = RetryPolicy::new(fixed(10_000).without_max_retries()).with_cancel(token.clone());
    let t = token.clone();
    tokio::spawn(async move {
        tokio::time::sleep(StdDuration::from_secs(15)).await;
        t.cancel();
    });
    let start = TokioInstant::now();
    let (r, at) = scripted(&p, vec![]).await;
    assert!(matches!(
        r,
        Err(RetryError::Cancelled {
            attempts: 2,
            last: Some(E::Busy(None))
        })
    ));
    assert_eq!(at.len(), 2);
    assert_eq!(start.elapsed(), StdDuration::from_secs(15));
}

#[tokio::test(start_paused = true)]
async fn typed_results_and_the_seed_wrappers() {
    let p = RetryPolicy::new(fixed(1).with_max_retries(3));
    let mut n = 0;
    let r: Result<String, RetryError<Box<dyn std::error::Error + Send + Sync>>> = p
        .run(|| {
            n += 1;
            let n = n;
            async move {
                if n == 1 {
                    Err(Box::new(wrap_retryable(std::io::Error::other("flaky")))
                        as Box<dyn std::error::Error + Send + Sync>)
                } else {
                    Ok(format!("ok after {n}"))
                }
            }
        })
        .await;
    assert_eq!(r.unwrap(), "ok after 2");
    // An error not wrapped is not retryable.
    let plain: Box<dyn std::error::Error + Send + Sync> = Box::new(std::io::Error::other("fatal"));
    assert!(!plain.is_retryable());
    let wrapped = wrap_retryable(std::io::Error::other("x"));
    assert!(is_retryable_error(&wrapped));
}

#[test]
fn the_blocking_twin_sleeps_and_classifies() {
    let p = RetryPolicy::new(fixed(5).with_max_retries(3))
        .with_clock(ratebound_std::clock::MonotonicClock::new());
    let start = std::time::Instant::now();
    let mut n = 0;
    let r: Result<u32, RetryError<E>> = p.run_blocking(|| {
        n += 1;
        if n < 3 {
            Err(E::Busy(None))
        } else {
            Ok(n)
        }
    });
    assert_eq!(r.unwrap(), 3);
    assert!(start.elapsed() >= StdDuration::from_millis(10));
    let r: Result<u32, RetryError<E>> = p.run_blocking(|| Err(E::Fatal));
    assert!(matches!(
        r,
        Err(RetryError::NotRetryable { attempts: 1, .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn cancelling_mid_attempt_counts_that_attempt() {
    let token = CancellationToken::new();
    let p = RetryPolicy::new(fixed(10).without_max_retries()).with_cancel(token.clone());
    let t = token.clone();
    let r: Result<u32, RetryError<E>> = p
        .run(|| {
            let t = t.clone();
            async move {
                t.cancel();
                tokio::time::sleep(StdDuration::from_secs(1)).await;
                Ok(1)
            }
        })
        .await;
    assert!(matches!(
        r,
        Err(RetryError::Cancelled {
            attempts: 1,
            last: None
        })
    ));
    // Already cancelled: no attempt starts at all.
    let r: Result<u32, RetryError<E>> = p.run(|| async { Ok(1) }).await;
    assert!(matches!(r, Err(RetryError::Cancelled { attempts: 0, .. })));
}

#[tokio::test(start_paused = true)]
async fn run_if_takes_any_error_and_a_plain_closure() {
    // An error type with no Classify impl: a String.
    let p = RetryPolicy::new(fixed(100).with_max_retries(5));
    let calls = Arc::new(Mutex::new(0u32));
    let start = TokioInstant::now();
    let r: Result<u32, _> = p
        .run_if(
            || {
                let calls = calls.clone();
                async move {
                    let mut n = calls.lock().unwrap();
                    *n += 1;
                    match *n {
                        1 | 2 => Err(String::from("busy")),
                        3 => Err(String::from("bad request")),
                        _ => Ok(7),
                    }
                }
            },
            |e: &String| e == "busy",
        )
        .await;
    assert!(matches!(
        r,
        Err(RetryError::NotRetryable { ref error, attempts: 3 }) if error == "bad request"
    ));
    assert_eq!(*calls.lock().unwrap(), 3);
    assert_eq!(
        start.elapsed(),
        StdDuration::from_millis(200),
        "two waits of 100 ms"
    );
}

/// `io::Error` is retryable for exactly the transient kinds its doc lists.
#[test]
fn io_errors_are_retried_for_the_transient_kinds_only() {
    use ratebound_std::retry::Classify;
    use std::io::{Error, ErrorKind::*};
    for kind in [
        TimedOut,
        Interrupted,
        WouldBlock,
        ConnectionReset,
        ConnectionRefused,
        ConnectionAborted,
        BrokenPipe,
        UnexpectedEof,
    ] {
        assert!(Error::from(kind).is_retryable(), "{kind:?}");
    }
    for kind in [
        NotFound,
        PermissionDenied,
        InvalidInput,
        InvalidData,
        AlreadyExists,
        AddrInUse,
        Unsupported,
        OutOfMemory,
        Other,
    ] {
        assert!(!Error::from(kind).is_retryable(), "{kind:?}");
    }
}
