//! `GET /status`: the node's state as JSON, rebuilt by the driver twice a second.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::Path;

use chorus_consensus::schedule::{proposal_window, selection_window};
use chorus_consensus::{Consensus, Hash32, PeerState, TrackRef};
use libp2p::{Multiaddr, PeerId};
use serde_json::{Value, json};

/// The best (least round-trip) time sample of a peer.
#[derive(Debug, Clone, Copy)]
pub struct PeerTime {
    /// Its clock minus ours, ms.
    pub offset_ms: f64,
    /// Round trip, ms.
    pub rtt_ms: f64,
    /// Samples held.
    pub samples: usize,
}

/// What the snapshot is built from.
pub struct Inputs<'a> {
    /// Network time, ms since the Unix epoch.
    pub now: u64,
    /// The consensus state machine: chain, schedule and peer table.
    pub consensus: &'a Consensus,
    /// This node's listen addresses.
    pub listen: &'a [Multiaddr],
    /// Where the HTTP API listens.
    pub http: SocketAddr,
    /// Connected peers and the remote address of each (its best connection: direct when
    /// there is one).
    pub connected: &'a BTreeMap<PeerId, Multiaddr>,
    /// Whether others can dial this node.
    pub reachability: crate::net::Reachability,
    /// Per-peer exchange counters.
    pub metrics: &'a crate::metrics::Metrics,
    /// Each peer's best time sample.
    pub times: &'a HashMap<PeerId, PeerTime>,
    /// Corrupt blocks received, per peer.
    pub corrupt: &'a HashMap<PeerId, u64>,
    /// Tracks whose segments are all in the store.
    pub complete: &'a BTreeSet<Hash32>,
    /// `Some` while this node plays something other than the winner (a substitute, or silence
    /// for `Some(None)`); `None` when it plays the winner.
    pub substitute: Option<Option<TrackRef>>,
    /// Invalid messages from peers since start-up.
    pub violations: u64,
    /// Bytes in the block store.
    pub store_bytes: u64,
    /// Network time minus the local clock, ms.
    pub clock_offset_ms: f64,
    /// The data directory (the store lies in its `store/`).
    pub data_dir: &'a Path,
}

/// A track as `/status` and the request desk show it.
pub(crate) fn track_json(t: &TrackRef) -> Value {
    json!({
        "track_hash": t.track_hash.to_hex(),
        "title": t.title,
        "artist": t.artist,
        "album": t.album,
        "duration_ms": t.duration_ms,
    })
}

/// Builds the JSON document.
pub fn build(i: &Inputs<'_>) -> Value {
    let c = i.consensus;
    let chain = c.chain();
    let slot = chain.slot_at(i.now);
    let status = c.status(i.now);
    let playing = playing_json(i, slot, status.diverged);
    let next = next_json(i, slot.map_or(0, |s| s + 1));
    let history = history_json(i, slot.unwrap_or(0));
    let peers = peers_json(i);
    let summary = c.status_summary(i.now);
    json!({
        "identity": c.peer_id().to_string(),
        "version": status.version,
        "network": {
            "id": chain.network_id().to_hex(),
            "start_ms": chain.start(0),
        },
        "now_ms": i.now,
        "clock_offset_ms": i.clock_offset_ms,
        "listen": i.listen.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "reachability": i.reachability.as_str(),
        "http": i.http.to_string(),
        "playing": playing,
        "diverged": status.diverged,
        "next": next,
        "history": history,
        "chain": {
            "len": chain.len(),
            "head_slot": status.head.slot,
            "head_hash": status.head.chain_hash.to_hex(),
        },
        "consensus": {
            "in_sync": summary.in_sync,
            "total": summary.total,
            "diverged": summary.diverged.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            "excluded": summary.excluded.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        },
        "enrollment": enrollment_json(c),
        "peers": peers,
        "clones": clones_json(i),
        "served": served_json(i),
        "violations": i.violations,
        "store": {
            "bytes": i.store_bytes,
            "path": i.data_dir.join("store").display().to_string(),
        },
    })
}

/// PROTOCOL.md 12.3: the own enrollment, the Enrolls waiting, the roster's size.
fn enrollment_json(c: &Consensus) -> Value {
    let view = c.enrollment();
    json!({
        "enrolled_at": view.enrolled_at,
        "eligible_from": view.eligible_from,
        "reenrolling": view.reenrolling,
        "pending": view.pending,
        "roster": view.roster,
    })
}

/// What plays in `slot`: the consensus winner, and the track heard instead when this node
/// plays a substitute. `None` between slots or before the winner is known.
fn playing_json(i: &Inputs<'_>, slot: Option<u64>, diverged: bool) -> Option<Value> {
    let chain = i.consensus.chain();
    let s = slot?;
    let winner = chain.winner(s)?;
    let start = chain.start(s)?;
    let mut v = json!({
        "slot": s,
        "position_ms": i.now.saturating_sub(start),
        "consensus_track": track_json(winner),
        "diverged": diverged,
    });
    match &i.substitute {
        Some(sub) => {
            v["track"] = sub.as_ref().map_or(Value::Null, track_json);
            v["substitute"] = json!(true);
        }
        None => {
            v["track"] = track_json(winner);
            v["substitute"] = json!(false);
        }
    }
    Some(v)
}

/// The five slots from `first_pending` on: their phase, start and winner when known.
fn next_json(i: &Inputs<'_>, first_pending: u64) -> Vec<Value> {
    let c = i.consensus;
    let chain = c.chain();
    let mut next = Vec::new();
    for k in first_pending..first_pending + 5 {
        let phase = phase_of(c, k, i.now);
        let mut v = json!({ "slot": k, "phase": phase, "start_ms": chain.start(k) });
        if let Some(t) = chain.winner(k) {
            v["track"] = track_json(t);
            v["held"] = json!(i.complete.contains(&t.track_hash));
        }
        next.push(v);
    }
    next
}

/// The winners of the [`HISTORY`] slots before `current`, most recent first: what was played
/// lately (a track waits that long before it is proposed again).
fn history_json(i: &Inputs<'_>, current: u64) -> Vec<Value> {
    let chain = i.consensus.chain();
    (current.saturating_sub(HISTORY)..current)
        .rev()
        .filter_map(|k| {
            let t = chain.winner(k)?;
            Some(json!({ "slot": k, "start_ms": chain.start(k), "track": track_json(t) }))
        })
        .collect()
}

/// Slots of `history` in the status: the queue's rule of PROTOCOL.md (a track is not proposed
/// again within 20 slots).
pub const HISTORY: u64 = 20;

/// The peers of the consensus peer table, then the connected peers it does not know yet.
/// What this node uploaded of its latest tracks: bytes and peers per manifest id.
fn served_json(i: &Inputs<'_>) -> Vec<Value> {
    i.metrics
        .served_tracks()
        .iter()
        .map(|s| {
            json!({
                "manifest_id": s.manifest.to_hex(),
                "bytes": s.bytes,
                "peers": s.peers.len(),
            })
        })
        .collect()
}

/// How a peer is reached and what the block exchange moved with it.
fn link_json(i: &Inputs<'_>, peer: &PeerId) -> Value {
    let addr = i.connected.get(peer);
    let (sent, received) = i.metrics.exchange_bytes(peer);
    json!({
        "route": addr.map(|a| if crate::net::is_relayed(a) { "relayed" } else { "direct" }),
        "transport": addr.and_then(crate::net::transport),
        "exchange_bytes_sent": sent,
        "exchange_bytes_received": received,
    })
}

/// Adds the fields of `extra` (an object) to `v` (an object).
fn merged(mut v: Value, extra: Value) -> Value {
    if let (Some(map), Value::Object(more)) = (v.as_object_mut(), extra) {
        map.extend(more);
    }
    v
}

/// Nodes that propose from identical libraries (the same `library_hash`), this node included:
/// one DJ running clones. Groups of two or more, each with the hash and the peer ids.
fn clones_json(i: &Inputs<'_>) -> Vec<Value> {
    let c = i.consensus;
    let mut groups: BTreeMap<Hash32, Vec<String>> = BTreeMap::new();
    if !c.library_is_empty() {
        groups
            .entry(c.library_hash())
            .or_default()
            .push(c.peer_id().to_string());
    }
    for (peer, info) in c.peers().iter() {
        if let Some(h) = info.library_hash {
            groups.entry(h).or_default().push(peer.to_string());
        }
    }
    groups
        .into_iter()
        .filter(|(_, peers)| peers.len() > 1)
        .map(|(h, peers)| json!({"library_hash": h.to_hex(), "peers": peers}))
        .collect()
}

fn peers_json(i: &Inputs<'_>) -> Vec<Value> {
    let mut peers = Vec::new();
    let mut seen = BTreeSet::new();
    for (peer, info) in i.consensus.peers().iter() {
        seen.insert(*peer);
        let time = i.times.get(peer);
        let link = link_json(i, peer);
        peers.push(merged(json!({
            "peer_id": peer.to_string(),
            "state": match info.state {
                PeerState::Unknown => "unknown",
                PeerState::InSync => "in_sync",
                PeerState::Diverged => "diverged",
                PeerState::Excluded => "excluded",
            },
            "connected": i.connected.contains_key(peer),
            "address": i.connected.get(peer).map(|a| a.to_string()),
            "diverged_since_slot": info.diverged_since_slot,
            "violations": info.violations,
            "corrupt_blocks": i.corrupt.get(peer).copied().unwrap_or(0),
            "last_heard_ms": info.last_heard_ms,
            "playing_slot": info.status.as_ref().and_then(|s| s.playing.as_ref().map(|p| p.slot)),
            "head_slot": info.head_slot(),
            "rtt_ms": time.map(|t| t.rtt_ms),
            "clock_offset_ms": time.map(|t| t.offset_ms),
            "time_samples": time.map_or(0, |t| t.samples),
            "library_hash": info.library_hash.map(|h| h.to_hex()),
        }), link));
    }
    for (peer, addr) in i.connected {
        if seen.contains(peer) {
            continue;
        }
        let time = i.times.get(peer);
        let link = link_json(i, peer);
        peers.push(merged(
            json!({
                "peer_id": peer.to_string(),
                "state": "unknown",
                "connected": true,
                "address": addr.to_string(),
                "violations": 0,
                "corrupt_blocks": i.corrupt.get(peer).copied().unwrap_or(0),
                "rtt_ms": time.map(|t| t.rtt_ms),
                "clock_offset_ms": time.map(|t| t.offset_ms),
            }),
            link,
        ));
    }
    peers
}

/// The phase slot `k` is in at `now` (PROTOCOL.md 1).
pub fn phase_of(c: &Consensus, k: u64, now: u64) -> &'static str {
    let chain = c.chain();
    if k < chain.len() {
        return match chain.start(k) {
            Some(s) if now >= s => "playing",
            _ => "final",
        };
    }
    if selection_window(chain, k).is_some_and(|w| now >= w.start_ms) {
        return "selection";
    }
    if proposal_window(chain, k).is_some_and(|w| now >= w.start_ms) {
        return "proposal";
    }
    "pending"
}

/// Builds the document from the driver's parts and publishes it.
pub(crate) fn publish(p: &super::Parts, bad: &super::report::Misbehaviour) {
    let clock = p.time.clock();
    let mut value = build(&Inputs {
        now: clock.now_ms(),
        consensus: &p.consensus,
        listen: &p.net.listen,
        http: p.http,
        connected: &p.net.connected,
        reachability: p.net.reachability,
        metrics: &p.metrics,
        times: &p.time.peers(),
        corrupt: &bad.corrupt,
        complete: p.playback.complete(),
        substitute: p.playback.substitute_now(),
        violations: bad.violations,
        store_bytes: p.storage.bytes(),
        clock_offset_ms: clock.offset_us_at(std::time::Instant::now()) / 1000.0,
        data_dir: &p.data_dir,
    });
    if let Some(map) = value.as_object_mut() {
        map.insert("time".into(), p.time.json());
        map.insert("queue".into(), p.queue.json());
        if let Some(network) = map.get_mut("network").and_then(Value::as_object_mut) {
            network.insert("name".into(), Value::from(p.network_name.as_str()));
        }
    }
    p.snapshot.send_replace(value);
}
