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
avro_record!(BookSnapshot, Topic::BookSnapshots, |book| book
    .token_id
    .clone());
avro_record!(PriceChange, Topic::PriceChanges, |change| change
    .token_id
    .clone());
avro_record!(LastTrade, Topic::LastTrades, |trade| trade.token_id.clone());
avro_record!(TickSizeChange, Topic::TickSizeChanges, |change| change
    .token_id
    .clone());
avro_record!(BestBidAsk, Topic::BestBidAsk, |quote| quote
    .token_id
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
