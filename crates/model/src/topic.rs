//! The one table of Polytape's topics. Partition counts and cleanup policies here are what
//! `cargo xtask stack up` creates, and what `deploy/topics.tsv` (read by the compose and
//! Kubernetes init jobs) is generated from; a test keeps that file in sync.

use std::fmt;

/// How the broker retains a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanupPolicy {
    /// Latest value per key is kept forever (entity and state topics).
    Compact,
    /// Records expire after the retention time (event topics).
    Delete,
}

impl CleanupPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            CleanupPolicy::Compact => "compact",
            CleanupPolicy::Delete => "delete",
        }
    }
}

/// Every topic Polytape produces or consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    Markets,
    Events,
    Trades,
    BookSnapshots,
    PriceChanges,
    LastTrades,
    TickSizeChanges,
    BestBidAsk,
    MarketLifecycle,
    PriceHistory,
    Candles,
    BookState,
    Continuity,
    DeadLetters,
    Leaderboard,
    Signals,
}

/// Retention of delete-policy topics: 7 days. ClickHouse keeps 90; the topics only need to
/// cover consumer outages and replays (rebuild ClickHouse from a timestamp within the week).
pub const DELETE_RETENTION_MS: i64 = 7 * 24 * 60 * 60 * 1000;

impl Topic {
    pub const ALL: [Topic; 16] = [
        Topic::Markets,
        Topic::Events,
        Topic::Trades,
        Topic::BookSnapshots,
        Topic::PriceChanges,
        Topic::LastTrades,
        Topic::TickSizeChanges,
        Topic::BestBidAsk,
        Topic::MarketLifecycle,
        Topic::PriceHistory,
        Topic::Candles,
        Topic::BookState,
        Topic::Continuity,
        Topic::DeadLetters,
        Topic::Leaderboard,
        Topic::Signals,
    ];

    /// The default topic name (before any test prefix).
    pub fn default_name(self) -> &'static str {
        match self {
            Topic::Markets => "polymarket.markets.v1",
            Topic::Events => "polymarket.events.v1",
            Topic::Trades => "polymarket.trades.v1",
            Topic::BookSnapshots => "polymarket.book_snapshots.v1",
            Topic::PriceChanges => "polymarket.price_changes.v1",
            Topic::LastTrades => "polymarket.last_trades.v1",
            Topic::TickSizeChanges => "polymarket.tick_size_changes.v1",
            Topic::BestBidAsk => "polymarket.best_bid_ask.v1",
            Topic::MarketLifecycle => "polymarket.market_lifecycle.v1",
            Topic::PriceHistory => "polymarket.price_history.v1",
            Topic::Candles => "polymarket.candles.v1",
            Topic::BookState => "polymarket.book_state.v1",
            Topic::Continuity => "polymarket.continuity.v1",
            Topic::DeadLetters => "polymarket.dlq.v1",
            Topic::Leaderboard => "polymarket.leaderboard.v1",
            Topic::Signals => "polymarket.signals.v1",
        }
    }

    /// The ClickHouse table the sink loads this topic into.
    pub fn table(self) -> &'static str {
        match self {
            Topic::Markets => "markets",
            Topic::Events => "events",
            Topic::Trades => "trades",
            Topic::BookSnapshots => "book_snapshots",
            Topic::PriceChanges => "price_changes",
            Topic::LastTrades => "last_trades",
            Topic::TickSizeChanges => "tick_size_changes",
            Topic::BestBidAsk => "best_bid_ask",
            Topic::MarketLifecycle => "market_lifecycle",
            Topic::PriceHistory => "price_history",
            Topic::Candles => "candles",
            Topic::BookState => "book_state",
            Topic::Continuity => "continuity",
            Topic::DeadLetters => "dead_letters",
            Topic::Leaderboard => "leaderboard",
            Topic::Signals => "signals",
        }
    }

    /// Partition count. High-rate book topics get more partitions so consumers can scale out;
    /// keys (token or condition id) keep each instrument's order within one partition.
    pub fn partitions(self) -> i32 {
        match self {
            Topic::PriceChanges => 12,
            Topic::Trades
            | Topic::BookSnapshots
            | Topic::LastTrades
            | Topic::BestBidAsk
            | Topic::PriceHistory
            | Topic::Candles
            | Topic::BookState => 6,
            Topic::Markets
            | Topic::Events
            | Topic::TickSizeChanges
            | Topic::MarketLifecycle
            | Topic::Continuity
            | Topic::DeadLetters
            | Topic::Leaderboard
            | Topic::Signals => 3,
        }
    }

    pub fn cleanup_policy(self) -> CleanupPolicy {
        match self {
            Topic::Markets | Topic::Events | Topic::BookState => CleanupPolicy::Compact,
            _ => CleanupPolicy::Delete,
        }
    }

    /// What the record key is, for documentation and the generated topic table.
    pub fn key_description(self) -> &'static str {
        match self {
            Topic::Markets
            | Topic::Trades
            | Topic::MarketLifecycle
            | Topic::BookSnapshots
            | Topic::PriceChanges
            | Topic::LastTrades
            | Topic::TickSizeChanges
            | Topic::BestBidAsk => "condition_id",
            Topic::Events => "event_id",
            Topic::Candles => "token_id:interval:open_time_ms",
            Topic::Continuity => "continuity_id",
            Topic::DeadLetters => "source",
            Topic::Leaderboard => "proxy_wallet",
            Topic::Signals => "signal_id",
            Topic::PriceHistory | Topic::BookState => "token_id",
        }
    }

    /// File name of the value schema under `schemas/avro/`.
    pub fn schema_file(self) -> &'static str {
        match self {
            Topic::Markets => "market.avsc",
            Topic::Events => "event.avsc",
            Topic::Trades => "trade.avsc",
            Topic::BookSnapshots => "book_snapshot.avsc",
            Topic::PriceChanges => "price_change.avsc",
            Topic::LastTrades => "last_trade.avsc",
            Topic::TickSizeChanges => "tick_size_change.avsc",
            Topic::BestBidAsk => "best_bid_ask.avsc",
            Topic::MarketLifecycle => "market_lifecycle.avsc",
            Topic::PriceHistory => "price_point.avsc",
            Topic::Candles => "candle.avsc",
            Topic::BookState => "book_state.avsc",
            Topic::Continuity => "continuity.avsc",
            Topic::DeadLetters => "dead_letter.avsc",
            Topic::Leaderboard => "leaderboard.avsc",
            Topic::Signals => "signal.avsc",
        }
    }

    /// Finds a topic by its default name.
    pub fn from_default_name(name: &str) -> Option<Topic> {
        Topic::ALL
            .into_iter()
            .find(|topic| topic.default_name() == name)
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.default_name())
    }
}

/// Topics without an Avro schema, private to one service (its checkpoints): name, partitions,
/// cleanup policy, key. Created by the service itself when missing; listed in
/// `deploy/topics.tsv` so production init jobs can pre-create them with proper replication.
pub const INTERNAL_TOPICS: &[(&str, i32, CleanupPolicy, &str)] = &[
    (
        "polytape.collector.checkpoints.v1",
        1,
        CleanupPolicy::Compact,
        "trades/<condition_id> | markets/<condition_id> | events/<event_id> | prices/<token_id> | leaderboard",
    ),
    (
        "polytape.candle_builder.checkpoints.v1",
        2,
        CleanupPolicy::Compact,
        "manifest | a-<n> | b-<n>",
    ),
    (
        "polytape.ws_bridge.state.v1",
        1,
        CleanupPolicy::Compact,
        "run | gap/<continuity_id> | token/<token_id>",
    ),
];

/// Topic names as deployed: the default names behind an optional prefix. Tests use a unique
/// prefix per test so they can share one broker and run in parallel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicNames {
    prefix: String,
}

impl TopicNames {
    pub fn with_prefix(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn name(&self, topic: Topic) -> String {
        format!("{}{}", self.prefix, topic.default_name())
    }

    /// The Schema Registry subject of the topic's values (TopicNameStrategy).
    pub fn value_subject(&self, topic: Topic) -> String {
        format!("{}-value", self.name(topic))
    }

    /// Which of our topics a deployed name is, if any.
    pub fn topic_of(&self, name: &str) -> Option<Topic> {
        name.strip_prefix(&self.prefix)
            .and_then(Topic::from_default_name)
    }

    /// The tab-separated topic table written to `deploy/topics.tsv`.
    pub fn render_table(&self) -> String {
        let mut table = String::from(
            "# generated by `cargo xtask topics`; do not edit (source: crates/model/src/topic.rs)\n\
             # name\tpartitions\tcleanup.policy\tretention.ms\tkey\n",
        );
        for topic in Topic::ALL {
            let retention = match topic.cleanup_policy() {
                CleanupPolicy::Compact => -1,
                CleanupPolicy::Delete => DELETE_RETENTION_MS,
            };
            table.push_str(&format!(
                "{}\t{}\t{}\t{}\t{}\n",
                self.name(topic),
                topic.partitions(),
                topic.cleanup_policy().as_str(),
                retention,
                topic.key_description()
            ));
        }
        for (name, partitions, policy, key) in INTERNAL_TOPICS {
            table.push_str(&format!(
                "{}{name}\t{partitions}\t{}\t-1\t{key}\n",
                self.prefix,
                policy.as_str()
            ));
        }
        table
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn names_tables_and_schemas_are_unique() {
        let names: HashSet<_> = Topic::ALL
            .iter()
            .map(|topic| topic.default_name())
            .collect();
        let tables: HashSet<_> = Topic::ALL.iter().map(|topic| topic.table()).collect();
        let schemas: HashSet<_> = Topic::ALL.iter().map(|topic| topic.schema_file()).collect();
        assert_eq!(names.len(), Topic::ALL.len());
        assert_eq!(tables.len(), Topic::ALL.len());
        assert_eq!(schemas.len(), Topic::ALL.len());
    }

    #[test]
    fn table_is_the_name_without_prefix_and_version() {
        for topic in Topic::ALL {
            if topic == Topic::DeadLetters {
                assert_eq!(topic.table(), "dead_letters");
                continue;
            }
            let expected = format!("polymarket.{}.v1", topic.table());
            assert_eq!(topic.default_name(), expected);
        }
    }

    #[test]
    fn prefixed_names_map_back() {
        let names = TopicNames::with_prefix("t42.");
        assert_eq!(names.name(Topic::Trades), "t42.polymarket.trades.v1");
        assert_eq!(
            names.value_subject(Topic::Trades),
            "t42.polymarket.trades.v1-value"
        );
        assert_eq!(
            names.topic_of("t42.polymarket.dlq.v1"),
            Some(Topic::DeadLetters)
        );
        assert_eq!(names.topic_of("polymarket.dlq.v1"), None);
    }

    #[test]
    fn the_committed_deploy_table_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/topics.tsv");
        let committed = std::fs::read_to_string(path).unwrap();
        assert_eq!(
            committed,
            TopicNames::default().render_table(),
            "deploy/topics.tsv is stale: run `cargo xtask topics`"
        );
    }

    #[test]
    fn compacted_topics_are_the_entity_and_state_topics() {
        let compacted: Vec<_> = Topic::ALL
            .into_iter()
            .filter(|topic| topic.cleanup_policy() == CleanupPolicy::Compact)
            .collect();
        assert_eq!(
            compacted,
            vec![Topic::Markets, Topic::Events, Topic::BookState]
        );
    }
}
