//! Where intents go and decisions come from: the embedded engine, in this
//! process, or a Warrant deployment on Kafka.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use warrant_engine::pipeline::{Config, Engine, StatsSnapshot};
use warrant_engine::seal::EngineKey;
use warrant_engine::transport::embedded::Topic;
use warrant_engine::transport::{OutBatch, Sink, TransportError};
use warrant_engine::trust::TrustStore;
use warrant_policy::{Policy, PolicyStore};

use crate::collect::Collector;

/// A system under load.
pub trait Target {
    /// Publishes intent `index` under `key` (its principal). May block
    /// while the target pushes back; the wait counts as latency.
    fn publish(&mut self, index: u64, key: &str, bytes: Vec<u8>) -> Result<(), String>;

    /// Returns once everything published has left this process.
    fn flush(&mut self) -> Result<(), String>;

    /// Stops the target; called once the decisions are in (or the drain
    /// timed out).
    fn finish(self: Box<Self>) -> Result<Finished, String>;
}

/// What a target reports when it stops.
#[derive(Debug, Default)]
pub struct Finished {
    /// The embedded engine's own counters, when it ran in this process.
    pub engine: Option<StatsSnapshot>,
}

/// Which target, and its settings.
#[derive(Debug, Clone)]
pub enum TargetSpec {
    /// The engine in this process, on the embedded transport.
    Embedded(Box<EmbeddedOptions>),
    /// A Warrant deployment on Kafka.
    #[cfg(feature = "kafka")]
    Kafka(crate::kafka::KafkaOptions),
}

impl TargetSpec {
    /// Its name in reports.
    pub fn name(&self) -> &'static str {
        match self {
            TargetSpec::Embedded(_) => "embedded",
            #[cfg(feature = "kafka")]
            TargetSpec::Kafka(_) => "kafka",
        }
    }

    /// Starts it, delivering decisions to `collector`.
    pub fn start(
        &self,
        collector: Arc<Collector>,
        principals: usize,
    ) -> Result<Box<dyn Target>, String> {
        match self {
            TargetSpec::Embedded(o) => Ok(Box::new(Embedded::start(o, collector, principals)?)),
            #[cfg(feature = "kafka")]
            TargetSpec::Kafka(o) => Ok(Box::new(crate::kafka::KafkaTarget::start(o, collector)?)),
        }
    }
}

/// The embedded engine's settings.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// Partitions of the embedded intents topic.
    pub partitions: u32,
    /// Records each partition holds before publishing blocks.
    pub partition_capacity: usize,
    /// Engine settings (`partitions` is set from above).
    pub engine: Config,
    /// A policy file or directory; `None`: the example payments policy
    /// the mix is built for.
    pub policy: Option<std::path::PathBuf>,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            partitions: 4,
            partition_capacity: 65_536,
            engine: Config::default(),
            policy: None,
        }
    }
}

/// Hands decisions to the collector as the engine's sink acknowledges them.
struct CollectSink(Arc<Collector>);

impl Sink for CollectSink {
    fn send(&mut self, batch: &OutBatch) -> Result<(), TransportError> {
        let now = Instant::now();
        for (_, bytes) in &batch.decisions {
            self.0.decision(bytes, now);
        }
        Ok(())
    }
}

/// The engine in this process, with a fresh key, the generated principals'
/// trust store and the example policy.
pub struct Embedded {
    topic: Topic,
    engine: Engine,
}

impl Embedded {
    /// Starts an engine for `principals` generated principals.
    pub fn start(
        opts: &EmbeddedOptions,
        collector: Arc<Collector>,
        principals: usize,
    ) -> Result<Embedded, String> {
        let policy = match &opts.policy {
            Some(path) => {
                Policy::load(path).map_err(|e| format!("policy {}: {e}", path.display()))?
            }
            None => Policy::from_sources(&[("payments.toml", warrant_engine::demo::POLICY)])
                .map_err(|e| format!("the example policy does not compile: {e}"))?,
        };
        let trust: TrustStore =
            warrant_engine::workload::trust_store(principals).map_err(|e| e.to_string())?;
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| format!("no randomness for the engine key: {e}"))?;
        let store = Arc::new(PolicyStore::new());
        store.install(policy);
        let topic = Topic::new(opts.partitions, opts.partition_capacity);
        let engine = Engine::start(
            Config {
                partitions: opts.partitions,
                ..opts.engine.clone()
            },
            topic.consumer(),
            CollectSink(collector),
            EngineKey::from_seed(seed),
            Arc::new(ArcSwap::from_pointee(trust)),
            store,
        )
        .map_err(|e| e.to_string())?;
        Ok(Embedded { topic, engine })
    }
}

impl Target for Embedded {
    fn publish(&mut self, _index: u64, key: &str, bytes: Vec<u8>) -> Result<(), String> {
        loop {
            match self.topic.publish(key.as_bytes(), bytes.clone()) {
                Ok(_) => return Ok(()),
                // A full partition: the engine is behind. Wait; the time
                // is charged to the intent as latency.
                Err(TransportError::Unavailable(_)) => {
                    if let Some(e) = self.engine.failure() {
                        return Err(format!("the engine stopped: {e}"));
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err(e) => return Err(format!("cannot publish: {e}")),
            }
        }
    }

    fn flush(&mut self) -> Result<(), String> {
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<Finished, String> {
        self.topic.close();
        let stats = self.engine.join().map_err(|e| e.to_string())?;
        Ok(Finished {
            engine: Some(stats),
        })
    }
}
