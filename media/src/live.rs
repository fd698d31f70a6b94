//! The live HLS stream of what the node plays (the node serves it as `GET /live.m3u8`,
//! RFC 8216).
//!
//! The node calls [`LiveLog::advance`] with the player's schedule; every segment whose start
//! (network time) has come and that is in the store is appended with the next media sequence
//! number. The window, the next number and the discontinuity count are kept in
//! `DATA/live.json`, so a restarted node serves the same playlist at once and goes on from it:
//! the sequence never goes back, across track changes and restarts, and no segment is listed
//! twice. A track change and a skipped segment (missing at its deadline, or due while the node
//! was down) each put an EXT-X-DISCONTINUITY before the next segment. EXT-X-PROGRAM-DATE-TIME is the
//! segment's start in network time, the same on every node, so listeners of different nodes can hear the
//! same moment.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use hls_m3u8::tags::{ExtInf, ExtXProgramDateTime};
use hls_m3u8::{MediaPlaylist, MediaSegment};
use serde::{Deserialize, Serialize};

use crate::manifest::{Manifest, SEGMENT_MS};
use crate::player::{SlotPlan, TrackAudio, TrackTags};
use crate::{BlockStore, Hash32, fsutil};

/// Segments listed in the playlist: 6 of about 6 s, twice RFC 8216's minimum of three target
/// durations.
pub const WINDOW: usize = 6;
const PRIMING_RATE: f64 = 48_000.0;

/// One listed segment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LiveEntry {
    /// Media sequence number.
    pub seq: u64,
    /// The slot it belongs to.
    pub slot: u64,
    /// Its index in the track.
    pub index: usize,
    /// The block.
    pub id: Hash32,
    /// Its exact duration, µs.
    pub duration_us: u64,
    /// When its first sample is due, network time in µs.
    pub start_us: i64,
    /// An EXT-X-DISCONTINUITY goes before it.
    pub discontinuity: bool,
    /// What is on air: the tags of the track it belongs to (the stream's ID3 and ICY metadata).
    #[serde(default)]
    pub tags: TrackTags,
}

/// What survives a restart.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    next_seq: u64,
    /// Discontinuities put before listed segments so far.
    discontinuities: u64,
    last: Option<(u64, usize)>,
    /// The window.
    entries: VecDeque<LiveEntry>,
}

/// What the live playlist's thread publishes: the playlist's text and the window it lists.
#[derive(Clone, Debug, Default)]
pub struct LiveView {
    /// The playlist text ([`LiveLog::playlist`]).
    pub playlist: String,
    /// The listed segments, oldest first.
    pub entries: Vec<LiveEntry>,
}

/// The live playlist's state.
pub struct LiveLog {
    path: PathBuf,
    saved: Saved,
    /// A discontinuity goes before the next segment listed.
    gap: bool,
    manifests: HashMap<Hash32, Option<Manifest>>,
}

impl LiveLog {
    /// Loads the state from `data_dir` (a damaged or missing file starts afresh at 0, which
    /// only happens to a new node).
    pub fn load(data_dir: &Path) -> LiveLog {
        let path = data_dir.join("live.json");
        let saved: Saved = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        LiveLog {
            path,
            // A new stream starts with a discontinuity; a restored one goes on.
            gap: saved.entries.is_empty(),
            saved,
            manifests: HashMap::new(),
        }
    }

    /// The listed segments, oldest first.
    pub fn entries(&self) -> impl Iterator<Item = &LiveEntry> {
        self.saved.entries.iter()
    }

    /// The playlist and its window, to publish.
    pub fn view(&self) -> LiveView {
        LiveView {
            playlist: self.playlist(),
            entries: self.saved.entries.iter().cloned().collect(),
        }
    }

    fn manifest(&mut self, store: &BlockStore, id: Hash32) -> Option<Manifest> {
        if let Some(Some(m)) = self.manifests.get(&id) {
            return Some(m.clone());
        }
        let m = store.get(&id).ok().and_then(|b| Manifest::parse(&b).ok());
        if m.is_some() {
            if self.manifests.len() > 64 {
                self.manifests.clear();
            }
            self.manifests.insert(id, m.clone());
        }
        m
    }

    /// Lists every segment of `plans` due by `now_us` (network time) and held in `store`;
    /// returns whether the playlist changed. Segments that ended more than a window ago are
    /// skipped (after a restart the window is filled with the recent past only).
    pub fn advance(&mut self, now_us: i64, plans: &[SlotPlan], store: &BlockStore) -> bool {
        let mut changed = false;
        let oldest_us = now_us - (WINDOW as i64) * SEGMENT_MS as i64 * 1000;
        for plan in plans {
            if self.saved.last.is_some_and(|(s, _)| plan.slot < s) {
                continue;
            }
            let Some(audio) = &plan.audio else {
                // A slot of silence: nothing to list, and the stream jumps over it.
                if plan.start_us() <= now_us && self.saved.last.is_none_or(|(s, _)| s < plan.slot) {
                    self.gap = true;
                }
                continue;
            };
            if plan.start_us() > now_us {
                break;
            }
            let window = Window { now_us, oldest_us };
            changed |= self.list_track(plan, audio, window, store);
        }
        while self.saved.entries.len() > WINDOW {
            self.saved.entries.pop_front();
        }
        if changed {
            let bytes = serde_json::to_vec(&self.saved).expect("plain numbers serialize");
            if let Err(e) = fsutil::atomic_write(&self.path, &bytes) {
                tracing::warn!("cannot save {}: {e}", self.path.display());
            }
        }
        changed
    }

    /// Lists the segments of `plan`'s track (`audio`) that are due within `window`; returns
    /// whether any was listed.
    fn list_track(
        &mut self,
        plan: &SlotPlan,
        audio: &TrackAudio,
        window: Window,
        store: &BlockStore,
    ) -> bool {
        let Some(manifest) = self.manifest(store, audio.manifest_id) else {
            return false;
        };
        let mut changed = false;
        let mut first_frame = 0u64;
        for (index, seg) in manifest.segments.iter().enumerate() {
            let offset_samples = (first_frame * 1024) as f64 - f64::from(manifest.priming);
            first_frame += u64::from(seg.frames);
            let start_us = plan.start_us() + (offset_samples * 1e6 / PRIMING_RATE).round() as i64;
            if start_us > window.now_us || start_us >= plan.end_ms as i64 * 1000 {
                break;
            }
            if self
                .saved
                .last
                .is_some_and(|last| (plan.slot, index) <= last)
            {
                continue;
            }
            let duration = seg.duration();
            if start_us + (duration.as_micros() as i64) < window.oldest_us
                || !store.contains(&seg.id)
            {
                // Too old to list, or not here when it was due: listeners skip it.
                self.gap = true;
                self.saved.last = Some((plan.slot, index));
                continue;
            }
            // Numbered and marked by `push`.
            self.push(LiveEntry {
                seq: 0,
                slot: plan.slot,
                index,
                id: seg.id,
                duration_us: duration.as_micros() as u64,
                start_us,
                discontinuity: false,
                tags: audio.tags.clone(),
            });
            changed = true;
        }
        changed
    }

    /// Appends `entry` with the next sequence number, marking a discontinuity after a gap or
    /// at a track change.
    fn push(&mut self, mut entry: LiveEntry) {
        let track_change = self
            .saved
            .entries
            .back()
            .is_some_and(|e| e.slot != entry.slot);
        entry.discontinuity = self.gap || track_change;
        if entry.discontinuity {
            self.saved.discontinuities += 1;
        }
        entry.seq = self.saved.next_seq;
        self.saved.last = Some((entry.slot, entry.index));
        self.saved.entries.push_back(entry);
        self.gap = false;
        self.saved.next_seq += 1;
    }

    /// The playlist text (`live/ID.aac` URIs, relative to `/live.m3u8`: the node serves each
    /// segment there with the ID3 text frames of its track; `segments/ID.aac` is the block
    /// itself).
    pub fn playlist(&self) -> String {
        let Some(first) = self.saved.entries.front() else {
            // Nothing played yet: an empty live playlist (clients retry).
            return format!(
                "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{}\n#EXT-X-MEDIA-SEQUENCE:{}\n",
                SEGMENT_MS / 1000,
                self.saved.next_seq
            );
        };
        let in_window = self
            .saved
            .entries
            .iter()
            .filter(|e| e.discontinuity)
            .count() as u64;
        let segments: Vec<MediaSegment<'static>> = self
            .saved
            .entries
            .iter()
            .map(|e| {
                MediaSegment::builder()
                    .duration(ExtInf::new(Duration::from_micros(e.duration_us)))
                    // With the extension: the ffmpeg program (Debian's 5.1) refuses segment URIs
                    // without an allowed one.
                    .uri(format!("live/{}.aac", e.id.to_hex()))
                    .has_discontinuity(e.discontinuity)
                    .program_date_time(ExtXProgramDateTime::new(rfc3339_millis(e.start_us)))
                    .build()
                    .expect("a segment with a duration and a URI builds")
            })
            .collect();
        MediaPlaylist::builder()
            .target_duration(Duration::from_millis(SEGMENT_MS))
            .media_sequence(first.seq as usize)
            .discontinuity_sequence((self.saved.discontinuities - in_window) as usize)
            .segments(segments)
            .build()
            .expect("segments are at most 6.04 s long, within the target duration")
            .to_string()
    }
}

/// The span of network time whose segments [`LiveLog::advance`] lists, µs.
#[derive(Clone, Copy)]
struct Window {
    /// Now: segments due later wait.
    now_us: i64,
    /// Segments that ended before this are skipped.
    oldest_us: i64,
}

/// `2026-11-23T06:20:07.123Z` for a time in µs since the Unix epoch.
fn rfc3339_millis(us: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_micros(us.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::SegmentEntry;

    /// A track of `n` segments of 282 frames (6.016 s) whose blocks are in `store`.
    fn track(store: &BlockStore, tag: u8, n: usize) -> Hash32 {
        let segments = (0..n)
            .map(|i| SegmentEntry {
                id: store.put(&[tag, i as u8, 1, 2, 3]).expect("put"),
                frames: 282,
            })
            .collect();
        let m = Manifest {
            segments,
            priming: 1024,
            padding: 0,
        };
        store.put(m.to_playlist().as_bytes()).expect("put manifest")
    }

    fn plan(slot: u64, start_ms: u64, manifest_id: Option<Hash32>) -> SlotPlan {
        SlotPlan {
            slot,
            start_ms,
            end_ms: start_ms + 12_000,
            audio: manifest_id.map(|manifest_id| TrackAudio {
                manifest_id,
                gain_db: 0.0,
                tags: TrackTags {
                    title: format!("Title {slot}"),
                    artist: "Artist".into(),
                    album: String::new(),
                },
                fade_out_ms: 0,
            }),
        }
    }

    fn parse(playlist: &str) -> MediaPlaylist<'_> {
        playlist.parse().expect("hls_m3u8 parses what it wrote")
    }

    fn tags(playlist: &str, tag: &str) -> Vec<String> {
        playlist
            .lines()
            .filter(|l| l.starts_with(tag))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn sequence_discontinuities_and_restarts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = BlockStore::open(dir.path().join("store")).expect("store");
        let (a, b) = (track(&store, 1, 2), track(&store, 2, 2));
        let t0 = 1_800_000_000_000u64;
        let plans = vec![plan(0, t0, Some(a)), plan(1, t0 + 12_000, Some(b))];
        let us = |ms: u64| ms as i64 * 1000;

        let mut live = LiveLog::load(dir.path());
        assert!(!live.advance(us(t0) - 1, &plans, &store));
        assert!(live.advance(us(t0), &plans, &store));
        let p = live.playlist();
        // hls_m3u8 leaves out a media sequence of 0 (RFC 8216: absent means 0).
        assert_eq!(parse(&p).media_sequence, 0);
        assert_eq!(tags(&p, "#EXTINF").len(), 1);
        // The first segment holds the priming: it starts 1024 samples before the slot.
        assert_eq!(
            tags(&p, "#EXT-X-PROGRAM-DATE-TIME"),
            [format!(
                "#EXT-X-PROGRAM-DATE-TIME:{}",
                rfc3339_millis(us(t0) - 21_333)
            )]
        );
        live.advance(us(t0 + 12_500), &plans, &store);
        let p = live.playlist();
        assert_eq!(tags(&p, "#EXTINF").len(), 3);
        // Each entry carries its track's tags; the URIs are the node's live segments.
        let titles: Vec<&str> = live.entries().map(|e| e.tags.title.as_str()).collect();
        assert_eq!(titles, ["Title 0", "Title 0", "Title 1"]);
        assert!(
            p.lines()
                .filter(|l| !l.starts_with('#'))
                .all(|l| l.starts_with("live/") && l.ends_with(".aac")),
            "{p}"
        );
        // A discontinuity at the start and one at the track change.
        assert_eq!(p.matches("#EXT-X-DISCONTINUITY\n").count(), 2, "{p}");
        assert_eq!(parse(&p).media_sequence, 0);

        // A restart: the same playlist at once, then it goes on; nothing is listed twice.
        let before = live.playlist();
        let mut live = LiveLog::load(dir.path());
        assert_eq!(live.playlist(), before);
        assert!(!live.advance(us(t0 + 12_500), &plans, &store));
        assert!(live.advance(us(t0 + 19_000), &plans, &store));
        let p = live.playlist();
        assert_eq!(parse(&p).media_sequence, 0);
        assert_eq!(tags(&p, "#EXTINF").len(), 4);
        // Slot 1's second segment follows its first: no discontinuity.
        assert_eq!(p.matches("#EXT-X-DISCONTINUITY\n").count(), 2, "{p}");
        // Down for longer than the window: what was due meanwhile is skipped, a discontinuity
        // marks the jump.
        let mut live = LiveLog::load(dir.path());
        let later = vec![plan(5, t0 + 60_000, Some(a))];
        assert!(live.advance(us(t0 + 60_000), &later, &store));
        let listed: Vec<(u64, bool)> = live.entries().map(|e| (e.seq, e.discontinuity)).collect();
        assert_eq!(listed.last(), Some(&(4, true)));
    }

    #[test]
    fn a_missing_segment_is_skipped_with_a_discontinuity_and_the_window_slides() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = BlockStore::open(dir.path().join("store")).expect("store");
        let t0 = 1_800_000_000_000u64;
        let ids: Vec<Hash32> = (0..5).map(|i| track(&store, 10 + i, 2)).collect();
        let m = Manifest::parse(&store.get(&ids[1]).expect("manifest")).expect("parse");
        store.remove(&m.segments[0].id).expect("remove");
        let plans: Vec<SlotPlan> = (0..5)
            .map(|i| plan(i as u64, t0 + i as u64 * 12_000, Some(ids[i])))
            .collect();
        let mut live = LiveLog::load(dir.path());
        live.advance((t0 as i64 + 20_000) * 1000, &plans, &store);
        let listed: Vec<(u64, usize, bool)> = live
            .entries()
            .map(|e| (e.slot, e.index, e.discontinuity))
            .collect();
        assert_eq!(listed, [(0, 0, true), (0, 1, false), (1, 1, true)]);
        live.advance((t0 as i64 + 60_000) * 1000, &plans, &store);
        assert_eq!(live.entries().count(), WINDOW);
        let seqs: Vec<u64> = live.entries().map(|e| e.seq).collect();
        assert_eq!(seqs, [3, 4, 5, 6, 7, 8]);
        let p = live.playlist();
        assert_eq!(parse(&p).media_sequence, 3);
        // Five discontinuities so far (start, gap, three track changes); the three of slots 2, 3
        // and 4 are in the window, so the window starts at discontinuity sequence 2.
        assert_eq!(parse(&p).discontinuity_sequence, 2);
    }
}
