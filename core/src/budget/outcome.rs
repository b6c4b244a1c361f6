//! What budget operations answer: admissions, denials, settlements and
//! the errors of requests that can never succeed.

use core::fmt;

#[cfg(doc)]
use super::Budget;
use super::{Alerts, Dimension, Reservation, Usage};
use crate::Instant;

/// Why a reservation or spend was denied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum DenyReason {
    /// A window limit has no room for the estimate.
    Limit,
    /// Auto-throttle pacing: wait until `retry_at`.
    Throttled,
    /// The state's reservation table is full of live holds.
    TooManyReservations,
    /// A replica deciding alone while the store it shares the budget
    /// through is unavailable: the amount fits the whole limit (`limit`)
    /// but never this replica's share of it
    /// ([`Budget::share_refusal`]); retry once the store may be back.
    AboveShare,
}

/// A denial: why, when to retry, and which limit bound it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Denial {
    /// Why.
    pub reason: DenyReason,
    /// Earliest instant at which the same request can succeed if nothing
    /// else changes: the binding window's end, the throttle's end, or the
    /// next hold expiry. (A release by another caller may free room sooner.)
    pub retry_at: Instant,
    /// Index of the binding window limit, for [`DenyReason::Limit`].
    pub limit: Option<u8>,
}

/// The admission part of [`Budget::reserve`].
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Held: settle or release it.
    Granted(Reservation),
    /// Not now.
    Denied(Denial),
}

/// What [`Budget::reserve`] returns.
#[derive(Debug, PartialEq, Eq)]
pub struct Reserved {
    /// Granted or denied.
    pub admission: Admission,
    /// Alerts fired (limit hits on denial).
    pub alerts: Alerts,
}

/// What [`Budget::settle`] returns.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Settled {
    /// What was charged (the actual usage, amounts clamped to 2^50).
    pub charged: Usage,
    /// True when the hold had lapsed before this settle: the usage is charged
    /// all the same, but it was not held, so it may push usage past a limit.
    pub late: bool,
    /// Alerts fired by the charge.
    pub alerts: Alerts,
}

/// What [`Budget::try_spend`] returns.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Spent {
    /// `None` when charged, else the denial (nothing charged).
    pub denied: Option<Denial>,
    /// Alerts fired.
    pub alerts: Alerts,
}

/// A budget request that can never succeed, or a reservation the state does not know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BudgetError {
    /// The amount exceeds a per-request maximum (`limit: None`) or a window
    /// limit's whole max (`limit: Some(index)`).
    ExceedsLimit {
        /// The dimension.
        dimension: Dimension,
        /// The amount asked for.
        requested: u64,
        /// The maximum it exceeds.
        max: u64,
        /// Which window limit, or `None` for a per-request maximum.
        limit: Option<u8>,
    },
    /// The state has no reservation slots (`BudgetState<0>`); use `try_spend`.
    NoReservationSlots,
    /// No hold with this id (already settled or released, or from another
    /// state). Nothing was charged; use [`Budget::record`] to charge anyway.
    UnknownReservation {
        /// The id.
        id: u64,
    },
}

impl fmt::Display for BudgetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BudgetError::ExceedsLimit {
                dimension,
                requested,
                max,
                limit: None,
            } => {
                write!(
                    f,
                    "{dimension:?} {requested} exceeds the per-request maximum {max}"
                )
            }
            BudgetError::ExceedsLimit {
                dimension,
                requested,
                max,
                limit: Some(i),
            } => {
                write!(
                    f,
                    "{dimension:?} {requested} exceeds limit #{i}'s whole window maximum {max}"
                )
            }
            BudgetError::NoReservationSlots => {
                write!(
                    f,
                    "this budget state has no reservation slots (R = 0); use try_spend"
                )
            }
            BudgetError::UnknownReservation { id } => {
                write!(
                    f,
                    "no reservation {id} is held (already settled or released?)"
                )
            }
        }
    }
}

impl core::error::Error for BudgetError {}

impl BudgetError {
    /// A stable snake_case code (`exceeds_limit`, `unknown_reservation`),
    /// the same in every backend.
    pub const fn code(&self) -> &'static str {
        match self {
            BudgetError::ExceedsLimit { .. } => "exceeds_limit",
            BudgetError::NoReservationSlots => "no_reservation_slots",
            BudgetError::UnknownReservation { .. } => "unknown_reservation",
        }
    }
}
