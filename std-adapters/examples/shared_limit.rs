//! One limit shared by Rust and Node services through one Redis: the Rust
//! half of `node/test-rust/shared-limit.test.js`, whose Node half runs the
//! same limits through the npm package's `ratebound/redis`.
//!
//! The limits, per key: `api`, a bucket of 300 an hour, and `log`, a sliding
//! log of 400 an hour, decided all or nothing (`rb:{key}:api`,
//! `rb:{key}:log`).
//!
//! ```text
//! cargo run -p ratebound-std --features redis --example shared_limit -- redis://127.0.0.1:6379/ user-1 check 500 16
//! cargo run -p ratebound-std --features redis --example shared_limit -- redis://127.0.0.1:6379/ user-1 peek
//! ```
//!
//! `check N C` makes N checks, C at a time; both print one JSON line:
//! `{"admitted":…,"remaining":[api, log]}` (remaining: a peek of cost 0
//! after the checks).

use std::sync::Arc;
use std::time::Duration;

use ratebound_core::{Gcra, SlidingLog};
use ratebound_std::clock::SystemClock;
use ratebound_std::fallback::{FailoverOptions, OnUnavailable};
use ratebound_std::keyed::{KeyedConfig, RedisKeyedLimiter};
use ratebound_std::limiter::{AnyLimiter, LimitSet};
use ratebound_std::redis::{RedisOptions, RedisStore};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: shared_limit <redis-url> <key> (check <n> <concurrency> | peek)";
    let (url, key, op) = match args.as_slice() {
        [url, key, op, ..] => (url, key.clone(), op.as_str()),
        _ => return Err(usage.into()),
    };
    let store = RedisStore::connect(url, RedisOptions::default()).await?;
    let api = || AnyLimiter::Gcra(Gcra::per_hour(300).expect("a valid bucket"));
    let log = || {
        AnyLimiter::SlidingLog(
            SlidingLog::new(400, Duration::from_secs(3600).into()).expect("a valid log"),
        )
    };
    let limits = LimitSet::new([("api", api()), ("log", log())])?;
    let limiter = Arc::new(RedisKeyedLimiter::with_set(
        store.clone(),
        limits,
        FailoverOptions::new(OnUnavailable::Closed),
        KeyedConfig::default(),
        SystemClock,
    )?);
    let mut admitted = 0u64;
    if op == "check" {
        let n: usize = args.get(3).ok_or(usage)?.parse()?;
        let c: usize = args.get(4).ok_or(usage)?.parse()?;
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let workers = (0..c.max(1)).map(|_| {
            let (limiter, key, next) = (limiter.clone(), key.clone(), next.clone());
            tokio::spawn(async move {
                let mut ok = 0u64;
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < n {
                    if limiter.check(key.as_bytes(), 1).await?.decision.allowed {
                        ok += 1;
                    }
                }
                Ok::<u64, ratebound_std::keyed::KeyedError>(ok)
            })
        });
        for w in workers.collect::<Vec<_>>() {
            admitted += w.await??;
        }
    } else if op != "peek" {
        return Err(usage.into());
    }
    // Each member's own remaining: a one-member limiter on the same key.
    let alone = |name: &str, l: AnyLimiter| {
        RedisKeyedLimiter::new(
            store.clone(),
            name,
            l,
            FailoverOptions::new(OnUnavailable::Closed),
            KeyedConfig::default(),
            SystemClock,
        )
    };
    let api_only = alone("api", api())?;
    let log_only = alone("log", log())?;
    let r_api = api_only.peek(key.as_bytes(), 0).await?.decision.remaining;
    let r_log = log_only.peek(key.as_bytes(), 0).await?.decision.remaining;
    println!("{{\"admitted\":{admitted},\"remaining\":[{r_api},{r_log}]}}");
    Ok(())
}
