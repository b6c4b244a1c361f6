//! The objects of the main entry (`ratebound`: [`limiters`]) and of
//! `ratebound/retry` ([`retry`]) for JavaScript, as plain functions over
//! handles: numbers in, numbers out, arrays through buffers of f64 in wasm
//! memory ([`buffers`]). `node/src/abi.js` and `node/src/retry-abi.js` turn
//! them back into objects for the package's API; nothing here decides
//! anything the objects' own methods do not.
//!
//! # Safety
//!
//! A handle is the address of a boxed object: returned by its `*_new`
//! function (0 when the config is refused; then [`rb_error_ptr`] and
//! [`rb_error_len`] give the field's name) and valid until its `*_free`.
//! These functions trust what they are given: only those two files call them,
//! with handles they got from `*_new` for that kind of object and have not
//! freed (they drop a handle as they free it, once, explicitly or from a
//! `FinalizationRegistry`), and with buffers (`buf`, `len`) they got from
//! [`buffers::rb_alloc`] of at least `len` f64s. The numbers themselves are checked
//! as the objects check them (odd ones saturate safely).

use alloc::boxed::Box;
use core::sync::atomic::{AtomicUsize, Ordering};

#[cfg(feature = "limiters")]
mod buffers;
#[cfg(feature = "limiters")]
mod limiters;
#[cfg(feature = "retry")]
mod retry;

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

/// The object behind `h` (see the module's safety note: `abi.js` and
/// `retry-abi.js` never pass a refused config's 0, nor a handle they have
/// freed).
unsafe fn obj<'a, T>(h: usize) -> &'a mut T {
    unsafe { &mut *(h as *mut T) }
}

/// Drop the object behind `h` (see the module's safety note).
unsafe fn drop_obj<T>(h: usize) {
    if h != 0 {
        drop(unsafe { Box::from_raw(h as *mut T) });
    }
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
