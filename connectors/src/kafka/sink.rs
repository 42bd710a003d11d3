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
pub struct KafkaSink {
    producer: BaseProducer<Deliveries>,
    decisions: String,
    lineage: String,
    timeout: Duration,
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
    /// topics. `send` waits at most `timeout` for acknowledgements.
    pub fn new(config: &KafkaConfig, timeout: Duration) -> Result<Self, KafkaError> {
        // librdkafka gives up on a record after `message.timeout.ms`: no
        // later than `send` does, so nothing of a failed batch is still
        // queued (and delivered twice) when the engine gives up on it.
        let ms = timeout.as_millis().clamp(1, 900_000).to_string();
        let producer = config
            .client(&[
                ("enable.idempotence", "true"),
                ("acks", "all"),
                ("message.timeout.ms", ms.as_str()),
            ])?
            .create_with_context(Deliveries::default())?;
        Ok(KafkaSink {
            producer,
            decisions: config.decisions_topic.clone(),
            lineage: config.lineage_topic.clone(),
            timeout,
        })
    }

    /// Queues one record, waiting (until `deadline`) while librdkafka's
    /// queue is full.
    fn produce(
        &self,
        mut record: BaseRecord<'_, [u8], [u8]>,
        deadline: Instant,
    ) -> Result<(), TransportError> {
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((RdError::MessageProduction(RDKafkaErrorCode::QueueFull), r))
                    if Instant::now() < deadline =>
                {
                    self.producer.poll(Duration::from_millis(1));
                    record = r;
                }
                Err((e, _)) => return Err(TransportError::Failed(e.to_string())),
            }
        }
    }
}

impl Sink for KafkaSink {
    fn send(&mut self, batch: &OutBatch) -> Result<(), TransportError> {
        let deadline = Instant::now() + self.timeout;
        let ctx = self.producer.context();
        ctx.failed.store(0, Ordering::SeqCst);
        for (id, bytes) in &batch.decisions {
            self.produce(
                BaseRecord::to(&self.decisions)
                    .key(&id[..])
                    .payload(&bytes[..]),
                deadline,
            )?;
        }
        for (partition, bytes) in &batch.lineage {
            let p = i32::try_from(*partition)
                .map_err(|_| TransportError::Failed(format!("lineage partition {partition}")))?;
            self.produce(
                BaseRecord::to(&self.lineage)
                    .partition(p)
                    .payload(&bytes[..]),
                deadline,
            )?;
        }
        // Wait for every acknowledgement, serving delivery reports in short
        // polls (`flush` polls in 100 ms steps: a floor under every batch).
        while self.producer.in_flight_count() > 0 {
            if Instant::now() >= deadline {
                // Records may still be written later: final, not retryable
                // (a resend could duplicate lineage records).
                return Err(TransportError::Failed(format!(
                    "{} records not acknowledged within {:?}",
                    self.producer.in_flight_count(),
                    self.timeout
                )));
            }
            self.producer.poll(Duration::from_millis(1));
        }
        let failed = ctx.failed.load(Ordering::SeqCst);
        if failed > 0 {
            let last = ctx
                .last_error
                .lock()
                .ok()
                .and_then(|l| l.clone())
                .unwrap_or_default();
            // Records may have been written partly: resending the batch
            // would duplicate lineage records, so this is final; nothing
            // was committed, and a restarted engine decides them again.
            return Err(TransportError::Failed(format!(
                "{failed} records not acknowledged: {last}"
            )));
        }
        Ok(())
    }
}
