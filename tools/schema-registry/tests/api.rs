//! The registry's REST API over real HTTP: a server bound on 127.0.0.1:0 with a temporary
//! data file, called with reqwest the way Confluent clients call it.

// clippy's allow-unwrap-in-tests covers #[test] functions only, not their shared helpers.
#![allow(clippy::unwrap_used)]

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use polytape_schema_registry::ServeError;
use reqwest::{StatusCode, header::CONTENT_TYPE};
use serde_json::{Value, json};
use tokio::{sync::oneshot, task::JoinHandle};

const REGISTRY_CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

const ORDER_V1: &str =
    r#"{"type":"record","name":"Order","namespace":"test","fields":[{"name":"id","type":"long"}]}"#;

/// V1 plus an optional field with a default: readers of either version read both.
const ORDER_V2_OPTIONAL_NOTE: &str = r#"{"type":"record","name":"Order","namespace":"test","fields":[{"name":"id","type":"long"},{"name":"note","type":["null","string"],"default":null}]}"#;

/// V1 plus a required field: a V3 reader cannot read V1 data (not BACKWARD compatible).
const ORDER_V3_REQUIRED_QUANTITY: &str = r#"{"type":"record","name":"Order","namespace":"test","fields":[{"name":"id","type":"long"},{"name":"quantity","type":"int"}]}"#;

/// A registry server running in this process.
struct RunningRegistry {
    base_url: String,
    http: reqwest::Client,
    stop: oneshot::Sender<()>,
    server: JoinHandle<Result<(), ServeError>>,
}

impl RunningRegistry {
    async fn start(data_file: &Path) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(polytape_schema_registry::serve(
            listener,
            data_file.to_owned(),
            async {
                let _ = stopped.await;
            },
        ));
        let registry = Self {
            base_url: format!("http://{address}"),
            http: reqwest::Client::new(),
            stop,
            server,
        };
        // The listener is bound, but the data file is loaded inside `serve`: wait for answers.
        for _ in 0..100 {
            if let Ok(response) = registry.http.get(registry.url("/healthz")).send().await
                && response.status() == StatusCode::OK
            {
                return registry;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("the registry on {address} did not answer /healthz");
    }

    async fn stop(self) {
        self.stop.send(()).unwrap();
        self.server.await.unwrap().unwrap();
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|error| panic!("response body {text:?} is not JSON: {error}"));
        (status, body)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.http.get(self.url(path))).await
    }

    async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.http.delete(self.url(path))).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(
            self.http
                .post(self.url(path))
                .header(CONTENT_TYPE, REGISTRY_CONTENT_TYPE)
                .body(body.to_string()),
        )
        .await
    }

    async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(
            self.http
                .put(self.url(path))
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_string()),
        )
        .await
    }

    /// Registers and returns the id, failing the test on any refusal.
    async fn register(&self, subject: &str, schema: &str) -> u64 {
        let (status, body) = self
            .post(
                &format!("/subjects/{subject}/versions"),
                json!({ "schema": schema }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "register under {subject}: {body}");
        body["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("no id in {body}"))
    }
}

fn temporary_data_file() -> (tempfile::TempDir, PathBuf) {
    let directory = tempfile::tempdir().unwrap();
    let data_file = directory.path().join("schema-registry.json");
    (directory, data_file)
}

fn assert_error(actual: &(StatusCode, Value), status: StatusCode, error_code: u64) {
    let (actual_status, body) = actual;
    assert_eq!(*actual_status, status, "{body}");
    assert_eq!(body["error_code"], json!(error_code), "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|message| !message.is_empty()),
        "no message in {body}"
    );
}

#[tokio::test]
async fn registering_is_idempotent_and_ids_are_global() {
    let (_directory, data_file) = temporary_data_file();
    let registry = RunningRegistry::start(&data_file).await;

    assert_eq!(registry.register("orders-value", ORDER_V1).await, 1);
    // The same schema formatted differently is the same schema: same id, no new version.
    let reformatted =
        serde_json::to_string_pretty(&serde_json::from_str::<Value>(ORDER_V1).unwrap()).unwrap();
    assert_ne!(reformatted, ORDER_V1);
    assert_eq!(registry.register("orders-value", &reformatted).await, 1);
    assert_eq!(
        registry.get("/subjects/orders-value/versions").await,
        (StatusCode::OK, json!([1]))
    );

    // Another subject with the same schema shares the global id.
    assert_eq!(registry.register("audit-value", ORDER_V1).await, 1);
    assert_eq!(
        registry.get("/subjects/audit-value/versions").await,
        (StatusCode::OK, json!([1]))
    );
    assert_eq!(
        registry.get("/subjects").await,
        (StatusCode::OK, json!(["audit-value", "orders-value"]))
    );
    assert_eq!(
        registry.get("/subjects?subjectPrefix=ord").await,
        (StatusCode::OK, json!(["orders-value"]))
    );

    // By id: the text exactly as first registered; query parameters clients add are ignored.
    assert_eq!(
        registry.get("/schemas/ids/1").await,
        (StatusCode::OK, json!({ "schema": ORDER_V1 }))
    );
    assert_eq!(
        registry
            .get("/schemas/ids/1?subject=orders-value&fetchMaxId=false&format=")
            .await,
        (StatusCode::OK, json!({ "schema": ORDER_V1 }))
    );
    assert_eq!(
        registry.get("/schemas/ids/1?fetchMaxId=true").await,
        (StatusCode::OK, json!({ "schema": ORDER_V1, "maxId": 1 }))
    );
    assert_eq!(
        registry.get("/schemas/ids/1/versions").await,
        (
            StatusCode::OK,
            json!([
                { "subject": "audit-value", "version": 1 },
                { "subject": "orders-value", "version": 1 }
            ])
        )
    );
    assert_eq!(
        registry.get("/schemas/ids/1/subjects").await,
        (StatusCode::OK, json!(["audit-value", "orders-value"]))
    );

    let expected_version = json!({
        "subject": "orders-value", "version": 1, "id": 1, "schema": ORDER_V1
    });
    for version in ["latest", "-1", "1"] {
        assert_eq!(
            registry
                .get(&format!("/subjects/orders-value/versions/{version}"))
                .await,
            (StatusCode::OK, expected_version.clone()),
            "version {version}"
        );
    }
    assert_eq!(
        registry
            .get("/subjects/orders-value/versions/1/schema")
            .await,
        (StatusCode::OK, serde_json::from_str(ORDER_V1).unwrap())
    );

    // Lookup: is this schema registered under the subject?
    assert_eq!(
        registry
            .post("/subjects/orders-value", json!({ "schema": reformatted }))
            .await,
        (StatusCode::OK, expected_version)
    );
    assert_error(
        &registry
            .post(
                "/subjects/orders-value",
                json!({ "schema": ORDER_V2_OPTIONAL_NOTE }),
            )
            .await,
        StatusCode::NOT_FOUND,
        40403,
    );
    assert_error(
        &registry
            .post("/subjects/nobody-value", json!({ "schema": ORDER_V1 }))
            .await,
        StatusCode::NOT_FOUND,
        40401,
    );

    registry.stop().await;
}

#[tokio::test]
async fn responses_carry_the_registry_content_type_and_other_request_types_are_accepted() {
    let (_directory, data_file) = temporary_data_file();
    let registry = RunningRegistry::start(&data_file).await;

    // Python's confluent-kafka sends schemaType and an empty references list.
    for (content_type, subject) in [
        ("application/vnd.schemaregistry.v1+json", "a-value"),
        ("application/json", "b-value"),
        ("application/octet-stream", "c-value"),
    ] {
        let response = registry
            .http
            .post(registry.url(&format!("/subjects/{subject}/versions?normalize=false")))
            .header(CONTENT_TYPE, content_type)
            .body(json!({ "schema": ORDER_V1, "schemaType": "AVRO", "references": [] }).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{content_type}");
        assert_eq!(
            response.headers()[CONTENT_TYPE].to_str().unwrap(),
            REGISTRY_CONTENT_TYPE
        );
        assert_eq!(response.json::<Value>().await.unwrap(), json!({ "id": 1 }));
    }

    let error_response = registry
        .http
        .get(registry.url("/schemas/ids/42"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_response.headers()[CONTENT_TYPE].to_str().unwrap(),
        REGISTRY_CONTENT_TYPE
    );

    assert_eq!(registry.get("/").await, (StatusCode::OK, json!({})));
    assert_eq!(
        registry.get("/schemas/types").await,
        (StatusCode::OK, json!(["AVRO"]))
    );
    let health = registry
        .http
        .get(registry.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(health.text().await.unwrap().trim(), "ok");

    registry.stop().await;
}

#[tokio::test]
async fn a_compatible_evolution_gets_a_new_version_and_id() {
    let (_directory, data_file) = temporary_data_file();
    let registry = RunningRegistry::start(&data_file).await;

    assert_eq!(registry.register("orders-value", ORDER_V1).await, 1);
    assert_eq!(
        registry
            .register("orders-value", ORDER_V2_OPTIONAL_NOTE)
            .await,
        2
    );
    assert_eq!(
        registry.get("/subjects/orders-value/versions").await,
        (StatusCode::OK, json!([1, 2]))
    );
    assert_eq!(
        registry.get("/subjects/orders-value/versions/latest").await,
        (
            StatusCode::OK,
            json!({ "subject": "orders-value", "version": 2, "id": 2, "schema": ORDER_V2_OPTIONAL_NOTE })
        )
    );
    assert_eq!(
        registry.get("/subjects/orders-value/versions/1").await.1["id"],
        json!(1)
    );
    // Registering an older version again returns its existing id without a new version.
    assert_eq!(registry.register("orders-value", ORDER_V1).await, 1);
    assert_eq!(
        registry.get("/subjects/orders-value/versions").await,
        (StatusCode::OK, json!([1, 2]))
    );

    registry.stop().await;
}

#[tokio::test]
async fn an_incompatible_change_is_refused_with_409_and_consumes_nothing() {
    let (_directory, data_file) = temporary_data_file();
    let registry = RunningRegistry::start(&data_file).await;

    assert_eq!(registry.register("orders-value", ORDER_V1).await, 1);
    let refused = registry
        .post(
            "/subjects/orders-value/versions",
            json!({ "schema": ORDER_V3_REQUIRED_QUANTITY }),
        )
        .await;
    assert_error(&refused, StatusCode::CONFLICT, 409);
    let message = refused.1["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "Schema being registered is incompatible with an earlier schema for subject \"orders-value\", details: "
        ),
        "{message}"
    );
    assert!(message.contains("quantity"), "{message}");
    assert!(message.contains("BACKWARD"), "{message}");

    assert_eq!(
        registry.get("/subjects/orders-value/versions").await,
        (StatusCode::OK, json!([1]))
    );
    assert_error(
        &registry.get("/schemas/ids/2").await,
        StatusCode::NOT_FOUND,
        40403,
    );
    // The refusal did not use up an id.
    assert_eq!(
        registry
            .register("orders-value", ORDER_V2_OPTIONAL_NOTE)
            .await,
        2
    );

    registry.stop().await;
}

#[tokio::test]
async fn the_compatibility_endpoint_answers_without_registering() {
    let (_directory, data_file) = temporary_data_file();
    let registry = RunningRegistry::start(&data_file).await;
    registry.register("orders-value", ORDER_V1).await;

    for version in ["latest", "1"] {
        let path = format!("/compatibility/subjects/orders-value/versions/{version}");
        assert_eq!(
            registry
                .post(&path, json!({ "schema": ORDER_V2_OPTIONAL_NOTE }))
                .await,
            (StatusCode::OK, json!({ "is_compatible": true })),
            "{path}"
        );
        assert_eq!(
            registry
                .post(&path, json!({ "schema": ORDER_V3_REQUIRED_QUANTITY }))
                .await,
            (StatusCode::OK, json!({ "is_compatible": false })),
            "{path}"
        );
    }

    let (status, verbose) = registry
        .post(
            "/compatibility/subjects/orders-value/versions/latest?verbose=true",
            json!({ "schema": ORDER_V3_REQUIRED_QUANTITY }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(verbose["is_compatible"], json!(false));
    let messages = verbose["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{verbose}");
    assert!(
        messages[0].as_str().unwrap().contains("quantity"),
        "{verbose}"
    );
    assert_eq!(
        registry
            .post(
                "/compatibility/subjects/orders-value/versions/latest?verbose=true",
                json!({ "schema": ORDER_V2_OPTIONAL_NOTE }),
            )
            .await,
        (
            StatusCode::OK,
            json!({ "is_compatible": true, "messages": [] })
        )
    );

    // Against the subject's whole history, as a registration would be checked.
    assert_eq!(
        registry
            .post(
                "/compatibility/subjects/orders-value/versions",
                json!({ "schema": ORDER_V3_REQUIRED_QUANTITY }),
            )
            .await,
        (StatusCode::OK, json!({ "is_compatible": false }))
    );

    // Nothing to be incompatible with.
    assert_eq!(
        registry
            .post(
                "/compatibility/subjects/new-value/versions/latest",
                json!({ "schema": ORDER_V3_REQUIRED_QUANTITY }),
            )
            .await,
        (StatusCode::OK, json!({ "is_compatible": true }))
    );

    assert_error(
        &registry
            .post(
                "/compatibility/subjects/orders-value/versions/7",
                json!({ "schema": ORDER_V1 }),
            )
            .await,
        StatusCode::NOT_FOUND,
        40402,
    );
    assert_error(
        &registry
            .post(
                "/compatibility/subjects/orders-value/versions/first",
                json!({ "schema": ORDER_V1 }),
            )
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        42202,
    );
    // Checking registered nothing.
    assert_eq!(
        registry.get("/subjects").await,
        (StatusCode::OK, json!(["orders-value"]))
    );

    registry.stop().await;
}

#[tokio::test]
async fn compatibility_configuration_global_and_per_subject() {
    let (_directory, data_file) = temporary_data_file();
    let registry = RunningRegistry::start(&data_file).await;

    assert_eq!(
        registry.get("/config").await,
        (StatusCode::OK, json!({ "compatibilityLevel": "BACKWARD" }))
    );
    assert_eq!(
        registry
            .put("/config", json!({ "compatibility": "FULL" }))
            .await,
        (StatusCode::OK, json!({ "compatibility": "FULL" }))
    );
    assert_eq!(
        registry.get("/config").await,
        (StatusCode::OK, json!({ "compatibilityLevel": "FULL" }))
    );

    assert_error(
        &registry.get("/config/orders-value").await,
        StatusCode::NOT_FOUND,
        40408,
    );
    assert_eq!(
        registry
            .get("/config/orders-value?defaultToGlobal=true")
            .await,
        (StatusCode::OK, json!({ "compatibilityLevel": "FULL" }))
    );
    assert_eq!(
        registry
            .put("/config/orders-value", json!({ "compatibility": "NONE" }))
            .await,
        (StatusCode::OK, json!({ "compatibility": "NONE" }))
    );
    assert_eq!(
        registry.get("/config/orders-value").await,
        (StatusCode::OK, json!({ "compatibilityLevel": "NONE" }))
    );

    // NONE on the subject lets the incompatible change through; FULL elsewhere refuses it.
    registry.register("orders-value", ORDER_V1).await;
    assert_eq!(
        registry
            .register("orders-value", ORDER_V3_REQUIRED_QUANTITY)
            .await,
        2
    );
    registry.register("fills-value", ORDER_V1).await;
    assert_error(
        &registry
            .post(
                "/subjects/fills-value/versions",
                json!({ "schema": ORDER_V3_REQUIRED_QUANTITY }),
            )
            .await,
        StatusCode::CONFLICT,
        409,
    );

    // FORWARD only asks that old readers can read new data: adding a required field is fine.
    assert_eq!(
        registry
            .put("/config/fills-value", json!({ "compatibility": "forward" }))
            .await,
        (StatusCode::OK, json!({ "compatibility": "FORWARD" }))
    );
    assert_eq!(
        registry
            .register("fills-value", ORDER_V3_REQUIRED_QUANTITY)
            .await,
        2
    );

    assert_eq!(
        registry.delete("/config/orders-value").await,
        (StatusCode::OK, json!({ "compatibilityLevel": "NONE" }))
    );
    assert_error(
        &registry.get("/config/orders-value").await,
        StatusCode::NOT_FOUND,
        40408,
    );
    assert_error(
        &registry.delete("/config/orders-value").await,
        StatusCode::NOT_FOUND,
        40408,
    );

    let invalid = registry
        .put("/config", json!({ "compatibility": "SIDEWAYS" }))
        .await;
    assert_error(&invalid, StatusCode::UNPROCESSABLE_ENTITY, 42203);
    assert!(
        invalid.1["message"].as_str().unwrap().contains("SIDEWAYS"),
        "{}",
        invalid.1
    );
    assert_error(
        &registry.put("/config/orders-value", json!({})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        42203,
    );
    assert_eq!(
        registry.get("/config").await,
        (StatusCode::OK, json!({ "compatibilityLevel": "FULL" }))
    );
    assert_eq!(
        registry.delete("/config").await,
        (StatusCode::OK, json!({ "compatibilityLevel": "FULL" }))
    );
    assert_eq!(
        registry.get("/config").await,
        (StatusCode::OK, json!({ "compatibilityLevel": "BACKWARD" }))
    );

    registry.stop().await;
}

#[tokio::test]
async fn errors_have_confluent_codes_and_say_what_was_wrong() {
    let (_directory, data_file) = temporary_data_file();
    let registry = RunningRegistry::start(&data_file).await;
    registry.register("orders-value", ORDER_V1).await;

    assert_eq!(
        registry.get("/subjects/nope-value/versions").await,
        (
            StatusCode::NOT_FOUND,
            json!({ "error_code": 40401, "message": "Subject 'nope-value' not found." })
        )
    );
    assert_error(
        &registry.get("/subjects/nope-value/versions/latest").await,
        StatusCode::NOT_FOUND,
        40401,
    );
    assert_eq!(
        registry.get("/subjects/orders-value/versions/5").await,
        (
            StatusCode::NOT_FOUND,
            json!({ "error_code": 40402, "message": "Version 5 not found." })
        )
    );
    assert_error(
        &registry.get("/subjects/orders-value/versions/0").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        42202,
    );
    assert_eq!(
        registry.get("/schemas/ids/99").await,
        (
            StatusCode::NOT_FOUND,
            json!({ "error_code": 40403, "message": "Schema 99 not found" })
        )
    );
    assert_error(
        &registry.get("/schemas/ids/abc").await,
        StatusCode::NOT_FOUND,
        40403,
    );
    assert_error(
        &registry.get("/schemas/ids/99/versions").await,
        StatusCode::NOT_FOUND,
        40403,
    );

    for (invalid_schema, expected_in_message) in [
        (
            r#"{"type":"record","name":"Broken","fields":[{"name":"x","type":"nosuchtype"}]}"#,
            "nosuchtype",
        ),
        ("this is not json", "not valid Avro"),
        (r#"{"type":"enum","name":"E"}"#, "not valid Avro"),
    ] {
        let refused = registry
            .post(
                "/subjects/orders-value/versions",
                json!({ "schema": invalid_schema }),
            )
            .await;
        assert_error(&refused, StatusCode::UNPROCESSABLE_ENTITY, 42201);
        let message = refused.1["message"].as_str().unwrap();
        assert!(message.starts_with("Invalid schema"), "{message}");
        assert!(message.contains(expected_in_message), "{message}");
    }

    let protobuf = registry
        .post(
            "/subjects/orders-value/versions",
            json!({ "schema": "syntax = \"proto3\";", "schemaType": "PROTOBUF" }),
        )
        .await;
    assert_error(&protobuf, StatusCode::UNPROCESSABLE_ENTITY, 42201);
    assert!(
        protobuf.1["message"].as_str().unwrap().contains("PROTOBUF"),
        "{}",
        protobuf.1
    );
    let with_references = registry
        .post(
            "/subjects/orders-value/versions",
            json!({
                "schema": ORDER_V1,
                "references": [{ "name": "test.Other", "subject": "other-value", "version": 1 }]
            }),
        )
        .await;
    assert_error(&with_references, StatusCode::UNPROCESSABLE_ENTITY, 42201);
    assert!(
        with_references.1["message"]
            .as_str()
            .unwrap()
            .contains("references"),
        "{}",
        with_references.1
    );
    assert_error(
        &registry
            .post(
                "/subjects/orders-value/versions",
                json!({ "schema": { "type": "string" } }),
            )
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        42201,
    );
    assert_error(
        &registry
            .post(
                "/subjects/orders-value/versions",
                json!({ "scheme": ORDER_V1 }),
            )
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        42201,
    );
    assert_error(
        &registry
            .send(
                registry
                    .http
                    .post(registry.url("/subjects/orders-value/versions"))
                    .body("{\"schema\": "),
            )
            .await,
        StatusCode::BAD_REQUEST,
        400,
    );

    assert_eq!(
        registry.get("/no/such/route").await,
        (
            StatusCode::NOT_FOUND,
            json!({ "error_code": 404, "message": "HTTP 404 Not Found" })
        )
    );
    assert_error(
        &registry
            .send(registry.http.patch(registry.url("/subjects")))
            .await,
        StatusCode::METHOD_NOT_ALLOWED,
        405,
    );

    // None of the refusals changed anything.
    assert_eq!(
        registry.get("/subjects/orders-value/versions").await,
        (StatusCode::OK, json!([1]))
    );

    registry.stop().await;
}

#[tokio::test]
async fn deleting_removes_versions_but_never_frees_ids_or_version_numbers() {
    let (_directory, data_file) = temporary_data_file();
    let registry = RunningRegistry::start(&data_file).await;
    registry.register("orders-value", ORDER_V1).await;
    registry
        .register("orders-value", ORDER_V2_OPTIONAL_NOTE)
        .await;

    assert_eq!(
        registry.delete("/subjects/orders-value/versions/1").await,
        (StatusCode::OK, json!(1))
    );
    assert_eq!(
        registry.get("/subjects/orders-value/versions").await,
        (StatusCode::OK, json!([2]))
    );
    assert_error(
        &registry.delete("/subjects/orders-value/versions/1").await,
        StatusCode::NOT_FOUND,
        40402,
    );
    assert_eq!(
        registry.delete("/subjects/orders-value").await,
        (StatusCode::OK, json!([2]))
    );
    assert_eq!(registry.get("/subjects").await, (StatusCode::OK, json!([])));
    assert_error(
        &registry.get("/subjects/orders-value/versions").await,
        StatusCode::NOT_FOUND,
        40401,
    );
    assert_error(
        &registry.delete("/subjects/orders-value").await,
        StatusCode::NOT_FOUND,
        40401,
    );

    // Records already written with these ids must stay decodable.
    assert_eq!(
        registry.get("/schemas/ids/1").await,
        (StatusCode::OK, json!({ "schema": ORDER_V1 }))
    );
    assert_eq!(
        registry.get("/schemas/ids/2/versions").await,
        (StatusCode::OK, json!([]))
    );

    // The same schema keeps its id; the subject's version numbers carry on.
    assert_eq!(registry.register("orders-value", ORDER_V1).await, 1);
    assert_eq!(
        registry
            .get("/subjects/orders-value/versions/latest")
            .await
            .1["version"],
        json!(3)
    );
    assert_eq!(
        registry
            .delete("/subjects/orders-value/versions/latest")
            .await,
        (StatusCode::OK, json!(3))
    );

    registry.stop().await;
}

#[tokio::test]
async fn a_restart_on_the_same_data_file_keeps_everything() {
    let (directory, data_file) = temporary_data_file();
    let first_run = RunningRegistry::start(&data_file).await;
    assert_eq!(first_run.register("orders-value", ORDER_V1).await, 1);
    assert_eq!(
        first_run
            .register("orders-value", ORDER_V2_OPTIONAL_NOTE)
            .await,
        2
    );
    first_run
        .put("/config/orders-value", json!({ "compatibility": "NONE" }))
        .await;
    first_run
        .put("/config", json!({ "compatibility": "FORWARD_TRANSITIVE" }))
        .await;
    let temporary_schema =
        r#"{"type":"record","name":"Scratch","fields":[{"name":"n","type":"int"}]}"#;
    assert_eq!(
        first_run.register("scratch-value", temporary_schema).await,
        3
    );
    first_run.delete("/subjects/scratch-value").await;
    first_run.stop().await;

    // Only the data file remains: no temporary file left behind.
    let files: Vec<String> = std::fs::read_dir(directory.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, vec!["schema-registry.json".to_owned()]);

    let second_run = RunningRegistry::start(&data_file).await;
    assert_eq!(
        second_run.get("/subjects").await,
        (StatusCode::OK, json!(["orders-value"]))
    );
    assert_eq!(
        second_run.get("/subjects/orders-value/versions").await,
        (StatusCode::OK, json!([1, 2]))
    );
    assert_eq!(
        second_run
            .get("/subjects/orders-value/versions/latest")
            .await,
        (
            StatusCode::OK,
            json!({ "subject": "orders-value", "version": 2, "id": 2, "schema": ORDER_V2_OPTIONAL_NOTE })
        )
    );
    assert_eq!(
        second_run.get("/config/orders-value").await,
        (StatusCode::OK, json!({ "compatibilityLevel": "NONE" }))
    );
    assert_eq!(
        second_run.get("/config").await,
        (
            StatusCode::OK,
            json!({ "compatibilityLevel": "FORWARD_TRANSITIVE" })
        )
    );
    assert_eq!(
        second_run.get("/schemas/ids/3").await,
        (StatusCode::OK, json!({ "schema": temporary_schema }))
    );
    // Known schemas keep their ids; a new one gets 4, not the deleted subject's 3.
    assert_eq!(second_run.register("orders-value", ORDER_V1).await, 1);
    assert_eq!(
        second_run
            .register("fills-value", ORDER_V2_OPTIONAL_NOTE)
            .await,
        2
    );
    let new_schema = r#"{"type":"record","name":"Fresh","fields":[{"name":"n","type":"long"}]}"#;
    assert_eq!(second_run.register("fresh-value", new_schema).await, 4);
    // The subject-level NONE survived too: an incompatible change goes through.
    assert_eq!(
        second_run
            .register("orders-value", ORDER_V3_REQUIRED_QUANTITY)
            .await,
        5
    );
    second_run.stop().await;
}

#[tokio::test]
async fn concurrent_registrations_of_different_schemas_get_distinct_ids() {
    let (_directory, data_file) = temporary_data_file();
    let registry = std::sync::Arc::new(RunningRegistry::start(&data_file).await);

    let schema_for = |index: usize| {
        format!(
            r#"{{"type":"record","name":"Thing{index}","fields":[{{"name":"n","type":"long"}}]}}"#
        )
    };
    let register_all = || {
        let tasks: Vec<_> = (0..20)
            .map(|index| {
                let registry = registry.clone();
                let schema = schema_for(index);
                tokio::spawn(async move {
                    let id = registry
                        .register(&format!("concurrent-{index}-value"), &schema)
                        .await;
                    (index, id)
                })
            })
            .collect();
        futures::future::join_all(tasks)
    };

    let first_round: Vec<(usize, u64)> = register_all()
        .await
        .into_iter()
        .map(|joined| joined.unwrap())
        .collect();
    let distinct_ids: BTreeSet<u64> = first_round.iter().map(|(_, id)| *id).collect();
    assert_eq!(distinct_ids, (1..=20).collect::<BTreeSet<u64>>());

    // Each id really is its schema's, and registering them all again changes nothing.
    for (index, id) in &first_round {
        assert_eq!(
            registry.get(&format!("/schemas/ids/{id}")).await,
            (StatusCode::OK, json!({ "schema": schema_for(*index) }))
        );
    }
    let mut second_round: Vec<(usize, u64)> = register_all()
        .await
        .into_iter()
        .map(|joined| joined.unwrap())
        .collect();
    let mut first_round_sorted = first_round.clone();
    first_round_sorted.sort();
    second_round.sort();
    assert_eq!(second_round, first_round_sorted);
    assert_eq!(
        registry.get("/subjects").await.1.as_array().unwrap().len(),
        20
    );

    let registry = std::sync::Arc::into_inner(registry).unwrap();
    registry.stop().await;
}

#[tokio::test]
async fn every_project_schema_registers_and_reads_back_unchanged() {
    let (_directory, data_file) = temporary_data_file();
    let registry = RunningRegistry::start(&data_file).await;
    let schemas_directory = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas/avro");
    let mut schema_files: Vec<PathBuf> = std::fs::read_dir(&schemas_directory)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "avsc")
        })
        .collect();
    schema_files.sort();
    assert!(
        !schema_files.is_empty(),
        "no .avsc in {}",
        schemas_directory.display()
    );

    let mut ids = BTreeSet::new();
    for schema_file in &schema_files {
        let text = std::fs::read_to_string(schema_file).unwrap();
        let subject = format!(
            "{}-value",
            schema_file.file_stem().unwrap().to_string_lossy()
        );
        let id = registry.register(&subject, &text).await;
        assert!(ids.insert(id), "{} reused id {id}", schema_file.display());
        assert_eq!(
            registry.get(&format!("/schemas/ids/{id}")).await,
            (StatusCode::OK, json!({ "schema": text })),
            "{}",
            schema_file.display()
        );
    }
    assert_eq!(ids.len(), schema_files.len());

    registry.stop().await;
}
