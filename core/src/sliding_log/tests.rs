use super::*;

fn t(us: u64) -> Instant {
    Instant::from_micros(us)
}

#[test]
fn window_edges_are_exact() {
    let l: SlidingLog<4> = SlidingLog::new(2, Duration::from_micros(100)).unwrap();
    let mut s = SlidingLogState::default();
    assert!(l.check(&mut s, t(1_000), 1).unwrap().allowed);
    assert!(l.check(&mut s, t(1_050), 1).unwrap().allowed);
    let d = l.check(&mut s, t(1_099), 1).unwrap();
    assert_eq!(
        (d.allowed, d.retry_at, d.reset_at),
        (false, t(1_100), t(1_150))
    );
    assert!(l.check(&mut s, t(1_100), 1).unwrap().allowed);
    assert!(!l.check(&mut s, t(1_149), 1).unwrap().allowed);
}

#[test]
fn slots_never_lower_the_limit() {
    // 2 slots, limit 100: every unit-cost request up to the limit fits,
    // and remaining says so; merged entries count until the later one
    // leaves the window.
    let l: SlidingLog<2> = SlidingLog::new(100, Duration::from_micros(10)).unwrap();
    let mut s = SlidingLogState::default();
    assert_eq!(l.check(&mut s, t(0), 1).unwrap().remaining, 99);
    assert_eq!(l.check(&mut s, t(1), 1).unwrap().remaining, 98);
    for i in 2..100 {
        let d = l.check(&mut s, t(2 + i % 3), 1).unwrap();
        assert!(d.allowed && d.remaining == 99 - i, "request {i}: {d:?}");
    }
    assert_eq!(s.entries().count(), 2);
    let d = l.check(&mut s, t(5), 1).unwrap();
    assert!(!d.allowed);
    // The entry at 0 was merged forward: nothing comes back before t=11.
    assert!(d.retry_at >= t(11), "{d:?}");
    assert!(l.peek(&s, d.retry_at, 1).unwrap().allowed);
}

#[test]
fn one_slot_still_counts_every_unit() {
    // Found in review: with one slot there is no pair to merge; the new
    // unit must join the entry, not vanish.
    let l: SlidingLog<1> = SlidingLog::new(3, Duration::from_micros(10)).unwrap();
    let mut s = SlidingLogState::default();
    for i in 0..3 {
        assert!(l.check(&mut s, t(i), 1).unwrap().allowed, "unit {i}");
    }
    let d = l.check(&mut s, t(3), 1).unwrap();
    assert!(!d.allowed);
    assert_eq!(d.retry_at, t(12)); // all three moved to t=2
    assert!(l.check(&mut s, t(12), 3).unwrap().allowed);
}

#[test]
fn a_denial_writes_nothing() {
    // Found by the sliding_log fuzz target: a denial used to drop expired
    // entries and advance `last`.
    let l: SlidingLog<4> = SlidingLog::new(7, Duration::from_micros(10)).unwrap();
    let mut s = SlidingLogState::default();
    assert!(l.check(&mut s, t(0), 7).unwrap().allowed);
    let before = s.clone();
    assert!(!l.check(&mut s, t(5), 1).unwrap().allowed);
    assert_eq!(s, before);
}

#[test]
fn backwards_time_after_expiry_grants_nothing() {
    // Regression: check(0), check(10, cost 0) drops the entry, then a
    // step back to 5 must not open a second slot in [0, 10).
    let l: SlidingLog<4> = SlidingLog::new(1, Duration::from_micros(10)).unwrap();
    let mut s = SlidingLogState::default();
    assert!(l.check(&mut s, t(0), 1).unwrap().allowed);
    assert!(l.check(&mut s, t(10), 0).unwrap().allowed);
    assert!(
        l.check(&mut s, t(5), 1).unwrap().allowed,
        "treated as t = 10"
    );
    assert!(!l.check(&mut s, t(15), 1).unwrap().allowed);
    assert_eq!(s.entries().next().map(|e| e.at), Some(10));
}

#[test]
fn backwards_time_records_at_newest() {
    let l: SlidingLog<4> = SlidingLog::new(3, Duration::from_micros(10)).unwrap();
    let mut s = SlidingLogState::default();
    l.check(&mut s, t(100), 1).unwrap();
    l.check(&mut s, t(50), 1).unwrap();
    let ats: heapless::Vec<u64, 4> = s.entries().map(|e| e.at).collect();
    assert_eq!(&ats[..], &[100, 100]);
    // At 105 both still count.
    assert_eq!(l.peek(&s, t(105), 0).unwrap().remaining, 1);
}

#[test]
fn zero_capacity_log_is_rejected() {
    assert!(SlidingLog::<0>::new(1, Duration::from_secs(1)).is_err());
    assert!(SlidingLog::<1>::new(0, Duration::from_secs(1)).is_err());
    assert!(SlidingLog::<1>::new(1, Duration::ZERO).is_err());
}

#[test]
fn restore_takes_what_from_parts_takes_and_changes_nothing_otherwise() {
    let e = |at, cost| LogEntry { at, cost };
    let cases: [(u64, &[LogEntry]); 6] = [
        (10, &[e(1, 1), e(5, 2), e(10, 1)]),
        (10, &[]),
        (10, &[e(5, 1), e(4, 1)]),  // out of order
        (10, &[e(5, 1), e(11, 1)]), // later than last
        (10, &[e(1, 1), e(2, 1), e(3, 1), e(4, 1), e(5, 1)]), // more than 4 slots
        (7, &[e(7, 3), e(7, 1), e(7, 2), e(7, 1)]),
    ];
    for (i, (last, entries)) in cases.into_iter().enumerate() {
        let built = SlidingLogState::<4>::from_parts(last, entries.iter().copied());
        let mut held = SlidingLogState::<4>::from_parts(3, [e(2, 9)]).unwrap();
        let before = held.clone();
        let restored = held.view_mut().restore(last, entries.iter().copied());
        assert_eq!(restored, built.is_some(), "case {i}");
        assert_eq!(held, built.unwrap_or(before), "case {i}");
    }
}

#[test]
fn a_view_decides_by_its_own_slots() {
    // The same log config over states of 2 and 8 slots: the 2-slot one
    // merges (its unit counts longer), the 8-slot one stays exact.
    let l: SlidingLog<64> = SlidingLog::new(3, Duration::from_micros(10)).unwrap();
    let mut two = SlidingLogState::<2>::default();
    let mut eight = SlidingLogState::<8>::default();
    for at in 0..3 {
        assert!(l.check_in(two.view_mut(), t(at), 1).unwrap().allowed);
        assert!(l.check_in(eight.view_mut(), t(at), 1).unwrap().allowed);
    }
    assert_eq!((two.view().slots(), eight.view().slots()), (2, 8));
    assert_eq!(two.entries().count(), 2);
    assert_eq!(eight.entries().count(), 3);
    // At 10 the exact log frees the unit from 0; the merged one holds it to 11.
    assert!(l.peek_in(eight.view(), t(10), 1).unwrap().allowed);
    assert!(!l.peek_in(two.view(), t(10), 1).unwrap().allowed);
    assert!(l.peek_in(two.view(), t(11), 1).unwrap().allowed);
    assert!(!l.is_idle_in(two.view(), t(11)));
    assert!(l.is_idle_in(two.view(), t(12)));
}
