//! Fetching announced proposals (PROTOCOL.md 4.3): the first request to the announcer, and a
//! retry, to another announcer or the same one, when no answer came in time.

use std::collections::{BTreeMap, BTreeSet};

use libp2p_identity::PeerId;

use super::slot::Request;
use super::{Action, Consensus};
use crate::hash::Hash32;

/// How long a `FetchProposals` may go unanswered before the ids are asked for again, ms.
pub const FETCH_TIMEOUT_MS: u64 = 2_000;
/// How many times one proposal id is asked for at most.
pub const FETCH_TRIES_MAX: u32 = 4;

impl Consensus {
    /// Asks `peer` for announced proposals that beat this node's best and that it lacks.
    pub(super) fn request_missing(
        &mut self,
        now: u64,
        peer: PeerId,
        slot: u64,
        announced: &[(u64, Hash32)],
    ) {
        let chain = &self.chain;
        let state = self.slots.entry(slot).or_default();
        let best = state.ranked(chain, slot).first().map(|(_, h)| h.ticket);
        let mut ids = Vec::new();
        for (ticket, id) in announced {
            if best.is_some_and(|b| *ticket >= b) || state.proposals.contains_key(id) {
                continue;
            }
            if let Some(request) = state.requests.get_mut(id) {
                request.announcers.insert(peer);
                continue;
            }
            state.requests.insert(
                *id,
                Request {
                    announcers: BTreeSet::from([peer]),
                    asked: BTreeSet::from([peer]),
                    peer,
                    tries: 1,
                    due_ms: Some(now.saturating_add(FETCH_TIMEOUT_MS)),
                },
            );
            ids.push(*id);
        }
        if !ids.is_empty() {
            self.actions
                .push_back(Action::FetchProposals { peer, slot, ids });
        }
    }

    /// Marks a requested id as answered (it arrived, admissible or not).
    pub(super) fn answered(&mut self, slot: u64, id: &Hash32) {
        if let Some(request) = self
            .slots
            .get_mut(&slot)
            .and_then(|s| s.requests.get_mut(id))
        {
            request.due_ms = None;
        }
    }

    /// When the next unanswered request is due for a retry.
    pub(super) fn next_fetch_retry(&self) -> Option<u64> {
        self.slots
            .values()
            .flat_map(|s| s.requests.values())
            .filter_map(|r| r.due_ms)
            .min()
    }

    /// Asks again for the ids whose request went unanswered: an announcer not yet asked
    /// (smallest PeerId first), else the last one again, up to [`FETCH_TRIES_MAX`] times.
    pub(super) fn retry_fetches(&mut self, now: u64) {
        let mut again: BTreeMap<(u64, PeerId), Vec<Hash32>> = BTreeMap::new();
        for (slot, state) in &mut self.slots {
            for (id, request) in &mut state.requests {
                if request.due_ms.is_none_or(|due| due > now) {
                    continue;
                }
                if state.proposals.contains_key(id) || request.tries >= FETCH_TRIES_MAX {
                    request.due_ms = None;
                    continue;
                }
                let next = request
                    .announcers
                    .iter()
                    .find(|p| !request.asked.contains(p))
                    .copied()
                    .unwrap_or(request.peer);
                request.asked.insert(next);
                request.peer = next;
                request.tries += 1;
                request.due_ms = Some(now.saturating_add(FETCH_TIMEOUT_MS));
                again.entry((*slot, next)).or_default().push(*id);
            }
        }
        for ((slot, peer), ids) in again {
            self.actions
                .push_back(Action::FetchProposals { peer, slot, ids });
        }
    }
}

#[cfg(test)]
mod tests;
