//! What a node keeps on disk besides the store: its identity, the chain ([`chain_log`], an
//! append-only log) and the addresses of the peers it knew. Every other write is atomic (temp
//! file, fsync, rename), so a kill -9 leaves the previous or the new version, never half of one.

use std::path::Path;

use anyhow::{Context, Result};
use chorus_media::fsutil::atomic_write;
use libp2p::identity::Keypair;

const IDENTITY_FILE: &str = "identity.key";

pub mod chain_log;
pub use chain_log::ChainLog;

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
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
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

    #[test]
    fn damaged_identity_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(IDENTITY_FILE), b"garbage").unwrap();
        let e = load_or_create_identity(dir.path()).unwrap_err();
        assert!(format!("{e:#}").contains("identity.key"), "{e:#}");
    }
}
