//! The OpenAPI 3.1 document, generated from the handlers' annotations and the response types
//! (utoipa), and served at `/openapi.json`.

use utoipa::{
    Modify, OpenApi,
    openapi::{
        ContentBuilder, ObjectBuilder, Ref, RefOr, ResponseBuilder,
        header::HeaderBuilder,
        schema::Type,
        security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        },
    },
};

use crate::{error, routes};

/// `/health`: the process answers (no key needed).
#[utoipa::path(
    get,
    path = "/health",
    tag = "service",
    responses((status = 200, description = "The API process is up", body = String, content_type = "text/plain")),
)]
#[allow(dead_code)]
fn health_doc() {}

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// What every route of a document shares, declared once instead of on each handler: its
/// authentication and the answers of the layers before the handler (authentication, limits,
/// the store). Handlers declare their own success, 400 and 404.
struct SharedAnswers {
    path_prefix: &'static str,
    schemes: &'static [&'static str],
    errors: &'static [(&'static str, &'static str)],
}

/// The keyed market-data routes (`/v1/*`).
const KEYED_ROUTES: SharedAnswers = SharedAnswers {
    path_prefix: "/v1/",
    schemes: &["api_key", "bearer"],
    errors: &[
        ("401", "Missing or invalid API key"),
        ("403", "Revoked or expired API key"),
        ("429", "Rate limit or daily cap reached (see Retry-After)"),
        ("503", "Data store unavailable"),
    ],
};

/// The operators' routes (`/admin/*`).
const ADMIN_ROUTES: SharedAnswers = SharedAnswers {
    path_prefix: "/admin/",
    schemes: &["admin_token"],
    errors: &[
        ("401", "Missing or wrong admin token"),
        ("403", "The admin API is disabled (no token configured)"),
        (
            "429",
            "Too many failed admin-token attempts (see Retry-After)",
        ),
        ("503", "Data store unavailable"),
    ],
};

impl Modify for SharedAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with(self.path_prefix) {
                continue;
            }
            let operations = [
                item.get.as_mut(),
                item.post.as_mut(),
                item.put.as_mut(),
                item.delete.as_mut(),
                item.patch.as_mut(),
            ];
            for operation in operations.into_iter().flatten() {
                operation.security = Some(
                    self.schemes
                        .iter()
                        .map(|scheme| SecurityRequirement::new(*scheme, Vec::<String>::new()))
                        .collect(),
                );
                for (status, description) in self.errors {
                    let envelope = ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorEnvelope")))
                        .build();
                    let response = ResponseBuilder::new()
                        .description(*description)
                        .content("application/json", envelope)
                        .build();
                    operation
                        .responses
                        .responses
                        .entry((*status).to_owned())
                        .or_insert(RefOr::T(response));
                }
            }
        }
    }
}

/// The endpoints whose responses carry `X-Data-Retention`.
const TIME_PATHS: &[&str] = &[
    "/v1/trades",
    "/v1/candles",
    "/v1/orderbook",
    "/v1/prices/history",
    "/v1/continuity",
    "/v1/signals",
    "/v1/rankings",
];

/// Declares the headers the middleware adds, on every keyed response that carries them:
/// `X-RateLimit-*` once a key is known (not on 401/403), `Retry-After` on 429 and 503,
/// `X-Data-Retention` on answers of time endpoints past authentication and limits.
struct ResponseHeaders;

fn header(kind: Type, description: &str) -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(Some(ObjectBuilder::new().schema_type(kind).build()))
        .description(Some(description))
        .build()
}

impl Modify for ResponseHeaders {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let rate_headers = [
            (
                "X-RateLimit-Limit",
                Type::Integer,
                "requests allowed per UTC day (the key's daily cap)",
            ),
            (
                "X-RateLimit-Remaining",
                Type::Integer,
                "requests left today (UTC)",
            ),
            (
                "X-RateLimit-Reset",
                Type::Integer,
                "Unix seconds of the next UTC midnight, when the daily count resets",
            ),
            (
                "X-RateLimit-Rps",
                Type::Integer,
                "the key's requests per second",
            ),
            (
                "X-RateLimit-Burst-Remaining",
                Type::Integer,
                "requests left in the token bucket now",
            ),
        ];
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/v1/") {
                continue;
            }
            let covers_time = TIME_PATHS.contains(&path.as_str());
            let Some(operation) = item.get.as_mut() else {
                continue;
            };
            for (status, response) in operation.responses.responses.iter_mut() {
                let RefOr::T(response) = response else {
                    continue;
                };
                let status = status.as_str();
                if status != "401" && status != "403" {
                    for (name, kind, description) in &rate_headers {
                        response.headers.insert(
                            (*name).to_owned(),
                            RefOr::T(header(kind.clone(), description)),
                        );
                    }
                }
                if status == "429" || status == "503" {
                    response.headers.insert(
                        "Retry-After".to_owned(),
                        RefOr::T(header(Type::Integer, "seconds to wait before retrying")),
                    );
                }
                if covers_time && matches!(status, "200" | "400" | "404" | "503") {
                    response.headers.insert(
                        "X-Data-Retention".to_owned(),
                        RefOr::T(header(
                            Type::String,
                            "how far back data is kept, e.g. 90d; older ranges are refused",
                        )),
                    );
                }
            }
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Polytape API",
        description = "Polymarket public market data: markets, events, trades, candles, order books, price history and declared gaps.\n\n\
Authenticate with `X-API-Key: <key>` or `Authorization: Bearer <key>`. Every keyed response carries `X-RateLimit-Limit` (daily cap), \
`X-RateLimit-Remaining` (requests left today, UTC), `X-RateLimit-Reset` (Unix seconds of the next UTC midnight), `X-RateLimit-Rps` and \
`X-RateLimit-Burst-Remaining`; over a limit the answer is 429 with `Retry-After` (seconds). Endpoints that cover time also carry \
`X-Data-Retention` (e.g. `90d`) and refuse ranges older than it with 400 `out_of_retention`.\n\n\
Errors are always `{\"error\":{\"code\":\"…\",\"message\":\"…\"}}`; unknown query parameters are refused. Prices and sizes are exact \
decimal strings; times are UTC epoch milliseconds (inputs also accept RFC 3339)."
    ),
    paths(
        health_doc,
        routes::markets::list_markets,
        routes::markets::get_market,
        routes::markets::list_events,
        routes::markets::get_event,
        routes::trades::list_trades,
        routes::series::candles,
        routes::book::orderbook,
        routes::series::price_history,
        routes::continuity::continuity,
        routes::signals::signals,
        routes::rankings::rankings,
    ),
    components(schemas(error::ErrorEnvelope, error::ErrorBody)),
    modifiers(&SecuritySchemes, &KEYED_ROUTES, &ResponseHeaders),
    tags(
        (name = "markets", description = "Markets and events"),
        (name = "trades", description = "Fills"),
        (name = "prices", description = "Candles and price history"),
        (name = "books", description = "Order books, current and historical"),
        (name = "continuity", description = "Declared data gaps"),
        (name = "signals", description = "Signals and what explains them, and market rankings"),
        (name = "service", description = "Service endpoints"),
    )
)]
pub struct ApiDoc;

/// The document as JSON text.
pub fn openapi_json() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_else(|error| {
        format!("{{\"error\":\"cannot render the OpenAPI document: {error}\"}}")
    })
}

struct AdminSecurity;

impl Modify for AdminSecurity {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The operators' document: the `/admin/*` routes of the internal admin port.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Polytape API — administration",
        description = "Key management, usage and alert rules on the API's internal admin port (`api_admin_addr`, never public). \
Authenticate with `Authorization: Bearer <POLYTAPE_API_ADMIN_TOKEN>` (or `X-Admin-Token`). Failed attempts are rate-limited per replica."
    ),
    paths(
        routes::admin::list_keys,
        routes::admin::create_key,
        routes::admin::revoke_key,
        routes::admin::rotate_key,
        routes::admin::usage,
        routes::alert_rules::list_rules,
        routes::alert_rules::create_rule,
        routes::alert_rules::get_rule,
        routes::alert_rules::rule_history,
        routes::alert_rules::update_rule,
        routes::alert_rules::disable_rule,
        routes::alert_rules::test_rule,
    ),
    components(schemas(error::ErrorEnvelope, error::ErrorBody)),
    modifiers(&AdminSecurity, &ADMIN_ROUTES),
    tags(
        (name = "admin", description = "API keys and usage"),
        (name = "alerts", description = "Alert rules the signals service applies (picked up within `alert_rules_refresh`, 2 s by default); every change is a new version, kept"),
    ),
)]
pub struct AdminApiDoc;

/// The operators' document as JSON text.
pub fn admin_openapi_json() -> String {
    AdminApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|error| {
            format!("{{\"error\":\"cannot render the admin OpenAPI document: {error}\"}}")
        })
}
