//! The main entry's objects for JavaScript, as plain functions over
//! handles: numbers in, numbers out, arrays through buffers of f64 in wasm
//! memory. `node/src/abi.js` turns them back into objects for the package's
//! API; nothing here decides anything the objects' own methods do not.
//!
//! # Safety
//!
//! A handle is the address of a boxed object: returned by its `*_new`
//! function (0 when the config is refused; then [`rb_error_ptr`] and
//! [`rb_error_len`] give the field's name) and valid until its `*_free`.
//! These functions trust what they are given: only `abi.js` calls them,
//! with handles it got from `*_new` for that kind of object and has not
//! freed (it drops a handle as it frees it, once, explicitly or from a
//! `FinalizationRegistry`), and with buffers (`buf`, `len`) it got from
//! [`rb_alloc`] of at least `len` f64s. The numbers themselves are checked
//! as the objects check them (odd ones saturate safely).

use alloc::boxed::Box;
use core::alloc::Layout;
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::backoff::{Backoff, RetryBudget};
use crate::keyed::KeyedStore;
use crate::limiters::Single;
use crate::machine::Machine;

static ERROR_PTR: AtomicUsize = AtomicUsize::new(0);
static ERROR_LEN: AtomicUsize = AtomicUsize::new(0);

/// A new object's handle, or 0 with its config error kept for JS to read.
fn handle<T>(made: Result<T, &'static str>) -> usize {
    match made {
        Ok(t) => Box::into_raw(Box::new(t)) as usize,
        Err(field) => {
            ERROR_PTR.store(field.as_ptr() as usize, Ordering::Relaxed);
            ERROR_LEN.store(field.len(), Ordering::Relaxed);
            0
        }
    }
}

/// The object behind `h` (see the module's safety note: `abi.js` never
/// passes a refused config's 0, nor a handle it has freed).
unsafe fn obj<'a, T>(h: usize) -> &'a mut T {
    unsafe { &mut *(h as *mut T) }
}

/// Drop the object behind `h` (see the module's safety note).
unsafe fn drop_obj<T>(h: usize) {
    if h != 0 {
        drop(unsafe { Box::from_raw(h as *mut T) });
    }
}

/// `len` f64s at `buf` (see the module's safety note).
unsafe fn f64s<'a>(buf: usize, len: usize) -> &'a mut [f64] {
    if len == 0 {
        return &mut [];
    }
    unsafe { core::slice::from_raw_parts_mut(buf as *mut f64, len) }
}

/// Copy `v` to `buf` if it fits in `cap`; returns `v`'s length.
unsafe fn put(v: &[f64], buf: usize, cap: usize) -> usize {
    if !v.is_empty() && v.len() <= cap {
        // (A copy of `v.len()` f64s into a buffer of `cap` — see the module's
        // safety note; not `copy_from_slice`, whose length check would
        // carry a panic's message into the module.)
        unsafe { core::ptr::copy_nonoverlapping(v.as_ptr(), buf as *mut f64, v.len()) }
    }
    v.len()
}

/// Address of the last refused config's field name (UTF-8).
#[no_mangle]
pub extern "C" fn rb_error_ptr() -> usize {
    ERROR_PTR.load(Ordering::Relaxed)
}

/// Length in bytes of the last refused config's field name.
#[no_mangle]
pub extern "C" fn rb_error_len() -> usize {
    ERROR_LEN.load(Ordering::Relaxed)
}

/// A buffer of `n` f64s (zeros) for arrays in and out; 0 for none (`n` 0,
/// or no memory).
#[no_mangle]
pub extern "C" fn rb_alloc(n: usize) -> usize {
    match Layout::array::<f64>(n) {
        Ok(layout) if n > 0 => unsafe { alloc::alloc::alloc_zeroed(layout) as usize },
        _ => 0,
    }
}

/// Free a buffer from [`rb_alloc`]`(n)`.
#[no_mangle]
pub extern "C" fn rb_free(buf: usize, n: usize) {
    if let (Ok(layout), true) = (Layout::array::<f64>(n), buf != 0) {
        unsafe { alloc::alloc::dealloc(buf as *mut u8, layout) }
    }
}

// ---- Single limiters ----

/// A single limiter of `kind` ([`Machine::of_kind`]: 0 GCRA, 1 sliding
/// log, 2 sliding counter, with its three numbers); its handle (0: refused).
#[no_mangle]
pub extern "C" fn one_new(kind: u32, a: f64, b: f64, c: f64) -> usize {
    handle(Machine::of_kind(kind, a, b, c).map(Single::of))
}
/// Free a single limiter.
#[no_mangle]
pub extern "C" fn one_free(h: usize) {
    unsafe { drop_obj::<Single>(h) }
}
/// [`Single::check`].
#[no_mangle]
pub extern "C" fn one_check(h: usize, now_us: f64, cost: f64) -> i32 {
    unsafe { obj::<Single>(h) }.check(now_us, cost)
}
/// [`Single::peek`].
#[no_mangle]
pub extern "C" fn one_peek(h: usize, now_us: f64, cost: f64) -> i32 {
    unsafe { obj::<Single>(h) }.peek(now_us, cost)
}
/// [`Single::allow`].
#[no_mangle]
pub extern "C" fn one_allow(h: usize, now_us: f64, cost: f64) -> i32 {
    unsafe { obj::<Single>(h) }.allow(now_us, cost)
}
/// [`Single::is_idle`].
#[no_mangle]
pub extern "C" fn one_is_idle(h: usize, now_us: f64) -> bool {
    unsafe { obj::<Single>(h) }.is_idle(now_us)
}
/// [`Single::at_most`].
#[no_mangle]
pub extern "C" fn one_at_most(h: usize, now_us: f64, n: f64) -> i32 {
    unsafe { obj::<Single>(h) }.at_most(now_us, n)
}
/// [`Single::taken`].
#[no_mangle]
pub extern "C" fn one_taken(h: usize) -> f64 {
    unsafe { obj::<Single>(h) }.taken()
}
/// [`Single::refund`].
#[no_mangle]
pub extern "C" fn one_refund(h: usize, now_us: f64, n: f64) -> i32 {
    unsafe { obj::<Single>(h) }.refund(now_us, n)
}
/// [`Single::export_state`] into `buf` if it fits in `cap` f64s; returns
/// its length either way.
#[no_mangle]
pub extern "C" fn one_export(h: usize, buf: usize, cap: usize) -> usize {
    let v = unsafe { obj::<Single>(h) }.export_state();
    unsafe { put(&v, buf, cap) }
}
/// [`Single::import_state`] of `len` f64s at `buf`.
#[no_mangle]
pub extern "C" fn one_import(h: usize, buf: usize, len: usize) -> bool {
    unsafe { obj::<Single>(h).import_state(f64s(buf, len)) }
}
/// [`Single::out_ptr`].
#[no_mangle]
pub extern "C" fn one_out(h: usize) -> usize {
    unsafe { obj::<Single>(h) }.out_ptr() as usize
}

// ---- Keyed store ----

/// A keyed store of `kind`'s limiters ([`Machine::of_kind`]), holding at
/// most `max` keys, evicting the least recently used when `lru` is 1 (else
/// refusing new keys when full); its handle (0: refused).
#[no_mangle]
pub extern "C" fn keyed_new(kind: u32, a: f64, b: f64, c: f64, max: f64, lru: u32) -> usize {
    handle(Machine::of_kind(kind, a, b, c).map(|m| KeyedStore::of(m, max, lru != 0)))
}
/// Free a keyed store.
#[no_mangle]
pub extern "C" fn keyed_free(h: usize) {
    unsafe { drop_obj::<KeyedStore>(h) }
}
/// [`KeyedStore::check`].
#[no_mangle]
pub extern "C" fn keyed_check(h: usize, slot: f64, now_us: f64, cost: f64) -> i32 {
    unsafe { obj::<KeyedStore>(h) }.check(slot, now_us, cost)
}
/// [`KeyedStore::allow`].
#[no_mangle]
pub extern "C" fn keyed_allow(h: usize, slot: f64, now_us: f64, cost: f64) -> i32 {
    unsafe { obj::<KeyedStore>(h) }.allow(slot, now_us, cost)
}
/// [`KeyedStore::peek`].
#[no_mangle]
pub extern "C" fn keyed_peek(h: usize, slot: f64, now_us: f64, cost: f64) -> i32 {
    unsafe { obj::<KeyedStore>(h) }.peek(slot, now_us, cost)
}
/// [`KeyedStore::inserted`].
#[no_mangle]
pub extern "C" fn keyed_inserted(h: usize) -> f64 {
    unsafe { obj::<KeyedStore>(h) }.inserted()
}
/// [`KeyedStore::evicted`].
#[no_mangle]
pub extern "C" fn keyed_evicted(h: usize) -> f64 {
    unsafe { obj::<KeyedStore>(h) }.evicted()
}
/// [`KeyedStore::evict_idle`]: the slots emptied into `buf` (the caller
/// gives room for [`KeyedStore::size`] of them); returns how many were
/// written.
#[no_mangle]
pub extern "C" fn keyed_evict_idle(h: usize, now_us: f64, buf: usize, cap: usize) -> usize {
    let emptied = unsafe { obj::<KeyedStore>(h) }.evict_idle(now_us);
    let out = unsafe { f64s(buf, cap) };
    for (o, &slot) in out.iter_mut().zip(&emptied) {
        *o = f64::from(slot);
    }
    emptied.len().min(cap)
}
/// [`KeyedStore::touch`].
#[no_mangle]
pub extern "C" fn keyed_touch(h: usize, slot: f64) {
    unsafe { obj::<KeyedStore>(h) }.touch(slot)
}
/// [`KeyedStore::size`].
#[no_mangle]
pub extern "C" fn keyed_size(h: usize) -> f64 {
    unsafe { obj::<KeyedStore>(h) }.size()
}
/// [`KeyedStore::out_ptr`].
#[no_mangle]
pub extern "C" fn keyed_out(h: usize) -> usize {
    unsafe { obj::<KeyedStore>(h) }.out_ptr() as usize
}

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

// ---- Policy sets ----

/// [`policy_fold`](crate::policy_fold) of `len` f64s at `buf`, its 6
/// numbers written to `out`.
#[no_mangle]
pub extern "C" fn policy_fold(now_us: f64, buf: usize, len: usize, out: usize) {
    let set = crate::policy_fold(now_us, unsafe { f64s(buf, len) });
    unsafe { put(&set, out, 6) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_config_is_a_zero_handle_naming_its_field() {
        let field =
            || unsafe { core::slice::from_raw_parts(rb_error_ptr() as *const u8, rb_error_len()) };
        assert_eq!(one_new(0, 0.0, 1.0, 1e6), 0);
        assert_eq!(field(), b"capacity");
        assert_eq!(one_new(1, 1.0, 1e6, 7.0), 0);
        assert_eq!(field(), b"slots");
        assert_eq!(keyed_new(2, 0.0, 1e6, 0.0, 10.0, 0), 0);
        assert_eq!(field(), b"limit");
        assert_eq!(keyed_new(3, 1.0, 1e6, 0.0, 10.0, 0), 0);
        assert_eq!(field(), b"kind");
    }

    #[test]
    fn arrays_cross_whole_or_say_how_long_they_are() {
        assert_eq!(rb_alloc(0), 0);
        let buf = rb_alloc(4);
        assert_ne!(buf, 0);
        let log = one_new(1, 10.0, 1e6, 8.0);
        for i in 0..3 {
            assert_eq!(one_check(log, 1e15 + f64::from(i), 1.0), 1);
        }
        // [last, 3 × (at, cost)]: 7 numbers do not fit in 4, none written.
        unsafe { f64s(buf, 4) }.fill(-1.0);
        assert_eq!(one_export(log, buf, 4), 7);
        assert!(unsafe { f64s(buf, 4) }.iter().all(|x| *x == -1.0));
        let big = rb_alloc(7);
        assert_eq!(one_export(log, big, 7), 7);
        let copy = one_new(1, 10.0, 1e6, 8.0);
        assert!(one_import(copy, big, 7));
        assert_eq!(one_export(copy, buf, 4), 7);
        // Evicting more slots than the buffer holds writes what fits.
        let keyed = keyed_new(0, 1.0, 1.0, 1e6, 10.0, 0);
        for k in 0..6 {
            assert_eq!(keyed_check(keyed, -1.0, 1e15 + f64::from(k), 1.0), 1);
        }
        assert_eq!(keyed_size(keyed), 6.0);
        assert_eq!(keyed_evict_idle(keyed, 2e15, buf, 4), 4);
        assert_eq!(keyed_size(keyed), 0.0);
        for h in [log, copy] {
            one_free(h);
        }
        keyed_free(keyed);
        rb_free(buf, 4);
        rb_free(big, 7);
    }
}
