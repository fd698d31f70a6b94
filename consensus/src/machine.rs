//! The consensus state machine (PROTOCOL.md 1 to 5 and 9), sans IO in the style of
//! quinn-proto.
//!
//! The driver feeds it gossip (`handle_message`), fetched proposals (`handle_fetched`), fetched
//! chains (`handle_chain`) and time (`handle_timeout`), and executes what `poll_action` returns.
//! Time is network time in ms, always passed in; the machine never reads a clock and has no
//! randomness.
//!
//! Files: `slot` (state of a slot in flight), `fetch` (fetching announced proposals, retries),
//! `finality` (4.4 and its conflicts), `status` (the own Status, divergence, substitutes, the
//! summary line), `peers` (the peer table of section 5), `fork` (section 9 and chain sync for
//! joiners), `speak` (Tally and Decision, and when a node stays silent: the erratum of 4.3),
//! `action` (what the driver executes).

mod action;
mod enroll;
mod fetch;
mod finality;
mod fork;
mod peers;
mod slot;
mod speak;
mod status;

#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod test_builder;
#[cfg(test)]
mod tests;

pub use action::{Action, Topic};
pub use enroll::{ENROLL_REPUBLISH_MS, EnrollmentView, PENDING_ENROLLS_MAX};
pub use fetch::{FETCH_TIMEOUT_MS, FETCH_TRIES_MAX};
pub use finality::{Conflict, ConflictReason, FinalReport};
pub use fork::{
    ChainSync, FOLLOW_TRIES_MAX, FORK_TURN_DELAY_MS, ForkChoice, ForkReport, SYNC_TIMEOUT_MS,
    Support, SyncError,
};
pub use peers::{PEERS_MAX, PeerChange, PeerInfo, PeerState, PeerTable};
pub use slot::DECISIONS_PER_SLOT;
pub use speak::{HEARD_MIN, SPEAK_GRACE_MS, SPEAK_SHARE, SPEAKERS};
pub use status::StatusSummary;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use libp2p_identity::{Keypair, PeerId};

use crate::admissibility::{Inadmissible, check_reveal, check_static};
use crate::chain::{Chain, DecidedSlot, Tickets};
use crate::eligibility::check_eligible;
use crate::envelope::{Envelope, EnvelopeError, Validation};
use crate::hash::Hash32;
use crate::message::{
    Body, Message, Play, Played, Proposal, Status, Tally, Verified, library_hash, track_index,
};
use crate::schedule::{finality_ms, proposal_time, proposal_window, selection_window};
use crate::ticket::{SlotContext, rank_cmp, ticket, ticket_beacon};
use crate::track::{TrackRef, expected_segments};
use fork::SyncRequest;
use slot::{Held, SlotState};

/// Domain of a node's own (deterministic) choice among its tracks.
const PICK_DOMAIN: &[u8] = b"chorus/pick/v1";
/// Winners of this many recent slots are avoided when picking a track (PROTOCOL.md 4.2).
const RECENT_WINNERS: u64 = 20;
/// The version string a Status carries unless `set_version` changes it.
const DEFAULT_VERSION: &str = concat!("chorus/", env!("CARGO_PKG_VERSION"));

/// A timed step of the protocol; at equal times they run in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Decide,
    Finalize,
    Tally,
    Propose,
}

/// A verified gossip message prepared for [`Consensus::handle_shared`]: opened once, handed to
/// many machines, its Status (if it is one) held once for all of their peer tables.
#[derive(Debug, Clone)]
pub struct Shared {
    verified: Verified,
    status: Option<Arc<Status>>,
}

impl Shared {
    /// The message.
    pub fn verified(&self) -> &Verified {
        &self.verified
    }
}

impl From<Verified> for Shared {
    fn from(verified: Verified) -> Shared {
        let status = match &verified.message {
            Message::Status(s) => Some(Arc::new(s.clone())),
            _ => None,
        };
        Shared { verified, status }
    }
}

/// One node's consensus state machine.
///
/// Call order, as quinn-proto's `Connection`: after any `handle_*` call or command, drain
/// [`Consensus::poll_action`] until it returns None, then sleep until
/// [`Consensus::poll_timeout`] (or the next input) and call [`Consensus::handle_timeout`] with
/// the current network time. The same inputs always give the same actions.
///
/// The machine decides slots `chain.len()` and `chain.len() + 1` (the two in flight). A node
/// that starts far behind must sync the chain from its peers first and call
/// [`Consensus::start_synced`]; otherwise it decides the slots in flight alone (and then heals
/// only through the fork rule). It publishes its Status every [`Consensus::status_period`] and
/// at once when its divergence changes, keeps the peer table ([`Consensus::peers`]) from the
/// others' Status, and evaluates forks before each periodic Status.
///
/// Queries (`chain`, `peers`, and the answers to peers' sync requests,
/// [`Consensus::answer_chain`] and [`Consensus::answer_proposals`]) change nothing and may be
/// called at any time.
#[derive(Debug)]
pub struct Consensus {
    keypair: Keypair,
    me: PeerId,
    chain: Chain,
    library: BTreeMap<Hash32, TrackRef>,
    blacklist: BTreeSet<Hash32>,
    /// The DJ's queue: tracks to propose first, in order.
    queue: Vec<Hash32>,
    /// What the player reported per slot (None: nothing), as `plays` carries it.
    played: BTreeMap<u64, Option<Played>>,
    joined_slot: Option<u64>,
    slots: BTreeMap<u64, SlotState>,
    actions: VecDeque<Action>,
    /// The latest network time passed in.
    last_now: Option<u64>,
    /// The peer table (PROTOCOL.md 5).
    peers: PeerTable,
    /// The software version a Status carries.
    version: String,
    /// When the own Status is next due.
    next_status_ms: Option<u64>,
    /// `diverged` of the last Status published.
    last_diverged: bool,
    /// A command changed what this node plays: check divergence at once.
    recheck: bool,
    /// Slots for which a substitute was chosen.
    substituted: BTreeSet<u64>,
    /// When the chain was last synced from peers (joining, adopting); slots whose selection
    /// began before are only followed.
    synced_at_ms: Option<u64>,
    /// When the node joined mid-stream ([`Consensus::start_synced`]); slots whose proposal
    /// window began before are only followed.
    joined_at_ms: Option<u64>,
    /// Consecutive fork evaluations won by another chain.
    fork_wins: u32,
    /// When an evaluation last found a fork.
    fork_evaluated_ms: Option<u64>,
    /// A fork evaluation due before the next own Status: a peer turned to another chain, or
    /// another chain won the last evaluation.
    fork_due_ms: Option<u64>,
    /// The `FetchChain` waiting for its answer.
    sync: Option<SyncRequest>,
    /// Chain hashes of other chains known to lose a tie at their first difference with the
    /// own chain (fetched and compared, PROTOCOL.md 9).
    ties_lost: BTreeSet<Hash32>,
    /// Supporters asked for another chain in a fork fetch that gave up (no answer, or answers
    /// refused): later fork fetches ask the other supporters first. Cleared on adoption.
    failed_sources: BTreeSet<PeerId>,
    /// Peers the node found slow to answer lately ([`Consensus::set_stalled`]): chain fetches
    /// ask them last.
    stalled: BTreeSet<PeerId>,
    /// PROTOCOL.md 12.4: when set, fork support (section 9) counts only these peers, the ones
    /// with a direct connection, so that many identities behind one connection count once.
    /// None (the simulator, which has no connections) counts every peer heard.
    direct: Option<BTreeSet<PeerId>>,
    /// This node's tickets for the slots in flight, at `slot % 4`, with the beacon each was
    /// computed over (None under open tickets): `poll_timeout` needs them after every input,
    /// and a SHA-256 each time was a large share of big simulations. Valid while the slot's
    /// beacon is the same (a fork may change it).
    my_tickets: [Option<(u64, Option<Hash32>, u64)>; 4],
    /// 12.3: the own hash chain and Enroll, Enrolls of others to carry, verified reveals.
    enrolling: enroll::EnrollState,
    /// `next_step()` as of the last input that could change it: `poll_timeout` is called after
    /// every input, most inputs (Status) cannot change it, and recomputing it (windows from the
    /// chain, slot states) was a large share of big simulations. Kept by `refresh_step`.
    step_due: Option<(u64, Step, u64)>,
    /// `(lo, hi, next)`: while the latest time passed in is in `[lo, hi)`, the next slot
    /// starts at `next`. `poll_timeout` needs it after every input, and finding the slot in
    /// the chain's schedule each time cost several cache misses. Kept by `bound_slot`.
    slot_bounds: Option<(u64, u64, Option<u64>)>,
}

impl Consensus {
    /// A state machine for the node `keypair` on `chain` (from the genesis or persisted).
    pub fn new(keypair: Keypair, chain: Chain) -> Consensus {
        let mut machine = Consensus {
            me: keypair.public().to_peer_id(),
            keypair,
            chain,
            library: BTreeMap::new(),
            blacklist: BTreeSet::new(),
            queue: Vec::new(),
            played: BTreeMap::new(),
            joined_slot: None,
            slots: BTreeMap::new(),
            actions: VecDeque::new(),
            last_now: None,
            peers: PeerTable::default(),
            version: DEFAULT_VERSION.to_owned(),
            next_status_ms: None,
            last_diverged: false,
            recheck: false,
            substituted: BTreeSet::new(),
            synced_at_ms: None,
            joined_at_ms: None,
            fork_wins: 0,
            fork_evaluated_ms: None,
            fork_due_ms: None,
            sync: None,
            ties_lost: BTreeSet::new(),
            failed_sources: BTreeSet::new(),
            stalled: BTreeSet::new(),
            direct: None,
            my_tickets: [None; 4],
            enrolling: enroll::EnrollState::default(),
            step_due: None,
            slot_bounds: None,
        };
        machine.refresh_step();
        machine
    }

    /// Recomputes the earliest pending slot step after an input that may have changed the
    /// chain, the slots in flight or a sync.
    fn refresh_step(&mut self) {
        self.after_chain_change();
        self.step_due = self.next_step();
        self.slot_bounds = None;
        self.bound_slot();
    }

    /// Command: the chain given to [`Consensus::new`] was just synced from peers (a node
    /// joining mid-stream, PROTOCOL.md 11). Slots whose proposal window already began are only
    /// followed (proposals published before the node was online never reach it): their winners
    /// come from the others' Decisions, or from their chain
    /// ([`Action::FetchChain`]), never from this node alone. It counts as joined in the slot
    /// playing at `now` and proposes from the next proposal window it is eligible for.
    /// Call it before any other input.
    pub fn start_synced(&mut self, now: u64) {
        self.join(now);
        self.synced_at_ms = Some(now);
        self.joined_at_ms = Some(now);
        self.refresh_step();
    }

    /// Command: the software version each Status carries (default `chorus/<crate version>`).
    pub fn set_version(&mut self, version: impl Into<String>) {
        let mut version = version.into();
        // Receivers refuse a longer one (PROTOCOL.md 12.5); cut at a character boundary.
        while version.len() > crate::limits::STATUS_VERSION_MAX_BYTES {
            version.pop();
        }
        self.version = version;
    }

    /// Counts fork support only among directly connected peers (PROTOCOL.md 12.4), starting
    /// from none: the node reports each connection with [`Consensus::peer_connected`] and
    /// [`Consensus::peer_disconnected`].
    pub fn count_direct_support_only(&mut self) {
        self.direct.get_or_insert_with(BTreeSet::new);
    }

    /// Input: a direct connection to `peer` opened (its first).
    pub fn peer_connected(&mut self, peer: PeerId) {
        if let Some(direct) = self.direct.as_mut() {
            direct.insert(peer);
        }
    }

    /// Input: the last direct connection to `peer` closed.
    pub fn peer_disconnected(&mut self, peer: &PeerId) {
        if let Some(direct) = self.direct.as_mut() {
            direct.remove(peer);
        }
    }

    /// Input: the peers whose answer to a request of the node's own has been out for a while
    /// (a connection that stalled: after a partition's repair TCP may wait seconds for its
    /// next retransmission). A chain fetch (fork or follow) asks them after the others; fork
    /// support still counts them. Replaces the previous set.
    pub fn set_stalled(&mut self, peers: impl IntoIterator<Item = PeerId>) {
        self.stalled.clear();
        self.stalled.extend(peers);
    }

    /// Query: the peer table.
    pub fn peers(&self) -> &PeerTable {
        &self.peers
    }

    /// This node's PeerId.
    pub fn peer_id(&self) -> &PeerId {
        &self.me
    }

    /// The chain as decided so far.
    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    /// Command: the tracks this node can propose (replaces the previous library).
    pub fn set_library(&mut self, tracks: impl IntoIterator<Item = TrackRef>) {
        self.library = tracks.into_iter().map(|t| (t.track_hash, t)).collect();
    }

    /// Command: tracks this node never proposes nor plays. A decided winner on it is replaced
    /// by an [`Action::PlaySubstitute`] for its slot.
    pub fn set_blacklist(&mut self, tracks: BTreeSet<Hash32>) {
        self.blacklist = tracks;
        self.recheck = true;
    }

    /// Whether this node has no tracks to propose.
    pub fn library_is_empty(&self) -> bool {
        self.library.is_empty()
    }

    /// The `library_hash` this node's proposals carry.
    pub fn library_hash(&self) -> Hash32 {
        library_hash(self.library.keys())
    }

    /// Command: the DJ's queue, tracks to propose first, in order (replaces the previous one).
    /// Each proposal window takes the first that is in the library and admissible, not
    /// blacklisted and not a winner of the last 20 slots; a track proposed leaves the queue.
    /// An empty queue (or one with nothing proposable) leaves the automatic pick.
    pub fn set_queue(&mut self, tracks: Vec<Hash32>) {
        self.queue = tracks;
    }

    /// Command: what the player actually plays (or played) in `slot` (None: nothing), e.g. when
    /// it could not fetch the winner without having asked every provider, or was told to play
    /// something else. Slots not reported count as the winner (or the substitute of a
    /// blacklisted winner) from the slot the node started in. It feeds the Status (`playing`,
    /// `diverged`, published at once when `diverged` changes) and the `plays` of proposals
    /// (a track hash, or null for None). The last report for a slot counts.
    pub fn report_played(&mut self, slot: u64, track: Option<Hash32>) {
        self.played.insert(slot, track.map(Played::Track));
        self.recheck = true;
    }

    /// Command: the winner of `slot` could not be fetched by its slot although its segments
    /// were asked of every known provider (PROTOCOL.md 12.2). The node plays nothing in that
    /// slot and its Status says `diverged` (for display), but its proposals carry the mark
    /// `unavailable` for the slot, which keeps it eligible: a winner withheld by its proposer
    /// costs one slot of silence, never the honest proposers' eligibility. The last report for a
    /// slot counts ([`Consensus::report_played`] replaces it).
    pub fn report_unavailable(&mut self, slot: u64) {
        self.played.insert(slot, Some(Played::Unavailable));
        self.recheck = true;
    }

    /// The envelopes of the proposals held for `slot` among `ids` (all of them when `ids` is
    /// empty), however many ids are asked for. To answer a peer, use
    /// [`Consensus::answer_proposals`], which bounds the request.
    pub fn proposal_envelopes(&self, slot: u64, ids: &[Hash32]) -> Vec<Envelope> {
        let Some(state) = self.slots.get(&slot) else {
            return Vec::new();
        };
        state
            .proposals
            .iter()
            .filter(|(id, _)| ids.is_empty() || ids.contains(id))
            .map(|(_, held)| held.envelope.clone())
            .collect()
    }

    /// The answer to `/chorus/sync/1 Proposals{slot, ids}` (PROTOCOL.md 2): the envelopes of the
    /// proposals held for `slot` among the first [`PROPOSAL_IDS_MAX`] of `ids` (the rest are
    /// ignored), or of all those held for the slot when `ids` is empty. Only slots in flight
    /// hold proposals; any other slot is answered with none.
    ///
    /// [`PROPOSAL_IDS_MAX`]: crate::limits::PROPOSAL_IDS_MAX
    pub fn answer_proposals(&self, slot: u64, ids: &[Hash32]) -> Vec<Envelope> {
        let bounded = &ids[..ids.len().min(crate::limits::PROPOSAL_IDS_MAX)];
        self.proposal_envelopes(slot, bounded)
    }

    /// The answer to `/chorus/sync/1 Chain{from_slot}` (PROTOCOL.md 2): the decided slots from
    /// `from_slot` on, in order, at most [`CHAIN_RESPONSE_SLOTS`]. A `from_slot` before the first
    /// decided slot (a genesis slot) starts at the first; one past the last decided slot gets
    /// none. Each slot carries its winning proposal's envelope (12.1).
    ///
    /// [`CHAIN_RESPONSE_SLOTS`]: crate::limits::CHAIN_RESPONSE_SLOTS
    pub fn answer_chain(&self, from_slot: u64) -> Vec<DecidedSlot> {
        let slots = self.chain.decided_from(from_slot);
        slots[..slots.len().min(crate::limits::CHAIN_RESPONSE_SLOTS)].to_vec()
    }

    /// The next action for the driver.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When `handle_timeout` must next be called (network time, ms); None if nothing is
    /// scheduled.
    /// Before the first input it is `Some(0)`: call `handle_timeout` with the current time.
    pub fn poll_timeout(&self) -> Option<u64> {
        debug_assert_eq!(
            self.step_due,
            self.next_step(),
            "refresh_step after every input"
        );
        [
            self.step_due.map(|(at, _, _)| at),
            self.next_status_check(),
            self.peers.next_deadline(self.chain.rules().exclusion_ms),
            self.next_fetch_retry(),
            self.sync.as_ref().map(|s| s.due_ms),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Input: a gossip message from `source` (the propagation peer). Returns the verdict to
    /// report to gossipsub. The same as [`Envelope::open`] with this node's network id followed
    /// by [`Consensus::handle_verified`].
    pub fn handle_message(&mut self, now: u64, source: PeerId, envelope: Envelope) -> Validation {
        self.join(now);
        match envelope.open(self.chain.network_id()) {
            Ok(verified) => self.handle_verified(now, source, verified),
            Err(e) => self.refuse(source, &e),
        }
    }

    /// Input: a gossip message already verified, for a driver that checks each distinct
    /// message once and hands it to many machines (the simulator). Returns the verdict to report
    /// to gossipsub, as [`Consensus::handle_message`] would.
    ///
    /// Only the caller's own successful [`crate::envelope::open_gossip`] (or [`Envelope::open`])
    /// may produce `verified`: the machine trusts its signature, sender and structure checks and
    /// does not repeat them. It checks only the network id again (cheap), so that a message
    /// opened for another network is refused as `handle_message` would.
    pub fn handle_verified(&mut self, now: u64, source: PeerId, verified: Verified) -> Validation {
        let verdict = self.accept(now, source, verified);
        self.refresh_step();
        verdict
    }

    fn accept(&mut self, now: u64, source: PeerId, verified: Verified) -> Validation {
        if let Some(refused) = self.admit(now, source, &verified.message) {
            return refused;
        }
        match verified.message {
            Message::Proposal(p) => self.ingest_proposal(verified.id, p, verified.envelope),
            Message::Tally(t) => self.on_tally(now, &t),
            Message::Decision(d) => {
                if !self.in_flight(d.slot) {
                    return Validation::Ignore;
                }
                if let (Some(id), Some(t)) = (d.proposal_id, d.ticket) {
                    self.request_missing(now, d.from, d.slot, &[(t, id)]);
                }
                self.slots.entry(d.slot).or_default().add_decision(d);
                Validation::Accept
            }
            Message::Status(s) => {
                self.on_status(now, &Arc::new(s));
                Validation::Accept
            }
            Message::Enroll(e) => self.on_enroll(e, verified.envelope),
        }
    }

    /// Input: a gossip message already verified, handed to many machines (the simulator), as
    /// [`Consensus::handle_verified`] (same verdicts, same actions) but by reference: the
    /// machine copies only what it keeps, and keeps a Status by sharing it. Copying every
    /// Status into every receiver's peer table was a large share of big simulations. The trust
    /// rule of `handle_verified` applies to the message inside `shared`.
    pub fn handle_shared(&mut self, now: u64, source: PeerId, shared: &Shared) -> Validation {
        let verified = &shared.verified;
        match (&verified.message, &shared.status) {
            (Message::Tally(t), _) => {
                if let Some(refused) = self.admit(now, source, &verified.message) {
                    return refused;
                }
                let verdict = self.on_tally(now, t);
                self.refresh_step();
                verdict
            }
            // A Status changes only the peer table: no slot step moves.
            (Message::Status(_), Some(status)) => {
                if let Some(refused) = self.admit(now, source, &verified.message) {
                    return refused;
                }
                self.on_status(now, status);
                Validation::Accept
            }
            // Rare, and kept whole when held.
            _ => self.handle_verified(now, source, verified.clone()),
        }
    }

    /// The checks common to every verified message: notes the time, and refuses a message of
    /// another network (the verdict), as `handle_message` would.
    fn admit(&mut self, now: u64, source: PeerId, message: &Message) -> Option<Validation> {
        self.join(now);
        if message.network_id() == self.chain.network_id() {
            return None;
        }
        let e = EnvelopeError::WrongNetwork {
            expected: *self.chain.network_id(),
            got: *message.network_id(),
        };
        Some(self.refuse(source, &e))
    }

    fn on_tally(&mut self, now: u64, t: &Tally) -> Validation {
        if !self.in_flight(t.slot) {
            return Validation::Ignore;
        }
        self.request_missing(now, t.from, t.slot, &t.best);
        self.slots.entry(t.slot).or_default().note_tally(t);
        Validation::Accept
    }

    /// Counts an envelope that failed its checks against `source` (unless merely of an unknown
    /// kind) and returns its verdict.
    fn refuse(&mut self, source: PeerId, e: &EnvelopeError) -> Validation {
        if e.validation() == Validation::Reject {
            self.peers.violation(source);
            self.actions.push_back(Action::Violation {
                peer: source,
                reason: e.to_string(),
            });
        }
        e.validation()
    }

    /// Input: proposal envelopes fetched from a peer after an [`Action::FetchProposals`].
    pub fn handle_fetched(&mut self, now: u64, envelopes: Vec<Envelope>) {
        self.join(now);
        for envelope in envelopes {
            if let Ok(verified) = envelope.open(self.chain.network_id())
                && let Message::Proposal(p) = verified.message
            {
                self.ingest_proposal(verified.id, p, verified.envelope);
            }
        }
        self.refresh_step();
    }

    /// Input: the network time reached `now`; runs every step due.
    pub fn handle_timeout(&mut self, now: u64) {
        self.join(now);
        while let Some((at, step, slot)) = self.next_step() {
            if at > now {
                break;
            }
            match step {
                Step::Propose => self.propose(now, slot),
                Step::Tally => self.tally(now, slot),
                Step::Decide => self.decide(now, slot),
                Step::Finalize => {
                    if !self.finalize(now, slot) {
                        break;
                    }
                }
            }
        }
        self.housekeeping(now);
        self.refresh_step();
    }

    /// Everything due at `now` besides the slot steps: substitutes, peers excluded by time,
    /// fetch retries, and the own Status (with the fork evaluation).
    fn housekeeping(&mut self, now: u64) {
        self.recheck = false;
        self.substitute_blacklisted(now);
        let exclusion_ms = self.chain.rules().exclusion_ms;
        for change in self.peers.on_time(now, exclusion_ms) {
            self.actions.push_back(Action::PeerChanged(change));
        }
        self.retry_fetches(now);
        self.retry_sync(now);
        self.status_tick(now);
    }

    /// Remembers the slot the node started in: earlier slots were not played by it.
    fn join(&mut self, now: u64) {
        self.last_now = Some(self.last_now.map_or(now, |t| t.max(now)));
        self.bound_slot();
        let len = self.chain.len();
        for slot in len..len + 3 {
            let at = (slot % 4) as usize;
            let beacon = ticket_beacon(&SlotContext::on_chain(&self.chain, slot));
            if self.my_tickets[at].is_none_or(|(s, b, _)| s != slot || b != beacon) {
                self.my_tickets[at] = Some((slot, beacon, self.ticket_of(slot, &self.me)));
            }
        }
        if self.joined_slot.is_none() {
            let before_start = self.chain.start(0).is_some_and(|s| now < s);
            self.joined_slot = Some(if before_start {
                0
            } else {
                self.chain.slot_at(now).unwrap_or(self.chain.len())
            });
        }
    }

    fn in_flight(&self, slot: u64) -> bool {
        (self.chain.len()..=self.chain.len() + 2).contains(&slot)
    }

    fn my_ticket(&self, slot: u64) -> u64 {
        match self.my_tickets[(slot % 4) as usize] {
            Some((s, beacon, ticket))
                if s == slot
                    && beacon == ticket_beacon(&SlotContext::on_chain(&self.chain, slot)) =>
            {
                ticket
            }
            _ => self.ticket_of(slot, &self.me),
        }
    }

    fn ticket_of(&self, slot: u64, peer: &PeerId) -> u64 {
        ticket(&SlotContext::on_chain(&self.chain, slot), peer)
    }

    /// The earliest pending step of the two slots in flight.
    fn next_step(&self) -> Option<(u64, Step, u64)> {
        let len = self.chain.len();
        let mut steps = Vec::new();
        for slot in [len, len + 1] {
            let state = self.slots.get(&slot);
            let done = |f: fn(&SlotState) -> bool| state.is_some_and(f);
            if !done(|s| s.proposed)
                && let Some(at) = proposal_time(&self.chain, slot, self.my_ticket(slot))
            {
                steps.push((at, Step::Propose, slot));
            }
            if let Some(window) = selection_window(&self.chain, slot)
                && !self.followed(slot)
            {
                if !done(|s| s.tallied) {
                    steps.push((self.tally_time(slot, window, state), Step::Tally, slot));
                }
                if !done(|s| s.decision_done) {
                    let at = self.decision_time(slot, window, state);
                    steps.push((at, Step::Decide, slot));
                }
            }
            // While a chain fetch for a followed slot is out, its answer makes the slot final;
            // and a followed slot waits for any chain fetch out (`follow_sync` asks nothing
            // while one is), else its Finalize would be due again at once, each time.
            let fetching = self
                .sync
                .as_ref()
                .is_some_and(|s| s.purpose == fork::Purpose::Follow || self.followed(slot));
            if slot == len
                && !fetching
                && let Some(at) = finality_ms(&self.chain, slot)
            {
                steps.push((at, Step::Finalize, slot));
            }
        }
        steps.into_iter().min()
    }

    fn ingest_proposal(
        &mut self,
        id: Hash32,
        proposal: Proposal,
        envelope: Envelope,
    ) -> Validation {
        let slot = proposal.slot;
        if !self.in_flight(slot) {
            return Validation::Ignore;
        }
        self.answered(slot, &id);
        if self
            .slots
            .get(&slot)
            .is_some_and(|s| s.proposals.contains_key(&id))
        {
            return Validation::Ignore;
        }
        if let Err(e) = check_static(&self.chain, slot, &proposal) {
            self.peers.violation(proposal.from);
            self.actions.push_back(Action::Violation {
                peer: proposal.from,
                reason: e.to_string(),
            });
            return Validation::Reject;
        }
        if let Err(e) = check_eligible(&self.chain, slot, &proposal.from, &proposal.plays) {
            return Inadmissible::from(e).validation();
        }
        let ticket = self.ticket_of(slot, &proposal.from);
        if self.chain.tickets() == Tickets::Fair {
            if self.cannot_win(slot, ticket, &proposal.from) {
                // 12.3: only proposals that could win are verified (a reveal may cost a long
                // walk) and kept.
                return Validation::Ignore;
            }
            let cached = self.cached_reveal(&proposal.from);
            match check_reveal(&self.chain, slot, &proposal, cached) {
                Ok((index, value)) => self.cache_reveal(proposal.from, index, value),
                Err(e) => {
                    let reason = e.to_string();
                    self.peers.violation(proposal.from);
                    self.actions.push_back(Action::RevealInvalid {
                        peer: proposal.from,
                        slot,
                        reason: reason.clone(),
                    });
                    self.actions.push_back(Action::Violation {
                        peer: proposal.from,
                        reason,
                    });
                    return e.validation();
                }
            }
        }
        self.peers
            .note_library(&proposal.from, proposal.library_hash);
        let held = Held {
            ticket,
            proposal,
            envelope,
        };
        self.slots.entry(slot).or_default().hold(id, held);
        Validation::Accept
    }

    /// How many admissible proposals of other proposers with a lower `(ticket, from)` are held
    /// for `slot`.
    fn held_below(&self, slot: u64, ticket: u64, from: &PeerId) -> u64 {
        self.slots.get(&slot).map_or(0, |s| {
            s.ranked(&self.chain, slot)
                .iter()
                .filter(|(_, h)| h.proposal.from != *from)
                .filter(|(_, h)| rank_cmp((h.ticket, &h.proposal.from), (ticket, from)).is_lt())
                .count() as u64
        })
    }

    /// Whether `backup_proposals + 1` admissible proposals of others with lower tickets are
    /// held for `slot`: a proposal of `(ticket, from)` cannot win it.
    fn cannot_win(&self, slot: u64, ticket: u64, from: &PeerId) -> bool {
        self.held_below(slot, ticket, from) > self.chain.rules().backup_proposals
    }

    /// What this node played in `j`, as its proposals report it.
    fn play(&self, j: u64) -> Play {
        let track = match self.played.get(&j) {
            Some(track) => *track,
            None if self.joined_slot.is_some_and(|s| s <= j) => {
                self.chain.winner(j).map(|t| Played::Track(t.track_hash))
            }
            None => None,
        };
        (j, track)
    }

    fn propose(&mut self, now: u64, slot: u64) {
        self.slots.entry(slot).or_default().proposed = true;
        let in_window = proposal_window(&self.chain, slot).is_some_and(|w| w.contains(now));
        let Some(track) = self.pick_track(slot).filter(|_| in_window) else {
            return;
        };
        let plays: Vec<Play> = (slot.saturating_sub(8)..=slot - 5)
            .map(|j| self.play(j))
            .collect();
        if check_eligible(&self.chain, slot, &self.me, &plays).is_err() {
            return;
        }
        let reveal = match self.chain.tickets() {
            Tickets::Open => None,
            Tickets::Fair => match self.own_reveal(slot) {
                Some(reveal) => Some(reveal),
                None => return,
            },
        };
        let mine = self.my_ticket(slot);
        if self.held_below(slot, mine, &self.me) >= self.chain.rules().backup_proposals {
            return;
        }
        let proposal = Proposal {
            network_id: *self.chain.network_id(),
            slot,
            from: self.me,
            library_hash: library_hash(self.library.keys()),
            track_index: track_index(self.library.keys(), &track.track_hash).unwrap_or(0),
            track: track.clone(),
            plays,
            rules_hash: *self.chain.rules_hash(),
            created_ms: now,
            reveal,
            enrolls: self.enrolls_to_carry(),
        };
        let envelope = Envelope::seal(&proposal, &self.keypair)
            .expect("invariant: the body is from our own key");
        let id = envelope.id();
        self.slots.entry(slot).or_default().hold(
            id,
            Held {
                proposal,
                envelope: envelope.clone(),
                ticket: mine,
            },
        );
        if let Some(i) = self.queue.iter().position(|h| *h == track.track_hash) {
            self.queue.remove(i);
        }
        // Reported before it goes out, so that the driver's `proposed` log line comes first.
        self.actions.push_back(Action::Proposed { slot, track });
        self.actions.push_back(Action::Publish {
            topic: Topic::Consensus,
            envelope,
        });
    }

    /// The tracks of this node's own proposals for slots before `slot` not decided yet: one of
    /// them may still win, and then it is a recent winner.
    fn proposed_in_flight(&self, slot: u64) -> BTreeSet<Hash32> {
        self.slots
            .range(self.chain.len()..slot)
            .filter_map(|(_, state)| state.by_proposer.get(&self.me).map(|ids| (state, ids)))
            .flat_map(|(state, ids)| ids.iter().filter_map(|id| state.proposals.get(id)))
            .map(|held| held.proposal.track.track_hash)
            .collect()
    }

    /// A track of the library for `slot`: admissible and not blacklisted. The first such track
    /// of the DJ's queue that is neither a recent winner nor proposed by this node for an
    /// undecided slot (a queue file read again before that slot is decided must not propose it
    /// twice in a row); else one chosen by a hash of this node and the slot, among the tracks
    /// neither recent winners nor in flight where there are any, else among those not recent
    /// winners, else among all.
    fn pick_track(&self, slot: u64) -> Option<TrackRef> {
        let rules = self.chain.rules();
        let usable: Vec<&TrackRef> = self
            .library
            .values()
            .filter(|t| !self.blacklist.contains(&t.track_hash))
            .filter(|t| (rules.min_track_ms..=rules.max_track_ms).contains(&t.duration_ms))
            .filter(|t| {
                t.segment_count
                    .abs_diff(expected_segments(t.duration_ms, rules.segment_ms))
                    <= 1
            })
            .collect();
        let recent: BTreeSet<Hash32> = (slot.saturating_sub(RECENT_WINNERS)..slot)
            .filter_map(|j| self.chain.winner(j).map(|t| t.track_hash))
            .collect();
        let in_flight = self.proposed_in_flight(slot);
        let queued = self.queue.iter().find_map(|h| {
            usable
                .iter()
                .find(|t| t.track_hash == *h && !recent.contains(h) && !in_flight.contains(h))
        });
        if let Some(t) = queued {
            return Some((*t).clone());
        }
        let fresh: Vec<&TrackRef> = usable
            .iter()
            .copied()
            .filter(|t| !recent.contains(&t.track_hash))
            .collect();
        let spare: Vec<&TrackRef> = fresh
            .iter()
            .copied()
            .filter(|t| !in_flight.contains(&t.track_hash))
            .collect();
        let pool = [spare, fresh]
            .into_iter()
            .find(|p| !p.is_empty())
            .unwrap_or(usable);
        let n = u64::try_from(pool.len()).ok().filter(|n| *n > 0)?;
        let seed = Hash32::digest_parts(&[PICK_DOMAIN, &self.me.to_bytes(), &slot.to_be_bytes()]);
        let mut first = [0u8; 8];
        first.copy_from_slice(&seed.0[..8]);
        let index = usize::try_from(u64::from_be_bytes(first) % n).ok()?;
        pool.get(index).map(|t| (*t).clone())
    }

    fn publish<B: Body>(&mut self, body: &B) {
        let envelope =
            Envelope::seal(body, &self.keypair).expect("invariant: the body is from our own key");
        self.actions.push_back(Action::Publish {
            topic: Topic::Consensus,
            envelope,
        });
    }
}
