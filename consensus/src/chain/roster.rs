//! Protocol 1.1's enrollment roster and randomness beacon (PROTOCOL.md 12.3), recomputed from
//! the chain's own records: the genesis enrolls its creator at slot 0, and each winning
//! proposal's envelope carries its author's reveal and the Enrolls it enrolls at its slot. So
//! every node that holds the same chain computes the same roster and the same beacon, and a
//! joiner gets both from `Chain{from_slot}`.

use std::collections::BTreeMap;

use libp2p_identity::PeerId;

use super::Chain;
use crate::beacon::{beacon_genesis, beacon_next};
use crate::codec;
use crate::envelope::Envelope;
use crate::genesis::GenesisEnroll;
use crate::hash::Hash32;
use crate::message::{Enroll, Proposal};

/// Which ticket rule a chain runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tickets {
    /// Protocol 1.1 (12.3): tickets over the beacon, proposers enrolled `enroll_delay` slots
    /// before, every proposal revealing the next value of its author's hash chain.
    Fair,
    /// Version 1's rule (4.1): tickets from the network id, the slot and the PeerId alone, no
    /// enrollment. Kept for the simulator, to show what 12.3 prevents, and for tests of
    /// selection that do not concern enrollment. A node never runs it.
    Open,
}

/// A peer's enrollment on the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enrollment {
    /// The slot e it was enrolled at (0 for the genesis creator).
    pub slot: u64,
    /// `v(0)` of its chain.
    pub commit: Hash32,
    /// Its chain's length.
    pub len: u64,
    /// `created_ms` of the Enroll (0 for the genesis creator's).
    pub created_ms: u64,
    /// The latest value of its chain known on the chain: `(i, v(i))`, its last winning reveal,
    /// else `(0, commit)`.
    pub latest: (u64, Hash32),
}

impl Enrollment {
    fn new(slot: u64, commit: Hash32, len: u64, created_ms: u64) -> Enrollment {
        Enrollment {
            slot,
            commit,
            len,
            created_ms,
            latest: (0, commit),
        }
    }

    /// The first slot it may propose for: `e + enroll_delay`.
    pub fn eligible_from(&self, enroll_delay: u64) -> u64 {
        self.slot.saturating_add(enroll_delay)
    }

    /// The index of the value its proposal for `slot` reveals: `k - e` (None before e, or
    /// past the end of its chain).
    pub fn reveal_index(&self, slot: u64) -> Option<u64> {
        slot.checked_sub(self.slot).filter(|i| *i <= self.len)
    }
}

/// The roster and beacon of a chain, kept beside its records.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Fairness {
    pub(super) tickets: Tickets,
    /// The genesis creator's enrollment, the roster's start.
    creator: Option<(PeerId, GenesisEnroll)>,
    pub(super) roster: BTreeMap<PeerId, Enrollment>,
    /// `beacons[i] = beacon(L - 1 + i)`, for every decided slot and L - 1.
    beacons: Vec<Hash32>,
}

impl Fairness {
    pub(super) fn new(
        tickets: Tickets,
        network_id: &Hash32,
        creator: Option<(PeerId, GenesisEnroll)>,
    ) -> Fairness {
        let mut fairness = Fairness {
            tickets,
            creator,
            roster: BTreeMap::new(),
            beacons: vec![beacon_genesis(network_id)],
        };
        fairness.reset(network_id);
        fairness
    }

    fn reset(&mut self, network_id: &Hash32) {
        self.roster.clear();
        if let Some((peer, enroll)) = &self.creator {
            self.roster
                .insert(*peer, Enrollment::new(0, enroll.commit, enroll.len, 0));
        }
        self.beacons = vec![beacon_genesis(network_id)];
    }

    /// Applies decided slot `slot` (won by `envelope`, None for a replay). The envelope was
    /// verified when the slot was appended: only its body is read here.
    pub(super) fn apply(&mut self, slot: u64, envelope: Option<&Envelope>) {
        let proposal: Option<Proposal> = envelope.and_then(|e| codec::from_cbor(&e.body).ok());
        let reveal = proposal.as_ref().and_then(|p| p.reveal);
        let previous = *self
            .beacons
            .last()
            .expect("invariant: beacons always holds beacon(L - 1)");
        self.beacons
            .push(beacon_next(&previous, slot, reveal.as_ref()));
        let Some(proposal) = proposal else {
            return;
        };
        if let (Some(value), Some(enrolled)) = (reveal, self.roster.get_mut(&proposal.from))
            && let Some(index) = enrolled.reveal_index(slot)
        {
            enrolled.latest = (index, value);
        }
        for enroll in proposal
            .enrolls
            .iter()
            .filter_map(|e| codec::from_cbor::<Enroll>(&e.body).ok())
        {
            self.enroll(slot, &enroll);
        }
    }

    /// Enrolls `enroll.from` at `slot`, unless it is enrolled with this commit already, or
    /// with another from a later (or the same) `created_ms`.
    fn enroll(&mut self, slot: u64, enroll: &Enroll) {
        let fresh = Enrollment::new(slot, enroll.commit, enroll.len, enroll.created_ms);
        match self.roster.get_mut(&enroll.from) {
            None => {
                self.roster.insert(enroll.from, fresh);
            }
            Some(known) if enrolls_again(known, enroll) => *known = fresh,
            Some(_) => {}
        }
    }

    /// Recomputes everything from the genesis and `decided` (after a truncation).
    pub(super) fn rebuild(&mut self, network_id: &Hash32, decided: &[super::DecidedSlot]) {
        self.reset(network_id);
        for slot in decided {
            self.apply(slot.slot, slot.proposal.as_ref());
        }
    }

    pub(super) fn beacon(&self, slot: u64, lookahead: u64) -> Option<Hash32> {
        let index = slot.checked_add(1)?.checked_sub(lookahead)?;
        self.beacons.get(usize::try_from(index).ok()?).copied()
    }
}

/// Whether `enroll` would (re-)enroll a peer enrolled as `known`: another commit, written
/// later than the one enrolled.
pub fn enrolls_again(known: &Enrollment, enroll: &Enroll) -> bool {
    known.commit != enroll.commit && enroll.created_ms > known.created_ms
}

impl Chain {
    /// The ticket rule this chain runs.
    pub fn tickets(&self) -> Tickets {
        self.fairness.tickets
    }

    /// The same chain under another ticket rule (the simulator's protocol switch, and tests of
    /// selection that run version 1's rule).
    #[must_use]
    pub fn with_tickets(mut self, tickets: Tickets) -> Chain {
        self.fairness.tickets = tickets;
        self
    }

    /// `beacon(slot)` for `slot >= L - 1`, if the chain reaches it.
    pub fn beacon(&self, slot: u64) -> Option<Hash32> {
        self.fairness.beacon(slot, self.lookahead())
    }

    /// The enrollment of `peer`, if it is enrolled.
    pub fn enrollment(&self, peer: &PeerId) -> Option<&Enrollment> {
        self.fairness.roster.get(peer)
    }

    /// Every enrolled peer.
    pub fn roster(&self) -> &BTreeMap<PeerId, Enrollment> {
        &self.fairness.roster
    }
}
