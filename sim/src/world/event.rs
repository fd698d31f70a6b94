//! What can happen at an instant of the simulation, and the queue order.

use std::rc::Rc;

use chorus_consensus::{DecidedSlot, Envelope, Hash32, Verified};

/// What happens at an instant. Events for a node carry its incarnation where a crash or restart
/// in between must make them void.
pub(super) enum Event {
    /// A node's timer (stale if the node has rescheduled or restarted since).
    Timer { node: usize, inc: u32 },
    /// A gossip message arrives: opened once when published (every node shares the network
    /// id), or the envelope that failed to open, which each receiver judges itself.
    Gossip {
        to: usize,
        from: usize,
        message: Rc<Result<Verified, Envelope>>,
    },
    /// A `/chorus/sync/1 Proposals` request arrives at `server`.
    FetchRequest {
        server: usize,
        client: usize,
        slot: u64,
        ids: Vec<Hash32>,
    },
    /// Its answer arrives at `client`.
    FetchResponse {
        client: usize,
        inc: u32,
        envelopes: Vec<Envelope>,
    },
    /// A `/chorus/sync/1 Chain{from_slot}` request arrives at `server`.
    ChainRequest {
        server: usize,
        client: usize,
        from_slot: u64,
    },
    /// Its answer arrives at `client`.
    ChainResponse {
        client: usize,
        inc: u32,
        server: usize,
        slots: Vec<DecidedSlot>,
    },
    /// An adversary's held-back message is published now.
    Publish {
        node: usize,
        inc: u32,
        envelope: Envelope,
    },
    /// A crashed node starts again from its persisted chain.
    Restart { node: usize },
    /// A node syncing its chain before it starts got no answer in time.
    SyncTimeout { node: usize, inc: u32, attempt: u32 },
}

/// An event and when it happens; `seq` keeps events at equal times in insertion order.
pub(super) struct Scheduled {
    pub(super) at: u64,
    pub(super) seq: u64,
    pub(super) event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}
