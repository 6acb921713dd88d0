//! Serde helpers for upstream's lenient JSON: numbers sent as strings or as numbers.

use serde::{Deserialize, Deserializer, de};

/// A string, number or boolean as text; `null` as absent. Upstream sends most numbers as
/// strings but SDK fixtures and captures show both.
pub(crate) fn lenient_text<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    struct LenientText;
    impl<'de> de::Visitor<'de> for LenientText {
        type Value = Option<String>;
        fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            formatter.write_str("a string, number, boolean or null")
        }
        fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
            Ok(Some(value.to_owned()))
        }
        fn visit_string<E: de::Error>(self, value: String) -> Result<Self::Value, E> {
            Ok(Some(value))
        }
        fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
            Ok(Some(value.to_string()))
        }
        fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
            Ok(Some(value.to_string()))
        }
        fn visit_f64<E: de::Error>(self, value: f64) -> Result<Self::Value, E> {
            Ok(Some(value.to_string()))
        }
        fn visit_bool<E: de::Error>(self, value: bool) -> Result<Self::Value, E> {
            Ok(Some(value.to_string()))
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: Deserializer<'de>>(self, inner: D2) -> Result<Self::Value, D2::Error> {
            inner.deserialize_any(LenientText)
        }
    }
    deserializer.deserialize_any(LenientText)
}

/// One price level as upstream writes it: `{"price": ".48", "size": "30"}`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct WireLevel {
    #[serde(default, deserialize_with = "lenient_text")]
    pub(crate) price: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    pub(crate) size: Option<String>,
}
