//! The segment exchange of PROTOCOL.md 6: fetches each decided winner's manifest and segments
//! before its slot, from every provider it knows, earliest deadline first.
//!
//! # Layout
//! - [`planner`]: the policy as a sans-IO state machine on virtual time (which manifest and
//!   which blocks to ask of whom, and when; bans, retries, in-flight limits, PROTOCOL.md 12.2's
//!   `unavailable`), with its unit tests.
//! - `verify`: the store work, on blocking threads: manifests checked against the TrackRef and
//!   blocks hashed before they are stored.
//! - [`Fetcher`] (this file): the thin shell, one task that runs the planner, carries out its
//!   actions with the network [`Client`] and the store, and feeds the outcomes back.
//!
//! The policy in short (details in [`planner`]):
//! - Providers of a track: the peers this node is connected to plus the DHT's provider records
//!   of the manifest id, less peers that served a corrupt block recently.
//! - Want lists of up to [`BATCH`] ids go to peers with fewer than [`PER_PEER`] requests in
//!   flight; the most urgent block (segment i of slot s is due at `start(s) + i * segment_ms`)
//!   is always asked for first. "Don't have" moves a block to the next provider; a failed or
//!   timed-out request puts its blocks back for anyone else.
//! - Every block is hashed before it is stored; a mismatch drops it, bans the sender from the
//!   exchange for [`BAN`], reports it, and asks another provider.
//! - Progress is reported as blocks arrive; a finished track is reported complete and
//!   announced as a provider record (cross-seeding).
//! - A track can be wanted ahead of finality (the node's own decision names it) and forgotten
//!   when finality chooses another: its blocks still to fetch leave the queue unless another
//!   wanted track lists them.
//! - PROTOCOL.md 12.2: a track whose every known provider (the proposer hint, the DHT's
//!   providers, the connected peers) was asked for its manifest or segments and delivered
//!   nothing, or whose manifest was refused, is reported [`FetchEvent::Unavailable`] once: the
//!   driver then reports the slot `unavailable` to consensus instead of nothing played.

use std::collections::BTreeSet;
use std::time::Duration;

use chorus_consensus::{Hash32, TrackRef};
use chorus_media::store::BlockStore;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use libp2p::PeerId;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::net::Client;
use crate::net::protocol::{SyncRequest, SyncResponse};
use planner::{Action, BlocksOutcome, Local, ManifestOutcome, Planner, Want};

pub mod planner;
#[cfg(test)]
mod tests;
mod verify;

/// Ids per want list.
pub const BATCH: usize = 16;
/// Want lists in flight per peer.
pub const PER_PEER: usize = 2;
/// How long a peer that served a corrupt block is left out of the exchange.
pub const BAN: Duration = Duration::from_secs(600);
/// What the driver asks of the fetcher.
// `Want` carries a whole TrackRef: a few commands per slot, each moved once, so boxing it
// would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
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
    /// `track` (by `track_hash`) is no longer wanted: a likely winner fetched ahead of
    /// finality lost. Its blocks still to fetch are dropped unless another wanted track lists
    /// them, and nothing more is reported of it (no `Unavailable`). A track that is wanted for
    /// another slot must not be forgotten; one not wanted changes nothing.
    Forget {
        /// The track's `track_hash`.
        track: Hash32,
    },
}

/// What the fetcher reports.
#[derive(Debug)]
pub enum FetchEvent {
    /// Part of a track is in the store: sent once its manifest is held and after each answer
    /// that brought blocks of it, until [`FetchEvent::Complete`] (which means all are held).
    Progress {
        /// The track's `track_hash`.
        track: Hash32,
        /// Segments held (by position in the manifest).
        held: u64,
        /// Segments the manifest lists.
        total: u64,
    },
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

/// Segments of `track` in the store, and in its manifest (None: no valid manifest held). A
/// blocking read, for a node starting up: what it already holds plays from the first slot
/// without waiting for the exchange to say so.
pub fn held_segments(store: &BlockStore, track: &TrackRef, segment_ms: u64) -> Option<(u64, u64)> {
    match verify::read_local(store, track, 0, segment_ms) {
        planner::Local::Held(c) => Some((c.held.len() as u64, c.segments.len() as u64)),
        _ => None,
    }
}

/// An outcome of the shell's work, for the planner.
enum Outcome {
    Local {
        track: Hash32,
        local: Local,
    },
    Providers {
        track: Hash32,
        peers: Vec<PeerId>,
    },
    Manifest {
        track: Hash32,
        peer: PeerId,
        outcome: ManifestOutcome,
    },
    Blocks {
        peer: PeerId,
        ids: Vec<Hash32>,
        outcome: BlocksOutcome,
    },
}

/// The fetch task: the [`Planner`] run against the network and the store.
pub struct Fetcher {
    client: Client,
    store: BlockStore,
    events: mpsc::Sender<FetchEvent>,
    /// Requests, DHT queries and store work under way.
    work: FuturesUnordered<BoxFuture<'static, Outcome>>,
    /// The connected peers the planner was last told of.
    connected: BTreeSet<PeerId>,
    /// The peers reached only through a relay it was last told of.
    relayed: BTreeSet<PeerId>,
    /// The LAN peers and hubs last told to the planner.
    fast: (BTreeSet<PeerId>, BTreeSet<PeerId>),
}

impl Fetcher {
    /// A fetcher that stores into `store` and reports on `events`.
    pub fn new(client: Client, store: BlockStore, events: mpsc::Sender<FetchEvent>) -> Fetcher {
        Fetcher {
            client,
            store,
            events,
            work: FuturesUnordered::new(),
            connected: BTreeSet::new(),
            relayed: BTreeSet::new(),
            fast: (BTreeSet::new(), BTreeSet::new()),
        }
    }

    /// Runs until the command channel closes.
    pub async fn run(self, commands: mpsc::Receiver<FetchCommand>) {
        self.run_until(commands, CancellationToken::new()).await;
    }

    /// Runs until the command channel closes or `shutdown` fires, whichever comes first; work
    /// under way is dropped.
    pub async fn run_until(
        mut self,
        mut commands: mpsc::Receiver<FetchCommand>,
        shutdown: CancellationToken,
    ) {
        let epoch = Instant::now();
        let mut planner = Planner::new(Duration::ZERO);
        loop {
            if !self.execute(&mut planner, &shutdown).await {
                return;
            }
            let wake = planner.poll_timeout().map(|t| epoch + t);
            tokio::select! {
                () = shutdown.cancelled() => return,
                command = commands.recv() => match command {
                    Some(command) => handle_command(&mut planner, epoch.elapsed(), command),
                    None => return,
                },
                Some(outcome) = self.work.next(), if !self.work.is_empty() => {
                    feed(&mut planner, epoch.elapsed(), outcome);
                }
                () = sleep_until(wake) => {
                    self.refresh_peers(&mut planner).await;
                    planner.handle_timeout(epoch.elapsed());
                }
            }
        }
    }

    /// Carries out the planner's actions; false once `shutdown` fired while reporting.
    async fn execute(&mut self, planner: &mut Planner, shutdown: &CancellationToken) -> bool {
        while let Some(action) = planner.poll_action() {
            match action {
                Action::ReadStore {
                    track,
                    slot,
                    segment_ms,
                } => self.read_store(track, slot, segment_ms),
                Action::AskProviders { track, manifest_id } => {
                    let client = self.client.clone();
                    let key = manifest_id.as_bytes().to_vec();
                    self.work.push(
                        async move {
                            let peers = client.providers(key).await;
                            Outcome::Providers { track, peers }
                        }
                        .boxed(),
                    );
                }
                Action::RequestManifest {
                    peer,
                    track,
                    slot,
                    segment_ms,
                } => self.request_manifest(peer, track, slot, segment_ms),
                Action::Want { peer, ids, track } => self.want(peer, ids, track),
                Action::Provide { manifest_id } => {
                    self.client.provide(manifest_id.as_bytes().to_vec()).await;
                }
                Action::Report(event) => {
                    tokio::select! {
                        () = shutdown.cancelled() => return false,
                        // A driver that has gone away wants no more reports.
                        _ = self.events.send(event) => {}
                    }
                }
            }
        }
        true
    }

    /// Tells the planner which peers connected or left since the last refresh.
    async fn refresh_peers(&mut self, planner: &mut Planner) {
        // Blocks go over direct connections only: a peer reached through a relay is no
        // provider until a hole is punched.
        let info = self.client.info().await;
        let now: BTreeSet<PeerId> = info.direct.into_iter().collect();
        let relayed: BTreeSet<PeerId> = info
            .connected
            .into_iter()
            .filter(|p| !now.contains(p))
            .collect();
        if relayed != self.relayed {
            planner.handle_relayed(relayed.clone());
            self.relayed = relayed;
        }
        let fast = (info.lan, info.hubs);
        if fast != self.fast {
            planner.handle_fast_peers(fast.0.clone(), fast.1.clone());
            self.fast = fast;
        }
        for peer in now.difference(&self.connected) {
            planner.handle_connected(*peer);
        }
        for peer in self.connected.difference(&now) {
            planner.handle_disconnected(*peer);
        }
        self.connected = now;
    }

    fn read_store(&mut self, track: TrackRef, slot: u64, segment_ms: u64) {
        let store = self.store.clone();
        self.work.push(
            async move {
                let hash = track.track_hash;
                let local = tokio::task::spawn_blocking(move || {
                    verify::read_local(&store, &track, slot, segment_ms)
                })
                .await
                .unwrap_or(Local::Absent);
                Outcome::Local { track: hash, local }
            }
            .boxed(),
        );
    }

    fn request_manifest(&mut self, peer: PeerId, track: TrackRef, slot: u64, segment_ms: u64) {
        let client = self.client.clone();
        let store = self.store.clone();
        self.work.push(
            async move {
                let hash = track.track_hash;
                let manifest_id = track.manifest_id;
                let outcome = match client
                    .sync(peer, SyncRequest::Manifest { manifest_id })
                    .await
                {
                    Ok(SyncResponse::Manifest(Some(bytes))) => {
                        let bytes = bytes.into_vec();
                        if Hash32::digest(&bytes) == manifest_id {
                            tokio::task::spawn_blocking(move || {
                                verify::accept_manifest(
                                    &store, &track, slot, segment_ms, peer, &bytes,
                                )
                            })
                            .await
                            .unwrap_or(ManifestOutcome::NotStored)
                        } else {
                            ManifestOutcome::Corrupt
                        }
                    }
                    Ok(SyncResponse::Manifest(None)) => {
                        debug!("peer {peer} does not have manifest {manifest_id}");
                        ManifestOutcome::Missing
                    }
                    Ok(other) => {
                        debug!("manifest request to {peer} got an unexpected answer {other:?}");
                        ManifestOutcome::Failed
                    }
                    Err(e) => {
                        debug!("manifest request to {peer} failed: {e}");
                        ManifestOutcome::Failed
                    }
                };
                Outcome::Manifest {
                    track: hash,
                    peer,
                    outcome,
                }
            }
            .boxed(),
        );
    }

    fn want(&mut self, peer: PeerId, ids: Vec<Hash32>, track: Option<Hash32>) {
        let client = self.client.clone();
        let store = self.store.clone();
        self.work.push(
            async move {
                let outcome = match client.want(peer, ids.clone(), track).await {
                    Ok(have) => {
                        debug!(
                            "want list of {} to {peer}: {} blocks, {} later, {} don't have, referrals {:?}",
                            ids.len(),
                            have.blocks.len(),
                            have.later.len(),
                            have.dont_have.len(),
                            have.referrals
                        );
                        let asked = ids.clone();
                        tokio::task::spawn_blocking(move || {
                            verify::verify_and_store(&store, &asked, track, have)
                        })
                        .await
                        .map_or(BlocksOutcome::Failed, BlocksOutcome::Answered)
                    }
                    Err(e) => {
                        debug!("want list to {peer} failed: {e}");
                        BlocksOutcome::Failed
                    }
                };
                Outcome::Blocks { peer, ids, outcome }
            }
            .boxed(),
        );
    }
}

/// Hands a command of the driver to the planner.
fn handle_command(planner: &mut Planner, now: Duration, command: FetchCommand) {
    match command {
        FetchCommand::Want {
            slot,
            track,
            start_ms,
            segment_ms,
            hint,
        } => planner.handle_want(
            now,
            Want {
                slot,
                track,
                start_ms,
                segment_ms,
                hint,
            },
        ),
        FetchCommand::Forget { track } => planner.handle_forget(track),
    }
}

/// Hands an outcome of the shell's work to the planner.
fn feed(planner: &mut Planner, now: Duration, outcome: Outcome) {
    match outcome {
        Outcome::Local { track, local } => planner.handle_held(now, track, local),
        Outcome::Providers { track, peers } => planner.handle_providers(track, peers),
        Outcome::Manifest {
            track,
            peer,
            outcome,
        } => planner.handle_manifest(now, track, peer, outcome),
        Outcome::Blocks { peer, ids, outcome } => planner.handle_blocks(now, peer, &ids, outcome),
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
