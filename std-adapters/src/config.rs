//! Loading configs from TOML or JSON, with errors that name the field.
//!
//! Durations are human-readable strings (`"1s"`, `"250ms"`, `"1h 30m"`).
//!
//! ```
//! use ratebound_std::config::{from_toml, LimiterSpec, RetrySpec};
//!
//! let spec: LimiterSpec = from_toml(r#"
//!     algorithm = "gcra"
//!     capacity = 20
//!     amount = 10
//!     period = "1s"
//! "#)?;
//! let limiter = spec.build()?;
//!
//! let err = from_toml::<LimiterSpec>(r#"
//!     algorithm = "sliding_counter"
//!     limit = 0
//!     window = "1m"
//! "#).unwrap().build().unwrap_err();
//! assert!(err.to_string().contains("`limit`"));
//!
//! let err = from_toml::<RetrySpec>("initial = \"fast\"").unwrap_err();
//! assert!(err.to_string().starts_with("initial:"), "{err}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::time::Duration as StdDuration;

use ratebound_core::backoff::{Backoff, Jitter, RetryBudget};
use ratebound_core::{ConfigError, Duration, Gcra, SlidingCounter, SlidingLog};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use crate::limiter::{AnyLimiter, CONFIG_LOG_SLOTS};
use crate::retry::{RetryPolicy, SharedRetryBudget};

/// A config that failed to load: where, and why.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigLoadError {
    /// The path to the offending field (`.` for the document itself).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// Parse TOML into `T`, naming the field on error.
pub fn from_toml<T: DeserializeOwned>(text: &str) -> Result<T, ConfigLoadError> {
    let de = toml::Deserializer::parse(text).map_err(|e| ConfigLoadError {
        path: ".".into(),
        message: e.to_string(),
    })?;
    serde_path_to_error::deserialize(de).map_err(|e| ConfigLoadError {
        path: e.path().to_string(),
        message: e.inner().message().to_string(),
    })
}

/// Parse JSON into `T`, naming the field on error. Trailing content after
/// the document is an error.
pub fn from_json<T: DeserializeOwned>(text: &str) -> Result<T, ConfigLoadError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let v = serde_path_to_error::deserialize(&mut de).map_err(|e| ConfigLoadError {
        path: e.path().to_string(),
        message: e.inner().to_string(),
    })?;
    de.end().map_err(|e| ConfigLoadError {
        path: ".".into(),
        message: e.to_string(),
    })?;
    Ok(v)
}

fn parse_duration(s: &str) -> Result<StdDuration, String> {
    let d = humantime::parse_duration(s).map_err(|e| {
        format!("invalid duration {s:?}: {e} (use e.g. \"1s\", \"250ms\", \"1h 30m\")")
    })?;
    if d.subsec_nanos() % 1_000 != 0 {
        return Err(format!(
            "invalid duration {s:?}: ratebound counts whole microseconds"
        ));
    }
    Ok(d)
}

/// Serde helpers for human-readable durations.
pub mod human {
    use super::*;
    /// Deserialize `"1s"`, `"250ms"`, `"1h 30m"`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<StdDuration, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map_err(serde::de::Error::custom)
    }
    /// Serialize as humantime text.
    pub fn serialize<S: Serializer>(v: &StdDuration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*v).to_string())
    }
    /// The same for `Option`.
    pub mod option {
        use super::*;
        /// Deserialize an optional duration.
        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<StdDuration>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|s| parse_duration(&s).map_err(serde::de::Error::custom))
                .transpose()
        }
        /// Serialize an optional duration.
        pub fn serialize<S: Serializer>(v: &Option<StdDuration>, s: S) -> Result<S::Ok, S::Error> {
            match v {
                Some(v) => s.serialize_some(&humantime::format_duration(*v).to_string()),
                None => s.serialize_none(),
            }
        }
    }
}

/// A rate limiter described in config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "algorithm", rename_all = "snake_case", deny_unknown_fields)]
pub enum LimiterSpec {
    /// Token bucket: `capacity`, refilled `amount` per `period`.
    Gcra {
        /// Bucket size.
        capacity: u64,
        /// Tokens per period.
        amount: u64,
        /// Refill period.
        #[serde(with = "human")]
        period: StdDuration,
    },
    /// Exact sliding log ([`CONFIG_LOG_SLOTS`] entries).
    SlidingLog {
        /// Units per window.
        limit: u64,
        /// Window length.
        #[serde(with = "human")]
        window: StdDuration,
    },
    /// O(1) sliding window counter.
    SlidingCounter {
        /// Units per window.
        limit: u64,
        /// Window length.
        #[serde(with = "human")]
        window: StdDuration,
    },
}

impl LimiterSpec {
    /// Validate and build the core limiter.
    pub fn build(&self) -> Result<AnyLimiter, ConfigError> {
        Ok(match *self {
            LimiterSpec::Gcra {
                capacity,
                amount,
                period,
            } => AnyLimiter::Gcra(Gcra::new(capacity, amount, period.into())?),
            LimiterSpec::SlidingLog { limit, window } => {
                AnyLimiter::SlidingLog(SlidingLog::new(limit, window.into())?)
            }
            LimiterSpec::SlidingCounter { limit, window } => {
                AnyLimiter::SlidingCounter(SlidingCounter::new(limit, window.into())?)
            }
        })
    }
}

/// A retry policy described in config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetrySpec {
    /// First delay.
    #[serde(with = "human")]
    pub initial: StdDuration,
    /// Largest delay (the cap).
    #[serde(with = "human")]
    pub max_delay: StdDuration,
    /// Growth factor as `[numerator, denominator]` (`[2, 1]` doubles).
    pub factor: [u32; 2],
    /// Jitter: `none`, `full`, `equal`, `decorrelated`.
    pub jitter: Jitter,
    /// Most retries (`null`: unlimited).
    pub max_retries: Option<u32>,
    /// Give up when a retry would start later than this after the first attempt.
    #[serde(with = "human::option")]
    pub max_elapsed: Option<StdDuration>,
    /// Optional shared retry budget.
    pub budget: Option<RetryBudgetSpec>,
}

/// A retry budget in config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryBudgetSpec {
    /// Tokens when full.
    pub max_tokens: u32,
    /// Tokens regained per success, thousandths.
    pub token_ratio_milli: u32,
}

impl Default for RetrySpec {
    fn default() -> Self {
        RetrySpec {
            initial: StdDuration::from_secs(1),
            max_delay: StdDuration::from_secs(30),
            factor: [2, 1],
            jitter: Jitter::Full,
            max_retries: Some(3),
            max_elapsed: None,
            budget: None,
        }
    }
}

impl RetrySpec {
    /// Validate and build the core backoff. Besides core's checks, rejects a
    /// zero `initial`, a zero `max_elapsed`, and a policy bounded neither by
    /// `max_retries` nor by `max_elapsed` (it could retry forever).
    pub fn backoff(&self) -> Result<Backoff, ConfigError> {
        if self.initial.is_zero() {
            return Err(ConfigError::Zero { field: "initial" });
        }
        if self.max_elapsed.is_some_and(|m| m.is_zero()) {
            return Err(ConfigError::Zero {
                field: "max_elapsed",
            });
        }
        if self.max_retries.is_none() && self.max_elapsed.is_none() {
            return Err(ConfigError::Invalid {
                field: "max_retries",
                reason: "and max_elapsed are both unset: retries would never end",
            });
        }
        let mut b = Backoff::new(Duration::from(self.initial), Duration::from(self.max_delay))?
            .with_factor(self.factor[0], self.factor[1])?
            .with_jitter(self.jitter);
        b = match self.max_retries {
            Some(n) => b.with_max_retries(n),
            None => b.without_max_retries(),
        };
        if let Some(m) = self.max_elapsed {
            b = b.with_max_elapsed(m.into());
        }
        Ok(b)
    }
    /// Validate and build a [`RetryPolicy`]. A configured retry budget is
    /// created fresh on each call: build once and clone the policy to share it.
    pub fn build(&self) -> Result<RetryPolicy, ConfigError> {
        let mut p = RetryPolicy::new(self.backoff()?);
        if let Some(b) = self.budget {
            p = p.with_budget(std::sync::Arc::new(SharedRetryBudget::new(
                RetryBudget::new(b.max_tokens, b.token_ratio_milli)?,
            )));
        }
        Ok(p)
    }
}
