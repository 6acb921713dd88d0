//! Avro binary decoding straight into serde, walking the writer's parsed schema over the input
//! slice: strings are copied once into the struct's `String`s, and decimals and byte payloads
//! are handed to their visitors as borrowed slices (no intermediate `Vec`). The golden-bytes and
//! generic-reader tests pin it against apache-avro for every record type.

use std::fmt;

use apache_avro::{
    Schema,
    schema::{InnerDecimalSchema, NamesRef, RecordField},
};
use serde::de::{self, DeserializeSeed, IntoDeserializer as _, Visitor};

/// Why bytes do not decode with the schema.
#[derive(Debug)]
pub(crate) struct ReadError(String);

impl fmt::Display for ReadError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl std::error::Error for ReadError {}

impl de::Error for ReadError {
    fn custom<T: fmt::Display>(message: T) -> Self {
        ReadError(message.to_string())
    }
}

fn truncated() -> ReadError {
    ReadError("the datum ends before the schema does".to_owned())
}

/// The input still to read.
pub(crate) struct Input<'de> {
    pub(crate) bytes: &'de [u8],
}

impl<'de> Input<'de> {
    fn byte(&mut self) -> Result<u8, ReadError> {
        let (&first, rest) = self.bytes.split_first().ok_or_else(truncated)?;
        self.bytes = rest;
        Ok(first)
    }

    fn long(&mut self) -> Result<i64, ReadError> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
            }
        }
        Err(ReadError("a varint longer than 10 bytes".to_owned()))
    }

    fn slice(&mut self) -> Result<&'de [u8], ReadError> {
        let length =
            usize::try_from(self.long()?).map_err(|_| ReadError("a negative length".to_owned()))?;
        if length > self.bytes.len() {
            return Err(truncated());
        }
        let (taken, rest) = self.bytes.split_at(length);
        self.bytes = rest;
        Ok(taken)
    }

    fn str(&mut self) -> Result<&'de str, ReadError> {
        std::str::from_utf8(self.slice()?)
            .map_err(|error| ReadError(format!("a string is not UTF-8: {error}")))
    }

    /// The item count of the next array block (0 ends the array); a negative count is followed
    /// by the block's byte size, which we do not need.
    fn block_count(&mut self) -> Result<usize, ReadError> {
        let count = self.long()?;
        if count < 0 {
            let _block_bytes = self.long()?;
        }
        usize::try_from(count.unsigned_abs())
            .map_err(|_| ReadError("an array block too large".to_owned()))
    }
}

/// Deserializes one value of `schema` from the input.
pub(crate) struct AvroReader<'a, 'de, 's> {
    pub(crate) input: &'a mut Input<'de>,
    pub(crate) schema: &'s Schema,
    pub(crate) names: &'s NamesRef<'s>,
}

impl<'a, 'de, 's> AvroReader<'a, 'de, 's> {
    fn resolved(&self) -> Result<&'s Schema, ReadError> {
        match self.schema {
            Schema::Ref { name } => self.names.get(name).copied().ok_or_else(|| {
                ReadError(format!(
                    "the schema refers to {name}, which it does not define"
                ))
            }),
            schema => Ok(schema),
        }
    }

    fn with_schema(self, schema: &'s Schema) -> Self {
        Self {
            input: self.input,
            schema,
            names: self.names,
        }
    }

    /// Reads and discards one value (fields the Rust type does not have).
    fn skip(mut self) -> Result<(), ReadError> {
        match self.resolved()? {
            Schema::Null => Ok(()),
            Schema::Boolean => self.input.byte().map(|_| ()),
            Schema::Int
            | Schema::Long
            | Schema::Date
            | Schema::TimeMillis
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos
            | Schema::Enum(_) => self.input.long().map(|_| ()),
            Schema::Float => self.skip_fixed(4),
            Schema::Double => self.skip_fixed(8),
            Schema::Bytes | Schema::String | Schema::BigDecimal => self.input.slice().map(|_| ()),
            Schema::Decimal(decimal) => match &decimal.inner {
                InnerDecimalSchema::Bytes => self.input.slice().map(|_| ()),
                InnerDecimalSchema::Fixed(fixed) => self.skip_fixed(fixed.size),
            },
            Schema::Fixed(fixed) | Schema::Duration(fixed) => self.skip_fixed(fixed.size),
            Schema::Union(union) => {
                let branch = self.union_branch(union)?;
                self.with_schema(branch).skip()
            }
            Schema::Array(array) => loop {
                let count = self.input.block_count()?;
                if count == 0 {
                    return Ok(());
                }
                for _ in 0..count {
                    AvroReader {
                        input: self.input,
                        schema: &array.items,
                        names: self.names,
                    }
                    .skip()?;
                }
            },
            Schema::Map(map) => loop {
                let count = self.input.block_count()?;
                if count == 0 {
                    return Ok(());
                }
                for _ in 0..count {
                    self.input.slice()?;
                    AvroReader {
                        input: self.input,
                        schema: &map.types,
                        names: self.names,
                    }
                    .skip()?;
                }
            },
            Schema::Record(record) => {
                for field in &record.fields {
                    AvroReader {
                        input: self.input,
                        schema: &field.schema,
                        names: self.names,
                    }
                    .skip()?;
                }
                Ok(())
            }
            other => Err(ReadError(format!(
                "cannot skip a value of schema {other:?}"
            ))),
        }
    }

    fn skip_fixed(self, size: usize) -> Result<(), ReadError> {
        if size > self.input.bytes.len() {
            return Err(truncated());
        }
        self.input.bytes = &self.input.bytes[size..];
        Ok(())
    }

    fn union_branch(
        &mut self,
        union: &'s apache_avro::schema::UnionSchema,
    ) -> Result<&'s Schema, ReadError> {
        let index = usize::try_from(self.input.long()?)
            .map_err(|_| ReadError("a negative union index".to_owned()))?;
        union
            .variants()
            .get(index)
            .ok_or_else(|| ReadError(format!("union index {index} out of range")))
    }

    fn integer(self) -> Result<i64, ReadError> {
        match self.resolved()? {
            Schema::Int
            | Schema::Long
            | Schema::Date
            | Schema::TimeMillis
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => self.input.long(),
            other => Err(ReadError(format!(
                "an integer was expected, the schema has {other:?}"
            ))),
        }
    }
}

macro_rules! integer_method {
    ($method:ident, $visit:ident, $type:ty) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
            let value = self.integer()?;
            let narrowed = <$type>::try_from(value)
                .map_err(|_| ReadError(format!("{value} does not fit {}", stringify!($type))))?;
            visitor.$visit(narrowed)
        }
    };
}

impl<'de> de::Deserializer<'de> for AvroReader<'_, 'de, '_> {
    type Error = ReadError;

    fn is_human_readable(&self) -> bool {
        false
    }

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        match self.resolved()? {
            Schema::Null => visitor.visit_unit(),
            Schema::Boolean => self.deserialize_bool(visitor),
            Schema::Int | Schema::Date | Schema::TimeMillis => self.deserialize_i32(visitor),
            Schema::Long
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => self.deserialize_i64(visitor),
            Schema::Float => self.deserialize_f32(visitor),
            Schema::Double => self.deserialize_f64(visitor),
            Schema::String => self.deserialize_str(visitor),
            Schema::Bytes | Schema::Decimal(_) | Schema::BigDecimal => {
                self.deserialize_bytes(visitor)
            }
            Schema::Union(_) => self.deserialize_option(visitor),
            Schema::Array(_) => self.deserialize_seq(visitor),
            Schema::Record(record) => visitor.visit_map(RecordAccess {
                input: self.input,
                fields: &record.fields,
                names: self.names,
                next: 0,
            }),
            Schema::Enum(enumeration) => {
                let index = usize::try_from(self.input.long()?)
                    .map_err(|_| ReadError("a negative enum index".to_owned()))?;
                let symbol = enumeration
                    .symbols
                    .get(index)
                    .ok_or_else(|| ReadError(format!("enum index {index} out of range")))?;
                visitor.visit_str(symbol)
            }
            other => Err(ReadError(format!(
                "schema {other:?} is not used by Polytape's records"
            ))),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        match self.resolved()? {
            Schema::Boolean => match self.input.byte()? {
                0 => visitor.visit_bool(false),
                1 => visitor.visit_bool(true),
                other => Err(ReadError(format!("{other} is not a boolean"))),
            },
            other => Err(ReadError(format!(
                "a boolean was expected, the schema has {other:?}"
            ))),
        }
    }

    integer_method!(deserialize_i8, visit_i8, i8);
    integer_method!(deserialize_i16, visit_i16, i16);
    integer_method!(deserialize_i32, visit_i32, i32);
    integer_method!(deserialize_i64, visit_i64, i64);
    integer_method!(deserialize_u8, visit_u8, u8);
    integer_method!(deserialize_u16, visit_u16, u16);
    integer_method!(deserialize_u32, visit_u32, u32);
    integer_method!(deserialize_u64, visit_u64, u64);

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        match self.resolved()? {
            Schema::Float => {
                let bytes = self.input.bytes.get(..4).ok_or_else(truncated)?;
                let value = f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
                self.input.bytes = &self.input.bytes[4..];
                visitor.visit_f32(value)
            }
            other => Err(ReadError(format!(
                "a float was expected, the schema has {other:?}"
            ))),
        }
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        match self.resolved()? {
            Schema::Double => {
                let bytes: [u8; 8] = self
                    .input
                    .bytes
                    .get(..8)
                    .ok_or_else(truncated)?
                    .try_into()
                    .map_err(|_| truncated())?;
                self.input.bytes = &self.input.bytes[8..];
                visitor.visit_f64(f64::from_le_bytes(bytes))
            }
            other => Err(ReadError(format!(
                "a double was expected, the schema has {other:?}"
            ))),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        match self.resolved()? {
            Schema::String => visitor.visit_borrowed_str(self.input.str()?),
            Schema::Enum(_) => self.deserialize_any(visitor),
            other => Err(ReadError(format!(
                "a string was expected, the schema has {other:?}"
            ))),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        match self.resolved()? {
            Schema::Bytes | Schema::BigDecimal => visitor.visit_borrowed_bytes(self.input.slice()?),
            Schema::Decimal(decimal) => match &decimal.inner {
                InnerDecimalSchema::Bytes => visitor.visit_borrowed_bytes(self.input.slice()?),
                InnerDecimalSchema::Fixed(_) => Err(ReadError(
                    "fixed-size decimals are not used by Polytape's schemas".into(),
                )),
            },
            other => Err(ReadError(format!(
                "bytes were expected, the schema has {other:?}"
            ))),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, ReadError> {
        match self.resolved()? {
            Schema::Union(union) => {
                let branch = self.union_branch(union)?;
                if matches!(branch, Schema::Null) {
                    return visitor.visit_none();
                }
                visitor.visit_some(self.with_schema(branch))
            }
            // A writer without the union (a required field) still fills an Option.
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        match self.resolved()? {
            Schema::Null => visitor.visit_unit(),
            other => Err(ReadError(format!(
                "null was expected, the schema has {other:?}"
            ))),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ReadError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ReadError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        match self.resolved()? {
            Schema::Array(array) => visitor.visit_seq(ArrayAccess {
                input: self.input,
                items: &array.items,
                names: self.names,
                remaining_in_block: 0,
                finished: false,
            }),
            other => Err(ReadError(format!(
                "an array was expected, the schema has {other:?}"
            ))),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _length: usize,
        visitor: V,
    ) -> Result<V::Value, ReadError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _length: usize,
        visitor: V,
    ) -> Result<V::Value, ReadError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, ReadError> {
        Err(ReadError(
            "maps are not used by Polytape's schemas".to_owned(),
        ))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ReadError> {
        match self.resolved()? {
            Schema::Record(record) => visitor.visit_map(RecordAccess {
                input: self.input,
                fields: &record.fields,
                names: self.names,
                next: 0,
            }),
            other => Err(ReadError(format!(
                "struct {name} needs a record, the schema has {other:?}"
            ))),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ReadError> {
        match self.resolved()? {
            Schema::Enum(enumeration) => {
                let index = usize::try_from(self.input.long()?)
                    .map_err(|_| ReadError("a negative enum index".to_owned()))?;
                let symbol = enumeration.symbols.get(index).ok_or_else(|| {
                    ReadError(format!("enum index {index} out of range for {name}"))
                })?;
                visitor.visit_enum(symbol.as_str().into_deserializer())
            }
            other => Err(ReadError(format!(
                "enum {name} needs an Avro enum, the schema has {other:?}"
            ))),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        self.skip()?;
        visitor.visit_unit()
    }
}

/// A record's fields, in the writer's order, as a map keyed by field name.
struct RecordAccess<'a, 'de, 's> {
    input: &'a mut Input<'de>,
    fields: &'s [RecordField],
    names: &'s NamesRef<'s>,
    next: usize,
}

impl<'de> de::MapAccess<'de> for RecordAccess<'_, 'de, '_> {
    type Error = ReadError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ReadError> {
        let Some(field) = self.fields.get(self.next) else {
            return Ok(None);
        };
        seed.deserialize(field.name.as_str().into_deserializer())
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, ReadError> {
        let field = self
            .fields
            .get(self.next)
            .ok_or_else(|| ReadError("a value without a field".to_owned()))?;
        self.next += 1;
        seed.deserialize(AvroReader {
            input: self.input,
            schema: &field.schema,
            names: self.names,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.fields.len() - self.next)
    }
}

/// An array's items across its blocks.
struct ArrayAccess<'a, 'de, 's> {
    input: &'a mut Input<'de>,
    items: &'s Schema,
    names: &'s NamesRef<'s>,
    remaining_in_block: usize,
    finished: bool,
}

impl<'de> de::SeqAccess<'de> for ArrayAccess<'_, 'de, '_> {
    type Error = ReadError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, ReadError> {
        if self.finished {
            return Ok(None);
        }
        if self.remaining_in_block == 0 {
            self.remaining_in_block = self.input.block_count()?;
            if self.remaining_in_block == 0 {
                self.finished = true;
                return Ok(None);
            }
        }
        self.remaining_in_block -= 1;
        seed.deserialize(AvroReader {
            input: self.input,
            schema: self.items,
            names: self.names,
        })
        .map(Some)
    }
}
