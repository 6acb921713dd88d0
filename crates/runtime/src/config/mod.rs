//! Configuration: each key's declared default, then a TOML file (`--config`), then
//! `POLYTAPE_<KEY>` environment variables. A service reads only the keys it declares
//! ([`ServiceConfig::KEYS`]); any other key in a file is an error; all problems are reported at
//! once, each naming the key, where its value came from, and what to do.

mod check;
mod keys;
mod shared;

use std::{
    collections::HashMap,
    fmt,
    path::{Path, PathBuf},
};

use figment::{
    Figment,
    providers::{Format, Serialized, Toml},
    value::{Dict, Value},
};
pub use keys::{KeyKind, KeySpec, OTHER_ENV_VARS, Service, http_url, markdown_table};
use serde::de::DeserializeOwned;
pub use shared::{
    CLOB_URL, ClickHouseConfig, CommonConfig, KafkaConfig, LogFormat, UpstreamConfig,
};

/// A service's configuration type: deserialized from the merged sources, then checked.
pub trait ServiceConfig: DeserializeOwned {
    const SERVICE: Service;

    /// Every key the service reads, by section: the shared sections it flattens, then its own.
    const KEYS: &'static [&'static [KeySpec]];

    /// The keys every service has (logging, shutdown timeout).
    fn common(&self) -> &CommonConfig;

    /// Adds problems that involve several keys to `report`. Every key's value was already
    /// checked against its kind (URL, address, duration, …).
    fn validate(&self, _report: &mut ValidationReport<'_>) {}
}

/// A loaded configuration and what was noticed while loading it.
#[derive(Debug)]
pub struct Loaded<T> {
    pub config: T,
    /// To be logged once telemetry is up (e.g. unknown `POLYTAPE_…` variables).
    pub warnings: Vec<String>,
}

/// Where a key's effective value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ValueSource {
    Env(String),
    File(PathBuf),
    Default,
}

/// One configuration problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{} {}", self.key, self.message)
    }
}

/// Why a configuration could not be loaded; `Display` prints one line per problem.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<ConfigProblem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, problem) in self.problems.iter().enumerate() {
            if index > 0 {
                writeln!(formatter)?;
            }
            write!(formatter, "invalid configuration: {problem}")?;
        }
        Ok(())
    }
}

/// Collects semantic problems, describing each value by its source.
#[derive(Debug)]
pub struct ValidationReport<'a> {
    keys: &'a [&'static [KeySpec]],
    sources: &'a HashMap<&'static str, ValueSource>,
    problems: Vec<ConfigProblem>,
}

impl ValidationReport<'_> {
    /// Records a problem with `key` whose effective value is `value`.
    pub fn problem(&mut self, key: &str, value: &str, message: impl fmt::Display) {
        let spec = find_key(self.keys, key);
        let shown = if spec.is_some_and(|spec| spec.secret) {
            "<secret>".to_owned()
        } else {
            value.to_owned()
        };
        let described = match self.sources.get(key) {
            Some(ValueSource::Env(var)) => format!("{var}='{shown}'"),
            Some(ValueSource::File(path)) => format!("`{key}` = '{shown}' in {}", path.display()),
            Some(ValueSource::Default) | None => format!("default `{key}` = '{shown}'"),
        };
        self.problems.push(ConfigProblem {
            key: described,
            message: message.to_string(),
        });
    }
}

/// Loads `T`'s configuration: defaults, then `file` if given, then the environment.
pub fn load<T: ServiceConfig>(file: Option<&Path>) -> Result<Loaded<T>, ConfigError> {
    load_from(file, std::env::vars())
}

/// [`load`] with the environment given explicitly (tests).
pub fn load_from<T: ServiceConfig>(
    file: Option<&Path>,
    environment: impl IntoIterator<Item = (String, String)>,
) -> Result<Loaded<T>, ConfigError> {
    let service = T::SERVICE;
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let mut sources: HashMap<&'static str, ValueSource> = keys_of(T::KEYS)
        .map(|spec| (spec.name, ValueSource::Default))
        .collect();

    let mut figment = Figment::new().merge(Serialized::defaults(declared_defaults(T::KEYS)));

    if let Some(path) = file {
        match read_file_keys(path) {
            Ok(file_keys) => {
                for name in file_keys {
                    match find_key(T::KEYS, &name) {
                        Some(spec) => {
                            sources.insert(spec.name, ValueSource::File(path.to_owned()));
                        }
                        None => problems.push(unknown_key_problem(T::KEYS, service, &name, path)),
                    }
                }
                figment = figment.merge(Toml::file(path));
            }
            Err(problem) => problems.push(problem),
        }
    }

    let mut own_env_values = Dict::new();
    for (variable, raw_value) in environment {
        let Some(name) = variable.strip_prefix("POLYTAPE_") else {
            continue;
        };
        let name = name.to_ascii_lowercase();
        if let Some(spec) = find_key(T::KEYS, &name) {
            sources.insert(spec.name, ValueSource::Env(variable.clone()));
            // Lenient like figment's Env provider: "500" is a number, "true" a bool.
            let value = raw_value
                .parse::<Value>()
                .unwrap_or_else(|_| Value::from(raw_value.clone()));
            own_env_values.insert(name, value);
            continue;
        }
        // One `.env` serves every service, so another service's variable is no news; one that
        // is a letter or two away from a key of this service is likely a typo of it.
        if OTHER_ENV_VARS.contains(&variable.as_str()) {
            continue;
        }
        if let Some(known) = suggestion(T::KEYS, &name, 2) {
            warnings.push(format!(
                "environment variable {variable} is not a setting of {} and is ignored; did you mean POLYTAPE_{}?",
                service.binary_name(),
                known.to_ascii_uppercase()
            ));
        }
    }
    figment = figment.merge(Serialized::defaults(own_env_values));

    if !problems.is_empty() {
        return Err(ConfigError { problems });
    }

    let mut report = ValidationReport {
        keys: T::KEYS,
        sources: &sources,
        problems: Vec::new(),
    };
    for spec in keys_of(T::KEYS) {
        let Ok(value) = figment.find_value(spec.name) else {
            continue;
        };
        let text = match &value {
            Value::String(_, text) => text.clone(),
            Value::Num(_, number) => number
                .to_u128()
                .map(|whole| whole.to_string())
                .or_else(|| number.to_i128().map(|whole| whole.to_string()))
                .or_else(|| number.to_f64().map(|float| float.to_string()))
                .unwrap_or_default(),
            Value::Bool(_, flag) => flag.to_string(),
            _ => {
                report.problem(spec.name, "<table or array>", "must be a single value");
                continue;
            }
        };
        if let Some(message) = check::check_value(spec.kind, &text) {
            report.problem(spec.name, &text, message);
        }
    }
    if !report.problems.is_empty() {
        return Err(ConfigError {
            problems: report.problems,
        });
    }

    let config: T = match figment.extract() {
        Ok(config) => config,
        Err(error) => return Err(extraction_error(error, &sources)),
    };

    let mut report = ValidationReport {
        keys: T::KEYS,
        sources: &sources,
        problems: Vec::new(),
    };
    // Cross-key rules of the service; each key's own kind was checked above.
    config.validate(&mut report);
    if !report.problems.is_empty() {
        return Err(ConfigError {
            problems: report.problems,
        });
    }
    Ok(Loaded { config, warnings })
}

/// A section (or a whole configuration) with every key at its declared default: what tests
/// and benchmarks start from.
pub fn defaults_of<T: DeserializeOwned>(sections: &[&[KeySpec]]) -> Result<T, ConfigError> {
    Figment::new()
        .merge(Serialized::defaults(declared_defaults(sections)))
        .extract()
        .map_err(|error| extraction_error(error, &HashMap::new()))
}

fn keys_of(sections: &[&'static [KeySpec]]) -> impl Iterator<Item = &'static KeySpec> {
    sections.iter().flat_map(|section| section.iter())
}

/// The declared defaults as values: numbers for counts and fractions, text otherwise.
fn declared_defaults(sections: &[&[KeySpec]]) -> Dict {
    sections
        .iter()
        .flat_map(|section| section.iter())
        .filter_map(|spec| {
            let default = spec.default?;
            let value = match spec.kind {
                KeyKind::Count { .. } => default
                    .parse::<u64>()
                    .map_or_else(|_| Value::from(default), Value::from),
                KeyKind::Fraction => default
                    .parse::<f64>()
                    .map_or_else(|_| Value::from(default), Value::from),
                _ => Value::from(default),
            };
            Some((spec.name.to_owned(), value))
        })
        .collect()
}

fn extraction_error(
    error: figment::Error,
    sources: &HashMap<&'static str, ValueSource>,
) -> ConfigError {
    let problems = error
        .into_iter()
        .map(|error| {
            let key = error.path.join(".");
            let described = match sources.get(key.as_str()) {
                Some(ValueSource::Env(var)) => var.clone(),
                Some(ValueSource::File(path)) => format!("`{key}` in {}", path.display()),
                _ => format!("`{key}`"),
            };
            ConfigProblem {
                key: described,
                message: format!("is invalid ({})", error.kind),
            }
        })
        .collect();
    ConfigError { problems }
}

fn find_key(sections: &[&'static [KeySpec]], name: &str) -> Option<&'static KeySpec> {
    keys_of(sections).find(|spec| spec.name == name)
}

fn read_file_keys(path: &Path) -> Result<Vec<String>, ConfigProblem> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigProblem {
        key: format!("--config {}", path.display()),
        message: format!("cannot be read ({error}); check the path"),
    })?;
    let table: toml::Table = toml::from_str(&text).map_err(|error| ConfigProblem {
        key: format!("--config {}", path.display()),
        message: format!("is not valid TOML ({})", error.message().trim()),
    })?;
    Ok(table.keys().cloned().collect())
}

fn unknown_key_problem(
    sections: &[&'static [KeySpec]],
    service: Service,
    name: &str,
    path: &Path,
) -> ConfigProblem {
    let hint = match suggestion(sections, name, 3) {
        Some(known) => format!("did you mean `{known}`?"),
        None => format!(
            "see the configuration table in the README of {} for its keys",
            service.binary_name()
        ),
    };
    ConfigProblem {
        key: format!("`{name}` in {}", path.display()),
        message: format!("is not a known key of {}; {hint}", service.binary_name()),
    }
}

/// The service's key closest to a misspelt one, if any is within `distance` edits.
fn suggestion(
    sections: &[&'static [KeySpec]],
    name: &str,
    distance: usize,
) -> Option<&'static str> {
    keys_of(sections)
        .map(|spec| (strsim::damerau_levenshtein(name, spec.name), spec.name))
        .filter(|(edits, _)| *edits <= distance)
        .min()
        .map(|(_, known)| known)
}

#[cfg(test)]
mod tests;
