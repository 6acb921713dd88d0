use std::time::Duration;

/// Errors of the codec and the Schema Registry client.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("could not encode {record} as Avro: {source}")]
    Encode {
        record: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("could not decode {record} from Avro (schema id {schema_id}): {source}")]
    Decode {
        record: &'static str,
        schema_id: u32,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(
        "{remaining} bytes left after decoding {record} (schema id {schema_id}); the writer used another schema"
    )]
    TrailingBytes {
        record: &'static str,
        schema_id: u32,
        remaining: usize,
    },
    #[error("message is not in the Confluent wire format: {reason}")]
    NotConfluentFramed { reason: &'static str },
    #[error("schema id {schema_id} from the registry does not parse as Avro: {source}")]
    RegistrySchemaInvalid {
        schema_id: u32,
        #[source]
        source: Box<apache_avro::Error>,
    },
    #[error(
        "schema registry at {url} is unreachable ({source}); start it with `cargo xtask stack up` or set POLYTAPE_SCHEMA_REGISTRY_URL"
    )]
    RegistryUnreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("schema registry answered {status} to {operation}: {message}")]
    RegistryRejected {
        operation: String,
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
}

impl CodecError {
    /// Whether trying again later may succeed (registry unavailable, overloaded or failing),
    /// as opposed to bad data or a rejected schema, which never will.
    pub fn is_retryable(&self) -> bool {
        match self {
            CodecError::RegistryUnreachable { .. } => true,
            CodecError::RegistryRejected { status, .. } => *status == 429 || *status >= 500,
            CodecError::Encode { .. }
            | CodecError::Decode { .. }
            | CodecError::TrailingBytes { .. }
            | CodecError::NotConfluentFramed { .. }
            | CodecError::RegistrySchemaInvalid { .. } => false,
        }
    }
}
