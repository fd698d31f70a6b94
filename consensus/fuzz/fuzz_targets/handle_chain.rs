//! Arbitrary `Chain{from_slot}` answers: decided slots taken from an honest chain (slots won
//! by signed proposals, and replays) and then mutated (slot numbers, TrackRef fields with
//! extreme durations and NaN loudness, ids, tickets, chain hashes, equivocators, and the
//! winning proposal's envelope: dropped, swapped with another slot's, re-signed by another
//! key, bytes flipped), fed to a joiner's chain (`Chain::push_synced` and
//! `Chain::extend_synced`, then the schedule queried at arbitrary times) and to a running
//! machine (`Consensus::handle_chain`). Nothing may panic, no arithmetic may overflow (fuzz
//! builds are debug builds), and PROTOCOL.md 12.1 must hold: every slot a joiner accepts has
//! the honest slot's TrackRef, proposal id and chain hash, whatever the answer said.
#![no_main]

#[path = "common.rs"]
mod common;

use std::sync::OnceLock;

use chorus_consensus::chain::same_track;
use chorus_consensus::{
    Chain, Consensus, DecidedSlot, Envelope, Hash32, Outcome, Proposal, SignedGenesis, SlotContext,
    TrackRef, ticket,
};
use common::{key, track};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use libp2p_identity::Keypair;

struct Fixture {
    genesis: SignedGenesis,
    honest: Vec<DecidedSlot>,
    keys: Vec<Keypair>,
}

/// The outcome of the next slot of `chain` won by `keypair`'s signed proposal of `track`.
fn won(chain: &Chain, keypair: &Keypair, track: TrackRef) -> Outcome {
    let slot = chain.len();
    let from = keypair.public().to_peer_id();
    let proposal = Proposal {
        network_id: *chain.network_id(),
        slot,
        from,
        track,
        library_hash: Hash32::ZERO,
        track_index: 0,
        plays: vec![],
        rules_hash: *chain.rules_hash(),
        created_ms: 0,
    };
    let envelope = Envelope::seal(&proposal, keypair).expect("signs its own body");
    Outcome {
        track: proposal.track,
        proposal: Some((
            envelope.id(),
            ticket(&SlotContext::on_chain(chain, slot), &from),
        )),
        envelope: Some(envelope),
        equivocators: vec![],
    }
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let genesis = common::genesis();
        let keys: Vec<Keypair> = (1..=3).map(key).collect();
        let mut chain = Chain::new(&genesis);
        for k in 5..40u64 {
            let outcome = if k % 7 == 0 {
                Outcome {
                    track: chain.replay_track().expect("candidates").clone(),
                    proposal: None,
                    envelope: None,
                    equivocators: vec![],
                }
            } else {
                let keypair = &keys[(k % 3) as usize];
                won(&chain, keypair, track(100 + k % 9, 30_000 + k * 1_000))
            };
            chain.push(outcome);
        }
        Fixture {
            honest: chain.decided_slots().to_vec(),
            genesis,
            keys,
        }
    })
}

/// A decided slot: an honest one, perhaps mutated.
fn slot(u: &mut Unstructured) -> Result<DecidedSlot> {
    let fx = fixture();
    let mut d = u.choose(&fx.honest)?.clone();
    match u.int_in_range(0..=16)? {
        0 => d.slot = u.arbitrary()?,
        1 => d.track.duration_ms = u.arbitrary()?,
        2 => d.track.segment_count = u.arbitrary()?,
        3 => d.track.manifest_id = Hash32(u.arbitrary()?),
        4 => d.proposal_id = u.arbitrary::<Option<[u8; 32]>>()?.map(Hash32),
        5 => d.ticket = u.arbitrary()?,
        6 => d.chain_hash = Hash32(u.arbitrary()?),
        7 => {
            d.equivocators =
                vec![key(u.int_in_range(1..=3)?).public().to_peer_id(); u.int_in_range(0..=300)?]
        }
        8 => d.proposal = None,
        9 => d.proposal = u.choose(&fx.honest)?.proposal.clone(),
        10 => {
            // The same body signed by another key.
            if let Some(e) = d.proposal.as_mut() {
                let signer = u.choose(&fx.keys)?;
                *e = Envelope::sign_bytes(&e.kind, e.body.clone(), signer).expect("signs");
            }
        }
        11 => {
            // A byte of the envelope flipped.
            if let Some(e) = d.proposal.as_mut() {
                let part = match u.int_in_range(0..=2)? {
                    0 => &mut e.body,
                    1 => &mut e.sig,
                    _ => &mut e.key,
                };
                if !part.is_empty() {
                    let i = u.choose_index(part.len())?;
                    part[i] ^= u.int_in_range(1..=255)?;
                }
            }
        }
        12 => {
            d.proposal = Some(Envelope {
                kind: u.arbitrary()?,
                body: u.arbitrary()?,
                key: u.arbitrary()?,
                sig: u.arbitrary()?,
            })
        }
        13 => d.track.loudness_lufs = Some(f64::NAN),
        14 => d.track.title = u.arbitrary()?,
        15 => d.track = u.choose(&fx.honest)?.track.clone(),
        _ => {}
    }
    Ok(d)
}

/// PROTOCOL.md 12.1: whatever a joiner accepted is the honest chain's.
fn assert_honest(chain: &Chain) {
    let fx = fixture();
    for d in chain.decided_slots() {
        let honest = &fx.honest[(d.slot - chain.lookahead()) as usize];
        assert!(
            same_track(&d.track, &honest.track),
            "slot {} took another track",
            d.slot
        );
        assert_eq!(d.proposal_id, honest.proposal_id);
        assert_eq!(d.ticket, honest.ticket);
        assert_eq!(d.proposal, honest.proposal);
        assert_eq!(d.chain_hash, honest.chain_hash);
    }
}

fn run(u: &mut Unstructured) -> Result<()> {
    let fx = fixture();
    let mut answer = Vec::new();
    for _ in 0..u.int_in_range(0..=64)? {
        answer.push(slot(u)?);
    }
    // A joiner's chain, slot by slot.
    let mut chain = Chain::new(&fx.genesis);
    for d in &answer {
        if chain.push_synced(d.clone()).is_err() {
            break;
        }
    }
    assert_honest(&chain);
    for _ in 0..4 {
        let k: u64 = u.arbitrary()?;
        let _ = chain.start(k);
        let _ = chain.slot_at(u.arbitrary()?);
    }
    let _ = chain.head();
    // The whole answer at once: all or nothing.
    let mut whole = Chain::new(&fx.genesis);
    let before = whole.clone();
    let at: u64 = u.arbitrary()?;
    match whole.extend_synced(answer.clone(), at) {
        Ok(n) => assert_eq!(whole.decided_slots().len(), n),
        Err(_) => assert_eq!(whole, before),
    }
    assert_honest(&whole);
    // A running machine, with part of the honest chain.
    let mut base = Chain::new(&fx.genesis);
    for d in fx.honest.iter().take(u.int_in_range(0..=fx.honest.len())?) {
        base.push_synced(d.clone())
            .expect("the honest chain verifies");
    }
    let mut node = Consensus::new(key(9), base);
    let mut now = fx
        .genesis
        .genesis()
        .start_ms
        .saturating_add(u.int_in_range(0..=2_000_000)?);
    if u.arbitrary()? {
        node.start_synced(now);
    }
    for _ in 0..4 {
        now = now.saturating_add(u.int_in_range(0..=60_000)?);
        node.handle_timeout(now);
        while node.poll_action().is_some() {}
        let peer = key(u.int_in_range(1..=3)?).public().to_peer_id();
        let _ = node.handle_chain(now, peer, answer.clone());
        while node.poll_action().is_some() {}
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
