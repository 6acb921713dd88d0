//! The HTTP API: Confluent's paths, bodies and content type over [`crate::state::Registry`].

use std::collections::HashMap;

use axum::{
    Router,
    body::Bytes,
    extract::{FromRequestParts, Path, RawQuery, State},
    http::{StatusCode, header::CONTENT_TYPE, request::Parts},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::json;

use crate::{
    Change, SchemaRegistry,
    compatibility::CompatibilityLevel,
    error::RegistryError,
    state::{CandidateSchema, VersionSelector},
};

/// What Confluent's registry answers with; its clients also accept `application/json`.
pub(crate) const REGISTRY_CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

pub(crate) fn router(registry: SchemaRegistry) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/healthz", get(healthz))
        .route("/schemas/types", get(schema_types))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(raw_schema_by_id))
        .route(
            "/schemas/ids/{id}/versions",
            get(subject_versions_of_schema),
        )
        .route("/schemas/ids/{id}/subjects", get(subjects_of_schema))
        .route("/subjects", get(list_subjects))
        .route(
            "/subjects/{subject}",
            post(lookup_schema).delete(delete_subject),
        )
        .route(
            "/subjects/{subject}/versions",
            get(list_versions).post(register_schema),
        )
        .route(
            "/subjects/{subject}/versions/{version}",
            get(get_version).delete(delete_version),
        )
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(get_raw_version_schema),
        )
        .route(
            "/subjects/{subject}/versions/{version}/referencedby",
            get(referenced_by),
        )
        .route(
            "/compatibility/subjects/{subject}/versions",
            post(check_compatibility_for_registration),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(check_compatibility_with_version),
        )
        .route(
            "/config",
            get(get_global_config)
                .put(put_global_config)
                .delete(delete_global_config),
        )
        .route(
            "/config/{subject}",
            get(get_subject_config)
                .put(put_subject_config)
                .delete(delete_subject_config),
        )
        .fallback(|| async { RegistryError::RouteNotFound })
        .method_not_allowed_fallback(|| async { RegistryError::MethodNotAllowed })
        .with_state(registry)
}

type ApiResult = Result<Response, RegistryError>;

/// A JSON response with the registry's content type.
pub(crate) fn registry_json(status: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (status, [(CONTENT_TYPE, REGISTRY_CONTENT_TYPE)], bytes).into_response(),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the response: {error}\n"),
        )
            .into_response(),
    }
}

fn ok_json(body: &impl Serialize) -> ApiResult {
    Ok(registry_json(StatusCode::OK, body))
}

/// Path parameters whose decoding failures answer in the registry's error format instead of
/// axum's plain text.
struct PathParams<T>(T);

impl<S, T> FromRequestParts<S> for PathParams<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = RegistryError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(PathParams(value)),
            Err(rejection) => Err(RegistryError::BadRequest {
                reason: format!("Malformed URL path: {}", rejection.body_text()),
            }),
        }
    }
}

/// Query parameters, read leniently: clients add ones we do not use (`normalize`, `subject`,
/// `fetchMaxId`, `deleted`, …) and those must never fail a request.
struct QueryParams(HashMap<String, String>);

impl QueryParams {
    fn from_raw(raw: Option<String>) -> Self {
        let pairs = url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect();
        Self(pairs)
    }

    fn flag(&self, name: &str) -> bool {
        self.0
            .get(name)
            .is_some_and(|value| value.eq_ignore_ascii_case("true"))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, RegistryError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(RegistryError::BadRequest {
            reason: "The request body is empty; a JSON object was expected".to_owned(),
        });
    }
    serde_json::from_slice(body).map_err(|error| RegistryError::BadRequest {
        reason: format!("The request body is not valid JSON: {error}"),
    })
}

/// The body of register, lookup and compatibility requests. Other fields Confluent defines
/// (`metadata`, `ruleSet`, `id`, `version`) are ignored.
#[derive(Debug, Deserialize)]
struct SchemaRequest {
    schema: Option<serde_json::Value>,
    #[serde(rename = "schemaType")]
    schema_type: Option<String>,
    references: Option<serde_json::Value>,
}

fn candidate_from_body(body: &[u8]) -> Result<CandidateSchema, RegistryError> {
    let request: SchemaRequest = parse_body(body)?;
    if let Some(schema_type) = &request.schema_type
        && !schema_type.eq_ignore_ascii_case("AVRO")
    {
        return Err(RegistryError::InvalidSchema {
            reason: format!(
                "schemaType {schema_type:?} is not supported by this local stand-in registry, which handles AVRO only (Redpanda's registry in production supports more)"
            ),
        });
    }
    match &request.references {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::Array(references)) if references.is_empty() => {}
        Some(_) => {
            return Err(RegistryError::InvalidSchema {
                reason: "schema references are not supported by this local stand-in registry; inline the referenced types".to_owned(),
            });
        }
    }
    match request.schema {
        Some(serde_json::Value::String(text)) => CandidateSchema::parse(text),
        Some(_) => Err(RegistryError::InvalidSchema {
            reason: "the \"schema\" field must be a string holding the Avro schema's JSON text"
                .to_owned(),
        }),
        None => Err(RegistryError::InvalidSchema {
            reason: "the request body has no \"schema\" field".to_owned(),
        }),
    }
}

fn parse_schema_id(text: &str) -> Result<u32, RegistryError> {
    text.parse::<u32>()
        .ok()
        .filter(|schema_id| *schema_id >= 1)
        .ok_or_else(|| RegistryError::SchemaIdNotFound {
            schema_id: text.to_owned(),
        })
}

async fn root() -> ApiResult {
    ok_json(&json!({}))
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn schema_types() -> ApiResult {
    ok_json(&["AVRO"])
}

async fn schema_by_id(
    State(registry): State<SchemaRegistry>,
    PathParams(schema_id): PathParams<String>,
    RawQuery(query): RawQuery,
) -> ApiResult {
    let schema_id = parse_schema_id(&schema_id)?;
    let query = QueryParams::from_raw(query);
    let snapshot = registry.snapshot().await;
    let schema_text = snapshot.schema_text(schema_id)?;
    if query.flag("fetchMaxId") {
        ok_json(&json!({ "schema": schema_text, "maxId": snapshot.max_schema_id() }))
    } else {
        ok_json(&json!({ "schema": schema_text }))
    }
}

async fn raw_schema_by_id(
    State(registry): State<SchemaRegistry>,
    PathParams(schema_id): PathParams<String>,
) -> ApiResult {
    let schema_id = parse_schema_id(&schema_id)?;
    let snapshot = registry.snapshot().await;
    raw_schema_response(snapshot.schema_text(schema_id)?)
}

/// The schema's own JSON as the body, as Confluent's `/schema` endpoints answer.
fn raw_schema_response(schema_text: &str) -> ApiResult {
    Ok((
        StatusCode::OK,
        [(CONTENT_TYPE, REGISTRY_CONTENT_TYPE)],
        schema_text.to_owned(),
    )
        .into_response())
}

async fn subject_versions_of_schema(
    State(registry): State<SchemaRegistry>,
    PathParams(schema_id): PathParams<String>,
) -> ApiResult {
    let schema_id = parse_schema_id(&schema_id)?;
    let uses = registry
        .snapshot()
        .await
        .subject_versions_of_schema(schema_id)?;
    let body: Vec<_> = uses
        .into_iter()
        .map(|(subject, version)| json!({ "subject": subject, "version": version }))
        .collect();
    ok_json(&body)
}

async fn subjects_of_schema(
    State(registry): State<SchemaRegistry>,
    PathParams(schema_id): PathParams<String>,
) -> ApiResult {
    let schema_id = parse_schema_id(&schema_id)?;
    let uses = registry
        .snapshot()
        .await
        .subject_versions_of_schema(schema_id)?;
    let mut subjects: Vec<String> = uses.into_iter().map(|(subject, _)| subject).collect();
    subjects.dedup();
    ok_json(&subjects)
}

async fn list_subjects(
    State(registry): State<SchemaRegistry>,
    RawQuery(query): RawQuery,
) -> ApiResult {
    let query = QueryParams::from_raw(query);
    let prefix = query.get("subjectPrefix").unwrap_or_default();
    let subjects: Vec<String> = registry
        .snapshot()
        .await
        .subjects()
        .into_iter()
        .filter(|subject| subject.starts_with(prefix))
        .collect();
    ok_json(&subjects)
}

async fn list_versions(
    State(registry): State<SchemaRegistry>,
    PathParams(subject): PathParams<String>,
) -> ApiResult {
    ok_json(&registry.snapshot().await.versions(&subject)?)
}

async fn register_schema(
    State(registry): State<SchemaRegistry>,
    PathParams(subject): PathParams<String>,
    body: Bytes,
) -> ApiResult {
    let candidate = candidate_from_body(&body)?;
    let registering_subject = subject.clone();
    let registered = registry
        .change(move |state| {
            let registration = state.register(&registering_subject, candidate)?;
            Ok(Change {
                outcome: registration,
                changed: registration.created_version,
            })
        })
        .await;
    let registration = match registered {
        Ok(registration) => registration,
        Err(error) => {
            if let RegistryError::IncompatibleSchema { level, details, .. } = &error {
                tracing::info!(subject, %level, details = ?details, "schema refused as incompatible");
            }
            return Err(error);
        }
    };
    if registration.created_version {
        tracing::info!(
            subject,
            version = registration.version,
            schema_id = registration.schema_id,
            new_schema_id = registration.created_schema_id,
            "schema registered"
        );
    }
    ok_json(&json!({ "id": registration.schema_id }))
}

async fn lookup_schema(
    State(registry): State<SchemaRegistry>,
    PathParams(subject): PathParams<String>,
    body: Bytes,
) -> ApiResult {
    let candidate = candidate_from_body(&body)?;
    let found = registry.snapshot().await.lookup(&subject, &candidate)?;
    ok_json(&json!({
        "subject": subject,
        "version": found.version,
        "id": found.schema_id,
        "schema": found.schema_text,
    }))
}

async fn get_version(
    State(registry): State<SchemaRegistry>,
    PathParams((subject, version)): PathParams<(String, String)>,
) -> ApiResult {
    let selector = VersionSelector::parse(&version)?;
    let found = registry
        .snapshot()
        .await
        .subject_version(&subject, selector)?;
    ok_json(&json!({
        "subject": subject,
        "version": found.version,
        "id": found.schema_id,
        "schema": found.schema_text,
    }))
}

async fn get_raw_version_schema(
    State(registry): State<SchemaRegistry>,
    PathParams((subject, version)): PathParams<(String, String)>,
) -> ApiResult {
    let selector = VersionSelector::parse(&version)?;
    let found = registry
        .snapshot()
        .await
        .subject_version(&subject, selector)?;
    raw_schema_response(&found.schema_text)
}

/// No schema can reference another here (references are refused), so the answer is always
/// empty once the version is known to exist.
async fn referenced_by(
    State(registry): State<SchemaRegistry>,
    PathParams((subject, version)): PathParams<(String, String)>,
) -> ApiResult {
    let selector = VersionSelector::parse(&version)?;
    registry
        .snapshot()
        .await
        .subject_version(&subject, selector)?;
    ok_json(&Vec::<u32>::new())
}

async fn delete_subject(
    State(registry): State<SchemaRegistry>,
    PathParams(subject): PathParams<String>,
) -> ApiResult {
    let deleting_subject = subject.clone();
    let deleted_versions = registry
        .change(move |state| {
            let deleted_versions = state.delete_subject(&deleting_subject)?;
            Ok(Change {
                outcome: deleted_versions,
                changed: true,
            })
        })
        .await?;
    tracing::info!(subject, versions = ?deleted_versions, "subject deleted");
    ok_json(&deleted_versions)
}

async fn delete_version(
    State(registry): State<SchemaRegistry>,
    PathParams((subject, version)): PathParams<(String, String)>,
) -> ApiResult {
    let selector = VersionSelector::parse(&version)?;
    let deleting_subject = subject.clone();
    let deleted_version = registry
        .change(move |state| {
            let deleted_version = state.delete_version(&deleting_subject, selector)?;
            Ok(Change {
                outcome: deleted_version,
                changed: true,
            })
        })
        .await?;
    tracing::info!(
        subject,
        version = deleted_version,
        "subject version deleted"
    );
    ok_json(&deleted_version)
}

fn compatibility_response(incompatibilities: Vec<String>, query: &QueryParams) -> ApiResult {
    let is_compatible = incompatibilities.is_empty();
    if query.flag("verbose") {
        ok_json(&json!({ "is_compatible": is_compatible, "messages": incompatibilities }))
    } else {
        ok_json(&json!({ "is_compatible": is_compatible }))
    }
}

async fn check_compatibility_with_version(
    State(registry): State<SchemaRegistry>,
    PathParams((subject, version)): PathParams<(String, String)>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> ApiResult {
    let selector = VersionSelector::parse(&version)?;
    let candidate = candidate_from_body(&body)?;
    let incompatibilities = registry
        .snapshot()
        .await
        .incompatibilities_with_version(&subject, selector, &candidate)?;
    compatibility_response(incompatibilities, &QueryParams::from_raw(query))
}

async fn check_compatibility_for_registration(
    State(registry): State<SchemaRegistry>,
    PathParams(subject): PathParams<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> ApiResult {
    let candidate = candidate_from_body(&body)?;
    let incompatibilities = registry
        .snapshot()
        .await
        .incompatibilities_for_registration(&subject, &candidate);
    compatibility_response(incompatibilities, &QueryParams::from_raw(query))
}

/// `PUT /config` bodies; Confluent's other settings (`normalize`, `alias`, …) are ignored.
#[derive(Debug, Deserialize)]
struct ConfigRequest {
    compatibility: Option<serde_json::Value>,
}

fn level_from_body(body: &[u8]) -> Result<CompatibilityLevel, RegistryError> {
    let request: ConfigRequest = parse_body(body)?;
    let given = match request.compatibility {
        Some(serde_json::Value::String(text)) => text,
        Some(other) => other.to_string(),
        None => "(missing: the body needs a \"compatibility\" field)".to_owned(),
    };
    given
        .parse::<CompatibilityLevel>()
        .map_err(|_| RegistryError::InvalidCompatibilityLevel { given })
}

async fn get_global_config(State(registry): State<SchemaRegistry>) -> ApiResult {
    let level = registry.snapshot().await.global_compatibility();
    ok_json(&json!({ "compatibilityLevel": level }))
}

async fn put_global_config(State(registry): State<SchemaRegistry>, body: Bytes) -> ApiResult {
    let level = level_from_body(&body)?;
    registry
        .change(move |state| {
            let changed = state.stored().global_compatibility != Some(level);
            state.set_global_compatibility(level);
            Ok(Change {
                outcome: (),
                changed,
            })
        })
        .await?;
    tracing::info!(%level, "global compatibility set");
    ok_json(&json!({ "compatibility": level }))
}

async fn delete_global_config(State(registry): State<SchemaRegistry>) -> ApiResult {
    let previous = registry
        .change(|state| {
            let changed = state.stored().global_compatibility.is_some();
            Ok(Change {
                outcome: state.reset_global_compatibility(),
                changed,
            })
        })
        .await?;
    tracing::info!(%previous, "global compatibility reset to the default");
    ok_json(&json!({ "compatibilityLevel": previous }))
}

async fn get_subject_config(
    State(registry): State<SchemaRegistry>,
    PathParams(subject): PathParams<String>,
    RawQuery(query): RawQuery,
) -> ApiResult {
    let snapshot = registry.snapshot().await;
    let level = match snapshot.subject_compatibility(&subject) {
        Some(level) => level,
        None if QueryParams::from_raw(query).flag("defaultToGlobal") => {
            snapshot.global_compatibility()
        }
        None => return Err(RegistryError::SubjectCompatibilityNotConfigured { subject }),
    };
    ok_json(&json!({ "compatibilityLevel": level }))
}

async fn put_subject_config(
    State(registry): State<SchemaRegistry>,
    PathParams(subject): PathParams<String>,
    body: Bytes,
) -> ApiResult {
    let level = level_from_body(&body)?;
    let configured_subject = subject.clone();
    registry
        .change(move |state| {
            let changed = state.subject_compatibility(&configured_subject) != Some(level);
            state.set_subject_compatibility(&configured_subject, level);
            Ok(Change {
                outcome: (),
                changed,
            })
        })
        .await?;
    tracing::info!(subject, %level, "subject compatibility set");
    ok_json(&json!({ "compatibility": level }))
}

async fn delete_subject_config(
    State(registry): State<SchemaRegistry>,
    PathParams(subject): PathParams<String>,
) -> ApiResult {
    let configured_subject = subject.clone();
    let previous = registry
        .change(move |state| {
            Ok(Change {
                outcome: state.delete_subject_compatibility(&configured_subject)?,
                changed: true,
            })
        })
        .await?;
    tracing::info!(subject, %previous, "subject compatibility removed");
    ok_json(&json!({ "compatibilityLevel": previous }))
}
