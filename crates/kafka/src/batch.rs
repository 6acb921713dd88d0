//! Reading a stream consumer in batches: wait for a first record (or the stop signal, or an
//! idle timeout), then take what arrives within a short window, up to a maximum. A stream
//! processor handles the batch's records in order and flushes its outputs once per batch.

use std::time::Duration;

use rdkafka::{
    consumer::{ConsumerContext, StreamConsumer},
    message::BorrowedMessage,
};
use tokio_util::sync::CancellationToken;

/// How a batch ended.
#[derive(Debug)]
pub enum BatchRead<'a> {
    /// The stop signal came before a first record.
    Stopped,
    /// No record within the idle wait.
    Idle,
    /// The records read, in arrival order (consumer errors are logged and skipped).
    Records(Vec<BorrowedMessage<'a>>),
}

/// How long and how much one batch takes.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// Records per batch at most.
    pub max_records: usize,
    /// How long a batch waits for more records after its first.
    pub wait: Duration,
}

/// Reads one batch: the first record within `idle_wait` (or the stop signal), then what
/// arrives within `limits.wait` of it, up to `limits.max_records`.
pub async fn read_batch<'a, C>(
    consumer: &'a StreamConsumer<C>,
    stop: &CancellationToken,
    idle_wait: Duration,
    limits: BatchLimits,
) -> BatchRead<'a>
where
    C: ConsumerContext + 'static,
{
    let first = tokio::select! {
        () = stop.cancelled() => return BatchRead::Stopped,
        received = tokio::time::timeout(idle_wait, consumer.recv()) => received,
    };
    let Ok(first) = first else {
        return BatchRead::Idle;
    };
    let deadline = tokio::time::Instant::now() + limits.wait;
    let mut records = Vec::new();
    let mut next = Some(first);
    while let Some(received) = next.take() {
        match received {
            Ok(message) => records.push(message),
            Err(error) => tracing::warn!(error = %error, "kafka consumer error; continuing"),
        }
        if records.len() < limits.max_records
            && let Ok(received) = tokio::time::timeout_at(deadline, consumer.recv()).await
        {
            next = Some(received);
        }
    }
    BatchRead::Records(records)
}
