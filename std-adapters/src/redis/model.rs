//! Core's model quotas in Redis: the script (`lua/model.lua`) is a port of
//! `ratebound_core::model_quota`; [`RedisModelQuotas`] runs it on one state.

use ratebound_core::model_quota::{
    CountState, ModelDecision, ModelHold, ModelQuota, ModelState, Outcome, Settled,
};
use ratebound_core::wire;
use ratebound_core::{Decision, Instant, LogEntry};
use redis::Value;

use super::scripts::Entry;
use super::store::Late;
use super::{RedisStore, StoreError};

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
    ) -> Result<Vec<Value>, StoreError> {
        let key = self.store.key(tag, "m")?;
        let mut args = vec![
            self.store.options().ttl_margin.as_millis().to_string(),
            op.to_owned(),
            hold.to_string(),
            match outcome {
                Outcome::Success => "success",
                Outcome::Failure => "failure",
            }
            .to_owned(),
            if self.store.options().with_state {
                "1"
            } else {
                "0"
            }
            .to_owned(),
        ];
        let (counts, window, rest) = wire::model_script_config(quota);
        args.extend(counts.iter().map(u64::to_string));
        args.push(window.name().to_owned());
        args.extend(rest.iter().map(u64::to_string));
        let read_only = op == "peek";
        // An admission refuses once its deadline has passed; a settle is
        // applied whenever it arrives (a success is never dropped).
        let late = if op == "admit" {
            Late::Refuse
        } else {
            Late::Apply
        };
        match self
            .store
            .invoke(Entry::Model, read_only, late, &[key], &args)
            .await?
        {
            Value::Array(items) => Ok(items),
            v => Err(StoreError::Protocol(format!(
                "expected an array, got {v:?}"
            ))),
        }
    }

    /// Admit one request under `quota` ([`ModelQuota::admit`]).
    pub async fn admit(
        &self,
        tag: &[u8],
        quota: &ModelQuota,
    ) -> Result<WithState<ModelDecision>, StoreError> {
        let r = self.call(tag, quota, "admit", 0, Outcome::Failure).await?;
        decision(&r, quota.total_max().is_some())
    }

    /// What [`admit`](RedisModelQuotas::admit) would decide, changing nothing.
    pub async fn peek(
        &self,
        tag: &[u8],
        quota: &ModelQuota,
    ) -> Result<WithState<ModelDecision>, StoreError> {
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
    ) -> Result<WithState<Settled>, StoreError> {
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
            _ => Err(StoreError::Protocol(format!(
                "unexpected settle reply {r:?}"
            ))),
        }
    }
}

fn uint(v: &Value) -> Result<u64, StoreError> {
    match v {
        Value::Int(i) if *i >= 0 => Ok(*i as u64),
        other => Err(StoreError::Protocol(format!(
            "expected an integer, got {other:?}"
        ))),
    }
}

fn row(v: &Value) -> Result<Option<Decision>, StoreError> {
    let Value::Array(items) = v else {
        return Err(StoreError::Protocol(format!("expected a row, got {v:?}")));
    };
    if items.is_empty() {
        return Ok(None);
    }
    let n = items.iter().map(uint).collect::<Result<Vec<_>, _>>()?;
    let [status, remaining, limit, reset, retry] = n.as_slice() else {
        return Err(StoreError::Protocol("short row".into()));
    };
    Ok(Some(Decision {
        allowed: *status == 1,
        remaining: *remaining,
        limit: *limit,
        reset_at: Instant::from_micros(*reset),
        retry_at: Instant::from_micros(*retry),
    }))
}

fn decision(items: &[Value], limited: bool) -> Result<WithState<ModelDecision>, StoreError> {
    let [Value::Int(now), Value::Int(hold), in_flight, blocked, total, success, rest @ ..] = items
    else {
        return Err(StoreError::Protocol(format!("unexpected reply {items:?}")));
    };
    let code = uint(blocked)?;
    let blocked = wire::blocked_from_code(code)
        .ok_or_else(|| StoreError::Protocol(format!("unknown blocked code {code}")))?;
    let total = row(total)?;
    if total.is_some() != limited {
        return Err(StoreError::Protocol(
            "total row does not match the limits".into(),
        ));
    }
    let d = ModelDecision {
        total,
        success: row(success)?.ok_or_else(|| StoreError::Protocol("no success row".into()))?,
        now: Instant::from_micros(u64::try_from(*now).unwrap_or(0)),
        hold: u64::try_from(*hold).ok(),
        in_flight: uint(in_flight)?,
        blocked,
    };
    Ok((d, state(rest.first())?))
}

/// The state the script returns with `with_state`: its flat list of
/// integers (see `m_parse` in `model.lua`).
fn state(v: Option<&Value>) -> Result<Option<ModelState>, StoreError> {
    let Some(v) = v else { return Ok(None) };
    let Value::Array(items) = v else {
        return Err(StoreError::Protocol(format!("expected a state, got {v:?}")));
    };
    let flat = items.iter().map(uint).collect::<Result<Vec<_>, _>>()?;
    parse_state(&flat)
        .map(Some)
        .ok_or_else(|| StoreError::Protocol(format!("unreadable model state {flat:?}")))
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
