//! What scoped budgets are configured with, and what they answer.

use std::collections::BTreeMap;

use ratebound_core::budget::{Alert, BudgetError, Denial, WindowLimit};
use ratebound_core::ConfigError;
use serde::{Deserialize, Serialize};

use crate::budget::BudgetSpec;

/// What a budget is shared by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// One API key.
    Key,
    /// One user (every key of theirs).
    User,
    /// One group or team (every member).
    Group,
    /// One model (every caller of it).
    Model,
}

impl Scope {
    /// `key`, `user`, `group` or `model`.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Key => "key",
            Scope::User => "user",
            Scope::Group => "group",
            Scope::Model => "model",
        }
    }
}

/// Which budgets apply to whom.
///
/// `per_key` and `per_user` give every key and every user a budget of their
/// own; `per_group` and `per_model` name the groups and models that have
/// one, shared by all their callers. A request draws on each that applies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScopedBudgetConfig {
    /// Each API key's own budget.
    pub per_key: Option<BudgetSpec>,
    /// Each user's own budget.
    pub per_user: Option<BudgetSpec>,
    /// Budgets of named groups, shared by their members.
    pub per_group: BTreeMap<String, BudgetSpec>,
    /// Budgets of named models, shared by everyone calling them.
    pub per_model: BTreeMap<String, BudgetSpec>,
    /// The most budgets held at once (per key and per user ones are made on
    /// first use). When a new key or user finds them all held, budgets with
    /// nothing to remember (no usage or holds in their current windows, not
    /// throttled, no call in flight) are forgotten to make room; if none
    /// is, the call is refused with [`ScopedDenied::Full`] rather than
    /// forgetting anyone's usage. The search for idle budgets runs on the
    /// first refusal, then again after `max(16, max_budgets / 16)` more
    /// (sooner, on the next, when it last forgot at least that many).
    pub max_budgets: usize,
}

impl Default for ScopedBudgetConfig {
    fn default() -> Self {
        ScopedBudgetConfig {
            per_key: None,
            per_user: None,
            per_group: BTreeMap::new(),
            per_model: BTreeMap::new(),
            max_budgets: 10_000,
        }
    }
}

/// A scope's budget config was invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("budget {scope}: {error}")]
pub struct ScopedConfigError {
    /// Which: `per_user`, `per_group.vip`…
    pub scope: String,
    /// What.
    pub error: ConfigError,
}

/// Who a call is for: the budgets of each of these apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Payer<'a> {
    /// The API key's id (a name for it, never the secret).
    pub key: Option<&'a str>,
    /// The user.
    pub user: &'a str,
    /// The user's group.
    pub group: Option<&'a str>,
    /// The model.
    pub model: &'a str,
}

/// A budget alert with the budget it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ScopedAlert {
    /// The budget's scope.
    pub scope: Scope,
    /// Whose (the key id, user, group or model).
    pub id: String,
    /// The alert.
    pub alert: Alert,
}

/// Why a reservation was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScopedDenied {
    /// A budget has no room now; retry at `denial.retry_at`.
    #[error("the {} budget of {id:?} is exhausted; retry at {}", scope.name(), denial.retry_at)]
    Exhausted {
        /// Which budget.
        scope: Scope,
        /// Whose.
        id: String,
        /// Core's denial.
        denial: Denial,
        /// The limit that bound, when a window limit did: while the store
        /// is away and this replica decides alone
        /// ([`OnUnavailable::Local`](crate::fallback::OnUnavailable::Local)),
        /// its share of that limit.
        limit: Option<WindowLimit>,
    },
    /// The call can never fit: it exceeds a per-request cap or a whole window.
    #[error("the {} budget of {id:?} can never admit this request: {error}", scope.name())]
    TooLarge {
        /// Which budget.
        scope: Scope,
        /// Whose.
        id: String,
        /// Core's reason.
        error: BudgetError,
    },
    /// `max_budgets` budgets are held: a new key or user cannot get one.
    #[error("{0} budgets are held, the most configured; refusing a new one")]
    Full(usize),
    /// The budget store could not answer.
    #[cfg(feature = "redis")]
    #[error(transparent)]
    Store(#[from] crate::redis::StoreError),
    /// From [`ScopedHold::settle`](super::ScopedHold::settle): the store
    /// could not record one or more of the call's settlements. Every budget
    /// was tried; the settlements recorded stay recorded.
    #[cfg(feature = "redis")]
    #[error("{}", unsettled_message(failed))]
    Unsettled {
        /// The settlements that were recorded.
        settled: Vec<ratebound_core::budget::Settled>,
        /// Each budget whose settlement was not recorded, and why.
        failed: Vec<UnsettledBudget>,
    },
}

/// A budget whose settlement the store did not record
/// ([`ScopedDenied::Unsettled`]); its hold lapses after its TTL.
#[cfg(feature = "redis")]
#[derive(Debug)]
pub struct UnsettledBudget {
    /// Which budget.
    pub scope: Scope,
    /// Whose.
    pub id: String,
    /// What the store said.
    pub error: crate::redis::StoreError,
}

#[cfg(feature = "redis")]
fn unsettled_message(failed: &[UnsettledBudget]) -> String {
    let names: Vec<String> = failed
        .iter()
        .map(|f| format!("the {} budget of {:?} ({})", f.scope.name(), f.id, f.error))
        .collect();
    format!(
        "{} budget settlement(s) not recorded: {}",
        failed.len(),
        names.join("; ")
    )
}

/// Where scoped budgets live.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub enum ScopedBackend {
    /// In this process.
    #[default]
    Memory,
    /// In Redis, shared by every server: the budget of scope `s` and id `i`
    /// is under `{prefix}{s}:{i}`.
    #[cfg(feature = "redis")]
    Redis {
        /// The connection.
        store: crate::redis::RedisStore,
        /// Key prefix (e.g. `"llm:"`).
        prefix: String,
        /// Concurrent reservations per budget.
        hold_slots: usize,
        /// While Redis is unavailable.
        failover: crate::fallback::FailoverOptions,
    },
}
