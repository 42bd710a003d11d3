//! The speccheck edge cases and crafted torsion cases: batch and single
//! verification agree on every input, whatever else is in the batch.
//!
//! Verdict per speccheck case under Warrant's rule (see the module docs of
//! `warrant_engine::verify`), with what makes the case an edge case
//! ("Taming the many EdDSAs", Chalkias et al., table 5):
//!
//! | case | edge case                                   | dalek `verify_strict` | Warrant      |
//! |------|---------------------------------------------|-----------------------|--------------|
//! | 0    | small-order A and R, S = 0                  | reject                | reject: key has small order |
//! | 1    | small-order A, mixed-order R                | reject                | reject: key has small order |
//! | 2    | mixed-order A, small-order R                | reject                | reject: key not in prime-order subgroup |
//! | 3    | mixed-order A and R, passes both equations  | **accept**            | reject: key not in prime-order subgroup |
//! | 4    | mixed-order A and R, cofactored only        | reject                | reject: key not in prime-order subgroup |
//! | 5    | mixed-order A, cofactored only (pre-reduced k) | reject             | reject: key not in prime-order subgroup |
//! | 6    | S > L                                       | reject                | reject: S not canonical |
//! | 7    | S much larger than L                        | reject                | reject: S not canonical |
//! | 8    | non-canonical R (and mixed-order A)         | reject                | reject: key not in prime-order subgroup |
//! | 9    | non-canonical R (and mixed-order A)         | reject                | reject: key not in prime-order subgroup |
//! | 10   | non-canonical A                             | reject                | reject: key not canonical |
//! | 11   | non-canonical A                             | reject                | reject: key not canonical |
//!
//! Warrant rejects all twelve. Case 3 is the one difference from
//! `verify_strict`: its key has a torsion component, which no honest key
//! generator produces and Warrant refuses when the key is prepared.

use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
use curve25519_dalek::scalar::Scalar;
use sha2::{Digest, Sha512};
use warrant_engine::verify::{
    KeyError, PublicKey, SigError, SigItem, verify_all, verify_batch, verify_one,
};
use warrant_tests::{Owned, speccheck_cases};

fn expected(case: usize) -> Result<(), SigError> {
    use KeyError::*;
    use SigError::*;
    match case {
        0 | 1 => Err(Key(SmallOrder)),
        2..=5 | 8 | 9 => Err(Key(MixedOrder)),
        6 | 7 => Err(ScalarNotCanonical),
        10 | 11 => Err(Key(NonCanonical)),
        _ => panic!("no case {case}"),
    }
}

fn item(c: &warrant_tests::Decoded) -> SigItem<'_> {
    SigItem {
        key: &c.key,
        prefix: b"",
        message: &c.message,
        signature: &c.signature,
    }
}

/// A small deterministic generator, so that a failure reproduces exactly.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn fillers(n: usize, salt: u64) -> Vec<Owned> {
    (0..n)
        .map(|i| Owned::valid((i % 13) as u64, format!("filler {salt} {i}").into_bytes()))
        .collect()
}

#[test]
fn there_are_twelve_cases() {
    assert_eq!(speccheck_cases().len(), 12);
}

#[test]
fn each_case_alone_single_and_batch() {
    for c in speccheck_cases() {
        let single = verify_one(&item(&c));
        assert_eq!(single, expected(c.case), "case {} single", c.case);
        let mut out = [Ok(())];
        verify_batch(&[item(&c)], &mut out);
        assert_eq!(out[0], single, "case {} as a batch of one", c.case);
    }
}

#[test]
fn each_case_mixed_into_random_batches() {
    let cases = speccheck_cases();
    let mut rng = Rng(0x5eed_cafe_f00d_0001);
    let pool = fillers(160, 1);
    for round in 0..240 {
        // A random batch of valid signatures with 1 to 4 speccheck cases
        // dropped in at random positions (every case appears in 20+ batches).
        let size = 4 + rng.below(120);
        let mut items: Vec<SigItem<'_>> = (0..size)
            .map(|_| pool[rng.below(pool.len())].item())
            .collect();
        let mut planted = vec![round % cases.len()];
        for _ in 0..rng.below(4) {
            planted.push(rng.below(cases.len()));
        }
        for &case in &planted {
            let at = rng.below(items.len() + 1);
            items.insert(at, item(&cases[case]));
        }
        let mut out = vec![Ok(()); items.len()];
        verify_batch(&items, &mut out);
        let parallel = verify_all(&items);
        for (i, it) in items.iter().enumerate() {
            let single = verify_one(it);
            assert_eq!(out[i], single, "round {round}, position {i}");
            assert_eq!(
                parallel[i], single,
                "round {round}, position {i} (parallel)"
            );
        }
        let rejected = out.iter().filter(|r| r.is_err()).count();
        assert_eq!(
            rejected,
            planted.len(),
            "round {round}: only the planted cases fail"
        );
    }
}

/// Signs like ed25519, but adds a torsion point to R: a signature that only
/// the key holder can make, valid under the cofactored equation and invalid
/// under the cofactorless one.
fn torsion_signature(seed: [u8; 32], message: &[u8], torsion: usize) -> (PublicKey, [u8; 64]) {
    let h = Sha512::digest(seed);
    let mut a_bytes = [0u8; 32];
    a_bytes.copy_from_slice(&h[..32]);
    a_bytes[0] &= 248;
    a_bytes[31] &= 127;
    a_bytes[31] |= 64;
    let a = Scalar::from_bytes_mod_order(a_bytes);
    let public = (ED25519_BASEPOINT_POINT * a).compress().to_bytes();
    let r = Scalar::from_bytes_mod_order_wide(&Sha512::digest([&h[32..], message].concat()).into());
    let big_r = ED25519_BASEPOINT_POINT * r + EIGHT_TORSION[torsion];
    let r_bytes = big_r.compress().to_bytes();
    let k = Scalar::from_bytes_mod_order_wide(
        &Sha512::new()
            .chain_update(r_bytes)
            .chain_update(public)
            .chain_update(warrant_schemas::INTENT_SIGNING_DOMAIN)
            .chain_update(message)
            .finalize()
            .into(),
    );
    let s = r + k * a;
    let mut signature = [0u8; 64];
    signature[..32].copy_from_slice(&r_bytes);
    signature[32..].copy_from_slice(s.as_bytes());
    (PublicKey::from_bytes(public), signature)
}

#[test]
fn crafted_edge_cases_agree_in_any_batch() {
    // Each crafted case with the verdict Warrant's rule gives it.
    let msg = b"crafted".to_vec();
    let mut crafted: Vec<(Owned, Result<(), SigError>)> = Vec::new();
    for t in [1usize, 2, 4] {
        // Torsion of order 8, 4 and 2 in R: the cofactored equation holds.
        let (key, signature) = torsion_signature([t as u8; 32], &msg, t);
        crafted.push((
            Owned {
                key,
                message: msg.clone(),
                signature,
            },
            Ok(()),
        ));
        // Same, S off by one: the equation fails.
        let (key, mut signature) = torsion_signature([t as u8; 32], &msg, t);
        let s = Scalar::from_canonical_bytes(signature[32..].try_into().unwrap()).unwrap()
            + Scalar::ONE;
        signature[32..].copy_from_slice(s.as_bytes());
        crafted.push((
            Owned {
                key,
                message: msg.clone(),
                signature,
            },
            Err(SigError::Equation),
        ));
    }
    // R of small order (the identity), canonical S.
    let mut ok = Owned::valid(99, msg.clone());
    let mut identity = [0u8; 32];
    identity[0] = 1;
    ok.signature[..32].copy_from_slice(&identity);
    crafted.push((ok, Err(SigError::SmallOrderR)));
    // R = y of p (non-canonical encoding of y = 0).
    let mut nc = Owned::valid(98, msg.clone());
    let mut p = [0xffu8; 32];
    p[0] = 0xed;
    p[31] = 0x7f;
    nc.signature[..32].copy_from_slice(&p);
    crafted.push((nc, Err(SigError::NonCanonicalR)));
    // S = L exactly.
    let mut s_is_l = Owned::valid(97, msg.clone());
    let l = Scalar::ZERO - Scalar::ONE; // L - 1
    let mut l_bytes = *l.as_bytes();
    l_bytes[0] += 1;
    s_is_l.signature[32..].copy_from_slice(&l_bytes);
    crafted.push((s_is_l, Err(SigError::ScalarNotCanonical)));

    for (c, want) in &crafted {
        assert_eq!(verify_one(&c.item()), *want);
    }
    // The torsion-in-R signatures are exactly where a cofactorless verifier
    // differs: dalek's verify_strict rejects what the cofactored rule accepts.
    let (key, signature) = torsion_signature([1; 32], &msg, 1);
    let dalek = ed25519_dalek::VerifyingKey::from_bytes(key.as_bytes()).unwrap();
    let mut m = warrant_schemas::INTENT_SIGNING_DOMAIN.to_vec();
    m.extend_from_slice(&msg);
    assert!(
        dalek
            .verify_strict(&m, &ed25519_dalek::Signature::from_bytes(&signature))
            .is_err()
    );

    let pool = fillers(120, 2);
    let mut rng = Rng(0x5eed_cafe_f00d_0002);
    for round in 0..200 {
        let size = 2 + rng.below(100);
        let mut items: Vec<SigItem<'_>> = (0..size)
            .map(|_| pool[rng.below(pool.len())].item())
            .collect();
        for _ in 0..1 + rng.below(4) {
            let (c, _) = &crafted[rng.below(crafted.len())];
            let at = rng.below(items.len() + 1);
            items.insert(at, c.item());
        }
        let mut out = vec![Ok(()); items.len()];
        verify_batch(&items, &mut out);
        for (i, it) in items.iter().enumerate() {
            assert_eq!(out[i], verify_one(it), "round {round}, position {i}");
        }
    }
}

#[test]
fn committed_copy_matches_shared_testdata() {
    // tests/data holds a copy so that the suite runs from a bare clone; when
    // the shared folder is beside the repo, the copy must not have drifted.
    let shared =
        warrant_tests::workspace_root().join("../shared/testdata/ed25519-speccheck-cases.json");
    match std::fs::read_to_string(&shared) {
        Ok(text) => assert_eq!(
            text,
            warrant_tests::SPECCHECK_JSON,
            "tests/data copy is stale"
        ),
        Err(_) => eprintln!(
            "note: {} not present; using the committed copy",
            shared.display()
        ),
    }
}
