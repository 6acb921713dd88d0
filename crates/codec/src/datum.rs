//! Plain Avro datums (no framing) written and read straight from Rust structs through serde,
//! without building `apache_avro::types::Value` trees.

use std::marker::PhantomData;

use apache_avro::{Schema, schema::ResolvedSchema};

use crate::{
    AvroRecord, CodecError,
    reader::{AvroReader, Input},
    schemas,
    writer::AvroWriter,
};

/// Encodes and decodes one record type with a fixed schema. Build it once and reuse it: the
/// schema's names are resolved at construction.
pub struct DatumCodec<T> {
    schema: &'static Schema,
    names: ResolvedSchema<'static>,
    record: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for DatumCodec<T> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("DatumCodec")
            .field("schema", &self.schema.name())
            .finish()
    }
}

impl<T: AvroRecord> DatumCodec<T> {
    /// A codec for the record's own (compiled-in) schema.
    pub fn new() -> Result<Self, CodecError> {
        Self::with_writer_schema(schemas::schema(T::TOPIC), 0)
    }

    /// A codec that reads data written with `schema` (e.g. an older version fetched from the
    /// registry by id) into `T`. Fields `T` does not know are skipped; fields the writer did not
    /// have must be `#[serde(default)]` in `T`.
    pub fn with_writer_schema(schema: &'static Schema, schema_id: u32) -> Result<Self, CodecError> {
        let invalid = |source| CodecError::RegistrySchemaInvalid {
            schema_id,
            source: Box::new(source),
        };
        let names = ResolvedSchema::try_from(schema).map_err(invalid)?;
        Ok(Self {
            schema,
            names,
            record: PhantomData,
        })
    }

    pub fn schema(&self) -> &'static Schema {
        self.schema
    }

    /// Appends the Avro binary encoding of `record` to `out`.
    pub fn encode_into(&self, record: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        let start = out.len();
        let written = record.serialize(AvroWriter {
            out,
            schema: self.schema,
            names: self.names.get_names(),
        });
        written.map_err(|source| {
            // Leave no half-written datum behind in a caller's buffer.
            out.truncate(start);
            CodecError::Encode {
                record: T::NAME,
                source: Box::new(source),
            }
        })
    }

    /// The Avro binary encoding of `record`.
    pub fn encode(&self, record: &T) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::with_capacity(256);
        self.encode_into(record, &mut out)?;
        Ok(out)
    }

    /// Decodes one datum. Trailing bytes are an error: they mean the writer used another schema.
    pub fn decode(&self, datum: &[u8], schema_id: u32) -> Result<T, CodecError> {
        let mut input = Input { bytes: datum };
        // Decimal and bytes fields pick their binary form (the reader is not human-readable);
        // JSON (the API) gets decimal strings from the same types.
        let record = T::deserialize(AvroReader {
            input: &mut input,
            schema: self.schema,
            names: self.names.get_names(),
        })
        .map_err(|source| CodecError::Decode {
            record: T::NAME,
            schema_id,
            source: Box::new(source),
        })?;
        if !input.bytes.is_empty() {
            return Err(CodecError::TrailingBytes {
                record: T::NAME,
                schema_id,
                remaining: input.bytes.len(),
            });
        }
        Ok(record)
    }
}
