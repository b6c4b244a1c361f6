//! A shared limiter: 8 tasks share 5 requests/second with bursts of 5.
//!
//! `cargo run -p ratebound-std --example limiter`

use std::sync::Arc;
use std::time::{Duration, Instant};

use ratebound_std::clock::MonotonicClock;
use ratebound_std::limiter::RateLimiter;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let limiter = Arc::new(RateLimiter::gcra(
        5,
        5,
        Duration::from_secs(1),
        MonotonicClock::new(),
    )?);
    let start = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let limiter = limiter.clone();
            tokio::spawn(async move {
                // Waits only when over the limit; dropping this future would consume nothing.
                let d = limiter.acquire(1).await.expect("cost 1 always fits");
                println!(
                    "task {task} admitted at {:>4} ms, {} left",
                    start.elapsed().as_millis(),
                    d.remaining
                );
            })
        })
        .collect();
    for t in tasks {
        t.await?;
    }
    // A deadline: fail fast instead of waiting past it.
    match limiter
        .acquire_with(5, Some(Duration::from_millis(100)))
        .await
    {
        Ok(_) => println!("got 5 more"),
        Err(e) => println!("not within 100 ms: {e}"),
    }
    Ok(())
}
