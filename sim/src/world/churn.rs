//! Churn: crashes (with a restart from the persisted chain), leaves and joins, and the chain sync
//! a node runs before its machine starts.
//!
//! RATE (`cfg.churn`) is the expected number of churn events per node per slot. At the start of
//! every slot `s` with `2 <= s <= slots - 2` (by node 0's chain), each running honest node but
//! node 0 crashes with probability RATE/2 (and restarts 1 to 2 slots later) or leaves for good
//! with probability RATE/4, and for each of the configured nodes a new node joins with
//! probability RATE/4. A crash or leave that would leave fewer than half of the configured nodes
//! running is skipped.

use chorus_consensus::limits::CHAIN_RESPONSE_SLOTS;
use chorus_consensus::machine::SYNC_TIMEOUT_MS;
use chorus_consensus::{ChainError, DecidedSlot};

use super::node::NodeState;
use super::{Event, World, random_key};

/// A crashed node stays down for this many slots at least, and at most one more.
const DOWN_SLOTS_MIN: u64 = 1;

impl World {
    /// The churn draws at the start of slot `s`.
    pub(super) fn churn(&mut self, s: u64) {
        let rate = self.cfg.churn;
        if rate <= 0.0 || s < 2 || s + 2 > self.cfg.slots {
            return;
        }
        let floor = self.cfg.nodes.div_ceil(2);
        for i in 1..self.nodes.len() {
            if !self.nodes[i].live_honest() {
                continue;
            }
            let u = self.churn_rng.f64();
            let running = self.nodes.iter().filter(|n| n.machine().is_some()).count();
            if u < rate / 2.0 && running > floor {
                self.crash(i);
            } else if u < rate * 0.75 && running > floor {
                self.leave(i);
            }
        }
        for _ in 0..self.cfg.nodes {
            if self.churn_rng.chance(rate / 4.0) {
                self.join();
            }
        }
    }

    /// Mean slot length, ms (for down times).
    pub(super) fn mean_slot_ms(&self) -> u64 {
        (self.cfg.track_ms.min_ms + self.cfg.track_ms.max_ms) / 2 + self.rules.gap_ms
    }

    fn crash(&mut self, i: usize) {
        let NodeState::Live(m) = std::mem::replace(&mut self.nodes[i].state, NodeState::Left)
        else {
            return;
        };
        let persisted = m.chain().clone();
        self.nodes[i].state = NodeState::Down { persisted };
        self.nodes[i].inc += 1;
        self.nodes[i].timer = None;
        self.obs.churn.crashes += 1;
        let slot = self.mean_slot_ms();
        let down = DOWN_SLOTS_MIN * slot + self.churn_rng.below(slot + 1);
        self.push(self.now + down, Event::Restart { node: i });
    }

    fn leave(&mut self, i: usize) {
        self.nodes[i].state = NodeState::Left;
        self.nodes[i].inc += 1;
        self.nodes[i].timer = None;
        self.obs.churn.leaves += 1;
        self.check_done = true;
    }

    fn join(&mut self) {
        let key = random_key(&mut self.key_rng);
        let mesh_pos = self.churn_rng.below(self.cfg.nodes as u64) as usize;
        let node = self.new_node(key, mesh_pos, None);
        let i = self.add_node(node);
        self.nodes[i].state = NodeState::Syncing {
            chain: self.genesis_chain(),
            attempt: 0,
        };
        self.obs.churn.joins += 1;
        self.request_sync(i);
    }

    /// A crashed node comes back: it syncs from its persisted chain, then starts.
    pub(super) fn restart(&mut self, i: usize) {
        let NodeState::Down { persisted } =
            std::mem::replace(&mut self.nodes[i].state, NodeState::Left)
        else {
            return;
        };
        self.nodes[i].state = NodeState::Syncing {
            chain: persisted,
            attempt: 0,
        };
        self.nodes[i].inc += 1;
        self.obs.churn.restarts += 1;
        self.request_sync(i);
    }

    /// Asks a random running node for the chain after the syncing node's head, and arms a
    /// timeout.
    fn request_sync(&mut self, i: usize) {
        let NodeState::Syncing { chain, attempt } = &mut self.nodes[i].state else {
            return;
        };
        *attempt += 1;
        let (from_slot, attempt) = (chain.len(), *attempt);
        let running: Vec<usize> = (0..self.nodes.len())
            .filter(|&j| j != i && self.nodes[j].machine().is_some())
            .collect();
        let server = running[self.churn_rng.below(running.len() as u64) as usize];
        self.traffic.count_request();
        self.request_chain(i, server, from_slot);
        let inc = self.nodes[i].inc;
        self.push(
            self.now + SYNC_TIMEOUT_MS,
            Event::SyncTimeout {
                node: i,
                inc,
                attempt,
            },
        );
    }

    pub(super) fn sync_timeout(&mut self, i: usize, inc: u32, attempt: u32) {
        let current = match &self.nodes[i].state {
            NodeState::Syncing { attempt, .. } => *attempt,
            _ => return,
        };
        if self.nodes[i].inc == inc && current == attempt {
            self.request_sync(i);
        }
    }

    /// A chain answer reached a syncing node: append it; start when it is complete.
    pub(super) fn synced(&mut self, i: usize, _server: usize, slots: Vec<DecidedSlot>) {
        let NodeState::Syncing { chain, .. } = &mut self.nodes[i].state else {
            return;
        };
        let full = slots.len() >= CHAIN_RESPONSE_SLOTS;
        let mut refused = false;
        for d in slots {
            if d.slot < chain.len() {
                continue;
            }
            // Every record is verified (PROTOCOL.md 12.1: the winner's envelope against the
            // TrackRef), as a node's joiner does.
            match chain.push_synced(d) {
                Ok(()) => {}
                Err(e) => {
                    // A chain hash that does not follow: the persisted chain forked off the
                    // server's (a crash on the minority side of a partition). Anything else
                    // breaks a rule of 12.1.
                    if !matches!(e, ChainError::HashMismatch { .. }) {
                        self.traffic.count_violation();
                    }
                    // Drop the last slots and ask again from earlier.
                    let back = chain.len().saturating_sub(32).max(chain.lookahead());
                    chain.truncate(back);
                    refused = true;
                    break;
                }
            }
        }
        if refused || full {
            self.request_sync(i);
            return;
        }
        let NodeState::Syncing { chain, .. } =
            std::mem::replace(&mut self.nodes[i].state, NodeState::Left)
        else {
            return;
        };
        let mut machine = self.start_machine(i, chain);
        machine.start_synced(self.node_time(i));
        self.nodes[i].state = NodeState::Live(Box::new(machine));
        self.nodes[i].inc += 1;
        self.nodes[i].timer = None;
        self.nodes[i].live_since = Some(self.current_slot());
        self.check_done = true;
        self.drain_actions(i);
    }
}
