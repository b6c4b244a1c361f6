//! Errors: construction-time [`ConfigError`] and the one runtime error,
//! [`CostError`], for a request that can never be allowed.
//!
//! A denial ("not yet") is never an error: it is a [`Decision`](crate::Decision)
//! with `allowed == false` and a `retry_at`.

use core::fmt;

/// A configuration was rejected at construction (or when deserialized).
///
/// The message names the offending field; after construction succeeds no
/// operation can fail for configuration reasons.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A field that must be at least 1 was 0.
    Zero {
        /// The field's name.
        field: &'static str,
    },
    /// A field, or a product of fields, exceeds what the exact arithmetic allows.
    TooLarge {
        /// The field's name.
        field: &'static str,
        /// The largest accepted value.
        max: u64,
    },
    /// A field has a value that makes no sense (explained in `reason`).
    Invalid {
        /// The field's name.
        field: &'static str,
        /// Why it was rejected.
        reason: &'static str,
    },
}

impl ConfigError {
    /// The field at fault.
    pub const fn field(&self) -> &'static str {
        match self {
            ConfigError::Zero { field }
            | ConfigError::TooLarge { field, .. }
            | ConfigError::Invalid { field, .. } => field,
        }
    }

    /// The message after `` invalid config: `field` ``, in pieces for
    /// writers without `core::fmt` (the wasm build): text, a number if any,
    /// then text. [`Display`](fmt::Display) writes the same.
    pub const fn message_parts(&self) -> (&'static str, Option<u64>, &'static str) {
        match self {
            ConfigError::Zero { .. } => (" must be at least 1", None, ""),
            ConfigError::TooLarge { max, .. } => (" is too large (at most ", Some(*max), ")"),
            ConfigError::Invalid { reason, .. } => (" ", None, reason),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (before, number, after) = self.message_parts();
        write!(f, "invalid config: `{}`{before}", self.field())?;
        if let Some(n) = number {
            write!(f, "{n}")?;
        }
        f.write_str(after)
    }
}

impl core::error::Error for ConfigError {}

/// A request that can never be allowed, however long the caller waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CostError {
    /// The cost exceeds the limiter's capacity (burst size, window limit or
    /// budget maximum).
    InsufficientCapacity {
        /// The cost asked for.
        cost: u64,
        /// The most this limiter can ever allow at once.
        capacity: u64,
    },
}

impl fmt::Display for CostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CostError::InsufficientCapacity { cost, capacity } => write!(
                f,
                "cost {cost} can never be allowed: the limiter's capacity is {capacity}"
            ),
        }
    }
}

impl core::error::Error for CostError {}

impl CostError {
    /// A stable snake_case code (`insufficient_capacity`), the same in every backend.
    pub const fn code(&self) -> &'static str {
        match self {
            CostError::InsufficientCapacity { .. } => "insufficient_capacity",
        }
    }
}

pub(crate) const fn require_nonzero(v: u64, field: &'static str) -> Result<(), ConfigError> {
    if v == 0 {
        Err(ConfigError::Zero { field })
    } else {
        Ok(())
    }
}

pub(crate) const fn require_at_most(
    v: u64,
    max: u64,
    field: &'static str,
) -> Result<(), ConfigError> {
    if v > max {
        Err(ConfigError::TooLarge { field, max })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::string::ToString;

    use super::ConfigError;

    /// What a user reads, for each kind of config error: `Display` and the
    /// pieces the wasm build writes say the same.
    #[test]
    fn config_errors_read_as_written() {
        let cases = [
            (
                ConfigError::Zero { field: "capacity" },
                "invalid config: `capacity` must be at least 1",
            ),
            (
                ConfigError::TooLarge {
                    field: "amount",
                    max: 9_007_199_254_740_991,
                },
                "invalid config: `amount` is too large (at most 9007199254740991)",
            ),
            (
                ConfigError::Invalid {
                    field: "limits",
                    reason: "must not be empty",
                },
                "invalid config: `limits` must not be empty",
            ),
        ];
        for (e, text) in cases {
            assert_eq!(e.to_string(), text);
            let (before, n, after) = e.message_parts();
            let pieces = std::format!(
                "invalid config: `{}`{before}{}{after}",
                e.field(),
                n.map_or(std::string::String::new(), |n| n.to_string())
            );
            assert_eq!(pieces, text);
        }
    }
}
