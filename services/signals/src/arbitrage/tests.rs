use polytape_model::{
    BookLevel, Side,
    samples::{self, NO_TOKEN, YES_TOKEN},
};

use super::*;
use crate::test_support::{dec, price_change as change};

/// Applies a batch and judges it at once, as the input going quiet would: each batch of these
/// tests is a complete instant.
trait ApplyJudged {
    fn apply_judged(&mut self, updates: &[BookUpdate<'_>]) -> Result<Vec<Signal>, UnitsError>;
}

impl ApplyJudged for ArbitrageDetector {
    fn apply_judged(&mut self, updates: &[BookUpdate<'_>]) -> Result<Vec<Signal>, UnitsError> {
        let mut signals = self.apply(updates)?;
        signals.extend(self.judge_pending());
        Ok(signals)
    }
}

fn book(token_id: &str, at_ms: i64, bids: &[(&str, &str)], asks: &[(&str, &str)]) -> BookSnapshot {
    let levels = |levels: &[(&str, &str)]| {
        levels
            .iter()
            .map(|(price, size)| BookLevel {
                price: dec(price),
                size: dec(size),
            })
            .collect()
    };
    BookSnapshot {
        token_id: token_id.to_owned(),
        timestamp_ms: at_ms,
        bids: levels(bids),
        asks: levels(asks),
        ..samples::book_snapshot()
    }
}

fn detector(thresholds: ArbitrageThresholds) -> ArbitrageDetector {
    ArbitrageDetector::new(Rule::new("binary", 1), Rule::new("neg-risk", 1), thresholds)
}

#[test]
fn the_edge_is_a_dollar_less_every_ask_and_its_fee_and_the_size_is_the_thinnest_leg() {
    let legs = [
        (
            Some(Top {
                price: 480_000,
                size: 30_000_000,
            }),
            TakerFee::default(),
        ),
        (
            Some(Top {
                price: 500_000,
                size: 12_500_000,
            }),
            TakerFee::default(),
        ),
    ];
    assert_eq!(
        edge(Direction::BuyEveryLeg, &legs),
        Some(Edge {
            edge: 20_000,
            size: 12_500_000
        })
    );
    // 100 bps of each ask: 0.0048 + 0.005.
    let charged = legs.map(|(top, _)| (top, TakerFee { bps: 100 }));
    assert_eq!(edge(Direction::BuyEveryLeg, &charged).unwrap().edge, 10_200);
    // Selling every leg at these prices brings 0.98 for a set minted at 1.
    assert_eq!(edge(Direction::SellEveryLeg, &legs).unwrap().edge, -20_000);
    // A leg without a top: no edge at all.
    assert_eq!(
        edge(
            Direction::BuyEveryLeg,
            &[legs[0], (None, TakerFee::default())]
        ),
        None
    );
}

#[test]
fn fees_round_up_never_overstating_an_edge() {
    let fee = TakerFee { bps: 7 };
    // 0.333333 × 7 / 10,000 = 0.00023333… → 0.000234.
    assert_eq!(fee.per_share(333_333), 234);
    assert_eq!(TakerFee { bps: 100 }.per_share(500_000), 5_000);
    assert_eq!(TakerFee::default().per_share(999_999), 0);
    // A market whose fees are off charges nothing, whatever its base rate says.
    let market = samples::market();
    assert_eq!(market.fees_enabled, Some(false));
    assert_eq!(TakerFee::of(&market), Some(TakerFee { bps: 0 }));
    let charged = Market {
        fees_enabled: Some(true),
        ..market.clone()
    };
    assert_eq!(TakerFee::of(&charged), Some(TakerFee { bps: 1000 }));
    // On (or unknown) at an unknown rate: not judged, rather than judged without a fee.
    for fees_enabled in [Some(true), None] {
        let unknown = Market {
            fees_enabled,
            taker_base_fee_bps: None,
            ..market.clone()
        };
        assert_eq!(TakerFee::of(&unknown), None);
        assert_eq!(Structure::binary(&unknown), None);
    }
}

#[test]
fn a_binary_window_opens_tracks_its_best_edge_and_closes_as_one_signal() {
    let mut detector = detector(ArbitrageThresholds::default());
    detector.watch(Structure::binary(&samples::market()).unwrap(), 0);

    // 0.55 + 0.50: no window.
    let yes = book(YES_TOKEN, 1_000, &[("0.53", "10")], &[("0.55", "40")]);
    let no = book(NO_TOKEN, 1_000, &[("0.44", "10")], &[("0.50", "25")]);
    let opened = detector
        .apply_judged(&[BookUpdate::Snapshot(&yes), BookUpdate::Snapshot(&no)])
        .unwrap();
    assert!(opened.is_empty(), "{opened:?}");

    // NO ask 0.40 × 10 appears: 0.55 + 0.40 = 0.95, a five-cent window of 10 sets.
    let better_no = change(NO_TOKEN, 2_000, Side::Sell, "0.40", "10");
    let opened = detector
        .apply_judged(&[BookUpdate::Change(&better_no)])
        .unwrap();
    let [open] = opened.as_slice() else {
        panic!("one window opens: {opened:?}");
    };
    assert_eq!(open.kind, SignalKind::BinaryArbitrage);
    assert_eq!(open.window_start_ms, 2_000);
    assert_eq!(open.window_end_ms, None);
    assert_eq!(open.input("max_edge"), Some("0.050000"));
    assert_eq!(open.input("size_at_max_edge"), Some("10.000000"));
    assert_eq!(open.input("direction"), Some("buy_every_leg"));

    // YES ask improves to 0.52 × 8: the edge grows to 0.08 on 8 sets, the window stays one.
    let better_yes = change(YES_TOKEN, 3_000, Side::Sell, "0.52", "8");
    assert!(
        detector
            .apply_judged(&[BookUpdate::Change(&better_yes)])
            .unwrap()
            .is_empty()
    );

    // The NO offer is taken: the next NO ask is 0.50, 0.52 + 0.50 > 1, the window closes.
    let taken = change(NO_TOKEN, 4_500, Side::Sell, "0.40", "0");
    let closed = detector
        .apply_judged(&[BookUpdate::Change(&taken)])
        .unwrap();
    let [closed] = closed.as_slice() else {
        panic!("the window closes: {closed:?}");
    };
    assert_eq!(
        closed.signal_id, open.signal_id,
        "one signal, opened then closed"
    );
    assert_eq!(closed.window_start_ms, 2_000);
    assert_eq!(closed.window_end_ms, Some(4_500));
    assert_eq!(closed.input("duration_ms"), Some("2500"));
    assert_eq!(closed.input("max_edge"), Some("0.080000"));
    assert_eq!(closed.input("size_at_max_edge"), Some("8.000000"));
    assert_eq!(closed.input("max_edge_ms"), Some("3000"));
    assert_eq!(closed.input("leg_0_price"), Some("0.520000"));
    assert_eq!(closed.input("leg_1_price"), Some("0.400000"));
    assert_eq!(closed.input("closed_by"), Some("edge_gone"));
    assert_eq!(closed.token_ids, [YES_TOKEN, NO_TOKEN]);
}

#[test]
fn a_window_is_judged_on_whole_batches_not_half_applied_messages() {
    let mut detector = detector(ArbitrageThresholds::default());
    detector.watch(Structure::binary(&samples::market()).unwrap(), 0);
    let yes = book(YES_TOKEN, 1_000, &[], &[("0.55", "40")]);
    let no = book(NO_TOKEN, 1_000, &[], &[("0.50", "25")]);
    detector
        .apply_judged(&[BookUpdate::Snapshot(&yes), BookUpdate::Snapshot(&no)])
        .unwrap();
    // One message moves the NO ask down and the YES ask up: in between, the sum is 0.95.
    let no_down = change(NO_TOKEN, 2_000, Side::Sell, "0.40", "10");
    let yes_gone = change(YES_TOKEN, 2_000, Side::Sell, "0.55", "0");
    let yes_up = change(YES_TOKEN, 2_000, Side::Sell, "0.62", "40");
    let signals = detector
        .apply_judged(&[
            BookUpdate::Change(&no_down),
            BookUpdate::Change(&yes_gone),
            BookUpdate::Change(&yes_up),
        ])
        .unwrap();
    assert!(signals.is_empty(), "{signals:?}");
}

#[test]
fn thresholds_hold_back_thin_or_small_edges() {
    let mut detector = detector(ArbitrageThresholds {
        min_edge: 10_000,
        min_size: 5_000_000,
    });
    detector.watch(Structure::binary(&samples::market()).unwrap(), 0);
    // A two-cent edge on 4 sets: too thin.
    let yes = book(YES_TOKEN, 1_000, &[], &[("0.48", "4")]);
    let no = book(NO_TOKEN, 1_000, &[], &[("0.50", "25")]);
    assert!(
        detector
            .apply_judged(&[BookUpdate::Snapshot(&yes), BookUpdate::Snapshot(&no)])
            .unwrap()
            .is_empty()
    );
    // Half a cent on 40 sets: too small.
    let yes = book(YES_TOKEN, 2_000, &[], &[("0.495", "40")]);
    assert!(
        detector
            .apply_judged(&[BookUpdate::Snapshot(&yes)])
            .unwrap()
            .is_empty()
    );
    // A cent on 5 sets: both thresholds met.
    let yes = book(YES_TOKEN, 3_000, &[], &[("0.49", "5")]);
    assert_eq!(
        detector
            .apply_judged(&[BookUpdate::Snapshot(&yes)])
            .unwrap()
            .len(),
        1
    );
}

fn outcome(number: usize) -> Market {
    let mut market = samples::market();
    market.condition_id = format!("0xc{number}");
    market.neg_risk = true;
    market.neg_risk_market_id = Some("0xevent".into());
    market.tokens[0].token_id = format!("yes-{number}");
    market.tokens[1].token_id = format!("no-{number}");
    market
}

#[test]
fn a_neg_risk_window_needs_every_yes_book_and_sells_as_well_as_buys() {
    let markets: Vec<Market> = (0..3).map(outcome).collect();
    let references: Vec<&Market> = markets.iter().collect();
    let mut detector = detector(ArbitrageThresholds::default());
    detector.watch(Structure::neg_risk("0xevent", &references).unwrap(), 0);

    // Two of three YES books: asks sum to 0.60 but the third outcome is unknown.
    let first = book("yes-0", 1_000, &[("0.29", "10")], &[("0.30", "10")]);
    let second = book("yes-1", 1_000, &[("0.29", "10")], &[("0.30", "20")]);
    assert!(
        detector
            .apply_judged(&[BookUpdate::Snapshot(&first), BookUpdate::Snapshot(&second)])
            .unwrap()
            .is_empty()
    );
    // The third at 0.35 × 6: 0.95 for a set paying 1.
    let third = book("yes-2", 2_000, &[("0.30", "10")], &[("0.35", "6")]);
    let opened = detector
        .apply_judged(&[BookUpdate::Snapshot(&third)])
        .unwrap();
    let [open] = opened.as_slice() else {
        panic!("{opened:?}");
    };
    assert_eq!(open.kind, SignalKind::NegRiskArbitrage);
    assert_eq!(open.subject, "0xevent:buy_every_leg");
    assert_eq!(open.input("max_edge"), Some("0.050000"));
    assert_eq!(open.input("size_at_max_edge"), Some("6.000000"));
    assert_eq!(open.input("legs"), Some("3"));
    assert_eq!(open.condition_ids, ["0xc0", "0xc1", "0xc2"]);

    // Bids jump: 0.40 + 0.35 + 0.30 = 1.05 for a set minted at 1, a second window.
    let first = book("yes-0", 3_000, &[("0.40", "7")], &[("0.41", "10")]);
    let second = book("yes-1", 3_000, &[("0.35", "9")], &[("0.36", "20")]);
    let signals = detector
        .apply_judged(&[BookUpdate::Snapshot(&first), BookUpdate::Snapshot(&second)])
        .unwrap();
    let kinds: Vec<(&str, Option<i64>)> = signals
        .iter()
        .map(|signal| (signal.subject.as_str(), signal.window_end_ms))
        .collect();
    // The buy window closed (0.41 + 0.36 + 0.35 > 1) and the sell window opened.
    assert_eq!(
        kinds,
        [
            ("0xevent:buy_every_leg", Some(3_000)),
            ("0xevent:sell_every_leg", None)
        ]
    );
    assert_eq!(signals[1].input("max_edge"), Some("0.050000"));
    assert_eq!(signals[1].input("size_at_max_edge"), Some("7.000000"));

    // The third market's book is gone: the sell window closes for want of a leg.
    let closed = detector.forget("yes-2", 4_000);
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(closed[0].input("closed_by"), Some("leg_unavailable"));
    assert_eq!(closed[0].window_end_ms, Some(4_000));
}

#[test]
fn a_replay_gives_the_same_signals_with_the_same_ids() {
    let run = || {
        let mut detector = detector(ArbitrageThresholds::default());
        detector.watch(Structure::binary(&samples::market()).unwrap(), 0);
        let mut signals = Vec::new();
        for (at_ms, no_ask) in [
            (1_000, "0.50"),
            (2_000, "0.40"),
            (3_000, "0.47"),
            (4_000, "0.55"),
        ] {
            let yes = book(YES_TOKEN, at_ms, &[], &[("0.52", "10")]);
            let no = book(NO_TOKEN, at_ms, &[], &[(no_ask, "10")]);
            signals.extend(
                detector
                    .apply_judged(&[BookUpdate::Snapshot(&yes), BookUpdate::Snapshot(&no)])
                    .unwrap(),
            );
        }
        signals
    };
    let first = run();
    assert_eq!(
        first.len(),
        2,
        "opened at 2,000, closed at 4,000: {first:?}"
    );
    assert_eq!(first, run());
}

#[test]
fn a_book_is_known_only_from_a_snapshot_and_a_structure_is_watched_once() {
    let mut detector = detector(ArbitrageThresholds::default());
    let structure = Structure::binary(&samples::market()).unwrap();
    detector.watch(structure.clone(), 0);
    detector.watch(structure, 0);
    // Changes alone would make a 0.90 book pair; without snapshots there is no book.
    let yes = change(YES_TOKEN, 1_000, Side::Sell, "0.45", "10");
    let no = change(NO_TOKEN, 1_000, Side::Sell, "0.45", "10");
    assert!(
        detector
            .apply_judged(&[BookUpdate::Change(&yes), BookUpdate::Change(&no)])
            .unwrap()
            .is_empty()
    );
    // With snapshots the window opens, once (the structure was given twice).
    let yes_book = book(YES_TOKEN, 2_000, &[], &[("0.45", "10")]);
    let no_book = book(NO_TOKEN, 2_000, &[], &[("0.45", "10")]);
    let opened = detector
        .apply_judged(&[
            BookUpdate::Snapshot(&yes_book),
            BookUpdate::Snapshot(&no_book),
        ])
        .unwrap();
    assert_eq!(opened.len(), 1, "{opened:?}");
    // Forgotten, the YES book closes the window; a change after that builds nothing.
    let closed = detector.forget(YES_TOKEN, 3_000);
    assert_eq!(closed.len(), 1);
    let again = change(YES_TOKEN, 4_000, Side::Sell, "0.40", "10");
    assert!(
        detector
            .apply_judged(&[BookUpdate::Change(&again)])
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_window_never_closes_before_it_opened() {
    let mut detector = detector(ArbitrageThresholds::default());
    detector.watch(Structure::binary(&samples::market()).unwrap(), 0);
    let yes = book(YES_TOKEN, 5_000, &[], &[("0.45", "10")]);
    let no = book(NO_TOKEN, 5_000, &[], &[("0.45", "10")]);
    detector
        .apply_judged(&[BookUpdate::Snapshot(&yes), BookUpdate::Snapshot(&no)])
        .unwrap();
    // A change stamped earlier (another topic's record, read later) ends the edge.
    let earlier = change(NO_TOKEN, 4_000, Side::Sell, "0.45", "0");
    let closed = detector
        .apply_judged(&[BookUpdate::Change(&earlier)])
        .unwrap();
    assert_eq!(closed[0].window_end_ms, Some(5_000));
    assert_eq!(closed[0].input("duration_ms"), Some("0"));
}

#[test]
fn a_changed_structure_closes_the_window_of_the_old_one_and_an_equal_one_changes_nothing() {
    let mut detector = detector(ArbitrageThresholds::default());
    let structure = Structure::binary(&samples::market()).unwrap();
    detector.watch(structure.clone(), 0);
    let opened = detector
        .apply_judged(&[
            BookUpdate::Snapshot(&book(YES_TOKEN, 1_000, &[], &[("0.45", "10")])),
            BookUpdate::Snapshot(&book(NO_TOKEN, 1_000, &[], &[("0.50", "10")])),
        ])
        .unwrap();
    assert_eq!(opened.len(), 1);
    assert!(detector.watch(structure.clone(), 2_000).is_empty());
    let mut charged = structure;
    charged.legs[0].1 = TakerFee { bps: 100 };
    let closed = detector.watch(charged, 3_000);
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].signal_id, opened[0].signal_id);
    assert_eq!(closed[0].input("closed_by"), Some("structure_changed"));
    assert_eq!(closed[0].window_end_ms, Some(3_000));
    // The new legs are judged at the next update: 0.45 + fee 0.0045 + 0.50 = 0.9545, open.
    let reopened = detector
        .apply_judged(&[BookUpdate::Change(&change(
            NO_TOKEN,
            4_000,
            Side::Sell,
            "0.50",
            "11",
        ))])
        .unwrap();
    assert_eq!(reopened.len(), 1);
    assert_eq!(reopened[0].input("leg_0_fee_bps"), Some("100"));
}

#[test]
fn an_instant_split_across_batches_is_judged_once_whole() {
    let mut held = detector(ArbitrageThresholds::default());
    held.watch(Structure::binary(&samples::market()).unwrap(), 0);
    // 0.52 + 0.50: no window.
    let yes = book(YES_TOKEN, 1_000, &[("0.47", "10")], &[("0.52", "40")]);
    let no = book(NO_TOKEN, 1_000, &[("0.45", "10")], &[("0.50", "40")]);
    held.apply_judged(&[BookUpdate::Snapshot(&yes), BookUpdate::Snapshot(&no)])
        .unwrap();
    // One upstream message at 2,000 moves both tokens (YES ask 0.45, NO ask 0.58: 1.03), and
    // its two records are released in two batches. Half of it alone (0.45 + 0.50) would be
    // a window no one ever saw.
    let yes_part = change(YES_TOKEN, 2_000, Side::Sell, "0.45", "40");
    let no_part = change(NO_TOKEN, 2_000, Side::Sell, "0.58", "40");
    let no_gone = change(NO_TOKEN, 2_000, Side::Sell, "0.50", "0");
    assert_eq!(held.apply(&[BookUpdate::Change(&yes_part)]).unwrap(), []);
    assert_eq!(held.pending_at_ms(), Some(2_000));
    assert_eq!(
        held.apply(&[BookUpdate::Change(&no_part), BookUpdate::Change(&no_gone)])
            .unwrap(),
        []
    );
    // The next instant judges the whole of 2,000 first: still no window.
    let later = change(YES_TOKEN, 3_000, Side::Buy, "0.40", "10");
    assert_eq!(held.apply(&[BookUpdate::Change(&later)]).unwrap(), []);
    assert_eq!(held.judge_pending(), []);
    assert_eq!(held.pending_at_ms(), None);
    // Held back whole, nothing came after its instant was judged.
    assert_eq!(held.take_late_batches(), 0);

    // Judged half by half (each batch judged as it came), the same updates open and close a
    // window at 2,000: what the detector did before instants were held back.
    let mut eager = detector(ArbitrageThresholds::default());
    eager.watch(Structure::binary(&samples::market()).unwrap(), 0);
    eager
        .apply_judged(&[BookUpdate::Snapshot(&yes), BookUpdate::Snapshot(&no)])
        .unwrap();
    let opened = eager
        .apply_judged(&[BookUpdate::Change(&yes_part)])
        .unwrap();
    let closed = eager
        .apply_judged(&[BookUpdate::Change(&no_part), BookUpdate::Change(&no_gone)])
        .unwrap();
    assert_eq!((opened.len(), closed.len()), (1, 1));
    assert_eq!(closed[0].window_end_ms, Some(2_000));
    // The second half came after 2,000 was judged: counted once, then reset.
    assert_eq!(eager.take_late_batches(), 1);
    assert_eq!(eager.take_late_batches(), 0);
}
