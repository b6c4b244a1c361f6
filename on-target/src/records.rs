//! The trace fixtures as the firmware reads them: a flat run of postcard
//! records, written on the host by `build.rs` from `fixtures/traces/*.json`
//! and read in place on the device (no allocator, strings borrowed from the
//! image). `build.rs` includes this file too, so both sides share one shape.
//!
//! Every expected value is a core type (or a small wrapper naming which
//! result a step returned), so the device compares with `==`.

// One record is decoded at a time, on the stack, with no allocator to box the
// large variants into: their size difference costs nothing here.
#![allow(clippy::large_enum_variant)]

use heapless::Vec;
use ratebound_core::backoff::{Backoff, BackoffState, GiveUp, RetryBudget, RetryBudgetState};
use ratebound_core::budget::{
    Alerts, Budget, BudgetState, BudgetStatus, Denial, Reservation, Settled, Spent, Usage,
};
use ratebound_core::model_quota::{self, ModelDecision, ModelQuota, ModelState, Outcome};
use ratebound_core::{
    Decision, Gcra, GcraState, SlidingCounter, SlidingCounterState, SlidingLog, SlidingLogState,
};
use serde::{Deserialize, Serialize};

/// Slots of the sliding logs in the fixtures (their README fixes 8).
pub const LOG_SLOTS: usize = 8;
/// Hold slots of the budget fixtures (their README fixes 4).
pub const BUDGET_HOLDS: usize = 4;
/// The most members a policy trace has, scopes a model-quota trace has, and
/// keys a keyed trace holds (`build.rs` refuses a fixture above them).
pub const MAX_MEMBERS: usize = 4;
/// See [`MAX_MEMBERS`].
pub const MAX_SCOPES: usize = 4;
/// See [`MAX_MEMBERS`].
pub const MAX_KEYS: usize = 8;

/// One record of the image.
#[derive(Debug, Serialize, Deserialize)]
pub enum Record<'a> {
    /// A trace starts: its fixture file's machine, its name and its config.
    Trace {
        /// `gcra`, `sliding_log`, …: the fixture file it came from.
        machine: &'a str,
        /// The trace's name in that file.
        name: &'a str,
        /// The machine to build, from the trace's config.
        setup: Setup,
    },
    /// One step of the current trace.
    #[serde(borrow)]
    Step(Step<'a>),
    /// The last record: how many steps the image holds, and how many of them
    /// (GCRA steps whose rate packs into one word) replay again through
    /// `AtomicGcra`. The run fails unless it replayed exactly these.
    Counts {
        /// Steps in all.
        steps: u32,
        /// GCRA steps replayed again through `AtomicGcra`.
        atomic_steps: u32,
    },
}

/// A trace's machine and config.
#[derive(Debug, Serialize, Deserialize)]
pub enum Setup {
    /// A GCRA (replayed twice: plain, and through `AtomicGcra` when its config allows).
    Gcra(Gcra),
    /// A sliding log with [`LOG_SLOTS`] slots.
    SlidingLog(SlidingLog<LOG_SLOTS>),
    /// A sliding counter.
    SlidingCounter(SlidingCounter),
    /// A budget with [`BUDGET_HOLDS`] hold slots.
    Budget(Budget),
    /// A policy set: members in order, each with its fixed cost or none (the step's).
    Policy(Vec<(Member, Option<u64>), MAX_MEMBERS>),
    /// A bounded keyed store of GCRAs.
    Keyed {
        /// Every key's limiter.
        limiter: Gcra,
        /// The store's bound.
        max_keys: u32,
        /// `on_full = "evict_lru"` (else `"deny"`).
        evict_least_recent: bool,
    },
    /// One model-quota state decided under several scopes' limits.
    ModelQuota(Vec<ModelQuota, MAX_SCOPES>),
    /// A retry sequence's policy and, if any, the retry budget it records failures in.
    Backoff(Backoff, Option<RetryBudget>),
}

/// A policy member's limiter.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub enum Member {
    /// GCRA.
    Gcra(Gcra),
    /// Sliding log.
    SlidingLog(SlidingLog<LOG_SLOTS>),
    /// Sliding counter.
    SlidingCounter(SlidingCounter),
}

/// A limiter's state, for the machines that share limiter steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum LimiterState {
    /// GCRA.
    Gcra(GcraState),
    /// Sliding log.
    SlidingLog(SlidingLogState<LOG_SLOTS>),
    /// Sliding counter.
    SlidingCounter(SlidingCounterState),
}

/// An error as the fixtures name it (`CostError::code` and friends).
pub type Code<'a> = &'a str;

/// One step: its instant, input, expected result and expected state after.
#[derive(Debug, Serialize, Deserialize)]
pub enum Step<'a> {
    /// GCRA, sliding log, sliding counter.
    Limiter {
        /// µs since the epoch.
        now: u64,
        /// The call.
        op: LimiterOp,
        /// What it returns.
        #[serde(borrow)]
        expect: LimiterResult<'a>,
        /// The state after.
        state: LimiterState,
    },
    /// A budget.
    Budget {
        /// µs since the epoch.
        now: u64,
        /// The call.
        op: BudgetOp,
        /// What it returns.
        #[serde(borrow)]
        expect: Result<BudgetResult, Code<'a>>,
        /// The state after.
        state: BudgetState<BUDGET_HOLDS>,
    },
    /// A policy set (`check_all` / `peek_all`).
    Policy {
        /// µs since the epoch.
        now: u64,
        /// `check` (true) or `peek`.
        check: bool,
        /// The cost of members without a fixed one.
        cost: u64,
        /// The decision and its binding member, or the failing member and its code.
        #[serde(borrow)]
        expect: Result<(Decision, Option<u64>), (u64, Code<'a>)>,
        /// Every member's state after, in order.
        state: Vec<LimiterState, MAX_MEMBERS>,
    },
    /// A keyed store.
    Keyed {
        /// µs since the epoch.
        now: u64,
        /// The call.
        #[serde(borrow)]
        op: KeyedOp<'a>,
        /// What it returns.
        expect: KeyedResult<'a>,
        /// The keys held after, sorted.
        keys: Vec<&'a str, MAX_KEYS>,
    },
    /// A model quota.
    ModelQuota {
        /// µs since the epoch.
        now: u64,
        /// Index of the limits the step is decided under.
        scope: u32,
        /// The call.
        op: ModelOp,
        /// What it returns.
        expect: ModelResult,
        /// The state after.
        state: ModelState,
    },
    /// A retry sequence (and budget).
    Backoff {
        /// µs since the epoch.
        now: u64,
        /// The call.
        op: BackoffOp,
        /// What it returns.
        expect: BackoffResult,
        /// The sequence's state after, and the budget's.
        state: (BackoffState, RetryBudgetState),
    },
}

/// A backoff call.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub enum BackoffOp {
    /// `start(now, seed)`: a new sequence.
    Start(u64),
    /// `next(now, hint)` (hint in µs).
    Next(Option<u64>),
    /// `next_with_budget(now, hint)`.
    NextWithBudget(Option<u64>),
    /// The budget's `on_success`.
    Success,
}

/// What a backoff call returns.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub enum BackoffResult {
    /// `start`, `success`: nothing.
    Done,
    /// Retry at `at` (µs), after `delay` (µs); the retry's number.
    Retry(u64, u64, u32),
    /// Stop.
    GiveUp(GiveUp),
}

/// A limiter call.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub enum LimiterOp {
    /// `check(cost)`.
    Check(u64),
    /// `peek(cost)`.
    Peek(u64),
    /// `check_at_most(n)` (GCRA).
    AtMost(u64),
    /// `refund(n)` (GCRA).
    Refund(u64),
}

/// What a limiter call returns.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub enum LimiterResult<'a> {
    /// `check` / `peek`.
    #[serde(borrow)]
    Decided(Result<Decision, Code<'a>>),
    /// `check_at_most`: how much was taken, and the decision.
    Taken(u64, Decision),
    /// `refund`.
    Refunded(Decision),
}

/// A budget call.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub enum BudgetOp {
    /// `reserve(usage)`.
    Reserve(Usage),
    /// `settle(id, usage)`.
    Settle(u64, Usage),
    /// `release(id)`.
    Release(u64),
    /// `record(usage)`.
    Record(Usage),
    /// `try_spend(usage)`.
    TrySpend(Usage),
    /// `status()`.
    Status,
}

/// What a budget call returns when it does not fail.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub enum BudgetResult {
    /// `reserve`: granted (the reservation) or denied, and the alerts.
    Reserved(Result<Reservation, Denial>, Alerts),
    /// `settle`.
    Settled(Settled),
    /// `release`.
    Released,
    /// `record`: the alerts.
    Recorded(Alerts),
    /// `try_spend`.
    Spent(Spent),
    /// `status`.
    Status(BudgetStatus),
}

/// A keyed-store call.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub enum KeyedOp<'a> {
    /// `check(key, cost)`.
    Check(&'a str, u64),
    /// `peek(key, cost)`.
    Peek(&'a str, u64),
    /// Evict every idle key.
    EvictIdle,
}

/// What a keyed-store call returns.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub enum KeyedResult<'a> {
    /// A decision, or an error code (`store_full`, `insufficient_capacity`).
    #[serde(borrow)]
    Decided(Result<Decision, Code<'a>>),
    /// How many keys `evict_idle` removed.
    Evicted(u64),
}

/// A model-quota call.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub enum ModelOp {
    /// `admit()`.
    Admit,
    /// `peek()`.
    Peek,
    /// `settle(hold, outcome)`.
    Settle(u64, Outcome),
}

/// What a model-quota call returns.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub enum ModelResult {
    /// `admit` / `peek`.
    Decided(ModelDecision),
    /// `settle`.
    Settled(model_quota::Settled),
}
