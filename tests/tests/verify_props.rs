//! Property test: random batches with random corruptions. Every
//! per-signature result of batch verification (one thread and parallel)
//! equals single verification, and only uncorrupted entries pass.

use proptest::prelude::*;
use warrant_engine::verify::{PublicKey, SigItem, verify_all, verify_batch, verify_one};
use warrant_tests::signer;

#[derive(Debug, Clone)]
enum Corruption {
    None,
    FlipSignatureBit(usize),
    FlipKeyBit(usize),
    FlipMessageBit(usize),
    SwapKeyWithNext,
    Duplicate,
}

fn corruption() -> impl Strategy<Value = Corruption> {
    prop_oneof![
        6 => Just(Corruption::None),
        2 => (0usize..512).prop_map(Corruption::FlipSignatureBit),
        1 => (0usize..256).prop_map(Corruption::FlipKeyBit),
        1 => any::<usize>().prop_map(Corruption::FlipMessageBit),
        1 => Just(Corruption::SwapKeyWithNext),
        1 => Just(Corruption::Duplicate),
    ]
}

struct Entry {
    key: PublicKey,
    message: Vec<u8>,
    signature: [u8; 64],
    corrupted: bool,
}

fn build(spec: &[(u8, Vec<u8>, Corruption)]) -> Vec<Entry> {
    let mut entries: Vec<Entry> = Vec::new();
    let keys: Vec<[u8; 32]> = (0..8u64).map(|i| signer(i).public_key()).collect();
    for (i, (principal, message, c)) in spec.iter().enumerate() {
        let p = u64::from(*principal % 8);
        let s = signer(p);
        let mut key = keys[p as usize];
        let mut message = message.clone();
        let mut signature = s.sign(&message);
        let mut corrupted = true;
        match c {
            Corruption::None => corrupted = false,
            Corruption::FlipSignatureBit(bit) => signature[bit / 8] ^= 1 << (bit % 8),
            Corruption::FlipKeyBit(bit) => key[bit / 8] ^= 1 << (bit % 8),
            Corruption::FlipMessageBit(bit) => {
                let bit = bit % (message.len() * 8);
                message[bit / 8] ^= 1 << (bit % 8);
            }
            Corruption::SwapKeyWithNext => key = keys[(p as usize + 1 + i % 7) % 8],
            Corruption::Duplicate => {
                // A valid entry repeated verbatim: both copies stay valid.
                corrupted = false;
                entries.push(Entry {
                    key: PublicKey::from_bytes(key),
                    message: message.clone(),
                    signature,
                    corrupted,
                });
            }
        }
        entries.push(Entry {
            key: PublicKey::from_bytes(key),
            message,
            signature,
            corrupted,
        });
    }
    entries
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn batch_equals_single_under_corruption(
        spec in prop::collection::vec(
            (any::<u8>(), prop::collection::vec(any::<u8>(), 1..200), corruption()),
            1..80,
        )
    ) {
        let entries = build(&spec);
        let items: Vec<SigItem<'_>> = entries
            .iter()
            .map(|e| SigItem {
                key: &e.key,
                prefix: warrant_schemas::INTENT_SIGNING_DOMAIN,
                message: &e.message,
                signature: &e.signature,
            })
            .collect();
        let mut out = vec![Ok(()); items.len()];
        verify_batch(&items, &mut out);
        let parallel = verify_all(&items);
        for (i, (item, entry)) in items.iter().zip(&entries).enumerate() {
            let single = verify_one(item);
            prop_assert_eq!(out[i], single, "entry {}", i);
            prop_assert_eq!(parallel[i], single, "entry {} (parallel)", i);
            // A corruption can only ever turn a pass into a fail. (A bit flip
            // can in principle leave a valid signature only for an ed25519
            // forgery, so corrupted entries must fail.)
            prop_assert_eq!(single.is_ok(), !entry.corrupted, "entry {}", i);
        }
    }
}
