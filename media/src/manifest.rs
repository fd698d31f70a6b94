//! Track manifests: HLS VOD media playlists (RFC 8216) written and parsed with `hls_m3u8`.
//!
//! Segment URIs are segment ids (64 hex digits). One extra tag, which HLS clients ignore as
//! RFC 8216 section 6.3.1 requires, records what a sample-exact player must trim:
//!
//! ```text
//! #EXT-X-CHORUS-AUDIO:PRIMING=1024,PADDING=377
//! ```
//!
//! PRIMING is the encoder delay (samples per channel at the start of the first segment that are
//! not part of the track) and PADDING the samples after the track's end in the last segment.
//!
//! # Manifests from peers
//!
//! A fetched manifest is hostile input: its `manifest_id` only proves that the bytes are the ones
//! the proposer chose. `hls_m3u8` 0.7 panics on some of them (`#EXTINF:-1,`, `NaN`, `inf` or
//! `1e308` reach `Duration::from_secs_f64`), so [`Manifest::parse`] never hands it text that
//! [`Manifest::to_playlist`] could not have written: it first checks the size
//! ([`MAX_MANIFEST_BYTES`]), every line against the few shapes our writer emits, every segment
//! duration, and the segment count ([`MAX_SEGMENTS`]); only then does it call `hls_m3u8`, inside
//! `catch_unwind` in case a shape we allow still reaches a panic. A manifest that parses can still
//! lie about the track: [`Manifest::check_claim`] binds it to the `TrackRef` that proposed it
//! (segment count, duration, segment lengths), so that a "4-minute track" cannot list thousands
//! of blocks.

use std::panic::{self, AssertUnwindSafe};
use std::time::Duration;

use hls_m3u8::tags::ExtInf;
use hls_m3u8::types::PlaylistType;
use hls_m3u8::{MediaPlaylist, MediaSegment};

use crate::Hash32;
use crate::adts::{FRAME_SAMPLES, SAMPLE_RATE};

/// Segment length of the protocol's default rules (`segment_ms`, PROTOCOL.md section 11).
pub const SEGMENT_MS: u64 = 6000;

/// The largest manifest [`Manifest::parse`] reads. Our manifests take about 90 bytes per segment
/// (an `#EXTINF` line and a 64-digit id), so this is room for some 12,000 segments (20 hours):
/// far above any track a network admits, small enough that reading one costs nothing.
pub const MAX_MANIFEST_BYTES: usize = 1 << 20;

/// The most segments [`Manifest::parse`] accepts: the default rules' longest track
/// (`max_track_ms` = 900,000) cut into `segment_ms` = 6,000 segments is 150, plus one for a
/// segment count that rounds up (PROTOCOL.md 3 rule 2 allows one segment of tolerance).
pub const MAX_SEGMENTS: usize = 151;

/// How far the duration a `TrackRef` claims may be from its manifest's, in ms
/// ([`Manifest::check_claim`]). Ingest derives `duration_ms` from the very samples the manifest
/// counts ([`Manifest::duration_ms`]), so an honest claim is exact; one millisecond absorbs
/// another rounding (down or up instead of to the nearest) by a node built otherwise.
pub const CLAIM_DURATION_TOLERANCE_MS: u64 = 1;

const AUDIO_TAG: &str = "#EXT-X-CHORUS-AUDIO:";
/// `to_playlist` writes `Duration::from_millis(SEGMENT_MS)`, which `hls_m3u8` prints in whole
/// seconds.
const TARGET_DURATION_S: u64 = SEGMENT_MS / 1000;
/// `hls_m3u8` writes version 3 as soon as one `#EXTINF` has a fraction (every segment of ours).
const VERSION_LINE: &str = "#EXT-X-VERSION:3";
/// How much of an offending line an error shows.
const SHOWN_CHARS: usize = 80;
/// An `#EXTINF` may be off a whole number of AAC frames by this much (a fraction of a frame):
/// our writer prints durations truncated to the nanosecond, a few parts in 10^8 of a frame.
const FRAME_EPSILON: f64 = 1e-3;

/// One segment of a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentEntry {
    /// The segment's block id.
    pub id: Hash32,
    /// AAC frames in the segment (1024 samples per channel each).
    pub frames: u32,
}

impl SegmentEntry {
    /// The segment's exact duration.
    pub fn duration(&self) -> Duration {
        Duration::from_nanos(
            u64::from(self.frames) * u64::from(FRAME_SAMPLES) * 1_000_000_000
                / u64::from(SAMPLE_RATE),
        )
    }
}

/// A track's manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// The segments in play order.
    pub segments: Vec<SegmentEntry>,
    /// Encoder delay in samples per channel.
    pub priming: u32,
    /// Samples per channel after the end of the track.
    pub padding: u32,
}

/// A manifest that could not be read, or that does not match the track it claims to be.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Larger than [`MAX_MANIFEST_BYTES`].
    #[error("manifest is {len} bytes, more than the {MAX_MANIFEST_BYTES} a manifest may have")]
    TooLarge {
        /// Its size in bytes.
        len: usize,
    },
    /// Not UTF-8.
    #[error("manifest is not UTF-8 text")]
    NotText,
    /// A line that [`Manifest::to_playlist`] never writes, or writes elsewhere: an unknown tag,
    /// a bad number, a URI that is not a block id, one segment too many, CR line endings.
    #[error("manifest line {line}: {reason}: {text:?}")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
        /// The line, cut to 80 characters.
        text: String,
    },
    /// A tag every manifest has is missing.
    #[error("manifest is incomplete: {0}")]
    Incomplete(&'static str),
    /// Not a valid HLS media playlist.
    #[error("manifest is not a valid HLS media playlist: {0}")]
    Playlist(String),
    /// The HLS parser panicked on text that passed our own checks (a bug in them or in
    /// `hls_m3u8`); the manifest is refused and the node goes on.
    #[error("the HLS parser crashed on this manifest ({0}); it is refused")]
    ParserPanicked(String),
    /// A segment URI is not a block id.
    #[error("manifest segment URI {0:?} is not a block id")]
    BadUri(String),
    /// The Chorus audio tag is missing or malformed.
    #[error("manifest has no valid {AUDIO_TAG} tag")]
    BadAudioTag,
    /// Priming and padding exceed the segments' length.
    #[error("manifest trims more samples than its segments hold")]
    Inconsistent,
    /// [`Manifest::check_claim`]: the track claims another number of segments.
    #[error("the track claims {claimed} segments but its manifest lists {held}")]
    ClaimSegments {
        /// `segment_count` of the claim.
        claimed: u64,
        /// Segments in the manifest.
        held: u64,
    },
    /// [`Manifest::check_claim`]: the track claims another duration.
    #[error(
        "the track claims {claimed_ms} ms but its manifest holds {held_ms} ms \
         (at most {CLAIM_DURATION_TOLERANCE_MS} ms apart)"
    )]
    ClaimDuration {
        /// `duration_ms` of the claim.
        claimed_ms: u64,
        /// [`Manifest::duration_ms`].
        held_ms: u64,
    },
    /// [`Manifest::check_claim`]: a segment is longer (or, except the last, shorter) than the
    /// segment length allows.
    #[error(
        "manifest segment {index} holds {frames} AAC frames, but a segment of {segment_ms} ms \
         holds {min_frames} to {max_frames} (the last one fewer)"
    )]
    ClaimSegmentLength {
        /// 0-based segment index.
        index: usize,
        /// Its AAC frames.
        frames: u32,
        /// `segment_ms` checked against.
        segment_ms: u64,
        /// Fewest frames a segment other than the last holds.
        min_frames: u64,
        /// Most frames any segment holds.
        max_frames: u64,
    },
}

impl Manifest {
    /// Samples per channel of encoded audio, priming and padding included.
    pub fn encoded_samples(&self) -> u64 {
        self.segments
            .iter()
            .map(|s| u64::from(s.frames))
            .sum::<u64>()
            * u64::from(FRAME_SAMPLES)
    }

    /// Samples per channel of the track itself.
    pub fn track_samples(&self) -> u64 {
        self.encoded_samples()
            .saturating_sub(u64::from(self.priming) + u64::from(self.padding))
    }

    /// The track's length in ms, [`Manifest::track_samples`] rounded to the nearest ms (half
    /// up): the rounding ingest uses for `TrackInfo::duration_ms`.
    pub fn duration_ms(&self) -> u64 {
        let rate = u128::from(SAMPLE_RATE);
        let ms = (u128::from(self.track_samples()) * 1000 + rate / 2) / rate;
        u64::try_from(ms).unwrap_or(u64::MAX)
    }

    /// The playlist text.
    pub fn to_playlist(&self) -> String {
        self.to_playlist_with_uris(|id| id.to_hex())
    }

    /// The playlist text with segment URIs made by `uri` (for exports with file extensions).
    pub fn to_playlist_with_uris(&self, uri: impl Fn(&Hash32) -> String) -> String {
        let segments: Vec<MediaSegment<'static>> = self
            .segments
            .iter()
            .map(|s| {
                MediaSegment::builder()
                    .duration(ExtInf::new(s.duration()))
                    .uri(uri(&s.id))
                    .build()
                    .expect("a segment with a duration and a URI builds")
            })
            .collect();
        let playlist = MediaPlaylist::builder()
            .target_duration(Duration::from_millis(SEGMENT_MS))
            .media_sequence(0)
            .playlist_type(PlaylistType::Vod)
            .has_independent_segments(true)
            .segments(segments)
            .unknown(vec![
                format!(
                    "{AUDIO_TAG}PRIMING={},PADDING={}",
                    self.priming, self.padding
                )
                .into(),
            ])
            .has_end_list(true)
            .build()
            .expect("segments are cut at most 6.04 s long, within the target duration");
        playlist.to_string()
    }

    /// Parses a manifest written by [`Manifest::to_playlist`] (on any node), with at most
    /// [`MAX_SEGMENTS`] segments. Never panics, whatever the bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, ManifestError> {
        Self::parse_with_max_segments(bytes, MAX_SEGMENTS)
    }

    /// [`Manifest::parse`] with another segment limit: for a node's own library, whose tracks
    /// may be longer than any network admits (ingest keeps them, only marks them not
    /// proposable), or for rules with a longer `max_track_ms`. [`MAX_MANIFEST_BYTES`] still
    /// applies. Never panics, whatever the bytes.
    pub fn parse_with_max_segments(
        bytes: &[u8],
        max_segments: usize,
    ) -> Result<Self, ManifestError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge { len: bytes.len() });
        }
        let text = std::str::from_utf8(bytes).map_err(|_| ManifestError::NotText)?;
        prescan(text, max_segments)?;
        guarded(|| parse_playlist(text))
    }

    /// Checks this manifest against what the `TrackRef` proposing it claims (PROTOCOL.md 2):
    /// exactly `segment_count` segments, a duration within [`CLAIM_DURATION_TOLERANCE_MS`] of
    /// `duration_ms`, and every segment as long as the `segment_ms` grid cuts them (the last
    /// may be shorter). Bounding the count by the claim, which admissibility bounds by
    /// `rules.max_track_ms`, is what keeps a fetch from filling the disk.
    pub fn check_claim(
        &self,
        duration_ms: u64,
        segment_count: u64,
        segment_ms: u64,
    ) -> Result<(), ManifestError> {
        let held = self.segments.len() as u64;
        if held != segment_count {
            return Err(ManifestError::ClaimSegments {
                claimed: segment_count,
                held,
            });
        }
        let held_ms = self.duration_ms();
        if held_ms.abs_diff(duration_ms) > CLAIM_DURATION_TOLERANCE_MS {
            return Err(ManifestError::ClaimDuration {
                claimed_ms: duration_ms,
                held_ms,
            });
        }
        let (min_frames, max_frames) = segment_frames(segment_ms);
        let last = self.segments.len().saturating_sub(1);
        for (index, s) in self.segments.iter().enumerate() {
            let frames = u64::from(s.frames);
            if frames > max_frames || frames == 0 || (index < last && frames < min_frames) {
                return Err(ManifestError::ClaimSegmentLength {
                    index,
                    frames: s.frames,
                    segment_ms,
                    min_frames,
                    max_frames,
                });
            }
        }
        Ok(())
    }
}

/// The fewest AAC frames a segment other than the last holds, and the most any segment holds,
/// when ingest cuts at `segment_ms` (`track::segment_of`): a segment holds the frames that start
/// in its `segment_ms` of track time, `floor` or `ceil` of `segment_ms` in frames, and the first
/// segment also the priming frame, which starts before the track.
fn segment_frames(segment_ms: u64) -> (u64, u64) {
    let samples = u128::from(segment_ms) * u128::from(SAMPLE_RATE) / 1000;
    let frame = u128::from(FRAME_SAMPLES);
    let min = samples / frame;
    let max = samples.div_ceil(frame) + 1;
    let clamp = |n: u128| u64::try_from(n).unwrap_or(u64::MAX);
    (clamp(min), clamp(max))
}

/// The shapes of line [`Manifest::to_playlist`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Blank,
    ExtM3u,
    Version,
    TargetDuration,
    MediaSequence,
    PlaylistType,
    IndependentSegments,
    ExtInf,
    Audio,
    EndList,
    Uri,
}

impl Shape {
    /// A playlist tag's bit in [`prescan`]'s set of tags seen (each may appear once); 0 for the
    /// other shapes.
    fn header_bit(self) -> u8 {
        match self {
            Shape::Version => 1,
            Shape::TargetDuration => 2,
            Shape::MediaSequence => 4,
            Shape::PlaylistType => 8,
            Shape::IndependentSegments => 16,
            _ => 0,
        }
    }
}

/// What a line is, or why it is none of the shapes our writer emits. Exact matches, no
/// trimming: the writer puts no space anywhere, and every byte the check lets through is one
/// more path into `hls_m3u8` (which trims, splits on CR LF and accepts twenty other tags).
fn shape_of(line: &str) -> Result<Shape, String> {
    let shape = match line {
        "" => Shape::Blank,
        "#EXTM3U" => Shape::ExtM3u,
        VERSION_LINE => Shape::Version,
        "#EXT-X-MEDIA-SEQUENCE:0" => Shape::MediaSequence,
        "#EXT-X-PLAYLIST-TYPE:VOD" => Shape::PlaylistType,
        "#EXT-X-INDEPENDENT-SEGMENTS" => Shape::IndependentSegments,
        "#EXT-X-ENDLIST" => Shape::EndList,
        _ => {
            if let Some(secs) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
                if !is_digits(secs, 1..=3) || secs.parse::<u64>() != Ok(TARGET_DURATION_S) {
                    return Err(format!("the target duration must be {TARGET_DURATION_S} s"));
                }
                Shape::TargetDuration
            } else if let Some(rest) = line.strip_prefix("#EXTINF:") {
                check_extinf(rest)?;
                Shape::ExtInf
            } else if let Some(attrs) = line.strip_prefix(AUDIO_TAG) {
                if parse_audio_tag(attrs).is_none() {
                    return Err(format!("{AUDIO_TAG} must be PRIMING=<n>,PADDING=<n>"));
                }
                Shape::Audio
            } else if line.starts_with("#EXT-X-VERSION:") {
                return Err("this build writes only HLS version 3".into());
            } else if line.starts_with('#') {
                return Err("a tag or comment Chorus manifests never hold".into());
            } else if !is_segment_id(line) {
                return Err("a segment URI must be a block id (64 lowercase hex digits)".into());
            } else {
                Shape::Uri
            }
        }
    };
    Ok(shape)
}

/// An `#EXTINF:` value: a plain decimal, more than 0 and rounding to at most the target
/// duration (RFC 8216 4.3.3.1; `hls_m3u8` refuses longer), and a whole number of AAC frames.
/// Checked here because `hls_m3u8` feeds it to `Duration::from_secs_f64`, which panics on
/// negative, NaN, infinite and too large values.
fn check_extinf(rest: &str) -> Result<(), String> {
    let Some(value) = rest.strip_suffix(',') else {
        return Err("#EXTINF must be <seconds>, with no title".into());
    };
    let (whole, fraction) = value.split_once('.').unwrap_or((value, "0"));
    // Nothing but ASCII digits can reach `f64::from_str`: no sign, exponent, "inf" or "NaN".
    if !is_digits(whole, 1..=3) || !is_digits(fraction, 1..=20) {
        return Err("a segment duration must be a plain decimal number of seconds".into());
    }
    let secs: f64 = value
        .parse()
        .map_err(|_| "a segment duration must be a plain decimal number of seconds")?;
    // RFC 8216: the duration rounded to the nearest integer is at most the target duration.
    let limit = TARGET_DURATION_S as f64 + 0.5;
    if !(secs > 0.0 && secs < limit) {
        return Err(format!(
            "a segment duration must be more than 0 s and round to at most {TARGET_DURATION_S} s"
        ));
    }
    let frames = secs * f64::from(SAMPLE_RATE) / f64::from(FRAME_SAMPLES);
    if frames.round() < 1.0 || (frames - frames.round()).abs() > FRAME_EPSILON {
        return Err("a segment duration must be a whole number of AAC frames".into());
    }
    Ok(())
}

fn is_digits(s: &str, len: std::ops::RangeInclusive<usize>) -> bool {
    len.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_segment_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Checks `text` line by line against the layout [`Manifest::to_playlist`] writes: `#EXTM3U`
/// first; header tags once each, before the first segment; each `#EXTINF` followed by its URI;
/// the audio tag once, after the last segment; `#EXT-X-ENDLIST` last (blank lines aside); at most
/// `max_segments` segments.
fn prescan(text: &str, max_segments: usize) -> Result<(), ManifestError> {
    let mut layout = Layout {
        max_segments,
        ..Layout::default()
    };
    for (index, line) in text.split('\n').enumerate() {
        let number = index + 1;
        let bad = |reason: String| ManifestError::BadLine {
            line: number,
            reason,
            text: shown(line),
        };
        // Checked first, for a clear message: "#EXTM3U\r" would read as a wrong first line.
        if line.contains('\r') {
            return Err(bad(
                "a CR in a line (Chorus manifests end their lines with LF alone)".into(),
            ));
        }
        if index == 0 {
            if line != "#EXTM3U" {
                return Err(bad("a manifest starts with #EXTM3U".into()));
            }
            continue;
        }
        let shape = shape_of(line).map_err(&bad)?;
        layout.step(shape).map_err(bad)?;
    }
    layout.finish()
}

/// What [`prescan`] has seen so far.
#[derive(Default)]
struct Layout {
    /// The most segments allowed.
    max_segments: usize,
    /// [`Shape::header_bit`]s of the header tags seen.
    header: u8,
    segments: usize,
    /// An `#EXTINF` was the last line that was not blank.
    awaiting_uri: bool,
    /// The audio tag was seen.
    audio: bool,
    /// `#EXT-X-ENDLIST` was seen.
    ended: bool,
}

impl Layout {
    /// Takes in the next line (after the first), of `shape`; an error is the reason it is out
    /// of place.
    fn step(&mut self, shape: Shape) -> Result<(), String> {
        if shape == Shape::Blank {
            return Ok(());
        }
        if self.ended {
            return Err("nothing may follow #EXT-X-ENDLIST".into());
        }
        if self.awaiting_uri && shape != Shape::Uri {
            return Err("an #EXTINF must be followed by its segment URI".into());
        }
        match shape {
            Shape::ExtM3u => return Err("#EXTM3U is the first line only".into()),
            Shape::Uri if !self.awaiting_uri => {
                return Err("a segment URI must follow an #EXTINF".into());
            }
            Shape::Uri => self.awaiting_uri = false,
            Shape::ExtInf if self.audio => {
                return Err(format!(
                    "a segment after the {AUDIO_TAG} tag (it follows the last one)"
                ));
            }
            Shape::ExtInf => {
                self.segments += 1;
                if self.segments > self.max_segments {
                    return Err(format!("more than {} segments", self.max_segments));
                }
                self.awaiting_uri = true;
            }
            Shape::Audio if self.audio => return Err(format!("a second {AUDIO_TAG} tag")),
            Shape::Audio => self.audio = true,
            Shape::EndList => self.ended = true,
            Shape::Blank => {}
            Shape::Version
            | Shape::TargetDuration
            | Shape::MediaSequence
            | Shape::PlaylistType
            | Shape::IndependentSegments => {
                let bit = shape.header_bit();
                if self.segments > 0 {
                    return Err("a playlist tag after the first segment".into());
                }
                if self.header & bit != 0 {
                    return Err("a playlist tag given twice".into());
                }
                self.header |= bit;
            }
        }
        Ok(())
    }

    /// Checks what must have been seen once the text is over.
    fn finish(self) -> Result<(), ManifestError> {
        if self.header & Shape::TargetDuration.header_bit() == 0 {
            return Err(ManifestError::Incomplete("no #EXT-X-TARGETDURATION"));
        }
        if !self.ended {
            return Err(ManifestError::Incomplete(
                "no #EXT-X-ENDLIST (a track's manifest ends with it)",
            ));
        }
        if !self.audio {
            return Err(ManifestError::BadAudioTag);
        }
        Ok(())
    }
}

/// `line` cut to [`SHOWN_CHARS`] characters, for an error message.
fn shown(line: &str) -> String {
    let mut out: String = line.chars().take(SHOWN_CHARS).collect();
    if out.len() < line.len() {
        out.push('…');
    }
    out
}

/// Runs `parse`, turning a panic into [`ManifestError::ParserPanicked`]: the second line of
/// defence behind [`prescan`], since a panic in the fetch task would stop the node fetching
/// anything (PROTOCOL.md 10: malformed input never crashes the node). This needs unwinding
/// panics, the default; no profile of the workspace sets `panic = "abort"`.
fn guarded<T>(parse: impl FnOnce() -> Result<T, ManifestError>) -> Result<T, ManifestError> {
    // Unwind safety: the closure only reads borrowed text and builds owned values, so no state
    // outlives a panic half-changed.
    match panic::catch_unwind(AssertUnwindSafe(parse)) {
        Ok(result) => result,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into());
            Err(ManifestError::ParserPanicked(shown(&message)))
        }
    }
}

/// The `hls_m3u8` part of [`Manifest::parse`], on text [`prescan`] has passed.
fn parse_playlist(text: &str) -> Result<Manifest, ManifestError> {
    let playlist =
        MediaPlaylist::try_from(text).map_err(|e| ManifestError::Playlist(e.to_string()))?;
    let mut segments = Vec::with_capacity(playlist.segments.num_elements());
    for (_, seg) in playlist.segments.iter() {
        let uri = seg.uri();
        let id: Hash32 = uri.parse().map_err(|_| ManifestError::BadUri(shown(uri)))?;
        let secs = seg.duration.duration().as_secs_f64();
        // `as` saturates (and maps NaN to 0), so even a value the pre-scan missed cannot panic.
        let frames = (secs * f64::from(SAMPLE_RATE) / f64::from(FRAME_SAMPLES)).round() as u32;
        segments.push(SegmentEntry { id, frames });
    }
    let (priming, padding) = playlist
        .unknown
        .iter()
        .find_map(|t| parse_audio_tag(t.strip_prefix(AUDIO_TAG)?))
        .ok_or(ManifestError::BadAudioTag)?;
    let manifest = Manifest {
        segments,
        priming,
        padding,
    };
    if u64::from(priming) + u64::from(padding) > manifest.encoded_samples() {
        return Err(ManifestError::Inconsistent);
    }
    Ok(manifest)
}

/// `PRIMING=<n>,PADDING=<n>`, exactly as [`Manifest::to_playlist`] writes it.
fn parse_audio_tag(attrs: &str) -> Option<(u32, u32)> {
    let (priming, padding) = attrs.split_once(',')?;
    let number = |s: &str, key: &str| {
        let digits = s.strip_prefix(key)?;
        // `u32::from_str` would take a leading '+'.
        is_digits(digits, 1..=10).then(|| digits.parse().ok())?
    };
    Some((number(priming, "PRIMING=")?, number(padding, "PADDING=")?))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn sample() -> Manifest {
        Manifest {
            segments: vec![
                SegmentEntry {
                    id: Hash32::digest(b"a"),
                    frames: 283,
                },
                SegmentEntry {
                    id: Hash32::digest(b"b"),
                    frames: 281,
                },
                SegmentEntry {
                    id: Hash32::digest(b"c"),
                    frames: 17,
                },
            ],
            priming: 1024,
            padding: 300,
        }
    }

    /// A manifest of `n` full segments (the first with the priming frame) and a short last one.
    fn long(n: usize) -> Manifest {
        Manifest {
            segments: (0..n)
                .map(|i| SegmentEntry {
                    id: Hash32::digest(&i.to_le_bytes()),
                    frames: match i {
                        0 => 283,
                        i if i + 1 == n => 100,
                        i if i % 4 == 0 => 282,
                        _ => 281,
                    },
                })
                .collect(),
            priming: 1024,
            padding: 700,
        }
    }

    /// `sample()`'s text with line `number` (1-based) replaced by `line`.
    fn with_line(number: usize, line: &str) -> String {
        let text = sample().to_playlist();
        let mut lines: Vec<&str> = text.split('\n').collect();
        lines[number - 1] = line;
        lines.join("\n")
    }

    /// `sample()`'s text with `line` inserted before line `number`.
    fn inserted(number: usize, line: &str) -> String {
        let text = sample().to_playlist();
        let mut lines: Vec<&str> = text.split('\n').collect();
        lines.insert(number - 1, line);
        lines.join("\n")
    }

    /// Asserts `text` is refused at line `line` and returns the reason.
    #[track_caller]
    fn refused_at(text: &str, line: usize) -> String {
        match Manifest::parse(text.as_bytes()) {
            Err(ManifestError::BadLine {
                line: got,
                reason,
                text: shown,
            }) => {
                assert_eq!(got, line, "{reason}: {shown:?} in\n{text}");
                assert!(shown.chars().count() <= SHOWN_CHARS + 1, "{shown:?}");
                reason
            }
            other => panic!("expected a refusal at line {line}, got {other:?} for\n{text}"),
        }
    }

    #[test]
    fn playlist_round_trip() {
        let m = sample();
        let text = m.to_playlist();
        assert!(text.starts_with("#EXTM3U"), "{text}");
        assert!(text.contains("#EXT-X-TARGETDURATION:6"), "{text}");
        assert!(text.contains("#EXT-X-PLAYLIST-TYPE:VOD"), "{text}");
        assert!(text.contains("#EXT-X-ENDLIST"), "{text}");
        assert!(text.contains(&Hash32::digest(b"b").to_hex()), "{text}");
        let back = Manifest::parse(text.as_bytes()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.track_samples(), (283 + 281 + 17) * 1024 - 1324);
    }

    /// The layout the pre-scan's whitelist is written against: if an `hls_m3u8` upgrade changes
    /// what `to_playlist` writes, this fails before any node refuses its own manifests.
    #[test]
    fn the_writer_emits_exactly_the_whitelisted_layout() {
        let hex = |s: &[u8]| Hash32::digest(s).to_hex();
        let expected = [
            "#EXTM3U",
            "#EXT-X-VERSION:3",
            "#EXT-X-TARGETDURATION:6",
            "#EXT-X-PLAYLIST-TYPE:VOD",
            "#EXT-X-INDEPENDENT-SEGMENTS",
            "#EXTINF:6.037333333,",
            &hex(b"a"),
            "#EXTINF:5.994666666,",
            &hex(b"b"),
            "#EXTINF:0.362666666,",
            &hex(b"c"),
            "#EXT-X-CHORUS-AUDIO:PRIMING=1024,PADDING=300",
            "#EXT-X-ENDLIST",
            "",
        ]
        .join("\n");
        assert_eq!(sample().to_playlist(), expected);
    }

    #[test]
    fn every_segment_length_ingest_cuts_round_trips() {
        // 1 frame up to the longest `#EXTINF` that rounds to the 6 s target (304 frames).
        for frames in 1..=304 {
            let m = Manifest {
                segments: vec![SegmentEntry {
                    id: Hash32::digest(b"x"),
                    frames,
                }],
                priming: 0,
                padding: 0,
            };
            let back = Manifest::parse(m.to_playlist().as_bytes());
            assert_eq!(back.ok(), Some(m), "{frames} frames");
        }
    }

    #[test]
    fn bad_manifests_are_rejected() {
        assert!(matches!(
            Manifest::parse(&[0xff, 0xfe]),
            Err(ManifestError::NotText)
        ));
        assert!(refused_at("hello", 1).contains("#EXTM3U"));
        assert!(refused_at("", 1).contains("#EXTM3U"));
        assert!(refused_at("\n#EXTM3U", 1).contains("#EXTM3U"));
        let text = sample()
            .to_playlist()
            .replace(&Hash32::digest(b"a").to_hex(), "../../etc/passwd");
        assert!(refused_at(&text, 7).contains("block id"));
        let text = sample()
            .to_playlist()
            .replace("#EXT-X-CHORUS-AUDIO:PRIMING=1024,PADDING=300\n", "");
        assert!(matches!(
            Manifest::parse(text.as_bytes()),
            Err(ManifestError::BadAudioTag)
        ));
    }

    #[test]
    fn extinf_values_that_crash_hls_m3u8_are_refused() {
        for value in [
            "-1",
            "-0.5",
            "NaN",
            "nan",
            "inf",
            "-inf",
            "infinity",
            "1e308",
            "1e3",
            "6.0e0",
            "18446744073709551616",
            "1797693134862315700000",
            "0",
            "0.0",
            "0.000000001",
            "",
            ".5",
            "5.",
            "+5",
            " 5",
            "5 ",
            "0x5",
            "6.5",
            "7",
            "6.0",
        ] {
            let reason = refused_at(&with_line(6, &format!("#EXTINF:{value},")), 6);
            assert!(
                reason.contains("duration") || reason.contains("#EXTINF"),
                "{value}: {reason}"
            );
        }
        // No trailing comma, or a title: our writer writes neither.
        refused_at(&with_line(6, "#EXTINF:6.037333333"), 6);
        refused_at(&with_line(6, "#EXTINF:6.037333333,title"), 6);
        refused_at(&with_line(6, "#EXTINF:6.037333333,,"), 6);
        // Frame-exact values in any spelling pass.
        for value in ["6.037333333", "6.0373333333333333", "06.037333333"] {
            let text = with_line(6, &format!("#EXTINF:{value},"));
            assert_eq!(
                Manifest::parse(text.as_bytes()).ok(),
                Some(sample()),
                "{value}"
            );
        }
    }

    /// The second line of defence, for the day the pre-scan lets a crashing line through.
    #[test]
    fn a_parser_panic_is_an_error() {
        let caught = guarded::<()>(|| panic!("boom {}", 1));
        assert!(matches!(caught, Err(ManifestError::ParserPanicked(m)) if m == "boom 1"));
        let caught = guarded::<()>(|| std::panic::panic_any(7u8));
        assert!(matches!(caught, Err(ManifestError::ParserPanicked(_))));
        // hls_m3u8 0.7 itself, without the pre-scan: `Duration::from_secs_f64(-1.0)` panics.
        // Should an upgrade refuse these without panicking, they are still errors.
        for value in ["-1", "NaN", "inf", "1e308"] {
            let text = with_line(6, &format!("#EXTINF:{value},"));
            let result = guarded(|| parse_playlist(&text));
            assert!(
                matches!(
                    result,
                    Err(ManifestError::ParserPanicked(_) | ManifestError::Playlist(_))
                ),
                "{value}: {result:?}"
            );
        }
        let text = with_line(6, "#EXTINF:-1,");
        assert!(matches!(
            guarded(|| parse_playlist(&text)),
            Err(ManifestError::ParserPanicked(_))
        ));
    }

    #[test]
    fn segment_counts_are_bounded() {
        let at_limit = long(MAX_SEGMENTS);
        let back = Manifest::parse(at_limit.to_playlist().as_bytes());
        assert_eq!(back.ok(), Some(at_limit));
        // A "4-minute track" listing 5000 blocks: refused at the 152nd #EXTINF, before
        // hls_m3u8 builds anything.
        let text = long(5000).to_playlist();
        assert!(text.len() < MAX_MANIFEST_BYTES);
        let reason = refused_at(&text, 5 + 2 * MAX_SEGMENTS + 1);
        assert!(reason.contains("more than 151 segments"), "{reason}");
        // The own library's long tracks, with a limit of their own.
        let back = Manifest::parse_with_max_segments(text.as_bytes(), 5000);
        assert_eq!(back.ok(), Some(long(5000)));
        refused_at(
            &long(MAX_SEGMENTS + 1).to_playlist(),
            5 + 2 * MAX_SEGMENTS + 1,
        );
    }

    #[test]
    fn manifests_over_one_mib_are_refused_unread() {
        // Blank lines are allowed at the end: padding a valid manifest to exactly the limit
        // still parses, one byte more does not.
        let mut text = sample().to_playlist();
        text.push_str(&"\n".repeat(MAX_MANIFEST_BYTES - text.len()));
        assert_eq!(Manifest::parse(text.as_bytes()).ok(), Some(sample()));
        text.push('\n');
        assert!(matches!(
            Manifest::parse(text.as_bytes()),
            Err(ManifestError::TooLarge { len }) if len == MAX_MANIFEST_BYTES + 1
        ));
        let garbage = vec![0xffu8; 3 * MAX_MANIFEST_BYTES];
        assert!(matches!(
            Manifest::parse(&garbage),
            Err(ManifestError::TooLarge { .. })
        ));
    }

    #[test]
    fn unknown_tags_and_other_hls_features_are_refused() {
        for tag in [
            "#EXT-X-KEY:METHOD=AES-128,URI=\"http://evil\"",
            "#EXT-X-KEY:METHOD=NONE",
            "#EXT-X-MAP:URI=\"init.mp4\"",
            "#EXT-X-BYTERANGE:100@0",
            "#EXT-X-DISCONTINUITY",
            "#EXT-X-DISCONTINUITY-SEQUENCE:3",
            "#EXT-X-PROGRAM-DATE-TIME:2020-01-01T00:00:00Z",
            "#EXT-X-DATERANGE:ID=\"a\",START-DATE=\"2020-01-01T00:00:00Z\"",
            "#EXT-X-STREAM-INF:BANDWIDTH=1",
            "#EXT-X-I-FRAMES-ONLY",
            "#EXT-X-START:TIME-OFFSET=-1e308",
            "#EXT-X-SOMETHING-NEW",
            "# a comment",
            "#EXTM3U",
            " ",
            "\t",
        ] {
            refused_at(&inserted(6, tag), 6);
        }
        for (number, line) in [
            (2, "#EXT-X-VERSION:7"),
            (2, "#EXT-X-VERSION:-1"),
            (3, "#EXT-X-TARGETDURATION:7"),
            (3, "#EXT-X-TARGETDURATION:5"),
            (3, "#EXT-X-TARGETDURATION:18446744073709551616"),
            (3, "#EXT-X-TARGETDURATION:6.0"),
            (3, "#EXT-X-TARGETDURATION:-6"),
            (4, "#EXT-X-PLAYLIST-TYPE:EVENT"),
            (4, "#EXT-X-MEDIA-SEQUENCE:5"),
            (5, "#ext-x-independent-segments"),
            (12, "#EXT-X-CHORUS-AUDIO:PRIMING=+1024,PADDING=300"),
            (12, "#EXT-X-CHORUS-AUDIO:PADDING=300,PRIMING=1024"),
            (12, "#EXT-X-CHORUS-AUDIO:PRIMING=1024,PADDING=300,X=1"),
            (12, "#EXT-X-CHORUS-AUDIO:PRIMING=4294967296,PADDING=0"),
            (13, "#EXT-X-ENDLIST "),
        ] {
            refused_at(&with_line(number, line), number);
        }
        // What our writer never writes but may: the default media sequence, blank lines.
        let text = inserted(4, "#EXT-X-MEDIA-SEQUENCE:0");
        assert_eq!(Manifest::parse(text.as_bytes()).ok(), Some(sample()));
        let text = inserted(8, "");
        assert_eq!(Manifest::parse(text.as_bytes()).ok(), Some(sample()));
    }

    #[test]
    fn the_layout_is_enforced() {
        // A playlist tag after the first segment, or twice.
        refused_at(&inserted(8, "#EXT-X-TARGETDURATION:6"), 8);
        refused_at(&inserted(3, "#EXT-X-VERSION:3"), 3);
        // An #EXTINF without its URI, a URI without its #EXTINF.
        refused_at(&inserted(7, "#EXTINF:6.037333333,"), 7);
        refused_at(&inserted(6, &Hash32::digest(b"z").to_hex()), 6);
        refused_at(&with_line(11, "#EXT-X-ENDLIST"), 11);
        // Anything after the end.
        let text = format!("{}#EXTINF:1,\n", sample().to_playlist());
        refused_at(&text, 14);
        let text = sample().to_playlist().replace("#EXT-X-ENDLIST\n", "");
        assert!(matches!(
            Manifest::parse(text.as_bytes()),
            Err(ManifestError::Incomplete(_))
        ));
        let text = sample()
            .to_playlist()
            .replace("#EXT-X-TARGETDURATION:6\n", "");
        assert!(matches!(
            Manifest::parse(text.as_bytes()),
            Err(ManifestError::Incomplete(_))
        ));
        // A second audio tag would let two readers trim differently; it follows the segments.
        let text = inserted(13, "#EXT-X-CHORUS-AUDIO:PRIMING=0,PADDING=0");
        assert!(refused_at(&text, 13).contains("second"));
        let text = inserted(6, "#EXT-X-CHORUS-AUDIO:PRIMING=0,PADDING=0");
        assert!(refused_at(&text, 7).contains("after the"));
    }

    #[test]
    fn uris_must_be_lowercase_block_ids() {
        let id = Hash32::digest(b"a").to_hex();
        for uri in [
            id.to_uppercase(),
            id[..63].to_owned(),
            format!("{id}0"),
            format!("{id}.aac"),
            format!("/{id}"),
            format!("http://example.invalid/{id}"),
            format!(" {id}"),
            format!("{}g", &id[..63]),
            "../../etc/passwd".to_owned(),
        ] {
            let reason = refused_at(&with_line(7, &uri), 7);
            assert!(reason.contains("block id"), "{uri}: {reason}");
        }
    }

    /// Our writer ends lines with LF only, and the manifest id hashes exact bytes, so a CR LF
    /// manifest is never one a node wrote: refused, with a message that says why.
    #[test]
    fn crlf_line_endings_are_refused() {
        let text = sample().to_playlist().replace('\n', "\r\n");
        assert!(refused_at(&text, 1).contains("CR"));
        let text = with_line(6, "#EXTINF:6.037333333,\r");
        assert!(refused_at(&text, 6).contains("CR"));
        let text = sample().to_playlist().replace('\n', "\r");
        refused_at(&text, 1);
    }

    #[test]
    fn long_lines_are_shown_cut() {
        let line = format!("#{}", "x".repeat(100_000));
        let text = inserted(6, &line);
        let Err(e) = Manifest::parse(text.as_bytes()) else {
            panic!("accepted");
        };
        let message = e.to_string();
        assert!(message.len() < 300, "{message}");
        assert!(message.contains("line 6"), "{message}");
        assert!(message.contains('…'), "{message}");
    }

    #[test]
    fn priming_and_padding_stay_within_the_segments() {
        let mut m = sample();
        m.priming = 581 * 1024 - 300 + 1;
        assert!(matches!(
            Manifest::parse(m.to_playlist().as_bytes()),
            Err(ManifestError::Inconsistent)
        ));
        m.priming -= 1;
        assert_eq!(Manifest::parse(m.to_playlist().as_bytes()).ok(), Some(m));
        let mut m = sample();
        m.priming = u32::MAX;
        m.padding = u32::MAX;
        assert!(matches!(
            Manifest::parse(m.to_playlist().as_bytes()),
            Err(ManifestError::Inconsistent)
        ));
    }

    #[test]
    fn check_claim_accepts_the_honest_claim() {
        let m = sample();
        // (283 + 281 + 17) * 1024 - 1324 = 593620 samples = 12367.08 ms.
        assert_eq!(m.duration_ms(), 12_367);
        m.check_claim(12_367, 3, SEGMENT_MS).unwrap();
        m.check_claim(12_366, 3, SEGMENT_MS).unwrap();
        m.check_claim(12_368, 3, SEGMENT_MS).unwrap();
        let m = long(MAX_SEGMENTS);
        m.check_claim(m.duration_ms(), MAX_SEGMENTS as u64, SEGMENT_MS)
            .unwrap();
    }

    #[test]
    fn check_claim_refuses_another_segment_count() {
        let m = sample();
        for claimed in [0, 2, 4, 5000, u64::MAX] {
            let e = m.check_claim(12_367, claimed, SEGMENT_MS).unwrap_err();
            assert!(
                matches!(e, ManifestError::ClaimSegments { claimed: c, held: 3 } if c == claimed),
                "{e}"
            );
            assert!(
                e.to_string()
                    .contains(&format!("claims {claimed} segments"))
            );
        }
    }

    #[test]
    fn check_claim_refuses_another_duration() {
        let m = sample();
        for claimed in [0, 12_365, 12_369, 12_367 + SEGMENT_MS, 240_000, u64::MAX] {
            let e = m.check_claim(claimed, 3, SEGMENT_MS).unwrap_err();
            assert!(
                matches!(e, ManifestError::ClaimDuration { claimed_ms, held_ms: 12_367 } if claimed_ms == claimed),
                "{e}"
            );
            assert!(e.to_string().contains("12367 ms"), "{e}");
        }
    }

    #[test]
    fn check_claim_refuses_segments_off_the_grid() {
        assert_eq!(segment_frames(SEGMENT_MS), (281, 283));
        assert_eq!(segment_frames(0), (0, 1));
        let frames = u128::from(u64::MAX) * 48 / 1024;
        assert_eq!(segment_frames(u64::MAX).0, u64::try_from(frames).unwrap());
        let claim = |m: &Manifest| m.check_claim(m.duration_ms(), m.segments.len() as u64, 6000);
        // One frame too many, in the first, a middle or the last segment.
        for index in [0, 1, 2] {
            let mut m = long(3);
            m.segments[index].frames = 284;
            let e = claim(&m).unwrap_err();
            assert!(
                matches!(e, ManifestError::ClaimSegmentLength { index: i, frames: 284, .. } if i == index),
                "{e}"
            );
        }
        // A short segment before the last, or an empty last one.
        let mut m = long(3);
        m.segments[1].frames = 280;
        assert!(matches!(
            claim(&m),
            Err(ManifestError::ClaimSegmentLength { index: 1, .. })
        ));
        let mut m = long(3);
        m.segments[2].frames = 0;
        m.padding = 0;
        assert!(matches!(
            claim(&m),
            Err(ManifestError::ClaimSegmentLength { index: 2, .. })
        ));
        // The last may be as short as one frame, and a lone segment too.
        let mut m = long(3);
        m.segments[2].frames = 1;
        m.padding = 0;
        claim(&m).unwrap();
        let mut m = long(1);
        m.segments[0].frames = 1;
        m.priming = 0;
        m.padding = 0;
        claim(&m).unwrap();
    }

    /// A number as text: mostly whole AAC frames in seconds, often anything a float prints or
    /// a hostile peer writes.
    fn number() -> BoxedStrategy<String> {
        prop_oneof![
            3 => (0u32..400).prop_map(|f| (f64::from(f) * 1024.0 / 48_000.0).to_string()),
            1 => any::<f64>().prop_map(|f| f.to_string()),
            1 => any::<f32>().prop_map(|f| format!("{f:e}")),
            1 => any::<i64>().prop_map(|n| n.to_string()),
            1 => any::<u64>().prop_map(|n| n.to_string()),
            1 => prop::sample::select(vec![
                "NaN", "inf", "-inf", "1e308", "-1", "-0", "", "0", "6", "6.5", "+6", "00000000006",
            ])
            .prop_map(str::to_owned),
            1 => "[-+0-9.eEinfaNx ]{0,24}",
        ]
        .boxed()
    }

    /// A line of one of the whitelisted shapes with an arbitrary number in it, or anything.
    fn line() -> impl Strategy<Value = String> {
        let number = number();
        prop_oneof![
            2 => prop::sample::select(vec![
                "#EXTM3U",
                "#EXT-X-VERSION:3",
                "#EXT-X-TARGETDURATION:6",
                "#EXT-X-MEDIA-SEQUENCE:0",
                "#EXT-X-PLAYLIST-TYPE:VOD",
                "#EXT-X-INDEPENDENT-SEGMENTS",
                "#EXT-X-ENDLIST",
                "",
            ])
            .prop_map(str::to_owned),
            4 => number.clone().prop_map(|n| format!("#EXTINF:{n},")),
            4 => any::<[u8; 32]>().prop_map(|b| Hash32(b).to_hex()),
            1 => number.clone().prop_map(|n| format!("#EXT-X-TARGETDURATION:{n}")),
            1 => number.clone().prop_map(|n| format!("#EXT-X-VERSION:{n}")),
            1 => number.clone().prop_map(|n| format!("#EXT-X-MEDIA-SEQUENCE:{n}")),
            1 => (number.clone(), number).prop_map(|(a, b)| format!("{AUDIO_TAG}PRIMING={a},PADDING={b}")),
            1 => (0u32..5000, 0u32..5000).prop_map(|(a, b)| format!("{AUDIO_TAG}PRIMING={a},PADDING={b}")),
            1 => "#EXT[-A-Z]{0,20}:[ -~]{0,40}",
            1 => any::<String>(),
        ]
    }

    /// What every parse result must satisfy: an accepted manifest writes back to itself, and
    /// its own numbers are a claim whose count and duration check.
    fn accepted_is_sound(result: Result<Manifest, ManifestError>) -> Result<(), TestCaseError> {
        let Ok(m) = result else {
            return Ok(());
        };
        prop_assert!(m.segments.len() <= MAX_SEGMENTS);
        prop_assert_eq!(
            Manifest::parse(m.to_playlist().as_bytes()).ok(),
            Some(m.clone())
        );
        let claim = m.check_claim(m.duration_ms(), m.segments.len() as u64, SEGMENT_MS);
        prop_assert!(
            !matches!(
                claim,
                Err(ManifestError::ClaimSegments { .. } | ManifestError::ClaimDuration { .. })
            ),
            "{:?}",
            claim
        );
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whitelisted shapes with arbitrary numbers, in any order, LF or CR LF: never a panic.
        #[test]
        fn parse_never_panics_on_whitelisted_shapes(
            lines in prop::collection::vec(line(), 0..40),
            head in any::<bool>(),
            crlf in any::<bool>(),
        ) {
            let mut text = if head { "#EXTM3U\n".to_owned() } else { String::new() };
            text.push_str(&lines.join(if crlf { "\r\n" } else { "\n" }));
            accepted_is_sound(Manifest::parse(text.as_bytes()))?;
        }

        /// Our layout (header tags, segments, audio tag, end) with arbitrary numbers in every
        /// field: a good share parse, reaching hls_m3u8 and the round trip; none panics.
        #[test]
        fn parse_never_panics_on_our_layout_with_any_numbers(
            header in prop::sample::subsequence(
                vec![
                    "#EXT-X-VERSION:3",
                    "#EXT-X-MEDIA-SEQUENCE:0",
                    "#EXT-X-PLAYLIST-TYPE:VOD",
                    "#EXT-X-INDEPENDENT-SEGMENTS",
                ],
                0..=4,
            ),
            target in prop_oneof![
                6 => Just(Some("6".to_owned())),
                1 => Just(None),
                1 => number().prop_map(Some),
            ],
            segments in prop::collection::vec(
                (
                    prop_oneof![
                        8 => (1u32..=304)
                            .prop_map(|f| (f64::from(f) * 1024.0 / 48_000.0).to_string()),
                        1 => number(),
                    ],
                    any::<[u8; 32]>(),
                ),
                0..8,
            ),
            priming in prop_oneof![6 => (0u32..3000).prop_map(|n| n.to_string()), 1 => number()],
            padding in prop_oneof![6 => (0u32..3000).prop_map(|n| n.to_string()), 1 => number()],
        ) {
            let mut text = String::from("#EXTM3U\n");
            if let Some(target) = target {
                text.push_str(&format!("#EXT-X-TARGETDURATION:{target}\n"));
            }
            for tag in header {
                text.push_str(tag);
                text.push('\n');
            }
            for (secs, id) in segments {
                text.push_str(&format!("#EXTINF:{secs},\n{}\n", Hash32(id).to_hex()));
            }
            text.push_str(&format!("{AUDIO_TAG}PRIMING={priming},PADDING={padding}\n"));
            text.push_str("#EXT-X-ENDLIST\n");
            accepted_is_sound(Manifest::parse(text.as_bytes()))?;
        }

        /// A valid manifest with lines replaced, inserted or deleted: many parse, none panics.
        #[test]
        fn parse_never_panics_on_mutated_manifests(
            edits in prop::collection::vec((0usize..20, 0u8..3, line()), 1..6),
        ) {
            let text = sample().to_playlist();
            let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
            for (at, op, line) in edits {
                let at = at % (lines.len() + 1);
                match op {
                    0 if at < lines.len() => lines[at] = line,
                    1 if at < lines.len() => {
                        lines.remove(at);
                    }
                    _ => lines.insert(at, line),
                }
            }
            accepted_is_sound(Manifest::parse(lines.join("\n").as_bytes()))?;
        }

        /// Arbitrary bytes, with and without a valid start.
        #[test]
        fn parse_never_panics_on_bytes(
            bytes in prop::collection::vec(any::<u8>(), 0..2048),
            head in any::<bool>(),
        ) {
            let mut input = if head { b"#EXTM3U\n".to_vec() } else { Vec::new() };
            input.extend_from_slice(&bytes);
            accepted_is_sound(Manifest::parse(&input))?;
        }

        /// Any claim against any accepted manifest: an answer, never a panic.
        #[test]
        fn check_claim_never_panics(
            frames in prop::collection::vec(any::<u32>(), 0..8),
            priming in any::<u32>(),
            padding in any::<u32>(),
            duration_ms in any::<u64>(),
            segment_count in any::<u64>(),
            segment_ms in any::<u64>(),
        ) {
            let m = Manifest {
                segments: frames
                    .into_iter()
                    .map(|frames| SegmentEntry { id: Hash32::digest(b"s"), frames })
                    .collect(),
                priming,
                padding,
            };
            let _ = m.check_claim(duration_ms, segment_count, segment_ms);
            let _ = m.check_claim(m.duration_ms(), m.segments.len() as u64, segment_ms);
        }
    }
}
