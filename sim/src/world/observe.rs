//! What the world records for the report: who published which proposal, who could propose in
//! each slot, churn counts, and when the nodes shared one chain again after each partition.

use std::collections::{BTreeMap, BTreeSet};

use chorus_consensus::{Chain, DecidedSlot, Hash32, Tickets};
use serde::Serialize;

use super::World;
use crate::adversary::AdversaryKind;

/// Churn events that happened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ChurnCounts {
    /// Nodes that crashed.
    pub crashes: u64,
    /// Crashed nodes that started again (syncing from their persisted chain).
    pub restarts: u64,
    /// Nodes that left for good.
    pub leaves: u64,
    /// New nodes that joined.
    pub joins: u64,
}

/// Who could propose for one slot: running when its proposal window opened, started before the
/// slot playing then (so that its `plays` name the winner of k-5) and, under protocol 1.1's fair
/// tickets, enrolled on the reference chain at least `enroll_delay` slots before (PROTOCOL.md
/// 12.3).
#[derive(Clone, Debug, Default)]
pub struct Eligible {
    /// Honest node indices.
    pub honest: Vec<usize>,
    /// Adversary identities.
    pub adversaries: usize,
    /// Grinders among them.
    pub grinders: usize,
}

/// The record kept during a run.
#[derive(Debug)]
pub struct Observer {
    /// Proposal id -> the node that published it.
    pub proposers: BTreeMap<Hash32, usize>,
    /// Slot -> who could propose for it.
    pub eligible: BTreeMap<u64, Eligible>,
    /// Churn events.
    pub churn: ChurnCounts,
    /// Per partition: slots from its repair until all running honest nodes shared one chain
    /// (None: not within the run).
    pub heal_slots: Vec<Option<u64>>,
    /// The node indices that are adversaries, with their kind's name.
    pub adversaries: BTreeMap<usize, &'static str>,
    /// Slot -> the distinct outcomes (proposal id, track) honest nodes appended at finality or
    /// when following (not those of adopted forks).
    pub outcomes: BTreeMap<u64, BTreeSet<(Option<Hash32>, Hash32)>>,
    /// Slots whose winner, a track of a withholding adversary, no honest node could fetch
    /// (each such node reported it `unavailable`, or nothing played in version 1).
    pub withheld: BTreeSet<u64>,
    /// Slots a grinder proposed for with a fresh identity of a winning ticket.
    pub targeted: BTreeSet<u64>,
    /// Ids of those proposals.
    pub ground: BTreeSet<Hash32>,
    /// Slots for which a grinder withheld its winning proposal.
    pub silent: BTreeSet<u64>,
    /// The last slot start seen.
    ticked: Option<u64>,
}

impl Observer {
    pub(super) fn new(partitions: usize) -> Self {
        Observer {
            proposers: BTreeMap::new(),
            eligible: BTreeMap::new(),
            churn: ChurnCounts::default(),
            heal_slots: vec![None; partitions],
            adversaries: BTreeMap::new(),
            outcomes: BTreeMap::new(),
            withheld: BTreeSet::new(),
            targeted: BTreeSet::new(),
            ground: BTreeSet::new(),
            silent: BTreeSet::new(),
            ticked: None,
        }
    }

    pub(super) fn decided(&mut self, d: &DecidedSlot) {
        self.outcomes
            .entry(d.slot)
            .or_default()
            .insert((d.proposal_id, d.track.track_hash));
    }

    pub(super) fn proposer(&mut self, id: Hash32, node: usize) {
        self.proposers.entry(id).or_insert(node);
    }
}

impl World {
    /// Called after node 0's timers: runs the per-slot work for every slot that started since.
    pub(super) fn slot_ticks(&mut self) {
        let Some(slot) = self.nodes[0]
            .machine()
            .and_then(|m| m.chain().slot_at(self.now))
        else {
            return;
        };
        while self.obs.ticked.is_none_or(|t| t < slot) {
            let s = self.obs.ticked.map_or(0, |t| t + 1);
            self.obs.ticked = Some(s);
            self.on_slot(s);
        }
    }

    fn on_slot(&mut self, s: u64) {
        self.withheld_winner(s);
        self.record_eligible(s);
        self.grind_fresh(s + self.rules.lookahead);
        self.check_heal(s);
        self.churn(s);
        for i in 0..self.nodes.len() {
            self.spam(i);
        }
    }

    /// The proposal window of slot s + L opens now. Enrollments at e count from e +
    /// `enroll_delay` >= s + 3: the reference chain holds them (final up to s + 2).
    fn record_eligible(&mut self, s: u64) {
        let k = s + self.rules.lookahead;
        let delay = self.rules.enroll_delay;
        let fair = self.nodes[0]
            .machine()
            .map(|m| m.chain())
            .filter(|c| c.tickets() == Tickets::Fair);
        let mut e = Eligible::default();
        for (i, n) in self.nodes.iter().enumerate() {
            if let Some(kind) = n.adversary {
                self.obs.adversaries.insert(i, kind.name());
            }
            if n.machine().is_none() || n.live_since.is_some_and(|j| j >= s) {
                continue;
            }
            let enrolled = |c: &Chain| {
                c.enrollment(&n.peer)
                    .is_some_and(|en| en.eligible_from(delay) <= k)
            };
            if fair.is_some_and(|c| !enrolled(c)) {
                continue;
            }
            match n.adversary {
                None => e.honest.push(i),
                Some(kind) => {
                    e.adversaries += 1;
                    e.grinders += usize::from(kind == AdversaryKind::Grinder);
                }
            }
        }
        self.obs.eligible.insert(k, e);
    }

    /// After a repaired partition: do all running honest nodes share one chain (the same hash at
    /// the lowest head among them)?
    fn check_heal(&mut self, s: u64) {
        for (p, heal) in self
            .cfg
            .partitions
            .iter()
            .zip(self.obs.heal_slots.iter_mut())
        {
            let repair = p.at_slot + p.slots;
            if s < repair || heal.is_some() {
                continue;
            }
            let chains: Vec<_> = self
                .nodes
                .iter()
                .filter(|n| n.live_honest())
                .filter_map(|n| n.machine().map(|m| m.chain()))
                .collect();
            let Some(low) = chains.iter().map(|c| c.len()).min() else {
                continue;
            };
            let Some(slot) = low.checked_sub(1) else {
                continue;
            };
            let first = chains[0].chain_hash(slot);
            if chains.iter().all(|c| c.chain_hash(slot) == first) {
                *heal = Some(s - repair);
            }
        }
    }
}
