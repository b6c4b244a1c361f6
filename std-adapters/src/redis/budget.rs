//! Budget windows in Redis: core's budget module ported to Lua, so many
//! servers share one budget with reserve → settle that cannot overshoot.

use ratebound_core::budget::{
    Admission, Alert, AlertKind, Alerts, Budget, BudgetError, BudgetState, BudgetStatus, Denial,
    DenyReason, Hold, LimitStatus, Reservation, Reserved, Settled, Spent, Usage, WindowUsage,
    MAX_AMOUNT, MAX_LIMITS,
};
use ratebound_core::{wire, Instant};
use redis::Value;

use super::scripts::Entry;
use super::store::Late;
use super::{RedisStore, StoreError};

/// A budget's state as Redis holds it, in core's fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawBudgetState(Vec<u64>);

impl RawBudgetState {
    /// As core's [`BudgetState`] with `R` hold slots (`None` if it has more holds).
    pub fn to_state<const R: usize>(&self) -> Option<BudgetState<R>> {
        let v = &self.0;
        let (meta, rest) = v.split_at_checked(3)?;
        let (windows, holds) = rest.split_at_checked(MAX_LIMITS * 6)?;
        let mut st = BudgetState::<R> {
            last: meta[0],
            next_id: meta[1],
            throttle_until: meta[2],
            ..BudgetState::default()
        };
        for (w, c) in st.windows.iter_mut().zip(windows.chunks_exact(6)) {
            *w = WindowUsage {
                start: c[0],
                used: c[1],
                reserved: c[2],
                fired: c[3] as u8,
                kind: c[4],
                limit: c[5],
            };
        }
        for c in holds.chunks_exact(7) {
            st.holds
                .push(Hold {
                    id: c[0],
                    at: c[1],
                    expires: c[2],
                    usage: Usage {
                        requests: c[3],
                        tokens: c[4],
                        cost: c[5],
                    },
                    lapsed: c[6] == 1,
                })
                .ok()?;
        }
        Some(st)
    }
}

/// The answer of a budget call: core's result, and the state after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BudgetReply<T> {
    /// What core would return.
    pub value: Result<T, BudgetError>,
    /// The state after the call; empty unless
    /// [`RedisOptions::with_state`](super::RedisOptions::with_state) is set.
    pub state: RawBudgetState,
}

/// A budget kept in Redis under `prefix{tag}:name`.
#[derive(Clone, Debug)]
pub struct RedisBudget {
    store: RedisStore,
    budget: Budget,
    slots: usize,
    config_args: Vec<String>,
}

fn clamp(u: Usage) -> Usage {
    Usage {
        requests: u.requests.min(MAX_AMOUNT),
        tokens: u.tokens.min(MAX_AMOUNT),
        cost: u.cost.min(MAX_AMOUNT),
    }
}

impl RedisBudget {
    /// The store it is kept in.
    pub(crate) fn store(&self) -> &RedisStore {
        &self.store
    }

    /// `budget` in `store`, with up to `hold_slots` reservations at once.
    pub fn new(store: RedisStore, budget: Budget, hold_slots: usize) -> Self {
        let mut a = Vec::new();
        wire::budget_script_config(&budget, hold_slots as u64, |x| a.push(x.to_string()));
        RedisBudget {
            store,
            budget,
            slots: hold_slots,
            config_args: a,
        }
    }

    /// The budget's config.
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// The same store, key layout and hold slots under `budget` (from
    /// [`Budget::reconfigure`] of this one's: the states in Redis are kept
    /// and re-read by the script).
    pub fn with_budget(&self, budget: Budget) -> RedisBudget {
        RedisBudget::new(self.store.clone(), budget, self.slots)
    }

    async fn call(
        &self,
        tag: &[u8],
        name: &str,
        op: &str,
        id: u64,
        u: Usage,
    ) -> Result<(u64, Vec<Value>, Vec<Value>, RawBudgetState), StoreError> {
        let key = self.store.key(tag, name)?;
        let u = clamp(u);
        let mut args = vec![
            self.store.options().ttl_margin.as_millis().to_string(),
            op.to_owned(),
            id.min(ratebound_core::MAX_SAFE_INTEGER).to_string(),
            u.requests.to_string(),
            u.tokens.to_string(),
            u.cost.to_string(),
            if self.store.options().with_state {
                "1"
            } else {
                "0"
            }
            .to_owned(),
        ];
        args.extend(self.config_args.iter().cloned());
        let read_only = op == "peek" || op == "status";
        // Admissions refuse once their deadline has passed; a settle,
        // release or record is applied whenever it arrives.
        let late = if matches!(op, "reserve" | "try_spend") {
            Late::Refuse
        } else {
            Late::Apply
        };
        let reply = self
            .store
            .invoke(Entry::Budget, read_only, late, &[key], &args)
            .await?;
        let bad = |what: &str| StoreError::Protocol(format!("budget reply: {what}"));
        let Value::Array(items) = reply else {
            return Err(bad("not an array"));
        };
        let [Value::Int(code), Value::Array(result), Value::Array(alerts), Value::Array(state)] =
            items.as_slice()
        else {
            return Err(bad("unexpected shape"));
        };
        let state = state.iter().map(int).collect::<Result<Vec<_>, _>>()?;
        Ok((
            *code as u64,
            result.clone(),
            alerts.clone(),
            RawBudgetState(state),
        ))
    }

    fn alerts(&self, raw: &[Value]) -> Result<Alerts, StoreError> {
        let mut out = Alerts::new();
        for a in raw {
            let Value::Array(f) = a else {
                return Err(StoreError::Protocol("alert".into()));
            };
            let f = f.iter().map(int).collect::<Result<Vec<_>, _>>()?;
            let [kind, i, bp, util, at, start] = f.as_slice() else {
                return Err(StoreError::Protocol("alert fields".into()));
            };
            let l = self
                .budget
                .config()
                .limits
                .get(*i as usize)
                .ok_or_else(|| StoreError::Protocol("alert limit".into()))?;
            let _ = out.push(Alert {
                kind: if *kind == 1 {
                    AlertKind::LimitHit
                } else {
                    AlertKind::Threshold
                },
                limit: *i as u8,
                dimension: l.dimension,
                horizon: l.horizon,
                threshold_bp: *bp as u16,
                utilization_bp: *util,
                at: Instant::from_micros(*at),
                window_start: Instant::from_micros(*start),
            });
        }
        Ok(out)
    }

    /// Hold `estimate` until settled, released or lapsed (core's `reserve`).
    pub async fn reserve(
        &self,
        tag: &[u8],
        name: &str,
        estimate: Usage,
    ) -> Result<BudgetReply<Reserved>, StoreError> {
        if let Err(e) = self.validate(estimate) {
            return self.unchanged(tag, name, e).await;
        }
        if self.slots == 0 {
            return self
                .unchanged(tag, name, BudgetError::NoReservationSlots)
                .await;
        }
        let (_, r, a, state) = self.call(tag, name, "reserve", 0, estimate).await?;
        let alerts = self.alerts(&a)?;
        let n = r.iter().map(int).collect::<Result<Vec<_>, _>>()?;
        let admission = match n.as_slice() {
            [1, id, expires] => Admission::Granted(Reservation {
                id: *id,
                usage: clamp(estimate),
                expires: Instant::from_micros(*expires),
            }),
            [0, reason, retry, limit] => Admission::Denied(denial(*reason, *retry, *limit)),
            _ => return Err(StoreError::Protocol("reserve result".into())),
        };
        Ok(BudgetReply {
            value: Ok(Reserved { admission, alerts }),
            state,
        })
    }

    /// Charge the actual usage of reservation `id` (core's `settle`).
    pub async fn settle(
        &self,
        tag: &[u8],
        name: &str,
        id: u64,
        actual: Usage,
    ) -> Result<BudgetReply<Settled>, StoreError> {
        let (code, r, a, state) = self.call(tag, name, "settle", id, actual).await?;
        if code == wire::BUDGET_UNKNOWN_RESERVATION {
            return Ok(BudgetReply {
                value: Err(BudgetError::UnknownReservation { id }),
                state,
            });
        }
        let late = matches!(r.first(), Some(Value::Int(1)));
        Ok(BudgetReply {
            value: Ok(Settled {
                charged: clamp(actual),
                late,
                alerts: self.alerts(&a)?,
            }),
            state,
        })
    }

    /// Free reservation `id` unused (core's `release`).
    pub async fn release(
        &self,
        tag: &[u8],
        name: &str,
        id: u64,
    ) -> Result<BudgetReply<()>, StoreError> {
        let (code, _, _, state) = self
            .call(tag, name, "release", id, Usage::default())
            .await?;
        let value = if code == wire::BUDGET_UNKNOWN_RESERVATION {
            Err(BudgetError::UnknownReservation { id })
        } else {
            Ok(())
        };
        Ok(BudgetReply { value, state })
    }

    /// Record usage that already happened (core's `record`).
    pub async fn record(
        &self,
        tag: &[u8],
        name: &str,
        usage: Usage,
    ) -> Result<BudgetReply<Alerts>, StoreError> {
        let (_, _, a, state) = self.call(tag, name, "record", 0, usage).await?;
        Ok(BudgetReply {
            value: Ok(self.alerts(&a)?),
            state,
        })
    }

    /// Spend if it fits now (core's `try_spend`).
    pub async fn try_spend(
        &self,
        tag: &[u8],
        name: &str,
        usage: Usage,
    ) -> Result<BudgetReply<Spent>, StoreError> {
        if let Err(e) = self.validate(usage) {
            return self.unchanged(tag, name, e).await;
        }
        let (_, r, a, state) = self.call(tag, name, "try_spend", 0, usage).await?;
        let denied = maybe_denial(&r)?;
        Ok(BudgetReply {
            value: Ok(Spent {
                denied,
                alerts: self.alerts(&a)?,
            }),
            state,
        })
    }

    /// What `reserve` / `try_spend` would decide, changing nothing (core's `peek`).
    pub async fn peek(
        &self,
        tag: &[u8],
        name: &str,
        usage: Usage,
    ) -> Result<BudgetReply<Option<Denial>>, StoreError> {
        if let Err(e) = self.validate(usage) {
            return self.unchanged(tag, name, e).await;
        }
        let (_, r, _, state) = self.call(tag, name, "peek", 0, usage).await?;
        let value = maybe_denial(&r)?;
        Ok(BudgetReply {
            value: Ok(value),
            state,
        })
    }

    /// Usage, holds and throttling now (core's `status`).
    pub async fn status(
        &self,
        tag: &[u8],
        name: &str,
    ) -> Result<BudgetReply<BudgetStatus>, StoreError> {
        let (_, r, _, state) = self.call(tag, name, "status", 0, Usage::default()).await?;
        let n = r.iter().map(int).collect::<Result<Vec<_>, _>>()?;
        let [throttled, until, holds, per @ ..] = n.as_slice() else {
            return Err(StoreError::Protocol("status result".into()));
        };
        let mut limits = heapless::Vec::new();
        for (l, c) in self.budget.config().limits.iter().zip(per.chunks_exact(5)) {
            let _ = limits.push(LimitStatus {
                limit: *l,
                used: c[0],
                reserved: c[1],
                utilization_bp: c[2],
                window_start: Instant::from_micros(c[3]),
                window_end: Instant::from_micros(c[4]),
            });
        }
        Ok(BudgetReply {
            value: Ok(BudgetStatus {
                limits,
                throttled: *throttled == 1,
                throttle_until: (*throttled == 1).then(|| Instant::from_micros(*until)),
                holds: *holds as usize,
            }),
            state,
        })
    }

    /// Forget usage and holds, keeping ids unique (core's `reset`).
    pub async fn reset(&self, tag: &[u8], name: &str) -> Result<(), StoreError> {
        self.call(tag, name, "reset", 0, Usage::default())
            .await
            .map(|_| ())
    }

    fn validate(&self, u: Usage) -> Result<(), BudgetError> {
        // Core's own check, on an empty state: errors only for usage that can never fit.
        self.budget
            .peek(&BudgetState::<0>::default(), Instant::ZERO, u)
            .map(|_| ())
    }

    async fn unchanged<T>(
        &self,
        tag: &[u8],
        name: &str,
        e: BudgetError,
    ) -> Result<BudgetReply<T>, StoreError> {
        // Core refuses before touching the state; report the state as it is.
        let (_, _, _, state) = self.call(tag, name, "peek", 0, Usage::default()).await?;
        Ok(BudgetReply {
            value: Err(e),
            state,
        })
    }
}

/// `[0]` (fits) or `[1, reason, retry_at, limit]` (denied).
fn maybe_denial(r: &[Value]) -> Result<Option<Denial>, StoreError> {
    let n = r.iter().map(int).collect::<Result<Vec<_>, _>>()?;
    match n.as_slice() {
        [0] => Ok(None),
        [1, reason, retry, limit] => Ok(Some(denial(*reason, *retry, *limit))),
        _ => Err(StoreError::Protocol("budget denial row".into())),
    }
}

fn denial(reason: u64, retry: u64, limit: u64) -> Denial {
    Denial {
        reason: match reason {
            1 => DenyReason::Throttled,
            2 => DenyReason::TooManyReservations,
            _ => DenyReason::Limit,
        },
        retry_at: Instant::from_micros(retry),
        limit: (limit != u64::MAX).then_some(limit as u8),
    }
}

fn int(v: &Value) -> Result<u64, StoreError> {
    super::limits::int(v)
}
