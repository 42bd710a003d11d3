//! Fuzzes what an executor does with a decision it received: open it
//! through the limit-checked reader, then run the whole offline check
//! (engine key, Merkle proof, batch signature, digest binding, validity,
//! audience). Any input must give an answer, never a panic, and anything
//! but a genuine signed decision must be refused.
//!
//! Run: `fuzz/run.sh` (bounded), or `cargo fuzz run decision` in `fuzz/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| warrant_tests::fuzz::decision(data));
