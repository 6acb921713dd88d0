//! The market channel's exact wire examples from the upstream brief (shared/briefs/
//! polymarket-api.md, section 5.4), table-driven, plus the frame shapes and garbage.

use std::str::FromStr as _;

use polytape_model::{BookSource, Decimal, LifecycleKind, Side};

use super::*;

const STAMP: Stamp<'static> = Stamp {
    connection_id: "c-1",
    sequence: 7,
    received_ms: 1_800_000_000_000,
};

fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

const BOOK: &str = r#"{"event_type": "book", "asset_id": "65818619657568813474341868652308942079804919287380422192892211131408793125422",
 "market": "0xbd31dc8a20211944f6b70f31557f1001557b59905b7738480ca09bd4532f84af",
 "bids": [{"price": ".48", "size": "30"}, {"price": ".49", "size": "20"}, {"price": ".50", "size": "15"}],
 "asks": [{"price": ".52", "size": "25"}, {"price": ".53", "size": "60"}, {"price": ".54", "size": "10"}],
 "timestamp": "123456789000", "hash": "0x0...."}"#;

const PRICE_CHANGE: &str = r#"{"market": "0x5f65177b394277fd294cd75650044e32ba009a95022d88a0c1d565897d72f8f1",
 "price_changes": [
   {"asset_id": "71321045679252212594626385532706912750332728571942532289631379312455583992563",
    "price": "0.5", "size": "200", "side": "BUY", "hash": "56621a121a47ed9333273e21c83b660cff37ae50",
    "best_bid": "0.5", "best_ask": "1"},
   {"asset_id": "52114319501245915516055106046884209969926127482827954674443846427813813222426",
    "price": "0.5", "size": "200", "side": "SELL", "hash": "1895759e4df7a796bf4f1c5a5950b748306923e2",
    "best_bid": "0", "best_ask": "0.5"}],
 "timestamp": "1757908892351", "event_type": "price_change"}"#;

const LEGACY_PRICE_CHANGE: &str = r#"{"asset_id": "7132", "changes": [{"price": "0.4", "side": "SELL", "size": "3300"}],
 "event_type": "price_change", "market": "0x5f65f8f1", "timestamp": "1729084877448",
 "hash": "3cd4d61e042c81560c9037ece0c61f3b1a8fbbdd"}"#;

const TICK_SIZE_CHANGE: &str = r#"{"event_type": "tick_size_change", "asset_id": "65815422", "market": "0xbd3184af",
 "old_tick_size": "0.01", "new_tick_size": "0.001", "timestamp": "100000000"}"#;

const LAST_TRADE: &str = r#"{"asset_id": "114122071509644379678018727908709560226618148003371446110114509806601493071694",
 "event_type": "last_trade_price", "fee_rate_bps": "0",
 "market": "0x6a67b9d828d53862160e470329ffea5246f338ecfffdf2cab45211ec578b0347",
 "price": "0.456", "side": "BUY", "size": "219.217767", "timestamp": "1750428146322"}"#;

const BEST_BID_ASK: &str = r#"{"event_type": "best_bid_ask", "market": "0x0005c0d312de0be897668695bae9f32b624b4a1ae8b140c49f08447fcc74f442",
 "asset_id": "85354956062430465315924116860125388538595433819574542752031640332592237464430",
 "best_bid": "0.73", "best_ask": "0.77", "spread": "0.04", "timestamp": "1766789469958"}"#;

const NEW_MARKET: &str = r#"{"id": "1031769", "question": "Will NVIDIA (NVDA) close above $240 end of January?",
 "market": "0x311d0c4b6671ab54af4970c06fcf58662516f5168997bdda209ec3db5aa6b0c1",
 "slug": "nvda-above-240-on-january-30-2026", "description": "This market will resolve to \"Yes\" if ...",
 "assets_ids": ["76043073756653678226373981964075571318267289248134717369284518995922789326425",
                "31690934263385727664202099278545688007799199447969475608906331829650099442770"],
 "outcomes": ["Yes", "No"],
 "event_message": {"id": "125819", "ticker": "nvda-above-in-january-2026", "slug": "nvda-above-in-january-2026",
                   "title": "Will NVIDIA (NVDA) close above ___ end of January?", "description": "..."},
 "timestamp": "1766790415550", "event_type": "new_market"}"#;

const MARKET_RESOLVED: &str = r#"{"id": "1031769", "question": "Will NVIDIA (NVDA) close above $240 end of January?",
 "market": "0x311d0c4b6671ab54af4970c06fcf58662516f5168997bdda209ec3db5aa6b0c1",
 "slug": "nvda-above-240-on-january-30-2026",
 "assets_ids": ["76043073756653678226373981964075571318267289248134717369284518995922789326425",
                "31690934263385727664202099278545688007799199447969475608906331829650099442770"],
 "outcomes": ["Yes", "No"],
 "winning_asset_id": "76043073756653678226373981964075571318267289248134717369284518995922789326425",
 "winning_outcome": "Yes",
 "timestamp": "1766790415551", "event_type": "market_resolved"}"#;

fn parse(raw: &str) -> MarketEvent {
    parse_event(raw, STAMP).unwrap_or_else(|problem| panic!("{problem}: {raw}"))
}

#[test]
fn book_example_levels_are_best_first_and_dot_prices_are_exact() {
    let MarketEvent::Book(book) = parse(BOOK) else {
        panic!("not a book")
    };
    assert_eq!(
        book.token_id,
        "65818619657568813474341868652308942079804919287380422192892211131408793125422"
    );
    assert_eq!(
        book.condition_id,
        "0xbd31dc8a20211944f6b70f31557f1001557b59905b7738480ca09bd4532f84af"
    );
    assert_eq!(book.timestamp_ms, 123_456_789_000);
    assert_eq!(book.received_ms, STAMP.received_ms);
    let bids: Vec<(Decimal, Decimal)> = book.bids.iter().map(|l| (l.price, l.size)).collect();
    let asks: Vec<(Decimal, Decimal)> = book.asks.iter().map(|l| (l.price, l.size)).collect();
    assert_eq!(
        bids,
        [
            (dec("0.50"), dec("15")),
            (dec("0.49"), dec("20")),
            (dec("0.48"), dec("30"))
        ]
    );
    assert_eq!(
        asks,
        [
            (dec("0.52"), dec("25")),
            (dec("0.53"), dec("60")),
            (dec("0.54"), dec("10"))
        ]
    );
    assert_eq!(book.hash.as_deref(), Some("0x0...."));
    assert_eq!(book.source, BookSource::Ws);
    assert_eq!(book.connection_id.as_deref(), Some("c-1"));
    assert_eq!(book.sequence, Some(7));
    assert_eq!(book.tick_size, None);
}

#[test]
fn price_change_examples_new_and_legacy_shapes() {
    struct Expected {
        token: &'static str,
        side: Side,
        price: &'static str,
        size: &'static str,
        best_bid: Option<&'static str>,
        best_ask: Option<&'static str>,
        hash: &'static str,
        timestamp_ms: i64,
    }
    let cases: [(&str, &str, Vec<Expected>); 2] = [
        (
            "new shape (2025-09-15)",
            PRICE_CHANGE,
            vec![
                Expected {
                    token: "71321045679252212594626385532706912750332728571942532289631379312455583992563",
                    side: Side::Buy,
                    price: "0.5",
                    size: "200",
                    best_bid: Some("0.5"),
                    best_ask: Some("1"),
                    hash: "56621a121a47ed9333273e21c83b660cff37ae50",
                    timestamp_ms: 1_757_908_892_351,
                },
                Expected {
                    token: "52114319501245915516055106046884209969926127482827954674443846427813813222426",
                    side: Side::Sell,
                    price: "0.5",
                    size: "200",
                    best_bid: Some("0"),
                    best_ask: Some("0.5"),
                    hash: "1895759e4df7a796bf4f1c5a5950b748306923e2",
                    timestamp_ms: 1_757_908_892_351,
                },
            ],
        ),
        (
            "legacy shape (old captures)",
            LEGACY_PRICE_CHANGE,
            vec![Expected {
                token: "7132",
                side: Side::Sell,
                price: "0.4",
                size: "3300",
                best_bid: None,
                best_ask: None,
                hash: "3cd4d61e042c81560c9037ece0c61f3b1a8fbbdd",
                timestamp_ms: 1_729_084_877_448,
            }],
        ),
    ];
    for (name, raw, expected) in cases {
        let MarketEvent::PriceChanges(changes) = parse(raw) else {
            panic!("{name}: not a price change")
        };
        assert_eq!(changes.len(), expected.len(), "{name}");
        for (index, (change, expected)) in changes.iter().zip(&expected).enumerate() {
            assert_eq!(change.token_id, expected.token, "{name} #{index}");
            assert_eq!(change.side, expected.side, "{name} #{index}");
            assert_eq!(change.price, dec(expected.price), "{name} #{index}");
            assert_eq!(change.size, dec(expected.size), "{name} #{index}");
            assert_eq!(
                change.best_bid,
                expected.best_bid.map(dec),
                "{name} #{index}"
            );
            assert_eq!(
                change.best_ask,
                expected.best_ask.map(dec),
                "{name} #{index}"
            );
            assert_eq!(
                change.hash.as_deref(),
                Some(expected.hash),
                "{name} #{index}"
            );
            assert_eq!(
                change.timestamp_ms, expected.timestamp_ms,
                "{name} #{index}"
            );
            assert_eq!(change.entry_index, i32::try_from(index).unwrap());
            assert_eq!(change.sequence, STAMP.sequence);
            assert_eq!(change.connection_id, STAMP.connection_id);
        }
    }
}

#[test]
fn price_change_entries_may_lack_optional_fields() {
    let raw = r#"{"event_type":"price_change","market":"0xm","timestamp":"5",
        "price_changes":[{"asset_id":"1","price":".48","size":"0","side":"sell"}]}"#;
    let MarketEvent::PriceChanges(changes) = parse(raw) else {
        panic!("not a price change")
    };
    assert_eq!(changes[0].price, dec("0.48"));
    assert_eq!(changes[0].size, Decimal::ZERO);
    assert_eq!(changes[0].side, Side::Sell);
    assert_eq!(
        (changes[0].best_bid, changes[0].best_ask, &changes[0].hash),
        (None, None, &None)
    );
}

#[test]
fn other_event_examples() {
    let MarketEvent::TickSizeChange(tick) = parse(TICK_SIZE_CHANGE) else {
        panic!("not a tick size change")
    };
    assert_eq!(
        (
            tick.token_id.as_str(),
            tick.condition_id.as_str(),
            tick.old_tick_size,
            tick.new_tick_size,
            tick.timestamp_ms
        ),
        (
            "65815422",
            "0xbd3184af",
            dec("0.01"),
            dec("0.001"),
            100_000_000
        )
    );

    let MarketEvent::LastTrade(trade) = parse(LAST_TRADE) else {
        panic!("not a last trade")
    };
    assert_eq!(trade.price, dec("0.456"));
    assert_eq!(trade.size, dec("219.217767"));
    assert_eq!(trade.side, Some(Side::Buy));
    assert_eq!(trade.fee_rate_bps, Some(0));
    assert_eq!(trade.transaction_hash, None);
    assert_eq!(trade.timestamp_ms, 1_750_428_146_322);
    assert_eq!(
        trade.condition_id,
        "0x6a67b9d828d53862160e470329ffea5246f338ecfffdf2cab45211ec578b0347"
    );

    let MarketEvent::BestBidAsk(quote) = parse(BEST_BID_ASK) else {
        panic!("not a best bid/ask")
    };
    assert_eq!(
        (
            quote.best_bid,
            quote.best_ask,
            quote.spread,
            quote.timestamp_ms
        ),
        (
            Some(dec("0.73")),
            Some(dec("0.77")),
            Some(dec("0.04")),
            1_766_789_469_958
        )
    );

    let MarketEvent::Lifecycle(listed) = parse(NEW_MARKET) else {
        panic!("not a lifecycle event")
    };
    assert_eq!(listed.kind, LifecycleKind::NewMarket);
    assert_eq!(
        listed.condition_id,
        "0x311d0c4b6671ab54af4970c06fcf58662516f5168997bdda209ec3db5aa6b0c1"
    );
    assert_eq!(listed.gamma_market_id.as_deref(), Some("1031769"));
    assert_eq!(listed.token_ids.len(), 2);
    assert_eq!(listed.outcomes, ["Yes", "No"]);
    assert_eq!(listed.event_id.as_deref(), Some("125819"));
    assert_eq!(listed.timestamp_ms, 1_766_790_415_550);
    assert_eq!(listed.sequence, Some(7));

    let MarketEvent::Lifecycle(resolved) = parse(MARKET_RESOLVED) else {
        panic!("not a lifecycle event")
    };
    assert_eq!(resolved.kind, LifecycleKind::MarketResolved);
    assert_eq!(resolved.winning_outcome.as_deref(), Some("Yes"));
    assert_eq!(
        resolved.winning_token_id.as_deref(),
        Some("76043073756653678226373981964075571318267289248134717369284518995922789326425")
    );
    assert_eq!(resolved.event_id, None);
}

#[test]
fn frames_are_objects_or_arrays() {
    let single = split_frame(LAST_TRADE).unwrap();
    assert_eq!(single.len(), 1);
    let array = format!("[{BOOK},{PRICE_CHANGE},{LAST_TRADE}]");
    let events = split_frame(&array).unwrap();
    assert_eq!(events.len(), 3);
    assert!(matches!(parse(events[0]), MarketEvent::Book(_)));
    assert!(matches!(parse(events[1]), MarketEvent::PriceChanges(_)));
    assert!(matches!(parse(events[2]), MarketEvent::LastTrade(_)));
    assert!(split_frame("[]").unwrap().is_empty());
}

#[test]
fn garbage_and_unknown_events_are_problems_not_panics() {
    for garbage in [
        "\u{0}garbage{\"event_type\":\"bo",
        "",
        "PONGX",
        "[{\"event_type\":\"book\"",
        "{\"a\":1",
    ] {
        assert!(
            matches!(split_frame(garbage), Err(ParseProblem::NotJson(_))),
            "{garbage:?}"
        );
    }
    type Check = fn(&ParseProblem) -> bool;
    let cases: [(&str, Check); 8] = [
        (
            r#"{"event_type":"mystery","x":1}"#,
            |problem| matches!(problem, ParseProblem::UnknownEventType(kind) if kind == "mystery"),
        ),
        (r#"{"asset_id":"1"}"#, |problem| {
            matches!(problem, ParseProblem::MissingEventType)
        }),
        ("42", |problem| {
            matches!(problem, ParseProblem::NotAnObject(_))
        }),
        (
            r#"{"event_type":"book","market":"0x","timestamp":"1","bids":[],"asks":[]}"#,
            |problem| {
                matches!(
                    problem,
                    ParseProblem::MissingField {
                        field: "asset_id",
                        ..
                    }
                )
            },
        ),
        (
            r#"{"event_type":"last_trade_price","asset_id":"1","market":"0x","price":"abc","size":"1","timestamp":"1"}"#,
            |problem| matches!(problem, ParseProblem::InvalidField { field: "price", .. }),
        ),
        (
            r#"{"event_type":"price_change","market":"0x","timestamp":"soon","price_changes":[]}"#,
            |problem| {
                matches!(
                    problem,
                    ParseProblem::InvalidField {
                        field: "timestamp",
                        ..
                    }
                )
            },
        ),
        (
            r#"{"event_type":"price_change","market":"0x","timestamp":"1","price_changes":[{"asset_id":"1","price":"0.5","size":"1","side":"UP"}]}"#,
            |problem| matches!(problem, ParseProblem::InvalidField { field: "side", .. }),
        ),
        (
            r#"{"event_type":"last_trade_price","asset_id":"1","market":"0x","price":"0.1234567","size":"1","timestamp":"1"}"#,
            |problem| matches!(problem, ParseProblem::InvalidField { field: "price", .. }),
        ),
    ];
    for (raw, expected) in cases {
        let problem = parse_event(raw, STAMP).expect_err(raw);
        assert!(expected(&problem), "{raw}: {problem}");
    }
}

#[test]
fn numbers_may_arrive_as_json_numbers() {
    let raw = r#"{"event_type":"last_trade_price","asset_id":1,"market":"0x","price":0.5,"size":10,"timestamp":1750428146322,"fee_rate_bps":0,"side":"SELL"}"#;
    let MarketEvent::LastTrade(trade) = parse(raw) else {
        panic!("not a last trade")
    };
    assert_eq!(trade.token_id, "1");
    assert_eq!(trade.price, dec("0.5"));
    assert_eq!(trade.timestamp_ms, 1_750_428_146_322);
}

#[test]
fn refusal_and_error_frames() {
    let refusal = r#"{"event_type":"error","code":"too_many_assets","error":"subscription refused: at most 500 assets per connection","max_assets":500,"subscribed":400,"requested":200}"#;
    assert_eq!(
        parse(refusal),
        MarketEvent::SubscriptionRefused {
            message: "subscription refused: at most 500 assets per connection".to_owned(),
            max_assets: Some(500)
        }
    );
    let invalid = r#"{"event_type":"error","code":"invalid_message","error":"message is neither PING nor a JSON subscription"}"#;
    assert!(
        matches!(parse(invalid), MarketEvent::ServerError { code, .. } if code == "invalid_message")
    );
}

#[test]
fn rest_book_answers_parse_as_rest_snapshots() {
    let raw = r#"{"market": "0x747dc809fb79e1b05be09c42d6179459a58de2ef3e40f02484a4e1260f741f75",
 "asset_id": "107505882767731489358349912513945399560393482969656700824895970500493757150417",
 "timestamp": "1759420800123", "hash": "32400f1a5df2379ab4e7b79bac275d9312494339",
 "bids": [{"price": "0.01", "size": "2500"}, {"price": "0.44", "size": "120.5"}, {"price": "0.45", "size": "100"}],
 "asks": [{"price": "0.99", "size": "900"}, {"price": "0.47", "size": "80"}, {"price": "0.46", "size": "150"}],
 "min_order_size": "5", "tick_size": "0.01", "neg_risk": false, "last_trade_price": "0.45"}"#;
    let book = crate::book::rest_book(raw, STAMP.received_ms).unwrap();
    assert_eq!(book.source, BookSource::Rest);
    assert_eq!(book.bids[0].price, dec("0.45"));
    assert_eq!(book.asks[0].price, dec("0.46"));
    assert_eq!(book.tick_size, Some(dec("0.01")));
    assert_eq!(book.min_order_size, Some(dec("5")));
    assert_eq!(book.neg_risk, Some(false));
    assert_eq!(book.last_trade_price, Some(dec("0.45")));
    assert_eq!(book.timestamp_ms, 1_759_420_800_123);
}
