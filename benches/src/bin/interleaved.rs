//! ratebound against governor in interleaved rounds: each round times both
//! libraries back to back on the same workload, and each library's figure is
//! its best round. On a shared 2-core VM a slow minute hits one criterion
//! group and not the next (means move by up to 40 % between runs); rounds
//! that alternate see the same machine. For the per-IP layers it also
//! prints each round's own ratio (median and middle half of the rounds),
//! which compares figures taken side by side rather than two minima taken
//! apart. Prints JSON for `report.py`.
//!
//! Each run is one process; with `processes` above 1 it runs itself that
//! many times and reports the medians, and the per-IP layers' ratio per
//! process (one process's figures differ from the next one's by more than
//! its rounds differ from each other).
//!
//! `cargo run --release -p ratebound-benches --bin interleaved [rounds] [processes]`

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant as StdInstant};

use governor::clock::FakeRelativeClock;
use governor::{Quota, RateLimiter as Governor};
use ratebound_benches::count_arg;
use ratebound_core::{AtomicGcra, Duration, Gcra, Instant};
use ratebound_std::clock::ManualClock;
use ratebound_std::keyed::{KeyedConfig, KeyedLimiter, OnFull};

const T0: u64 = 1_795_392_000_000_000;

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("non-zero")
}

/// Nanoseconds per operation of `run(ops)`.
fn per_op(ops: u64, run: impl FnOnce(u64)) -> f64 {
    let t = StdInstant::now();
    run(ops);
    t.elapsed().as_nanos() as f64 / ops as f64
}

/// One check among `n` held keys, the clock advancing 1 µs a check: the
/// workload of criterion's `keyed_1k` / `keyed_1m`.
fn keyed(n: u64, rounds: usize, ops: u64) -> (f64, f64) {
    let clock = ManualClock::new(Instant::from_micros(T0));
    let ours = KeyedLimiter::new(
        Gcra::per_second(1_000_000).expect("rate"),
        KeyedConfig::default()
            .with_max_keys(n as usize)
            .with_shards(64)
            .with_on_full(OnFull::DenyNewKeys),
        clock.clone(),
    )
    .expect("store");
    let gclock = FakeRelativeClock::default();
    let peer = Governor::dashmap_with_clock(Quota::per_second(nz(1_000_000)), gclock.clone());
    for k in 0..n {
        ours.check(&k, 1).expect("cost fits");
        let _ = peer.check_key(&k);
    }
    let (mut best_ours, mut best_peer) = (f64::MAX, f64::MAX);
    let mut k = 0u64;
    for _ in 0..rounds {
        best_ours = best_ours.min(per_op(ops, |ops| {
            for _ in 0..ops {
                k = (k + 7_919) % n;
                clock.advance(Duration::from_micros(1));
                black_box(ours.check(&k, 1).map(|d| d.allowed).unwrap_or(false));
            }
        }));
        best_peer = best_peer.min(per_op(ops, |ops| {
            for _ in 0..ops {
                k = (k + 7_919) % n;
                gclock.advance(StdDuration::from_micros(1));
                black_box(peer.check_key(&k).is_ok());
            }
        }));
    }
    (best_ours, best_peer)
}

/// Two threads admitting from one limiter whose burst never runs out: the
/// workload of criterion's `contended_2_threads`. Time per check, both
/// threads' checks counted.
fn contended(rounds: usize, ops: u64) -> (f64, f64) {
    let (mut best_ours, mut best_peer) = (f64::MAX, f64::MAX);
    for _ in 0..rounds {
        let ours = Arc::new(
            AtomicGcra::new(
                Gcra::new(1 << 40, 1_000_000_000, Duration::from_secs(1)).expect("rate"),
            )
            .expect("packable"),
        );
        best_ours = best_ours.min(per_op(ops, |ops| {
            std::thread::scope(|s| {
                for _ in 0..2 {
                    let l = &ours;
                    s.spawn(move || {
                        for _ in 0..ops / 2 {
                            let d = l.check(Instant::from_micros(T0), 1);
                            black_box(d.map(|d| d.allowed).unwrap_or(false));
                        }
                    });
                }
            });
        }));
        let peer = Arc::new(Governor::direct_with_clock(
            Quota::per_second(nz(1_000_000_000)).allow_burst(nz(u32::MAX)),
            FakeRelativeClock::default(),
        ));
        best_peer = best_peer.min(per_op(ops, |ops| {
            std::thread::scope(|s| {
                for _ in 0..2 {
                    let g = &peer;
                    s.spawn(move || {
                        for _ in 0..ops / 2 {
                            black_box(g.check().is_ok());
                        }
                    });
                }
            });
        }));
    }
    (best_ours, best_peer)
}

/// The per-IP layer's added time per request (the workload of criterion's
/// `http_layer_per_ip`): the handler alone, behind ratebound's layer and
/// behind tower_governor's, and behind a layer that does nothing (tower's
/// `MapResponseLayer` with the identity: what any layer costs axum), each
/// round all four back to back, on stores made for the round (fresh hash
/// seeds), starting with a different router each round. Returns each one's
/// best round, and each round's own ratio of the two layers' added times
/// (paired: the four figures of a round saw the same machine), sorted.
fn http_layer(rounds: usize, ops: u64) -> ([f64; 4], Vec<f64>) {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    use axum::body::Body;
    use axum::extract::ConnectInfo;
    use axum::routing::get;
    use axum::Router;
    use ratebound_std::clock::MonotonicClock;
    use ratebound_std::http::rate_limit::{PeerIp, RateLimitLayer};
    use ratebound_std::keyed::AnyKeyedLimiter;
    use ratebound_std::limiter::{AnyLimiter, LimitSet};
    use tower::ServiceExt;
    use tower_governor::governor::GovernorConfigBuilder;
    use tower_governor::GovernorLayer;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let app = || Router::new().route("/", get(|| async { "ok" }));
    // Both stores hash with a seed drawn when they are made, which decides
    // where the 1,024 keys fall (how full each shard's table is, how far a
    // lookup probes): each round makes fresh stores, so no one seed decides
    // a side's figure.
    let routers = || {
        let limits = LimitSet::one(
            "per_second",
            AnyLimiter::Gcra(Gcra::per_second(1_000_000).expect("rate")),
        )
        .expect("set");
        let limits = AnyKeyedLimiter::memory(limits, KeyedConfig::default(), MonotonicClock::new())
            .expect("store");
        let config = GovernorConfigBuilder::default()
            .per_nanosecond(1_000)
            .burst_size(1_000_000)
            .finish()
            .expect("quota");
        [
            app().with_state(()),
            app()
                .layer(RateLimitLayer::new(limits, PeerIp::new()))
                .with_state(()),
            app().layer(GovernorLayer::new(config)).with_state(()),
            app()
                .layer(tower::util::MapResponseLayer::new(
                    |r: axum::response::Response| r,
                ))
                .with_state(()),
        ]
    };
    let run = |router: &Router, ops: u64| {
        rt.block_on(async {
            for i in 0..ops {
                let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + (i as u32 % 1_024)));
                let mut req = http::Request::get("/")
                    .body(Body::empty())
                    .expect("request");
                req.extensions_mut()
                    .insert(ConnectInfo(SocketAddr::new(ip, 40_000)));
                let res = router.clone().oneshot(req).await.expect("infallible");
                assert_eq!(res.status(), 200);
            }
        })
    };
    let mut best = [f64::MAX; 4];
    let mut ratios = Vec::with_capacity(rounds);
    for n in 0..rounds {
        let routers = routers();
        for r in &routers {
            run(r, 2 * 1_024); // every key held before the clock starts
        }
        let mut round = [0.0; 4];
        // Each round starts with the next router, so none always runs
        // right after the same one (a cache or a predictor warmed by the
        // router before favours or penalises whichever comes next).
        for k in 0..routers.len() {
            let i = (n + k) % routers.len();
            round[i] = per_op(ops, |ops| run(&routers[i], ops));
            best[i] = best[i].min(round[i]);
        }
        let [bare, ours, peer, _] = round;
        ratios.push((ours - bare) / (peer - bare));
    }
    ratios.sort_by(f64::total_cmp);
    (best, ratios)
}

/// The middle of sorted `v` (the mean of the two middle values when there
/// are an even number) and the range holding its middle half (quartiles by
/// nearest rank).
fn median_and_quartiles(v: &[f64]) -> [f64; 3] {
    let at = |q: f64| {
        v.get(((v.len() - 1) as f64 * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    let median = match v.len() {
        n if n % 2 == 0 && n > 0 => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        _ => at(0.5),
    };
    [median, at(0.25), at(0.75)]
}

fn main() {
    const USAGE: &str = "interleaved [rounds] [processes]";
    let rounds = count_arg(1, "rounds", 15, USAGE);
    let processes = count_arg(2, "processes", 1, USAGE);
    if processes > 1 {
        println!("{}", in_processes(rounds, processes));
        return;
    }
    let (k1k, g1k) = keyed(1_000, rounds, 2_000_000);
    let (k1m, g1m) = keyed(1_000_000, rounds, 1_000_000);
    let (c, gc) = contended(rounds, 4_000_000);
    let ([bare, layer, peer_layer, noop_layer], ratios) = http_layer(rounds, 100_000);
    let [median, q1, q3] = median_and_quartiles(&ratios);
    println!(
        "{{\"rounds\": {rounds}, \
         \"keyed_1k\": [{k1k:.1}, {g1k:.1}], \
         \"keyed_1m\": [{k1m:.1}, {g1m:.1}], \
         \"contended_2_threads\": [{c:.1}, {gc:.1}], \
         \"http_layer_per_ip\": [{bare:.1}, {layer:.1}, {peer_layer:.1}, {noop_layer:.1}], \
         \"http_layer_per_ip_round_ratio\": [{median:.3}, {q1:.3}, {q3:.3}]}}"
    );
}

/// The run repeated in `processes` fresh processes, one after another:
/// each figure the median of the processes' own, and the per-IP layers'
/// paired ratio as each process's median, sorted, with their median. A
/// process's figures agree closely round to round but can differ from the
/// next process's by ±10 % on this VM, more than the rounds of one process
/// can show.
fn in_processes(rounds: usize, processes: usize) -> serde_json::Value {
    use serde_json::{json, Value};
    let exe = std::env::current_exe().expect("own path");
    let runs: Vec<Value> = (0..processes)
        .map(|_| {
            let out = std::process::Command::new(&exe)
                .arg(rounds.to_string())
                .output()
                .expect("run a process");
            assert!(out.status.success(), "a process failed: {out:?}");
            serde_json::from_slice(&out.stdout).expect("a process's JSON")
        })
        .collect();
    // One value per process for each figure, or the run is not comparable.
    let values = |name: &str, i: usize| -> Vec<f64> {
        let mut v: Vec<f64> = runs
            .iter()
            .map(|r| {
                r[name][i]
                    .as_f64()
                    .expect("every process reports every figure")
            })
            .collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let field = |name: &str| -> Value {
        let len = runs[0][name]
            .as_array()
            .expect("every process reports every figure")
            .len();
        (0..len)
            .map(|i| median_and_quartiles(&values(name, i))[0])
            .collect()
    };
    let per_process = values("http_layer_per_ip_round_ratio", 0);
    let per_process_median = median_and_quartiles(&per_process)[0];
    json!({
        "rounds": rounds,
        "processes": processes,
        "keyed_1k": field("keyed_1k"),
        "keyed_1m": field("keyed_1m"),
        "contended_2_threads": field("contended_2_threads"),
        "http_layer_per_ip": field("http_layer_per_ip"),
        "http_layer_per_ip_process_ratios": per_process,
        "http_layer_per_ip_process_median": per_process_median,
    })
}
