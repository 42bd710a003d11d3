//! Fuzzes the path every intent takes first: open the `SignedIntent`
//! through the limit-checked reader, then verify its signature with the
//! strict verifier (single and as a batch of one, which must agree).
//!
//! Run: `fuzz/run.sh` (bounded), or `cargo fuzz run signed_intent` in `fuzz/`.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use warrant_engine::verify::{PublicKey, SigItem, verify_batch, verify_one};
use warrant_schemas::{INTENT_SIGNING_DOMAIN, IntentSigner, Limits, open_signed_intent};

/// The key the seed corpus was signed with; fuzzed intents that name it
/// reach the equation, others still exercise every pre-check.
fn key() -> &'static (PublicKey, [u8; 16]) {
    static KEY: OnceLock<(PublicKey, [u8; 16])> = OnceLock::new();
    KEY.get_or_init(|| {
        let signer = IntentSigner::from_seed([0x42; 32]);
        (PublicKey::from_bytes(signer.public_key()), signer.key_id())
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(opened) = open_signed_intent(data, &Limits::default()) else {
        return;
    };
    // Touch every field the engine reads.
    let intent = opened.intent;
    let _ = (
        intent.principal(),
        intent.action(),
        intent.resource(),
        intent.environment(),
        intent.region(),
    );
    let _ = (
        intent.id(),
        intent.nonce(),
        intent.parent_id(),
        intent.payload_digest(),
        intent.deadline_us(),
    );
    if let Some(attrs) = intent.attributes() {
        for a in attrs {
            let _ = (
                a.key(),
                a.kind(),
                a.int_value(),
                a.str_value(),
                a.bool_value(),
            );
        }
    }
    let (k, id) = key();
    let fallback;
    let key = if intent.key_id().0 == *id {
        k
    } else {
        // An arbitrary key from the input: most are invalid points.
        let mut bytes = [0u8; 32];
        for (d, s) in bytes.iter_mut().zip(opened.signature.iter().rev()) {
            *d = *s;
        }
        fallback = PublicKey::from_bytes(bytes);
        &fallback
    };
    let item = SigItem {
        key,
        prefix: INTENT_SIGNING_DOMAIN,
        message: opened.intent_bytes,
        signature: opened.signature,
    };
    let single = verify_one(&item);
    let mut out = [Ok(())];
    verify_batch(&[item], &mut out);
    assert_eq!(
        single, out[0],
        "batch of one disagrees with single verification"
    );
});
