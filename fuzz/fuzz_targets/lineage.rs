//! Fuzzes the auditor's path: a lineage log file (length-prefixed records
//! and checkpoints) split and verified, and each frame opened as a record
//! and as a checkpoint. Any input gives an answer, never a panic; nothing
//! the fuzzer builds verifies with a checkpoint (it cannot sign one).
//!
//! Run: `fuzz/run.sh` (bounded), or `cargo fuzz run lineage` in `fuzz/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| warrant_tests::fuzz::lineage(data));
