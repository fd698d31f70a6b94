//! The content-addressed block store: segments and manifests on disk, named by their SHA-256.
//!
//! Layout under the store root: `blocks/ab/abcdef...` (the first two hex digits fan the blocks
//! out over 256 folders) and `tmp/` for writes in progress. Every write is atomic, so a block file
//! that exists is complete; every read hashes the bytes again, so a block damaged on disk is
//! reported (and removed) instead of being played.
//!
//! The store owns removal ([`BlockStore::remove`]) and knows its size
//! ([`BlockStore::size_bytes`]), so that no caller handles block paths itself.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::Hash32;
use crate::fsutil;

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
    /// Removing a block failed (it is still there).
    #[error("cannot remove block {id} at {path}: {source}")]
    Remove {
        /// The block being removed.
        id: Hash32,
        /// The block's file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A block larger than [`MAX_BLOCK_BYTES`].
    #[error("block of {0} bytes exceeds the 1 MiB limit")]
    TooLarge(usize),
}

/// Result alias of the block store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A content-addressed block store rooted at one folder. Cheap to clone; safe to use from many
/// threads and processes at once (writes are atomic renames of complete files).
///
/// Its size ([`BlockStore::size_bytes`]) is the sum of the block files' lengths: counted by
/// walking `blocks/` the first time it is asked for, then kept by every put and removal through
/// this store or its clones. Nothing of it is saved, so it is right after a restart or a
/// `kill -9`. Blocks written or removed by another process (or through a second
/// [`BlockStore::open`] of the same folder) are seen at the next open or [`BlockStore::recount`].
#[derive(Clone, Debug)]
pub struct BlockStore {
    root: PathBuf,
    /// Bytes under `blocks/`, `None` until first counted. Its lock also orders each rename
    /// into `blocks/` and each removal with the count, so concurrent puts of one block count once.
    size: Arc<Mutex<Option<u64>>>,
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
        Ok(Self {
            root,
            size: Arc::default(),
        })
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
        let id = Hash32::digest(bytes);
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
            && Hash32::digest(&existing) == id
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
        let added = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        fsutil::write_renamed_with(&tmp, &path, bytes, durable, |from, to| {
            let mut size = self.lock_size();
            // A damaged file being replaced no longer counts.
            let replaced = fs::metadata(to).map_or(0, |m| m.len());
            fs::rename(from, to)?;
            if let Some(total) = size.as_mut() {
                *total = total.saturating_sub(replaced).saturating_add(added);
            }
            Ok(())
        })
        .map_err(write_err)
    }

    /// Removes block `id` and returns the bytes freed; a block that is not there frees 0.
    pub fn remove(&self, id: &Hash32) -> Result<u64> {
        let path = self.path_of(id);
        let remove_err = |source| StoreError::Remove {
            id: *id,
            path: path.clone(),
            source,
        };
        let mut size = self.lock_size();
        let len = match fs::metadata(&path) {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(remove_err(e)),
        };
        match fs::remove_file(&path) {
            Ok(()) => {}
            // Another process removed it first.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(remove_err(e)),
        }
        if let Some(total) = size.as_mut() {
            *total = total.saturating_sub(len);
        }
        Ok(len)
    }

    /// Bytes held in blocks: the sum of the block files' lengths (see [`BlockStore`] for how it
    /// is kept). The first call walks the store.
    pub fn size_bytes(&self) -> u64 {
        let mut size = self.lock_size();
        *size.get_or_insert_with(|| walk_size(&self.root.join("blocks")))
    }

    /// Walks the store again and returns [`BlockStore::size_bytes`] counted afresh, taking in
    /// what other processes wrote or removed.
    pub fn recount(&self) -> u64 {
        let mut size = self.lock_size();
        *size.insert(walk_size(&self.root.join("blocks")))
    }

    fn lock_size(&self) -> MutexGuard<'_, Option<u64>> {
        // A total is a plain number: a panic elsewhere cannot leave it half-updated.
        self.size.lock().unwrap_or_else(PoisonError::into_inner)
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
        let actual = Hash32::digest(&bytes);
        if actual != *id {
            // Best effort: a file that cannot be removed is found corrupt again on the next read.
            let _ = self.remove(id);
            return Err(StoreError::Corrupt {
                id: *id,
                path,
                actual,
            });
        }
        Ok(bytes)
    }
}

/// The sum of the lengths of the files under `dir` (entries that cannot be read count 0).
fn walk_size(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// Checks that `bytes` hash to `id`.
fn check_id(id: Hash32, bytes: &[u8]) -> Result<()> {
    let actual = Hash32::digest(bytes);
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
        assert_eq!(id, Hash32::digest(b"segment bytes"));
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
            Err(StoreError::Corrupt { actual, .. }) => assert_eq!(actual, Hash32::digest(b"bad!")),
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
        let wrong = Hash32::digest(b"other");
        assert!(matches!(
            store.put_with_id(wrong, b"data"),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(!store.contains(&wrong));
    }

    #[test]
    fn remove_frees_the_block_and_reports_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlockStore::open(dir.path()).unwrap();
        let id = store.put(b"twelve bytes").unwrap();
        let other = store.put(b"stays").unwrap();
        assert_eq!(store.size_bytes(), 17);
        assert_eq!(store.remove(&id).unwrap(), 12);
        assert!(!store.contains(&id));
        assert!(matches!(store.get(&id), Err(StoreError::Missing(_))));
        assert_eq!(store.size_bytes(), 5);
        assert_eq!(
            store.remove(&id).unwrap(),
            0,
            "a missing block frees nothing"
        );
        assert_eq!(
            store.remove(&Hash32::digest(b"never")).unwrap(),
            0,
            "nor does one never stored"
        );
        assert!(store.contains(&other));
    }

    #[test]
    fn size_is_kept_by_puts_and_removals_and_shared_by_clones() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlockStore::open(dir.path()).unwrap();
        assert_eq!(store.size_bytes(), 0);
        let clone = store.clone();
        let a = clone.put(&[1; 100]).unwrap();
        store.put(&[1; 100]).unwrap();
        assert_eq!(store.size_bytes(), 100, "a block stored twice counts once");
        store
            .put_fetched(Hash32::digest(&[2; 50]), &[2; 50])
            .unwrap();
        store.put_with_id(Hash32::digest(&[3; 7]), &[3; 7]).unwrap();
        assert_eq!(clone.size_bytes(), 157);
        clone.remove(&a).unwrap();
        assert_eq!(store.size_bytes(), 57);
        assert_eq!(store.recount(), 57);
    }

    #[test]
    fn size_is_counted_again_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlockStore::open(dir.path()).unwrap();
        let a = store.put(&[1; 100]).unwrap();
        store.put(&[2; 30]).unwrap();
        // A process killed at once keeps no count: the next open walks the blocks.
        drop(store);
        let store = BlockStore::open(dir.path()).unwrap();
        assert_eq!(store.size_bytes(), 130);
        // Writes the count has not seen (another process) are taken in by a recount.
        fs::remove_file(store.path_of(&a)).unwrap();
        assert_eq!(store.size_bytes(), 130);
        assert_eq!(store.recount(), 30);
    }

    #[test]
    fn a_corrupt_block_leaves_the_count_when_removed_or_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlockStore::open(dir.path()).unwrap();
        let id = store.put(b"good").unwrap();
        let other = store.put(b"other").unwrap();
        fs::write(store.path_of(&id), b"damaged!").unwrap();
        fs::write(store.path_of(&other), b"bad").unwrap();
        assert_eq!(store.size_bytes(), 11);
        // Read: found corrupt and removed.
        assert!(matches!(store.get(&id), Err(StoreError::Corrupt { .. })));
        assert_eq!(store.size_bytes(), 3);
        // Put: the damaged file is replaced.
        store.put(b"other").unwrap();
        assert_eq!(store.size_bytes(), 5);
        assert_eq!(store.recount(), 5);
    }

    #[test]
    fn concurrent_puts_of_one_block_count_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlockStore::open(dir.path()).unwrap();
        assert_eq!(store.size_bytes(), 0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                let store = store.clone();
                s.spawn(move || {
                    for i in 0..20u8 {
                        store
                            .put_fetched(Hash32::digest(&[i; 64]), &[i; 64])
                            .unwrap();
                    }
                });
            }
        });
        assert_eq!(store.size_bytes(), 20 * 64);
        assert_eq!(store.recount(), 20 * 64);
    }

    #[test]
    fn oversized_block_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlockStore::open(dir.path()).unwrap();
        let big = vec![0u8; MAX_BLOCK_BYTES + 1];
        assert!(matches!(store.put(&big), Err(StoreError::TooLarge(_))));
    }
}
