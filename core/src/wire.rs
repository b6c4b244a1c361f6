//! What the shells exchange with core: the derived numbers the Redis
//! scripts take as arguments, and the codes their replies and the wasm
//! build's status values use. Rust shells read them from here; the Lua and
//! JS copies that cannot (constants in a script, a name table in JS) are
//! compared with these by tests (`std-adapters/tests/wire.rs`), so a shell
//! that drifts fails.

use crate::backoff::{GiveUp, Jitter};
use crate::budget::{Budget, Dimension};
use crate::model_quota::{Blocked, IN_FLIGHT_RETRY, LOG_SLOTS, MAX_IN_FLIGHT};
use crate::Gcra;

/// A GCRA's exact step and burst, as the scripts compute with them:
/// `[p, a, tau_us, tau_rem]` — one token takes `p / a` µs (reduced), and the
/// burst window is `tau_us + tau_rem / a` µs (`capacity × p / a`). Every
/// value is below 2^53 (checked when the `Gcra` was built).
pub fn gcra_args(g: &Gcra) -> [u64; 4] {
    let (p, a) = g.reduced_rate();
    let scaled = g.capacity().saturating_mul(p);
    [p, a, scaled / a, scaled % a]
}

/// `[p, a, tau_us, tau_rem]` of a count that is not a bucket.
pub const NO_GCRA: [u64; 4] = [0, 1, 0, 0];

/// The model-quota script's constants: `[LOG_SLOTS, MAX_IN_FLIGHT,
/// IN_FLIGHT_RETRY µs]` (`M_LOG_SLOTS`, `M_MAX_IN_FLIGHT`,
/// `M_IN_FLIGHT_RETRY` in `model.lua`).
pub const MODEL_CONSTANTS: [u64; 3] = [
    LOG_SLOTS as u64,
    MAX_IN_FLIGHT as u64,
    IN_FLIGHT_RETRY.as_micros(),
];

/// What blocked a model-quota admission: 0 nothing, 1 total, 2 success, 3
/// requests in flight.
pub const fn blocked_code(b: Option<Blocked>) -> u8 {
    match b {
        None => 0,
        Some(Blocked::Total) => 1,
        Some(Blocked::Success) => 2,
        Some(Blocked::InFlight) => 3,
    }
}

/// The inverse of [`blocked_code`]; `None` for an unknown code.
pub const fn blocked_from_code(c: u64) -> Option<Option<Blocked>> {
    match c {
        0 => Some(None),
        1 => Some(Some(Blocked::Total)),
        2 => Some(Some(Blocked::Success)),
        3 => Some(Some(Blocked::InFlight)),
        _ => None,
    }
}

/// Jitter names in code order (0 none, 1 full, 2 equal, 3 decorrelated).
pub const JITTER_NAMES: [&str; 4] = ["none", "full", "equal", "decorrelated"];

/// The jitter of a code (see [`JITTER_NAMES`]).
pub const fn jitter_from_code(c: u32) -> Option<Jitter> {
    match c {
        0 => Some(Jitter::None),
        1 => Some(Jitter::Full),
        2 => Some(Jitter::Equal),
        3 => Some(Jitter::Decorrelated),
        _ => None,
    }
}

/// Why a retry sequence gave up, by code (0: it did not).
pub const GIVE_UP_NAMES: [&str; 5] = [
    "",
    "max_retries",
    "max_elapsed",
    "hint_beyond_cap",
    "retry_budget",
];

/// The code of a give-up reason (see [`GIVE_UP_NAMES`]).
pub const fn give_up_code(g: GiveUp) -> u8 {
    match g {
        GiveUp::MaxRetries => 1,
        GiveUp::MaxElapsed => 2,
        GiveUp::HintBeyondCap { .. } => 3,
        GiveUp::RetryBudget => 4,
    }
}

/// A budget dimension's code in the budget script (1 requests, 2 tokens, 3 cost).
pub const fn dimension_code(d: Dimension) -> u64 {
    match d {
        Dimension::Requests => 1,
        Dimension::Tokens => 2,
        Dimension::Cost => 3,
    }
}

/// Budget script reply codes: 0 done, 2 unknown reservation.
pub const BUDGET_OK: u64 = 0;
/// See [`BUDGET_OK`].
pub const BUDGET_UNKNOWN_RESERVATION: u64 = 2;

/// The amounts at which limit `i` of `budget` crosses each alert threshold
/// (`ceil(max × bp / 10 000)`, in threshold order) and starts auto-throttling
/// (`None` without throttle), as core compares them.
pub fn budget_amounts(
    budget: &Budget,
    i: usize,
) -> ([u64; crate::budget::MAX_THRESHOLDS], Option<u64>) {
    budget.amounts(i)
}

/// Limit `i` of `budget` as each window records it: `(kind, digest)` —
/// what it counts (dimension code × 2^50 + horizon µs, 0 for a month) and a
/// digest of its max and the thresholds (both below 2^53, never 0; `(0, 0)`
/// past the limits). Windows are matched to limits by kind and re-read
/// when the digest differs ([`Budget::reconfigure`]).
pub fn budget_limit_tags(budget: &Budget, i: usize) -> (u64, u64) {
    (budget.kind(i), budget.digest(i))
}

/// The tags of limit `i` of the config `budget` was first made with (kept
/// through [`Budget::reconfigure`]; `(0, 0)` past its limits): a written
/// window of kind 0 — from before windows recorded their limits — takes
/// them.
pub fn budget_root_tags(budget: &Budget, i: usize) -> (u64, u64) {
    budget.root(i)
}

/// The Redis key of the state `name` under `tag`, byte by byte:
/// `prefix{tag}:name`, with `%`, `{` and `}` in the tag escaped (`%25`,
/// `%7B`, `%7D`) so a tag can never end early or collide with another, and
/// an empty tag written `{%}` (Redis hashes a whole key whose tag is `{}`;
/// a bare `%`, which escaping never produces, keeps every key of one call in
/// one cluster slot). Every shell that stores states in Redis (std, npm)
/// builds its keys from this, so they share them. The prefix and name are
/// checked by [`redis_key_parts_valid`].
pub fn redis_key<'a>(
    prefix: &'a [u8],
    tag: &'a [u8],
    name: &'a [u8],
) -> impl Iterator<Item = u8> + 'a {
    let empty: &'static [u8] = if tag.is_empty() { b"%" } else { b"" };
    prefix
        .iter()
        .copied()
        .chain(core::iter::once(b'{'))
        .chain(empty.iter().copied())
        .chain(tag.iter().flat_map(|&b| {
            let (bytes, len): ([u8; 3], usize) = match b {
                b'%' => (*b"%25", 3),
                b'{' => (*b"%7B", 3),
                b'}' => (*b"%7D", 3),
                _ => ([b, 0, 0], 1),
            };
            bytes.into_iter().take(len)
        }))
        .chain(*b"}:")
        .chain(name.iter().copied())
}

/// Whether `name` may name a limit (a policy-set member, a Redis budget or
/// model quota): 1 to 64 bytes of visible ASCII (no spaces) other than `{`,
/// `}`, `"` and `\`. Names are part of Redis keys (where a brace would move
/// the cluster hash tag) and quoted items of the `RateLimit-Policy` header.
///
/// ```
/// use ratebound_core::wire::limit_name_valid;
/// assert!(limit_name_valid(b"per-minute") && limit_name_valid(&[b'a'; 64]));
/// assert!(!limit_name_valid(b"") && !limit_name_valid(&[b'a'; 65]));
/// assert!(!limit_name_valid(b"a b") && !limit_name_valid(b"a{b") && !limit_name_valid("é".as_bytes()));
/// ```
pub fn limit_name_valid(name: &[u8]) -> bool {
    (1..=64).contains(&name.len())
        && name
            .iter()
            .all(|&b| b.is_ascii_graphic() && !matches!(b, b'{' | b'}' | b'"' | b'\\'))
}

/// Whether `prefix` and `name` may form a [`redis_key`]: neither holds `{`
/// or `}` (which would move the cluster hash tag). Tags may hold anything.
pub fn redis_key_parts_valid(prefix: &[u8], name: &[u8]) -> bool {
    !prefix.iter().chain(name).any(|b| matches!(b, b'{' | b'}'))
}

/// The budget script's config arguments, in order (`budget.lua`'s
/// `budget_config`): hold slots, hold TTL µs, UTC offset µs, throttle on
/// (1/0), throttle's minimum delay µs, the number of limits; per limit its
/// dimension code, fixed length µs (0 for a month), max, throttle amount
/// (2^53 − 1 without throttle), the number of thresholds and each
/// threshold's basis points and amount; per limit its `(kind, digest)`
/// ([`budget_limit_tags`]); the number of root tags and each
/// ([`budget_root_tags`]). Every value is within ±2^53 (durations saturate
/// there, as core's times do), so the Rust and JS shells pass them exactly.
pub fn budget_script_config(budget: &Budget, hold_slots: u64, mut push: impl FnMut(i64)) {
    use crate::budget::Horizon;
    let safe = |x: u64| x.min(crate::MAX_SAFE_INTEGER) as i64;
    let c = budget.config();
    push(safe(hold_slots));
    push(safe(c.hold_ttl.as_micros()));
    push(i64::from(c.utc_offset_secs) * 1_000_000);
    push(i64::from(c.throttle.is_some()));
    push(safe(c.throttle.map_or(0, |t| t.min_delay.as_micros())));
    push(c.limits.len() as i64);
    for (i, l) in c.limits.iter().enumerate() {
        let (thresholds, throttle) = budget_amounts(budget, i);
        push(dimension_code(l.dimension) as i64);
        push(safe(match l.horizon {
            Horizon::Fixed(d) => d.as_micros(),
            Horizon::CalendarMonth => 0,
        }));
        push(safe(l.max));
        push(safe(throttle.unwrap_or(u64::MAX)));
        push(c.alert_thresholds_bp.len() as i64);
        for (&bp, amount) in c.alert_thresholds_bp.iter().zip(thresholds) {
            push(i64::from(bp));
            push(safe(amount));
        }
    }
    for i in 0..c.limits.len() {
        let (kind, digest) = budget_limit_tags(budget, i);
        push(safe(kind));
        push(safe(digest));
    }
    let roots = (0..crate::budget::MAX_LIMITS)
        .map(|i| budget_root_tags(budget, i))
        .take_while(|&(kind, _)| kind != 0);
    push(roots.clone().count() as i64);
    for (kind, digest) in roots {
        push(safe(kind));
        push(safe(digest));
    }
}

/// The model script's config arguments (`model.lua`), around the window's
/// name (`Window::name`, passed as text): `[total max (0: none), success
/// max, period µs]`, the window, `[hold TTL µs, then the total and the
/// success bucket's [p, a, tau_us, tau_rem]` ([`gcra_args`], [`NO_GCRA`]
/// without one)`]`. Durations saturate at 2^53 − 1 µs, as core's times do.
pub fn model_script_config(
    quota: &crate::model_quota::ModelQuota,
) -> ([u64; 3], crate::model_quota::Window, [u64; 9]) {
    let safe = |x: u64| x.min(crate::MAX_SAFE_INTEGER);
    let total = quota.total_bucket().map_or(NO_GCRA, gcra_args);
    let success = quota.success_bucket().map_or(NO_GCRA, gcra_args);
    (
        [
            quota.total_max().unwrap_or(0),
            quota.success_max(),
            safe(quota.period().as_micros()),
        ],
        quota.window(),
        [
            safe(quota.hold_ttl().as_micros()),
            total[0],
            total[1],
            total[2],
            total[3],
            success[0],
            success[1],
            success[2],
            success[3],
        ],
    )
}
