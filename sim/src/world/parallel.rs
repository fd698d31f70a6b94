//! Batches of Status deliveries run on several threads, with the same result as on one.
//!
//! Nearly all events of a large run are Status deliveries (each node receives about four a
//! second, PROTOCOL.md 5), and a Status only updates the receiver's peer table: its machine
//! emits no message, asks for nothing and decides nothing. So the consecutive Status
//! deliveries at the front of the queue (a *batch*) can be handed to their receivers in any
//! order across nodes, as long as each node gets its own in queue order; the world then plays
//! their effects (counters, timer events) back in queue order, exactly as one thread would.
//!
//! What keeps that exact: no event can enter the queue in front of a batch's last delivery
//! while the batch runs. Only the receivers' timers could, and a Status moves a machine's
//! `poll_timeout` earlier only through the peer table's exclusion deadline, which lies
//! `rules.exclusion_ms` ahead, and the fork evaluation after a peer turns to another chain,
//! [`FORK_TURN_DELAY_MS`] ahead: a batch spans less than either. The replay checks it.
//!
//! Each node belongs to one lane ([`lane_of`]); lane 0 is the calling thread, each other lane a
//! helper thread that borrows the machines of its nodes for the batch (they are moved, not
//! copied, and come back before the replay).

use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::thread::{self, Scope};

use chorus_consensus::machine::Shared;
use chorus_consensus::{Action, Consensus, Envelope, FORK_TURN_DELAY_MS, Hash32, Message};
use libp2p_identity::PeerId;

use super::World;
use super::event::{Delivery, Opening, Payload};
use super::node::NodeState;

/// Batches smaller than this run on the calling thread alone (a round trip to a helper costs
/// about as much as a few deliveries).
const MIN_BATCH: usize = 8;
/// Most deliveries in one batch (bounds the memory of a batch).
const MAX_BATCH: usize = 4096;
/// How many deliveries ahead a lane asks for a receiver's peer-table row: the lookup is a cache
/// miss per delivery, and misses started early overlap with the work before them. What the row's
/// address depends on is asked for earlier still: the index slot that points to it
/// ([`INDEX_AHEAD`]), and before that the part of the machine that locates the index
/// ([`TABLE_AHEAD`]).
const AHEAD: usize = 8;
/// How many deliveries ahead a lane asks for the index slot of a receiver's row.
const INDEX_AHEAD: usize = 12;
/// How many deliveries ahead a lane asks for where a receiver's index and rows are.
const TABLE_AHEAD: usize = 16;
/// How many times a waiting thread polls its channel before it sleeps: batches follow each
/// other within tens of microseconds, and waking a sleeping thread costs about as long.
const SPINS: u32 = 20_000;

/// Work for a helper.
enum Task {
    /// A share of a batch.
    Batch(Job),
    /// A message to open.
    Open(Open),
}

/// A gossip message to open for the broadcast in `slot`.
struct Open {
    slot: usize,
    ticket: u64,
    envelope: Envelope,
    network_id: Hash32,
    lanes: usize,
}

/// A helper's answer to a [`Task`], in the order given.
enum Reply {
    Batch(Done),
    Opened {
        slot: usize,
        ticket: u64,
        payload: Payload,
    },
}

/// Opens `envelope` once for every receiver (signature, sender and structure, PROTOCOL.md 3),
/// with a copy per lane of `lanes`.
pub(super) fn open_payload(envelope: Envelope, network_id: &Hash32, lanes: usize) -> Payload {
    match envelope.clone().open(network_id) {
        Ok(verified) => Payload::Opened {
            status: matches!(verified.message, Message::Status(_)),
            lanes: (0..lanes).map(|_| Shared::from(verified.clone())).collect(),
        },
        Err(_) => Payload::Failed(envelope),
    }
}

/// What a machine did with one Status: its actions and its next timer (true time).
pub(super) struct Record {
    actions: Vec<Action>,
    due: Option<u64>,
}

/// One delivery for a helper.
struct Work {
    /// Its place in the batch.
    index: usize,
    to: usize,
    /// True time.
    at: u64,
    /// The receiver's skew.
    skew_ms: i64,
    /// In `Job::messages`.
    message: usize,
}

/// A helper's share of a batch, with the machines it needs.
struct Job {
    lane: usize,
    /// The batch's messages with their senders, once each: cloning the shared message per
    /// delivery would bounce its reference count between the threads.
    messages: Vec<(PeerId, Arc<Payload>)>,
    work: Vec<Work>,
    /// By node, ascending.
    machines: Vec<(usize, Box<Consensus>)>,
}

/// A helper's answer: records by place in the batch, and the machines back.
struct Done {
    records: Vec<(usize, Record)>,
    machines: Vec<(usize, Box<Consensus>)>,
}

/// The helper threads of a run, one per lane but the first.
pub(super) struct Helpers {
    jobs: Vec<Sender<Task>>,
    done: Vec<Receiver<Reply>>,
}

/// The lane of node `i` among `lanes`. (Giving the calling thread fewer nodes, as it also
/// runs everything else, measured slower.)
pub(super) fn lane_of(i: usize, lanes: usize) -> usize {
    i % lanes
}

impl Helpers {
    /// Starts `count` helpers in `scope`; they stop when `Helpers` is dropped.
    pub(super) fn spawn<'scope>(scope: &'scope Scope<'scope, '_>, count: usize) -> Helpers {
        let mut helpers = Helpers {
            jobs: Vec::new(),
            done: Vec::new(),
        };
        for _ in 0..count {
            let (job_tx, job_rx) = channel::<Task>();
            let (done_tx, done_rx) = channel::<Reply>();
            scope.spawn(move || {
                while let Some(task) = wait(&job_rx) {
                    let reply = match task {
                        Task::Batch(job) => Reply::Batch(job.run()),
                        Task::Open(o) => Reply::Opened {
                            slot: o.slot,
                            ticket: o.ticket,
                            payload: open_payload(o.envelope, &o.network_id, o.lanes),
                        },
                    };
                    if done_tx.send(reply).is_err() {
                        return;
                    }
                }
            });
            helpers.jobs.push(job_tx);
            helpers.done.push(done_rx);
        }
        helpers
    }

    fn lanes(&self) -> usize {
        self.jobs.len() + 1
    }
}

/// The next message, or None once the sender is gone.
fn wait<T>(rx: &Receiver<T>) -> Option<T> {
    for spin in 0..SPINS {
        match rx.try_recv() {
            Ok(value) => return Some(value),
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) if spin % 64 == 63 => thread::yield_now(),
            Err(TryRecvError::Empty) => std::hint::spin_loop(),
        }
    }
    rx.recv().ok()
}

/// One of the prefetch steps a lane takes for a delivery ahead of the one it runs.
#[derive(Clone, Copy)]
enum Step {
    /// Where the receiver's index and rows are (`Consensus::prefetch_table`).
    Table,
    /// The index slot of the sender's row (`Consensus::prefetch_index`).
    Index,
    /// The row (`Consensus::prefetch`).
    Row,
}

/// Each step, with how many deliveries ahead it is taken.
const STEPS: [(usize, Step); 3] = [
    (TABLE_AHEAD, Step::Table),
    (INDEX_AHEAD, Step::Index),
    (AHEAD, Step::Row),
];

impl Step {
    /// Takes this step for `m` receiving `shared`; changes nothing `m` does.
    fn take(self, m: &Consensus, shared: &Shared) {
        match self {
            Step::Table => m.prefetch_table(),
            Step::Index => m.prefetch_index(shared),
            Step::Row => m.prefetch(shared),
        }
    }
}

impl Job {
    /// The machine and message of delivery `w`.
    fn target(&self, w: &Work) -> Option<(&Consensus, &Shared)> {
        let at = self
            .machines
            .binary_search_by_key(&w.to, |(node, _)| *node)
            .ok()?;
        match &*self.messages[w.message].1 {
            Payload::Opened { lanes, .. } => Some((&self.machines[at].1, &lanes[self.lane])),
            Payload::Failed(_) => None,
        }
    }

    fn run(mut self) -> Done {
        let mut records = Vec::with_capacity(self.work.len());
        for (k, w) in self.work.iter().enumerate() {
            for (distance, step) in STEPS {
                if let Some((m, shared)) = self.work.get(k + distance).and_then(|a| self.target(a))
                {
                    step.take(m, shared);
                }
            }
            let Ok(at) = self.machines.binary_search_by_key(&w.to, |(node, _)| *node) else {
                continue;
            };
            let m = &mut self.machines[at].1;
            let (source, payload) = &self.messages[w.message];
            let Payload::Opened { lanes, .. } = &**payload else {
                continue;
            };
            let record = receive(m, w.at, w.skew_ms, *source, &lanes[self.lane]);
            records.push((w.index, record));
        }
        Done {
            records,
            machines: self.machines,
        }
    }
}

/// A machine receives a Status at true time `at`; what the world must then do.
fn receive(m: &mut Consensus, at: u64, skew_ms: i64, source: PeerId, shared: &Shared) -> Record {
    let _verdict = m.handle_shared(at.saturating_add_signed(skew_ms), source, shared);
    let actions = std::iter::from_fn(|| m.poll_action()).collect();
    // As `World::reschedule`: the world's clock is `at` when this delivery runs.
    let due = m
        .poll_timeout()
        .map(|t| t.saturating_add_signed(-skew_ms).max(at));
    Record { actions, due }
}

impl World {
    /// The payload for the broadcast about to go into `slot`: opened on a helper thread when
    /// there is one (this thread goes on; its first delivery, at least a simulated
    /// millisecond later, waits for it in [`World::payload`]), else here.
    pub(super) fn open(&mut self, slot: usize, envelope: Envelope) -> Opening {
        let lanes = self.cfg.threads;
        if let Some(helpers) = &self.helpers {
            self.tickets += 1;
            let helper = slot % helpers.jobs.len();
            let task = Task::Open(Open {
                slot,
                ticket: self.tickets,
                envelope,
                network_id: self.network_id,
                lanes,
            });
            helpers.jobs[helper]
                .send(task)
                .expect("invariant: helpers run until the run ends");
            return Opening::Pending {
                helper,
                ticket: self.tickets,
            };
        }
        Opening::Ready(Arc::new(open_payload(envelope, &self.network_id, lanes)))
    }

    /// The payload of the broadcast in `slot`, once opened (None if the slot is free).
    pub(super) fn payload(&mut self, slot: usize) -> Option<Arc<Payload>> {
        loop {
            match &self.broadcasts[slot].as_ref()?.payload {
                Opening::Ready(payload) => return Some(Arc::clone(payload)),
                Opening::Pending { helper, .. } => {
                    let helper = *helper;
                    let reply = self.helpers.as_ref().and_then(|h| wait(&h.done[helper]));
                    match reply.expect("invariant: a helper answers every task until the run ends")
                    {
                        Reply::Opened {
                            slot,
                            ticket,
                            payload,
                        } => self.opened(slot, ticket, payload),
                        Reply::Batch(_) => {
                            unreachable!("invariant: no batch runs while a delivery is taken")
                        }
                    }
                }
            }
        }
    }

    /// A helper opened the message of the broadcast in `slot`.
    fn opened(&mut self, slot: usize, ticket: u64, payload: Payload) {
        if let Some(b) = self.broadcasts[slot].as_mut()
            && matches!(b.payload, Opening::Pending { ticket: t, .. } if t == ticket)
        {
            b.payload = Opening::Ready(Arc::new(payload));
        }
    }

    /// Whether `d` may start a batch.
    pub(super) fn batchable(&self, d: &Delivery) -> bool {
        matches!(&*d.payload, Payload::Opened { status: true, .. })
            && self.settle_until.is_none_or(|t| d.at <= t)
    }

    /// `first` and the Status deliveries that follow it in queue order, up to the first other
    /// event (or the limits of a batch).
    pub(super) fn gather(&mut self, first: Delivery) -> Vec<Delivery> {
        // Within this span no timer a Status moves can fall (see the module comment).
        let end = first
            .at
            .saturating_add((self.rules.exclusion_ms / 2).clamp(1, FORK_TURN_DELAY_MS / 2));
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            let Some(&std::cmp::Reverse((at, seq, slot))) = self.deliveries.peek() else {
                break;
            };
            let other_first = self
                .queue
                .peek()
                .is_some_and(|std::cmp::Reverse(e)| (e.at, e.seq) < (at, seq));
            let status = self
                .payload(slot)
                .is_some_and(|p| matches!(&*p, Payload::Opened { status: true, .. }));
            if other_first
                || !status
                || at >= end
                || at > self.deadline
                || self.settle_until.is_some_and(|t| at > t)
            {
                break;
            }
            match self.pop_delivery() {
                Some(Some(d)) => batch.push(d),
                _ => break,
            }
        }
        batch
    }

    /// Runs a batch of Status deliveries: the machines on their lanes, then the world's part in
    /// queue order.
    pub(super) fn deliver_batch(&mut self, batch: Vec<Delivery>) {
        let Some(helpers) = self.helpers.take() else {
            for d in batch {
                self.now = self.now.max(d.at);
                self.events += 1;
                self.deliver(d);
            }
            return;
        };
        self.deliver_batch_on(batch, &helpers);
        self.helpers = Some(helpers);
    }

    fn deliver_batch_on(&mut self, batch: Vec<Delivery>, helpers: &Helpers) {
        if batch.len() < MIN_BATCH {
            for d in batch {
                self.now = self.now.max(d.at);
                self.events += 1;
                self.deliver(d);
            }
            return;
        }
        let lanes = helpers.lanes();
        let jobs = self.lend(&batch, lanes);
        let mut sent = Vec::new();
        for (job, tx) in jobs.into_iter().zip(&helpers.jobs) {
            sent.push(tx.send(Task::Batch(job)).is_ok());
        }
        let mut records = self.receive_own(&batch, lanes);
        self.take_back(helpers, &sent, &mut records);
        self.replay(batch, records);
    }

    /// The helpers' shares of `batch`, one job per lane but the first, each with the machines
    /// of its receivers (lent: their nodes are [`NodeState::Lent`] until the job comes back).
    fn lend(&mut self, batch: &[Delivery], lanes: usize) -> Vec<Job> {
        let mut messages: Vec<(PeerId, Arc<Payload>)> = Vec::new();
        let mut message_of = Vec::with_capacity(batch.len());
        for d in batch {
            let known = messages
                .iter()
                .position(|(_, p)| Arc::ptr_eq(p, &d.payload));
            message_of.push(known.unwrap_or_else(|| {
                messages.push((self.nodes[d.from].peer, Arc::clone(&d.payload)));
                messages.len() - 1
            }));
        }
        let mut jobs: Vec<Job> = (1..lanes)
            .map(|lane| Job {
                lane,
                messages: messages.clone(),
                work: Vec::new(),
                machines: Vec::new(),
            })
            .collect();
        for (index, d) in batch.iter().enumerate() {
            let lane = lane_of(d.to, lanes);
            if lane == 0 {
                continue;
            }
            let job = &mut jobs[lane - 1];
            let node = &mut self.nodes[d.to];
            if matches!(node.state, NodeState::Live(_))
                && let NodeState::Live(m) = std::mem::replace(&mut node.state, NodeState::Lent)
            {
                job.machines.push((d.to, m));
            }
            job.work.push(Work {
                index,
                to: d.to,
                at: d.at,
                skew_ms: self.nodes[d.to].skew_ms,
                message: message_of[index],
            });
        }
        for job in &mut jobs {
            job.machines.sort_unstable_by_key(|(node, _)| *node);
        }
        jobs
    }

    /// Runs the deliveries of `batch` on lane 0 (this thread); their records by place in the
    /// batch, None for the other lanes' and for receivers not running.
    fn receive_own(&mut self, batch: &[Delivery], lanes: usize) -> Vec<Option<Record>> {
        let mut records: Vec<Option<Record>> =
            std::iter::repeat_with(|| None).take(batch.len()).collect();
        let own: Vec<usize> = (0..batch.len())
            .filter(|&index| lane_of(batch[index].to, lanes) == 0)
            .collect();
        for (k, &index) in own.iter().enumerate() {
            for (distance, step) in STEPS {
                let Some(&ahead) = own.get(k + distance) else {
                    continue;
                };
                let d = &batch[ahead];
                if let (Some(m), Payload::Opened { lanes, .. }) =
                    (self.nodes[d.to].machine(), &*d.payload)
                {
                    step.take(m, &lanes[0]);
                }
            }
            let d = &batch[index];
            let skew_ms = self.nodes[d.to].skew_ms;
            let source = self.nodes[d.from].peer;
            let (Some(m), Payload::Opened { lanes, .. }) =
                (self.nodes[d.to].machine_mut(), &*d.payload)
            else {
                continue;
            };
            records[index] = Some(receive(m, d.at, skew_ms, source, &lanes[0]));
        }
        records
    }

    /// Waits for each helper's job (`sent`: whether it went out), puts the machines back and
    /// the records in their places; messages a helper opened meanwhile are taken too.
    fn take_back(&mut self, helpers: &Helpers, sent: &[bool], records: &mut [Option<Record>]) {
        for (rx, &sent) in helpers.done.iter().zip(sent) {
            let mut done = None;
            while sent && done.is_none() {
                match wait(rx) {
                    Some(Reply::Batch(d)) => done = Some(d),
                    Some(Reply::Opened {
                        slot,
                        ticket,
                        payload,
                    }) => self.opened(slot, ticket, payload),
                    None => break,
                }
            }
            let done = done.expect("invariant: a helper answers every batch until the run ends");
            for (node, m) in done.machines {
                self.nodes[node].state = NodeState::Live(m);
            }
            for (index, record) in done.records {
                records[index] = Some(record);
            }
        }
    }

    /// The world's part of `batch`, in queue order, as one thread would have played it: the
    /// clock, the counters, the actions and the timers.
    fn replay(&mut self, batch: Vec<Delivery>, records: Vec<Option<Record>>) {
        let last = batch.last().map_or(0, |d| d.at);
        for (d, record) in batch.into_iter().zip(records) {
            self.now = self.now.max(d.at);
            self.events += 1;
            let Some(record) = record else {
                continue; // not running
            };
            for action in record.actions {
                self.apply(d.to, action);
            }
            assert!(
                !self.check_done && record.due.is_none_or(|t| t >= last),
                "invariant: a Status decides nothing and moves no timer into its batch"
            );
            self.set_timer(d.to, record.due);
        }
    }
}
