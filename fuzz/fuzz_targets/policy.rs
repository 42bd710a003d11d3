//! Fuzzes the policy parser and compiler: any text compiles or gives an
//! error (never a panic), and a policy that compiles decides a set of
//! requests exactly as the reference evaluator (rule by rule, no tables)
//! does.
//!
//! Run: `fuzz/run.sh` (bounded), or `cargo fuzz run policy` in `fuzz/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| warrant_tests::fuzz::policy(data));
