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

/// A detector with the volatility criterion on (three deviations, at least `floor`) and the
/// absolute one out of reach.
fn volatility_detector(floor: i64) -> PriceMoveDetector {
    PriceMoveDetector::new(
        Rule::new("jumps", 1),
        PriceMoveThresholds {
            min_move: 500_000,
            sigmas: 3_000_000,
            sigma_floor: floor,
            ..PriceMoveThresholds::default()
        },
    )
}

const WINDOW: i64 = 5 * MINUTE;

/// One fill a second into each window `0..windows`, alternating 0.500 and 0.505: changes of
/// ±0.005 from close to close, as many up as down.
fn quiet_history(detector: &mut PriceMoveDetector, windows: i64) {
    for window in 0..windows {
        let signal = observe(
            detector,
            window * WINDOW + 1_000,
            500_000 + 5_000 * (window % 2),
        );
        assert!(signal.is_none(), "window {window}: {signal:?}");
    }
}

#[test]
fn a_move_large_for_a_quiet_token_fires_on_its_trailing_deviation() {
    let mut detector = volatility_detector(20_000);
    // Windows 0..=25: when window 26 begins, the closes of 0..=25 give 25 changes.
    quiet_history(&mut detector, 26);
    // 13 × +0.005 and 12 × −0.005: sample variance (25 · 25 · 0.005² − 0.005²) / (25 · 24),
    // deviation 0.0050990…, floored to scale 6; three of them are 0.015297. Mean 0.0002.
    let signal = observe(&mut detector, 26 * WINDOW + 500, 535_000).unwrap();
    assert_eq!(signal.input("fired_on"), Some("sigma"));
    assert_eq!(signal.input("sigma"), Some("0.005099"));
    assert_eq!(signal.input("mean_change"), Some("0.000200"));
    assert_eq!(signal.input("sigma_samples"), Some("25"));
    assert_eq!(signal.input("move"), Some("0.030000"));
    assert_eq!(signal.input("from_price"), Some("0.505000"));
    assert_eq!(signal.window_start_ms, 25 * WINDOW + 1_000);
    assert_eq!(
        signal
            .thresholds
            .iter()
            .find(|value| value.name == "sigmas")
            .map(|value| value.value.as_str()),
        Some("3.000000")
    );
}

#[test]
fn the_deviation_multiple_and_the_floor_are_both_required() {
    // Floor 0.01: 0.012 is below three deviations (0.015297), 0.016 is above.
    let mut detector = volatility_detector(10_000);
    quiet_history(&mut detector, 26);
    assert!(observe(&mut detector, 26 * WINDOW + 500, 517_000).is_none());
    let signal = observe(&mut detector, 26 * WINDOW + 600, 521_000).unwrap();
    assert_eq!(signal.input("move"), Some("0.016000"));
    // Floor 0.02: the same 0.016 is three deviations but under the floor.
    let mut detector = volatility_detector(20_000);
    quiet_history(&mut detector, 26);
    assert!(observe(&mut detector, 26 * WINDOW + 600, 521_000).is_none());
}

#[test]
fn too_few_changes_never_fire_on_the_deviation() {
    let mut detector = volatility_detector(20_000);
    // Windows 0..=11: 11 changes known when window 12 begins, one short of the minimum.
    quiet_history(&mut detector, 12);
    assert!(observe(&mut detector, 12 * WINDOW + 500, 560_000).is_none());
    // Windows 0..=12: exactly the minimum of 12 when window 13 begins.
    let mut detector = volatility_detector(20_000);
    quiet_history(&mut detector, 13);
    let signal = observe(&mut detector, 13 * WINDOW + 500, 535_000).unwrap();
    assert_eq!(signal.input("sigma_samples"), Some("12"));
}

#[test]
fn closes_kept_under_another_window_length_start_over() {
    let mut detector = volatility_detector(20_000);
    quiet_history(&mut detector, 26);
    // The same token's state, restored under a window three times as long: the closes'
    // indices would mean other windows, so they are dropped and too few changes remain.
    let state = detector.state().clone();
    let mut longer = PriceMoveDetector::restore(
        Rule::new("jumps", 1),
        PriceMoveThresholds {
            window_ms: 3 * WINDOW,
            ..volatility_detector(20_000).thresholds
        },
        state,
    );
    assert!(observe(&mut longer, 27 * WINDOW + 500, 535_000).is_none());
}

#[test]
fn empty_windows_count_as_no_change_and_the_default_records_carry_no_deviation() {
    let mut volatile = volatility_detector(20_000);
    // Fills in windows 0, 30 and 31 only: once window 31 has begun, the closes of 0 and 30
    // are known, 29 changes of 0 and one of +0.005 between them: deviation
    // sqrt((30 · 0.005² − 0.005²) / (30 · 29)) = 0.000912…
    observe(&mut volatile, 1_000, 500_000);
    observe(&mut volatile, 30 * WINDOW + 1_000, 505_000);
    assert!(observe(&mut volatile, 31 * WINDOW + 1_000, 505_000).is_none());
    let signal = observe(&mut volatile, 31 * WINDOW + 2_000, 530_000).unwrap();
    assert_eq!(signal.input("sigma_samples"), Some("30"));
    assert_eq!(signal.input("sigma"), Some("0.000912"));
    // The default rule (volatility off) says nothing of it.
    let mut plain = detector();
    observe(&mut plain, 0, 400_000);
    let signal = observe(&mut plain, MINUTE, 500_000).unwrap();
    assert_eq!(signal.input("fired_on"), None);
    assert_eq!(signal.input("sigma_samples"), None);
    assert!(signal.thresholds.iter().all(|value| value.name != "sigmas"));
}
