//! Wire formats: round trips of every root table, and malformed or hostile
//! buffers (truncated, random, wrong identifier, over limits, oversized
//! vectors, too deep) each give an error, never a panic.

use proptest::prelude::*;
use warrant_schemas::wire::{self, Reason, Verdict};
use warrant_schemas::*;

fn signed_example() -> Vec<u8> {
    warrant_tests::signer(1).sign_intent(&IntentFields::example())
}

#[test]
fn intent_round_trip() {
    let parent = [9u8; 16];
    let attrs = [
        Attr {
            key: "amount",
            value: AttrValue::Int(-5),
        },
        Attr {
            key: "currency",
            value: AttrValue::Str("CHF"),
        },
        Attr {
            key: "urgent",
            value: AttrValue::Bool(true),
        },
    ];
    let fields = IntentFields {
        parent_id: Some(parent),
        attributes: &attrs,
        ..IntentFields::example()
    };
    let signer = warrant_tests::signer(3);
    let buf = signer.sign_intent(&fields);
    let opened = open_signed_intent(&buf, &Limits::default()).unwrap();
    let i = opened.intent;
    assert_eq!(i.format_version(), FORMAT_VERSION);
    assert_eq!(i.id().0, fields.id);
    assert_eq!(i.principal(), fields.principal);
    assert_eq!(i.key_id().0, signer.key_id());
    assert_eq!(i.action(), fields.action);
    assert_eq!(i.resource(), fields.resource);
    assert_eq!(i.environment(), fields.environment);
    assert_eq!(i.region(), fields.region);
    assert_eq!(i.issued_at_us(), fields.issued_at_us);
    assert_eq!(i.deadline_us(), fields.deadline_us);
    assert_eq!(i.requested_validity_us(), fields.requested_validity_us);
    assert_eq!(i.nonce().0, fields.nonce);
    assert_eq!(i.parent_id().map(|p| p.0), Some(parent));
    assert_eq!(i.payload_digest().0, fields.payload_digest);
    let got: Vec<_> = i
        .attributes()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a.key(),
                a.kind(),
                a.int_value(),
                a.str_value(),
                a.bool_value(),
            )
        })
        .collect();
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].2, -5);
    assert_eq!(got[1].3, Some("CHF"));
    assert!(got[2].4);
    // The signature covers the domain prefix and exactly the nested bytes.
    assert_eq!(opened.signature, &signer.sign(opened.intent_bytes));
    // The nested intent opens on its own too.
    assert!(open_intent(opened.intent_bytes, &Limits::default()).is_ok());
}

#[test]
fn decision_lineage_checkpoint_round_trip() {
    let proof = [[1u8; 32], [2u8; 32]];
    let d = DecisionFields {
        intent_id: [1; 16],
        intent_digest: [2; 32],
        verdict: Verdict::Authorize,
        reason: Reason::Authorized,
        rule_id: "allow-eu-payments",
        policy_hash: [3; 32],
        policy_version: 7,
        issued_at_us: 10,
        valid_until_us: 20,
        audience: "executor-eu",
        engine_key_id: [4; 16],
        lineage_partition: 3,
        lineage_sequence: 99,
        batch_root: [5; 32],
        leaf_index: 1,
        batch_size: 4,
        proof: &proof,
        batch_signature: [6; 64],
    };
    let buf = encode_decision(&d);
    let o = open_decision(&buf, &Limits::default()).unwrap();
    assert_eq!(o.verdict(), Verdict::Authorize);
    assert_eq!(o.reason(), Reason::Authorized);
    assert_eq!(o.rule_id(), Some("allow-eu-payments"));
    assert_eq!(o.audience(), Some("executor-eu"));
    assert_eq!(o.lineage_sequence(), 99);
    assert_eq!(
        o.proof().unwrap().iter().map(|h| h.0).collect::<Vec<_>>(),
        proof.to_vec()
    );
    assert_eq!(o.batch_signature().0, [6; 64]);

    let l = LineageFields {
        partition: 3,
        sequence: 99,
        prev_hash: [7; 32],
        decision_digest: sha256(&buf),
        intent_id: [1; 16],
        parent_id: None,
        verdict: Verdict::Deny,
        reason: Reason::ReplayedNonce,
        issued_at_us: 10,
        replay: None,
        intent_digest: [5; 32],
        valid_until_us: 0,
    };
    let lb = encode_lineage_record(&l);
    let lo = open_lineage_record(&lb, &Limits::default()).unwrap();
    assert_eq!(lo.intent_digest().map(|d| d.0), Some([5; 32]));
    assert_eq!(lo.valid_until_us(), 0);
    assert_eq!(lo.decision_digest().0, sha256(&buf));
    assert_eq!(lo.reason(), Reason::ReplayedNonce);
    assert!(lo.parent_id().is_none());
    assert!(lo.nonce_key().is_none());
    let kept = encode_lineage_record(&LineageFields {
        replay: Some(([3; 16], 77)),
        ..l
    });
    let ko = open_lineage_record(&kept, &Limits::default()).unwrap();
    assert_eq!(
        (ko.nonce_key().map(|k| k.0), ko.remember_until_us()),
        (Some([3; 16]), 77)
    );

    let c = CheckpointFields {
        origin: "warrant.lineage/3",
        size: 100,
        root: [8; 32],
        issued_at_us: 11,
        engine_key_id: [4; 16],
        signature: [9; 64],
        frontier: &[[1; 32], [2; 32], [3; 32]],
    };
    let cb = encode_checkpoint(&c);
    let co = open_checkpoint(&cb, &Limits::default()).unwrap();
    assert_eq!(co.origin(), "warrant.lineage/3");
    assert_eq!(co.size(), 100);
    let frontier: Vec<[u8; 32]> = co.frontier().unwrap().iter().map(|h| h.0).collect();
    assert_eq!(frontier, [[1; 32], [2; 32], [3; 32]]);
    // Left out, it reads as absent (checkpoints written before the field).
    let old = encode_checkpoint(&CheckpointFields { frontier: &[], ..c });
    assert!(
        open_checkpoint(&old, &Limits::default())
            .unwrap()
            .frontier()
            .is_none()
    );
}

#[test]
fn a_missing_verdict_reads_as_deny() {
    // Build a Decision with the generated API and no verdict or reason field
    // at all: it must read as a deny, so the format itself fails closed.
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let (id, digest, key, root, sig) = (
        wire::Id128([1; 16]),
        wire::Hash256([2; 32]),
        wire::Id128([3; 16]),
        wire::Hash256([4; 32]),
        wire::Signature64([5; 64]),
    );
    let d = wire::Decision::create(
        &mut fbb,
        &wire::DecisionArgs {
            format_version: FORMAT_VERSION,
            intent_id: Some(&id),
            intent_digest: Some(&digest),
            engine_key_id: Some(&key),
            batch_root: Some(&root),
            batch_size: 1,
            batch_signature: Some(&sig),
            ..Default::default()
        },
    );
    fbb.finish(d, Some(DECISION_IDENTIFIER));
    let opened = open_decision(fbb.finished_data(), &Limits::default()).unwrap();
    assert_eq!(opened.verdict(), Verdict::Deny);
    assert_eq!(opened.reason(), Reason::Unspecified);
}

#[test]
fn unknown_enum_values_and_out_of_range_leaves_are_errors() {
    let base = DecisionFields {
        intent_id: [1; 16],
        intent_digest: [2; 32],
        verdict: Verdict::Authorize,
        reason: Reason::Authorized,
        rule_id: "",
        policy_hash: [0; 32],
        policy_version: 0,
        issued_at_us: 0,
        valid_until_us: 0,
        audience: "",
        engine_key_id: [0; 16],
        lineage_partition: 0,
        lineage_sequence: 0,
        batch_root: [0; 32],
        leaf_index: 0,
        batch_size: 1,
        proof: &[],
        batch_signature: [0; 64],
    };
    assert!(open_decision(&encode_decision(&base), &Limits::default()).is_ok());
    let bad_verdict = DecisionFields {
        verdict: Verdict(7),
        ..base
    };
    assert_eq!(
        open_decision(&encode_decision(&bad_verdict), &Limits::default()).unwrap_err(),
        WireError::UnknownEnum {
            field: "verdict",
            value: 7
        }
    );
    let bad_reason = DecisionFields {
        reason: Reason(999),
        ..base
    };
    assert_eq!(
        open_decision(&encode_decision(&bad_reason), &Limits::default()).unwrap_err(),
        WireError::UnknownEnum {
            field: "reason",
            value: 999
        }
    );
    let bad_leaf = DecisionFields {
        leaf_index: 1,
        ..base
    };
    assert_eq!(
        open_decision(&encode_decision(&bad_leaf), &Limits::default()).unwrap_err(),
        WireError::LeafOutOfRange { index: 1, size: 1 }
    );
}

#[test]
fn a_stray_string_on_an_integer_attribute_is_an_error() {
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let key = fbb.create_string("amount");
    let stray = fbb.create_string("x".repeat(10_000).as_str());
    let attr = wire::Attribute::create(
        &mut fbb,
        &wire::AttributeArgs {
            key: Some(key),
            kind: wire::AttrKind::Int,
            int_value: 5,
            str_value: Some(stray),
            bool_value: false,
        },
    );
    let attrs = fbb.create_vector(&[attr]);
    let strs: Vec<_> = ["p", "a", "r", "e", "g"]
        .iter()
        .map(|s| fbb.create_string(s))
        .collect();
    let (id, digest) = (wire::Id128([1; 16]), wire::Hash256([2; 32]));
    let root = wire::Intent::create(
        &mut fbb,
        &wire::IntentArgs {
            format_version: FORMAT_VERSION,
            id: Some(&id),
            principal: Some(strs[0]),
            key_id: Some(&id),
            action: Some(strs[1]),
            resource: Some(strs[2]),
            environment: Some(strs[3]),
            region: Some(strs[4]),
            attributes: Some(attrs),
            nonce: Some(&id),
            payload_digest: Some(&digest),
            ..Default::default()
        },
    );
    fbb.finish(root, Some(INTENT_IDENTIFIER));
    assert!(matches!(
        open_intent(fbb.finished_data(), &Limits::default()),
        Err(WireError::BadAttribute { .. })
    ));
}

#[test]
fn every_truncation_is_an_error() {
    let buf = signed_example();
    for len in 0..buf.len() {
        assert!(
            open_signed_intent(&buf[..len], &Limits::default()).is_err(),
            "prefix of {len} bytes"
        );
    }
}

#[test]
fn wrong_identifier_is_an_error() {
    let buf = signed_example();
    // Each reader refuses the others' buffers.
    assert!(matches!(
        open_intent(&buf, &Limits::default()),
        Err(WireError::WrongIdentifier { .. })
    ));
    let swapped = open_decision(&buf, &Limits::default()).unwrap_err();
    assert!(matches!(swapped, WireError::WrongIdentifier { .. }));
    // Readable: which table was expected and which was found.
    assert_eq!(
        swapped.to_string(),
        "expected file identifier `WDC1` (a Decision), found `WSI1` (a SignedIntent)"
    );
    let mut bad = buf.clone();
    bad[4..8].copy_from_slice(b"XXXX");
    assert_eq!(
        open_signed_intent(&bad, &Limits::default()).unwrap_err(),
        WireError::WrongIdentifier {
            expected: SIGNED_INTENT_IDENTIFIER,
            found: Some(*b"XXXX")
        }
    );
    assert!(matches!(
        open_signed_intent(&[1, 2, 3], &Limits::default()),
        Err(WireError::WrongIdentifier { found: None, .. })
    ));
}

#[test]
fn oversized_buffer_is_an_error() {
    let buf = signed_example();
    let limits = Limits {
        max_buffer_bytes: buf.len() - 1,
        ..Limits::default()
    };
    assert!(matches!(
        open_signed_intent(&buf, &limits),
        Err(WireError::TooLarge { .. })
    ));
}

#[test]
fn over_long_fields_and_too_many_attributes_are_errors() {
    let long = "x".repeat(300);
    let fields = IntentFields {
        principal: &long,
        ..IntentFields::example()
    };
    let buf = warrant_tests::signer(1).sign_intent(&fields);
    assert!(matches!(
        open_signed_intent(&buf, &Limits::default()),
        Err(WireError::FieldTooLong {
            field: "principal",
            len: 300,
            max: 256
        })
    ));

    let keys: Vec<String> = (0..40).map(|i| format!("k{i}")).collect();
    let attrs: Vec<Attr<'_>> = keys
        .iter()
        .map(|k| Attr {
            key: k,
            value: AttrValue::Int(1),
        })
        .collect();
    let fields = IntentFields {
        attributes: &attrs,
        ..IntentFields::example()
    };
    let buf = warrant_tests::signer(1).sign_intent(&fields);
    assert!(matches!(
        open_signed_intent(&buf, &Limits::default()),
        Err(WireError::TooManyElements {
            field: "attributes",
            len: 40,
            max: 32
        })
    ));

    let dup = [
        Attr {
            key: "a",
            value: AttrValue::Int(1),
        },
        Attr {
            key: "a",
            value: AttrValue::Int(2),
        },
    ];
    let buf = warrant_tests::signer(1).sign_intent(&IntentFields {
        attributes: &dup,
        ..IntentFields::example()
    });
    assert!(matches!(
        open_signed_intent(&buf, &Limits::default()),
        Err(WireError::DuplicateAttribute { .. })
    ));

    let empty = IntentFields {
        principal: "",
        ..IntentFields::example()
    };
    let buf = warrant_tests::signer(1).sign_intent(&empty);
    assert!(matches!(
        open_signed_intent(&buf, &Limits::default()),
        Err(WireError::Empty { field: "principal" })
    ));
}

/// Finds `needle` in `hay`, for patching a buffer's bytes in place.
fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .expect("needle present")
}

#[test]
fn an_oversized_vector_length_is_an_error() {
    // Patch the length prefix of the `attributes` vector (2 elements) to
    // claim 2^31 elements: the verifier must refuse it, not read past the end.
    let intent = encode_intent(&IntentFields::example());
    let opened = open_intent(&intent, &Limits::default()).unwrap();
    let attrs = opened.attributes().unwrap();
    assert_eq!(attrs.len(), 2);
    // The vector's elements start right after its u32 length prefix.
    let elements = attrs.bytes().as_ptr() as usize - intent.as_ptr() as usize;
    let at = elements - 4;
    assert_eq!(intent[at..at + 4], 2u32.to_le_bytes());
    for claimed in [3u32, 1 << 20, 0x8000_0000, u32::MAX] {
        let mut bad = intent.clone();
        bad[at..at + 4].copy_from_slice(&claimed.to_le_bytes());
        assert!(
            matches!(
                open_intent(&bad, &Limits::default()),
                Err(WireError::Invalid(_))
            ),
            "a vector claiming {claimed} elements was accepted"
        );
    }

    // And a string whose length claims more bytes than the buffer has.
    let mut bad = intent.clone();
    let at = find(&bad, b"svc-example") - 4;
    bad[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        open_intent(&bad, &Limits::default()),
        Err(WireError::Invalid(_))
    ));
}

#[test]
fn depth_and_table_limits_are_enforced() {
    // Warrant's deepest buffer is Intent -> attributes -> Attribute. Limits
    // below that refuse it, which is how a deeply nested hostile buffer is
    // stopped before the verifier recurses into it.
    let intent = encode_intent(&IntentFields::example());
    let shallow = Limits {
        max_depth: 1,
        ..Limits::default()
    };
    assert!(matches!(
        open_intent(&intent, &shallow),
        Err(WireError::Invalid(_))
    ));
    let few_tables = Limits {
        max_tables: 2,
        ..Limits::default()
    };
    assert!(matches!(
        open_intent(&intent, &few_tables),
        Err(WireError::Invalid(_))
    ));
    assert!(open_intent(&intent, &Limits::default()).is_ok());
}

#[test]
fn unknown_format_version_is_an_error() {
    let intent = encode_intent(&IntentFields::example());
    // format_version is the first scalar field; find it via its value.
    let opened = open_intent(&intent, &Limits::default()).unwrap();
    assert_eq!(opened.format_version(), 1);
    let mut refused = false;
    for pos in 0..intent.len() - 2 {
        if intent[pos..pos + 2] == 1u16.to_le_bytes() {
            let mut bad = intent.clone();
            bad[pos..pos + 2].copy_from_slice(&2u16.to_le_bytes());
            if let Err(WireError::UnsupportedVersion {
                found: 2,
                supported: 1,
            }) = open_intent(&bad, &Limits::default())
            {
                refused = true;
            }
        }
    }
    assert!(refused);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let l = Limits::default();
        let _ = open_signed_intent(&bytes, &l);
        let _ = open_intent(&bytes, &l);
        let _ = open_decision(&bytes, &l);
        let _ = open_lineage_record(&bytes, &l);
        let _ = open_checkpoint(&bytes, &l);
    }

    #[test]
    fn random_bytes_behind_a_valid_identifier_never_panic(mut bytes in prop::collection::vec(any::<u8>(), 8..600)) {
        let l = Limits::default();
        bytes[4..8].copy_from_slice(SIGNED_INTENT_IDENTIFIER.as_bytes());
        let _ = open_signed_intent(&bytes, &l);
        bytes[4..8].copy_from_slice(INTENT_IDENTIFIER.as_bytes());
        let _ = open_intent(&bytes, &l);
        bytes[4..8].copy_from_slice(DECISION_IDENTIFIER.as_bytes());
        let _ = open_decision(&bytes, &l);
        bytes[4..8].copy_from_slice(LINEAGE_RECORD_IDENTIFIER.as_bytes());
        let _ = open_lineage_record(&bytes, &l);
        bytes[4..8].copy_from_slice(CHECKPOINT_IDENTIFIER.as_bytes());
        let _ = open_checkpoint(&bytes, &l);
    }

    #[test]
    fn mutated_valid_buffers_never_panic(flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut buf = signed_example();
        for (i, v) in flips {
            let at = i.index(buf.len());
            buf[at] = v;
        }
        if let Ok(o) = open_signed_intent(&buf, &Limits::default()) {
            // Whatever opened is within the limits.
            prop_assert!(o.intent.principal().len() <= 256);
            prop_assert!(o.intent.attributes().map_or(0, |a| a.len()) <= 32);
        }
    }
}

/// The fuzz seeds (`fuzz/seeds/signed_intent/`) are valid signed intents by
/// the fuzz target's key. Regenerate with
/// `WARRANT_WRITE_FUZZ_SEEDS=1 cargo test -p warrant-tests --test wire fuzz_seeds`.
#[test]
fn fuzz_seeds_are_current() {
    let signer = IntentSigner::from_seed([0x42; 32]);
    let attrs = [
        Attr {
            key: "amount",
            value: AttrValue::Int(1),
        },
        Attr {
            key: "flag",
            value: AttrValue::Bool(true),
        },
    ];
    let seeds = [
        (
            "valid-example",
            signer.sign_intent(&IntentFields::example()),
        ),
        (
            "valid-chained",
            signer.sign_intent(&IntentFields {
                parent_id: Some([7; 16]),
                attributes: &attrs,
                ..IntentFields::example()
            }),
        ),
        (
            "no-attributes",
            signer.sign_intent(&IntentFields {
                attributes: &[],
                ..IntentFields::example()
            }),
        ),
    ];
    let dir = warrant_tests::workspace_root().join("fuzz/seeds/signed_intent");
    for (name, bytes) in seeds {
        assert!(open_signed_intent(&bytes, &Limits::default()).is_ok());
        let path = dir.join(name);
        if std::env::var_os("WARRANT_WRITE_FUZZ_SEEDS").is_some() {
            std::fs::write(&path, &bytes).unwrap();
        }
        assert_eq!(
            std::fs::read(&path).ok().as_deref(),
            Some(bytes.as_slice()),
            "stale seed {name}"
        );
    }
}

/// The intent digest names what was signed, not the wrapper: a trailing
/// byte or a rebuilt wrapper keeps it; another signature, another intent
/// or unreadable bytes change it, and unreadable bytes never take a
/// readable intent's digest (a domain each).
#[test]
fn the_intent_digest_covers_the_signed_bytes_and_signature_only() {
    let signer = IntentSigner::from_seed([3; 32]);
    let signed = signer.sign_intent(&IntentFields::example());
    let s = open_signed_intent(&signed, &Limits::default()).unwrap();
    let digest = intent_digest(&signed);
    assert_eq!(digest, s.digest());
    let mut trailing = signed.clone();
    trailing.push(0);
    assert_eq!(intent_digest(&trailing), digest);
    let rebuilt = encode_signed_intent(s.intent_bytes, s.signature);
    assert_eq!(intent_digest(&rebuilt), digest);
    // The same intent bytes under another (forged) signature.
    let mut forged_sig = *s.signature;
    forged_sig[0] ^= 1;
    let forged = encode_signed_intent(s.intent_bytes, &forged_sig);
    assert_ne!(intent_digest(&forged), digest);
    // Another intent.
    let other = signer.sign_intent(&IntentFields {
        nonce: [9; 16],
        ..IntentFields::example()
    });
    assert_ne!(intent_digest(&other), digest);
    // Unreadable bytes: their own domain, never a readable intent's digest
    // (here, bytes that spell the readable digest's preimage).
    let mut preimage = INTENT_DIGEST_DOMAIN.to_vec();
    preimage.extend_from_slice(s.intent_bytes);
    preimage.extend_from_slice(s.signature);
    assert_eq!(sha256(&preimage), digest);
    assert_ne!(intent_digest(&preimage), digest);
    assert_eq!(intent_digest(&preimage), unreadable_digest(&preimage));
    assert_ne!(unreadable_digest(b"x"), sha256(b"x"));
}

/// Every reader refuses a field its schema does not have (a newer writer's
/// field may restrict what the rest says), and accepts a vtable widened
/// with unset fields (a newer writer that left them out).
#[test]
fn fields_past_the_schema_are_refused_unset_ones_accepted() {
    use warrant_tests::{root_table, with_wider_vtable};
    let l = Limits::default();
    let known = |table: &str| KNOWN_FIELDS.iter().find(|(t, _)| *t == table).unwrap().1;
    let refused = |table: &'static str| WireError::UnknownField {
        table,
        index: known(table),
        known: known(table),
    };

    // Each root table: (name, a valid buffer, its reader).
    type Open = fn(&[u8], &Limits) -> Result<(), WireError>;
    let decision = encode_decision(&DecisionFields {
        intent_id: [1; 16],
        intent_digest: [2; 32],
        verdict: Verdict::Deny,
        reason: Reason::NoMatchingRule,
        rule_id: "",
        policy_hash: [0; 32],
        policy_version: 1,
        issued_at_us: 1,
        valid_until_us: 1,
        audience: "executor",
        engine_key_id: [3; 16],
        lineage_partition: 0,
        lineage_sequence: 0,
        batch_root: [4; 32],
        leaf_index: 0,
        batch_size: 1,
        proof: &[],
        batch_signature: [5; 64],
    });
    let record = encode_lineage_record(&LineageFields {
        partition: 0,
        sequence: 0,
        prev_hash: [1; 32],
        decision_digest: [2; 32],
        intent_id: [3; 16],
        parent_id: None,
        verdict: Verdict::Deny,
        reason: Reason::Malformed,
        issued_at_us: 1,
        replay: None,
        intent_digest: [4; 32],
        valid_until_us: 0,
    });
    let checkpoint = encode_checkpoint(&CheckpointFields {
        origin: "warrant.lineage/0",
        size: 1,
        root: [1; 32],
        issued_at_us: 1,
        engine_key_id: [2; 16],
        signature: [3; 64],
        frontier: &[],
    });
    let roots: [(&'static str, Vec<u8>, Open); 5] = [
        ("Intent", encode_intent(&IntentFields::example()), |b, l| {
            open_intent(b, l).map(drop)
        }),
        ("SignedIntent", signed_example(), |b, l| {
            open_signed_intent(b, l).map(drop)
        }),
        ("Decision", decision, |b, l| open_decision(b, l).map(drop)),
        ("LineageRecord", record, |b, l| {
            open_lineage_record(b, l).map(drop)
        }),
        ("Checkpoint", checkpoint, |b, l| {
            open_checkpoint(b, l).map(drop)
        }),
    ];
    for (table, buf, open) in roots {
        assert_eq!(open(&buf, &l), Ok(()), "{table}");
        let root = root_table(&buf);
        let unset = with_wider_vtable(&buf, root, known(table) + 3, false);
        assert_eq!(open(&unset, &l), Ok(()), "{table} with unset new fields");
        let set = with_wider_vtable(&buf, root, known(table), true);
        assert_eq!(open(&set, &l), Err(refused(table)), "{table}");
        // Past a few unset ones, too.
        let set = with_wider_vtable(&buf, root, known(table) + 2, true);
        assert_eq!(
            open(&set, &l),
            Err(WireError::UnknownField {
                table,
                index: known(table) + 2,
                known: known(table),
            }),
            "{table}"
        );
    }

    // An attribute inside an intent.
    let intent = encode_intent(&IntentFields::example());
    let attr = open_intent(&intent, &l)
        .unwrap()
        .attributes()
        .unwrap()
        .get(1)
        ._tab
        .loc();
    let unset = with_wider_vtable(&intent, attr, known("Attribute") + 1, false);
    assert!(open_intent(&unset, &l).is_ok());
    let set = with_wider_vtable(&intent, attr, known("Attribute"), true);
    assert_eq!(open_intent(&set, &l).unwrap_err(), refused("Attribute"));
    let message = refused("Attribute").to_string();
    assert!(
        message.contains("`Attribute` sets field 5") && message.contains("upgrade the reader"),
        "{message}"
    );

    // The intent inside a signed intent: refused through the wrapper.
    let inner = with_wider_vtable(&intent, root_table(&intent), known("Intent"), true);
    let signed = IntentSigner::from_seed([9; 32]);
    let wrapped = encode_signed_intent(&inner, &signed.sign(&inner));
    assert_eq!(
        open_signed_intent(&wrapped, &l).map(drop),
        Err(refused("Intent"))
    );
}
