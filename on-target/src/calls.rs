//! One call of each machine, its result in the records' form.
use ratebound_core::budget::{Admission, Budget, BudgetState, Reservation, Usage};
use ratebound_core::{AtomicGcra, CostError, Decision, Gcra, GcraState, Instant, Limiter};

use crate::records::*;

fn decided(r: Result<Decision, CostError>) -> LimiterResult<'static> {
    LimiterResult::Decided(r.map_err(|e| e.code()))
}

pub(crate) fn gcra_op(
    g: &Gcra,
    st: &mut GcraState,
    now: Instant,
    op: LimiterOp,
) -> LimiterResult<'static> {
    match op {
        LimiterOp::Check(cost) => decided(g.check(st, now, cost)),
        LimiterOp::Peek(cost) => decided(g.peek(st, now, cost)),
        LimiterOp::AtMost(n) => {
            let t = g.check_at_most(st, now, n);
            LimiterResult::Taken(t.taken, t.decision)
        }
        LimiterOp::Refund(n) => LimiterResult::Refunded(g.refund(st, now, n)),
    }
}

pub(crate) fn atomic_op(a: &AtomicGcra, now: Instant, op: LimiterOp) -> LimiterResult<'static> {
    match op {
        LimiterOp::Check(cost) => decided(a.check(now, cost)),
        LimiterOp::Peek(cost) => decided(a.peek(now, cost)),
        LimiterOp::AtMost(n) => {
            let t = a.check_at_most(now, n);
            LimiterResult::Taken(t.taken, t.decision)
        }
        LimiterOp::Refund(n) => LimiterResult::Refunded(a.refund(now, n)),
    }
}

/// Sliding log and counter: `check` and `peek` only (`build.rs` refuses a
/// fixture that asks more of them; the match must still say something).
pub(crate) fn window_op<L: Limiter>(
    l: &L,
    st: &mut L::State,
    now: Instant,
    op: LimiterOp,
) -> LimiterResult<'static> {
    match op {
        LimiterOp::Check(cost) => decided(l.check(st, now, cost)),
        LimiterOp::Peek(cost) => decided(l.peek(st, now, cost)),
        LimiterOp::AtMost(_) | LimiterOp::Refund(_) => {
            LimiterResult::Decided(Err("not a window op"))
        }
    }
}

pub(crate) fn budget_op(
    b: &Budget,
    st: &mut BudgetState<BUDGET_HOLDS>,
    now: Instant,
    op: BudgetOp,
) -> Result<BudgetResult, Code<'static>> {
    let held = |id| Reservation {
        id,
        usage: Usage::default(),
        expires: now,
    };
    match op {
        BudgetOp::Reserve(usage) => b.reserve(st, now, usage).map(|r| {
            let admission = match r.admission {
                Admission::Granted(h) => Ok(h),
                Admission::Denied(d) => Err(d),
            };
            BudgetResult::Reserved(admission, r.alerts)
        }),
        BudgetOp::Settle(id, usage) => b
            .settle(st, now, held(id), usage)
            .map(BudgetResult::Settled),
        BudgetOp::Release(id) => b
            .release(st, now, held(id))
            .map(|()| BudgetResult::Released),
        BudgetOp::Record(usage) => Ok(BudgetResult::Recorded(b.record(st, now, usage))),
        BudgetOp::TrySpend(usage) => b.try_spend(st, now, usage).map(BudgetResult::Spent),
        BudgetOp::Status => Ok(BudgetResult::Status(b.status(st, now))),
    }
    .map_err(|e| e.code())
}
