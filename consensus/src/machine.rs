//! The consensus state machine (PROTOCOL.md 1 to 4), sans IO in the style of quinn-proto.
//!
//! The driver feeds it gossip (`handle_message`), fetched proposals (`handle_fetched`) and time
//! (`handle_timeout`), and executes what `poll_action` returns. Time is network time in ms,
//! always passed in; the machine never reads a clock and has no randomness.

mod action;
mod slot;

#[cfg(test)]
mod test_builder;
#[cfg(test)]
mod tests;

pub use action::{Action, Topic};

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use libp2p_identity::{Keypair, PeerId};

use crate::admissibility::{Inadmissible, check_admissible, check_static};
use crate::chain::{Chain, Outcome};
use crate::eligibility::check_eligible;
use crate::envelope::{Envelope, Validation};
use crate::hash::Hash32;
use crate::message::{Body, Decision, Message, Play, Proposal, Tally, library_hash, track_index};
use crate::schedule::{finality_ms, proposal_time, proposal_window, selection_window};
use crate::select::replay_winner;
use crate::ticket::{SlotContext, rank_cmp, ticket};
use crate::track::{TrackRef, expected_segments};
use slot::{Held, SlotState};

/// Domain of a node's own (deterministic) choice among its tracks.
const PICK_DOMAIN: &[u8] = b"chorus/pick/v1";
/// Winners of this many recent slots are avoided when picking a track (PROTOCOL.md 4.2).
const RECENT_WINNERS: u64 = 20;

/// A timed step of the protocol; at equal times they run in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Decide,
    Finalize,
    Tally,
    Propose,
}

/// One node's consensus state machine.
///
/// Call order, as quinn-proto's `Connection`: after any `handle_*` call or command, drain
/// [`Consensus::poll_action`] until it returns None, then sleep until
/// [`Consensus::poll_timeout`] (or the next input) and call [`Consensus::handle_timeout`] with
/// the current network time. The same inputs always give the same actions.
///
/// The machine decides slots `chain.len()` and `chain.len() + 1` (the two in flight); a node
/// must sync the chain up to the present before it starts driving it, or it decides the missed
/// slots alone as replays.
#[derive(Debug)]
pub struct Consensus {
    keypair: Keypair,
    me: PeerId,
    chain: Chain,
    library: BTreeMap<Hash32, TrackRef>,
    blacklist: BTreeSet<Hash32>,
    played: BTreeMap<u64, Option<Hash32>>,
    joined_slot: Option<u64>,
    slots: BTreeMap<u64, SlotState>,
    actions: VecDeque<Action>,
}

impl Consensus {
    /// A state machine for the node `keypair` on `chain` (from the genesis or persisted).
    pub fn new(keypair: Keypair, chain: Chain) -> Consensus {
        Consensus {
            me: keypair.public().to_peer_id(),
            keypair,
            chain,
            library: BTreeMap::new(),
            blacklist: BTreeSet::new(),
            played: BTreeMap::new(),
            joined_slot: None,
            slots: BTreeMap::new(),
            actions: VecDeque::new(),
        }
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

    /// Command: tracks this node never proposes.
    pub fn set_blacklist(&mut self, tracks: BTreeSet<Hash32>) {
        self.blacklist = tracks;
    }

    /// Command: what the player actually played in `slot` (None: nothing). Slots not reported
    /// since the machine started count as the winner (the node was in consensus).
    pub fn report_played(&mut self, slot: u64, track: Option<Hash32>) {
        self.played.insert(slot, track);
    }

    /// The envelopes of the proposals held for `slot` among `ids` (all of them when `ids` is
    /// empty): the answer to `/chorus/sync/1 Proposals{slot, ids}`.
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

    /// The next action for the driver.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When `handle_timeout` must next be called (network time, ms); None if nothing is
    /// scheduled.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.next_step().map(|(at, _, _)| at)
    }

    /// Input: a gossip message from `source` (the propagation peer). Returns the verdict to
    /// report to gossipsub.
    pub fn handle_message(&mut self, now: u64, source: PeerId, envelope: Envelope) -> Validation {
        self.join(now);
        let verified = match envelope.open(self.chain.network_id()) {
            Ok(verified) => verified,
            Err(e) => {
                if e.validation() == Validation::Reject {
                    self.actions.push_back(Action::Violation {
                        peer: source,
                        reason: e.to_string(),
                    });
                }
                return e.validation();
            }
        };
        match verified.message {
            Message::Proposal(p) => self.ingest_proposal(verified.id, p, verified.envelope),
            Message::Tally(t) => {
                if !self.in_flight(t.slot) {
                    return Validation::Ignore;
                }
                self.request_missing(t.from, t.slot, &t.best);
                Validation::Accept
            }
            Message::Decision(d) => {
                if !self.in_flight(d.slot) {
                    return Validation::Ignore;
                }
                if let (Some(id), Some(t)) = (d.proposal_id, d.ticket) {
                    self.request_missing(d.from, d.slot, &[(t, id)]);
                }
                self.slots
                    .entry(d.slot)
                    .or_default()
                    .decisions
                    .insert(d.from, d);
                Validation::Accept
            }
            Message::Status(_) => Validation::Accept,
        }
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
                Step::Tally => self.tally(slot),
                Step::Decide => self.decide(slot),
                Step::Finalize => {
                    if !self.finalize(slot) {
                        break;
                    }
                }
            }
        }
    }

    /// Remembers the slot the node started in: earlier slots were not played by it.
    fn join(&mut self, now: u64) {
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
        self.ticket_of(slot, &self.me)
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
            if let Some(window) = selection_window(&self.chain, slot) {
                if !done(|s| s.tallied) {
                    steps.push((window.start_ms, Step::Tally, slot));
                }
                if !done(|s| s.decided.is_some()) {
                    steps.push((window.end_ms, Step::Decide, slot));
                }
            }
            if slot == len
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
        if self
            .slots
            .get(&slot)
            .is_some_and(|s| s.proposals.contains_key(&id))
        {
            return Validation::Ignore;
        }
        if let Err(e) = check_static(&self.chain, slot, &proposal) {
            self.actions.push_back(Action::Violation {
                peer: proposal.from,
                reason: e.to_string(),
            });
            return Validation::Reject;
        }
        if let Err(e) = check_eligible(&self.chain, slot, &proposal.from, &proposal.plays) {
            return Inadmissible::from(e).validation();
        }
        let held = Held {
            ticket: self.ticket_of(slot, &proposal.from),
            proposal,
            envelope,
        };
        self.slots.entry(slot).or_default().hold(id, held);
        Validation::Accept
    }

    /// Asks `peer` for announced proposals that beat this node's best and that it lacks.
    fn request_missing(&mut self, peer: PeerId, slot: u64, announced: &[(u64, Hash32)]) {
        let chain = &self.chain;
        let state = self.slots.entry(slot).or_default();
        let best = state.ranked(chain, slot).first().map(|(_, h)| h.ticket);
        let ids: Vec<Hash32> = announced
            .iter()
            .filter(|(t, id)| {
                best.is_none_or(|b| *t < b)
                    && !state.proposals.contains_key(id)
                    && !state.requested.contains(id)
            })
            .map(|(_, id)| *id)
            .collect();
        if ids.is_empty() {
            return;
        }
        state.requested.extend(ids.iter().copied());
        self.actions
            .push_back(Action::FetchProposals { peer, slot, ids });
    }

    /// What this node played in `j`, as its proposals report it.
    fn play(&self, j: u64) -> Play {
        let track = match self.played.get(&j) {
            Some(track) => *track,
            None if self.joined_slot.is_some_and(|s| s <= j) => {
                self.chain.winner(j).map(|t| t.track_hash)
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
        let mine = self.my_ticket(slot);
        let chain = &self.chain;
        let lower = self.slots.get(&slot).map_or(0, |s| {
            s.ranked(chain, slot)
                .iter()
                .filter(|(_, h)| rank_cmp((h.ticket, &h.proposal.from), (mine, &self.me)).is_lt())
                .count()
        });
        if lower as u64 >= self.chain.rules().backup_proposals {
            return;
        }
        let proposal = Proposal {
            network_id: *self.chain.network_id(),
            slot,
            from: self.me,
            library_hash: library_hash(self.library.keys()),
            track_index: track_index(self.library.keys(), &track.track_hash).unwrap_or(0),
            track,
            plays,
            rules_hash: *self.chain.rules_hash(),
            created_ms: now,
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
        self.actions.push_back(Action::Publish {
            topic: Topic::Consensus,
            envelope,
        });
    }

    /// A track of the library for `slot`: admissible, not blacklisted, not a recent winner
    /// where avoidable; chosen by a hash of this node and the slot.
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
        let fresh: Vec<&TrackRef> = usable
            .iter()
            .copied()
            .filter(|t| !recent.contains(&t.track_hash))
            .collect();
        let pool = if fresh.is_empty() { usable } else { fresh };
        let n = u64::try_from(pool.len()).ok().filter(|n| *n > 0)?;
        let seed = Hash32::digest_parts(&[PICK_DOMAIN, &self.me.to_bytes(), &slot.to_be_bytes()]);
        let mut first = [0u8; 8];
        first.copy_from_slice(&seed.0[..8]);
        let index = usize::try_from(u64::from_be_bytes(first) % n).ok()?;
        pool.get(index).map(|t| (*t).clone())
    }

    fn tally(&mut self, slot: u64) {
        let chain = &self.chain;
        let state = self.slots.entry(slot).or_default();
        state.tallied = true;
        if state.decided.is_some() {
            return;
        }
        let best = state
            .ranked(chain, slot)
            .iter()
            .take(crate::limits::TALLY_BEST_MAX)
            .map(|(id, held)| (held.ticket, *id))
            .collect();
        let tally = Tally {
            network_id: *chain.network_id(),
            slot,
            from: self.me,
            best,
        };
        self.publish(&tally);
    }

    fn decide(&mut self, slot: u64) {
        let chain = &self.chain;
        let state = self.slots.entry(slot).or_default();
        let best = state
            .ranked(chain, slot)
            .first()
            .map(|(id, held)| (held.proposal.track.track_hash, *id, held.ticket));
        let (winner, proposal_id, ticket) = match best {
            Some((winner, id, ticket)) => (winner, Some(id), Some(ticket)),
            None => match replay_winner(chain, slot) {
                Some(replay) => (replay.winner, None, None),
                // Only a chain without a single known winner has no replay candidate.
                None => (Hash32::ZERO, None, None),
            },
        };
        let decision = Decision {
            network_id: *chain.network_id(),
            slot,
            from: self.me,
            winner,
            proposal_id,
            ticket,
            equivocators: state.equivocators(),
            rules_hash: *chain.rules_hash(),
        };
        state.decided = Some(decision.clone());
        self.publish(&decision);
    }

    fn publish<B: Body>(&mut self, body: &B) {
        let envelope =
            Envelope::seal(body, &self.keypair).expect("invariant: the body is from our own key");
        self.actions.push_back(Action::Publish {
            topic: Topic::Consensus,
            envelope,
        });
    }

    /// Makes slot `slot` (= chain.len()) final (PROTOCOL.md 4.4). False if it cannot.
    fn finalize(&mut self, slot: u64) -> bool {
        let state = self.slots.remove(&slot).unwrap_or_default();
        let mut backed: Vec<&Decision> = state.decisions.values().collect();
        backed.extend(state.decided.as_ref());
        // The lowest ticket among decisions whose proposal is held and passes rules 1 to 3;
        // rule 4 is applied after, as "the winner equivocated: replay".
        let best = backed
            .iter()
            .filter_map(|d| d.proposal_id)
            .filter_map(|id| state.proposals.get(&id).map(|held| (id, held)))
            .filter(|(id, held)| {
                check_admissible(&self.chain, slot, &held.proposal, id, [id]).is_ok()
            })
            .min_by(|a, b| {
                rank_cmp(
                    (a.1.ticket, &a.1.proposal.from),
                    (b.1.ticket, &b.1.proposal.from),
                )
            });
        let equivocators = state.equivocators();
        let outcome = match best {
            Some((id, held)) if !equivocators.contains(&held.proposal.from) => Outcome {
                track: held.proposal.track.clone(),
                proposal: Some((id, held.ticket)),
                equivocators,
            },
            _ => {
                let Some(replay) = replay_winner(&self.chain, slot) else {
                    return false;
                };
                let Some(track) = (0..slot).rev().find_map(|j| {
                    self.chain
                        .winner(j)
                        .filter(|t| t.track_hash == replay.winner)
                }) else {
                    return false;
                };
                Outcome {
                    track: track.clone(),
                    proposal: None,
                    equivocators,
                }
            }
        };
        let decided = self.chain.push(outcome).clone();
        self.slots.retain(|s, _| *s > slot);
        self.actions.push_back(Action::Decided(decided));
        true
    }
}
