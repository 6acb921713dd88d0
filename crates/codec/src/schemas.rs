//! The value schemas of every topic, embedded from `schemas/avro/` and parsed once.

use std::{collections::HashMap, sync::OnceLock};

use apache_avro::Schema;
use polytape_model::Topic;

/// The `.avsc` text of a topic's value schema, as committed.
pub fn schema_text(topic: Topic) -> &'static str {
    match topic {
        Topic::Markets => include_str!("../../../schemas/avro/market.avsc"),
        Topic::Events => include_str!("../../../schemas/avro/event.avsc"),
        Topic::Trades => include_str!("../../../schemas/avro/trade.avsc"),
        Topic::BookSnapshots => include_str!("../../../schemas/avro/book_snapshot.avsc"),
        Topic::PriceChanges => include_str!("../../../schemas/avro/price_change.avsc"),
        Topic::LastTrades => include_str!("../../../schemas/avro/last_trade.avsc"),
        Topic::TickSizeChanges => include_str!("../../../schemas/avro/tick_size_change.avsc"),
        Topic::BestBidAsk => include_str!("../../../schemas/avro/best_bid_ask.avsc"),
        Topic::MarketLifecycle => include_str!("../../../schemas/avro/market_lifecycle.avsc"),
        Topic::PriceHistory => include_str!("../../../schemas/avro/price_point.avsc"),
        Topic::Candles => include_str!("../../../schemas/avro/candle.avsc"),
        Topic::BookState => include_str!("../../../schemas/avro/book_state.avsc"),
        Topic::Continuity => include_str!("../../../schemas/avro/continuity.avsc"),
        Topic::DeadLetters => include_str!("../../../schemas/avro/dead_letter.avsc"),
        Topic::Leaderboard => include_str!("../../../schemas/avro/leaderboard.avsc"),
        Topic::Signals => include_str!("../../../schemas/avro/signal.avsc"),
    }
}

/// The parsed value schema of a topic.
///
/// The schemas are compiled into the binary and covered by tests, so a parse failure is a
/// build defect, not a runtime condition: it panics with the schema's name.
pub fn schema(topic: Topic) -> &'static Schema {
    static PARSED: OnceLock<HashMap<Topic, Schema>> = OnceLock::new();
    let parsed = PARSED.get_or_init(|| {
        Topic::ALL
            .into_iter()
            .map(|topic| {
                let parsed = Schema::parse_str(schema_text(topic)).unwrap_or_else(|error| {
                    panic!(
                        "embedded schema {} does not parse: {error}",
                        topic.schema_file()
                    )
                });
                (topic, parsed)
            })
            .collect()
    });
    &parsed[&topic]
}
