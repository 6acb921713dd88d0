//! The alerter: reads the signals topic, decides with [`Alerting`] which destinations each
//! signal alerts under the current rules, delivers through [`webhook::deliver`], records every
//! delivery in `alert_deliveries`, dead-letters failed ones, and checkpoints its decisions with
//! the signal positions they cover.
//!
//! - **Rules** are read from ClickHouse every `alert_rules_refresh` (2 s) by a second task,
//!   which also fires the test requests the API's admin port stores; a rule change therefore
//!   takes effect within that interval, without a restart.
//! - **At least once, one key.** A batch's deliveries end (delivered, or failed at the
//!   deadline) and are recorded before the checkpoint that moves past them; a crash in between
//!   delivers those signals again after the restart, under the same `Idempotency-Key` (the
//!   signal id).
//! - **Start.** Without a checkpoint the alerter starts at the signals topic's end: a fresh
//!   deployment does not alert on the history it loads.
//! - **Head of line.** A batch waits for its slowest delivery (at most
//!   `alert_delivery_deadline`); deliveries within a batch run concurrently.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use backon::Retryable as _;
use futures::{FutureExt as _, StreamExt as _};
use polytape_clickhouse::alerts::AlertStore;
use polytape_codec::{RecordDecoder, SchemaRegistryClient};
use polytape_kafka::{
    BatchLimits, BatchRead, CheckpointStore, HighWatermarks, RecordProducer, SharedProducer,
    create_consumer,
};
use polytape_model::{
    DeadLetter, Market, Signal, SignalKind, SignalValue, Topic, TopicNames,
    alerts::{AlertDelivery, AlertRule, DeliveryStatus},
};
use polytape_runtime::{ReadinessHandle, metrics::InternalEvent as _};
use rdkafka::{
    Message as _,
    consumer::{Consumer as _, StreamConsumer},
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{
    SignalsConfig,
    alerting::{Alerting, AlertingState, PlannedAlert},
    destinations::Destinations,
    error::SignalsError,
    events::{AlertDelivered, Retried, RulesLoaded},
    pipeline::{assignment, retry_policy},
    webhook::{self, Alert, RetryPolicy},
};

const BATCH: BatchLimits = BatchLimits {
    max_records: 1_000,
    wait: Duration::from_millis(20),
};
/// Deliveries of one batch in flight at once.
const CONCURRENT_DELIVERIES: usize = 32;
/// Test fires older than this are not fired any more.
const TEST_FIRE_TTL_MS: i64 = 10 * 60 * 1000;
const SOURCE: &str = "signals-alerts";

/// The consumer group (per topic prefix).
pub fn group_id(names: &TopicNames) -> String {
    format!("{}polytape-alerts", names.prefix())
}

/// The checkpoint topic.
pub fn checkpoint_topic(names: &TopicNames) -> String {
    format!("{}polytape.alerts.checkpoints.v1", names.prefix())
}

#[derive(Debug, Default, Deserialize)]
struct SavedState {
    positions: Vec<(String, i32, i64)>,
    alerting: AlertingState,
}

#[derive(Serialize)]
struct SavedStateRef<'a> {
    positions: Vec<(String, i32, i64)>,
    alerting: &'a AlertingState,
}

/// What a delivery needs besides the signal.
#[derive(Clone)]
struct Delivery {
    client: reqwest::Client,
    destinations: Arc<Destinations>,
    policy: RetryPolicy,
}

impl Delivery {
    /// Delivers `signal` to one destination and says how it went.
    async fn deliver(
        &self,
        signal: &Signal,
        recorded_ms: i64,
        planned: &PlannedAlert,
        test: bool,
    ) -> AlertDelivery {
        let outcome = match self.destinations.get(&planned.destination_id) {
            Some(destination) => {
                webhook::deliver(
                    &self.client,
                    destination,
                    Alert {
                        signal,
                        alert_rule_id: &planned.rule_id,
                        alert_rule_version: planned.rule_version,
                    },
                    self.policy,
                    polytape_model::now_ms,
                )
                .await
            }
            None => webhook::DeliveryOutcome {
                status: DeliveryStatus::Failed,
                attempts: 0,
                elapsed: Duration::ZERO,
                response_code: None,
                error: Some(format!(
                    "destination {:?} is not declared in alert_destinations_file",
                    planned.destination_id
                )),
            },
        };
        let delivery = AlertDelivery {
            signal_id: signal.signal_id.clone(),
            destination_id: planned.destination_id.clone(),
            signal_kind: signal.kind,
            subject: signal.subject.clone(),
            rule_id: planned.rule_id.clone(),
            rule_version: planned.rule_version,
            status: outcome.status,
            attempts: outcome.attempts,
            signal_recorded_ms: recorded_ms,
            finished_ms: polytape_model::now_ms(),
            delivery_ms: i64::try_from(outcome.elapsed.as_millis()).unwrap_or(i64::MAX),
            response_code: outcome.response_code,
            error: outcome.error,
            test,
        };
        AlertDelivered {
            delivery: &delivery,
        }
        .emit();
        delivery
    }
}

/// Records deliveries, retrying what may succeed later.
async fn record(store: &AlertStore, deliveries: &[AlertDelivery]) -> Result<(), SignalsError> {
    (|| store.write_deliveries(deliveries))
        .retry(retry_policy())
        .when(|error| error.is_retryable())
        .notify(|error, retry_in| {
            Retried {
                what: "record deliveries",
                error,
                retry_in,
            }
            .emit();
        })
        .await
        .map_err(SignalsError::from)
}

/// The rules every `refresh`, published to `rules`; fires pending test requests. Returns when
/// `stop` is cancelled. A ClickHouse outage keeps the last rules (and is logged).
async fn refresh_rules(
    store: AlertStore,
    delivery: Delivery,
    rules: watch::Sender<Option<Arc<Vec<AlertRule>>>>,
    refresh: Duration,
    stop: CancellationToken,
) -> Result<(), SignalsError> {
    // Test ids fired, with their request times (forgotten after the test's time to live).
    let mut fired: HashMap<String, i64> = HashMap::new();
    // Said once when reading starts failing and once when it recovers, not every interval.
    let mut failing = false;
    let mut ticker = tokio::time::interval(refresh);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            _ = ticker.tick() => {}
        }
        let current = match store.current_rules().await {
            Ok(mut current) => {
                if std::mem::take(&mut failing) {
                    tracing::info!("alert rules readable again");
                }
                current.sort_by(|left, right| left.rule_id.cmp(&right.rule_id));
                current
            }
            Err(error) => {
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(error = %error, "cannot read the alert rules (is the schema migrated? the sink and the API migrate it); keeping the last ones and trying again");
                }
                continue;
            }
        };
        RulesLoaded { rules: &current }.emit();
        let current = Arc::new(current);
        rules.send_replace(Some(current.clone()));

        let pending = match store
            .pending_tests(polytape_model::now_ms() - TEST_FIRE_TTL_MS)
            .await
        {
            Ok(pending) => pending,
            Err(error) => {
                tracing::warn!(error = %error, "cannot read pending test fires");
                continue;
            }
        };
        let now_ms = polytape_model::now_ms();
        fired.retain(|_, requested_at| *requested_at >= now_ms - TEST_FIRE_TTL_MS);
        for test in pending {
            // A test of a rule not read yet waits for the next refresh.
            let Some(rule) = current.iter().find(|rule| rule.rule_id == test.rule_id) else {
                continue;
            };
            if fired
                .insert(test.test_id.clone(), test.requested_at)
                .is_some()
            {
                continue;
            }
            // Fired on a task of its own: a slow destination must not hold rule changes back.
            tokio::spawn(fire_test(
                store.clone(),
                delivery.clone(),
                rule.clone(),
                test,
            ));
        }
    }
}

/// Delivers a test fire to each of the rule's destinations and records the outcomes; a
/// recording that fails is logged (the API then answers that the test is still pending).
async fn fire_test(
    store: AlertStore,
    delivery: Delivery,
    rule: AlertRule,
    test: polytape_clickhouse::alerts::AlertTestRow,
) {
    let signal = test_signal(&test.test_id, &rule, test.requested_at);
    let planned: Vec<PlannedAlert> = rule
        .spec
        .destinations
        .iter()
        .map(|destination_id| PlannedAlert {
            destination_id: destination_id.clone(),
            rule_id: rule.rule_id.clone(),
            rule_version: rule.version,
        })
        .collect();
    let deliveries = futures::future::join_all(
        planned
            .iter()
            .map(|planned| delivery.deliver(&signal, test.requested_at, planned, true)),
    )
    .await;
    tracing::info!(test_id = %test.test_id, rule_id = %test.rule_id, deliveries = deliveries.len(), "test fire done");
    if let Err(error) = record(&store, &deliveries).await {
        tracing::warn!(test_id = %test.test_id, error = %error, "cannot record a test fire's deliveries");
    }
}

/// The made-up signal a test fire delivers: of the rule's first kind, about `test`.
fn test_signal(test_id: &str, rule: &AlertRule, requested_at_ms: i64) -> Signal {
    Signal {
        signal_id: test_id.to_owned(),
        kind: rule
            .spec
            .kinds
            .first()
            .copied()
            .unwrap_or(SignalKind::PriceMove),
        rule_id: rule.rule_id.clone(),
        rule_version: rule.version,
        subject: "test".to_owned(),
        condition_ids: Vec::new(),
        token_ids: Vec::new(),
        event_id: None,
        window_start_ms: requested_at_ms,
        window_end_ms: Some(requested_at_ms),
        thresholds: Vec::new(),
        inputs: vec![SignalValue {
            name: "test".to_owned(),
            value: "a test fire from the admin API; no market event".to_owned(),
        }],
        links: Vec::new(),
    }
}

/// One signal of the batch with what was decided for it.
struct Decided {
    signal: Signal,
    payload: Vec<u8>,
    partition: i32,
    offset: i64,
    recorded_ms: i64,
    planned: Vec<PlannedAlert>,
}

/// Runs the alerter until `stop`; checkpoints at the end.
pub async fn run(
    config: SignalsConfig,
    stop: CancellationToken,
    ready: ReadinessHandle,
) -> Result<(), SignalsError> {
    let brokers = config.kafka.kafka_brokers.clone();
    let names = TopicNames::with_prefix(config.kafka.topic_prefix.clone());
    let signal_partitions =
        polytape_kafka::input_partitions(&brokers, &names, &[Topic::Signals]).await?;
    let market_partitions =
        polytape_kafka::input_partitions(&brokers, &names, &[Topic::Markets]).await?;
    let signals_topic = names.name(Topic::Signals);
    let markets_topic = names.name(Topic::Markets);

    let store = AlertStore::new(polytape_clickhouse::client(&config.clickhouse));
    let registry = SchemaRegistryClient::new(&config.kafka.schema_registry_url)?;
    let producer = SharedProducer::connect(&brokers)?;
    let dead: RecordProducer<DeadLetter> =
        RecordProducer::register(producer.clone(), &registry, &names).await?;
    let signal_decoder: RecordDecoder<Signal> = RecordDecoder::new(registry.clone());
    let market_decoder: RecordDecoder<Market> = RecordDecoder::new(registry.clone());
    let delivery = Delivery {
        // A redirect would turn the POST into a bodyless GET whose 200 would read as
        // delivered: a 3xx is a refusal.
        client: reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| {
                SignalsError::Alerts(format!("cannot build the HTTP client: {error}"))
            })?,
        destinations: Arc::new(config.destinations()),
        policy: RetryPolicy {
            deadline: config.alert_delivery_deadline,
            ..RetryPolicy::default()
        },
    };
    tracing::info!(
        destinations = delivery.destinations.len(),
        "alert destinations declared"
    );

    let (rules_sender, mut rules) = watch::channel(None);
    let refresher_stop = stop.child_token();
    let refresher = tokio::spawn(refresh_rules(
        store.clone(),
        delivery.clone(),
        rules_sender,
        config.alert_rules_refresh,
        refresher_stop.clone(),
    ));
    // Stops the refresher however this function ends.
    let _stop_refresher = refresher_stop.clone().drop_guard();

    let (mut checkpoints, restored) = CheckpointStore::open(
        &brokers,
        checkpoint_topic(&names),
        "polytape-alerts-checkpoint-reader",
        producer.clone(),
    )
    .await?;
    let saved: Option<SavedState> = match restored {
        Some(restored) => Some(serde_json::from_slice(&restored.payload).map_err(|error| {
            SignalsError::Checkpoint(format!(
                "alerts checkpoint generation {} does not parse: {error}",
                restored.generation
            ))
        })?),
        None => None,
    };
    let watermarks = HighWatermarks::start(
        &brokers,
        signal_partitions
            .iter()
            .chain(&market_partitions)
            .map(|(topic, _, partition)| (topic.clone(), *partition))
            .collect(),
        stop.clone(),
    )
    .await?;
    let consumer = create_consumer(&brokers, &group_id(&names), "polytape-alerts")?;
    let first_start = saved.is_none();
    let (mut positions, mut alerting): (HashMap<(String, i32), i64>, Alerting) = match saved {
        Some(saved) => (
            saved
                .positions
                .into_iter()
                .map(|(topic, partition, offset)| ((topic, partition), offset))
                .collect(),
            Alerting::restore(saved.alerting),
        ),
        // A first start alerts from now on, not on the topic's history; a partition whose
        // end is unknown stops the start (retried by the restart) rather than start at its
        // beginning.
        None => {
            let mut ends = HashMap::new();
            for (topic, _, partition) in &signal_partitions {
                let Some(high) = watermarks.high(topic, *partition) else {
                    return Err(SignalsError::Alerts(format!(
                        "the end of {topic}/{partition} is unknown; cannot fix where alerting starts"
                    )));
                };
                ends.insert((topic.clone(), *partition), high);
            }
            (ends, Alerting::default())
        }
    };
    if first_start {
        // Where alerting begins is made durable before anything is decided: a crash before
        // the first regular checkpoint must not move the start to a later end and skip the
        // signals in between.
        // Not yet assigned: no consumer-group offsets to store.
        checkpoint(&mut checkpoints, &positions, &alerting, None).await?;
        tracing::info!("alerter starts at the signals topic's end (first start)");
    }

    // Nothing is decided before the rules are known.
    let mut current_rules = loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            changed = rules.changed() => {
                if changed.is_err() {
                    return finish_refresher(refresher).await;
                }
                if let Some(current) = rules.borrow_and_update().clone() {
                    break current;
                }
            }
        }
    };

    // The markets (for tag scopes) up to their ends first, so no signal is judged against
    // tags not read yet.
    let mut tags: HashMap<String, Vec<String>> = HashMap::new();
    let mut market_positions: HashMap<(String, i32), i64> = HashMap::new();
    consumer
        .assign(&assignment(&market_partitions, &HashMap::new())?)
        .map_err(|source| SignalsError::Client {
            context: "assign the markets partitions".to_owned(),
            source,
        })?;
    let market_ends = watermarks.ends(&market_partitions);
    while market_ends.iter().any(|(topic, partition, high)| {
        market_positions
            .get(&(topic.clone(), *partition))
            .copied()
            .unwrap_or(0)
            < *high
    }) {
        let records =
            match polytape_kafka::read_batch(&consumer, &stop, BATCH.wait * 50, BATCH).await {
                BatchRead::Stopped => return Ok(()),
                BatchRead::Idle => continue,
                BatchRead::Records(records) => records,
            };
        for message in &records {
            market_positions.insert(
                (message.topic().to_owned(), message.partition()),
                message.offset() + 1,
            );
            learn_tags(
                &mut tags,
                &market_decoder,
                message.payload().unwrap_or_default(),
            )
            .await?;
        }
    }
    // The markets from where the start read them to, the signals from their checkpoint.
    let every_partition: Vec<(String, Topic, i32)> = market_partitions
        .iter()
        .chain(&signal_partitions)
        .cloned()
        .collect();
    let mut every_position = positions.clone();
    every_position.extend(market_positions);
    consumer
        .assign(&assignment(&every_partition, &every_position)?)
        .map_err(|source| SignalsError::Client {
            context: "assign the alerter's partitions".to_owned(),
            source,
        })?;
    ready.set_ready(true);
    tracing::info!(
        rules = current_rules.len(),
        markets = tags.len(),
        "alerter started"
    );

    let mut last_checkpoint = Instant::now();
    let mut dirty = false;
    loop {
        if rules.has_changed().unwrap_or(false)
            && let Some(latest) = rules.borrow_and_update().clone()
        {
            current_rules = latest;
        }
        let records = match polytape_kafka::read_batch(
            &consumer,
            &stop,
            config.signals_checkpoint_interval,
            BATCH,
        )
        .await
        {
            BatchRead::Stopped => break,
            BatchRead::Idle => Vec::new(),
            BatchRead::Records(records) => records,
        };
        if refresher.is_finished() {
            return finish_refresher(refresher).await;
        }
        let mut decided: Vec<Decided> = Vec::new();
        let mut dead_letters: Vec<DeadLetter> = Vec::new();
        for message in &records {
            let payload = message.payload().unwrap_or_default();
            let recorded_ms = message.timestamp().to_millis().unwrap_or(0);
            if message.topic() == markets_topic {
                learn_tags(&mut tags, &market_decoder, payload).await?;
                continue;
            }
            if message.topic() != signals_topic {
                continue;
            }
            positions.insert(
                (message.topic().to_owned(), message.partition()),
                message.offset() + 1,
            );
            dirty = true;
            match signal_decoder.decode(payload).await {
                Ok(signal) => {
                    let planned = alerting.plan(&signal, &current_rules, |market| {
                        tags.get(market).map(Vec::as_slice)
                    });
                    if !planned.is_empty() {
                        decided.push(Decided {
                            signal,
                            payload: payload.to_vec(),
                            partition: message.partition(),
                            offset: message.offset(),
                            recorded_ms,
                            planned,
                        });
                    }
                }
                Err(error) if error.is_retryable() => return Err(error.into()),
                Err(error) => dead_letters.push(DeadLetter::from_message(
                    SOURCE,
                    message.topic(),
                    message.partition(),
                    message.offset(),
                    format!("undecodable signal: {error}"),
                    payload.to_vec(),
                    recorded_ms,
                )),
            }
        }
        // Boxed one by one: a stream mapped through a closure over borrowed items is not
        // `Send` for every lifetime the spawned task needs.
        let mut jobs = Vec::new();
        for item in &decided {
            for planned in &item.planned {
                let delivery = &delivery;
                jobs.push(
                    async move {
                        let outcome = delivery
                            .deliver(&item.signal, item.recorded_ms, planned, false)
                            .await;
                        (item, outcome)
                    }
                    .boxed(),
                );
            }
        }
        let delivered: Vec<(&Decided, AlertDelivery)> = futures::stream::iter(jobs)
            .buffer_unordered(CONCURRENT_DELIVERIES)
            .collect()
            .await;
        for (item, outcome) in &delivered {
            if outcome.status == DeliveryStatus::Failed {
                dead_letters.push(DeadLetter::from_message(
                    SOURCE,
                    &signals_topic,
                    item.partition,
                    item.offset,
                    format!(
                        "alert to {} failed after {} attempts: {}",
                        outcome.destination_id,
                        outcome.attempts,
                        outcome.error.as_deref().unwrap_or("no answer")
                    ),
                    item.payload.clone(),
                    outcome.finished_ms,
                ));
            }
        }
        let deliveries: Vec<AlertDelivery> = delivered
            .into_iter()
            .map(|(_, delivery)| delivery)
            .collect();
        record(&store, &deliveries).await?;
        if !dead_letters.is_empty() {
            (|| dead.send_all(&dead_letters))
                .retry(retry_policy())
                .when(|error| error.is_retryable())
                .await?;
        }
        if dirty
            && (!deliveries.is_empty()
                || last_checkpoint.elapsed() >= config.signals_checkpoint_interval)
        {
            checkpoint(&mut checkpoints, &positions, &alerting, Some(&consumer)).await?;
            last_checkpoint = Instant::now();
            dirty = false;
        }
    }
    if dirty {
        checkpoint(&mut checkpoints, &positions, &alerting, Some(&consumer)).await?;
    }
    if let Err(error) = polytape_kafka::commit_stored_offsets(&consumer) {
        tracing::warn!(error = %error, "could not commit the alerter's offsets at shutdown");
    }
    refresher_stop.cancel();
    finish_refresher(refresher).await
}

/// Keeps a market's tags (for tag scopes). An undecodable market only costs its tags (the
/// signals service dead-letters it); a registry outage is an error (retried by the restart).
async fn learn_tags(
    tags: &mut HashMap<String, Vec<String>>,
    decoder: &RecordDecoder<Market>,
    payload: &[u8],
) -> Result<(), SignalsError> {
    if payload.is_empty() {
        return Ok(());
    }
    match decoder.decode(payload).await {
        Ok(market) => {
            tags.insert(market.condition_id, market.tags);
            Ok(())
        }
        Err(error) if error.is_retryable() => Err(error.into()),
        Err(_) => Ok(()),
    }
}

/// The refresher's end: its error, if it stopped on one.
async fn finish_refresher(
    refresher: tokio::task::JoinHandle<Result<(), SignalsError>>,
) -> Result<(), SignalsError> {
    match refresher.await {
        Ok(result) => result,
        Err(error) => Err(SignalsError::Alerts(format!(
            "the rule refresher ended: {error}"
        ))),
    }
}

async fn checkpoint(
    store: &mut CheckpointStore,
    positions: &HashMap<(String, i32), i64>,
    alerting: &Alerting,
    consumer: Option<&StreamConsumer>,
) -> Result<(), SignalsError> {
    let mut listed: Vec<(String, i32, i64)> = positions
        .iter()
        .map(|((topic, partition), offset)| (topic.clone(), *partition, *offset))
        .collect();
    listed.sort();
    let state = alerting.state();
    let payload = serde_json::to_vec(&SavedStateRef {
        positions: listed.clone(),
        alerting: &state,
    })
    .map_err(|error| {
        SignalsError::Checkpoint(format!("cannot encode the alerts state: {error}"))
    })?;
    crate::pipeline::write_checkpoint(store, &payload).await?;
    if let Some(consumer) = consumer
        && let Err(error) = polytape_kafka::store_processed(consumer, listed)
    {
        tracing::warn!(error = %error, "could not store the alerter's offsets in the consumer group");
    }
    Ok(())
}
