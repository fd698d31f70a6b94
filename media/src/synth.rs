//! Generated music, encoded into real files of many formats with ffmpeg-next. The demo builds
//! its library with it, and the tests and benchmarks build theirs, so that nothing depends on
//! files that cannot be shipped.

use std::path::Path;

use ff::ChannelLayout;
use ff::format::Sample;
use ff::format::sample::Type as SampleType;
use ffmpeg_next as ff;

/// A container and codec to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// MPEG-1 Layer III (libmp3lame) with ID3v2 tags.
    Mp3,
    /// FLAC with Vorbis comments.
    Flac,
    /// Ogg Vorbis (libvorbis).
    OggVorbis,
    /// Opus in Ogg (libopus); 48 kHz only.
    Opus,
    /// 16-bit PCM WAV.
    Wav,
    /// AAC-LC in MP4 (M4A).
    M4a,
}

impl Format {
    /// Every format.
    pub const ALL: [Format; 6] = [
        Format::Mp3,
        Format::Flac,
        Format::OggVorbis,
        Format::Opus,
        Format::Wav,
        Format::M4a,
    ];

    /// The usual file extension.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Mp3 => "mp3",
            Format::Flac => "flac",
            Format::OggVorbis => "ogg",
            Format::Opus => "opus",
            Format::Wav => "wav",
            Format::M4a => "m4a",
        }
    }

    fn muxer(self) -> &'static str {
        match self {
            Format::Mp3 => "mp3",
            Format::Flac => "flac",
            Format::OggVorbis => "ogg",
            Format::Opus => "opus",
            Format::Wav => "wav",
            Format::M4a => "ipod",
        }
    }

    fn encoder(self) -> Option<ff::Codec> {
        match self {
            Format::Mp3 => ff::encoder::find_by_name("libmp3lame"),
            Format::Flac => ff::encoder::find(ff::codec::Id::FLAC),
            Format::OggVorbis => ff::encoder::find_by_name("libvorbis"),
            Format::Opus => ff::encoder::find_by_name("libopus"),
            Format::Wav => ff::encoder::find(ff::codec::Id::PCM_S16LE),
            Format::M4a => ff::encoder::find(ff::codec::Id::AAC),
        }
    }
}

/// A tune to generate: a seeded melody over a bass line.
#[derive(Clone, Debug)]
pub struct Tune {
    /// Chooses the notes.
    pub seed: u64,
    /// Length in seconds.
    pub seconds: f64,
    /// Sample rate.
    pub rate: u32,
    /// 1 or 2 channels.
    pub channels: u16,
    /// Peak amplitude (0 gives digital silence).
    pub amplitude: f32,
}

impl Tune {
    /// A stereo 48 kHz tune at a comfortable level.
    pub fn new(seed: u64, seconds: f64) -> Self {
        Self {
            seed,
            seconds,
            rate: 48_000,
            channels: 2,
            amplitude: 0.3,
        }
    }

    /// Samples per channel.
    pub fn frames(&self) -> usize {
        (self.seconds * f64::from(self.rate)).round() as usize
    }

    /// The interleaved samples.
    pub fn render(&self) -> Vec<f32> {
        let mut rng = self.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        const SCALE: [f32; 5] = [0.0, 2.0, 4.0, 7.0, 9.0]; // major pentatonic
        let base = 196.0 * 2f32.powf((next() % 12) as f32 / 12.0);
        let beat = 0.18 + (next() % 8) as f32 * 0.03;
        let rate = self.rate as f32;
        let ch = usize::from(self.channels);
        let n = self.frames();
        let beat_frames = (beat * rate) as usize;
        let mut out = Vec::with_capacity(n * ch);
        let (mut note, mut bass) = (base, base / 2.0);
        let (mut phase, mut bass_phase) = (0f32, 0f32);
        for i in 0..n {
            let pos = i % beat_frames.max(1);
            if pos == 0 {
                let step = SCALE[(next() % 5) as usize] + 12.0 * (next() % 2) as f32;
                note = base * 2f32.powf(step / 12.0);
                if (i / beat_frames.max(1)).is_multiple_of(4) {
                    bass = base / 2.0 * 2f32.powf(SCALE[(next() % 3) as usize] / 12.0);
                }
            }
            let t = pos as f32 / rate;
            let env = (t / 0.01).min(1.0) * (-t * 4.0).exp();
            phase = (phase + note / rate).fract();
            bass_phase = (bass_phase + bass / rate).fract();
            let lead = (phase * std::f32::consts::TAU).sin() * env;
            let low = (bass_phase * std::f32::consts::TAU).sin() * 0.5;
            let v = self.amplitude * (0.6 * lead + 0.4 * low);
            if ch == 1 {
                out.push(v);
            } else {
                out.push(v * 0.9 + 0.1 * low * self.amplitude);
                out.push(v);
            }
        }
        out
    }
}

/// Tags to write.
#[derive(Clone, Debug, Default)]
pub struct FileTags {
    /// Title; not written if empty.
    pub title: String,
    /// Artist; not written if empty.
    pub artist: String,
    /// Album; not written if empty.
    pub album: String,
}

/// Why a file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {format:?} file: {reason}")]
pub struct SynthError {
    /// The format asked for.
    pub format: Format,
    /// What failed.
    pub reason: String,
}

/// Renders `tune` and writes it to `path` in `format` with `tags`.
pub fn write_tune(
    path: &Path,
    format: Format,
    tune: &Tune,
    tags: &FileTags,
) -> Result<(), SynthError> {
    write_pcm(path, format, &tune.render(), tune.rate, tune.channels, tags)
}

/// Opens `codec` for `rate` and `channels` of `sample_format`; `global` when the muxer wants
/// global headers.
fn open_encoder(
    codec: ff::Codec,
    rate: u32,
    channels: u16,
    sample_format: Sample,
    global: bool,
) -> Result<ff::encoder::Audio, ff::Error> {
    let mut enc = ff::codec::context::Context::new_with_codec(codec)
        .encoder()
        .audio()?;
    enc.set_rate(rate as i32);
    enc.set_channel_layout(ChannelLayout::default(i32::from(channels)));
    enc.set_channels(i32::from(channels));
    enc.set_format(sample_format);
    enc.set_bit_rate(128_000);
    enc.set_time_base((1, rate as i32));
    if global {
        enc.set_flags(ff::codec::flag::Flags::GLOBAL_HEADER);
    }
    enc.open_as(codec)
}

/// The container and stream metadata of `tags` (empty tags left out).
fn metadata(tags: &FileTags) -> ff::Dictionary<'static> {
    let mut dict = ff::Dictionary::new();
    for (k, v) in [
        ("title", &tags.title),
        ("artist", &tags.artist),
        ("album", &tags.album),
    ] {
        if !v.is_empty() {
            dict.set(k, v);
        }
    }
    dict
}

/// Encodes interleaved samples to `path` in `format`.
pub fn write_pcm(
    path: &Path,
    format: Format,
    pcm: &[f32],
    rate: u32,
    channels: u16,
    tags: &FileTags,
) -> Result<(), SynthError> {
    let err = |reason: String| SynthError { format, reason };
    let fe = |e: ff::Error| SynthError {
        format,
        reason: e.to_string(),
    };
    let _ = ff::init();
    let codec = format
        .encoder()
        .ok_or_else(|| err("FFmpeg lacks the encoder".into()))?;
    // ffmpeg-next's output functions panic on file names that are not UTF-8.
    if path.to_str().is_none() {
        return Err(err(format!("{} is not a UTF-8 file name", path.display())));
    }
    let mut octx = ff::format::output_as(path, format.muxer()).map_err(fe)?;
    let global = octx
        .format()
        .flags()
        .contains(ff::format::flag::Flags::GLOBAL_HEADER);
    let layout = ChannelLayout::default(i32::from(channels));
    let sample_format = codec
        .audio()
        .ok()
        .and_then(|a| a.formats())
        .and_then(|mut f| f.next())
        .unwrap_or(Sample::F32(SampleType::Planar));
    let mut encoder = open_encoder(codec, rate, channels, sample_format, global).map_err(fe)?;
    let dict = metadata(tags);
    {
        let mut ost = octx.add_stream(codec).map_err(fe)?;
        ost.set_parameters(&encoder);
        ost.set_time_base((1, rate as i32));
        ost.set_metadata(dict.clone());
    }
    octx.set_metadata(dict);
    octx.write_header().map_err(fe)?;
    let out_tb = octx.stream(0).expect("one stream added").time_base();

    let ch = usize::from(channels);
    let frames = pcm.len() / ch;
    let chunk = match encoder.frame_size() {
        0 => 1024,
        n => n as usize,
    };
    let mut packet = ff::Packet::empty();
    let mut write_packets = |encoder: &mut ff::encoder::Audio,
                             octx: &mut ff::format::context::Output| {
        while encoder.receive_packet(&mut packet).is_ok() {
            packet.set_stream(0);
            packet.rescale_ts((1, rate as i32), out_tb);
            packet.write_interleaved(octx).map_err(fe)?;
        }
        Ok::<_, SynthError>(())
    };
    let mut start = 0;
    while start < frames {
        let n = chunk.min(frames - start);
        let mut frame = ff::frame::Audio::new(sample_format, n, layout);
        frame.set_rate(rate);
        fill_frame(
            &mut frame,
            &pcm[start * ch..(start + n) * ch],
            ch,
            sample_format,
        )
        .map_err(err)?;
        frame.set_pts(Some(start as i64));
        encoder.send_frame(&frame).map_err(fe)?;
        write_packets(&mut encoder, &mut octx)?;
        start += n;
    }
    encoder.send_eof().map_err(fe)?;
    write_packets(&mut encoder, &mut octx)?;
    octx.write_trailer().map_err(fe)?;
    Ok(())
}

fn fill_frame(
    frame: &mut ff::frame::Audio,
    pcm: &[f32],
    ch: usize,
    format: Sample,
) -> Result<(), String> {
    let n = pcm.len() / ch;
    let (kind, planar) = match format {
        Sample::F32(t) => (0, t == SampleType::Planar),
        Sample::I16(t) => (1, t == SampleType::Planar),
        Sample::I32(t) => (2, t == SampleType::Planar),
        Sample::F64(t) => (3, t == SampleType::Planar),
        other => return Err(format!("sample format {other:?} is not supported")),
    };
    let put = |out: &mut [u8], idx: usize, v: f32| {
        let v = v.clamp(-1.0, 1.0);
        match kind {
            0 => out[idx * 4..idx * 4 + 4].copy_from_slice(&v.to_le_bytes()),
            1 => out[idx * 2..idx * 2 + 2].copy_from_slice(&((v * 32767.0) as i16).to_le_bytes()),
            2 => out[idx * 4..idx * 4 + 4]
                .copy_from_slice(&((f64::from(v) * 2_147_483_647.0) as i32).to_le_bytes()),
            _ => out[idx * 8..idx * 8 + 8].copy_from_slice(&f64::from(v).to_le_bytes()),
        }
    };
    if planar {
        for c in 0..ch {
            let data = frame.data_mut(c);
            for i in 0..n {
                put(data, i, pcm[i * ch + c]);
            }
        }
    } else {
        let data = frame.data_mut(0);
        for (i, v) in pcm.iter().enumerate() {
            put(data, i, *v);
        }
    }
    Ok(())
}
