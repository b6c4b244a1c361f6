//! Configs from TOML / JSON: valid ones build, nonsense is rejected naming the field.

use ratebound_core::backoff::Jitter;
use ratebound_core::budget::{Budget, BudgetConfig};
use ratebound_core::Instant;
use ratebound_std::clock::ManualClock;
use ratebound_std::config::{from_json, from_toml, LimiterSpec, RetrySpec};
use ratebound_std::keyed::{KeyedConfig, KeyedLimiter, OnFull};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct App {
    limiter: LimiterSpec,
    store: KeyedConfig,
    retry: RetrySpec,
    /// `Budget` (not `BudgetConfig`): validated while loading.
    budget: Budget,
}

const GOOD: &str = r#"
[limiter]
algorithm = "sliding_counter"
limit = 100
window = "1m"

[store]
max_keys = 50000
shards = 8
on_full = "evict_lru"

[retry]
initial = "200ms"
max_delay = "10s"
factor = [3, 2]
jitter = "decorrelated"
max_retries = 5
max_elapsed = "1m"
budget = { max_tokens = 10, token_ratio_milli = 100 }

[budget]
max_tokens_per_request = 4000
alert_thresholds_bp = [5000, 8000]
utc_offset_secs = -18000
hold_ttl = 300000000
throttle = { after_bp = 9000, min_delay = 250000 }
limits = [
  { dimension = "tokens", horizon = { fixed = 60000000 }, max = 100000 },
  { dimension = "cost", horizon = "calendar_month", max = 50000000 },
]
"#;

#[test]
fn a_whole_config_loads_and_builds() {
    let app: App = from_toml(GOOD).unwrap();
    let limiter = app.limiter.build().unwrap();
    assert_eq!(app.store.on_full, OnFull::EvictLru);
    let store = KeyedLimiter::new(
        limiter,
        app.store,
        ManualClock::new(Instant::from_secs(1_795_392_000)),
    )
    .unwrap();
    for _ in 0..100 {
        assert!(store.check(&"k", 1).unwrap().allowed);
    }
    assert!(!store.check(&"k", 1).unwrap().allowed);
    let b = app.retry.backoff().unwrap();
    assert_eq!(app.retry.jitter, Jitter::Decorrelated);
    assert_eq!(b.cap(), ratebound_core::Duration::from_secs(10));
    app.retry.build().unwrap();
    assert_eq!(app.budget.config().limits.len(), 2);
    let _plain: BudgetConfig = app.budget.config().clone();
    // The same document as JSON.
    let json =
        serde_json::json!({ "algorithm": "gcra", "capacity": 5, "amount": 1, "period": "2s" })
            .to_string();
    assert!(from_json::<LimiterSpec>(&json).unwrap().build().is_ok());
}

fn err<T: serde::de::DeserializeOwned + std::fmt::Debug>(text: &str) -> String {
    from_toml::<T>(text).unwrap_err().to_string()
}

#[test]
fn nonsense_is_rejected_naming_the_field() {
    // Unknown and missing fields, wrong types, bad durations: the path is named.
    assert!(err::<App>(&GOOD.replace("shards = 8", "shardz = 8"))
        .starts_with("store.shardz: unknown field"));
    // Inside the tagged limiter enum serde keeps no deeper path; the value is quoted.
    let e = err::<App>(&GOOD.replace("window = \"1m\"", "window = \"soon\""));
    assert!(
        e.starts_with("limiter:") && e.contains("invalid duration \"soon\""),
        "{e}"
    );
    assert!(
        err::<App>(&GOOD.replace("max_retries = 5", "max_retries = -1"))
            .starts_with("retry.max_retries:")
    );
    assert!(
        err::<App>(&GOOD.replace("on_full = \"evict_lru\"", "on_full = \"panic\""))
            .starts_with("store.on_full: unknown variant")
    );
    assert!(
        err::<App>(&GOOD.replace("algorithm = \"sliding_counter\"", "algorithm = \"leaky\""))
            .starts_with("limiter.algorithm:")
    );
    // Semantic validation from core names the field too.
    let e = err::<App>(&GOOD.replace(
        "alert_thresholds_bp = [5000, 8000]",
        "alert_thresholds_bp = [8000, 5000]",
    ));
    assert!(
        e.starts_with("budget:") && e.contains("alert_thresholds_bp"),
        "{e}"
    );
    let e = err::<App>(&GOOD.replace("max = 100000", "max = 0"));
    assert!(e.contains("limits[].max"), "{e}");
    let app: App = from_toml(&GOOD.replace("limit = 100", "limit = 0")).unwrap();
    assert!(app
        .limiter
        .build()
        .unwrap_err()
        .to_string()
        .contains("`limit`"));
    let app: App = from_toml(&GOOD.replace("factor = [3, 2]", "factor = [1, 2]")).unwrap();
    assert!(app
        .retry
        .backoff()
        .unwrap_err()
        .to_string()
        .contains("factor_num"));
    let app: App = from_toml(&GOOD.replace("max_keys = 50000", "max_keys = 0")).unwrap();
    let e = KeyedLimiter::<u8, _, _>::new(
        app.limiter.build().unwrap(),
        app.store,
        ManualClock::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("max_keys"));
    // Malformed documents.
    assert!(err::<App>("[limiter").starts_with(".:"));
    assert!(from_json::<LimiterSpec>("{\"algorithm\": \"gcra\", \"capacity\": 1").is_err());
    assert!(from_json::<LimiterSpec>("[]").is_err());
}

#[test]
fn review_findings_stay_fixed() {
    // Trailing garbage after a JSON document is an error.
    assert!(from_json::<RetrySpec>("{\"initial\":\"2s\"} garbage").is_err());
    assert!(from_json::<RetrySpec>("{\"initial\":\"2s\"}{\"initial\":\"9s\"}").is_err());
    assert!(from_json::<RetrySpec>(" {\"initial\":\"2s\"}\n").is_ok());
    // Sub-microsecond durations are refused instead of silently truncated.
    let e = from_toml::<RetrySpec>("initial = \"1500ns\"")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("initial:") && e.contains("whole microseconds"),
        "{e}"
    );
    // Retry policies that could spin forever are refused.
    let forever: RetrySpec = from_json(r#"{"max_retries": null}"#).unwrap();
    assert!(forever
        .backoff()
        .unwrap_err()
        .to_string()
        .contains("max_retries"));
    let zero: RetrySpec = from_toml("initial = \"0s\"").unwrap();
    assert!(zero.backoff().unwrap_err().to_string().contains("initial"));
    let zero: RetrySpec = from_toml("max_elapsed = \"0s\"").unwrap();
    assert!(zero
        .backoff()
        .unwrap_err()
        .to_string()
        .contains("max_elapsed"));
}

/// Model limits: "period 1 to MAX_PERIOD_MINUTES (366 days) minutes; hold
/// lease 1 to MAX_HOLD_TTL_SECS (a day), default 600 s" — each end of each
/// range, and the default.
#[test]
fn model_limit_periods_and_hold_leases_are_bounded_as_stated() {
    use ratebound_std::model_limit::{
        ModelLimitConfig, ModelLimitError, ModelLimits, MAX_HOLD_TTL_SECS,
    };
    assert_eq!(MAX_HOLD_TTL_SECS, 86_400);
    let with = |extra: &str| {
        let c: ModelLimitConfig = toml::from_str(&format!("success_max = 5\n{extra}")).unwrap();
        ModelLimits::new(c)
    };
    let c: ModelLimitConfig = toml::from_str("success_max = 5\nperiod_minutes = 1").unwrap();
    assert_eq!(c.hold_ttl_secs, 600, "the default lease");
    for ok in [
        "period_minutes = 1",
        "period_minutes = 527040",
        "period_minutes = 1\nhold_ttl_secs = 1",
        "period_minutes = 1\nhold_ttl_secs = 86400",
    ] {
        assert!(with(ok).is_ok(), "{ok}");
    }
    assert!(matches!(
        with("period_minutes = 0"),
        Err(ModelLimitError::Period(0))
    ));
    assert!(matches!(
        with("period_minutes = 527041"),
        Err(ModelLimitError::Period(527_041))
    ));
    assert!(matches!(
        with("period_minutes = 1\nhold_ttl_secs = 0"),
        Err(ModelLimitError::HoldTtl(0))
    ));
    let e = with("period_minutes = 1\nhold_ttl_secs = 86401").unwrap_err();
    assert!(matches!(e, ModelLimitError::HoldTtl(86_401)));
    assert!(e.to_string().contains("hold_ttl_secs"), "{e}");
}
