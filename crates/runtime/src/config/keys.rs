//! What a configuration key is. Each key is declared once, next to the struct that reads it:
//! the shared sections in `shared.rs`, each service's own keys in its `config.rs`. A service's
//! [`crate::ServiceConfig::KEYS`] lists the sections it reads; its README's configuration
//! table is generated from them ([`markdown_table`]) and a test fails when the two drift.

/// A Polytape service binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Collector,
    WsBridge,
    CandleBuilder,
    SinkClickhouse,
    Api,
    Signals,
}

impl Service {
    pub fn binary_name(self) -> &'static str {
        match self {
            Service::Collector => "polytape-collector",
            Service::WsBridge => "polytape-ws-bridge",
            Service::CandleBuilder => "polytape-candle-builder",
            Service::SinkClickhouse => "polytape-sink-clickhouse",
            Service::Api => "polytape-api",
            Service::Signals => "polytape-signals",
        }
    }

    /// The short name used in logs, metrics and dead letters.
    pub fn short_name(self) -> &'static str {
        match self {
            Service::Collector => "collector",
            Service::WsBridge => "ws-bridge",
            Service::CandleBuilder => "candle-builder",
            Service::SinkClickhouse => "sink-clickhouse",
            Service::Api => "api",
            Service::Signals => "signals",
        }
    }
}

/// What values a key accepts; the loader checks every effective value against it, so each
/// problem names its key.
#[derive(Debug, Clone, Copy)]
pub enum KeyKind {
    Text,
    /// An absolute URL with one of these schemes; the example goes in the error message.
    Url {
        schemes: &'static [&'static str],
        example: &'static str,
    },
    /// `ip:port`.
    SocketAddr,
    /// Comma-separated `host:port` pairs.
    HostPorts,
    /// A humantime duration such as `30s` or `5m`.
    Duration,
    /// A whole number in `min..=max`.
    Count {
        min: u64,
        max: u64,
    },
    /// One of these words.
    Choice(&'static [&'static str]),
    /// A number in (0, 1].
    Fraction,
    /// A tracing filter directive.
    LogFilter,
    /// Letters, digits and these extra characters (may be empty when `allow_empty`).
    Name {
        extra: &'static str,
        allow_empty: bool,
    },
}

/// One configuration key: its name, what it accepts, its default and what it does.
#[derive(Debug, Clone, Copy)]
pub struct KeySpec {
    /// Name in a TOML file; the environment variable is `POLYTAPE_` + the upper-cased name.
    pub name: &'static str,
    pub kind: KeyKind,
    /// The default as it would be written in a file or variable; `None` for an optional key.
    pub default: Option<&'static str>,
    pub doc: &'static str,
    /// Secrets are never printed back in error messages.
    pub secret: bool,
}

impl KeySpec {
    /// A key with a default.
    pub const fn new(
        name: &'static str,
        kind: KeyKind,
        default: &'static str,
        doc: &'static str,
    ) -> Self {
        Self {
            name,
            kind,
            default: Some(default),
            doc,
            secret: false,
        }
    }

    /// An optional key without a default.
    pub const fn optional(name: &'static str, kind: KeyKind, doc: &'static str) -> Self {
        Self {
            name,
            kind,
            default: None,
            doc,
            secret: false,
        }
    }

    /// An optional secret: never echoed in an error message.
    pub const fn secret(name: &'static str, doc: &'static str) -> Self {
        Self {
            name,
            kind: KeyKind::Text,
            default: None,
            doc,
            secret: true,
        }
    }

    pub fn env_var(&self) -> String {
        format!("POLYTAPE_{}", self.name.to_ascii_uppercase())
    }
}

const HTTP: &[&str] = &["http", "https"];

/// An http(s) URL, with an example for the error message.
pub const fn http_url(example: &'static str) -> KeyKind {
    KeyKind::Url {
        schemes: HTTP,
        example,
    }
}

/// `POLYTAPE_…` variables that are not configuration keys but are read elsewhere (tests, the
/// dev tool); they are never reported as misspelt keys.
pub const OTHER_ENV_VARS: &[&str] = &[
    "POLYTAPE_BLESS",
    "POLYTAPE_CI_TARGET_DIR",
    "POLYTAPE_FAULT_PANIC_TASK",
    "POLYTAPE_TEST_STACK",
    "POLYTAPE_TOOLS_DIR",
];

/// The configuration table of `sections` in Markdown: key, environment variable, default and
/// meaning, one row per key. READMEs carry it between generated-block markers.
pub fn markdown_table(sections: &[&[KeySpec]]) -> String {
    let mut table =
        String::from("| key | environment variable | default | meaning |\n|---|---|---|---|\n");
    for spec in sections.iter().flat_map(|section| section.iter()) {
        let default = match spec.default {
            Some("") => "(empty)".to_owned(),
            Some(default) => format!("`{default}`"),
            None => "(none)".to_owned(),
        };
        table.push_str(&format!(
            "| `{}` | `{}` | {default} | {} |\n",
            spec.name,
            spec.env_var(),
            spec.doc.replace('|', "\\|")
        ));
    }
    table
}
