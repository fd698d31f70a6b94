//! Arbitrary `Chain{from_slot}` answers: decided slots taken from an honest chain and then
//! mutated (slot numbers, TrackRef fields with extreme durations, ids, tickets, chain hashes,
//! equivocators), fed both to a joiner's chain (`Chain::push_synced`, then the schedule
//! queried at arbitrary times) and to a running machine (`Consensus::handle_chain`). Nothing
//! may panic, and no arithmetic may overflow (fuzz builds are debug builds).
#![no_main]

use std::sync::OnceLock;

use chorus_consensus::track::expected_segments;
use chorus_consensus::{
    Chain, Consensus, DecidedSlot, Genesis, Hash32, Outcome, Rules, SignedGenesis, TrackRef,
};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use libp2p_identity::Keypair;

struct Fixture {
    genesis: SignedGenesis,
    honest: Vec<DecidedSlot>,
}

fn key(seed: u8) -> Keypair {
    Keypair::ed25519_from_bytes([seed; 32]).expect("32 bytes are an ed25519 secret")
}

fn track(seed: u64, duration_ms: u64) -> TrackRef {
    TrackRef {
        track_hash: Hash32::digest(&seed.to_be_bytes()),
        manifest_id: Hash32::digest(&[&seed.to_be_bytes()[..], b"m"].concat()),
        duration_ms,
        segment_count: expected_segments(duration_ms, 6_000),
        title: String::new(),
        artist: String::new(),
        album: String::new(),
        loudness_lufs: None,
    }
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let operator = key(0);
        let queue = (0..5).map(|i| track(i, 60_000 + i * 1_000)).collect();
        let genesis = Genesis::new(
            "fuzz radio",
            1_700_000_000_000,
            &Rules::default(),
            queue,
            operator.public().to_peer_id(),
            0,
        )
        .and_then(|g| g.sign(&operator))
        .expect("a valid genesis");
        let mut chain = Chain::new(&genesis);
        for k in 5..40u64 {
            let proposal = (k % 7 != 0).then(|| (Hash32::digest(&k.to_be_bytes()), k * 1_000));
            chain.push(Outcome {
                track: track(100 + k % 9, 30_000 + k * 1_000),
                proposal,
                equivocators: vec![],
            });
        }
        Fixture {
            honest: chain.decided_slots().to_vec(),
            genesis,
        }
    })
}

/// A decided slot: an honest one, perhaps mutated.
fn slot(u: &mut Unstructured) -> Result<DecidedSlot> {
    let fx = fixture();
    let mut d = u.choose(&fx.honest)?.clone();
    match u.int_in_range(0..=9)? {
        0 => d.slot = u.arbitrary()?,
        1 => d.track.duration_ms = u.arbitrary()?,
        2 => d.track.segment_count = u.arbitrary()?,
        3 => d.track.manifest_id = Hash32(u.arbitrary()?),
        4 => d.proposal_id = u.arbitrary::<Option<[u8; 32]>>()?.map(Hash32),
        5 => d.ticket = u.arbitrary()?,
        6 => d.chain_hash = Hash32(u.arbitrary()?),
        7 => d.equivocators = vec![key(u.int_in_range(1..=3)?).public().to_peer_id(); u.int_in_range(0..=300)?],
        _ => {}
    }
    Ok(d)
}

fn run(u: &mut Unstructured) -> Result<()> {
    let fx = fixture();
    let mut answer = Vec::new();
    for _ in 0..u.int_in_range(0..=64)? {
        answer.push(slot(u)?);
    }
    // A joiner's chain.
    let mut chain = Chain::new(&fx.genesis);
    for d in &answer {
        if chain.push_synced(d.clone()).is_err() {
            break;
        }
    }
    for _ in 0..4 {
        let k: u64 = u.arbitrary()?;
        let _ = chain.start(k);
        let _ = chain.slot_at(u.arbitrary()?);
    }
    let _ = chain.head();
    // A running machine, with part of the honest chain.
    let mut base = Chain::new(&fx.genesis);
    for d in fx.honest.iter().take(u.int_in_range(0..=fx.honest.len())?) {
        base.push_synced(d.clone()).expect("the honest chain chains");
    }
    let mut node = Consensus::new(key(9), base);
    let mut now = fx.genesis.genesis().start_ms.saturating_add(u.int_in_range(0..=2_000_000)?);
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
