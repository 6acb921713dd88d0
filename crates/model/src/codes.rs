//! The one table of codes and names for every enum a record carries: the ClickHouse `Enum8`
//! code the sink writes and the API reads, the upstream / API spelling, and a lowercase label
//! for metrics. The migrations' `Enum8(...)` lists must agree (a test in the ClickHouse crate
//! reads them and compares).

use crate::records::{BookSource, ContinuityKind, LifecycleKind, Side, SignalKind, TradeSource};

/// Declares, for an enum, its `Enum8` code and its name, once per variant.
macro_rules! enum_codes {
    ($type:ident { $($variant:ident = $code:literal => $name:literal),+ $(,)? }) => {
        impl $type {
            /// Every variant, in code order.
            pub const ALL: &'static [$type] = &[$($type::$variant),+];

            /// The ClickHouse `Enum8` code.
            pub fn code(self) -> i8 {
                match self {
                    $($type::$variant => $code),+
                }
            }

            /// The variant with this `Enum8` code, `None` for a code no variant has.
            pub fn from_code(code: i8) -> Option<Self> {
                match code {
                    $($code => Some($type::$variant),)+
                    _ => None,
                }
            }

            /// The name upstream, the schemas, ClickHouse and the API use (`BOOK_MISMATCH`).
            pub fn name(self) -> &'static str {
                match self {
                    $($type::$variant => $name),+
                }
            }

            /// The variant with this name (exactly as [`Self::name`] spells it).
            pub fn from_name(name: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|variant| variant.name() == name)
            }

            /// The name in lowercase, for metric labels (`book_mismatch`).
            pub fn label(self) -> String {
                self.name().to_ascii_lowercase()
            }
        }
    };
}

enum_codes!(Side {
    Buy = 1 => "BUY",
    Sell = 2 => "SELL",
});

enum_codes!(TradeSource {
    DataApiV1 = 1 => "DATA_API_V1",
    DataApiV2 = 2 => "DATA_API_V2",
});

enum_codes!(BookSource {
    Ws = 1 => "WS",
    Rest = 2 => "REST",
});

enum_codes!(LifecycleKind {
    NewMarket = 1 => "NEW_MARKET",
    MarketResolved = 2 => "MARKET_RESOLVED",
});

enum_codes!(ContinuityKind {
    Disconnect = 1 => "DISCONNECT",
    Freeze = 2 => "FREEZE",
    SubscriptionRefused = 3 => "SUBSCRIPTION_REFUSED",
    Resync = 4 => "RESYNC",
    BookMismatch = 5 => "BOOK_MISMATCH",
    UpstreamGap = 6 => "UPSTREAM_GAP",
    Other = 7 => "OTHER",
});

enum_codes!(SignalKind {
    LargeTradeNewWallet = 1 => "LARGE_TRADE_NEW_WALLET",
    NegRiskArbitrage = 2 => "NEG_RISK_ARBITRAGE",
    BinaryArbitrage = 3 => "BINARY_ARBITRAGE",
    PriceMove = 4 => "PRICE_MOVE",
    VolumeSpike = 5 => "VOLUME_SPIKE",
});

#[cfg(test)]
mod tests {
    use super::*;

    /// The names are the serde spellings of the records (what Avro and JSON carry).
    fn serde_name<T: serde::Serialize>(value: T) -> String {
        match serde_json::to_value(value) {
            Ok(serde_json::Value::String(name)) => name,
            other => panic!("not a string: {other:?}"),
        }
    }

    #[test]
    fn codes_and_names_round_trip_and_match_serde() {
        fn check<T>(
            all: &[T],
            code: fn(T) -> i8,
            from_code: fn(i8) -> Option<T>,
            name: fn(T) -> &'static str,
            from_name: fn(&str) -> Option<T>,
        ) where
            T: Copy + PartialEq + std::fmt::Debug + serde::Serialize,
        {
            for (index, variant) in all.iter().copied().enumerate() {
                assert_eq!(i64::from(code(variant)), index as i64 + 1, "{variant:?}");
                assert_eq!(from_code(code(variant)), Some(variant));
                assert_eq!(from_name(name(variant)), Some(variant));
                assert_eq!(name(variant), serde_name(variant));
            }
            assert_eq!(from_code(0), None);
            assert_eq!(from_code(all.len() as i8 + 1), None);
            assert_eq!(from_name("NOT_A_NAME"), None);
        }
        check(
            Side::ALL,
            Side::code,
            Side::from_code,
            Side::name,
            Side::from_name,
        );
        check(
            TradeSource::ALL,
            TradeSource::code,
            TradeSource::from_code,
            TradeSource::name,
            TradeSource::from_name,
        );
        check(
            BookSource::ALL,
            BookSource::code,
            BookSource::from_code,
            BookSource::name,
            BookSource::from_name,
        );
        check(
            LifecycleKind::ALL,
            LifecycleKind::code,
            LifecycleKind::from_code,
            LifecycleKind::name,
            LifecycleKind::from_name,
        );
        check(
            ContinuityKind::ALL,
            ContinuityKind::code,
            ContinuityKind::from_code,
            ContinuityKind::name,
            ContinuityKind::from_name,
        );
        check(
            SignalKind::ALL,
            SignalKind::code,
            SignalKind::from_code,
            SignalKind::name,
            SignalKind::from_name,
        );
        assert_eq!(ContinuityKind::BookMismatch.label(), "book_mismatch");
    }
}
