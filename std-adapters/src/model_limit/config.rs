//! Model-limit config: parsing, validation and which limits apply.

use std::collections::BTreeMap;
use std::fmt;

use ratebound_core::model_quota::scope::Scope;
use ratebound_core::model_quota::{ModelQuota, Window};
use ratebound_core::{ConfigError, Duration};
use serde::{Deserialize, Serialize};

pub use ratebound_core::model_quota::scope::KeyBy;

use super::Identity;

/// The largest `total_max` / `success_max` accepted (2^31 − 1: the counts are 32-bit signed in the configs this reads).
pub const MAX_COUNT: i64 = ratebound_core::model_quota::MAX_COUNT as i64;
/// The longest period accepted: 366 days, in minutes.
pub const MAX_PERIOD_MINUTES: u64 = 366 * 24 * 60;

/// Model-level limits as configured (TOML or JSON); validate with
/// [`ModelLimits::new`] (done by [`ModelLimiter::new`](super::ModelLimiter::new)).
///
/// Counts are signed here only so that a negative value is reported as such,
/// naming where it was, instead of as a type error.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelLimitConfig {
    /// When false, every request passes and nothing is counted.
    #[serde(default = "enabled_default")]
    pub enabled: bool,
    /// The period, in minutes (1 to [`MAX_PERIOD_MINUTES`]).
    pub period_minutes: u64,
    /// Admitted requests per period, failures included; `0` = unlimited.
    #[serde(default)]
    pub total_max: i64,
    /// Successful requests per period (≥ 1).
    pub success_max: i64,
    /// Per-group `[total, success]`, winning over everything else. Accepts a
    /// map, or a JSON object in a string.
    #[serde(default, deserialize_with = "pairs")]
    pub groups: BTreeMap<String, [i64; 2]>,
    /// Per-model `[total, success]`, winning over the global values.
    #[serde(default, deserialize_with = "pairs")]
    pub models: BTreeMap<String, [i64; 2]>,
    /// Whose count a request uses.
    #[serde(default)]
    pub key_by: KeyBy,
    /// When not empty, only these models are served; others are refused
    /// (a client cannot create counts, and fill the store, with made-up names).
    #[serde(default)]
    pub allowed_models: Vec<String>,
    /// How the counts forget: `"sliding"` (default: at most the limit in any
    /// window of one period) or `"bucket"` (a token bucket refilled
    /// smoothly: at most the limit at once, up to twice that in one period).
    #[serde(default)]
    pub window: Window,
    /// How long an unsettled request holds its success slot, in seconds
    /// (the lease of a server that died mid-request; 1 to
    /// [`MAX_HOLD_TTL_SECS`], default 600).
    #[serde(default = "hold_ttl_default")]
    pub hold_ttl_secs: u64,
}

/// The longest hold lease accepted: one day.
pub const MAX_HOLD_TTL_SECS: u64 = 86_400;

fn hold_ttl_default() -> u64 {
    600
}

/// The longest model name or subject (user id, group) accepted, in bytes.
pub const MAX_NAME_LEN: usize = 256;

fn enabled_default() -> bool {
    true
}

const PAIRS: &str =
    "expected an object of \"name\": [total, success] pairs, or that object as a JSON string";

fn pairs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, [i64; 2]>, D::Error> {
    struct Pairs;
    impl<'de> serde::de::Visitor<'de> for Pairs {
        type Value = BTreeMap<String, [i64; 2]>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(PAIRS)
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
            if s.trim().is_empty() {
                return Ok(BTreeMap::new());
            }
            serde_json::from_str(s).map_err(|e| E::custom(format_args!("{PAIRS}: {e}")))
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(name) = map.next_key::<String>()? {
                let pair = map.next_value::<[i64; 2]>().map_err(|e| {
                    serde::de::Error::custom(format_args!(
                        "{name:?}: expected [total, success], two integers: {e}"
                    ))
                })?;
                out.insert(name, pair);
            }
            Ok(out)
        }
    }
    d.deserialize_any(Pairs)
}

impl ModelLimitConfig {
    /// Parse from JSON; errors name the field (`groups`, `period_minutes`, …).
    pub fn from_json(s: &str) -> Result<Self, ModelLimitError> {
        let de = &mut serde_json::Deserializer::from_str(s);
        let c = serde_path_to_error::deserialize(&mut *de).map_err(|e| ModelLimitError::Parse {
            path: e.path().to_string(),
            message: e.inner().to_string(),
        })?;
        de.end().map_err(|e| ModelLimitError::Parse {
            path: String::new(),
            message: format!("trailing characters after the config: {e}"),
        })?;
        Ok(c)
    }

    /// Parse from TOML; errors name the field.
    pub fn from_toml(s: &str) -> Result<Self, ModelLimitError> {
        let de = toml::Deserializer::parse(s).map_err(|e| ModelLimitError::Parse {
            path: String::new(),
            message: e.to_string(),
        })?;
        serde_path_to_error::deserialize(de).map_err(|e| ModelLimitError::Parse {
            path: e.path().to_string(),
            message: e.inner().to_string(),
        })
    }
}

/// Why a model-limit config was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ModelLimitError {
    /// The text did not parse.
    #[error("model limits: {path}: {message}")]
    Parse {
        /// Where (e.g. `groups`), empty for the whole document.
        path: String,
        /// What the parser said.
        message: String,
    },
    /// `period_minutes` out of range.
    #[error("model limits: period_minutes must be 1 to {MAX_PERIOD_MINUTES}, got {0}")]
    Period(u64),
    /// `hold_ttl_secs` out of range.
    #[error("model limits: hold_ttl_secs must be 1 to {MAX_HOLD_TTL_SECS}, got {0}")]
    HoldTtl(u64),
    /// A count out of range, naming where it is.
    #[error("model limits: {scope}: {what} must be {range}, got {value}")]
    Count {
        /// `global`, `group "vip"` or `model "gpt-4"`.
        scope: String,
        /// `total_max` or `success_max`.
        what: &'static str,
        /// The accepted range.
        range: &'static str,
        /// The value given.
        value: i64,
    },
    /// Limits core refused, naming where they are (with `window = "bucket"`
    /// a count must also be an exact token bucket: `max` per period with
    /// `max × period µs / gcd(max, period µs)` below 2^53).
    #[error("model limits: {scope}: {error}")]
    Limits {
        /// `global`, `group "vip"` or `model "gpt-4"`.
        scope: String,
        /// What core said.
        error: ConfigError,
    },
    /// An empty group or model name.
    #[error("model limits: {0} names must not be empty")]
    EmptyName(&'static str),
    /// The keyed store's sizing was refused.
    #[error("model limits: {0}")]
    Store(#[from] ConfigError),
}

/// Validate one scope's `[total, success]` into its limits.
fn quota(
    scope: &str,
    total: i64,
    success: i64,
    config: &ModelLimitConfig,
) -> Result<ModelQuota, ModelLimitError> {
    let count = |what, range, value| ModelLimitError::Count {
        scope: scope.to_owned(),
        what,
        range,
        value,
    };
    if !(0..=MAX_COUNT).contains(&total) {
        return Err(count("total_max", "0 (unlimited) to 2147483647", total));
    }
    if !(1..=MAX_COUNT).contains(&success) {
        return Err(count("success_max", "1 to 2147483647", success));
    }
    // In range, so the casts are exact.
    let total = (total > 0).then_some(total as u64);
    ModelQuota::new(
        total,
        success as u64,
        Duration::from_secs(config.period_minutes * 60),
        config.window,
        Duration::from_secs(config.hold_ttl_secs),
    )
    .map_err(|error| ModelLimitError::Limits {
        scope: scope.to_owned(),
        error,
    })
}

/// The validated limits: which [`ModelQuota`] applies to a group and model.
#[derive(Clone, Debug)]
pub struct ModelLimits {
    config: ModelLimitConfig,
    global: ModelQuota,
    groups: BTreeMap<String, ModelQuota>,
    models: BTreeMap<String, ModelQuota>,
}

impl ModelLimits {
    /// Validate a config: period 1 to [`MAX_PERIOD_MINUTES`] minutes; hold
    /// lease 1 to [`MAX_HOLD_TTL_SECS`] s; every total 0 (unlimited) to
    /// 2^31 − 1 and every success 1 to 2^31 − 1 (with `window = "bucket"`,
    /// also an exact token bucket: see [`ModelLimitError::Limits`]); no
    /// empty names. Errors name the group or model at fault.
    pub fn new(config: ModelLimitConfig) -> Result<Self, ModelLimitError> {
        if !(1..=MAX_PERIOD_MINUTES).contains(&config.period_minutes) {
            return Err(ModelLimitError::Period(config.period_minutes));
        }
        if !(1..=MAX_HOLD_TTL_SECS).contains(&config.hold_ttl_secs) {
            return Err(ModelLimitError::HoldTtl(config.hold_ttl_secs));
        }
        let global = quota("global", config.total_max, config.success_max, &config)?;
        let scoped = |kind: &'static str, m: &BTreeMap<String, [i64; 2]>| {
            let mut out = BTreeMap::new();
            for (name, &[t, s]) in m {
                if name.is_empty() {
                    return Err(ModelLimitError::EmptyName(kind));
                }
                out.insert(
                    name.clone(),
                    quota(&format!("{kind} {name:?}"), t, s, &config)?,
                );
            }
            Ok(out)
        };
        let groups = scoped("group", &config.groups)?;
        let models = scoped("model", &config.models)?;
        Ok(ModelLimits {
            config,
            global,
            groups,
            models,
        })
    }

    /// The config this was built from.
    pub fn config(&self) -> &ModelLimitConfig {
        &self.config
    }

    /// The limits for a request by `who` for `model`: the group's, else the
    /// model's, else the global ones (core's [`Scope::pick`]).
    pub fn quota_for(&self, who: &Identity, model: &str) -> &ModelQuota {
        let scope = Scope::pick(
            who.group(),
            model,
            |g| self.groups.contains_key(g),
            |m| self.models.contains_key(m),
        );
        match scope {
            Scope::Group(g) => self.groups.get(g),
            Scope::Model(m) => self.models.get(m),
            Scope::Global => None,
        }
        .unwrap_or(&self.global)
    }

    /// One replica's share of every limit (core's [`ModelQuota::share`]):
    /// what a replica enforces alone while the shared store is unavailable.
    pub fn share(&self, replicas: u32) -> Result<ModelLimits, ModelLimitError> {
        let one = |scope: String, q: &ModelQuota| {
            q.share(replicas)
                .map_err(|error| ModelLimitError::Limits { scope, error })
        };
        let each = |kind: &str, m: &BTreeMap<String, ModelQuota>| {
            m.iter()
                .map(|(name, q)| Ok((name.clone(), one(format!("{kind} {name:?}"), q)?)))
                .collect::<Result<BTreeMap<_, _>, ModelLimitError>>()
        };
        Ok(ModelLimits {
            config: self.config.clone(),
            global: one("global".into(), &self.global)?,
            groups: each("group", &self.groups)?,
            models: each("model", &self.models)?,
        })
    }

    /// The global limits (also the reference for idleness: every scope
    /// shares the period and the window).
    pub fn global(&self) -> &ModelQuota {
        &self.global
    }
}
