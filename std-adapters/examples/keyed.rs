//! Per-user limits in bounded memory, and what a flood of new keys meets.
//!
//! `cargo run -p ratebound-std --example keyed`

use ratebound_core::Gcra;
use ratebound_std::clock::{Clock, SystemClock};
use ratebound_std::keyed::{KeyedConfig, KeyedLimiter, OnFull};
use ratebound_std::AcquireError;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = KeyedLimiter::new(
        Gcra::per_minute(3)?,
        KeyedConfig::default()
            .with_max_keys(1_000)
            .with_shards(4)
            .with_on_full(OnFull::DenyNewKeys),
        SystemClock,
    )?;
    for user in ["alice", "alice", "alice", "alice", "bob"] {
        let d = store.check(&user.to_string(), 1)?;
        let now = SystemClock.now();
        println!(
            "{user:>6}: allowed={:<5} remaining={} retry_after={} ms",
            d.allowed,
            d.remaining,
            d.retry_after(now).as_millis_ceil()
        );
    }
    let (mut ok, mut full) = (0, 0);
    for i in 0..100_000 {
        match store.check(&format!("bot-{i}"), 1) {
            Ok(_) => ok += 1,
            Err(AcquireError::StoreFull { .. }) => full += 1,
            Err(e) => return Err(e.into()),
        }
    }
    println!(
        "flood of 100000 new keys: {ok} admitted, {full} refused; store holds {} keys (bound 1000)",
        store.len()
    );
    println!(
        "alice still limited: allowed={}",
        store.check(&"alice".to_string(), 1)?.allowed
    );
    Ok(())
}
