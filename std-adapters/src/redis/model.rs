//! Model-level limits in Redis, shared by every gateway replica, with a
//! failure policy for when Redis is down. The script (`lua/model.lua`) is a
//! port of core's model quotas; [`RedisModelQuotas`] runs it on one state.

use std::future::Future;

use ratebound_core::model_quota::{CountState, ModelHold, ModelState, Settled};
use ratebound_core::wire;
use ratebound_core::{Decision, Gcra, Instant, LogEntry};
use redis::Value;

use super::{Breaker, Entry, OnUnavailable, RedisLimitError, RedisStore, Source};
use crate::clock::Clock;
use crate::model_limit::{
    Admission, AdmitError, Identity, ModelDecision, ModelLimitConfig, ModelLimitError,
    ModelLimiter, ModelQuota, Outcome,
};
use crate::model_limit::{AdmitRequests, Admitted};

/// Core's model quotas on states kept in Redis: one state per tag (see
/// [`ratebound_core::model_quota::scope::write_key`]), decided by the script
/// exactly as [`ModelQuota`] decides in memory.
#[derive(Clone, Debug)]
pub struct RedisModelQuotas {
    store: RedisStore,
}

/// A reply and, when [`RedisOptions::with_state`](super::RedisOptions) is
/// set, the state after it.
pub type WithState<T> = (T, Option<ModelState>);

impl RedisModelQuotas {
    /// Quotas kept in `store`.
    pub fn new(store: RedisStore) -> Self {
        RedisModelQuotas { store }
    }

    async fn call(
        &self,
        tag: &[u8],
        quota: &ModelQuota,
        op: &str,
        hold: u64,
        outcome: Outcome,
    ) -> Result<Vec<Value>, RedisLimitError> {
        let key = self.store.key(tag, "m")?;
        let mut args = vec![
            self.store.now_arg(),
            self.store.opts.ttl_margin.as_millis().to_string(),
            op.to_owned(),
            hold.to_string(),
            match outcome {
                Outcome::Success => "success",
                Outcome::Failure => "failure",
            }
            .to_owned(),
            if self.store.opts.with_state { "1" } else { "0" }.to_owned(),
            quota.total_max().unwrap_or(0).to_string(),
            quota.success_max().to_string(),
            quota.period().as_micros().to_string(),
            quota.window().name().to_owned(),
            quota.hold_ttl().as_micros().to_string(),
        ];
        push_gcra(quota.total_bucket(), &mut args);
        push_gcra(quota.success_bucket(), &mut args);
        let read_only = op == "peek";
        match self
            .store
            .invoke(Entry::Model, read_only, &[key], &args)
            .await?
        {
            Value::Array(items) => Ok(items),
            v => Err(RedisLimitError::Protocol(format!(
                "expected an array, got {v:?}"
            ))),
        }
    }

    /// Admit one request under `quota` ([`ModelQuota::admit`]).
    pub async fn admit(
        &self,
        tag: &[u8],
        quota: &ModelQuota,
    ) -> Result<WithState<ModelDecision>, RedisLimitError> {
        let r = self.call(tag, quota, "admit", 0, Outcome::Failure).await?;
        decision(&r, quota.total_max().is_some())
    }

    /// What [`admit`](RedisModelQuotas::admit) would decide, changing nothing.
    pub async fn peek(
        &self,
        tag: &[u8],
        quota: &ModelQuota,
    ) -> Result<WithState<ModelDecision>, RedisLimitError> {
        let r = self.call(tag, quota, "peek", 0, Outcome::Failure).await?;
        decision(&r, quota.total_max().is_some())
    }

    /// Settle the request holding `hold` ([`ModelQuota::settle`]).
    pub async fn settle(
        &self,
        tag: &[u8],
        quota: &ModelQuota,
        hold: u64,
        outcome: Outcome,
    ) -> Result<WithState<Settled>, RedisLimitError> {
        let r = self.call(tag, quota, "settle", hold, outcome).await?;
        match r.as_slice() {
            [Value::Int(_), Value::Int(found), rest @ ..] => {
                let settled = if *found == 1 {
                    Settled::Held
                } else {
                    Settled::Lapsed
                };
                Ok((settled, state(rest.first())?))
            }
            _ => Err(RedisLimitError::Protocol(format!(
                "unexpected settle reply {r:?}"
            ))),
        }
    }
}

fn push_gcra(g: Option<&Gcra>, out: &mut Vec<String>) {
    let v = g.map_or(wire::NO_GCRA, wire::gcra_args);
    out.extend(v.iter().map(u64::to_string));
}

fn uint(v: &Value) -> Result<u64, RedisLimitError> {
    match v {
        Value::Int(i) if *i >= 0 => Ok(*i as u64),
        other => Err(RedisLimitError::Protocol(format!(
            "expected an integer, got {other:?}"
        ))),
    }
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
    let n = items.iter().map(uint).collect::<Result<Vec<_>, _>>()?;
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

fn decision(items: &[Value], limited: bool) -> Result<WithState<ModelDecision>, RedisLimitError> {
    let [Value::Int(now), Value::Int(hold), in_flight, blocked, total, success, rest @ ..] = items
    else {
        return Err(RedisLimitError::Protocol(format!(
            "unexpected reply {items:?}"
        )));
    };
    let code = uint(blocked)?;
    let blocked = wire::blocked_from_code(code)
        .ok_or_else(|| RedisLimitError::Protocol(format!("unknown blocked code {code}")))?;
    let total = row(total)?;
    if total.is_some() != limited {
        return Err(RedisLimitError::Protocol(
            "total row does not match the limits".into(),
        ));
    }
    let d = ModelDecision {
        total,
        success: row(success)?.ok_or_else(|| RedisLimitError::Protocol("no success row".into()))?,
        now: Instant::from_micros(u64::try_from(*now).unwrap_or(0)),
        hold: u64::try_from(*hold).ok(),
        in_flight: uint(in_flight)?,
        blocked,
    };
    Ok((d, state(rest.first())?))
}

/// The state the script returns with `with_state`: its flat list of
/// integers (see `m_parse` in `model.lua`).
fn state(v: Option<&Value>) -> Result<Option<ModelState>, RedisLimitError> {
    let Some(v) = v else { return Ok(None) };
    let Value::Array(items) = v else {
        return Err(RedisLimitError::Protocol(format!(
            "expected a state, got {v:?}"
        )));
    };
    let flat = items.iter().map(uint).collect::<Result<Vec<_>, _>>()?;
    parse_state(&flat)
        .map(Some)
        .ok_or_else(|| RedisLimitError::Protocol(format!("unreadable model state {flat:?}")))
}

fn parse_state(flat: &[u64]) -> Option<ModelState> {
    let mut it = flat.iter().copied();
    let mut next = || it.next();
    let mut st = ModelState {
        last: next()?,
        next_id: next()?,
        ..ModelState::default()
    };
    let count = |c: &mut CountState, next: &mut dyn FnMut() -> Option<u64>| -> Option<()> {
        for _ in 0..next()? {
            c.log
                .push(LogEntry {
                    at: next()?,
                    cost: next()?,
                })
                .ok()?;
        }
        c.bucket.tat = next()?;
        c.bucket.rem = next()?;
        Some(())
    };
    count(&mut st.total, &mut next)?;
    count(&mut st.success, &mut next)?;
    for _ in 0..next()? {
        st.holds
            .push(ModelHold {
                id: next()?,
                expires: next()?,
            })
            .ok()?;
    }
    Some(st)
}

/// Model-level limits ([`crate::model_limit`]) kept in Redis: the same
/// config, keys and decisions as [`ModelLimiter`], shared by every server.
pub struct RedisModelLimiter<C: Clock + Clone> {
    quotas: RedisModelQuotas,
    local: ModelLimiter<C>,
    on_unavailable: OnUnavailable,
    breaker: Breaker,
}

impl<C: Clock + Clone> std::fmt::Debug for RedisModelLimiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisModelLimiter")
            .field("store", &self.quotas.store)
            .field("on_unavailable", &self.on_unavailable)
            .finish()
    }
}

impl<C: Clock + Clone> RedisModelLimiter<C> {
    /// Limits from `config` in `store`. `clock` serves the in-memory
    /// fallback; the config's `hold_ttl_secs` bounds how long a request in
    /// flight holds its success slot if its server dies before settling.
    pub fn new(
        store: RedisStore,
        config: ModelLimitConfig,
        on_unavailable: OnUnavailable,
        clock: C,
    ) -> Result<Self, ModelLimitError> {
        Ok(RedisModelLimiter {
            quotas: RedisModelQuotas::new(store),
            local: ModelLimiter::new(config, Default::default(), clock)?,
            on_unavailable,
            breaker: Breaker::default(),
        })
    }

    /// The failure policy.
    pub fn on_unavailable(&self) -> OnUnavailable {
        self.on_unavailable
    }

    async fn admit_redis(
        &self,
        who: &Identity,
        model: &str,
        quota: &ModelQuota,
    ) -> Result<(ModelDecision, Option<Settle>), RedisLimitError> {
        let tag = self.local.state_tag(who, model);
        let (decision, _) = self.quotas.admit(tag.as_bytes(), quota).await?;
        let settle = decision.hold.map(|hold| Settle {
            quotas: self.quotas.clone(),
            tag,
            hold,
            quota: *quota,
        });
        Ok((decision, settle))
    }
}

/// What settling a Redis admission needs.
#[derive(Debug)]
struct Settle {
    quotas: RedisModelQuotas,
    tag: String,
    hold: u64,
    quota: ModelQuota,
}

impl Settle {
    async fn run(self, outcome: Outcome) -> Result<(), RedisLimitError> {
        self.quotas
            .settle(self.tag.as_bytes(), &self.quota, self.hold, outcome)
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
        self.local.validate(who, model)?;
        let quota = *self.local.limits().quota_for(who, model);
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
                let open = |max: u64| Decision {
                    allowed: true,
                    remaining: max,
                    limit: max,
                    reset_at: now,
                    retry_at: now,
                };
                Ok(RedisAdmission {
                    decision: ModelDecision {
                        total: quota.total_max().map(open),
                        success: open(quota.success_max()),
                        now,
                        hold: None,
                        in_flight: 0,
                        blocked: None,
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
