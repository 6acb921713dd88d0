//! Alert destinations: declared in a TOML file named by `alert_destinations_file`, because
//! they hold secrets (mount the file from a Kubernetes secret or a file only the service may
//! read). Rules name destination ids only, so neither topics nor tables ever carry a URL's
//! token or an HMAC key.
//!
//! ```toml
//! [[destination]]
//! id = "ops"                      # what rules name: 1 to 64 of a-z 0-9 - _
//! url = "https://hooks.example.com/polytape"
//! format = "json"                 # json (default) | slack | discord
//! secret = "at least 16 characters"
//! ```

use std::{collections::BTreeMap, path::Path};

use serde::Deserialize;

use crate::webhook::{BodyFormat, Destination};

/// The least length of a destination's HMAC secret.
pub const MIN_SECRET_LEN: usize = 16;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DestinationsFile {
    #[serde(default)]
    destination: Vec<DestinationEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DestinationEntry {
    id: String,
    url: String,
    #[serde(default)]
    format: Option<String>,
    secret: String,
}

/// Destinations by id.
#[derive(Debug, Clone, Default)]
pub struct Destinations(BTreeMap<String, Destination>);

impl Destinations {
    pub fn get(&self, id: &str) -> Option<&Destination> {
        self.0.get(id)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn from_list(destinations: impl IntoIterator<Item = Destination>) -> Self {
        Self(
            destinations
                .into_iter()
                .map(|destination| (destination.destination_id.clone(), destination))
                .collect(),
        )
    }

    /// Reads the file; every problem is reported at once (never a secret's value).
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
        Self::parse(&text).map_err(|problems| format!("{}: {problems}", path.display()))
    }

    /// Parses the file's text.
    pub fn parse(text: &str) -> Result<Self, String> {
        // The error's own text quotes the offending line, which may hold a secret: its message
        // and position only.
        let file: DestinationsFile = toml::from_str(text).map_err(|error| {
            let line = error
                .span()
                .map(|span| text[..span.start.min(text.len())].lines().count().max(1));
            match line {
                Some(line) => format!("line {line}: {}", error.message()),
                None => error.message().to_owned(),
            }
        })?;
        let mut problems = Vec::new();
        let mut destinations = BTreeMap::new();
        for entry in file.destination {
            let id = entry.id.clone();
            if !polytape_model::alerts::is_valid_id(&id) {
                problems.push(format!(
                    "destination {id:?}: not an id (1 to 64 of a-z 0-9 - _)"
                ));
            }
            match reqwest::Url::parse(&entry.url) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => {}
                _ => problems.push(format!("destination {id:?}: url must be an http(s) URL")),
            }
            let format = match entry.format.as_deref().unwrap_or("json") {
                "json" => BodyFormat::Json,
                "slack" => BodyFormat::Slack,
                "discord" => BodyFormat::Discord,
                other => {
                    problems.push(format!(
                        "destination {id:?}: format {other:?} is not json, slack or discord"
                    ));
                    BodyFormat::Json
                }
            };
            if entry.secret.len() < MIN_SECRET_LEN {
                problems.push(format!(
                    "destination {id:?}: secret must have at least {MIN_SECRET_LEN} characters"
                ));
            }
            let destination = Destination {
                destination_id: id.clone(),
                url: entry.url,
                secret: entry.secret,
                format,
            };
            if destinations.insert(id.clone(), destination).is_some() {
                problems.push(format!("destination {id:?}: declared twice"));
            }
        }
        if problems.is_empty() {
            Ok(Self(destinations))
        } else {
            Err(problems.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_file_parses_and_every_problem_is_reported_without_secrets() {
        let parsed = Destinations::parse(
            r#"
[[destination]]
id = "ops"
url = "https://hooks.example.com/a"
secret = "0123456789abcdef"

[[destination]]
id = "chat"
url = "http://127.0.0.1:9/b"
format = "slack"
secret = "0123456789abcdef"
"#,
        );
        let destinations = parsed.unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(destinations.len(), 2);
        assert_eq!(
            destinations
                .get("chat")
                .map(|destination| destination.format),
            Some(BodyFormat::Slack)
        );
        let problems = Destinations::parse(
            r#"
[[destination]]
id = "Ops"
url = "ftp://x"
format = "xml"
secret = "short-secret"
"#,
        )
        .err()
        .unwrap_or_default();
        assert_eq!(
            problems.matches("destination \"Ops\"").count(),
            4,
            "{problems}"
        );
        assert!(!problems.contains("short-secret"), "{problems}");
        let broken = Destinations::parse(
            "[[destination]]\nid = \"ops\"\nsecert = \"hunter2-hunter2-hunter2\n",
        )
        .err()
        .unwrap_or_default();
        assert!(broken.starts_with("line "), "{broken}");
        assert!(
            !broken.contains("hunter2"),
            "a parse error must not echo the line: {broken}"
        );
    }
}
