//! Deterministic identities for records upstream gives no id to.

use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

use crate::records::Side;

/// The fields that identify one fill on the Data API tape. Upstream has no trade id; one
/// transaction can hold several fills, so the transaction hash alone is not enough.
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
    pub fn trade_id(&self) -> String {
        let canonical = format!(
            "{}|{}|{}|{}|{}|{}",
            self.transaction_hash.to_ascii_lowercase(),
            self.token_id,
            self.side.as_str(),
            self.size.normalize(),
            self.price.normalize(),
            self.proxy_wallet.to_ascii_lowercase(),
        );
        let digest = Sha256::digest(canonical.as_bytes());
        hex::encode(&digest[..16])
    }
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
}
