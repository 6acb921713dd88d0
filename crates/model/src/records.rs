//! Every record Polytape publishes. Each type has exactly one Avro schema under
//! `schemas/avro/`, with fields in the same order (the codec checks this at start-up).
//!
//! Conventions, documented once here and on every schema field:
//! - times are UTC milliseconds since the epoch (`*_ms`, Avro `timestamp-millis`);
//! - prices and sizes are exact decimals at scale 6, notional sums at scale 12;
//! - `received_ms` is when Polytape read the data, `timestamp_ms` is upstream's time;
//! - WebSocket records carry the `connection_id` and a per-connection `sequence` so that
//!   consumers can see ordering and detect loss.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::decimal::{option_scale6, scale6, scale12};

/// Order side as Polymarket names it. On a book, BUY is the bid side and SELL the ask side.
/// Codes and names: `codes.rs` ([`Side::name`] is the spelling trade identity uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    /// Parses upstream's side text (case-insensitive).
    pub fn parse(text: &str) -> Option<Side> {
        if text.eq_ignore_ascii_case("buy") {
            return Some(Side::Buy);
        }
        if text.eq_ignore_ascii_case("sell") {
            return Some(Side::Sell);
        }
        None
    }
}

/// One outcome token of a market.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketToken {
    pub token_id: String,
    pub outcome: String,
    pub outcome_index: i32,
    pub winner: Option<bool>,
}

/// A market (one condition), merged from Gamma and CLOB. Key: `condition_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Market {
    pub condition_id: String,
    pub question_id: Option<String>,
    pub gamma_market_id: Option<String>,
    pub event_ids: Vec<String>,
    pub slug: Option<String>,
    pub question: String,
    pub description: Option<String>,
    pub protocol_version: Option<String>,
    pub tokens: Vec<MarketToken>,
    pub active: bool,
    pub closed: bool,
    pub archived: bool,
    pub accepting_orders: bool,
    pub enable_order_book: bool,
    pub neg_risk: bool,
    pub neg_risk_market_id: Option<String>,
    #[serde(with = "option_scale6")]
    pub tick_size: Option<Decimal>,
    #[serde(with = "option_scale6")]
    pub min_order_size: Option<Decimal>,
    pub maker_base_fee_bps: Option<i32>,
    pub taker_base_fee_bps: Option<i32>,
    pub fees_enabled: Option<bool>,
    pub tags: Vec<String>,
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    pub created_ms: Option<i64>,
    pub closed_ms: Option<i64>,
    pub resolution_status: Option<String>,
    pub winning_token_id: Option<String>,
    #[serde(with = "option_scale6")]
    pub volume: Option<Decimal>,
    #[serde(with = "option_scale6")]
    pub liquidity: Option<Decimal>,
    pub upstream_updated_ms: Option<i64>,
    pub content_hash: String,
    pub updated_ms: i64,
}

/// An event (a group of markets). Key: `event_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub event_id: String,
    pub slug: Option<String>,
    pub ticker: Option<String>,
    pub title: String,
    pub description: Option<String>,
    pub active: bool,
    pub closed: bool,
    pub archived: bool,
    pub neg_risk: bool,
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    pub created_ms: Option<i64>,
    #[serde(with = "option_scale6")]
    pub volume: Option<Decimal>,
    #[serde(with = "option_scale6")]
    pub liquidity: Option<Decimal>,
    #[serde(with = "option_scale6")]
    pub open_interest: Option<Decimal>,
    pub tags: Vec<String>,
    pub series_slug: Option<String>,
    pub market_condition_ids: Vec<String>,
    pub upstream_updated_ms: Option<i64>,
    pub content_hash: String,
    pub updated_ms: i64,
}

/// Which upstream feed a trade came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TradeSource {
    DataApiV1,
    DataApiV2,
}

/// One fill on the public tape. Key: `condition_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trade {
    pub trade_id: String,
    pub condition_id: String,
    pub token_id: String,
    pub outcome: Option<String>,
    pub outcome_index: Option<i32>,
    pub side: Side,
    #[serde(with = "scale6")]
    pub price: Decimal,
    #[serde(with = "scale6")]
    pub size: Decimal,
    pub timestamp_ms: i64,
    pub transaction_hash: String,
    pub proxy_wallet: String,
    pub source: TradeSource,
    pub ingested_ms: i64,
}

/// One price level of a book.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookLevel {
    #[serde(with = "scale6")]
    pub price: Decimal,
    #[serde(with = "scale6")]
    pub size: Decimal,
}

/// Where a book snapshot came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BookSource {
    Ws,
    Rest,
}

/// A full order book of one token, authoritative at `timestamp_ms`. Key: `condition_id`.
/// Levels are best-first on both sides (bids descending, asks ascending), whatever order
/// upstream served them in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookSnapshot {
    pub token_id: String,
    pub condition_id: String,
    pub timestamp_ms: i64,
    pub received_ms: i64,
    pub bids: Vec<BookLevel>,
    pub asks: Vec<BookLevel>,
    pub hash: Option<String>,
    #[serde(with = "option_scale6")]
    pub tick_size: Option<Decimal>,
    #[serde(with = "option_scale6")]
    pub min_order_size: Option<Decimal>,
    pub neg_risk: Option<bool>,
    #[serde(with = "option_scale6")]
    pub last_trade_price: Option<Decimal>,
    pub source: BookSource,
    pub connection_id: Option<String>,
    pub sequence: Option<i64>,
}

/// One level change from a WS `price_change` event: the new absolute size at a price
/// (0 removes the level). Key: `condition_id` (the entries of one upstream message, both
/// tokens of its market, are adjacent on one partition).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceChange {
    pub token_id: String,
    pub condition_id: String,
    pub side: Side,
    #[serde(with = "scale6")]
    pub price: Decimal,
    #[serde(with = "scale6")]
    pub size: Decimal,
    #[serde(with = "option_scale6")]
    pub best_bid: Option<Decimal>,
    #[serde(with = "option_scale6")]
    pub best_ask: Option<Decimal>,
    pub hash: Option<String>,
    pub timestamp_ms: i64,
    pub received_ms: i64,
    pub connection_id: String,
    pub sequence: i64,
    pub entry_index: i32,
}

/// A WS `last_trade_price` event (a maker/taker match). Key: `condition_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastTrade {
    pub token_id: String,
    pub condition_id: String,
    #[serde(with = "scale6")]
    pub price: Decimal,
    #[serde(with = "scale6")]
    pub size: Decimal,
    pub side: Option<Side>,
    pub fee_rate_bps: Option<i32>,
    pub transaction_hash: Option<String>,
    pub timestamp_ms: i64,
    pub received_ms: i64,
    pub connection_id: String,
    pub sequence: i64,
}

/// A WS `tick_size_change` event. Key: `condition_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickSizeChange {
    pub token_id: String,
    pub condition_id: String,
    #[serde(with = "scale6")]
    pub old_tick_size: Decimal,
    #[serde(with = "scale6")]
    pub new_tick_size: Decimal,
    pub timestamp_ms: i64,
    pub received_ms: i64,
    pub connection_id: String,
    pub sequence: i64,
}

/// A WS `best_bid_ask` event. Key: `condition_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BestBidAsk {
    pub token_id: String,
    pub condition_id: String,
    #[serde(with = "option_scale6")]
    pub best_bid: Option<Decimal>,
    #[serde(with = "option_scale6")]
    pub best_ask: Option<Decimal>,
    #[serde(with = "option_scale6")]
    pub spread: Option<Decimal>,
    pub timestamp_ms: i64,
    pub received_ms: i64,
    pub connection_id: String,
    pub sequence: i64,
}

/// What happened to a market.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LifecycleKind {
    NewMarket,
    MarketResolved,
}

/// A market was listed or resolved (WS `new_market` / `market_resolved`). Key: `condition_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketLifecycle {
    pub kind: LifecycleKind,
    pub condition_id: String,
    pub gamma_market_id: Option<String>,
    pub question: Option<String>,
    pub slug: Option<String>,
    pub token_ids: Vec<String>,
    pub outcomes: Vec<String>,
    pub event_id: Option<String>,
    pub winning_token_id: Option<String>,
    pub winning_outcome: Option<String>,
    pub timestamp_ms: i64,
    pub received_ms: i64,
    pub connection_id: Option<String>,
    pub sequence: Option<i64>,
}

/// One point of CLOB `/prices-history`. Key: `token_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PricePoint {
    pub token_id: String,
    pub timestamp_ms: i64,
    #[serde(with = "scale6")]
    pub price: Decimal,
    pub fidelity_minutes: i32,
    pub fetched_ms: i64,
}

/// OHLCV of one token over one UTC-aligned interval. Key: `token_id:interval:open_time_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candle {
    pub token_id: String,
    pub condition_id: Option<String>,
    pub interval: String,
    pub open_time_ms: i64,
    pub close_time_ms: i64,
    #[serde(with = "scale6")]
    pub open: Decimal,
    #[serde(with = "scale6")]
    pub high: Decimal,
    #[serde(with = "scale6")]
    pub low: Decimal,
    #[serde(with = "scale6")]
    pub close: Decimal,
    #[serde(with = "scale6")]
    pub volume: Decimal,
    #[serde(with = "scale12")]
    pub notional: Decimal,
    #[serde(with = "scale12")]
    pub vwap: Decimal,
    pub trade_count: i64,
    pub first_trade_ms: i64,
    pub last_trade_ms: i64,
    pub version: i64,
    pub is_final: bool,
    /// Corrections after the candle was final: trades that arrived later (0: none).
    #[serde(default)]
    pub revision: i32,
}

/// Derived state of one token's book. Key: `token_id` (compacted topic).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookState {
    pub token_id: String,
    pub condition_id: Option<String>,
    pub timestamp_ms: i64,
    pub bids: Vec<BookLevel>,
    pub asks: Vec<BookLevel>,
    pub full_depth: bool,
    pub bid_level_count: i32,
    pub ask_level_count: i32,
    #[serde(with = "option_scale6")]
    pub best_bid: Option<Decimal>,
    #[serde(with = "option_scale6")]
    pub best_ask: Option<Decimal>,
    #[serde(with = "option_scale6")]
    pub mid: Option<Decimal>,
    #[serde(with = "option_scale6")]
    pub spread: Option<Decimal>,
    #[serde(with = "option_scale6")]
    pub tick_size: Option<Decimal>,
    #[serde(with = "scale6")]
    pub bid_depth_1_tick: Decimal,
    #[serde(with = "scale6")]
    pub bid_depth_5_ticks: Decimal,
    #[serde(with = "scale6")]
    pub bid_depth_10_ticks: Decimal,
    #[serde(with = "scale6")]
    pub ask_depth_1_tick: Decimal,
    #[serde(with = "scale6")]
    pub ask_depth_5_ticks: Decimal,
    #[serde(with = "scale6")]
    pub ask_depth_10_ticks: Decimal,
    pub consistent: bool,
    pub version: i64,
}

/// Why an interval of data may be incomplete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ContinuityKind {
    Disconnect,
    Freeze,
    SubscriptionRefused,
    Resync,
    BookMismatch,
    UpstreamGap,
    Other,
}

/// A declared gap: for these tokens, data between `gap_start_ms` and `gap_end_ms` may be
/// incomplete. Key: `continuity_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Continuity {
    pub continuity_id: String,
    pub kind: ContinuityKind,
    pub token_ids: Vec<String>,
    pub gap_start_ms: i64,
    pub gap_end_ms: Option<i64>,
    pub detected_ms: i64,
    pub source: String,
    pub connection_id: Option<String>,
    pub reason: String,
}

/// Input that could not be turned into a record, kept with the reason. Key: `source`.
/// Made by `DeadLetter::from_upstream` / `from_message` (one id scheme: `dead_letter.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub dead_letter_id: String,
    pub source: String,
    pub origin: String,
    pub error: String,
    #[serde(with = "crate::bytes")]
    pub payload: Vec<u8>,
    pub topic: Option<String>,
    pub partition: Option<i32>,
    pub offset: Option<i64>,
    pub occurred_ms: i64,
}

/// One row of a Data API `/v1/leaderboard` list, as read at `snapshot_ms`. Key:
/// `proxy_wallet` (the seed of a wallet dimension: every list a wallet appears in lands on
/// one partition). A snapshot reads every (period, category, order_by) list; the row's
/// identity is `(snapshot_ms, period, category, order_by, proxy_wallet)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderboardEntry {
    pub proxy_wallet: String,
    pub period: String,
    pub category: String,
    pub order_by: String,
    pub rank: i32,
    pub user_name: Option<String>,
    pub x_username: Option<String>,
    pub profile_image: Option<String>,
    pub verified_badge: Option<bool>,
    #[serde(with = "option_scale6")]
    pub volume: Option<Decimal>,
    #[serde(with = "option_scale6")]
    pub pnl: Option<Decimal>,
    pub snapshot_ms: i64,
}

/// What a signal says happened (see `services/signals`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SignalKind {
    /// A fill at or above a notional threshold by a wallet with little or no history.
    LargeTradeNewWallet,
    /// Buying every YES of a negative-risk event costs less than a dollar (or selling every
    /// YES brings more), net of fees.
    NegRiskArbitrage,
    /// Buying YES and NO of a binary market costs less than a dollar, net of fees.
    BinaryArbitrage,
    /// A token's price moved by at least a threshold within a window.
    PriceMove,
    /// A token's traded notional within a window reached a multiple of its trailing mean.
    VolumeSpike,
}

/// One named value of a signal: a threshold it applied or an input it computed, as exact
/// decimal text (prices, sizes, edges), an integer (counts, UTC milliseconds) or a word.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalValue {
    pub name: String,
    pub value: String,
}

/// A signal with what explains it: the rule and thresholds that fired, the computed inputs,
/// the markets, tokens and event, and links to what it rests on (trade ids, or book times as
/// `token@ms`). Key: `signal_id`, which is deterministic (rule + subject + window start): a
/// replay's copy replaces the first, and a window's opening (no end) and closing are one
/// signal whose later record carries the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signal {
    pub signal_id: String,
    pub kind: SignalKind,
    pub rule_id: String,
    pub rule_version: i32,
    /// What the signal is about: a wallet, a market, a negative-risk event (with the window's
    /// direction) or a token.
    pub subject: String,
    pub condition_ids: Vec<String>,
    pub token_ids: Vec<String>,
    pub event_id: Option<String>,
    pub window_start_ms: i64,
    /// `None` while a window is still open.
    pub window_end_ms: Option<i64>,
    /// Thresholds and inputs, each in name order.
    pub thresholds: Vec<SignalValue>,
    pub inputs: Vec<SignalValue>,
    pub links: Vec<String>,
}

impl Signal {
    /// The input called `name`, if the signal has one.
    pub fn input(&self, name: &str) -> Option<&str> {
        self.inputs
            .iter()
            .find(|value| value.name == name)
            .map(|value| value.value.as_str())
    }

    /// The threshold called `name`, if the signal has one.
    pub fn threshold(&self, name: &str) -> Option<&str> {
        self.thresholds
            .iter()
            .find(|value| value.name == name)
            .map(|value| value.value.as_str())
    }
}
