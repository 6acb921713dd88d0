//! Which tokens the bridge follows: those of markets in `polymarket.markets.v1` that are
//! active, open and have an order book, narrowed by the configured filters; plus markets
//! announced by `new_market` (when no filter needs data the event lacks), minus markets
//! resolved on the channel.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use polytape_model::{Decimal, Market};

use crate::{config::TokenFilterConfig, recent::RecentSet};

/// Markets resolved on the channel that the markets topic does not say are closed yet, at
/// most (the oldest are forgotten first; by then the collector has long written them closed).
const RESOLVED_REMEMBERED: usize = 100_000;

/// The configured narrowing of the followed markets.
#[derive(Debug, Clone, Default)]
pub struct TokenFilter {
    tags: Vec<String>,
    min_volume: Decimal,
    ids: HashSet<String>,
}

fn comma_list(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
}

impl TokenFilter {
    pub fn from_config(config: &TokenFilterConfig) -> Self {
        Self {
            tags: comma_list(&config.tags)
                .map(|tag| tag.to_lowercase())
                .collect(),
            min_volume: Decimal::from(config.min_volume),
            ids: comma_list(&config.ids).collect(),
        }
    }

    /// The tokens of `market` to follow, given the explicit id list.
    fn listed_tokens<'a>(
        &self,
        condition_id: &str,
        tokens: impl Iterator<Item = &'a str>,
    ) -> Vec<String> {
        let whole_market = self.ids.is_empty() || self.ids.contains(condition_id);
        tokens
            .filter(|token| !token.is_empty() && (whole_market || self.ids.contains(*token)))
            .map(str::to_owned)
            .collect()
    }

    /// The tokens to follow for a market record.
    pub fn market_tokens(&self, market: &Market) -> Vec<String> {
        let live = market.active && !market.closed && market.enable_order_book;
        if !live {
            return Vec::new();
        }
        if !self.tags.is_empty()
            && !market
                .tags
                .iter()
                .any(|tag| self.tags.contains(&tag.to_lowercase()))
        {
            return Vec::new();
        }
        if !self.min_volume.is_zero() && market.volume.unwrap_or_default() < self.min_volume {
            return Vec::new();
        }
        self.listed_tokens(
            &market.condition_id,
            market.tokens.iter().map(|token| token.token_id.as_str()),
        )
    }

    /// The tokens to follow for a `new_market` event: none when a tag or volume filter is set
    /// (the event carries neither; the markets topic will bring the market).
    pub fn announced_tokens(&self, condition_id: &str, token_ids: &[String]) -> Vec<String> {
        if !self.tags.is_empty() || !self.min_volume.is_zero() {
            return Vec::new();
        }
        self.listed_tokens(condition_id, token_ids.iter().map(String::as_str))
    }
}

/// A change of the followed set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delta {
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

impl Delta {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }

    /// This change followed by `other`, as one net change: a token added and then removed in
    /// the same burst (a market read open, then closed, while catching up on the markets
    /// topic) is neither, and one removed and then added again stays as it was. Concatenating
    /// the lists instead would make `apply` (removals first) follow a closed market.
    pub fn extend(&mut self, other: Delta) {
        for token in other.removed {
            if let Some(position) = self.added.iter().position(|added| *added == token) {
                self.added.swap_remove(position);
            } else if !self.removed.contains(&token) {
                self.removed.push(token);
            }
        }
        for token in other.added {
            if let Some(position) = self.removed.iter().position(|removed| *removed == token) {
                self.removed.swap_remove(position);
            } else if !self.added.contains(&token) {
                self.added.push(token);
            }
        }
    }
}

/// The followed tokens per market.
#[derive(Debug)]
pub struct TokenSet {
    filter: TokenFilter,
    by_market: HashMap<String, Vec<String>>,
    /// The market of every followed token: the supervisor keeps a market's tokens on one
    /// connection, so that one upstream message about a market (a YES order book change and
    /// its NO complement) is read whole, at one instant.
    market_of_token: HashMap<String, String>,
    /// Resolved on the channel while the markets topic may still say open: a stale markets
    /// record must not bring them back. Forgotten once the topic agrees (closed, inactive or
    /// deleted), and bounded in any case.
    resolved: RecentSet<String>,
}

impl Default for TokenSet {
    fn default() -> Self {
        Self::new(TokenFilter::default())
    }
}

impl TokenSet {
    pub fn new(filter: TokenFilter) -> Self {
        Self {
            filter,
            by_market: HashMap::new(),
            market_of_token: HashMap::new(),
            resolved: RecentSet::new(RESOLVED_REMEMBERED),
        }
    }

    fn replace(&mut self, condition_id: &str, tokens: Vec<String>) -> Delta {
        let tokens = if self.resolved.contains(condition_id) {
            Vec::new()
        } else {
            tokens
        };
        let before: BTreeSet<String> = self
            .by_market
            .get(condition_id)
            .map(|tokens| tokens.iter().cloned().collect())
            .unwrap_or_default();
        let after: BTreeSet<String> = tokens.iter().cloned().collect();
        for token in before.difference(&after) {
            self.market_of_token.remove(token);
        }
        for token in &after {
            self.market_of_token
                .insert(token.clone(), condition_id.to_owned());
        }
        if after.is_empty() {
            self.by_market.remove(condition_id);
        } else {
            self.by_market.insert(condition_id.to_owned(), tokens);
        }
        Delta {
            added: after.difference(&before).cloned().collect(),
            removed: before.difference(&after).cloned().collect(),
        }
    }

    /// A market record arrived (new or updated).
    pub fn market(&mut self, market: &Market) -> Delta {
        let tokens = self.filter.market_tokens(market);
        let delta = self.replace(&market.condition_id, tokens);
        if market.closed || !market.active {
            // The topic agrees the market is over: nothing stale can revive it any more.
            self.resolved.remove(&market.condition_id);
        }
        delta
    }

    /// The markets topic deleted a market (tombstone).
    pub fn market_deleted(&mut self, condition_id: &str) -> Delta {
        let delta = self.replace(condition_id, Vec::new());
        self.resolved.remove(condition_id);
        delta
    }

    /// `new_market` on the channel.
    pub fn announced(&mut self, condition_id: &str, token_ids: &[String]) -> Delta {
        if self.by_market.contains_key(condition_id) {
            return Delta::default();
        }
        let tokens = self.filter.announced_tokens(condition_id, token_ids);
        self.replace(condition_id, tokens)
    }

    /// `market_resolved` on the channel: the market's books are gone for good.
    pub fn resolved(&mut self, condition_id: &str) -> Delta {
        self.resolved.insert(condition_id.to_owned());
        self.replace(condition_id, Vec::new())
    }

    /// The market a followed token belongs to.
    pub fn market_of(&self, token: &str) -> Option<&str> {
        self.market_of_token.get(token).map(String::as_str)
    }

    /// `tokens` grouped by market, each group in token order and the groups in the order of
    /// their market id (stable, so that a run's shard layout does not depend on hashing). A
    /// token of no known market is a group of its own.
    pub fn group_by_market(&self, tokens: impl IntoIterator<Item = String>) -> Vec<Vec<String>> {
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for token in tokens {
            let market = self.market_of(&token).map_or_else(
                || format!("token:{token}"),
                |market| format!("market:{market}"),
            );
            groups.entry(market).or_default().push(token);
        }
        groups
            .into_values()
            .map(|mut group| {
                group.sort();
                group
            })
            .collect()
    }

    /// Every followed token.
    pub fn len(&self) -> usize {
        self.by_market.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_market.is_empty()
    }

    /// Resolved markets remembered against stale records (bounded).
    pub fn resolved_remembered(&self) -> usize {
        self.resolved.len()
    }
}

#[cfg(test)]
mod tests {
    use polytape_model::MarketToken;

    use super::*;

    fn market(condition_id: &str, tokens: &[&str], tags: &[&str], volume: i64) -> Market {
        Market {
            condition_id: condition_id.into(),
            question_id: None,
            gamma_market_id: None,
            event_ids: Vec::new(),
            slug: None,
            question: "q".into(),
            description: None,
            protocol_version: None,
            tokens: tokens
                .iter()
                .enumerate()
                .map(|(index, token)| MarketToken {
                    token_id: (*token).into(),
                    outcome: "Yes".into(),
                    outcome_index: i32::try_from(index).unwrap(),
                    winner: None,
                })
                .collect(),
            active: true,
            closed: false,
            archived: false,
            accepting_orders: true,
            enable_order_book: true,
            neg_risk: false,
            neg_risk_market_id: None,
            tick_size: None,
            min_order_size: None,
            maker_base_fee_bps: None,
            taker_base_fee_bps: None,
            fees_enabled: None,
            tags: tags.iter().map(|tag| (*tag).into()).collect(),
            start_ms: None,
            end_ms: None,
            created_ms: None,
            closed_ms: None,
            resolution_status: None,
            winning_token_id: None,
            volume: Some(Decimal::from(volume)),
            liquidity: None,
            upstream_updated_ms: None,
            content_hash: String::new(),
            updated_ms: 0,
        }
    }

    fn filter(tags: &str, min_volume: u64, ids: &str) -> TokenFilter {
        TokenFilter::from_config(&TokenFilterConfig {
            tags: tags.into(),
            min_volume,
            ids: ids.into(),
        })
    }

    #[test]
    fn filters_narrow_the_followed_markets() {
        let crypto = market("0xa", &["1", "2"], &["Crypto"], 100);
        let politics = market("0xb", &["3", "4"], &["Politics"], 5);
        let cases: [(&str, TokenFilter, Vec<&str>); 5] = [
            ("no filter", filter("", 0, ""), vec!["1", "2", "3", "4"]),
            ("tag", filter("crypto, sports", 0, ""), vec!["1", "2"]),
            ("volume", filter("", 50, ""), vec!["1", "2"]),
            ("condition id", filter("", 0, "0xb"), vec!["3", "4"]),
            ("token id", filter("", 0, "2,4"), vec!["2", "4"]),
        ];
        for (name, filter, expected) in cases {
            let mut set = TokenSet::new(filter);
            let mut added = set.market(&crypto).added;
            added.extend(set.market(&politics).added);
            added.sort();
            assert_eq!(added, expected, "{name}");
        }
    }

    #[test]
    fn closing_resolving_and_announcing_markets() {
        let mut set = TokenSet::new(TokenFilter::default());
        let mut open = market("0xa", &["1", "2"], &[], 0);
        assert_eq!(set.market(&open).added, ["1", "2"]);
        assert!(set.market(&open).is_empty());
        open.closed = true;
        assert_eq!(set.market(&open).removed, ["1", "2"]);
        assert_eq!(
            set.announced("0xc", &["5".into(), "6".into()]).added,
            ["5", "6"]
        );
        assert_eq!(set.resolved("0xc").removed, ["5", "6"]);
        // A late markets record saying the resolved market is open does not bring it back.
        assert!(set.market(&market("0xc", &["5", "6"], &[], 0)).is_empty());
        let mut no_book = market("0xd", &["7"], &[], 0);
        no_book.enable_order_book = false;
        assert!(set.market(&no_book).is_empty());
        let mut tagged = TokenSet::new(filter("crypto", 0, ""));
        assert!(tagged.announced("0xe", &["8".into()]).is_empty());
    }

    #[test]
    fn a_resolved_market_is_forgotten_once_the_markets_topic_agrees() {
        let mut set = TokenSet::new(TokenFilter::default());
        let mut record = market("0xa", &["1", "2"], &[], 0);
        set.market(&record);
        set.resolved("0xa");
        set.resolved("0xb");
        assert_eq!(set.resolved_remembered(), 2);
        // Still open in the topic: remembered, and the stale record does not revive it.
        assert!(set.market(&record).is_empty());
        assert_eq!(set.resolved_remembered(), 2);
        record.closed = true;
        assert!(set.market(&record).is_empty());
        assert_eq!(set.resolved_remembered(), 1);
        set.market_deleted("0xb");
        assert_eq!(set.resolved_remembered(), 0);
        // A genuine reopening after the topic said closed is followed again.
        record.closed = false;
        assert_eq!(set.market(&record).added, ["1", "2"]);
    }

    #[test]
    fn a_burst_that_opens_then_closes_a_market_follows_nothing_of_it() {
        let mut delta = Delta {
            added: vec!["a".to_owned(), "b".to_owned()],
            removed: Vec::new(),
        };
        delta.extend(Delta {
            added: Vec::new(),
            removed: vec!["a".to_owned()],
        });
        assert_eq!(delta.added, vec!["b".to_owned()]);
        assert!(delta.removed.is_empty());
        // Removed, then added again: no change for it.
        let mut delta = Delta {
            added: Vec::new(),
            removed: vec!["c".to_owned()],
        };
        delta.extend(Delta {
            added: vec!["c".to_owned()],
            removed: Vec::new(),
        });
        assert!(delta.is_empty(), "{delta:?}");
    }
}
