//! `loadgen`: Warrant's open-loop load generator.
//!
//! It publishes signed intents (a configurable mix of valid and hostile
//! ones, from [`warrant_engine::workload`]) at a target rate, on schedule
//! whatever the target does, and matches every decision back to its
//! intent. Latency runs from each intent's *scheduled* send time to the
//! moment its decision is read, so a stall anywhere shows up as latency
//! instead of quietly slowing the sender (no coordinated omission).
//!
//! - [`collect`]: matching decisions to intents, timing them;
//! - [`target`]: the embedded engine, or ([`kafka`]) a deployment on Kafka;
//! - [`drive`]: a fixed-rate run and the SLO ramp;
//! - [`report`]: text summary, `.hlog`, `.hgrm` and SVG plot.
#![deny(missing_docs)]

pub mod collect;
pub mod drive;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod report;
pub mod target;

pub use drive::{Load, Outcome, Ramp, RampOutcome, Tick, ramp, run};
pub use target::{EmbeddedOptions, TargetSpec};
