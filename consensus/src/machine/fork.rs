//! Forks (PROTOCOL.md 9) and chain sync: comparing the heads peers report with the own chain,
//! counting supporters, adopting the other chain with hysteresis, and fetching decided slots
//! that this node only follows (after joining or adopting).

use std::collections::{BTreeMap, BTreeSet};

use libp2p_identity::PeerId;

use super::slot::SlotState;
use super::{Action, Consensus};
use crate::chain::{ChainError, DecidedSlot};
use crate::hash::Hash32;
use crate::limits::CHAIN_RESPONSE_SLOTS;
use crate::schedule::{Window, proposal_window, selection_window};
use crate::ticket::{SlotContext, ticket};

/// Statuses over this many status periods count as support (PROTOCOL.md 9).
pub(super) const SUPPORT_PERIODS: u64 = 3;
/// Consecutive evaluations the other chain must win before it is adopted (PROTOCOL.md 9).
const WINS_TO_ADOPT: u32 = 2;
/// A peer whose head is this many slots behind the own head is not counted (it is catching up).
const HEAD_LAG_MAX: u64 = 4;
/// Slots before the first known difference that a fork fetch starts from, when no slot is known
/// to agree.
const FORK_BACKTRACK: u64 = 32;
/// How long after a peer's Status turns to another chain the forks are evaluated, ms: the
/// Statuses sent about the same time (across a partition's repair) are in by then. A Status
/// thus moves no timer of the machine less than this ahead (the simulator's batches of Status
/// deliveries rely on it).
pub const FORK_TURN_DELAY_MS: u64 = 1_000;
/// How long a `FetchChain` may go unanswered before it is sent again, ms.
pub const SYNC_TIMEOUT_MS: u64 = 5_000;
/// How many times a fork fetch is sent before the fork is evaluated afresh.
const ADOPT_TRIES_MAX: u32 = 3;
/// How many times a follow fetch (a slot this node only follows, and no Decision received
/// agrees with what it holds) is sent before the node makes the slot final from what it holds
/// (PROTOCOL.md 4.4); a wrong choice is then repaired by section 9. With [`SYNC_TIMEOUT_MS`]
/// this bounds the wait to 15 s past finality.
pub const FOLLOW_TRIES_MAX: u32 = 3;
/// Most other-chain hashes remembered as losing a tie at their first difference.
const TIES_KEPT: usize = 1024;
/// Most supporters remembered as having left a fork fetch unanswered (or answered it with a
/// chain that was refused).
const FAILED_SOURCES_KEPT: usize = 1024;

/// One side of a fork: a chain hash at the comparison slot and how many nodes hold it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Support {
    /// The chain hash at the comparison slot.
    pub chain_hash: Hash32,
    /// Distinct supporters heard in the last three status periods (this node included on its
    /// own side).
    pub supporters: usize,
}

/// What this node does about a fork.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForkChoice {
    /// Its own chain has the most supporters (or wins the tie): it keeps it.
    Keep,
    /// The other chain wins this evaluation; it is adopted if it wins the next one too.
    Wait,
    /// The other chain won two consecutive evaluations: it is fetched from `from` (a
    /// [`Action::FetchChain`] follows) and adopted when it arrives.
    Adopt {
        /// The supporter asked for the chain.
        from: PeerId,
    },
    /// A tie held for two consecutive evaluations and the first slot where the chains differ
    /// is not known yet: the other chain is fetched from `from` and adopted only if its chain
    /// hash at the first difference is the smaller (PROTOCOL.md 9); otherwise a
    /// [`ForkChoice::Keep`] report at that slot follows.
    Compare {
        /// The supporter asked for the chain.
        from: PeerId,
    },
}

/// An evaluation that found a fork, for the log line
/// `fork slot=12 own=<hash>:2 other=<hash>:3 choice=adopt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForkReport {
    /// The comparison slot (the lowest head among the peers counted and this node).
    pub slot: u64,
    /// This node's chain.
    pub own: Support,
    /// The strongest other chain.
    pub other: Support,
    /// What this node does.
    pub choice: ForkChoice,
}

/// Why a chain sent by a peer was not taken.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SyncError {
    /// No `FetchChain` is waiting for an answer.
    #[error("no chain was asked for")]
    Unsolicited,
    /// The answer holds no slot.
    #[error("the peer sent no decided slot")]
    Empty,
    /// The answer does not start at a decided slot this node can chain it from.
    #[error("the answer starts at slot {first}, outside {lookahead}..={len}")]
    NotConnected {
        /// Its first slot.
        first: u64,
        /// L, the first decided slot.
        lookahead: u64,
        /// This node's chain length.
        len: u64,
    },
    /// A slot of the answer does not chain (number or chain hash).
    #[error("invalid chain: {0}")]
    Invalid(#[from] ChainError),
}

/// What a chain sent by a peer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainSync {
    /// It agrees with the own chain and adds nothing (yet).
    Unchanged,
    /// It appended this many decided slots (each also reported as [`Action::Decided`]).
    Extended(usize),
    /// It replaced the own decided slots from this slot on ([`Action::Adopted`]).
    Adopted(u64),
}

/// Why a chain is being fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// To adopt another chain (a fork).
    Adopt,
    /// To learn slots this node only follows.
    Follow,
}

/// A `FetchChain` waiting for its answer.
#[derive(Debug, Clone)]
pub(crate) struct SyncRequest {
    pub(crate) purpose: Purpose,
    /// For a fork fetch on a tie: the supporters of each side; the chain is adopted only if it
    /// wins the tie-break at the first difference.
    pub(crate) tie: Option<usize>,
    /// For a fork fetch: the other chain, its chain hash at the comparison slot, so that a
    /// retry can go to another of its supporters.
    pub(crate) other: Option<(u64, Hash32)>,
    pub(crate) peer: PeerId,
    pub(crate) from_slot: u64,
    pub(crate) due_ms: u64,
    pub(crate) tries: u32,
    pub(crate) asked: BTreeSet<PeerId>,
}

impl Consensus {
    /// Whether `slot` is only followed, so that the node neither tallies nor decides it and takes
    /// its final winner from the others' decisions or their chain: its selection began before
    /// this node synced its chain (joining or adopting), or its proposal window began before the
    /// node joined (proposals published before it was online never reach it, and a decision
    /// from the rest would be its own view of the slot, not the network's).
    pub(super) fn followed(&self, slot: u64) -> bool {
        let began_before = |window: Option<Window>, at: Option<u64>| {
            at.is_some_and(|at| window.is_some_and(|w| w.start_ms <= at))
        };
        began_before(selection_window(&self.chain, slot), self.synced_at_ms)
            || began_before(proposal_window(&self.chain, slot), self.joined_at_ms)
    }

    /// Asks a peer for the chain from `slot` because a followed slot cannot be made final from
    /// what was received. False if no peer is known (the node then decides alone).
    pub(super) fn follow_sync(&mut self, now: u64, slot: u64, state: &SlotState) -> bool {
        if self.sync.is_some() {
            return true;
        }
        let authors = state.decisions.keys().copied().collect();
        let Some(peer) = self.follow_candidates(authors).into_iter().next() else {
            return false;
        };
        self.ask_chain(now, Purpose::Follow, peer, slot);
        true
    }

    /// Peers to ask for a followed slot: the authors of its decisions, then the peers heard
    /// recently, highest head first; those this node is directly connected to before the
    /// others (when it counts direct connections): a joiner that knows only its bootstrap
    /// peer cannot reach an author it merely heard, and each unanswered request costs
    /// [`SYNC_TIMEOUT_MS`] of the few seconds before the slot must be final. Within each group
    /// the stalled peers ([`Consensus::set_stalled`]) go last, for the same reason.
    fn follow_candidates(&self, authors: Vec<PeerId>) -> Vec<PeerId> {
        let mut out = self.heard_candidates(authors);
        // Stable: the order above holds within each group.
        out.sort_by_key(|p| {
            (
                self.direct.as_ref().is_some_and(|d| !d.contains(p)),
                self.stalled.contains(p),
            )
        });
        out
    }

    fn heard_candidates(&self, authors: Vec<PeerId>) -> Vec<PeerId> {
        let mut out = authors;
        let mut heard: Vec<(std::cmp::Reverse<u64>, PeerId)> = self
            .peers
            .iter()
            .filter(|(_, p)| p.last_heard_ms.is_some())
            .map(|(id, p)| (std::cmp::Reverse(p.head_slot().unwrap_or(0)), *id))
            .collect();
        heard.sort();
        out.extend(
            heard
                .into_iter()
                .map(|(_, id)| id)
                .filter(|id| !out.contains(id))
                .collect::<Vec<_>>(),
        );
        out
    }

    fn ask_chain(&mut self, now: u64, purpose: Purpose, peer: PeerId, from_slot: u64) {
        let mut asked = BTreeSet::new();
        asked.insert(peer);
        self.sync = Some(SyncRequest {
            purpose,
            tie: None,
            other: None,
            peer,
            from_slot,
            due_ms: now.saturating_add(SYNC_TIMEOUT_MS),
            tries: 1,
            asked,
        });
        self.actions
            .push_back(Action::FetchChain { peer, from_slot });
    }

    /// Sends an unanswered `FetchChain` again: a fork fetch to the other chain's next supporter
    /// not yet asked (up to [`ADOPT_TRIES_MAX`] times, then the fork is evaluated afresh, the
    /// supporters asked going last), a follow fetch to the next candidate peer.
    pub(super) fn retry_sync(&mut self, now: u64) {
        let Some(sync) = self.sync.as_ref().filter(|s| s.due_ms <= now) else {
            return;
        };
        let (peer, from_slot) = match sync.purpose {
            Purpose::Adopt if sync.tries >= ADOPT_TRIES_MAX => {
                // None of the supporters asked gave a chain that could be taken: the next
                // evaluations ask the others first.
                if self.failed_sources.len() >= FAILED_SOURCES_KEPT {
                    self.failed_sources.clear();
                }
                let asked = sync.asked.clone();
                self.failed_sources.extend(asked);
                self.sync = None;
                return;
            }
            Purpose::Adopt => self
                .next_fork_source(now, sync)
                .unwrap_or((sync.peer, sync.from_slot)),
            Purpose::Follow if sync.tries >= FOLLOW_TRIES_MAX => {
                // Nobody answers: make the slot final from what is held (finality runs at
                // once, its time has passed); section 9 repairs a wrong choice later.
                self.sync = None;
                let slot = self.chain.len();
                self.slots.entry(slot).or_default().follow_given_up = true;
                return;
            }
            Purpose::Follow => {
                let Some(peer) = self.next_follow_peer() else {
                    return;
                };
                (peer, self.chain.len())
            }
        };
        let Some(sync) = self.sync.as_mut() else {
            return;
        };
        sync.peer = peer;
        sync.from_slot = from_slot;
        sync.asked.insert(peer);
        sync.tries += 1;
        sync.due_ms = now.saturating_add(SYNC_TIMEOUT_MS);
        self.actions
            .push_back(Action::FetchChain { peer, from_slot });
    }

    /// The next supporter of the chain a fork fetch asks for, and the slot to fetch from: the
    /// first in [`Consensus::fork_sources`] order not asked yet. None if every supporter heard
    /// was asked (the same one is then asked again).
    fn next_fork_source(&self, now: u64, sync: &SyncRequest) -> Option<(PeerId, u64)> {
        let (slot, other_hash) = sync.other?;
        let (peer, info) = self
            .fork_sources(now, slot, other_hash)
            .into_iter()
            .find(|(peer, _)| !sync.asked.contains(*peer))?;
        Some((*peer, self.fork_fetch_start(info, slot)))
    }

    /// The peer a follow fetch asks next: a candidate not asked yet (the round starts over
    /// once all were), else the first candidate, else the peer asked last. None without a
    /// follow fetch.
    fn next_follow_peer(&mut self) -> Option<PeerId> {
        let slot = self.chain.len();
        let authors = self
            .slots
            .get(&slot)
            .map(|s| s.decisions.keys().copied().collect())
            .unwrap_or_default();
        let candidates = self.follow_candidates(authors);
        let sync = self.sync.as_mut()?;
        let next = candidates
            .iter()
            .find(|p| !sync.asked.contains(p))
            .or(candidates.first())
            .copied()
            .unwrap_or(sync.peer);
        if candidates.iter().all(|p| sync.asked.contains(p)) {
            sync.asked.clear();
        }
        Some(next)
    }

    /// The least time between two fork evaluations that find a fork: half a status period.
    ///
    /// Forks are evaluated at every own Status, and sooner: [`FORK_TURN_DELAY_MS`] after a
    /// peer's Status turns to another chain, and half a status period after another chain won
    /// an evaluation. The gap keeps two consecutive evaluations (the hysteresis of PROTOCOL.md
    /// 9) from reading one moment twice. After a partition's repair the other chain is then
    /// adopted about half a status period after the Statuses from across it are heard (which
    /// takes up to a period), where an evaluation at each own Status only took two to three
    /// periods.
    pub(super) fn fork_gap(&self) -> u64 {
        self.status_period() / 2
    }

    /// Asks for a fork evaluation at `earliest`, or later if [`Consensus::fork_gap`] says so.
    pub(super) fn want_fork_evaluation(&mut self, earliest: u64) {
        let at = self
            .fork_evaluated_ms
            .map_or(earliest, |t| t.saturating_add(self.fork_gap()))
            .max(earliest);
        self.fork_due_ms = Some(self.fork_due_ms.map_or(at, |due| due.min(at)));
    }

    /// Evaluates forks when the own Status is due (`status_due`) or an evaluation was asked
    /// for and is due, no sooner than [`Consensus::fork_gap`] after the last one that found a
    /// fork (a due Status then asks for the evaluation at the end of the gap).
    pub(super) fn fork_tick(&mut self, now: u64, status_due: bool) {
        if !status_due && self.fork_due_ms.is_none_or(|due| due > now) {
            return;
        }
        if let Some(gap_end) = self
            .fork_evaluated_ms
            .map(|t| t.saturating_add(self.fork_gap()))
            .filter(|end| now < *end)
        {
            self.fork_due_ms = Some(gap_end);
            return;
        }
        self.fork_due_ms = None;
        self.evaluate_forks(now);
    }

    /// Compares the heads of the peers heard in the last three status periods with the own
    /// chain (PROTOCOL.md 9), reports a fork and adopts the other chain when it has won
    /// [`WINS_TO_ADOPT`] consecutive evaluations.
    fn evaluate_forks(&mut self, now: u64) {
        if self.sync.is_some() {
            return;
        }
        // Every head kept agrees with the own chain: no other chain has a supporter, and the
        // evaluation below would end with `fork_wins` at 0, as it is.
        if self.fork_wins == 0 && !self.peers.forks_possible(&self.chain) {
            return;
        }
        let Some((slot, own, other)) = self.fork_sides(now) else {
            return;
        };
        let Some(other) = other else {
            self.fork_wins = 0;
            return;
        };
        self.fork_evaluated_ms = Some(now);
        let choice = self.fork_choice(now, slot, own, other);
        self.report_fork(ForkReport {
            slot,
            own,
            other,
            choice,
        });
    }

    /// The peers whose heads count in a fork evaluation at `now`: heard in the last
    /// [`SUPPORT_PERIODS`] status periods, not catching up (a head at most [`HEAD_LAG_MAX`]
    /// slots behind the own), and directly connected where only those count (12.4). In no
    /// particular order: what is computed from them is counts, a minimum, and a maximum under a
    /// total order.
    fn fork_voters(&self, now: u64) -> Vec<(&PeerId, &super::PeerInfo)> {
        let since = now.saturating_sub(SUPPORT_PERIODS * self.status_period());
        let own_head = self.chain.head().slot;
        self.peers
            .heard_since_unordered(since)
            .filter(|(_, p)| {
                p.head_slot()
                    .is_some_and(|h| h.saturating_add(HEAD_LAG_MAX) >= own_head)
            })
            .filter(|(id, _)| self.direct.as_ref().is_none_or(|d| d.contains(*id)))
            .collect()
    }

    /// The comparison slot (the lowest head among the voters and this node), the own chain's
    /// support there, and the strongest other chain's: most supporters, then the smaller hash
    /// (None when every voter agrees). None if the own chain has no hash at that slot.
    fn fork_sides(&self, now: u64) -> Option<(u64, Support, Option<Support>)> {
        let voters = self.fork_voters(now);
        let slot = voters
            .iter()
            .filter_map(|(_, p)| p.head_slot())
            .fold(self.chain.head().slot, u64::min);
        let own_hash = self.chain.chain_hash(slot)?;
        // Supporters per chain hash. Counted, not collected: the peers of the table are
        // distinct and never this node (its own Status never enters the table).
        let mut support: BTreeMap<Hash32, usize> = BTreeMap::new();
        *support.entry(own_hash).or_default() += 1;
        for (_, info) in &voters {
            if let Some(hash) = info.head_hash(slot) {
                *support.entry(hash).or_default() += 1;
            }
        }
        let own = Support {
            chain_hash: own_hash,
            supporters: support.get(&own_hash).copied().unwrap_or(0),
        };
        let other = support
            .iter()
            .filter(|(hash, _)| **hash != own_hash)
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .map(|(&chain_hash, &supporters)| Support {
                chain_hash,
                supporters,
            });
        Some((slot, own, other))
    }

    /// What this node does about `other`, a chain that disagrees with its own at `slot`: counts
    /// the other chain's consecutive wins, and at [`WINS_TO_ADOPT`] asks a supporter for it.
    fn fork_choice(&mut self, now: u64, slot: u64, own: Support, other: Support) -> ForkChoice {
        // On a tie the smaller chain hash at the first slot where the chains differ wins
        // (PROTOCOL.md 9). Heads do not tell that slot, so the other chain is fetched to compare
        // (`ForkChoice::Compare`), unless a fetch already showed that it loses.
        let tie = other.supporters == own.supporters;
        let other_wins = other.supporters > own.supporters
            || (tie && !self.ties_lost.contains(&other.chain_hash));
        if !other_wins {
            self.fork_wins = 0;
            return ForkChoice::Keep;
        }
        self.fork_wins += 1;
        if self.fork_wins < WINS_TO_ADOPT {
            // The next evaluation comes after the gap, not the next Status.
            self.want_fork_evaluation(now);
            return ForkChoice::Wait;
        }
        let Some((from, from_slot)) = self
            .fork_sources(now, slot, other.chain_hash)
            .first()
            .map(|(id, info)| (**id, self.fork_fetch_start(info, slot)))
        else {
            return ForkChoice::Wait;
        };
        self.fork_wins = 0;
        self.ask_chain(now, Purpose::Adopt, from, from_slot);
        if let Some(sync) = self.sync.as_mut() {
            sync.other = Some((slot, other.chain_hash));
            sync.tie = tie.then_some(own.supporters);
        }
        if tie {
            ForkChoice::Compare { from }
        } else {
            ForkChoice::Adopt { from }
        }
    }

    /// Who may serve the other chain, `other_hash` at `slot`, best first: its supporters, those
    /// that have not left a fork fetch unanswered first, then those not stalled
    /// ([`Consensus::set_stalled`]), then the highest head, then the smallest PeerId. (Always
    /// the same first choice would let one supporter that never answers, or answers what is
    /// refused, hold this node on the losing chain.)
    fn fork_sources(
        &self,
        now: u64,
        slot: u64,
        other_hash: Hash32,
    ) -> Vec<(&PeerId, &super::PeerInfo)> {
        let mut sources: Vec<(&PeerId, &super::PeerInfo)> = self
            .fork_voters(now)
            .into_iter()
            .filter(|(_, info)| info.head_hash(slot) == Some(other_hash))
            .collect();
        sources.sort_by_cached_key(|(id, info)| {
            (
                self.failed_sources.contains(*id),
                self.stalled.contains(*id),
                std::cmp::Reverse(info.head_slot()),
                id.to_bytes(),
            )
        });
        sources
    }

    /// Queues the report of an evaluation that found a fork. One that adopts or compares goes
    /// before the `FetchChain` its choice queued.
    fn report_fork(&mut self, report: ForkReport) {
        let fetching = matches!(
            report.choice,
            ForkChoice::Adopt { .. } | ForkChoice::Compare { .. }
        );
        let at = self
            .actions
            .iter()
            .rposition(|a| matches!(a, Action::FetchChain { .. }))
            .filter(|_| fetching)
            .unwrap_or(self.actions.len());
        self.actions.insert(at, Action::Fork(report));
    }

    /// Where to fetch the other chain from: just after the last slot the supporter is known to
    /// agree on, else [`FORK_BACKTRACK`] slots before the first known difference.
    fn fork_fetch_start(&self, info: &super::PeerInfo, differs_at: u64) -> u64 {
        let lookahead = self.chain.lookahead();
        let agreed = info
            .heads
            .iter()
            .filter(|(s, h)| self.chain.chain_hash(*s) == Some(h.head.chain_hash))
            .map(|(s, _)| s)
            .max();
        let first_diff = info
            .heads
            .iter()
            .filter(|(s, h)| {
                self.chain
                    .chain_hash(*s)
                    .is_some_and(|own| own != h.head.chain_hash)
            })
            .map(|(s, _)| s)
            .min()
            .unwrap_or(differs_at);
        match agreed.filter(|a| *a < first_diff) {
            Some(a) => a + 1,
            None => first_diff.saturating_sub(FORK_BACKTRACK),
        }
        .max(lookahead)
    }

    /// Input: the decided slots a peer sent for an [`Action::FetchChain`] (`/chorus/sync/1
    /// Chain{from_slot}`). Slots that agree with the own chain extend it; slots that differ
    /// replace it from the first difference on (fork adoption, PROTOCOL.md 9): the schedule is
    /// recomputed, and slots whose selection already began are then only followed.
    ///
    /// The whole answer is verified before anything is taken (PROTOCOL.md 12.1, 12.4:
    /// [`crate::chain::Chain::extend_synced`], at most 256 slots, none not yet final at `now`).
    /// A record that fails is [`SyncError::Invalid`] naming the slot and the check, and, unless
    /// the answer merely starts on another chain, an [`Action::Violation`] of `peer`.
    pub fn handle_chain(
        &mut self,
        now: u64,
        peer: PeerId,
        slots: Vec<DecidedSlot>,
    ) -> Result<ChainSync, SyncError> {
        let result = self.take_chain(now, peer, slots);
        self.refresh_step();
        result
    }

    fn take_chain(
        &mut self,
        now: u64,
        peer: PeerId,
        slots: Vec<DecidedSlot>,
    ) -> Result<ChainSync, SyncError> {
        self.join(now);
        let Some(sync) = self.sync.clone() else {
            return Err(SyncError::Unsolicited);
        };
        let first = slots.first().map(|s| s.slot).ok_or(SyncError::Empty)?;
        let lookahead = self.chain.lookahead();
        if first < lookahead || first > self.chain.len() {
            return Err(SyncError::NotConnected {
                first,
                lookahead,
                len: self.chain.len(),
            });
        }
        let full = slots.len() >= CHAIN_RESPONSE_SLOTS;
        // Every record is verified (PROTOCOL.md 12.1) on a copy before anything of the own
        // chain is replaced (12.4): `extend_synced` takes the whole answer or nothing.
        let mut candidate = self.chain.clone();
        candidate.truncate(first);
        if let Err(e) = candidate.extend_synced(slots, now) {
            let earlier = matches!(e, ChainError::HashMismatch { slot, .. } if slot == first);
            if earlier {
                // The answer's first slot does not chain onto the own slot before it: the
                // peer is on another chain (no violation).
                if first > lookahead && sync.purpose == Purpose::Adopt {
                    // The fork is older than the slots asked for: ask from further back.
                    let from_slot = first
                        .saturating_sub(CHAIN_RESPONSE_SLOTS as u64)
                        .max(lookahead);
                    self.ask_chain(now, Purpose::Adopt, peer, from_slot);
                    if let Some(next) = self.sync.as_mut() {
                        next.tie = sync.tie;
                        next.other = sync.other;
                    }
                }
            } else {
                // A record that fails verification refuses the answer whole, and its sender
                // is counted as violating (12.1); the request waits for its retry.
                self.peers.violation(peer);
                self.actions.push_back(Action::Violation {
                    peer,
                    reason: format!("chain answer refused: {e}"),
                });
            }
            return Err(e.into());
        }
        let overlap = self.chain.len().min(candidate.len());
        let fork = (first..overlap).find(|s| self.chain.chain_hash(*s) != candidate.chain_hash(*s));
        let result = match fork {
            None if candidate.len() <= self.chain.len() => {
                if sync.purpose == Purpose::Adopt {
                    self.sync = None;
                }
                return Ok(ChainSync::Unchanged);
            }
            None => {
                let added: Vec<DecidedSlot> = (self.chain.len()..candidate.len())
                    .filter_map(|s| candidate.decided(s).cloned())
                    .collect();
                self.chain = candidate;
                let count = added.len();
                self.report_synced(added);
                ChainSync::Extended(count)
            }
            Some(fork) => {
                if let Some(supporters) = sync.tie
                    && !self.wins_tie(fork, &candidate, supporters)
                {
                    self.sync = None;
                    return Ok(ChainSync::Unchanged);
                }
                self.adopt(now, fork, candidate);
                ChainSync::Adopted(fork)
            }
        };
        let len = self.chain.len();
        self.slots.retain(|s, _| *s >= len);
        self.sync = None;
        if full {
            self.ask_chain(now, Purpose::Follow, peer, len);
        }
        Ok(result)
    }

    /// Slots a peer's chain added past the own: `Decided`, and `Final` for this node too (a slot
    /// it followed, or missed), reported as if decided here with no decisions to compare.
    fn report_synced(&mut self, added: Vec<DecidedSlot>) {
        for decided in added {
            let report = super::finality::FinalReport {
                slot: decided.slot,
                winner: decided.track.track_hash,
                proposal_id: decided.proposal_id,
                proposer: decided.proposal_id.and_then(|id| {
                    let state = self.slots.get(&decided.slot)?;
                    Some(state.proposals.get(&id)?.proposal.from)
                }),
                decisions: 0,
                conflicts: Vec::new(),
            };
            self.actions.push_back(Action::Decided(decided));
            self.actions.push_back(Action::Final(report));
        }
    }

    /// The tie-break of PROTOCOL.md 9 once the other chain is known: whether its chain hash at
    /// `fork`, the first slot where the chains differ, is the smaller. If not, the node keeps
    /// its chain (reported as [`ForkChoice::Keep`] at `fork`) and remembers the other chain's
    /// hashes, so that later evaluations keep it without fetching again.
    fn wins_tie(&mut self, fork: u64, candidate: &crate::chain::Chain, supporters: usize) -> bool {
        let (Some(theirs), Some(ours)) = (candidate.chain_hash(fork), self.chain.chain_hash(fork))
        else {
            return true;
        };
        if theirs < ours {
            return true;
        }
        if self.ties_lost.len() >= TIES_KEPT {
            self.ties_lost.clear();
        }
        self.ties_lost
            .extend((fork..candidate.len()).filter_map(|s| candidate.chain_hash(s)));
        let side = |chain_hash| Support {
            chain_hash,
            supporters,
        };
        self.actions.push_back(Action::Fork(ForkReport {
            slot: fork,
            own: side(ours),
            other: side(theirs),
            choice: ForkChoice::Keep,
        }));
        false
    }

    /// After an adoption: the proposals held for the slots in flight (and any later slot still
    /// held) take the tickets of the adopted chain ([`SlotState::retick`]); the slots before
    /// its length are dropped by the caller. At most three slots of at most
    /// [`PROPOSALS_PER_SLOT`](crate::limits::PROPOSALS_PER_SLOT) proposals: one SHA-256 each.
    fn retick_in_flight(&mut self) {
        let chain = &self.chain;
        for (slot, state) in self.slots.range_mut(chain.len()..) {
            let context = SlotContext::on_chain(chain, *slot);
            state.retick(|peer| ticket(&context, peer));
        }
    }

    /// Replaces the own chain from `fork` on with `chain`.
    fn adopt(&mut self, now: u64, fork: u64, chain: crate::chain::Chain) {
        let old = std::mem::replace(&mut self.chain, chain);
        // What this node played in the replaced slots stays what it played: the old winners.
        let played_until = old.slot_at(now).unwrap_or(old.len());
        for j in fork..played_until {
            if self.joined_slot.is_some_and(|s| s <= j) {
                let track = old
                    .winner(j)
                    .map(|t| crate::message::Played::Track(t.track_hash));
                self.played.entry(j).or_insert(track);
            }
        }
        self.substituted.retain(|s| *s < fork);
        // The slots in flight are only followed now: each is made final from a Decision that
        // agrees with its outcome, or else from the chain fetched (`Consensus::finalize`). A
        // Decision made on the replaced chain must not be that one: the own, and those of the
        // peers whose last Status was on it, are dropped. (After a partition the proposals
        // and Decisions held for a slot in flight can all be the own side's: kept, they made
        // the slot final as that side had, and the node forked again one slot later.)
        let (peers, chain) = (&self.peers, &self.chain);
        let left_behind = |author: &PeerId| {
            peers
                .get(author)
                .and_then(|info| info.status.as_ref())
                .is_some_and(|s| {
                    chain
                        .chain_hash(s.head.slot)
                        .is_some_and(|hash| hash != s.head.chain_hash)
                })
        };
        for state in self.slots.values_mut() {
            state.requests.clear();
            state.decisions.retain(|author, _| !left_behind(author));
            state.decided = None;
        }
        self.retick_in_flight();
        self.synced_at_ms = Some(now);
        self.fork_wins = 0;
        // Verdicts were against the replaced chain.
        self.ties_lost.clear();
        self.failed_sources.clear();
        let slots = self.chain.decided_from(fork).to_vec();
        self.actions.push_back(Action::Adopted {
            from_slot: fork,
            slots,
        });
        self.recheck = true;
    }
}

#[cfg(test)]
mod tests;
