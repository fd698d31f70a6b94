//! `GET /metrics`: Prometheus text exposition (OpenMetrics flavour) of libp2p's own metrics
//! (swarm, identify, Kademlia, ping, gossipsub, bandwidth) and Chorus's.

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use chorus_media::player::PlayerStats;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Chorus's metrics and the registry that also holds libp2p's.
pub struct Metrics {
    registry: Mutex<Registry>,
    /// The slot playing.
    pub slot: Gauge,
    /// Slots that became final.
    pub decisions: Counter,
    /// Conflicting decisions seen at finality.
    pub conflicts: Counter,
    /// Slots in which this node diverged (blacklisted winner, not fetched).
    pub divergences: Counter,
    /// Connected peers.
    pub peers_connected: Gauge,
    /// Peers in sync, diverged and excluded (from the consensus peer table).
    pub peers_in_sync: Gauge,
    /// Peers diverged.
    pub peers_diverged: Gauge,
    /// Peers excluded.
    pub peers_excluded: Gauge,
    /// Bytes of blocks fetched from peers.
    pub fetch_bytes: Counter,
    /// Time to fetch a whole track, seconds.
    pub fetch_seconds: Histogram,
    /// Blocks peers sent that did not match their id.
    pub corrupt_blocks: Counter,
    /// Invalid messages from peers.
    pub violations: Counter,
    /// Block bytes sent to each peer (answers to its want lists).
    exchange_sent: Family<PeerLabel, Counter>,
    /// Block bytes received from each peer (answers to our want lists).
    exchange_received: Family<PeerLabel, Counter>,
    /// Block bytes served per track (manifest id), the latest tracks only.
    served: Mutex<std::collections::VecDeque<Served>>,
    /// Peer names in the two exchange families together.
    exchange_named: std::sync::atomic::AtomicUsize,
    clock_offset: Gauge<f64, AtomicU64>,
    audio_error: Gauge<f64, AtomicU64>,
    corrections: Counter,
    resyncs: Counter,
    missing_segments: Counter,
    played: Mutex<PlayerStats>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with Chorus's metrics; libp2p's are added to it by the network.
    pub fn new() -> Metrics {
        // libp2p's metrics go to the root (`libp2p_...`), ours under `chorus_`.
        let mut root = Registry::default();
        let registry = root.sub_registry_with_prefix("chorus");
        let m = Metrics {
            slot: Gauge::default(),
            decisions: Counter::default(),
            conflicts: Counter::default(),
            divergences: Counter::default(),
            peers_connected: Gauge::default(),
            peers_in_sync: Gauge::default(),
            peers_diverged: Gauge::default(),
            peers_excluded: Gauge::default(),
            fetch_bytes: Counter::default(),
            fetch_seconds: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            corrupt_blocks: Counter::default(),
            violations: Counter::default(),
            exchange_sent: Family::default(),
            exchange_received: Family::default(),
            exchange_named: std::sync::atomic::AtomicUsize::new(0),
            served: Mutex::new(std::collections::VecDeque::new()),
            clock_offset: Gauge::default(),
            audio_error: Gauge::default(),
            corrections: Counter::default(),
            resyncs: Counter::default(),
            missing_segments: Counter::default(),
            played: Mutex::new(PlayerStats::default()),
            registry: Mutex::new(Registry::default()),
        };
        m.register_network(registry);
        m.register_playback(registry);
        m.register_exchange(registry);
        *m.registry.lock().expect("not poisoned") = root;
        m
    }

    /// Registers the consensus, peer and fetch metrics.
    fn register_network(&self, registry: &mut Registry) {
        registry.register("slot", "The slot playing", self.slot.clone());
        registry.register(
            "decisions",
            "Slots that became final",
            self.decisions.clone(),
        );
        registry.register(
            "conflicts",
            "Conflicting decisions seen at finality",
            self.conflicts.clone(),
        );
        registry.register(
            "divergences",
            "Slots in which this node did not play the consensus winner",
            self.divergences.clone(),
        );
        registry.register(
            "peers_connected",
            "Connected peers",
            self.peers_connected.clone(),
        );
        registry.register("peers_in_sync", "Peers in sync", self.peers_in_sync.clone());
        registry.register(
            "peers_diverged",
            "Peers diverged",
            self.peers_diverged.clone(),
        );
        registry.register(
            "peers_excluded",
            "Peers excluded",
            self.peers_excluded.clone(),
        );
        registry.register(
            "fetch_bytes",
            "Bytes of blocks fetched from peers",
            self.fetch_bytes.clone(),
        );
        registry.register(
            "fetch_seconds",
            "Time to fetch a whole track from peers",
            self.fetch_seconds.clone(),
        );
        registry.register(
            "corrupt_blocks",
            "Blocks from peers whose bytes did not match their id",
            self.corrupt_blocks.clone(),
        );
        registry.register(
            "violations",
            "Invalid messages from peers",
            self.violations.clone(),
        );
    }

    /// Registers the per-peer exchange counters.
    fn register_exchange(&self, registry: &mut Registry) {
        registry.register(
            "exchange_sent_bytes",
            "Block bytes sent to each peer",
            self.exchange_sent.clone(),
        );
        registry.register(
            "exchange_received_bytes",
            "Block bytes received from each peer",
            self.exchange_received.clone(),
        );
    }

    /// Counts `bytes` of blocks sent to `peer`.
    pub fn exchange_sent(&self, peer: &libp2p::PeerId, bytes: u64) {
        count_peer(&self.exchange_sent, &self.exchange_named, peer, bytes);
    }

    /// Counts `bytes` of blocks received from `peer`.
    pub fn exchange_received(&self, peer: &libp2p::PeerId, bytes: u64) {
        count_peer(&self.exchange_received, &self.exchange_named, peer, bytes);
    }

    /// Counts `bytes` of blocks of the track of `manifest` served to `peer`.
    pub fn served(&self, manifest: chorus_consensus::Hash32, peer: &libp2p::PeerId, bytes: u64) {
        let Ok(mut served) = self.served.lock() else {
            return;
        };
        let i = match served.iter().position(|s| s.manifest == manifest) {
            Some(i) => i,
            None => {
                if served.len() >= SERVED_TRACKS {
                    served.pop_front();
                }
                served.push_back(Served {
                    manifest,
                    bytes: 0,
                    peers: std::collections::BTreeSet::new(),
                });
                served.len() - 1
            }
        };
        if let Some(s) = served.get_mut(i) {
            s.bytes += bytes;
            if s.peers.len() < SERVED_PEERS {
                s.peers.insert(*peer);
            }
        }
    }

    /// Block bytes served per track, for the latest [`SERVED_TRACKS`] tracks served, oldest
    /// first.
    pub fn served_tracks(&self) -> Vec<Served> {
        self.served
            .lock()
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Block bytes sent to and received from `peer` so far.
    pub fn exchange_bytes(&self, peer: &libp2p::PeerId) -> (u64, u64) {
        let label = PeerLabel::of(peer);
        let get = |f: &Family<PeerLabel, Counter>| f.get(&label).map_or(0, |c| c.get());
        (get(&self.exchange_sent), get(&self.exchange_received))
    }

    /// Registers the network-time and playback metrics.
    fn register_playback(&self, registry: &mut Registry) {
        registry.register(
            "clock_offset_seconds",
            "Network time minus the local clock (PROTOCOL.md 7)",
            self.clock_offset.clone(),
        );
        registry.register(
            "audio_error_seconds",
            "Last measured error between the audio heard and the schedule",
            self.audio_error.clone(),
        );
        registry.register(
            "drift_corrections",
            "Single samples dropped or repeated to stay on the schedule",
            self.corrections.clone(),
        );
        registry.register(
            "resyncs",
            "Jumps of the audio to the schedule (errors above 50 ms)",
            self.resyncs.clone(),
        );
        registry.register(
            "missing_segments",
            "Segments missing at their deadline, played as silence",
            self.missing_segments.clone(),
        );
    }

    /// Runs `f` on the registry (libp2p registers its metrics there when the swarm is built).
    pub fn with_registry<T>(&self, f: impl FnOnce(&mut Registry) -> T) -> T {
        f(&mut self.registry.lock().expect("not poisoned"))
    }

    /// The text exposition, with the clock and player figures of this instant.
    pub fn encode(&self, clock_offset_ms: f64, player: PlayerStats) -> String {
        self.clock_offset.set(clock_offset_ms / 1000.0);
        self.audio_error.set(player.error_us / 1e6);
        {
            let mut last = self.played.lock().expect("not poisoned");
            self.corrections
                .inc_by(player.corrections.saturating_sub(last.corrections));
            self.resyncs
                .inc_by(player.resyncs.saturating_sub(last.resyncs));
            self.missing_segments.inc_by(
                player
                    .missing_segments
                    .saturating_sub(last.missing_segments),
            );
            *last = player;
        }
        let mut text = String::new();
        let registry = self.registry.lock().expect("not poisoned");
        prometheus_client::encoding::text::encode(&mut text, &registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// Most peer names in the two per-peer exchange counters together; identities are free, so the
/// bytes of any further peer are counted under `peer="other"`.
pub const EXCHANGE_PEERS_MAX: usize = 2048;

/// The label of a per-peer counter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, prometheus_client::encoding::EncodeLabelSet)]
pub struct PeerLabel {
    /// The peer id, or `other`.
    peer: String,
}

impl PeerLabel {
    fn of(peer: &libp2p::PeerId) -> PeerLabel {
        PeerLabel {
            peer: peer.to_string(),
        }
    }
}

/// Adds `bytes` to `peer`'s counter, or to `other` once [`EXCHANGE_PEERS_MAX`] names are
/// counted (`named` counts them).
fn count_peer(
    family: &Family<PeerLabel, Counter>,
    named: &std::sync::atomic::AtomicUsize,
    peer: &libp2p::PeerId,
    bytes: u64,
) {
    let label = PeerLabel::of(peer);
    if let Some(c) = family.get(&label) {
        c.inc_by(bytes);
        return;
    }
    let known = named.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let label = if known < EXCHANGE_PEERS_MAX {
        label
    } else {
        PeerLabel {
            peer: "other".to_owned(),
        }
    };
    family.get_or_create(&label).inc_by(bytes);
}

/// Tracks whose upload is remembered ([`Metrics::served_tracks`]).
pub const SERVED_TRACKS: usize = 32;
/// Peers named per served track.
const SERVED_PEERS: usize = 256;

/// What this node uploaded of one track.
#[derive(Debug, Clone)]
pub struct Served {
    /// The track's manifest id.
    pub manifest: chorus_consensus::Hash32,
    /// Block bytes sent.
    pub bytes: u64,
    /// The peers they went to.
    pub peers: std::collections::BTreeSet<libp2p::PeerId>,
}
