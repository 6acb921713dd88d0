//! An in-process API on the local stack's ClickHouse, one isolated database per test, and
//! helpers to load data the way the sink writes it.

#![allow(dead_code, unreachable_pub)]

use std::{net::SocketAddr, sync::Arc};

use polytape_api::{
    clock::{Clock, SystemClock},
    keys::{KeySpec, KeyStore},
    state::AppState,
};
use polytape_runtime::Readiness;
use polytape_test_support::stack::IsolatedDatabase;
use serde::Serialize;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
pub const RETENTION_MS: i64 = 90 * 86_400_000;

/// One API replica: its public port and its internal admin port, each on a free local port.
pub struct TestApi {
    pub base: String,
    pub addr: SocketAddr,
    /// The internal admin port (`/admin/*`, `/healthz`, `/readyz`, `/metrics`).
    pub admin_base: String,
    pub state: AppState,
    pub http: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
    admin_server: tokio::task::JoinHandle<()>,
}

/// A response, with the body parsed as JSON (Null when it is not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: serde_json::Value,
    pub text: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Asserts the error envelope with this status and code.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(self.body["error"]["code"], code, "{}", self.text);
        assert!(
            self.body["error"]["message"]
                .as_str()
                .is_some_and(|message| !message.is_empty()),
            "{}",
            self.text
        );
        assert_eq!(
            self.body.as_object().map(|object| object.len()),
            Some(1),
            "only `error`: {}",
            self.text
        );
    }
}

/// A database with every table.
pub async fn migrated_database(purpose: &str) -> IsolatedDatabase {
    let database = IsolatedDatabase::create(purpose).await;
    polytape_clickhouse::migrate(&database.client, &database.name, 90)
        .await
        .unwrap();
    database
}

impl TestApi {
    /// A replica on `database` with the system clock.
    pub async fn start(database: &IsolatedDatabase) -> Self {
        Self::start_with_clock(database, Arc::new(SystemClock)).await
    }

    pub async fn start_with_clock(database: &IsolatedDatabase, clock: Arc<dyn Clock>) -> Self {
        let state = polytape_api::new_state(
            database.client.clone(),
            clock,
            RETENTION_MS,
            Some(ADMIN_TOKEN.to_owned()),
        );
        polytape_api::refresh_once(&state).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = polytape_api::router(state.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        let admin_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin_addr = admin_listener.local_addr().unwrap();
        let admin_router = polytape_api::admin_router(state.clone(), Readiness::new());
        let admin_server = tokio::spawn(async move {
            axum::serve(
                admin_listener,
                admin_router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap();
        });
        Self {
            base: format!("http://{addr}"),
            addr,
            admin_base: format!("http://{admin_addr}"),
            state,
            http: reqwest::Client::new(),
            server,
            admin_server,
        }
    }

    /// A new key with these limits, usable at once on this replica.
    pub async fn key(&self, plan: &str, rps: Option<u32>, daily_cap: Option<u64>) -> String {
        let (key, row) = KeyStore::new(self.state.store.clone())
            .create(
                &KeySpec {
                    name: "test".to_owned(),
                    plan: plan.to_owned(),
                    rps,
                    daily_cap,
                    expires_in_ms: None,
                },
                self.state.now_ms(),
            )
            .await
            .unwrap();
        self.state.keys.upsert(row);
        key.plaintext
    }

    /// A generous key for data tests.
    pub async fn data_key(&self) -> String {
        self.key("custom", Some(10_000), Some(10_000_000)).await
    }

    pub async fn get(&self, path: &str, key: Option<&str>) -> Reply {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.header("X-API-Key", key);
        }
        reply(request.send().await.unwrap()).await
    }

    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Reply {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.admin_base))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        reply(request.send().await.unwrap()).await
    }

    pub fn stop(self) {
        self.server.abort();
        self.admin_server.abort();
    }
}

pub async fn reply(response: reqwest::Response) -> Reply {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    Reply {
        status,
        headers,
        body,
        text,
    }
}

/// Inserts rows of one table the way the sink does (RowBinary through the `clickhouse` crate).
pub async fn insert<R>(client: &clickhouse::Client, table: &str, rows: &[R])
where
    R: clickhouse::RowOwned + clickhouse::RowWrite + Serialize,
{
    let mut insert = client.insert::<R>(table).await.unwrap();
    for row in rows {
        insert.write(row).await.unwrap();
    }
    insert.end().await.unwrap();
}

/// Maps model records through the sink's rows and inserts them.
pub async fn load<T, R>(client: &clickhouse::Client, table: &str, records: Vec<T>)
where
    R: TryFrom<T> + clickhouse::RowOwned + clickhouse::RowWrite + Serialize,
    <R as TryFrom<T>>::Error: std::fmt::Debug,
{
    let rows: Vec<R> = records
        .into_iter()
        .map(|record| R::try_from(record).unwrap())
        .collect();
    insert(client, table, &rows).await;
}

pub fn dec(text: &str) -> polytape_model::Decimal {
    text.parse().unwrap()
}

/// A condition id from a number.
pub fn condition_id(index: u64) -> String {
    format!("0x{index:064x}")
}
