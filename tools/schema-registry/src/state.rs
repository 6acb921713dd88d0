//! The registry's state and rules: schemas by global id, subjects and their versions,
//! compatibility configuration. No HTTP and no file access here, so the rules are testable on
//! their own; the data file holds [`StoredRegistry`] as JSON.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use apache_avro::Schema;
use serde::{Deserialize, Serialize};

use crate::{
    compatibility::{self, CompatibilityLevel, EarlierVersion, describe_with_causes},
    error::RegistryError,
};

/// Bumped when the data file's layout changes incompatibly.
pub(crate) const STORED_FORMAT_VERSION: u32 = 1;

/// Everything that is persisted, exactly as it is written to the data file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StoredRegistry {
    pub(crate) format_version: u32,
    /// The id the next new schema gets. Only ever grows, so deleted ids are never reused.
    pub(crate) next_schema_id: u32,
    /// Every schema ever registered, kept after its versions are deleted so that records
    /// already written with its id stay decodable.
    pub(crate) schemas: BTreeMap<u32, StoredSchema>,
    pub(crate) subjects: BTreeMap<String, StoredSubject>,
    /// `None` until set: the default (BACKWARD) applies.
    pub(crate) global_compatibility: Option<CompatibilityLevel>,
    pub(crate) subject_compatibility: BTreeMap<String, CompatibilityLevel>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StoredSchema {
    /// The text as first registered; clients get it back byte for byte.
    pub(crate) schema: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StoredSubject {
    /// Kept when versions (or all of them) are deleted, so a version number is never given to
    /// a different schema; clients cache schemas by subject and version.
    pub(crate) next_version: u32,
    /// Live versions → schema id.
    pub(crate) versions: BTreeMap<u32, u32>,
}

impl Default for StoredRegistry {
    fn default() -> Self {
        Self {
            format_version: STORED_FORMAT_VERSION,
            next_schema_id: 1,
            schemas: BTreeMap::new(),
            subjects: BTreeMap::new(),
            global_compatibility: None,
            subject_compatibility: BTreeMap::new(),
        }
    }
}

/// A schema from a request, parsed and ready to compare or register.
#[derive(Debug)]
pub(crate) struct CandidateSchema {
    text: String,
    schema: Schema,
    identity: String,
}

impl CandidateSchema {
    pub(crate) fn parse(text: String) -> Result<Self, RegistryError> {
        let schema = Schema::parse_str(&text).map_err(|error| RegistryError::InvalidSchema {
            reason: format!(
                "the schema is not valid Avro: {}",
                describe_with_causes(&error)
            ),
        })?;
        let identity =
            schema_identity(&schema).map_err(|reason| RegistryError::InvalidSchema { reason })?;
        Ok(Self {
            text,
            schema,
            identity,
        })
    }
}

/// What decides "the same schema": the parsed schema written back as JSON. Formatting, key
/// order and `{"type":"string"}` vs `"string"` do not matter, but defaults, docs and logical
/// types do. (Avro's Parsing Canonical Form drops those, which would hand out one id for, say,
/// a `long` and a `timestamp-millis`; Confluent also keeps them apart.)
fn schema_identity(schema: &Schema) -> Result<String, String> {
    serde_json::to_string(schema)
        .map_err(|error| format!("the schema cannot be written back as JSON: {error}"))
}

/// Which version a request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VersionSelector {
    Latest,
    Number(u32),
}

impl VersionSelector {
    /// `latest`, `-1` (Confluent's alias for latest) or 1..=2^31-1.
    pub(crate) fn parse(text: &str) -> Result<Self, RegistryError> {
        if text.eq_ignore_ascii_case("latest") || text == "-1" {
            return Ok(VersionSelector::Latest);
        }
        match text.parse::<u32>() {
            Ok(number) if number >= 1 && number <= i32::MAX as u32 => {
                Ok(VersionSelector::Number(number))
            }
            _ => Err(RegistryError::InvalidVersion {
                version: text.to_owned(),
            }),
        }
    }
}

/// A version of a subject with its schema.
#[derive(Debug, Clone)]
pub(crate) struct SubjectVersion {
    pub(crate) version: u32,
    pub(crate) schema_id: u32,
    pub(crate) schema_text: String,
}

/// The outcome of a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Registration {
    pub(crate) schema_id: u32,
    pub(crate) version: u32,
    /// False when the subject already had this schema: nothing changed.
    pub(crate) created_version: bool,
    /// True when the schema was new to the whole registry and got a new id.
    pub(crate) created_schema_id: bool,
}

/// The registry in memory: the stored state plus indexes rebuilt from it at load.
#[derive(Debug, Clone, Default)]
pub(crate) struct Registry {
    stored: StoredRegistry,
    parsed_schemas: HashMap<u32, Arc<Schema>>,
    schema_id_by_identity: HashMap<String, u32>,
}

impl Registry {
    /// Checks a loaded state and builds the indexes. The error says what is inconsistent.
    pub(crate) fn from_stored(stored: StoredRegistry) -> Result<Self, String> {
        if stored.format_version != STORED_FORMAT_VERSION {
            return Err(format!(
                "format_version is {} but this registry reads {STORED_FORMAT_VERSION}",
                stored.format_version
            ));
        }
        let mut parsed_schemas = HashMap::new();
        let mut schema_id_by_identity = HashMap::new();
        for (&schema_id, stored_schema) in &stored.schemas {
            if schema_id == 0 || schema_id >= stored.next_schema_id {
                return Err(format!(
                    "schema id {schema_id} is not below next_schema_id {}",
                    stored.next_schema_id
                ));
            }
            let schema = Schema::parse_str(&stored_schema.schema).map_err(|error| {
                format!(
                    "schema id {schema_id} is not valid Avro: {}",
                    describe_with_causes(&error)
                )
            })?;
            let identity = schema_identity(&schema)?;
            // Ascending ids: if two ids somehow hold the same schema, the first one is reused.
            schema_id_by_identity.entry(identity).or_insert(schema_id);
            parsed_schemas.insert(schema_id, Arc::new(schema));
        }
        for (subject, stored_subject) in &stored.subjects {
            for (&version, &schema_id) in &stored_subject.versions {
                if version == 0 || version >= stored_subject.next_version {
                    return Err(format!(
                        "subject {subject:?} has version {version}, not below its next_version {}",
                        stored_subject.next_version
                    ));
                }
                if !parsed_schemas.contains_key(&schema_id) {
                    return Err(format!(
                        "subject {subject:?} version {version} names schema id {schema_id}, which is not stored"
                    ));
                }
            }
        }
        Ok(Self {
            stored,
            parsed_schemas,
            schema_id_by_identity,
        })
    }

    pub(crate) fn stored(&self) -> &StoredRegistry {
        &self.stored
    }

    /// Subjects with at least one live version, sorted.
    pub(crate) fn subjects(&self) -> Vec<String> {
        self.stored
            .subjects
            .iter()
            .filter(|(_, subject)| !subject.versions.is_empty())
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// A subject whose versions were all deleted does not exist as far as clients can tell.
    fn live_subject(&self, subject: &str) -> Result<&StoredSubject, RegistryError> {
        self.stored
            .subjects
            .get(subject)
            .filter(|stored_subject| !stored_subject.versions.is_empty())
            .ok_or_else(|| RegistryError::SubjectNotFound {
                subject: subject.to_owned(),
            })
    }

    pub(crate) fn versions(&self, subject: &str) -> Result<Vec<u32>, RegistryError> {
        Ok(self
            .live_subject(subject)?
            .versions
            .keys()
            .copied()
            .collect())
    }

    pub(crate) fn subject_version(
        &self,
        subject: &str,
        selector: VersionSelector,
    ) -> Result<SubjectVersion, RegistryError> {
        let stored_subject = self.live_subject(subject)?;
        let found = match selector {
            VersionSelector::Latest => stored_subject.versions.last_key_value(),
            VersionSelector::Number(number) => stored_subject.versions.get_key_value(&number),
        };
        let (&version, &schema_id) = found.ok_or_else(|| RegistryError::VersionNotFound {
            version: match selector {
                VersionSelector::Latest => "latest".to_owned(),
                VersionSelector::Number(number) => number.to_string(),
            },
        })?;
        Ok(SubjectVersion {
            version,
            schema_id,
            schema_text: self.schema_text(schema_id)?.to_owned(),
        })
    }

    pub(crate) fn schema_text(&self, schema_id: u32) -> Result<&str, RegistryError> {
        self.stored
            .schemas
            .get(&schema_id)
            .map(|stored_schema| stored_schema.schema.as_str())
            .ok_or_else(|| RegistryError::SchemaIdNotFound {
                schema_id: schema_id.to_string(),
            })
    }

    /// The highest id handed out so far (Confluent's `maxId`), 0 when none.
    pub(crate) fn max_schema_id(&self) -> u32 {
        self.stored.next_schema_id.saturating_sub(1)
    }

    /// Live (subject, version) pairs that use `schema_id`.
    pub(crate) fn subject_versions_of_schema(
        &self,
        schema_id: u32,
    ) -> Result<Vec<(String, u32)>, RegistryError> {
        self.schema_text(schema_id)?;
        let mut uses = Vec::new();
        for (subject, stored_subject) in &self.stored.subjects {
            for (&version, &version_schema_id) in &stored_subject.versions {
                if version_schema_id == schema_id {
                    uses.push((subject.clone(), version));
                }
            }
        }
        Ok(uses)
    }

    /// The version of `subject` holding this schema, if any.
    pub(crate) fn lookup(
        &self,
        subject: &str,
        candidate: &CandidateSchema,
    ) -> Result<SubjectVersion, RegistryError> {
        let stored_subject = self.live_subject(subject)?;
        let (version, schema_id) = self
            .version_with_identity(stored_subject, &candidate.identity)
            .ok_or(RegistryError::SchemaNotUnderSubject)?;
        Ok(SubjectVersion {
            version,
            schema_id,
            schema_text: self.schema_text(schema_id)?.to_owned(),
        })
    }

    fn version_with_identity(
        &self,
        stored_subject: &StoredSubject,
        identity: &str,
    ) -> Option<(u32, u32)> {
        let schema_id = *self.schema_id_by_identity.get(identity)?;
        stored_subject
            .versions
            .iter()
            .find(|(_, version_schema_id)| **version_schema_id == schema_id)
            .map(|(&version, &schema_id)| (version, schema_id))
    }

    /// The subject's own level, if one is set.
    pub(crate) fn subject_compatibility(&self, subject: &str) -> Option<CompatibilityLevel> {
        self.stored.subject_compatibility.get(subject).copied()
    }

    pub(crate) fn global_compatibility(&self) -> CompatibilityLevel {
        self.stored.global_compatibility.unwrap_or_default()
    }

    pub(crate) fn effective_compatibility(&self, subject: &str) -> CompatibilityLevel {
        self.subject_compatibility(subject)
            .unwrap_or_else(|| self.global_compatibility())
    }

    pub(crate) fn set_global_compatibility(&mut self, level: CompatibilityLevel) {
        self.stored.global_compatibility = Some(level);
    }

    /// Back to the default; returns the level that applied before.
    pub(crate) fn reset_global_compatibility(&mut self) -> CompatibilityLevel {
        let previous = self.global_compatibility();
        self.stored.global_compatibility = None;
        previous
    }

    pub(crate) fn set_subject_compatibility(&mut self, subject: &str, level: CompatibilityLevel) {
        self.stored
            .subject_compatibility
            .insert(subject.to_owned(), level);
    }

    pub(crate) fn delete_subject_compatibility(
        &mut self,
        subject: &str,
    ) -> Result<CompatibilityLevel, RegistryError> {
        self.stored
            .subject_compatibility
            .remove(subject)
            .ok_or_else(|| RegistryError::SubjectCompatibilityNotConfigured {
                subject: subject.to_owned(),
            })
    }

    /// Registers `candidate` under `subject`, Confluent's way: a schema the subject already has
    /// returns its existing version without a check; otherwise the effective compatibility
    /// level decides, and the new version reuses the schema's global id if any subject has it.
    pub(crate) fn register(
        &mut self,
        subject: &str,
        candidate: CandidateSchema,
    ) -> Result<Registration, RegistryError> {
        if let Some(stored_subject) = self.stored.subjects.get(subject)
            && let Some((version, schema_id)) =
                self.version_with_identity(stored_subject, &candidate.identity)
        {
            return Ok(Registration {
                schema_id,
                version,
                created_version: false,
                created_schema_id: false,
            });
        }

        let level = self.effective_compatibility(subject);
        let problems = self.incompatibilities_with_history(subject, &candidate.schema, level);
        if !problems.is_empty() {
            return Err(RegistryError::IncompatibleSchema {
                subject: subject.to_owned(),
                level,
                details: problems,
            });
        }

        let existing_schema_id = self.schema_id_by_identity.get(&candidate.identity).copied();
        let schema_id = match existing_schema_id {
            Some(schema_id) => schema_id,
            None => {
                let schema_id = self.stored.next_schema_id;
                self.stored.next_schema_id += 1;
                self.stored.schemas.insert(
                    schema_id,
                    StoredSchema {
                        schema: candidate.text,
                    },
                );
                self.parsed_schemas
                    .insert(schema_id, Arc::new(candidate.schema));
                self.schema_id_by_identity
                    .insert(candidate.identity, schema_id);
                schema_id
            }
        };
        let stored_subject = self
            .stored
            .subjects
            .entry(subject.to_owned())
            .or_insert_with(|| StoredSubject {
                next_version: 1,
                versions: BTreeMap::new(),
            });
        let version = stored_subject.next_version;
        stored_subject.next_version += 1;
        stored_subject.versions.insert(version, schema_id);
        Ok(Registration {
            schema_id,
            version,
            created_version: true,
            created_schema_id: existing_schema_id.is_none(),
        })
    }

    /// What registering `candidate` under `subject` would violate now (empty: it would pass).
    pub(crate) fn incompatibilities_with_history(
        &self,
        subject: &str,
        candidate: &Schema,
        level: CompatibilityLevel,
    ) -> Vec<String> {
        let Some(stored_subject) = self.stored.subjects.get(subject) else {
            return Vec::new();
        };
        let mut earlier_versions = self.earlier_versions(stored_subject.versions.iter());
        if !level.is_transitive() {
            // Non-transitive levels only promise compatibility with the latest version.
            let latest = earlier_versions.pop();
            earlier_versions = latest.into_iter().collect();
        }
        compatibility::incompatibilities(level, candidate, &earlier_versions)
    }

    /// What `candidate` violates against one named version, in the direction(s) the subject's
    /// level asks for. A subject without versions accepts anything under `latest`.
    pub(crate) fn incompatibilities_with_version(
        &self,
        subject: &str,
        selector: VersionSelector,
        candidate: &CandidateSchema,
    ) -> Result<Vec<String>, RegistryError> {
        let has_live_versions = self
            .stored
            .subjects
            .get(subject)
            .is_some_and(|stored_subject| !stored_subject.versions.is_empty());
        if !has_live_versions && selector == VersionSelector::Latest {
            return Ok(Vec::new());
        }
        let subject_version = self.subject_version(subject, selector)?;
        let earlier_versions =
            self.earlier_versions([(&subject_version.version, &subject_version.schema_id)]);
        Ok(compatibility::incompatibilities(
            self.effective_compatibility(subject),
            &candidate.schema,
            &earlier_versions,
        ))
    }

    /// Same as [`Self::incompatibilities_with_history`] for a request's candidate.
    pub(crate) fn incompatibilities_for_registration(
        &self,
        subject: &str,
        candidate: &CandidateSchema,
    ) -> Vec<String> {
        let level = self.effective_compatibility(subject);
        self.incompatibilities_with_history(subject, &candidate.schema, level)
    }

    fn earlier_versions<'a>(
        &'a self,
        versions: impl IntoIterator<Item = (&'a u32, &'a u32)>,
    ) -> Vec<EarlierVersion<'a>> {
        versions
            .into_iter()
            .filter_map(|(&version, &schema_id)| {
                // Every version's schema is parsed at load or registration; `from_stored`
                // rejects files where one is missing.
                let schema = self.parsed_schemas.get(&schema_id)?;
                Some(EarlierVersion {
                    version,
                    schema_id,
                    schema,
                })
            })
            .collect()
    }

    /// Deletes every live version of `subject` and returns their numbers. The schemas keep
    /// their ids and stay readable by id.
    pub(crate) fn delete_subject(&mut self, subject: &str) -> Result<Vec<u32>, RegistryError> {
        self.live_subject(subject)?;
        let deleted = match self.stored.subjects.get_mut(subject) {
            Some(stored_subject) => std::mem::take(&mut stored_subject.versions),
            None => BTreeMap::new(),
        };
        Ok(deleted.into_keys().collect())
    }

    pub(crate) fn delete_version(
        &mut self,
        subject: &str,
        selector: VersionSelector,
    ) -> Result<u32, RegistryError> {
        let version = self.subject_version(subject, selector)?.version;
        if let Some(stored_subject) = self.stored.subjects.get_mut(subject) {
            stored_subject.versions.remove(&version);
        }
        Ok(version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER_V1: &str =
        r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"long"}]}"#;

    fn candidate(text: &str) -> CandidateSchema {
        CandidateSchema::parse(text.to_owned()).unwrap()
    }

    #[test]
    fn formatting_does_not_change_identity_but_a_default_or_logical_type_does() {
        let compact = candidate(ORDER_V1);
        let spaced = candidate(
            "{ \"name\": \"Order\", \"type\": \"record\",\n \"fields\": [ {\"type\": {\"type\": \"long\"}, \"name\": \"id\"} ] }",
        );
        assert_eq!(compact.identity, spaced.identity);
        let with_default = candidate(
            r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"long","default":0}]}"#,
        );
        assert_ne!(compact.identity, with_default.identity);
        let with_logical_type = candidate(
            r#"{"type":"record","name":"Order","fields":[{"name":"id","type":{"type":"long","logicalType":"timestamp-millis"}}]}"#,
        );
        assert_ne!(compact.identity, with_logical_type.identity);
    }

    #[test]
    fn version_selectors() {
        assert_eq!(
            VersionSelector::parse("latest").unwrap(),
            VersionSelector::Latest
        );
        assert_eq!(
            VersionSelector::parse("-1").unwrap(),
            VersionSelector::Latest
        );
        assert_eq!(
            VersionSelector::parse("3").unwrap(),
            VersionSelector::Number(3)
        );
        for invalid in ["0", "-2", "abc", "2147483648", ""] {
            assert!(
                matches!(
                    VersionSelector::parse(invalid),
                    Err(RegistryError::InvalidVersion { .. })
                ),
                "{invalid:?} should be refused"
            );
        }
    }

    #[test]
    fn deleted_versions_are_not_renumbered_and_ids_survive() {
        let mut registry = Registry::default();
        let first = registry
            .register("orders-value", candidate(ORDER_V1))
            .unwrap();
        assert_eq!((first.schema_id, first.version), (1, 1));
        assert_eq!(registry.delete_subject("orders-value").unwrap(), vec![1]);
        assert!(registry.subjects().is_empty());
        assert!(matches!(
            registry.versions("orders-value"),
            Err(RegistryError::SubjectNotFound { .. })
        ));
        let again = registry
            .register("orders-value", candidate(ORDER_V1))
            .unwrap();
        assert_eq!((again.schema_id, again.version), (1, 2));
        assert!(!again.created_schema_id);
        assert_eq!(registry.schema_text(1).unwrap(), ORDER_V1);
    }

    #[test]
    fn a_stored_state_round_trips_and_inconsistencies_are_named() {
        let mut registry = Registry::default();
        registry.register("a", candidate(ORDER_V1)).unwrap();
        let reloaded = Registry::from_stored(registry.stored().clone()).unwrap();
        assert_eq!(reloaded.stored(), registry.stored());
        assert_eq!(
            reloaded
                .lookup("a", &candidate(ORDER_V1))
                .unwrap()
                .schema_id,
            1
        );

        let mut dangling = registry.stored().clone();
        dangling.schemas.clear();
        let reason = Registry::from_stored(dangling).unwrap_err();
        assert!(reason.contains("schema id 1"), "{reason}");

        let mut reused = registry.stored().clone();
        reused.next_schema_id = 1;
        let reason = Registry::from_stored(reused).unwrap_err();
        assert!(reason.contains("next_schema_id"), "{reason}");
    }
}
