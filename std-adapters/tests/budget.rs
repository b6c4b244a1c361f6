//! The budget manager under concurrency, and alert delivery.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ratebound_core::budget::{AlertKind, BudgetConfig, Dimension, Horizon, Usage};
use ratebound_core::{Duration, Instant};
use ratebound_std::budget::{BudgetDenied, BudgetManager, UsageRecord};
use ratebound_std::clock::ManualClock;

const T0: Instant = Instant::from_secs(1_795_392_000);

#[test]
fn eight_threads_reserving_and_settling_never_exceed_the_limits() {
    let clock = ManualClock::new(T0);
    let m = Arc::new(
        BudgetManager::new(
            BudgetConfig::new()
                .tokens_per_minute(50_000)
                .cost_per_day(3_000_000)
                .limit(Dimension::Requests, Horizon::HOUR, 400)
                .alert_threshold_bp(8_000),
            clock.clone(),
        )
        .unwrap(),
    );
    let alerts = m.subscribe();
    let settled_tokens = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let (m, settled) = (m.clone(), settled_tokens.clone());
            std::thread::spawn(move || {
                let mut granted = 0;
                for i in 0..200u64 {
                    let est =
                        Usage::request(100 + (i * 37 + t * 11) % 900, 2_000 + (i * 13) % 8_000);
                    match m.reserve(est) {
                        Ok(hold) => {
                            granted += 1;
                            let actual =
                                Usage::request(est.tokens * (50 + i % 51) / 100, est.cost / 2);
                            settled.fetch_add(actual.tokens, Ordering::Relaxed);
                            if i % 7 == 0 {
                                drop(hold); // never ran: released
                                settled.fetch_sub(actual.tokens, Ordering::Relaxed);
                            } else {
                                hold.settle(actual);
                            }
                        }
                        Err(BudgetDenied::Denied(_)) => {}
                        Err(e) => panic!("{e}"),
                    }
                    let s = m.status();
                    for l in &s.limits {
                        assert!(l.used + l.reserved <= l.limit.max, "{l:?}");
                    }
                }
                granted
            })
        })
        .collect();
    let granted: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let s = m.status();
    assert_eq!(s.holds, 0, "every hold settled or released");
    assert_eq!(
        s.used(Dimension::Tokens, Horizon::MINUTE),
        Some(settled_tokens.load(Ordering::Relaxed))
    );
    assert!(granted > 50, "some were admitted ({granted})");
    for l in &s.limits {
        assert!(l.used <= l.limit.max, "{l:?}");
    }
    // Each threshold fires at most once per window per limit, whatever the interleaving.
    let got: Vec<_> = alerts.try_iter().collect();
    for kind in [AlertKind::Threshold, AlertKind::LimitHit] {
        for i in 0..3u8 {
            assert!(
                got.iter()
                    .filter(|a| a.kind == kind && a.limit == i)
                    .count()
                    <= 1,
                "{got:?}"
            );
        }
    }
    assert!(
        got.iter().any(|a| a.kind == AlertKind::LimitHit),
        "the budget was exhausted: {got:?}"
    );
}

#[test]
fn alerts_fire_once_per_window_and_handlers_never_block_the_caller() {
    let clock = ManualClock::new(T0);
    let m = BudgetManager::new(
        BudgetConfig::new()
            .tokens_per_minute(1_000)
            .alert_threshold_bp(8_000),
        clock.clone(),
    )
    .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    m.on_alert(move |a| {
        std::thread::sleep(std::time::Duration::from_millis(50)); // a slow handler
        s.lock().unwrap().push((a.alert_type(), a.window_start));
    });
    m.on_alert(|_| panic!("a broken handler must not take the others down"));
    let t = std::time::Instant::now();
    for _ in 0..10 {
        m.record_usage(&UsageRecord {
            tokens: 100,
            model: "gpt-4o".into(),
            user_id: "u1".into(),
            ..Default::default()
        });
    }
    assert!(
        t.elapsed() < std::time::Duration::from_millis(50),
        "record_usage waited for a handler"
    );
    m.wait_alerts_blocking();
    let minute = Instant::from_secs(1_795_392_000);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![("token_minute_threshold", minute), ("limit_hit", minute)]
    );
    // Next minute: once more.
    clock.advance(Duration::from_secs(60));
    m.record_usage(&UsageRecord {
        tokens: 900,
        ..Default::default()
    });
    m.wait_alerts_blocking();
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn wait_alerts_is_async_too() {
    let m = BudgetManager::new(
        BudgetConfig::new()
            .tokens_per_minute(10)
            .alert_threshold_bp(5_000),
        ManualClock::new(T0),
    )
    .unwrap();
    let n = Arc::new(AtomicU64::new(0));
    let c = n.clone();
    m.on_alert(move |_| {
        std::thread::sleep(std::time::Duration::from_millis(20));
        c.fetch_add(1, Ordering::SeqCst);
    });
    m.record_usage(&UsageRecord {
        tokens: 10,
        ..Default::default()
    });
    m.wait_alerts().await;
    assert_eq!(n.load(Ordering::SeqCst), 2); // threshold + limit hit
}

#[test]
fn seed_api_check_record_status_reset() {
    let clock = ManualClock::new(T0);
    let m = BudgetManager::new(
        BudgetConfig::new()
            .tokens_per_request(500)
            .tokens_per_minute(1_000)
            .cost_per_day(10_000),
        clock,
    )
    .unwrap();
    assert!(matches!(
        m.check_budget(501, 0),
        Err(BudgetDenied::Invalid(_))
    ));
    m.check_budget(500, 100).unwrap();
    m.record_usage(&UsageRecord {
        tokens: 800,
        cost: 9_950,
        ..Default::default()
    });
    let e = m.check_budget(300, 0).unwrap_err();
    assert!(e.to_string().contains("retry at"), "{e}");
    assert!(m.check_budget(100, 100).is_err(), "cost per day");
    let s = m.status();
    assert_eq!(s.used(Dimension::Tokens, Horizon::MINUTE), Some(800));
    assert_eq!(s.utilization_bp(Dimension::Cost, Horizon::DAY), Some(9_950));
    m.reset();
    assert_eq!(m.status().used(Dimension::Tokens, Horizon::MINUTE), Some(0));
}

/// A reservation refused part-way (here: no room for a new user's budget)
/// keeps nothing in the budgets it had already reserved in.
#[tokio::test]
async fn a_scoped_reservation_refused_part_way_holds_nothing() {
    use ratebound_std::budget::{
        Payer, Scope, ScopedBackend, ScopedBudgetConfig, ScopedBudgets, ScopedDenied,
    };
    let config: ScopedBudgetConfig = toml::from_str(
        "max_budgets = 1\nper_key = { tokens_per_minute = 1_000 }\nper_user = { tokens_per_minute = 1_000 }",
    )
    .unwrap();
    let budgets = ScopedBudgets::new(
        config,
        ScopedBackend::Memory,
        ratebound_std::clock::ManualClock::new(ratebound_core::Instant::from_secs(1_795_392_000)),
    )
    .unwrap();
    let payer = Payer {
        key: Some("k1"),
        user: "alice",
        group: None,
        model: "m",
    };
    let refused = budgets
        .reserve(&payer, ratebound_core::budget::Usage::request(100, 0))
        .await;
    assert!(matches!(refused, Err(ScopedDenied::Full(1))), "{refused:?}");
    let key = budgets.status(Scope::Key, "k1").await.unwrap();
    assert_eq!((key.holds, key.limits[0].reserved), (0, 0));
}

/// As documented: a budget in memory holds at most 256 reservations at
/// once (the next is refused until one settles), and takes about 16 KB.
#[tokio::test]
async fn a_scoped_budget_in_memory_holds_256_reservations_in_about_16_kb() {
    use ratebound_core::budget::DenyReason;
    use ratebound_std::budget::{
        Payer, ScopedBackend, ScopedBudgetConfig, ScopedBudgets, ScopedDenied,
    };
    let size = std::mem::size_of::<BudgetManager<ManualClock>>();
    assert!((14_000..18_000).contains(&size), "{size} bytes");
    let config: ScopedBudgetConfig =
        toml::from_str("per_user = { tokens_per_minute = 1_000_000 }").unwrap();
    let budgets = ScopedBudgets::new(
        config,
        ScopedBackend::Memory,
        ManualClock::new(Instant::from_secs(1_795_392_000)),
    )
    .unwrap();
    let payer = Payer {
        key: None,
        user: "alice",
        group: None,
        model: "m",
    };
    let mut holds = Vec::new();
    for _ in 0..256 {
        holds.push(budgets.reserve(&payer, Usage::request(1, 0)).await.unwrap());
    }
    let refused = budgets.reserve(&payer, Usage::request(1, 0)).await;
    assert!(
        matches!(refused, Err(ScopedDenied::Exhausted { denial, .. }) if denial.reason == DenyReason::TooManyReservations),
        "{refused:?}"
    );
    holds
        .pop()
        .unwrap()
        .settle(Usage::request(1, 0))
        .await
        .unwrap();
    assert!(budgets.reserve(&payer, Usage::request(1, 0)).await.is_ok());
}

/// `max_budgets`: when every budget is held and in use, a new user is
/// refused (`Full`) rather than anyone's usage forgotten; once budgets have
/// nothing to remember they make room — found on the first refusal and
/// then every `max(16, max_budgets / 16)` refusals. A reservation in
/// flight keeps its budget.
#[tokio::test]
async fn idle_scoped_budgets_make_room_for_new_users() {
    use ratebound_std::budget::{
        Payer, Scope, ScopedBackend, ScopedBudgetConfig, ScopedBudgets, ScopedDenied,
    };
    let config: ScopedBudgetConfig =
        toml::from_str("max_budgets = 2\nper_user = { tokens_per_minute = 100 }").unwrap();
    let clock = ManualClock::new(Instant::from_secs(1_795_392_000));
    let budgets = ScopedBudgets::new(config, ScopedBackend::Memory, clock.clone()).unwrap();
    let payer = |user| Payer {
        key: None,
        user,
        group: None,
        model: "m",
    };
    let spend = |user: &'static str, tokens| {
        let budgets = &budgets;
        async move {
            let hold = budgets
                .reserve(&payer(user), Usage::request(tokens, 0))
                .await?;
            hold.settle(Usage::request(tokens, 0)).await.unwrap();
            Ok::<(), ScopedDenied>(())
        }
    };
    spend("alice", 60).await.unwrap();
    spend("bob", 10).await.unwrap();
    assert!(
        matches!(spend("carol", 10).await, Err(ScopedDenied::Full(2))),
        "both in use"
    );
    let held = budgets
        .reserve(&payer("bob"), Usage::request(5, 0))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(61)); // alice's minute is over; bob holds a reservation
                                            // The first refusal looked (and found nothing then): 15 more are refused
                                            // before the next look, which forgets alice (idle), not bob (held).
    for i in 0..15 {
        assert!(
            matches!(spend("carol", 10).await, Err(ScopedDenied::Full(2))),
            "refusal {i}"
        );
    }
    spend("carol", 10).await.unwrap();
    assert_eq!(budgets.len(), 2);
    assert!(
        budgets.status(Scope::User, "alice").await.is_none(),
        "alice was forgotten"
    );
    assert!(
        budgets.status(Scope::User, "bob").await.is_some(),
        "bob's reservation kept his budget"
    );
    held.settle(Usage::request(5, 0)).await.unwrap();
    assert!(
        matches!(spend("alice", 100).await, Err(ScopedDenied::Full(2))),
        "carol and bob are in use"
    );
    // The last search forgot one budget, fewer than 16: it is not run
    // again before 16 more refusals (the 16th and 17th came before), even
    // with both budgets idle now, so a flood of new ids never searches on
    // every call.
    clock.advance(Duration::from_secs(61));
    let mut refused = 0;
    while let Err(e) = spend("alice", 10).await {
        assert!(matches!(e, ScopedDenied::Full(2)), "{e:?}");
        refused += 1;
        assert!(refused < 100, "never searched again");
    }
    assert_eq!(refused, 14);
}

/// A search that forgets at least `max(16, max_budgets / 16)` budgets has
/// paid for the next: when the store is full again, the first refusal
/// searches at once.
#[tokio::test]
async fn a_search_that_freed_many_runs_again_at_the_next_refusal() {
    use ratebound_std::budget::{Payer, ScopedBackend, ScopedBudgetConfig, ScopedBudgets};
    let config: ScopedBudgetConfig = toml::from_str(
        "max_budgets = 32
per_user = { tokens_per_minute = 100 }",
    )
    .unwrap();
    let clock = ManualClock::new(Instant::from_secs(1_795_392_000));
    let budgets = ScopedBudgets::new(config, ScopedBackend::Memory, clock.clone()).unwrap();
    let users: Vec<String> = (0..64).map(|i| format!("u{i}")).collect();
    let spend = |user: &str| {
        let budgets = &budgets;
        let user = user.to_owned();
        async move {
            let payer = Payer {
                key: None,
                user: &user,
                group: None,
                model: "m",
            };
            let hold = budgets.reserve(&payer, Usage::request(1, 0)).await?;
            hold.settle(Usage::request(1, 0)).await.unwrap();
            Ok::<(), ratebound_std::budget::ScopedDenied>(())
        }
    };
    for u in &users[..32] {
        spend(u).await.unwrap();
    }
    clock.advance(Duration::from_secs(61));
    // Full of idle budgets: the first refusal forgets all 32.
    for u in &users[32..64] {
        spend(u).await.unwrap();
    }
    assert_eq!(budgets.len(), 32);
    clock.advance(Duration::from_secs(61));
    // Full again, all idle: searched at once, not after 16 refusals.
    spend("next").await.unwrap();
}

/// A spec's bad values are reported by the spec's own field names and
/// units, not core's (`alert_at_percent`, not `alert_thresholds_bp`;
/// `utc_offset_minutes`, not `utc_offset_secs`), at construction and at
/// reconfiguration.
#[test]
fn a_bad_spec_names_the_specs_own_field() {
    use ratebound_std::budget::{ScopedBackend, ScopedBudgetConfig, ScopedBudgets};
    let clock = ManualClock::new(Instant::from_secs(1_795_392_000));
    let good: ScopedBudgetConfig = toml::from_str("per_user = { tokens_per_day = 100 }").unwrap();
    let budgets = ScopedBudgets::new(good, ScopedBackend::Memory, clock.clone()).unwrap();
    for (spec, field) in [
        ("alert_at_percent = [90, 80]", "alert_at_percent"),
        ("alert_at_percent = [0]", "alert_at_percent"),
        ("alert_at_percent = [101]", "alert_at_percent"),
        (
            "alert_at_percent = [10, 20, 30, 40, 50]",
            "alert_at_percent",
        ),
        ("utc_offset_minutes = 1081", "utc_offset_minutes"),
        ("utc_offset_minutes = -1081", "utc_offset_minutes"),
        ("max_tokens_per_request = 0", "max_tokens_per_request"),
    ] {
        let text = format!("per_group.vip = {{ tokens_per_day = 100, {spec} }}");
        let config: ScopedBudgetConfig = toml::from_str(&text).unwrap();
        let e = ScopedBudgets::new(config.clone(), ScopedBackend::Memory, clock.clone())
            .err()
            .unwrap_or_else(|| panic!("{spec} was accepted"));
        assert_eq!(
            (e.scope.as_str(), e.error.field()),
            ("per_group.vip", field),
            "{spec}: {e}"
        );
        let e = budgets.reconfigure(config).unwrap_err();
        assert_eq!(e.error.field(), field, "reconfigure, {spec}: {e}");
    }
    for edge in [
        "utc_offset_minutes = 1080",
        "alert_at_percent = [1, 50, 99, 100]",
    ] {
        let text = format!("per_group.vip = {{ tokens_per_day = 100, {edge} }}");
        let config: ScopedBudgetConfig = toml::from_str(&text).unwrap();
        assert!(
            ScopedBudgets::new(config, ScopedBackend::Memory, clock.clone()).is_ok(),
            "{edge}"
        );
    }
}
