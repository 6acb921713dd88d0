//! Producer- and consumer-side codecs for framed (Confluent wire format) records.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use apache_avro::Schema;
use polytape_model::TopicNames;

use crate::{
    AvroRecord, CodecError, DatumCodec, SchemaRegistryClient, schemas,
    wire::{split_frame, write_header},
};

/// Encodes one record type for its topic: the schema is registered (once, at start-up) and
/// its id goes in front of every datum.
#[derive(Debug)]
pub struct RecordEncoder<T> {
    schema_id: u32,
    codec: DatumCodec<T>,
}

impl<T: AvroRecord> RecordEncoder<T> {
    /// Registers `T`'s schema under the topic's value subject and returns an encoder for it.
    pub async fn register(
        registry: &SchemaRegistryClient,
        topic_names: &TopicNames,
    ) -> Result<Self, CodecError> {
        let subject = topic_names.value_subject(T::TOPIC);
        let schema_id = registry
            .register(&subject, schemas::schema_text(T::TOPIC))
            .await?;
        Self::with_schema_id(schema_id)
    }

    /// An encoder for an already registered id (tests and benchmarks).
    pub fn with_schema_id(schema_id: u32) -> Result<Self, CodecError> {
        Ok(Self {
            schema_id,
            codec: DatumCodec::new()?,
        })
    }

    pub fn schema_id(&self) -> u32 {
        self.schema_id
    }

    /// Appends the framed encoding of `record` to `out`.
    pub fn encode_into(&self, record: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        write_header(self.schema_id, out);
        self.codec.encode_into(record, out)
    }

    /// The framed encoding of `record`.
    pub fn encode(&self, record: &T) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::with_capacity(256);
        self.encode_into(record, &mut out)?;
        Ok(out)
    }
}

/// Decodes framed records of one type, whatever registered schema version wrote them. Writer
/// schemas are fetched from the registry on first sight of an id and cached for the life of
/// the process (ids are immutable, and a process sees only a handful).
pub struct RecordDecoder<T> {
    registry: Option<SchemaRegistryClient>,
    codecs: RwLock<HashMap<u32, Arc<DatumCodec<T>>>>,
}

impl<T> std::fmt::Debug for RecordDecoder<T> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RecordDecoder")
            .field("registry", &self.registry)
            .finish()
    }
}

impl<T: AvroRecord> RecordDecoder<T> {
    /// A decoder that resolves unknown schema ids through `registry`.
    pub fn new(registry: SchemaRegistryClient) -> Self {
        Self {
            registry: Some(registry),
            codecs: RwLock::new(HashMap::new()),
        }
    }

    /// A decoder without a registry that reads only `schema_id`, written with `T`'s own schema
    /// (tests and benchmarks).
    pub fn for_own_schema(schema_id: u32) -> Result<Self, CodecError> {
        let mut codecs = HashMap::new();
        codecs.insert(schema_id, Arc::new(DatumCodec::new()?));
        Ok(Self {
            registry: None,
            codecs: RwLock::new(codecs),
        })
    }

    /// Decodes a framed message, fetching its writer schema if this id is new.
    pub async fn decode(&self, message: &[u8]) -> Result<T, CodecError> {
        let (schema_id, datum) = split_frame(message)?;
        let codec = match self.cached(schema_id) {
            Some(codec) => codec,
            None => self.fetch(schema_id).await?,
        };
        codec.decode(datum, schema_id)
    }

    /// Decodes a framed message if its schema id is already known; `Ok(None)` otherwise.
    pub fn decode_cached(&self, message: &[u8]) -> Result<Option<T>, CodecError> {
        let (schema_id, datum) = split_frame(message)?;
        match self.cached(schema_id) {
            Some(codec) => codec.decode(datum, schema_id).map(Some),
            None => Ok(None),
        }
    }

    fn cached(&self, schema_id: u32) -> Option<Arc<DatumCodec<T>>> {
        let codecs = self
            .codecs
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        codecs.get(&schema_id).cloned()
    }

    async fn fetch(&self, schema_id: u32) -> Result<Arc<DatumCodec<T>>, CodecError> {
        let Some(registry) = &self.registry else {
            return Err(CodecError::RegistryRejected {
                operation: format!("fetch schema id {schema_id}"),
                status: 404,
                message: "this decoder has no registry and does not know the id".to_owned(),
                retry_after: None,
            });
        };
        let text = registry.schema_by_id(schema_id).await?;
        let schema =
            Schema::parse_str(&text).map_err(|source| CodecError::RegistrySchemaInvalid {
                schema_id,
                source: Box::new(source),
            })?;
        // Codecs borrow their schema for 'static; leaking one parsed schema per distinct id
        // is bounded by the number of schema versions a process ever reads.
        let schema: &'static Schema = Box::leak(Box::new(schema));
        let codec = Arc::new(DatumCodec::with_writer_schema(schema, schema_id)?);
        let mut codecs = self
            .codecs
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok(codecs.entry(schema_id).or_insert(codec).clone())
    }
}
