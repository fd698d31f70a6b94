//! The discrete-event loop: N real `chorus_consensus::Consensus` machines, a virtual clock and a
//! simulated network between them.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::rc::Rc;
use std::time::Instant;

use chorus_consensus::{
    Action, Chain, Consensus, DecidedSlot, Envelope, ForkChoice, Genesis, Hash32, Rules, TrackRef,
};
use libp2p_identity::{Keypair, PeerId};

use crate::config::SimConfig;
use crate::report::{Report, Traffic};
use crate::rng::Rng;
use crate::topology::Mesh;

/// Network time of the genesis start: any fixed, realistic epoch (ms).
const GENESIS_START_MS: u64 = 1_800_000_000_000;
/// Gossipsub's mesh degree.
const MESH_DEGREE: usize = 6;

/// What happens at an instant.
enum Event {
    /// A node's timer (stale if the node has rescheduled since).
    Timer { node: usize },
    /// A gossip message arrives.
    Gossip {
        to: usize,
        from: usize,
        envelope: Rc<Envelope>,
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
        server: usize,
        slots: Vec<DecidedSlot>,
    },
}

struct Scheduled {
    at: u64,
    seq: u64,
    event: Event,
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

struct Node {
    machine: Consensus,
    /// Added to the true time to give this node's clock.
    skew_ms: i64,
    /// The true time of the timer event in the queue, if any.
    timer: Option<u64>,
}

/// A simulated network of consensus machines.
pub struct World {
    cfg: SimConfig,
    net_rng: Rng,
    mesh: Mesh,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    nodes: Vec<Node>,
    index: BTreeMap<PeerId, usize>,
    traffic: Traffic,
    target_len: u64,
    finished: Vec<bool>,
    finished_count: usize,
    events: u64,
}

fn random_hash(rng: &mut Rng) -> Hash32 {
    let mut h = [0u8; 32];
    for chunk in h.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    Hash32(h)
}

fn random_track(rng: &mut Rng, rules: &Rules, label: &str) -> TrackRef {
    let duration_ms = 120_000 + rng.below(180_000);
    TrackRef {
        track_hash: random_hash(rng),
        manifest_id: random_hash(rng),
        duration_ms,
        segment_count: duration_ms.div_ceil(rules.segment_ms),
        title: label.to_owned(),
        artist: String::new(),
        album: String::new(),
        loudness_lufs: Some(-14.0),
    }
}

impl World {
    /// Builds the network of `cfg`: keys, libraries, a genesis, the mesh and the clocks.
    pub fn new(cfg: SimConfig) -> Self {
        let mut rng = Rng::new(cfg.seed);
        let mut key_rng = rng.fork(1);
        let mut lib_rng = rng.fork(2);
        let mut mesh_rng = rng.fork(3);
        let mut clock_rng = rng.fork(4);
        let net_rng = rng.fork(5);
        let rules = Rules::default();
        let keys: Vec<Keypair> = (0..cfg.nodes)
            .map(|_| {
                let mut secret = [0u8; 32];
                for chunk in secret.chunks_mut(8) {
                    chunk.copy_from_slice(&key_rng.next_u64().to_le_bytes());
                }
                Keypair::ed25519_from_bytes(secret).expect("32 bytes make an ed25519 secret key")
            })
            .collect();
        let queue: Vec<TrackRef> = (0..rules.lookahead)
            .map(|i| random_track(&mut lib_rng, &rules, &format!("genesis {i}")))
            .collect();
        let genesis = Genesis::new(
            "sim",
            GENESIS_START_MS,
            &rules,
            queue,
            keys[0].public().to_peer_id(),
            GENESIS_START_MS - 60_000,
        )
        .and_then(|g| g.sign(&keys[0]))
        .expect("the simulator's genesis is valid");
        let nodes: Vec<Node> =
            keys.into_iter()
                .enumerate()
                .map(|(i, key)| {
                    let mut machine = Consensus::new(key, Chain::new(&genesis));
                    machine.set_library((0..cfg.library_size).map(|j| {
                        random_track(&mut lib_rng, &rules, &format!("node {i} track {j}"))
                    }));
                    let skew_ms = if cfg.skew_ms == 0 {
                        0
                    } else {
                        clock_rng.below(2 * cfg.skew_ms + 1) as i64 - cfg.skew_ms as i64
                    };
                    Node {
                        machine,
                        skew_ms,
                        timer: None,
                    }
                })
                .collect();
        let index = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (*n.machine.peer_id(), i))
            .collect();
        let mesh = Mesh::random(cfg.nodes, MESH_DEGREE, &mut mesh_rng);
        let target_len = rules.lookahead + cfg.slots;
        let n = nodes.len();
        let mut world = Self {
            cfg,
            net_rng,
            mesh,
            now: GENESIS_START_MS - 1_000,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes,
            index,
            traffic: Traffic::default(),
            target_len,
            finished: vec![false; n],
            finished_count: 0,
            events: 0,
        };
        for i in 0..world.nodes.len() {
            world.reschedule(i);
        }
        world
    }

    fn node_time(&self, i: usize) -> u64 {
        self.now.saturating_add_signed(self.nodes[i].skew_ms)
    }

    fn push(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            event,
        }));
    }

    /// Keeps exactly one live timer event per node, at its `poll_timeout`.
    fn reschedule(&mut self, i: usize) {
        let skew = self.nodes[i].skew_ms;
        let due = self.nodes[i]
            .machine
            .poll_timeout()
            .map(|t| t.saturating_add_signed(-skew).max(self.now));
        if due != self.nodes[i].timer {
            self.nodes[i].timer = due;
            if let Some(at) = due {
                self.push(at, Event::Timer { node: i });
            }
        }
    }

    /// The slot a partition is judged by: the slot playing now by the reference chain (node 0's
    /// view of the schedule, which every node shares while in agreement).
    fn current_slot(&self) -> u64 {
        self.nodes[0].machine.chain().slot_at(self.now).unwrap_or(0)
    }

    fn partitioned(&self, a: usize, b: usize) -> bool {
        if self.cfg.partitions.is_empty() {
            return false;
        }
        let slot = self.current_slot();
        let n = self.cfg.nodes;
        self.cfg.partitions.iter().any(|p| {
            let active = slot >= p.at_slot && slot < p.at_slot + p.slots;
            let cut = n * usize::from(p.split_pct) / 100;
            active && ((a < cut) != (b < cut))
        })
    }

    fn one_hop_ms(&mut self) -> u64 {
        self.cfg.latency.sample(&mut self.net_rng).ceil() as u64
    }

    fn drain_actions(&mut self, i: usize) {
        while let Some(action) = self.nodes[i].machine.poll_action() {
            match action {
                Action::Publish { envelope, .. } => self.gossip(i, envelope),
                Action::FetchProposals { peer, slot, ids } => {
                    let Some(&server) = self.index.get(&peer) else {
                        continue;
                    };
                    self.traffic.count_request();
                    if self.partitioned(i, server) || self.net_rng.chance(self.cfg.loss) {
                        continue;
                    }
                    let at = self.now + self.one_hop_ms();
                    self.push(
                        at,
                        Event::FetchRequest {
                            server,
                            client: i,
                            slot,
                            ids,
                        },
                    );
                }
                Action::Decided(_) => {
                    // Results are read from the chains at the end; here only "is everyone done".
                    if !self.finished[i] && self.nodes[i].machine.chain().len() >= self.target_len {
                        self.finished[i] = true;
                        self.finished_count += 1;
                    }
                }
                Action::Violation { .. } => self.traffic.count_violation(),
                Action::FetchChain { peer, from_slot } => {
                    let Some(&server) = self.index.get(&peer) else {
                        continue;
                    };
                    self.traffic.count_request();
                    if self.partitioned(i, server) || self.net_rng.chance(self.cfg.loss) {
                        continue;
                    }
                    let at = self.now + self.one_hop_ms();
                    self.push(
                        at,
                        Event::ChainRequest {
                            server,
                            client: i,
                            from_slot,
                        },
                    );
                }
                Action::Fork(report) => {
                    if matches!(report.choice, ForkChoice::Adopt { .. }) {
                        self.traffic.count_fork_adoption();
                    }
                }
                Action::Adopted { .. } => {
                    // The node rejoins playback as a late joiner; the simulator has no player.
                }
                Action::Final(report) => self.traffic.count_conflicts(report.conflicts.len()),
                Action::PlaySubstitute { .. } | Action::PeerChanged(_) => {}
            }
        }
        self.reschedule(i);
    }

    fn gossip(&mut self, from: usize, envelope: Envelope) {
        let size = envelope.to_cbor().len();
        let envelope = Rc::new(envelope);
        self.traffic.count_publish(&envelope.kind, size);
        for to in 0..self.nodes.len() {
            if to == from || self.partitioned(from, to) || self.net_rng.chance(self.cfg.loss) {
                continue;
            }
            let hops = self.mesh.hops(from, to).max(1);
            let delay: u64 = (0..hops).map(|_| self.one_hop_ms()).sum();
            self.traffic.count_delivery(&envelope.kind, size);
            self.push(
                self.now + delay,
                Event::Gossip {
                    to,
                    from,
                    envelope: envelope.clone(),
                },
            );
        }
    }

    /// Runs until every node has decided the configured slots (or nothing is left to happen),
    /// and reports.
    pub fn run(mut self) -> Report {
        let started = Instant::now();
        while let Some(Reverse(Scheduled { at, event, .. })) = self.queue.pop() {
            self.now = self.now.max(at);
            self.events += 1;
            match event {
                Event::Timer { node } => {
                    if self.nodes[node].timer != Some(at) {
                        continue; // superseded
                    }
                    self.nodes[node].timer = None;
                    let t = self.node_time(node);
                    self.nodes[node].machine.handle_timeout(t);
                    self.drain_actions(node);
                }
                Event::Gossip { to, from, envelope } => {
                    let t = self.node_time(to);
                    let source = *self.nodes[from].machine.peer_id();
                    let _verdict =
                        self.nodes[to]
                            .machine
                            .handle_message(t, source, (*envelope).clone());
                    self.drain_actions(to);
                }
                Event::FetchRequest {
                    server,
                    client,
                    slot,
                    ids,
                } => {
                    let envelopes = self.nodes[server].machine.proposal_envelopes(slot, &ids);
                    if self.net_rng.chance(self.cfg.loss) || self.partitioned(server, client) {
                        continue;
                    }
                    let at = self.now + self.one_hop_ms();
                    self.push(at, Event::FetchResponse { client, envelopes });
                }
                Event::FetchResponse { client, envelopes } => {
                    let t = self.node_time(client);
                    self.nodes[client].machine.handle_fetched(t, envelopes);
                    self.drain_actions(client);
                }
                Event::ChainRequest {
                    server,
                    client,
                    from_slot,
                } => {
                    // PROTOCOL.md 2: up to 256 decided slots from `from_slot`.
                    let slots: Vec<DecidedSlot> = self.nodes[server]
                        .machine
                        .chain()
                        .decided_slots()
                        .iter()
                        .filter(|d| d.slot >= from_slot)
                        .take(256)
                        .cloned()
                        .collect();
                    if self.net_rng.chance(self.cfg.loss) || self.partitioned(server, client) {
                        continue;
                    }
                    let at = self.now + self.one_hop_ms();
                    self.push(
                        at,
                        Event::ChainResponse {
                            client,
                            server,
                            slots,
                        },
                    );
                }
                Event::ChainResponse {
                    client,
                    server,
                    slots,
                } => {
                    let t = self.node_time(client);
                    let peer = *self.nodes[server].machine.peer_id();
                    if self.nodes[client]
                        .machine
                        .handle_chain(t, peer, slots)
                        .is_err()
                    {
                        self.traffic.count_violation();
                    }
                    self.drain_actions(client);
                }
            }
            if self.finished_count == self.nodes.len() {
                break;
            }
        }
        let chains: Vec<&Chain> = self.nodes.iter().map(|n| n.machine.chain()).collect();
        Report::new(
            &self.cfg,
            &chains,
            &self.traffic,
            self.events,
            started.elapsed(),
        )
    }
}
