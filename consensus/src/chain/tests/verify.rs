//! PROTOCOL.md 12.1: a synced record is refused whole when its TrackRef is not what the winner
//! signed (or, for a replay, an earlier winner's), whatever the chain hashes say.

use super::*;
use crate::admissibility::Inadmissible;
use crate::envelope::EnvelopeError;
use crate::message::Proposal;
use crate::testing::{CHAIN_PROPOSER, chain_to, proposal};
use crate::ticket::{SlotContext, ticket};

/// Syncs every decided slot of `source` onto a fresh chain of the same genesis: the first
/// refusal, or the synced chain.
fn sync(source: &Chain) -> Result<Chain, ChainError> {
    let mut fresh = crate::testing::open_chain();
    for slot in source.decided_slots() {
        fresh.push_synced(slot.clone())?;
    }
    Ok(fresh)
}

/// `source`'s records with `edit` applied to slot `slot`, and every chain hash from there
/// recomputed: what a liar who keeps a consistent chain sends.
fn rehashed(source: &Chain, slot: u64, edit: impl FnOnce(&mut DecidedSlot)) -> Vec<DecidedSlot> {
    let mut out: Vec<DecidedSlot> = source.decided_slots().to_vec();
    let mut previous = source
        .chain_hash(source.lookahead() - 1)
        .expect("genesis hash");
    let mut edit = Some(edit);
    for d in &mut out {
        if d.slot == slot
            && let Some(edit) = edit.take()
        {
            edit(d);
        }
        d.chain_hash = next_chain_hash(
            &previous,
            d.slot,
            &d.track.track_hash,
            d.proposal_id.as_ref(),
        );
        previous = d.chain_hash;
    }
    out
}

fn sync_slots(slots: Vec<DecidedSlot>) -> Result<Chain, ChainError> {
    let mut fresh = crate::testing::open_chain();
    for slot in slots {
        fresh.push_synced(slot)?;
    }
    Ok(fresh)
}

/// A chain of slots 5..=9: proposals win 5, 6, 8 and 9, slot 7 is a replay.
fn honest() -> Chain {
    let mut chain = crate::testing::open_chain();
    for slot in 5..=9u64 {
        let outcome = if slot == 7 {
            replay(&chain)
        } else {
            won(
                &chain,
                track(&format!("w{slot}"), 90_000 + slot * 1000),
                3 + slot as u8,
            )
        };
        chain.push(outcome);
    }
    chain
}

/// Pushes `proposal` (signed by `signer`) as the winner of the next slot with these id and
/// ticket, trusted, as a liar's own chain would hold it.
fn push_signed(
    chain: &mut Chain,
    proposal: &Proposal,
    signer: u8,
    id: Option<Hash32>,
    ticket: u64,
) {
    let envelope = crate::envelope::Envelope::sign_bytes(
        "proposal",
        crate::codec::to_cbor(proposal),
        &keypair(signer),
    )
    .expect("signs");
    chain.push(Outcome {
        track: proposal.track.clone(),
        proposal: Some((id.unwrap_or_else(|| envelope.id()), ticket)),
        envelope: Some(envelope),
        equivocators: vec![],
    });
}

fn ticket_of(chain: &Chain, seed: u8) -> u64 {
    ticket(
        &SlotContext::on_chain(chain, chain.len()),
        &keypair(seed).public().to_peer_id(),
    )
}

#[test]
fn an_honest_chain_verifies_and_rebuilds_equal() {
    let source = honest();
    assert_eq!(source.decided(7).expect("decided").proposal, None);
    assert!(source.decided(5).expect("decided").proposal.is_some());
    assert_eq!(sync(&source), Ok(source.clone()));
    let mut whole = crate::testing::open_chain();
    let now = source.start(10).expect("known");
    assert_eq!(
        whole.extend_synced(source.decided_slots().to_vec(), now),
        Ok(5)
    );
    assert_eq!(whole, source);
    assert_eq!(sync(&chain_to(20)), Ok(chain_to(20)));
}

/// The attack: the record keeps slot, track hash and proposal id, so every chain hash, and
/// changes the schedule (`duration_ms`) or the audio (`manifest_id`).
#[test]
fn a_changed_duration_or_manifest_keeping_every_hash_is_refused() {
    let source = honest();
    for (field, edit) in [
        (
            "duration_ms",
            Box::new(|t: &mut TrackRef| {
                t.duration_ms += 60_000;
                t.segment_count += 10;
            }) as Box<dyn Fn(&mut TrackRef)>,
        ),
        (
            "manifest_id",
            Box::new(|t: &mut TrackRef| t.manifest_id = Hash32::digest(b"other audio")),
        ),
        (
            "title",
            Box::new(|t: &mut TrackRef| t.title = "Not this".into()),
        ),
    ] {
        let mut slots = source.decided_slots().to_vec();
        edit(&mut slots[1].track);
        assert_eq!(slots[1].chain_hash, source.chain_hash(6).expect("known"));
        assert_eq!(
            sync_slots(slots.clone()),
            Err(ChainError::TrackMismatch { slot: 6, field })
        );
        // The replay of slot 7 changed the same way.
        let mut slots = source.decided_slots().to_vec();
        edit(&mut slots[2].track);
        let refused = sync_slots(slots);
        assert!(
            matches!(refused, Err(ChainError::ReplayTrack { slot: 7, .. })),
            "{field}: {refused:?}"
        );
    }
}

#[test]
fn an_envelope_signed_by_someone_else_is_refused() {
    let source = honest();
    // The same body bytes (same id) signed by another key.
    let mut slots = source.decided_slots().to_vec();
    let envelope = slots[0].proposal.clone().expect("won");
    let resigned =
        crate::envelope::Envelope::sign_bytes("proposal", envelope.body.clone(), &keypair(77))
            .expect("signs");
    assert_eq!(resigned.id(), envelope.id());
    slots[0].proposal = Some(resigned);
    assert!(matches!(
        sync_slots(slots),
        Err(ChainError::Envelope {
            slot: 5,
            source: EnvelopeError::SenderMismatch { .. }
        })
    ));
    // A broken signature.
    let mut slots = source.decided_slots().to_vec();
    if let Some(e) = slots[0].proposal.as_mut() {
        e.sig[0] ^= 1;
    }
    assert_eq!(
        sync_slots(slots),
        Err(ChainError::Envelope {
            slot: 5,
            source: EnvelopeError::BadSignature
        })
    );
    // Another kind.
    let mut slots = source.decided_slots().to_vec();
    let body = slots[0].proposal.as_ref().expect("won").body.clone();
    slots[0].proposal =
        Some(crate::envelope::Envelope::sign_bytes("tally", body, &keypair(8)).expect("signs"));
    assert!(matches!(
        sync_slots(slots),
        Err(ChainError::Envelope {
            slot: 5,
            source: EnvelopeError::WrongKind { .. }
        })
    ));
}

#[test]
fn a_proposal_of_another_network_slot_or_rules_is_refused() {
    let base = crate::testing::open_chain();
    type Case = (fn(&mut Proposal), fn(&Inadmissible) -> bool);
    let cases: [Case; 4] = [
        (
            |p| p.network_id = Hash32::digest(b"another network"),
            |e| matches!(e, Inadmissible::WrongNetwork { .. }),
        ),
        (
            |p| p.slot = 6,
            |e| {
                matches!(
                    e,
                    Inadmissible::WrongSlot {
                        expected: 5,
                        got: 6
                    }
                )
            },
        ),
        (
            |p| p.rules_hash = Hash32::ZERO,
            |e| matches!(e, Inadmissible::RulesHash { .. }),
        ),
        (
            |p| {
                p.track.duration_ms = 1_000;
                p.track.segment_count = 1;
            },
            |e| {
                matches!(
                    e,
                    Inadmissible::Duration {
                        duration_ms: 1_000,
                        ..
                    }
                )
            },
        ),
    ];
    for (edit, expected) in cases {
        let mut source = base.clone();
        let mut p = proposal(&source, 5, 3);
        edit(&mut p);
        let t = ticket_of(&source, 3);
        push_signed(&mut source, &p, 3, None, t);
        match sync(&source) {
            Err(ChainError::Inadmissible { slot: 5, source }) if expected(&source) => {}
            other => panic!("{other:?}"),
        }
    }
    let mut source = base.clone();
    let mut p = proposal(&source, 5, 3);
    p.track.segment_count = 1;
    let t = ticket_of(&source, 3);
    push_signed(&mut source, &p, 3, None, t);
    assert!(matches!(
        sync(&source),
        Err(ChainError::Inadmissible {
            slot: 5,
            source: Inadmissible::SegmentCount { .. }
        })
    ));
}

#[test]
fn an_id_or_ticket_that_is_not_the_proposals_is_refused() {
    let base = crate::testing::open_chain();
    let p = proposal(&base, 5, 3);
    let t = ticket_of(&base, 3);
    let mut source = base.clone();
    let other = Hash32::digest(b"another proposal");
    push_signed(&mut source, &p, 3, Some(other), t);
    assert!(matches!(
        sync(&source),
        Err(ChainError::ProposalId { slot: 5, claimed, .. }) if claimed == other
    ));
    let mut source = base.clone();
    push_signed(&mut source, &p, 3, None, 0);
    assert_eq!(
        sync(&source),
        Err(ChainError::Ticket {
            slot: 5,
            claimed: 0,
            computed: t
        })
    );
}

#[test]
fn a_replay_must_be_an_earlier_winner_and_the_replay_choice() {
    let source = honest();
    // A track no slot ever won, chain hashes recomputed.
    let slots = rehashed(&source, 7, |d| d.track = track("never won", 100_000));
    assert!(matches!(
        sync_slots(slots),
        Err(ChainError::ReplayTrack { slot: 7, .. })
    ));
    // An earlier winner, but not the replay choice.
    let choice = source.winner(7).expect("decided").track_hash;
    let other = (0..7)
        .filter_map(|j| source.winner(j))
        .find(|t| t.track_hash != choice)
        .expect("another earlier winner")
        .clone();
    let slots = rehashed(&source, 7, |d| d.track = other.clone());
    assert_eq!(
        sync_slots(slots),
        Err(ChainError::ReplayChoice {
            slot: 7,
            expected: choice,
            got: other.track_hash
        })
    );
}

#[test]
fn envelopes_must_be_there_exactly_for_proposals() {
    let source = honest();
    // A record of protocol 1.0: the proposal id without its envelope.
    let mut slots = source.decided_slots().to_vec();
    slots[0].proposal = None;
    let refused = sync_slots(slots).expect_err("refused");
    assert_eq!(refused, ChainError::MissingProposal(5));
    assert!(refused.to_string().contains("protocol 1.0"), "{refused}");
    let mut slots = source.decided_slots().to_vec();
    slots[2].proposal = slots[0].proposal.clone();
    assert_eq!(sync_slots(slots), Err(ChainError::ReplayWithProposal(7)));
}

#[test]
fn extend_synced_takes_all_or_nothing_and_is_bounded() {
    let source = honest();
    let now = source.start(10).expect("known");
    let mut slots = source.decided_slots().to_vec();
    slots[4].track.manifest_id = Hash32::ZERO;
    let mut chain = crate::testing::open_chain();
    let before = chain.clone();
    assert!(matches!(
        chain.extend_synced(slots, now),
        Err(ChainError::TrackMismatch { slot: 9, .. })
    ));
    assert_eq!(chain, before, "nothing of a refused answer stays");

    // More than an answer may hold.
    let many = vec![source.decided_slots()[0].clone(); CHAIN_RESPONSE_SLOTS + 1];
    assert_eq!(
        chain.extend_synced(many, now),
        Err(ChainError::TooMany {
            got: CHAIN_RESPONSE_SLOTS + 1,
            max: CHAIN_RESPONSE_SLOTS
        })
    );
    // Slot 9 is final at start(6); it is refused only before start(4).
    let early = source.start(4).expect("known") - 1;
    assert_eq!(
        chain.extend_synced(source.decided_slots().to_vec(), early),
        Err(ChainError::Ahead {
            slot: 9,
            earliest_ms: early + 1,
            now_ms: early
        })
    );
    assert_eq!(chain, before);
    assert_eq!(
        chain.extend_synced(source.decided_slots().to_vec(), early + 1),
        Ok(5)
    );
    assert_eq!(chain, source);
}

#[test]
fn a_nan_loudness_the_proposer_signed_verifies() {
    let base = crate::testing::open_chain();
    let mut t = track("nan", 100_000);
    t.loudness_lufs = Some(f64::NAN);
    let mut source = base.clone();
    source.push(won(&base, t, 3));
    let synced = sync(&source).expect("verifies");
    assert_eq!(synced.head(), source.head());
}

/// The envelope travels as the CBOR map of section 2 (byte strings, not arrays), and a record
/// without the key (protocol 1.0) decodes with none.
#[test]
fn the_envelope_is_a_compact_cbor_map() {
    let source = honest();
    let with = source.decided(5).expect("decided").clone();
    let envelope = with.proposal.clone().expect("won");
    let without = DecidedSlot {
        proposal: None,
        ..with.clone()
    };
    let (a, b) = (
        crate::codec::to_cbor(&with),
        crate::codec::to_cbor(&without),
    );
    // null (one byte) replaced by the envelope's own encoding.
    assert_eq!(a.len(), b.len() - 1 + envelope.to_cbor().len());
    let key = b"\x68proposal";
    assert!(a.windows(key.len()).any(|w| w == key));
    // A protocol 1.0 record: the same map without the key.
    #[derive(serde::Serialize)]
    struct V1<'a> {
        slot: u64,
        track: &'a TrackRef,
        proposal_id: Option<Hash32>,
        ticket: Option<u64>,
        #[serde(with = "crate::codec::peer_id_list")]
        equivocators: Vec<libp2p_identity::PeerId>,
        chain_hash: Hash32,
    }
    let old = crate::codec::to_cbor(&V1 {
        slot: 5,
        track: &with.track,
        proposal_id: with.proposal_id,
        ticket: with.ticket,
        equivocators: vec![],
        chain_hash: with.chain_hash,
    });
    let decoded: DecidedSlot = crate::codec::from_cbor(&old).expect("decodes");
    assert_eq!(decoded, without);
    assert_eq!(
        crate::testing::open_chain().push_synced(decoded),
        Err(ChainError::MissingProposal(5))
    );
}

#[test]
fn chain_to_records_are_won_by_the_fixture_proposer() {
    let chain = chain_to(6);
    let d = chain.decided(6).expect("decided");
    let p: Proposal = d
        .proposal
        .as_ref()
        .expect("won")
        .open_as(crate::limits::GOSSIP_MAX_BYTES)
        .expect("opens");
    assert_eq!(p.from, keypair(CHAIN_PROPOSER).public().to_peer_id());
}
