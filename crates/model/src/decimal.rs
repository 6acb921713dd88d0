//! Exact decimals on the wire.
//!
//! Prices and sizes never pass through binary floating point. In Avro they are the `decimal`
//! logical type over `bytes` (big-endian two's-complement unscaled integer at the schema's
//! scale), so generic readers such as fastavro or the Java serdes decode them to a real decimal.
//! In human-readable formats (JSON for the REST API) the same fields are decimal strings.
//!
//! Each scale used by a schema has its own module for `#[serde(with = "…")]`, because the scale
//! is part of the schema and must match it exactly.

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserializer, Serializer, de};

/// Scale of prices and share sizes (USDC and outcome tokens have 6 decimals on chain).
pub const PRICE_SCALE: u32 = 6;
/// Scale of notional sums (price × size keeps both scales).
pub const NOTIONAL_SCALE: u32 = 12;

/// Why a decimal could not be put on the wire or read back from it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecimalError {
    #[error("decimal {value} has more than {scale} fractional digits; round it at the source")]
    TooManyFractionalDigits { value: Decimal, scale: u32 },
    #[error("decimal of {byte_count} bytes does not fit 96 bits; the value is out of range")]
    Overflow { byte_count: usize },
}

/// The unscaled big-endian two's-complement bytes of `value` at `scale`, in the minimal length
/// Avro writers use.
pub fn to_unscaled_bytes(value: Decimal, scale: u32) -> Result<Vec<u8>, DecimalError> {
    let unscaled = UnscaledBytes::new(value, scale)?;
    Ok(unscaled.as_slice().to_vec())
}

/// The minimal two's-complement bytes of a decimal's unscaled value, on the stack (encoding
/// runs for every price and size of every record).
#[derive(Debug, Clone, Copy)]
pub struct UnscaledBytes {
    full: [u8; 16],
    start: usize,
}

impl UnscaledBytes {
    pub fn new(value: Decimal, scale: u32) -> Result<Self, DecimalError> {
        let unscaled = if value.scale() == scale {
            value.mantissa()
        } else {
            let mut rescaled = value;
            rescaled.rescale(scale);
            if rescaled != value {
                return Err(DecimalError::TooManyFractionalDigits { value, scale });
            }
            rescaled.mantissa()
        };
        let full = unscaled.to_be_bytes();
        // Drop leading bytes that only repeat the sign, keeping one sign-carrying byte.
        let mut start = 0;
        while start < full.len() - 1 {
            let (byte, next) = (full[start], full[start + 1]);
            let redundant =
                (byte == 0x00 && next & 0x80 == 0) || (byte == 0xff && next & 0x80 != 0);
            if !redundant {
                break;
            }
            start += 1;
        }
        Ok(Self { full, start })
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.full[self.start..]
    }
}

/// The decimal whose unscaled two's-complement big-endian bytes are `bytes`, at `scale`.
pub fn from_unscaled_bytes(bytes: &[u8], scale: u32) -> Result<Decimal, DecimalError> {
    if bytes.len() > 16 {
        return Err(DecimalError::Overflow {
            byte_count: bytes.len(),
        });
    }
    let negative = bytes.first().is_some_and(|byte| byte & 0x80 != 0);
    let mut full = if negative { [0xff; 16] } else { [0u8; 16] };
    full[16 - bytes.len()..].copy_from_slice(bytes);
    let unscaled = i128::from_be_bytes(full);
    Decimal::try_from_i128_with_scale(unscaled, scale).map_err(|_| DecimalError::Overflow {
        byte_count: bytes.len(),
    })
}

fn serialize_scaled<S: Serializer>(
    value: &Decimal,
    scale: u32,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    if serializer.is_human_readable() {
        return serializer.collect_str(&value.normalize());
    }
    let bytes = UnscaledBytes::new(*value, scale).map_err(serde::ser::Error::custom)?;
    serializer.serialize_bytes(bytes.as_slice())
}

struct ScaledVisitor {
    scale: u32,
}

impl de::Visitor<'_> for ScaledVisitor {
    type Value = Decimal;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "a decimal (Avro bytes at scale {} or a decimal string)",
            self.scale
        )
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Decimal, E> {
        from_unscaled_bytes(bytes, self.scale).map_err(E::custom)
    }

    fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<Decimal, E> {
        self.visit_bytes(&bytes)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Decimal, E> {
        crate::parse::parse_decimal_text(text).map_err(E::custom)
    }
}

fn deserialize_scaled<'de, D: Deserializer<'de>>(
    scale: u32,
    deserializer: D,
) -> Result<Decimal, D::Error> {
    if deserializer.is_human_readable() {
        deserializer.deserialize_str(ScaledVisitor { scale })
    } else {
        deserializer.deserialize_bytes(ScaledVisitor { scale })
    }
}

macro_rules! scaled_module {
    ($module:ident, $optional:ident, $scale:expr) => {
        /// `#[serde(with = …)]` for a `Decimal` field of this scale.
        pub mod $module {
            use rust_decimal::Decimal;
            use serde::{Deserializer, Serializer};

            pub fn serialize<S: Serializer>(
                value: &Decimal,
                serializer: S,
            ) -> Result<S::Ok, S::Error> {
                super::serialize_scaled(value, $scale, serializer)
            }

            pub fn deserialize<'de, D: Deserializer<'de>>(
                deserializer: D,
            ) -> Result<Decimal, D::Error> {
                super::deserialize_scaled($scale, deserializer)
            }
        }

        /// `#[serde(with = …)]` for an `Option<Decimal>` field of this scale (Avro `["null", decimal]`).
        pub mod $optional {
            use rust_decimal::Decimal;
            use serde::{Deserialize, Deserializer, Serialize, Serializer};

            struct Wrapped(Decimal);

            impl Serialize for Wrapped {
                fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                    super::serialize_scaled(&self.0, $scale, serializer)
                }
            }

            impl<'de> Deserialize<'de> for Wrapped {
                fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                    super::deserialize_scaled($scale, deserializer).map(Wrapped)
                }
            }

            pub fn serialize<S: Serializer>(
                value: &Option<Decimal>,
                serializer: S,
            ) -> Result<S::Ok, S::Error> {
                match value {
                    Some(decimal) => serializer.serialize_some(&Wrapped(*decimal)),
                    None => serializer.serialize_none(),
                }
            }

            pub fn deserialize<'de, D: Deserializer<'de>>(
                deserializer: D,
            ) -> Result<Option<Decimal>, D::Error> {
                Ok(Option::<Wrapped>::deserialize(deserializer)?.map(|wrapped| wrapped.0))
            }
        }
    };
}

scaled_module!(scale6, option_scale6, 6);
scaled_module!(scale12, option_scale12, 12);

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    #[test]
    fn unscaled_bytes_round_trip_and_are_minimal() {
        let cases = [
            ("0", 6, vec![0x00]),
            ("0.000001", 6, vec![0x01]),
            ("0.000128", 6, vec![0x00, 0x80]),
            ("-0.000001", 6, vec![0xff]),
            ("-0.000129", 6, vec![0xff, 0x7f]),
            ("0.58", 6, vec![0x08, 0xd9, 0xa0]),
        ];
        for (text, scale, expected) in cases {
            let value = Decimal::from_str(text).unwrap();
            let bytes = to_unscaled_bytes(value, scale).unwrap();
            assert_eq!(bytes, expected, "bytes of {text}");
            assert_eq!(
                from_unscaled_bytes(&bytes, scale).unwrap(),
                value,
                "value of {text}"
            );
        }
    }

    #[test]
    fn extra_fractional_digits_are_refused_not_rounded() {
        let value = Decimal::from_str("0.1234567").unwrap();
        assert_eq!(
            to_unscaled_bytes(value, 6),
            Err(DecimalError::TooManyFractionalDigits { value, scale: 6 })
        );
    }

    #[test]
    fn trailing_zeros_beyond_the_scale_are_accepted() {
        let value = Decimal::from_str("0.5000000000").unwrap();
        assert_eq!(to_unscaled_bytes(value, 6).unwrap(), vec![0x07, 0xa1, 0x20]);
    }

    #[test]
    fn oversized_bytes_are_an_error() {
        assert!(matches!(
            from_unscaled_bytes(&[1u8; 17], 6),
            Err(DecimalError::Overflow { .. })
        ));
        assert!(matches!(
            from_unscaled_bytes(&[0x7f; 16], 6),
            Err(DecimalError::Overflow { .. })
        ));
    }
}
