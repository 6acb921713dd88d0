//! `#[serde(with = "crate::bytes")]` for raw payloads: Avro `bytes` on the wire, base64 text in
//! human-readable formats.

use std::fmt;

use serde::{Deserializer, Serializer, de};

pub fn serialize<S: Serializer>(payload: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    if serializer.is_human_readable() {
        return serializer.collect_str(&Base64Display(payload));
    }
    serializer.serialize_bytes(payload)
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    if deserializer.is_human_readable() {
        return deserializer.deserialize_str(PayloadVisitor);
    }
    deserializer.deserialize_byte_buf(PayloadVisitor)
}

struct PayloadVisitor;

impl de::Visitor<'_> for PayloadVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("raw bytes or base64 text")
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
        Ok(bytes.to_vec())
    }

    fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(bytes)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Vec<u8>, E> {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|error| E::custom(format!("payload is not base64: {error}")))
    }
}

struct Base64Display<'a>(&'a [u8]);

impl fmt::Display for Base64Display<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        use base64::Engine as _;
        formatter.write_str(&base64::engine::general_purpose::STANDARD.encode(self.0))
    }
}
