//! Why a call to Redis gave no answer.

use std::time::Duration as StdDuration;

/// Why a call to Redis gave no answer. [`is_unavailable`](StoreError::is_unavailable)
/// tells a store that cannot answer now from an answer about this call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Redis answered with an error, or the connection failed.
    #[error("redis: {0}")]
    Redis(redis::RedisError),
    /// No answer within the timeout.
    #[error("redis: no answer within {0:?}")]
    Timeout(StdDuration),
    /// Not tried: a call failed less than this long ago (the fail-over's
    /// `retry_after`), so Redis is skipped until then.
    #[error("redis: unavailable (a call failed within the last {0:?})")]
    Down(StdDuration),
    /// Redis ran the call after its deadline had passed (it was stalled or
    /// overloaded), so it changed nothing: the caller had already given up.
    #[error("redis: the call reached the server after its deadline and changed nothing")]
    Late,
    /// A key tag over `max_tag_len` bytes.
    #[error("key tag is {len} bytes, over the limit of {max}")]
    TagTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A member's cost can never fit (more than its capacity).
    #[error("member {member} ({name}): cost {cost} can never fit (capacity {capacity})")]
    Cost {
        /// Index of the member.
        member: usize,
        /// Its name.
        name: String,
        /// The cost asked.
        cost: u64,
        /// Its capacity.
        capacity: u64,
    },
    /// A call that cannot be made (no members, the same name twice, a
    /// name with a brace).
    #[error("invalid call: {0}")]
    Invalid(&'static str),
    /// A configuration that cannot work, by core's or the fail-over's
    /// rule (a limit's name, a share among the replicas, the fallback's
    /// sizing), naming the field.
    #[error("{0}")]
    Config(#[from] ratebound_core::ConfigError),
    /// The script answered something unexpected.
    #[error("unexpected reply from the script: {0}")]
    Protocol(String),
}

impl StoreError {
    /// True when Redis was unreachable, failed or was too slow (a failure
    /// policy applies), as opposed to a bad request.
    pub fn is_unavailable(&self) -> bool {
        use redis::{ErrorKind, ServerErrorKind};
        match self {
            StoreError::Timeout(_) | StoreError::Down(_) | StoreError::Late => true,
            // Only what says "not now": I/O, a dropped or refused connection,
            // a server loading, failing over or busy. Anything else (a
            // script error, WRONGTYPE, OOM, NOPERM, CROSSSLOT) is an answer
            // about this call: falling back, let alone failing open, would
            // hide a misconfiguration.
            StoreError::Redis(e) => {
                e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || matches!(
                        e.kind(),
                        ErrorKind::Server(
                            ServerErrorKind::BusyLoading
                                | ServerErrorKind::TryAgain
                                | ServerErrorKind::ClusterDown
                                | ServerErrorKind::MasterDown
                                | ServerErrorKind::ReadOnly
                        )
                    )
                    || e.code() == Some("BUSY")
            }
            _ => false,
        }
    }
}

impl StoreError {
    /// True when the connection itself failed or went silent (I/O, dropped,
    /// refused, no answer in time): it is rebuilt before the next call.
    pub(crate) fn breaks_connection(&self) -> bool {
        match self {
            StoreError::Timeout(_) => true,
            StoreError::Redis(e) => {
                e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
            }
            _ => false,
        }
    }
}

impl From<redis::RedisError> for StoreError {
    fn from(e: redis::RedisError) -> Self {
        // The scripts' own refusal of a call past its deadline.
        if e.code() == Some("LATE") {
            StoreError::Late
        } else {
            StoreError::Redis(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::StoreError;

    /// What the scripts answer for a call past its deadline, as the wire
    /// carries it.
    #[test]
    fn a_late_reply_is_late_and_unavailable() {
        let v =
            redis::parse_redis_value(b"-LATE the call reached the server after its deadline\r\n")
                .unwrap();
        let e = StoreError::from(v.extract_error().unwrap_err());
        assert!(matches!(e, StoreError::Late), "{e:?}");
        assert!(e.is_unavailable());
        let other = redis::parse_redis_value(b"-ERR something else\r\n").unwrap();
        let e = StoreError::from(other.extract_error().unwrap_err());
        assert!(matches!(e, StoreError::Redis(_)) && !e.is_unavailable());
    }
}
