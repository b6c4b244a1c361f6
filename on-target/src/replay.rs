//! Reads the fixture records in order, runs each step through core on this
//! chip and compares the result and the state after it with the recorded ones.
use heapless::Vec;
use ratebound_core::backoff::{
    Backoff, BackoffState, RetryBudget, RetryBudgetState, Step as BackoffStep,
};
use ratebound_core::budget::{Budget, BudgetState};
use ratebound_core::model_quota::{ModelQuota, ModelState};
use ratebound_core::policy::{check_all, peek_all, Member as PolicyMember};
use ratebound_core::{
    AtomicGcra, CostError, Decision, Duration, Gcra, GcraState, Instant, SlidingCounter,
    SlidingCounterState, SlidingLog, SlidingLogState,
};
use semihosting::println;

use crate::calls::{atomic_op, budget_op, gcra_op, window_op};
use crate::keyed_store::KeyedStore;
use crate::records::*;
use crate::tally::{At, Tally};

/// Replays the whole image.
pub(crate) fn all(image: &'static [u8]) -> Tally {
    let mut tally = Tally::new();
    let mut rest = image;
    let mut trace: Option<(&'static str, &'static str, Machine, u32)> = None;
    while !rest.is_empty() {
        let (record, next) = match next_record(rest) {
            Ok(r) => r,
            Err(e) => {
                println!("at byte {}: {e:?}", image.len() - rest.len());
                tally.fault("the fixture image is unreadable");
                return tally;
            }
        };
        rest = next;
        match record {
            Record::Trace {
                machine,
                name,
                setup,
            } => {
                trace = Some((machine, name, Machine::new(setup), 0));
            }
            Record::Counts {
                steps,
                atomic_steps,
            } => {
                tally.expect_counts(steps, atomic_steps);
            }
            Record::Step(step) => {
                let Some((machine, name, m, i)) = trace.as_mut() else {
                    tally.fault("a step before any trace");
                    continue;
                };
                let at = At {
                    machine,
                    trace: name,
                    step: *i,
                };
                *i += 1;
                m.step(&step, &at, &mut tally);
            }
        }
    }
    tally
}

/// One record off the front of `rest`. Not inlined: the records' decoders
/// have large frames, which then do not add to `all`'s.
#[inline(never)]
fn next_record(rest: &'static [u8]) -> postcard::Result<(Record<'static>, &'static [u8])> {
    postcard::take_from_bytes(rest)
}

/// A policy member: its limiter and state.
enum Held {
    Gcra(Gcra, GcraState),
    SlidingLog(SlidingLog<LOG_SLOTS>, SlidingLogState<LOG_SLOTS>),
    SlidingCounter(SlidingCounter, SlidingCounterState),
}

impl PolicyMember for Held {
    fn peek(&self, now: Instant, cost: u64) -> Result<Decision, CostError> {
        match self {
            Held::Gcra(l, s) => l.peek(s, now, cost),
            Held::SlidingLog(l, s) => l.peek(s, now, cost),
            Held::SlidingCounter(l, s) => l.peek(s, now, cost),
        }
    }
    fn check(&mut self, now: Instant, cost: u64) -> Result<Decision, CostError> {
        match self {
            Held::Gcra(l, s) => l.check(s, now, cost),
            Held::SlidingLog(l, s) => l.check(s, now, cost),
            Held::SlidingCounter(l, s) => l.check(s, now, cost),
        }
    }
}

impl Held {
    fn state(&self) -> LimiterState {
        match self {
            Held::Gcra(_, s) => LimiterState::Gcra(*s),
            Held::SlidingLog(_, s) => LimiterState::SlidingLog(s.clone()),
            Held::SlidingCounter(_, s) => LimiterState::SlidingCounter(*s),
        }
    }
}

/// A trace's machine and its state. One lives at a time, with no allocator
/// to box the large variants into.
#[allow(clippy::large_enum_variant)]
enum Machine {
    Gcra(Gcra, GcraState, Option<AtomicGcra>),
    SlidingLog(SlidingLog<LOG_SLOTS>, SlidingLogState<LOG_SLOTS>),
    SlidingCounter(SlidingCounter, SlidingCounterState),
    Budget(Budget, BudgetState<BUDGET_HOLDS>),
    Policy(Vec<(Held, Option<u64>), MAX_MEMBERS>),
    Keyed(KeyedStore),
    ModelQuota(Vec<ModelQuota, MAX_SCOPES>, ModelState),
    Backoff(Backoff, BackoffState, Option<RetryBudget>, RetryBudgetState),
}

impl Machine {
    #[inline(never)]
    fn new(setup: Setup) -> Machine {
        match setup {
            // AtomicGcra refuses rates whose state does not fit 64 bits; those
            // traces replay through the plain GCRA only.
            Setup::Gcra(g) => Machine::Gcra(g, GcraState::default(), AtomicGcra::new(g).ok()),
            Setup::SlidingLog(l) => Machine::SlidingLog(l, SlidingLogState::default()),
            Setup::SlidingCounter(c) => Machine::SlidingCounter(c, SlidingCounterState::default()),
            Setup::Budget(b) => Machine::Budget(b, BudgetState::default()),
            Setup::Policy(members) => Machine::Policy(
                members
                    .into_iter()
                    .map(|(m, cost)| {
                        let held = match m {
                            Member::Gcra(l) => Held::Gcra(l, GcraState::default()),
                            Member::SlidingLog(l) => {
                                Held::SlidingLog(l, SlidingLogState::default())
                            }
                            Member::SlidingCounter(l) => {
                                Held::SlidingCounter(l, SlidingCounterState::default())
                            }
                        };
                        (held, cost)
                    })
                    .collect(),
            ),
            Setup::Keyed {
                limiter,
                max_keys,
                evict_least_recent,
            } => Machine::Keyed(KeyedStore::new(limiter, max_keys, evict_least_recent)),
            Setup::ModelQuota(quotas) => Machine::ModelQuota(quotas, ModelState::default()),
            Setup::Backoff(policy, budget) => Machine::Backoff(
                policy,
                BackoffState::default(),
                budget,
                RetryBudgetState::default(),
            ),
        }
    }

    #[inline(never)]
    fn step(&mut self, step: &Step<'static>, at: &At<'_>, tally: &mut Tally) {
        let ok = match (self, step) {
            (
                Machine::Gcra(g, st, atomic),
                &Step::Limiter {
                    now,
                    op,
                    ref expect,
                    ref state,
                },
            ) => {
                let now = Instant::from_micros(now);
                let got = gcra_op(g, st, now, op);
                let ok = tally.same(at, "result", expect, &got)
                    & tally.same(at, "state", state, &LimiterState::Gcra(*st));
                if let Some(a) = atomic {
                    let got = atomic_op(a, now, op);
                    let ok = tally.same(at, "atomic result", expect, &got)
                        & tally.same(at, "atomic state", state, &LimiterState::Gcra(a.state()));
                    tally.step("atomic_gcra", ok);
                }
                ok
            }
            (
                Machine::SlidingLog(l, st),
                &Step::Limiter {
                    now,
                    op,
                    ref expect,
                    ref state,
                },
            ) => {
                let got = window_op(l, st, Instant::from_micros(now), op);
                tally.same(at, "result", expect, &got)
                    & tally.same(at, "state", state, &LimiterState::SlidingLog(st.clone()))
            }
            (
                Machine::SlidingCounter(c, st),
                &Step::Limiter {
                    now,
                    op,
                    ref expect,
                    ref state,
                },
            ) => {
                let got = window_op(c, st, Instant::from_micros(now), op);
                tally.same(at, "result", expect, &got)
                    & tally.same(at, "state", state, &LimiterState::SlidingCounter(*st))
            }
            (
                Machine::Budget(b, st),
                &Step::Budget {
                    now,
                    op,
                    ref expect,
                    ref state,
                },
            ) => {
                let got = budget_op(b, st, Instant::from_micros(now), op);
                tally.same(at, "result", expect, &got) & tally.same(at, "state", state, st)
            }
            (
                Machine::Policy(members),
                &Step::Policy {
                    now,
                    check,
                    cost,
                    ref expect,
                    ref state,
                },
            ) => {
                let now = Instant::from_micros(now);
                let got = if check {
                    let mut set: Vec<(&mut dyn PolicyMember, u64), MAX_MEMBERS> = members
                        .iter_mut()
                        .map(|(m, c)| (m as &mut dyn PolicyMember, c.unwrap_or(cost)))
                        .collect();
                    check_all(now, &mut set)
                } else {
                    let set: Vec<(&dyn PolicyMember, u64), MAX_MEMBERS> = members
                        .iter()
                        .map(|(m, c)| (m as &dyn PolicyMember, c.unwrap_or(cost)))
                        .collect();
                    peek_all(now, &set)
                };
                let got = got
                    .map(|p| (p.decision, p.binding.map(|b| b as u64)))
                    .map_err(|e| (e.member as u64, e.error.code()));
                let states: Vec<LimiterState, MAX_MEMBERS> =
                    members.iter().map(|(m, _)| m.state()).collect();
                tally.same(at, "result", expect, &got) & tally.same(at, "state", state, &states)
            }
            (
                Machine::Keyed(store),
                &Step::Keyed {
                    now,
                    op,
                    ref expect,
                    ref keys,
                },
            ) => {
                let now = Instant::from_micros(now);
                let got = match op {
                    KeyedOp::Check(key, cost) => KeyedResult::Decided(store.check(key, now, cost)),
                    KeyedOp::Peek(key, cost) => {
                        KeyedResult::Decided(store.peek(key, now, cost).map_err(|e| e.code()))
                    }
                    KeyedOp::EvictIdle => KeyedResult::Evicted(store.evict_idle(now)),
                };
                tally.same(at, "result", expect, &got) & tally.same(at, "keys", keys, &store.keys())
            }
            (
                Machine::ModelQuota(quotas, st),
                &Step::ModelQuota {
                    now,
                    scope,
                    op,
                    ref expect,
                    ref state,
                },
            ) => {
                let now = Instant::from_micros(now);
                match quotas.get(scope as usize) {
                    None => {
                        tally.fault("a model-quota step names a scope the trace does not have");
                        false
                    }
                    Some(q) => {
                        let got = match op {
                            ModelOp::Admit => ModelResult::Decided(q.admit(st, now)),
                            ModelOp::Peek => ModelResult::Decided(q.peek(st, now)),
                            ModelOp::Settle(id, outcome) => {
                                ModelResult::Settled(q.settle(st, now, id, outcome))
                            }
                        };
                        tally.same(at, "result", expect, &got) & tally.same(at, "state", state, st)
                    }
                }
            }
            (
                Machine::Backoff(policy, seq, budget, spent),
                &Step::Backoff {
                    now,
                    op,
                    ref expect,
                    ref state,
                },
            ) => {
                let now = Instant::from_micros(now);
                let hint = |h: Option<u64>| h.map(Duration::from_micros);
                let step = match (op, budget.as_ref()) {
                    (BackoffOp::Start(seed), _) => {
                        *seq = policy.start(now, seed);
                        None
                    }
                    (BackoffOp::Next(h), _) => Some(policy.next(seq, now, hint(h))),
                    (BackoffOp::NextWithBudget(h), Some(b)) => {
                        Some(policy.next_with_budget(seq, b, spent, now, hint(h)))
                    }
                    (BackoffOp::Success, Some(b)) => {
                        b.on_success(spent);
                        None
                    }
                    // A budget op in a trace without a budget: a malformed
                    // fixture, reported as the mismatch it causes.
                    (BackoffOp::NextWithBudget(_) | BackoffOp::Success, None) => {
                        Some(BackoffStep::Retry {
                            at: Instant::MAX,
                            delay: Duration::ZERO,
                            attempt: 0,
                        })
                    }
                };
                let got = match step {
                    None => BackoffResult::Done,
                    Some(BackoffStep::Retry { at, delay, attempt }) => {
                        BackoffResult::Retry(at.as_micros(), delay.as_micros(), attempt)
                    }
                    Some(BackoffStep::GiveUp(why)) => BackoffResult::GiveUp(why),
                };
                tally.same(at, "result", expect, &got)
                    & tally.same(at, "state", state, &(*seq, *spent))
            }
            (_, step) => {
                tally.fault("a step of another machine than its trace's");
                println!(
                    "FAULT {}/{} step {}: a step of another machine: {step:?}",
                    at.machine, at.trace, at.step
                );
                false
            }
        };
        tally.step(at.machine, ok);
    }
}
