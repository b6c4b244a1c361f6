//! Model quotas decide the same in memory and in Redis (one node and a
//! 3-master cluster): the committed fixtures replay through the script field
//! by field, the two repros of a scope switch and of a settle after a clock
//! step back run over both backends, and a randomized differential run with
//! groups changing per request compares every decision.
#![cfg(feature = "redis")]

mod support;

use std::sync::Arc;

use ratebound_core::model_quota::{ModelQuota, Outcome};
use ratebound_core::{Duration, Instant};
use ratebound_std::clock::{Clock, ManualClock};
use ratebound_std::fallback::{FailoverOptions, OnUnavailable};
use ratebound_std::model_limit::RedisModelLimiter;
use ratebound_std::model_limit::{
    AdmitRequests, Admitted, AnyInFlight, AnyModelLimiter, Identity, ModelDecision,
    ModelLimitConfig, ModelLimiter,
};
use ratebound_std::redis::{RedisModelQuotas, RedisOptions, RedisStore};
use support::redis_server::{RedisCluster, RedisServer};
use support::traces::{caller_time, fixtures, u};

async fn replay(store: &RedisStore, clock: &ManualClock, run: &str) -> usize {
    let file = fixtures("model_quota");
    let quotas = RedisModelQuotas::new(store.clone());
    let mut steps = 0;
    for (t, trace) in file["traces"].as_array().unwrap().iter().enumerate() {
        let scopes: Vec<ModelQuota> =
            serde_json::from_value(trace["config"]["quotas"].clone()).unwrap();
        let tag = format!("{run} model {{{t}}}");
        for (i, s) in trace["steps"].as_array().unwrap().iter().enumerate() {
            clock.set(Instant::from_micros(u(s, "now")));
            let q = &scopes[u(s, "scope") as usize];
            let what = format!("model_quota/{} step {i} ({})", trace["name"], s["op"]);
            let (got, state) = match s["op"].as_str().unwrap() {
                "admit" => {
                    let (d, st) = quotas.admit(tag.as_bytes(), q).await.unwrap();
                    (serde_json::to_value(d).unwrap(), st)
                }
                "peek" => {
                    let (d, st) = quotas.peek(tag.as_bytes(), q).await.unwrap();
                    (serde_json::to_value(d).unwrap(), st)
                }
                "settle" => {
                    let outcome: Outcome = serde_json::from_value(s["outcome"].clone()).unwrap();
                    let (r, st) = quotas
                        .settle(tag.as_bytes(), q, u(s, "id"), outcome)
                        .await
                        .unwrap();
                    (serde_json::to_value(r).unwrap(), st)
                }
                op => panic!("unknown op {op}"),
            };
            assert_eq!(got, s["expect"], "{what}: decision");
            let state = serde_json::to_value(state.expect("with_state")).unwrap();
            assert_eq!(state, s["state"], "{what}: state");
            steps += 1;
        }
    }
    steps
}

#[tokio::test]
async fn model_fixtures_replay_exactly_through_redis() {
    let server = RedisServer::start();
    let clock = ManualClock::new(Instant::ZERO);
    let store = RedisStore::connect(&server.url(), caller_time(&clock))
        .await
        .unwrap();
    assert_eq!(replay(&store, &clock, "single").await, 1440);
}

#[tokio::test]
async fn model_fixtures_replay_exactly_through_a_cluster() {
    let cluster = RedisCluster::start();
    let clock = ManualClock::new(Instant::ZERO);
    let urls = cluster.urls();
    let nodes: Vec<&str> = urls.iter().map(String::as_str).collect();
    let store = RedisStore::connect_cluster(&nodes, caller_time(&clock))
        .await
        .unwrap();
    assert_eq!(replay(&store, &clock, "cluster").await, 1440);
}

fn config(toml: &str) -> ModelLimitConfig {
    ModelLimitConfig::from_toml(toml).unwrap()
}

/// Both backends behind the library's seam ([`AnyModelLimiter`]): the same
/// test body runs over each.
struct Backend {
    limiter: AnyModelLimiter<ManualClock>,
    _server: Option<RedisServer>,
}

impl Backend {
    async fn both(cfg: &str, clock: &ManualClock) -> [Backend; 2] {
        let server = RedisServer::start();
        let store = RedisStore::connect(&server.url(), caller_time(clock))
            .await
            .unwrap();
        let redis = RedisModelLimiter::new(
            store,
            config(cfg),
            FailoverOptions::new(OnUnavailable::Closed),
            clock.clone(),
        )
        .unwrap();
        let memory = ModelLimiter::new(config(cfg), Default::default(), clock.clone()).unwrap();
        [
            Backend {
                limiter: AnyModelLimiter::Memory(Box::new(memory)),
                _server: None,
            },
            Backend {
                limiter: AnyModelLimiter::Redis(Box::new(redis)),
                _server: Some(server),
            },
        ]
    }

    fn name(&self) -> &'static str {
        match self.limiter {
            AnyModelLimiter::Memory(_) => "memory",
            AnyModelLimiter::Redis(_) => "redis",
        }
    }

    async fn admit(
        &self,
        who: &Identity,
        model: &str,
    ) -> (ModelDecision, Option<AnyInFlight<ManualClock>>) {
        let a = self.limiter.admit(who, model).await.unwrap();
        let d = *a.decision();
        (d, d.allowed().then_some(a))
    }
}

/// Global success limit 2, group `vip` 5: two requests without a group,
/// then five as `vip`. One count per user and model, held to the limits of
/// the group of the moment: 2 + 3 admitted, in both backends.
#[tokio::test]
async fn switching_groups_keeps_the_count_in_both_backends() {
    let clock = ManualClock::new(Instant::from_secs(1_800_000_000));
    let cfg = "period_minutes = 1\nsuccess_max = 2\ngroups = { vip = [0, 5] }";
    for b in Backend::both(cfg, &clock).await {
        let plain = Identity::user("alice");
        let vip = Identity::user("alice").with_user_group("vip");
        let mut held = Vec::new();
        let mut admitted = 0;
        for who in [&plain, &plain, &vip, &vip, &vip, &vip, &vip] {
            let (d, h) = b.admit(who, "gpt-4").await;
            admitted += d.allowed() as u32;
            held.extend(h);
        }
        assert_eq!(admitted, 5, "{}", b.name());
    }
}

/// Success limit 1 per minute; the second success settles 100 ms "before"
/// its admission (a clock step back): it is counted, so a third request in
/// the same minute is refused, in both backends.
#[tokio::test]
async fn a_settle_after_a_clock_step_back_is_counted_in_both_backends() {
    let clock = ManualClock::new(Instant::from_secs(1_800_000_000));
    let cfg = "period_minutes = 1\nsuccess_max = 1";
    for b in Backend::both(cfg, &clock).await {
        let who = Identity::user("bob");
        clock.set(Instant::from_secs(1_800_000_000));
        let (_, a) = b.admit(&who, "m").await;
        a.unwrap().settle(Outcome::Success).await;
        clock.advance(Duration::from_secs(60));
        let (_, second) = b.admit(&who, "m").await;
        clock.set(Instant::from_secs(1_800_000_060) - Duration::from_millis(100));
        second
            .expect("the first left the window")
            .settle(Outcome::Success)
            .await;
        clock.set(Instant::from_secs(1_800_000_060) + Duration::from_millis(50));
        let (third, _) = b.admit(&who, "m").await;
        assert!(
            !third.allowed(),
            "{}: a third success in one minute",
            b.name()
        );
    }
}

/// 6,000 random steps over four users whose groups change from request to
/// request, two models, holds that expire (1 s lease), settles in random
/// order and the clock now and then stepping back: memory and Redis give
/// the same decision at every step, field by field.
#[tokio::test]
async fn memory_and_redis_agree_over_random_steps_with_changing_groups() {
    let clock = ManualClock::new(Instant::from_secs(1_800_000_000));
    let cfg = "period_minutes = 1\ntotal_max = 9\nsuccess_max = 4\nhold_ttl_secs = 1\n\
               groups = { vip = [0, 7], free = [3, 1] }\nmodels = { big = [2, 2] }";
    let [memory, redis] = Backend::both(cfg, &clock).await;
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let groups = [None, Some("vip"), Some("free")];
    let mut held = Vec::new();
    let (mut admitted, mut denied, mut switches, mut last_group) = (0, 0, 0, [0u64; 4]);
    for step in 0..6_000 {
        match next(20) {
            0 => clock.set(clock.now() - Duration::from_micros(next(400_000))),
            _ => {
                clock.advance(Duration::from_micros(next(400_000)));
            }
        }
        if next(10) < 6 || held.is_empty() {
            let user = next(4);
            let g = next(3);
            switches += (g != last_group[user as usize]) as u32;
            last_group[user as usize] = g;
            let mut who = Identity::user(format!("user{user}"));
            if let Some(g) = groups[g as usize] {
                who = who.with_token_group(g);
            }
            let model = ["small", "big"][next(2) as usize];
            let (dm, hm) = memory.admit(&who, model).await;
            let (dr, hr) = redis.admit(&who, model).await;
            assert_eq!(dm, dr, "step {step}: {who:?} {model}");
            match (hm, hr) {
                (Some(m), Some(r)) => {
                    admitted += 1;
                    held.push((m, r));
                }
                _ => denied += 1,
            }
        } else {
            let (m, r) = held.swap_remove(next(held.len() as u64) as usize);
            let outcome = if next(3) > 0 {
                Outcome::Success
            } else {
                Outcome::Failure
            };
            m.settle(outcome).await;
            r.settle(outcome).await;
        }
    }
    assert!(
        admitted > 1_000 && denied > 1_000,
        "{admitted} admitted, {denied} denied"
    );
    assert!(switches > 2_000, "{switches} group switches");
    println!("6,000 steps: {admitted} admitted, {denied} denied, {switches} group switches; memory = Redis at every step");
}

/// Slots held by requests in flight: the denial says so and asks for a retry
/// within a second (not a full window); once one of them fails, a retry at
/// that time is admitted. Slots held by successes give the honest window.
#[tokio::test]
async fn retry_after_is_true_for_in_flight_and_settled_slots() {
    use ratebound_core::model_quota::Blocked;
    let clock = ManualClock::new(Instant::from_secs(1_800_000_000));
    for b in Backend::both("period_minutes = 1\nsuccess_max = 3", &clock).await {
        let who = Identity::user(format!("erin-{}", b.name()));
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(b.admit(&who, "m").await.1.expect("room for three"));
        }
        let (d, _) = b.admit(&who, "m").await;
        assert_eq!(d.blocked, Some(Blocked::InFlight), "{}", b.name());
        assert_eq!(d.in_flight, 3);
        let wait = d.retry_after();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{}: {wait:?}",
            b.name()
        );
        held.pop().unwrap().settle(Outcome::Failure).await;
        clock.advance(wait);
        let (d, h) = b.admit(&who, "m").await;
        assert!(d.allowed(), "{}: the failed request's slot", b.name());
        held.extend(h);
        for h in held.drain(..) {
            h.settle(Outcome::Success).await;
        }
        let (d, _) = b.admit(&who, "m").await;
        assert_eq!(d.blocked, Some(Blocked::Success), "{}", b.name());
        assert_eq!(d.retry_after(), Duration::from_secs(60), "{}", b.name());
    }
}

/// Mixed bursts, as a gateway sees them: 8 concurrent clients, a third of
/// the upstream calls failing, each client retrying after what a 429 said.
/// Every denial while slots are only held in flight says so and asks for a
/// retry within a second, and each run ends with exactly the success limit
/// used (no slot lost to a stale hold), in memory and in Redis.
async fn mixed_burst<A: AdmitRequests>(limits: Arc<A>) -> (u64, Duration, u64) {
    use ratebound_core::model_quota::Blocked;
    use std::sync::atomic::{AtomicU64, Ordering};
    let successes = Arc::new(AtomicU64::new(0));
    let in_flight_denials = Arc::new(AtomicU64::new(0));
    let longest = Arc::new(AtomicU64::new(0));
    let mut clients = tokio::task::JoinSet::new();
    for n in 0..8u64 {
        let (limits, successes, in_flight_denials, longest) = (
            limits.clone(),
            successes.clone(),
            in_flight_denials.clone(),
            longest.clone(),
        );
        clients.spawn(async move {
            let who = Identity::user("burst");
            for attempt in 0..40u64 {
                let a = limits.admit(&who, "m").await.unwrap();
                let d = *a.decision();
                if d.allowed() {
                    tokio::time::sleep(std::time::Duration::from_millis(
                        5 + (n * 7 + attempt) % 20,
                    ))
                    .await;
                    let ok = (n + attempt) % 3 != 0;
                    a.settle(if ok {
                        Outcome::Success
                    } else {
                        Outcome::Failure
                    })
                    .await;
                    if ok {
                        successes.fetch_add(1, Ordering::SeqCst);
                    }
                    continue;
                }
                drop(a);
                if d.blocked == Some(Blocked::Success) {
                    return; // the minute's successes are used up
                }
                in_flight_denials.fetch_add(1, Ordering::SeqCst);
                let wait = d.retry_after();
                longest.fetch_max(wait.as_micros(), Ordering::SeqCst);
                tokio::time::sleep(wait.into()).await;
            }
        });
    }
    while let Some(r) = clients.join_next().await {
        r.unwrap();
    }
    let longest = Duration::from_micros(longest.load(Ordering::SeqCst));
    (
        successes.load(Ordering::SeqCst),
        longest,
        in_flight_denials.load(Ordering::SeqCst),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mixed_bursts_end_at_the_limit_and_retry_within_a_second() {
    use ratebound_std::clock::SystemClock;
    let cfg = "period_minutes = 1\nsuccess_max = 10";
    let server = RedisServer::start();
    for run in 0..3 {
        let memory = ModelLimiter::new(config(cfg), Default::default(), SystemClock).unwrap();
        let opts = RedisOptions {
            timeout: std::time::Duration::from_secs(5),
            ..RedisOptions::default()
        };
        let store = RedisStore::connect(&server.url(), opts).await.unwrap();
        server.cli(&["FLUSHALL"]).unwrap();
        let redis = RedisModelLimiter::new(
            store,
            config(cfg),
            FailoverOptions::new(OnUnavailable::Closed),
            SystemClock,
        )
        .unwrap();
        let results = [
            (
                "memory",
                mixed_burst(Arc::new(AnyModelLimiter::Memory(Box::new(memory)))).await,
            ),
            (
                "redis",
                mixed_burst(Arc::new(AnyModelLimiter::Redis(Box::new(redis)))).await,
            ),
        ];
        for (name, (ok, longest, denials)) in results {
            assert_eq!(ok, 10, "{name} run {run}: successes");
            assert!(
                denials > 0,
                "{name} run {run}: the burst never met a full count"
            );
            assert!(
                longest <= Duration::from_secs(1),
                "{name} run {run}: told to wait {longest:?}"
            );
        }
    }
}
