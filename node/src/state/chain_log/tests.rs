//! The chain log: written, reloaded verified, cut at a torn record, truncated on a fork,
//! converted from the previous format.

use chorus_consensus::{Chain, DecidedSlot};
use libp2p::identity::Keypair;

use super::{ChainLog, FILE, OLD_FILE};

/// A genesis (operator key 1) and its chain with slots 5 ..= 9 decided: 5, 6, 8 and 9 won by
/// signed proposals, 7 a replay.
fn chain_with_proposals() -> Chain {
    use chorus_consensus::{Envelope, Genesis, Hash32, Outcome, Proposal, Rules, TrackRef};
    let track = |name: &str| TrackRef {
        track_hash: Hash32::digest(name.as_bytes()),
        manifest_id: Hash32::digest(format!("manifest {name}").as_bytes()),
        duration_ms: 60_000,
        segment_count: 10,
        title: name.to_owned(),
        artist: String::new(),
        album: String::new(),
        loudness_lufs: Some(-15.0),
    };
    let operator = Keypair::ed25519_from_bytes([1; 32]).unwrap();
    let genesis = Genesis::new(
        "state test",
        1_800_000_000_000,
        &Rules::default(),
        (0..5).map(|i| track(&format!("g{i}"))).collect(),
        operator.public().to_peer_id(),
        1_799_000_000_000,
    )
    .unwrap()
    .sign(&operator)
    .unwrap();
    // Records of an unenrolled proposer: version 1's open tickets (the log's concern is
    // persistence; enrolled records go through the same `push_synced`).
    let mut chain = Chain::new(&genesis).with_tickets(chorus_consensus::Tickets::Open);
    let proposer = Keypair::ed25519_from_bytes([2; 32]).unwrap();
    for slot in 5..=9u64 {
        if slot == 7 {
            let track = chain.replay_track().unwrap().clone();
            chain.push(Outcome {
                track,
                proposal: None,
                envelope: None,
                equivocators: vec![],
            });
            continue;
        }
        let from = proposer.public().to_peer_id();
        let proposal = Proposal {
            network_id: *chain.network_id(),
            slot,
            from,
            track: track(&format!("w{slot}")),
            library_hash: Hash32::ZERO,
            track_index: 0,
            plays: vec![],
            rules_hash: *chain.rules_hash(),
            created_ms: 0,
            reveal: None,
            enrolls: Vec::new(),
        };
        let envelope = Envelope::seal(&proposal, &proposer).unwrap();
        let ctx = chorus_consensus::SlotContext::on_chain(&chain, slot);
        let ticket = chorus_consensus::ticket(&ctx, &from);
        chain.push(Outcome {
            track: proposal.track,
            proposal: Some((envelope.id(), ticket)),
            envelope: Some(envelope),
            equivocators: vec![],
        });
    }
    chain
}

/// The genesis part of `chain` alone.
fn genesis_of(chain: &Chain) -> Chain {
    let mut fresh = chain.clone();
    fresh.truncate(0);
    fresh
}

fn slots(chain: &Chain) -> Vec<DecidedSlot> {
    chain.decided_slots().to_vec()
}

#[test]
fn slots_appended_one_by_one_reload_verified() {
    let dir = tempfile::tempdir().unwrap();
    let chain = chain_with_proposals();
    let all = slots(&chain);
    let mut fresh = genesis_of(&chain);
    let mut log = ChainLog::open(dir.path(), &mut fresh).unwrap();
    assert!(log.is_empty());
    for (i, s) in all.iter().enumerate() {
        log.write(i, std::slice::from_ref(s)).unwrap();
    }
    assert_eq!(log.len(), 5);
    drop(log);
    let mut loaded = genesis_of(&chain);
    let log = ChainLog::open(dir.path(), &mut loaded).unwrap();
    assert_eq!(loaded, chain);
    assert_eq!(log.len(), 5);
    assert!(loaded.decided(5).unwrap().proposal.is_some());
    // Appending grows the file; it is never rewritten.
    let size = std::fs::metadata(dir.path().join(FILE)).unwrap().len();
    let one = super::encode(&all[0]).unwrap().len() as u64;
    assert!(size > 4 * one, "{size} bytes for 5 records of about {one}");
}

#[test]
fn a_torn_last_record_is_cut_and_the_rest_kept() {
    let dir = tempfile::tempdir().unwrap();
    let chain = chain_with_proposals();
    let mut log = ChainLog::open(dir.path(), &mut genesis_of(&chain)).unwrap();
    log.write(0, &slots(&chain)).unwrap();
    drop(log);
    let path = dir.path().join(FILE);
    let size = std::fs::metadata(&path).unwrap().len();
    // kill -9 in the middle of the last append.
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(size - 10).unwrap();
    drop(file);
    let mut loaded = genesis_of(&chain);
    let mut log = ChainLog::open(dir.path(), &mut loaded).unwrap();
    assert_eq!(log.len(), 4);
    assert_eq!(loaded.len(), chain.len() - 1);
    // The slot lost comes back (from peers) and is appended where the cut was.
    log.write(4, &slots(&chain)[4..]).unwrap();
    drop(log);
    let mut again = genesis_of(&chain);
    ChainLog::open(dir.path(), &mut again).unwrap();
    assert_eq!(again, chain);
}

#[test]
fn flipped_bytes_end_the_log_at_the_damaged_record() {
    let dir = tempfile::tempdir().unwrap();
    let chain = chain_with_proposals();
    let mut log = ChainLog::open(dir.path(), &mut genesis_of(&chain)).unwrap();
    log.write(0, &slots(&chain)).unwrap();
    drop(log);
    let path = dir.path().join(FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    let one = super::encode(&slots(&chain)[0]).unwrap().len();
    bytes[one + 20] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let mut loaded = genesis_of(&chain);
    let log = ChainLog::open(dir.path(), &mut loaded).unwrap();
    assert_eq!(log.len(), 1, "the second record's digest no longer matches");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), one as u64);
}

#[test]
fn an_adopted_fork_truncates_and_appends() {
    let dir = tempfile::tempdir().unwrap();
    let chain = chain_with_proposals();
    let all = slots(&chain);
    let mut log = ChainLog::open(dir.path(), &mut genesis_of(&chain)).unwrap();
    log.write(0, &all).unwrap();
    // Keep slots 5 and 6; the others again (as an adopted chain would bring them).
    log.write(2, &all[2..]).unwrap();
    assert_eq!(log.len(), 5);
    log.write(3, &[]).unwrap();
    assert_eq!(log.len(), 3);
    drop(log);
    let mut loaded = genesis_of(&chain);
    ChainLog::open(dir.path(), &mut loaded).unwrap();
    let mut expected = chain.clone();
    expected.truncate(8);
    assert_eq!(loaded, expected);
}

#[test]
fn a_chain_file_of_the_previous_format_is_converted() {
    let dir = tempfile::tempdir().unwrap();
    let chain = chain_with_proposals();
    let mut bytes = Vec::new();
    ciborium::into_writer(chain.decided_slots(), &mut bytes).unwrap();
    std::fs::write(dir.path().join(OLD_FILE), bytes).unwrap();
    let mut loaded = genesis_of(&chain);
    let log = ChainLog::open(dir.path(), &mut loaded).unwrap();
    assert_eq!(loaded, chain);
    assert_eq!(log.len(), 5);
    assert!(!dir.path().join(OLD_FILE).exists());
    drop(log);
    let mut again = genesis_of(&chain);
    ChainLog::open(dir.path(), &mut again).unwrap();
    assert_eq!(again, chain);
}

#[test]
fn a_poisoned_record_is_refused_naming_the_file_and_slot() {
    let dir = tempfile::tempdir().unwrap();
    let chain = chain_with_proposals();
    let mut all = slots(&chain);
    all[3].track.duration_ms = 600_000;
    let mut log = ChainLog::open(dir.path(), &mut genesis_of(&chain)).unwrap();
    log.write(0, &all).unwrap();
    drop(log);
    let err = ChainLog::open(dir.path(), &mut genesis_of(&chain)).unwrap_err();
    let text = format!("{err:#}");
    for part in ["chain.log", "slot 8", "duration_ms"] {
        assert!(text.contains(part), "{part}: {text}");
    }
}

/// A chain file of protocol 1.0: records without the `proposal` key.
#[test]
fn a_chain_file_of_protocol_1_0_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let chain = chain_with_proposals();
    let old: Vec<ciborium::Value> = chain
        .decided_slots()
        .iter()
        .map(|d| {
            let mut value = ciborium::Value::serialized(d).unwrap();
            if let ciborium::Value::Map(entries) = &mut value {
                entries.retain(|(k, _)| k.as_text() != Some("proposal"));
            }
            value
        })
        .collect();
    let mut bytes = Vec::new();
    ciborium::into_writer(&old, &mut bytes).unwrap();
    std::fs::write(dir.path().join(OLD_FILE), bytes).unwrap();
    let err = ChainLog::open(dir.path(), &mut genesis_of(&chain)).unwrap_err();
    let text = format!("{err:#}");
    for part in ["chain.cbor", "protocol 1.0", "slot 5", "protocol 1.1"] {
        assert!(text.contains(part), "{part}: {text}");
    }
}

#[test]
fn a_damaged_old_chain_file_is_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let chain = chain_with_proposals();
    std::fs::write(dir.path().join(OLD_FILE), b"\xff not cbor").unwrap();
    let mut loaded = genesis_of(&chain);
    let log = ChainLog::open(dir.path(), &mut loaded).unwrap();
    assert_eq!(loaded.len(), 5);
    assert!(log.is_empty());
    assert!(dir.path().join("chain.damaged").exists());
}
