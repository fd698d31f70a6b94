//! Enrollment (PROTOCOL.md 12.3) in the machine: the own hash chain and Enroll, the Enrolls of
//! others waiting for a winning proposal to carry them, and the cache of verified reveals.

use std::collections::{BTreeMap, VecDeque};

use libp2p_identity::PeerId;

use super::{Action, Consensus, Topic};
use crate::beacon::HashChain;
use crate::chain::{Tickets, enrolls_again};
use crate::envelope::{Envelope, Validation};
use crate::hash::Hash32;
use crate::message::Enroll;

/// Most Enrolls of others held for carriage; later ones are ignored until room frees (their
/// authors publish again).
pub const PENDING_ENROLLS_MAX: usize = 64;
/// How often a node not yet enrolled publishes its Enroll again (with its next Status), at
/// most: and at most once per slot, which is as often as proposals can carry it. Often
/// enough to reach nodes that joined since or had no room, rarely enough that a thousand
/// nodes waiting to enroll (four are enrolled per slot) cost less than their Statuses.
pub const ENROLL_REPUBLISH_MS: u64 = 30_000;

/// The enrollment state of one machine.
#[derive(Debug, Default)]
pub(super) struct EnrollState {
    /// The own hash chain, whose values the own proposals reveal.
    hash_chain: Option<HashChain>,
    /// The own Enroll, published until the chain enrolls its commit.
    own: Option<(Envelope, Enroll)>,
    /// Enrolls of peers not enrolled with that commit yet, in the order received.
    pending: VecDeque<(Envelope, Enroll)>,
    /// The latest verified reveal per peer: `(commit, i, v(i))`.
    reveals: BTreeMap<PeerId, (Hash32, u64, Hash32)>,
    /// The chain head the roster was last looked at.
    seen_head: Option<Hash32>,
    /// The own enrollment last reported (`(slot, commit)`).
    reported: Option<(u64, Hash32)>,
    /// When the own Enroll was last published, and in which slot.
    published: Option<(u64, Option<u64>)>,
}

/// What `/status` and `chorus status` show of enrollment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentView {
    /// The ticket rule (fair unless the simulator runs version 1).
    pub tickets: Tickets,
    /// The slot the own commit was enrolled at, if it is.
    pub enrolled_at: Option<u64>,
    /// The first slot the node may propose for, if enrolled.
    pub eligible_from: Option<u64>,
    /// Whether the chain enrolls this node with a commit other than its own (a lost seed): it
    /// is re-enrolling.
    pub reenrolling: bool,
    /// Enrolls of others waiting to be carried by a winning proposal.
    pub pending: usize,
    /// Peers enrolled on the chain.
    pub roster: usize,
}

impl Consensus {
    /// Command: the own hash chain (from the seed in the data directory). The node enrolls
    /// it: its Enroll (written at network time `now`) goes out with the next periodic Status,
    /// and again every [`ENROLL_REPUBLISH_MS`] until the chain enrolls the commit, and its proposals reveal the chain's values. Without one,
    /// a node under fair tickets never proposes.
    pub fn set_hash_chain(&mut self, hash_chain: HashChain, now: u64) {
        let enroll = Enroll {
            network_id: *self.chain.network_id(),
            from: self.me,
            commit: hash_chain.commit(),
            len: hash_chain.len(),
            created_ms: now,
        };
        let envelope = Envelope::seal(&enroll, &self.keypair)
            .expect("invariant: the body is from our own key");
        self.enrolling.own = Some((envelope, enroll));
        self.enrolling.hash_chain = Some(hash_chain);
        self.enrolling.published = None;
        // Already enrolled with this commit (a restart, the genesis creator): the start says
        // so; `Action::Enrolled` is for a new enrollment.
        self.enrolling.reported = self
            .own_enrollment()
            .zip(self.chain.enrollment(&self.me))
            .map(|((slot, _), e)| (slot, e.commit));
        self.after_chain_change();
    }

    /// Query: the own enrollment and the roster.
    pub fn enrollment(&self) -> EnrollmentView {
        let own = self.own_enrollment();
        let enrolled = self.chain.enrollment(&self.me);
        EnrollmentView {
            tickets: self.chain.tickets(),
            enrolled_at: own.map(|(slot, _)| slot),
            eligible_from: own.map(|(_, from)| from),
            reenrolling: enrolled.is_some() && own.is_none(),
            pending: self.enrolling.pending.len(),
            roster: self.chain.roster().len(),
        }
    }

    /// `(e, e + enroll_delay)` when the chain enrolls the own commit.
    fn own_enrollment(&self) -> Option<(u64, u64)> {
        let (_, own) = self.enrolling.own.as_ref()?;
        let enrolled = self.chain.enrollment(&self.me)?;
        (enrolled.commit == own.commit).then(|| {
            (
                enrolled.slot,
                enrolled.eligible_from(self.chain.rules().enroll_delay),
            )
        })
    }

    /// The value the own proposal for `slot` reveals: None when not enrolled with the own
    /// commit (or the chain is spent).
    pub(super) fn own_reveal(&self, slot: u64) -> Option<Hash32> {
        let (enrolled_at, _) = self.own_enrollment()?;
        let index = slot.checked_sub(enrolled_at)?;
        self.enrolling.hash_chain.as_ref()?.value(index)
    }

    /// The Enroll envelopes the own proposal carries: the oldest pending, at most
    /// `rules.enroll_per_slot`.
    pub(super) fn enrolls_to_carry(&self) -> Vec<Envelope> {
        if self.chain.tickets() == Tickets::Open {
            return Vec::new();
        }
        let max = usize::try_from(self.chain.rules().enroll_per_slot).unwrap_or(usize::MAX);
        self.enrolling
            .pending
            .iter()
            .take(max)
            .map(|(envelope, _)| envelope.clone())
            .collect()
    }

    /// Whether an Enroll would change the roster: its author is not enrolled, or enrolled with
    /// another commit from an earlier Enroll.
    fn enrolls_anew(&self, enroll: &Enroll) -> bool {
        self.chain
            .enrollment(&enroll.from)
            .is_none_or(|known| enrolls_again(known, enroll))
    }

    /// Input: an Enroll from gossip (its envelope verified, of this network).
    pub(super) fn on_enroll(&mut self, enroll: Enroll, envelope: Envelope) -> Validation {
        if self.chain.tickets() == Tickets::Open
            || enroll.from == self.me
            || !self.enrolls_anew(&enroll)
        {
            return Validation::Ignore;
        }
        let pending = &mut self.enrolling.pending;
        if let Some(held) = pending.iter_mut().find(|(_, e)| e.from == enroll.from) {
            // A later Enroll of the same peer replaces its earlier one in place.
            if enroll.created_ms > held.1.created_ms {
                *held = (envelope, enroll);
                return Validation::Accept;
            }
            return Validation::Ignore;
        }
        if pending.len() >= PENDING_ENROLLS_MAX {
            return Validation::Ignore;
        }
        pending.push_back((envelope, enroll));
        Validation::Accept
    }

    /// With a periodic Status: the own Enroll, while the chain does not enroll its commit, at
    /// most every [`ENROLL_REPUBLISH_MS`] and once per slot.
    pub(super) fn enroll_tick(&mut self, now: u64) {
        if self.chain.tickets() == Tickets::Open || self.own_enrollment().is_some() {
            return;
        }
        let slot = self.chain.slot_at(now);
        if self.enrolling.published.is_some_and(|(t, s)| {
            now < t.saturating_add(ENROLL_REPUBLISH_MS) || (s.is_some() && s == slot)
        }) {
            return;
        }
        self.enrolling.published = Some((now, slot));
        let Some((_, own)) = self.enrolling.own.as_mut() else {
            return;
        };
        // Written anew each time: the same bytes again would be a duplicate to gossip (dropped
        // by the publisher and by every peer that saw them), never reaching a peer that joined
        // since. A later `created_ms` with the same commit changes no enrollment.
        own.created_ms = own.created_ms.max(now);
        let envelope =
            Envelope::seal(&*own, &self.keypair).expect("invariant: the body is from our own key");
        if let Some(held) = self.enrolling.own.as_mut() {
            held.0 = envelope.clone();
        }
        self.actions.push_back(Action::Publish {
            topic: Topic::Status,
            envelope,
        });
    }

    /// After the chain changed: drops the Enrolls it carried, and reports the own enrollment
    /// once per enrollment.
    pub(super) fn after_chain_change(&mut self) {
        let head = self.chain.head().chain_hash;
        if self.enrolling.seen_head == Some(head) {
            return;
        }
        self.enrolling.seen_head = Some(head);
        let pending = std::mem::take(&mut self.enrolling.pending);
        self.enrolling.pending = pending
            .into_iter()
            .filter(|(_, e)| self.enrolls_anew(e))
            .collect();
        let roster = self.chain.roster();
        self.enrolling
            .reveals
            .retain(|peer, (commit, _, _)| roster.get(peer).is_some_and(|e| e.commit == *commit));
        if let Some((slot, eligible_from)) = self.own_enrollment() {
            let commit = self.chain.enrollment(&self.me).map(|e| e.commit);
            if let Some(commit) = commit
                && self.enrolling.reported != Some((slot, commit))
            {
                self.enrolling.reported = Some((slot, commit));
                self.actions.push_back(Action::Enrolled {
                    slot,
                    eligible_from,
                    roster: self.chain.roster().len(),
                });
            }
        }
    }

    /// The latest reveal of `peer` verified by this node.
    pub(super) fn cached_reveal(&self, peer: &PeerId) -> Option<(Hash32, u64, Hash32)> {
        self.enrolling.reveals.get(peer).copied()
    }

    /// Remembers a verified reveal `v(index)` of `peer`.
    pub(super) fn cache_reveal(&mut self, peer: PeerId, index: u64, value: Hash32) {
        if let Some(enrolled) = self.chain.enrollment(&peer) {
            let commit = enrolled.commit;
            let newer = self
                .enrolling
                .reveals
                .get(&peer)
                .is_none_or(|(c, i, _)| *c != commit || *i < index);
            if newer {
                self.enrolling.reveals.insert(peer, (commit, index, value));
            }
        }
    }
}

#[cfg(test)]
mod tests;
