//! Deterministic identities for records upstream gives no id to.

use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

use crate::records::Side;

/// The fields that identify one fill on the Data API tape. Upstream has no trade id; one
/// transaction can hold several fills, so the transaction hash alone is not enough.
///
/// Every field must be a function of the upstream row alone — never of mutable state such as
/// the market's current tick size — so that one fill read twice gets one id. In particular
/// `price` is the row's *identity price*: for the Data API's float prices, the collector's
/// tick-independent recovery (`parse::fill_price` without a tick), which for fills of at least
/// 0.01 shares is simply the nearest 0.0001 point. The price stored on the record may be
/// refined with the market's tick; the id never is.
///
/// The tuple does not tell apart two fills of one wallet in one transaction with equal side,
/// size and price (two equal resting orders matched by one taker): upstream serves them as
/// two identical rows. Those are two trades; [`TradeIdentity::occurrence_id`] numbers them.
#[derive(Debug, Clone, Copy)]
pub struct TradeIdentity<'a> {
    pub transaction_hash: &'a str,
    pub token_id: &'a str,
    pub side: Side,
    pub size: Decimal,
    pub price: Decimal,
    pub proxy_wallet: &'a str,
}

impl TradeIdentity<'_> {
    /// `sha256(tx | token | side | size | price | wallet)` as 32 hex characters (128 bits).
    /// Hashes and wallets are lower-cased and decimals normalised (`0.50` = `0.5`), so the same
    /// fill seen through v1 (floats) and v2 or twice through one feed gets the same id.
    ///
    /// This is the id of the first (often only) row with this tuple: `occurrence_id(0)`.
    pub fn trade_id(&self) -> String {
        let canonical = format!(
            "{}|{}|{}|{}|{}|{}",
            self.transaction_hash.to_ascii_lowercase(),
            self.token_id,
            self.side.name(),
            self.size.normalize(),
            self.price.normalize(),
            self.proxy_wallet.to_ascii_lowercase(),
        );
        let digest = Sha256::digest(canonical.as_bytes());
        hex::encode(&digest[..16])
    }

    /// The id of the `occurrence`-th (0-based) of several identical rows with this tuple; see
    /// [`occurrence_trade_id`].
    pub fn occurrence_id(&self, occurrence: u32) -> String {
        occurrence_trade_id(&self.trade_id(), occurrence)
    }
}

/// The id of the `occurrence`-th (0-based) identical row of one transaction, from the id of
/// the first (`TradeIdentity::trade_id`).
///
/// Occurrence 0 is the first row's id unchanged, so every fill whose tuple is unique in its
/// transaction (nearly all of them) keeps the id it always had. Occurrence k > 0 is
/// `sha256("<first id>#<k>")`, 32 hex characters like every trade id. `k` counts the rows
/// with this tuple that come before it among *all* the rows of that transaction: identical
/// rows are indistinguishable, so only their number matters, and a reader that sees all of
/// them (or the first few of them) always numbers them 0, 1, 2, … — stable across re-reads.
pub fn occurrence_trade_id(first: &str, occurrence: u32) -> String {
    if occurrence == 0 {
        return first.to_owned();
    }
    let digest = Sha256::digest(format!("{first}#{occurrence}").as_bytes());
    hex::encode(&digest[..16])
}

/// A stable hex digest of a record's content, used to emit entities only when they change.
pub fn content_hash(canonical_content: &[u8]) -> String {
    hex::encode(Sha256::digest(canonical_content))
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn identity(price: &str) -> TradeIdentity<'static> {
        TradeIdentity {
            transaction_hash: "0x09A42928b2f7a7da67f4d020c99800d3f7665c3f9c7b011deeed8ae37e18ffed",
            token_id: "92071830247158429266517632633283963577030982596600419669075490843953894242121",
            side: Side::Buy,
            size: Decimal::from_str("32.155171").unwrap(),
            price: Decimal::from_str(price).unwrap(),
            proxy_wallet: "0x569f366e7087d8cc66d8ec55cdefd5577dd30056",
        }
    }

    #[test]
    fn trade_id_ignores_decimal_and_hex_spelling() {
        assert_eq!(identity("0.58").trade_id(), identity("0.580000").trade_id());
        assert_eq!(identity("0.58").trade_id().len(), 32);
    }

    #[test]
    fn trade_id_changes_with_any_identifying_field() {
        let base = identity("0.58");
        assert_ne!(base.trade_id(), identity("0.59").trade_id());
        let other_side = TradeIdentity {
            side: Side::Sell,
            ..base
        };
        assert_ne!(base.trade_id(), other_side.trade_id());
        let other_wallet = TradeIdentity {
            proxy_wallet: "0x0",
            ..base
        };
        assert_ne!(base.trade_id(), other_wallet.trade_id());
    }

    #[test]
    fn identical_rows_get_distinct_stable_ids() {
        let fill = identity("0.58");
        // The first occurrence keeps the historical id.
        assert_eq!(fill.occurrence_id(0), fill.trade_id());
        let ids: Vec<String> = (0..4).map(|k| fill.occurrence_id(k)).collect();
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), 4, "{ids:?}");
        assert!(ids.iter().all(|id| id.len() == 32));
        // A function of the tuple and the occurrence only.
        assert_eq!(identity("0.580").occurrence_id(2), ids[2]);
        assert_eq!(occurrence_trade_id(&fill.trade_id(), 3), ids[3]);
        // Another fill's second occurrence is not this fill's.
        assert_ne!(identity("0.59").occurrence_id(1), ids[1]);
    }
}
