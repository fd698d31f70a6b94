//! Fetching announced proposals (PROTOCOL.md 4.3): a bounded queue of the ids that beat this
//! node's best, asked for a few at a time, of one announcer at a time, with retries to another
//! announcer (or the same one) when no answer came in time.
//!
//! Announcements are claims of peers that may lie, and identities cost nothing: a flood of
//! Tallies or Decisions naming ids nobody holds, with the lowest tickets, must not become a
//! flood of requests, nor keep the node from fetching a real proposal. Hence
//! (docs/consensus.md, "Hostile decisions and requests"):
//!
//! - at most `rules.backup_proposals + `[`FETCH_EXTRA`] ids of a slot are asked for at once,
//!   chosen by [`Request::priority`]: ids announced by a peer the table vouches for
//!   ([`Consensus::vouched`]) first, then fewer failed tries, then the lowest claimed ticket;
//! - at most one `FetchProposals` is out per announcer (the ids it announced go together);
//! - at most [`FETCH_WAITING_MAX`] ids wait per slot (the worst is forgotten), and at most
//!   [`FETCH_DONE_KEPT`] finished ones are remembered so that they are not asked for again;
//! - an id none of whose tries delivered is given up, and the announcers asked for it become
//!   the slot's suspects: their unbacked Decisions are the first dropped, and what they
//!   announce next is not followed;
//! - an announcement that misstates the ticket of a proposal the node holds is a lie, counted
//!   as a violation of its author like any invalid message.

use std::collections::{BTreeMap, BTreeSet};

use libp2p_identity::PeerId;

use super::peers::PeerState;
use super::slot::{Request, SlotState};
use super::{Action, Consensus, fork};
use crate::hash::Hash32;

/// How long a `FetchProposals` may go unanswered before the ids are asked for again, ms.
pub const FETCH_TIMEOUT_MS: u64 = 2_000;
/// How many times one proposal id is asked for at most (a vouched-for announcer not asked yet
/// may still be asked once after that).
pub const FETCH_TRIES_MAX: u32 = 4;
/// Ids asked for at once per slot beyond `rules.backup_proposals`: room for the proposals that
/// could win and one more.
pub const FETCH_EXTRA: u64 = 2;
/// Ids waiting for their turn per slot; past it the one of worst priority is forgotten.
pub const FETCH_WAITING_MAX: usize = 16;
/// Finished requests remembered per slot (the oldest is forgotten past it).
pub const FETCH_DONE_KEPT: usize = 64;
/// Announcers remembered per id.
pub const ANNOUNCERS_KEPT: usize = 8;
/// Distinct heads (chain lengths) a peer must have reported in its Status before the table
/// vouches for it.
pub const VOUCH_HEADS: usize = 2;

impl Consensus {
    /// Whether the peer table vouches for `peer`: it reported being in sync in its last Status,
    /// heard within the last three status periods (section 9's window), with at least
    /// [`VOUCH_HEADS`] distinct heads kept, the latest of which are on this node's chain, and it
    /// never sent an invalid message. A fresh identity must therefore keep publishing Status
    /// while the chain grows by a slot or more before its announcements rank with the honest
    /// peers'.
    pub(super) fn vouched(&self, now: u64, peer: &PeerId) -> bool {
        let Some(info) = self.peers.get(peer) else {
            return false;
        };
        let since = now.saturating_sub(fork::SUPPORT_PERIODS.saturating_mul(self.status_period()));
        let on_chain = |(slot, status): (u64, &std::sync::Arc<crate::message::Status>)| {
            self.chain
                .chain_hash(slot)
                .is_none_or(|h| h == status.head.chain_hash)
        };
        if info.state != PeerState::InSync
            || info.violations > 0
            || info.last_heard_ms.is_none_or(|t| t < since)
        {
            return false;
        }
        let heads = info.heads.iter().count();
        heads >= VOUCH_HEADS
            && info
                .heads
                .iter()
                .skip(heads.saturating_sub(VOUCH_HEADS))
                .all(on_chain)
    }

    /// Notes what `peer` announced for `slot` (a Tally's best, or a Decision's proposal) and
    /// asks for the announced proposals that beat this node's best and that it lacks, as the
    /// queue allows.
    pub(super) fn request_missing(
        &mut self,
        now: u64,
        peer: PeerId,
        slot: u64,
        announced: &[(u64, Hash32)],
    ) {
        let vouched = self.vouched(now, &peer);
        let chain = &self.chain;
        let state = self.slots.entry(slot).or_default();
        if vouched {
            state.vouch(peer);
        }
        for (ticket, id) in announced {
            if let Some(held) = state.proposals.get(id)
                && held.ticket != *ticket
            {
                let why = format!(
                    "announced proposal {id} for slot {slot} with ticket {ticket}; it has \
                     ticket {}",
                    held.ticket
                );
                state.note_lie(peer, why);
            }
        }
        if !state.suspects.contains(&peer) && !state.liars.contains(&peer) {
            let best = state.ranked(chain, slot).first().map(|(_, h)| h.ticket);
            for (ticket, id) in announced {
                if best.is_some_and(|b| *ticket >= b) || state.proposals.contains_key(id) {
                    continue;
                }
                want(state, *id, *ticket, peer, vouched);
            }
        }
        self.ask_all(now);
        self.report_lies();
    }

    /// Marks a requested id as arrived (admissible or not), and lets the next id in.
    pub(super) fn answered(&mut self, slot: u64, id: &Hash32) {
        let now = self.last_now.unwrap_or(0);
        let Some(request) = self
            .slots
            .get_mut(&slot)
            .and_then(|s| s.requests.get_mut(id))
        else {
            return;
        };
        if request.done_ms.is_some() {
            return;
        }
        request.due_ms = None;
        request.done_ms = Some(now);
        self.ask_all(now);
    }

    /// When `handle_timeout` must run for fetches: the next unanswered request's timeout, or
    /// now if a lie is waiting to be reported.
    pub(super) fn next_fetch_retry(&self) -> Option<u64> {
        if self.slots.values().any(|s| !s.lies.is_empty()) {
            return Some(self.last_now.unwrap_or(0));
        }
        self.slots
            .values()
            .flat_map(|s| s.requests.values())
            .filter_map(|r| r.due_ms)
            .min()
    }

    /// Ends the requests whose time ran out: an id that arrived meanwhile or that has had its
    /// [`FETCH_TRIES_MAX`] tries is done (in the second case its asked announcers become
    /// suspects); the others wait for their next turn. Then asks for the next ids.
    pub(super) fn retry_fetches(&mut self, now: u64) {
        self.report_lies();
        let mut expired = false;
        for state in self.slots.values_mut() {
            let mut failed: Vec<PeerId> = Vec::new();
            for (id, request) in &mut state.requests {
                if request.due_ms.is_none_or(|due| due > now) {
                    continue;
                }
                expired = true;
                request.due_ms = None;
                if state.proposals.contains_key(id) {
                    request.done_ms = Some(now);
                } else if request.tries >= FETCH_TRIES_MAX {
                    request.done_ms = Some(now);
                    failed.extend(request.asked.iter().copied());
                }
            }
            for peer in failed {
                state.suspect(peer);
            }
            forget_done(state);
        }
        if expired {
            self.ask_all(now);
        }
    }

    /// Asks for the waiting ids of every slot in flight, lowest slot first (an announcer is
    /// busy whatever the slot of its request).
    fn ask_all(&mut self, now: u64) {
        let slots: Vec<u64> = self.slots.keys().copied().collect();
        for slot in slots {
            self.ask(now, slot);
        }
    }

    /// Asks for the waiting ids of `slot` in order of priority while fewer than
    /// `backup_proposals + FETCH_EXTRA` are out, each of an announcer with no request out
    /// (one `FetchProposals` per announcer).
    fn ask(&mut self, now: u64, slot: u64) {
        let limit = self
            .chain
            .rules()
            .backup_proposals
            .saturating_add(FETCH_EXTRA);
        let limit = usize::try_from(limit).map_or(FETCH_WAITING_MAX, |l| l.min(FETCH_WAITING_MAX));
        let Some(state) = self.slots.get(&slot) else {
            return;
        };
        let mut out = state
            .requests
            .values()
            .filter(|r| r.due_ms.is_some())
            .count();
        if out >= limit || !state.requests.values().any(Request::waiting) {
            return;
        }
        // Announcers with a request out, in any slot.
        let busy: BTreeSet<PeerId> = self
            .slots
            .values()
            .flat_map(|s| s.requests.values())
            .filter(|r| r.due_ms.is_some())
            .filter_map(|r| r.peer)
            .collect();
        let chain = &self.chain;
        let Some(state) = self.slots.get_mut(&slot) else {
            return;
        };
        let best = state.ranked(chain, slot).first().map(|(_, h)| h.ticket);
        let mut queue: Vec<(bool, u32, u64, Hash32)> = state
            .requests
            .iter()
            .filter(|(_, r)| r.waiting())
            .map(|(id, r)| r.priority(id))
            .collect();
        queue.sort_unstable();
        let mut batches: BTreeMap<PeerId, Vec<Hash32>> = BTreeMap::new();
        for (_, _, _, id) in queue {
            if out >= limit {
                break;
            }
            let held = state.proposals.contains_key(&id);
            let Some(request) = state.requests.get_mut(&id) else {
                continue;
            };
            if held || best.is_some_and(|b| request.ticket >= b) {
                // It arrived, or can no longer beat what is held.
                request.done_ms = Some(now);
                continue;
            }
            let spent = request.tries >= FETCH_TRIES_MAX;
            if spent && request.announcers.iter().all(|p| request.asked.contains(p)) {
                // Its tries are spent and no new announcer can be asked.
                request.done_ms = Some(now);
                continue;
            }
            let pick = pick_announcer(request, &busy, &state.suspects, &state.vouched);
            let Some(peer) = pick.filter(|p| !spent || !request.asked.contains(p)) else {
                // Every announcer it may ask has a request out: it waits.
                continue;
            };
            request.asked.insert(peer);
            request.peer = Some(peer);
            request.tries = request.tries.saturating_add(1);
            request.due_ms = Some(now.saturating_add(FETCH_TIMEOUT_MS));
            batches.entry(peer).or_default().push(id);
            out += 1;
        }
        forget_done(state);
        for (peer, ids) in batches {
            self.actions
                .push_back(Action::FetchProposals { peer, slot, ids });
        }
    }

    /// Reports the lies found in the slots in flight as violations of their authors, as
    /// invalid messages are (`Consensus::refuse`).
    pub(super) fn report_lies(&mut self) {
        let mut lies = Vec::new();
        for state in self.slots.values_mut() {
            lies.append(&mut state.lies);
        }
        for (peer, reason) in lies {
            self.peers.violation(peer);
            self.actions.push_back(Action::Violation { peer, reason });
        }
    }
}

/// Adds `peer`'s announcement of `id` with `ticket` to the slot's queue: a new waiting request,
/// or one more announcer (and maybe a lower claimed ticket) for a known one. An id whose tries
/// are spent comes back only for a vouched-for announcer not asked yet.
fn want(state: &mut SlotState, id: Hash32, ticket: u64, peer: PeerId, vouched: bool) {
    if let Some(request) = state.requests.get_mut(&id) {
        add_announcer(request, peer, vouched, &state.vouched);
        if request.done_ms.is_none() {
            request.ticket = request.ticket.min(ticket);
            request.vouched |= vouched;
        } else if vouched && !request.asked.contains(&peer) && request.due_ms.is_none() {
            // Given up on (or beaten): a vouched-for announcer may still deliver it.
            request.done_ms = None;
            request.vouched = true;
            request.ticket = request.ticket.min(ticket);
            trim_waiting(state);
        }
        return;
    }
    state.requests.insert(
        id,
        Request {
            announcers: BTreeSet::from([peer]),
            vouched,
            ticket,
            asked: BTreeSet::new(),
            peer: None,
            tries: 0,
            due_ms: None,
            done_ms: None,
        },
    );
    trim_waiting(state);
}

/// Bounds the ids waiting to [`FETCH_WAITING_MAX`]: forgets the one of worst priority.
fn trim_waiting(state: &mut SlotState) {
    let waiting = state.requests.values().filter(|r| r.waiting()).count();
    if waiting > FETCH_WAITING_MAX
        && let Some(worst) = state
            .requests
            .iter()
            .filter(|(_, r)| r.waiting())
            .map(|(id, r)| r.priority(id))
            .max()
    {
        state.requests.remove(&worst.3);
    }
}

/// Remembers `peer` as an announcer of `request`, at most [`ANNOUNCERS_KEPT`]: when full, a
/// vouched-for peer takes the place of the largest one not vouched for and not asked.
fn add_announcer(request: &mut Request, peer: PeerId, vouched: bool, known: &BTreeSet<PeerId>) {
    if request.announcers.contains(&peer) {
        return;
    }
    if request.announcers.len() >= ANNOUNCERS_KEPT {
        if !vouched {
            return;
        }
        let Some(out) = request
            .announcers
            .iter()
            .rev()
            .find(|p| !known.contains(p) && !request.asked.contains(p))
            .copied()
        else {
            return;
        };
        request.announcers.remove(&out);
    }
    request.announcers.insert(peer);
}

/// Whom to ask for `request` now: an announcer not asked yet (not suspect first, then
/// vouched-for first, then by PeerId), else the one asked last again; never one with a request
/// out.
fn pick_announcer(
    request: &Request,
    busy: &BTreeSet<PeerId>,
    suspects: &BTreeSet<PeerId>,
    vouched: &BTreeSet<PeerId>,
) -> Option<PeerId> {
    let fresh = request
        .announcers
        .iter()
        .filter(|p| !request.asked.contains(p) && !busy.contains(p))
        .min_by_key(|p| (suspects.contains(p), !vouched.contains(p), **p))
        .copied();
    fresh.or(request.peer.filter(|p| !busy.contains(p)))
}

/// Forgets the oldest finished requests past [`FETCH_DONE_KEPT`].
fn forget_done(state: &mut SlotState) {
    let done = state
        .requests
        .values()
        .filter(|r| r.done_ms.is_some())
        .count();
    if done <= FETCH_DONE_KEPT {
        return;
    }
    let mut finished: Vec<(u64, Hash32)> = state
        .requests
        .iter()
        .filter_map(|(id, r)| r.done_ms.map(|t| (t, *id)))
        .collect();
    finished.sort_unstable();
    for (_, id) in finished
        .into_iter()
        .take(done.saturating_sub(FETCH_DONE_KEPT))
    {
        state.requests.remove(&id);
    }
}

#[cfg(test)]
mod tests;
