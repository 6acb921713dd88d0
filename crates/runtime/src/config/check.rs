//! Checks a value against its key's kind; the message says what is wrong and what to use.

use super::keys::KeyKind;

/// `None` when `value` is acceptable, otherwise what is wrong with it and what to do.
pub(super) fn check_value(kind: KeyKind, value: &str) -> Option<String> {
    match kind {
        KeyKind::Text => None,
        KeyKind::Url { schemes, example } => match url::Url::parse(value) {
            Ok(url) if schemes.contains(&url.scheme()) && url.has_host() => None,
            Ok(url) => Some(format!(
                "has scheme `{}` or no host; use a {} URL such as {example}",
                url.scheme(),
                schemes.join("/")
            )),
            Err(error) => Some(format!("is not a valid URL ({error}); use an absolute URL such as {example}")),
        },
        KeyKind::SocketAddr => value
            .parse::<std::net::SocketAddr>()
            .is_err()
            .then(|| "is not a socket address; use ip:port such as 127.0.0.1:9101 or 0.0.0.0:9101".to_owned()),
        KeyKind::HostPorts => {
            let valid = value.split(',').map(str::trim).all(|pair| match pair.rsplit_once(':') {
                Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok(),
                None => false,
            });
            (!valid).then(|| "must be comma-separated host:port pairs such as 127.0.0.1:9092".to_owned())
        }
        KeyKind::Duration => humantime::parse_duration(value)
            .err()
            .map(|error| format!("is not a duration ({error}); use e.g. 30s, 5m or 1h")),
        KeyKind::Count { min, max } => match value.trim().parse::<u64>() {
            Ok(number) if (min..=max).contains(&number) => None,
            _ => Some(format!("must be a whole number from {min} to {max}")),
        },
        KeyKind::Fraction => match value.trim().parse::<f64>() {
            Ok(fraction) if fraction > 0.0 && fraction <= 1.0 => None,
            _ => Some("must be a number greater than 0 and at most 1, e.g. 0.97".to_owned()),
        },
        KeyKind::Choice(choices) => {
            (!choices.contains(&value)).then(|| format!("must be one of: {}", choices.join(", ")))
        }
        KeyKind::LogFilter => tracing_subscriber::EnvFilter::builder()
            .parse(value)
            .err()
            .map(|error| format!("is not a tracing filter ({error}); use e.g. `info` or `info,polytape_api=debug`")),
        KeyKind::Name { extra, allow_empty } => {
            let valid = (allow_empty || !value.is_empty())
                && value.chars().all(|c| c.is_ascii_alphanumeric() || extra.contains(c));
            (!valid).then(|| format!("may only contain letters, digits and `{extra}`"))
        }
    }
}
