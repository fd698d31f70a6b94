//! Retention (PROTOCOL.md 6): the own library and the tracks of slots `current-3 ..= current+5`
//! are pinned; other fetched tracks are evicted least recently used while the store is above
//! its budget. The fetched tracks and the last slot each was used in are kept in
//! `DATA/retention.json`. The store removes the blocks and counts what that freed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chorus_consensus::Hash32;
use chorus_media::Manifest;
use chorus_media::store::BlockStore;
use serde::{Deserialize, Serialize};

const FILE: &str = "retention.json";

/// Fetched (not own) tracks by manifest id, with the last slot each played or will play in.
#[derive(Debug, Default, Clone)]
pub struct Retention {
    used: BTreeMap<Hash32, u64>,
    path: PathBuf,
}

/// The file's form: manifest ids in hex.
#[derive(Default, Serialize, Deserialize)]
struct FileForm {
    used: BTreeMap<String, u64>,
}

/// What one eviction pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Evicted {
    /// Manifests removed with their blocks.
    pub tracks: Vec<Hash32>,
    /// Bytes freed.
    pub bytes: u64,
}

impl Retention {
    /// Loads the record of a data directory (empty if missing or damaged: nothing is then
    /// evicted until tracks are used again, which is safe).
    pub fn load(data_dir: &Path) -> Retention {
        let path = data_dir.join(FILE);
        let form: FileForm = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Retention {
            used: form
                .used
                .into_iter()
                .filter_map(|(k, v)| Some((Hash32::from_hex(&k).ok()?, v)))
                .collect(),
            path,
        }
    }

    /// Notes that the fetched track `manifest_id` plays in `slot`.
    pub fn touch(&mut self, manifest_id: Hash32, slot: u64) {
        let e = self.used.entry(manifest_id).or_insert(slot);
        *e = (*e).max(slot);
    }

    /// Whether the fetched track `manifest_id` is recorded.
    pub fn holds(&self, manifest_id: &Hash32) -> bool {
        self.used.contains_key(manifest_id)
    }

    /// Saves the record atomically.
    pub fn save(&self) -> std::io::Result<()> {
        let form = FileForm {
            used: self.used.iter().map(|(k, v)| (k.to_hex(), *v)).collect(),
        };
        let bytes = serde_json::to_vec(&form).map_err(std::io::Error::other)?;
        chorus_media::fsutil::atomic_write(&self.path, &bytes)
    }

    /// Evicts fetched tracks not in `pinned`, least recently used first, until `bytes` (the
    /// store's size) is at most `budget`. Blocks that a pinned manifest also lists stay.
    pub fn evict(
        &mut self,
        store: &BlockStore,
        pinned: &BTreeSet<Hash32>,
        bytes: u64,
        budget: u64,
    ) -> Evicted {
        let mut out = Evicted::default();
        if bytes <= budget {
            return out;
        }
        let mut order: Vec<(u64, Hash32)> = self
            .used
            .iter()
            .filter(|(m, _)| !pinned.contains(*m))
            .map(|(m, s)| (*s, *m))
            .collect();
        order.sort();
        if order.is_empty() {
            return out;
        }
        let keep: BTreeSet<Hash32> = pinned
            .iter()
            .flat_map(|m| segment_ids(store, m))
            .chain(pinned.iter().copied())
            .collect();
        let mut left = bytes;
        for (_, manifest) in order {
            if left <= budget {
                break;
            }
            let mut ids = segment_ids(store, &manifest);
            ids.push(manifest);
            for id in ids.iter().filter(|id| !keep.contains(id)) {
                // A block that cannot be removed stays counted; the next pass tries again.
                let freed = store.remove(id).unwrap_or(0);
                left = left.saturating_sub(freed);
                out.bytes += freed;
            }
            self.used.remove(&manifest);
            out.tracks.push(manifest);
        }
        out
    }
}

fn segment_ids(store: &BlockStore, manifest: &Hash32) -> Vec<Hash32> {
    store
        .get(manifest)
        .ok()
        .and_then(|b| Manifest::parse(&b).ok())
        .map(|m| m.segments.iter().map(|s| s.id).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_media::manifest::SegmentEntry;

    /// A manifest with `n` segments of `size` bytes each, stored; returns its id.
    fn track(store: &BlockStore, seed: u8, n: usize, size: usize) -> Hash32 {
        let segments = (0..n)
            .map(|i| {
                let id = store.put(&vec![seed.wrapping_add(i as u8); size]).unwrap();
                SegmentEntry { id, frames: 281 }
            })
            .collect();
        let m = Manifest {
            segments,
            priming: 1024,
            padding: 0,
        };
        store.put(m.to_playlist().as_bytes()).unwrap()
    }

    #[test]
    fn evicts_least_recently_used_unpinned_tracks_until_under_budget() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlockStore::open(dir.path().join("store")).unwrap();
        let old = track(&store, 10, 3, 1000);
        let newer = track(&store, 50, 3, 1000);
        let pinned = track(&store, 90, 3, 1000);
        let mut r = Retention::load(dir.path());
        r.touch(old, 3);
        r.touch(newer, 7);
        r.touch(pinned, 1);
        let pins: BTreeSet<Hash32> = [pinned].into();
        // Under budget: nothing happens.
        assert_eq!(r.evict(&store, &pins, 9_000, 10_000), Evicted::default());
        // 1000 bytes over: the least recently used unpinned track goes, and only it.
        let before = store.size_bytes();
        let e = r.evict(&store, &pins, 10_000, 9_000);
        assert_eq!(e.tracks, vec![old]);
        assert!(e.bytes >= 3000);
        assert_eq!(
            store.size_bytes(),
            before - e.bytes,
            "the store counted what was freed"
        );
        assert_eq!(store.recount(), before - e.bytes);
        assert!(!store.contains(&old));
        assert!(store.contains(&newer));
        assert!(store.contains(&pinned));
        for id in segment_ids(&store, &pinned) {
            assert!(store.contains(&id));
        }
        // The record survives a restart.
        r.save().unwrap();
        let again = Retention::load(dir.path());
        assert_eq!(again.used.keys().copied().collect::<Vec<_>>().len(), 2);
    }

    #[test]
    fn a_track_fetched_before_its_slot_was_final_is_kept_as_used_there() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlockStore::open(dir.path().join("store")).unwrap();
        let prefetched = track(&store, 10, 2, 1000);
        let played = track(&store, 50, 2, 1000);
        let mut r = Retention::load(dir.path());
        assert!(!r.holds(&prefetched));
        // Fetched at the Decision: no final slot names it yet.
        r.touch(prefetched, 0);
        r.touch(played, 5);
        assert!(r.holds(&prefetched));
        // Its slot, 9, becomes final (what `Storage::decided` does).
        r.touch(prefetched, 9);
        let e = r.evict(&store, &BTreeSet::new(), 4_000, 3_000);
        assert_eq!(e.tracks, vec![played], "the older use goes first");
        assert!(store.contains(&prefetched));
    }

    #[test]
    fn blocks_a_pinned_track_shares_stay_and_gone_tracks_free_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlockStore::open(dir.path().join("store")).unwrap();
        // Same seed, same segment bytes: the two tracks share their first two segments.
        let fetched = track(&store, 10, 3, 1000);
        let pinned = track(&store, 10, 2, 1000);
        let gone = Hash32::digest(b"a manifest never stored");
        let mut r = Retention::load(dir.path());
        r.touch(gone, 1);
        r.touch(fetched, 2);
        let pins: BTreeSet<Hash32> = [pinned].into();
        let before = store.size_bytes();
        let e = r.evict(&store, &pins, before, 0);
        assert_eq!(e.tracks, vec![gone, fetched]);
        let manifest_bytes = before - 3000 - store.get(&pinned).unwrap().len() as u64;
        assert_eq!(
            e.bytes,
            1000 + manifest_bytes,
            "one segment and the manifest"
        );
        assert_eq!(store.size_bytes(), before - e.bytes);
        for id in segment_ids(&store, &pinned) {
            assert!(store.contains(&id));
        }
    }
}
