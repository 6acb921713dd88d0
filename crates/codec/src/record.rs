//! Which Rust type travels on which topic, and under which key.

use polytape_model::{
    BestBidAsk, BookSnapshot, BookState, Candle, Continuity, DeadLetter, Event, LastTrade,
    LeaderboardEntry, Market, MarketLifecycle, PriceChange, PricePoint, Signal, TickSizeChange,
    Topic, Trade,
};
use serde::{Serialize, de::DeserializeOwned};

/// A record type with an Avro value schema and a topic.
pub trait AvroRecord: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The topic this record type is published on.
    const TOPIC: Topic;
    /// The Avro record name, for messages.
    const NAME: &'static str;

    /// The Kafka key: it decides the partition, so all records of one market or token keep
    /// their order.
    fn record_key(&self) -> String;
}

macro_rules! avro_record {
    ($type:ty, $topic:expr, |$record:ident| $key:expr) => {
        impl AvroRecord for $type {
            const TOPIC: Topic = $topic;
            const NAME: &'static str = stringify!($type);

            fn record_key(&self) -> String {
                let $record = self;
                $key
            }
        }
    };
}

avro_record!(Market, Topic::Markets, |market| market.condition_id.clone());
avro_record!(Event, Topic::Events, |event| event.event_id.clone());
avro_record!(Trade, Topic::Trades, |trade| trade.condition_id.clone());
// The market channel's records are keyed by market, not by token: the entries of one upstream
// message (a price change lists both tokens of its market) are then adjacent on one partition,
// in the order they were read, so no consumer can read one token's half without the other's.
avro_record!(BookSnapshot, Topic::BookSnapshots, |book| book
    .condition_id
    .clone());
avro_record!(PriceChange, Topic::PriceChanges, |change| change
    .condition_id
    .clone());
avro_record!(LastTrade, Topic::LastTrades, |trade| trade
    .condition_id
    .clone());
avro_record!(TickSizeChange, Topic::TickSizeChanges, |change| change
    .condition_id
    .clone());
avro_record!(BestBidAsk, Topic::BestBidAsk, |quote| quote
    .condition_id
    .clone());
avro_record!(MarketLifecycle, Topic::MarketLifecycle, |event| event
    .condition_id
    .clone());
avro_record!(PricePoint, Topic::PriceHistory, |point| point
    .token_id
    .clone());
avro_record!(Candle, Topic::Candles, |candle| format!(
    "{}:{}:{}",
    candle.token_id, candle.interval, candle.open_time_ms
));
avro_record!(BookState, Topic::BookState, |state| state.token_id.clone());
avro_record!(Continuity, Topic::Continuity, |gap| gap
    .continuity_id
    .clone());
avro_record!(DeadLetter, Topic::DeadLetters, |letter| letter
    .source
    .clone());
avro_record!(LeaderboardEntry, Topic::Leaderboard, |entry| entry
    .proxy_wallet
    .clone());
avro_record!(Signal, Topic::Signals, |signal| signal.signal_id.clone());

#[cfg(test)]
mod tests {
    use polytape_model::samples::{self, NO_TOKEN, YES_TOKEN};

    use super::*;

    /// One upstream message lists both tokens of its market: its records must share a key, so
    /// they are adjacent on one partition and no consumer reads one half without the other.
    #[test]
    fn both_tokens_of_a_market_share_the_key_of_every_market_channel_record() {
        fn same_key<T: AvroRecord>(yes: T, no: T) {
            assert_eq!(yes.record_key(), no.record_key(), "{}", T::NAME);
            assert_eq!(yes.record_key(), samples::CONDITION_ID, "{}", T::NAME);
        }
        let change = |token: &str| PriceChange {
            token_id: token.to_owned(),
            ..samples::price_change()
        };
        same_key(change(YES_TOKEN), change(NO_TOKEN));
        let book = |token: &str| BookSnapshot {
            token_id: token.to_owned(),
            ..samples::book_snapshot()
        };
        same_key(book(YES_TOKEN), book(NO_TOKEN));
        let trade = |token: &str| LastTrade {
            token_id: token.to_owned(),
            ..samples::last_trade()
        };
        same_key(trade(YES_TOKEN), trade(NO_TOKEN));
        let tick = |token: &str| TickSizeChange {
            token_id: token.to_owned(),
            ..samples::tick_size_change()
        };
        same_key(tick(YES_TOKEN), tick(NO_TOKEN));
        let quote = |token: &str| BestBidAsk {
            token_id: token.to_owned(),
            ..samples::best_bid_ask()
        };
        same_key(quote(YES_TOKEN), quote(NO_TOKEN));
    }
}
