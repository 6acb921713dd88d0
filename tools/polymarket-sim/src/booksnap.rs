//! Rendering a token's book exactly as CLOB `GET /book` serves it, with upstream's SHA-1 hash.
//!
//! The hash is SHA-1 (hex) of the compact JSON of exactly these keys, in this order, with
//! `hash` set to `""`: `market, asset_id, timestamp, hash, bids, asks, min_order_size,
//! tick_size, neg_risk, last_trade_price` (py-clob-client `generate_orderbook_summary_hash`).
//! Every value except `neg_risk` is a string. Levels are served bids ascending and asks
//! descending (best price last on both sides), as upstream does.

use sha1::{Digest, Sha1};

use crate::book::{BookSide, MarketBook, complement};
use crate::fixed::{push_price, push_size};

/// One token's book, in that token's price terms and upstream's level order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenBook<'a> {
    pub(crate) market: &'a str,
    pub(crate) asset_id: &'a str,
    pub(crate) timestamp_ms: i64,
    /// Ascending by price.
    pub(crate) bids: Vec<(u32, u64)>,
    /// Descending by price.
    pub(crate) asks: Vec<(u32, u64)>,
    pub(crate) min_order_size: u64,
    pub(crate) tick: u32,
    pub(crate) neg_risk: bool,
    pub(crate) last_trade_price: u32,
}

/// Price levels as (price units, size micros).
pub(crate) type LevelList = Vec<(u32, u64)>;

/// Levels of a YES-terms book as one token sees them: (bids ascending, asks descending).
pub(crate) fn token_levels(
    yes_bids_ascending: &[(u32, u64)],
    yes_asks_ascending: &[(u32, u64)],
    token: u8,
) -> (LevelList, LevelList) {
    if token == 0 {
        let bids = yes_bids_ascending.to_vec();
        let asks = yes_asks_ascending.iter().rev().copied().collect();
        return (bids, asks);
    }
    // NO bids mirror YES asks; ascending NO prices are descending YES prices.
    let bids = yes_asks_ascending
        .iter()
        .rev()
        .map(|(price, size)| (complement(*price), *size))
        .collect();
    // NO asks mirror YES bids; descending NO prices are ascending YES prices.
    let asks = yes_bids_ascending
        .iter()
        .map(|(price, size)| (complement(*price), *size))
        .collect();
    (bids, asks)
}

/// Best bid and best ask of one token from a YES-terms book (None when a side is empty).
pub(crate) fn token_best_prices(book: &MarketBook, token: u8) -> (Option<u32>, Option<u32>) {
    if token == 0 {
        return (book.best_bid(), book.best_ask());
    }
    (
        book.best_ask().map(complement),
        book.best_bid().map(complement),
    )
}

/// Builds a token book from the live engine.
pub(crate) fn token_book_from_engine<'a>(
    book: &MarketBook,
    token: u8,
    market: &'a str,
    asset_id: &'a str,
    min_order_size: u64,
    neg_risk: bool,
    timestamp_ms: i64,
) -> TokenBook<'a> {
    let yes_bids: Vec<(u32, u64)> = book.levels(BookSide::Bid).collect();
    let yes_asks: Vec<(u32, u64)> = book.levels(BookSide::Ask).collect();
    let (bids, asks) = token_levels(&yes_bids, &yes_asks, token);
    let last_trade_price = if token == 0 {
        book.last_trade
    } else {
        complement(book.last_trade)
    };
    TokenBook {
        market,
        asset_id,
        timestamp_ms,
        bids,
        asks,
        min_order_size,
        tick: book.tick,
        neg_risk,
        last_trade_price,
    }
}

fn push_levels(out: &mut String, levels: &[(u32, u64)]) {
    out.push('[');
    for (position, (price, size)) in levels.iter().enumerate() {
        if position > 0 {
            out.push(',');
        }
        out.push_str("{\"price\":\"");
        push_price(out, *price);
        out.push_str("\",\"size\":\"");
        push_size(out, *size);
        out.push_str("\"}");
    }
    out.push(']');
}

impl TokenBook<'_> {
    /// Compact JSON in upstream's key order with the given hash value.
    fn render(&self, hash: &str) -> String {
        let mut out = String::with_capacity(256 + 48 * (self.bids.len() + self.asks.len()));
        out.push_str("{\"market\":\"");
        out.push_str(self.market);
        out.push_str("\",\"asset_id\":\"");
        out.push_str(self.asset_id);
        out.push_str("\",\"timestamp\":\"");
        out.push_str(&self.timestamp_ms.to_string());
        out.push_str("\",\"hash\":\"");
        out.push_str(hash);
        out.push_str("\",\"bids\":");
        push_levels(&mut out, &self.bids);
        out.push_str(",\"asks\":");
        push_levels(&mut out, &self.asks);
        out.push_str(",\"min_order_size\":\"");
        out.push_str(&self.min_order_size.to_string());
        out.push_str("\",\"tick_size\":\"");
        push_price(&mut out, self.tick);
        out.push_str("\",\"neg_risk\":");
        out.push_str(if self.neg_risk { "true" } else { "false" });
        out.push_str(",\"last_trade_price\":\"");
        push_price(&mut out, self.last_trade_price);
        out.push_str("\"}");
        out
    }

    /// Upstream's book hash.
    pub(crate) fn hash(&self) -> String {
        let canonical = self.render("");
        hex::encode(Sha1::digest(canonical.as_bytes()))
    }

    /// The `GET /book` body, hash included.
    pub(crate) fn to_json(&self) -> String {
        let hash = self.hash();
        self.render(&hash)
    }
}

/// Upstream's hash of any `/book`-shaped JSON object (the `hash` key's value is ignored):
/// SHA-1 of the compact JSON of the ten keys in upstream's order with `hash` set to `""`.
/// Returns `None` when a key is missing or has the wrong JSON type.
pub fn book_hash_of_json(book: &serde_json::Value) -> Option<String> {
    let text = |key: &str| book.get(key)?.as_str().map(str::to_owned);
    let levels = |key: &str| -> Option<serde_json::Value> {
        let items = book.get(key)?.as_array()?;
        let mut rendered = Vec::with_capacity(items.len());
        for item in items {
            let mut level = serde_json::Map::new();
            level.insert(
                "price".to_owned(),
                serde_json::Value::String(item.get("price")?.as_str()?.to_owned()),
            );
            level.insert(
                "size".to_owned(),
                serde_json::Value::String(item.get("size")?.as_str()?.to_owned()),
            );
            rendered.push(serde_json::Value::Object(level));
        }
        Some(serde_json::Value::Array(rendered))
    };
    // serde_json's map keeps insertion order only with `preserve_order`, so render by hand.
    let canonical = format!(
        "{{\"market\":{},\"asset_id\":{},\"timestamp\":{},\"hash\":\"\",\"bids\":{},\"asks\":{},\"min_order_size\":{},\"tick_size\":{},\"neg_risk\":{},\"last_trade_price\":{}}}",
        serde_json::Value::String(text("market")?),
        serde_json::Value::String(text("asset_id")?),
        serde_json::Value::String(text("timestamp")?),
        render_levels(&levels("bids")?),
        render_levels(&levels("asks")?),
        serde_json::Value::String(text("min_order_size")?),
        serde_json::Value::String(text("tick_size")?),
        book.get("neg_risk")?.as_bool()?,
        serde_json::Value::String(text("last_trade_price")?),
    );
    Some(hex::encode(Sha1::digest(canonical.as_bytes())))
}

fn render_levels(levels: &serde_json::Value) -> String {
    let Some(items) = levels.as_array() else {
        return "[]".to_owned();
    };
    let rendered: Vec<String> = items
        .iter()
        .map(|item| {
            format!(
                "{{\"price\":{},\"size\":{}}}",
                item.get("price").cloned().unwrap_or_default(),
                item.get("size").cloned().unwrap_or_default()
            )
        })
        .collect();
    format!("[{}]", rendered.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brief_test_vector_reproduces() {
        let book = TokenBook {
            market: "0xaabbcc",
            asset_id: "100",
            timestamp_ms: 123_456_789,
            bids: vec![(3000, 100_000_000), (4000, 100_000_000)],
            asks: vec![(6000, 100_000_000), (7000, 100_000_000)],
            min_order_size: 100,
            tick: 100,
            neg_risk: false,
            last_trade_price: 5000,
        };
        assert_eq!(book.hash(), "0458ea5755c9f73d64a14636fa5c36ed460ec394");
    }

    #[test]
    fn brief_example_book_hash_reproduces() {
        let book = TokenBook {
            market: "0x747dc809fb79e1b05be09c42d6179459a58de2ef3e40f02484a4e1260f741f75",
            asset_id: "107505882767731489358349912513945399560393482969656700824895970500493757150417",
            timestamp_ms: 1_759_420_800_123,
            bids: vec![
                (100, 2_500_000_000),
                (4400, 120_500_000),
                (4500, 100_000_000),
            ],
            asks: vec![(9900, 900_000_000), (4700, 80_000_000), (4600, 150_000_000)],
            min_order_size: 5,
            tick: 100,
            neg_risk: false,
            last_trade_price: 4500,
        };
        assert_eq!(book.hash(), "32400f1a5df2379ab4e7b79bac275d9312494339");
    }
}
