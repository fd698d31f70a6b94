//! What a node keeps on disk besides the store: its identity, the chain and the addresses of
//! the peers it knew. Every write is atomic (temp file, fsync, rename), so a kill -9 leaves
//! the previous or the new version, never half of one.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use chorus_consensus::{Chain, ChainError, DecidedSlot};
use chorus_media::fsutil::atomic_write;
use libp2p::identity::Keypair;

const IDENTITY_FILE: &str = "identity.key";
const CHAIN_FILE: &str = "chain.cbor";
const PEERS_FILE: &str = "peers.json";

/// Loads the node's ed25519 key from `DATA/identity.key`, creating it (mode 0600) on first use.
pub fn load_or_create_identity(data_dir: &Path) -> Result<Keypair> {
    let path = data_dir.join(IDENTITY_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes).with_context(|| {
            format!(
                "the identity key {} is damaged; move it away to start as a new node",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Keypair::generate_ed25519();
            let bytes = key
                .to_protobuf_encoding()
                .context("cannot encode the new identity key")?;
            write_private(&path, &bytes)?;
            Ok(key)
        }
        Err(e) => {
            Err(e).with_context(|| format!("cannot read the identity key {}", path.display()))
        }
    }
}

/// Stores `key` as the node identity of `data_dir` (atomic, mode 0600), replacing any.
pub fn save_identity(data_dir: &Path, key: &Keypair) -> Result<()> {
    let bytes = key
        .to_protobuf_encoding()
        .context("cannot encode the identity key")?;
    write_private(&data_dir.join(IDENTITY_FILE), &bytes)
}

/// Writes a secret atomically with mode 0600 from the first byte on.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The chain file of a data directory.
pub fn chain_path(data_dir: &Path) -> PathBuf {
    data_dir.join(CHAIN_FILE)
}

/// Saves the decided slots (PROTOCOL.md 12.1: each with its winning proposal's envelope) as
/// one CBOR array, atomically.
pub fn save_chain(data_dir: &Path, chain: &Chain) -> Result<()> {
    let mut bytes = Vec::new();
    ciborium::into_writer(chain.decided_slots(), &mut bytes).context("cannot encode the chain")?;
    let path = chain_path(data_dir);
    atomic_write(&path, &bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// Extends `chain` (fresh from the genesis) with the saved decided slots, each verified as a
/// slot from a peer would be (`push_synced`: chain hash, and the winning proposal's envelope
/// against the TrackRef, PROTOCOL.md 12.1). A file that does not decode is moved aside and the
/// chain synced again from peers; a file of protocol 1.0 (records without envelopes) or one
/// whose records do not verify is an error that names the file, the slot and what to do.
pub fn load_chain(data_dir: &Path, chain: &mut Chain) -> Result<()> {
    let path = chain_path(data_dir);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let slots: Vec<DecidedSlot> = match ciborium::from_reader(bytes.as_slice()) {
        Ok(s) => s,
        Err(e) => {
            let aside = path.with_extension("damaged");
            let _ = std::fs::rename(&path, &aside);
            tracing::warn!(event = "chain_damaged", file = %path.display(), "the chain file {} is damaged ({e}); moved to {}; syncing the chain from peers", path.display(), aside.display());
            return Ok(());
        }
    };
    for slot in slots {
        let n = slot.slot;
        match chain.push_synced(slot) {
            Ok(()) => {}
            Err(e @ ChainError::MissingProposal(_)) => bail!(
                "the chain file {} was written for protocol 1.0 ({e}); this node speaks protocol \
                 1.1, whose chain records carry the winning proposals: move the data directory's \
                 chain.cbor and genesis.cbor away, then bootstrap or join a network of protocol 1.1",
                path.display()
            ),
            Err(e) => bail!(
                "the chain file {} does not follow from the genesis at slot {n}: {e}; move it away to sync the chain from peers",
                path.display()
            ),
        }
    }
    Ok(())
}

/// Remembers peer addresses for the next start.
pub fn save_peers(data_dir: &Path, addrs: &[String]) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(addrs).context("cannot encode peer addresses")?;
    atomic_write(&data_dir.join(PEERS_FILE), &bytes).context("cannot save peer addresses")
}

/// The peer addresses saved last time (none if the file is missing or damaged).
pub fn load_peers(data_dir: &Path) -> Vec<String> {
    std::fs::read(data_dir.join(PEERS_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_created_private_and_reloaded() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_identity(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(IDENTITY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = load_or_create_identity(dir.path()).unwrap();
        assert_eq!(a.public().to_peer_id(), b.public().to_peer_id());
    }

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
        let mut chain = Chain::new(&genesis);
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

    #[test]
    fn the_chain_is_saved_with_its_proposals_and_reloaded_verified() {
        let dir = tempfile::tempdir().unwrap();
        let chain = chain_with_proposals();
        save_chain(dir.path(), &chain).unwrap();
        let mut loaded = genesis_of(&chain);
        load_chain(dir.path(), &mut loaded).unwrap();
        assert_eq!(loaded, chain);
        assert!(loaded.decided(5).unwrap().proposal.is_some());
        // Written atomically: only the file itself is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn a_poisoned_chain_file_is_refused_naming_the_slot() {
        let dir = tempfile::tempdir().unwrap();
        let chain = chain_with_proposals();
        let mut slots = chain.decided_slots().to_vec();
        slots[3].track.duration_ms = 600_000;
        let mut bytes = Vec::new();
        ciborium::into_writer(&slots, &mut bytes).unwrap();
        std::fs::write(chain_path(dir.path()), bytes).unwrap();
        let err = load_chain(dir.path(), &mut genesis_of(&chain)).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("chain.cbor"), "{text}");
        assert!(text.contains("slot 8"), "{text}");
        assert!(text.contains("duration_ms"), "{text}");
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
        std::fs::write(chain_path(dir.path()), bytes).unwrap();
        let err = load_chain(dir.path(), &mut genesis_of(&chain)).unwrap_err();
        let text = format!("{err:#}");
        for part in ["chain.cbor", "protocol 1.0", "slot 5", "protocol 1.1"] {
            assert!(text.contains(part), "{part}: {text}");
        }
    }

    #[test]
    fn a_damaged_chain_file_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let chain = chain_with_proposals();
        std::fs::write(chain_path(dir.path()), b"\xff not cbor").unwrap();
        let mut loaded = genesis_of(&chain);
        load_chain(dir.path(), &mut loaded).unwrap();
        assert_eq!(loaded.len(), 5);
        assert!(dir.path().join("chain.damaged").exists());
    }

    #[test]
    fn damaged_identity_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(IDENTITY_FILE), b"garbage").unwrap();
        let e = load_or_create_identity(dir.path()).unwrap_err();
        assert!(format!("{e:#}").contains("identity.key"), "{e:#}");
    }
}
