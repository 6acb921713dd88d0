//! The one way a dead letter is made, and its one identity scheme.
//!
//! A dead letter's id is a digest of where the bad input was read and of the input itself, so
//! the same input read again from the same place (a redelivered message, a re-polled row) is
//! the same dead letter — `dead_letters` is keyed by the id alone and keeps it once — while two
//! occurrences told apart by their origin stay two.

use sha2::{Digest as _, Sha256};

use crate::records::DeadLetter;

impl DeadLetter {
    /// The identity of bad input `payload` read at `origin`: 16 bytes of SHA-256, in hex.
    pub fn identity(origin: &str, payload: &[u8]) -> String {
        let mut hasher = Sha256::new();
        hasher.update(origin.as_bytes());
        hasher.update([0]);
        hasher.update(payload);
        hex::encode(&hasher.finalize()[..16])
    }

    /// Bad input read from upstream (a REST row or page, a WebSocket frame), or from anywhere
    /// with no Kafka position. `origin` says where, and must tell apart two occurrences that
    /// are two problems.
    pub fn from_upstream(
        source: &str,
        origin: String,
        error: String,
        payload: Vec<u8>,
        occurred_ms: i64,
    ) -> Self {
        Self {
            dead_letter_id: Self::identity(&origin, &payload),
            source: source.to_owned(),
            origin,
            error,
            payload,
            topic: None,
            partition: None,
            offset: None,
            occurred_ms,
        }
    }

    /// A Kafka message that could not be used; its origin is `topic/partition/offset`.
    pub fn from_message(
        source: &str,
        topic: &str,
        partition: i32,
        offset: i64,
        error: String,
        payload: Vec<u8>,
        occurred_ms: i64,
    ) -> Self {
        let origin = format!("{topic}/{partition}/{offset}");
        Self {
            topic: Some(topic.to_owned()),
            partition: Some(partition),
            offset: Some(offset),
            ..Self::from_upstream(source, origin, error, payload, occurred_ms)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_input_at_one_origin_is_one_letter_and_either_changes_it() {
        let letter = |origin: &str, payload: &[u8]| {
            DeadLetter::from_upstream("s", origin.to_owned(), "e".to_owned(), payload.to_vec(), 1)
        };
        let first = letter("page 1", b"row");
        assert_eq!(
            first.dead_letter_id,
            letter("page 1", b"row").dead_letter_id
        );
        assert_ne!(
            first.dead_letter_id,
            letter("page 2", b"row").dead_letter_id
        );
        assert_ne!(
            first.dead_letter_id,
            letter("page 1", b"row2").dead_letter_id
        );
        // The separator keeps origin and payload apart.
        assert_ne!(
            letter("ab", b"c").dead_letter_id,
            letter("a", b"bc").dead_letter_id
        );
        assert_eq!(first.dead_letter_id.len(), 32);
        let message = DeadLetter::from_message("s", "t", 2, 7, "e".to_owned(), b"p".to_vec(), 1);
        assert_eq!(message.origin, "t/2/7");
        assert_eq!(message.dead_letter_id, DeadLetter::identity("t/2/7", b"p"));
        assert_eq!((message.partition, message.offset), (Some(2), Some(7)));
    }
}
