//! The library index: for every ingested file, its path, size, modification time and TrackInfo.
//! Written atomically as JSON, so that it survives any crash and can be read by people.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Hash32;
use crate::fsutil;
use crate::track::{FileStamp, TrackInfo};

const VERSION: u32 = 1;

/// A file path that survives JSON even when it is not UTF-8: UTF-8 paths are plain strings,
/// others are kept as their raw bytes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StoredPath {
    /// A UTF-8 path.
    Utf8(String),
    /// A path that is not valid UTF-8, as raw bytes (Unix).
    Bytes {
        /// The path's bytes.
        raw: Vec<u8>,
    },
}

impl StoredPath {
    /// Converts a path for storage.
    pub fn from_path(path: &Path) -> Self {
        match path.to_str() {
            Some(s) => Self::Utf8(s.to_owned()),
            None => Self::Bytes {
                raw: os_bytes(path.as_os_str()),
            },
        }
    }

    /// The path again.
    pub fn to_path(&self) -> PathBuf {
        match self {
            Self::Utf8(s) => PathBuf::from(s),
            Self::Bytes { raw } => PathBuf::from(bytes_os(raw)),
        }
    }
}

#[cfg(unix)]
fn os_bytes(s: &std::ffi::OsStr) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    s.as_bytes().to_vec()
}
#[cfg(not(unix))]
fn os_bytes(s: &std::ffi::OsStr) -> Vec<u8> {
    s.to_string_lossy().into_owned().into_bytes()
}
#[cfg(unix)]
fn bytes_os(b: &[u8]) -> OsString {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::OsStr::from_bytes(b).to_owned()
}
#[cfg(not(unix))]
fn bytes_os(b: &[u8]) -> OsString {
    String::from_utf8_lossy(b).into_owned().into()
}

/// One ingested file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// The file.
    pub path: StoredPath,
    /// Size and modification time when it was ingested.
    pub stamp: FileStamp,
    /// The result of the ingest.
    pub track: TrackInfo,
}

/// The library index.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LibraryIndex {
    /// Format version.
    pub version: u32,
    /// The library folder this index describes.
    pub root: Option<StoredPath>,
    /// Entries by file path (a list in the JSON form, as JSON keys must be strings).
    #[serde(with = "entries_as_list")]
    pub files: BTreeMap<StoredPath, IndexEntry>,
}

/// Errors reading or writing the index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The index file exists but cannot be read.
    #[error("cannot read the library index {path}: {source}")]
    Read {
        /// The index file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The index file cannot be written.
    #[error("cannot write the library index {path}: {source}")]
    Write {
        /// The index file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// What [`LibraryIndex::load`] found.
#[derive(Debug)]
pub enum Loaded {
    /// A valid index, or none yet (an empty one).
    Ok(LibraryIndex),
    /// The file was damaged (by something other than Chorus: its writes are atomic). It was moved
    /// aside to the given path and an empty index starts over; the store still holds every block,
    /// so re-ingesting costs encoding time but loses nothing.
    Damaged(LibraryIndex, PathBuf, String),
}

impl LibraryIndex {
    /// An empty index for `root`.
    pub fn new(root: &Path) -> Self {
        Self {
            version: VERSION,
            root: Some(StoredPath::from_path(root)),
            files: BTreeMap::new(),
        }
    }

    /// Loads the index at `path` (an empty index if the file does not exist).
    pub fn load(path: &Path) -> Result<Loaded, IndexError> {
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Loaded::Ok(Self::default()));
            }
            Err(source) => {
                return Err(IndexError::Read {
                    path: path.into(),
                    source,
                });
            }
        };
        match serde_json::from_slice::<Self>(&bytes) {
            Ok(index) if index.version == VERSION => Ok(Loaded::Ok(index)),
            other => {
                let reason = match other {
                    Ok(index) => format!("unknown index version {}", index.version),
                    Err(e) => e.to_string(),
                };
                let aside = path.with_extension(format!(
                    "damaged-{}",
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0)
                ));
                fs::rename(path, &aside).map_err(|source| IndexError::Write {
                    path: path.into(),
                    source,
                })?;
                Ok(Loaded::Damaged(Self::default(), aside, reason))
            }
        }
    }

    /// Writes the index atomically.
    pub fn save(&self, path: &Path) -> Result<(), IndexError> {
        let bytes = serde_json::to_vec_pretty(self).expect("the index serializes to JSON");
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|source| IndexError::Write {
                path: path.into(),
                source,
            })?;
        }
        fsutil::atomic_write(path, &bytes).map_err(|source| IndexError::Write {
            path: path.into(),
            source,
        })
    }

    /// The tracks, one per distinct track hash, sorted by artist, title and hash.
    pub fn tracks(&self) -> Vec<&TrackInfo> {
        let mut by_hash: BTreeMap<Hash32, &TrackInfo> = BTreeMap::new();
        for entry in self.files.values() {
            by_hash
                .entry(entry.track.track_hash)
                .or_insert(&entry.track);
        }
        let mut tracks: Vec<_> = by_hash.into_values().collect();
        tracks.sort_by(|a, b| {
            (
                a.artist.to_lowercase(),
                a.title.to_lowercase(),
                a.track_hash,
            )
                .cmp(&(
                    b.artist.to_lowercase(),
                    b.title.to_lowercase(),
                    b.track_hash,
                ))
        });
        tracks
    }

    /// The track with this hash, if the library has it.
    pub fn track(&self, hash: &Hash32) -> Option<&TrackInfo> {
        self.files
            .values()
            .map(|e| &e.track)
            .find(|t| t.track_hash == *hash)
    }
}

mod entries_as_list {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        map: &BTreeMap<StoredPath, IndexEntry>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.values())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<StoredPath, IndexEntry>, D::Error> {
        let list = Vec::<IndexEntry>::deserialize(d)?;
        Ok(list.into_iter().map(|e| (e.path.clone(), e)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_utf8_paths_survive() {
        #[cfg(unix)]
        {
            let p = PathBuf::from(bytes_os(b"/music/caf\xe9.mp3"));
            let s = StoredPath::from_path(&p);
            assert!(matches!(s, StoredPath::Bytes { .. }));
            let json = serde_json::to_string(&s).unwrap();
            let back: StoredPath = serde_json::from_str(&json).unwrap();
            assert_eq!(back.to_path(), p);
        }
        let s = StoredPath::from_path(Path::new("/music/Björk - Jóga.flac"));
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            "\"/music/Björk - Jóga.flac\""
        );
    }

    #[test]
    fn damaged_index_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("library.json");
        fs::write(&path, b"{ not json").unwrap();
        match LibraryIndex::load(&path).unwrap() {
            Loaded::Damaged(index, aside, _) => {
                assert!(index.files.is_empty());
                assert_eq!(fs::read(aside).unwrap(), b"{ not json");
                assert!(!path.exists());
            }
            other => panic!("expected Damaged, got {other:?}"),
        }
    }

    #[test]
    fn save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/library.json");
        let index = LibraryIndex::new(Path::new("/music"));
        index.save(&path).unwrap();
        match LibraryIndex::load(&path).unwrap() {
            Loaded::Ok(back) => assert_eq!(back, index),
            other => panic!("{other:?}"),
        }
    }
}
