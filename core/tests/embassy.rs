//! The embassy shell, driven by embassy-time's mock driver (global, so this
//! file holds the only test that touches it).
#![cfg(feature = "embassy")]

use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};

use embassy_time::MockDriver;
use ratebound_core::{AtomicGcra, Duration, Gcra, Instant};

#[test]
fn acquire_waits_on_the_embassy_timer_until_retry_at() {
    let driver = MockDriver::get();
    driver.reset();
    let limiter = AtomicGcra::new(Gcra::new(2, 1, Duration::from_millis(500)).unwrap()).unwrap();
    let mut cx = Context::from_waker(Waker::noop());

    // Conversions.
    let now: Instant = embassy_time::Instant::now().into();
    assert_eq!(now, Instant::ZERO);
    let d: Duration = embassy_time::Duration::from_millis(3).into();
    assert_eq!(d, Duration::from_millis(3));

    for _ in 0..2 {
        let mut f = pin!(ratebound_core::embassy::acquire(&limiter, 1));
        assert!(matches!(f.as_mut().poll(&mut cx), Poll::Ready(Ok(d)) if d.allowed));
    }
    let mut f = pin!(ratebound_core::embassy::acquire(&limiter, 1));
    assert!(
        f.as_mut().poll(&mut cx).is_pending(),
        "bucket empty: must wait"
    );
    driver.advance(embassy_time::Duration::from_millis(499));
    assert!(f.as_mut().poll(&mut cx).is_pending(), "one ms early");
    driver.advance(embassy_time::Duration::from_millis(1));
    assert!(matches!(f.as_mut().poll(&mut cx), Poll::Ready(Ok(d)) if d.allowed));

    // A cost that can never fit fails at once instead of waiting forever.
    let mut f = pin!(ratebound_core::embassy::acquire(&limiter, 3));
    assert!(matches!(f.as_mut().poll(&mut cx), Poll::Ready(Err(_))));
}
