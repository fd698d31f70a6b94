//! The driver's disk: the store's budget (retention, PROTOCOL.md 6) and the chain log. Every
//! write runs off the async threads: the chain log on its own thread, evictions and the
//! retention record on tokio's blocking threads.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;

use chorus_consensus::{Chain, DecidedSlot, Hash32, TrackRef};
use chorus_media::store::BlockStore;
use tracing::{info, warn};

use crate::retention::Retention;
use crate::state::ChainLog;
use crate::supervise;

/// Keeps `DATA/chain.log` equal to the chain: one append per decided slot, a truncation when a
/// fork is adopted, each on the writer thread.
pub struct ChainWriter {
    /// Records the log holds (or will once the thread has written them).
    written: usize,
    tx: Option<std_mpsc::Sender<(usize, Vec<DecidedSlot>)>>,
    thread: Option<JoinHandle<()>>,
}

impl ChainWriter {
    /// Starts the writer thread of `log`.
    pub fn start(mut log: ChainLog) -> std::io::Result<ChainWriter> {
        let written = log.len();
        let (tx, rx) = std_mpsc::channel::<(usize, Vec<DecidedSlot>)>();
        let thread = std::thread::Builder::new()
            .name("chain log".into())
            .spawn(move || {
                for (keep, slots) in rx {
                    if let Err(e) = log.write(keep, &slots) {
                        warn!(
                            event = "store_error",
                            "{e:#}; the slots not written are synced from peers after a restart"
                        );
                    }
                }
            })?;
        Ok(ChainWriter {
            written,
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// The chain was replaced from `from_slot` on: the log keeps only the records before it.
    pub fn adopted(&mut self, chain: &Chain, from_slot: u64) {
        let first = chain.decided_slots().first().map_or(from_slot, |d| d.slot);
        let keep = usize::try_from(from_slot.saturating_sub(first)).unwrap_or(usize::MAX);
        self.written = self.written.min(keep);
    }

    /// Hands the thread the slots decided since the last call.
    pub fn follow(&mut self, chain: &Chain) {
        let slots = chain.decided_slots();
        if slots.len() == self.written {
            return;
        }
        let keep = self.written.min(slots.len());
        let new = slots[keep..].to_vec();
        if let Some(tx) = &self.tx
            && tx.send((keep, new)).is_ok()
        {
            self.written = slots.len();
        }
    }

    /// Waits for the thread to write what it was handed (at shutdown).
    pub async fn close(mut self) {
        self.tx = None;
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// The store's budget: fetched tracks are evicted least recently used above it; the own
/// library and the slots `slot-3 ..= slot+5` are pinned.
pub struct Storage {
    store: BlockStore,
    budget: u64,
    retention: Option<Retention>,
    /// Manifest ids of the own library.
    own: BTreeSet<Hash32>,
}

impl Storage {
    /// The budget of `store` (`budget` bytes), with the retention record of `data_dir`. The
    /// store's size is counted (a walk of its files) on a blocking thread.
    pub async fn new(
        store: BlockStore,
        budget: u64,
        data_dir: &Path,
        library: &[TrackRef],
    ) -> Storage {
        let counted = store.clone();
        let _ = tokio::task::spawn_blocking(move || counted.size_bytes()).await;
        Storage {
            retention: Some(Retention::load(data_dir)),
            store,
            budget,
            own: library.iter().map(|t| t.manifest_id).collect(),
        }
    }

    /// Bytes in the store.
    pub fn bytes(&self) -> u64 {
        self.store.size_bytes()
    }

    /// A fetched track is held in full: remembered with the last slot it plays in (0 when it
    /// was fetched before its slot was final: [`Storage::decided`] moves it on then).
    pub fn fetched(&mut self, track: &TrackRef, chain: &Chain) {
        if self.own.contains(&track.manifest_id) {
            return;
        }
        let last = (0..chain.len())
            .rev()
            .find(|s| {
                chain
                    .winner(*s)
                    .is_some_and(|w| w.track_hash == track.track_hash)
            })
            .unwrap_or(0);
        self.touch(track.manifest_id, last);
    }

    /// `slot` became final with `track`: a fetched track that plays there is kept as used in
    /// it (a track prefetched at the Decision was held before its slot was final).
    pub fn decided(&mut self, slot: u64, track: &TrackRef) {
        if self
            .retention
            .as_ref()
            .is_some_and(|r| r.holds(&track.manifest_id))
        {
            self.touch(track.manifest_id, slot);
        }
    }

    fn touch(&mut self, manifest_id: Hash32, last: u64) {
        if let Some(r) = self.retention.as_mut() {
            r.touch(manifest_id, last);
            let record = r.clone();
            supervise::spawn_blocking("retention record", move || {
                if let Err(e) = record.save() {
                    tracing::debug!("cannot save the retention record: {e}");
                }
            });
        }
    }

    /// Evicts fetched tracks above the budget at the start of `slot`; returns the track hashes
    /// of the tracks evicted (those of `chain` whose manifest went).
    pub async fn enforce_budget(&mut self, slot: u64, chain: &Chain) -> Vec<Hash32> {
        let bytes = self.bytes();
        if bytes <= self.budget {
            return Vec::new();
        }
        let Some(mut retention) = self.retention.take() else {
            return Vec::new();
        };
        let pinned: BTreeSet<Hash32> = (slot.saturating_sub(3)..=slot + 5)
            .filter_map(|k| chain.winner(k).map(|t| t.manifest_id))
            .chain(self.own.iter().copied())
            .collect();
        let store = self.store.clone();
        let budget = self.budget;
        let pass = tokio::task::spawn_blocking(move || {
            let evicted = retention.evict(&store, &pinned, bytes, budget);
            if !evicted.tracks.is_empty() {
                let _ = retention.save();
            }
            (retention, evicted)
        })
        .await;
        let Ok((retention, evicted)) = pass else {
            warn!(
                event = "store_error",
                "the eviction pass failed; the store stays over its budget"
            );
            return Vec::new();
        };
        self.retention = Some(retention);
        let store_bytes = self.bytes();
        if !evicted.tracks.is_empty() {
            info!(
                event = "evicted",
                tracks = evicted.tracks.len(),
                bytes = evicted.bytes,
                store_bytes,
                budget,
                "store above its budget: evicted {} fetched tracks ({} bytes)",
                evicted.tracks.len(),
                evicted.bytes
            );
        }
        if store_bytes > budget {
            warn!(
                event = "store_over_budget",
                store_bytes,
                budget,
                "the store holds {store_bytes} bytes, above its budget of {budget}, and nothing more can be evicted (the own library and the coming slots are pinned)"
            );
        }
        chain
            .decided_slots()
            .iter()
            .filter(|d| evicted.tracks.contains(&d.track.manifest_id))
            .map(|d| d.track.track_hash)
            .collect()
    }
}
