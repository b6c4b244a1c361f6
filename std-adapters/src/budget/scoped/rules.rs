//! The budgets one config defines, each a link of its reconfigure chain,
//! and how a budget held by the store catches up with them.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use ratebound_core::budget::Budget;
use ratebound_core::ConfigError;

use super::{Entry, Manager, Payer, Scope, ScopedBudgetConfig, ScopedConfigError};
use crate::budget::BudgetSpec;
use crate::clock::Clock;

/// The validated budgets of one config; a [`ScopedBudgets::reconfigure`]
/// swaps them whole.
pub(super) struct Rules {
    pub(super) config: ScopedBudgetConfig,
    specs: HashMap<(Scope, String), Budget>,
    per_key: Option<Budget>,
    per_user: Option<Budget>,
    pub(super) generation: u64,
}

impl Rules {
    /// Validate every budget in `config` (errors name the scope and field),
    /// each a change of its budget in `old` if it has one (core's
    /// [`Budget::reconfigure`]: the chain its states are read by).
    pub(super) fn new(
        config: ScopedBudgetConfig,
        old: Option<&Rules>,
        generation: u64,
    ) -> Result<Rules, ScopedConfigError> {
        let budget = |scope: Scope, id: &str, name: String, spec: &BudgetSpec| {
            let config = spec.to_config();
            match old.and_then(|o| o.budget(scope, id)) {
                Some(was) => was.reconfigure(config),
                None => Budget::new(config),
            }
            .map_err(|error| ScopedConfigError {
                scope: name,
                error: spec.named(error),
            })
        };
        if config.max_budgets == 0 {
            return Err(ScopedConfigError {
                scope: "max_budgets".into(),
                error: ConfigError::Zero {
                    field: "max_budgets",
                },
            });
        }
        let mut specs = HashMap::new();
        for (name, spec) in &config.per_group {
            specs.insert(
                (Scope::Group, name.clone()),
                budget(Scope::Group, name, format!("per_group.{name}"), spec)?,
            );
        }
        for (name, spec) in &config.per_model {
            specs.insert(
                (Scope::Model, name.clone()),
                budget(Scope::Model, name, format!("per_model.{name}"), spec)?,
            );
        }
        let per_key = config
            .per_key
            .as_ref()
            .map(|s| budget(Scope::Key, "", "per_key".into(), s))
            .transpose()?;
        let per_user = config
            .per_user
            .as_ref()
            .map(|s| budget(Scope::User, "", "per_user".into(), s))
            .transpose()?;
        Ok(Rules {
            config,
            specs,
            per_key,
            per_user,
            generation,
        })
    }

    /// The budget of `scope` (`id` for groups and models).
    pub(super) fn budget(&self, scope: Scope, id: &str) -> Option<&Budget> {
        match scope {
            Scope::Key => self.per_key.as_ref(),
            Scope::User => self.per_user.as_ref(),
            Scope::Group | Scope::Model => self.specs.get(&(scope, id.to_owned())),
        }
    }

    /// Every budget, named as in the config.
    pub(super) fn named(&self) -> impl Iterator<Item = (String, Scope, &str, &Budget)> {
        let key = self
            .per_key
            .as_ref()
            .map(|b| ("per_key".to_owned(), Scope::Key, "", b));
        let user = self
            .per_user
            .as_ref()
            .map(|b| ("per_user".to_owned(), Scope::User, "", b));
        key.into_iter()
            .chain(user)
            .chain(self.specs.iter().map(|((scope, id), b)| {
                let name = match scope {
                    Scope::Group => format!("per_group.{id}"),
                    _ => format!("per_model.{id}"),
                };
                (name, *scope, id.as_str(), b)
            }))
    }

    /// The budgets that apply to `payer`, in the order they are reserved.
    pub(super) fn applying<'p>(&'p self, payer: &Payer<'p>) -> Vec<(Scope, &'p str, &'p Budget)> {
        let mut out = Vec::with_capacity(4);
        if let (Some(b), Some(k)) = (&self.per_key, payer.key) {
            out.push((Scope::Key, k, b));
        }
        if let Some(b) = &self.per_user {
            out.push((Scope::User, payer.user, b));
        }
        if let Some(g) = payer.group {
            if let Some(b) = self.specs.get(&(Scope::Group, g.to_owned())) {
                out.push((Scope::Group, g, b));
            }
        }
        if let Some(b) = self.specs.get(&(Scope::Model, payer.model.to_owned())) {
            out.push((Scope::Model, payer.model, b));
        }
        out
    }
}

/// The rules in force.
pub(super) fn current(rules: &RwLock<Arc<Rules>>) -> Arc<Rules> {
    Arc::clone(&rules.read().unwrap_or_else(|e| e.into_inner()))
}

/// Bring a budget made under an earlier config to `rules` (its state
/// kept, by core's rule), once.
pub(super) fn catch_up<C: Clock>(e: &Entry<C>, budget: &Budget, rules: &Rules) {
    let mut generation = e.generation.lock().unwrap_or_else(|p| p.into_inner());
    if *generation >= rules.generation {
        return;
    }
    let config = budget.config().clone();
    let changed = match &e.manager {
        Manager::Memory(m) => m.reconfigure(config),
        #[cfg(feature = "redis")]
        Manager::Redis(m) => m.reconfigure(config),
    };
    match changed {
        Ok(()) => *generation = rules.generation,
        // `reconfigure` checked that it carries over: not expected.
        Err(error) => {
            tracing::error!(scope = e.scope.name(), id = %e.id, %error, "budget config change failed; the budget keeps its config")
        }
    }
}
