//! Instruction counts (gungraun over valgrind's callgrind) for the core
//! operations and the governor peer, and for the per-IP HTTP layers against
//! tower_governor's: repeatable on noisy machines and independent of where
//! the linker puts the code, so a regression shows as a changed count. Each
//! core benchmark runs 1000 operations; each per-IP one serves 1,024
//! requests, one per client, after a setup (not counted) that built the
//! router and served every client once.
//!
//! `cargo install gungraun-runner --version 0.20.0`, then
//! `cargo bench -p ratebound-benches --bench instructions`.
// The gungraun macros generate undocumented modules.
#![allow(missing_docs)]

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::Duration as StdDuration;

use governor::clock::FakeRelativeClock;
use governor::{Quota, RateLimiter as Governor};
use gungraun::{library_benchmark, library_benchmark_group, main};
use ratebound_core::backoff::{Backoff, Jitter};
use ratebound_core::budget::{Admission, Budget, BudgetConfig, BudgetState, Usage};
use ratebound_core::{Duration, Gcra, GcraState, Instant, SlidingCounter, SlidingCounterState};

const T0: u64 = 1_795_392_000_000_000;
const OPS: u64 = 1_000;

#[library_benchmark]
fn gcra_allow_ratebound() -> u64 {
    let g = Gcra::new(1_000, 1_000_000, Duration::from_secs(1)).expect("valid");
    let mut s = GcraState::default();
    let mut ok = 0;
    for i in 0..OPS {
        ok += u64::from(
            g.check(&mut s, Instant::from_micros(T0 + i), 1)
                .expect("fits")
                .allowed,
        );
    }
    black_box(ok)
}

#[library_benchmark]
fn gcra_allow_governor() -> u64 {
    let clock = FakeRelativeClock::default();
    let l = Governor::direct_with_clock(
        Quota::per_second(NonZeroU32::new(1_000_000).expect("nz"))
            .allow_burst(NonZeroU32::new(1_000).expect("nz")),
        clock.clone(),
    );
    let mut ok = 0;
    for _ in 0..OPS {
        clock.advance(StdDuration::from_micros(1));
        ok += u64::from(l.check().is_ok());
    }
    black_box(ok)
}

#[library_benchmark]
fn gcra_deny_ratebound() -> u64 {
    let g = Gcra::per_second(10).expect("valid");
    let mut s = GcraState::default();
    let now = Instant::from_micros(T0);
    g.check(&mut s, now, 10).expect("fits");
    let mut ok = 0;
    for _ in 0..OPS {
        // black_box: the same denial every time, which the compiler would
        // otherwise hoist out of the loop once `check` is inlined.
        ok += u64::from(
            g.check(black_box(&mut s), black_box(now), 1)
                .expect("fits")
                .allowed,
        );
    }
    black_box(ok)
}

#[library_benchmark]
fn gcra_deny_governor() -> u64 {
    let l = Governor::direct_with_clock(
        Quota::per_second(NonZeroU32::new(10).expect("nz")),
        FakeRelativeClock::default(),
    );
    let mut ok = 0;
    for _ in 0..OPS + 10 {
        ok += u64::from(l.check().is_ok());
    }
    black_box(ok)
}

#[library_benchmark]
fn sliding_counter_check() -> u64 {
    let c = SlidingCounter::new(50, Duration::from_millis(1)).expect("valid");
    let mut s = SlidingCounterState::default();
    let mut ok = 0;
    for i in 0..OPS {
        ok += u64::from(
            c.check(&mut s, Instant::from_micros(T0 + i * 10), 1)
                .expect("fits")
                .allowed,
        );
    }
    black_box(ok)
}

#[library_benchmark]
fn budget_reserve_settle() -> u64 {
    let b = Budget::new(
        BudgetConfig::new()
            .tokens_per_minute(1 << 40)
            .cost_per_day(1 << 45)
            .alert_threshold_bp(8_000),
    )
    .expect("valid");
    let mut st = BudgetState::<16>::default();
    let mut n = 0;
    for i in 0..OPS {
        let t = Instant::from_micros(T0 + i);
        if let Admission::Granted(h) = b
            .reserve(&mut st, t, Usage::request(1_000, 2_000))
            .expect("fits")
            .admission
        {
            n += b
                .settle(&mut st, t, h, Usage::request(900, 1_800))
                .expect("held")
                .charged
                .tokens;
        }
    }
    black_box(n)
}

#[library_benchmark]
fn backoff_next() -> u64 {
    let p = Backoff::new(Duration::from_millis(100), Duration::from_secs(30))
        .expect("valid")
        .with_jitter(Jitter::Full)
        .without_max_retries();
    let mut st = p.start(Instant::from_micros(T0), 7);
    let mut sum = 0;
    for _ in 0..OPS {
        if let ratebound_core::backoff::Step::Retry { delay, .. } =
            p.next(&mut st, Instant::from_micros(T0), None)
        {
            sum += delay.as_micros();
        }
    }
    black_box(sum)
}

library_benchmark_group!(
    name = core_ops,
    benchmarks = [
        gcra_allow_ratebound,
        gcra_allow_governor,
        gcra_deny_ratebound,
        gcra_deny_governor,
        sliding_counter_check,
        budget_reserve_settle,
        backoff_next
    ]
);

/// Requests each per-IP benchmark serves: one per client, each client's key
/// held already (`report.py` divides by the same number).
const CLIENTS: u32 = 1_024;

/// What stands in front of the handler in a per-IP benchmark.
enum Front {
    Bare,
    Ratebound,
    TowerGovernor,
    /// tower's `MapResponseLayer` with the identity: what any layer costs.
    DoNothing,
}

/// A router with its runtime, every client's key held and every path run
/// once (made in the benchmark's setup, so none of it is counted). Leaked:
/// the benchmark runs once in its own process.
struct Served {
    rt: tokio::runtime::Runtime,
    router: axum::Router,
}

fn served(front: Front) -> &'static Served {
    use axum::routing::get;
    use ratebound_std::clock::MonotonicClock;
    use ratebound_std::http::rate_limit::{PeerIp, RateLimitLayer};
    use ratebound_std::keyed::{AnyKeyedLimiter, KeyedConfig};
    use ratebound_std::limiter::{AnyLimiter, LimitSet};
    use tower_governor::governor::GovernorConfigBuilder;
    use tower_governor::GovernorLayer;

    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let app = axum::Router::new().route("/", get(|| async { "ok" }));
    let router = match front {
        Front::Bare => app,
        Front::Ratebound => {
            let limits = LimitSet::one(
                "per_second",
                AnyLimiter::Gcra(Gcra::per_second(1_000_000).expect("rate")),
            )
            .expect("set");
            let limits =
                AnyKeyedLimiter::memory(limits, KeyedConfig::default(), MonotonicClock::new())
                    .expect("store");
            app.layer(RateLimitLayer::new(limits, PeerIp::new()))
        }
        Front::TowerGovernor => app.layer(GovernorLayer::new(
            GovernorConfigBuilder::default()
                .per_nanosecond(1_000)
                .burst_size(1_000_000)
                .finish()
                .expect("quota"),
        )),
        Front::DoNothing => app.layer(tower::util::MapResponseLayer::new(
            |r: axum::response::Response| r,
        )),
    };
    // Finalised as a server would (criterion's http_layer does the same):
    // without it axum would build each route, layer included, per request.
    let served = Box::leak(Box::new(Served {
        rt,
        router: router.with_state(()),
    }));
    assert_eq!(
        requests(served),
        u64::from(CLIENTS),
        "every client admitted"
    );
    served
}

/// One request from each client through the router; how many were
/// answered 200.
fn requests(s: &Served) -> u64 {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    use axum::extract::ConnectInfo;
    use tower::ServiceExt;

    s.rt.block_on(async {
        let mut ok = 0;
        for i in 0..CLIENTS {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            let mut req = http::Request::get("/")
                .body(axum::body::Body::empty())
                .expect("request");
            req.extensions_mut()
                .insert(ConnectInfo(SocketAddr::new(ip, 40_000)));
            let res = s.router.clone().oneshot(req).await.expect("infallible");
            ok += u64::from(res.status() == 200);
        }
        ok
    })
}

#[library_benchmark]
#[bench::warm(served(Front::Bare))]
fn per_ip_bare(s: &'static Served) -> u64 {
    black_box(requests(s))
}

#[library_benchmark]
#[bench::warm(served(Front::Ratebound))]
fn per_ip_ratebound(s: &'static Served) -> u64 {
    black_box(requests(s))
}

#[library_benchmark]
#[bench::warm(served(Front::TowerGovernor))]
fn per_ip_tower_governor(s: &'static Served) -> u64 {
    black_box(requests(s))
}

#[library_benchmark]
#[bench::warm(served(Front::DoNothing))]
fn per_ip_do_nothing(s: &'static Served) -> u64 {
    black_box(requests(s))
}

library_benchmark_group!(
    name = per_ip_layer,
    benchmarks = [
        per_ip_bare,
        per_ip_ratebound,
        per_ip_tower_governor,
        per_ip_do_nothing
    ]
);

main!(library_benchmark_groups = core_ops, per_ip_layer);
