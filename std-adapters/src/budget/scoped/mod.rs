//! Budgets per API key, user, group and model, reserved together: one
//! call holds its estimate in every budget that applies to it, or in none.

use std::collections::HashMap;
use std::sync::{mpsc, Arc, Mutex, RwLock};

use ratebound_core::budget::{Alert, Budget, BudgetStatus, Reservation, Usage};
use ratebound_core::ConfigError;

use super::BudgetManager;
use crate::clock::Clock;

mod config;
mod hold;
mod rules;

#[cfg(feature = "redis")]
pub use config::UnsettledBudget;
pub use config::{
    Payer, Scope, ScopedAlert, ScopedBackend, ScopedBudgetConfig, ScopedConfigError, ScopedDenied,
};
pub use hold::ScopedHold;
use hold::{deliver, denied};
use rules::{catch_up, current, Rules};

enum Manager<C: Clock> {
    Memory(Box<BudgetManager<C>>),
    #[cfg(feature = "redis")]
    Redis(Arc<super::RedisBudgetManager<C>>),
}

struct Entry<C: Clock> {
    scope: Scope,
    id: String,
    manager: Manager<C>,
    alerts: Mutex<mpsc::Receiver<Alert>>,
    /// The [`Rules::generation`] its manager's config is from; held while
    /// the manager changes config, so changes apply in order.
    generation: Mutex<u64>,
}

impl<C: Clock> Entry<C> {
    /// Nothing to remember: its budget's status is idle (in Redis, the
    /// state stays there; only the local fallback's, if any, counts), and
    /// no call is using its manager.
    fn is_idle(&self) -> bool {
        match &self.manager {
            Manager::Memory(m) => m.status().is_idle(),
            #[cfg(feature = "redis")]
            Manager::Redis(m) => Arc::strong_count(m) == 1 && m.local_is_idle(),
        }
    }
}

enum Ticket {
    Memory(Reservation),
    #[cfg(feature = "redis")]
    Redis(super::redis::Ticket),
}

type Handler = Arc<dyn Fn(&ScopedAlert) + Send + Sync>;

/// Budgets per [`Scope`], in memory or in Redis, reserved together.
///
/// Each budget holds at most 256 reservations at once in memory
/// (`hold_slots` in Redis): a call beyond that is refused
/// ([`DenyReason::TooManyReservations`](ratebound_core::budget::DenyReason))
/// until one settles. A budget in memory takes about 16 KB (its reservation
/// table); `max_budgets` bounds the total.
///
/// ```
/// use ratebound_std::budget::{Payer, ScopedBackend, ScopedBudgetConfig, ScopedBudgets};
/// use ratebound_std::clock::ManualClock;
/// use ratebound_core::{budget::Usage, Instant};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config: ScopedBudgetConfig = toml::from_str(r#"
///     per_user = { tokens_per_minute = 1_000 }
///     per_model."gpt-4o" = { tokens_per_minute = 1_500 }
/// "#)?;
/// let budgets = ScopedBudgets::new(config, ScopedBackend::Memory, ManualClock::new(Instant::from_secs(1_795_392_000)))?;
/// let alice = Payer { key: None, user: "alice", group: None, model: "gpt-4o" };
/// let hold = budgets.reserve(&alice, Usage::request(800, 0)).await?;
/// hold.settle(Usage::request(600, 0)).await?;
/// // alice has 400 left, the model 900: 500 more does not fit alice.
/// assert!(budgets.reserve(&alice, Usage::request(500, 0)).await.is_err());
/// # Ok(()) }
/// ```
pub struct ScopedBudgets<C: Clock + Clone> {
    /// Shared with each hold, which settles by the rules current then.
    rules: Arc<RwLock<Arc<Rules>>>,
    backend: ScopedBackend,
    /// One fail-over state for every budget in the store.
    #[cfg(feature = "redis")]
    failover: Option<Arc<crate::fallback::Failover>>,
    clock: C,
    entries: Mutex<Entries<C>>,
    /// New ids refused since the last sweep of idle budgets (see `entry`).
    refusals: std::sync::atomic::AtomicUsize,
    handlers: Handlers,
    /// Serialises config changes.
    changing: Mutex<()>,
}

type Handlers = Arc<RwLock<Vec<Handler>>>;
type Entries<C> = HashMap<(Scope, String), Arc<Entry<C>>>;

impl<C: Clock + Clone> std::fmt::Debug for ScopedBudgets<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScopedBudgets")
            .field("config", &self.rules().config)
            .finish_non_exhaustive()
    }
}

impl<C: Clock + Clone> ScopedBudgets<C> {
    /// Validate every budget in `config` (errors name the scope and field).
    pub fn new(
        config: ScopedBudgetConfig,
        backend: ScopedBackend,
        clock: C,
    ) -> Result<Self, ScopedConfigError> {
        let rules = Rules::new(config, None, 0)?;
        #[cfg(feature = "redis")]
        if let ScopedBackend::Redis {
            failover,
            hold_slots,
            ..
        } = &backend
        {
            failover.validate().map_err(|error| ScopedConfigError {
                scope: "failover".into(),
                error,
            })?;
            if *hold_slots == 0 {
                return Err(ScopedConfigError {
                    scope: "hold_slots".into(),
                    error: ConfigError::Zero {
                        field: "hold_slots",
                    },
                });
            }
        }
        #[cfg(feature = "redis")]
        let failover = match &backend {
            ScopedBackend::Redis {
                store, failover, ..
            } => Some(Arc::new(crate::fallback::Failover::new(
                *failover,
                "budgets",
                store.down_flag("budgets"),
            ))),
            ScopedBackend::Memory => None,
        };
        Ok(ScopedBudgets {
            rules: Arc::new(RwLock::new(Arc::new(rules))),
            backend,
            #[cfg(feature = "redis")]
            failover,
            clock,
            entries: Mutex::new(HashMap::new()),
            refusals: std::sync::atomic::AtomicUsize::new(0),
            handlers: Arc::new(RwLock::new(Vec::new())),
            changing: Mutex::new(()),
        })
    }

    fn rules(&self) -> Arc<Rules> {
        current(&self.rules)
    }

    /// The clock its budgets run on.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// The config (a copy: [`reconfigure`](Self::reconfigure) may replace it).
    pub fn config(&self) -> ScopedBudgetConfig {
        self.rules().config.clone()
    }

    /// Change the budgets while they are in use, keeping every budget's
    /// usage, holds and throttling: each budget in both configs takes its
    /// new limits by core's rule ([`Budget::reconfigure`]: the new limits
    /// read the usage kept, alerts are re-evaluated), in memory and in
    /// Redis alike; a budget added starts with what its store holds for it
    /// (nothing, unless its key was used before); `max_budgets` may change.
    /// Budgets already held catch up on their next call, so this is
    /// O(budgets configured), not O(budgets held).
    ///
    /// Errors, changing nothing, naming the scope: a config that
    /// [`new`](Self::new) would refuse, a budget whose UTC offset would
    /// move, or a budget removed from the config (set its limits high
    /// instead: its usage would otherwise be forgotten in memory and kept
    /// in Redis, and the two backends would decide differently when it
    /// came back).
    ///
    /// ```
    /// use ratebound_std::budget::{Payer, ScopedBackend, ScopedBudgets};
    /// use ratebound_std::clock::ManualClock;
    /// use ratebound_core::{budget::Usage, Instant};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let budgets = ScopedBudgets::new(
    ///     toml::from_str("per_user = { tokens_per_day = 1_000 }")?,
    ///     ScopedBackend::Memory,
    ///     ManualClock::new(Instant::from_secs(1_795_392_000)),
    /// )?;
    /// let alice = Payer { key: None, user: "alice", group: None, model: "m" };
    /// budgets.reserve(&alice, Usage::request(900, 0)).await?.settle(Usage::request(900, 0)).await?;
    /// assert!(budgets.reserve(&alice, Usage::request(200, 0)).await.is_err());
    ///
    /// budgets.reconfigure(toml::from_str("per_user = { tokens_per_day = 5_000 }")?)?;
    /// // 900 used of 5 000.
    /// assert!(budgets.reserve(&alice, Usage::request(4_100, 0)).await.is_ok());
    /// assert!(budgets.reconfigure(toml::from_str("per_user = { tokens_per_day = 5_000, utc_offset_minutes = 60 }")?).is_err());
    /// # Ok(()) }
    /// ```
    pub fn reconfigure(&self, config: ScopedBudgetConfig) -> Result<(), ScopedConfigError> {
        let _one = self.changing.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.rules();
        let new = Rules::new(config, Some(&old), old.generation + 1)?;
        Self::keeps_every_budget(&old, &new)?;
        *self.rules.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(new);
        Ok(())
    }

    /// What [`reconfigure`](Self::reconfigure) would answer, changing nothing.
    pub fn check_reconfigure(&self, config: &ScopedBudgetConfig) -> Result<(), ScopedConfigError> {
        let old = self.rules();
        let new = Rules::new(config.clone(), Some(&old), old.generation + 1)?;
        Self::keeps_every_budget(&old, &new)
    }

    fn keeps_every_budget(old: &Rules, new: &Rules) -> Result<(), ScopedConfigError> {
        for (name, scope, id, _) in old.named() {
            if new.budget(scope, id).is_none() {
                return Err(ScopedConfigError {
                    scope: name,
                    error: ConfigError::Invalid {
                        field: "budgets",
                        reason: "cannot be removed while in use (its usage would be lost): \
                                 raise its limits instead",
                    },
                });
            }
        }
        Ok(())
    }

    /// True when a budget that applies to `payer` limits money: its calls
    /// need a price.
    pub fn limits_cost(&self, payer: &Payer<'_>) -> bool {
        self.rules()
            .applying(payer)
            .iter()
            .any(|(_, _, b)| b.config().limits_cost())
    }

    /// True when any budget applies to `payer`.
    pub fn applies_to(&self, payer: &Payer<'_>) -> bool {
        !self.rules().applying(payer).is_empty()
    }

    fn entry(
        &self,
        scope: Scope,
        id: &str,
        budget: &Budget,
        rules: &Rules,
    ) -> Result<Arc<Entry<C>>, ScopedDenied> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = entries.get(&(scope, id.to_owned())) {
            return Ok(Arc::clone(e));
        }
        if entries.len() >= rules.config.max_budgets && !self.make_room(&mut entries, rules) {
            return Err(ScopedDenied::Full(entries.len()));
        }
        // The budget was validated in `new`: this cannot fail.
        #[cfg(feature = "redis")]
        let invalid = |_| ScopedDenied::Full(0);
        // The budget itself, not its config: it carries the chain of
        // changes its states are read by.
        let manager = match &self.backend {
            ScopedBackend::Memory => Manager::Memory(Box::new(BudgetManager::from_budget(
                budget.clone(),
                self.clock.clone(),
            ))),
            #[cfg(feature = "redis")]
            ScopedBackend::Redis {
                store,
                prefix,
                hold_slots,
                failover,
            } => {
                let key = format!("{prefix}{}:{id}", scope.name());
                let shared = self.failover.clone().unwrap_or_else(|| {
                    let down = store.down_flag("budgets");
                    Arc::new(crate::fallback::Failover::new(*failover, "budgets", down))
                });
                Manager::Redis(Arc::new(
                    super::RedisBudgetManager::from_budget(
                        store.clone(),
                        budget.clone(),
                        key,
                        *hold_slots,
                    )
                    .sharing_failover(shared, self.clock.clone())
                    .map_err(invalid)?,
                ))
            }
        };
        let alerts = match &manager {
            Manager::Memory(m) => m.subscribe(),
            #[cfg(feature = "redis")]
            Manager::Redis(m) => m.subscribe(),
        };
        let e = Arc::new(Entry {
            scope,
            id: id.to_owned(),
            manager,
            alerts: Mutex::new(alerts),
            generation: Mutex::new(rules.generation),
        });
        entries.insert((scope, id.to_owned()), Arc::clone(&e));
        Ok(e)
    }

    /// Room for one more budget, by forgetting every budget with nothing to
    /// remember (idle, and not held by a reservation in flight): on the
    /// first refusal and then once every `period = max(16, max_budgets /
    /// 16)`, or on the next refusal after a search that forgot `period` or
    /// more, so each search of the `max_budgets` entries is paid for by at
    /// least `period` new ids refused or made room for: O(1) amortized.
    fn make_room(&self, entries: &mut Entries<C>, rules: &Rules) -> bool {
        use std::sync::atomic::Ordering;
        let period = (rules.config.max_budgets / 16).max(16);
        if !self
            .refusals
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(period)
        {
            return false;
        }
        let before = entries.len();
        entries.retain(|_, e| Arc::strong_count(e) > 1 || !e.is_idle());
        if before - entries.len() >= period {
            self.refusals.store(0, Ordering::Relaxed);
        }
        entries.len() < rules.config.max_budgets
    }

    /// Budgets held now.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// True when none is held yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Call `handler` with each alert, on the task whose call fired it
    /// (after the call's budget operation): it must return quickly — hand
    /// slow work (a webhook) to a channel. Alerts also go to `tracing`.
    pub fn on_alert(&self, handler: impl Fn(&ScopedAlert) + Send + Sync + 'static) {
        self.handlers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::new(handler));
    }

    /// Hold `estimate` in every budget that applies to `payer`, or in none:
    /// the first that refuses releases the holds taken before it.
    pub async fn reserve(
        &self,
        payer: &Payer<'_>,
        estimate: Usage,
    ) -> Result<ScopedHold<C>, ScopedDenied> {
        // Every hold taken goes into `hold` at once: any exit — a refusal, a
        // full store, this future dropped — releases them; a hold Redis is
        // still taking when the future drops is released by its task.
        let mut hold = ScopedHold {
            held: Vec::new(),
            usage: estimate,
            handlers: Arc::clone(&self.handlers),
            rules: Arc::clone(&self.rules),
        };
        let rules = self.rules();
        for (scope, id, budget) in rules.applying(payer) {
            let e = self.entry(scope, id, budget, &rules)?;
            catch_up(&e, budget, &rules);
            let r = match &e.manager {
                Manager::Memory(m) => m
                    .reserve(estimate)
                    .map(|h| h.detach().map(Ticket::Memory))
                    .map_err(|d| denied(&e, budget.config(), d)),
                #[cfg(feature = "redis")]
                Manager::Redis(m) => match reserve_in_redis(Arc::clone(m), estimate).await {
                    Ok(t) => Ok(Some(Ticket::Redis(t))),
                    Err(refused) => match refused.error {
                        super::RedisBudgetError::Denied(d) => {
                            let by = refused.share.as_deref().unwrap_or(budget.config());
                            Err(denied(&e, by, d))
                        }
                        super::RedisBudgetError::Redis(s) => Err(ScopedDenied::Store(s)),
                    },
                },
            };
            deliver(&self.handlers, &e);
            if let Some(t) = r? {
                hold.held.push((e, t));
            }
        }
        Ok(hold)
    }

    /// How long the shared store is skipped after it fails (the fail-over's
    /// [`retry_after`](crate::fallback::FailoverOptions::retry_after)): a
    /// caller refused because it is away may try again after this. `None`
    /// in memory.
    pub fn store_retry_after(&self) -> Option<std::time::Duration> {
        #[cfg(feature = "redis")]
        if let Some(f) = &self.failover {
            return Some(f.options().retry_after);
        }
        None
    }

    /// The status of one budget, `None` if it is not held (never used, or
    /// not configured).
    pub async fn status(&self, scope: Scope, id: &str) -> Option<BudgetStatus> {
        let e = self
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(scope, id.to_owned()))
            .cloned()?;
        let rules = self.rules();
        if let Some(budget) = rules.budget(scope, id) {
            catch_up(&e, budget, &rules);
        }
        match &e.manager {
            Manager::Memory(m) => Some(m.status()),
            #[cfg(feature = "redis")]
            Manager::Redis(m) => m.status().await.ok(),
        }
    }
}

/// Reserve in Redis on a task of its own: if the caller goes away while the
/// script runs, the task releases the hold the script took instead of
/// leaving it to lapse.
#[cfg(feature = "redis")]
async fn reserve_in_redis<C: Clock>(
    m: Arc<super::RedisBudgetManager<C>>,
    estimate: Usage,
) -> Result<super::redis::Ticket, super::redis::Refused> {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return m.reserve_deciding(estimate).await.map(|h| h.detach());
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    rt.spawn(async move {
        let r = m.reserve_deciding(estimate).await.map(|h| h.detach());
        if let Err(Ok(ticket)) = tx.send(r) {
            m.release_ticket(ticket); // the caller is gone
        }
    });
    // The task ends without answering only when the runtime shuts down.
    rx.await.unwrap_or_else(|_| {
        Err(super::redis::Refused {
            error: crate::redis::StoreError::Down(std::time::Duration::ZERO).into(),
            share: None,
        })
    })
}
