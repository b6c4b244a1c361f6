//! Model-level limits in Redis: the same decisions as in memory, shared by
//! many connections (replicas), and the failure policies when Redis dies,
//! restarts empty, or loses its scripts.

mod support;

use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant as StdInstant};

use ratebound_core::{Duration, Instant};
use ratebound_std::clock::ManualClock;
use ratebound_std::fallback::{FailoverOptions, OnUnavailable, Source};
use ratebound_std::model_limit::RedisModelLimiter;
use ratebound_std::model_limit::{
    AdmitError, AdmitRequests, Admitted, Identity, ModelLimitConfig, ModelLimiter, Outcome,
};
use ratebound_std::redis::{RedisOptions, RedisStore, TimeSource};
use support::redis_server::RedisServer;

fn config(toml: &str) -> ModelLimitConfig {
    ModelLimitConfig::from_toml(toml).unwrap()
}

fn opts(clock: Option<&ManualClock>, timeout_ms: u64) -> RedisOptions {
    RedisOptions {
        time: clock.map_or(TimeSource::Redis, |c| {
            TimeSource::Caller(Arc::new(c.clone()))
        }),
        timeout: StdDuration::from_millis(timeout_ms),
        ..RedisOptions::default()
    }
}

async fn limiter(
    server: &RedisServer,
    cfg: &str,
    clock: &ManualClock,
    on: OnUnavailable,
    timeout_ms: u64,
) -> RedisModelLimiter<ManualClock> {
    let store = RedisStore::connect(&server.url(), opts(Some(clock), timeout_ms))
        .await
        .unwrap();
    RedisModelLimiter::new(store, config(cfg), FailoverOptions::new(on), clock.clone()).unwrap()
}

#[tokio::test]
async fn redis_decides_exactly_like_memory() {
    let server = RedisServer::start();
    let clock = ManualClock::new(Instant::from_secs(1_800_000_000));
    let cfg = "period_minutes = 1\ntotal_max = 7\nsuccess_max = 4\ngroups = { vip = [0, 9] }";
    let redis = limiter(&server, cfg, &clock, OnUnavailable::Closed, 5000).await;
    let memory = ModelLimiter::new(config(cfg), Default::default(), clock.clone()).unwrap();
    let users = [
        Identity::user("a"),
        Identity::user("b").with_user_group("vip"),
    ];
    let mut held_r = Vec::new();
    let mut held_m = Vec::new();
    let mut rng = 0x2545f4914f6cdd1du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let (mut admitted, mut denied) = (0, 0);
    for step in 0..400 {
        clock.advance(Duration::from_micros(next() % 600_000));
        match next() % 4 {
            0 | 1 => {
                let who = &users[(next() % 2) as usize];
                let model = ["m1", "m2"][(next() % 2) as usize];
                let r = redis.admit(who, model).await.unwrap();
                let m = memory.admit(who, model).unwrap();
                assert_eq!(r.source(), Source::Redis);
                assert_eq!(Admitted::decision(&r), m.decision(), "step {step}");
                if m.allowed() {
                    admitted += 1;
                    held_r.push(r);
                    held_m.push(m);
                } else {
                    denied += 1;
                }
            }
            k if !held_r.is_empty() => {
                let i = (next() as usize) % held_r.len();
                let outcome = if k == 2 {
                    Outcome::Success
                } else {
                    Outcome::Failure
                };
                held_r.swap_remove(i).settle(outcome).await;
                held_m.swap_remove(i).settle(outcome);
            }
            _ => {}
        }
    }
    assert!(
        admitted > 50 && denied > 50,
        "{admitted} admitted, {denied} denied"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_replicas_fifty_concurrent_requests_ten_successes() {
    let server = RedisServer::start();
    let mut replicas = Vec::new();
    for _ in 0..8 {
        let store = RedisStore::connect(&server.url(), opts(None, 5000))
            .await
            .unwrap();
        let clock = ManualClock::new(Instant::ZERO); // unused: Redis TIME decides
        replicas.push(Arc::new(
            RedisModelLimiter::new(
                store,
                config("period_minutes = 60\nsuccess_max = 10"),
                FailoverOptions::new(OnUnavailable::Closed),
                clock,
            )
            .unwrap(),
        ));
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    let mut tasks = Vec::new();
    for i in 0..50 {
        let (r, barrier) = (Arc::clone(&replicas[i % 8]), Arc::clone(&barrier));
        tasks.push(tokio::spawn(async move {
            let a = r.admit(&Identity::user("alice"), "gpt-4").await.unwrap();
            let ok = a.decision().allowed();
            barrier.wait().await; // every admission decided before any settles
            a.settle(Outcome::Success).await;
            ok
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += t.await.unwrap() as usize;
    }
    assert_eq!(ok, 10);
    // The ten successes used the whole success count.
    assert!(!replicas[3]
        .admit(&Identity::user("alice"), "gpt-4")
        .await
        .unwrap()
        .decision()
        .allowed());
}

#[tokio::test]
async fn failure_policies_when_redis_dies_and_comes_back() {
    let server = RedisServer::start();
    let clock = ManualClock::new(Instant::from_secs(1_800_000_000));
    let cfg = "period_minutes = 60\nsuccess_max = 2";
    let who = Identity::user("u");
    let closed = limiter(&server, cfg, &clock, OnUnavailable::Closed, 200).await;
    let open = limiter(&server, cfg, &clock, OnUnavailable::Open, 200).await;
    let local = limiter(&server, cfg, &clock, OnUnavailable::Local, 200).await;
    for l in [&closed, &open, &local] {
        assert_eq!(l.admit(&who, "m").await.unwrap().source(), Source::Redis);
    }
    server.kill();
    // Each policy answers, quickly (the 200 ms timeout, then the breaker).
    for _ in 0..3 {
        let t = StdInstant::now();
        assert!(matches!(
            closed.admit(&who, "m").await,
            Err(AdmitError::Unavailable(_))
        ));
        let o = open.admit(&who, "m").await.unwrap();
        assert_eq!(o.source(), Source::FailOpen);
        assert!(o.decision().allowed());
        assert!(t.elapsed() < StdDuration::from_secs(2), "{:?}", t.elapsed());
    }
    // Local: this replica's own count (success 2) holds while Redis is away.
    let a = local.admit(&who, "m").await.unwrap();
    let b = local.admit(&who, "m").await.unwrap();
    let c = local.admit(&who, "m").await.unwrap();
    assert_eq!(
        (a.source(), b.source(), c.source()),
        (Source::Local, Source::Local, Source::Local)
    );
    assert!(a.decision().allowed() && b.decision().allowed() && !c.decision().allowed());
    drop((a, b, c));
    // Redis restarts empty (no scripts loaded): calls recover by themselves.
    server.restart();
    let deadline = StdInstant::now() + StdDuration::from_secs(10);
    for l in [&closed, &open, &local] {
        loop {
            match l.admit(&who, "m").await {
                Ok(a) if a.source() == Source::Redis => break,
                _ => {
                    assert!(StdInstant::now() < deadline, "no recovery");
                    tokio::time::sleep(StdDuration::from_millis(50)).await;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_load_then_function_flush() {
    let server = RedisServer::start();
    let clock = ManualClock::new(Instant::from_secs(1_800_000_000));
    let l = Arc::new(
        limiter(
            &server,
            "period_minutes = 60\nsuccess_max = 1000000",
            &clock,
            OnUnavailable::Local,
            150,
        )
        .await,
    );
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (l, stop) = (Arc::clone(&l), Arc::clone(&stop));
        tasks.push(tokio::spawn(async move {
            let (mut redis, mut local, mut slowest) = (0, 0, StdDuration::ZERO);
            let who = Identity::user(format!("u{i}"));
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let t = StdInstant::now();
                let a = l.admit(&who, "m").await.unwrap();
                slowest = slowest.max(t.elapsed());
                match a.source() {
                    Source::Redis => redis += 1,
                    _ => local += 1,
                }
                a.settle(Outcome::Success).await;
                // A real request does I/O here; without it, fallback
                // decisions (no await) would starve the runtime's timers.
                tokio::task::yield_now().await;
            }
            (redis, local, slowest)
        }));
    }
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    server.kill();
    tokio::time::sleep(StdDuration::from_millis(700)).await;
    server.restart();
    tokio::time::sleep(StdDuration::from_millis(1500)).await;
    // The functions vanish mid-run: they are loaded again.
    server.cli(&["FUNCTION", "FLUSH"]).unwrap();
    let t = StdInstant::now();
    loop {
        let a = l.admit(&Identity::user("check"), "m").await.unwrap();
        if a.source() == Source::Redis {
            break;
        }
        assert!(
            t.elapsed() < StdDuration::from_secs(10),
            "no recovery after restart and FUNCTION FLUSH"
        );
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    eprintln!("redis decided again {:?} after the flush", t.elapsed());
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (mut redis, mut local) = (0, 0);
    for t in tasks {
        let (r, lo, slowest) = t.await.unwrap();
        redis += r;
        local += lo;
        // No call hangs beyond the timeout (plus a reconnect attempt and scheduling).
        assert!(
            slowest < StdDuration::from_millis(1500),
            "slowest call {slowest:?}"
        );
    }
    assert!(
        redis > 100 && local > 0,
        "{redis} decided in redis, {local} locally"
    );
}

#[tokio::test]
async fn a_plain_limiter_follows_its_failure_policy() {
    use ratebound_std::config::AnyLimiter;
    use ratebound_std::keyed::KeyedConfig;
    use ratebound_std::keyed::RedisKeyedLimiter as RedisLimiter;
    let server = RedisServer::start();
    let clock = ManualClock::new(Instant::from_secs(1_800_000_000));
    let g = AnyLimiter::Gcra(ratebound_core::Gcra::new(2, 2, Duration::from_secs(60)).unwrap());
    let make = |on| {
        let clock = clock.clone();
        let url = server.url();
        async move {
            let store = RedisStore::connect(&url, opts(Some(&clock), 200))
                .await
                .unwrap();
            RedisLimiter::new(
                store,
                "api",
                g,
                FailoverOptions::new(on),
                KeyedConfig::default(),
                clock,
            )
            .unwrap()
        }
    };
    let (closed, open, local) = (
        make(OnUnavailable::Closed).await,
        make(OnUnavailable::Open).await,
        make(OnUnavailable::Local).await,
    );
    // Shared through Redis: the three limiters see one count of 2.
    assert_eq!(closed.check(b"k", 1).await.unwrap().source, Source::Redis);
    assert!(open.check(b"k", 1).await.unwrap().decision.allowed);
    let third = local.check(b"k", 1).await.unwrap();
    assert_eq!(
        (third.source, third.decision.allowed),
        (Source::Redis, false)
    );
    assert!(
        closed.check(b"k", 3).await.is_err(),
        "a cost that never fits is an error, not a fallback"
    );
    server.kill();
    assert!(closed.check(b"k", 1).await.unwrap_err().is_unavailable());
    let o = open.check(b"k", 1).await.unwrap();
    assert_eq!((o.source, o.decision.allowed), (Source::FailOpen, true));
    let l: Vec<_> = [
        local.check(b"k", 1).await.unwrap(),
        local.check(b"k", 1).await.unwrap(),
        local.check(b"k", 1).await.unwrap(),
    ]
    .into();
    assert!(l.iter().all(|v| v.source == Source::Local));
    assert_eq!(
        l.iter().map(|v| v.decision.allowed).collect::<Vec<_>>(),
        [true, true, false],
        "the local count of 2 holds"
    );
    server.restart();
    tokio::time::sleep(StdDuration::from_millis(1100)).await; // past the breaker
    assert_eq!(closed.check(b"k2", 1).await.unwrap().source, Source::Redis);
    assert_eq!(local.check(b"k2", 1).await.unwrap().source, Source::Redis);
}

/// The same budget-manager calls on both backends give the same answers;
/// two Redis managers (two servers) draw on one budget.
#[tokio::test]
async fn the_budget_manager_switches_backends_by_config() {
    use ratebound_core::budget::{BudgetConfig, Dimension, Horizon, Usage};
    use ratebound_std::budget::UsageRecord;
    use ratebound_std::budget::{AnyBudgetManager, BudgetBackend, RedisBudgetError};
    let server = RedisServer::start();
    let clock = ManualClock::new(Instant::from_secs(1_800_000_000));
    let cfg = || {
        BudgetConfig::new()
            .limit(Dimension::Tokens, Horizon::MINUTE, 1_000)
            .limit(Dimension::Cost, Horizon::DAY, 50_000)
            .alert_threshold_bp(5_000)
            .alert_threshold_bp(9_000)
    };
    let store = RedisStore::connect(&server.url(), opts(Some(&clock), 5000))
        .await
        .unwrap();
    let backend = BudgetBackend::Redis {
        store: store.clone(),
        key: b"team-a".to_vec(),
        hold_slots: 16,
        failover: FailoverOptions::new(OnUnavailable::Closed),
    };
    let redis = AnyBudgetManager::new(cfg(), backend.clone(), clock.clone()).unwrap();
    let other_server = AnyBudgetManager::new(cfg(), backend, clock.clone()).unwrap();
    let memory = AnyBudgetManager::new(cfg(), BudgetBackend::Memory, clock.clone()).unwrap();
    let (ra, ma) = (redis.subscribe(), memory.subscribe());
    for step in 0..40u64 {
        clock.advance(Duration::from_secs(7));
        let est = Usage {
            requests: 1,
            tokens: 50 + step * 13 % 200,
            cost: 1_000 + step * 97,
        };
        let (r, m) = (redis.reserve(est).await, memory.reserve(est).await);
        match (r, m) {
            (Ok(r), Ok(m)) => {
                let actual = Usage {
                    tokens: est.tokens / 2,
                    ..est
                };
                if step % 3 == 0 {
                    drop((r, m)); // released
                } else {
                    assert_eq!(
                        r.settle(actual).await.unwrap(),
                        m.settle(actual).await.unwrap(),
                        "step {step}"
                    );
                }
            }
            (Err(RedisBudgetError::Denied(a)), Err(RedisBudgetError::Denied(b))) => {
                assert_eq!(a, b, "step {step}")
            }
            (r, m) => panic!(
                "step {step}: redis {:?} vs memory {:?}",
                r.map(|h| h.usage()),
                m.map(|h| h.usage())
            ),
        }
        let rec = UsageRecord {
            tokens: 5,
            cost: 10,
            ..UsageRecord::default()
        };
        redis.record_usage(&rec).await.unwrap();
        memory.record_usage(&rec).await.unwrap();
        tokio::task::yield_now().await; // let dropped holds release
        tokio::time::sleep(StdDuration::from_millis(5)).await;
        assert_eq!(
            redis.status().await.unwrap(),
            memory.status().await.unwrap(),
            "step {step}"
        );
        assert_eq!(
            redis.check_budget(100, 100).await.is_ok(),
            memory.check_budget(100, 100).await.is_ok()
        );
    }
    let (ra, ma): (Vec<_>, Vec<_>) = (ra.try_iter().collect(), ma.try_iter().collect());
    assert!(!ra.is_empty(), "alerts fired");
    assert_eq!(ra, ma, "the same alerts, in the same order");
    // The other server sees the same budget.
    assert_eq!(
        other_server.status().await.unwrap(),
        redis.status().await.unwrap()
    );
}

#[tokio::test]
async fn budget_failure_policies() {
    use ratebound_core::budget::{BudgetConfig, Dimension, Horizon, Usage};
    use ratebound_std::budget::{AnyBudgetManager, BudgetBackend};
    let server = RedisServer::start();
    let clock = ManualClock::new(Instant::from_secs(1_800_000_000));
    let cfg = || BudgetConfig::new().limit(Dimension::Tokens, Horizon::MINUTE, 1_000);
    let make = |on| {
        let (clock, url) = (clock.clone(), server.url());
        async move {
            let store = RedisStore::connect(&url, opts(Some(&clock), 200))
                .await
                .unwrap();
            let backend = BudgetBackend::Redis {
                store,
                key: b"t".to_vec(),
                hold_slots: 8,
                failover: FailoverOptions::new(on),
            };
            AnyBudgetManager::new(cfg(), backend, clock).unwrap()
        }
    };
    let (closed, open, local) = (
        make(OnUnavailable::Closed).await,
        make(OnUnavailable::Open).await,
        make(OnUnavailable::Local).await,
    );
    let u = |t| Usage {
        requests: 1,
        tokens: t,
        cost: 0,
    };
    closed
        .reserve(u(600))
        .await
        .unwrap()
        .settle(u(600))
        .await
        .unwrap();
    assert!(
        open.reserve(u(600)).await.is_err(),
        "shared through Redis: 600 + 600 > 1000"
    );
    server.kill();
    assert!(closed.reserve(u(10)).await.is_err());
    assert!(closed.check_budget(10, 0).await.is_err());
    let o = open.reserve(u(900)).await.unwrap();
    assert!(
        matches!(&o, ratebound_std::budget::AnyBudgetHold::Redis(h) if h.source() == Source::FailOpen)
    );
    assert_eq!(
        o.settle(u(900)).await.unwrap(),
        None,
        "nothing to charge while failing open"
    );
    // Local: this server's own budget of 1,000 stands in.
    local
        .reserve(u(700))
        .await
        .unwrap()
        .settle(u(700))
        .await
        .unwrap();
    assert!(
        local.reserve(u(400)).await.is_err(),
        "the local budget holds"
    );
    assert_eq!(local.status().await.unwrap().limits[0].used, 700);
    server.restart();
    tokio::time::sleep(StdDuration::from_millis(1100)).await;
    let h = closed.reserve(u(10)).await.unwrap();
    assert!(
        matches!(&h, ratebound_std::budget::AnyBudgetHold::Redis(r) if r.source() == Source::Redis)
    );
    drop(h);
}

/// Core's rule for a reservation the budget no longer knows (it was reset
/// meanwhile): settling it charges nothing, in memory and in Redis alike.
#[tokio::test]
async fn settling_an_unknown_reservation_charges_nothing_in_either_backend() {
    use ratebound_core::budget::{BudgetConfig, Dimension, Horizon, Usage};
    use ratebound_std::budget::{AnyBudgetManager, BudgetBackend};
    let server = RedisServer::start();
    let clock = ManualClock::new(Instant::from_secs(1_800_000_000));
    let cfg = || BudgetConfig::new().limit(Dimension::Tokens, Horizon::MINUTE, 1_000);
    let store = RedisStore::connect(&server.url(), opts(Some(&clock), 5000))
        .await
        .unwrap();
    let redis = BudgetBackend::Redis {
        store,
        key: b"team".to_vec(),
        hold_slots: 16,
        failover: FailoverOptions::new(OnUnavailable::Closed),
    };
    for backend in [BudgetBackend::Memory, redis] {
        let m = AnyBudgetManager::new(cfg(), backend, clock.clone()).unwrap();
        let hold = m.reserve(Usage::request(100, 0)).await.unwrap();
        m.reset().await.unwrap();
        assert_eq!(hold.settle(Usage::request(300, 0)).await.unwrap(), None);
        assert_eq!(m.status().await.unwrap().limits[0].used, 0);
    }
}
