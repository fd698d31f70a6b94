//! The DJ's queue as the driver uses it (`crate::queue`), followed by the listeners' queued
//! requests (`crate::requests`): both reread when their file changes, handed to consensus as
//! the track hashes not proposed yet (the DJ's entries first), and each entry or request
//! proposed recorded in the data directory so that it is proposed once, across restarts too.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::SystemTime;

use chorus_consensus::Hash32;
use tracing::{info, warn};

use crate::queue::{self, Queue};
use crate::requests::{self, Book, Request, State};

/// What a proposal took from the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// The DJ's entry with this id.
    Dj(u64),
    /// The listener request with this id.
    Request(u64),
}

/// See the module's doc.
pub struct Queueing {
    config_dir: PathBuf,
    data_dir: PathBuf,
    stamp: Option<SystemTime>,
    queue: Queue,
    proposed: BTreeSet<u64>,
    requests_stamp: Option<SystemTime>,
    requests: Book,
    requests_proposed: BTreeSet<u64>,
}

impl Queueing {
    /// The queue of `config_dir`, with the record of proposed entries of `data_dir` (a damaged
    /// record is set aside with a warning: entries may then be proposed again).
    pub fn new(config_dir: PathBuf, data_dir: PathBuf) -> Queueing {
        let proposed = queue::load_proposed(&data_dir).unwrap_or_else(|e| {
            warn!(event = "queue_invalid", "{e:#}");
            BTreeSet::new()
        });
        let requests_proposed = requests::load_proposed(&data_dir).unwrap_or_else(|e| {
            warn!(event = "requests_invalid", "{e:#}");
            BTreeSet::new()
        });
        Queueing {
            config_dir,
            data_dir,
            stamp: None,
            queue: Queue::default(),
            proposed,
            requests_stamp: None,
            requests: Book::default(),
            requests_proposed,
        }
    }

    /// Rereads either file when it changed (or `force`); true when the queue changed. A file
    /// that does not parse keeps what was read before and says so.
    pub fn reload(&mut self, force: bool) -> bool {
        let dj = self.reload_dj(force);
        let listeners = self.reload_requests(force);
        dj || listeners
    }

    /// Logs what the queue holds now (after [`Queueing::reload`] changed it and `/status` shows
    /// it): `queue` with the DJ's entries and the listeners' requests still to propose.
    pub fn log(&self, force: bool) {
        let pending = self.queue.pending(&self.proposed).count();
        let requests = self.queued_requests().count();
        if !force || pending + requests > 0 {
            info!(
                event = "queue",
                pending,
                requests,
                "the queue: {pending} of the DJ's tracks and {requests} listener requests to propose"
            );
        }
    }

    fn reload_requests(&mut self, force: bool) -> bool {
        let stamp = requests::stamp(&self.data_dir);
        if !force && stamp == self.requests_stamp {
            return false;
        }
        self.requests_stamp = stamp;
        match Book::load(&self.data_dir) {
            Ok(book) => {
                self.requests = book;
                true
            }
            Err(e) => {
                warn!(
                    event = "requests_invalid",
                    "{e:#}; keeping the requests read before"
                );
                false
            }
        }
    }

    /// Listener requests queued and not proposed yet, in order.
    fn queued_requests(&self) -> impl Iterator<Item = &Request> {
        self.requests
            .requests
            .iter()
            .filter(|r| r.state == State::Queued && !self.requests_proposed.contains(&r.id))
    }

    fn reload_dj(&mut self, force: bool) -> bool {
        let stamp = queue::stamp(&self.config_dir);
        if !force && stamp == self.stamp {
            return false;
        }
        self.stamp = stamp;
        match Queue::load(&self.config_dir) {
            Ok(q) => {
                self.queue = q;
                true
            }
            Err(e) => {
                warn!(event = "queue_invalid", "{e:#}; keeping the previous queue");
                false
            }
        }
    }

    /// The entries still to propose, in order (the DJ's, then the listeners'), for `/status`.
    pub fn json(&self) -> serde_json::Value {
        let dj = self.queue.pending(&self.proposed).map(|e| {
            serde_json::json!({
                "id": e.id,
                "source": "dj",
                "track_hash": e.track_hash,
                "title": e.title,
                "artist": e.artist,
            })
        });
        let listeners = self.queued_requests().map(|r| {
            serde_json::json!({
                "id": r.id,
                "source": "request",
                "requested_by": r.name,
                "track_hash": r.track_hash,
                "title": r.title,
                "artist": r.artist,
            })
        });
        dj.chain(listeners).collect()
    }

    /// The track hashes to propose first, in order: the DJ's, then the listeners'.
    pub fn hashes(&self) -> Vec<Hash32> {
        let dj = self
            .queue
            .pending(&self.proposed)
            .filter_map(queue::Entry::hash);
        let listeners = self
            .queued_requests()
            .filter_map(|r| Hash32::from_hex(&r.track_hash).ok());
        dj.chain(listeners).collect()
    }

    /// The node proposed `track`: the first pending entry of it (the DJ's first, else a
    /// listener's request), if any, is done (recorded on disk).
    pub fn proposed(&mut self, track: &Hash32) -> Option<Taken> {
        match self.proposed_dj(track) {
            Some(id) => Some(Taken::Dj(id)),
            None => self.proposed_request(track).map(Taken::Request),
        }
    }

    fn proposed_request(&mut self, track: &Hash32) -> Option<u64> {
        let hex = track.to_hex();
        let id = self.queued_requests().find(|r| r.track_hash == hex)?.id;
        // Only ids still in the file are worth keeping.
        let ids: BTreeSet<u64> = self.requests.requests.iter().map(|r| r.id).collect();
        self.requests_proposed.retain(|i| ids.contains(i));
        self.requests_proposed.insert(id);
        if let Err(e) = requests::save_proposed(&self.data_dir, &self.requests_proposed) {
            warn!(
                event = "requests_invalid",
                "{e:#}: after a restart the request may be proposed again"
            );
        }
        Some(id)
    }

    fn proposed_dj(&mut self, track: &Hash32) -> Option<u64> {
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
