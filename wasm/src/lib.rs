//! `ratebound-core` for WebAssembly, wrapped by the npm package `ratebound`
//! (`node/`). This layer is deliberately low level: numbers in (times in µs
//! since the Unix epoch), numeric status codes out, a decision's figures in
//! memory JS reads. The JavaScript wrapper validates inputs, converts
//! milliseconds, and throws `TypeError` / `RangeError` with readable
//! messages, which keeps `core::fmt` out of the `.wasm`.
//!
//! Status codes returned by `check`-like methods: `1` allowed, `0` denied,
//! `-1` the cost can never fit (an error, not a denial).
//!
//! Five modules are built from this crate, each carrying only what its
//! entry calls: feature `limiters` (the main entry `ratebound`: GCRA,
//! sliding windows, policy sets, the keyed store), feature `retry`
//! (`ratebound/retry`: backoff and the retry budget), feature `budget`
//! (`ratebound/budget`, whose config, state and results are flat arrays of
//! numbers), feature `model-quota` (`ratebound/model-quota`, flat the same
//! way), and features `budget` + `model-quota` + `redis` (`ratebound/redis`:
//! both with what it takes from core besides — key layout, script
//! arguments, shares, the policy-set fold).
//!
//! The last three are bound by wasm-bindgen. The first two are not: their
//! objects are exported as plain functions over handles (`src/abi/`), which
//! the package's `src/abi.js` and `src/retry-abi.js` wrap, because
//! wasm-bindgen's per-method glue (borrow flags, `Result` conversion,
//! multi-value shims) was a third of the main module and the main entry has
//! a size goal (20 KB).

#![cfg_attr(all(target_arch = "wasm32", not(feature = "std")), no_std)]

extern crate alloc;

// Without std on wasm32: a small allocator, and panics trap (core never
// panics on input; this is for bugs only, and keeps `core::fmt` out).
#[cfg(all(target_arch = "wasm32", not(feature = "std")))]
#[global_allocator]
static ALLOC: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

#[cfg(all(target_arch = "wasm32", not(feature = "std"), not(test)))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    core::arch::wasm32::unreachable()
}

#[cfg(feature = "redis")]
use ratebound_core::ConfigError;
#[cfg(feature = "redis")]
use wasm_bindgen::prelude::*;

// Private: its functions are for `abi.js` and `retry-abi.js` (they trust
// the handles they are given), reached as the module's exports (by symbol: hence `pub` in a
// private module), not from Rust. Handles are pointers: see its safety note.
#[cfg(any(feature = "limiters", feature = "retry"))]
#[allow(unsafe_code, unreachable_pub)]
mod abi;
#[cfg(feature = "retry")]
mod backoff;
#[cfg(feature = "retry")]
pub use backoff::{Backoff, RetryBudget};
#[cfg(feature = "limiters")]
mod machine;
// Before `keyed`, which uses its `decision_getters!`.
#[cfg(feature = "limiters")]
#[macro_use]
mod limiters;
#[cfg(feature = "limiters")]
pub use limiters::Single;
#[cfg(feature = "limiters")]
mod keyed;
#[cfg(feature = "limiters")]
pub use keyed::KeyedStore;
#[cfg(any(feature = "limiters", feature = "redis"))]
mod policy;
#[cfg(any(feature = "limiters", feature = "redis"))]
pub use policy::policy_fold;
#[cfg(feature = "redis")]
pub use policy::policy_fold_for_js;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
pub use redis::{
    gcra_redis_args, gcra_share, limit_name_valid, limits_share_refusal_of, redis_key,
    redis_key_parts_valid, share_of_limit, uncounted_rows,
};
#[cfg(feature = "budget")]
mod budget;
#[cfg(feature = "budget")]
mod budget_layout;
#[cfg(any(feature = "budget", feature = "model-quota"))]
mod flat;
#[cfg(feature = "budget")]
pub use budget::Budget;
#[cfg(feature = "model-quota")]
mod model_quota;
#[cfg(feature = "model-quota")]
pub use model_quota::ModelQuota;

/// A JS number to `u64`: callers validate; anything odd saturates safely
/// (NaN and negatives to 0, huge values to `u64::MAX`).
#[cfg(any(
    feature = "limiters",
    feature = "retry",
    feature = "budget",
    feature = "model-quota",
    feature = "redis"
))]
fn int(x: f64) -> u64 {
    x as u64
}

/// True for a JS number that is an integer in `0..=2^53 − 1`.
#[cfg(any(
    feature = "limiters",
    feature = "retry",
    feature = "budget",
    feature = "model-quota"
))]
fn valid(x: f64) -> bool {
    (0.0..=9_007_199_254_740_991.0).contains(&x) && (x as u64) as f64 == x
}

#[cfg(feature = "redis")]
fn config_field(e: ConfigError) -> JsValue {
    // A static field name; the JS wrapper turns it into a RangeError message.
    JsValue::from_str(e.field())
}
