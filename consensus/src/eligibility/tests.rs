use proptest::prelude::*;
use serde::Serialize;

use super::*;
use crate::chain::Outcome;
use crate::codec::{from_cbor, to_cbor};
use crate::envelope::Envelope;
use crate::hash::Hash32;
use crate::limits::GOSSIP_MAX_BYTES;
use crate::message::{Message, Proposal};
use crate::testing::{chain_to, keypair, peer, proposal};
use crate::track::tests::track;

const K: u64 = 10;

fn verdict(plays: &[Play]) -> Result<(), Ineligible> {
    check_eligible(&chain_to(7), K, &peer(3), plays)
}

fn winners_plays() -> Vec<Play> {
    proposal(&chain_to(7), K, 3).plays
}

fn other() -> Option<Played> {
    Some(Played::Track(Hash32::digest(b"other")))
}

#[test]
fn in_consensus_proposer_is_eligible() {
    assert_eq!(winners_plays().len(), 4);
    assert_eq!(verdict(&winners_plays()), Ok(()));
}

#[test]
fn first_consensus_slot_needs_only_slot_zero() {
    let chain = chain_to(4);
    let p = proposal(&chain, 5, 3);
    assert_eq!(p.plays.len(), 1);
    assert_eq!(check_eligible(&chain, 5, &peer(3), &p.plays), Ok(()));
}

#[test]
fn rule_in_consensus_at_k_minus_5() {
    let mut plays = winners_plays();
    plays[3].1 = Some(Hash32::digest(b"substitute").into());
    assert_eq!(verdict(&plays), Err(Ineligible::NotInConsensus { slot: 5 }));
    plays[3].1 = None;
    assert_eq!(verdict(&plays), Err(Ineligible::NotInConsensus { slot: 5 }));
    plays.pop();
    assert_eq!(verdict(&plays), Err(Ineligible::NotInConsensus { slot: 5 }));
}

#[test]
fn rule_three_divergences_ban() {
    let mut plays = winners_plays();
    for play in &mut plays[..3] {
        play.1 = other();
    }
    assert_eq!(verdict(&plays), Err(Ineligible::Diverged { first: 2 }));
    // Two divergences and a slot before joining (null) do not ban.
    let mut joined_late = plays.clone();
    joined_late[0].1 = None;
    assert_eq!(verdict(&joined_late), Ok(()));
    // Two divergences and one slot in consensus do not ban.
    let mut back_once = plays;
    back_once[1] = winners_plays()[1];
    assert_eq!(verdict(&back_once), Ok(()));
}

/// 12.2: a winner the proposer could not fetch at k-5 keeps it eligible.
#[test]
fn unavailable_at_k_minus_5_is_in_consensus() {
    let mut plays = winners_plays();
    plays[3].1 = Some(Played::Unavailable);
    assert_eq!(verdict(&plays), Ok(()));
    // Even after two divergences just before it.
    plays[1].1 = other();
    plays[2].1 = other();
    assert_eq!(verdict(&plays), Ok(()));
    // The first slot decided by consensus: only slot 0 counts.
    let chain = chain_to(4);
    let first = [(0, Some(Played::Unavailable))];
    assert_eq!(check_eligible(&chain, 5, &peer(3), &first), Ok(()));
}

/// 12.2: `unavailable` in k-8 .. k-6 is no divergence, so it never completes a ban.
#[test]
fn unavailable_in_k_minus_8_to_6_does_not_count_toward_the_ban() {
    for at in 0..3 {
        let mut plays = winners_plays();
        for play in &mut plays[..3] {
            play.1 = other();
        }
        plays[at].1 = Some(Played::Unavailable);
        assert_eq!(verdict(&plays), Ok(()), "unavailable at k-{}", 8 - at);
    }
    let mut all = winners_plays();
    for play in &mut all {
        play.1 = Some(Played::Unavailable);
    }
    assert_eq!(verdict(&all), Ok(()), "unavailable in every slot");
}

/// A withheld winner in every fifth slot (the capture attack): a proposer that reports it
/// unavailable stays eligible five slots later, one that reports nothing (version 1's null)
/// does not.
#[test]
fn a_withheld_winner_costs_no_eligibility() {
    let chain = chain_to(20);
    for k in 10..=20 {
        let plays: Vec<Play> = (k - 8..=k - 5)
            .map(|j| {
                let winner = chain.winner(j).map(|t| Played::Track(t.track_hash));
                (
                    j,
                    if j % 5 == 0 {
                        Some(Played::Unavailable)
                    } else {
                        winner
                    },
                )
            })
            .collect();
        assert_eq!(check_eligible(&chain, k, &peer(3), &plays), Ok(()), "k {k}");
        let v1: Vec<Play> = plays
            .iter()
            .map(|&(j, p)| (j, p.filter(|p| *p != Played::Unavailable)))
            .collect();
        let expected = if (k - 5) % 5 == 0 {
            Err(Ineligible::NotInConsensus { slot: k - 5 })
        } else {
            Ok(())
        };
        assert_eq!(check_eligible(&chain, k, &peer(3), &v1), expected, "k {k}");
    }
}

#[test]
fn rule_equivocators_are_banned_for_l_slots() {
    let mut chain = chain_to(4);
    chain.push(Outcome {
        track: track("d5", 100_000),
        proposal: None,
        envelope: None,
        equivocators: vec![peer(3)],
    });
    for slot in 6..=12 {
        chain.push(Outcome {
            track: track(&format!("d{slot}"), 100_000),
            proposal: None,
            envelope: None,
            equivocators: vec![],
        });
    }
    for k in 6..=10 {
        let p = proposal(&chain, k, 3);
        assert_eq!(
            check_eligible(&chain, k, &peer(3), &p.plays),
            Err(Ineligible::Equivocator { slot: 5 }),
            "slot {k}"
        );
        assert_eq!(check_eligible(&chain, k, &peer(4), &p.plays), Ok(()));
    }
    let p = proposal(&chain, 11, 3);
    assert_eq!(check_eligible(&chain, 11, &peer(3), &p.plays), Ok(()));
    // `unavailable` does not lift an equivocator's ban.
    let mut p = proposal(&chain, 10, 3);
    p.plays[3].1 = Some(Played::Unavailable);
    assert_eq!(
        check_eligible(&chain, 10, &peer(3), &p.plays),
        Err(Ineligible::Equivocator { slot: 5 })
    );
}

#[test]
fn malformed_plays_are_ineligible() {
    let mut outside = winners_plays();
    outside.push((6, None));
    assert!(matches!(verdict(&outside), Err(Ineligible::BadPlays(_))));
    let mut unsorted = winners_plays();
    unsorted.swap(0, 1);
    assert!(matches!(verdict(&unsorted), Err(Ineligible::BadPlays(_))));
    let mut duplicate = winners_plays();
    duplicate[1].0 = duplicate[0].0;
    assert!(matches!(verdict(&duplicate), Err(Ineligible::BadPlays(_))));
    let mut unavailable_outside = winners_plays();
    unavailable_outside.push((6, Some(Played::Unavailable)));
    assert!(matches!(
        verdict(&unavailable_outside),
        Err(Ineligible::BadPlays(_))
    ));
}

#[test]
fn a_short_chain_cannot_judge() {
    let chain = chain_to(7);
    let p = proposal(&chain_to(9), 14, 3);
    assert_eq!(
        check_eligible(&chain, 14, &peer(3), &p.plays),
        Err(Ineligible::ChainTooShort { slot: 9 })
    );
}

/// A proposal body as version 1 wrote it: `plays` entries `(slot, track_hash | null)`.
#[derive(Serialize)]
struct ProposalV1 {
    network_id: Hash32,
    slot: u64,
    #[serde(with = "crate::codec::peer_id_bytes")]
    from: PeerId,
    track: crate::track::TrackRef,
    library_hash: Hash32,
    track_index: u64,
    plays: Vec<(u64, Option<Hash32>)>,
    rules_hash: Hash32,
    created_ms: u64,
}

fn as_v1(p: &Proposal) -> ProposalV1 {
    ProposalV1 {
        network_id: p.network_id,
        slot: p.slot,
        from: p.from,
        track: p.track.clone(),
        library_hash: p.library_hash,
        track_index: p.track_index,
        plays: p
            .plays
            .iter()
            .map(|&(j, played)| {
                let track = played.map(|p| *p.track().expect("a version 1 entry is a track"));
                (j, track)
            })
            .collect(),
        rules_hash: p.rules_hash,
        created_ms: p.created_ms,
    }
}

/// Version 1 bodies (hashes and nulls) decode to the same plays and re-encode to the same
/// bytes (so the same message id); the mark is the text "unavailable".
#[test]
fn plays_of_version_1_decode_unchanged() {
    let mut p = proposal(&chain_to(7), K, 3);
    p.plays[0].1 = None;
    let old = to_cbor(&as_v1(&p));
    let decoded: Proposal = from_cbor(&old).expect("a version 1 body decodes");
    assert_eq!(decoded, p);
    assert_eq!(to_cbor(&decoded), old, "the same bytes, the same id");
    assert_eq!(verdict(&decoded.plays), Ok(()));

    // The mark: a CBOR text in place of the hash (0x6b = text of 11 bytes).
    let entry = to_cbor(&(5u64, Some(Played::Unavailable)));
    assert_eq!(entry, [&[0x82, 0x05, 0x6b][..], b"unavailable"].concat());
    assert_eq!(
        from_cbor::<Play>(&entry).expect("decodes"),
        (5, Some(Played::Unavailable))
    );
    let hash = Hash32::digest(b"w");
    let entry = to_cbor(&(5u64, Some(Played::Track(hash))));
    assert_eq!(
        entry,
        to_cbor(&(5u64, Some(hash))),
        "a track is its bare hash"
    );
    assert_eq!(to_cbor(&(5u64, None::<Played>)), [0x82, 0x05, 0xf6]);

    // Anything else in place of the hash is malformed.
    for bad in [
        to_cbor(&(5u64, "Unavailable")),
        to_cbor(&(5u64, "lost")),
        to_cbor(&(5u64, serde_bytes::Bytes::new(&[7u8; 31]))),
        to_cbor(&(5u64, 7u64)),
    ] {
        assert!(from_cbor::<Play>(&bad).is_err(), "{bad:02x?}");
    }
}

/// A body with keys this version does not know (a later version's) still decodes, with its
/// marks.
#[test]
fn unknown_keys_beside_unavailable_plays_are_ignored() {
    #[derive(Serialize)]
    struct Later {
        #[serde(flatten)]
        body: Proposal,
        vrf_proof: Hash32,
        extensions: Vec<u64>,
    }
    let mut p = proposal(&chain_to(7), K, 3);
    p.plays[2].1 = Some(Played::Unavailable);
    let later = Later {
        body: p.clone(),
        vrf_proof: Hash32::digest(b"proof"),
        extensions: vec![1, 2],
    };
    let decoded: Proposal = from_cbor(&to_cbor(&later)).expect("unknown keys are ignored");
    assert_eq!(decoded, p);
}

/// What a proposer reports for one slot of `plays`.
#[derive(Debug, Clone, Copy)]
enum Report {
    Absent,
    Null,
    Winner,
    Other,
    Unavailable,
}

fn report() -> impl Strategy<Value = Report> {
    prop_oneof![
        1 => Just(Report::Absent),
        1 => Just(Report::Null),
        3 => Just(Report::Winner),
        2 => Just(Report::Other),
        2 => Just(Report::Unavailable),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(128)
    ))]

    /// Every node reaches the same verdict on the same proposal bytes: three nodes (one built
    /// the chain slot by slot through k-2, as final when k's proposals arrive; one synced it
    /// from the first; one is further on) open the same signed envelope and judge it alike,
    /// and as 12.2 says (`unavailable` in consensus, never a divergence).
    #[test]
    fn every_node_reaches_the_same_verdict(
        k in 5u64..=16,
        reports in prop::collection::vec(report(), 4),
        equivocated in prop::option::of(5u64..16),
    ) {
        let mut built = crate::testing::open_chain();
        for slot in 5..=k + 3 {
            let won = crate::testing::won(&built, track(&format!("d{slot}"), 100_000), 90);
            built.push(Outcome {
                equivocators: if equivocated == Some(slot) { vec![peer(3)] } else { vec![] },
                ..won
            });
        }
        // Slot k-1 is still in selection when k's proposals arrive (PROTOCOL.md 1).
        prop_assume!(equivocated != Some(k - 1));
        let ahead = built.clone();
        built.truncate(k - 1);
        let mut synced = crate::testing::open_chain();
        for d in built.decided_slots() {
            synced.push_synced(d.clone()).expect("a chain this crate built");
        }

        let mut p = proposal(&built, k, 3);
        p.plays = (k.saturating_sub(8)..=k - 5)
            .zip(&reports)
            .filter_map(|(j, r)| {
                let winner = built.winner(j).map(|t| Played::Track(t.track_hash));
                match r {
                    Report::Absent => None,
                    Report::Null => Some((j, None)),
                    Report::Winner => Some((j, winner)),
                    Report::Other => Some((j, other())),
                    Report::Unavailable => Some((j, Some(Played::Unavailable))),
                }
            })
            .collect();
        let bytes = Envelope::seal(&p, &keypair(3)).expect("signs").to_cbor();
        let verdicts: Vec<Result<(), Ineligible>> = [&built, &synced, &ahead]
            .into_iter()
            .map(|chain| {
                let envelope = Envelope::from_cbor(&bytes, GOSSIP_MAX_BYTES).expect("decodes");
                let verified = envelope.open(chain.network_id()).expect("opens");
                let Message::Proposal(received) = verified.message else {
                    panic!("a proposal");
                };
                assert_eq!(&received.plays, &p.plays);
                check_eligible(chain, k, &peer(3), &received.plays)
            })
            .collect();
        prop_assert_eq!(&verdicts[0], &verdicts[1]);
        prop_assert_eq!(&verdicts[0], &verdicts[2]);

        // The rule, read literally.
        let entry = |j: u64| p.plays.iter().find(|(s, _)| *s == j).and_then(|(_, e)| *e);
        let winner = |j: u64| built.winner(j).map(|t| Played::Track(t.track_hash));
        let in_consensus = |j: u64| {
            entry(j) == Some(Played::Unavailable) || (entry(j).is_some() && entry(j) == winner(j))
        };
        let diverged = |j: u64| matches!(entry(j), Some(Played::Track(_))) && entry(j) != winner(j);
        let expected = !in_consensus(k - 5)
            || (k >= 8 && (k - 8..k - 5).all(diverged))
            || equivocated.is_some_and(|e| (k.saturating_sub(5)..k).contains(&e));
        prop_assert_eq!(verdicts[0].is_err(), expected, "{:?} {:?}", p.plays, verdicts[0]);
    }
}
