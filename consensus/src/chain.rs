//! The chain: the genesis slots and the decided slots after them, their chain hashes and the
//! schedule `start(k)` they fix (PROTOCOL.md 1 and 11), and the verification of decided slots
//! received from peers (PROTOCOL.md 12.1).
//!
//! Files: `hash` (chain hashes), `verify` (the checks of a synced slot), `error` (`ChainError`).

mod error;
mod hash;
mod roster;
mod verify;

pub use error::ChainError;
pub use hash::{CHAIN_DOMAIN, genesis_chain_hash, next_chain_hash};
pub use roster::{Enrollment, Tickets, enrolls_again};
pub use verify::same_track;

use libp2p_identity::PeerId;
use serde::{Deserialize, Serialize};

use crate::codec::peer_id_list;
use crate::envelope::Envelope;
use crate::genesis::SignedGenesis;
use crate::hash::Hash32;
use crate::limits::CHAIN_RESPONSE_SLOTS;
use crate::message::Head;
use crate::rules::Rules;
use crate::track::TrackRef;

/// One decided slot (k >= L), as kept and as served by `/chorus/sync/1 Chain{from_slot}`.
///
/// Since protocol 1.1 (PROTOCOL.md 12.1) a slot won by a proposal carries that proposal's
/// signed envelope, so that a receiver can check the TrackRef, which the chain hash does not
/// cover, against what the proposer signed ([`Chain::push_synced`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecidedSlot {
    /// The slot k.
    pub slot: u64,
    /// The winner.
    pub track: TrackRef,
    /// The winning proposal's id; null for a replay.
    pub proposal_id: Option<Hash32>,
    /// The winning proposal's ticket; null for a replay.
    pub ticket: Option<u64>,
    /// Proposers that equivocated for this slot.
    #[serde(with = "peer_id_list")]
    pub equivocators: Vec<PeerId>,
    /// `chain_hash(k)`.
    pub chain_hash: Hash32,
    /// The winning proposal's signed envelope (its id is `proposal_id`); null for a replay.
    /// A record written before protocol 1.1 has none (the key is absent) and is refused by
    /// [`Chain::push_synced`] when it names a proposal.
    #[serde(default)]
    pub proposal: Option<Envelope>,
}

impl DecidedSlot {
    /// The author of the winning proposal (None for a replay), read from its envelope without
    /// checking the signature again: a slot of a [`Chain`] was verified when it was appended
    /// (the machine's own finality holds only verified proposals; [`Chain::push_synced`] checks
    /// the envelope, and that its signer is the proposal's `from`).
    pub fn proposer(&self) -> Option<PeerId> {
        self.proposal.as_ref().and_then(Envelope::signer)
    }
}

/// What a decision appends to the chain (its hash is computed on append).
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The winner.
    pub track: TrackRef,
    /// The winning proposal's id and ticket; None for a replay.
    pub proposal: Option<(Hash32, u64)>,
    /// The winning proposal's signed envelope (None for a replay). [`Chain::push`] trusts it;
    /// a chain whose records lack it cannot be served to joiners that verify (12.1).
    pub envelope: Option<Envelope>,
    /// Proposers that equivocated for this slot.
    pub equivocators: Vec<PeerId>,
}

/// The chain of one network: genesis slots `0 .. L-1` and decided slots `L ..`.
///
/// It also caches `start(k)` for every slot up to the first undecided one.
#[derive(Debug, Clone, PartialEq)]
pub struct Chain {
    network_id: Hash32,
    rules: Rules,
    rules_hash: Hash32,
    queue: Vec<TrackRef>,
    decided: Vec<DecidedSlot>,
    /// `starts[k] = start(k)` for `k in 0 ..= len()`.
    starts: Vec<u64>,
    /// 12.3: the ticket rule, and the roster and beacon of the records.
    fairness: roster::Fairness,
}

impl Chain {
    /// The chain of a verified genesis: its L queued slots, nothing decided, fair tickets
    /// (12.3) with the genesis creator enrolled at slot 0.
    pub fn new(genesis: &SignedGenesis) -> Chain {
        let mut chain = Chain::from_parts(
            genesis.network_id(),
            genesis.rules().clone(),
            genesis.rules_hash(),
            genesis.genesis().start_ms,
            genesis.genesis().queue.clone(),
        );
        let creator = genesis
            .genesis()
            .enroll
            .map(|enroll| (genesis.genesis().created_by, enroll));
        chain.fairness = roster::Fairness::new(Tickets::Fair, &chain.network_id, creator);
        chain
    }

    /// A chain from its parts (the genesis's network id, rules, start and queue), under
    /// version 1's open tickets ([`Tickets::Open`]; no genesis enrollment to start a roster).
    pub fn from_parts(
        network_id: Hash32,
        rules: Rules,
        rules_hash: Hash32,
        start_ms: u64,
        queue: Vec<TrackRef>,
    ) -> Chain {
        let mut chain = Chain {
            network_id,
            rules,
            rules_hash,
            queue: Vec::new(),
            decided: Vec::new(),
            starts: vec![start_ms],
            fairness: roster::Fairness::new(Tickets::Open, &network_id, None),
        };
        for track in queue {
            chain.extend_schedule(&track);
            chain.queue.push(track);
        }
        chain
    }

    fn extend_schedule(&mut self, track: &TrackRef) {
        let last = *self
            .starts
            .last()
            .expect("invariant: starts always holds start(0)");
        self.starts.push(
            last.saturating_add(track.duration_ms)
                .saturating_add(self.rules.gap_ms),
        );
    }

    /// The network id.
    pub fn network_id(&self) -> &Hash32 {
        &self.network_id
    }

    /// The rules.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// The rules hash.
    pub fn rules_hash(&self) -> &Hash32 {
        &self.rules_hash
    }

    /// L, the number of genesis slots (the first slot decided by consensus).
    pub fn lookahead(&self) -> u64 {
        self.queue.len() as u64
    }

    /// The number of slots whose winner is known (genesis slots included): the next slot to
    /// decide.
    pub fn len(&self) -> u64 {
        (self.queue.len() + self.decided.len()) as u64
    }

    /// Whether no slot at all is known (a genesis always has L slots, so never for a real chain).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The winner of `slot`, if known.
    pub fn winner(&self, slot: u64) -> Option<&TrackRef> {
        let index = usize::try_from(slot).ok()?;
        match index.checked_sub(self.queue.len()) {
            None => self.queue.get(index),
            Some(decided) => self.decided.get(decided).map(|d| &d.track),
        }
    }

    /// The decided slot `slot` (None for genesis slots and undecided ones).
    pub fn decided(&self, slot: u64) -> Option<&DecidedSlot> {
        let index = usize::try_from(slot.checked_sub(self.lookahead())?).ok()?;
        self.decided.get(index)
    }

    /// Every decided slot, in order.
    pub fn decided_slots(&self) -> &[DecidedSlot] {
        &self.decided
    }

    /// The decided slots from `from_slot` on, in order: all of them when `from_slot` is a
    /// genesis slot, none when it is past the last decided one.
    pub fn decided_from(&self, from_slot: u64) -> &[DecidedSlot] {
        let skip =
            usize::try_from(from_slot.saturating_sub(self.lookahead())).unwrap_or(usize::MAX);
        self.decided.get(skip..).unwrap_or_default()
    }

    /// The author of the proposal that won `slot` (None for a replay, a genesis slot or an
    /// undecided one); see [`DecidedSlot::proposer`].
    pub fn proposer(&self, slot: u64) -> Option<PeerId> {
        self.decided(slot).and_then(DecidedSlot::proposer)
    }

    /// `chain_hash(slot)` for `slot >= L-1`, if known.
    pub fn chain_hash(&self, slot: u64) -> Option<Hash32> {
        if slot.checked_add(1) == Some(self.lookahead()) {
            return Some(genesis_chain_hash(&self.network_id));
        }
        self.decided(slot).map(|d| d.chain_hash)
    }

    /// The last known slot and its chain hash (slot L-1 and the genesis hash before any decision).
    pub fn head(&self) -> Head {
        let slot = self.len().saturating_sub(1);
        Head {
            slot,
            chain_hash: self
                .chain_hash(slot)
                .unwrap_or_else(|| genesis_chain_hash(&self.network_id)),
        }
    }

    /// `start(k)`: known for every slot up to the first undecided one (`k <= len()`).
    pub fn start(&self, slot: u64) -> Option<u64> {
        self.starts.get(usize::try_from(slot).ok()?).copied()
    }

    /// The slot playing at network time `now_ms` (`start(s) <= now < start(s+1)`), if the chain
    /// reaches that far.
    pub fn slot_at(&self, now_ms: u64) -> Option<u64> {
        let after = self.starts.partition_point(|start| *start <= now_ms);
        // `after` counts the starts at or before now; the slot is the last of them, and it must
        // have a known end.
        let slot = after.checked_sub(1)?;
        if slot + 1 >= self.starts.len() {
            return None;
        }
        u64::try_from(slot).ok()
    }

    /// Appends the decision of slot `len()` and returns it with its chain hash.
    pub fn push(&mut self, outcome: Outcome) -> &DecidedSlot {
        let slot = self.len();
        let previous = self.head().chain_hash;
        let chain_hash = next_chain_hash(
            &previous,
            slot,
            &outcome.track.track_hash,
            outcome.proposal.as_ref().map(|(id, _)| id),
        );
        self.extend_schedule(&outcome.track);
        self.fairness.apply(slot, outcome.envelope.as_ref());
        self.decided.push(DecidedSlot {
            slot,
            track: outcome.track,
            proposal_id: outcome.proposal.map(|(id, _)| id),
            ticket: outcome.proposal.map(|(_, ticket)| ticket),
            equivocators: outcome.equivocators,
            chain_hash,
            proposal: outcome.envelope,
        });
        self.decided
            .last()
            .expect("invariant: a slot was just pushed")
    }

    /// Appends a slot received from a peer (a `Chain{from_slot}` answer, or the node's own
    /// chain file), after every check of [`Chain::verify_synced`]. On an error the chain is
    /// unchanged.
    pub fn push_synced(&mut self, slot: DecidedSlot) -> Result<(), ChainError> {
        self.verify_synced(&slot)?;
        let proposal = slot.proposal_id.zip(slot.ticket);
        self.push(Outcome {
            track: slot.track,
            proposal,
            envelope: slot.proposal,
            equivocators: slot.equivocators,
        });
        Ok(())
    }

    /// Appends a whole `Chain{from_slot}` answer, all or nothing (PROTOCOL.md 12.1): at most
    /// [`CHAIN_RESPONSE_SLOTS`] slots, starting at `len()`, each verified as
    /// [`Chain::push_synced`] does, none that cannot be final yet at network time `now_ms`
    /// (see [`Chain::final_by`]). Returns how many slots were appended; on an error the chain
    /// is as before and the error names the first slot refused and the check it failed.
    pub fn extend_synced(
        &mut self,
        slots: Vec<DecidedSlot>,
        now_ms: u64,
    ) -> Result<usize, ChainError> {
        if slots.len() > CHAIN_RESPONSE_SLOTS {
            return Err(ChainError::TooMany {
                got: slots.len(),
                max: CHAIN_RESPONSE_SLOTS,
            });
        }
        let len = self.len();
        let count = slots.len();
        for slot in slots {
            let checked = self
                .final_by(slot.slot, now_ms)
                .and_then(|()| self.push_synced(slot));
            if let Err(e) = checked {
                self.truncate(len);
                return Err(e);
            }
        }
        Ok(count)
    }

    /// Whether slot `slot`, the next one (`len()`), may be final at network time `now_ms`: it
    /// is final at `start(slot - 3)` (PROTOCOL.md 1), and a record is refused
    /// ([`ChainError::Ahead`]) only when even `start(slot - L)` lies after `now_ms`, which leaves
    /// two slots (at least 10 s) of slack for clock differences. A slot that is not next is
    /// left to the other checks.
    pub fn final_by(&self, slot: u64, now_ms: u64) -> Result<(), ChainError> {
        if slot != self.len() {
            return Ok(());
        }
        let from = slot.saturating_sub(self.lookahead());
        match self.start(from) {
            Some(earliest_ms) if earliest_ms > now_ms => Err(ChainError::Ahead {
                slot,
                earliest_ms,
                now_ms,
            }),
            _ => Ok(()),
        }
    }

    /// The track the next slot (`len()`) replays when no proposal wins it (PROTOCOL.md 4.3):
    /// the replay choice among the earlier winners, as the TrackRef of its latest win. None if
    /// the chain cannot tell (it has no slot at all).
    pub fn replay_track(&self) -> Option<&TrackRef> {
        let slot = self.len();
        let choice = crate::select::replay_winner(self, slot)?;
        (0..slot).rev().find_map(|j| {
            self.winner(j)
                .filter(|track| track.track_hash == choice.winner)
        })
    }

    /// Drops every decided slot from `from_slot` on (fork adoption, PROTOCOL.md 9). Genesis
    /// slots are never dropped.
    pub fn truncate(&mut self, from_slot: u64) {
        let keep = from_slot.max(self.lookahead());
        let keep_decided = usize::try_from(keep - self.lookahead()).unwrap_or(usize::MAX);
        if keep_decided < self.decided.len() {
            self.decided.truncate(keep_decided);
            self.fairness.rebuild(&self.network_id, &self.decided);
        }
        let known = self.queue.len() + self.decided.len();
        self.starts.truncate(known + 1);
    }
}

#[cfg(test)]
mod tests;
