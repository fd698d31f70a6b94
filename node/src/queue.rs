//! The DJ's queue (`chorus queue`): tracks of this node's library it proposes first, in order,
//! kept in `queue.toml` in the config directory. The command line and the operator's requests
//! to the HTTP API write that file, each edit under its lock (`files::locked`) and atomic; the
//! node's driver rereads it when it changes and never writes it. The entries the node has
//! proposed are recorded, by id, in `DATA/queue-proposed.json`, which only the driver writes; the queue shows the entries not proposed yet, and the command line drops the
//! proposed ones from its file at its next change. Ids are never reused.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result};
use chorus_consensus::Hash32;
use serde::{Deserialize, Serialize};

use crate::files;

/// The queue's file in the config directory.
pub const FILE: &str = "queue.toml";
/// The ids of the entries proposed, in the data directory.
pub const PROPOSED_FILE: &str = "queue-proposed.json";
/// Entries a queue holds at most.
pub const ENTRIES_MAX: usize = 1000;

/// One queued track.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Its id, as `chorus queue list` shows it.
    pub id: u64,
    /// The track's hash (hex).
    pub track_hash: String,
    /// For people: the track's title when it was queued.
    #[serde(default)]
    pub title: String,
    /// For people: the track's artist when it was queued.
    #[serde(default)]
    pub artist: String,
}

impl Entry {
    /// The track hash, if the file's text is one.
    pub fn hash(&self) -> Option<Hash32> {
        Hash32::from_hex(&self.track_hash).ok()
    }
}

/// The queue as its file holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queue {
    /// The id the next entry gets.
    #[serde(default)]
    pub next_id: u64,
    /// The entries, in order.
    #[serde(default, rename = "entry")]
    pub entries: Vec<Entry>,
}

impl Queue {
    /// The file of a config directory.
    pub fn path(config_dir: &Path) -> PathBuf {
        config_dir.join(FILE)
    }

    /// Loads the queue (empty when the file does not exist).
    pub fn load(config_dir: &Path) -> Result<Queue> {
        let path = Self::path(config_dir);
        let queue = files::read_toml(&path, || {
            format!(
                "the queue {} is not valid; `chorus queue clear` starts a new one",
                path.display()
            )
        })?;
        Ok(queue.unwrap_or_default())
    }

    /// Saves the queue atomically.
    pub fn save(&self, config_dir: &Path) -> Result<()> {
        let text = format!(
            "# Tracks this Chorus node proposes first, in order (`chorus queue`).\n{}",
            toml::to_string(self).context("cannot encode the queue")?
        );
        files::write_atomic(&Self::path(config_dir), text.as_bytes())
    }

    /// Appends an entry for `track_hash`; its id.
    pub fn push(&mut self, track_hash: Hash32, title: &str, artist: &str) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.entries.push(Entry {
            id,
            track_hash: track_hash.to_hex(),
            title: title.to_owned(),
            artist: artist.to_owned(),
        });
        id
    }

    /// The entries not proposed yet, in order.
    pub fn pending<'a>(&'a self, proposed: &'a BTreeSet<u64>) -> impl Iterator<Item = &'a Entry> {
        self.entries.iter().filter(|e| !proposed.contains(&e.id))
    }

    /// Drops the entries proposed already.
    pub fn drop_proposed(&mut self, proposed: &BTreeSet<u64>) {
        self.entries.retain(|e| !proposed.contains(&e.id));
    }
}

/// The file's modification time, to notice edits while running.
pub fn stamp(config_dir: &Path) -> Option<SystemTime> {
    files::modified(&Queue::path(config_dir))
}

/// The ids of the entries this node proposed (empty when the file does not exist).
pub fn load_proposed(data_dir: &Path) -> Result<BTreeSet<u64>> {
    let path = data_dir.join(PROPOSED_FILE);
    let ids = files::read_json(&path, || {
        format!(
            "{} is damaged; move it away (the queue then shows entries proposed already)",
            path.display()
        )
    })?;
    Ok(ids.unwrap_or_default())
}

/// Records the ids of the entries proposed, atomically.
pub fn save_proposed(data_dir: &Path, proposed: &BTreeSet<u64>) -> Result<()> {
    files::write_json(&data_dir.join(PROPOSED_FILE), proposed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_keep_their_ids_and_proposed_ones_leave() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = Queue::load(dir.path()).unwrap();
        assert!(q.entries.is_empty());
        let a = q.push(Hash32::digest(b"a"), "A", "X");
        let b = q.push(Hash32::digest(b"b"), "B", "Y");
        q.save(dir.path()).unwrap();
        let mut loaded = Queue::load(dir.path()).unwrap();
        assert_eq!(loaded, q);
        let proposed: BTreeSet<u64> = [a].into();
        save_proposed(dir.path(), &proposed).unwrap();
        let proposed = load_proposed(dir.path()).unwrap();
        let pending: Vec<u64> = loaded.pending(&proposed).map(|e| e.id).collect();
        assert_eq!(pending, vec![b]);
        loaded.drop_proposed(&proposed);
        loaded.entries.clear();
        // Ids are never reused, even after the queue was emptied.
        assert_eq!(loaded.push(Hash32::digest(b"c"), "C", "Z"), b + 1);
    }

    #[test]
    fn damaged_files_name_themselves() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), "entry = 3").unwrap();
        let e = Queue::load(dir.path()).unwrap_err();
        assert!(format!("{e:#}").contains(FILE), "{e:#}");
        std::fs::write(dir.path().join(PROPOSED_FILE), "{").unwrap();
        let e = load_proposed(dir.path()).unwrap_err();
        assert!(format!("{e:#}").contains(PROPOSED_FILE), "{e:#}");
    }
}
