//! Budgets changed while in use: each keeps its usage, the new limits read
//! it and alerts are re-evaluated — one test body over memory and a real
//! redis-server (`ScopedBudgets::reconfigure`, `AnyBudgetManager::reconfigure`).

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use ratebound_core::budget::{AlertKind, BudgetConfig, Dimension, Horizon, Usage};
use ratebound_std::budget::{
    AnyBudgetManager, BudgetBackend, Payer, Scope, ScopedBackend, ScopedBudgetConfig, ScopedBudgets,
};
use ratebound_std::clock::SystemClock;
use ratebound_std::fallback::{FailoverOptions, OnUnavailable};
use ratebound_std::redis::{RedisOptions, RedisStore};
use support::redis_server::RedisServer;

fn config(text: &str) -> ScopedBudgetConfig {
    toml::from_str(text).unwrap()
}

const ALICE: Payer<'static> = Payer {
    key: None,
    user: "alice",
    group: None,
    model: "m",
};

async fn store(server: &RedisServer) -> RedisStore {
    let opts = RedisOptions {
        timeout: StdDuration::from_millis(500),
        ..RedisOptions::default()
    };
    RedisStore::connect(&server.url(), opts).await.unwrap()
}

fn redis_backend(store: RedisStore) -> ScopedBackend {
    ScopedBackend::Redis {
        store,
        prefix: "reconf:".into(),
        hold_slots: 16,
        failover: FailoverOptions::new(OnUnavailable::Closed),
    }
}

/// Spend `tokens` for alice: true when admitted (and settled in full).
async fn spend(b: &ScopedBudgets<SystemClock>, tokens: u64) -> bool {
    match b.reserve(&ALICE, Usage::request(tokens, 0)).await {
        Ok(h) => {
            h.settle(Usage::request(tokens, 0)).await.unwrap();
            true
        }
        Err(_) => false,
    }
}

/// 1 000 tokens a day with an 80 % alert: 900 used; raised to 5 000 (900
/// kept: 4 100 more fit, the alert fires again at 4 000); lowered to 2 000
/// (nothing fits); the budget removed, its offset moved or an invalid
/// config: refused, nothing changed.
async fn a_user_budget_raised_and_lowered(budgets: ScopedBudgets<SystemClock>) {
    let thresholds = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&thresholds);
    budgets.on_alert(move |a| {
        if a.alert.kind == AlertKind::Threshold {
            seen.lock().unwrap().push(a.alert.threshold_bp);
        }
    });
    let fired = || thresholds.lock().unwrap().len();
    assert!(spend(&budgets, 900).await);
    assert_eq!(fired(), 1, "80 % of 1 000");
    assert!(!spend(&budgets, 101).await);

    budgets
        .reconfigure(config(
            "per_user = { tokens_per_day = 5_000, alert_at_percent = [80] }",
        ))
        .unwrap();
    let status = budgets.status(Scope::User, "alice").await.unwrap();
    assert_eq!(status.limits[0].used, 900, "usage kept");
    assert_eq!(status.limits[0].limit.max, 5_000);
    assert!(spend(&budgets, 3_000).await); // 3 900
    assert_eq!(fired(), 1, "80 % of 5 000 is 4 000: not yet");
    assert!(spend(&budgets, 100).await); // 4 000
    assert_eq!(fired(), 2, "re-evaluated: fires again at the new 80 %");
    assert!(spend(&budgets, 1_000).await); // 5 000
    assert!(!spend(&budgets, 1).await);

    budgets
        .reconfigure(config(
            "per_user = { tokens_per_day = 2_000, alert_at_percent = [80] }",
        ))
        .unwrap();
    assert!(!spend(&budgets, 1).await, "5 000 used of 2 000");

    for refused in [
        "", // the budget removed
        "per_user = { tokens_per_day = 9_000, utc_offset_minutes = 60 }",
        "per_user = { tokens_per_day = 0 }", // invalid
    ] {
        let e = budgets.reconfigure(config(refused)).unwrap_err();
        assert_eq!(e.scope, "per_user", "{refused:?}: {e}");
    }
    // A changed offset is refused for what it is (states live), named in
    // the spec's field.
    let e = budgets
        .reconfigure(config(
            "per_user = { tokens_per_day = 9_000, utc_offset_minutes = 60 }",
        ))
        .unwrap_err();
    assert_eq!(e.error.field(), "utc_offset_minutes", "{e}");
    assert!(
        e.to_string().contains("cannot change while states live"),
        "{e}"
    );
    let status = budgets.status(Scope::User, "alice").await.unwrap();
    assert_eq!(
        (status.limits[0].used, status.limits[0].limit.max),
        (5_000, 2_000),
        "refused changes changed nothing"
    );

    // A budget added by a change starts empty and applies at once.
    budgets
        .reconfigure(config(
            "per_user = { tokens_per_day = 2_000 }\nper_model.m = { tokens_per_day = 100 }",
        ))
        .unwrap();
    let bob = Payer {
        user: "bob",
        ..ALICE
    };
    assert!(budgets.reserve(&bob, Usage::request(101, 0)).await.is_err());
    assert!(budgets.reserve(&bob, Usage::request(100, 0)).await.is_ok());
}

#[tokio::test]
async fn a_user_budget_raised_and_lowered_in_memory() {
    let b = ScopedBudgets::new(
        config("per_user = { tokens_per_day = 1_000, alert_at_percent = [80] }"),
        ScopedBackend::Memory,
        SystemClock,
    )
    .unwrap();
    a_user_budget_raised_and_lowered(b).await;
}

#[tokio::test]
async fn a_user_budget_raised_and_lowered_in_redis() {
    let server = RedisServer::start();
    let b = ScopedBudgets::new(
        config("per_user = { tokens_per_day = 1_000, alert_at_percent = [80] }"),
        redis_backend(store(&server).await),
        SystemClock,
    )
    .unwrap();
    a_user_budget_raised_and_lowered(b).await;
}

/// One manager, a hold taken before a change: a limit added by the change
/// counts it, and its settle charges the new limit too.
async fn a_hold_across_a_change(m: AnyBudgetManager<SystemClock>) {
    let hold = m.reserve(Usage::request(300, 0)).await.unwrap();
    m.reconfigure(
        BudgetConfig::new()
            .tokens_per_day(10_000)
            .tokens_per_minute(1_000),
    )
    .unwrap();
    // 300 held in the new minute limit: 701 does not fit, 700 does.
    assert!(m.check_budget(701, 0).await.is_err());
    assert!(m.check_budget(700, 0).await.is_ok());
    hold.settle(Usage::request(600, 0)).await.unwrap();
    let s = m.status().await.unwrap();
    assert_eq!((s.limits[0].used, s.limits[1].used), (600, 600));
    assert_eq!((s.limits[0].reserved, s.limits[1].reserved), (0, 0));
    assert!(m
        .reconfigure(
            BudgetConfig::new()
                .tokens_per_day(10_000)
                .utc_offset_secs(3_600)
        )
        .is_err());
    assert_eq!(m.budget().config().limits.len(), 2);
}

#[tokio::test]
async fn a_hold_across_a_change_in_memory() {
    let m = AnyBudgetManager::new(
        BudgetConfig::new().tokens_per_day(10_000),
        BudgetBackend::Memory,
        SystemClock,
    )
    .unwrap();
    a_hold_across_a_change(m).await;
}

#[tokio::test]
async fn a_hold_across_a_change_in_redis() {
    let server = RedisServer::start();
    let m = AnyBudgetManager::new(
        BudgetConfig::new().tokens_per_day(10_000),
        BudgetBackend::Redis {
            store: store(&server).await,
            key: b"reconf-manager".to_vec(),
            hold_slots: 16,
            failover: FailoverOptions::new(OnUnavailable::Closed),
        },
        SystemClock,
    )
    .unwrap();
    a_hold_across_a_change(m).await;
}

/// Two replicas on one budget in Redis, one changed to add a limit, the
/// other not yet: the old one's writes keep the window it does not know
/// (as core keeps every window), so the added limit keeps counting.
#[tokio::test]
async fn a_replica_on_the_old_config_keeps_an_added_window() {
    use ratebound_std::budget::RedisBudgetManager;
    let server = RedisServer::start();
    let store = store(&server).await;
    let day = || BudgetConfig::new().tokens_per_day(100_000);
    let changed = RedisBudgetManager::new(store.clone(), day(), b"two-replicas", 16).unwrap();
    let old = RedisBudgetManager::new(store, day(), b"two-replicas", 16).unwrap();
    changed.reconfigure(day().tokens_per_minute(1_000)).unwrap();
    async fn spend(m: &RedisBudgetManager, n: u64) {
        let rec = ratebound_std::budget::UsageRecord {
            tokens: n,
            ..Default::default()
        };
        m.record_usage(&rec).await.unwrap();
    }
    spend(&changed, 600).await;
    spend(&old, 50).await; // writes the state without knowing the minute limit
    let s = changed.status().await.unwrap();
    assert_eq!(s.limits[0].used, 650);
    assert_eq!(s.limits[1].used, 600, "the old replica's write kept it");
    assert!(changed.check_budget(400, 0).await.is_ok());
    assert!(changed.check_budget(401, 0).await.is_err());
}

/// A call in flight across a change settles under the new config: a
/// limit the change added counts what it charges.
async fn a_call_in_flight_settles_under_the_new_config(budgets: ScopedBudgets<SystemClock>) {
    let hold = budgets
        .reserve(&ALICE, Usage::request(300, 0))
        .await
        .unwrap();
    budgets
        .reconfigure(config(
            "per_user = { tokens_per_day = 10_000, tokens_per_minute = 1_000 }",
        ))
        .unwrap();
    hold.settle(Usage::request(600, 0)).await.unwrap();
    let s = budgets.status(Scope::User, "alice").await.unwrap();
    assert_eq!((s.limits[0].used, s.limits[1].used), (600, 600));
    assert!(!spend(&budgets, 401).await);
    assert!(spend(&budgets, 400).await);
}

#[tokio::test]
async fn a_call_in_flight_settles_under_the_new_config_in_memory() {
    let b = ScopedBudgets::new(
        config("per_user = { tokens_per_day = 10_000 }"),
        ScopedBackend::Memory,
        SystemClock,
    )
    .unwrap();
    a_call_in_flight_settles_under_the_new_config(b).await;
}

#[tokio::test]
async fn a_call_in_flight_settles_under_the_new_config_in_redis() {
    let server = RedisServer::start();
    let b = ScopedBudgets::new(
        config("per_user = { tokens_per_day = 10_000 }"),
        redis_backend(store(&server).await),
        SystemClock,
    )
    .unwrap();
    a_call_in_flight_settles_under_the_new_config(b).await;
}

/// A state written before windows recorded their limits (no `k` / `d`
/// fields in Redis): read by the config the budget was first made with —
/// unchanged, nothing fires again; reordered, each window goes to its own
/// limit.
#[tokio::test]
async fn a_redis_state_from_before_windows_recorded_their_limits() {
    use ratebound_std::budget::RedisBudgetManager;
    let server = RedisServer::start();
    let first = || {
        BudgetConfig::new()
            .tokens_per_minute(1_000)
            .cost_per_day(5_000_000)
            .alert_threshold_bp(8_000)
    };
    let m = RedisBudgetManager::new(store(&server).await, first(), b"legacy", 16).unwrap();
    let alerts = m.subscribe();
    let rec = |tokens, cost| ratebound_std::budget::UsageRecord {
        tokens,
        cost,
        ..Default::default()
    };
    m.record_usage(&rec(850, 4_500_000)).await.unwrap();
    assert_eq!(alerts.try_iter().count(), 2);
    let key = "rb:{legacy}:budget";
    assert_eq!(server.cli(&["HDEL", key, "k", "d"]).as_deref(), Some("2"));
    m.record_usage(&rec(10, 10)).await.unwrap();
    assert_eq!(
        alerts.try_iter().count(),
        0,
        "unchanged: nothing fires again"
    );

    assert_eq!(server.cli(&["HDEL", key, "k", "d"]).as_deref(), Some("2"));
    m.reconfigure(
        BudgetConfig::new()
            .limit(Dimension::Requests, Horizon::MINUTE, 50)
            .cost_per_day(5_000_000)
            .tokens_per_minute(1_000)
            .alert_threshold_bp(8_000),
    )
    .unwrap();
    let s = m.status().await.unwrap();
    assert_eq!(s.used(Dimension::Tokens, Horizon::MINUTE), Some(860));
    assert_eq!(s.used(Dimension::Cost, Horizon::DAY), Some(4_500_010));
    assert_eq!(s.used(Dimension::Requests, Horizon::MINUTE), Some(0));
}

/// A window kept for a removed limit keeps the Redis key alive until it
/// ends, so the limit added back finds it (as in memory).
#[tokio::test]
async fn a_removed_limit_keeps_the_key_alive_until_its_window_ends() {
    use ratebound_std::budget::RedisBudgetManager;
    let server = RedisServer::start();
    let month = Horizon::Fixed(ratebound_core::Duration::from_secs(30 * 86_400));
    let both = || {
        BudgetConfig::new()
            .tokens_per_minute(1_000)
            .limit(Dimension::Cost, month, 5_000_000)
    };
    let m = RedisBudgetManager::new(store(&server).await, both(), b"detached", 16).unwrap();
    let rec = ratebound_std::budget::UsageRecord {
        tokens: 10,
        cost: 100,
        ..Default::default()
    };
    m.record_usage(&rec).await.unwrap();
    let end = m.status().await.unwrap().limits[1].window_end;
    m.reconfigure(BudgetConfig::new().tokens_per_minute(1_000))
        .unwrap();
    m.record_usage(&rec).await.unwrap();
    let now = ratebound_core::Instant::from_micros(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as u64,
    );
    let left_ms = end.saturating_duration_since(now).as_micros() / 1_000;
    let pttl: u64 = server
        .cli(&["PTTL", "rb:{detached}:budget"])
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        pttl + 5_000 >= left_ms && left_ms > 120_000,
        "PTTL {pttl} ms, the removed limit's window ends in {left_ms} ms"
    );
    m.reconfigure(both()).unwrap();
    assert_eq!(
        m.status().await.unwrap().used(Dimension::Cost, month),
        Some(100),
        "the 100 it had (not the 100 charged while it was gone)"
    );
}

/// A budget first used after a change reads a state written before windows
/// recorded their limits by the config it was first made with: a replica
/// reloaded before it ever served alice still finds her day's usage.
#[tokio::test]
async fn a_budget_first_used_after_a_change_reads_an_old_state_by_its_first_config() {
    let server = RedisServer::start();
    let day = "per_user = { cost_per_day = 5_000_000 }";
    let a = ScopedBudgets::new(
        config(day),
        redis_backend(store(&server).await),
        SystemClock,
    )
    .unwrap();
    let hold = a
        .reserve(&ALICE, Usage::request(0, 4_000_000))
        .await
        .unwrap();
    hold.settle(Usage::request(0, 4_000_000)).await.unwrap();
    // The state as an older ratebound wrote it: no kinds, no digests.
    let key = "rb:{reconf:user:alice}:budget";
    assert_eq!(server.cli(&["HDEL", key, "k", "d"]).as_deref(), Some("2"));
    let b = ScopedBudgets::new(
        config(day),
        redis_backend(store(&server).await),
        SystemClock,
    )
    .unwrap();
    // A limit that sorts first: the day window moves to position 1.
    b.reconfigure(config(
        "per_user = { requests_per_minute = 100, cost_per_day = 5_000_000 }",
    ))
    .unwrap();
    let denied = b.reserve(&ALICE, Usage::request(0, 1_000_001)).await;
    assert!(denied.is_err(), "4 000 000 of 5 000 000 used");
    let s = b.status(Scope::User, "alice").await.unwrap();
    assert_eq!(s.used(Dimension::Cost, Horizon::DAY), Some(4_000_000));
}
