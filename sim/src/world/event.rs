//! What can happen at an instant of the simulation, and the queue order.

use std::sync::Arc;

use chorus_consensus::machine::Shared;
use chorus_consensus::{DecidedSlot, Envelope, Hash32};

/// What happens at an instant. Events for a node carry its incarnation where a crash or restart
/// in between must make them void.
pub(super) enum Event {
    /// A node's timer (stale if the node has rescheduled or restarted since).
    Timer { node: usize, inc: u32 },
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
    /// A grinder's held proposal: published now, or withheld for good.
    Grind {
        node: usize,
        inc: u32,
        envelope: Envelope,
    },
    /// A crashed node starts again from its persisted chain.
    Restart { node: usize },
    /// A node syncing its chain before it starts got no answer in time.
    SyncTimeout { node: usize, inc: u32, attempt: u32 },
}

/// A gossip message on its way to every receiver: one queue entry for all of its deliveries
/// rather than one each (a Status reaches about a thousand nodes in the largest runs, and the
/// queue of single deliveries was a large share of the work). Each delivery keeps the sequence
/// number it would have had as an event of its own, so the order of events is unchanged.
pub(super) struct Broadcast {
    pub(super) from: usize,
    pub(super) payload: Opening,
    /// `(at, seq, to)`, ascending.
    pub(super) deliveries: Vec<(u64, u64, usize)>,
    /// The next delivery.
    pub(super) next: usize,
}

/// A broadcast's payload, or the helper opening it.
pub(super) enum Opening {
    /// Opened.
    Ready(Arc<Payload>),
    /// Being opened by helper `helper`; its answer carries `ticket`.
    Pending { helper: usize, ticket: u64 },
}

/// What a broadcast carries.
pub(super) enum Payload {
    /// Opened once when published (every node shares the network id): one copy per thread
    /// lane, so that threads never share the reference counts the machines' peer tables
    /// update (`parallel::lane_of`).
    Opened {
        lanes: Vec<Shared>,
        /// Whether it is a Status, which only updates the receiver's peer table.
        status: bool,
    },
    /// The envelope that failed to open, which each receiver judges itself.
    Failed(Envelope),
}

/// One delivery of a broadcast, taken off the queue.
pub(super) struct Delivery {
    pub(super) at: u64,
    pub(super) to: usize,
    pub(super) from: usize,
    pub(super) payload: Arc<Payload>,
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
