//! The Warrant engine.
//!
//! Nothing runs until it holds a warrant: the engine verifies signed
//! execution intents, evaluates policy and issues verifiable decisions. This
//! crate holds the parts in the order an intent meets them:
//!
//! - [`verify`]: strict, batch-consistent ed25519 verification of intent
//!   signatures, parallel over rayon, with bisection to find bad signatures;
//! - [`backend`]: which SIMD backend curve25519-dalek runs on this CPU;
//! - [`merkle`]: RFC 9162 Merkle trees and inclusion proofs;
//! - [`seal`]: the engine key, Merkle-batched decision signatures, and the
//!   offline verification an executor runs before it acts;
//! - [`transport`]: the `Source`/`Sink` traits the Kafka connectors will
//!   implement, and an embedded, partitioned, bounded transport;
//! - [`replay`]: per-partition nonce memory with bounded size;
//! - [`lineage`]: the per-partition hash-chained lineage log, its signed
//!   checkpoints and its verifier;
//! - [`trust`]: which keys sign for which principal (active, rotating,
//!   revoked);
//! - [`pipeline`]: the engine itself, joining all of the above into stages
//!   that fail closed;
//! - [`workload`]: the signed intents `warrant demo` and `loadgen` publish;
//! - [`demo`]: `warrant demo`, the whole lifecycle checked end to end;
//! - [`audit`]: the auditor's check of a deployment's topics (`warrant audit`).
//!
//! Wire formats and intent signing live in `warrant-schemas`.
#![deny(missing_docs)]

pub mod audit;
pub mod backend;
pub mod demo;
pub mod lineage;
mod link;
pub mod merkle;
pub mod pipeline;
pub mod replay;
pub mod seal;
pub mod transport;
pub mod trust;
pub mod verify;
pub mod workload;
