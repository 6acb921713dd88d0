//! Builders the unit tests of the detectors, the engine and the pipeline share.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::str::FromStr as _;

use polytape_model::{Decimal, Market, MarketToken, PriceChange, Side, samples};

use crate::{
    arbitrage::ArbitrageThresholds, engine::EngineSettings, price_moves::PriceMoveThresholds,
    volume_spikes::VolumeSpikeThresholds, wallets::NewWalletThresholds,
};

pub(crate) fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

/// Every detector at its default thresholds, 1,000 wallets remembered.
pub(crate) fn settings() -> EngineSettings {
    EngineSettings {
        new_wallet: NewWalletThresholds::default(),
        wallet_capacity: 1_000,
        arbitrage: ArbitrageThresholds::default(),
        price_move: PriceMoveThresholds::default(),
        volume_spike: VolumeSpikeThresholds::default(),
    }
}

/// A fee-free binary market whose tokens are `<name>-yes` and `<name>-no`.
pub(crate) fn market(name: &str) -> Market {
    let token = |outcome: &str, index: i32| MarketToken {
        token_id: format!("{name}-{outcome}"),
        outcome: outcome.to_owned(),
        outcome_index: index,
        winner: None,
    };
    Market {
        condition_id: format!("0x{name}"),
        tokens: vec![token("yes", 0), token("no", 1)],
        fees_enabled: Some(false),
        ..samples::market()
    }
}

/// A level of `token_id`'s book set to `size` (0 removes it) at `at_ms`.
pub(crate) fn price_change(
    token_id: &str,
    at_ms: i64,
    side: Side,
    price: &str,
    size: &str,
) -> PriceChange {
    PriceChange {
        token_id: token_id.to_owned(),
        side,
        price: dec(price),
        size: dec(size),
        timestamp_ms: at_ms,
        ..samples::price_change()
    }
}
