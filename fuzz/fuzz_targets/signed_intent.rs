//! Fuzzes the path every intent takes first: open the `SignedIntent`
//! through the limit-checked reader, then verify its signature with the
//! strict verifier (single and as a batch of one, which must agree).
//!
//! Run: `fuzz/run.sh` (bounded), or `cargo fuzz run signed_intent` in `fuzz/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| warrant_tests::fuzz::signed_intent(data));
