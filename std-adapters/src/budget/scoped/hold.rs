//! A call's holds across its budgets, and the alerts their operations fire.

use std::sync::{Arc, RwLock};

use ratebound_core::budget::{Alert, BudgetConfig, Settled, Usage};

use super::{catch_up, current, Entry, Handler, Handlers, Manager, Rules, Ticket};
use crate::budget::{BudgetDenied, Scope, ScopedAlert, ScopedDenied};
use crate::clock::Clock;

pub(super) fn deliver<C: Clock>(handlers: &RwLock<Vec<Handler>>, e: &Entry<C>) {
    let alerts: Vec<Alert> = e
        .alerts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .try_iter()
        .collect();
    if alerts.is_empty() {
        return;
    }
    let handlers = handlers.read().unwrap_or_else(|p| p.into_inner()).clone();
    for alert in alerts {
        tracing::warn!(scope = e.scope.name(), id = %e.id, alert = alert.alert_type(), utilization_bp = alert.utilization_bp, "budget alert");
        let a = ScopedAlert {
            scope: e.scope,
            id: e.id.clone(),
            alert,
        };
        for h in &handlers {
            h(&a);
        }
    }
}

/// `d` as the scoped store reports it, its limit read from `by`, the
/// config that decided (the whole budget's, or this replica's share while
/// the store is away).
pub(super) fn denied<C: Clock>(e: &Entry<C>, by: &BudgetConfig, d: BudgetDenied) -> ScopedDenied {
    match d {
        BudgetDenied::Denied(denial) => ScopedDenied::Exhausted {
            scope: e.scope,
            id: e.id.clone(),
            limit: denial
                .limit
                .and_then(|i| by.limits.get(usize::from(i)).copied()),
            denial,
        },
        BudgetDenied::Invalid(error) => ScopedDenied::TooLarge {
            scope: e.scope,
            id: e.id.clone(),
            error,
        },
    }
}

/// A call's holds in every budget that applies to it. Settle it with the
/// usage the call had; dropped unsettled, it releases every hold.
#[must_use = "dropping a hold releases it; settle it with the actual usage"]
pub struct ScopedHold<C: Clock + Clone> {
    pub(super) held: Vec<(Arc<Entry<C>>, Ticket)>,
    pub(super) usage: Usage,
    pub(super) handlers: Handlers,
    /// The store's rules: each budget settles by the ones in force then.
    pub(super) rules: Arc<RwLock<Arc<Rules>>>,
}

impl<C: Clock + Clone> std::fmt::Debug for ScopedHold<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScopedHold")
            .field("usage", &self.usage)
            .field("budgets", &self.held.len())
            .finish()
    }
}

impl<C: Clock + Clone> ScopedHold<C> {
    /// What it holds in each budget.
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// Settle at once when every hold is in memory (no store to wait on):
    /// `Err(self)` when one is in Redis.
    pub fn settle_in_memory(mut self, actual: Usage) -> Result<Vec<Settled>, Self> {
        if !self
            .held
            .iter()
            .all(|(_, t)| matches!(t, Ticket::Memory(_)))
        {
            return Err(self);
        }
        let mut out = Vec::new();
        while let Some((e, t)) = self.held.pop() {
            self.catch_up(&e);
            match (&e.manager, t) {
                (Manager::Memory(m), Ticket::Memory(r)) => out.extend(m.settle(r, actual)),
                #[cfg(feature = "redis")]
                _ => {}
            }
            deliver(&self.handlers, &e);
        }
        Ok(out)
    }

    /// A config changed since the hold was taken applies to its settle.
    fn catch_up(&self, e: &Entry<C>) {
        let rules = current(&self.rules);
        if let Some(budget) = rules.budget(e.scope, &e.id) {
            catch_up(e, budget, &rules);
        }
    }

    /// The budgets it holds, as `(scope, id)`.
    pub fn budgets(&self) -> impl Iterator<Item = (Scope, &str)> {
        self.held.iter().map(|(e, _)| (e.scope, e.id.as_str()))
    }

    /// Charge `actual` to every budget held. Every budget is tried; when
    /// the store could not record one or more settlements, the call returns
    /// [`ScopedDenied::Unsettled`] with the settlements that were recorded
    /// (they stay recorded) and each budget that was not, with its error
    /// (each also logged). Dropped before it completes, the holds not yet
    /// settled are released.
    pub async fn settle(mut self, actual: Usage) -> Result<Vec<Settled>, ScopedDenied> {
        let mut out = Vec::new();
        #[cfg(feature = "redis")]
        let mut failed = Vec::new();
        // Popped one at a time: if this future is dropped mid-way, the
        // holds not yet settled are still in `self.held` and are released.
        while let Some((e, t)) = self.held.pop() {
            self.catch_up(&e);
            let s = match (&e.manager, t) {
                (Manager::Memory(m), Ticket::Memory(r)) => m.settle(r, actual),
                #[cfg(feature = "redis")]
                (Manager::Redis(m), Ticket::Redis(t)) => match m.settle_ticket(t, actual).await {
                    Ok(s) => s,
                    Err(error) => {
                        tracing::warn!(scope = e.scope.name(), id = %e.id, error = %error, "could not settle a budget");
                        failed.push(crate::budget::UnsettledBudget {
                            scope: e.scope,
                            id: e.id.clone(),
                            error,
                        });
                        None
                    }
                },
                #[cfg(feature = "redis")]
                _ => None,
            };
            deliver(&self.handlers, &e);
            out.extend(s);
        }
        #[cfg(feature = "redis")]
        if !failed.is_empty() {
            return Err(ScopedDenied::Unsettled {
                settled: out,
                failed,
            });
        }
        Ok(out)
    }
}

impl<C: Clock + Clone> Drop for ScopedHold<C> {
    fn drop(&mut self) {
        for (e, t) in self.held.drain(..) {
            match (&e.manager, t) {
                (Manager::Memory(m), Ticket::Memory(r)) => m.release(r),
                #[cfg(feature = "redis")]
                (Manager::Redis(m), Ticket::Redis(t)) => m.release_ticket(t),
                #[cfg(feature = "redis")]
                _ => {}
            }
        }
    }
}
