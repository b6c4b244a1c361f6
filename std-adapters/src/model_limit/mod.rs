//! Model-level request limits for LLM gateways: a **total** count of every
//! admitted request and a **success** count of requests the upstream answered
//! well, per user (or group) and model, with per-group overrides.
//!
//! Every decision is core's [`ModelQuota`] (see its module,
//! [`ratebound_core::model_quota`], for the rules); this module adds config,
//! names, keys and the in-memory store, and the Redis backend replays the
//! same rules in a script.
//!
//! Backends: [`ModelLimiter`] in memory, `RedisModelLimiter` (feature
//! `redis`) shared by every replica with the fail-over of
//! [`crate::fallback`]; both implement [`AdmitRequests`], and
//! [`AnyModelLimiter`] is either one chosen at run time.
//!
//! - **Total** counts every admitted request. `total_max = 0` means unlimited.
//! - **Success** is *reserved at admission* and settled by the outcome: a
//!   request is admitted only if the success count has room for it and for
//!   every request still in flight; a success is then counted, a failure
//!   (status ≥ 400, an error, a dropped request) gives the slot back. So `N`
//!   concurrent requests against a success limit of 10 admit exactly 10. A
//!   success is never dropped, even when it settles late.
//! - **Windows.** By default (`window = "sliding"`) a limit means **at most
//!   `max` in any window of one period**, for both counts. `window = "bucket"`
//!   makes both counts token buckets: at most `max` at once and `max` per
//!   period sustained, which lets a one-period window see up to `2·max − 1`.
//!   The one exception: a success settled after its hold expired
//!   (`hold_ttl_secs`, default 600 s) is still counted, and can go over.
//! - Names are bounded ([`MAX_NAME_LEN`] bytes) and `allowed_models` can
//!   restrict models, so clients cannot fill the store with made-up keys.
//! - Admission is all-or-nothing: a request denied by the success count does
//!   not use the total count, and vice versa.
//! - Which limits apply: a **group** override (`groups`, also accepted as
//!   the JSON string `{"group": [total, success]}`) wins over a **model**
//!   override (`models`), which wins over the global `total_max` /
//!   `success_max`. The group is the token group, else the user group
//!   ([`Identity::group`]).
//! - **Whose count.** One count per subject and model: the user id
//!   ([`KeyBy::User`], default) or, under [`KeyBy::Group`], the group (users
//!   without one count alone). The group only picks the limits: a user who
//!   switches groups keeps their count, held to the new group's limits.
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

mod backend;
mod config;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
pub use redis::{RedisInFlight, RedisModelLimiter};

pub use backend::{AnyInFlight, AnyModelLimiter};

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use ratebound_core::model_quota::scope::{self, Subject};
use ratebound_core::{CostError, Decision, Instant, Limiter};

use crate::clock::Clock;
use crate::keyed::{KeyedConfig, KeyedLimiter};
use crate::AcquireError;

pub use ratebound_core::model_quota::{
    Blocked, Count, ModelDecision, ModelQuota, ModelState, Outcome, Settled, Window,
};

pub use config::{
    KeyBy, ModelLimitConfig, ModelLimitError, ModelLimits, MAX_COUNT, MAX_HOLD_TTL_SECS,
    MAX_NAME_LEN, MAX_PERIOD_MINUTES,
};

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
        scope::group(self.token_group.as_deref(), self.user_group.as_deref())
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

/// A request admitted (or denied): the decision, plus what
/// [`ModelLimiter::settle`] needs. Dropping an admitted one without settling
/// it settles it as a failure (the success slot comes back).
#[derive(Debug)]
#[must_use = "settle the request with its outcome; dropping it counts as a failure"]
pub struct InFlight<C: Clock> {
    decision: ModelDecision,
    quota: ModelQuota,
    key: ModelKey,
    store: Option<Arc<Store<C>>>,
}

impl<C: Clock> InFlight<C> {
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
        let (Some(store), Some(hold)) = (self.store.take(), self.decision.hold) else {
            return; // denied: nothing is held
        };
        let quota = self.quota;
        // A key evicted meanwhile gets a fresh state, where the settle is a
        // late one: a success is still counted. Only a store full of active
        // keys can refuse it (then it is lost, and logged).
        let r = store.update(&self.key, |_, st, now| quota.settle(st, now, hold, outcome));
        if let Err(e) = r {
            tracing::warn!(key = %self.key, error = %e, "could not record a settle");
        }
    }
}

impl<C: Clock> Drop for InFlight<C> {
    fn drop(&mut self) {
        self.settle_in_place(Outcome::Failure);
    }
}

/// The keyed store's view of model states: idleness is the same for every
/// scope's limits (they share the period and window). Deciding goes through
/// [`ModelQuota::admit`] and [`ModelQuota::settle`] with the request's limits;
/// `check` here only reports, so the store's generic path can never admit a
/// request that cannot be settled.
#[derive(Clone, Debug)]
struct States(ModelQuota);

impl Limiter for States {
    type State = ModelState;
    fn check(
        &self,
        state: &mut ModelState,
        now: Instant,
        cost: u64,
    ) -> Result<Decision, CostError> {
        self.peek(state, now, cost)
    }
    fn peek(&self, state: &ModelState, now: Instant, _cost: u64) -> Result<Decision, CostError> {
        Ok(self.0.peek(state, now).binding().1)
    }
    fn is_idle(&self, state: &ModelState, now: Instant) -> bool {
        self.0.is_idle(state, now)
    }
}

type Store<C> = KeyedLimiter<ModelKey, States, C>;

/// Model-level limits over one in-memory keyed store, bounded like
/// [`KeyedLimiter`]: `store` sizes it.
#[derive(Debug)]
pub struct ModelLimiter<C: Clock + Clone> {
    limits: ModelLimits,
    store: Arc<Store<C>>,
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
    /// to refuse ([`OnUnavailable::Closed`](crate::fallback::OnUnavailable)).
    #[error("rate-limit store unavailable: {0}")]
    Unavailable(String),
    /// The shared store answered with an error about the call itself (a
    /// misconfiguration: permissions, cluster slots, a key too long, a
    /// script error). The failure policy does not apply: it would hide it.
    #[error("rate-limit store refused the call: {0}")]
    StoreError(String),
}

impl AdmitError {
    /// True when the request itself is at fault (answer 400), not the server.
    pub fn is_client_error(&self) -> bool {
        matches!(self, AdmitError::UnknownModel(_) | AdmitError::BadName(_))
    }
}

impl<C: Clock + Clone> ModelLimiter<C> {
    /// Validate `config` and size the store with `store`.
    pub fn new(
        config: ModelLimitConfig,
        store: KeyedConfig,
        clock: C,
    ) -> Result<Self, ModelLimitError> {
        Self::with_limits(ModelLimits::new(config)?, store, clock)
    }

    /// Limits already validated (e.g. one replica's [`ModelLimits::share`]).
    pub fn with_limits(
        limits: ModelLimits,
        store: KeyedConfig,
        clock: C,
    ) -> Result<Self, ModelLimitError> {
        let store = KeyedLimiter::new(States(*limits.global()), store, clock)?;
        Ok(ModelLimiter {
            limits,
            store: Arc::new(store),
        })
    }

    /// The validated limits.
    pub fn limits(&self) -> &ModelLimits {
        &self.limits
    }

    /// True when limits are enabled.
    pub fn enabled(&self) -> bool {
        self.limits.config().enabled
    }

    /// The key `who` and `model` count under (core's [`Subject::of`]).
    /// Users and groups live in separate key spaces (`u:` / `g:`), so a user
    /// named like a group never shares its count.
    pub fn key_for(&self, who: &Identity, model: &str) -> ModelKey {
        key_for(self.limits.config().key_by, who, model)
    }

    /// The key text of the state `who` and `model` count in, as shared
    /// backends store it (core's [`scope::write_key`]).
    pub fn state_tag(&self, who: &Identity, model: &str) -> String {
        state_tag(self.limits.config().key_by, who, model)
    }

    /// Check names and `allowed_models` (as [`admit`](ModelLimiter::admit) does).
    pub fn validate(&self, who: &Identity, model: &str) -> Result<(), AdmitError> {
        validate(&self.limits, who, model)
    }

    /// Admit one request by `who` for `model`, reserving a success slot.
    /// Settle it with [`settle`](ModelLimiter::settle) once the outcome is
    /// known (dropping it counts as a failure).
    pub fn admit(&self, who: &Identity, model: &str) -> Result<InFlight<C>, AdmitError> {
        self.validate(who, model)?;
        let quota = *self.limits.quota_for(who, model);
        let key = self.key_for(who, model);
        let decision = self.store.update(&key, |_, st, now| quota.admit(st, now))?;
        Ok(InFlight {
            decision,
            quota,
            key,
            store: Some(Arc::clone(&self.store)),
        })
    }

    /// What [`admit`](ModelLimiter::admit) would decide, changing nothing.
    pub fn peek(&self, who: &Identity, model: &str) -> ModelDecision {
        let quota = *self.limits.quota_for(who, model);
        let key = self.key_for(who, model);
        self.store.inspect(&key, |_, st, now| quota.peek(st, now))
    }

    /// Settle an admission with its outcome.
    pub fn settle(&self, admission: InFlight<C>, outcome: Outcome) {
        admission.settle(outcome);
    }
}

/// The key `who` and `model` count under with `key_by`.
pub fn key_for(key_by: KeyBy, who: &Identity, model: &str) -> ModelKey {
    let subject = Subject::of(key_by, &who.user_id, who.group());
    ModelKey {
        subject: subject.to_string().into(),
        model: model.into(),
    }
}

/// The key text of the state `who` and `model` count in with `key_by`, as
/// shared backends store it (core's [`scope::write_key`]).
pub fn state_tag(key_by: KeyBy, who: &Identity, model: &str) -> String {
    let subject = Subject::of(key_by, &who.user_id, who.group());
    let mut tag = String::new();
    let _ = scope::write_key(&mut tag, subject, model); // writing to a String cannot fail
    tag
}

/// Check names and `allowed_models` against `limits`.
pub fn validate(limits: &ModelLimits, who: &Identity, model: &str) -> Result<(), AdmitError> {
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
    let allowed = &limits.config().allowed_models;
    if !allowed.is_empty() && !allowed.iter().any(|m| m == model) {
        return Err(AdmitError::UnknownModel(model.to_owned()));
    }
    Ok(())
}

/// Decides admissions for the layer. [`ModelLimiter`] (in memory) implements
/// it; a shared backend can too, so the layer switches by config.
pub trait AdmitRequests: Send + Sync + 'static {
    /// One admitted (or denied) request.
    type Request: Admitted;
    /// False: pass everything, count nothing, add no headers.
    fn enabled(&self) -> bool;
    /// Admit a request by `who` for `model`, reserving its success slot.
    fn admit(
        &self,
        who: &Identity,
        model: &str,
    ) -> impl Future<Output = Result<Self::Request, AdmitError>> + Send;
    /// How long a shared store is skipped after it fails (its fail-over's
    /// [`retry_after`](crate::fallback::FailoverOptions::retry_after)): a
    /// client refused because it is away may try again after this. `None`
    /// (the default) where there is no shared store.
    fn store_retry_after(&self) -> Option<std::time::Duration> {
        None
    }
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
    type Request = InFlight<C>;
    fn enabled(&self) -> bool {
        ModelLimiter::enabled(self)
    }
    fn admit(
        &self,
        who: &Identity,
        model: &str,
    ) -> impl Future<Output = Result<InFlight<C>, AdmitError>> + Send {
        std::future::ready(ModelLimiter::admit(self, who, model))
    }
}

impl<C: Clock + Clone> Admitted for InFlight<C> {
    fn decision(&self) -> &ModelDecision {
        InFlight::decision(self)
    }
    fn quota(&self) -> &ModelQuota {
        InFlight::quota(self)
    }
    fn settle(self, outcome: Outcome) -> impl Future<Output = ()> + Send {
        InFlight::settle(self, outcome);
        std::future::ready(())
    }
}
