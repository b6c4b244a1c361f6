//! Shared limiters under concurrency, on tokio's paused clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use ratebound_core::{Duration, Instant, SlidingLog};
use ratebound_std::clock::{Clock, ManualClock, TokioClock};
use ratebound_std::limiter::{MutexLimiter, RateLimiter, SharedLimiter};
use ratebound_std::AcquireError;

const T0: Instant = Instant::from_secs(1_795_392_000);

/// Spawn `n` tasks that `acquire(1)` until the clock passes `end`; count admissions at or before `end`.
async fn hammer<D: SharedLimiter + 'static>(
    limiter: Arc<RateLimiter<D, TokioClock>>,
    n: usize,
    end: Instant,
) -> u64 {
    let admitted = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (l, a) = (limiter.clone(), admitted.clone());
            tokio::spawn(async move {
                loop {
                    l.acquire(1).await.unwrap();
                    if l.clock().now() > end {
                        break;
                    }
                    a.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    admitted.load(Ordering::Relaxed)
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn eight_tasks_on_one_gcra_admit_exactly_the_math() {
    let clock = TokioClock::anchored_at(T0);
    // Burst 10, 100/s: over [T0, T0 + 5 s] exactly 10 + 500 admissions.
    let l = Arc::new(RateLimiter::gcra(10, 100, StdDuration::from_secs(1), clock).unwrap());
    assert_eq!(hammer(l, 8, T0 + Duration::from_secs(5)).await, 510);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn twelve_tasks_on_one_sliding_log_admit_exactly_the_math() {
    let clock = TokioClock::anchored_at(T0);
    let log: SlidingLog<32> = SlidingLog::new(20, Duration::from_secs(1)).unwrap();
    let l = Arc::new(RateLimiter::new(MutexLimiter::new(log), clock));
    // Windows open at T0, +1 s, … +5 s (entries expire at exactly +1 s): 6 × 20.
    assert_eq!(hammer(l, 12, T0 + Duration::from_secs(5)).await, 120);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_dropped_acquire_consumes_nothing() {
    let clock = TokioClock::anchored_at(T0);
    let l = RateLimiter::gcra(1, 1, StdDuration::from_secs(1), clock).unwrap();
    assert!(l.check(1).unwrap().allowed);
    // Give up on waiting half-way: the future is dropped while sleeping.
    let r = tokio::time::timeout(StdDuration::from_millis(500), l.acquire(1)).await;
    assert!(r.is_err(), "timed out");
    // And dropped right after being created, never polled:
    drop(l.acquire(1));
    tokio::time::advance(StdDuration::from_millis(500)).await;
    // Exactly one token has accrued and nobody took it.
    let d = l.check(1).unwrap();
    assert!(d.allowed);
    assert_eq!(d.remaining, 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn deadlines_and_impossible_costs_fail_fast() {
    let clock = TokioClock::anchored_at(T0);
    let l = RateLimiter::gcra(2, 1, StdDuration::from_secs(10), clock).unwrap();
    let start = tokio::time::Instant::now();
    assert!(matches!(l.acquire(3).await, Err(AcquireError::Cost(_))));
    l.check(2).unwrap();
    let e = l
        .acquire_with(1, Some(StdDuration::from_secs(9)))
        .await
        .unwrap_err();
    assert!(
        matches!(e, AcquireError::WouldWait { retry_at, .. } if retry_at == T0 + Duration::from_secs(10))
    );
    assert_eq!(start.elapsed(), StdDuration::ZERO, "neither waited");
    assert!(
        l.acquire_with(1, Some(StdDuration::from_secs(10)))
            .await
            .unwrap()
            .allowed
    );
    assert_eq!(start.elapsed(), StdDuration::from_secs(10));
}

#[test]
fn acquire_blocking_sleeps_the_thread() {
    let l = RateLimiter::gcra(
        1,
        1,
        StdDuration::from_millis(30),
        ratebound_std::clock::MonotonicClock::new(),
    )
    .unwrap();
    assert!(l.check(1).unwrap().allowed);
    let t = std::time::Instant::now();
    assert!(l.acquire_blocking(1, None).unwrap().allowed);
    assert!(t.elapsed() >= StdDuration::from_millis(25));
    assert!(matches!(
        l.acquire_blocking(1, Some(StdDuration::from_millis(1))),
        Err(AcquireError::WouldWait { .. })
    ));
}

#[test]
fn refund_and_unpackable_rates() {
    let clock = ManualClock::new(T0);
    // 2049/s cannot pack into one atomic word: same decisions behind a lock.
    let l = RateLimiter::gcra(3, 2049, StdDuration::from_secs(1), clock.clone()).unwrap();
    assert!(matches!(
        l.inner(),
        ratebound_std::limiter::SharedGcra::Mutex(_)
    ));
    assert_eq!(l.check(3).unwrap().remaining, 0);
    assert_eq!(l.refund(2).remaining, 2);
    assert_eq!(l.refund(10).remaining, 3, "never above capacity");
    // A clock stepping back a second sees nothing more than at T0 (here: less).
    clock.set(T0 - Duration::from_secs(1));
    assert_eq!(l.peek(0).unwrap().remaining, 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn keyed_acquire_has_the_shape_of_the_single_limiter() {
    use ratebound_core::Gcra;
    use ratebound_std::keyed::{KeyedConfig, KeyedLimiter};
    let clock = TokioClock::anchored_at(T0);
    let keyed = KeyedLimiter::new(
        Gcra::new(2, 1, Duration::from_secs(10)).unwrap(),
        KeyedConfig::default(),
        clock,
    )
    .unwrap();
    let start = tokio::time::Instant::now();
    assert!(matches!(
        keyed.acquire(&"a", 3).await,
        Err(AcquireError::Cost(_))
    ));
    keyed.acquire(&"a", 2).await.unwrap();
    let e = keyed
        .acquire_with(&"a", 1, Some(StdDuration::from_secs(9)))
        .await
        .unwrap_err();
    assert!(
        matches!(e, AcquireError::WouldWait { retry_at, .. } if retry_at == T0 + Duration::from_secs(10))
    );
    assert!(keyed.acquire(&"b", 2).await.unwrap().allowed, "keys apart");
    assert_eq!(start.elapsed(), StdDuration::ZERO, "nothing waited yet");
    assert!(keyed.acquire(&"a", 1).await.unwrap().allowed);
    assert_eq!(
        start.elapsed(),
        StdDuration::from_secs(10),
        "waited for a's token"
    );
}

/// A keyed store waits per key: one key waiting does not hold another back;
/// `max_wait` beyond the key's next admission is `WouldWait` at once; a full
/// store and a cost that can never fit fail at once; a dropped wait consumes
/// nothing.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn keyed_acquire_waits_per_key_and_fails_fast_when_it_cannot_succeed() {
    use ratebound_core::Gcra;
    use ratebound_std::keyed::{KeyedConfig, KeyedLimiter};
    let clock = TokioClock::anchored_at(T0);
    let gcra = Gcra::new(1, 1, Duration::from_secs(10)).unwrap();
    let store = KeyedLimiter::new(
        gcra,
        KeyedConfig::default().with_max_keys(2).with_shards(1),
        clock,
    )
    .unwrap();
    let start = tokio::time::Instant::now();
    assert!(store.acquire(&"a", 1).await.unwrap().allowed);
    // "a" must wait 10 s; "b" is admitted at once meanwhile.
    let (a, b) = tokio::join!(store.acquire(&"a", 1), async {
        let d = store.acquire(&"b", 1).await.unwrap();
        (d, start.elapsed())
    });
    assert!(a.unwrap().allowed);
    assert_eq!(b.1, StdDuration::ZERO, "b did not wait for a");
    assert!(b.0.allowed);
    assert_eq!(
        start.elapsed(),
        StdDuration::from_secs(10),
        "a waited its 10 s"
    );
    // Both keys used now (b again: refilled, it would be idle and dropped):
    // a third key finds the store full of active keys.
    assert!(store.check(&"b", 1).unwrap().allowed);
    let e = store.acquire(&"c", 1).await.unwrap_err();
    assert!(matches!(e, AcquireError::StoreFull { .. }), "{e:?}");
    assert!(matches!(
        store.acquire(&"a", 2).await,
        Err(AcquireError::Cost(_))
    ));
    let e = store
        .acquire_with(&"a", 1, Some(StdDuration::from_secs(9)))
        .await
        .unwrap_err();
    assert!(matches!(e, AcquireError::WouldWait { .. }), "{e:?}");
    assert_eq!(
        start.elapsed(),
        StdDuration::from_secs(10),
        "none of the three waited"
    );
    // A wait given up half-way consumes nothing: the token is still there.
    let r = tokio::time::timeout(StdDuration::from_secs(5), store.acquire(&"a", 1)).await;
    assert!(r.is_err(), "timed out");
    tokio::time::advance(StdDuration::from_secs(5)).await;
    assert!(store.check(&"a", 1).unwrap().allowed);
}
