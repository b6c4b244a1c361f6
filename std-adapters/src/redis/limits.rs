//! Limiters and policy sets in Redis: core's configs as script arguments,
//! one round trip per decision, replies parsed back into core's decisions.

use ratebound_core::policy::{fold, PolicyDecision};
use ratebound_core::wire;
use ratebound_core::{Decision, Gcra, Instant, SlidingCounter, SlidingLog};
use redis::Value;

use super::scripts::Entry;
use super::store::Late;
use super::{RedisStore, StoreError};

/// A limiter as the scripts run it: core's config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedisSpec {
    /// GCRA.
    Gcra(Gcra),
    /// Sliding log of `slots` entries.
    SlidingLog {
        /// Units per window.
        limit: u64,
        /// Window length (µs).
        window_us: u64,
        /// Entries kept (core's `N`).
        slots: u64,
    },
    /// Sliding counter.
    SlidingCounter(SlidingCounter),
}

impl RedisSpec {
    /// A sliding log like `SlidingLog<N>`.
    pub fn sliding_log<const N: usize>(log: &SlidingLog<N>) -> Self {
        RedisSpec::SlidingLog {
            limit: log.limit(),
            window_us: log.window().as_micros(),
            slots: N as u64,
        }
    }

    fn capacity(&self) -> u64 {
        match self {
            RedisSpec::Gcra(g) => g.capacity(),
            RedisSpec::SlidingLog { limit, .. } => *limit,
            RedisSpec::SlidingCounter(c) => c.limit(),
        }
    }

    fn push_args(&self, cost: u64, out: &mut Vec<String>) {
        match self {
            RedisSpec::Gcra(g) => {
                let [p, a, tau_us, tau_rem] = wire::gcra_args(g);
                out.extend(
                    ["g".to_owned()].into_iter().chain(
                        [cost, g.capacity(), p, a, tau_us, tau_rem]
                            .iter()
                            .map(u64::to_string),
                    ),
                );
            }
            RedisSpec::SlidingLog {
                limit,
                window_us,
                slots,
            } => out.extend(
                ["l".to_owned()].into_iter().chain(
                    [cost, *limit, *window_us, *slots]
                        .iter()
                        .map(u64::to_string),
                ),
            ),
            RedisSpec::SlidingCounter(c) => out.extend(
                ["c".to_owned()].into_iter().chain(
                    [cost, c.limit(), c.window().as_micros()]
                        .iter()
                        .map(u64::to_string),
                ),
            ),
        }
    }
}

/// What one call asks of one limiter: its name, config and cost. A call of
/// several is a policy set, all or nothing.
#[derive(Clone, Copy, Debug)]
pub struct Charge<'a> {
    /// Its name within the tag (the key is `prefix{tag}:name`).
    pub name: &'a str,
    /// The limiter.
    pub spec: &'a RedisSpec,
    /// The cost.
    pub cost: u64,
}

/// One member's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChargeOutcome {
    /// Its decision.
    pub decision: Decision,
    /// Tokens taken (only for [`RedisStore::take_at_most`]).
    pub taken: u64,
    /// Its state after the call, as core's fields (gcra `[tat, rem]`; log
    /// `[last, at, cost, …]`; counter `[start, prev, curr]`); empty unless
    /// [`RedisOptions::with_state`](super::RedisOptions::with_state) is set.
    pub state: Vec<u64>,
}

/// A decision made in Redis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisDecision {
    /// The set's decision (a single limiter: its own), folded as core does.
    pub decision: PolicyDecision,
    /// Each member's.
    pub members: Vec<ChargeOutcome>,
    /// The `now` it was made at (Redis `TIME` or the caller's).
    pub now: Instant,
}

impl RedisStore {
    async fn run(
        &self,
        mode: &str,
        tag: &[u8],
        members: &[Charge<'_>],
    ) -> Result<RedisDecision, StoreError> {
        if members.is_empty() {
            return Err(StoreError::Invalid("no members"));
        }
        for (i, m) in members.iter().enumerate() {
            if let RedisSpec::SlidingLog {
                limit,
                window_us,
                slots,
            } = m.spec
            {
                let ok = |v: u64| (1..=ratebound_core::MAX_SAFE_INTEGER).contains(&v);
                if !(ok(*limit) && ok(*window_us) && ok(*slots)) {
                    return Err(StoreError::Invalid(
                        "a sliding log needs limit, window and slots of 1 to 2^53 - 1",
                    ));
                }
            }
            if members[..i].iter().any(|o| o.name == m.name) {
                return Err(StoreError::Invalid("the same member name twice"));
            }
            if m.cost > m.spec.capacity() {
                return Err(StoreError::Cost {
                    member: i,
                    name: m.name.to_owned(),
                    cost: m.cost,
                    capacity: m.spec.capacity(),
                });
            }
        }
        self.run_unchecked(mode, tag, members).await
    }

    /// Check every member at once, all or nothing (one round trip).
    pub async fn check(
        &self,
        tag: &[u8],
        members: &[Charge<'_>],
    ) -> Result<RedisDecision, StoreError> {
        self.run("check", tag, members).await
    }

    /// What [`check`](RedisStore::check) would decide, changing nothing.
    pub async fn peek(
        &self,
        tag: &[u8],
        members: &[Charge<'_>],
    ) -> Result<RedisDecision, StoreError> {
        self.run("peek", tag, members).await
    }

    /// GCRA only: take as many as available, up to `n` (core's `check_at_most`).
    pub async fn take_at_most(
        &self,
        tag: &[u8],
        name: &str,
        gcra: &Gcra,
        n: u64,
    ) -> Result<ChargeOutcome, StoreError> {
        self.gcra_op("at_most", tag, name, gcra, n).await
    }

    /// GCRA only: give back up to `n` tokens (core's `refund`).
    pub async fn refund(
        &self,
        tag: &[u8],
        name: &str,
        gcra: &Gcra,
        n: u64,
    ) -> Result<ChargeOutcome, StoreError> {
        self.gcra_op("refund", tag, name, gcra, n).await
    }

    /// `at_most` / `refund`: never errors for size (both cap `n` as core does).
    async fn gcra_op(
        &self,
        mode: &str,
        tag: &[u8],
        name: &str,
        gcra: &Gcra,
        n: u64,
    ) -> Result<ChargeOutcome, StoreError> {
        let spec = RedisSpec::Gcra(*gcra);
        let m = [Charge {
            name,
            spec: &spec,
            cost: n.min(MAX_ARG),
        }];
        let mut d = self.run_unchecked(mode, tag, &m).await?;
        Ok(d.members.remove(0))
    }

    async fn run_unchecked(
        &self,
        mode: &str,
        tag: &[u8],
        members: &[Charge<'_>],
    ) -> Result<RedisDecision, StoreError> {
        // Admissions refuse once their deadline has passed; a refund or a
        // peek is applied (or read) whenever it arrives.
        let late = if matches!(mode, "check" | "at_most") {
            Late::Refuse
        } else {
            Late::Apply
        };
        let keys = members
            .iter()
            .map(|m| self.key(tag, m.name))
            .collect::<Result<Vec<_>, _>>()?;
        let state = if self.options().with_state { "1" } else { "0" };
        // The common call, one GCRA checked whose interval is whole
        // microseconds, has a lean entry point of its own.
        if let (
            "check",
            [Charge {
                spec: RedisSpec::Gcra(g),
                cost,
                ..
            }],
        ) = (mode, members)
        {
            if let [p, 1, tau_us, _] = wire::gcra_args(g) {
                let args = [
                    self.options().ttl_margin.as_millis().to_string(),
                    state.to_owned(),
                    cost.to_string(),
                    g.capacity().to_string(),
                    p.to_string(),
                    tau_us.to_string(),
                ];
                let reply = self
                    .invoke(Entry::Gcra, false, Late::Refuse, &keys, &args)
                    .await?;
                return parse_reply(reply, members);
            }
        }
        let mut args = vec![
            self.options().ttl_margin.as_millis().to_string(),
            mode.to_owned(),
            state.to_owned(),
            members.len().to_string(),
        ];
        for m in members {
            m.spec.push_args(m.cost, &mut args);
        }
        let reply = self
            .invoke(Entry::Limit, mode == "peek", late, &keys, &args)
            .await?;
        parse_reply(reply, members)
    }
}

/// Costs sent to the scripts are kept below 2^53 (Lua's exact range);
/// larger ones can never fit any limiter anyway.
pub(crate) const MAX_ARG: u64 = ratebound_core::MAX_SAFE_INTEGER;

pub(super) fn int(v: &Value) -> Result<u64, StoreError> {
    match v {
        Value::Int(i) if *i >= 0 => Ok(*i as u64),
        Value::Int(i) if *i == -1 => Ok(u64::MAX),
        other => Err(StoreError::Protocol(format!(
            "expected an integer, got {other:?}"
        ))),
    }
}

fn parse_reply(reply: Value, members: &[Charge<'_>]) -> Result<RedisDecision, StoreError> {
    let Value::Array(items) = reply else {
        return Err(StoreError::Protocol(format!(
            "expected an array, got {reply:?}"
        )));
    };
    let mut it = items.iter();
    let now = Instant::from_micros(int(it
        .next()
        .ok_or_else(|| StoreError::Protocol("empty reply".into()))?)?);
    // One GCRA checked answers flat: status, remaining, reset, retry [, state].
    let flat = matches!(items.get(1), Some(Value::Int(_)));
    let mut out = Vec::with_capacity(members.len());
    for (i, m) in members.iter().enumerate() {
        let nums = if flat && i == 0 {
            let mut v = it.by_ref().map(int).collect::<Result<Vec<_>, _>>()?;
            if v.len() < 4 {
                return Err(StoreError::Protocol("short flat reply".into()));
            }
            v.insert(2, m.spec.capacity()); // limit
            v.insert(5, 0); // taken
            v
        } else {
            let Some(Value::Array(row)) = it.next() else {
                return Err(StoreError::Protocol(format!("no row for member {i}")));
            };
            row.iter().map(int).collect::<Result<Vec<_>, _>>()?
        };
        let [status, remaining, limit, reset, retry, taken, state @ ..] = nums.as_slice() else {
            return Err(StoreError::Protocol(format!("short row for member {i}")));
        };
        if *status == u64::MAX {
            return Err(StoreError::Cost {
                member: i,
                name: m.name.to_owned(),
                cost: m.cost,
                capacity: m.spec.capacity(),
            });
        }
        out.push(ChargeOutcome {
            decision: Decision {
                allowed: *status == 1,
                remaining: *remaining,
                limit: *limit,
                reset_at: Instant::from_micros(*reset),
                retry_at: Instant::from_micros(*retry),
            },
            taken: *taken,
            state: state.to_vec(),
        });
    }
    let decision = fold(now, out.iter().map(|m| m.decision).enumerate());
    Ok(RedisDecision {
        decision,
        members: out,
        now,
    })
}
