//! Arrays between JavaScript and the limiters: buffers of f64s in wasm
//! memory (see the safety note of [`super`]).

use core::alloc::Layout;

/// `len` f64s at `buf` (see the module's safety note).
pub(super) unsafe fn f64s<'a>(buf: usize, len: usize) -> &'a mut [f64] {
    if len == 0 {
        return &mut [];
    }
    unsafe { core::slice::from_raw_parts_mut(buf as *mut f64, len) }
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
