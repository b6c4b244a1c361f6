//! The budget manager over Redis, with the fail-over of [`crate::fallback`].

use std::sync::{mpsc, Arc, Mutex, RwLock};

use ratebound_core::budget::{
    Admission, Alert, Budget, BudgetConfig, BudgetStatus, Reservation, Settled, Usage,
};
use ratebound_core::ConfigError;

use super::{AlertHub, AlertsPending, BudgetDenied, BudgetManager, UsageRecord};
use crate::clock::{Clock, SystemClock};
use crate::fallback::{Failover, FailoverOptions, Fallback, OnUnavailable, Source};
use crate::redis::{RedisBudget, RedisStore, StoreError};

/// Why a Redis budget call gave no answer, or said no.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisBudgetError {
    /// The budget refused (or the usage can never fit).
    #[error(transparent)]
    Denied(#[from] BudgetDenied),
    /// Redis was unavailable or answered an error.
    #[error(transparent)]
    Redis(#[from] StoreError),
}

/// A refused reservation and, when this replica's share of the budget
/// refused it (the store away, [`OnUnavailable::Local`]), that share's
/// config: a denial's limit is an index into the config that decided.
#[derive(Debug)]
pub(crate) struct Refused {
    pub(crate) error: RedisBudgetError,
    pub(crate) share: Option<Box<BudgetConfig>>,
}

/// [`BudgetManager`]'s API with the budget kept in Redis, so every server
/// draws on the same budget (one per `budget_key`: a team, a user, a
/// project). Alerts fire where the call that crossed the threshold ran
/// (once per window across all servers) and are delivered like
/// [`BudgetManager`]'s.
///
/// While Redis is unavailable the fail-over decides
/// ([`with_failover`](Self::with_failover); default
/// [`OnUnavailable::Closed`]: an error): `Open` admits and records nothing,
/// `Local` runs this replica's share of the budget in this process until
/// Redis is back (up to 256 reservations at once; its alerts reach this
/// manager's handlers and subscribers, as Redis's do, measured against the
/// share: 80 % of a 300-token share of a 900-token budget, say, is 240
/// tokens spent on this replica). An amount that fits
/// the budget but not the share is denied until the store may be back
/// (`retry_at` one [`FailoverOptions::retry_after`] away), never reported as
/// an amount that can never fit. Each hold says where it was decided
/// ([`RedisBudgetHold::source`]).
pub struct RedisBudgetManager<C: Clock = SystemClock> {
    /// Swapped whole by [`reconfigure`](Self::reconfigure); each call
    /// takes a copy of the `Arc` and runs on it.
    budget: RwLock<Arc<RedisBudget>>,
    /// Serialises config changes (the local fallback's and Redis's).
    changing: Mutex<()>,
    key: Vec<u8>,
    /// Shared with the local fallback's manager.
    hub: Arc<AlertHub>,
    failover: Arc<Failover>,
    /// The in-memory fallback on this replica's share (`local` only).
    local: Option<BudgetManager<C>>,
}

impl<C: Clock> std::fmt::Debug for RedisBudgetManager<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBudgetManager")
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

const NAME: &str = "budget";

/// A reservation held in Redis (or by the failure policy): settle it with
/// the actual usage; dropping it releases it (in the background, when a
/// tokio runtime is there; otherwise it lapses after the hold TTL).
#[must_use = "dropping a hold releases it; settle it with the actual usage"]
pub struct RedisBudgetHold<'a, C: Clock = SystemClock> {
    manager: &'a RedisBudgetManager<C>,
    ticket: Option<Ticket>,
    source: Source,
    usage: Usage,
}

/// What a hold holds, apart from its manager: a reservation in Redis, one
/// in the local fallback, or nothing (admitted open).
#[derive(Debug)]
pub(crate) enum Ticket {
    Redis(u64),
    Local(Reservation),
    Open,
}

impl<C: Clock> RedisBudgetHold<'_, C> {
    /// What it holds.
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// Where it was decided.
    pub fn source(&self) -> Source {
        self.source
    }

    /// Charge the actual usage. `None` if the reservation was unknown
    /// (released elsewhere, or the budget was reset: nothing is charged, as
    /// in memory), or admitted open.
    pub async fn settle(mut self, actual: Usage) -> Result<Option<Settled>, StoreError> {
        match self.ticket.take() {
            Some(t) => self.manager.settle_ticket(t, actual).await,
            None => Ok(None),
        }
    }

    /// The ticket, no longer released on drop.
    pub(crate) fn detach(mut self) -> Ticket {
        self.ticket.take().unwrap_or(Ticket::Open)
    }
}

impl<C: Clock> Drop for RedisBudgetHold<'_, C> {
    fn drop(&mut self) {
        if let Some(t) = self.ticket.take() {
            self.manager.release_ticket(t);
        }
    }
}

impl RedisBudgetManager {
    /// The budget `config` under `budget_key` in `store`, with up to
    /// `hold_slots` reservations at once; refuses while Redis is unavailable.
    pub fn new(
        store: RedisStore,
        config: BudgetConfig,
        budget_key: impl AsRef<[u8]>,
        hold_slots: usize,
    ) -> Result<Self, ConfigError> {
        Ok(Self::from_budget(
            store,
            Budget::new(config)?,
            budget_key,
            hold_slots,
        ))
    }

    /// [`new`](Self::new) of `budget` (already validated; one from
    /// [`Budget::reconfigure`] keeps the chain the states in Redis are read
    /// by).
    pub fn from_budget(
        store: RedisStore,
        budget: Budget,
        budget_key: impl AsRef<[u8]>,
        hold_slots: usize,
    ) -> Self {
        let down = store.down_flag("budgets");
        RedisBudgetManager {
            budget: RwLock::new(Arc::new(RedisBudget::new(store, budget, hold_slots))),
            changing: Mutex::new(()),
            key: budget_key.as_ref().to_vec(),
            hub: Arc::new(AlertHub::new()),
            failover: Arc::new(Failover::new(FailoverOptions::default(), "budgets", down)),
            local: None,
        }
    }
}

impl<C: Clock> RedisBudgetManager<C> {
    /// The same budget with a fail-over; `clock` runs the in-memory
    /// budget of [`OnUnavailable::Local`], on this replica's share of every
    /// window limit ([`BudgetConfig::share`](ratebound_core::budget::BudgetConfig::share)).
    pub fn with_failover<D: Clock>(
        self,
        failover: FailoverOptions,
        clock: D,
    ) -> Result<RedisBudgetManager<D>, ConfigError> {
        failover.validate()?;
        let down = self.redis().store().down_flag("budgets");
        let shared = Arc::new(Failover::new(failover, "budgets", down));
        self.sharing_failover(shared, clock)
    }

    /// [`with_failover`](Self::with_failover) with a fail-over state shared
    /// by many budgets on one store: once it finds the store down, every
    /// budget skips it (one timeout, not one per budget).
    pub(crate) fn sharing_failover<D: Clock>(
        self,
        failover: Arc<Failover>,
        clock: D,
    ) -> Result<RedisBudgetManager<D>, ConfigError> {
        let options = *failover.options();
        let local = match options.on_unavailable {
            OnUnavailable::Local => Some(BudgetManager::with_hub(
                self.redis().budget().config().share(options.replicas),
                clock,
                Arc::clone(&self.hub),
            )?),
            _ => None,
        };
        Ok(RedisBudgetManager {
            budget: self.budget,
            changing: self.changing,
            key: self.key,
            hub: self.hub,
            failover,
            local,
        })
    }

    /// True when the local fallback (if any) has nothing to remember.
    pub(crate) fn local_is_idle(&self) -> bool {
        self.local.as_ref().is_none_or(|l| l.status().is_idle())
    }

    fn redis(&self) -> Arc<RedisBudget> {
        Arc::clone(&self.budget.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// The budget's config (a copy: [`reconfigure`](Self::reconfigure) may
    /// replace it).
    pub fn budget(&self) -> Budget {
        self.redis().budget().clone()
    }

    /// Change the config, keeping the state in Redis (core's
    /// [`Budget::reconfigure`]: usage, holds and throttling are kept, the
    /// new limits read them and alerts are re-evaluated; the script
    /// re-reads the state on its next call, so nothing in Redis is written
    /// here). Under [`OnUnavailable::Local`] the local fallback takes this
    /// replica's share of the new config too. Errors, changing nothing,
    /// as [`Budget::reconfigure`] does.
    ///
    /// Each replica changes its own config (from its own config file, say);
    /// until all have, each decides by the config it has, on the one state
    /// (which each re-reads when the other wrote it last: an alert may then
    /// fire once per switch).
    pub fn reconfigure(&self, config: BudgetConfig) -> Result<(), ConfigError> {
        let _one = self.changing.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.redis();
        let new = current.budget().reconfigure(config.clone())?;
        // The whole budget and the local share change together: a local
        // decision reads both under the read lock (see `decide_locally`).
        let mut whole = self.budget.write().unwrap_or_else(|e| e.into_inner());
        if let Some(local) = &self.local {
            let replicas = self.failover.options().replicas;
            local.reconfigure(config.share(replicas))?;
        }
        *whole = Arc::new(current.with_budget(new));
        Ok(())
    }

    /// The fail-over's answer: `Ok(Ok(v))` from Redis, `Ok(Err(None))` to
    /// admit open, `Ok(Err(Some(local)))` to decide in memory, or the error.
    async fn shared<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<Result<T, Option<&BudgetManager<C>>>, StoreError> {
        Ok(match self.failover.call(call).await? {
            Ok(v) => Ok(v),
            Err(Fallback::Open) => Err(None),
            Err(Fallback::Local) => Err(self.local.as_ref()),
        })
    }

    /// Go `policy`'s `CheckBudget`: would a call of this size be admitted
    /// now? (While this replica decides alone, as [`reserve`](Self::reserve)
    /// says.)
    pub async fn check_budget(
        &self,
        estimated_tokens: u64,
        estimated_cost: u64,
    ) -> Result<(), RedisBudgetError> {
        let u = Usage::request(estimated_tokens, estimated_cost);
        match self.shared(self.redis().peek(&self.key, NAME, u)).await? {
            Ok(r) => match r.value.map_err(BudgetDenied::from)? {
                None => Ok(()),
                Some(d) => Err(BudgetDenied::Denied(d).into()),
            },
            Err(None) => Ok(()),
            Err(Some(l)) => self
                .decide_locally(l, &u, false, |l| {
                    l.check_budget(estimated_tokens, estimated_cost)
                })
                .map_err(|refused| refused.error),
        }
    }

    /// `decide` on the local share, unless the whole budget fits `usage`
    /// and the share never can: then a denial until the store may be back
    /// (core's [`Budget::share_refusal`]), not an amount that never fits.
    /// The whole budget and the share are read under one lock, so a
    /// [`reconfigure`](Self::reconfigure) is never seen half done; with
    /// `name_share`, a refusal carries the share that made it, read under
    /// that lock too.
    fn decide_locally<'l, T>(
        &self,
        local: &'l BudgetManager<C>,
        usage: &Usage,
        name_share: bool,
        decide: impl FnOnce(&'l BudgetManager<C>) -> Result<T, BudgetDenied>,
    ) -> Result<T, Refused> {
        let whole = self.budget.read().unwrap_or_else(|e| e.into_inner());
        let options = self.failover.options();
        let decided = whole
            .budget()
            .share_refusal(options.replicas, usage, options.retry_at(local.now()))
            .map_err(BudgetDenied::from)
            .and_then(|refusal| match refusal {
                None => decide(local),
                Some(denial) => Err(BudgetDenied::Denied(denial)),
            });
        decided.map_err(|d| Refused {
            error: d.into(),
            share: name_share.then(|| Box::new(local.budget().config().clone())),
        })
    }

    /// Hold `estimate` until settled (or dropped).
    ///
    /// While the store is away and this replica decides alone
    /// ([`OnUnavailable::Local`]), a denial is this replica's share's: its
    /// `limit` indexes the same limit of [`budget`](Self::budget)'s config
    /// (a share keeps their order), whose `max` this replica holds a
    /// share of ([`BudgetConfig::share`]).
    pub async fn reserve(
        &self,
        estimate: Usage,
    ) -> Result<RedisBudgetHold<'_, C>, RedisBudgetError> {
        self.reserve_deciding(estimate)
            .await
            .map_err(|refused| refused.error)
    }

    /// [`reserve`](Self::reserve), a refusal saying which budget made it:
    /// a client told why it was refused is told the limit that refused it
    /// (while the store is away, this replica's share).
    pub(crate) async fn reserve_deciding(
        &self,
        estimate: Usage,
    ) -> Result<RedisBudgetHold<'_, C>, Refused> {
        let by_store = |error: RedisBudgetError| Refused { error, share: None };
        let r = match self
            .shared(self.redis().reserve(&self.key, NAME, estimate))
            .await
            .map_err(|e| by_store(e.into()))?
        {
            Ok(r) => r,
            Err(fallback) => {
                return match fallback {
                    None => Ok(RedisBudgetHold {
                        manager: self,
                        ticket: Some(Ticket::Open),
                        source: Source::FailOpen,
                        usage: estimate,
                    }),
                    Some(l) => {
                        let h = self.decide_locally(l, &estimate, true, |l| l.reserve(estimate))?;
                        let usage = h.usage();
                        Ok(RedisBudgetHold {
                            manager: self,
                            ticket: h.detach().map(Ticket::Local),
                            usage,
                            source: Source::Local,
                        })
                    }
                };
            }
        };
        let r = r
            .value
            .map_err(|e| by_store(BudgetDenied::from(e).into()))?;
        self.hub.publish(&r.alerts);
        match r.admission {
            Admission::Granted(res) => Ok(RedisBudgetHold {
                manager: self,
                ticket: Some(Ticket::Redis(res.id)),
                source: Source::Redis,
                usage: res.usage,
            }),
            Admission::Denied(d) => Err(by_store(BudgetDenied::Denied(d).into())),
        }
    }

    /// Charge `actual` for a detached hold.
    pub(crate) async fn settle_ticket(
        &self,
        ticket: Ticket,
        actual: Usage,
    ) -> Result<Option<Settled>, StoreError> {
        let id = match ticket {
            Ticket::Redis(id) => id,
            Ticket::Local(r) => return Ok(self.local.as_ref().and_then(|l| l.settle(r, actual))),
            Ticket::Open => return Ok(None),
        };
        let r = self.redis().settle(&self.key, NAME, id, actual).await?;
        Ok(self.hub.settled(r.value))
    }

    /// Release a detached hold: at once in the local fallback; in Redis in
    /// the background when a tokio runtime is there (otherwise it lapses
    /// after the hold TTL).
    pub(crate) fn release_ticket(&self, ticket: Ticket) {
        match ticket {
            Ticket::Redis(id) => {
                let (b, key) = (self.redis(), self.key.clone());
                if let Ok(h) = tokio::runtime::Handle::try_current() {
                    h.spawn(async move {
                        if let Err(e) = b.release(&key, NAME, id).await {
                            tracing::debug!(error = %e, "could not release a dropped hold; it lapses");
                        }
                    });
                }
            }
            Ticket::Local(r) => {
                if let Some(l) = &self.local {
                    l.release(r);
                }
            }
            Ticket::Open => {}
        }
    }

    /// Go `policy`'s `RecordUsage` (dropped under `Open` while Redis is down).
    pub async fn record_usage(&self, rec: &UsageRecord) -> Result<(), RedisBudgetError> {
        let u = Usage::request(rec.tokens, rec.cost);
        match self.shared(self.redis().record(&self.key, NAME, u)).await? {
            Ok(r) => {
                if let Ok(alerts) = r.value {
                    self.hub.publish(&alerts);
                }
            }
            Err(None) => {}
            Err(Some(l)) => l.record_usage(rec),
        }
        Ok(())
    }

    /// Go `policy`'s `GetStatus` (the local budget's while it stands in).
    pub async fn status(&self) -> Result<BudgetStatus, RedisBudgetError> {
        match self.shared(self.redis().status(&self.key, NAME)).await? {
            Ok(r) => Ok(r.value.map_err(BudgetDenied::from)?),
            Err(Some(l)) => Ok(l.status()),
            // Open has no status of its own to give.
            Err(None) => Err(StoreError::Down(self.failover.options().retry_after).into()),
        }
    }

    /// Forget all usage and holds, in Redis and in the local fallback.
    pub async fn reset(&self) -> Result<(), RedisBudgetError> {
        if let Some(l) = &self.local {
            l.reset();
        }
        Ok(self.redis().reset(&self.key, NAME).await?)
    }

    /// Run `handler` for each alert on the alert thread (as [`BudgetManager::on_alert`]).
    pub fn on_alert(&self, handler: impl Fn(&Alert) + Send + Sync + 'static) {
        self.hub.on_alert(handler);
    }

    /// A channel receiving every alert from now on.
    pub fn subscribe(&self) -> mpsc::Receiver<Alert> {
        self.hub.subscribe()
    }

    /// Wait until every alert handler dispatched so far has returned.
    pub async fn wait_alerts(&self) {
        self.hub.wait().await;
    }

    /// See [`BudgetManager::wait_alerts_until`].
    pub async fn wait_alerts_until(
        &self,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<(), AlertsPending> {
        self.hub.wait_until(stop).await
    }
}
