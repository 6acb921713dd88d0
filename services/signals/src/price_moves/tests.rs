use super::*;

const MINUTE: i64 = 60_000;

fn observe(detector: &mut PriceMoveDetector, at_ms: i64, price: i64) -> Option<Signal> {
    let link = format!("t{at_ms}");
    detector.observe(PriceObservation {
        token_id: "yes",
        condition_id: "0xc",
        at_ms,
        price,
        link: &link,
    })
}

fn detector() -> PriceMoveDetector {
    PriceMoveDetector::new(Rule::new("jumps", 1), PriceMoveThresholds::default())
}

#[test]
fn ten_points_within_five_minutes_fire_from_the_window_low() {
    let mut detector = detector();
    assert!(observe(&mut detector, 0, 420_000).is_none());
    assert!(observe(&mut detector, MINUTE, 400_000).is_none());
    assert!(observe(&mut detector, 2 * MINUTE, 460_000).is_none());
    let signal = observe(&mut detector, 4 * MINUTE, 500_000).unwrap();
    assert_eq!(signal.window_start_ms, MINUTE, "from the low at one minute");
    assert_eq!(signal.window_end_ms, Some(4 * MINUTE));
    assert_eq!(signal.input("from_price"), Some("0.400000"));
    assert_eq!(signal.input("to_price"), Some("0.500000"));
    assert_eq!(signal.input("move"), Some("0.100000"));
    assert_eq!(signal.input("price_basis"), Some("last_trade"));
    assert_eq!(signal.links, ["t60000", "t240000"]);
    // The move continues within the cooldown: no second signal.
    assert!(observe(&mut detector, 5 * MINUTE, 560_000).is_none());
}

#[test]
fn a_move_slower_than_the_window_does_not_fire() {
    let mut detector = detector();
    // Nine points every five minutes: never ten within one window.
    for step in 0..5 {
        let signal = observe(
            &mut detector,
            step * 5 * MINUTE + step,
            300_000 + step * 90_000,
        );
        assert!(signal.is_none(), "{signal:?}");
    }
}

#[test]
fn a_fall_fires_from_the_window_high_and_a_late_fill_moves_nothing() {
    let mut detector = detector();
    observe(&mut detector, 0, 700_000);
    observe(&mut detector, 10 * MINUTE, 710_000);
    // A fill older than the window behind the newest: skipped.
    assert!(observe(&mut detector, MINUTE, 100_000).is_none());
    let signal = observe(&mut detector, 12 * MINUTE, 600_000).unwrap();
    assert_eq!(signal.window_start_ms, 10 * MINUTE);
    assert_eq!(signal.input("move"), Some("-0.110000"));
    // After the cooldown (until 17 minutes) a new move is a new signal with its own id.
    assert!(observe(&mut detector, 14 * MINUTE, 600_000).is_none());
    let again = observe(&mut detector, 18 * MINUTE, 480_000).unwrap();
    assert_ne!(again.signal_id, signal.signal_id);
    assert_eq!(
        again.window_start_ms,
        14 * MINUTE,
        "the window high is the earliest 0.60"
    );
    assert_eq!(again.input("move"), Some("-0.120000"));
}

#[test]
fn a_late_fill_joins_the_window_in_time_order_but_raises_nothing_itself() {
    let mut detector = detector();
    assert!(observe(&mut detector, 4 * MINUTE, 500_000).is_none());
    // Late by three minutes, 0.62: a fall to 0.50 happened, but it is not told backwards.
    assert!(observe(&mut detector, MINUTE, 620_000).is_none());
    // The late point counts for later moves: 0.62 at one minute, 0.51 at five is a fall
    // within the window, measured from the late point.
    let signal = observe(&mut detector, 5 * MINUTE, 510_000).unwrap();
    assert_eq!(signal.window_start_ms, MINUTE);
    assert_eq!(signal.window_end_ms, Some(5 * MINUTE));
    assert_eq!(signal.input("move"), Some("-0.110000"));
}

#[test]
fn points_older_than_the_window_never_count_whatever_order_they_came_in() {
    let mut detector = detector();
    assert!(observe(&mut detector, 10 * MINUTE, 500_000).is_none());
    // Late, still inside the window of the newest (10 min): kept in its place.
    assert!(observe(&mut detector, 6 * MINUTE, 380_000).is_none());
    // At 11.5 minutes the window starts at 6.5: the 0.38 at 6 minutes is out of it, so 0.49
    // is no rise from it.
    assert!(observe(&mut detector, 11 * MINUTE + 30_000, 490_000).is_none());
}
