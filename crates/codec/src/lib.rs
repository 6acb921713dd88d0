//! Avro for Polytape records.
//!
//! - [`schemas`]: the `.avsc` of every topic, compiled in and parsed once;
//! - [`DatumCodec`]: Avro binary straight from and into Rust structs through serde;
//! - [`RecordEncoder`] / [`RecordDecoder`]: the Confluent wire format with schema ids from the
//!   [`SchemaRegistryClient`].

mod datum;
mod error;
mod framed;
mod reader;
mod record;
mod registry;
pub mod schemas;
pub mod wire;
mod writer;

pub use datum::DatumCodec;
pub use error::CodecError;
pub use framed::{RecordDecoder, RecordEncoder};
pub use record::AvroRecord;
pub use registry::SchemaRegistryClient;
