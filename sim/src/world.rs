//! The discrete-event loop: N real `chorus_consensus::Consensus` machines, a virtual clock and a
//! simulated network between them.
//!
//! Files: `event` (what happens at an instant), `node` (one node and whether it runs), `churn`
//! (crashes, restarts, leaves, joins and the chain sync before a start), `adversary` (what
//! misbehaving nodes do to their traffic), `grinder` (the identity-grinding and withholding
//! adversary), `observe` (what is recorded at each slot start for the report), `parallel` (batches of Status deliveries run on several threads, with the same
//! result as on one), `requests` (the `/chorus/sync/1` requests between nodes and their
//! answers).

mod adversary;
mod churn;
mod event;
mod grinder;
mod node;
mod observe;
mod parallel;
mod requests;

pub use adversary::SPAM_PER_SLOT;
pub use grinder::GRIND_TRIES;
pub use observe::{ChurnCounts, Eligible, Observer};

use std::cmp::Reverse;
use std::collections::binary_heap::PeekMut;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::time::Instant;

use chorus_consensus::beacon::HashChain;
use chorus_consensus::{
    Action, Chain, Consensus, Envelope, ForkChoice, Genesis, Hash32, Rules, SignedGenesis, Tickets,
    TrackRef,
};
use libp2p_identity::Keypair;

use crate::adversary::AdversaryKind;
use crate::config::{Protocol, SimConfig};
use crate::report::{Report, RunData, Traffic};
use crate::rng::Rng;
use crate::topology::Mesh;
use event::{Broadcast, Delivery, Event, Payload, Scheduled};
use grinder::Grind;
use node::{Node, NodeState};
use parallel::Helpers;

/// Network time of the genesis start: any fixed, realistic epoch (ms).
const GENESIS_START_MS: u64 = 1_800_000_000_000;
/// Gossipsub's mesh degree.
const MESH_DEGREE: usize = 6;
/// After every running honest node has decided the configured slots the run goes on for this
/// many (mean) slots, so that a fork at finality of the last slots can heal as it would had the
/// run gone on (PROTOCOL.md 9 needs two Status evaluations).
const SETTLE_SLOTS: u64 = 2;
/// Domain separator of the seeds of the nodes' hash chains (protocol 1.1).
const HASH_CHAIN_DOMAIN: &[u8] = b"chorus-sim/hash-chain";
/// Values of a node's hash chain beyond the configured slots: a proposal for slot k reveals
/// value `k - e` (PROTOCOL.md 12.3), and a run goes a few slots past its last one while it
/// settles. A real node's chain is 2^20 long; building one costs a hash per value, for each of
/// up to 100 000 nodes, so the simulator's are only as long as a run needs.
const HASH_CHAIN_SPARE: u64 = 64;

/// A simulated network of consensus machines.
pub struct World {
    cfg: SimConfig,
    genesis: SignedGenesis,
    rules: Rules,
    net_rng: Rng,
    key_rng: Rng,
    lib_rng: Rng,
    clock_rng: Rng,
    churn_rng: Rng,
    adv_rng: Rng,
    /// The grinders' fresh keys.
    grind_rng: Rng,
    /// What the grinders know and hold.
    grind: Grind,
    mesh: Mesh,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    /// Gossip messages on their way, by slot (None: a free slot, listed in `free`).
    broadcasts: Vec<Option<Broadcast>>,
    free: Vec<usize>,
    /// The helper threads of a run with more than one (`cfg.threads`).
    helpers: Option<Helpers>,
    /// The last ticket handed to a helper opening a message.
    tickets: u64,
    /// The next delivery of each broadcast in flight: `(at, seq, broadcast)`. Events and
    /// deliveries run in one order, by `(at, seq)`.
    deliveries: BinaryHeap<Reverse<(u64, u64, usize)>>,
    nodes: Vec<Node>,
    index: BTreeMap<libp2p_identity::PeerId, usize>,
    traffic: Traffic,
    target_len: u64,
    /// No event after this true time runs: the run ends even if a node never finishes.
    deadline: u64,
    /// Something happened that may have finished the run.
    check_done: bool,
    /// Set once the run is done: it ends after this true time.
    settle_until: Option<u64>,
    events: u64,
    obs: Observer,
    /// The genesis's network id (every node's).
    network_id: Hash32,
}

fn random_hash(rng: &mut Rng) -> Hash32 {
    let mut h = [0u8; 32];
    for chunk in h.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    Hash32(h)
}

/// The run's genesis, created and signed by node 0 (`creator`), with a queue drawn from
/// `lib_rng`; under protocol 1.1 it enrolls node 0's hash chain.
fn make_genesis(
    cfg: &SimConfig,
    rules: &Rules,
    creator: &Keypair,
    lib_rng: &mut Rng,
) -> SignedGenesis {
    let queue: Vec<TrackRef> = (0..rules.lookahead)
        .map(|i| random_track(lib_rng, cfg, rules, format!("genesis {i}")))
        .collect();
    Genesis::new(
        "sim",
        GENESIS_START_MS,
        rules,
        queue,
        creator.public().to_peer_id(),
        GENESIS_START_MS - 60_000,
    )
    .map(|g| match hash_chain(cfg, rules, 0) {
        // 12.3: the creator is enrolled at slot 0, or nobody could ever win a slot.
        Some(own) => g.with_enroll(own.commit(), own.len()),
        None => g,
    })
    .and_then(|g| g.sign(creator))
    .expect("the simulator's genesis is valid")
}

/// Protocol 1.1: node `i`'s hash chain, from a seed drawn from the run's seed and `i` (so a
/// node keeps it across a crash, as a node keeps its seed on disk); None under protocol 1.
fn hash_chain(cfg: &SimConfig, rules: &Rules, i: usize) -> Option<HashChain> {
    (cfg.protocol == Protocol::V1_1).then(|| {
        let seed = Hash32::digest_parts(&[
            HASH_CHAIN_DOMAIN,
            &cfg.seed.to_be_bytes(),
            &(i as u64).to_be_bytes(),
        ]);
        HashChain::new(&seed, rules.lookahead + cfg.slots + HASH_CHAIN_SPARE)
    })
}

fn random_key(rng: &mut Rng) -> Keypair {
    let mut secret = [0u8; 32];
    for chunk in secret.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    Keypair::ed25519_from_bytes(secret).expect("32 bytes make an ed25519 secret key")
}

impl World {
    /// Builds the network of `cfg`: keys, libraries, a genesis, the mesh, the clocks and the
    /// adversaries' roles.
    pub fn new(cfg: SimConfig) -> Self {
        let mut rng = Rng::new(cfg.seed);
        let mut key_rng = rng.fork(1);
        let mut lib_rng = rng.fork(2);
        let mut mesh_rng = rng.fork(3);
        let clock_rng = rng.fork(4);
        let net_rng = rng.fork(5);
        let churn_rng = rng.fork(6);
        let mut adv_rng = rng.fork(7);
        let grind_rng = rng.fork(8);
        let mut rules = Rules::default();
        if let Some(ms) = cfg.status_interval_ms {
            rules.status_interval_ms = ms;
        }
        let keys: Vec<Keypair> = (0..cfg.nodes).map(|_| random_key(&mut key_rng)).collect();
        let genesis = make_genesis(&cfg, &rules, &keys[0], &mut lib_rng);
        let roles = assign_adversaries(&cfg, &mut adv_rng);
        let mesh = Mesh::random(cfg.nodes, MESH_DEGREE, &mut mesh_rng);
        let target_len = rules.lookahead + cfg.slots;
        let deadline =
            GENESIS_START_MS + (target_len + 6) * (cfg.track_ms.max_ms + rules.gap_ms) + 60_000;
        let mut world = Self {
            network_id: genesis.network_id(),
            genesis,
            net_rng,
            key_rng,
            lib_rng,
            clock_rng,
            churn_rng,
            adv_rng,
            grind_rng,
            grind: Grind::default(),
            mesh,
            now: GENESIS_START_MS - 1_000,
            seq: 0,
            queue: BinaryHeap::new(),
            broadcasts: Vec::new(),
            free: Vec::new(),
            helpers: None,
            tickets: 0,
            deliveries: BinaryHeap::new(),
            nodes: Vec::new(),
            index: BTreeMap::new(),
            traffic: Traffic::default(),
            target_len,
            deadline,
            check_done: false,
            settle_until: None,
            events: 0,
            obs: Observer::new(cfg.partitions.len()),
            rules,
            cfg,
        };
        for (i, key) in keys.into_iter().enumerate() {
            let chain = world.genesis_chain();
            let node = world.new_node(key, i, roles[i]);
            world.add_node(node);
            let machine = world.start_machine(i, chain);
            world.nodes[i].state = NodeState::Live(Box::new(machine));
        }
        world.init_grinders();
        for i in 0..world.nodes.len() {
            world.choose_victims(i);
            world.reschedule(i);
        }
        world
    }

    /// A node (not yet running) with a fresh library and clock.
    fn new_node(
        &mut self,
        key: Keypair,
        mesh_pos: usize,
        adversary: Option<AdversaryKind>,
    ) -> Node {
        let i = self.nodes.len();
        let library = (0..self.cfg.library_size)
            .map(|j| {
                random_track(
                    &mut self.lib_rng,
                    &self.cfg,
                    &self.rules,
                    format!("node {i} track {j}"),
                )
            })
            .collect();
        let skew_ms = if self.cfg.skew_ms == 0 {
            0
        } else {
            self.clock_rng.below(2 * self.cfg.skew_ms + 1) as i64 - self.cfg.skew_ms as i64
        };
        Node {
            peer: key.public().to_peer_id(),
            key,
            library,
            adversary,
            state: NodeState::Left,
            mesh_pos,
            skew_ms,
            timer: None,
            inc: 0,
            live_since: None,
            victims: BTreeSet::new(),
            hash_chain: hash_chain(&self.cfg, &self.rules, i),
        }
    }

    /// A chain of the genesis alone, under the ticket rule of the run's protocol: version 1's
    /// open tickets, or 1.1's fair tickets (PROTOCOL.md 12.3).
    fn genesis_chain(&self) -> Chain {
        let chain = Chain::new(&self.genesis);
        match self.cfg.protocol {
            Protocol::V1 => chain.with_tickets(Tickets::Open),
            Protocol::V1_1 => chain,
        }
    }

    fn add_node(&mut self, node: Node) -> usize {
        let i = self.nodes.len();
        self.index.insert(node.peer, i);
        self.nodes.push(node);
        i
    }

    /// A machine for node `i` on `chain`, with its library and (protocol 1.1) its hash chain,
    /// which it enrolls.
    fn start_machine(&self, i: usize, chain: Chain) -> Consensus {
        let node = &self.nodes[i];
        let mut machine = Consensus::new(node.key.clone(), chain);
        machine.set_library(node.library.iter().cloned());
        if let Some(own) = &node.hash_chain {
            machine.set_hash_chain(own.clone(), self.node_time(i));
        }
        machine
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

    /// Keeps exactly one live timer event per running node, at its `poll_timeout`.
    fn reschedule(&mut self, i: usize) {
        let node = &self.nodes[i];
        let skew = node.skew_ms;
        let due = node
            .machine()
            .and_then(|m| m.poll_timeout())
            .map(|t| t.saturating_add_signed(-skew).max(self.now));
        self.set_timer(i, due);
    }

    /// Keeps node `i`'s timer event at `due`.
    fn set_timer(&mut self, i: usize, due: Option<u64>) {
        let node = &self.nodes[i];
        if due != node.timer {
            let inc = node.inc;
            self.nodes[i].timer = due;
            if let Some(at) = due {
                self.push(at, Event::Timer { node: i, inc });
            }
        }
    }

    /// The slot playing now by the reference chain: node 0's (node 0 never churns and is never
    /// an adversary), which every node shares while in agreement.
    fn current_slot(&self) -> u64 {
        self.nodes[0]
            .machine()
            .and_then(|m| m.chain().slot_at(self.now))
            .unwrap_or(0)
    }

    fn partitioned(&self, a: usize, b: usize) -> bool {
        if self.cfg.partitions.is_empty() {
            return false;
        }
        let slot = self.current_slot();
        let n = self.cfg.nodes;
        let (a, b) = (self.nodes[a].mesh_pos, self.nodes[b].mesh_pos);
        self.cfg.partitions.iter().any(|p| {
            let active = slot >= p.at_slot && slot < p.at_slot + p.slots;
            let cut = n * usize::from(p.split_pct) / 100;
            active && ((a < cut) != (b < cut))
        })
    }

    fn one_hop_ms(&mut self) -> u64 {
        ceil_ms(self.cfg.latency.sample(&mut self.net_rng))
    }

    /// Sends a request-response leg from `from` to `to`: None if it is lost or cut off, else
    /// when it arrives.
    fn leg(&mut self, from: usize, to: usize) -> Option<u64> {
        if self.partitioned(from, to) || self.net_rng.chance(self.cfg.loss) {
            return None;
        }
        Some(self.now + self.one_hop_ms())
    }

    fn drain_actions(&mut self, i: usize) {
        while let Some(action) = self.nodes[i].machine_mut().and_then(|m| m.poll_action()) {
            self.apply(i, action);
        }
        self.reschedule(i);
    }

    /// Executes an action of node `i`'s machine.
    fn apply(&mut self, i: usize, action: Action) {
        {
            match action {
                Action::Publish { envelope, .. } => self.publish(i, envelope),
                Action::FetchProposals { peer, slot, ids } => {
                    let Some(&server) = self.index.get(&peer) else {
                        return;
                    };
                    self.traffic.count_request();
                    self.request_proposals(i, server, slot, ids);
                }
                Action::Decided(d) => {
                    if d.slot + 1 >= self.target_len {
                        self.check_done = true;
                    }
                    if self.nodes[i].adversary.is_none() {
                        self.obs.decided(&d);
                    }
                }
                Action::Violation { .. } => self.traffic.count_violation(),
                Action::FetchChain { peer, from_slot } => {
                    let Some(&server) = self.index.get(&peer) else {
                        return;
                    };
                    self.traffic.count_request();
                    self.request_chain(i, server, from_slot);
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
                // The simulator has no player and no log.
                Action::Proposed { .. }
                | Action::Enrolled { .. }
                | Action::RevealInvalid { .. }
                | Action::Leaning { .. }
                | Action::PlaySubstitute { .. }
                | Action::PeerChanged(_) => {}
            }
        }
    }

    /// Gossips `envelope` from `from` to every other running node (counted under `label`).
    fn gossip(&mut self, from: usize, envelope: Envelope, label: &str) {
        let size = envelope.to_cbor().len();
        if envelope.kind == "proposal" {
            self.obs.proposer(envelope.id(), from);
            self.note_proposal(&envelope);
        }
        self.traffic.count_publish(label, size);
        let mut deliveries = Vec::new();
        for to in 0..self.nodes.len() {
            if to == from
                || self.nodes[to].machine().is_none()
                || self.nodes[from].victims.contains(&to)
                || self.partitioned(from, to)
                || self.net_rng.chance(self.cfg.loss)
            {
                continue;
            }
            let (a, b) = (self.nodes[from].mesh_pos, self.nodes[to].mesh_pos);
            let hops = self.mesh.hops(a, b).max(1);
            let delay: u64 = (0..hops).map(|_| self.one_hop_ms()).sum();
            self.seq += 1;
            deliveries.push((self.now + delay, self.seq, to));
        }
        sort_deliveries(&mut deliveries, self.now);
        let Some(&(at, seq, _)) = deliveries.first() else {
            return;
        };
        self.traffic.count_deliveries(label, size, deliveries.len());
        let slot = self.free.pop().unwrap_or_else(|| {
            self.broadcasts.push(None);
            self.broadcasts.len() - 1
        });
        // One signature check per distinct message instead of one per delivery (the machines
        // take pre-verified messages through `handle_shared`), on a helper thread if any.
        let payload = self.open(slot, envelope);
        self.broadcasts[slot] = Some(Broadcast {
            from,
            payload,
            deliveries,
            next: 0,
        });
        self.deliveries.push(Reverse((at, seq, slot)));
    }

    /// Takes the next delivery of the broadcast at the front of the queue, and queues the one
    /// after: None when no broadcast is queued, `Some(None)` when the front one is gone.
    fn pop_delivery(&mut self) -> Option<Option<Delivery>> {
        // The broadcast's next delivery replaces it at the front, sifted down once (a pop and
        // a push would sift twice): the order of entries is total, so the same either way.
        let &Reverse((_, _, slot)) = self.deliveries.peek()?;
        let payload = self.payload(slot);
        let mut top = self.deliveries.peek_mut()?;
        let (Some(broadcast), Some(payload)) = (self.broadcasts[slot].as_mut(), payload) else {
            PeekMut::pop(top);
            return Some(None);
        };
        let (at, _, to) = broadcast.deliveries[broadcast.next];
        broadcast.next += 1;
        let delivery = Delivery {
            at,
            to,
            from: broadcast.from,
            payload,
        };
        match broadcast.deliveries.get(broadcast.next) {
            Some(&(at, seq, _)) => *top = Reverse((at, seq, slot)),
            None => {
                PeekMut::pop(top);
                self.broadcasts[slot] = None;
                self.free.push(slot);
            }
        }
        Some(Some(delivery))
    }

    /// Hands a delivery to its receiver.
    fn deliver(&mut self, d: Delivery) {
        let t = self.node_time(d.to);
        let source = self.nodes[d.from].peer;
        let Some(m) = self.nodes[d.to].machine_mut() else {
            return;
        };
        let _verdict = match &*d.payload {
            Payload::Opened { lanes, .. } => {
                m.handle_shared(t, source, &lanes[parallel::lane_of(d.to, lanes.len())])
            }
            Payload::Failed(envelope) => m.handle_message(t, source, envelope.clone()),
        };
        self.drain_actions(d.to);
    }

    /// Whether every running honest node has decided the configured slots and no node is on its
    /// way back.
    fn done(&self) -> bool {
        self.nodes.iter().all(|n| match &n.state {
            NodeState::Live(m) => n.adversary.is_some() || m.chain().len() >= self.target_len,
            NodeState::Down { .. } | NodeState::Syncing { .. } => false,
            NodeState::Left => true,
            // Only lent within a batch of deliveries, when this is never asked.
            NodeState::Lent => false,
        })
    }

    /// Runs until every running honest node has decided the configured slots (or the deadline
    /// passes), and reports.
    pub fn run(mut self) -> Report {
        let started = Instant::now();
        if self.cfg.threads > 1 {
            std::thread::scope(|scope| {
                self.helpers = Some(Helpers::spawn(scope, self.cfg.threads - 1));
                self.event_loop();
                // Closes their channels: the helpers stop.
                self.helpers = None;
            });
        } else {
            self.event_loop();
        }
        let report = self.report(started);
        // Freeing a thousand machines' peer tables takes a noticeable share of a large run;
        // nothing waits for it.
        std::thread::spawn(move || drop(self));
        report
    }

    fn event_loop(&mut self) {
        loop {
            let event = self.queue.peek().map(|Reverse(e)| (e.at, e.seq));
            let delivery = self
                .deliveries
                .peek()
                .map(|Reverse((at, seq, _))| (*at, *seq));
            let Some((at, _)) = event.into_iter().chain(delivery).min() else {
                break;
            };
            if at > self.deadline {
                break;
            }
            if delivery.is_some_and(|d| event.is_none_or(|e| d < e)) {
                let Some(d) = self.pop_delivery() else {
                    break;
                };
                let Some(d) = d else {
                    continue;
                };
                if self.helpers.is_some() && self.batchable(&d) {
                    let batch = self.gather(d);
                    self.deliver_batch(batch);
                } else {
                    self.now = self.now.max(at);
                    self.events += 1;
                    self.deliver(d);
                }
            } else if let Some(Reverse(Scheduled { event, .. })) = self.queue.pop() {
                self.now = self.now.max(at);
                self.events += 1;
                self.dispatch(at, event);
            }
            if self.check_done {
                self.check_done = false;
                if self.settle_until.is_none() && self.done() {
                    self.settle_until = Some(self.now + SETTLE_SLOTS * self.mean_slot_ms());
                }
            }
            if self.settle_until.is_some_and(|t| self.now > t) {
                break;
            }
        }
    }

    fn report(&self, started: Instant) -> Report {
        let live: Vec<&Chain> = self
            .nodes
            .iter()
            .filter(|n| n.live_honest())
            .filter_map(|n| n.machine().map(Consensus::chain))
            .collect();
        let data = RunData {
            chains: live,
            observed: &self.obs,
            adversaries: self.nodes.iter().filter(|n| n.adversary.is_some()).count(),
            honest_live: self.nodes.iter().filter(|n| n.live_honest()).count(),
        };
        Report::new(
            &self.cfg,
            &data,
            &self.traffic,
            self.events,
            started.elapsed(),
        )
    }

    fn dispatch(&mut self, at: u64, event: Event) {
        match event {
            Event::Timer { node, inc } => self.timer_fired(at, node, inc),
            Event::FetchRequest {
                server,
                client,
                slot,
                ids,
            } => self.proposals_asked(server, client, slot, &ids),
            Event::FetchResponse {
                client,
                inc,
                envelopes,
            } => self.proposals_answered(client, inc, envelopes),
            Event::ChainRequest {
                server,
                client,
                from_slot,
            } => self.chain_asked(server, client, from_slot),
            Event::ChainResponse {
                client,
                inc,
                server,
                slots,
            } => self.chain_answered(client, inc, server, slots),
            Event::Publish {
                node,
                inc,
                envelope,
            } => {
                if self.nodes[node].inc == inc {
                    self.gossip(node, envelope, "proposal");
                }
            }
            Event::Grind {
                node,
                inc,
                envelope,
            } => self.grind_decide(node, inc, envelope),
            Event::Restart { node } => self.restart(node),
            Event::SyncTimeout { node, inc, attempt } => self.sync_timeout(node, inc, attempt),
        }
    }

    /// Node `node`'s timer event at `at`, unless superseded: its machine's `handle_timeout`.
    fn timer_fired(&mut self, at: u64, node: usize, inc: u32) {
        if self.nodes[node].timer != Some(at) || self.nodes[node].inc != inc {
            return; // superseded
        }
        self.nodes[node].timer = None;
        let t = self.node_time(node);
        if let Some(m) = self.nodes[node].machine_mut() {
            m.handle_timeout(t);
        }
        self.drain_actions(node);
        if node == 0 {
            self.slot_ticks();
        }
    }
}

/// `x.ceil()` as whole ms, for the non-negative latencies drawn (without a call into libm,
/// which showed in profiles: a few draws per delivery).
fn ceil_ms(x: f64) -> u64 {
    let whole = x as u64;
    if (whole as f64) < x { whole + 1 } else { whole }
}

/// Sorts `(at, seq, to)` deliveries by time, then sequence number. They are made in sequence
/// order with small delays after `now`, so a counting sort by delay does it in linear time
/// (a thousand deliveries per Status in the largest runs); other spreads take the general sort.
fn sort_deliveries(deliveries: &mut Vec<(u64, u64, usize)>, now: u64) {
    const BUCKETS: usize = 64;
    let in_seq_order = deliveries.windows(2).all(|w| w[0].1 < w[1].1);
    let small = deliveries
        .iter()
        .all(|d| d.0.checked_sub(now).is_some_and(|x| x < BUCKETS as u64));
    if !(in_seq_order && small) {
        // Sequence numbers are distinct: the order is total.
        deliveries.sort_unstable();
        return;
    }
    let mut start = [0usize; BUCKETS + 1];
    for d in deliveries.iter() {
        start[(d.0 - now) as usize + 1] += 1;
    }
    for b in 1..=BUCKETS {
        start[b] += start[b - 1];
    }
    let mut sorted = vec![(0, 0, 0); deliveries.len()];
    for &d in deliveries.iter() {
        let b = (d.0 - now) as usize;
        sorted[start[b]] = d;
        start[b] += 1;
    }
    *deliveries = sorted;
}

/// Which nodes misbehave, and how: a seeded choice among nodes 1.. (node 0 is the reference
/// clock and stays honest).
fn assign_adversaries(cfg: &SimConfig, rng: &mut Rng) -> Vec<Option<AdversaryKind>> {
    let mut roles = vec![None; cfg.nodes];
    let mut candidates: Vec<usize> = (1..cfg.nodes).collect();
    for a in &cfg.adversaries {
        for _ in 0..a.count {
            if candidates.is_empty() {
                break;
            }
            let pick = rng.below(candidates.len() as u64) as usize;
            roles[candidates.swap_remove(pick)] = Some(a.kind);
        }
    }
    roles
}

fn random_track(rng: &mut Rng, cfg: &SimConfig, rules: &Rules, label: String) -> TrackRef {
    let span = cfg.track_ms.max_ms - cfg.track_ms.min_ms;
    let duration_ms = cfg.track_ms.min_ms + rng.below(span + 1);
    TrackRef {
        track_hash: random_hash(rng),
        manifest_id: random_hash(rng),
        duration_ms,
        segment_count: duration_ms.div_ceil(rules.segment_ms),
        title: label,
        artist: String::new(),
        album: String::new(),
        loudness_lufs: Some(-14.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceil_ms_is_ceil() {
        let mut rng = Rng::new(9);
        let mut xs = vec![0.0, 0.2, 1.0, 1.000_000_1, 2.0, 4_999.5, 5_000.0];
        for latency in [crate::latency::Latency::Lan, crate::latency::Latency::Wan] {
            xs.extend((0..10_000).map(|_| latency.sample(&mut rng)));
        }
        for x in xs {
            assert_eq!(ceil_ms(x), x.ceil() as u64, "{x}");
        }
    }

    #[test]
    fn deliveries_sort_by_time_then_sequence() {
        let mut rng = Rng::new(4);
        for spread in [8, 64, 1_000] {
            let now = 1_000;
            let mut deliveries: Vec<(u64, u64, usize)> = (0..500)
                .map(|i| {
                    (
                        now + rng.below(spread),
                        10 + i as u64,
                        rng.below(100) as usize,
                    )
                })
                .collect();
            let mut expected = deliveries.clone();
            expected.sort_unstable();
            sort_deliveries(&mut deliveries, now);
            assert_eq!(deliveries, expected, "spread {spread}");
        }
    }
}
