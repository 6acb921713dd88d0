//! A reference webhook receiver: verifies each alert's signature and timestamp as
//! README.md ("Webhooks") describes, acts once per `Idempotency-Key`, and prints one line per
//! request. The demo runs it; operators can point a destination at it to try their setup.

use std::{
    collections::{HashSet, VecDeque},
    net::SocketAddr,
    path::PathBuf,
    process::ExitCode,
    sync::{Arc, Mutex},
};

use axum::{
    Router,
    body::Bytes,
    extract::{DefaultBodyLimit, State},
    http::{HeaderMap, StatusCode},
    routing::{get, post},
};
use clap::Parser;
use polytape_signals::webhook::{IDEMPOTENCY_KEY, SIGNATURE, TIMESTAMP, verify};

/// Polytape's reference webhook receiver: verifies signatures and prints the alerts
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Address to listen on; alerts are POSTed to /hook
    #[arg(long, default_value = "127.0.0.1:9107")]
    listen: SocketAddr,
    /// File holding the destination's secret (the `secret` of its `[[destination]]`)
    #[arg(long, value_name = "FILE")]
    secret_file: PathBuf,
    /// Refuse timestamps further than this from the receiver's clock (replays), in seconds
    #[arg(long, default_value_t = 300)]
    tolerance_seconds: i64,
}

/// Keys remembered as handled; the oldest are forgotten first.
const REMEMBERED_KEYS: usize = 100_000;

struct Receiver {
    secret: String,
    tolerance_ms: i64,
    handled: Mutex<(HashSet<String>, VecDeque<String>)>,
}

async fn hook(
    State(receiver): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let key = header(IDEMPOTENCY_KEY);
    let Ok(timestamp_ms) = header(TIMESTAMP).parse::<i64>() else {
        println!("refused: no timestamp (key {key:?})");
        return StatusCode::BAD_REQUEST;
    };
    if (polytape_model::now_ms() - timestamp_ms).abs() > receiver.tolerance_ms {
        println!("refused: timestamp {timestamp_ms} too far from now (key {key:?})");
        return StatusCode::UNAUTHORIZED;
    }
    if !verify(&receiver.secret, timestamp_ms, &body, &header(SIGNATURE)) {
        println!("refused: bad signature (key {key:?})");
        return StatusCode::UNAUTHORIZED;
    }
    let parsed = serde_json::from_slice::<serde_json::Value>(&body).ok();
    // The signature covers the body, not the header: a JSON body names its signal, and a key
    // that differs from it is a replay under another key.
    if let Some(signal_id) = parsed
        .as_ref()
        .and_then(|value| value["signal_id"].as_str())
        && signal_id != key
    {
        println!("refused: key {key:?} is not the body's signal {signal_id:?}");
        return StatusCode::BAD_REQUEST;
    }
    let first = {
        let mut handled = receiver
            .handled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (keys, order) = &mut *handled;
        let first = keys.insert(key.clone());
        if first {
            order.push_back(key.clone());
            if order.len() > REMEMBERED_KEYS
                && let Some(oldest) = order.pop_front()
            {
                keys.remove(&oldest);
            }
        }
        first
    };
    if !first {
        println!("already handled {key} (a retry or a replay): acknowledged, not acted on");
        return StatusCode::OK;
    }
    let explanation = parsed
        .and_then(|value| {
            value["explanation"]
                .as_str()
                .or_else(|| value["text"].as_str())
                .or_else(|| value["content"].as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
    println!(
        "{} alert {key} (signature verified): {explanation}",
        polytape_model::time::utc_seconds_text(polytape_model::now_ms())
    );
    StatusCode::OK
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let secret = match std::fs::read_to_string(&cli.secret_file) {
        Ok(secret) => secret.trim().to_owned(),
        Err(error) => {
            eprintln!(
                "polytape-webhook-receiver: cannot read {}: {error}",
                cli.secret_file.display()
            );
            return ExitCode::from(2);
        }
    };
    let receiver = Arc::new(Receiver {
        secret,
        tolerance_ms: cli.tolerance_seconds.saturating_mul(1000),
        handled: Mutex::new((HashSet::new(), VecDeque::new())),
    });
    let app = Router::new()
        .route("/hook", post(hook))
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(DefaultBodyLimit::max(1024 * 1024))
        .with_state(receiver);
    let listener = match tokio::net::TcpListener::bind(cli.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!(
                "polytape-webhook-receiver: cannot listen on {}: {error}",
                cli.listen
            );
            return ExitCode::from(2);
        }
    };
    println!("listening on http://{}/hook", cli.listen);
    let shutdown = async {
        tokio::signal::ctrl_c().await.ok();
    };
    #[cfg(unix)]
    let shutdown = async {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(terminate) => terminate,
                Err(_) => return shutdown.await,
            };
        tokio::select! {
            () = shutdown => {}
            _ = terminate.recv() => {}
        }
    };
    match axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("polytape-webhook-receiver: {error}");
            ExitCode::FAILURE
        }
    }
}
