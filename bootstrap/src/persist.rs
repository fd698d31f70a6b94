//! The genesis on disk: `genesis.cbor` (the signed envelope's wire bytes) in the data directory,
//! written atomically and verified on every load.

use std::io;
use std::path::{Path, PathBuf};

use chorus_consensus::{GenesisError, Hash32, SignedGenesis};
use chorus_media::fsutil::atomic_write;

/// The genesis file's name inside a data directory.
pub const GENESIS_FILE: &str = "genesis.cbor";

/// Why the genesis file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum GenesisFileError {
    /// The file exists but could not be read.
    #[error("cannot read the genesis {}: {source}", .path.display())]
    Read {
        /// The genesis file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The directory or the file could not be written.
    #[error("cannot write the genesis {}: {source}", .path.display())]
    Write {
        /// The genesis file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The file does not decode, or its signature, rules or queue do not verify.
    #[error(
        "the genesis {} is damaged or not a Chorus genesis ({source}); remove it, then join the \
         network again or bootstrap a new one",
        .path.display()
    )]
    Corrupt {
        /// The genesis file.
        path: PathBuf,
        /// Why it was refused.
        source: GenesisError,
    },
    /// The file holds the signed genesis of a protocol version this node does not speak: a
    /// network of protocol 1.0 (genesis version 1), which protocol 1.1 replaces
    /// (PROTOCOL.md 12), or an unknown, newer one.
    #[error(
        "the genesis {} belongs to a network this node cannot run: {source}. Use another data \
         directory (or move genesis.cbor and chain.cbor away) to bootstrap or join a network of \
         protocol 1.1",
        .path.display()
    )]
    Version {
        /// The genesis file.
        path: PathBuf,
        /// The version it carries.
        version: u64,
        /// The refusal, which names the version and its protocol.
        source: GenesisError,
    },
    /// The file holds a valid genesis of another network than the one asked for.
    #[error(
        "the genesis {} is that of network {found}, not {expected}: this data directory belongs \
         to another network; use another data directory, or remove the file to join {expected}",
        .path.display()
    )]
    OtherNetwork {
        /// The genesis file.
        path: PathBuf,
        /// The network id asked for.
        expected: Hash32,
        /// The network id of the file.
        found: Hash32,
    },
    /// A different genesis is already saved there: saving would silently leave that network.
    #[error(
        "{} already holds the genesis of network {existing}; remove it, or use another data \
         directory, to start a new network",
        .path.display()
    )]
    Exists {
        /// The genesis file.
        path: PathBuf,
        /// The network id of the genesis already there.
        existing: Hash32,
    },
}

/// The genesis file of data directory `dir`.
pub fn genesis_path(dir: &Path) -> PathBuf {
    dir.join(GENESIS_FILE)
}

/// Saves `genesis` as `dir/genesis.cbor` (creating `dir`), atomically: a crash leaves either no
/// file or the whole genesis. Saving the genesis already there does nothing; a different one is
/// refused ([`GenesisFileError::Exists`]). Returns the file's path.
pub fn save_genesis(dir: &Path, genesis: &SignedGenesis) -> Result<PathBuf, GenesisFileError> {
    let path = genesis_path(dir);
    match load_genesis(dir, None)? {
        Some(existing) if existing.network_id() == genesis.network_id() => return Ok(path),
        Some(existing) => {
            return Err(GenesisFileError::Exists {
                path,
                existing: existing.network_id(),
            });
        }
        None => {}
    }
    std::fs::create_dir_all(dir)
        .and_then(|()| atomic_write(&path, &genesis.to_cbor()))
        .map_err(|source| GenesisFileError::Write {
            path: path.clone(),
            source,
        })?;
    Ok(path)
}

/// Loads and verifies `dir/genesis.cbor`: its signature, rules and queue, and, if `expected` is
/// given, its network id. `None` when there is no such file.
pub fn load_genesis(
    dir: &Path,
    expected: Option<&Hash32>,
) -> Result<Option<SignedGenesis>, GenesisFileError> {
    let path = genesis_path(dir);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(GenesisFileError::Read { path, source }),
    };
    match SignedGenesis::from_cbor(&bytes, expected) {
        Ok(genesis) => Ok(Some(genesis)),
        Err(GenesisError::NetworkMismatch { expected, got }) => {
            Err(GenesisFileError::OtherNetwork {
                path,
                expected,
                found: got,
            })
        }
        Err(source @ GenesisError::Version(version)) => Err(GenesisFileError::Version {
            path,
            version,
            source,
        }),
        Err(source) => Err(GenesisFileError::Corrupt { path, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::genesis::create_genesis;
    use crate::genesis::tests::{info, keypair};
    use crate::{SeedQueue, track_ref};
    use chorus_consensus::Rules;

    fn signed(name: &str) -> SignedGenesis {
        let seed = SeedQueue {
            name: name.into(),
            start_ms: 1_800_000_000_000,
            tracks: (0..5).map(|i| PathBuf::from(format!("{i}.flac"))).collect(),
            rules: Rules::default(),
        };
        let queue = (0..5)
            .map(|i| track_ref(&info(&i.to_string(), 90_000)))
            .collect();
        create_genesis(
            &keypair(),
            &seed,
            queue,
            1_799_000_000_000,
            crate::genesis::tests::enroll(),
        )
        .expect("valid genesis")
    }

    #[test]
    fn save_load_round_trip() {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        assert!(
            load_genesis(&data, None)
                .expect("no file is fine")
                .is_none()
        );
        let genesis = signed("A");
        let path = save_genesis(&data, &genesis).expect("saved");
        assert_eq!(path, data.join("genesis.cbor"));
        let id = genesis.network_id();
        let loaded = load_genesis(&data, Some(&id))
            .expect("loads")
            .expect("present");
        assert_eq!(loaded, genesis);
        assert_eq!(
            load_genesis(&data, None).expect("loads"),
            Some(genesis.clone())
        );
        // Saving it again is harmless; only the file and no temp file is left.
        save_genesis(&data, &genesis).expect("same genesis again");
        let names: Vec<_> = std::fs::read_dir(&data).expect("list").collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn another_network_is_refused_on_load_and_on_save() {
        let dir = tempfile::tempdir().expect("temp dir");
        let a = signed("A");
        let b = signed("B");
        save_genesis(dir.path(), &a).expect("saved");
        let err = load_genesis(dir.path(), Some(&b.network_id())).expect_err("other network");
        assert!(
            matches!(err, GenesisFileError::OtherNetwork { .. }),
            "{err}"
        );
        let text = err.to_string();
        assert!(text.contains("genesis.cbor"), "{text}");
        assert!(text.contains(&a.network_id().to_hex()), "{text}");
        assert!(text.contains(&b.network_id().to_hex()), "{text}");

        let err = save_genesis(dir.path(), &b).expect_err("would replace network A");
        assert!(
            matches!(err, GenesisFileError::Exists { existing, .. } if existing == a.network_id())
        );
        assert_eq!(load_genesis(dir.path(), None).expect("loads"), Some(a));
    }

    /// A data directory of a protocol 1.0 network: its genesis (version 1, validly signed)
    /// is refused with an error that names the version, its protocol and what to do.
    #[test]
    fn a_version_1_genesis_file_is_refused_naming_the_version() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut old = signed("A").genesis().clone();
        old.version = 1;
        let envelope = chorus_consensus::Envelope::seal(&old, &keypair()).expect("signs");
        let path = genesis_path(dir.path());
        std::fs::write(&path, envelope.to_cbor()).expect("write");
        let err = load_genesis(dir.path(), None).expect_err("version 1");
        assert!(
            matches!(err, GenesisFileError::Version { version: 1, .. }),
            "{err}"
        );
        let text = err.to_string();
        for part in [
            "genesis version 1 is protocol 1.0",
            "no longer speaks",
            "genesis.cbor",
            "another data directory",
        ] {
            assert!(text.contains(part), "{part}: {text}");
        }
        // Nor is it replaced silently by a new genesis.
        assert!(matches!(
            save_genesis(dir.path(), &signed("B")),
            Err(GenesisFileError::Version { .. })
        ));
    }

    #[test]
    fn a_damaged_file_is_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let genesis = signed("A");
        let path = save_genesis(dir.path(), &genesis).expect("saved");
        let mut bytes = std::fs::read(&path).expect("read");
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x55;
        std::fs::write(&path, &bytes).expect("write");
        let err = load_genesis(dir.path(), None).expect_err("damaged");
        assert!(matches!(err, GenesisFileError::Corrupt { .. }), "{err}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        std::fs::write(&path, b"not cbor").expect("write");
        assert!(matches!(
            load_genesis(dir.path(), None),
            Err(GenesisFileError::Corrupt { .. })
        ));
        // A damaged genesis is not silently replaced either.
        assert!(matches!(
            save_genesis(dir.path(), &genesis),
            Err(GenesisFileError::Corrupt { .. })
        ));
    }
}
