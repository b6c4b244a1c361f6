//! What ratebound's Redis decisions cost, next to peers and floors measured
//! against the same server in the same run:
//!
//! 1. **Server time.** `redis-benchmark` drives each ratebound function
//!    directly (the exact command the Rust client sends, captured with
//!    `MONITOR`, its key randomised over 1,000 tags) next to `EVALSHA` of
//!    `return 1` and a floor: the leanest GCRA written with `GET` / `SET PX`
//!    (not exact over fractional rates). Server µs per call come from
//!    Redis's own `INFO commandstats`.
//! 2. **End to end.** The Rust client at 50 concurrent callers (one shared
//!    store, and one store per caller) next to `redis-benchmark` running
//!    `EVALSHA return 1` with 50 clients; round trips per decision counted
//!    by Redis.
//!
//! ```text
//! cargo run --release -p ratebound-benches --bin redis_bench [seconds] [clients] [rounds]
//! ```
//!
//! Starts its own `redis-server` on a free loopback port. Noisy machines give
//! noisy numbers: the ratios are the figures to read.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ratebound_core::budget::{Budget, BudgetConfig, Usage};
use ratebound_core::model_quota::{ModelQuota, Window};
use ratebound_core::{Gcra, SlidingCounter, SlidingLog};
use ratebound_std::redis::{
    Charge, RedisBudget, RedisModelQuotas, RedisOptions, RedisSpec, RedisStore,
};

/// The floor: a GCRA in as few operations as Redis allows, integer µs only.
const FLOOR: &str = r#"#!lua name=ratebound_bench_floor
local function floor_gcra(keys, args)
  local t = redis.call("TIME")
  local now = t[1] * 1000000 + t[2]
  local interval, tau, cost = tonumber(args[1]), tonumber(args[2]), tonumber(args[3])
  local tat = tonumber(redis.call("GET", keys[1])) or now
  if tat < now then tat = now end
  local new = tat + interval * cost
  if new - tau > now then return { 0, new - tau - now } end
  redis.call("SET", keys[1], string.format("%d", new), "PX", math.ceil((new - now) / 1000))
  return { 1, math.floor((tau - (new - now)) / interval) }
end
redis.register_function('floor_gcra', floor_gcra)
"#;

fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn cli_stdin(port: u16, args: &[&str], input: &str) -> String {
    let mut child = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "-x"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("redis-cli");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `field=` of `cmdstat_<cmd>` in `INFO commandstats`.
fn commandstat(port: u16, cmd: &str, field: &str) -> f64 {
    cli(port, &["INFO", "commandstats"])
        .lines()
        .find(|l| l.starts_with(&format!("cmdstat_{cmd}:")))
        .and_then(|l| l.split(&format!("{field}=")).nth(1))
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// The arguments of one `MONITOR` line: `123.4 [0 127.0.0.1:5] "FCALL" "x"`.
fn monitor_args(line: &str) -> Vec<String> {
    let Some((_, rest)) = line.split_once("] ") else {
        return Vec::new();
    };
    let mut args = Vec::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        if c != '"' {
            continue;
        }
        let mut a = String::new();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => a.extend(chars.next()),
                c => a.push(c),
            }
        }
        args.push(a);
    }
    args
}

/// Run `calls` while `MONITOR` listens; return the first command whose name
/// is `FCALL`/`FCALL_RO` and whose keys contain `marker`.
async fn capture(
    port: u16,
    marker: &str,
    calls: impl std::future::Future<Output = ()>,
) -> Vec<String> {
    let mut mon = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "MONITOR"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("redis-cli MONITOR");
    let mut lines = BufReader::new(mon.stdout.take().unwrap()).lines();
    let _ok = lines.next(); // "OK": monitoring from here on
    calls.await;
    let found = lines
        .map_while(Result::ok)
        .map(|l| monitor_args(&l))
        .find(|a| {
            a.first().is_some_and(|c| c.starts_with("FCALL"))
                && a.iter().any(|x| x.contains(marker))
        });
    let _ = mon.kill();
    let _ = mon.wait();
    // A monitor slows every command: wait until the server has dropped it.
    while cli(port, &["CLIENT", "LIST"]).contains("cmd=monitor") {
        std::thread::sleep(Duration::from_millis(10));
    }
    found.unwrap_or_else(|| panic!("no FCALL with {marker} seen"))
}

struct Served {
    per_sec: f64,
    server_us: f64,
}

/// `redis-benchmark` running `args`, `__rand_int__` in keys over `keys` tags.
fn redis_benchmark(port: u16, clients: usize, secs: u64, keys: u64, args: &[String]) -> Served {
    let cmd = args[0].to_lowercase();
    let _ = cli(port, &["CONFIG", "RESETSTAT"]);
    // About `secs` seconds at ~60k/s.
    let n = (secs * 60_000).to_string();
    let keys = keys.to_string();
    let out = Command::new("redis-benchmark")
        .args(["-p", &port.to_string(), "-c", &clients.to_string()])
        .args(["-n", &n, "-r", &keys, "-q"])
        .args(args)
        .output()
        .expect("redis-benchmark (apt-get install redis-tools)");
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "\n");
    // "...: 123456.79 requests per second, p50=..."
    let per_sec = text
        .lines()
        .rev()
        .find_map(|l| {
            let (_, tail) = l.rsplit_once(": ")?;
            tail.split_whitespace().next()?.parse::<f64>().ok()
        })
        .unwrap_or_else(|| panic!("could not parse redis-benchmark output: {text}"));
    Served {
        per_sec,
        server_us: commandstat(port, &cmd, "usec_per_call"),
    }
}

/// The captured command with its tag replaced by `__rand_int__`.
/// `cmd` over random tags (see [`far_deadline`]).
fn randomised(cmd: &[String], tag: &str) -> Vec<String> {
    far_deadline(
        cmd.iter()
            .map(|a| a.replace(&format!("{{{tag}}}"), "{__rand_int__}"))
            .collect(),
    )
}

/// `cmd` with its deadline (if any) moved to the end of time: the replays
/// run the deadline check as every admission does, long after the captured
/// call's own deadline.
fn far_deadline(mut cmd: Vec<String>) -> Vec<String> {
    let now_at = cmd
        .get(2)
        .and_then(|n| n.parse::<usize>().ok())
        .map(|keys| 3 + keys);
    if let Some(a) = now_at.and_then(|i| cmd.get_mut(i)) {
        if let Some((now, _)) = a.split_once('@') {
            *a = format!("{now}@{}", ratebound_core::MAX_SAFE_INTEGER);
        }
    }
    cmd
}

async fn end_to_end(port: u16, clients: usize, secs: u64, shared: bool) -> (f64, f64) {
    let gcra = RedisSpec::Gcra(
        Gcra::new(1_000_000, 1_000_000, ratebound_core::Duration::from_secs(1)).unwrap(),
    );
    let url = format!("redis://127.0.0.1:{port}/");
    let opts = RedisOptions {
        timeout: Duration::from_secs(5),
        ..RedisOptions::default()
    };
    let one = RedisStore::connect(&url, opts.clone()).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let store = if shared {
            one.clone()
        } else {
            RedisStore::connect(&url, opts.clone()).await.unwrap()
        };
        let (stop, done) = (stop.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut k = c as u64;
            while !stop.load(Ordering::Relaxed) {
                let tag = format!("user{}", k % 1000);
                k += clients as u64;
                let m = [Charge {
                    name: "a",
                    spec: &gcra,
                    cost: 1,
                }];
                store.check(tag.as_bytes(), &m).await.unwrap();
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = cli(port, &["CONFIG", "RESETSTAT"]);
    let (start_n, t0) = (done.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let (end_n, el) = (done.load(Ordering::Relaxed), t0.elapsed());
    let calls = commandstat(port, "fcall", "calls");
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let n = (end_n - start_n) as f64;
    (n / el.as_secs_f64(), calls / n)
}

fn start_server() -> u16 {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("ratebound-redis-bench-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let ok = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "yes"])
        .arg("--dir")
        .arg(&dir)
        .status()
        .expect("redis-server")
        .success();
    assert!(ok);
    while cli(port, &["PING"]) != "PONG" {
        std::thread::sleep(Duration::from_millis(20));
    }
    port
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    const USAGE: &str = "redis_bench [seconds] [clients] [rounds]";
    let secs = ratebound_benches::count_arg(1, "seconds", 3, USAGE) as u64;
    let clients = ratebound_benches::count_arg(2, "clients", 50, USAGE);
    let rounds = ratebound_benches::count_arg(3, "rounds", 3, USAGE);
    let port = start_server();
    let url = format!("redis://127.0.0.1:{port}/");
    let store = RedisStore::connect(&url, RedisOptions::default())
        .await
        .unwrap();
    assert!(cli_stdin(port, &["FUNCTION", "LOAD", "REPLACE"], FLOOR).contains("floor"));

    // The exact commands the Rust client sends, one per case.
    let d = ratebound_core::Duration::from_secs(1);
    let whole = RedisSpec::Gcra(Gcra::new(1_000_000, 1_000_000, d).unwrap());
    let fractional = RedisSpec::Gcra(Gcra::new(1_000, 3, d).unwrap()); // 333 333⅓ µs apart
    let log = RedisSpec::sliding_log(&SlidingLog::<64>::new(1_000_000, d).unwrap());
    let counter = RedisSpec::SlidingCounter(SlidingCounter::new(1_000_000, d).unwrap());
    let member = |name, spec| Charge {
        name,
        spec,
        cost: 1,
    };
    let gcra_cmd = capture(port, "{cg}", async {
        store.check(b"cg", &[member("a", &whole)]).await.unwrap();
    })
    .await;
    let frac_cmd = capture(port, "{cf}", async {
        store
            .check(b"cf", &[member("a", &fractional)])
            .await
            .unwrap();
    })
    .await;
    let policy_cmd = capture(port, "{cp}", async {
        let m = [
            member("a", &whole),
            member("b", &log),
            member("c", &counter),
        ];
        store.check(b"cp", &m).await.unwrap();
    })
    .await;
    // Budgets and model limits in a steady state: each call finds the hold
    // of the call before it lapsed (nothing here settles) and replaces it,
    // so a state holds one hold, as in a service where calls settle. The
    // budget has one hold slot (1 ms lease); model holds lapse after 1 µs,
    // before the next call at these rates.
    let budget = RedisBudget::new(
        store.clone(),
        Budget::new(
            BudgetConfig::new()
                .tokens_per_minute(1_000_000_000)
                .cost_per_day(1_000_000_000)
                .alert_threshold_bp(8_000)
                .hold_ttl(ratebound_core::Duration::from_millis(1)),
        )
        .unwrap(),
        1,
    );
    let budget_cmd = capture(port, "{cb}", async {
        budget
            .reserve(b"cb", "budget", Usage::request(1_000, 10_000))
            .await
            .unwrap();
    })
    .await;
    let quota = ModelQuota::new(
        Some(1_000_000),
        1_000_000,
        ratebound_core::Duration::from_secs(60),
        Window::Sliding,
        ratebound_core::Duration::from_micros(1),
    )
    .unwrap();
    let quotas = RedisModelQuotas::new(store.clone());
    let model_cmd = capture(port, "cm", async {
        let _ = quotas.admit(b"9:u:cm:gpt", &quota).await.unwrap();
    })
    .await;

    let ret1 = cli(port, &["SCRIPT", "LOAD", "return 1"]);
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let ret1_cmd = s(&["EVALSHA", &ret1, "0"]);
    let _warm_up = redis_benchmark(port, clients, 1, 1_000, &ret1_cmd);
    let floor_cmd = s(&[
        "FCALL",
        "floor_gcra",
        "1",
        "f:{__rand_int__}",
        "1",
        "1000000",
        "1",
    ]);
    // Every case over 1,000 tags: each key is decided many times.
    let cases = [
        (
            "GCRA check (whole-µs interval)",
            1_000,
            randomised(&gcra_cmd, "cg"),
        ),
        (
            "GCRA check (fractional interval, 3/s)",
            1_000,
            randomised(&frac_cmd, "cf"),
        ),
        (
            "policy set: GCRA + sliding log 64 + counter",
            1_000,
            randomised(&policy_cmd, "cp"),
        ),
        (
            "budget reserve (2 limits, alerts, a hold in the state)",
            1_000,
            randomised(&budget_cmd, "cb"),
        ),
        (
            "model admission (total + success, a request in flight)",
            1_000,
            far_deadline(
                model_cmd
                    .iter()
                    .map(|a| a.replace("cm", "__rand_int__"))
                    .collect(),
            ),
        ),
    ];
    // The machine is shared and noisy: every case runs `rounds` times,
    // interleaved, and keeps its best figure.
    let best = |a: Served, b: Served| Served {
        per_sec: a.per_sec.max(b.per_sec),
        server_us: a.server_us.min(b.server_us),
    };
    let worst = || Served {
        per_sec: 0.0,
        server_us: f64::MAX,
    };
    let mut base = worst();
    let mut floor = worst();
    let mut served: Vec<Served> = cases.iter().map(|_| worst()).collect();
    let (mut shared, mut rt_shared, mut own, mut rt_own) = (0f64, 0f64, 0f64, 0f64);
    for _ in 0..rounds {
        base = best(base, redis_benchmark(port, clients, secs, 1_000, &ret1_cmd));
        floor = best(
            floor,
            redis_benchmark(port, clients, secs, 1_000, &floor_cmd),
        );
        for (slot, (_, keys, cmd)) in served.iter_mut().zip(&cases) {
            let v = redis_benchmark(port, clients, secs, *keys, cmd);
            *slot = best(std::mem::replace(slot, worst()), v);
        }
        let (d, rt) = end_to_end(port, clients, secs, true).await;
        if d > shared {
            (shared, rt_shared) = (d, rt);
        }
        let (d, rt) = end_to_end(port, clients, secs, false).await;
        if d > own {
            (own, rt_own) = (d, rt);
        }
    }
    let version = cli(port, &["INFO", "server"])
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:").map(str::to_owned))
        .unwrap_or_default();
    let _ = cli(port, &["SHUTDOWN", "NOSAVE"]);

    println!("redis-server {version} on loopback, {clients} clients, {secs} s per case, best of {rounds} rounds");
    println!();
    println!(
        "Server time (redis-benchmark driving each function; µs per call from INFO commandstats):"
    );
    println!();
    println!("| function | calls/s | server µs per call | ratio to the floor GCRA | ratio to ratebound's GCRA |");
    println!("|---|---|---|---|---|");
    println!(
        "| EVALSHA `return 1` | {:.0} | {:.2} | | |",
        base.per_sec, base.server_us
    );
    println!(
        "| floor GCRA (GET / SET PX, not exact) | {:.0} | {:.2} | 1.00 | |",
        floor.per_sec, floor.server_us
    );
    let gcra_us = served[0].server_us;
    for ((name, _, _), v) in cases.iter().zip(&served) {
        println!(
            "| ratebound {name} | {:.0} | {:.2} | {:.2} | {:.2} |",
            v.per_sec,
            v.server_us,
            v.server_us / floor.server_us,
            v.server_us / gcra_us
        );
    }
    println!();
    println!("End to end (the Rust client, {clients} concurrent callers, one GCRA check each call, 1,000 keys):");
    println!();
    println!("| client | decisions/s | ratio to redis-benchmark EVALSHA `return 1` | round trips per decision |");
    println!("|---|---|---|---|");
    println!(
        "| redis-benchmark EVALSHA `return 1` | {:.0} | 1.00 | 1 |",
        base.per_sec
    );
    println!(
        "| one shared RedisStore (one multiplexed connection) | {shared:.0} | {:.2} | {rt_shared:.2} |",
        shared / base.per_sec
    );
    println!(
        "| a RedisStore per caller ({clients} connections) | {own:.0} | {:.2} | {rt_own:.2} |",
        own / base.per_sec
    );
}
