//! The Go `policy` package's JSON read and written exactly, a status after a
//! scripted sequence of `RecordUsage` calls checked against the figures the
//! Go package's own rules give, its retry classification, and bounded waits
//! for alert delivery.

use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, UNIX_EPOCH};

use ratebound_core::budget::{BudgetConfig, Usage};
use ratebound_core::{Duration, Instant};
use ratebound_std::budget::{BudgetManager, UsageRecord};
use ratebound_std::clock::ManualClock;
use ratebound_std::go_policy::{GoAlert, GoBudgetConfig, GoBudgetStatus, GoUsageRecord};
use ratebound_std::retry::{wrap_retryable, RetryError, RetryPolicy, RetryableErrors};

/// A UTC midnight (2026-11-23T00:00:00Z).
const T0: u64 = 1_795_392_000;

/// `json.Marshal(policy.DefaultBudgetConfig())`, as Go 1.22 writes it.
const GO_DEFAULTS: &str = r#"{"max_tokens_per_request":100000,"max_tokens_per_minute":500000,"max_tokens_per_hour":5000000,"max_tokens_per_day":50000000,"max_cost_per_request":10,"max_cost_per_day":1000,"alert_threshold":0.8,"auto_throttle":true,"throttle_delay":1000000000}"#;

#[test]
fn go_default_config_round_trips_byte_for_byte() {
    let cfg = GoBudgetConfig::from_json(GO_DEFAULTS).unwrap();
    assert_eq!(cfg, GoBudgetConfig::go_defaults());
    assert_eq!(cfg.to_budget_config(), BudgetConfig::llm_defaults());
    let back = GoBudgetConfig::from_budget_config(&cfg.to_budget_config()).unwrap();
    assert_eq!(back.to_json(), GO_DEFAULTS);
}

#[test]
fn fractional_dollars_and_thresholds_are_exact() {
    let go = r#"{"max_tokens_per_request":4096,"max_tokens_per_minute":90000,"max_tokens_per_hour":0,"max_tokens_per_day":2000000,"max_cost_per_request":0.05,"max_cost_per_day":12.345678,"alert_threshold":0.75,"auto_throttle":true,"throttle_delay":250000000}"#;
    let cfg = GoBudgetConfig::from_json(go).unwrap();
    assert_eq!(cfg.max_cost_per_request_micros, 50_000);
    assert_eq!(cfg.max_cost_per_day_micros, 12_345_678);
    assert_eq!(cfg.alert_threshold_bp, 7_500);
    assert_eq!(cfg.throttle_delay, StdDuration::from_millis(250));
    let rb = cfg.to_budget_config();
    assert_eq!(rb.limits.len(), 3, "a zero hour limit is no limit");
    assert_eq!(rb.throttle.unwrap().after_bp, 7_500);
    assert_eq!(rb.throttle.unwrap().min_delay, Duration::from_millis(250));
    let back = GoBudgetConfig::from_budget_config(&rb).unwrap();
    assert_eq!(back.to_json(), go);

    // A Go duration string is read too, and written back as Go writes it.
    let text = GO_DEFAULTS.replace("1000000000", "\"1.5s\"");
    let cfg = GoBudgetConfig::from_json(&text).unwrap();
    assert_eq!(cfg.throttle_delay, StdDuration::from_millis(1_500));
    assert!(cfg.to_json().ends_with(r#""throttle_delay":1500000000}"#));

    // Go's zero value (or an empty object) has no limits at all.
    let empty = GoBudgetConfig::from_json("{}").unwrap().to_budget_config();
    assert!(empty.limits.is_empty() && empty.max_tokens_per_request.is_none());
}

#[test]
fn values_that_cannot_be_represented_are_refused_naming_the_field() {
    let cases = [
        (
            r#"{"max_cost_per_day":0.0000001}"#,
            "max_cost_per_day",
            "more than 6 decimal places",
        ),
        (
            // A float Go computed, 17 digits: read exactly, so refused.
            r#"{"max_cost_per_day":0.00010099999999999999}"#,
            "max_cost_per_day",
            "more than 6 decimal places",
        ),
        (
            r#"{"max_cost_per_request":-1}"#,
            "max_cost_per_request",
            "non-negative",
        ),
        (
            r#"{"max_cost_per_day":1e300}"#,
            "max_cost_per_day",
            "too large",
        ),
        (r#"{"alert_threshold":1.5}"#, "alert_threshold", "too large"),
        (
            r#"{"alert_threshold":0.12345}"#,
            "alert_threshold",
            "more than 4 decimal places",
        ),
        (
            r#"{"max_tokens_per_minute":-5}"#,
            "max_tokens_per_minute",
            "",
        ),
        (
            r#"{"max_tokens_per_minut":5}"#,
            "max_tokens_per_minut",
            "unknown field `max_tokens_per_minut`",
        ),
        (
            r#"{"throttle_delay":1500}"#,
            "throttle_delay",
            "whole microseconds",
        ),
        (r#"{"throttle_delay":-1}"#, "throttle_delay", "negative"),
        (r#"{"throttle_delay":"-1s"}"#, "throttle_delay", ""),
        (r#"{"auto_throttle":"yes"}"#, "auto_throttle", ""),
    ];
    for (json, field, why) in cases {
        let e = GoBudgetConfig::from_json(json).expect_err(json);
        let text = e.to_string();
        assert!(
            e.path == field || text.contains(field),
            "{json}: {text:?} does not name {field}"
        );
        assert!(text.contains(why), "{json}: {text:?} does not say {why:?}");
    }
}

#[test]
fn configs_go_cannot_hold_are_named() {
    for (c, why) in [
        (
            BudgetConfig::new().limit(
                ratebound_core::budget::Dimension::Requests,
                ratebound_core::budget::Horizon::MINUTE,
                5,
            ),
            "only tokens",
        ),
        (
            BudgetConfig::new()
                .alert_threshold_bp(5_000)
                .alert_threshold_bp(9_000),
            "more than one alert threshold",
        ),
        (BudgetConfig::new().utc_offset_secs(3_600), "UTC offset"),
        (
            BudgetConfig::new().hold_ttl(Duration::from_secs(5)),
            "hold TTL",
        ),
    ] {
        let e = GoBudgetConfig::from_budget_config(&c).unwrap_err();
        assert!(e.to_string().contains(why), "{e}");
    }
}

/// The Go package's `TokenBudgetManager` rules, written out from its
/// source: minute and hour windows restart at the first call at least a
/// minute (hour) after the current one started; the day window is the UTC
/// day; cost is kept as `int64(cost * 1e6)`.
struct GoRules {
    minute: (u64, i64),
    hour: (u64, i64),
    day: (u64, i64),
    cost_day: i64,
    max: [i64; 3],
    max_cost_day: f64,
}

impl GoRules {
    fn new(at: u64, cfg: &GoBudgetConfig) -> Self {
        GoRules {
            minute: (at, 0),
            hour: (at, 0),
            day: (at - at % 86_400, 0),
            cost_day: 0,
            max: [
                cfg.max_tokens_per_minute as i64,
                cfg.max_tokens_per_hour as i64,
                cfg.max_tokens_per_day as i64,
            ],
            max_cost_day: cfg.max_cost_per_day_micros as f64 / 1e6,
        }
    }
    fn reset_windows_if_needed(&mut self, now: u64) {
        if now - self.minute.0 >= 60 {
            self.minute = (now, 0);
        }
        if now - self.hour.0 >= 3_600 {
            self.hour = (now, 0);
        }
        if now - now % 86_400 > self.day.0 {
            self.day = (now - now % 86_400, 0);
            self.cost_day = 0;
        }
    }
    fn record_usage(&mut self, now: u64, tokens: i64, cost: f64) {
        self.reset_windows_if_needed(now);
        self.minute.1 += tokens;
        self.hour.1 += tokens;
        self.day.1 += tokens;
        self.cost_day += (cost * 1_000_000.0) as i64;
    }
    fn status(&mut self, now: u64) -> GoBudgetStatus {
        self.reset_windows_if_needed(now);
        let cost = self.cost_day as f64 / 1_000_000.0;
        GoBudgetStatus {
            tokens_used_minute: self.minute.1 as u64,
            tokens_used_hour: self.hour.1 as u64,
            tokens_used_day: self.day.1 as u64,
            cost_used_day: cost,
            minute_utilization: self.minute.1 as f64 / self.max[0] as f64,
            hour_utilization: self.hour.1 as f64 / self.max[1] as f64,
            day_utilization: self.day.1 as f64 / self.max[2] as f64,
            cost_utilization: cost / self.max_cost_day,
            is_throttled: false,
            throttle_until: None,
        }
    }
}

#[test]
fn status_after_recorded_usage_matches_the_go_packages_figures() {
    let cfg = GoBudgetConfig {
        auto_throttle: false,
        ..GoBudgetConfig::from_json(
            r#"{"max_tokens_per_minute":10000,"max_tokens_per_hour":100000,"max_tokens_per_day":1000000,"max_cost_per_day":40,"alert_threshold":0.8}"#,
        )
        .unwrap()
    };
    let clock = ManualClock::new(Instant::from_secs(T0));
    let budget = BudgetManager::new(cfg.to_budget_config(), clock.clone()).unwrap();
    let mut go = GoRules::new(T0, &cfg);
    // (seconds after T0, tokens, dollars); the costs are exact in binary so
    // Go's int64(cost*1e6) keeps them whole.
    let script: [(u64, u64, f64); 10] = [
        (0, 1_000, 0.125),
        (10, 2_000, 0.25),
        (59, 500, 0.5),
        (60, 4_000, 0.125),
        (119, 100, 1.5),
        (120, 10, 0.0625),
        (3_599, 5, 2.0),
        (3_600, 7, 0.25),
        (86_340, 3_000, 30.0),
        (90_000, 42, 0.5),
    ];
    let mut compared = 0;
    for (at, tokens, dollars) in script {
        clock.set(Instant::from_secs(T0 + at));
        let rec = GoUsageRecord::from_json(&format!(
            r#"{{"timestamp":"0001-01-01T00:00:00Z","tokens":{tokens},"cost":{dollars},"model":"gpt-4o","request_id":"r{at}"}}"#
        ))
        .unwrap();
        budget.record_usage(&UsageRecord::from(&rec));
        go.record_usage(T0 + at, tokens as i64, dollars);
        let ours = GoBudgetStatus::from(&budget.status());
        let theirs = go.status(T0 + at);
        if at == 3_600 {
            // The one place the rules part: Go's minute window started at
            // 3 599 s (the first call after the previous one ended) and so
            // still holds that call; ratebound's is the clock minute
            // starting at 3 600 s.
            assert_eq!(
                (theirs.tokens_used_minute, ours.tokens_used_minute),
                (12, 7)
            );
            assert_eq!(ours.tokens_used_hour, theirs.tokens_used_hour);
            continue;
        }
        // Go divides the float dollars by the float limit (two roundings);
        // ratebound divides the exact micro-USD integers (one). They agree
        // to the last bit or one unit in the last place.
        let ulp = theirs.cost_utilization * f64::EPSILON;
        assert!(
            (ours.cost_utilization - theirs.cost_utilization).abs() <= ulp,
            "at {at}s: {} vs {}",
            ours.cost_utilization,
            theirs.cost_utilization
        );
        let ours = GoBudgetStatus {
            cost_utilization: theirs.cost_utilization,
            ..ours
        };
        assert_eq!(ours, theirs, "status at {at}s");
        compared += 1;
    }
    assert_eq!(compared, 9);
    let json = serde_json::to_string(&GoBudgetStatus::from(&budget.status())).unwrap();
    assert_eq!(
        json,
        r#"{"tokens_used_minute":42,"tokens_used_hour":42,"tokens_used_day":42,"cost_used_day":0.5,"minute_utilization":0.0042,"hour_utilization":0.00042,"day_utilization":0.000042,"cost_utilization":0.0125,"is_throttled":false}"#
    );
}

#[test]
fn throttle_and_alerts_in_go_shapes() {
    let cfg = GoBudgetConfig::from_json(
        r#"{"max_tokens_per_minute":10000,"max_tokens_per_day":1000000,"max_cost_per_day":40,"alert_threshold":0.8,"auto_throttle":true,"throttle_delay":1000000000}"#,
    )
    .unwrap();
    let clock = ManualClock::new(Instant::from_secs(T0));
    let budget = BudgetManager::new(cfg.to_budget_config(), clock.clone()).unwrap();
    let alerts = Arc::new(Mutex::new(Vec::new()));
    let seen = alerts.clone();
    budget.on_alert(move |a| seen.lock().unwrap().push(GoAlert::from(a)));

    clock.set(Instant::from_secs(T0 + 12));
    let rec = GoUsageRecord::from_json(
        r#"{"timestamp":"2026-11-23T00:00:12Z","tokens":8500,"cost":0.0042,"model":"gpt-4o","request_id":"r1","user_id":"u1"}"#,
    )
    .unwrap();
    assert_eq!(rec.cost_micros, 4_200);
    budget.record_usage(&UsageRecord::from(&rec));
    budget.wait_alerts_blocking();

    // Recording never throttles (as in Go) ...
    let status = serde_json::to_string(&GoBudgetStatus::from(&budget.status())).unwrap();
    assert_eq!(
        status,
        r#"{"tokens_used_minute":8500,"tokens_used_hour":0,"tokens_used_day":8500,"cost_used_day":0.0042,"minute_utilization":0.85,"hour_utilization":0,"day_utilization":0.0085,"cost_utilization":0.000105,"is_throttled":false}"#
    );
    // ... but an admission past the 80 % threshold paces: what was left
    // before it (1 500 tokens) is spread over the 48 s left in the minute,
    // so its 500 tokens earn 48 s × 500 / 1 500 = 16 s (at least the 1 s
    // throttle_delay). Go throttles only after a refused check.
    let hold = budget.reserve(Usage::request(500, 0)).unwrap();
    let status = GoBudgetStatus::from(&budget.status());
    assert!(status.is_throttled);
    assert!(serde_json::to_string(&status)
        .unwrap()
        .ends_with(r#""is_throttled":true,"throttle_until":"2026-11-23T00:00:28Z"}"#));
    drop(hold);
    let got = alerts.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        serde_json::to_string(&got[0]).unwrap(),
        r#"{"type":"token_minute_threshold","message":"Minute token usage threshold exceeded","threshold":0.8,"current":0.85,"timestamp":"2026-11-23T00:00:12Z"}"#
    );
    let back: GoAlert = serde_json::from_str(&serde_json::to_string(&got[0]).unwrap()).unwrap();
    assert_eq!(back, got[0]);

    // Spending the day's cost fires Go's cost alert and a limit hit.
    clock.set(Instant::from_secs(T0 + 120));
    budget.record_usage(&UsageRecord {
        cost: 40_000_000,
        ..Default::default()
    });
    budget.wait_alerts_blocking();
    let types: Vec<_> = alerts.lock().unwrap()[1..]
        .iter()
        .map(|a| (a.alert_type.clone(), a.message.clone()))
        .collect();
    assert_eq!(
        types,
        [
            (
                "cost_day_threshold".to_string(),
                "Daily cost threshold exceeded".to_string()
            ),
            (
                "limit_hit".to_string(),
                "Daily cost limit reached".to_string()
            ),
        ]
    );
}

#[test]
fn usage_records_keep_their_timestamp_and_exact_cost() {
    let rec = GoUsageRecord::from_json(
        r#"{"timestamp":"2026-11-23T01:00:05.25+01:00","tokens":1200,"cost":12.000001,"model":"m","request_id":"q","agent_id":"a"}"#,
    )
    .unwrap();
    assert_eq!(
        rec.timestamp.unwrap(),
        UNIX_EPOCH + StdDuration::from_micros((T0 + 5) * 1_000_000 + 250_000)
    );
    let r = UsageRecord::from(&rec);
    assert_eq!((r.cost, r.tokens), (12_000_001, 1_200));
    assert_eq!(
        r.timestamp,
        Some(Instant::from_micros((T0 + 5) * 1_000_000 + 250_000))
    );
    assert_eq!(
        serde_json::to_string(&rec).unwrap(),
        r#"{"timestamp":"2026-11-23T00:00:05.25Z","tokens":1200,"cost":12.000001,"model":"m","request_id":"q","agent_id":"a"}"#
    );
    let zero = GoUsageRecord::from_json(
        r#"{"timestamp":"0001-01-01T00:00:00Z","tokens":1,"cost":0,"model":"","request_id":""}"#,
    )
    .unwrap();
    assert_eq!(UsageRecord::from(&zero).timestamp, None);
    assert!(serde_json::to_string(&zero)
        .unwrap()
        .starts_with(r#"{"timestamp":"0001-01-01T00:00:00Z""#));
}

#[derive(Debug)]
struct Timeout;
impl std::fmt::Display for Timeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("timeout")
    }
}
impl std::error::Error for Timeout {}

#[derive(Debug)]
struct Wrapped(Timeout);
impl std::fmt::Display for Wrapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("call failed")
    }
}
impl std::error::Error for Wrapped {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::test(start_paused = true)]
async fn retryable_errors_follow_the_go_rule() {
    let only_timeouts = RetryableErrors::new().of::<Timeout>();
    // Listed: found through the source chain.
    assert!(only_timeouts.is_retryable(&Wrapped(Timeout)));
    assert!(!only_timeouts.is_retryable(&std::fmt::Error));
    // None listed: every error.
    assert!(RetryableErrors::new().is_retryable(&std::fmt::Error));
    // A predicate, like errors.Is against one sentinel value.
    let timed_out = RetryableErrors::new()
        .matching(|e: &std::io::Error| e.kind() == std::io::ErrorKind::TimedOut);
    assert!(timed_out.is_retryable(&std::io::Error::from(std::io::ErrorKind::TimedOut)));
    assert!(!timed_out.is_retryable(&std::io::Error::from(std::io::ErrorKind::NotFound)));

    let policy = RetryPolicy::default().with_seed(7);
    // An unlisted error is returned at once.
    let mut calls = 0;
    let r: Result<(), RetryError<BoxError>> = policy
        .run_with(
            || {
                calls += 1;
                async { Err::<(), BoxError>(Box::new(std::fmt::Error)) }
            },
            |e: &BoxError| only_timeouts.decide(&**e),
        )
        .await;
    assert!(matches!(
        r,
        Err(RetryError::NotRetryable { attempts: 1, .. })
    ));
    assert_eq!(calls, 1);
    // A listed one is retried, honouring a hint from wrap_retryable.
    let start = tokio::time::Instant::now();
    let mut calls = 0;
    let r: Result<u32, RetryError<BoxError>> = policy
        .run_with(
            || {
                calls += 1;
                let n = calls;
                async move {
                    if n < 3 {
                        let mut e = wrap_retryable(Timeout);
                        e.retry_after = Some(StdDuration::from_secs(20));
                        Err::<u32, BoxError>(Box::new(e))
                    } else {
                        Ok(n)
                    }
                }
            },
            |e: &BoxError| only_timeouts.decide(&**e),
        )
        .await;
    assert_eq!(r.unwrap(), 3);
    assert!(start.elapsed() >= StdDuration::from_secs(40));
}

#[tokio::test]
async fn waiting_for_alert_delivery_can_be_bounded_or_cancelled() {
    let budget = BudgetManager::new(
        BudgetConfig::new()
            .tokens_per_minute(100)
            .alert_threshold_bp(5_000),
        ManualClock::new(Instant::from_secs(T0)),
    )
    .unwrap();
    // The handler blocks until the gate opens.
    let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    let delivered = Arc::new(Mutex::new(0));
    let (g, d) = (gate.clone(), delivered.clone());
    budget.on_alert(move |_| {
        let (open, cv) = &*g;
        drop(cv.wait_while(open.lock().unwrap(), |open| !*open).unwrap());
        *d.lock().unwrap() += 1;
    });
    budget
        .reserve(Usage::request(60, 0))
        .unwrap()
        .settle(Usage::request(60, 0));

    let token = tokio_util::sync::CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        tokio::time::sleep(StdDuration::from_millis(20)).await;
        cancel.cancel();
    });
    let e = budget
        .wait_alerts_until(token.cancelled())
        .await
        .unwrap_err();
    assert_eq!(e.alerts, 1);
    assert_eq!(e.to_string(), "1 budget alert(s) still being handled");
    assert_eq!(
        budget
            .wait_alerts_blocking_for(StdDuration::from_millis(20))
            .unwrap_err()
            .alerts,
        1
    );
    // Nothing is lost: once the handler can run, it runs, and the waits return.
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
    budget
        .wait_alerts_until(tokio::time::sleep(StdDuration::from_secs(10)))
        .await
        .unwrap();
    budget
        .wait_alerts_blocking_for(StdDuration::from_secs(10))
        .unwrap();
    assert_eq!(*delivered.lock().unwrap(), 1);
}
