//! A client for the Confluent Schema Registry REST API (Redpanda's built-in registry in
//! production, our stand-in locally): register a subject's schema, fetch a schema by id.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::CodecError;

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// Talks to one Schema Registry.
#[derive(Debug, Clone)]
pub struct SchemaRegistryClient {
    base_url: String,
    http: reqwest::Client,
}

#[derive(Serialize)]
struct RegisterRequest<'a> {
    schema: &'a str,
}

#[derive(Deserialize)]
struct RegisterResponse {
    id: u32,
}

#[derive(Deserialize)]
struct SchemaResponse {
    schema: String,
}

#[derive(Deserialize)]
struct ErrorResponse {
    message: Option<String>,
}

impl SchemaRegistryClient {
    /// A client for the registry at `base_url` (a path prefix is kept).
    pub fn new(base_url: &str) -> Result<Self, CodecError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(3))
            .build()
            .map_err(|source| CodecError::RegistryUnreachable {
                url: base_url.to_owned(),
                source,
            })?;
        Ok(Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            http,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Registers `schema_text` under `subject` and returns its global id. Registering the same
    /// schema again returns the same id, so producers call this at every start-up.
    pub async fn register(&self, subject: &str, schema_text: &str) -> Result<u32, CodecError> {
        let url = format!(
            "{}/subjects/{}/versions",
            self.base_url,
            encode_path(subject)
        );
        let request = self
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .header(reqwest::header::ACCEPT, CONTENT_TYPE)
            .json(&RegisterRequest {
                schema: schema_text,
            });
        let response: RegisterResponse = self
            .send(request, &format!("register subject {subject}"))
            .await?;
        Ok(response.id)
    }

    /// Checks that the registry answers (lists its subjects).
    pub async fn check_reachable(&self) -> Result<(), CodecError> {
        let url = format!("{}/subjects", self.base_url);
        let request = self
            .http
            .get(&url)
            .header(reqwest::header::ACCEPT, CONTENT_TYPE);
        let _subjects: Vec<String> = self.send(request, "list subjects").await?;
        Ok(())
    }

    /// The schema text registered under `schema_id`.
    pub async fn schema_by_id(&self, schema_id: u32) -> Result<String, CodecError> {
        let url = format!("{}/schemas/ids/{schema_id}", self.base_url);
        let request = self
            .http
            .get(&url)
            .header(reqwest::header::ACCEPT, CONTENT_TYPE);
        let response: SchemaResponse = self
            .send(request, &format!("fetch schema id {schema_id}"))
            .await?;
        Ok(response.schema)
    }

    async fn send<T: for<'de> Deserialize<'de>>(
        &self,
        request: reqwest::RequestBuilder,
        operation: &str,
    ) -> Result<T, CodecError> {
        let unreachable = |source| CodecError::RegistryUnreachable {
            url: self.base_url.clone(),
            source,
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        if status.is_success() {
            return response.json::<T>().await.map_err(unreachable);
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|text| text.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<ErrorResponse>(&body)
            .ok()
            .and_then(|error| error.message)
            .unwrap_or(body);
        Err(CodecError::RegistryRejected {
            operation: operation.to_owned(),
            status: status.as_u16(),
            message,
            retry_after,
        })
    }
}

/// Subjects are topic names plus `-value`: dots and dashes are path-safe; anything else
/// is percent-encoded.
fn encode_path(segment: &str) -> String {
    let mut encoded = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}
