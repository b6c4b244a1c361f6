//! The retry budget: how many retries a whole client may still make.

use crate::ConfigError;

/// A retry budget in the style of gRPC retry throttling: a token count that
/// each failure lowers by 1 and each success raises by `token_ratio`;
/// retries are refused while tokens are at or below half of `max_tokens`.
///
/// Counted in thousandths of a token, so the state is one integer.
///
/// ```
/// use ratebound_core::backoff::{RetryBudget, RetryBudgetState};
/// let budget = RetryBudget::new(4, 500)?; // 4 tokens, +0.5 per success
/// let mut st = RetryBudgetState::default(); // full
/// assert!(budget.on_failure(&mut st)); // 3 > 2
/// assert!(!budget.on_failure(&mut st)); // 2 ≤ 2: refuse
/// budget.on_success(&mut st); // 2.5
/// assert!(budget.can_retry(&st));
/// # Ok::<(), ratebound_core::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(try_from = "RetryBudgetConfig", into = "RetryBudgetConfig")
)]
pub struct RetryBudget {
    max_milli: u64,
    ratio_milli: u64,
}

/// The serialized form of [`RetryBudget`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct RetryBudgetConfig {
    /// Token count when full, 1..=1 000 000.
    pub max_tokens: u32,
    /// Tokens regained per success, in thousandths, 1..=1000.
    pub token_ratio_milli: u32,
}

impl TryFrom<RetryBudgetConfig> for RetryBudget {
    type Error = ConfigError;
    fn try_from(c: RetryBudgetConfig) -> Result<Self, ConfigError> {
        RetryBudget::new(c.max_tokens, c.token_ratio_milli)
    }
}
impl From<RetryBudget> for RetryBudgetConfig {
    fn from(b: RetryBudget) -> Self {
        RetryBudgetConfig {
            max_tokens: (b.max_milli / 1_000) as u32,
            token_ratio_milli: b.ratio_milli as u32,
        }
    }
}

/// How far a [`RetryBudget`] is below full, in thousandths of a token (0 = full).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RetryBudgetState {
    /// Thousandths of a token spent.
    pub spent_milli: u64,
}

impl RetryBudget {
    /// `max_tokens` (1..=1 000 000) regaining `token_ratio_milli` / 1000 per success (1..=1000).
    pub const fn new(max_tokens: u32, token_ratio_milli: u32) -> Result<RetryBudget, ConfigError> {
        if max_tokens == 0 {
            return Err(ConfigError::Zero {
                field: "max_tokens",
            });
        }
        if max_tokens > 1_000_000 {
            return Err(ConfigError::TooLarge {
                field: "max_tokens",
                max: 1_000_000,
            });
        }
        if token_ratio_milli == 0 {
            return Err(ConfigError::Zero {
                field: "token_ratio_milli",
            });
        }
        if token_ratio_milli > 1_000 {
            return Err(ConfigError::TooLarge {
                field: "token_ratio_milli",
                max: 1_000,
            });
        }
        Ok(RetryBudget {
            max_milli: max_tokens as u64 * 1_000,
            ratio_milli: token_ratio_milli as u64,
        })
    }
    /// Tokens left, in thousandths.
    pub const fn tokens_milli(&self, st: &RetryBudgetState) -> u64 {
        self.max_milli.saturating_sub(st.spent_milli)
    }
    /// True while retries are allowed: tokens above half of the maximum.
    pub const fn can_retry(&self, st: &RetryBudgetState) -> bool {
        self.tokens_milli(st) > self.max_milli / 2
    }
    /// Record a failed call; returns whether a retry is allowed now.
    pub fn on_failure(&self, st: &mut RetryBudgetState) -> bool {
        st.spent_milli = st.spent_milli.saturating_add(1_000).min(self.max_milli);
        self.can_retry(st)
    }
    /// Record a successful call.
    pub fn on_success(&self, st: &mut RetryBudgetState) {
        st.spent_milli = st
            .spent_milli
            .min(self.max_milli)
            .saturating_sub(self.ratio_milli);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors() {
        // "max_tokens (1..=1 000 000) regaining token_ratio_milli / 1000 per
        // success (1..=1000)": each end of each range.
        assert!(RetryBudget::new(0, 1).is_err());
        assert!(RetryBudget::new(1_000_001, 1).is_err());
        assert!(RetryBudget::new(1, 0).is_err());
        assert!(RetryBudget::new(1, 1_001).is_err());
        assert!(RetryBudget::new(1, 1).is_ok());
        assert!(RetryBudget::new(1_000_000, 1_000).is_ok());
    }

    #[test]
    fn retry_budget_recovers() {
        let rb = RetryBudget::new(10, 100).unwrap();
        let mut st = RetryBudgetState::default();
        let allowed = (0..20).filter(|_| rb.on_failure(&mut st)).count();
        assert_eq!(allowed, 4); // 9,8,7,6 > 5
        for _ in 0..10 {
            rb.on_success(&mut st);
        }
        assert_eq!(rb.tokens_milli(&st), 1_000);
        for _ in 0..100 {
            rb.on_success(&mut st);
        }
        assert_eq!(rb.tokens_milli(&st), 10_000);
    }
}
