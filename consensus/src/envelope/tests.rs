use ciborium::Value;
use proptest::prelude::*;

use super::*;
use crate::genesis::tests::keypair;
use crate::message::{Decision, Head, Proposal, Status, Tally};
use crate::track::tests::track;

fn net() -> Hash32 {
    Hash32::digest(b"network")
}

fn tally(from: PeerId) -> Tally {
    Tally {
        network_id: net(),
        slot: 9,
        from,
        best: vec![(1, Hash32::digest(b"p1")), (5, Hash32::digest(b"p2"))],
    }
}

fn all_bodies(from: PeerId) -> Vec<(Envelope, Message)> {
    let kp = keypair(1);
    let proposal = Proposal {
        network_id: net(),
        slot: 12,
        from,
        track: track("x", 200_000),
        library_hash: Hash32::digest(b"lib"),
        track_index: 3,
        plays: vec![
            (4, None),
            (5, Some(Hash32::digest(b"w5").into())),
            (6, None),
            (7, None),
        ],
        rules_hash: Hash32::digest(b"rules"),
        created_ms: 42,
        reveal: None,
        enrolls: Vec::new(),
    };
    let decision = Decision {
        network_id: net(),
        slot: 12,
        from,
        winner: Hash32::digest(b"w"),
        proposal_id: None,
        ticket: None,
        equivocators: vec![keypair(7).public().to_peer_id()],
        rules_hash: Hash32::digest(b"rules"),
    };
    let status = Status {
        network_id: net(),
        from,
        sent_ms: 1,
        playing: None,
        consensus_track: Some(Hash32::digest(b"c")),
        diverged: true,
        head: Head {
            slot: 11,
            chain_hash: Hash32::digest(b"h"),
        },
        queue: vec![Hash32::digest(b"q")],
        version: "chorus/0.1.0".to_owned(),
    };
    let t = tally(from);
    vec![
        (
            Envelope::seal(&proposal, &kp).expect("ours"),
            Message::Proposal(proposal),
        ),
        (Envelope::seal(&t, &kp).expect("ours"), Message::Tally(t)),
        (
            Envelope::seal(&decision, &kp).expect("ours"),
            Message::Decision(decision),
        ),
        (
            Envelope::seal(&status, &kp).expect("ours"),
            Message::Status(status),
        ),
    ]
}

#[test]
fn every_kind_round_trips_through_the_wire() {
    let me = keypair(1).public().to_peer_id();
    for (envelope, message) in all_bodies(me) {
        let bytes = envelope.to_cbor();
        let verified = open_gossip(&bytes, &net()).expect("valid message opens");
        assert_eq!(verified.message, message);
        assert_eq!(verified.id, Hash32::digest(&envelope.body));
        assert_eq!(*verified.from(), me);
        assert_eq!(verified.envelope, envelope);
    }
}

#[test]
fn unknown_map_keys_are_ignored() {
    let kp = keypair(1);
    let t = tally(kp.public().to_peer_id());
    let mut value = Value::serialized(&t).expect("tally to a CBOR value");
    if let Value::Map(entries) = &mut value {
        entries.push((
            Value::Text("from_the_future".into()),
            Value::Integer(7.into()),
        ));
    }
    let body = crate::codec::to_cbor(&value);
    let envelope = Envelope::sign_bytes("tally", body, &kp).expect("signs");
    let verified = envelope.open(&net()).expect("unknown keys are ignored");
    assert_eq!(verified.message, Message::Tally(t));
}

#[test]
fn each_drop_rule_has_its_error() {
    let kp = keypair(1);
    let me = kp.public().to_peer_id();
    let good = Envelope::seal(&tally(me), &kp).expect("ours");

    let mut unknown = good.clone();
    unknown.kind = "vote".into();
    let err = unknown.open(&net()).expect_err("unknown kind");
    assert_eq!(err, EnvelopeError::UnknownKind("vote".into()));
    assert_eq!(err.validation(), Validation::Ignore);

    let mut bad_sig = good.clone();
    bad_sig.sig[0] ^= 1;
    let err = bad_sig.open(&net()).expect_err("bad signature");
    assert_eq!(err, EnvelopeError::BadSignature);
    assert_eq!(err.validation(), Validation::Reject);

    let mut bad_key = good.clone();
    bad_key.key = vec![1, 2, 3];
    assert!(matches!(
        bad_key.open(&net()),
        Err(EnvelopeError::BadKey(_))
    ));

    let forged = Envelope::sign_bytes("tally", good.body.clone(), &keypair(2)).expect("signs");
    assert!(matches!(
        forged.open(&net()),
        Err(EnvelopeError::SenderMismatch { .. })
    ));

    let other_net = Hash32::digest(b"elsewhere");
    assert!(matches!(
        good.clone().open(&other_net),
        Err(EnvelopeError::WrongNetwork { .. })
    ));

    let garbage = Envelope::sign_bytes("tally", vec![0xa1, 0x01], &kp).expect("signs");
    assert!(matches!(
        garbage.open(&net()),
        Err(EnvelopeError::Body { .. })
    ));

    let mut four = tally(me);
    four.best = (0..4).map(|i| (i, Hash32::digest(&[i as u8]))).collect();
    let four = Envelope::seal(&four, &kp).expect("ours");
    assert!(matches!(
        four.open(&net()),
        Err(EnvelopeError::Invalid { .. })
    ));

    let mut unsorted = tally(me);
    unsorted.best.reverse();
    let unsorted = Envelope::seal(&unsorted, &kp).expect("ours");
    assert!(matches!(
        unsorted.open(&net()),
        Err(EnvelopeError::Invalid { .. })
    ));

    assert!(matches!(
        open_gossip(b"\x00", &net()),
        Err(EnvelopeError::Malformed(_))
    ));
    assert!(matches!(
        Envelope::seal(&tally(keypair(3).public().to_peer_id()), &kp),
        Err(SignError::NotOurs { .. })
    ));
}

#[test]
fn half_replay_decisions_are_invalid() {
    let kp = keypair(1);
    let decision = Decision {
        network_id: net(),
        slot: 5,
        from: kp.public().to_peer_id(),
        winner: Hash32::digest(b"w"),
        proposal_id: Some(Hash32::digest(b"p")),
        ticket: None,
        equivocators: vec![],
        rules_hash: Hash32::digest(b"r"),
    };
    let envelope = Envelope::seal(&decision, &kp).expect("ours");
    assert!(matches!(
        envelope.open(&net()),
        Err(EnvelopeError::Invalid { .. })
    ));
}

#[test]
fn bloated_status_fields_are_invalid() {
    let kp = keypair(1);
    let from = kp.public().to_peer_id();
    let Message::Status(honest) = all_bodies(from).remove(3).1 else {
        panic!("the fourth body is a Status");
    };
    let mut long_version = honest.clone();
    long_version.version = "v".repeat(65);
    let mut long_queue = honest.clone();
    long_queue.queue = vec![Hash32::digest(b"q"); 9];
    for bloated in [long_version, long_queue] {
        let envelope = Envelope::seal(&bloated, &kp).expect("sealing does not check");
        assert!(
            matches!(envelope.open(&net()), Err(EnvelopeError::Invalid { .. })),
            "{bloated:?}"
        );
    }
    let mut at_limit = honest;
    at_limit.version = "v".repeat(64);
    at_limit.queue = vec![Hash32::digest(b"q"); 8];
    let envelope = Envelope::seal(&at_limit, &kp).expect("ours");
    assert!(envelope.open(&net()).is_ok());
}

#[test]
fn oversized_messages_are_dropped() {
    let kp = keypair(1);
    let me = kp.public().to_peer_id();
    let mut status = match all_bodies(me).pop() {
        Some((_, Message::Status(s))) => s,
        _ => unreachable!("the last sample body is a status"),
    };
    status.version = "v".repeat(GOSSIP_MAX_BYTES);
    let envelope = Envelope::seal(&status, &kp).expect("ours");
    assert!(matches!(
        envelope.clone().open(&net()),
        Err(EnvelopeError::TooLarge { .. })
    ));
    assert!(matches!(
        open_gossip(&envelope.to_cbor(), &net()),
        Err(EnvelopeError::TooLarge { .. })
    ));
}

proptest! {
    #[test]
    fn arbitrary_wire_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = open_gossip(&bytes, &net());
    }

    #[test]
    fn arbitrary_signed_bodies_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..1024),
        kind in prop::sample::select(vec!["proposal", "tally", "decision", "status", "genesis"]),
    ) {
        let envelope = Envelope::sign_bytes(kind, body, &keypair(1)).expect("signs");
        let _ = envelope.clone().open(&net());
        let _ = crate::genesis::SignedGenesis::verify(envelope, None);
    }

    #[test]
    fn mutated_valid_messages_never_panic(index in 0usize..4, flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let me = keypair(1).public().to_peer_id();
        let (envelope, _) = all_bodies(me).swap_remove(index);
        let mut bytes = envelope.body.clone();
        for (at, value) in flips {
            let at = at % bytes.len();
            bytes[at] = value;
        }
        let resigned = Envelope::sign_bytes(&envelope.kind, bytes, &keypair(1)).expect("signs");
        let _ = resigned.open(&net());
    }
}

#[test]
fn signer_reads_the_key_without_checking_the_signature() {
    let kp = keypair(3);
    let mut envelope = Envelope::seal(&tally(kp.public().to_peer_id()), &kp).expect("signs");
    assert_eq!(envelope.signer(), Some(kp.public().to_peer_id()));
    // Only the key is read: a broken signature still names the key's owner (callers use it on
    // envelopes verified before), and a key that is no key names nobody.
    envelope.sig[0] ^= 1;
    assert_eq!(envelope.signer(), Some(kp.public().to_peer_id()));
    envelope.key = vec![1, 2, 3];
    assert_eq!(envelope.signer(), None);
}
