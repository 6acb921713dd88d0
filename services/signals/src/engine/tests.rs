#![allow(clippy::unwrap_used)]

use polytape_model::{BookLevel, Side, SignalKind, samples};

use super::*;
use crate::test_support::{dec, market, price_change, settings};

/// Applies released events and judges the last instant at once, as the input going quiet
/// would.
trait ApplyJudged {
    fn apply_judged(&mut self, events: &[SignalEvent]) -> Result<Vec<Signal>, UnitsError>;
}

impl ApplyJudged for Engine {
    fn apply_judged(&mut self, events: &[SignalEvent]) -> Result<Vec<Signal>, UnitsError> {
        let mut signals = self.apply(events)?;
        signals.extend(self.judge_pending());
        Ok(signals)
    }
}

fn neg_risk_market(name: &str) -> Market {
    Market {
        neg_risk: true,
        neg_risk_market_id: Some("0xneg".to_owned()),
        event_ids: vec!["ev".to_owned()],
        ..market(name)
    }
}

fn snapshot(token_id: &str, at_ms: i64, asks: &[(&str, &str)]) -> SignalEvent {
    SignalEvent::Snapshot(BookSnapshot {
        token_id: token_id.to_owned(),
        timestamp_ms: at_ms,
        bids: vec![BookLevel {
            price: dec("0.01"),
            size: dec("100"),
        }],
        asks: asks
            .iter()
            .map(|(price, size)| BookLevel {
                price: dec(price),
                size: dec(size),
            })
            .collect(),
        ..samples::book_snapshot()
    })
}

fn ask_change(token_id: &str, at_ms: i64, price: &str, size: &str) -> SignalEvent {
    SignalEvent::Change(price_change(token_id, at_ms, Side::Sell, price, size))
}

fn trade(
    id: &str,
    wallet: &str,
    token_id: &str,
    at_ms: i64,
    price: &str,
    size: &str,
) -> SignalEvent {
    SignalEvent::Trade(Trade {
        trade_id: id.to_owned(),
        proxy_wallet: wallet.to_owned(),
        token_id: token_id.to_owned(),
        condition_id: "0xa".to_owned(),
        timestamp_ms: at_ms,
        price: dec(price),
        size: dec(size),
        ..samples::trade()
    })
}

fn kinds(signals: &[Signal]) -> Vec<(SignalKind, bool)> {
    signals
        .iter()
        .map(|signal| (signal.kind, signal.window_end_ms.is_some()))
        .collect()
}

#[test]
fn a_negative_risk_event_is_judged_only_once_every_outcome_is_known() {
    let mut engine = Engine::new(&settings(), EngineState::default());
    let event = Event {
        event_id: "ev".to_owned(),
        neg_risk: true,
        market_condition_ids: vec!["0xa".to_owned(), "0xb".to_owned(), "0xc".to_owned()],
        ..samples::event()
    };
    engine.event(&event);
    engine.market(neg_risk_market("a"));
    engine.market(neg_risk_market("b"));
    // Two of three YES asks sum to 0.60: no signal (a subset always looks like an arbitrage).
    let books = [
        snapshot("a-yes", 1_000, &[("0.30", "50")]),
        snapshot("b-yes", 1_000, &[("0.30", "50")]),
        snapshot("c-yes", 1_000, &[("0.30", "50")]),
    ];
    let signals = engine.apply_judged(&books).unwrap();
    assert!(
        signals
            .iter()
            .all(|signal| signal.kind != SignalKind::NegRiskArbitrage),
        "{signals:?}"
    );
    // The third outcome arrives: the next book event judges all three (0.90: edge 0.10).
    engine.market(neg_risk_market("c"));
    let signals = engine
        .apply_judged(&[ask_change("c-yes", 2_000, "0.30", "40")])
        .unwrap();
    let neg_risk: Vec<&Signal> = signals
        .iter()
        .filter(|signal| signal.kind == SignalKind::NegRiskArbitrage)
        .collect();
    assert_eq!(neg_risk.len(), 1, "{signals:?}");
    assert_eq!(neg_risk[0].token_ids, ["a-yes", "b-yes", "c-yes"]);
    assert_eq!(neg_risk[0].event_id.as_deref(), Some("ev"));
    assert_eq!(neg_risk[0].window_start_ms, 2_000);
    assert_eq!(neg_risk[0].input("max_edge"), Some("0.100000"));
}

#[test]
fn book_events_of_one_millisecond_are_judged_together() {
    let opening_then_closing = |second_at_ms: i64| {
        let mut engine = Engine::new(&settings(), EngineState::default());
        engine.market(market("m"));
        let mut events = vec![
            snapshot("m-yes", 1_000, &[("0.50", "10"), ("0.60", "10")]),
            snapshot("m-no", 1_000, &[("0.55", "10")]),
        ];
        // A new NO ask at 0.45 (0.95 with YES at 0.50: an edge) and, in the same message or
        // a millisecond later, the YES ask at 0.50 gone (1.05: none).
        events.push(ask_change("m-no", 2_000, "0.45", "10"));
        events.push(ask_change("m-yes", second_at_ms, "0.50", "0"));
        kinds(&engine.apply_judged(&events).unwrap())
    };
    assert_eq!(opening_then_closing(2_000), []);
    assert_eq!(
        opening_then_closing(2_001),
        [
            (SignalKind::BinaryArbitrage, false),
            (SignalKind::BinaryArbitrage, true)
        ]
    );
}

#[test]
fn trades_feed_the_wallet_and_the_price_detectors() {
    let mut engine = Engine::new(&settings(), EngineState::default());
    let signals = engine
        .apply_judged(&[
            trade("t1", "0xw1", "a-yes", 10_000, "0.30", "10"),
            // 0.45 × 40,000 = $18,000 by a wallet never seen, and a 15-point rise.
            trade("t2", "0xwhale", "a-yes", 70_000, "0.45", "40000"),
        ])
        .unwrap();
    assert_eq!(
        kinds(&signals),
        [
            (SignalKind::LargeTradeNewWallet, true),
            (SignalKind::PriceMove, true)
        ]
    );
    assert_eq!(signals[0].subject, "0xwhale");
    assert_eq!(signals[1].links, ["t1", "t2"]);
}

#[test]
fn a_restored_state_judges_what_follows_as_the_uninterrupted_engine_does() {
    let mut neg_risk_event = samples::event();
    neg_risk_event.event_id = "ev".to_owned();
    neg_risk_event.market_condition_ids = vec!["0xa".to_owned(), "0xb".to_owned()];
    let events = vec![
        snapshot("m-yes", 1_000, &[("0.50", "10"), ("0.60", "10")]),
        snapshot("m-no", 1_000, &[("0.55", "10")]),
        snapshot("a-yes", 1_000, &[("0.45", "10")]),
        snapshot("b-yes", 1_000, &[("0.60", "10")]),
        trade("t1", "0xw1", "m-yes", 1_500, "0.30", "10"),
        ask_change("m-no", 2_000, "0.45", "10"),
        ask_change("b-yes", 2_500, "0.50", "10"),
        trade("t2", "0xw1", "m-yes", 3_000, "0.50", "30000"),
        trade("t3", "0xw2", "m-yes", 3_500, "0.52", "10"),
        ask_change("m-yes", 4_000, "0.50", "0"),
        ask_change("b-yes", 4_500, "0.50", "0"),
        trade("t4", "0xw1", "m-yes", 5_000, "0.20", "10"),
    ];
    let start = |engine: &mut Engine| {
        engine.market(market("m"));
        engine.market(neg_risk_market("a"));
        engine.market(neg_risk_market("b"));
        engine.event(&neg_risk_event);
    };
    let mut uninterrupted = Engine::new(&settings(), EngineState::default());
    start(&mut uninterrupted);
    let expected = uninterrupted.apply_judged(&events).unwrap();
    assert!(expected.len() >= 6, "the sequence fires: {expected:?}");
    for split in 0..=events.len() {
        let mut before = Engine::new(&settings(), EngineState::default());
        start(&mut before);
        // The instant held back at the split travels in the checkpoint.
        let mut got = before.apply(&events[..split]).unwrap();
        let text = serde_json::to_string(&before.state()).unwrap();
        let mut after = Engine::new(&settings(), serde_json::from_str(&text).unwrap());
        got.extend(after.apply_judged(&events[split..]).unwrap());
        assert_eq!(got, expected, "restored after {split} events");
    }
}

#[test]
fn a_threshold_change_gives_a_rule_a_new_version() {
    let before = settings();
    let mut after = settings();
    after.price_move.min_move += 1;
    assert_eq!(before.price_move_rule(), settings().price_move_rule());
    assert_ne!(before.price_move_rule(), after.price_move_rule());
    assert_eq!(before.new_wallet_rule(), after.new_wallet_rule());
    assert!(before.price_move_rule().version > 0);
}

#[test]
fn an_outcome_added_to_an_event_stops_its_judgement_until_the_new_market_is_known() {
    let mut engine = Engine::new(&settings(), EngineState::default());
    let mut event = Event {
        event_id: "ev".to_owned(),
        neg_risk: true,
        market_condition_ids: vec!["0xa".to_owned(), "0xb".to_owned()],
        updated_ms: 5_000,
        ..samples::event()
    };
    engine.event(&event);
    engine.market(neg_risk_market("a"));
    engine.market(neg_risk_market("b"));
    // 0.45 + 0.45: a window opens.
    let opened = engine
        .apply_judged(&[
            snapshot("a-yes", 1_000, &[("0.45", "50")]),
            snapshot("b-yes", 1_000, &[("0.45", "50")]),
        ])
        .unwrap();
    assert_eq!(kinds(&opened), [(SignalKind::NegRiskArbitrage, false)]);
    // A third outcome is announced: the two known ones are no longer a full set.
    event.market_condition_ids.push("0xc".to_owned());
    let closed = engine.event(&event);
    assert_eq!(kinds(&closed), [(SignalKind::NegRiskArbitrage, true)]);
    assert_eq!(closed[0].signal_id, opened[0].signal_id);
    assert_eq!(closed[0].input("closed_by"), Some("structure_unwatched"));
    assert_eq!(closed[0].window_end_ms, Some(5_000));
    assert!(
        engine
            .apply_judged(&[ask_change("a-yes", 6_000, "0.40", "50")])
            .unwrap()
            .is_empty()
    );
    // Once it is known, all three are judged: 0.40 + 0.45 + 0.30 = 1.15, no window.
    engine.market(neg_risk_market("c"));
    assert!(
        engine
            .apply_judged(&[snapshot("c-yes", 7_000, &[("0.30", "50")])])
            .unwrap()
            .is_empty()
    );
    // c's ask drops to 0.10: 0.95.
    let reopened = engine
        .apply_judged(&[ask_change("c-yes", 8_000, "0.10", "50")])
        .unwrap();
    assert_eq!(kinds(&reopened), [(SignalKind::NegRiskArbitrage, false)]);
    assert_eq!(reopened[0].token_ids, ["a-yes", "b-yes", "c-yes"]);
}

#[test]
fn a_closed_market_is_no_longer_judged() {
    let mut engine = Engine::new(&settings(), EngineState::default());
    engine.market(market("m"));
    let opened = engine
        .apply_judged(&[
            snapshot("m-yes", 1_000, &[("0.45", "10")]),
            snapshot("m-no", 1_000, &[("0.50", "10")]),
        ])
        .unwrap();
    assert_eq!(kinds(&opened), [(SignalKind::BinaryArbitrage, false)]);
    let closed = engine.market(Market {
        closed: true,
        updated_ms: 9_000,
        ..market("m")
    });
    assert_eq!(kinds(&closed), [(SignalKind::BinaryArbitrage, true)]);
    assert_eq!(closed[0].input("closed_by"), Some("structure_unwatched"));
    assert!(
        engine
            .apply_judged(&[ask_change("m-no", 10_000, "0.30", "10")])
            .unwrap()
            .is_empty()
    );
    // Announced again unchanged while closed: still nothing; reopened: judged again.
    assert!(
        engine
            .market(Market {
                closed: true,
                ..market("m")
            })
            .is_empty()
    );
    engine.market(market("m"));
    let reopened = engine
        .apply_judged(&[ask_change("m-no", 11_000, "0.31", "10")])
        .unwrap();
    assert_eq!(kinds(&reopened), [(SignalKind::BinaryArbitrage, false)]);
}
