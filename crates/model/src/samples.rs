//! One realistic example of every record type, built from the upstream examples in the API
//! brief. Used by codec tests, golden files, integration tests and benchmarks; values are
//! fixed so golden bytes stay stable.

use std::str::FromStr;

use rust_decimal::Decimal;

use crate::records::*;

pub const CONDITION_ID: &str = "0x57373f395332d0c8be1ab99acd941a216594a9007320343213949fd7d8a49b24";
pub const YES_TOKEN: &str =
    "92071830247158429266517632633283963577030982596600419669075490843953894242121";
pub const NO_TOKEN: &str =
    "65818619657568813474341868652308942079804919287380422192892211131408793125422";

fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap_or_default()
}

fn level(price: &str, size: &str) -> BookLevel {
    BookLevel {
        price: dec(price),
        size: dec(size),
    }
}

pub fn market() -> Market {
    Market {
        condition_id: CONDITION_ID.into(),
        question_id: Some(
            "0xf69e4e6eb29d29bd1852208e2a27f652e16053fdfdad35ce6953e08f0fb08424".into(),
        ),
        gamma_market_id: Some("1066851".into()),
        event_ids: vec!["125819".into()],
        slug: Some("btc-updown-15m-1767200400".into()),
        question: "Bitcoin Up or Down – December 31, 12:00PM-12:15PM ET?".into(),
        description: Some("This market will resolve to \"Up\" if …".into()),
        protocol_version: Some("v1".into()),
        tokens: vec![
            MarketToken {
                token_id: YES_TOKEN.into(),
                outcome: "Up".into(),
                outcome_index: 0,
                winner: None,
            },
            MarketToken {
                token_id: NO_TOKEN.into(),
                outcome: "Down".into(),
                outcome_index: 1,
                winner: Some(false),
            },
        ],
        active: true,
        closed: false,
        archived: false,
        accepting_orders: true,
        enable_order_book: true,
        neg_risk: false,
        neg_risk_market_id: None,
        tick_size: Some(dec("0.01")),
        min_order_size: Some(dec("5")),
        maker_base_fee_bps: Some(0),
        taker_base_fee_bps: Some(1000),
        fees_enabled: Some(false),
        tags: vec!["Crypto".into(), "Bitcoin".into()],
        start_ms: Some(1_767_114_615_861),
        end_ms: Some(1_767_201_300_000),
        created_ms: Some(1_767_114_109_027),
        closed_ms: None,
        resolution_status: None,
        winning_token_id: None,
        volume: Some(dec("92509.470055")),
        liquidity: Some(dec("20579.7452")),
        upstream_updated_ms: Some(1_767_200_873_929),
        content_hash: "5d41402abc4b2a76b9719d911017c592".into(),
        updated_ms: 1_767_200_874_000,
    }
}

pub fn event() -> Event {
    Event {
        event_id: "125819".into(),
        slug: Some("nvda-above-in-january-2026".into()),
        ticker: Some("nvda-above-in-january-2026".into()),
        title: "Will NVIDIA (NVDA) close above ___ end of January?".into(),
        description: None,
        active: true,
        closed: false,
        archived: false,
        neg_risk: true,
        start_ms: Some(1_766_786_400_000),
        end_ms: Some(1_769_806_800_000),
        created_ms: Some(1_766_785_800_123),
        volume: Some(dec("1203344.12")),
        liquidity: Some(dec("154320.55")),
        open_interest: Some(dec("0")),
        tags: vec!["Stocks".into()],
        series_slug: Some("nvda-above".into()),
        market_condition_ids: vec![CONDITION_ID.into()],
        upstream_updated_ms: Some(1_768_046_401_456),
        content_hash: "aa".into(),
        updated_ms: 1_768_046_402_000,
    }
}

pub fn trade() -> Trade {
    Trade {
        trade_id: "4f1c2b7d9e0a4c3b8a6d5e2f1b0c9d8e".into(),
        condition_id: CONDITION_ID.into(),
        token_id: YES_TOKEN.into(),
        outcome: Some("Down".into()),
        outcome_index: Some(1),
        side: Side::Buy,
        price: dec("0.58"),
        size: dec("32.155171"),
        timestamp_ms: 1_774_020_191_000,
        transaction_hash: "0x09a42928b2f7a7da67f4d020c99800d3f7665c3f9c7b011deeed8ae37e18ffed"
            .into(),
        proxy_wallet: "0x569f366e7087d8cc66d8ec55cdefd5577dd30056".into(),
        source: TradeSource::DataApiV1,
        ingested_ms: 1_774_020_195_123,
    }
}

pub fn book_snapshot() -> BookSnapshot {
    BookSnapshot {
        token_id: YES_TOKEN.into(),
        condition_id: CONDITION_ID.into(),
        timestamp_ms: 1_759_420_800_123,
        received_ms: 1_759_420_800_200,
        bids: vec![
            level("0.45", "100"),
            level("0.44", "120.5"),
            level("0.01", "2500"),
        ],
        asks: vec![
            level("0.46", "150"),
            level("0.47", "80"),
            level("0.99", "900"),
        ],
        hash: Some("32400f1a5df2379ab4e7b79bac275d9312494339".into()),
        tick_size: Some(dec("0.01")),
        min_order_size: Some(dec("5")),
        neg_risk: Some(false),
        last_trade_price: Some(dec("0.45")),
        source: BookSource::Ws,
        connection_id: Some("ws-0-1759420800000".into()),
        sequence: Some(0),
    }
}

pub fn price_change() -> PriceChange {
    PriceChange {
        token_id: YES_TOKEN.into(),
        condition_id: CONDITION_ID.into(),
        side: Side::Sell,
        price: dec("0.5"),
        size: dec("200"),
        best_bid: Some(dec("0")),
        best_ask: Some(dec("0.5")),
        hash: Some("1895759e4df7a796bf4f1c5a5950b748306923e2".into()),
        timestamp_ms: 1_757_908_892_351,
        received_ms: 1_757_908_892_400,
        connection_id: "ws-0-1757908800000".into(),
        sequence: 42,
        entry_index: 1,
    }
}

pub fn last_trade() -> LastTrade {
    LastTrade {
        token_id: YES_TOKEN.into(),
        condition_id: CONDITION_ID.into(),
        price: dec("0.456"),
        size: dec("219.217767"),
        side: Some(Side::Buy),
        fee_rate_bps: Some(0),
        transaction_hash: None,
        timestamp_ms: 1_750_428_146_322,
        received_ms: 1_750_428_146_400,
        connection_id: "ws-1-1750428000000".into(),
        sequence: 7,
    }
}

pub fn tick_size_change() -> TickSizeChange {
    TickSizeChange {
        token_id: NO_TOKEN.into(),
        condition_id: CONDITION_ID.into(),
        old_tick_size: dec("0.01"),
        new_tick_size: dec("0.001"),
        timestamp_ms: 1_750_428_146_322,
        received_ms: 1_750_428_146_401,
        connection_id: "ws-1-1750428000000".into(),
        sequence: 8,
    }
}

pub fn best_bid_ask() -> BestBidAsk {
    BestBidAsk {
        token_id: NO_TOKEN.into(),
        condition_id: CONDITION_ID.into(),
        best_bid: Some(dec("0.73")),
        best_ask: Some(dec("0.77")),
        spread: Some(dec("0.04")),
        timestamp_ms: 1_766_789_469_958,
        received_ms: 1_766_789_470_000,
        connection_id: "ws-2-1766789400000".into(),
        sequence: 3,
    }
}

pub fn market_lifecycle() -> MarketLifecycle {
    MarketLifecycle {
        kind: LifecycleKind::MarketResolved,
        condition_id: CONDITION_ID.into(),
        gamma_market_id: Some("1031769".into()),
        question: Some("Will NVIDIA (NVDA) close above $240 end of January?".into()),
        slug: Some("nvda-above-240-on-january-30-2026".into()),
        token_ids: vec![YES_TOKEN.into(), NO_TOKEN.into()],
        outcomes: vec!["Yes".into(), "No".into()],
        event_id: Some("125819".into()),
        winning_token_id: Some(YES_TOKEN.into()),
        winning_outcome: Some("Yes".into()),
        timestamp_ms: 1_766_790_415_550,
        received_ms: 1_766_790_415_600,
        connection_id: Some("ws-2-1766789400000".into()),
        sequence: Some(4),
    }
}

pub fn price_point() -> PricePoint {
    PricePoint {
        token_id: YES_TOKEN.into(),
        timestamp_ms: 1_752_883_209_000,
        price: dec("0.0115"),
        fidelity_minutes: 60,
        fetched_ms: 1_752_969_700_000,
    }
}

pub fn candle() -> Candle {
    Candle {
        token_id: YES_TOKEN.into(),
        condition_id: Some(CONDITION_ID.into()),
        interval: "1m".into(),
        open_time_ms: 1_774_020_180_000,
        close_time_ms: 1_774_020_240_000,
        open: dec("0.58"),
        high: dec("0.6"),
        low: dec("0.57"),
        close: dec("0.59"),
        volume: dec("1032.155171"),
        notional: dec("605.84999918"),
        vwap: dec("0.586976634813"),
        trade_count: 4,
        first_trade_ms: 1_774_020_181_000,
        last_trade_ms: 1_774_020_239_000,
        version: 4,
        is_final: true,
        revision: 1,
    }
}

pub fn book_state() -> BookState {
    BookState {
        token_id: YES_TOKEN.into(),
        condition_id: Some(CONDITION_ID.into()),
        timestamp_ms: 1_759_420_800_123,
        bids: vec![level("0.45", "100"), level("0.44", "120.5")],
        asks: vec![level("0.46", "150"), level("0.47", "80")],
        full_depth: false,
        bid_level_count: 3,
        ask_level_count: 3,
        best_bid: Some(dec("0.45")),
        best_ask: Some(dec("0.46")),
        mid: Some(dec("0.455")),
        spread: Some(dec("0.01")),
        tick_size: Some(dec("0.01")),
        bid_depth_1_tick: dec("220.5"),
        bid_depth_5_ticks: dec("220.5"),
        bid_depth_10_ticks: dec("220.5"),
        ask_depth_1_tick: dec("230"),
        ask_depth_5_ticks: dec("230"),
        ask_depth_10_ticks: dec("230"),
        consistent: true,
        version: 17,
    }
}

pub fn continuity() -> Continuity {
    Continuity {
        continuity_id: "ws-0-1759420800000:disconnect:1759420900000".into(),
        kind: ContinuityKind::Disconnect,
        token_ids: vec![YES_TOKEN.into(), NO_TOKEN.into()],
        gap_start_ms: 1_759_420_900_000,
        gap_end_ms: Some(1_759_420_901_750),
        detected_ms: 1_759_420_900_010,
        source: "ws-bridge".into(),
        connection_id: Some("ws-0-1759420800000".into()),
        reason: "server closed the connection (code 1006)".into(),
    }
}

pub fn dead_letter() -> DeadLetter {
    DeadLetter {
        dead_letter_id: "0f0e0d0c".into(),
        source: "collector".into(),
        origin: "http://127.0.0.1:8900/data/trades?market=0x57&offset=0".into(),
        error: "field `price`: \"abc\" is not a decimal number".into(),
        payload: b"{\"price\":\"abc\"}\x00\xff".to_vec(),
        topic: None,
        partition: None,
        offset: None,
        occurred_ms: 1_774_020_195_123,
    }
}

pub fn leaderboard_entry() -> LeaderboardEntry {
    LeaderboardEntry {
        proxy_wallet: "0x569f366e7087d8cc66d8ec55cdefd5577dd30056".into(),
        period: "WEEK".into(),
        category: "OVERALL".into(),
        order_by: "PNL".into(),
        rank: 1,
        user_name: Some("TopTrader".into()),
        x_username: Some("toptrader".into()),
        profile_image: None,
        verified_badge: Some(true),
        volume: Some(dec("1000000")),
        pnl: Some(dec("-150000.125")),
        snapshot_ms: 1_774_020_195_123,
    }
}

pub fn signal() -> Signal {
    let value = |name: &str, value: &str| SignalValue {
        name: name.into(),
        value: value.into(),
    };
    Signal {
        signal_id: "9b2f6c0e4a1d8e7f3c5b2a1908d7e6f5".into(),
        kind: SignalKind::BinaryArbitrage,
        rule_id: "binary-arbitrage".into(),
        rule_version: 1,
        subject: format!("{CONDITION_ID}:buy_every_leg"),
        condition_ids: vec![CONDITION_ID.into()],
        token_ids: vec![YES_TOKEN.into(), NO_TOKEN.into()],
        event_id: Some("125819".into()),
        window_start_ms: 1_774_020_191_000,
        window_end_ms: Some(1_774_020_193_500),
        thresholds: vec![value("min_edge", "0.005000"), value("min_size", "1.000000")],
        inputs: vec![
            value("closed_by", "edge_gone"),
            value("duration_ms", "2500"),
            value("max_edge", "0.080000"),
            value("size_at_max_edge", "8.000000"),
        ],
        links: vec![format!("{YES_TOKEN}@1774020192000")],
    }
}
