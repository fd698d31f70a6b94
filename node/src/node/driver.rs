//! The driver: feeds the consensus state machine and follows the schedule. It holds no protocol
//! logic: gossip goes to `handle_message`, timers to `handle_timeout`, answers to
//! `handle_fetched` and `handle_chain`, and each `Action` becomes a network call, a fetch, a
//! write to disk or a log line.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Result;
use chorus_consensus::limits::GOSSIP_MAX_BYTES;
use chorus_consensus::{
    Action, Consensus, DecidedSlot, Envelope, FinalReport, ForkChoice, ForkReport, Hash32, Topic,
    TrackRef, Validation,
};
use chorus_media::ingest::Library;
use chorus_media::player::{Player, SlotPlan, TrackAudio, gain_db};
use libp2p::gossipsub::MessageAcceptance;
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::NodeConfig;
use super::snapshot::{self, PeerTime};
use crate::blacklist::{self, Blacklist};
use crate::clock::{Adjust, Clock, Estimator, Exchange};
use crate::fetch::{FetchCommand, FetchEvent, media_id};
use crate::live::LiveLog;
use crate::net::protocol::{CHAIN_BATCH, SyncRequest, SyncResponse};
use crate::net::{Client, Event};
use crate::retention::Retention;
use crate::state;
use chorus_media::player::TimeBase;

/// How often the time of each connected peer is sampled (`/chorus/time/1`).
const TIME_SAMPLE_EVERY: Duration = Duration::from_secs(2);

/// Answers of requests the driver sent, coming back from their tasks.
enum Answer {
    Proposals(Vec<Envelope>),
    Chain(PeerId, Result<Vec<DecidedSlot>, String>),
    Time(PeerId, Exchange),
}

/// Logs a listen address (and prints it on stdout for the operator to hand out).
pub fn log_listening(addr: &Multiaddr) {
    info!(event = "listening", address = %addr, "listening on {addr}");
    println!("address {addr}");
}

/// What the node plays in a slot.
#[derive(Debug, Clone, PartialEq)]
enum Playing {
    Winner,
    Substitute(Option<TrackRef>),
    /// No segment of the winner yet: waiting since (network time, ms).
    Waiting(u64),
    Missing,
}

pub struct Driver {
    config: NodeConfig,
    consensus: Consensus,
    client: Client,
    replay: Vec<Event>,
    events: mpsc::Receiver<Event>,
    fetch: mpsc::Sender<FetchCommand>,
    fetch_events: mpsc::Receiver<FetchEvent>,
    lib: Library,
    library: Vec<TrackRef>,
    clock: Arc<Clock>,
    snapshot: watch::Sender<serde_json::Value>,
    http_addr: SocketAddr,
    network_id: Hash32,
    keypair: Keypair,
    answers_tx: mpsc::Sender<Answer>,
    answers: mpsc::Receiver<Answer>,
    listen: Vec<Multiaddr>,
    connected: BTreeMap<PeerId, Multiaddr>,
    /// Tracks held in full (manifest and every segment).
    complete: BTreeSet<Hash32>,
    /// Tracks the fetcher reported unavailable (PROTOCOL.md 12.2: every known provider asked,
    /// nothing delivered, or the manifest refused): the number of peers asked, and whether the
    /// manifest was refused.
    unavailable: BTreeMap<Hash32, (usize, bool)>,
    /// Slots already asked of the fetcher.
    wanted: BTreeSet<u64>,
    /// The slot last started by the (null) player.
    current: Option<u64>,
    playing: BTreeMap<u64, Playing>,
    substitutes: BTreeMap<u64, Option<TrackRef>>,
    blacklist: Blacklist,
    blacklist_stamp: Option<SystemTime>,
    /// Proposal authors by proposal id, for the `final` log line.
    proposers: BTreeMap<Hash32, (u64, PeerId)>,
    times: Estimator,
    player: Arc<Player>,
    live: LiveLog,
    metrics: Arc<crate::metrics::Metrics>,
    playlist: watch::Sender<String>,
    /// The schedule last handed to the player.
    plans: Vec<SlotPlan>,
    corrupt: HashMap<PeerId, u64>,
    violations: u64,
    /// Violation lines under a budget (a flood must not flood the log).
    violation_log: crate::ratelog::LogBudget,
    store_bytes: u64,
    retention: Retention,
}

impl Driver {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: NodeConfig,
        keypair: Keypair,
        consensus: Consensus,
        client: Client,
        (replay, events): (Vec<Event>, mpsc::Receiver<Event>),
        fetch: mpsc::Sender<FetchCommand>,
        fetch_events: mpsc::Receiver<FetchEvent>,
        lib: Library,
        library: Vec<TrackRef>,
        clock: Arc<Clock>,
        snapshot: watch::Sender<serde_json::Value>,
        http_addr: SocketAddr,
        player: Arc<Player>,
        playlist: watch::Sender<String>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Driver {
        let (answers_tx, answers) = mpsc::channel(256);
        let network_id = *consensus.chain().network_id();
        let store_bytes = store_size(lib.store.root());
        Driver {
            blacklist_stamp: None,
            blacklist: Blacklist::default(),
            consensus,
            client,
            replay,
            events,
            fetch,
            fetch_events,
            lib,
            library,
            clock,
            snapshot,
            http_addr,
            network_id,
            keypair,
            answers_tx,
            answers,
            listen: Vec::new(),
            connected: BTreeMap::new(),
            complete: BTreeSet::new(),
            unavailable: BTreeMap::new(),
            wanted: BTreeSet::new(),
            current: None,
            playing: BTreeMap::new(),
            substitutes: BTreeMap::new(),
            proposers: BTreeMap::new(),
            times: Estimator::default(),
            player,
            live: LiveLog::load(&config.data_dir),
            metrics,
            playlist,
            plans: Vec::new(),
            corrupt: HashMap::new(),
            violations: 0,
            violation_log: crate::ratelog::LogBudget::new(10, Duration::from_secs(10)),
            store_bytes,
            retention: Retention::load(&config.data_dir),
            config,
        }
    }

    pub async fn run(mut self, shutdown: CancellationToken) -> Result<()> {
        for topic in [Topic::Consensus, Topic::Status] {
            self.client.subscribe(topic.name(&self.network_id)).await;
        }
        for event in std::mem::take(&mut self.replay) {
            match event {
                // Logged by the joiner already.
                Event::Listening(addr) => self.listen.push(addr),
                other => self.on_event(other).await,
            }
        }
        // PROTOCOL.md 6: announce every track held in full, the own library first.
        for track in &self.library {
            self.client
                .provide(track.manifest_id.as_bytes().to_vec())
                .await;
        }
        self.reload_blacklist(true);
        self.want_upcoming().await;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut time_tick = tokio::time::interval(TIME_SAMPLE_EVERY);
        time_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut garbage_tick = tokio::time::interval(Duration::from_millis(700));
        loop {
            let now = self.clock.now_ms();
            let next = [self.consensus.poll_timeout(), self.next_slot_start(now)]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(now + 1000);
            let wake = self.clock.instant_at(next);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                event = self.events.recv() => match event {
                    Some(e) => self.on_event(e).await,
                    None => break,
                },
                Some(answer) = self.answers.recv() => self.on_answer(answer),
                Some(e) = self.fetch_events.recv() => self.on_fetch_event(e).await,
                _ = tokio::time::sleep_until(wake) => {}
                _ = tick.tick() => {
                    self.advance_live();
                    self.check_waiting(self.clock.now_ms());
                    self.reload_blacklist(false);
                    self.publish_snapshot();
                }
                _ = time_tick.tick() => self.sample_times(),
                _ = garbage_tick.tick(), if self.config.garbage => self.send_garbage().await,
            }
            let now = self.clock.now_ms();
            self.consensus.handle_timeout(now);
            self.follow_schedule(now);
            self.drain_actions().await;
            self.update_player();
        }
        state::save_chain(&self.config.data_dir, self.consensus.chain())?;
        info!(event = "stopped", "node stopped");
        Ok(())
    }

    fn next_slot_start(&self, now: u64) -> Option<u64> {
        let chain = self.consensus.chain();
        match chain.slot_at(now) {
            Some(s) => chain.start(s + 1),
            None => chain.start(0).filter(|s| *s > now),
        }
    }

    async fn on_event(&mut self, event: Event) {
        match event {
            Event::Listening(addr) => {
                if !self.listen.contains(&addr) {
                    log_listening(&addr);
                    self.listen.push(addr);
                }
            }
            Event::Connected(peer, addr) => {
                info!(event = "peer_connected", peer = %peer, address = %addr, "connected to {peer} at {addr}");
                self.connected.insert(peer, addr);
                self.consensus.peer_connected(peer);
                self.save_peers();
                self.sample_time(peer);
            }
            Event::Disconnected(peer) => {
                info!(event = "peer_disconnected", peer = %peer, "disconnected from {peer}");
                self.connected.remove(&peer);
                self.consensus.peer_disconnected(&peer);
                self.times.remove(&peer);
            }
            Event::Gossip {
                id,
                source,
                topic,
                data,
            } => {
                let acceptance = self.on_gossip(source, &topic, &data);
                self.client.validate(id, source, acceptance).await;
            }
            Event::SyncRequest {
                peer,
                request,
                channel,
            } => {
                let response = self.answer_sync(peer, request);
                self.client.respond_sync(channel, response).await;
            }
        }
    }

    fn on_gossip(&mut self, source: PeerId, topic: &str, data: &[u8]) -> MessageAcceptance {
        let now = self.clock.now_ms();
        let ours = [Topic::Consensus, Topic::Status]
            .iter()
            .any(|t| t.name(&self.network_id) == topic);
        if !ours {
            return MessageAcceptance::Ignore;
        }
        let envelope = match Envelope::from_cbor(data, GOSSIP_MAX_BYTES) {
            Ok(e) => e,
            Err(e) => {
                self.violations += 1;
                self.metrics.violations.inc();
                if let Some(n) = self.violation_log.take(std::time::Instant::now()) {
                    warn!(event = "violation", peer = %source, reason = %e, "dropped gossip from {source}: {e}{}", crate::ratelog::left_out(n));
                }
                return MessageAcceptance::Reject;
            }
        };
        let id = envelope.id();
        let proposal_from = (envelope.kind == "proposal")
            .then(|| {
                envelope
                    .open_as::<chorus_consensus::Proposal>(GOSSIP_MAX_BYTES)
                    .ok()
            })
            .flatten()
            .map(|p| (p.slot, p.from));
        let verdict = self.consensus.handle_message(now, source, envelope);
        if verdict == Validation::Accept
            && let Some(entry) = proposal_from
        {
            self.proposers.insert(id, entry);
        }
        match verdict {
            Validation::Accept => MessageAcceptance::Accept,
            Validation::Ignore => MessageAcceptance::Ignore,
            Validation::Reject => MessageAcceptance::Reject,
        }
    }

    fn answer_sync(&self, peer: PeerId, request: SyncRequest) -> SyncResponse {
        debug!("sync request from {peer}: {request:?}");
        match request {
            SyncRequest::Genesis => {
                match chorus_bootstrap::load_genesis(&self.config.data_dir, Some(&self.network_id))
                {
                    Ok(Some(g)) => SyncResponse::Genesis(g.to_cbor()),
                    _ => SyncResponse::Unavailable("no genesis".into()),
                }
            }
            SyncRequest::Chain { from_slot } => {
                let chain = self.consensus.chain();
                let slots = chain.decided_slots();
                let first = from_slot.saturating_sub(chain.lookahead()) as usize;
                let out = slots
                    .iter()
                    .skip(first)
                    .take(CHAIN_BATCH)
                    .cloned()
                    .collect();
                SyncResponse::Chain(out)
            }
            SyncRequest::Proposals { slot, ids } => {
                let ids: Vec<Hash32> = ids.into_iter().take(64).collect();
                SyncResponse::Proposals(
                    self.consensus
                        .proposal_envelopes(slot, &ids)
                        .iter()
                        .map(|e| serde_bytes::ByteBuf::from(e.to_cbor()))
                        .collect(),
                )
            }
            SyncRequest::Manifest { manifest_id } => SyncResponse::Manifest(
                self.lib
                    .store
                    .get(&media_id(&manifest_id))
                    .ok()
                    .map(serde_bytes::ByteBuf::from),
            ),
        }
    }

    fn on_answer(&mut self, answer: Answer) {
        let now = self.clock.now_ms();
        match answer {
            Answer::Proposals(envelopes) => {
                for e in &envelopes {
                    if let Ok(p) = e.open_as::<chorus_consensus::Proposal>(GOSSIP_MAX_BYTES) {
                        self.proposers.insert(e.id(), (p.slot, p.from));
                    }
                }
                self.consensus.handle_fetched(now, envelopes);
            }
            Answer::Chain(peer, Ok(slots)) => {
                if let Err(e) = self.consensus.handle_chain(now, peer, slots) {
                    warn!(event = "chain_sync_failed", peer = %peer, "chain from {peer} not taken: {e}");
                }
            }
            Answer::Chain(peer, Err(e)) => {
                warn!(event = "chain_sync_failed", peer = %peer, "chain request to {peer} failed: {e}");
            }
            Answer::Time(peer, exchange) => {
                // Only a peer still directly connected is a time source, counted in the network
                // of its address (PROTOCOL.md 12.4); a late answer of a gone peer is dropped.
                let net = self
                    .connected
                    .get(&peer)
                    .and_then(|addr| crate::clock::SourceNet::of(addr, &peer));
                if let Some(net) = net {
                    if let crate::clock::Verdict::Dropped { reason, first } =
                        self.times.add(peer, net, exchange.sample())
                    {
                        let rejected = self.times.rejected().total();
                        if first {
                            warn!(event = "time_sample_refused", peer = %peer, reason = %reason,
                                "time sample from {peer} refused ({reason}); later ones from it are logged at debug level ({rejected} refused in all)");
                        } else {
                            debug!(event = "time_sample_refused", peer = %peer, reason = %reason,
                                "time sample from {peer} refused ({reason})");
                        }
                    }
                    if let Some(selection) = self.times.select() {
                        match self.clock.adjust(selection.offset_us) {
                            Adjust::Step { from_us, to_us } => {
                                info!(
                                    event = "clock_step",
                                    from_ms = from_us / 1000.0,
                                    to_ms = to_us / 1000.0,
                                    rule = ?selection.rule,
                                    "network time stepped: offset {:.3} ms -> {:.3} ms ({:?}: median of {} of {} sources in {} networks, this node included)",
                                    from_us / 1000.0,
                                    to_us / 1000.0,
                                    selection.rule,
                                    selection.agreeing,
                                    selection.sources,
                                    selection.networks
                                );
                            }
                            Adjust::Slew { .. } => {}
                        }
                    }
                    if let Some(r) = self.times.take_report() {
                        let false_echoes = self.clock.false_echoes();
                        info!(
                            event = "time_sources",
                            sources = r.sources,
                            networks = r.networks,
                            locked = r.locked,
                            refused_rtt_negative = r.rejected.negative_rtt,
                            refused_rtt_long = r.rejected.long_rtt,
                            refused_offset = r.rejected.beyond_bound,
                            false_echoes,
                            "time sources: {} counted in {} networks (this node included), {}; refused samples: {} negative round trip, {} round trip over 2 s, {} offset beyond 2000 ms; {false_echoes} answers with a false t0",
                            r.sources,
                            r.networks,
                            if r.locked { "locked" } else { "not locked yet" },
                            r.rejected.negative_rtt,
                            r.rejected.long_rtt,
                            r.rejected.beyond_bound
                        );
                    }
                }
            }
        }
    }

    async fn on_fetch_event(&mut self, event: FetchEvent) {
        match event {
            FetchEvent::Complete {
                track,
                fetched,
                bytes,
                elapsed,
            } => {
                self.store_bytes += bytes;
                self.metrics.fetch_bytes.inc_by(bytes);
                if fetched > 0 {
                    self.metrics.fetch_seconds.observe(elapsed.as_secs_f64());
                }
                if fetched > 0 {
                    info!(event = "fetched", track_hash = %track.track_hash, blocks = fetched, bytes, ms = elapsed.as_millis() as u64,
                        "fetched \"{}\": {fetched} blocks, {bytes} bytes in {} ms", track_name(&track), elapsed.as_millis());
                }
                self.complete.insert(track.track_hash);
                if !self
                    .library
                    .iter()
                    .any(|t| t.track_hash == track.track_hash)
                {
                    let chain = self.consensus.chain();
                    let last = (0..chain.len())
                        .rev()
                        .find(|s| {
                            chain
                                .winner(*s)
                                .is_some_and(|w| w.track_hash == track.track_hash)
                        })
                        .unwrap_or(0);
                    self.retention.touch(track.manifest_id, last);
                    if let Err(e) = self.retention.save() {
                        debug!("cannot save the retention record: {e}");
                    }
                }
                self.check_waiting(self.clock.now_ms());
            }
            FetchEvent::Unavailable {
                track,
                slot,
                asked,
                refused,
            } => {
                // The fetcher logged it. One entry per withheld winner; bounded all the same.
                if self.unavailable.len() >= 1024 {
                    self.unavailable.pop_first();
                }
                self.unavailable.insert(track, (asked, refused));
                // Reported at once, not only when the slot finds nothing to play: proposals
                // published before then (the window of slot + 5 opens at the slot's start) carry
                // `unavailable` rather than a claim to play the winner. Segments that still
                // arrive are played, and the report then follows what was played.
                let winner_here = self
                    .consensus
                    .chain()
                    .winner(slot)
                    .is_some_and(|w| w.track_hash == track);
                if winner_here && self.current.is_none_or(|c| slot >= c) {
                    self.consensus.report_unavailable(slot);
                }
            }
            FetchEvent::Corrupt { peer, block } => {
                *self.corrupt.entry(peer).or_default() += 1;
                self.metrics.corrupt_blocks.inc();
                self.publish_snapshot();
                warn!(event = "corrupt_block", peer = %peer, block = %block,
                    "peer {peer} sent block {block} with bytes that hash to something else: dropped, peer left out of the exchange for {} s, asking another provider",
                    crate::fetch::BAN.as_secs());
            }
        }
    }

    /// Samples every directly connected peer (relayed ones are no time sources).
    fn sample_times(&self) {
        for peer in self.connected.keys().copied() {
            self.sample_time(peer);
        }
    }

    /// One `/chorus/time/1` exchange with `peer`, answered into the estimator; none with a peer
    /// that is not a time source (not connected, or only through a relay). `t0` is the one this
    /// node recorded: the codec puts it into the answer (net/time_codec.rs), whatever the peer
    /// echoed.
    fn sample_time(&self, peer: PeerId) {
        let direct = self
            .connected
            .get(&peer)
            .is_some_and(|addr| crate::clock::SourceNet::of(addr, &peer).is_some());
        if !direct {
            return;
        }
        let client = self.client.clone();
        let tx = self.answers_tx.clone();
        crate::supervise::spawn("time sample", async move {
            match client.time(peer).await {
                Ok((pong, t3)) => {
                    let exchange = Exchange {
                        t0: pong.t0 as i64,
                        t1: pong.t1 as i64,
                        t2: pong.t2 as i64,
                        t3: t3 as i64,
                    };
                    let _ = tx.send(Answer::Time(peer, exchange)).await;
                }
                Err(e) => debug!("time sample from {peer} failed: {e}"),
            }
        });
    }

    fn save_peers(&self) {
        let addrs: Vec<String> = self
            .connected
            .iter()
            .filter(|(_, a)| {
                !a.iter()
                    .any(|p| matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
            })
            .map(|(p, a)| {
                a.clone()
                    .with(libp2p::multiaddr::Protocol::P2p(*p))
                    .to_string()
            })
            .collect();
        if let Err(e) = state::save_peers(&self.config.data_dir, &addrs) {
            debug!("{e:#}");
        }
    }

    /// Reloads the blacklist when its file changed (or `force`), and hands the hashes it
    /// catches among every track this node knows to the state machine.
    fn reload_blacklist(&mut self, force: bool) {
        let stamp = blacklist::stamp(&self.config.config_dir);
        if !force && stamp == self.blacklist_stamp {
            return;
        }
        self.blacklist_stamp = stamp;
        match Blacklist::load(&self.config.config_dir) {
            Ok(list) => {
                if !force || !list.rules.is_empty() {
                    info!(
                        event = "blacklist",
                        rules = list.rules.len(),
                        "blacklist loaded: {} rules",
                        list.rules.len()
                    );
                }
                self.blacklist = list;
                self.apply_blacklist();
            }
            Err(e) => warn!(
                event = "blacklist_invalid",
                "{e:#}; keeping the previous blacklist"
            ),
        }
    }

    fn apply_blacklist(&mut self) {
        let chain = self.consensus.chain();
        let known: Vec<TrackRef> = (0..chain.len())
            .filter_map(|s| chain.winner(s).cloned())
            .chain(self.library.iter().cloned())
            .collect();
        let hashes = self.blacklist.hashes(&known);
        self.consensus.set_blacklist(hashes);
    }

    /// The (null) player: at every slot start, plays what the slot holds and reports it.
    fn follow_schedule(&mut self, now: u64) {
        let Some(slot) = self.consensus.chain().slot_at(now) else {
            return;
        };
        if self.current == Some(slot) {
            return;
        }
        self.current = Some(slot);
        self.metrics.slot.set(slot as i64);
        self.reload_blacklist(false);
        self.enforce_budget(slot);
        let chain = self.consensus.chain();
        let Some(winner) = chain.winner(slot).cloned() else {
            return;
        };
        let start = chain.start(slot).unwrap_or(now);
        let position = now.saturating_sub(start);
        // PROTOCOL.md 1: every slot start moves each pending slot one phase on.
        let l = chain.lookahead();
        info!(
            event = "phase",
            slot,
            playing = slot,
            final_through = slot + l - 2,
            selection = slot + l - 1,
            proposal = slot + l,
            "phase slot={slot}: playing {slot}, final through {}, selection {}, proposal {}",
            slot + l - 2,
            slot + l - 1,
            slot + l
        );
        let (held, total) = self.segments_held(&winner);
        let playing = if let Some(sub) = self.substitutes.get(&slot) {
            Playing::Substitute(sub.clone())
        } else if held == 0 {
            Playing::Waiting(now)
        } else {
            Playing::Winner
        };
        // The status document and the live playlist show the new slot before the log says so.
        self.advance_live();
        self.playing.insert(slot, playing.clone());
        self.publish_snapshot();
        if matches!(playing, Playing::Winner) && self.unavailable.contains_key(&winner.track_hash) {
            // Reported unavailable early; it arrived after all.
            self.consensus.report_played(slot, Some(winner.track_hash));
        }
        match &playing {
            Playing::Winner => {
                info!(event = "playing", slot, track_hash = %winner.track_hash, track = %track_name(&winner), position_ms = position, segments_held = held, segments = total,
                    "playing slot={slot} track=\"{}\" position={position}ms segments={held}/{total}", track_name(&winner));
            }
            Playing::Substitute(sub) => {
                let (hash, name) = sub.as_ref().map_or((None, "silence".to_owned()), |t| {
                    (Some(t.track_hash), track_name(t))
                });
                info!(event = "playing", slot, track_hash = ?hash.map(|h| h.to_hex()), track = %name, substitute = true, consensus_track = %winner.track_hash,
                    "playing slot={slot} substitute \"{name}\" instead of the blacklisted \"{}\"", track_name(&winner));
            }
            Playing::Waiting(_) => {
                info!(event = "waiting", slot, track_hash = %winner.track_hash, "slot={slot} \"{}\": waiting for its segments", track_name(&winner));
            }
            Playing::Missing => {}
        }
        let keep_from = slot.saturating_sub(8);
        self.playing = self.playing.split_off(&keep_from);
        self.substitutes = self.substitutes.split_off(&keep_from);
        self.proposers.retain(|_, (s, _)| *s + 8 >= slot);
    }

    /// Hands the player the schedule from the slot before the current one on, when it changed:
    /// winners at their loudness gain, substitutes for blacklisted winners (silence when there
    /// is none).
    fn update_player(&mut self) {
        let chain = self.consensus.chain();
        let now = self.clock.now_ms();
        let from = match chain.slot_at(now) {
            Some(s) => s.saturating_sub(1),
            None if chain.start(0).is_some() => 0,
            None => return,
        };
        let target = chain.rules().target_lufs;
        let gap = chain.rules().gap_ms;
        let mut plans = Vec::new();
        for slot in from..chain.len() {
            let (Some(winner), Some(start_ms)) = (chain.winner(slot), chain.start(slot)) else {
                continue;
            };
            let end_ms = chain
                .start(slot + 1)
                .unwrap_or(start_ms + winner.duration_ms + gap);
            let track = match self.substitutes.get(&slot) {
                Some(sub) => sub.as_ref(),
                None => Some(winner),
            };
            plans.push(SlotPlan {
                slot,
                start_ms,
                end_ms,
                audio: track.map(|t| TrackAudio {
                    manifest_id: media_id(&t.manifest_id),
                    gain_db: gain_db(target, t.loudness_lufs),
                }),
            });
        }
        if plans != self.plans {
            self.plans = plans.clone();
            // The live playlist first: it lists the segment under the playhead before the
            // player can sound it.
            self.advance_live();
            self.player.schedule(plans);
        }
    }

    /// Lists the segments that started playing in the live playlist.
    fn advance_live(&mut self) {
        let now_us = self.clock.network_us(std::time::Instant::now());
        if self.live.advance(now_us, &self.plans, &self.lib.store) {
            self.playlist.send_replace(self.live.playlist());
        }
    }

    /// Evicts fetched tracks above the store budget; the own library and the slots
    /// `slot-3 ..= slot+5` are pinned.
    fn enforce_budget(&mut self, slot: u64) {
        let budget = self.config.store_budget_bytes;
        if self.store_bytes <= budget {
            return;
        }
        let chain = self.consensus.chain();
        let pinned: BTreeSet<Hash32> = (slot.saturating_sub(3)..=slot + 5)
            .filter_map(|k| chain.winner(k).map(|t| t.manifest_id))
            .chain(self.library.iter().map(|t| t.manifest_id))
            .collect();
        let evicted = self
            .retention
            .evict(&self.lib.store, &pinned, self.store_bytes, budget);
        if !evicted.tracks.is_empty() {
            self.store_bytes = self.store_bytes.saturating_sub(evicted.bytes);
            for m in &evicted.tracks {
                self.complete.retain(|h| {
                    chain
                        .decided_slots()
                        .iter()
                        .all(|d| d.track.manifest_id != *m || d.track.track_hash != *h)
                });
            }
            info!(
                event = "evicted",
                tracks = evicted.tracks.len(),
                bytes = evicted.bytes,
                store_bytes = self.store_bytes,
                budget,
                "store above its budget: evicted {} fetched tracks ({} bytes)",
                evicted.tracks.len(),
                evicted.bytes
            );
            let _ = self.retention.save();
        }
        if self.store_bytes > budget {
            warn!(
                event = "store_over_budget",
                store_bytes = self.store_bytes,
                budget,
                "the store holds {} bytes, above its budget of {budget}, and nothing more can be evicted (the own library and the coming slots are pinned)",
                self.store_bytes
            );
        }
    }

    /// A slot waiting for its first segment starts as soon as one arrives (at the current
    /// position, PROTOCOL.md 8), and counts as diverged when none came within one segment.
    fn check_waiting(&mut self, now: u64) {
        let Some(slot) = self.current else { return };
        let Some(Playing::Waiting(since)) = self.playing.get(&slot).cloned() else {
            return;
        };
        let chain = self.consensus.chain();
        let Some(winner) = chain.winner(slot).cloned() else {
            return;
        };
        let start = chain.start(slot).unwrap_or(now).max(since);
        let position = now.saturating_sub(chain.start(slot).unwrap_or(now));
        let (held, total) = self.segments_held(&winner);
        if held > 0 {
            if self.unavailable.contains_key(&winner.track_hash) {
                self.consensus.report_played(slot, Some(winner.track_hash));
            }
            info!(event = "playing", slot, track_hash = %winner.track_hash, track = %track_name(&winner), position_ms = position, segments_held = held, segments = total, late = true,
                "playing slot={slot} track=\"{}\" position={position}ms segments={held}/{total} (started late)", track_name(&winner));
            self.playing.insert(slot, Playing::Winner);
        } else if now > start + chain.rules().segment_ms {
            self.metrics.divergences.inc();
            if let Some(&(asked, refused)) = self.unavailable.get(&winner.track_hash) {
                // PROTOCOL.md 12.2: asked of every known provider, got nothing (or its
                // manifest was refused). Diverged for display, eligible all the same.
                self.consensus.report_unavailable(slot);
                let why = if refused {
                    "its manifest was refused".to_owned()
                } else {
                    format!("none of the {asked} peers asked had it")
                };
                warn!(event = "diverged", slot, reason = "unavailable", asked, refused, track_hash = %winner.track_hash,
                    "diverged slot={slot} reason=unavailable: no segment of \"{}\" arrived and {why}; reported unavailable (this node stays eligible)", track_name(&winner));
            } else {
                self.consensus.report_played(slot, None);
                warn!(event = "diverged", slot, reason = "not_fetched", track_hash = %winner.track_hash,
                    "diverged slot={slot} reason=not_fetched: no segment of \"{}\" arrived in time", track_name(&winner));
            }
            self.playing.insert(slot, Playing::Missing);
        }
    }

    fn segments_held(&self, track: &TrackRef) -> (u64, u64) {
        let total = track.segment_count;
        if self.complete.contains(&track.track_hash) {
            return (total, total);
        }
        let Ok(bytes) = self.lib.store.get(&media_id(&track.manifest_id)) else {
            return (0, total);
        };
        let Ok(m) = chorus_media::Manifest::parse(&bytes) else {
            return (0, total);
        };
        let held = m
            .segments
            .iter()
            .filter(|s| self.lib.store.contains(&s.id))
            .count() as u64;
        (held, m.segments.len() as u64)
    }

    /// Asks the fetcher for every decided slot from the one playing on.
    async fn want_upcoming(&mut self) {
        let now = self.clock.now_ms();
        let chain = self.consensus.chain();
        let from = chain.slot_at(now).unwrap_or(0);
        let segment_ms = chain.rules().segment_ms;
        let mut wants = Vec::new();
        for slot in from..chain.len() {
            if self.wanted.contains(&slot) {
                continue;
            }
            if let (Some(track), Some(start_ms)) = (chain.winner(slot), chain.start(slot)) {
                let hint = chain
                    .decided(slot)
                    .and_then(|d| d.proposal_id)
                    .and_then(|id| self.proposers.get(&id))
                    .map(|(_, p)| *p);
                wants.push(FetchCommand::Want {
                    slot,
                    track: track.clone(),
                    start_ms,
                    segment_ms,
                    hint,
                });
            }
        }
        for w in wants {
            let FetchCommand::Want { slot, .. } = &w;
            self.wanted.insert(*slot);
            let _ = self.fetch.send(w).await;
        }
    }

    async fn drain_actions(&mut self) {
        let mut decided = false;
        while let Some(action) = self.consensus.poll_action() {
            match action {
                Action::Publish { topic, envelope } => {
                    if topic == Topic::Status {
                        let summary = self.consensus.status_summary(self.clock.now_ms());
                        // Peers only: `in_sync` counts this node too.
                        self.metrics
                            .peers_in_sync
                            .set(summary.in_sync.saturating_sub(1) as i64);
                        self.metrics
                            .peers_diverged
                            .set(summary.diverged.len() as i64);
                        self.metrics
                            .peers_excluded
                            .set(summary.excluded.len() as i64);
                        self.metrics
                            .peers_connected
                            .set(self.connected.len() as i64);
                        let list =
                            |v: &[PeerId]| v.iter().map(|p| p.to_string()).collect::<Vec<_>>();
                        info!(event = "status", slot = ?summary.slot, in_sync = summary.in_sync, total = summary.total,
                            diverged = ?list(&summary.diverged), excluded = ?list(&summary.excluded), "{summary}");
                    } else if envelope.kind == "proposal"
                        && let Ok(p) =
                            envelope.open_as::<chorus_consensus::Proposal>(GOSSIP_MAX_BYTES)
                    {
                        self.proposers.insert(envelope.id(), (p.slot, p.from));
                        info!(event = "proposed", slot = p.slot, track_hash = %p.track.track_hash,
                            "proposed slot={} track=\"{}\"", p.slot, track_name(&p.track));
                    }
                    self.client
                        .publish(topic.name(&self.network_id), envelope.to_cbor())
                        .await;
                }
                Action::FetchProposals { peer, slot, ids } => {
                    let client = self.client.clone();
                    let tx = self.answers_tx.clone();
                    crate::supervise::spawn("proposal fetch", async move {
                        if let Ok(SyncResponse::Proposals(list)) = client
                            .sync(peer, SyncRequest::Proposals { slot, ids })
                            .await
                        {
                            let envelopes = list
                                .iter()
                                .filter_map(|b| Envelope::from_cbor(b, GOSSIP_MAX_BYTES).ok())
                                .collect();
                            let _ = tx.send(Answer::Proposals(envelopes)).await;
                        }
                    });
                }
                Action::FetchChain { peer, from_slot } => {
                    let client = self.client.clone();
                    let tx = self.answers_tx.clone();
                    crate::supervise::spawn("chain fetch", async move {
                        let answer = match client.sync(peer, SyncRequest::Chain { from_slot }).await
                        {
                            Ok(SyncResponse::Chain(slots)) => Ok(slots),
                            Ok(other) => Err(format!("unexpected answer {other:?}")),
                            Err(e) => Err(e.to_string()),
                        };
                        let _ = tx.send(Answer::Chain(peer, answer)).await;
                    });
                }
                Action::Decided(_) => decided = true,
                Action::Final(report) => self.log_final(&report),
                Action::PlaySubstitute { slot, track } => {
                    let winner = self.consensus.chain().winner(slot).cloned();
                    let rule = winner
                        .as_ref()
                        .and_then(|w| self.blacklist.rule_for(w))
                        .map_or_else(|| "blacklisted".to_owned(), |r| r.to_string());
                    let sub = track
                        .as_ref()
                        .map_or_else(|| "silence".to_owned(), track_name);
                    self.metrics.divergences.inc();
                    warn!(event = "diverged", slot, reason = "blacklisted", track_hash = ?winner.as_ref().map(|w| w.track_hash.to_hex()), rule = %rule, substitute = %sub,
                        "diverged slot={slot} reason=blacklisted: \"{}\" is on the blacklist ({rule}); playing \"{sub}\" instead",
                        winner.as_ref().map_or_else(String::new, track_name));
                    self.substitutes.insert(slot, track);
                }
                Action::PeerChanged(change) => {
                    info!(event = "peer", peer = %change.peer, from = %change.from, to = %change.to, reason = %change.reason,
                        "peer {} {}: {}", change.peer, change.to, change.reason);
                }
                Action::Fork(report) => self.log_fork(&report),
                Action::Adopted { from_slot, slots } => {
                    info!(
                        event = "adopted",
                        from_slot,
                        slots = slots.len(),
                        "adopted the other chain from slot {from_slot} ({} slots); rejoining playback",
                        slots.len()
                    );
                    self.wanted.retain(|s| *s < from_slot);
                    self.current = None;
                    decided = true;
                }
                Action::Violation { peer, reason } => {
                    self.violations += 1;
                    self.metrics.violations.inc();
                    if let Some(n) = self.violation_log.take(std::time::Instant::now()) {
                        warn!(event = "violation", peer = %peer, reason = %reason, "violation by {peer}: {reason}{}", crate::ratelog::left_out(n));
                    }
                }
            }
        }
        if decided {
            if let Err(e) = state::save_chain(&self.config.data_dir, self.consensus.chain()) {
                warn!(event = "store_error", "{e:#}");
            }
            self.apply_blacklist();
            self.want_upcoming().await;
        }
    }

    fn log_final(&self, report: &FinalReport) {
        let chain = self.consensus.chain();
        let Some(track) = chain.winner(report.slot) else {
            return;
        };
        let decided = chain.decided(report.slot);
        let ticket = decided.and_then(|d| d.ticket);
        let proposer = report
            .proposal_id
            .and_then(|id| self.proposers.get(&id))
            .map(|(_, p)| p.to_string());
        let conflicts = report.conflicts.len();
        self.metrics.decisions.inc();
        self.metrics.conflicts.inc_by(conflicts as u64);
        info!(event = "final", slot = report.slot, track_hash = %track.track_hash, track = %track_name(track),
            ticket = ?ticket, proposer = ?proposer, proposal_id = ?report.proposal_id.map(|h| h.to_hex()), replay = report.proposal_id.is_none(),
            conflicts, decisions = report.decisions,
            "final slot={} track=\"{}\" ticket={} proposer={} conflicts={conflicts}",
            report.slot, track_name(track),
            ticket.map_or_else(|| "replay".to_owned(), |t| format!("{t:016x}")),
            proposer.as_deref().unwrap_or("-"));
        for c in &report.conflicts {
            info!(event = "conflict", slot = report.slot, from = %c.from, winner = %c.winner, reason = ?c.reason,
                "conflict at slot {}: {} decided {} ({:?})", report.slot, c.from, c.winner, c.reason);
        }
    }

    fn log_fork(&self, r: &ForkReport) {
        let choice = match &r.choice {
            ForkChoice::Keep => "keeping own chain".to_owned(),
            ForkChoice::Wait => "waiting one more evaluation".to_owned(),
            ForkChoice::Adopt { from } => format!("adopting the other chain from {from}"),
            other => format!("{other:?}"),
        };
        warn!(event = "fork", slot = r.slot, own_hash = %r.own.chain_hash, own_supporters = r.own.supporters,
            other_hash = %r.other.chain_hash, other_supporters = r.other.supporters, choice = %choice,
            "fork detected at slot {}: own chain {} has {} supporters, other {} has {}; {choice}",
            r.slot, r.own.chain_hash, r.own.supporters, r.other.chain_hash, r.other.supporters);
    }

    fn publish_snapshot(&self) {
        let now = self.clock.now_ms();
        let times: HashMap<PeerId, PeerTime> = self
            .times
            .peers()
            .filter_map(|p| {
                let (best, samples) = self.times.best(p)?;
                Some((
                    *p,
                    PeerTime {
                        offset_ms: best.offset_us / 1000.0,
                        rtt_ms: best.rtt_us as f64 / 1000.0,
                        samples,
                    },
                ))
            })
            .collect();
        let playing_substitute = self.current.and_then(|s| match self.playing.get(&s) {
            Some(Playing::Substitute(t)) => Some(t.clone()),
            _ => None,
        });
        let value = snapshot::build(&snapshot::Inputs {
            now,
            consensus: &self.consensus,
            listen: &self.listen,
            http: self.http_addr,
            connected: &self.connected,
            times: &times,
            corrupt: &self.corrupt,
            complete: &self.complete,
            substitute: playing_substitute,
            violations: self.violations,
            store_bytes: self.store_bytes,
            clock_offset_ms: self.clock.offset_us_at(std::time::Instant::now()) / 1000.0,
            data_dir: &self.config.data_dir,
        });
        let mut value = value;
        if let Some(map) = value.as_object_mut() {
            let refused = self.times.rejected();
            map.insert(
                "time".into(),
                serde_json::json!({
                    "locked": self.times.is_locked(),
                    "refused_offset": refused.beyond_bound,
                    "refused_rtt_negative": refused.negative_rtt,
                    "refused_rtt_long": refused.long_rtt,
                    "false_echoes": self.clock.false_echoes(),
                }),
            );
        }
        self.snapshot.send_replace(value);
    }

    /// Testing: publishes malformed, oversized, wrong-network and badly signed messages on
    /// this network's topics, to show that the others drop them and carry on.
    async fn send_garbage(&mut self) {
        let topic = Topic::Consensus.name(&self.network_id);
        let status = Topic::Status.name(&self.network_id);
        let now = self.clock.now_ms();
        let counter = now.to_be_bytes();
        // Not CBOR at all.
        let mut junk = b"\xff\xfe garbage ".to_vec();
        junk.extend_from_slice(&counter);
        self.client.publish(topic.clone(), junk).await;
        // Oversized: above PROTOCOL.md 10's 64 KiB (gossipsub itself refuses to send more
        // than its frame limit, so this is as large as can go out).
        let mut big = vec![0xa5u8; GOSSIP_MAX_BYTES + 1024];
        big[..8].copy_from_slice(&counter);
        self.client.publish(topic.clone(), big).await;
        // A real Status of another network.
        let mut other = self.consensus.status(now);
        other.network_id = Hash32::digest(&counter);
        if let Ok(e) = Envelope::seal(&other, &self.keypair) {
            self.client.publish(status.clone(), e.to_cbor()).await;
        }
        // A Status of this network with its signature broken.
        let mut mine = self.consensus.status(now);
        mine.sent_ms = now + 1;
        if let Ok(mut e) = Envelope::seal(&mine, &self.keypair) {
            if let Some(b) = e.sig.first_mut() {
                *b ^= 0xff;
            }
            self.client.publish(status, e.to_cbor()).await;
        }
    }
}

/// "Artist - Title", or the title alone.
pub fn track_name(track: &TrackRef) -> String {
    if track.artist.is_empty() {
        track.title.clone()
    } else {
        format!("{} - {}", track.artist, track.title)
    }
}

/// Bytes in the store's block folder.
fn store_size(root: &std::path::Path) -> u64 {
    walkdir::WalkDir::new(root.join("blocks"))
        .into_iter()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}
