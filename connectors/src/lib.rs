//! Connectors between Warrant's engine and the outside world.
//!
//! - [`kafka`] (feature `kafka`, on by default): a [`Source`] reading
//!   intents in a consumer group and a [`Sink`] writing decisions and
//!   lineage records, over librdkafka.
//!
//! [`Source`]: warrant_engine::transport::Source
//! [`Sink`]: warrant_engine::transport::Sink
#![deny(missing_docs)]

#[cfg(feature = "kafka")]
pub mod kafka;
