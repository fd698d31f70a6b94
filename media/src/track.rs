//! One track: ingesting a single file into the store, and what is known about the result.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Hash32;
use crate::adts::{self, FRAME_SAMPLES, SAMPLE_RATE, TS_CLOCK};
use crate::manifest::{Manifest, SEGMENT_MS, SegmentEntry};
use crate::sniff::{self, Sniffed};
use crate::store::{BlockStore, StoreError};
use crate::transcode::{self, TranscodeError};

/// What the library knows about an ingested track: the TrackRef fields of PROTOCOL.md section 2,
/// and what a player needs to trim the encoder's priming and padding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrackInfo {
    /// SHA-256 of the source file.
    pub track_hash: Hash32,
    /// SHA-256 of the manifest (the HLS playlist) in the store.
    pub manifest_id: Hash32,
    /// The track's length in milliseconds (priming and padding excluded).
    pub duration_ms: u64,
    /// Number of segments.
    pub segment_count: u32,
    /// Title from the tags, or from the file name.
    pub title: String,
    /// Artist from the tags (or the file name's "Artist - Title" form); may be empty.
    pub artist: String,
    /// Album from the tags; may be empty.
    pub album: String,
    /// Integrated loudness (EBU R128), `None` for silence.
    pub loudness_lufs: Option<f64>,
    /// Samples per channel at 48 kHz, priming and padding excluded.
    pub samples: u64,
    /// Encoder delay at the start of the first segment, in samples per channel.
    pub priming: u32,
    /// Samples per channel after the end of the track in the last segment.
    pub padding: u32,
    /// Why the track may not be proposed under the rules it was ingested with, if so.
    pub not_proposable: Option<String>,
}

impl TrackInfo {
    /// "Artist - Title", or the title alone.
    pub fn display_name(&self) -> String {
        if self.artist.is_empty() {
            self.title.clone()
        } else {
            format!("{} - {}", self.artist, self.title)
        }
    }
}

/// The limits a track is checked against (the network's rules, PROTOCOL.md section 11).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrackLimits {
    /// Shortest proposable track.
    pub min_track_ms: u64,
    /// Longest proposable track.
    pub max_track_ms: u64,
}

impl Default for TrackLimits {
    fn default() -> Self {
        Self {
            min_track_ms: 5_000,
            max_track_ms: 900_000,
        }
    }
}

impl TrackLimits {
    /// Why a track of `duration_ms` is not proposable, if it is not.
    pub fn check(&self, duration_ms: u64) -> Option<String> {
        if duration_ms > self.max_track_ms {
            Some(format!(
                "longer than the rules' max_track_ms ({} s)",
                self.max_track_ms / 1000
            ))
        } else if duration_ms < self.min_track_ms {
            Some(format!(
                "shorter than the rules' min_track_ms ({} s)",
                self.min_track_ms / 1000
            ))
        } else {
            None
        }
    }
}

/// Why one file was not ingested. Messages complete "skipped FILE: ...".
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file is empty.
    #[error("it is empty (0 bytes)")]
    Empty,
    /// The file disappeared between the scan and its turn.
    #[error("it vanished during the ingest")]
    Vanished,
    /// The file could not be read.
    #[error("it cannot be read ({0})")]
    Unreadable(io::Error),
    /// The file's content is a known kind that is not audio.
    #[error("it is not audio (its content is a {0})")]
    NotAudio(&'static str),
    /// The file changed while it was being ingested.
    #[error("it changed while being ingested; the next run takes it")]
    Changed,
    /// Decoding or encoding failed.
    #[error(transparent)]
    Transcode(#[from] TranscodeError),
    /// Decoding it hit a bug (a panic) in a library; the ingest goes on with the other files.
    #[error("reading it crashed the decoder ({0}); please report this file")]
    Crashed(String),
    /// The store refused a block (the disk is full, for example). This stops the whole ingest.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl FileError {
    /// Whether the error stops the whole ingest rather than skipping one file.
    pub fn is_fatal(&self) -> bool {
        matches!(self, FileError::Store(_))
    }
}

/// Size and modification time: how an unchanged file is recognised without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    /// Size in bytes.
    pub size: u64,
    /// Modification time in nanoseconds since the Unix epoch.
    pub mtime_ns: i128,
}

impl FileStamp {
    /// The stamp of a file's metadata.
    pub fn of(meta: &std::fs::Metadata) -> Self {
        let mtime_ns = meta
            .modified()
            .ok()
            .map(|t| match t.duration_since(std::time::UNIX_EPOCH) {
                Ok(d) => d.as_nanos() as i128,
                Err(e) => -(e.duration().as_nanos() as i128),
            })
            .unwrap_or(0);
        Self {
            size: meta.len(),
            mtime_ns,
        }
    }
}

fn open_err(e: io::Error) -> FileError {
    if e.kind() == io::ErrorKind::NotFound {
        FileError::Vanished
    } else {
        FileError::Unreadable(e)
    }
}

/// SHA-256 of a file's bytes, and its first bytes for [`sniff::sniff`].
pub fn hash_file(path: &Path) -> Result<(Hash32, Vec<u8>, u64), FileError> {
    let mut file = File::open(path).map_err(open_err)?;
    let mut hasher = Sha256::new();
    let mut head = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(FileError::Unreadable(e)),
        };
        if head.len() < sniff::SNIFF_LEN {
            let take = (sniff::SNIFF_LEN - head.len()).min(n);
            head.extend_from_slice(&buf[..take]);
            // Cover art and notes need not be hashed: their first bytes say enough.
            if head.len() == sniff::SNIFF_LEN
                && let Sniffed::NotAudio(kind) = sniff::sniff(&head)
            {
                return Err(FileError::NotAudio(kind));
            }
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((Hash32(hasher.finalize().into()), head, total))
}

/// The segment (index) of AAC frame `j`: segment i holds the frames that start in track time
/// `[i, i+1) * segment_ms` (the priming frame belongs to segment 0), so that segment i is due at
/// `start(s) + i * segment_ms` as PROTOCOL.md section 6 schedules fetches.
fn segment_of(frame: u64) -> u64 {
    let per_segment = SEGMENT_MS * u64::from(SAMPLE_RATE) / 1000;
    frame.saturating_sub(1) * u64::from(FRAME_SAMPLES) / per_segment
}

/// Collects AAC frames into segments and writes each finished segment to the store.
struct Segmenter<'s> {
    store: &'s BlockStore,
    buf: Vec<u8>,
    current: u64,
    frames_in_current: u32,
    next_frame: u64,
    entries: Vec<SegmentEntry>,
    error: Option<StoreError>,
}

impl Segmenter<'_> {
    fn push(&mut self, payload: &[u8]) -> Result<(), String> {
        let seg = segment_of(self.next_frame);
        if seg != self.current && self.frames_in_current > 0 {
            self.flush()?;
        }
        if self.frames_in_current == 0 {
            self.current = seg;
            let ts = self.next_frame * u64::from(FRAME_SAMPLES) * TS_CLOCK / u64::from(SAMPLE_RATE);
            adts::push_timestamp_tag(&mut self.buf, ts);
        }
        if !adts::push_adts_frame(&mut self.buf, payload) {
            return Err(format!(
                "an AAC frame of {} bytes does not fit in ADTS",
                payload.len()
            ));
        }
        self.frames_in_current += 1;
        self.next_frame += 1;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), String> {
        if self.frames_in_current == 0 {
            return Ok(());
        }
        match self.store.put(&self.buf) {
            Ok(id) => self.entries.push(SegmentEntry {
                id,
                frames: self.frames_in_current,
            }),
            Err(e) => {
                let msg = e.to_string();
                self.error = Some(e);
                return Err(msg);
            }
        }
        self.buf.clear();
        self.frames_in_current = 0;
        Ok(())
    }
}

/// Title and artist from the file name when the tags have none: "Artist - Title.ext" is split.
fn names_from_file(path: &Path) -> (String, String) {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().trim().to_owned())
        .unwrap_or_default();
    match stem.split_once(" - ") {
        Some((artist, title)) if !artist.trim().is_empty() && !title.trim().is_empty() => {
            (title.trim().to_owned(), artist.trim().to_owned())
        }
        _ => (stem, String::new()),
    }
}

/// Ingests one file: hashes it, transcodes it into segments in `store`, writes its manifest.
/// `cancel` is polled between AAC frames so that Ctrl-C stops a long track quickly.
pub fn ingest_file(
    path: &Path,
    store: &BlockStore,
    limits: &TrackLimits,
    cancel: &dyn Fn() -> bool,
) -> Result<TrackInfo, FileError> {
    let (before, track_hash, head) = stat_and_hash(path)?;
    ingest_hashed(path, &before, track_hash, &head, store, limits, cancel)
}

/// The metadata, SHA-256 and first bytes of a file, refusing empty files.
pub fn stat_and_hash(path: &Path) -> Result<(std::fs::Metadata, Hash32, Vec<u8>), FileError> {
    let before = std::fs::metadata(path).map_err(open_err)?;
    if before.len() == 0 {
        return Err(FileError::Empty);
    }
    let (track_hash, head, _) = hash_file(path)?;
    if let Sniffed::NotAudio(kind) = sniff::sniff(&head) {
        return Err(FileError::NotAudio(kind));
    }
    Ok((before, track_hash, head))
}

/// [`ingest_file`] for a file already hashed by [`stat_and_hash`].
pub fn ingest_hashed(
    path: &Path,
    before: &std::fs::Metadata,
    track_hash: Hash32,
    head: &[u8],
    store: &BlockStore,
    limits: &TrackLimits,
    cancel: &dyn Fn() -> bool,
) -> Result<TrackInfo, FileError> {
    if let Sniffed::NotAudio(kind) = sniff::sniff(head) {
        return Err(FileError::NotAudio(kind));
    }
    let mut seg = Segmenter {
        store,
        buf: Vec::with_capacity(160_000),
        current: 0,
        frames_in_current: 0,
        next_frame: 0,
        entries: Vec::new(),
        error: None,
    };
    let result = transcode::transcode(path, &mut |payload| {
        if cancel() {
            return Err("interrupted".into());
        }
        seg.push(payload)
    });
    if let Some(e) = seg.error.take() {
        return Err(FileError::Store(e));
    }
    let out = result?;
    seg.flush().map_err(|_| {
        FileError::Store(seg.error.take().expect("flush failed with a store error"))
    })?;
    let after = std::fs::metadata(path).map_err(open_err)?;
    if FileStamp::of(before) != FileStamp::of(&after) {
        return Err(FileError::Changed);
    }

    let encoded = out.frames * u64::from(FRAME_SAMPLES);
    let padding = encoded.saturating_sub(out.samples + u64::from(out.priming)) as u32;
    let manifest = Manifest {
        segments: seg.entries,
        priming: out.priming,
        padding,
    };
    let manifest_id = store.put(manifest.to_playlist().as_bytes())?;
    let duration_ms = (out.samples * 1000 + u64::from(SAMPLE_RATE) / 2) / u64::from(SAMPLE_RATE);
    let (file_title, file_artist) = names_from_file(path);
    let mut tags = out.tags;
    if tags.title.is_empty() {
        tags.title = file_title;
        if tags.artist.is_empty() {
            tags.artist = file_artist;
        }
    }
    Ok(TrackInfo {
        track_hash,
        manifest_id,
        duration_ms,
        segment_count: manifest.segments.len() as u32,
        title: tags.title,
        artist: tags.artist,
        album: tags.album,
        loudness_lufs: out.loudness_lufs,
        samples: out.samples,
        priming: out.priming,
        padding,
        not_proposable: limits.check(duration_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_follow_the_six_second_grid() {
        assert_eq!(segment_of(0), 0);
        assert_eq!(segment_of(1), 0);
        // Frame 282 starts at track sample 281 * 1024 = 287744 < 288000: still segment 0.
        assert_eq!(segment_of(282), 0);
        assert_eq!(segment_of(283), 1);
        // Every segment holds 281 or 282 frames (283 for the first, with the priming frame).
        let mut counts = std::collections::BTreeMap::new();
        for j in 0..100_000u64 {
            *counts.entry(segment_of(j)).or_insert(0u32) += 1;
        }
        let last = *counts.keys().last().unwrap();
        for (s, n) in counts {
            if s == 0 {
                assert_eq!(n, 283);
            } else if s != last {
                assert!(n == 281 || n == 282, "segment {s} has {n} frames");
            }
        }
    }

    #[test]
    fn file_name_fallback() {
        assert_eq!(
            names_from_file(Path::new("/x/Nina - Song Two.flac")),
            ("Song Two".into(), "Nina".into())
        );
        assert_eq!(
            names_from_file(Path::new("/x/just a title.mp3")),
            ("just a title".into(), String::new())
        );
        assert_eq!(
            names_from_file(Path::new("/x/ - odd.mp3")),
            ("- odd".into(), String::new())
        );
    }

    #[test]
    fn vanished_and_unreadable_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlockStore::open(dir.path().join("store")).unwrap();
        let never = || false;
        let gone = ingest_file(
            &dir.path().join("gone.flac"),
            &store,
            &TrackLimits::default(),
            &never,
        );
        assert!(matches!(gone, Err(FileError::Vanished)), "{gone:?}");
        assert_eq!(
            gone.unwrap_err().to_string(),
            "it vanished during the ingest"
        );
        // A folder opens but cannot be read: the error names the reason.
        let sub = dir.path().join("folder.mp3");
        std::fs::create_dir(&sub).unwrap();
        let err = hash_file(&sub).unwrap_err();
        assert!(matches!(err, FileError::Unreadable(_)), "{err:?}");
        assert!(err.to_string().starts_with("it cannot be read"), "{err}");
    }

    #[test]
    fn limits() {
        let l = TrackLimits::default();
        assert!(l.check(4_999).is_some());
        assert!(l.check(5_000).is_none());
        assert!(l.check(900_000).is_none());
        assert!(l.check(900_001).unwrap().contains("max_track_ms"));
    }
}
