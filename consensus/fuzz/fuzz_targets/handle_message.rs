//! Arbitrary inputs into one `Consensus` of a fixed genesis: raw envelope bytes, bodies of any
//! kind signed by one of four keys (so that they pass the signature check), structured
//! proposals, tallies and decisions around the slots in flight, fetched proposals and time.
//! The machine must never panic, and every action it returns must be well formed.
#![no_main]

#[path = "common.rs"]
mod common;

use std::sync::OnceLock;

use chorus_consensus::limits::GOSSIP_MAX_BYTES;
use chorus_consensus::message::Played;
use chorus_consensus::{
    Action, Chain, Consensus, Decision, Envelope, Hash32, Proposal, SignedGenesis, Tally,
};
use common::{key, track};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use libp2p_identity::{Keypair, PeerId};

const KINDS: [&str; 6] = [
    "proposal", "tally", "decision", "status", "genesis", "other",
];

struct Fixture {
    genesis: SignedGenesis,
    keys: Vec<Keypair>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let genesis = common::genesis();
        Fixture {
            genesis,
            keys: (1..=4).map(key).collect(),
        }
    })
}

/// A proposal near the slots in flight, mostly well formed.
fn proposal(u: &mut Unstructured, chain: &Chain, from: PeerId) -> Result<Proposal> {
    let slot = chain.len() + u.int_in_range(0..=3)?;
    let duration_ms = if u.ratio(1, 8)? {
        u.arbitrary()?
    } else {
        u.int_in_range(1_000..=1_000_000)?
    };
    let mut track = track(u.int_in_range(0..=15)?, duration_ms);
    if u.ratio(1, 8)? {
        track.segment_count = u.arbitrary()?;
    }
    let mut plays = Vec::new();
    for j in slot.saturating_sub(8)..=slot.saturating_sub(5) {
        let winner = chain.winner(j).map(|t| Played::Track(t.track_hash));
        match u.int_in_range(0..=6)? {
            0 => {}
            1 => plays.push((j, None)),
            2 => plays.push((j, Some(Played::Track(Hash32::digest(&j.to_be_bytes()))))),
            3 => plays.push((u.arbitrary()?, winner)),
            4 => plays.push((j, Some(Played::Unavailable))),
            _ => plays.push((j, winner)),
        }
    }
    Ok(Proposal {
        network_id: *chain.network_id(),
        slot,
        from,
        track,
        library_hash: Hash32::ZERO,
        track_index: 0,
        plays,
        rules_hash: *chain.rules_hash(),
        created_ms: u.arbitrary()?,
    })
}

/// An id the node may know (a held proposal's) or a random one.
fn some_id(u: &mut Unstructured, node: &Consensus, slot: u64) -> Result<Hash32> {
    let held = node.answer_proposals(slot, &[]);
    if !held.is_empty() && u.arbitrary()? {
        return Ok(u.choose(&held)?.id());
    }
    Ok(Hash32(u.arbitrary()?))
}

/// The next envelope to feed: raw bytes, an arbitrary signed body, or a structured message.
fn envelope(u: &mut Unstructured, node: &Consensus) -> Result<Option<Envelope>> {
    let keys = &fixture().keys;
    let signer = u.choose(keys)?;
    let from = signer.public().to_peer_id();
    let chain = node.chain();
    let slot = chain.len() + u.int_in_range(0..=2)?;
    let sealed = match u.int_in_range(0..=4)? {
        0 => {
            let bytes: &[u8] = u.arbitrary()?;
            return Ok(Envelope::from_cbor(bytes, GOSSIP_MAX_BYTES).ok());
        }
        1 => {
            let kind = u.choose(&KINDS)?;
            let body: Vec<u8> = u.arbitrary()?;
            Envelope::sign_bytes(kind, body, signer)
        }
        2 => Envelope::seal(&proposal(u, chain, from)?, signer),
        3 => {
            let mut best = Vec::new();
            for _ in 0..u.int_in_range(0..=3)? {
                best.push((u.arbitrary()?, some_id(u, node, slot)?));
            }
            best.sort_by_key(|(t, _)| *t);
            let tally = Tally {
                network_id: *chain.network_id(),
                slot,
                from,
                best,
            };
            Envelope::seal(&tally, signer)
        }
        _ => {
            let backed = u.arbitrary::<bool>()?;
            let decision = Decision {
                network_id: *chain.network_id(),
                slot,
                from,
                winner: Hash32(u.arbitrary()?),
                proposal_id: if backed {
                    Some(some_id(u, node, slot)?)
                } else {
                    None
                },
                ticket: if backed { Some(u.arbitrary()?) } else { None },
                equivocators: if u.ratio(1, 4)? { vec![from] } else { vec![] },
                rules_hash: *chain.rules_hash(),
            };
            Envelope::seal(&decision, signer)
        }
    };
    Ok(sealed.ok())
}

/// Drains the node's actions, checking each, and answers its fetches from `peer_store`.
fn drain(node: &mut Consensus, now: u64, peer_store: &[Envelope]) {
    let mut fetched = Vec::new();
    while let Some(action) = node.poll_action() {
        match action {
            Action::Publish { envelope, .. } => {
                let opened = envelope.open(node.chain().network_id());
                assert!(
                    opened.is_ok(),
                    "the node published an invalid message: {opened:?}"
                );
            }
            Action::FetchProposals { ids, .. } => {
                fetched.extend(peer_store.iter().filter(|e| ids.contains(&e.id())).cloned());
            }
            _ => {}
        }
    }
    if !fetched.is_empty() {
        node.handle_fetched(now, fetched);
    }
}

fn run(u: &mut Unstructured) -> Result<()> {
    let fx = fixture();
    let mut node = Consensus::new(key(9), Chain::new(&fx.genesis));
    node.set_library((100..104).map(|i| track(i, 120_000)));
    let mut now = fx.genesis.genesis().start_ms - 1_000;
    let mut sent: Vec<Envelope> = Vec::new();
    for _ in 0..64 {
        if u.is_empty() {
            break;
        }
        now = now.saturating_add(u.int_in_range(0..=30_000)?);
        if u.ratio(1, 3)? {
            node.handle_timeout(now);
        } else if let Some(envelope) = envelope(u, &node)? {
            let source = *node.peer_id();
            sent.push(envelope.clone());
            let _ = node.handle_message(now, source, envelope);
        }
        drain(&mut node, now, &sent);
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
