//! The fetch policy of PROTOCOL.md 6 as a sans-IO state machine: which manifest and which blocks
//! to ask of whom, and when. No sockets, no store, no clock: the shell ([`super::Fetcher`]) tells
//! it what happened, at which time, and carries out the [`Action`]s it asks for.
//!
//! - A wanted track first goes to the store ([`Action::ReadStore`]); a manifest not held is asked
//!   of the DHT's providers and of up to [`MANIFEST_PARALLEL`] peers at once, the likely holders
//!   (the proposer hint, DHT providers, peers that sent it) before the other connected peers.
//! - Missing segments are queued by deadline (segment i of a track wanted at `start_ms` is due
//!   at `start_ms + i * segment_ms`) and handed out earliest first in want lists of up to
//!   [`BATCH`](super::BATCH) ids, to the provider with the fewest requests in flight among
//!   those with fewer than [`PER_PEER`](super::PER_PEER).
//! - "Don't have" or "later" moves a block to the next provider; a failed request puts its
//!   blocks back; a corrupt block or manifest bans its sender for [`BAN`].
//! - Swarming: every want list names its track, and the answer says which of its segments the
//!   peer holds; peers not known to hold a track in full are probed for their holdings (a
//!   want list with no ids) every [`swarm::PROBE_EVERY`]. A block goes to a peer that said it
//!   holds it before the track's seeds (proposer, providers), so a new track spreads from
//!   every node that has some of it, and its proposer's upload stays bounded.
//! - Every [`REFRESH`], answers of "don't have" are forgotten (peers may have fetched since) and
//!   expired bans lifted; every [`REASK`] the DHT is asked again and manifests re-asked.
//! - A track no longer wanted ([`Planner::handle_forget`]: a likely winner fetched ahead of
//!   finality lost) is dropped with its blocks still to fetch, except those another wanted
//!   track lists.
//! - Progress is reported as blocks arrive; a finished track is provided (cross-seeding) and
//!   reported complete; a track whose every known provider delivered nothing, or whose
//!   manifest was refused, is reported unavailable once (PROTOCOL.md 12.2).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use chorus_consensus::Hash32;
use libp2p::PeerId;
use tracing::warn;

use super::{BAN, FetchEvent};

mod messages;
mod schedule;
mod state;
pub(crate) mod swarm;

pub use messages::{Action, BlocksOutcome, Contents, Delivery, Local, ManifestOutcome, Want};
use state::{BlockState, Peers, Phase, TrackFetch};

/// Manifest requests in flight per track.
pub const MANIFEST_PARALLEL: usize = 3;
/// How often "don't have" answers are forgotten and bans checked.
pub const REFRESH: Duration = Duration::from_secs(1);
/// How often a track's providers are asked of the DHT again, and its manifest of every peer.
pub const REASK: Duration = Duration::from_secs(5);
/// A block in flight this long (counted from the first refresh that finds it in flight, so
/// `HEDGE_AFTER` to `HEDGE_AFTER + REFRESH` after it was asked) is asked of a second peer
/// that holds it as well, BitTorrent's end game: on the testbed's lossy links one answer in a
/// few dozen takes seconds (a TCP tail), and a winner has reached every node only when its
/// last block has. No shorter than a parked answer's longest wait at a peer still fetching
/// ([`PARK_FOR`](crate::net::parked::PARK_FOR)), so that a pipeline working as meant is left
/// alone.
pub const HEDGE_AFTER: Duration = Duration::from_secs(2);

/// The fetch planner.
///
/// Call order: create it with [`Planner::new`]; feed every input as it happens (`handle_*`, each
/// with the current virtual time where it takes one); after each input, drain
/// [`Planner::poll_action`] until `None` and carry out the actions; then wait for the next input
/// or until [`Planner::poll_timeout`], and call [`Planner::handle_timeout`] then. Times are
/// `Duration`s since an epoch the caller chooses; the planner never reads a clock.
#[derive(Debug)]
pub struct Planner {
    tracks: BTreeMap<Hash32, TrackFetch>,
    blocks: BTreeMap<Hash32, BlockState>,
    /// Pending blocks by (due, id): the earliest deadline first.
    queue: BTreeSet<(u64, Hash32)>,
    /// Want lists in flight per peer.
    in_flight: BTreeMap<PeerId, usize>,
    /// Peers with a want-have probe in flight.
    probing: BTreeSet<PeerId>,
    peers: Peers,
    next_refresh: Duration,
    actions: VecDeque<Action>,
    /// Something changed since requests were last handed out.
    dirty: bool,
}

impl Planner {
    /// A planner with nothing wanted; its first refresh is due at `now`.
    pub fn new(now: Duration) -> Planner {
        Planner {
            tracks: BTreeMap::new(),
            blocks: BTreeMap::new(),
            queue: BTreeSet::new(),
            in_flight: BTreeMap::new(),
            probing: BTreeSet::new(),
            peers: Peers::default(),
            next_refresh: now,
            actions: VecDeque::new(),
            dirty: false,
        }
    }

    /// The driver wants a track by a deadline. A track already wanted keeps its first slot;
    /// an earlier deadline moves its blocks up the queue, and a new hint joins its holders.
    pub fn handle_want(&mut self, now: Duration, want: Want) {
        self.dirty = true;
        let hash = want.track.track_hash;
        if let Some(t) = self.tracks.get_mut(&hash) {
            if let Some(hint) = want.hint {
                t.add_holder(hint);
            }
            if want.start_ms < t.start_ms {
                t.start_ms = want.start_ms;
                self.enqueue(&hash);
            }
            return;
        }
        self.actions.push_back(Action::ReadStore {
            track: want.track.clone(),
            slot: want.slot,
            segment_ms: want.segment_ms,
        });
        self.tracks.insert(hash, TrackFetch::new(now, want));
    }

    /// The driver no longer wants `track` (a likely winner fetched ahead of finality lost):
    /// its fetch state goes, and with it every report of it (progress, completion, 12.2's
    /// `unavailable`). Its blocks still to fetch leave the queue, except those another wanted
    /// track lists: they stay, due by that track's deadline. A block in flight is not asked
    /// for again; its answer is still stored. A track not wanted changes nothing.
    pub fn handle_forget(&mut self, track: Hash32) {
        let Some(t) = self.tracks.remove(&track) else {
            return;
        };
        self.dirty = true;
        let Phase::Fetching { pending, .. } = t.phase else {
            return;
        };
        for id in pending {
            let Some(b) = self.blocks.get_mut(&id) else {
                continue;
            };
            b.waiting.remove(&track);
            // Due by the earliest deadline among the tracks that still list it.
            let due = b
                .waiting
                .iter()
                .filter_map(|hash| self.tracks.get(hash))
                .filter_map(|other| other.due_of(&id))
                .min();
            let Some(due) = due else {
                self.queue.remove(&(b.due_ms, id));
                self.blocks.remove(&id);
                continue;
            };
            if due != b.due_ms {
                let queued = self.queue.remove(&(b.due_ms, id));
                b.due_ms = due;
                if queued {
                    self.queue.insert((due, id));
                }
            }
        }
    }

    /// What the store holds of a track, after an [`Action::ReadStore`].
    pub fn handle_held(&mut self, now: Duration, track: Hash32, local: Local) {
        self.dirty = true;
        let Some(t) = self.tracks.get_mut(&track) else {
            return;
        };
        if !matches!(t.phase, Phase::Reading) {
            return;
        }
        match local {
            Local::Absent => {
                t.phase = Phase::Seeking;
                self.ask_providers(now, track);
            }
            Local::Held(contents) => self.manifest_ready(now, track, contents),
            Local::Refused => {
                t.phase = Phase::Refused;
                self.check_unavailable(track);
            }
        }
    }

    /// The DHT's answer to an [`Action::AskProviders`].
    pub fn handle_providers(&mut self, track: Hash32, peers: Vec<PeerId>) {
        self.dirty = true;
        let Some(t) = self.tracks.get_mut(&track) else {
            return;
        };
        t.dht_in_flight = false;
        t.dht_answered = true;
        for p in peers {
            t.add_holder(p);
        }
        self.check_unavailable(track);
    }

    /// A peer connected: it becomes a provider of every track.
    pub fn handle_connected(&mut self, peer: PeerId) {
        self.dirty = true;
        self.peers.connected.insert(peer);
    }

    /// The peers reached only through a relay now (a hole punched or a connection lost takes
    /// one off).
    pub fn handle_relayed(&mut self, relayed: BTreeSet<PeerId>) {
        self.dirty = true;
        self.peers.relayed = relayed;
    }

    /// The peers that serve blocks best, asked first for those they hold: `lan`, reached
    /// directly over the local network, and `hubs`, public peers reached directly (none
    /// unless a crowd of private peers fetches here, as for the seed's hubs,
    /// `net/uploads.rs`).
    pub fn handle_fast_peers(&mut self, lan: BTreeSet<PeerId>, hubs: BTreeSet<PeerId>) {
        self.dirty = true;
        self.peers.lan = lan;
        self.peers.hubs = hubs;
    }

    /// A peer disconnected: it stays a provider only of tracks it is known to hold.
    pub fn handle_disconnected(&mut self, peer: PeerId) {
        self.dirty = true;
        self.peers.connected.remove(&peer);
    }

    /// The answer of `peer` to an [`Action::RequestManifest`] for `track`.
    pub fn handle_manifest(
        &mut self,
        now: Duration,
        track: Hash32,
        peer: PeerId,
        outcome: ManifestOutcome,
    ) {
        self.dirty = true;
        let Some(t) = self.tracks.get_mut(&track) else {
            return;
        };
        t.manifest_in_flight = t.manifest_in_flight.saturating_sub(1);
        let manifest_id = t.track.manifest_id;
        match outcome {
            // A peer with the manifest may still be fetching the blocks: it is no holder (a
            // want-have probe tells what it has), so its "don't have" says nothing of 12.2.
            ManifestOutcome::Valid(contents) => {
                if matches!(t.phase, Phase::Seeking) {
                    self.manifest_ready(now, track, contents);
                }
            }
            ManifestOutcome::NotStored => t.add_holder(peer),
            ManifestOutcome::Refused => {
                t.add_holder(peer);
                if matches!(t.phase, Phase::Seeking) {
                    // The bytes hash to the id the winning proposal named: the proposer itself
                    // wrote them, so nobody can serve better ones. The slot plays silence.
                    t.phase = Phase::Refused;
                    self.check_unavailable(track);
                }
            }
            ManifestOutcome::Corrupt => {
                t.lacking.insert(peer);
                self.ban(now, peer, manifest_id);
                self.check_unavailable(track);
            }
            ManifestOutcome::Missing | ManifestOutcome::Failed => {
                t.lacking.insert(peer);
                self.check_unavailable(track);
            }
        }
    }

    /// The answer of `peer` to the [`Action::Want`] that listed `ids`.
    pub fn handle_blocks(
        &mut self,
        now: Duration,
        peer: PeerId,
        ids: &[Hash32],
        outcome: BlocksOutcome,
    ) {
        self.dirty = true;
        if ids.is_empty() {
            self.probing.remove(&peer);
        } else if let Some(n) = self.in_flight.get_mut(&peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.in_flight.remove(&peer);
            }
        }
        match outcome {
            BlocksOutcome::Answered(mut delivery) => {
                if let Some((manifest, bits)) = delivery.holding.take() {
                    self.heard_holding(peer, &manifest, bits);
                }
                self.heard_referrals(peer, &delivery.later, &delivery.referrals);
                self.forget_holdings(peer, &delivery.dont_have);
                self.delivered(now, peer, ids, delivery);
            }
            BlocksOutcome::Failed => {
                let mut lacked = BTreeSet::new();
                for id in ids {
                    if let Some(b) = self.requeue(id, peer, true) {
                        lacked.extend(b);
                    }
                }
                for track in lacked {
                    self.lacks(&track, peer);
                    self.check_unavailable(track);
                }
            }
        }
    }

    /// The time given by [`Planner::poll_timeout`] has come: forgets "don't have" answers,
    /// lifts expired bans, and asks again for the providers and manifests of tracks not asked
    /// for [`REASK`].
    pub fn handle_timeout(&mut self, now: Duration) {
        if now < self.next_refresh {
            return;
        }
        self.dirty = true;
        self.next_refresh = now + REFRESH;
        self.peers.banned.retain(|_, until| *until > now);
        // Peers that had nothing may have fetched it since (cross-seeding): ask them again.
        for b in self.blocks.values_mut() {
            b.dont_have.clear();
            if b.in_flight.is_some() && b.hedge.is_none() {
                let seen = *b.seen_in_flight.get_or_insert(now);
                b.hedge_due = now.saturating_sub(seen) >= HEDGE_AFTER;
            }
        }
        self.probe_holdings(now);
        let stale: Vec<Hash32> = self
            .tracks
            .iter()
            .filter(|(_, t)| matches!(t.phase, Phase::Seeking | Phase::Fetching { .. }))
            .filter(|(_, t)| t.last_round.is_none_or(|at| now.saturating_sub(at) > REASK))
            .map(|(h, _)| *h)
            .collect();
        for track in stale {
            if let Some(t) = self.tracks.get_mut(&track) {
                t.manifest_tried.clear();
            }
            self.ask_providers(now, track);
        }
    }

    /// When [`Planner::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Duration> {
        Some(self.next_refresh)
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        if self.actions.is_empty() && self.dirty {
            self.dirty = false;
            self.schedule_manifests();
            self.schedule_wants();
        }
        self.actions.pop_front()
    }

    /// Starts a round for `track`: a DHT query unless one is still running.
    fn ask_providers(&mut self, now: Duration, track: Hash32) {
        let Some(t) = self.tracks.get_mut(&track) else {
            return;
        };
        t.last_round = Some(now);
        if t.dht_in_flight {
            return;
        }
        t.dht_in_flight = true;
        self.actions.push_back(Action::AskProviders {
            track,
            manifest_id: t.track.manifest_id,
        });
    }

    /// The manifest is held: queues the segments not in the store.
    fn manifest_ready(&mut self, now: Duration, track: Hash32, contents: Contents) {
        let Some(t) = self.tracks.get_mut(&track) else {
            return;
        };
        let pending: BTreeSet<Hash32> = contents
            .segments
            .iter()
            .filter(|id| !contents.held.contains(*id))
            .copied()
            .collect();
        for id in &pending {
            self.blocks
                .entry(*id)
                .or_insert_with(BlockState::new)
                .waiting
                .insert(track);
        }
        t.index = contents
            .segments
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, i))
            .collect();
        t.phase = Phase::Fetching {
            segments: contents.segments,
            pending,
        };
        self.enqueue(&track);
        self.check_complete(now, track);
    }

    /// Gives the pending blocks of `track` their deadlines, when earlier than those they have.
    fn enqueue(&mut self, track: &Hash32) {
        let Some(t) = self.tracks.get(track) else {
            return;
        };
        let Phase::Fetching { segments, .. } = &t.phase else {
            return;
        };
        for (i, id) in segments.iter().enumerate() {
            let Some(b) = self.blocks.get_mut(id) else {
                continue;
            };
            if !b.waiting.contains(track) {
                continue;
            }
            let due = t
                .start_ms
                .saturating_add(t.segment_ms.saturating_mul(i as u64));
            if due < b.due_ms {
                self.queue.remove(&(b.due_ms, *id));
                b.due_ms = due;
                if b.in_flight.is_none() {
                    self.queue.insert((due, *id));
                }
            }
        }
    }

    /// Takes in a verified answer to a want list.
    fn delivered(&mut self, now: Duration, peer: PeerId, ids: &[Hash32], d: Delivery) {
        let mut touched = BTreeSet::new();
        for (id, len) in d.stored.iter().filter(|(id, _)| ids.contains(id)) {
            let Some(b) = self.blocks.remove(id) else {
                continue;
            };
            self.queue.remove(&(b.due_ms, *id));
            for track in b.waiting {
                if let Some(t) = self.tracks.get_mut(&track) {
                    t.got(id, *len);
                    touched.insert(track);
                }
            }
        }
        for id in d.corrupt.iter().filter(|id| ids.contains(id)) {
            self.ban(now, peer, *id);
        }
        let mut lacked = BTreeSet::new();
        let progress = d.stored.iter().any(|(s, _)| ids.contains(s));
        for id in ids {
            if d.stored.iter().any(|(s, _)| s == id) {
                continue;
            }
            let later = d.later.contains(id);
            let missing = d.dont_have.contains(id) || d.corrupt.contains(id);
            // A block held back or left out goes to the same peer again at once only when the
            // answer brought blocks and referred nobody: the peer kept its answer small (a
            // parked answer's byte cap) and is the best placed to send the rest. Otherwise the
            // peer is skipped until the next refresh, so that one that says it holds blocks
            // and never sends them cannot hold them up. "Later" means held, so that peer may
            // still deliver (12.2).
            let skip = missing || !progress || (later && !d.referrals.is_empty());
            if let Some(waiting) = self.requeue(id, peer, skip)
                && missing
                && !later
            {
                lacked.extend(waiting);
            }
        }
        for track in touched {
            self.check_complete(now, track);
        }
        for track in lacked {
            self.lacks(&track, peer);
            self.check_unavailable(track);
        }
    }

    /// `peer` answered for a block in flight to it without it: the block goes back in the
    /// queue, or, when a second peer was asked too (a hedge) and `peer` is not to be asked
    /// again, waits for that one's answer. It is not asked of `peer` again before the next
    /// refresh if `skip_peer`. Returns the tracks waiting for it.
    fn requeue(&mut self, id: &Hash32, peer: PeerId, skip_peer: bool) -> Option<Vec<Hash32>> {
        let b = self.blocks.get_mut(id)?;
        if b.hedge == Some(peer) {
            b.hedge = None;
        } else if b.in_flight == Some(peer) {
            // A peer that sent blocks and kept this one for later is asked again beside the
            // hedge: it was the better ranked.
            b.in_flight = if skip_peer { b.hedge.take() } else { None };
            b.seen_in_flight = None;
            b.hedge_due = false;
            if b.in_flight.is_none() {
                self.queue.insert((b.due_ms, *id));
            }
        } else {
            return None;
        }
        if skip_peer {
            b.dont_have.insert(peer);
        }
        Some(b.waiting.iter().copied().collect())
    }

    /// Notes that `peer`, asked for something of `track`, delivered nothing.
    fn lacks(&mut self, track: &Hash32, peer: PeerId) {
        if let Some(t) = self.tracks.get_mut(track) {
            t.lacking.insert(peer);
        }
    }

    fn ban(&mut self, now: Duration, peer: PeerId, block: Hash32) {
        self.peers.banned.insert(peer, now + BAN);
        self.actions
            .push_back(Action::Report(FetchEvent::Corrupt { peer, block }));
    }

    /// Provides and reports `track` once every block of it is held; reports its progress
    /// until then.
    fn check_complete(&mut self, now: Duration, track: Hash32) {
        let Some(t) = self.tracks.get(&track) else {
            return;
        };
        let Phase::Fetching { segments, pending } = &t.phase else {
            return;
        };
        if !pending.is_empty() {
            let held = segments.iter().filter(|id| !pending.contains(*id)).count();
            self.actions.push_back(Action::Report(FetchEvent::Progress {
                track,
                held: held as u64,
                total: segments.len() as u64,
            }));
            return;
        }
        if let Some(t) = self.tracks.remove(&track) {
            self.actions.push_back(Action::Provide {
                manifest_id: t.track.manifest_id,
            });
            self.actions.push_back(Action::Report(FetchEvent::Complete {
                track: t.track,
                fetched: t.fetched,
                bytes: t.bytes,
                elapsed: now.saturating_sub(t.started),
            }));
        }
    }

    /// PROTOCOL.md 12.2: reports `track` unavailable once every known provider was asked and
    /// delivered nothing, or its manifest was refused. The providers are the peers known to
    /// hold the track (the proposer, DHT providers, peers that sent its manifest), or every
    /// connected peer when none is known: a peer still fetching it proves nothing, nor does a
    /// holder reached only through a relay, which is never asked.
    fn check_unavailable(&mut self, track: Hash32) {
        let Some(t) = self.tracks.get_mut(&track) else {
            return;
        };
        if t.unavailable_sent {
            return;
        }
        let refused = matches!(t.phase, Phase::Refused);
        // With no holder known at all, every connected peer is a provider.
        let known = if t.holders.is_empty() {
            self.peers.candidates(t)
        } else {
            t.holders.clone()
        };
        if !(refused || exhausted(t.dht_answered, &known, &t.lacking)) {
            return;
        }
        t.unavailable_sent = true;
        let (slot, asked) = (t.slot, t.lacking.len());
        warn!(event = "unavailable", track_hash = %track, slot, asked, refused,
            "\"{}\" (slot {slot}) is unavailable: {}", t.track.title,
            if refused { "its manifest was refused".to_owned() } else { format!("each of the {asked} providers known was asked and delivered nothing") });
        self.actions
            .push_back(Action::Report(FetchEvent::Unavailable {
                track,
                slot,
                asked,
                refused,
            }));
    }
}

/// PROTOCOL.md 12.2: whether a track was asked of every known provider without success: the
/// DHT has answered (so its providers are among `known`), at least one peer was asked, and
/// every provider known now is among those that delivered nothing (`lacking`).
pub fn exhausted(dht_answered: bool, known: &[PeerId], lacking: &BTreeSet<PeerId>) -> bool {
    dht_answered && !lacking.is_empty() && known.iter().all(|p| lacking.contains(p))
}
