//! Avro binary encoding straight from serde, walking a parsed schema.
//!
//! apache-avro's schema-aware serializer looks every field name up in a hash map; on our
//! records that lookup is most of the encode time. This writer relies on what our codec
//! guarantees instead (Rust fields in schema order, checked here with a cheap name comparison)
//! and writes the exact bytes the Avro spec defines. Decoding stays with apache-avro. The
//! golden-bytes and generic-reader tests pin the output for every record type.

use std::fmt;

use apache_avro::{
    Schema,
    schema::{Name, NamesRef},
};
use serde::ser::{self, Impossible, Serialize};

/// Why a value does not fit the schema it is written with.
#[derive(Debug)]
pub(crate) struct WriteError(String);

impl fmt::Display for WriteError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl std::error::Error for WriteError {}

impl ser::Error for WriteError {
    fn custom<T: fmt::Display>(message: T) -> Self {
        WriteError(message.to_string())
    }
}

fn mismatch(rust_type: &str, schema: &Schema) -> WriteError {
    WriteError(format!(
        "a {rust_type} cannot be written as Avro {:?}",
        schema_kind(schema)
    ))
}

fn schema_kind(schema: &Schema) -> String {
    match schema {
        Schema::Record(record) => format!("record {}", record.name),
        Schema::Enum(enumeration) => format!("enum {}", enumeration.name),
        Schema::Ref { name } => format!("reference {name}"),
        other => format!("{:?}", apache_avro::schema::SchemaKind::from(other)),
    }
}

/// Appends the zig-zag varint of `value` (Avro `int` and `long`).
fn write_long(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        out.push((zigzag as u8) | 0x80);
        zigzag >>= 7;
    }
    out.push(zigzag as u8);
}

fn write_length(out: &mut Vec<u8>, length: usize) -> Result<(), WriteError> {
    let length =
        i64::try_from(length).map_err(|_| WriteError("length does not fit a long".into()))?;
    write_long(out, length);
    Ok(())
}

/// Serializes one value as the Avro binary encoding of `schema`.
pub(crate) struct AvroWriter<'w, 's> {
    pub(crate) out: &'w mut Vec<u8>,
    pub(crate) schema: &'s Schema,
    pub(crate) names: &'s NamesRef<'s>,
}

impl<'w, 's> AvroWriter<'w, 's> {
    fn resolved(&self) -> Result<&'s Schema, WriteError> {
        match self.schema {
            Schema::Ref { name } => self.names.get(name).copied().ok_or_else(|| {
                WriteError(format!(
                    "the schema refers to {name}, which it does not define"
                ))
            }),
            schema => Ok(schema),
        }
    }

    fn nested(&mut self, schema: &'s Schema) -> AvroWriter<'_, 's> {
        AvroWriter {
            out: self.out,
            schema,
            names: self.names,
        }
    }

    fn write_integer(self, value: i64, rust_type: &str) -> Result<(), WriteError> {
        let schema = self.resolved()?;
        match schema {
            Schema::Int | Schema::Date | Schema::TimeMillis => {
                let narrowed = i32::try_from(value)
                    .map_err(|_| WriteError(format!("{value} does not fit an Avro int")))?;
                write_long(self.out, i64::from(narrowed));
                Ok(())
            }
            Schema::Long
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => {
                write_long(self.out, value);
                Ok(())
            }
            other => Err(mismatch(rust_type, other)),
        }
    }
}

/// The branch of `union` that is not null (our unions are `["null", T]`).
fn non_null_branch(union: &apache_avro::schema::UnionSchema) -> Option<(usize, &Schema)> {
    union
        .variants()
        .iter()
        .enumerate()
        .find(|(_, variant)| !matches!(variant, Schema::Null))
}

impl<'w, 's> ser::Serializer for AvroWriter<'w, 's> {
    type Ok = ();
    type Error = WriteError;
    type SerializeSeq = ArrayWriter<'w, 's>;
    type SerializeTuple = Impossible<(), WriteError>;
    type SerializeTupleStruct = Impossible<(), WriteError>;
    type SerializeTupleVariant = Impossible<(), WriteError>;
    type SerializeMap = Impossible<(), WriteError>;
    type SerializeStruct = RecordWriter<'w, 's>;
    type SerializeStructVariant = Impossible<(), WriteError>;

    fn is_human_readable(&self) -> bool {
        // Decimals and byte payloads choose their binary form.
        false
    }

    fn serialize_bool(self, value: bool) -> Result<(), WriteError> {
        match self.resolved()? {
            Schema::Boolean => {
                self.out.push(u8::from(value));
                Ok(())
            }
            other => Err(mismatch("bool", other)),
        }
    }

    fn serialize_i8(self, value: i8) -> Result<(), WriteError> {
        self.write_integer(i64::from(value), "i8")
    }

    fn serialize_i16(self, value: i16) -> Result<(), WriteError> {
        self.write_integer(i64::from(value), "i16")
    }

    fn serialize_i32(self, value: i32) -> Result<(), WriteError> {
        self.write_integer(i64::from(value), "i32")
    }

    fn serialize_i64(self, value: i64) -> Result<(), WriteError> {
        self.write_integer(value, "i64")
    }

    fn serialize_u8(self, value: u8) -> Result<(), WriteError> {
        self.write_integer(i64::from(value), "u8")
    }

    fn serialize_u16(self, value: u16) -> Result<(), WriteError> {
        self.write_integer(i64::from(value), "u16")
    }

    fn serialize_u32(self, value: u32) -> Result<(), WriteError> {
        self.write_integer(i64::from(value), "u32")
    }

    fn serialize_u64(self, value: u64) -> Result<(), WriteError> {
        let value = i64::try_from(value)
            .map_err(|_| WriteError(format!("{value} does not fit an Avro long")))?;
        self.write_integer(value, "u64")
    }

    fn serialize_f32(self, value: f32) -> Result<(), WriteError> {
        match self.resolved()? {
            Schema::Float => {
                self.out.extend_from_slice(&value.to_le_bytes());
                Ok(())
            }
            Schema::Double => {
                self.out.extend_from_slice(&f64::from(value).to_le_bytes());
                Ok(())
            }
            other => Err(mismatch("f32", other)),
        }
    }

    fn serialize_f64(self, value: f64) -> Result<(), WriteError> {
        match self.resolved()? {
            Schema::Double => {
                self.out.extend_from_slice(&value.to_le_bytes());
                Ok(())
            }
            other => Err(mismatch("f64", other)),
        }
    }

    fn serialize_char(self, value: char) -> Result<(), WriteError> {
        self.serialize_str(value.encode_utf8(&mut [0; 4]))
    }

    fn serialize_str(self, value: &str) -> Result<(), WriteError> {
        match self.resolved()? {
            Schema::String => {
                write_length(self.out, value.len())?;
                self.out.extend_from_slice(value.as_bytes());
                Ok(())
            }
            other => Err(mismatch("string", other)),
        }
    }

    fn serialize_bytes(self, value: &[u8]) -> Result<(), WriteError> {
        match self.resolved()? {
            Schema::Bytes | Schema::BigDecimal => {
                write_length(self.out, value.len())?;
                self.out.extend_from_slice(value);
                Ok(())
            }
            Schema::Decimal(decimal) => match &decimal.inner {
                apache_avro::schema::InnerDecimalSchema::Bytes => {
                    write_length(self.out, value.len())?;
                    self.out.extend_from_slice(value);
                    Ok(())
                }
                apache_avro::schema::InnerDecimalSchema::Fixed(_) => Err(WriteError(
                    "fixed-size decimals are not used by Polytape's schemas".into(),
                )),
            },
            other => Err(mismatch("bytes", other)),
        }
    }

    fn serialize_none(self) -> Result<(), WriteError> {
        match self.resolved()? {
            Schema::Union(union) => {
                let index = union
                    .variants()
                    .iter()
                    .position(|variant| matches!(variant, Schema::Null))
                    .ok_or_else(|| WriteError("None for a union without null".into()))?;
                write_length(self.out, index)
            }
            other => Err(mismatch("None", other)),
        }
    }

    fn serialize_some<T: ?Sized + Serialize>(mut self, value: &T) -> Result<(), WriteError> {
        match self.resolved()? {
            Schema::Union(union) => {
                let (index, branch) = non_null_branch(union)
                    .ok_or_else(|| WriteError("Some for a union of only null".into()))?;
                write_length(self.out, index)?;
                value.serialize(self.nested(branch))
            }
            other => Err(mismatch("Some", other)),
        }
    }

    fn serialize_unit(self) -> Result<(), WriteError> {
        match self.resolved()? {
            Schema::Null => Ok(()),
            other => Err(mismatch("unit", other)),
        }
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), WriteError> {
        self.serialize_unit()
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<(), WriteError> {
        match self.resolved()? {
            Schema::Enum(enumeration) => {
                let position = usize::try_from(index).unwrap_or(usize::MAX);
                let symbol_index = if enumeration
                    .symbols
                    .get(position)
                    .is_some_and(|symbol| symbol == variant)
                {
                    position
                } else {
                    enumeration
                        .symbols
                        .iter()
                        .position(|symbol| symbol == variant)
                        .ok_or_else(|| {
                            WriteError(format!(
                                "{variant} is not a symbol of enum {}",
                                enumeration.name
                            ))
                        })?
                };
                write_length(self.out, symbol_index)
            }
            other => Err(mismatch("unit variant", other)),
        }
    }

    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), WriteError> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _value: &T,
    ) -> Result<(), WriteError> {
        Err(WriteError(format!(
            "enum variant {variant} with data has no Avro mapping in Polytape"
        )))
    }

    fn serialize_seq(self, length: Option<usize>) -> Result<ArrayWriter<'w, 's>, WriteError> {
        match self.resolved()? {
            Schema::Array(array) => {
                let length = length.ok_or_else(|| {
                    WriteError("arrays of unknown length are not supported".into())
                })?;
                if length > 0 {
                    write_length(self.out, length)?;
                }
                Ok(ArrayWriter {
                    out: self.out,
                    items: &array.items,
                    names: self.names,
                    remaining: length,
                })
            }
            other => Err(mismatch("sequence", other)),
        }
    }

    fn serialize_tuple(self, _length: usize) -> Result<Self::SerializeTuple, WriteError> {
        Err(WriteError("tuples have no Avro mapping in Polytape".into()))
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _length: usize,
    ) -> Result<Self::SerializeTupleStruct, WriteError> {
        Err(WriteError(
            "tuple structs have no Avro mapping in Polytape".into(),
        ))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _length: usize,
    ) -> Result<Self::SerializeTupleVariant, WriteError> {
        Err(WriteError(
            "tuple variants have no Avro mapping in Polytape".into(),
        ))
    }

    fn serialize_map(self, _length: Option<usize>) -> Result<Self::SerializeMap, WriteError> {
        Err(WriteError("maps are not used by Polytape's schemas".into()))
    }

    fn serialize_struct(
        self,
        name: &'static str,
        _length: usize,
    ) -> Result<RecordWriter<'w, 's>, WriteError> {
        match self.resolved()? {
            Schema::Record(record) => Ok(RecordWriter {
                out: self.out,
                fields: &record.fields,
                names: self.names,
                next_field: 0,
                record_name: &record.name,
            }),
            other => Err(WriteError(format!(
                "struct {name} cannot be written as Avro {}",
                schema_kind(other)
            ))),
        }
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _length: usize,
    ) -> Result<Self::SerializeStructVariant, WriteError> {
        Err(WriteError(format!(
            "struct variant {variant} has no Avro mapping in Polytape"
        )))
    }
}

/// Writes an array's items as one block, then the end marker.
pub(crate) struct ArrayWriter<'w, 's> {
    out: &'w mut Vec<u8>,
    items: &'s Schema,
    names: &'s NamesRef<'s>,
    remaining: usize,
}

impl ser::SerializeSeq for ArrayWriter<'_, '_> {
    type Ok = ();
    type Error = WriteError;

    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), WriteError> {
        self.remaining = self
            .remaining
            .checked_sub(1)
            .ok_or_else(|| WriteError("more array items than announced".into()))?;
        value.serialize(AvroWriter {
            out: self.out,
            schema: self.items,
            names: self.names,
        })
    }

    fn end(self) -> Result<(), WriteError> {
        if self.remaining != 0 {
            return Err(WriteError("fewer array items than announced".into()));
        }
        self.out.push(0);
        Ok(())
    }
}

/// Writes a record's fields, which must arrive in schema order.
pub(crate) struct RecordWriter<'w, 's> {
    out: &'w mut Vec<u8>,
    fields: &'s [apache_avro::schema::RecordField],
    names: &'s NamesRef<'s>,
    next_field: usize,
    record_name: &'s Name,
}

impl ser::SerializeStruct for RecordWriter<'_, '_> {
    type Ok = ();
    type Error = WriteError;

    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), WriteError> {
        let Some(field) = self.fields.get(self.next_field) else {
            return Err(WriteError(format!(
                "{} has no field {key} in its schema",
                self.record_name
            )));
        };
        if field.name != key {
            return Err(WriteError(format!(
                "{}: field {key} arrives where the schema has {}; Rust fields must follow the schema's order",
                self.record_name, field.name
            )));
        }
        self.next_field += 1;
        value.serialize(AvroWriter {
            out: self.out,
            schema: &field.schema,
            names: self.names,
        })
    }

    fn end(self) -> Result<(), WriteError> {
        if self.next_field != self.fields.len() {
            return Err(WriteError(format!(
                "{}: field {} was not written",
                self.record_name, self.fields[self.next_field].name
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longs_are_zigzag_varints() {
        let cases: [(i64, &[u8]); 6] = [
            (0, &[0x00]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
            (1_774_020_191_000, &[0xb0, 0x8c, 0xbf, 0xbd, 0xa1, 0x67]),
        ];
        for (value, expected) in cases {
            let mut out = Vec::new();
            write_long(&mut out, value);
            assert_eq!(out, expected, "{value}");
        }
    }
}
