//! Every record type against its schema: round trip through our codec, decode of the same
//! bytes by apache-avro's generic reader given the `.avsc` file, golden bytes, backward
//! compatibility with the previous committed schema, and a doc on every field.
//!
//! To accept an intended change of encoding, regenerate the golden files with
//! `POLYTAPE_BLESS=1 cargo test -p polytape-codec --test records` and commit them.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::{collections::HashMap, path::PathBuf};

use apache_avro::{
    Schema,
    reader::datum::GenericDatumReader,
    schema::{Name, UnionSchema},
    schema_compatibility::SchemaCompatibility,
    types::Value,
};
use base64::Engine as _;
use polytape_codec::{AvroRecord, DatumCodec, RecordDecoder, RecordEncoder};
use polytape_model::{Topic, decimal::from_unscaled_bytes, samples};

fn schemas_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas/avro")
}

fn read_schema_file(relative: &str) -> Schema {
    let path = schemas_dir().join(relative);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    Schema::parse_str(&text)
        .unwrap_or_else(|error| panic!("{} does not parse: {error}", path.display()))
}

/// Renders a generically decoded Avro value as the JSON our own types serialize to, walking
/// the schema so decimals are read at their declared scale.
fn generic_json(
    value: &Value,
    schema: &Schema,
    names: &mut HashMap<Name, Schema>,
) -> serde_json::Value {
    let schema = match schema {
        Schema::Ref { name } => names
            .get(name)
            .cloned()
            .expect("named schema defined before use"),
        other => other.clone(),
    };
    match (value, &schema) {
        (Value::Null, _) => serde_json::Value::Null,
        (Value::Boolean(flag), _) => serde_json::json!(flag),
        (Value::Int(number), _) => serde_json::json!(number),
        (Value::Long(number) | Value::TimestampMillis(number), _) => serde_json::json!(number),
        // Text that reads as a decimal is compared as our side is (see `normalise_our_json`):
        // a signal's values are decimal text in plain strings.
        (Value::String(text), _) => normalise_our_json(serde_json::json!(text)),
        (Value::Enum(_, symbol), _) => serde_json::json!(symbol),
        (Value::Bytes(bytes), Schema::Decimal(decimal)) => {
            let scale = u32::try_from(decimal.scale).unwrap();
            serde_json::json!(
                from_unscaled_bytes(bytes, scale)
                    .unwrap()
                    .normalize()
                    .to_string()
            )
        }
        (Value::Decimal(decimal_value), Schema::Decimal(decimal)) => {
            let bytes = <Vec<u8>>::try_from(decimal_value).unwrap();
            let scale = u32::try_from(decimal.scale).unwrap();
            serde_json::json!(
                from_unscaled_bytes(&bytes, scale)
                    .unwrap()
                    .normalize()
                    .to_string()
            )
        }
        (Value::Bytes(bytes), _) => {
            serde_json::json!(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
        (Value::Union(index, inner), Schema::Union(union)) => {
            let branch = variant(union, *index);
            generic_json(inner, &branch, names)
        }
        (Value::Array(items), Schema::Array(array)) => serde_json::Value::Array(
            items
                .iter()
                .map(|item| generic_json(item, &array.items, names))
                .collect(),
        ),
        (Value::Record(fields), Schema::Record(record)) => {
            names.insert(record.name.clone(), schema.clone());
            let mut object = serde_json::Map::new();
            for ((field_name, field_value), field_schema) in fields.iter().zip(&record.fields) {
                assert_eq!(field_name, &field_schema.name);
                object.insert(
                    field_name.clone(),
                    generic_json(field_value, &field_schema.schema, names),
                );
            }
            serde_json::Value::Object(object)
        }
        (other, schema) => panic!("unexpected generic value {other:?} for schema {schema:?}"),
    }
}

fn variant(union: &UnionSchema, index: u32) -> Schema {
    union.variants()[usize::try_from(index).unwrap()].clone()
}

/// Normalises decimal strings in our own JSON (e.g. "0.50" → "0.5") so both sides compare.
fn normalise_our_json(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::String(text) => match rust_decimal::Decimal::from_str_exact(&text) {
            Ok(decimal)
                if text
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == '.' || c == '-') =>
            {
                serde_json::json!(decimal.normalize().to_string())
            }
            _ => serde_json::Value::String(text),
        },
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(normalise_our_json).collect())
        }
        serde_json::Value::Object(fields) => serde_json::Value::Object(
            fields
                .into_iter()
                .map(|(key, value)| (key, normalise_our_json(value)))
                .collect(),
        ),
        other => other,
    }
}

fn check_record<T: AvroRecord + PartialEq + std::fmt::Debug>(sample: T) {
    let codec = DatumCodec::<T>::new().unwrap();
    let bytes = codec.encode(&sample).unwrap();

    // 1. Our codec round-trips.
    assert_eq!(
        codec.decode(&bytes, 0).unwrap(),
        sample,
        "round trip of {}",
        T::NAME
    );

    // 2. A generic Avro reader given only the .avsc file decodes the same values.
    let schema = read_schema_file(T::TOPIC.schema_file());
    let generic = GenericDatumReader::builder(&schema)
        .build()
        .unwrap()
        .read_value(&mut bytes.as_slice())
        .unwrap();
    let generic_view = generic_json(&generic, &schema, &mut HashMap::new());
    let our_view = normalise_our_json(serde_json::to_value(&sample).unwrap());
    assert_eq!(generic_view, our_view, "generic decode of {}", T::NAME);

    // 3. The bytes are the committed golden bytes.
    let golden_path = schemas_dir()
        .join("golden")
        .join(T::TOPIC.schema_file().replace(".avsc", ".hex"));
    let encoded_hex = hex::encode(&bytes);
    if std::env::var_os("POLYTAPE_BLESS").is_some() {
        std::fs::create_dir_all(golden_path.parent().unwrap()).unwrap();
        std::fs::write(&golden_path, format!("{encoded_hex}\n")).unwrap();
    }
    let golden = std::fs::read_to_string(&golden_path).unwrap_or_else(|error| {
        panic!(
            "missing golden file {} ({error}); see the module docs",
            golden_path.display()
        )
    });
    assert_eq!(
        encoded_hex,
        golden.trim(),
        "encoding of {} changed; if intended, bless the golden files (module docs)",
        T::NAME
    );

    // 4. The Confluent framing round-trips.
    let encoder = RecordEncoder::<T>::with_schema_id(41).unwrap();
    let framed = encoder.encode(&sample).unwrap();
    assert_eq!(&framed[..5], &[0, 0, 0, 0, 41]);
    let decoder = RecordDecoder::<T>::for_own_schema(41).unwrap();
    assert_eq!(decoder.decode_cached(&framed).unwrap(), Some(sample));
}

macro_rules! record_tests {
    ($($name:ident => $sample:expr),+ $(,)?) => {
        $(
            #[test]
            fn $name() {
                check_record($sample);
            }
        )+
    };
}

record_tests! {
    market => samples::market(),
    event => samples::event(),
    trade => samples::trade(),
    book_snapshot => samples::book_snapshot(),
    price_change => samples::price_change(),
    last_trade => samples::last_trade(),
    tick_size_change => samples::tick_size_change(),
    best_bid_ask => samples::best_bid_ask(),
    market_lifecycle => samples::market_lifecycle(),
    price_point => samples::price_point(),
    candle => samples::candle(),
    book_state => samples::book_state(),
    continuity => samples::continuity(),
    dead_letter => samples::dead_letter(),
    leaderboard_entry => samples::leaderboard_entry(),
    signal => samples::signal(),
}

#[test]
fn each_schema_can_read_data_written_with_its_previous_version() {
    for topic in Topic::ALL {
        let current = read_schema_file(topic.schema_file());
        let previous = read_schema_file(&format!("previous/{}", topic.schema_file()));
        if let Err(error) = SchemaCompatibility::can_read(&previous, &current) {
            panic!(
                "{} is not BACKWARD compatible with previous/{}: {error}",
                topic.schema_file(),
                topic.schema_file()
            );
        }
    }
}

#[test]
fn the_compatibility_check_catches_a_breaking_change() {
    let previous = read_schema_file("trade.avsc");
    let mut breaking: serde_json::Value =
        serde_json::from_str(polytape_codec::schemas::schema_text(Topic::Trades)).unwrap();
    breaking["fields"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "venue", "type": "string", "doc": "no default"}));
    let breaking = Schema::parse_str(&breaking.to_string()).unwrap();
    assert!(SchemaCompatibility::can_read(&previous, &breaking).is_err());

    let mut compatible: serde_json::Value =
        serde_json::from_str(polytape_codec::schemas::schema_text(Topic::Trades)).unwrap();
    compatible["fields"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!(
            {"name": "venue", "type": ["null", "string"], "default": null, "doc": "optional"}
        ));
    let compatible = Schema::parse_str(&compatible.to_string()).unwrap();
    assert!(SchemaCompatibility::can_read(&previous, &compatible).is_ok());
}

fn assert_documented(value: &serde_json::Value, path: &str) {
    match value {
        serde_json::Value::Object(object) => {
            if object.get("type").and_then(|kind| kind.as_str()) == Some("record") {
                for field in object["fields"].as_array().unwrap() {
                    let name = field["name"].as_str().unwrap();
                    let doc = field.get("doc").and_then(|doc| doc.as_str()).unwrap_or("");
                    assert!(!doc.trim().is_empty(), "field {path}.{name} has no doc");
                    assert_documented(&field["type"], &format!("{path}.{name}"));
                }
            } else {
                for (key, nested) in object {
                    assert_documented(nested, &format!("{path}.{key}"));
                }
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                assert_documented(item, path);
            }
        }
        _ => {}
    }
}

#[test]
fn every_field_of_every_schema_has_a_doc() {
    for topic in Topic::ALL {
        let parsed: serde_json::Value =
            serde_json::from_str(polytape_codec::schemas::schema_text(topic)).unwrap();
        assert_documented(&parsed, topic.schema_file());
    }
}

#[test]
fn a_datum_with_trailing_bytes_is_refused() {
    let codec = DatumCodec::<polytape_model::Trade>::new().unwrap();
    let mut bytes = codec.encode(&samples::trade()).unwrap();
    bytes.push(0);
    assert!(codec.decode(&bytes, 0).is_err());
    assert!(codec.decode(&bytes[..bytes.len() - 3], 0).is_err());
}

#[test]
fn data_from_a_newer_writer_with_an_extra_field_decodes_with_the_field_skipped() {
    let mut newer: serde_json::Value =
        serde_json::from_str(polytape_codec::schemas::schema_text(Topic::Trades)).unwrap();
    newer["fields"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!(
            {"name": "venue", "type": ["null", "string"], "default": null, "doc": "a newer field"}
        ));
    let newer_schema: &'static Schema =
        Box::leak(Box::new(Schema::parse_str(&newer.to_string()).unwrap()));

    // The newer writer's datum: today's fields, then `venue` = Some("clob").
    let sample = samples::trade();
    let mut datum = DatumCodec::<polytape_model::Trade>::new()
        .unwrap()
        .encode(&sample)
        .unwrap();
    datum.extend_from_slice(&[0x02, 0x08]);
    datum.extend_from_slice(b"clob");

    let reader = DatumCodec::<polytape_model::Trade>::with_writer_schema(newer_schema, 7).unwrap();
    assert_eq!(reader.decode(&datum, 7).unwrap(), sample);
    // Read with today's schema instead, the extra bytes are refused rather than ignored.
    assert!(
        DatumCodec::<polytape_model::Trade>::new()
            .unwrap()
            .decode(&datum, 0)
            .is_err()
    );
}
