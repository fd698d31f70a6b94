//! The DJ's queue as the driver uses it (`crate::queue`): reread when its file changes, handed
//! to consensus as the track hashes not proposed yet, and each entry proposed recorded in the
//! data directory so that it is proposed once, across restarts too.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::SystemTime;

use chorus_consensus::Hash32;
use tracing::{info, warn};

use crate::queue::{self, Queue};

/// See the module's doc.
pub struct Queueing {
    config_dir: PathBuf,
    data_dir: PathBuf,
    stamp: Option<SystemTime>,
    queue: Queue,
    proposed: BTreeSet<u64>,
}

impl Queueing {
    /// The queue of `config_dir`, with the record of proposed entries of `data_dir` (a damaged
    /// record is set aside with a warning: entries may then be proposed again).
    pub fn new(config_dir: PathBuf, data_dir: PathBuf) -> Queueing {
        let proposed = queue::load_proposed(&data_dir).unwrap_or_else(|e| {
            warn!(event = "queue_invalid", "{e:#}");
            BTreeSet::new()
        });
        Queueing {
            config_dir,
            data_dir,
            stamp: None,
            queue: Queue::default(),
            proposed,
        }
    }

    /// Rereads the file when it changed (or `force`); true when the queue was replaced. A file
    /// that does not parse keeps the previous queue and says so.
    pub fn reload(&mut self, force: bool) -> bool {
        let stamp = queue::stamp(&self.config_dir);
        if !force && stamp == self.stamp {
            return false;
        }
        self.stamp = stamp;
        match Queue::load(&self.config_dir) {
            Ok(q) => {
                self.queue = q;
                let pending = self.queue.pending(&self.proposed).count();
                if !force || pending > 0 {
                    info!(
                        event = "queue",
                        pending, "the DJ's queue: {pending} tracks to propose"
                    );
                }
                true
            }
            Err(e) => {
                warn!(event = "queue_invalid", "{e:#}; keeping the previous queue");
                false
            }
        }
    }

    /// The entries still to propose, in order, for `/status`.
    pub fn json(&self) -> serde_json::Value {
        self.queue
            .pending(&self.proposed)
            .map(|e| {
                serde_json::json!({
                    "id": e.id,
                    "track_hash": e.track_hash,
                    "title": e.title,
                    "artist": e.artist,
                })
            })
            .collect()
    }

    /// The track hashes to propose first, in order.
    pub fn hashes(&self) -> Vec<Hash32> {
        self.queue
            .pending(&self.proposed)
            .filter_map(queue::Entry::hash)
            .collect()
    }

    /// The node proposed `track`: the first pending entry of it, if any, is done (recorded on
    /// disk); its id.
    pub fn proposed(&mut self, track: &Hash32) -> Option<u64> {
        let id = self
            .queue
            .pending(&self.proposed)
            .find(|e| e.hash() == Some(*track))?
            .id;
        // Only ids still in the file are worth keeping.
        let ids: BTreeSet<u64> = self.queue.entries.iter().map(|e| e.id).collect();
        self.proposed.retain(|i| ids.contains(i));
        self.proposed.insert(id);
        if let Err(e) = queue::save_proposed(&self.data_dir, &self.proposed) {
            warn!(
                event = "queue_invalid",
                "{e:#}: after a restart the entry may be proposed again"
            );
        }
        Some(id)
    }
}
