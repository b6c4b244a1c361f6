//! Backoff and the retry budget (`ratebound/retry`).

use super::{drop_obj, handle, obj};
use crate::backoff::{Backoff, RetryBudget};

// ---- Backoff and retry budget ----

/// [`Backoff::new`]'s handle (0: refused).
#[no_mangle]
pub extern "C" fn backoff_new(
    initial_us: f64,
    cap_us: f64,
    factor_num: u32,
    factor_den: u32,
    jitter: u32,
    max_retries: f64,
    max_elapsed_us: f64,
) -> usize {
    handle(Backoff::new(
        initial_us,
        cap_us,
        factor_num,
        factor_den,
        jitter,
        max_retries,
        max_elapsed_us,
    ))
}
/// Free a backoff.
#[no_mangle]
pub extern "C" fn backoff_free(h: usize) {
    unsafe { drop_obj::<Backoff>(h) }
}
/// [`Backoff::start`].
#[no_mangle]
pub extern "C" fn backoff_start(h: usize, now_us: f64, seed: f64) {
    unsafe { obj::<Backoff>(h) }.start(now_us, seed)
}
/// [`Backoff::next`].
#[no_mangle]
pub extern "C" fn backoff_next(h: usize, now_us: f64, hint_us: f64) -> i32 {
    unsafe { obj::<Backoff>(h) }.next(now_us, hint_us)
}
/// [`Backoff::next_with_budget`] with the retry budget behind `budget`.
#[no_mangle]
pub extern "C" fn backoff_next_with_budget(
    h: usize,
    now_us: f64,
    hint_us: f64,
    budget: usize,
) -> i32 {
    unsafe { obj::<Backoff>(h).next_with_budget(now_us, hint_us, obj::<RetryBudget>(budget)) }
}
/// [`Backoff::attempt`].
#[no_mangle]
pub extern "C" fn backoff_attempt(h: usize) -> u32 {
    unsafe { obj::<Backoff>(h) }.attempt()
}
/// [`Backoff::out_ptr`].
#[no_mangle]
pub extern "C" fn backoff_out(h: usize) -> usize {
    unsafe { obj::<Backoff>(h) }.out_ptr() as usize
}

/// [`RetryBudget::new`]'s handle (0: refused).
#[no_mangle]
pub extern "C" fn retry_budget_new(max_tokens: u32, ratio_milli: u32) -> usize {
    handle(RetryBudget::new(max_tokens, ratio_milli))
}
/// Free a retry budget.
#[no_mangle]
pub extern "C" fn retry_budget_free(h: usize) {
    unsafe { drop_obj::<RetryBudget>(h) }
}
/// [`RetryBudget::can_retry`].
#[no_mangle]
pub extern "C" fn retry_budget_can_retry(h: usize) -> bool {
    unsafe { obj::<RetryBudget>(h) }.can_retry()
}
/// [`RetryBudget::on_failure`].
#[no_mangle]
pub extern "C" fn retry_budget_on_failure(h: usize) -> bool {
    unsafe { obj::<RetryBudget>(h) }.on_failure()
}
/// [`RetryBudget::on_success`].
#[no_mangle]
pub extern "C" fn retry_budget_on_success(h: usize) {
    unsafe { obj::<RetryBudget>(h) }.on_success()
}
/// [`RetryBudget::tokens_milli`].
#[no_mangle]
pub extern "C" fn retry_budget_tokens_milli(h: usize) -> f64 {
    unsafe { obj::<RetryBudget>(h) }.tokens_milli()
}
/// [`RetryBudget::export_state`].
#[no_mangle]
pub extern "C" fn retry_budget_export(h: usize) -> f64 {
    unsafe { obj::<RetryBudget>(h) }.export_state()
}
/// [`RetryBudget::import_state`].
#[no_mangle]
pub extern "C" fn retry_budget_import(h: usize, spent_milli: f64) -> bool {
    unsafe { obj::<RetryBudget>(h) }.import_state(spent_milli)
}
