//! The limiters and the keyed store (the main entry `ratebound`).

use super::buffers::f64s;
use super::{drop_obj, handle, obj};
use crate::keyed::KeyedStore;
use crate::limiters::Single;
use crate::machine::Machine;

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
/// [`Single::export_state`]: its first `cap` numbers written to `buf`;
/// returns its whole length (the state is in `buf` when that is at most
/// `cap`; `abi.js` asks again with room for it when not).
#[no_mangle]
pub extern "C" fn one_export(h: usize, buf: usize, cap: usize) -> usize {
    let out = unsafe { f64s(buf, cap) };
    let mut len = 0;
    unsafe { obj::<Single>(h) }.export_state(|x| {
        if let Some(o) = out.get_mut(len) {
            *o = x;
        }
        len += 1;
    });
    len
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
    let out = unsafe { f64s(buf, cap) };
    let mut written = 0;
    unsafe { obj::<KeyedStore>(h) }.evict_idle(now_us, |slot| {
        if let Some(o) = out.get_mut(written) {
            *o = f64::from(slot);
            written += 1;
        }
    });
    written
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

// ---- Policy sets ----

/// [`policy_fold`](crate::policy_fold) of `len` f64s at `buf`, its 6
/// numbers written to `out`.
#[no_mangle]
pub extern "C" fn policy_fold(now_us: f64, buf: usize, len: usize, out: usize) {
    let set = crate::policy_fold(now_us, unsafe { f64s(buf, len) });
    // (`out` holds 6 f64s: see the module's safety note.)
    unsafe { (out as *mut [f64; 6]).write(set) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::buffers::{rb_alloc, rb_free};
    use crate::abi::{rb_error_len, rb_error_ptr};

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
        // [last, 3 × (at, cost)]: 7 numbers; with room for 4, the first 4
        // are written and nothing past them.
        let big = rb_alloc(7);
        assert_eq!(one_export(log, big, 7), 7);
        let five = rb_alloc(5);
        unsafe { f64s(five, 5) }.fill(-1.0);
        assert_eq!(one_export(log, five, 4), 7);
        assert_eq!(unsafe { f64s(five, 4) }, unsafe { &f64s(big, 7)[..4] });
        assert_eq!(unsafe { f64s(five, 5) }[4], -1.0);
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
        rb_free(five, 5);
    }
}
