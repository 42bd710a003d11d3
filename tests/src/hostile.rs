//! The hostile corpus: intents an attacker on the intents topic, a
//! compromised producer or a broken client could send, each with the deny
//! reason the engine must give it. Committed as bytes in
//! `tests/corpus/hostile/` (written by `cargo run -p warrant-tests
//! --example hostile_corpus`; `tests/tests/hostile.rs` checks the committed
//! files are exactly what this module generates, then runs them through
//! the engine).
//!
//! Everything is deterministic: fixed keys, fixed times (issued
//! 2026-11-01, deadline 2199), fixed nonces. The engine that runs the
//! corpus accepts intents up to 30 years old, so the time-dependent cases
//! keep their meaning until 2056.

use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
use curve25519_dalek::edwards::CompressedEdwardsY;
use curve25519_dalek::scalar::Scalar;
use sha2::{Digest, Sha256, Sha512};
use warrant_schemas::{
    Attr, AttrValue, INTENT_SIGNING_DOMAIN, IntentFields, IntentSigner, encode_intent,
    encode_signed_intent,
};

/// 2026-11-01T00:00:00Z, µs.
pub const ISSUED_US: u64 = 1_793_491_200_000_000;
/// 2199-01-01T00:00:00Z, µs.
pub const DEADLINE_US: u64 = 7_226_582_400_000_000;
/// How old an intent may be for the corpus engine: 30 years.
pub const MAX_AGE_S: u64 = 30 * 365 * 24 * 3600;

/// The trust store of the corpus engine.
pub const TRUST: &str = "\
# The hostile corpus' trust store (tests/src/hostile.rs).
[[key]]
principal = \"svc-a\"
public_key = \"{A}\"
status = \"active\"

[[key]]
principal = \"svc-b\"
public_key = \"{B}\"
status = \"active\"

[[key]]
principal = \"svc-r\"
public_key = \"{R}\"
status = \"revoked\"
";

/// The policy of the corpus engine.
pub const POLICY: &str = "\
# The hostile corpus' policy (tests/src/hostile.rs).
[policy]
name = \"hostile-corpus\"
version = 1

[[rule]]
id = \"deny-refunds\"
effect = \"deny\"
action = \"payments.refund\"

[[rule]]
id = \"allow-transfers\"
effect = \"allow\"
action = \"payments.transfer\"
";

/// Seeds of the corpus' keys: svc-a, svc-b, svc-r (revoked), a stranger.
const SEEDS: [[u8; 32]; 4] = [[0x11; 32], [0x22; 32], [0x33; 32], [0x44; 32]];

fn signer(i: usize) -> IntentSigner {
    IntentSigner::from_seed(SEEDS.get(i).copied().unwrap_or([0; 32]))
}

/// The trust store, filled in.
pub fn trust_toml() -> String {
    TRUST
        .replace("{A}", &hex::encode(signer(0).public_key()))
        .replace("{B}", &hex::encode(signer(1).public_key()))
        .replace("{R}", &hex::encode(signer(2).public_key()))
}

/// One hostile (or control) intent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// File name in the corpus directory.
    pub file: String,
    /// The reason the engine must give (`Reason::variant_name`).
    pub expect: &'static str,
    /// A well-formed control (the baseline the replay reuses), not an
    /// attack.
    pub control: bool,
    /// What it is.
    pub what: &'static str,
    /// The bytes published.
    pub bytes: Vec<u8>,
}

fn id(n: u8) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[0] = n;
    id[15] = 0xc0;
    id
}

const ATTRS: &[Attr<'static>] = &[
    Attr {
        key: "amount",
        value: AttrValue::Int(500),
    },
    Attr {
        key: "currency",
        value: AttrValue::Str("EUR"),
    },
];

/// A well-formed transfer by svc-a, intent `n`.
fn fields(n: u8) -> IntentFields<'static> {
    IntentFields {
        id: id(n),
        principal: "svc-a",
        // What svc-a's signer fills in; other signers overwrite it.
        key_id: warrant_schemas::key_id(&signer(0).public_key()),
        action: "payments.transfer",
        attributes: ATTRS,
        issued_at_us: ISSUED_US,
        deadline_us: DEADLINE_US,
        requested_validity_us: 60_000_000,
        nonce: id(n),
        ..IntentFields::example()
    }
}

/// The signature bytes (R ‖ S) of a signed intent, and its intent bytes.
fn split(signed: &[u8]) -> (Vec<u8>, [u8; 64]) {
    let s = warrant_schemas::open_signed_intent(signed, &warrant_schemas::Limits::default())
        .unwrap_or_else(|e| unreachable_corpus(&e.to_string()));
    (s.intent_bytes.to_vec(), *s.signature)
}

#[expect(clippy::panic, reason = "the generator's own inputs are constants")]
fn unreachable_corpus(e: &str) -> ! {
    panic!("the hostile corpus generator built a bad base intent: {e}")
}

fn with_signature(intent: &[u8], r: &[u8], s: &[u8]) -> Vec<u8> {
    let mut sig = [0u8; 64];
    for (d, v) in sig.iter_mut().zip(r.iter().chain(s)) {
        *d = *v;
    }
    encode_signed_intent(intent, &sig)
}

/// ed25519's secret scalar of a seed (RFC 8032: clamped SHA-512 half).
fn secret_scalar(seed: &[u8; 32]) -> Scalar {
    let h = Sha512::digest(seed);
    let mut a = [0u8; 32];
    a.copy_from_slice(&h[..32]);
    a[0] &= 248;
    a[31] &= 127;
    a[31] |= 64;
    Scalar::from_bytes_mod_order(a)
}

/// A signature of `intent` by seed 0 whose R has a torsion component:
/// `S = r + k·a` with `k = H(R' ‖ A ‖ M)` and `R' = r·B + T`, T of order 8.
/// The cofactored equation holds (`[8][S]B = [8]R' + [8][k]A`), the
/// cofactorless one does not. Warrant's rule is the cofactored one (see
/// `engine/src/verify.rs`): this is valid, and only the secret key's
/// holder can make it.
fn mixed_order_signature(intent: &[u8]) -> Vec<u8> {
    let a = secret_scalar(&SEEDS[0]);
    let public = signer(0).public_key();
    let r = Scalar::from_bytes_mod_order(Sha256::digest(b"hostile corpus nonce").into());
    let big_r = r * ED25519_BASEPOINT_POINT + EIGHT_TORSION[1];
    let r_bytes = big_r.compress().to_bytes();
    let mut h = Sha512::new();
    h.update(r_bytes);
    h.update(public);
    h.update(INTENT_SIGNING_DOMAIN);
    h.update(intent);
    let k = Scalar::from_hash(h);
    let s = r + k * a;
    with_signature(intent, &r_bytes, s.as_bytes())
}

/// `S + L`, little-endian: the same scalar, not canonically encoded.
fn s_plus_l(s: &[u8]) -> Vec<u8> {
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut out = vec![0u8; 32];
    let mut carry = 0u16;
    for ((o, a), b) in out.iter_mut().zip(s).zip(L) {
        let v = u16::from(*a) + u16::from(b) + carry;
        *o = (v & 0xff) as u8;
        carry = v >> 8;
    }
    out
}

/// Every case, in the order they are published.
pub fn cases() -> Vec<Case> {
    let a = signer(0);
    let b = signer(1);
    let revoked = signer(2);
    let stranger = signer(3);
    let mut out = Vec::new();
    let mut add =
        |file: &str, expect: &'static str, control: bool, what: &'static str, bytes: Vec<u8>| {
            out.push(Case {
                file: format!("{:02}-{file}.bin", out.len() + 1),
                expect,
                control,
                what,
                bytes,
            });
        };

    let baseline = a.sign_intent(&fields(1));
    let (intent, sig) = split(&baseline);
    add(
        "valid-baseline",
        "Authorized",
        true,
        "a valid transfer by svc-a (control; its nonce is replayed below)",
        baseline.clone(),
    );

    // Signatures.
    let mut flipped = sig;
    flipped[40] ^= 1;
    add(
        "forged-bit-flip",
        "BadSignature",
        false,
        "one bit of S flipped",
        encode_signed_intent(&intent, &flipped),
    );
    add(
        "forged-zero-signature",
        "BadSignature",
        false,
        "an all-zero signature",
        encode_signed_intent(&intent, &[0; 64]),
    );
    add(
        "s-not-reduced",
        "BadSignature",
        false,
        "S + L: the right scalar, not canonically encoded (malleability)",
        with_signature(&intent, &sig[..32], &s_plus_l(&sig[32..])),
    );
    let mut noncanonical_r = [0xffu8; 32];
    noncanonical_r[0] = 0xee;
    noncanonical_r[31] = 0x7f;
    add(
        "r-not-canonical",
        "BadSignature",
        false,
        "R encoded with y = p + 1 (non-canonical)",
        with_signature(&intent, &noncanonical_r, &sig[32..]),
    );
    let mut identity = [0u8; 32];
    identity[0] = 1;
    add(
        "r-small-order-s-zero",
        "BadSignature",
        false,
        "R the identity (small order), S = 0",
        with_signature(&intent, &identity, &[0; 32]),
    );
    let torsioned = CompressedEdwardsY(sig[..32].try_into().unwrap_or([0; 32]))
        .decompress()
        .map(|r| (r + EIGHT_TORSION[1]).compress().to_bytes())
        .unwrap_or([0; 32]);
    add(
        "r-torsion-added",
        "BadSignature",
        false,
        "an order-8 point added to the baseline's R (what a third party can do to a signature): the challenge changes, the equation fails",
        with_signature(&intent, &torsioned, &sig[32..]),
    );
    add(
        "r-s-swapped",
        "BadSignature",
        false,
        "S ‖ R instead of R ‖ S",
        with_signature(&intent, &sig[32..], &sig[..32]),
    );

    // Fields changed after signing.
    let tampered = encode_intent(&IntentFields {
        attributes: &[
            Attr {
                key: "amount",
                value: AttrValue::Int(50_000),
            },
            Attr {
                key: "currency",
                value: AttrValue::Str("EUR"),
            },
        ],
        ..fields(1)
    });
    add(
        "tampered-amount",
        "BadSignature",
        false,
        "the amount raised after signing",
        encode_signed_intent(&tampered, &sig),
    );
    let tampered = encode_intent(&IntentFields {
        action: "payments.refund",
        ..fields(1)
    });
    add(
        "tampered-action",
        "BadSignature",
        false,
        "the action changed after signing",
        encode_signed_intent(&tampered, &sig),
    );
    let tampered = encode_intent(&IntentFields {
        deadline_us: DEADLINE_US + 1,
        ..fields(1)
    });
    add(
        "tampered-deadline",
        "BadSignature",
        false,
        "the deadline moved after signing",
        encode_signed_intent(&tampered, &sig),
    );
    let tampered = encode_intent(&IntentFields {
        principal: "svc-b",
        ..fields(1)
    });
    add(
        "tampered-principal",
        "UnknownKey",
        false,
        "the principal changed to svc-b after signing: svc-a's key does not sign for svc-b",
        encode_signed_intent(&tampered, &sig),
    );

    // Keys.
    add(
        "another-principals-key",
        "UnknownKey",
        false,
        "svc-a's intent signed with svc-b's key (a compromised producer acting as another)",
        b.sign_intent(&fields(2)),
    );
    add(
        "unknown-key",
        "UnknownKey",
        false,
        "signed by a key the trust store does not hold",
        stranger.sign_intent(&fields(3)),
    );
    add(
        "revoked-key",
        "RevokedKey",
        false,
        "signed by svc-r, whose key is revoked",
        revoked.sign_intent(&IntentFields {
            principal: "svc-r",
            ..fields(4)
        }),
    );

    // Time.
    add(
        "expired",
        "Expired",
        false,
        "issued in 1980",
        a.sign_intent(&IntentFields {
            issued_at_us: 315_532_800_000_000,
            ..fields(5)
        }),
    );
    add(
        "far-future",
        "NotYetValid",
        false,
        "issued in 2200",
        a.sign_intent(&IntentFields {
            issued_at_us: 7_258_118_400_000_000,
            deadline_us: 7_258_118_400_000_000 + 1_000_000,
            ..fields(6)
        }),
    );
    add(
        "deadline-passed",
        "DeadlineExceeded",
        false,
        "its deadline was a day after issue, years ago",
        a.sign_intent(&IntentFields {
            deadline_us: ISSUED_US + 86_400_000_000,
            ..fields(7)
        }),
    );

    // Replay.
    add(
        "replayed-nonce",
        "ReplayedNonce",
        false,
        "a new intent reusing the baseline's nonce",
        a.sign_intent(&IntentFields {
            nonce: id(1),
            ..fields(8)
        }),
    );

    // The boundary of the signature rule: valid, so authorized.
    let own = encode_intent(&fields(13));
    add(
        "r-torsion-by-key-holder",
        "Authorized",
        true,
        "control: R with an order-8 component, made with svc-a's secret key; valid under Warrant's cofactored rule (verify.rs), which only the key holder can exploit",
        mixed_order_signature(&own),
    );

    // Policy.
    add(
        "policy-deny",
        "DenyRule",
        false,
        "a refund, which a deny rule refuses",
        a.sign_intent(&IntentFields {
            action: "payments.refund",
            ..fields(9)
        }),
    );
    add(
        "no-matching-rule",
        "NoMatchingRule",
        false,
        "an action no rule allows",
        a.sign_intent(&IntentFields {
            action: "db.drop",
            ..fields(10)
        }),
    );

    // Buffers.
    let many: Vec<Attr<'static>> = (0..40)
        .map(|_| Attr {
            key: "k",
            value: AttrValue::Int(1),
        })
        .collect();
    add(
        "too-many-attributes",
        "Malformed",
        false,
        "40 attributes (the limit is 32), validly signed",
        a.sign_intent(&IntentFields {
            attributes: &many,
            ..fields(11)
        }),
    );
    let long = "r".repeat(300);
    add(
        "string-too-long",
        "Malformed",
        false,
        "a 300-byte resource (the limit is 256), validly signed",
        a.sign_intent(&IntentFields {
            resource: &long,
            ..fields(12)
        }),
    );
    let mut oversized = baseline.clone();
    oversized.resize(70_000, 0);
    add(
        "oversized",
        "Malformed",
        false,
        "the baseline padded to 70,000 bytes (the limit is 64 KiB)",
        oversized,
    );
    add(
        "truncated",
        "Malformed",
        false,
        "the baseline cut in half",
        baseline
            .get(..baseline.len() / 2)
            .unwrap_or_default()
            .to_vec(),
    );
    add("empty", "Malformed", false, "no bytes", Vec::new());
    let mut noise = Vec::new();
    let mut block: [u8; 32] = Sha256::digest(b"hostile corpus noise").into();
    while noise.len() < 256 {
        noise.extend_from_slice(&block);
        block = Sha256::digest(block).into();
    }
    add(
        "random-bytes",
        "Malformed",
        false,
        "256 random bytes",
        noise,
    );
    let mut wrong_id = baseline.clone();
    if let Some(b) = wrong_id.get_mut(4..8) {
        b.copy_from_slice(b"XXXX");
    }
    add(
        "wrong-file-identifier",
        "Malformed",
        false,
        "the baseline with another file identifier",
        wrong_id,
    );
    let mut root_out = baseline.clone();
    if let Some(b) = root_out.get_mut(..4) {
        b.copy_from_slice(&0x7fff_fff0u32.to_le_bytes());
    }
    add(
        "root-offset-out-of-bounds",
        "Malformed",
        false,
        "the root table offset points past the end",
        root_out,
    );
    add(
        "intent-is-a-signed-intent",
        "Malformed",
        false,
        "type confusion: the signed bytes are themselves a signed intent",
        with_signature(&baseline, &sig[..32], &sig[32..]),
    );
    let mut nested = baseline.clone();
    for _ in 0..20 {
        nested = encode_signed_intent(&nested, &sig);
    }
    add(
        "deeply-nested",
        "Malformed",
        false,
        "signed intents nested 20 deep",
        nested,
    );
    // A field from a newer schema, signed: it might restrict the intent,
    // so an engine that cannot read it must not authorize it.
    let plain = encode_intent(&fields(14));
    let known = warrant_schemas::KNOWN_FIELDS
        .iter()
        .find(|(t, _)| *t == "Intent")
        .map_or(0, |k| k.1);
    let newer = crate::with_wider_vtable(&plain, crate::root_table(&plain), known, true);
    add(
        "unknown-field",
        "Malformed",
        false,
        "a validly signed transfer whose intent sets a field this schema does not have",
        encode_signed_intent(&newer, &a.sign(&newer)),
    );
    out
}

/// The manifest (TOML) listing the cases, as committed.
pub fn manifest(cases: &[Case]) -> String {
    let mut m = String::from(
        "# The hostile corpus: generated by tests/src/hostile.rs\n\
         # (cargo run -p warrant-tests --example hostile_corpus); do not edit.\n\
         # Each case: the file, the reason the engine must give it, what it is.\n",
    );
    for c in cases {
        m.push_str(&format!(
            "\n[[case]]\nfile = \"{}\"\nexpect = \"{}\"\ncontrol = {}\nwhat = \"{}\"\n",
            c.file, c.expect, c.control, c.what
        ));
    }
    m
}
