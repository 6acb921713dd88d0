//! One ClickHouse row type per table — the one definition the sink writes and the API reads —
//! and the mapping from each topic's record. Fields are in the table's column order (the
//! migrations beside this file create the columns; a test checks both agree); decimals travel
//! as their unscaled integers at the column's scale (Decimal(18, 6) → i64, Decimal(38, s) →
//! i128), times as UTC milliseconds (DateTime64(3)), enums as their Enum8 codes
//! (`polytape_model::codes`). Readers select a whole row with `SELECT ?fields FROM <table>`;
//! a query that needs a few columns of a large table (the book replay) declares its own
//! projection next to the query.

use clickhouse::Row;
use polytape_model::{
    BestBidAsk, BookLevel, BookSnapshot, BookState, Candle, Continuity, DeadLetter, Decimal, Event,
    LastTrade, LeaderboardEntry, Market, MarketLifecycle, PriceChange, PricePoint, Side, Signal,
    TickSizeChange, Trade, micros::to_units,
};
use serde::{Deserialize, Serialize};

/// Why a decoded record cannot become a row (it goes to `dead_letters` instead).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {problem}")]
pub struct MapError {
    pub field: &'static str,
    pub problem: String,
}

fn unscaled(field: &'static str, value: Decimal, scale: u32) -> Result<i128, MapError> {
    to_units(field, value, scale).map_err(|error| MapError {
        field,
        problem: error.to_string(),
    })
}

/// Decimal(18, 6).
fn decimal18(field: &'static str, value: Decimal) -> Result<i64, MapError> {
    i64::try_from(unscaled(field, value, 6)?).map_err(|_| MapError {
        field,
        problem: format!("{value} does not fit Decimal(18, 6)"),
    })
}

fn decimal18_opt(field: &'static str, value: Option<Decimal>) -> Result<Option<i64>, MapError> {
    value.map(|value| decimal18(field, value)).transpose()
}

/// Decimal(38, scale).
fn decimal38(field: &'static str, value: Decimal, scale: u32) -> Result<i128, MapError> {
    unscaled(field, value, scale)
}

fn decimal38_opt(field: &'static str, value: Option<Decimal>) -> Result<Option<i128>, MapError> {
    value.map(|value| decimal38(field, value, 6)).transpose()
}

fn levels(field: &'static str, levels: &[BookLevel]) -> Result<(Vec<i64>, Vec<i64>), MapError> {
    let mut prices = Vec::with_capacity(levels.len());
    let mut sizes = Vec::with_capacity(levels.len());
    for level in levels {
        prices.push(decimal18(field, level.price)?);
        sizes.push(decimal18(field, level.size)?);
    }
    Ok((prices, sizes))
}

#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct MarketRow {
    pub condition_id: String,
    pub question_id: Option<String>,
    pub gamma_market_id: Option<String>,
    pub event_ids: Vec<String>,
    pub slug: Option<String>,
    pub question: String,
    pub description: Option<String>,
    pub protocol_version: Option<String>,
    pub token_ids: Vec<String>,
    pub token_outcomes: Vec<String>,
    pub token_winners: Vec<Option<bool>>,
    pub active: bool,
    pub closed: bool,
    pub archived: bool,
    pub accepting_orders: bool,
    pub enable_order_book: bool,
    pub neg_risk: bool,
    pub neg_risk_market_id: Option<String>,
    pub tick_size: Option<i64>,
    pub min_order_size: Option<i64>,
    pub maker_base_fee_bps: Option<i32>,
    pub taker_base_fee_bps: Option<i32>,
    pub fees_enabled: Option<bool>,
    pub tags: Vec<String>,
    pub start_time: Option<i64>,
    pub end_time: Option<i64>,
    pub created_time: Option<i64>,
    pub closed_time: Option<i64>,
    pub resolution_status: Option<String>,
    pub winning_token_id: Option<String>,
    pub volume: Option<i128>,
    pub liquidity: Option<i128>,
    pub upstream_updated_at: Option<i64>,
    pub content_hash: String,
    pub updated_at: i64,
}

impl TryFrom<Market> for MarketRow {
    type Error = MapError;

    fn try_from(market: Market) -> Result<Self, MapError> {
        Ok(Self {
            token_ids: market
                .tokens
                .iter()
                .map(|token| token.token_id.clone())
                .collect(),
            token_outcomes: market
                .tokens
                .iter()
                .map(|token| token.outcome.clone())
                .collect(),
            token_winners: market.tokens.iter().map(|token| token.winner).collect(),
            tick_size: decimal18_opt("tick_size", market.tick_size)?,
            min_order_size: decimal18_opt("min_order_size", market.min_order_size)?,
            volume: decimal38_opt("volume", market.volume)?,
            liquidity: decimal38_opt("liquidity", market.liquidity)?,
            condition_id: market.condition_id,
            question_id: market.question_id,
            gamma_market_id: market.gamma_market_id,
            event_ids: market.event_ids,
            slug: market.slug,
            question: market.question,
            description: market.description,
            protocol_version: market.protocol_version,
            active: market.active,
            closed: market.closed,
            archived: market.archived,
            accepting_orders: market.accepting_orders,
            enable_order_book: market.enable_order_book,
            neg_risk: market.neg_risk,
            neg_risk_market_id: market.neg_risk_market_id,
            maker_base_fee_bps: market.maker_base_fee_bps,
            taker_base_fee_bps: market.taker_base_fee_bps,
            fees_enabled: market.fees_enabled,
            tags: market.tags,
            start_time: market.start_ms,
            end_time: market.end_ms,
            created_time: market.created_ms,
            closed_time: market.closed_ms,
            resolution_status: market.resolution_status,
            winning_token_id: market.winning_token_id,
            upstream_updated_at: market.upstream_updated_ms,
            content_hash: market.content_hash,
            updated_at: market.updated_ms,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct EventRow {
    pub event_id: String,
    pub slug: Option<String>,
    pub ticker: Option<String>,
    pub title: String,
    pub description: Option<String>,
    pub active: bool,
    pub closed: bool,
    pub archived: bool,
    pub neg_risk: bool,
    pub start_time: Option<i64>,
    pub end_time: Option<i64>,
    pub created_time: Option<i64>,
    pub volume: Option<i128>,
    pub liquidity: Option<i128>,
    pub open_interest: Option<i128>,
    pub tags: Vec<String>,
    pub series_slug: Option<String>,
    pub market_condition_ids: Vec<String>,
    pub upstream_updated_at: Option<i64>,
    pub content_hash: String,
    pub updated_at: i64,
}

impl TryFrom<Event> for EventRow {
    type Error = MapError;

    fn try_from(event: Event) -> Result<Self, MapError> {
        Ok(Self {
            volume: decimal38_opt("volume", event.volume)?,
            liquidity: decimal38_opt("liquidity", event.liquidity)?,
            open_interest: decimal38_opt("open_interest", event.open_interest)?,
            event_id: event.event_id,
            slug: event.slug,
            ticker: event.ticker,
            title: event.title,
            description: event.description,
            active: event.active,
            closed: event.closed,
            archived: event.archived,
            neg_risk: event.neg_risk,
            start_time: event.start_ms,
            end_time: event.end_ms,
            created_time: event.created_ms,
            tags: event.tags,
            series_slug: event.series_slug,
            market_condition_ids: event.market_condition_ids,
            upstream_updated_at: event.upstream_updated_ms,
            content_hash: event.content_hash,
            updated_at: event.updated_ms,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct TradeRow {
    pub trade_id: String,
    pub condition_id: String,
    pub token_id: String,
    pub outcome: Option<String>,
    pub outcome_index: Option<i32>,
    pub side: i8,
    pub price: i64,
    pub size: i64,
    pub timestamp: i64,
    pub transaction_hash: String,
    pub proxy_wallet: String,
    pub source: i8,
    pub ingested_at: i64,
}

impl TryFrom<Trade> for TradeRow {
    type Error = MapError;

    fn try_from(trade: Trade) -> Result<Self, MapError> {
        Ok(Self {
            price: decimal18("price", trade.price)?,
            size: decimal18("size", trade.size)?,
            trade_id: trade.trade_id,
            condition_id: trade.condition_id,
            token_id: trade.token_id,
            outcome: trade.outcome,
            outcome_index: trade.outcome_index,
            side: trade.side.code(),
            timestamp: trade.timestamp_ms,
            transaction_hash: trade.transaction_hash,
            proxy_wallet: trade.proxy_wallet,
            source: trade.source.code(),
            ingested_at: trade.ingested_ms,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct BookSnapshotRow {
    pub token_id: String,
    pub condition_id: String,
    pub timestamp: i64,
    pub received_at: i64,
    pub bid_prices: Vec<i64>,
    pub bid_sizes: Vec<i64>,
    pub ask_prices: Vec<i64>,
    pub ask_sizes: Vec<i64>,
    pub hash: Option<String>,
    pub tick_size: Option<i64>,
    pub min_order_size: Option<i64>,
    pub neg_risk: Option<bool>,
    pub last_trade_price: Option<i64>,
    pub source: i8,
    pub connection_id: String,
    pub sequence: i64,
}

impl TryFrom<BookSnapshot> for BookSnapshotRow {
    type Error = MapError;

    fn try_from(book: BookSnapshot) -> Result<Self, MapError> {
        let (bid_prices, bid_sizes) = levels("bids", &book.bids)?;
        let (ask_prices, ask_sizes) = levels("asks", &book.asks)?;
        Ok(Self {
            bid_prices,
            bid_sizes,
            ask_prices,
            ask_sizes,
            tick_size: decimal18_opt("tick_size", book.tick_size)?,
            min_order_size: decimal18_opt("min_order_size", book.min_order_size)?,
            last_trade_price: decimal18_opt("last_trade_price", book.last_trade_price)?,
            token_id: book.token_id,
            condition_id: book.condition_id,
            timestamp: book.timestamp_ms,
            received_at: book.received_ms,
            hash: book.hash,
            neg_risk: book.neg_risk,
            source: book.source.code(),
            // REST snapshots have no connection: '' and -1 keep the identity columns non-null.
            connection_id: book.connection_id.unwrap_or_default(),
            sequence: book.sequence.unwrap_or(-1),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct PriceChangeRow {
    pub token_id: String,
    pub condition_id: String,
    pub side: i8,
    pub price: i64,
    pub size: i64,
    pub best_bid: Option<i64>,
    pub best_ask: Option<i64>,
    pub hash: Option<String>,
    pub timestamp: i64,
    pub received_at: i64,
    pub connection_id: String,
    pub sequence: i64,
    pub entry_index: i32,
}

impl TryFrom<PriceChange> for PriceChangeRow {
    type Error = MapError;

    fn try_from(change: PriceChange) -> Result<Self, MapError> {
        Ok(Self {
            price: decimal18("price", change.price)?,
            size: decimal18("size", change.size)?,
            best_bid: decimal18_opt("best_bid", change.best_bid)?,
            best_ask: decimal18_opt("best_ask", change.best_ask)?,
            token_id: change.token_id,
            condition_id: change.condition_id,
            side: change.side.code(),
            hash: change.hash,
            timestamp: change.timestamp_ms,
            received_at: change.received_ms,
            connection_id: change.connection_id,
            sequence: change.sequence,
            entry_index: change.entry_index,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct LastTradeRow {
    pub token_id: String,
    pub condition_id: String,
    pub price: i64,
    pub size: i64,
    pub side: Option<i8>,
    pub fee_rate_bps: Option<i32>,
    pub transaction_hash: Option<String>,
    pub timestamp: i64,
    pub received_at: i64,
    pub connection_id: String,
    pub sequence: i64,
}

impl TryFrom<LastTrade> for LastTradeRow {
    type Error = MapError;

    fn try_from(trade: LastTrade) -> Result<Self, MapError> {
        Ok(Self {
            price: decimal18("price", trade.price)?,
            size: decimal18("size", trade.size)?,
            token_id: trade.token_id,
            condition_id: trade.condition_id,
            side: trade.side.map(Side::code),
            fee_rate_bps: trade.fee_rate_bps,
            transaction_hash: trade.transaction_hash,
            timestamp: trade.timestamp_ms,
            received_at: trade.received_ms,
            connection_id: trade.connection_id,
            sequence: trade.sequence,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct TickSizeChangeRow {
    pub token_id: String,
    pub condition_id: String,
    pub old_tick_size: i64,
    pub new_tick_size: i64,
    pub timestamp: i64,
    pub received_at: i64,
    pub connection_id: String,
    pub sequence: i64,
}

impl TryFrom<TickSizeChange> for TickSizeChangeRow {
    type Error = MapError;

    fn try_from(change: TickSizeChange) -> Result<Self, MapError> {
        Ok(Self {
            old_tick_size: decimal18("old_tick_size", change.old_tick_size)?,
            new_tick_size: decimal18("new_tick_size", change.new_tick_size)?,
            token_id: change.token_id,
            condition_id: change.condition_id,
            timestamp: change.timestamp_ms,
            received_at: change.received_ms,
            connection_id: change.connection_id,
            sequence: change.sequence,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct BestBidAskRow {
    pub token_id: String,
    pub condition_id: String,
    pub best_bid: Option<i64>,
    pub best_ask: Option<i64>,
    pub spread: Option<i64>,
    pub timestamp: i64,
    pub received_at: i64,
    pub connection_id: String,
    pub sequence: i64,
}

impl TryFrom<BestBidAsk> for BestBidAskRow {
    type Error = MapError;

    fn try_from(quote: BestBidAsk) -> Result<Self, MapError> {
        Ok(Self {
            best_bid: decimal18_opt("best_bid", quote.best_bid)?,
            best_ask: decimal18_opt("best_ask", quote.best_ask)?,
            spread: decimal18_opt("spread", quote.spread)?,
            token_id: quote.token_id,
            condition_id: quote.condition_id,
            timestamp: quote.timestamp_ms,
            received_at: quote.received_ms,
            connection_id: quote.connection_id,
            sequence: quote.sequence,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct MarketLifecycleRow {
    pub kind: i8,
    pub condition_id: String,
    pub gamma_market_id: Option<String>,
    pub question: Option<String>,
    pub slug: Option<String>,
    pub token_ids: Vec<String>,
    pub outcomes: Vec<String>,
    pub event_id: Option<String>,
    pub winning_token_id: Option<String>,
    pub winning_outcome: Option<String>,
    pub timestamp: i64,
    pub received_at: i64,
    pub connection_id: String,
    pub sequence: i64,
}

impl TryFrom<MarketLifecycle> for MarketLifecycleRow {
    type Error = MapError;

    fn try_from(event: MarketLifecycle) -> Result<Self, MapError> {
        Ok(Self {
            kind: event.kind.code(),
            condition_id: event.condition_id,
            gamma_market_id: event.gamma_market_id,
            question: event.question,
            slug: event.slug,
            token_ids: event.token_ids,
            outcomes: event.outcomes,
            event_id: event.event_id,
            winning_token_id: event.winning_token_id,
            winning_outcome: event.winning_outcome,
            timestamp: event.timestamp_ms,
            received_at: event.received_ms,
            connection_id: event.connection_id.unwrap_or_default(),
            sequence: event.sequence.unwrap_or(-1),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct PricePointRow {
    pub token_id: String,
    pub timestamp: i64,
    pub price: i64,
    pub fidelity_minutes: i32,
    pub fetched_at: i64,
}

impl TryFrom<PricePoint> for PricePointRow {
    type Error = MapError;

    fn try_from(point: PricePoint) -> Result<Self, MapError> {
        Ok(Self {
            price: decimal18("price", point.price)?,
            token_id: point.token_id,
            timestamp: point.timestamp_ms,
            fidelity_minutes: point.fidelity_minutes,
            fetched_at: point.fetched_ms,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct CandleRow {
    pub token_id: String,
    pub condition_id: Option<String>,
    pub interval: String,
    pub open_time: i64,
    pub close_time: i64,
    pub open: i64,
    pub high: i64,
    pub low: i64,
    pub close: i64,
    pub volume: i128,
    pub notional: i128,
    pub vwap: i128,
    pub trade_count: i64,
    pub first_trade_time: i64,
    pub last_trade_time: i64,
    pub version: i64,
    pub is_final: bool,
    pub revision: u32,
}

impl TryFrom<Candle> for CandleRow {
    type Error = MapError;

    fn try_from(candle: Candle) -> Result<Self, MapError> {
        Ok(Self {
            open: decimal18("open", candle.open)?,
            high: decimal18("high", candle.high)?,
            low: decimal18("low", candle.low)?,
            close: decimal18("close", candle.close)?,
            volume: decimal38("volume", candle.volume, 6)?,
            notional: decimal38("notional", candle.notional, 12)?,
            vwap: decimal38("vwap", candle.vwap, 12)?,
            token_id: candle.token_id,
            condition_id: candle.condition_id,
            interval: candle.interval,
            open_time: candle.open_time_ms,
            close_time: candle.close_time_ms,
            trade_count: candle.trade_count,
            first_trade_time: candle.first_trade_ms,
            last_trade_time: candle.last_trade_ms,
            version: candle.version,
            is_final: candle.is_final,
            // Never negative (the builder counts up from 0); a negative value reads as none.
            revision: u32::try_from(candle.revision).unwrap_or(0),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct BookStateRow {
    pub token_id: String,
    pub condition_id: Option<String>,
    pub timestamp: i64,
    pub bid_prices: Vec<i64>,
    pub bid_sizes: Vec<i64>,
    pub ask_prices: Vec<i64>,
    pub ask_sizes: Vec<i64>,
    pub full_depth: bool,
    pub bid_level_count: i32,
    pub ask_level_count: i32,
    pub best_bid: Option<i64>,
    pub best_ask: Option<i64>,
    pub mid: Option<i64>,
    pub spread: Option<i64>,
    pub tick_size: Option<i64>,
    pub bid_depth_1_tick: i64,
    pub bid_depth_5_ticks: i64,
    pub bid_depth_10_ticks: i64,
    pub ask_depth_1_tick: i64,
    pub ask_depth_5_ticks: i64,
    pub ask_depth_10_ticks: i64,
    pub consistent: bool,
    pub version: i64,
}

impl TryFrom<BookState> for BookStateRow {
    type Error = MapError;

    fn try_from(state: BookState) -> Result<Self, MapError> {
        let (bid_prices, bid_sizes) = levels("bids", &state.bids)?;
        let (ask_prices, ask_sizes) = levels("asks", &state.asks)?;
        Ok(Self {
            bid_prices,
            bid_sizes,
            ask_prices,
            ask_sizes,
            best_bid: decimal18_opt("best_bid", state.best_bid)?,
            best_ask: decimal18_opt("best_ask", state.best_ask)?,
            mid: decimal18_opt("mid", state.mid)?,
            spread: decimal18_opt("spread", state.spread)?,
            tick_size: decimal18_opt("tick_size", state.tick_size)?,
            bid_depth_1_tick: decimal18("bid_depth_1_tick", state.bid_depth_1_tick)?,
            bid_depth_5_ticks: decimal18("bid_depth_5_ticks", state.bid_depth_5_ticks)?,
            bid_depth_10_ticks: decimal18("bid_depth_10_ticks", state.bid_depth_10_ticks)?,
            ask_depth_1_tick: decimal18("ask_depth_1_tick", state.ask_depth_1_tick)?,
            ask_depth_5_ticks: decimal18("ask_depth_5_ticks", state.ask_depth_5_ticks)?,
            ask_depth_10_ticks: decimal18("ask_depth_10_ticks", state.ask_depth_10_ticks)?,
            token_id: state.token_id,
            condition_id: state.condition_id,
            timestamp: state.timestamp_ms,
            full_depth: state.full_depth,
            bid_level_count: state.bid_level_count,
            ask_level_count: state.ask_level_count,
            consistent: state.consistent,
            version: state.version,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct ContinuityRow {
    pub continuity_id: String,
    pub kind: i8,
    pub token_ids: Vec<String>,
    pub gap_start: i64,
    pub gap_end: Option<i64>,
    pub detected_at: i64,
    pub source: String,
    pub connection_id: String,
    pub reason: String,
}

impl TryFrom<Continuity> for ContinuityRow {
    type Error = MapError;

    fn try_from(gap: Continuity) -> Result<Self, MapError> {
        Ok(Self {
            continuity_id: gap.continuity_id,
            kind: gap.kind.code(),
            token_ids: gap.token_ids,
            gap_start: gap.gap_start_ms,
            gap_end: gap.gap_end_ms,
            detected_at: gap.detected_ms,
            source: gap.source,
            connection_id: gap.connection_id.unwrap_or_default(),
            reason: gap.reason,
        })
    }
}

/// A signal; thresholds and inputs as parallel name/value arrays. `revision` is 0 while the
/// window is open and 1 once it has an end, so the closing replaces the opening.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct SignalRow {
    pub signal_id: String,
    pub kind: i8,
    pub rule_id: String,
    pub rule_version: i32,
    pub subject: String,
    pub condition_ids: Vec<String>,
    pub token_ids: Vec<String>,
    pub event_id: Option<String>,
    pub window_start: i64,
    pub window_end: Option<i64>,
    pub threshold_names: Vec<String>,
    pub threshold_values: Vec<String>,
    pub input_names: Vec<String>,
    pub input_values: Vec<String>,
    pub links: Vec<String>,
    pub revision: u8,
}

impl TryFrom<Signal> for SignalRow {
    type Error = MapError;

    fn try_from(signal: Signal) -> Result<Self, MapError> {
        let (threshold_names, threshold_values) = signal
            .thresholds
            .into_iter()
            .map(|value| (value.name, value.value))
            .unzip();
        let (input_names, input_values) = signal
            .inputs
            .into_iter()
            .map(|value| (value.name, value.value))
            .unzip();
        Ok(Self {
            signal_id: signal.signal_id,
            kind: signal.kind.code(),
            rule_id: signal.rule_id,
            rule_version: signal.rule_version,
            subject: signal.subject,
            condition_ids: signal.condition_ids,
            token_ids: signal.token_ids,
            event_id: signal.event_id,
            window_start: signal.window_start_ms,
            revision: u8::from(signal.window_end_ms.is_some()),
            window_end: signal.window_end_ms,
            threshold_names,
            threshold_values,
            input_names,
            input_values,
            links: signal.links,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct DeadLetterRow {
    pub dead_letter_id: String,
    pub source: String,
    pub origin: String,
    pub error: String,
    pub payload_base64: String,
    pub topic: Option<String>,
    pub partition: Option<i32>,
    pub offset: Option<i64>,
    pub occurred_at: i64,
}

impl DeadLetterRow {
    /// The row of a dead letter (the payload in base64: `dead_letters` holds any bytes).
    pub fn from_letter(letter: DeadLetter) -> Self {
        use base64::Engine as _;
        Self {
            payload_base64: base64::engine::general_purpose::STANDARD.encode(&letter.payload),
            dead_letter_id: letter.dead_letter_id,
            source: letter.source,
            origin: letter.origin,
            error: letter.error,
            topic: letter.topic,
            partition: letter.partition,
            offset: letter.offset,
            occurred_at: letter.occurred_ms,
        }
    }
}

impl TryFrom<DeadLetter> for DeadLetterRow {
    type Error = MapError;

    fn try_from(letter: DeadLetter) -> Result<Self, MapError> {
        Ok(Self::from_letter(letter))
    }
}

#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct LeaderboardRow {
    pub proxy_wallet: String,
    pub period: String,
    pub category: String,
    pub order_by: String,
    pub rank: i32,
    pub user_name: Option<String>,
    pub x_username: Option<String>,
    pub profile_image: Option<String>,
    pub verified_badge: Option<bool>,
    pub volume: Option<i128>,
    pub pnl: Option<i128>,
    pub snapshot_time: i64,
}

impl TryFrom<LeaderboardEntry> for LeaderboardRow {
    type Error = MapError;

    fn try_from(entry: LeaderboardEntry) -> Result<Self, MapError> {
        Ok(Self {
            volume: decimal38_opt("volume", entry.volume)?,
            pnl: decimal38_opt("pnl", entry.pnl)?,
            proxy_wallet: entry.proxy_wallet,
            period: entry.period,
            category: entry.category,
            order_by: entry.order_by,
            rank: entry.rank,
            user_name: entry.user_name,
            x_username: entry.x_username,
            profile_image: entry.profile_image,
            verified_badge: entry.verified_badge,
            snapshot_time: entry.snapshot_ms,
        })
    }
}

/// One row of `api_keys` (ReplacingMergeTree by `updated_at`: the newest row per prefix wins).
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct ApiKeyRow {
    pub key_prefix: String,
    pub key_hash: String,
    pub name: String,
    pub plan: String,
    /// Enum8: 1 active, 2 revoked.
    pub status: i8,
    pub rps: u32,
    pub daily_cap: u64,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub updated_at: i64,
}

impl ApiKeyRow {
    /// `status` codes (the column's Enum8).
    pub const STATUS_ACTIVE: i8 = 1;
    pub const STATUS_REVOKED: i8 = 2;

    pub fn status_name(&self) -> &'static str {
        if self.status == Self::STATUS_REVOKED {
            "revoked"
        } else {
            "active"
        }
    }
}

/// One row of `api_usage` (SummingMergeTree: rows of a key and day add up).
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct UsageRow {
    pub key_prefix: String,
    /// Days since 1970-01-01 (ClickHouse `Date`).
    pub day: u16,
    pub requests: u64,
    pub rejected: u64,
}
