//! Decoding canonical segments with symphonia (its ADTS reader and AAC-LC decoder).
//!
//! AAC frames overlap (each frame's output depends on the previous one), so a track is decoded
//! with one continuous [`TrackDecoder`], segment after segment, in order.

use std::io::Cursor;

use symphonia::core::codecs::CodecParameters;
use symphonia::core::codecs::audio::{AudioDecoder, AudioDecoderOptions};
use symphonia::core::formats::{FormatOptions, FormatReader};
use symphonia::core::io::{MediaSourceStream, MediaSourceStreamOptions};
use symphonia::default::codecs::AacDecoder;
use symphonia::default::formats::AdtsReader;

use crate::Hash32;
use crate::adts::{self, CHANNELS, SAMPLE_RATE};
use crate::manifest::Manifest;
use crate::store::{BlockStore, StoreError};

/// Why a segment could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The ID3 tag in front of the audio is cut short.
    #[error("segment has a truncated ID3 tag")]
    BadId3,
    /// symphonia rejected the stream.
    #[error("symphonia cannot decode the segment: {0}")]
    Symphonia(#[from] symphonia::core::errors::Error),
    /// The stream is not 48 kHz stereo AAC.
    #[error("segment is not 48 kHz stereo AAC ({0})")]
    NotCanonical(String),
    /// A block of the track is missing or damaged.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A continuous AAC decoder for one track.
#[derive(Default)]
pub struct TrackDecoder {
    decoder: Option<AacDecoder>,
    scratch: Vec<f32>,
}

impl TrackDecoder {
    /// A decoder; it is set up from the first segment's stream parameters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes one segment and appends its interleaved stereo samples to `out`. Returns the
    /// number of sample frames (samples per channel) appended.
    pub fn decode_segment(
        &mut self,
        segment: &[u8],
        out: &mut Vec<f32>,
    ) -> Result<usize, DecodeError> {
        let (_, audio) = adts::split_id3(segment).ok_or(DecodeError::BadId3)?;
        let mss = MediaSourceStream::new(
            Box::new(Cursor::new(audio.to_vec())),
            MediaSourceStreamOptions::default(),
        );
        let mut reader = AdtsReader::try_new(mss, FormatOptions::default())?;
        if self.decoder.is_none() {
            let track = reader
                .tracks()
                .first()
                .ok_or_else(|| DecodeError::NotCanonical("no track".into()))?;
            let Some(CodecParameters::Audio(params)) = &track.codec_params else {
                return Err(DecodeError::NotCanonical("not audio".into()));
            };
            let channels = params.channels.as_ref().map(|c| c.count()).unwrap_or(0);
            if params.sample_rate != Some(SAMPLE_RATE) || channels != usize::from(CHANNELS) {
                return Err(DecodeError::NotCanonical(format!(
                    "{:?} Hz, {channels} channels",
                    params.sample_rate
                )));
            }
            self.decoder = Some(AacDecoder::try_new(
                params,
                &AudioDecoderOptions::default(),
            )?);
        }
        let decoder = self.decoder.as_mut().expect("set up above");
        let mut frames = 0;
        while let Some(packet) = reader.next_packet()? {
            let buf = decoder.decode(&packet)?;
            frames += buf.frames();
            buf.copy_to_vec_interleaved(&mut self.scratch);
            out.extend_from_slice(&self.scratch);
        }
        Ok(frames)
    }
}

/// Decodes a whole track from the store and trims the encoder's priming and padding: the result
/// is the track's audio, interleaved stereo at 48 kHz.
pub fn decode_track(store: &BlockStore, manifest_id: &Hash32) -> Result<Vec<f32>, DecodeError> {
    let bytes = store.get(manifest_id)?;
    let manifest = Manifest::parse_with_max_segments(&bytes, usize::MAX)
        .map_err(|e| DecodeError::NotCanonical(e.to_string()))?;
    let mut decoder = TrackDecoder::new();
    let mut pcm = Vec::with_capacity(manifest.encoded_samples() as usize * 2);
    for seg in &manifest.segments {
        decoder.decode_segment(&store.get(&seg.id)?, &mut pcm)?;
    }
    let ch = usize::from(CHANNELS);
    let start = (manifest.priming as usize * ch).min(pcm.len());
    let end = (manifest.track_samples() as usize * ch + start).min(pcm.len());
    Ok(pcm[start..end].to_vec())
}
