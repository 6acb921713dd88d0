//! Polytape's domain model: the records on every topic, the topic table, and the one place
//! where upstream text becomes exact decimals and UTC milliseconds.

pub mod alerts;
pub mod book;
pub mod bytes;
mod codes;
mod dead_letter;
pub mod decimal;
pub mod identity;
pub mod micros;
pub mod pairs;
pub mod parse;
pub mod records;
#[cfg(feature = "samples")]
pub mod samples;
pub mod time;
pub mod topic;

pub use identity::{TradeIdentity, content_hash, occurrence_trade_id};
pub use records::*;
pub use rust_decimal::Decimal;
pub use topic::{CleanupPolicy, INTERNAL_TOPICS, Topic, TopicNames};

/// Current UTC time in milliseconds since the epoch.
pub fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}
