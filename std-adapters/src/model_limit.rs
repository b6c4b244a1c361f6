//! Model-level request limits for LLM gateways: a **total** count of every
//! admitted request and a **success** count of requests the upstream answered
//! well, per user (or group) and model, with per-group overrides.
//!
//! This is the seed gateway's model-level rate limit (new-api), with its
//! check-then-record race removed:
//!
//! - **Total** counts every admitted request. `total_max = 0` means unlimited.
//! - **Success** is *reserved at admission* and settled by the outcome: a
//!   request is admitted only if the success bucket holds a token for it
//!   and for every request still in flight; a success then takes its token,
//!   a failure (status ≥ 400, an error, a dropped request) takes none. So
//!   `N` concurrent requests against a success limit of 10 admit exactly
//!   10, where checking before and counting after lets all of them through.
//!   Nothing is ever refunded into the bucket, so a request that settles
//!   late (even after a whole period) cannot add capacity.
//! - Names are bounded ([`MAX_NAME_LEN`] bytes) and `allowed_models` can
//!   restrict models, so clients cannot fill the store with made-up keys.
//! - Both counts are token buckets (core's exact GCRA) of `max` that refill
//!   `max` per period: at most `max` at once, and `max` per period sustained
//!   — the seed's Redis token bucket. Because a bucket refills continuously,
//!   any window of one period sees at most `2·max − 1` admissions (a full
//!   burst, then the refill); a fixed-window budget
//!   ([`budget`](crate::budget)) is the tool when a calendar period must hold
//!   a hard total.
//! - Admission is all-or-nothing: a request denied by the success count does
//!   not use the total count, and vice versa.
//! - Which limits apply: a **group** override (`groups`, the seed's
//!   `{"group": [total, success]}`) wins over a **model** override
//!   (`models`), which wins over the global `total_max` / `success_max`.
//!   The group is the token group, else the user group ([`Identity::group`]).
//! - The key combines the subject and the model, so GPT-4 and Claude have
//!   separate counts. The subject is the user id ([`KeyBy::User`], default)
//!   or, as the seed's key lookup reads, the token group, else the user
//!   group, else the user id ([`KeyBy::Group`]: a group shares one count).
//!
//! ```
//! use ratebound_std::clock::ManualClock;
//! use ratebound_std::model_limit::{Identity, ModelLimitConfig, ModelLimiter, Outcome};
//! use ratebound_core::Instant;
//!
//! let config = ModelLimitConfig::from_json(r#"{
//!     "period_minutes": 1, "total_max": 100, "success_max": 2,
//!     "groups": "{\"vip\": [0, 1000]}"
//! }"#)?;
//! let clock = ManualClock::new(Instant::from_secs(1_000));
//! let limiter = ModelLimiter::new(config, Default::default(), clock)?;
//! let alice = Identity::user("alice");
//!
//! let a = limiter.admit(&alice, "gpt-4")?;
//! let b = limiter.admit(&alice, "gpt-4")?;
//! assert!(a.allowed() && b.allowed());
//! assert!(!limiter.admit(&alice, "gpt-4")?.allowed()); // 2 successes reserved
//! assert!(limiter.admit(&alice, "claude-3")?.allowed()); // another model, another count
//!
//! limiter.settle(a, Outcome::Failure); // the upstream failed: slot back
//! assert!(limiter.admit(&alice, "gpt-4")?.allowed());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use ratebound_core::{ConfigError, Duration, Gcra};
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::keyed::{KeyedConfig, KeyedLimiter};
use crate::AcquireError;

/// The largest `total_max` / `success_max` accepted (the seed's bound, 2^31 − 1).
pub const MAX_COUNT: i64 = i32::MAX as i64;
/// The longest period accepted: 366 days, in minutes.
pub const MAX_PERIOD_MINUTES: u64 = 366 * 24 * 60;

/// Whose count a request uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyBy {
    /// Each user has its own counts (per model); the group only picks the limits.
    #[default]
    User,
    /// Everyone in a group shares the group's counts: the token group, else
    /// the user group, else the user id (the seed's key lookup).
    Group,
}

/// Model-level limits as configured (TOML or JSON); validate with
/// [`ModelLimits::new`] (done by [`ModelLimiter::new`]).
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
    /// map, or the seed's form: a JSON object in a string.
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
    /// An empty group or model name.
    #[error("model limits: {0} names must not be empty")]
    EmptyName(&'static str),
    /// The keyed store's sizing was refused.
    #[error("model limits: {0}")]
    Store(#[from] ConfigError),
}

pub use ratebound_core::model_quota::{ModelDecision, ModelQuota, ModelState, Outcome, Policy};

/// Validate one scope's `[total, success]` (as the seed does) into its buckets.
fn quota(
    scope: &str,
    total: i64,
    success: i64,
    period: Duration,
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
    // In range, so the casts are exact and the buckets are valid.
    let bucket = |n: i64| Gcra::new(n as u64, n as u64, period);
    let total = if total == 0 {
        None
    } else {
        Some(bucket(total)?)
    };
    Ok(ModelQuota::new(total, bucket(success)?))
}

/// Who is asking: set by an auth layer (as a request extension) or built by
/// a key extractor.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The user id (always present).
    pub user_id: String,
    /// The user's group, if any.
    pub user_group: Option<String>,
    /// The API token's group, if any (wins over the user group).
    pub token_group: Option<String>,
}

impl Identity {
    /// A user with no group.
    pub fn user(id: impl Into<String>) -> Self {
        Identity {
            user_id: id.into(),
            ..Identity::default()
        }
    }

    /// Set the user group.
    pub fn with_user_group(mut self, g: impl Into<String>) -> Self {
        self.user_group = Some(g.into());
        self
    }

    /// Set the token group.
    pub fn with_token_group(mut self, g: impl Into<String>) -> Self {
        self.token_group = Some(g.into());
        self
    }

    /// The group that picks the limits: the token group, else the user group
    /// (empty names count as absent).
    pub fn group(&self) -> Option<&str> {
        fn nonempty(g: &Option<String>) -> Option<&str> {
            g.as_deref().filter(|g| !g.is_empty())
        }
        nonempty(&self.token_group).or_else(|| nonempty(&self.user_group))
    }
}

/// The validated limits: which [`ModelQuota`] applies to a group and model.
#[derive(Clone, Debug)]
pub struct ModelLimits {
    config: ModelLimitConfig,
    global: ModelQuota,
    groups: BTreeMap<String, (usize, ModelQuota)>,
    models: BTreeMap<String, (usize, ModelQuota)>,
}

impl ModelLimits {
    /// Validate a config: period 1 to [`MAX_PERIOD_MINUTES`] minutes; every
    /// total 0 (unlimited) to 2^31 − 1 and every success 1 to 2^31 − 1; no
    /// empty names. Errors name the group or model at fault.
    pub fn new(config: ModelLimitConfig) -> Result<Self, ModelLimitError> {
        if !(1..=MAX_PERIOD_MINUTES).contains(&config.period_minutes) {
            return Err(ModelLimitError::Period(config.period_minutes));
        }
        let period = Duration::from_secs(config.period_minutes * 60);
        let global = quota("global", config.total_max, config.success_max, period)?;
        let mut next = 1; // index 0 is the global quota's store
        let mut scoped = |kind: &'static str, m: &BTreeMap<String, [i64; 2]>| {
            let mut out = BTreeMap::new();
            for (name, &[t, s]) in m {
                if name.is_empty() {
                    return Err(ModelLimitError::EmptyName(kind));
                }
                let q = quota(&format!("{kind} {name:?}"), t, s, period)?;
                out.insert(name.clone(), (next, q));
                next += 1;
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

    /// The limits for a request by `who` for `model`: group, else model,
    /// else global; with the index of the store that holds its counts.
    pub fn quota_for(&self, who: &Identity, model: &str) -> (usize, &ModelQuota) {
        if let Some((i, q)) = who.group().and_then(|g| self.groups.get(g)) {
            return (*i, q);
        }
        if let Some((i, q)) = self.models.get(model) {
            return (*i, q);
        }
        (0, &self.global)
    }

    fn quotas(&self) -> impl Iterator<Item = ModelQuota> + '_ {
        std::iter::once(self.global)
            .chain(self.groups.values().map(|(_, q)| *q))
            .chain(self.models.values().map(|(_, q)| *q))
    }
}

/// The key a request's counts live under: subject and model.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ModelKey {
    /// The user id, or the group under [`KeyBy::Group`].
    pub subject: Arc<str>,
    /// The model.
    pub model: Arc<str>,
}

impl fmt::Display for ModelKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.subject, self.model)
    }
}

/// An admitted (or denied) request: the decision, plus what
/// [`ModelLimiter::settle`] needs. Dropping an admitted one without settling
/// it settles it as a failure (the success slot comes back).
#[derive(Debug)]
#[must_use = "settle the admission with the outcome; dropping it counts as a failure"]
pub struct Admission<C: Clock> {
    decision: ModelDecision,
    quota: ModelQuota,
    key: ModelKey,
    store: Option<(usize, Arc<Stores<C>>)>,
}

impl<C: Clock> Admission<C> {
    /// The decision.
    pub fn decision(&self) -> &ModelDecision {
        &self.decision
    }

    /// True when admitted.
    pub fn allowed(&self) -> bool {
        self.decision.allowed()
    }

    /// The limits that applied.
    pub fn quota(&self) -> &ModelQuota {
        &self.quota
    }

    /// The key counted.
    pub fn key(&self) -> &ModelKey {
        &self.key
    }

    /// Settle with the outcome: a failure gives the success slot back.
    pub fn settle(mut self, outcome: Outcome) {
        self.settle_in_place(outcome);
    }

    fn settle_in_place(&mut self, outcome: Outcome) {
        // Only an admitted request holds a success slot.
        if let Some((i, stores)) = self.store.take().filter(|_| self.decision.allowed()) {
            if let Some(store) = stores.by_quota.get(i) {
                // A key evicted meanwhile gets a fresh state: settling there
                // frees no one's reservation (inflight saturates at 0) and a
                // success is still charged; a StoreFull refusal loses nothing.
                let _ = store.update(&self.key, |q, st, now| q.settle(st, now, outcome));
            }
        }
    }
}

impl<C: Clock> Drop for Admission<C> {
    fn drop(&mut self) {
        self.settle_in_place(Outcome::Failure);
    }
}

#[derive(Debug)]
struct Stores<C: Clock> {
    by_quota: Vec<KeyedLimiter<ModelKey, ModelQuota, C>>,
}

/// Model-level limits over in-memory keyed stores (one per distinct scope),
/// bounded like [`KeyedLimiter`]: `store` sizes each of them.
#[derive(Debug)]
pub struct ModelLimiter<C: Clock + Clone> {
    limits: ModelLimits,
    stores: Arc<Stores<C>>,
}

/// Why a request could not be decided.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdmitError {
    /// The keyed store is full of active keys (see [`KeyedConfig`]).
    #[error(transparent)]
    Store(#[from] AcquireError),
    /// The model is not in `allowed_models`.
    #[error("model {0:?} is not served here")]
    UnknownModel(String),
    /// A model name, user id or group longer than [`MAX_NAME_LEN`] bytes, or empty.
    #[error("{0} must be 1 to 256 bytes")]
    BadName(&'static str),
    /// The shared store (Redis) is unavailable and the failure policy is
    /// to refuse ([`OnUnavailable::Closed`](crate::redis::OnUnavailable)).
    #[error("rate-limit store unavailable: {0}")]
    Unavailable(String),
}

impl AdmitError {
    /// True when the request itself is at fault (answer 400), not the server.
    pub fn is_client_error(&self) -> bool {
        matches!(self, AdmitError::UnknownModel(_) | AdmitError::BadName(_))
    }
}

impl<C: Clock + Clone> ModelLimiter<C> {
    /// Validate `config` and size the stores with `store`.
    pub fn new(
        config: ModelLimitConfig,
        store: KeyedConfig,
        clock: C,
    ) -> Result<Self, ModelLimitError> {
        let limits = ModelLimits::new(config)?;
        let by_quota = limits
            .quotas()
            .map(|q| KeyedLimiter::new(q, store, clock.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ModelLimiter {
            limits,
            stores: Arc::new(Stores { by_quota }),
        })
    }

    /// The validated limits.
    pub fn limits(&self) -> &ModelLimits {
        &self.limits
    }

    /// True when limits are enabled.
    pub fn enabled(&self) -> bool {
        self.limits.config.enabled
    }

    /// The key `who` and `model` count under.
    /// Users and groups live in separate key spaces (`u:` / `g:`), so a user
    /// named like a group never shares its count.
    pub fn key_for(&self, who: &Identity, model: &str) -> ModelKey {
        let subject = match (self.limits.config.key_by, who.group()) {
            (KeyBy::Group, Some(g)) => format!("g:{g}"),
            _ => format!("u:{}", who.user_id),
        };
        ModelKey {
            subject: subject.into(),
            model: model.into(),
        }
    }

    /// Check names and `allowed_models` (as [`admit`](ModelLimiter::admit) does).
    pub fn validate(&self, who: &Identity, model: &str) -> Result<(), AdmitError> {
        let ok = |s: &str| !s.is_empty() && s.len() <= MAX_NAME_LEN;
        if !ok(model) {
            return Err(AdmitError::BadName("model"));
        }
        if !ok(&who.user_id) {
            return Err(AdmitError::BadName("user id"));
        }
        if who.group().is_some_and(|g| g.len() > MAX_NAME_LEN) {
            return Err(AdmitError::BadName("group"));
        }
        let allowed = &self.limits.config.allowed_models;
        if !allowed.is_empty() && !allowed.iter().any(|m| m == model) {
            return Err(AdmitError::UnknownModel(model.to_owned()));
        }
        Ok(())
    }

    /// Admit one request by `who` for `model`, reserving a success slot.
    /// Settle it with [`settle`](ModelLimiter::settle) once the outcome is
    /// known (dropping it counts as a failure).
    pub fn admit(&self, who: &Identity, model: &str) -> Result<Admission<C>, AdmitError> {
        self.validate(who, model)?;
        let (i, quota) = self.limits.quota_for(who, model);
        let key = self.key_for(who, model);
        let store = self
            .stores
            .by_quota
            .get(i)
            .ok_or(AcquireError::StoreFull { capacity: 0 })?;
        let decision = store.update(&key, |q, st, now| q.admit(st, now))?;
        Ok(Admission {
            decision,
            quota: *quota,
            key,
            store: Some((i, Arc::clone(&self.stores))),
        })
    }

    /// What [`admit`](ModelLimiter::admit) would decide, changing nothing.
    pub fn peek(&self, who: &Identity, model: &str) -> Option<ModelDecision> {
        let (i, _) = self.limits.quota_for(who, model);
        let key = self.key_for(who, model);
        let store = self.stores.by_quota.get(i)?;
        Some(store.inspect(&key, |q, st, now| q.peek(st, now)))
    }

    /// Settle an admission with its outcome.
    pub fn settle(&self, admission: Admission<C>, outcome: Outcome) {
        admission.settle(outcome);
    }
}

/// Decides admissions for the layer. [`ModelLimiter`] (in memory) implements
/// it; a shared backend can too, so the layer switches by config.
pub trait AdmitRequests: Send + Sync + 'static {
    /// One admitted (or denied) request.
    type Admission: Admitted;
    /// False: pass everything, count nothing, add no headers.
    fn enabled(&self) -> bool;
    /// Admit a request by `who` for `model`, reserving its success slot.
    fn admit(
        &self,
        who: &Identity,
        model: &str,
    ) -> impl Future<Output = Result<Self::Admission, AdmitError>> + Send;
}

/// An admission, as the layer needs it.
pub trait Admitted: Send + 'static {
    /// The decision.
    fn decision(&self) -> &ModelDecision;
    /// The limits that applied.
    fn quota(&self) -> &ModelQuota;
    /// Settle with the outcome (dropping unsettled = failure).
    fn settle(self, outcome: Outcome) -> impl Future<Output = ()> + Send;
}

impl<C: Clock + Clone> AdmitRequests for ModelLimiter<C> {
    type Admission = Admission<C>;
    fn enabled(&self) -> bool {
        ModelLimiter::enabled(self)
    }
    fn admit(
        &self,
        who: &Identity,
        model: &str,
    ) -> impl Future<Output = Result<Admission<C>, AdmitError>> + Send {
        std::future::ready(ModelLimiter::admit(self, who, model))
    }
}

impl<C: Clock + Clone> Admitted for Admission<C> {
    fn decision(&self) -> &ModelDecision {
        Admission::decision(self)
    }
    fn quota(&self) -> &ModelQuota {
        Admission::quota(self)
    }
    fn settle(self, outcome: Outcome) -> impl Future<Output = ()> + Send {
        Admission::settle(self, outcome);
        std::future::ready(())
    }
}
