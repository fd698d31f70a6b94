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

use std::time::Duration;

use hls_m3u8::tags::ExtInf;
use hls_m3u8::types::PlaylistType;
use hls_m3u8::{MediaPlaylist, MediaSegment};

use crate::adts::{FRAME_SAMPLES, SAMPLE_RATE};
use crate::hash::Hash32;

/// Segment length of the protocol's default rules (`segment_ms`, PROTOCOL.md section 11).
pub const SEGMENT_MS: u64 = 6000;
const AUDIO_TAG: &str = "#EXT-X-CHORUS-AUDIO:";

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

/// A manifest that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not UTF-8.
    #[error("manifest is not UTF-8 text")]
    NotText,
    /// Not a valid HLS media playlist.
    #[error("manifest is not a valid HLS media playlist: {0}")]
    Playlist(String),
    /// A segment URI is not a block id.
    #[error("manifest segment URI {0:?} is not a block id")]
    BadUri(String),
    /// The Chorus audio tag is missing or malformed.
    #[error("manifest has no valid {AUDIO_TAG} tag")]
    BadAudioTag,
    /// Priming and padding exceed the segments' length.
    #[error("manifest trims more samples than its segments hold")]
    Inconsistent,
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

    /// Parses a manifest written by [`Manifest::to_playlist`] (on any node).
    pub fn parse(bytes: &[u8]) -> Result<Self, ManifestError> {
        let text = std::str::from_utf8(bytes).map_err(|_| ManifestError::NotText)?;
        let playlist =
            MediaPlaylist::try_from(text).map_err(|e| ManifestError::Playlist(e.to_string()))?;
        let mut segments = Vec::with_capacity(playlist.segments.num_elements());
        for (_, seg) in playlist.segments.iter() {
            let uri = seg.uri();
            let id: Hash32 = uri
                .parse()
                .map_err(|_| ManifestError::BadUri(uri.chars().take(80).collect()))?;
            let secs = seg.duration.duration().as_secs_f64();
            let frames = (secs * f64::from(SAMPLE_RATE) / f64::from(FRAME_SAMPLES)).round() as u32;
            segments.push(SegmentEntry { id, frames });
        }
        let (priming, padding) = playlist
            .unknown
            .iter()
            .find_map(|t| parse_audio_tag(t.strip_prefix(AUDIO_TAG)?))
            .ok_or(ManifestError::BadAudioTag)?;
        let manifest = Self {
            segments,
            priming,
            padding,
        };
        if u64::from(priming) + u64::from(padding) > manifest.encoded_samples() {
            return Err(ManifestError::Inconsistent);
        }
        Ok(manifest)
    }
}

fn parse_audio_tag(attrs: &str) -> Option<(u32, u32)> {
    let (mut priming, mut padding) = (None, None);
    for attr in attrs.split(',') {
        let (k, v) = attr.split_once('=')?;
        match k.trim() {
            "PRIMING" => priming = v.trim().parse().ok(),
            "PADDING" => padding = v.trim().parse().ok(),
            _ => {}
        }
    }
    Some((priming?, padding?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            segments: vec![
                SegmentEntry {
                    id: Hash32::of(b"a"),
                    frames: 283,
                },
                SegmentEntry {
                    id: Hash32::of(b"b"),
                    frames: 281,
                },
                SegmentEntry {
                    id: Hash32::of(b"c"),
                    frames: 17,
                },
            ],
            priming: 1024,
            padding: 300,
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
        assert!(text.contains(&Hash32::of(b"b").to_hex()), "{text}");
        let back = Manifest::parse(text.as_bytes()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.track_samples(), (283 + 281 + 17) * 1024 - 1324);
    }

    #[test]
    fn bad_manifests_are_rejected() {
        assert!(matches!(
            Manifest::parse(&[0xff, 0xfe]),
            Err(ManifestError::NotText)
        ));
        assert!(matches!(
            Manifest::parse(b"hello"),
            Err(ManifestError::Playlist(_))
        ));
        let text = sample()
            .to_playlist()
            .replace(&Hash32::of(b"a").to_hex(), "../../etc/passwd");
        assert!(matches!(
            Manifest::parse(text.as_bytes()),
            Err(ManifestError::BadUri(_))
        ));
        let text = sample()
            .to_playlist()
            .replace("#EXT-X-CHORUS-AUDIO:PRIMING=1024,PADDING=300\n", "");
        assert!(matches!(
            Manifest::parse(text.as_bytes()),
            Err(ManifestError::BadAudioTag)
        ));
    }
}
