//! Model-level limits in Redis, shared by every gateway replica, with a
//! failure policy for when Redis is down.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration as StdDuration;

use ratebound_core::{Decision, Gcra, Instant};
use redis::Value;

use super::{Breaker, Entry, OnUnavailable, RedisLimitError, RedisStore, Source};
use crate::clock::Clock;
use crate::model_limit::{
    Admission, AdmitError, Identity, ModelDecision, ModelLimitConfig, ModelLimitError,
    ModelLimiter, ModelQuota, Outcome,
};
use crate::model_limit::{AdmitRequests, Admitted};

/// Model-level limits ([`crate::model_limit`]) kept in Redis: the same
/// config, keys and decisions as [`ModelLimiter`], shared by every server.
pub struct RedisModelLimiter<C: Clock + Clone> {
    store: RedisStore,
    local: ModelLimiter<C>,
    on_unavailable: OnUnavailable,
    hold_ttl: StdDuration,
    breaker: Breaker,
    ids: AtomicU64,
}

impl<C: Clock + Clone> std::fmt::Debug for RedisModelLimiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisModelLimiter")
            .field("store", &self.store)
            .field("on_unavailable", &self.on_unavailable)
            .finish()
    }
}

impl<C: Clock + Clone> RedisModelLimiter<C> {
    /// Limits from `config` in `store`. `clock` serves the in-memory
    /// fallback; `hold_ttl` bounds how long a request in flight holds its
    /// success slot if its server dies before settling (default 10 min).
    pub fn new(
        store: RedisStore,
        config: ModelLimitConfig,
        on_unavailable: OnUnavailable,
        clock: C,
    ) -> Result<Self, ModelLimitError> {
        Ok(RedisModelLimiter {
            store,
            local: ModelLimiter::new(config, Default::default(), clock)?,
            on_unavailable,
            hold_ttl: StdDuration::from_secs(600),
            breaker: Breaker::default(),
            ids: AtomicU64::new(0),
        })
    }

    /// How long an unsettled request holds its slot (the lease of a server
    /// that died mid-request).
    pub fn with_hold_ttl(mut self, ttl: StdDuration) -> Self {
        self.hold_ttl = ttl.max(StdDuration::from_millis(1));
        self
    }

    /// The failure policy.
    pub fn on_unavailable(&self) -> OnUnavailable {
        self.on_unavailable
    }

    fn hold_id(&self) -> String {
        use std::hash::{BuildHasher, RandomState};
        let n = self.ids.fetch_add(1, Ordering::Relaxed);
        let r = RandomState::new().hash_one((n, std::time::SystemTime::now()));
        format!("{r:016x}{n:x}")
    }

    fn keys(&self, who: &Identity, model: &str) -> Result<Vec<Vec<u8>>, RedisLimitError> {
        let k = self.local.key_for(who, model);
        // Length-prefixed so that no (subject, model) pair can spell another.
        let tag = format!("{}:{}{}", k.subject.len(), k.subject, k.model);
        ["t", "s", "h"]
            .iter()
            .map(|n| self.store.key(tag.as_bytes(), n))
            .collect()
    }

    async fn admit_redis(
        &self,
        who: &Identity,
        model: &str,
        quota: &ModelQuota,
    ) -> Result<(ModelDecision, Option<Settle>), RedisLimitError> {
        let keys = self.keys(who, model)?;
        let id = self.hold_id();
        let mut args = vec![
            self.store.now_arg(),
            self.store.opts.ttl_margin.as_millis().to_string(),
            "admit".to_owned(),
            id.clone(),
            u64::try_from(self.hold_ttl.as_micros())
                .unwrap_or(u64::MAX)
                .min(ratebound_core::MAX_TICKS)
                .to_string(),
            String::new(),
        ];
        push_gcra(quota.total_bucket(), &mut args);
        push_gcra(Some(quota.success_bucket()), &mut args);
        let reply = self.store.invoke(Entry::Model, false, &keys, &args).await?;
        let (now, admitted, total, success) = parse(&reply)?;
        let decision = ModelDecision {
            total,
            success,
            now,
        };
        if decision.allowed() != admitted {
            return Err(RedisLimitError::Protocol(
                "admission flag disagrees with the rows".into(),
            ));
        }
        let settle = admitted.then(|| Settle {
            store: self.store.clone(),
            keys,
            id,
            quota: *quota,
        });
        Ok((decision, settle))
    }
}

fn push_gcra(g: Option<&Gcra>, out: &mut Vec<String>) {
    let v = match g {
        Some(g) => {
            let (p, a) = g.reduced_rate();
            let scaled = g.capacity() * p;
            [g.capacity(), p, a, scaled / a, scaled % a]
        }
        None => [0, 1, 1, 0, 0],
    };
    out.extend(v.iter().map(u64::to_string));
}

fn row(v: &Value) -> Result<Option<Decision>, RedisLimitError> {
    let Value::Array(items) = v else {
        return Err(RedisLimitError::Protocol(format!(
            "expected a row, got {v:?}"
        )));
    };
    if items.is_empty() {
        return Ok(None);
    }
    let n = items
        .iter()
        .map(|x| match x {
            Value::Int(i) if *i >= 0 => Ok(*i as u64),
            other => Err(RedisLimitError::Protocol(format!(
                "expected an integer, got {other:?}"
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let [status, remaining, limit, reset, retry] = n.as_slice() else {
        return Err(RedisLimitError::Protocol("short row".into()));
    };
    Ok(Some(Decision {
        allowed: *status == 1,
        remaining: *remaining,
        limit: *limit,
        reset_at: Instant::from_micros(*reset),
        retry_at: Instant::from_micros(*retry),
    }))
}

fn parse(v: &Value) -> Result<(Instant, bool, Option<Decision>, Decision), RedisLimitError> {
    let Value::Array(items) = v else {
        return Err(RedisLimitError::Protocol(format!(
            "expected an array, got {v:?}"
        )));
    };
    let [Value::Int(now), Value::Int(admitted), total, success] = items.as_slice() else {
        return Err(RedisLimitError::Protocol(format!("unexpected reply {v:?}")));
    };
    let success =
        row(success)?.ok_or_else(|| RedisLimitError::Protocol("no success row".into()))?;
    Ok((
        Instant::from_micros(*now as u64),
        *admitted == 1,
        row(total)?,
        success,
    ))
}

/// What settling a Redis admission needs.
#[derive(Debug)]
struct Settle {
    store: RedisStore,
    keys: Vec<Vec<u8>>,
    id: String,
    quota: ModelQuota,
}

impl Settle {
    async fn run(self, outcome: Outcome) -> Result<(), RedisLimitError> {
        let mut args = vec![
            self.store.now_arg(),
            self.store.opts.ttl_margin.as_millis().to_string(),
            "settle".to_owned(),
            self.id,
            "0".to_owned(),
            if outcome == Outcome::Success {
                "success"
            } else {
                "failure"
            }
            .to_owned(),
        ];
        push_gcra(self.quota.total_bucket(), &mut args);
        push_gcra(Some(self.quota.success_bucket()), &mut args);
        self.store
            .invoke(Entry::Model, false, &self.keys, &args)
            .await
            .map(|_| ())
    }
}

/// An admission decided by a [`RedisModelLimiter`] (or its fallback).
/// Dropping it unsettled settles it as a failure in the background (when a
/// tokio runtime is there; otherwise its hold lapses after the hold TTL).
#[derive(Debug)]
#[must_use = "settle the admission with the outcome; dropping it counts as a failure"]
pub struct RedisAdmission<C: Clock> {
    decision: ModelDecision,
    quota: ModelQuota,
    source: Source,
    settle: Option<Settle>,
    local: Option<Admission<C>>,
}

impl<C: Clock> RedisAdmission<C> {
    /// Where the decision came from.
    pub fn source(&self) -> Source {
        self.source
    }
}

impl<C: Clock> Drop for RedisAdmission<C> {
    fn drop(&mut self) {
        if let Some(s) = self.settle.take() {
            if let Ok(h) = tokio::runtime::Handle::try_current() {
                h.spawn(async move {
                    if let Err(e) = s.run(Outcome::Failure).await {
                        tracing::debug!(error = %e, "could not settle a dropped admission; its hold lapses");
                    }
                });
            }
        }
    }
}

impl<C: Clock + Clone> Admitted for RedisAdmission<C> {
    fn decision(&self) -> &ModelDecision {
        &self.decision
    }
    fn quota(&self) -> &ModelQuota {
        &self.quota
    }
    fn settle(mut self, outcome: Outcome) -> impl Future<Output = ()> + Send {
        let settle = self.settle.take();
        if let Some(local) = self.local.take() {
            local.settle(outcome);
        }
        async move {
            if let Some(s) = settle {
                if let Err(e) = s.run(outcome).await {
                    tracing::warn!(error = %e, "could not settle in redis; the hold lapses after its TTL");
                }
            }
        }
    }
}

impl<C: Clock + Clone> AdmitRequests for RedisModelLimiter<C> {
    type Admission = RedisAdmission<C>;

    fn enabled(&self) -> bool {
        self.local.enabled()
    }

    async fn admit(&self, who: &Identity, model: &str) -> Result<RedisAdmission<C>, AdmitError> {
        {
            self.local.validate(who, model)?;
            let (_, quota) = self.local.limits().quota_for(who, model);
            let quota = *quota;
            let err = if self.breaker.skipping() {
                RedisLimitError::Invalid("redis marked unavailable after a recent failure")
            } else {
                match self.admit_redis(who, model, &quota).await {
                    Ok((decision, settle)) => {
                        self.breaker.mark(true, None, "model limits");
                        return Ok(RedisAdmission {
                            decision,
                            quota,
                            source: Source::Redis,
                            settle,
                            local: None,
                        });
                    }
                    Err(e) if e.is_unavailable() => {
                        self.breaker.mark(false, Some(&e), "model limits");
                        e
                    }
                    Err(e) => return Err(AdmitError::Unavailable(e.to_string())),
                }
            };
            match self.on_unavailable {
                OnUnavailable::Closed => Err(AdmitError::Unavailable(err.to_string())),
                OnUnavailable::Open => {
                    let now = Instant::from_micros(
                        std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_micros() as u64),
                    );
                    let open = |g: &Gcra| Decision {
                        allowed: true,
                        remaining: g.capacity(),
                        limit: g.capacity(),
                        reset_at: now,
                        retry_at: now,
                    };
                    Ok(RedisAdmission {
                        decision: ModelDecision {
                            total: quota.total_bucket().map(open),
                            success: open(quota.success_bucket()),
                            now,
                        },
                        quota,
                        source: Source::FailOpen,
                        settle: None,
                        local: None,
                    })
                }
                OnUnavailable::Local => {
                    let a = self.local.admit(who, model)?;
                    Ok(RedisAdmission {
                        decision: *a.decision(),
                        quota,
                        source: Source::Local,
                        settle: None,
                        local: Some(a),
                    })
                }
            }
        }
    }
}
