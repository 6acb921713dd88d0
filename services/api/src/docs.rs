//! `/docs`: a self-contained HTML page rendered from the OpenAPI document (no scripts, no
//! CDN), so it works offline and always matches `/openapi.json`.

use serde_json::Value;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Inline `code` spans and paragraphs from the spec's Markdown-ish descriptions.
fn prose(text: &str) -> String {
    text.split("\n\n")
        .map(|paragraph| {
            let escaped = escape(paragraph);
            let mut html = String::new();
            for (index, part) in escaped.split('`').enumerate() {
                if index % 2 == 1 {
                    html.push_str(&format!("<code>{part}</code>"));
                } else {
                    html.push_str(part);
                }
            }
            format!("<p>{html}</p>")
        })
        .collect()
}

/// A schema's short description: its type, `$ref` name, or a union.
fn schema_label(schema: &Value) -> String {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let name = reference.rsplit('/').next().unwrap_or(reference);
        return format!("<a href=\"#schema-{0}\">{0}</a>", escape(name));
    }
    if let Some(variants) = schema
        .get("oneOf")
        .or_else(|| schema.get("anyOf"))
        .and_then(Value::as_array)
    {
        return variants
            .iter()
            .map(schema_label)
            .collect::<Vec<_>>()
            .join(" | ");
    }
    let kind = match schema.get("type") {
        Some(Value::String(kind)) => kind.clone(),
        Some(Value::Array(kinds)) => kinds
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" | "),
        _ => "any".to_owned(),
    };
    if kind.contains("array")
        && let Some(items) = schema.get("items")
    {
        return format!("{} of {}", escape(&kind), schema_label(items));
    }
    escape(&kind)
}

/// The page.
pub fn render(spec: &Value) -> String {
    let title = spec["info"]["title"].as_str().unwrap_or("API");
    let mut body = String::new();
    body.push_str(&format!("<h1>{}</h1>", escape(title)));
    body.push_str(&prose(
        spec["info"]["description"].as_str().unwrap_or_default(),
    ));
    body.push_str(
        "<p>Machine-readable: <a href=\"/openapi.json\">/openapi.json</a> (OpenAPI 3.1).</p>",
    );
    let mut contents = String::from("<ul>");
    let mut operations = String::new();
    if let Some(paths) = spec["paths"].as_object() {
        for (path, item) in paths {
            let Some(methods) = item.as_object() else {
                continue;
            };
            for (method, operation) in methods {
                let anchor = format!("{method}-{path}").replace(['/', '{', '}'], "_");
                contents.push_str(&format!(
                    "<li><a href=\"#{anchor}\"><code>{} {}</code></a></li>",
                    method.to_uppercase(),
                    escape(path)
                ));
                operations.push_str(&format!(
                    "<section id=\"{anchor}\"><h2><code>{} {}</code></h2>",
                    method.to_uppercase(),
                    escape(path)
                ));
                if let Some(summary) = operation["summary"].as_str() {
                    operations.push_str(&prose(summary));
                }
                if let Some(description) = operation["description"].as_str() {
                    operations.push_str(&prose(description));
                }
                if operation.get("security").is_some() {
                    operations.push_str("<p class=\"auth\">Needs an API key.</p>");
                }
                if let Some(parameters) = operation["parameters"].as_array() {
                    operations.push_str("<table><tr><th>parameter</th><th>in</th><th>type</th><th>required</th><th>description</th></tr>");
                    for parameter in parameters {
                        operations.push_str(&format!(
                            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                            escape(parameter["name"].as_str().unwrap_or_default()),
                            escape(parameter["in"].as_str().unwrap_or_default()),
                            schema_label(&parameter["schema"]),
                            if parameter["required"].as_bool().unwrap_or(false) { "yes" } else { "no" },
                            prose(parameter["description"].as_str().unwrap_or_default()),
                        ));
                    }
                    operations.push_str("</table>");
                }
                if let Some(responses) = operation["responses"].as_object() {
                    operations.push_str(
                        "<table><tr><th>status</th><th>description</th><th>body</th><th>headers</th></tr>",
                    );
                    for (status, response) in responses {
                        let body_schema = response["content"]
                            .as_object()
                            .and_then(|content| content.values().next())
                            .map(|media| schema_label(&media["schema"]))
                            .unwrap_or_default();
                        let headers = response["headers"]
                            .as_object()
                            .map(|headers| {
                                headers
                                    .keys()
                                    .map(|name| format!("<code>{}</code>", escape(name)))
                                    .collect::<Vec<_>>()
                                    .join(" ")
                            })
                            .unwrap_or_default();
                        operations.push_str(&format!(
                            "<tr><td>{}</td><td>{}</td><td>{body_schema}</td><td>{headers}</td></tr>",
                            escape(status),
                            escape(response["description"].as_str().unwrap_or_default()),
                        ));
                    }
                    operations.push_str("</table>");
                }
                operations.push_str("</section>");
            }
        }
    }
    contents.push_str("</ul>");
    body.push_str("<h2>Endpoints</h2>");
    body.push_str(&contents);
    body.push_str(&operations);
    body.push_str("<h2>Schemas</h2>");
    if let Some(schemas) = spec["components"]["schemas"].as_object() {
        for (name, schema) in schemas {
            body.push_str(&format!(
                "<section id=\"schema-{0}\"><h3>{0}</h3>",
                escape(name)
            ));
            if let Some(description) = schema["description"].as_str() {
                body.push_str(&prose(description));
            }
            if let Some(properties) = schema["properties"].as_object() {
                let required: Vec<&str> = schema["required"]
                    .as_array()
                    .map(|names| names.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                body.push_str("<table><tr><th>field</th><th>type</th><th>required</th><th>description</th></tr>");
                for (field, property) in properties {
                    body.push_str(&format!(
                        "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                        escape(field),
                        schema_label(property),
                        if required.contains(&field.as_str()) {
                            "yes"
                        } else {
                            "no"
                        },
                        prose(property["description"].as_str().unwrap_or_default()),
                    ));
                }
                body.push_str("</table>");
            }
            body.push_str("</section>");
        }
    }
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} — docs</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><style>{STYLE}</style></head>\
         <body><main>{body}</main></body></html>",
        escape(title)
    )
}

const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;margin:0;color:#1b1f24;background:#fafafa}\
main{max-width:960px;margin:0 auto;padding:24px}\
h2{margin-top:2em;border-bottom:1px solid #ddd}\
section{margin:1.5em 0;padding:0 0 1em}\
table{border-collapse:collapse;width:100%;margin:.6em 0}\
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}\
th{background:#f0f0f0}td p{margin:0}\
code{background:#eef;padding:0 3px;border-radius:3px}.auth{color:#8a5a00}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_lists_every_path_and_needs_nothing_external() {
        let spec: Value = serde_json::from_str(&crate::openapi::openapi_json()).unwrap_or_default();
        let page = render(&spec);
        for path in spec["paths"]
            .as_object()
            .map(|paths| paths.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
        {
            assert!(page.contains(&escape(&path)), "{path}");
        }
        assert!(
            !page.contains("http://") && !page.contains("https://") && !page.contains("<script")
        );
    }
}
