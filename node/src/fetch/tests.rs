//! The fetch planner's policies on virtual time: no sockets, no store, no sleeps.
//!
//! - `blocks`: deadlines, provider choice, in-flight limits, retries, bans, completion.
//! - `manifests`: manifest requests and refusal, DHT rounds, PROTOCOL.md 12.2's `unavailable`.
//! - `forget`: a track no longer wanted leaves the queue, without disturbing other tracks.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use chorus_consensus::{Hash32, TrackRef};
use libp2p::PeerId;

use super::FetchEvent;
use super::planner::{
    Action, BlocksOutcome, Contents, Delivery, Local, ManifestOutcome, Planner, REASK, REFRESH,
    Want, exhausted,
};

mod blocks;
mod forget;
mod manifests;
mod swarm;

const SEGMENT_MS: u64 = 1000;

fn peer(i: u8) -> PeerId {
    libp2p::identity::Keypair::ed25519_from_bytes([i; 32])
        .expect("any 32 bytes are an ed25519 secret")
        .public()
        .to_peer_id()
}

fn hash(tag: &str) -> Hash32 {
    Hash32::digest(tag.as_bytes())
}

fn track(name: &str, segments: u64) -> TrackRef {
    TrackRef {
        track_hash: hash(name),
        manifest_id: hash(&format!("{name}/manifest")),
        duration_ms: segments * SEGMENT_MS,
        segment_count: segments,
        title: name.to_owned(),
        artist: String::new(),
        album: String::new(),
        loudness_lufs: None,
    }
}

fn segments(t: &TrackRef) -> Vec<Hash32> {
    (0..t.segment_count)
        .map(|i| hash(&format!("{}/{i}", t.title)))
        .collect()
}

fn none_held(ids: Vec<Hash32>) -> Contents {
    Contents {
        segments: ids,
        held: HashSet::new(),
    }
}

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

fn stored(ids: &[Hash32]) -> BlocksOutcome {
    BlocksOutcome::Answered(Delivery {
        stored: ids.iter().map(|id| (*id, 100)).collect(),
        ..Delivery::default()
    })
}

fn dont_have(ids: &[Hash32]) -> BlocksOutcome {
    BlocksOutcome::Answered(Delivery {
        dont_have: ids.to_vec(),
        ..Delivery::default()
    })
}

/// A planner with `peers` connected after its first refresh, at time 0.
struct Test {
    p: Planner,
}

impl Test {
    fn new(peers: &[PeerId]) -> Test {
        let mut p = Planner::new(Duration::ZERO);
        for peer in peers {
            p.handle_connected(*peer);
        }
        p.handle_timeout(Duration::ZERO);
        let mut test = Test { p };
        assert!(test.actions().is_empty());
        test
    }

    fn actions(&mut self) -> Vec<Action> {
        std::iter::from_fn(|| self.p.poll_action()).collect()
    }

    fn want(&mut self, now: Duration, t: &TrackRef, start_ms: u64, hint: Option<PeerId>) {
        self.p.handle_want(
            now,
            Want {
                slot: start_ms / 10_000,
                track: t.clone(),
                start_ms,
                segment_ms: SEGMENT_MS,
                hint,
            },
        );
    }

    /// Wants `t`, whose manifest is held and none of whose segments are.
    fn fetching(&mut self, now: Duration, t: &TrackRef, start_ms: u64) -> Vec<Action> {
        self.want(now, t, start_ms, None);
        let read = self.actions();
        assert!(matches!(read[..], [Action::ReadStore { .. }]), "{read:?}");
        self.p
            .handle_held(now, t.track_hash, Local::Held(none_held(segments(t))));
        self.actions()
    }

    /// Wants `t`, whose manifest is not held.
    fn seeking(&mut self, now: Duration, t: &TrackRef, hint: Option<PeerId>) -> Vec<Action> {
        self.want(now, t, 10_000, hint);
        assert_eq!(self.actions().len(), 1);
        self.p.handle_held(now, t.track_hash, Local::Absent);
        self.actions()
    }
}

/// The want lists among `actions` (want-have probes left out).
fn wants(actions: &[Action]) -> Vec<(PeerId, Vec<Hash32>)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Want { peer, ids, .. } if !ids.is_empty() => Some((*peer, ids.clone())),
            _ => None,
        })
        .collect()
}

/// The want-have probes among `actions`: the peer and the manifest id.
fn probes(actions: &[Action]) -> Vec<(PeerId, Hash32)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Want {
                peer,
                ids,
                track: Some(m),
            } if ids.is_empty() => Some((*peer, *m)),
            _ => None,
        })
        .collect()
}

fn manifest_asks(actions: &[Action]) -> Vec<PeerId> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::RequestManifest { peer, .. } => Some(*peer),
            _ => None,
        })
        .collect()
}

fn reports(actions: &[Action]) -> Vec<&FetchEvent> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Report(e) => Some(e),
            _ => None,
        })
        .collect()
}

fn unavailable(actions: &[Action]) -> Vec<(usize, bool)> {
    reports(actions)
        .into_iter()
        .filter_map(|e| match e {
            FetchEvent::Unavailable { asked, refused, .. } => Some((*asked, *refused)),
            _ => None,
        })
        .collect()
}
