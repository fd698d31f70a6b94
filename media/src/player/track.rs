//! One track being played: its segments decoded from the store just ahead of the playhead.
//!
//! AAC frames overlap: frame `f`'s output depends on frame `f - 1`. The stream decodes
//! continuously while the playhead moves on; to start anywhere else (a late join, a resync) it
//! starts a fresh decoder one frame earlier and throws that frame's output away (pre-roll), which
//! gives the same samples as decoding from the start.

use std::io::Cursor;
use std::time::{Duration, Instant};

use symphonia::core::codecs::CodecParameters;
use symphonia::core::codecs::audio::{AudioCodecParameters, AudioDecoder, AudioDecoderOptions};
use symphonia::core::formats::{FormatOptions, FormatReader};
use symphonia::core::io::{MediaSourceStream, MediaSourceStreamOptions};
use symphonia::default::codecs::AacDecoder;
use symphonia::default::formats::AdtsReader;

use super::sink::CHANNELS;
use crate::Hash32;
use crate::adts::{self, FRAME_SAMPLES};
use crate::manifest::Manifest;
use crate::store::BlockStore;

const FRAME: u64 = FRAME_SAMPLES as u64;
/// How often a missing segment is looked for again in the store.
const RETRY: Duration = Duration::from_millis(20);

/// What the stream can give for a position.
#[derive(Debug, PartialEq)]
pub enum Audio<'a> {
    /// Decoded samples from the position on (interleaved, at least one frame).
    Samples(&'a [f32]),
    /// The segment under the position is not in the store: this many frames of silence up to
    /// the segment's end.
    Missing(u64),
    /// Past the end of the track.
    End,
}

/// The decoder and where it stands.
struct Decoding {
    decoder: AacDecoder,
    /// The segment being read and its reader.
    segment: usize,
    reader: AdtsReader<'static>,
    /// The next AAC frame (index in the track) the reader returns.
    next_frame: u64,
}

/// A track's decoded window and its decoder.
pub struct TrackStream {
    manifest_id: Hash32,
    manifest: Manifest,
    store: BlockStore,
    /// First AAC frame of each segment, and the total as the last entry.
    seg_first: Vec<u64>,
    params: Option<AudioCodecParameters>,
    decoding: Option<Decoding>,
    /// The decoded window covers decoded-sample indices `[base, base + pcm.len() / 2)`;
    /// decoded index = track sample index + priming.
    base: u64,
    pcm: Vec<f32>,
    scratch: Vec<f32>,
    missing_since: Option<(usize, Instant)>,
}

/// Why a track cannot be played at all.
#[derive(Debug, thiserror::Error)]
pub enum TrackError {
    /// The manifest is missing from the store.
    #[error("manifest {0} is not in the store")]
    NoManifest(Hash32),
    /// The manifest does not parse.
    #[error("manifest {0} is damaged: {1}")]
    BadManifest(Hash32, String),
}

impl TrackStream {
    /// Opens the track whose manifest is `manifest_id`.
    pub fn open(store: &BlockStore, manifest_id: Hash32) -> Result<Self, TrackError> {
        let bytes = store
            .get(&manifest_id)
            .map_err(|_| TrackError::NoManifest(manifest_id))?;
        let manifest = Manifest::parse(&bytes)
            .map_err(|e| TrackError::BadManifest(manifest_id, e.to_string()))?;
        let mut seg_first = Vec::with_capacity(manifest.segments.len() + 1);
        let mut f = 0u64;
        for s in &manifest.segments {
            seg_first.push(f);
            f += u64::from(s.frames);
        }
        seg_first.push(f);
        Ok(TrackStream {
            manifest_id,
            manifest,
            store: store.clone(),
            seg_first,
            params: None,
            decoding: None,
            base: 0,
            pcm: Vec::new(),
            scratch: Vec::new(),
            missing_since: None,
        })
    }

    /// The manifest this stream plays.
    pub fn manifest_id(&self) -> Hash32 {
        self.manifest_id
    }

    /// Samples per channel of the track (priming and padding trimmed).
    pub fn track_samples(&self) -> u64 {
        self.manifest.track_samples()
    }

    /// The segment holding track sample `pos`.
    pub fn segment_of(&self, pos: u64) -> usize {
        let frame = (pos + u64::from(self.manifest.priming)) / FRAME;
        self.seg_first
            .partition_point(|&f| f <= frame)
            .saturating_sub(1)
    }

    fn window_end(&self) -> u64 {
        self.base + (self.pcm.len() / CHANNELS) as u64
    }

    /// Audio from track sample `pos` on. Decodes at most a couple of frames when `pos` is not
    /// decoded yet (the playhead caught up or jumped); [`TrackStream::decode_ahead`] does the
    /// bulk of the work beforehand.
    pub fn audio_at(&mut self, pos: u64) -> Audio<'_> {
        if pos >= self.track_samples() {
            return Audio::End;
        }
        let d = pos + u64::from(self.manifest.priming);
        if !(self.base <= d && d < self.window_end()) {
            self.seek(d);
            // Decode until the position is covered (at most the pre-roll and one frame).
            while self.window_end() <= d {
                if !self.decode_frame() {
                    break;
                }
            }
        }
        if self.base <= d && d < self.window_end() {
            let from = (d - self.base) as usize * CHANNELS;
            return Audio::Samples(&self.pcm[from..]);
        }
        let seg = self.segment_of(pos);
        let seg_end = self.seg_first[seg + 1] * FRAME - u64::from(self.manifest.priming);
        Audio::Missing(seg_end.min(self.track_samples()) - pos)
    }

    /// Decodes until track sample `until` is covered or `budget` frames were decoded; returns the
    /// frames decoded. Forgets what lies more than a frame behind `playhead`.
    pub fn decode_ahead(&mut self, playhead: u64, until: u64, budget: usize) -> usize {
        let priming = u64::from(self.manifest.priming);
        let keep_from = (playhead + priming).saturating_sub(FRAME);
        if keep_from > self.base && keep_from < self.window_end() {
            let cut = (keep_from - self.base) as usize * CHANNELS;
            self.pcm.drain(..cut);
            self.base = keep_from;
        }
        let target = until.min(self.track_samples()) + priming;
        let mut done = 0;
        while done < budget && self.window_end() < target {
            if self.decoding.is_none() {
                self.seek(self.window_end().max(playhead + priming));
            }
            if !self.decode_frame() {
                break;
            }
            done += 1;
        }
        done
    }

    /// Starts decoding at decoded sample `d`: a fresh decoder one frame before (pre-roll).
    fn seek(&mut self, d: u64) {
        let frame = d / FRAME;
        if self
            .decoding
            .as_ref()
            .is_some_and(|dec| dec.next_frame == frame)
            && self.window_end() == frame * FRAME
            && self.base <= d
        {
            return;
        }
        self.pcm.clear();
        self.base = frame * FRAME;
        self.decoding = None;
        if frame > 0 && self.start_decoder(frame - 1) {
            // The pre-roll frame's output is wrong (no history) and thrown away.
            let keep = std::mem::take(&mut self.pcm);
            let base = self.base;
            if self.decode_frame() {
                self.pcm = keep;
                self.base = base;
                return;
            }
            self.pcm = keep;
            self.base = base;
        }
        self.decoding = None;
        self.start_decoder(frame);
    }

    /// Positions a fresh decoder at AAC frame `frame`; false when its segment is missing.
    fn start_decoder(&mut self, frame: u64) -> bool {
        let Some(seg) = self.segment_of_frame(frame) else {
            return false;
        };
        let Some(mut reader) = self.open_segment(seg) else {
            return false;
        };
        for _ in self.seg_first[seg]..frame {
            if !matches!(reader.next_packet(), Ok(Some(_))) {
                return false;
            }
        }
        let Some(params) = self.params.clone() else {
            return false;
        };
        let Ok(decoder) = AacDecoder::try_new(&params, &AudioDecoderOptions::default()) else {
            return false;
        };
        self.decoding = Some(Decoding {
            decoder,
            segment: seg,
            reader,
            next_frame: frame,
        });
        true
    }

    fn segment_of_frame(&self, frame: u64) -> Option<usize> {
        if frame >= *self.seg_first.last()? {
            return None;
        }
        Some(self.seg_first.partition_point(|&f| f <= frame) - 1)
    }

    /// A reader over segment `seg`, or `None` while it is not in the store (looked for again
    /// every [`RETRY`]) or cannot be read.
    fn open_segment(&mut self, seg: usize) -> Option<AdtsReader<'static>> {
        if let Some((s, at)) = self.missing_since
            && s == seg
            && at.elapsed() < RETRY
        {
            return None;
        }
        let id = self.manifest.segments.get(seg)?.id;
        let Ok(bytes) = self.store.get(&id) else {
            self.missing_since = Some((seg, Instant::now()));
            return None;
        };
        self.missing_since = None;
        let (_, audio) = adts::split_id3(&bytes)?;
        let mss = MediaSourceStream::new(
            Box::new(Cursor::new(audio.to_vec())),
            MediaSourceStreamOptions::default(),
        );
        let reader = AdtsReader::try_new(mss, FormatOptions::default()).ok()?;
        if self.params.is_none() {
            if let Some(CodecParameters::Audio(p)) =
                reader.tracks().first().and_then(|t| t.codec_params.clone())
            {
                self.params = Some(p);
            } else {
                return None;
            }
        }
        Some(reader)
    }

    /// Decodes the decoder's next frame onto the window; false when it cannot (missing segment,
    /// end of track, damaged data).
    fn decode_frame(&mut self) -> bool {
        let Some(dec) = self.decoding.as_mut() else {
            return false;
        };
        if dec.next_frame >= self.seg_first[dec.segment + 1] {
            // On to the next segment, with the same decoder: continuity is kept.
            let next = dec.segment + 1;
            if next >= self.manifest.segments.len() {
                return false;
            }
            let Some(reader) = self.open_segment(next) else {
                return false;
            };
            let dec = self.decoding.as_mut().expect("checked above");
            dec.segment = next;
            dec.reader = reader;
        }
        let dec = self.decoding.as_mut().expect("checked above");
        let packet = match dec.reader.next_packet() {
            Ok(Some(p)) => p,
            _ => {
                self.decoding = None;
                return false;
            }
        };
        dec.next_frame += 1;
        match dec.decoder.decode(&packet) {
            Ok(buf) => {
                buf.copy_to_vec_interleaved(&mut self.scratch);
                self.scratch.resize(FRAME as usize * CHANNELS, 0.0);
                self.pcm.extend_from_slice(&self.scratch);
                true
            }
            Err(e) => {
                tracing::warn!(manifest = %self.manifest_id, "a frame of track {} does not decode: {e}; playing silence for it", self.manifest_id);
                self.pcm
                    .extend(std::iter::repeat_n(0.0, FRAME as usize * CHANNELS));
                true
            }
        }
    }
}
