//! What a shared limit does while its store (Redis) is unavailable: one
//! fail-over combinator, used by every domain (keyed limiters, budgets,
//! model limits), with one error for "unavailable" and the caller's clock.
//!
//! - [`OnUnavailable::Closed`] (default): refuse with the store's error (the
//!   HTTP layers answer 503 `rate_limit_store_unavailable`).
//! - [`OnUnavailable::Open`]: admit without counting.
//! - [`OnUnavailable::Local`]: decide in this process, on limits divided by
//!   [`FailoverOptions::replicas`] (rounded down, at least 1), so that
//!   replicas deciding alone admit together at most the shared limit while
//!   the store is away — for every limit of at least `replicas` units (a
//!   smaller one can be exceeded by at most `replicas − limit`:
//!   [`share_of`](ratebound_core::share::share_of)). A cost or budget
//!   amount that fits the whole limit but never the share is denied until
//!   the store may be back (one [`FailoverOptions::retry_after`] away; a
//!   budget's denial says [`DenyReason::AboveShare`](ratebound_core::budget::DenyReason)),
//!   not reported as one that can never fit.
//!
//! After a failure the store is skipped for [`FailoverOptions::retry_after`]
//! (callers do not each wait out a timeout); then one call probes it while
//! the others keep skipping, until the probe answers. Transitions (down,
//! back) are logged and counted once each per store and domain, however
//! many limiters of the domain use the store. A store that answers about
//! the call itself (a permission, a script error) is not unavailable: that
//! error is returned under every policy, never hidden by failing open.
//!
//! **What is not reconciled.** Counts made locally stay local: when the
//! store is back, decisions continue from what the store holds, and what
//! replicas admitted alone is not added to it. A Redis restarted without
//! persistence comes back empty: every count and hold starts from zero
//! (run Redis with `appendonly yes` when that matters; see the README).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What to do when the shared store is unreachable, failing or too slow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnUnavailable {
    /// Admit without counting (availability first).
    Open,
    /// Refuse with the store's error (the HTTP layers answer 503).
    #[default]
    Closed,
    /// Decide in this process with the same limits divided by
    /// [`FailoverOptions::replicas`], until the store is back.
    Local,
}

/// Where a decision came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// An in-memory backend, chosen by config (nothing shared).
    Memory,
    /// The shared store (Redis).
    Redis,
    /// The store was unavailable: admitted uncounted ([`OnUnavailable::Open`]).
    FailOpen,
    /// The store was unavailable: decided in this process ([`OnUnavailable::Local`]).
    Local,
}

/// How a shared limit fails over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FailoverOptions {
    /// What to do while the store is unavailable (default `closed`).
    pub on_unavailable: OnUnavailable,
    /// After a failed call, skip the store for this long (default 1 s).
    #[serde(with = "crate::config::human")]
    pub retry_after: Duration,
    /// How many replicas share the limits: under `local` each enforces
    /// `1/replicas` of every limit (at least 1 unit). Default 1.
    pub replicas: u32,
}

impl Default for FailoverOptions {
    fn default() -> Self {
        FailoverOptions {
            on_unavailable: OnUnavailable::Closed,
            retry_after: Duration::from_secs(1),
            replicas: 1,
        }
    }
}

impl FailoverOptions {
    /// `policy` with the default window and one replica.
    pub fn new(policy: OnUnavailable) -> Self {
        FailoverOptions {
            on_unavailable: policy,
            ..Self::default()
        }
    }

    /// The same, with `replicas` sharing the limits.
    pub fn with_replicas(mut self, replicas: u32) -> Self {
        self.replicas = replicas;
        self
    }

    /// The same, skipping the store for `d` after a failure.
    pub fn with_retry_after(mut self, d: Duration) -> Self {
        self.retry_after = d;
        self
    }

    /// When a share's refusal tells the caller to retry, from `now`: one
    /// `retry_after` on (when the store may be back). `retry_after` is at
    /// most a day once validated, far inside core's microseconds.
    #[cfg(feature = "redis")]
    pub(crate) fn retry_at(&self, now: ratebound_core::Instant) -> ratebound_core::Instant {
        let us = u64::try_from(self.retry_after.as_micros()).unwrap_or(u64::MAX);
        now.saturating_add(ratebound_core::Duration::from_micros(us))
    }

    /// A typed error for what cannot work: no replicas, or a window over a day.
    pub fn validate(&self) -> Result<(), ratebound_core::ConfigError> {
        if self.replicas == 0 {
            return Err(ratebound_core::ConfigError::Invalid {
                field: "replicas",
                reason: "must be at least 1",
            });
        }
        if self.retry_after > Duration::from_secs(86_400) {
            return Err(ratebound_core::ConfigError::Invalid {
                field: "retry_after",
                reason: "must be at most a day",
            });
        }
        Ok(())
    }
}

/// An error from the shared store, as the fail-over sees it.
pub trait StoreFailure: Sized {
    /// True when the store was unreachable, failing or too slow (the policy
    /// applies), false for an answer about this call (returned as is).
    fn is_unavailable(&self) -> bool;
    /// The error for a call not made because the store failed less than
    /// `retry_after` ago.
    fn skipped(retry_after: Duration) -> Self;
}

/// The policy's answer when the store is unavailable and the policy is not
/// to refuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))] // only shared stores fail over
pub(crate) enum Fallback {
    /// Admit uncounted.
    Open,
    /// Decide in this process.
    Local,
}

/// The one fail-over combinator: a call to the store, or the policy's
/// answer, with the breaker and its transitions. After a failure the store
/// is skipped for `retry_after`; then one call (the probe) tries it while
/// the others keep skipping, until the probe answers. The breaker measures
/// real (monotonic) time: it is about how long the store has been failing,
/// not about the limits' clock.
#[derive(Debug)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) struct Failover {
    options: FailoverOptions,
    what: &'static str,
    down_until: Mutex<Option<std::time::Instant>>,
    /// Whether the store is down for `what`, shared by every fail-over of
    /// that domain on the store: each transition is counted and logged by
    /// the call that finds it.
    down: Arc<AtomicBool>,
    /// A call is trying the store after the skip window (the others skip).
    probing: AtomicBool,
}

/// A call let through to the store; a probe frees its place when done
/// (answered, failed or cancelled).
struct Pass<'a> {
    probing: Option<&'a AtomicBool>,
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.probing {
            p.store(false, Ordering::Release);
        }
    }
}

#[cfg_attr(not(feature = "redis"), allow(dead_code))]
impl Failover {
    /// Fail-over for `what` (in logs: "limits", "budgets", "model limits")
    /// on a store whose state for `what` is `down`
    /// (`RedisStore::down_flag`).
    pub(crate) fn new(options: FailoverOptions, what: &'static str, down: Arc<AtomicBool>) -> Self {
        Failover {
            options,
            what,
            down_until: Mutex::new(None),
            down,
            probing: AtomicBool::new(false),
        }
    }

    pub(crate) fn options(&self) -> &FailoverOptions {
        &self.options
    }

    /// Run `call` on the store unless it failed recently. `Ok(Ok(v))`: its
    /// answer. `Ok(Err(f))`: it is unavailable and the policy answers
    /// instead. `Err(e)`: an error for the caller (a bad call, or the store
    /// unavailable under [`OnUnavailable::Closed`]).
    pub(crate) async fn call<T, E: StoreFailure + std::fmt::Display>(
        &self,
        call: impl Future<Output = Result<T, E>>,
    ) -> Result<Result<T, Fallback>, E> {
        let err = match self.pass() {
            None => E::skipped(self.options.retry_after),
            Some(_pass) => match call.await {
                Ok(v) => {
                    self.mark_up();
                    return Ok(Ok(v));
                }
                Err(e) if e.is_unavailable() => {
                    self.mark_down(&e);
                    e
                }
                Err(e) => return Err(e),
            },
        };
        match self.options.on_unavailable {
            OnUnavailable::Closed => Err(err),
            OnUnavailable::Open => Ok(Err(Fallback::Open)),
            OnUnavailable::Local => Ok(Err(Fallback::Local)),
        }
    }

    fn until(&self) -> std::sync::MutexGuard<'_, Option<std::time::Instant>> {
        self.down_until.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether this call may try the store: always while it is up; never
    /// within the skip window; after it, only as the one probe.
    fn pass(&self) -> Option<Pass<'_>> {
        match *self.until() {
            None => Some(Pass { probing: None }),
            Some(t) if std::time::Instant::now() < t => None,
            Some(_) => self
                .probing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
                // Lazily: a guard built and dropped would free the probe.
                .then(|| Pass {
                    probing: Some(&self.probing),
                }),
        }
    }

    fn mark_up(&self) {
        // Read first: a call that answers (nearly all) writes nothing to
        // the flag every fail-over of the domain shares.
        let changed = self.down.load(Ordering::Acquire) && self.down.swap(false, Ordering::AcqRel);
        crate::telemetry::store_state(self.what, true, changed);
        if changed {
            tracing::warn!("the shared store is back: {} are shared again", self.what);
        }
        *self.until() = None;
    }

    fn mark_down(&self, error: &impl std::fmt::Display) {
        let changed = !self.down.swap(true, Ordering::AcqRel);
        crate::telemetry::store_state(self.what, false, changed);
        if changed {
            tracing::warn!(
                %error,
                policy = ?self.options.on_unavailable,
                "the shared store is unavailable: {} follow the failure policy",
                self.what
            );
        }
        *self.until() = Some(std::time::Instant::now() + self.options.retry_after);
    }
}

#[cfg(feature = "redis")]
impl StoreFailure for crate::redis::StoreError {
    fn is_unavailable(&self) -> bool {
        crate::redis::StoreError::is_unavailable(self)
    }
    fn skipped(retry_after: Duration) -> Self {
        crate::redis::StoreError::Down(retry_after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stated defaults (closed, 1 s, one replica), from code and from an
    /// empty config alike, and what `validate` refuses, naming the field.
    #[test]
    fn defaults_and_what_cannot_work() {
        let d = FailoverOptions::default();
        assert_eq!(
            (d.on_unavailable, d.retry_after, d.replicas),
            (OnUnavailable::Closed, Duration::from_secs(1), 1)
        );
        assert_eq!(toml::from_str::<FailoverOptions>("").unwrap(), d);
        assert!(d.validate().is_ok());
        let field = |o: FailoverOptions| o.validate().unwrap_err().field();
        assert_eq!(field(d.with_replicas(0)), "replicas");
        assert_eq!(
            field(d.with_retry_after(Duration::from_secs(86_401))),
            "retry_after"
        );
        assert!(d
            .with_retry_after(Duration::from_secs(86_400))
            .validate()
            .is_ok());
    }
}
