//! A keyed limiter whose states live in Redis, shared by every server,
//! with the fail-over of [`crate::fallback`].

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use ratebound_core::policy;
use ratebound_core::share::limits_share_refusal;
use ratebound_core::{CarryOver, ConfigError};

use super::memory::{memory_decision, KeyBytes, MemoryKeyed};
use super::{KeyedConfig, KeyedDecision, KeyedError};
use crate::clock::Clock;
use crate::fallback::{Failover, FailoverOptions, Fallback, OnUnavailable, Source};
use crate::limiter::{AnyLimiter, LimitSet};
use crate::redis::{Charge, RedisSpec, RedisStore, StoreError};

/// The Redis spec of a config limiter.
pub(crate) fn spec_of(l: &AnyLimiter) -> RedisSpec {
    match l {
        AnyLimiter::Gcra(g) => RedisSpec::Gcra(*g),
        AnyLimiter::SlidingLog(s) => RedisSpec::sliding_log(s),
        AnyLimiter::SlidingCounter(c) => RedisSpec::SlidingCounter(*c),
    }
}

/// One replica's share of `l` (see [`ratebound_core::share`]).
pub(crate) fn replica_share(
    l: &AnyLimiter,
    replicas: u32,
) -> Result<AnyLimiter, ratebound_core::ConfigError> {
    Ok(match l {
        AnyLimiter::Gcra(g) => AnyLimiter::Gcra(g.share(replicas)?),
        AnyLimiter::SlidingLog(s) => AnyLimiter::SlidingLog(s.share(replicas)?),
        AnyLimiter::SlidingCounter(c) => AnyLimiter::SlidingCounter(c.share(replicas)?),
    })
}

/// Limits (from config: GCRA, sliding log or counter; one, or a
/// [`LimitSet`] decided all or nothing) whose per-key state lives in Redis
/// under `prefix{key}:name`, one key per member. While Redis is unavailable
/// the [`FailoverOptions`] decide: refuse, admit uncounted, or decide in
/// this process on this replica's share of each limit. Recovery is
/// automatic.
///
/// The limits can change while it runs, for every key
/// ([`reconfigure`](Self::reconfigure)) or one key
/// ([`set_override`](Self::set_override)): the states in Redis are kept and
/// read by the new limits (core's [`reconfigure`](ratebound_core::reconfigure)
/// rule): the state format never depends on the limits, so replicas that
/// take up a change at different moments share every state, each deciding
/// by its own limits meanwhile. Changes and overrides are this replica's:
/// make them on each.
pub struct RedisKeyedLimiter<C: Clock + Clone> {
    store: RedisStore,
    limits: RwLock<Arc<Limits>>,
    /// Keys decided by limits of their own (read only while non-empty).
    overrides: RwLock<HashMap<KeyBytes, Arc<Limits>>>,
    /// Serialises changes of the limits and overrides, so the local
    /// fallback and the Redis side always change together.
    changing: std::sync::Mutex<()>,
    failover: Failover,
    /// This replica's share, in memory (`local` only).
    local: Option<MemoryKeyed<C>>,
    clock: C,
}

/// A set and the Redis specs of its members.
#[derive(Debug)]
struct Limits {
    set: Arc<LimitSet>,
    specs: Vec<RedisSpec>,
}

impl Limits {
    fn new(set: LimitSet) -> Arc<Self> {
        Arc::new(Limits {
            specs: set.members().map(|(_, l)| spec_of(l)).collect(),
            set: Arc::new(set),
        })
    }
}

impl<C: Clock + Clone> std::fmt::Debug for RedisKeyedLimiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisKeyedLimiter")
            .field("limits", &self.limits())
            .field("failover", self.failover.options())
            .finish()
    }
}

impl<C: Clock + Clone> RedisKeyedLimiter<C> {
    /// `limiter` named `name` in `store`; `local` sizes the in-memory
    /// fallback and `clock` serves it (and the fail-open answers).
    pub fn new(
        store: RedisStore,
        name: impl Into<String>,
        limiter: AnyLimiter,
        failover: FailoverOptions,
        local: KeyedConfig,
        clock: C,
    ) -> Result<Self, StoreError> {
        let limits = LimitSet::one(name, limiter)?;
        Self::with_set(store, limits, failover, local, clock)
    }

    /// Every member of `limits` per key in `store`, decided all or nothing
    /// in one round trip; otherwise as [`new`](Self::new).
    pub fn with_set(
        store: RedisStore,
        limits: LimitSet,
        failover: FailoverOptions,
        local: KeyedConfig,
        clock: C,
    ) -> Result<Self, StoreError> {
        failover.validate()?;
        let local = match failover.on_unavailable {
            OnUnavailable::Local => {
                let share = limits.try_map(|l| replica_share(l, failover.replicas))?;
                Some(MemoryKeyed::new(share, local, clock.clone())?)
            }
            _ => None,
        };
        let down = store.down_flag("limits");
        Ok(RedisKeyedLimiter {
            local,
            store,
            limits: RwLock::new(Limits::new(limits)),
            overrides: RwLock::new(HashMap::new()),
            changing: std::sync::Mutex::new(()),
            failover: Failover::new(failover, "limits", down),
            clock,
        })
    }

    /// The failure policy.
    pub fn failover(&self) -> &FailoverOptions {
        self.failover.options()
    }

    /// Check `cost` for `key`. Errors for bad input (a cost that never
    /// fits, an oversized key) and, under `closed`, while Redis is
    /// unavailable.
    pub async fn check(&self, key: &[u8], cost: u64) -> Result<KeyedDecision, KeyedError> {
        self.run(key, cost, true).await
    }

    /// What [`check`](Self::check) would decide, changing nothing.
    pub async fn peek(&self, key: &[u8], cost: u64) -> Result<KeyedDecision, KeyedError> {
        self.run(key, cost, false).await
    }

    /// The limits `key` is decided by.
    fn limits_of(&self, key: &[u8]) -> Arc<Limits> {
        let overrides = self.overrides.read().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = overrides.get(key) {
            return Arc::clone(l);
        }
        drop(overrides);
        Arc::clone(&self.limits.read().unwrap_or_else(|p| p.into_inner()))
    }

    async fn run(&self, key: &[u8], cost: u64, take: bool) -> Result<KeyedDecision, KeyedError> {
        let limits = self.limits_of(key);
        limits.set.fits(cost).map_err(|(_, e)| e)?;
        let m: Vec<Charge<'_>> = limits
            .set
            .members()
            .zip(&limits.specs)
            .map(|((name, _), spec)| Charge { name, spec, cost })
            .collect();
        let shared = async {
            if take {
                self.store.check(key, &m).await
            } else {
                self.store.peek(key, &m).await
            }
        };
        match self.failover.call(shared).await? {
            Ok(d) => Ok(KeyedDecision {
                decision: d.decision.decision,
                binding: d.decision.binding.unwrap_or(0),
                binding_remaining: d
                    .members
                    .get(d.decision.binding.unwrap_or(0))
                    .map_or(d.decision.decision.remaining, |m| m.decision.remaining),
                binding_reset_at: d
                    .members
                    .get(d.decision.binding.unwrap_or(0))
                    .map_or(d.decision.decision.reset_at, |m| m.decision.reset_at),
                source: Source::Redis,
                now: d.now,
            }),
            Err(Fallback::Open) => {
                let now = self.clock.now();
                let whole = limits.set.members().map(|(_, l)| (l.capacity(), cost));
                let set = policy::uncounted(now, whole);
                // The binding member has the least left: the set's figures.
                Ok(KeyedDecision {
                    decision: set.decision,
                    binding: set.binding.unwrap_or(0),
                    binding_remaining: set.decision.remaining,
                    binding_reset_at: set.decision.reset_at,
                    source: Source::FailOpen,
                    now,
                })
            }
            Err(Fallback::Local) => {
                let Some(local) = &self.local else {
                    return Err(StoreError::Invalid("no local fallback").into());
                };
                let now = self.clock.now();
                let options = self.failover.options();
                let whole = limits.set.members().map(|(_, l)| (l.capacity(), cost));
                let refusal =
                    limits_share_refusal(whole, options.replicas, now, options.retry_at(now));
                if let Some((member, decision)) = refusal.map_err(|(_, e)| e)? {
                    // A use of the key all the same, so a key refused
                    // while it keeps calling is not the first forgotten.
                    if take {
                        local.touch(&key.into());
                    }
                    return Ok(KeyedDecision {
                        decision,
                        binding: member,
                        binding_remaining: decision.remaining,
                        binding_reset_at: decision.reset_at,
                        source: Source::Local,
                        now,
                    });
                }
                let d = memory_decision(local, &key.into(), cost, take)?;
                Ok(KeyedDecision {
                    source: Source::Local,
                    ..d
                })
            }
        }
    }

    /// The limits keys are decided by (but those with an override).
    pub fn limits(&self) -> Arc<LimitSet> {
        Arc::clone(&self.limits.read().unwrap_or_else(|p| p.into_inner()).set)
    }

    /// The limits `key` is decided by: its override, else the common ones.
    pub fn limits_for(&self, key: &[u8]) -> Arc<LimitSet> {
        Arc::clone(&self.limits_of(key).set)
    }

    /// The longest key the store takes (its options' `max_tag_len`).
    pub fn max_key_len(&self) -> usize {
        self.store.options().max_tag_len
    }

    /// The limits that made a decision from `source` for `key`: this
    /// replica's share under the local fallback, else the common ones.
    pub fn limits_deciding(&self, key: &[u8], source: Source) -> Arc<LimitSet> {
        match (&self.local, source) {
            (Some(local), Source::Local) => local.limits_for(key),
            _ => self.limits_for(key),
        }
    }

    /// This replica's share of `limits` for the local fallback, if it has one.
    fn share(&self, limits: &LimitSet) -> Result<Option<LimitSet>, ConfigError> {
        match &self.local {
            Some(_) => {
                let replicas = self.failover.options().replicas;
                limits.try_map(|l| replica_share(l, replicas)).map(Some)
            }
            None => Ok(None),
        }
    }

    /// Decide every key by `limits` from now on (in this replica), keeping
    /// every state in Redis and in the local fallback; refused, changing
    /// nothing, when the states would not carry over ([`LimitSet`]'s rule)
    /// or the limits cannot be shared among the replicas.
    pub fn reconfigure(&self, limits: LimitSet) -> Result<(), ConfigError> {
        let _one_change = self.changing.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.limits();
        limits.carries_over_from(&current)?;
        for o in self
            .overrides
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            limits.carries_over_from(&o.set)?;
        }
        if let (Some(local), Some(share)) = (&self.local, self.share(&limits)?) {
            local.reconfigure(share)?;
        }
        *self.limits.write().unwrap_or_else(|p| p.into_inner()) = Limits::new(limits);
        Ok(())
    }

    /// Decide `key` by `limits` in this replica (e.g. a premium key's larger
    /// quota) until the override is removed, keeping its state; refused
    /// like [`reconfigure`](Self::reconfigure).
    pub fn set_override(&self, key: &[u8], limits: LimitSet) -> Result<(), ConfigError> {
        let _one_change = self.changing.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.limits();
        limits.carries_over_from(&current)?;
        current.carries_over_from(&limits)?;
        if let (Some(local), Some(share)) = (&self.local, self.share(&limits)?) {
            local.set_override(key, share)?;
        }
        self.overrides
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(KeyBytes::from(key), Limits::new(limits));
        Ok(())
    }

    /// Decide `key` by the limiter's limits again; false when it had no override.
    pub fn remove_override(&self, key: &[u8]) -> bool {
        let _one_change = self.changing.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(local) = &self.local {
            local.remove_override(key);
        }
        self.overrides
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&KeyBytes::from(key))
            .is_some()
    }

    /// Keys held by the in-memory fallback (`local` only; else 0).
    pub fn local_keys_held(&self) -> usize {
        self.local.as_ref().map_or(0, MemoryKeyed::held)
    }
}
