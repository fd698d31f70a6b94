//! Answering want lists (PROTOCOL.md 12.5): a bounded number of store reads per peer and in
//! total, off the event loop; the rest is answered "later" at once, without touching the disk.

use chorus_media::store::BlockStore;
use libp2p::PeerId;
use libp2p::request_response::{self, ResponseChannel};

use super::EventLoop;
use super::requests::route;
use crate::net::Command;
use crate::net::protocol::{Block, Have, Want, holding_bits};
use chorus_consensus::Hash32;
use chorus_consensus::limits::{WANT_RESPONSE_BUDGET_BYTES, WANTED_IDS_MAX};
use chorus_media::manifest::Manifest;

/// Want lists read from the store at once for one peer; more are answered "later".
const BLOCK_READS_PER_PEER: usize = 2;
/// Want lists read from the store at once in total.
const BLOCK_READS_TOTAL: usize = 16;

impl EventLoop {
    pub(super) fn on_blocks(&mut self, event: request_response::Event<Want, Have>) {
        // Count what answers to our want lists bring, per peer, and pass the blocks on to the
        // want lists parked for them.
        let settled = match &event {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                let bytes: usize = response.blocks.iter().map(|b| b.data.len()).sum();
                if bytes > 0 {
                    self.counters.exchange_received(peer, bytes as u64);
                }
                self.uploads.fetched(
                    response
                        .blocks
                        .iter()
                        .filter(|b| Hash32::digest(&b.data) == b.id)
                        .map(|b| b.id),
                );
                Some((*request_id, &response.blocks[..]))
            }
            request_response::Event::OutboundFailure { request_id, .. } => {
                Some((*request_id, &[][..]))
            }
            _ => None,
        };
        if let Some((request_id, blocks)) = settled
            && let Some(ids) = self.want_ids.remove(&request_id)
        {
            for wait in self.parked.settled(&ids, blocks) {
                self.send_have(wait.peer, wait.track, wait.channel, wait.have);
            }
        }
        if let Some((peer, request, channel)) = route(&mut self.pending_want, event, |r| r) {
            self.serve_want(peer, request, channel);
        }
    }

    /// Answers the parked want lists whose wait is over with what came ("later" for the rest).
    pub(super) fn expire_parked(&mut self) {
        for wait in self.parked.expire(std::time::Instant::now()) {
            self.send_have(wait.peer, wait.track, wait.channel, wait.have);
        }
    }

    /// Reads the blocks of `peer`'s want list on a blocking task, whose answer comes back as
    /// [`Command::RespondBlocks`]; beyond the read limits, answers "later" for all of it.
    fn serve_want(&mut self, peer: PeerId, request: Want, channel: ResponseChannel<Have>) {
        let reading: usize = self.block_reads.values().sum();
        let own = self.block_reads.get(&peer).copied().unwrap_or(0);
        // Blocks never go through a relay: a peer reached only that way hears "later".
        let relayed = !self.has_direct(&peer);
        if relayed || own >= BLOCK_READS_PER_PEER || reading >= BLOCK_READS_TOTAL {
            let have = Have {
                later: request.ids.into_iter().take(WANTED_IDS_MAX).collect(),
                ..Have::default()
            };
            self.answer_now(channel, have);
            return;
        }
        // Super-seeding: blocks already sent to enough peers are referred to them.
        let asked: Vec<Hash32> = request.ids.iter().take(WANTED_IDS_MAX).copied().collect();
        let hubs = self.hubs_for(&peer);
        self.uploads.set_hubs(hubs);
        let split = self
            .uploads
            .split(peer, request.track, &asked, std::time::Instant::now());
        tracing::trace!(
            "want list of {peer} for {:?}: {} ids, serve {:?}, later {:?}",
            request.track.map(|t| t.short()),
            asked.len(),
            split.serve.iter().map(|i| i.short()).collect::<Vec<_>>(),
            split.later.iter().map(|i| i.short()).collect::<Vec<_>>()
        );
        if !split.beyond.is_empty() {
            tracing::debug!(
                "serving {} blocks to {peer} past the copy bound: their slot is near, or it \
                 asked for them for {:?}",
                split.beyond.len(),
                crate::net::uploads::PATIENCE
            );
        }
        if split.serve.is_empty() && request.track.is_none() {
            let have = Have {
                later: split.later,
                referrals: split.referrals,
                ..Have::default()
            };
            self.answer_now(channel, have);
            return;
        }
        *self.block_reads.entry(peer).or_default() += 1;
        // Disk reads off the event loop; the answer comes back as a command.
        let store = self.store.clone();
        let loopback = self.loopback.clone();
        let corrupt = self.corrupt_blocks;
        let request = Want {
            ids: split.serve,
            track: request.track,
        };
        tokio::task::spawn_blocking(move || {
            let track = request.track;
            let mut request = request;
            let unlisted = unlisted(&store, track, &split.beyond);
            request.ids.retain(|id| !unlisted.contains(id));
            let mut have = read_blocks(&store, request, corrupt);
            // Withdrawn with the rest of `later` when the answer comes back.
            have.later.extend(unlisted);
            have.later.extend(split.later);
            have.referrals = split.referrals;
            let _ = loopback.blocking_send(Command::RespondBlocks {
                peer,
                track,
                channel,
                have,
            });
        });
    }

    /// Answers a want list without reading the store.
    fn answer_now(&mut self, channel: ResponseChannel<Have>, have: Have) {
        let _ = self
            .swarm
            .behaviour_mut()
            .blocks
            .send_response(channel, have);
    }

    /// Sends the answer a block-reading task prepared, and counts its read as done; parks it
    /// when it lacks blocks on their way here.
    pub(super) fn respond_blocks(
        &mut self,
        peer: PeerId,
        track: Option<Hash32>,
        channel: ResponseChannel<Have>,
        have: Have,
    ) {
        if let Some(n) = self.block_reads.get_mut(&peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.block_reads.remove(&peer);
            }
        }
        // Promised copies the store did not have are withdrawn (a parked one is recorded when
        // it goes out).
        let missing: Vec<Hash32> = have.dont_have.iter().chain(&have.later).copied().collect();
        tracing::trace!(
            "answer to {peer}: sent {:?}, withdrawn {:?}",
            have.blocks.iter().map(|b| b.id.short()).collect::<Vec<_>>(),
            missing.iter().map(|i| i.short()).collect::<Vec<_>>()
        );
        self.uploads.withdrawn(peer, missing);
        match self
            .parked
            .park(std::time::Instant::now(), peer, track, channel, have)
        {
            Ok(()) => tracing::debug!("want list of {peer} parked: blocks on their way here"),
            Err((channel, have)) => self.send_have(peer, track, channel, have),
        }
    }

    /// Sends an answer with blocks, counting them as uploaded.
    fn send_have(
        &mut self,
        peer: PeerId,
        track: Option<Hash32>,
        channel: ResponseChannel<Have>,
        have: Have,
    ) {
        self.uploads.sent(peer, have.blocks.iter().map(|b| b.id));
        let bytes: usize = have.blocks.iter().map(|b| b.data.len()).sum();
        if bytes > 0 {
            self.counters.exchange_sent(&peer, bytes as u64);
            if let Some(track) = track {
                self.counters.served(track, &peer, bytes as u64);
            }
        }
        let _ = self
            .swarm
            .behaviour_mut()
            .blocks
            .send_response(channel, have);
    }
}

/// The answer to a want list from the store: blocks up to the budget, `later` for the rest of
/// those held, `dont_have` for the others, and the holdings of the track when it names one.
/// Only the first [`WANTED_IDS_MAX`] ids are considered.
fn read_blocks(store: &BlockStore, want: Want, corrupt: bool) -> Have {
    let mut have = Have {
        holding: want.track.and_then(|m| holding(store, &m)),
        ..Have::default()
    };
    let mut bytes = 0usize;
    for id in want.ids.into_iter().take(WANTED_IDS_MAX) {
        if !store.contains(&id) {
            have.dont_have.push(id);
            continue;
        }
        if bytes >= WANT_RESPONSE_BUDGET_BYTES {
            have.later.push(id);
            continue;
        }
        match store.get(&id) {
            Ok(mut data) => {
                let middle = data.len() / 2;
                if corrupt && let Some(b) = data.get_mut(middle) {
                    *b ^= 0x5a;
                }
                bytes += data.len();
                have.blocks.push(Block { id, data });
            }
            Err(_) => have.dont_have.push(id),
        }
    }
    have
}

/// Of `beyond` (ids served past the copy bound), those the manifest of `track` does not list.
/// The bound gives way when the want list's track plays soon, but the track is the asker's
/// word: without this check a peer names any track whose slot is near and gets copies of
/// another's blocks past the bound. A want list without a track got `beyond` by patience
/// alone (a deadline is looked up by track), so nothing is checked then.
fn unlisted(store: &BlockStore, track: Option<Hash32>, beyond: &[Hash32]) -> Vec<Hash32> {
    let Some(manifest_id) = track.filter(|_| !beyond.is_empty()) else {
        return Vec::new();
    };
    let listed: Vec<Hash32> = store
        .get(&manifest_id)
        .ok()
        .and_then(|bytes| Manifest::parse(&bytes).ok())
        .map(|m| m.segments.iter().map(|s| s.id).collect())
        .unwrap_or_default();
    beyond
        .iter()
        .filter(|id| !listed.contains(id))
        .copied()
        .collect()
}

/// Which segments of the manifest `manifest_id` the store holds, as a bitmap; `None` without
/// the manifest (or with one that does not parse: the store only keeps verified manifests, so
/// that is a damaged file).
fn holding(store: &BlockStore, manifest_id: &Hash32) -> Option<Vec<u8>> {
    if !store.contains(manifest_id) {
        return None;
    }
    let bytes = store.get(manifest_id).ok()?;
    let manifest = Manifest::parse(&bytes).ok()?;
    Some(holding_bits(
        manifest.segments.iter().map(|s| store.contains(&s.id)),
    ))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::net::test_peer as peer;
    use crate::net::uploads::{COPIES_MAX, Uploads};
    use chorus_media::manifest::SegmentEntry;

    #[test]
    fn naming_a_track_that_plays_soon_gets_no_other_blocks_past_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlockStore::open(dir.path()).unwrap();
        let (ours, theirs) = (store.put(b"ours").unwrap(), store.put(b"theirs").unwrap());
        let manifest = Manifest {
            segments: vec![SegmentEntry {
                id: ours,
                frames: 10,
            }],
            priming: 0,
            padding: 0,
        };
        let soon = store.put(manifest.to_playlist().as_bytes()).unwrap();
        let now = Instant::now();
        let mut uploads = Uploads::default();
        uploads.due(soon, now + Duration::from_secs(5));
        // `theirs` (another track's block, its slot far off) has had every copy it may have.
        for i in 0..COPIES_MAX as u8 {
            for _ in 0..2 {
                let split = uploads.split(peer(i), None, &[theirs], now);
                uploads.sent(peer(i), split.serve);
            }
        }
        // The attacker names the track that plays soon: the bookkeeping lets both through...
        let split = uploads.split(peer(9), Some(soon), &[ours, theirs], now);
        assert_eq!(split.beyond, vec![theirs]);
        // ...and the store read keeps only the block the named track lists.
        assert_eq!(unlisted(&store, Some(soon), &split.beyond), vec![theirs]);
        assert!(unlisted(&store, Some(soon), &[ours]).is_empty());
        // Without a track (patience), or without the manifest, nothing is trusted wrongly.
        assert!(unlisted(&store, None, &[theirs]).is_empty());
        let unknown = Hash32::digest(b"no such manifest");
        assert_eq!(unlisted(&store, Some(unknown), &[ours]), vec![ours]);
    }
}
