//! The segment exchange of PROTOCOL.md 6, as one task: fetches each decided winner's manifest
//! and segments before its slot, from every provider it knows, earliest deadline first.
//!
//! - Providers of a track: the peers this node is connected to plus the DHT's provider records
//!   of the manifest id, less peers that served a corrupt block recently.
//! - Want lists of up to [`BATCH`] ids go to peers with fewer than [`PER_PEER`] requests in
//!   flight; the most urgent block (segment i of slot s is due at `start(s) + i * segment_ms`)
//!   is always asked for first. "Don't have" moves a block to the next provider; a failed or
//!   timed-out request puts its blocks back for anyone else.
//! - Every block is hashed before it is stored; a mismatch drops it, bans the sender from the
//!   exchange for [`BAN`], reports it, and asks another provider.
//! - A finished track is announced as a provider record (cross-seeding).
//! - PROTOCOL.md 12.2: a track whose every known provider (the proposer hint, the DHT's
//!   providers, the connected peers) was asked for its manifest or segments and delivered
//!   nothing, or whose manifest was refused, is reported [`FetchEvent::Unavailable`] once: the
//!   driver then reports the slot `unavailable` to consensus instead of nothing played.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use chorus_consensus::{Hash32, TrackRef};
use chorus_media::Manifest;
use chorus_media::store::BlockStore;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use libp2p::PeerId;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::net::protocol::{SyncRequest, SyncResponse};
use crate::net::{Client, RequestError};

/// Ids per want list.
pub const BATCH: usize = 16;
/// Want lists in flight per peer.
pub const PER_PEER: usize = 2;
/// How long a peer that served a corrupt block is left out of the exchange.
pub const BAN: Duration = Duration::from_secs(600);
/// Manifest requests in flight per track.
const MANIFEST_PARALLEL: usize = 3;
/// How often providers and "don't have" answers are refreshed.
const REFRESH: Duration = Duration::from_secs(1);

/// What the driver asks of the fetcher.
#[derive(Debug)]
pub enum FetchCommand {
    /// Hold `track` by `start_ms`, the start of `slot`.
    Want {
        /// The slot it plays in.
        slot: u64,
        /// The track.
        track: TrackRef,
        /// `start(slot)`, network time ms.
        start_ms: u64,
        /// `rules.segment_ms`.
        segment_ms: u64,
        /// A peer known to hold it (the winning proposal's author).
        hint: Option<PeerId>,
    },
}

/// What the fetcher reports.
#[derive(Debug)]
pub enum FetchEvent {
    /// Every block of a track is in the store.
    Complete {
        /// The track.
        track: TrackRef,
        /// Blocks fetched from peers (0 when all were already held).
        fetched: usize,
        /// Bytes fetched.
        bytes: u64,
        /// From the first request to the last block.
        elapsed: Duration,
    },
    /// PROTOCOL.md 12.2: every provider known for a track (the proposer hint, the DHT's
    /// providers and the connected peers, less those banned for corrupt blocks) was asked for
    /// its manifest or segments and none delivered them (don't have, no manifest, a failed or
    /// timed-out request, a corrupt block), or its manifest was refused. Sent once per track;
    /// the fetcher keeps trying, so `Complete` may still follow.
    Unavailable {
        /// The track's `track_hash`.
        track: Hash32,
        /// The slot it was first wanted for.
        slot: u64,
        /// Peers asked that did not deliver (0 for a manifest refused before any was asked).
        asked: usize,
        /// Its manifest was refused (logged `manifest_refused`).
        refused: bool,
    },
    /// A peer served bytes that do not hash to the id asked for.
    Corrupt {
        /// The peer.
        peer: PeerId,
        /// The block.
        block: Hash32,
    },
}

struct TrackFetch {
    track: TrackRef,
    /// The slot it was first wanted for (for the log).
    slot: u64,
    /// Its manifest broke the rules or contradicted the TrackRef: never asked for again.
    refused: bool,
    start_ms: u64,
    segment_ms: u64,
    /// Segment ids in order, once the manifest is held.
    segments: Option<Vec<Hash32>>,
    missing: usize,
    manifest_tried: HashSet<PeerId>,
    manifest_in_flight: usize,
    /// Peers known to hold the track: the hint, DHT providers, peers that sent the manifest.
    holders: Vec<PeerId>,
    dht_asked: Option<Instant>,
    /// The DHT answered a providers query for it at least once.
    dht_answered: bool,
    /// Peers asked for its manifest or a block that delivered nothing (no manifest, don't
    /// have, a failure, a corrupt block), since it was first wanted: never cleared (12.2).
    lacking: HashSet<PeerId>,
    /// `FetchEvent::Unavailable` was sent for it.
    unavailable_sent: bool,
    started: Instant,
    fetched: usize,
    bytes: u64,
}

struct BlockState {
    track: Hash32,
    due_ms: u64,
    dont_have: HashSet<PeerId>,
    in_flight: Option<PeerId>,
}

enum Outcome {
    Manifest {
        track: Hash32,
        peer: PeerId,
        result: Result<Option<Vec<u8>>, String>,
    },
    Want {
        peer: PeerId,
        ids: Vec<Hash32>,
        result: Result<Received, RequestError>,
    },
    Providers {
        track: Hash32,
        peers: Vec<PeerId>,
    },
}

/// The verified result of one want list.
#[derive(Default)]
struct Received {
    stored: Vec<(Hash32, usize)>,
    corrupt: Vec<Hash32>,
    /// Not held, and held but left out ("later"): both go to the next provider.
    dont_have: Vec<Hash32>,
    /// Held but left out: the peer is no provider that lacks them.
    later: Vec<Hash32>,
    failed_store: Vec<(Hash32, String)>,
}

/// The fetch task's state.
pub struct Fetcher {
    client: Client,
    store: BlockStore,
    events: mpsc::Sender<FetchEvent>,
    tracks: BTreeMap<Hash32, TrackFetch>,
    blocks: HashMap<Hash32, BlockState>,
    /// Pending blocks by (due, id): the earliest deadline first.
    queue: BTreeSet<(u64, Hash32)>,
    in_flight: HashMap<PeerId, usize>,
    banned: HashMap<PeerId, Instant>,
    connected: Vec<PeerId>,
    work: FuturesUnordered<BoxFuture<'static, Outcome>>,
}

impl Fetcher {
    /// A fetcher that stores into `store` and reports on `events`.
    pub fn new(client: Client, store: BlockStore, events: mpsc::Sender<FetchEvent>) -> Fetcher {
        Fetcher {
            client,
            store,
            events,
            tracks: BTreeMap::new(),
            blocks: HashMap::new(),
            queue: BTreeSet::new(),
            in_flight: HashMap::new(),
            banned: HashMap::new(),
            connected: Vec::new(),
            work: FuturesUnordered::new(),
        }
    }

    /// Runs until the command channel closes.
    pub async fn run(mut self, mut commands: mpsc::Receiver<FetchCommand>) {
        let mut tick = tokio::time::interval(REFRESH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(c) => self.on_command(c).await,
                    None => return,
                },
                Some(outcome) = self.work.next(), if !self.work.is_empty() => {
                    self.on_outcome(outcome).await;
                }
                _ = tick.tick() => self.refresh().await,
            }
            self.schedule();
        }
    }

    async fn on_command(&mut self, command: FetchCommand) {
        let FetchCommand::Want {
            slot,
            track,
            start_ms,
            segment_ms,
            hint,
        } = command;
        if let Some(t) = self.tracks.get_mut(&track.track_hash) {
            if start_ms < t.start_ms {
                t.start_ms = start_ms;
                // Earlier deadlines for blocks still pending.
                if let Some(segments) = t.segments.clone() {
                    self.enqueue(&track.track_hash, &segments, start_ms, segment_ms);
                }
            }
            return;
        }
        let mut fetch = TrackFetch {
            track: track.clone(),
            slot,
            refused: false,
            start_ms,
            segment_ms,
            segments: None,
            missing: 0,
            manifest_tried: HashSet::new(),
            manifest_in_flight: 0,
            holders: hint.into_iter().collect(),
            dht_asked: None,
            dht_answered: false,
            lacking: HashSet::new(),
            unavailable_sent: false,
            started: Instant::now(),
            fetched: 0,
            bytes: 0,
        };
        let manifest_id = media_id(&track.manifest_id);
        if let Ok(bytes) = self.store.get(&manifest_id) {
            let checked = claimed_segments(&bytes, &track).and_then(|m| {
                m.check_claim(track.duration_ms, track.segment_count, segment_ms)
                    .map(|()| m)
            });
            match checked {
                Ok(m) => fetch.segments = Some(segment_ids(&m)),
                Err(e) => {
                    // Held manifest bytes are whatever the id names; a TrackRef that claims
                    // another duration or segment count for them lies about the schedule.
                    warn!(event = "manifest_refused", track_hash = %track.track_hash, slot, reason = %e,
                        "refused the manifest of \"{}\" (slot {slot}): {e}; the track will not be fetched", track.title);
                    fetch.refused = true;
                }
            }
        }
        let segments = fetch.segments.clone();
        let refused = fetch.refused;
        self.tracks.insert(track.track_hash, fetch);
        match segments {
            Some(segments) => self.manifest_ready(track.track_hash, segments).await,
            None => self.ask_dht(track.track_hash),
        }
        if refused {
            self.check_unavailable(track.track_hash).await;
        }
    }

    /// PROTOCOL.md 12.2: reports `track` unavailable once every known provider was asked and
    /// delivered nothing, or its manifest was refused.
    async fn check_unavailable(&mut self, track: Hash32) {
        let Some(t) = self.tracks.get(&track) else {
            return;
        };
        if t.unavailable_sent {
            return;
        }
        let known = self.candidates(t);
        if !(t.refused || exhausted(t.dht_answered, &known, &t.lacking)) {
            return;
        }
        let (slot, asked, refused) = (t.slot, t.lacking.len(), t.refused);
        warn!(event = "unavailable", track_hash = %track, slot, asked, refused,
            "\"{}\" (slot {slot}) is unavailable: {}", t.track.title,
            if refused { "its manifest was refused".to_owned() } else { format!("each of the {asked} providers known was asked and delivered nothing") });
        if let Some(t) = self.tracks.get_mut(&track) {
            t.unavailable_sent = true;
        }
        let _ = self
            .events
            .send(FetchEvent::Unavailable {
                track,
                slot,
                asked,
                refused,
            })
            .await;
    }

    /// Notes that `peer`, asked for something of `track`, delivered nothing.
    fn lacks(&mut self, track: &Hash32, peer: PeerId) {
        if let Some(t) = self.tracks.get_mut(track) {
            t.lacking.insert(peer);
        }
    }

    fn ask_dht(&mut self, track: Hash32) {
        let Some(t) = self.tracks.get_mut(&track) else {
            return;
        };
        t.dht_asked = Some(Instant::now());
        let client = self.client.clone();
        let key = t.track.manifest_id.as_bytes().to_vec();
        self.work.push(
            async move {
                let peers = client.providers(key).await;
                Outcome::Providers { track, peers }
            }
            .boxed(),
        );
    }

    /// The manifest is held: queue the segments not in the store.
    async fn manifest_ready(&mut self, track: Hash32, segments: Vec<Hash32>) {
        let store = self.store.clone();
        let ids = segments.clone();
        let missing: Vec<bool> = tokio::task::spawn_blocking(move || {
            ids.iter()
                .map(|id| !store.contains(&media_id(id)))
                .collect()
        })
        .await
        .unwrap_or_else(|_| vec![true; segments.len()]);
        let Some(t) = self.tracks.get_mut(&track) else {
            return;
        };
        t.segments = Some(segments.clone());
        t.missing = missing.iter().filter(|m| **m).count();
        let (start_ms, segment_ms) = (t.start_ms, t.segment_ms);
        let wanted: Vec<Hash32> = segments
            .iter()
            .zip(&missing)
            .filter(|(_, m)| **m)
            .map(|(id, _)| *id)
            .collect();
        for (i, id) in segments.iter().enumerate() {
            if missing[i] {
                self.blocks.entry(*id).or_insert(BlockState {
                    track,
                    due_ms: u64::MAX,
                    dont_have: HashSet::new(),
                    in_flight: None,
                });
            }
        }
        let _ = wanted;
        self.enqueue(&track, &segments, start_ms, segment_ms);
        self.check_complete(track).await;
    }

    fn enqueue(&mut self, track: &Hash32, segments: &[Hash32], start_ms: u64, segment_ms: u64) {
        for (i, id) in segments.iter().enumerate() {
            let Some(b) = self.blocks.get_mut(id) else {
                continue;
            };
            if b.track != *track {
                continue;
            }
            let due = start_ms.saturating_add(segment_ms.saturating_mul(i as u64));
            if due < b.due_ms {
                self.queue.remove(&(b.due_ms, *id));
                b.due_ms = due;
                if b.in_flight.is_none() {
                    self.queue.insert((due, *id));
                }
            }
        }
    }

    async fn check_complete(&mut self, track: Hash32) {
        let done = self
            .tracks
            .get(&track)
            .is_some_and(|t| t.segments.is_some() && t.missing == 0);
        if !done {
            return;
        }
        if let Some(t) = self.tracks.remove(&track) {
            self.client
                .provide(t.track.manifest_id.as_bytes().to_vec())
                .await;
            let _ = self
                .events
                .send(FetchEvent::Complete {
                    track: t.track,
                    fetched: t.fetched,
                    bytes: t.bytes,
                    elapsed: t.started.elapsed(),
                })
                .await;
        }
    }

    async fn refresh(&mut self) {
        self.connected = self.client.info().await.connected;
        let now = Instant::now();
        self.banned.retain(|_, until| *until > now);
        // Peers that had nothing may have fetched it since (cross-seeding): ask them again.
        for b in self.blocks.values_mut() {
            b.dont_have.clear();
        }
        let stale: Vec<Hash32> = self
            .tracks
            .iter()
            .filter(|(_, t)| {
                t.dht_asked
                    .is_none_or(|at| at.elapsed() > Duration::from_secs(5))
            })
            .map(|(h, _)| *h)
            .collect();
        for track in stale {
            if let Some(t) = self.tracks.get_mut(&track) {
                t.manifest_tried.clear();
            }
            self.ask_dht(track);
        }
    }

    /// Peers to ask for a track: those known to hold it first, then every connected peer.
    fn candidates(&self, track: &TrackFetch) -> Vec<PeerId> {
        let mut peers: Vec<PeerId> = track.holders.clone();
        for p in &self.connected {
            if !peers.contains(p) {
                peers.push(*p);
            }
        }
        peers.retain(|p| !self.banned.contains_key(p));
        peers
    }

    /// Peers to ask for blocks: the known holders when any is usable (connected, and has not
    /// lacked anything of the track), else every candidate.
    fn block_sources(&self, track: &TrackFetch) -> Vec<PeerId> {
        let holders: Vec<PeerId> = track
            .holders
            .iter()
            .filter(|p| !self.banned.contains_key(*p) && self.connected.contains(*p))
            .filter(|p| !track.lacking.contains(*p))
            .copied()
            .collect();
        if holders.is_empty() {
            self.candidates(track)
        } else {
            holders
        }
    }

    /// Sends what can be sent: manifests first, then want lists in deadline order.
    fn schedule(&mut self) {
        // Up to MANIFEST_PARALLEL peers at once, the likely holders first.
        let manifests: Vec<(Hash32, PeerId, Hash32)> = self
            .tracks
            .iter()
            .filter(|(_, t)| {
                t.segments.is_none() && !t.refused && t.manifest_in_flight < MANIFEST_PARALLEL
            })
            .flat_map(|(h, t)| {
                self.candidates(t)
                    .into_iter()
                    .filter(|p| !t.manifest_tried.contains(p))
                    .take(MANIFEST_PARALLEL - t.manifest_in_flight)
                    .map(|peer| (*h, peer, t.track.manifest_id))
                    .collect::<Vec<_>>()
            })
            .collect();
        for (track, peer, manifest_id) in manifests {
            if let Some(t) = self.tracks.get_mut(&track) {
                t.manifest_in_flight += 1;
                t.manifest_tried.insert(peer);
            }
            let client = self.client.clone();
            self.work.push(
                async move {
                    let result = match client
                        .sync(peer, SyncRequest::Manifest { manifest_id })
                        .await
                    {
                        Ok(SyncResponse::Manifest(m)) => Ok(m.map(|b| b.into_vec())),
                        Ok(other) => Err(format!("unexpected answer {other:?}")),
                        Err(e) => Err(e.to_string()),
                    };
                    Outcome::Manifest {
                        track,
                        peer,
                        result,
                    }
                }
                .boxed(),
            );
        }

        // Want lists: walk the queue in deadline order, giving each block to the first peer
        // that may have it and has room.
        let mut lists: BTreeMap<PeerId, Vec<Hash32>> = BTreeMap::new();
        let mut taken = Vec::new();
        let candidates: HashMap<Hash32, Vec<PeerId>> = self
            .tracks
            .iter()
            .map(|(h, t)| (*h, self.block_sources(t)))
            .collect();
        for (due, id) in self.queue.iter() {
            let Some(b) = self.blocks.get(id) else {
                continue;
            };
            let Some(peers) = candidates.get(&b.track) else {
                continue;
            };
            // Spread load: prefer the peer with the fewest requests in flight.
            let choice = peers
                .iter()
                .filter(|p| !b.dont_have.contains(*p))
                .filter(|p| {
                    let busy = self.in_flight.get(*p).copied().unwrap_or(0);
                    let open = lists.get(*p).map_or(0, |l| l.len());
                    busy < PER_PEER && open < BATCH
                })
                .min_by_key(|p| {
                    (
                        self.in_flight.get(*p).copied().unwrap_or(0),
                        lists.get(*p).map_or(0, |l| l.len()),
                    )
                })
                .copied();
            if let Some(peer) = choice {
                lists.entry(peer).or_default().push(*id);
                taken.push((*due, *id, peer));
            }
        }
        for (due, id, peer) in taken {
            self.queue.remove(&(due, id));
            if let Some(b) = self.blocks.get_mut(&id) {
                b.in_flight = Some(peer);
            }
        }
        for (peer, ids) in lists {
            *self.in_flight.entry(peer).or_default() += 1;
            let client = self.client.clone();
            let store = self.store.clone();
            self.work.push(
                async move {
                    let result = match client.want(peer, ids.clone()).await {
                        Ok(have) => {
                            let asked = ids.clone();
                            tokio::task::spawn_blocking(move || {
                                verify_and_store(&store, &asked, have)
                            })
                            .await
                            .map_err(|e| RequestError::Failed {
                                peer,
                                reason: e.to_string(),
                            })
                        }
                        Err(e) => Err(e),
                    };
                    Outcome::Want { peer, ids, result }
                }
                .boxed(),
            );
        }
    }

    async fn on_outcome(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Providers { track, peers } => {
                if let Some(t) = self.tracks.get_mut(&track) {
                    t.dht_answered = true;
                    for p in peers {
                        if !t.holders.contains(&p) {
                            t.holders.push(p);
                        }
                    }
                }
                self.check_unavailable(track).await;
            }
            Outcome::Manifest {
                track,
                peer,
                result,
            } => {
                let Some(t) = self.tracks.get_mut(&track) else {
                    return;
                };
                t.manifest_in_flight = t.manifest_in_flight.saturating_sub(1);
                let manifest_id = t.track.manifest_id;
                let have = t.segments.is_some();
                match result {
                    Ok(Some(bytes)) if chorus_consensus::Hash32::digest(&bytes) == manifest_id => {
                        if !t.holders.contains(&peer) {
                            t.holders.push(peer);
                        }
                        if have {
                            return;
                        }
                        let checked = claimed_segments(&bytes, &t.track).and_then(|m| {
                            m.check_claim(t.track.duration_ms, t.track.segment_count, t.segment_ms)
                                .map(|()| m)
                        });
                        match checked {
                            Ok(m) => {
                                if let Err(e) =
                                    self.store.put_with_id(media_id(&manifest_id), &bytes)
                                {
                                    warn!(
                                        event = "store_error",
                                        "cannot store the manifest of {}: {e}", t.track.title
                                    );
                                    return;
                                }
                                let segments = segment_ids(&m);
                                self.manifest_ready(track, segments).await;
                            }
                            Err(e) => {
                                // The bytes hash to the id the winning proposal named: the
                                // proposer itself wrote them. Nobody can serve better ones, so
                                // the track is given up (its slot plays silence) and the rest
                                // of the exchange goes on.
                                warn!(event = "manifest_refused", peer = %peer,
                                    track_hash = %t.track.track_hash, slot = t.slot, reason = %e,
                                    "refused the manifest of \"{}\" (slot {}) from {peer}: {e}; the track will not be fetched",
                                    t.track.title, t.slot);
                                t.refused = true;
                                self.check_unavailable(track).await;
                            }
                        }
                    }
                    Ok(Some(_)) => {
                        self.lacks(&track, peer);
                        self.ban(peer, manifest_id).await;
                        self.check_unavailable(track).await;
                    }
                    Ok(None) => {
                        debug!("peer {peer} does not have manifest {manifest_id}");
                        self.lacks(&track, peer);
                        self.check_unavailable(track).await;
                    }
                    Err(e) => {
                        debug!("manifest request to {peer} failed: {e}");
                        self.lacks(&track, peer);
                        self.check_unavailable(track).await;
                    }
                }
            }
            Outcome::Want { peer, ids, result } => {
                if let Some(n) = self.in_flight.get_mut(&peer) {
                    *n = n.saturating_sub(1);
                }
                let received = match result {
                    Ok(r) => r,
                    Err(e) => {
                        debug!("want list to {peer} failed: {e}");
                        let tracks: BTreeSet<Hash32> = ids
                            .iter()
                            .filter_map(|id| self.blocks.get(id).map(|b| b.track))
                            .collect();
                        for id in &ids {
                            self.requeue(id, Some(peer));
                        }
                        for track in tracks {
                            self.lacks(&track, peer);
                            self.check_unavailable(track).await;
                        }
                        return;
                    }
                };
                let mut touched = BTreeSet::new();
                for (id, len) in &received.stored {
                    if let Some(b) = self.blocks.remove(id) {
                        self.queue.remove(&(b.due_ms, *id));
                        if let Some(t) = self.tracks.get_mut(&b.track) {
                            t.missing = t.missing.saturating_sub(1);
                            t.fetched += 1;
                            t.bytes += *len as u64;
                            touched.insert(b.track);
                        }
                    }
                }
                for id in &received.corrupt {
                    self.ban(peer, *id).await;
                }
                for (id, e) in &received.failed_store {
                    warn!(event = "store_error", block = %id, "cannot store block {id}: {e}");
                }
                let answered: HashSet<Hash32> = received.stored.iter().map(|(id, _)| *id).collect();
                let mut lacked = BTreeSet::new();
                for id in &ids {
                    if answered.contains(id) {
                        continue;
                    }
                    let lacks = received.dont_have.contains(id) || received.corrupt.contains(id);
                    // "Later" means held: that peer still may deliver (12.2).
                    if lacks
                        && !received.later.contains(id)
                        && let Some(b) = self.blocks.get(id)
                    {
                        lacked.insert(b.track);
                    }
                    self.requeue(id, lacks.then_some(peer));
                }
                for track in touched {
                    self.check_complete(track).await;
                }
                for track in lacked {
                    self.lacks(&track, peer);
                    self.check_unavailable(track).await;
                }
            }
        }
    }

    fn requeue(&mut self, id: &Hash32, lacks: Option<PeerId>) {
        if let Some(b) = self.blocks.get_mut(id) {
            b.in_flight = None;
            if let Some(p) = lacks {
                b.dont_have.insert(p);
            }
            self.queue.insert((b.due_ms, *id));
        }
    }

    async fn ban(&mut self, peer: PeerId, block: Hash32) {
        self.banned.insert(peer, Instant::now() + BAN);
        let _ = self.events.send(FetchEvent::Corrupt { peer, block }).await;
    }
}

/// PROTOCOL.md 12.2: whether a track was asked of every known provider without success: the
/// DHT has answered (so its providers are among `known`), at least one peer was asked, and
/// every provider known now is among those that delivered nothing (`lacking`).
fn exhausted(dht_answered: bool, known: &[PeerId], lacking: &HashSet<PeerId>) -> bool {
    dht_answered && !lacking.is_empty() && known.iter().all(|p| lacking.contains(p))
}

/// Hashes every block received before storing it; only ids that were asked for are taken.
fn verify_and_store(
    store: &BlockStore,
    asked: &[Hash32],
    have: crate::net::protocol::Have,
) -> Received {
    let mut received = Received {
        dont_have: have.dont_have,
        later: have.later,
        ..Received::default()
    };
    received.dont_have.extend(received.later.iter().copied());
    for block in have.blocks {
        if !asked.contains(&block.id) {
            continue;
        }
        let actual = chorus_consensus::Hash32::digest(&block.data);
        if actual != block.id {
            received.corrupt.push(block.id);
            continue;
        }
        match store.put_fetched(media_id(&block.id), &block.data) {
            Ok(()) => received.stored.push((block.id, block.data.len())),
            Err(e) => received.failed_store.push((block.id, e.to_string())),
        }
    }
    received
}

/// Parses a manifest reading no more segments than the TrackRef claims (plus the one of
/// tolerance admissibility allows): a manifest listing thousands is refused unread.
fn claimed_segments(
    bytes: &[u8],
    track: &TrackRef,
) -> Result<Manifest, chorus_media::manifest::ManifestError> {
    let bound = usize::try_from(track.segment_count.saturating_add(1)).unwrap_or(usize::MAX);
    Manifest::parse_with_max_segments(bytes, bound.min(chorus_media::manifest::MAX_SEGMENTS))
}

/// The store's id type for a protocol id (both are SHA-256 digests).
pub fn media_id(id: &Hash32) -> chorus_media::Hash32 {
    chorus_media::Hash32(id.0)
}

fn segment_ids(m: &Manifest) -> Vec<Hash32> {
    m.segments.iter().map(|s| Hash32(s.id.0)).collect()
}

#[cfg(test)]
mod unavailable_tests {
    use super::*;

    #[test]
    fn unavailable_only_once_every_known_provider_delivered_nothing() {
        let peers: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
        let lacking = |n: usize| peers[..n].iter().copied().collect::<HashSet<PeerId>>();
        assert!(exhausted(true, &peers, &lacking(3)));
        // One provider not asked yet (or that may still deliver).
        assert!(!exhausted(true, &peers, &lacking(2)));
        // The DHT's providers are not known yet.
        assert!(!exhausted(false, &peers, &lacking(3)));
        // Nobody asked: no peer known is no proof.
        assert!(!exhausted(true, &[], &lacking(0)));
        // A peer that lacked it and went away still counts as asked.
        assert!(exhausted(true, &peers[1..], &lacking(3)));
        assert!(exhausted(true, &[], &lacking(1)));
    }
}
