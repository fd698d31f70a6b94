//! The content-addressed block store: segments and manifests on disk, named by their SHA-256.
//!
//! Layout under the store root: `blocks/ab/abcdef...` (the first two hex digits fan the blocks
//! out over 256 folders) and `tmp/` for writes in progress. Every write is atomic, so a block file
//! that exists is complete; every read hashes the bytes again, so a block damaged on disk is
//! reported (and removed) instead of being played.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::fsutil;
use crate::hash::Hash32;

/// The largest block the store accepts (PROTOCOL.md section 10: one block, 1 MiB).
pub const MAX_BLOCK_BYTES: usize = 1 << 20;

/// Errors of the block store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store folder could not be created or read.
    #[error("cannot open the block store at {path}: {source}")]
    Open {
        /// The store root.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The disk (or the user's quota) is full; nothing partial was left behind.
    #[error("disk full while writing block {id} under {path}: free some space and run again")]
    DiskFull {
        /// The block being written.
        id: Hash32,
        /// The store root.
        path: PathBuf,
    },
    /// Writing a block failed for another reason; nothing partial was left behind.
    #[error("cannot write block {id} to {path}: {source}")]
    Write {
        /// The block being written.
        id: Hash32,
        /// The block's file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The block is not in the store.
    #[error("block {0} is not in the store")]
    Missing(Hash32),
    /// Reading a block failed.
    #[error("cannot read block {id} from {path}: {source}")]
    Read {
        /// The block being read.
        id: Hash32,
        /// The block's file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The bytes on disk do not hash to the block's id; the damaged file has been removed.
    #[error("block {id} at {path} is corrupt (its bytes hash to {actual}); it was removed")]
    Corrupt {
        /// The block that was asked for.
        id: Hash32,
        /// The damaged file.
        path: PathBuf,
        /// What the bytes on disk hash to.
        actual: Hash32,
    },
    /// A block larger than [`MAX_BLOCK_BYTES`].
    #[error("block of {0} bytes exceeds the 1 MiB limit")]
    TooLarge(usize),
}

/// Result alias of the block store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A content-addressed block store rooted at one folder. Cheap to clone; safe to use from many
/// threads and processes at once (writes are atomic renames of complete files).
#[derive(Clone, Debug)]
pub struct BlockStore {
    root: PathBuf,
}

impl BlockStore {
    /// Opens (creating if needed) the store at `root`, and removes temp files that a killed
    /// writer left behind.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        let open_err = |source| StoreError::Open {
            path: root.clone(),
            source,
        };
        fs::create_dir_all(root.join("blocks")).map_err(open_err)?;
        fs::create_dir_all(root.join("tmp")).map_err(open_err)?;
        fsutil::remove_stale_temp_files(&root.join("tmp"), Duration::from_secs(600))
            .map_err(open_err)?;
        Ok(Self { root })
    }

    /// The store's root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where block `id` lives on disk.
    pub fn path_of(&self, id: &Hash32) -> PathBuf {
        let hex = id.to_hex();
        self.root.join("blocks").join(&hex[..2]).join(hex)
    }

    /// Whether a block file exists (without verifying it).
    pub fn contains(&self, id: &Hash32) -> bool {
        self.path_of(id).is_file()
    }

    /// Stores `bytes` and returns their id. Storing a block that is already present and intact
    /// writes nothing.
    pub fn put(&self, bytes: &[u8]) -> Result<Hash32> {
        let id = Hash32::of(bytes);
        self.put_verified(id, bytes)?;
        Ok(id)
    }

    /// Stores `bytes` under `id`, which the caller has computed (or received) and that this
    /// method checks again.
    pub fn put_with_id(&self, id: Hash32, bytes: &[u8]) -> Result<()> {
        check_id(id, bytes)?;
        self.put_verified(id, bytes)
    }

    /// Stores a block received from a peer under `id`, checked again here, without waiting for
    /// the disk: every read verifies the block, so a block torn by a power cut is found, removed
    /// and fetched again, and a node fetching for a slot about to play must not stall on fsync.
    pub fn put_fetched(&self, id: Hash32, bytes: &[u8]) -> Result<()> {
        check_id(id, bytes)?;
        self.write_block(id, bytes, false)
    }

    fn put_verified(&self, id: Hash32, bytes: &[u8]) -> Result<()> {
        self.write_block(id, bytes, true)
    }

    fn write_block(&self, id: Hash32, bytes: &[u8], durable: bool) -> Result<()> {
        if bytes.len() > MAX_BLOCK_BYTES {
            return Err(StoreError::TooLarge(bytes.len()));
        }
        let path = self.path_of(&id);
        if let Ok(existing) = fs::read(&path)
            && Hash32::of(&existing) == id
        {
            return Ok(());
        }
        let write_err = |source: io::Error| {
            if is_disk_full(&source) {
                StoreError::DiskFull {
                    id,
                    path: self.root.clone(),
                }
            } else {
                StoreError::Write {
                    id,
                    path: path.clone(),
                    source,
                }
            }
        };
        let dir = path.parent().expect("a block path has a fan-out folder");
        fs::create_dir_all(dir).map_err(write_err)?;
        let tmp = self.root.join("tmp");
        if durable {
            fsutil::atomic_write_in(&tmp, &path, bytes).map_err(write_err)
        } else {
            fsutil::renamed_write_in(&tmp, &path, bytes).map_err(write_err)
        }
    }

    /// Reads block `id` and verifies it. A damaged file is removed and reported as
    /// [`StoreError::Corrupt`], so that it can be fetched or ingested again.
    pub fn get(&self, id: &Hash32) -> Result<Vec<u8>> {
        let path = self.path_of(id);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StoreError::Missing(*id)),
            Err(source) => {
                return Err(StoreError::Read {
                    id: *id,
                    path,
                    source,
                });
            }
        };
        let actual = Hash32::of(&bytes);
        if actual != *id {
            let _ = fs::remove_file(&path);
            return Err(StoreError::Corrupt {
                id: *id,
                path,
                actual,
            });
        }
        Ok(bytes)
    }
}

/// Checks that `bytes` hash to `id`.
fn check_id(id: Hash32, bytes: &[u8]) -> Result<()> {
    let actual = Hash32::of(bytes);
    if actual != id {
        return Err(StoreError::Corrupt {
            id,
            path: PathBuf::new(),
            actual,
        });
    }
    Ok(())
}

/// Whether an I/O error means that the disk or quota is full.
pub fn is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    ) || e.raw_os_error() == Some(28)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_round_trip_and_dedupe() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlockStore::open(dir.path()).unwrap();
        let id = store.put(b"segment bytes").unwrap();
        assert_eq!(id, Hash32::of(b"segment bytes"));
        assert_eq!(store.get(&id).unwrap(), b"segment bytes");
        assert_eq!(store.put(b"segment bytes").unwrap(), id);
        assert!(store.contains(&id));
    }

    #[test]
    fn corrupt_block_is_detected_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlockStore::open(dir.path()).unwrap();
        let id = store.put(b"good").unwrap();
        fs::write(store.path_of(&id), b"bad!").unwrap();
        match store.get(&id) {
            Err(StoreError::Corrupt { actual, .. }) => assert_eq!(actual, Hash32::of(b"bad!")),
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert!(matches!(store.get(&id), Err(StoreError::Missing(_))));
        // Storing it again repairs it.
        store.put(b"good").unwrap();
        assert_eq!(store.get(&id).unwrap(), b"good");
    }

    #[test]
    fn put_with_wrong_id_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlockStore::open(dir.path()).unwrap();
        let wrong = Hash32::of(b"other");
        assert!(matches!(
            store.put_with_id(wrong, b"data"),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(!store.contains(&wrong));
    }

    #[test]
    fn oversized_block_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlockStore::open(dir.path()).unwrap();
        let big = vec![0u8; MAX_BLOCK_BYTES + 1];
        assert!(matches!(store.put(&big), Err(StoreError::TooLarge(_))));
    }
}
