//! Decisions per second through the Redis backend, next to `redis-benchmark`
//! running `EVALSHA` of a trivial script (`return 1`) against the same
//! server in the same run, as a ratio; and round trips per decision,
//! counted by Redis itself (`INFO commandstats`).
//!
//! ```text
//! cargo run --release -p ratebound-benches --bin redis_bench [seconds] [clients]
//! ```
//!
//! Starts its own `redis-server` on a free loopback port (or uses
//! `REDIS_URL`'s port if set). Noisy machines give noisy numbers: the ratio
//! is the figure to read.

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ratebound_core::{Gcra, SlidingCounter, SlidingLog};
use ratebound_std::redis::{Member, RedisOptions, RedisSpec, RedisStore};

fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn evalsha_calls(port: u16) -> u64 {
    let info = cli(port, &["INFO", "commandstats"]);
    info.lines()
        .find(|l| l.starts_with("cmdstat_evalsha:"))
        .and_then(|l| l.split("calls=").nth(1))
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn measure(port: u16, clients: usize, secs: u64, members: usize) -> (f64, f64) {
    let gcra = RedisSpec::Gcra(
        Gcra::new(1_000_000, 1_000_000, ratebound_core::Duration::from_secs(1)).unwrap(),
    );
    let log = RedisSpec::sliding_log(
        &SlidingLog::<64>::new(1_000_000, ratebound_core::Duration::from_secs(1)).unwrap(),
    );
    let counter = RedisSpec::SlidingCounter(
        SlidingCounter::new(1_000_000, ratebound_core::Duration::from_secs(1)).unwrap(),
    );
    let specs = [gcra, log, counter];
    let url = format!("redis://127.0.0.1:{port}/");
    let opts = RedisOptions {
        timeout: Duration::from_secs(5),
        ..RedisOptions::default()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let _ = cli(port, &["CONFIG", "RESETSTAT"]);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let store = RedisStore::connect(&url, opts.clone()).await.unwrap();
        let (stop, done) = (stop.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut k = c as u64;
            while !stop.load(Ordering::Relaxed) {
                let tag = format!("user{}", k % 1000);
                k += clients as u64;
                let m: Vec<Member> = ["a", "b", "c"][..members]
                    .iter()
                    .zip(&specs)
                    .map(|(n, s)| Member {
                        name: n,
                        spec: s,
                        cost: 1,
                    })
                    .collect();
                store.check(tag.as_bytes(), &m).await.unwrap();
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Warm up (script load), then count for `secs`.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (start_n, start_calls, t0) = (
        done.load(Ordering::Relaxed),
        evalsha_calls(port),
        Instant::now(),
    );
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let (end_n, end_calls, el) = (
        done.load(Ordering::Relaxed),
        evalsha_calls(port),
        t0.elapsed(),
    );
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let per_call = cli(port, &["INFO", "commandstats"])
        .lines()
        .find(|l| l.starts_with("cmdstat_evalsha:"))
        .and_then(|l| l.split("usec_per_call=").nth(1))
        .and_then(|v| v.split(',').next())
        .unwrap_or("?")
        .to_owned();
    eprintln!("  server time per EVALSHA: {per_call} µs ({members} member(s))");
    let n = (end_n - start_n) as f64;
    (n / el.as_secs_f64(), (end_calls - start_calls) as f64 / n)
}

fn redis_benchmark(port: u16, clients: usize, secs: u64) -> f64 {
    let sha = cli(port, &["SCRIPT", "LOAD", "return 1"]);
    // Size the request count to roughly `secs` seconds at ~100k/s.
    let n = (secs * 100_000).to_string();
    let out = Command::new("redis-benchmark")
        .args([
            "-p",
            &port.to_string(),
            "-c",
            &clients.to_string(),
            "-n",
            &n,
            "-q",
            "EVALSHA",
            &sha,
            "0",
        ])
        .output()
        .expect("redis-benchmark (apt-get install redis-tools)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    // "EVALSHA ...: 123456.79 requests per second, p50=..."
    text.rsplit(':')
        .flat_map(|s| {
            s.split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
        })
        .find(|_| true)
        .unwrap_or_else(|| panic!("could not parse redis-benchmark output: {text}"))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let secs: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(3);
    let clients: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(50);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("ratebound-redis-bench-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let ok = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "yes",
        ])
        .arg("--dir")
        .arg(&dir)
        .status()
        .expect("redis-server")
        .success();
    assert!(ok);
    while cli(port, &["PING"]) != "PONG" {
        std::thread::sleep(Duration::from_millis(20));
    }
    let base = redis_benchmark(port, clients, secs);
    let (single, rt1) = measure(port, clients, secs, 1).await;
    let (policy, rt3) = measure(port, clients, secs, 3).await;
    let version = cli(port, &["INFO", "server"])
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:").map(str::to_owned))
        .unwrap_or_default();
    let _ = cli(port, &["SHUTDOWN", "NOSAVE"]);
    println!("redis-server {version} on loopback, {clients} clients, {secs} s per case");
    println!("| case | decisions/s | ratio to redis-benchmark EVALSHA `return 1` | round trips per decision |");
    println!("|---|---|---|---|");
    println!("| redis-benchmark EVALSHA (trivial script) | {base:.0} | 1.00 | 1 |");
    println!(
        "| ratebound GCRA check, 1,000 keys | {single:.0} | {:.2} | {rt1:.2} |",
        single / base
    );
    println!("| ratebound policy set (GCRA + log + counter), 1,000 tags | {policy:.0} | {:.2} | {rt3:.2} |", policy / base);
}
