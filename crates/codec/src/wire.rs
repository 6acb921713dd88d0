//! The Confluent wire format: magic byte 0, the schema id as a big-endian u32, then the Avro
//! datum. Standard consumers (Confluent serdes, `confluent-kafka`'s AvroDeserializer) read it.

use crate::CodecError;

pub const MAGIC_BYTE: u8 = 0;
pub const HEADER_LEN: usize = 5;

/// Appends the 5-byte Confluent header for `schema_id`.
pub fn write_header(schema_id: u32, out: &mut Vec<u8>) {
    out.push(MAGIC_BYTE);
    out.extend_from_slice(&schema_id.to_be_bytes());
}

/// Splits a framed message into its schema id and Avro datum.
pub fn split_frame(message: &[u8]) -> Result<(u32, &[u8]), CodecError> {
    if message.len() < HEADER_LEN {
        return Err(CodecError::NotConfluentFramed {
            reason: "shorter than the 5-byte header",
        });
    }
    if message[0] != MAGIC_BYTE {
        return Err(CodecError::NotConfluentFramed {
            reason: "first byte is not the magic byte 0",
        });
    }
    let schema_id = u32::from_be_bytes([message[1], message[2], message[3], message[4]]);
    Ok((schema_id, &message[HEADER_LEN..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let mut framed = Vec::new();
        write_header(0x0102_0304, &mut framed);
        framed.extend_from_slice(b"datum");
        assert_eq!(framed[..5], [0, 1, 2, 3, 4]);
        assert_eq!(split_frame(&framed).unwrap(), (0x0102_0304, &b"datum"[..]));
    }

    #[test]
    fn unframed_input_is_refused() {
        assert!(split_frame(&[0, 0, 0]).is_err());
        assert!(split_frame(&[1, 0, 0, 0, 1, 2]).is_err());
    }
}
