//! A tour of ratebound-core's state machines on a simulated clock.
//!
//! `cargo run -p ratebound-core --example tour`

use ratebound_core::backoff::{Backoff, Jitter, Step};
use ratebound_core::budget::{Admission, Budget, BudgetConfig, BudgetState, Usage};
use ratebound_core::policy::{bind, check_all};
use ratebound_core::{
    Duration, Gcra, GcraState, Instant, SlidingCounter, SlidingCounterState, SlidingLog,
    SlidingLogState,
};

fn main() -> Result<(), Box<dyn core::error::Error>> {
    let t0 = Instant::from_secs(1_795_392_000); // 2026-11-23T00:00:00Z
    let ms = |n: u64| t0 + Duration::from_millis(n);

    println!("== GCRA: 3 per second, burst 3");
    let gcra = Gcra::new(3, 3, Duration::from_secs(1))?;
    let mut st = GcraState::default();
    for at in [0, 0, 0, 0, 333, 334, 1_000] {
        let d = gcra.check(&mut st, ms(at), 1)?;
        println!(
            "  t={at:>5} ms  allowed={:<5} remaining={} retry_after={} µs",
            d.allowed,
            d.remaining,
            d.retry_after(ms(at)).as_micros()
        );
    }

    println!("== Sliding log: 2 per 500 ms");
    let log: SlidingLog<4> = SlidingLog::new(2, Duration::from_millis(500))?;
    let mut ls = SlidingLogState::<4>::default();
    for at in [0, 100, 200, 500, 600] {
        let d = log.check(&mut ls, ms(at), 1)?;
        println!(
            "  t={at:>5} ms  allowed={:<5} retry_at=+{} ms",
            d.allowed,
            d.retry_at.saturating_duration_since(t0).as_millis()
        );
    }

    println!("== Policy set: 5/s bucket AND 8/min counter, all-or-nothing");
    let per_min = SlidingCounter::new(8, Duration::from_secs(60))?;
    let (mut a, mut b) = (GcraState::default(), SlidingCounterState::default());
    let per_sec = Gcra::per_second(5)?;
    for at in [0, 0, 1_000, 2_000] {
        let d = check_all(
            ms(at),
            &mut [
                (&mut bind(&per_sec, &mut a), 4),
                (&mut bind(&per_min, &mut b), 4),
            ],
        )?;
        println!(
            "  t={at:>5} ms  allowed={:<5} binding={:?}",
            d.decision.allowed, d.binding
        );
    }

    println!("== Budget: 10k tokens/min, $1/day, alert at 80%");
    let budget = Budget::new(
        BudgetConfig::new()
            .tokens_per_minute(10_000)
            .cost_per_day(1_000_000)
            .alert_threshold_bp(8_000),
    )?;
    let mut bs = BudgetState::<8>::default();
    for (i, (est, actual)) in [(4_000, 3_500), (5_000, 4_800), (3_000, 1_000)]
        .into_iter()
        .enumerate()
    {
        let now = ms(i as u64 * 1_000);
        let r = budget.reserve(&mut bs, now, Usage::request(est, est * 10))?;
        match r.admission {
            Admission::Granted(hold) => {
                let s = budget.settle(&mut bs, now, hold, Usage::request(actual, actual * 10))?;
                for alert in &s.alerts {
                    println!(
                        "  ALERT {} at {} bp",
                        alert.alert_type(),
                        alert.utilization_bp
                    );
                }
                println!("  reserved {est}, used {actual}");
            }
            Admission::Denied(d) => println!(
                "  denied ({:?}); retry at +{} s",
                d.reason,
                d.retry_at.saturating_duration_since(t0).as_secs()
            ),
        }
    }

    println!("== Backoff: 100 ms doubling to 2 s, equal jitter, server hint 1.5 s on try 2");
    let policy = Backoff::new(Duration::from_millis(100), Duration::from_secs(2))?
        .with_jitter(Jitter::Equal)
        .with_max_retries(4);
    let mut bo = policy.start(t0, 7);
    for hint in [None, Some(Duration::from_millis(1_500)), None, None, None] {
        match policy.next(&mut bo, t0, hint) {
            Step::Retry { delay, attempt, .. } => {
                println!("  retry {attempt} after {} ms", delay.as_millis())
            }
            Step::GiveUp(why) => println!("  give up: {why:?}"),
        }
    }
    Ok(())
}
