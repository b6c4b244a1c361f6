//! Go `policy`'s Manager: limiter wait + budget check / hold.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use ratebound_core::budget::{BudgetConfig, Usage};
use ratebound_core::Instant;
use ratebound_std::budget::{BudgetDenied, BudgetManager, UsageRecord};
use ratebound_std::clock::TokioClock;
use ratebound_std::limiter::RateLimiter;
use ratebound_std::manager::{Manager, PreCheckError};

#[tokio::test(start_paused = true)]
async fn pre_check_waits_on_the_limiter_and_checks_the_budget() {
    let clock = TokioClock::anchored_at(Instant::from_secs(1_795_392_000));
    let budget =
        Arc::new(BudgetManager::new(BudgetConfig::new().tokens_per_minute(1_000), clock).unwrap());
    let m = Manager::new()
        .with_budget(budget.clone())
        .with_limiter(Arc::new(
            RateLimiter::gcra(2, 2, StdDuration::from_secs(1), clock).unwrap(),
        ));
    let start = tokio::time::Instant::now();
    for _ in 0..3 {
        m.pre_check(100, 0).await.unwrap();
    }
    assert_eq!(
        start.elapsed(),
        StdDuration::from_millis(500),
        "the third call waited for a token"
    );
    m.record_usage(&UsageRecord {
        tokens: 950,
        ..Default::default()
    });
    // Over budget: fails fast, without waiting on the limiter.
    let before = tokio::time::Instant::now();
    assert!(matches!(
        m.pre_check(100, 0).await,
        Err(PreCheckError::Budget(BudgetDenied::Denied(_)))
    ));
    assert_eq!(before.elapsed(), StdDuration::ZERO);
    // admit holds the estimate: two concurrent admits cannot both take the last 50.
    let a = m.admit(Usage::request(50, 0)).await.unwrap().unwrap();
    assert!(m.admit(Usage::request(50, 0)).await.is_err());
    a.settle(Usage::request(10, 0));
    assert!(m.admit(Usage::request(40, 0)).await.unwrap().is_some());
}

#[tokio::test(start_paused = true)]
async fn a_budget_denial_in_admit_consumes_no_limiter_token() {
    let clock = TokioClock::anchored_at(Instant::from_secs(1_795_392_000));
    let budget =
        Arc::new(BudgetManager::new(BudgetConfig::new().tokens_per_minute(100), clock).unwrap());
    let limiter = Arc::new(RateLimiter::gcra(1, 1, StdDuration::from_secs(1), clock).unwrap());
    let m = Manager::new()
        .with_budget(budget.clone())
        .with_limiter(limiter.clone());
    budget.record_usage(&UsageRecord {
        tokens: 60,
        ..Default::default()
    });
    assert!(m.admit(Usage::request(60, 0)).await.is_err());
    assert_eq!(limiter.peek(0).unwrap().remaining, 1, "token untouched");
    // A failed wait releases the hold it made.
    let r = m.admit(Usage::request(40, 0)).await.unwrap().unwrap();
    drop(r);
    assert_eq!(budget.status().holds, 0);
}

#[test]
fn a_future_timestamp_cannot_move_the_budget_clock() {
    let clock = ratebound_std::clock::ManualClock::new(Instant::from_secs(1_795_392_000));
    let b = BudgetManager::new(BudgetConfig::new().tokens_per_minute(100), clock.clone()).unwrap();
    b.record_usage(&UsageRecord {
        tokens: 100,
        timestamp: Some(Instant::from_secs(4_000_000_000)),
        ..Default::default()
    });
    clock.advance(ratebound_core::Duration::from_secs(60));
    b.check_budget(1, 0).unwrap();
}
