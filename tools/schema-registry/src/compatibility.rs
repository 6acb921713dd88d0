//! Compatibility levels and the checks behind them, with Confluent's meaning: BACKWARD means
//! consumers on the new schema can read data written with the earlier one, FORWARD that
//! consumers still on the earlier schema can read data written with the new one, FULL both;
//! the transitive variants check every live version instead of only the latest.

use std::{fmt, str::FromStr};

use apache_avro::{
    Schema,
    schema_compatibility::{Compatibility, SchemaCompatibility},
};
use serde::{Deserialize, Serialize};

/// A subject's (or the registry-wide) compatibility rule for new versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CompatibilityLevel {
    None,
    /// Confluent's default, and ours.
    #[default]
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
}

/// The text given was not one of the seven level names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown compatibility level {given:?}")]
pub struct UnknownCompatibilityLevel {
    pub given: String,
}

impl CompatibilityLevel {
    pub const ALL: [CompatibilityLevel; 7] = [
        CompatibilityLevel::None,
        CompatibilityLevel::Backward,
        CompatibilityLevel::BackwardTransitive,
        CompatibilityLevel::Forward,
        CompatibilityLevel::ForwardTransitive,
        CompatibilityLevel::Full,
        CompatibilityLevel::FullTransitive,
    ];

    /// The name on the wire, e.g. `BACKWARD_TRANSITIVE`.
    pub fn as_str(self) -> &'static str {
        match self {
            CompatibilityLevel::None => "NONE",
            CompatibilityLevel::Backward => "BACKWARD",
            CompatibilityLevel::BackwardTransitive => "BACKWARD_TRANSITIVE",
            CompatibilityLevel::Forward => "FORWARD",
            CompatibilityLevel::ForwardTransitive => "FORWARD_TRANSITIVE",
            CompatibilityLevel::Full => "FULL",
            CompatibilityLevel::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    /// Whether every live version is checked rather than only the latest.
    pub fn is_transitive(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::BackwardTransitive
                | CompatibilityLevel::ForwardTransitive
                | CompatibilityLevel::FullTransitive
        )
    }

    fn new_schema_must_read_earlier_data(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::Backward
                | CompatibilityLevel::BackwardTransitive
                | CompatibilityLevel::Full
                | CompatibilityLevel::FullTransitive
        )
    }

    fn earlier_schema_must_read_new_data(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::Forward
                | CompatibilityLevel::ForwardTransitive
                | CompatibilityLevel::Full
                | CompatibilityLevel::FullTransitive
        )
    }
}

impl fmt::Display for CompatibilityLevel {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl FromStr for CompatibilityLevel {
    type Err = UnknownCompatibilityLevel;

    /// Case-insensitive, as Confluent's registry accepts `backward` as well as `BACKWARD`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let wanted = text.trim();
        CompatibilityLevel::ALL
            .into_iter()
            .find(|level| level.as_str().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| UnknownCompatibilityLevel {
                given: text.to_owned(),
            })
    }
}

/// One registered version the candidate schema is checked against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EarlierVersion<'a> {
    pub(crate) version: u32,
    pub(crate) schema_id: u32,
    pub(crate) schema: &'a Schema,
}

/// Why `candidate` may not follow `earlier_versions` under `level`: one message per failed
/// direction per version, empty when compatible. The caller chooses the versions (only the
/// latest for non-transitive levels).
pub(crate) fn incompatibilities(
    level: CompatibilityLevel,
    candidate: &Schema,
    earlier_versions: &[EarlierVersion<'_>],
) -> Vec<String> {
    let mut messages = Vec::new();
    for earlier in earlier_versions {
        if level.new_schema_must_read_earlier_data()
            && let Some(reason) = why_reader_cannot_read_writer(earlier.schema, candidate)
        {
            messages.push(format!(
                "the new schema cannot read data written with version {} (schema id {}): {reason}",
                earlier.version, earlier.schema_id
            ));
        }
        if level.earlier_schema_must_read_new_data()
            && let Some(reason) = why_reader_cannot_read_writer(candidate, earlier.schema)
        {
            messages.push(format!(
                "version {} (schema id {}) cannot read data written with the new schema: {reason}",
                earlier.version, earlier.schema_id
            ));
        }
    }
    messages
}

fn why_reader_cannot_read_writer(writer_schema: &Schema, reader_schema: &Schema) -> Option<String> {
    match SchemaCompatibility::can_read(writer_schema, reader_schema) {
        Ok(Compatibility::Full) => None,
        // apache-avro calls it "partial" when only some enum symbols or union branches resolve;
        // Avro's Java checker, which Confluent uses, rejects those, and a consumer would fail on
        // the first record using a missing symbol or branch.
        Ok(Compatibility::Partial) => Some(
            "some enum symbols or union branches of the writer schema are missing from the reader schema"
                .to_owned(),
        ),
        Err(error) => Some(describe_with_causes(&error)),
    }
}

/// An error's message followed by its causes, so nested field mismatches name the inner type.
pub(crate) fn describe_with_causes(error: &dyn std::error::Error) -> String {
    let mut description = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        description.push_str(": ");
        description.push_str(&inner.to_string());
        cause = inner.source();
    }
    description
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(fields: &str) -> Schema {
        Schema::parse_str(&format!(
            r#"{{"type":"record","name":"Order","fields":[{fields}]}}"#
        ))
        .unwrap()
    }

    fn against<'a>(schema: &'a Schema) -> [EarlierVersion<'a>; 1] {
        [EarlierVersion {
            version: 1,
            schema_id: 7,
            schema,
        }]
    }

    #[test]
    fn levels_parse_case_insensitively_and_print_upper_case() {
        assert_eq!(
            "backward_transitive".parse::<CompatibilityLevel>(),
            Ok(CompatibilityLevel::BackwardTransitive)
        );
        assert_eq!(
            "FULL".parse::<CompatibilityLevel>(),
            Ok(CompatibilityLevel::Full)
        );
        assert_eq!(
            CompatibilityLevel::ForwardTransitive.to_string(),
            "FORWARD_TRANSITIVE"
        );
        assert_eq!(
            "SIDEWAYS".parse::<CompatibilityLevel>(),
            Err(UnknownCompatibilityLevel {
                given: "SIDEWAYS".to_owned()
            })
        );
        for level in CompatibilityLevel::ALL {
            let json = serde_json::to_string(&level).unwrap();
            assert_eq!(json, format!("\"{}\"", level.as_str()));
        }
    }

    #[test]
    fn a_new_required_field_breaks_backward_but_not_forward() {
        let old = record(r#"{"name":"id","type":"long"}"#);
        let new = record(r#"{"name":"id","type":"long"},{"name":"qty","type":"int"}"#);
        let backward = incompatibilities(CompatibilityLevel::Backward, &new, &against(&old));
        assert_eq!(backward.len(), 1, "{backward:?}");
        assert!(
            backward[0].contains("version 1 (schema id 7)"),
            "{backward:?}"
        );
        assert!(backward[0].contains("qty"), "{backward:?}");
        assert!(incompatibilities(CompatibilityLevel::Forward, &new, &against(&old)).is_empty());
        assert_eq!(
            incompatibilities(CompatibilityLevel::Full, &new, &against(&old)).len(),
            1
        );
        assert!(incompatibilities(CompatibilityLevel::None, &new, &against(&old)).is_empty());
    }

    #[test]
    fn a_removed_field_without_default_breaks_forward() {
        let old = record(r#"{"name":"id","type":"long"},{"name":"qty","type":"int"}"#);
        let new = record(r#"{"name":"id","type":"long"}"#);
        assert!(incompatibilities(CompatibilityLevel::Backward, &new, &against(&old)).is_empty());
        let forward = incompatibilities(CompatibilityLevel::Forward, &new, &against(&old));
        assert_eq!(forward.len(), 1, "{forward:?}");
        assert!(
            forward[0].starts_with("version 1 (schema id 7) cannot read"),
            "{forward:?}"
        );
    }

    #[test]
    fn a_removed_enum_symbol_is_incompatible_for_the_reader_that_lacks_it() {
        let old =
            Schema::parse_str(r#"{"type":"enum","name":"Side","symbols":["BUY","SELL"]}"#).unwrap();
        let new = Schema::parse_str(r#"{"type":"enum","name":"Side","symbols":["BUY"]}"#).unwrap();
        let backward = incompatibilities(CompatibilityLevel::Backward, &new, &against(&old));
        assert_eq!(backward.len(), 1, "{backward:?}");
        assert!(backward[0].contains("enum symbols"), "{backward:?}");
        assert!(incompatibilities(CompatibilityLevel::Forward, &new, &against(&old)).is_empty());
    }
}
