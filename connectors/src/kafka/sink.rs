//! Decisions and lineage out: an idempotent producer.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use warrant_engine::transport::{OutBatch, Sink, TransportError};

use super::{KafkaConfig, KafkaError};

/// Counts failed deliveries of the batch in flight.
#[derive(Default)]
struct Deliveries {
    failed: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut last) = self.last_error.lock() {
                *last = Some(e.to_string());
            }
        }
    }
}

/// Writes decisions (keyed by intent id) and lineage (on the partition of
/// the intents it logs) as a [`Sink`]: `send` returns once the broker has
/// acknowledged every record of the batch.
///
/// A broker that is down or unreachable is not an error: librdkafka keeps
/// every record queued and retries without end (`message.timeout.ms=0`;
/// the idempotent producer keeps them in order, without duplicates). After
/// `timeout` without acknowledgement `send` returns
/// [`TransportError::Unavailable`]; the engine then reports itself not
/// ready, commits nothing, and calls `send` again with the same batch,
/// which goes on waiting for the records already queued rather than
/// producing them twice. A record the broker refuses (say, too large, or
/// not authorized) fails the batch for good.
pub struct KafkaSink {
    producer: BaseProducer<Deliveries>,
    decisions: String,
    lineage: String,
    timeout: Duration,
    /// Records of the batch in progress already queued (a batch left
    /// unacknowledged by a timed-out `send` is resumed, never re-queued).
    queued: usize,
    /// Size of the batch in progress, to check a resumed one is the same.
    in_progress: Option<usize>,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("decisions", &self.decisions)
            .field("lineage", &self.lineage)
            .finish_non_exhaustive()
    }
}

impl KafkaSink {
    /// An idempotent producer (`acks=all`) for the decisions and lineage
    /// topics. `send` reports the broker unavailable after `timeout`
    /// without acknowledgement (and keeps retrying).
    pub fn new(config: &KafkaConfig, timeout: Duration) -> Result<Self, KafkaError> {
        let mut client = config.client(&[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("message.timeout.ms", "0"),
        ])?;
        // A default a user may override: send at once. The engine already
        // hands over whole batches, so librdkafka's own wait (5 ms by
        // default) would only add to every batch's latency, twice (lineage,
        // then decisions).
        if !config.properties.iter().any(|(k, _)| k == "linger.ms") {
            client.set("linger.ms", "0");
        }
        let producer = client.create_with_context(Deliveries::default())?;
        Ok(KafkaSink {
            producer,
            decisions: config.decisions_topic.clone(),
            lineage: config.lineage_topic.clone(),
            timeout,
            queued: 0,
            in_progress: None,
        })
    }

    /// Queues one record, waiting (until `deadline`) while librdkafka's
    /// queue is full. `Ok(false)`: still full at the deadline.
    fn produce(
        &self,
        mut record: BaseRecord<'_, [u8], [u8]>,
        deadline: Instant,
    ) -> Result<bool, TransportError> {
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(true),
                Err((RdError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    if Instant::now() >= deadline {
                        return Ok(false);
                    }
                    self.producer.poll(Duration::from_millis(1));
                    record = r;
                }
                Err((e, _)) => return Err(TransportError::Failed(e.to_string())),
            }
        }
    }

    /// Queues the records of `batch` not queued yet, lineage first: the
    /// decisions only once every lineage record is acknowledged, so no
    /// decision an executor can read is missing from the lineage log, even
    /// if the engine is killed between the two. `Ok(false)` if the
    /// deadline came first.
    fn queue(&mut self, batch: &OutBatch, deadline: Instant) -> Result<bool, TransportError> {
        let n = batch.lineage.len();
        while self.queued < n + batch.decisions.len() {
            let record = if let Some((partition, bytes)) = batch.lineage.get(self.queued) {
                let p = i32::try_from(*partition).map_err(|_| {
                    TransportError::Failed(format!("lineage partition {partition}"))
                })?;
                BaseRecord::to(&self.lineage)
                    .partition(p)
                    .payload(&bytes[..])
            } else {
                let Some((id, bytes)) = batch.decisions.get(self.queued - n) else {
                    break;
                };
                if self.queued == n && !self.acknowledged(deadline)? {
                    return Ok(false);
                }
                BaseRecord::to(&self.decisions)
                    .key(&id[..])
                    .payload(&bytes[..])
            };
            if !self.produce(record, deadline)? {
                return Ok(false);
            }
            self.queued += 1;
        }
        self.acknowledged(deadline)
    }

    /// Waits until every queued record is acknowledged: `Ok(false)` if the
    /// deadline came first, an error if the broker refused any.
    fn acknowledged(&self, deadline: Instant) -> Result<bool, TransportError> {
        // Serve delivery reports in short polls (`flush` polls in 100 ms
        // steps: a floor under every batch).
        while self.producer.in_flight_count() > 0 {
            if Instant::now() >= deadline {
                return Ok(false);
            }
            self.producer.poll(Duration::from_millis(1));
        }
        let ctx = self.producer.context();
        let failed = ctx.failed.load(Ordering::SeqCst);
        if failed > 0 {
            let last = ctx
                .last_error
                .lock()
                .ok()
                .and_then(|l| l.clone())
                .unwrap_or_default();
            // Records may have been written in part: resending the batch
            // would duplicate lineage records, so this is final; nothing
            // was committed, and a restarted engine decides them again.
            return Err(TransportError::Failed(format!(
                "{failed} records refused by the broker: {last}"
            )));
        }
        Ok(true)
    }
}

impl Sink for KafkaSink {
    fn send(&mut self, batch: &OutBatch) -> Result<(), TransportError> {
        let deadline = Instant::now() + self.timeout;
        let size = batch.decisions.len() + batch.lineage.len();
        match self.in_progress {
            Some(s) if s != size => {
                return Err(TransportError::Failed(format!(
                    "a batch of {size} records sent while one of {s} is still unacknowledged"
                )));
            }
            Some(_) => {}
            None => {
                self.producer.context().failed.store(0, Ordering::SeqCst);
                self.in_progress = Some(size);
                self.queued = 0;
            }
        }
        let unavailable = |this: &Self, what: &str| {
            TransportError::Unavailable(format!(
                "{what} after {:?} ({} records in flight; retrying)",
                this.timeout,
                this.producer.in_flight_count()
            ))
        };
        match self.queue(batch, deadline) {
            Ok(true) => {
                self.in_progress = None;
                Ok(())
            }
            Ok(false) => Err(unavailable(self, "not acknowledged")),
            Err(e) => {
                self.in_progress = None;
                Err(e)
            }
        }
    }
}
