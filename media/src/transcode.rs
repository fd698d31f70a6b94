//! Decoding any input with ffmpeg-next and encoding canonical AAC-LC (PROTOCOL.md section 6).
//!
//! One pass per file: demux, decode, a filter graph (`aresample` to 48 kHz, down- or up-mix to
//! stereo, planar float), the loudness meter on exactly the audio that is encoded, our own
//! re-chunking into the 1024-sample frames the encoder needs, then the native `aac` encoder. Encoded packets go to a callback one at a time, so memory
//! use does not grow with the track's length.

use std::path::Path;

use ff::ChannelLayout;
use ff::format::Sample;
use ff::format::sample::Type as SampleType;
use ffmpeg_next as ff;

use crate::adts::{CHANNELS, FRAME_SAMPLES, SAMPLE_RATE};
use crate::loudness::LoudnessMeter;

/// Canonical bit rate (PROTOCOL.md section 6: about 160 kbit/s).
pub const BIT_RATE: usize = 160_000;

/// Why a file could not be transcoded. Each message is written to complete the sentence
/// "skipped FILE: ...".
#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    /// ffmpeg could not open or recognise the file.
    #[error("not a readable audio file ({0})")]
    Open(String),
    /// The file is a media file without any audio stream.
    #[error("it has no audio stream")]
    NoAudioStream,
    /// The audio codec is unknown or its decoder failed to open.
    #[error("its audio cannot be decoded ({0})")]
    Decoder(String),
    /// Too many packets failed to decode.
    #[error("it is corrupt: {failed} of {packets} audio packets failed to decode")]
    Corrupt {
        /// Packets that failed.
        failed: u64,
        /// Packets read.
        packets: u64,
    },
    /// The container promises much more audio than could be decoded.
    #[error("it is truncated: only {decoded_s:.1} s of its {declared_s:.1} s could be decoded")]
    Truncated {
        /// Seconds decoded.
        decoded_s: f64,
        /// Seconds the container declares.
        declared_s: f64,
    },
    /// Decoding produced no audio at all.
    #[error("it contains no decodable audio")]
    Empty,
    /// The stream changed sample rate, format or channels midway.
    #[error("its audio format changes midway (unsupported)")]
    FormatChange,
    /// The resampling or loudness filter failed.
    #[error("the audio filter failed ({0})")]
    Filter(String),
    /// The AAC encoder failed.
    #[error("the AAC encoder failed ({0})")]
    Encoder(String),
    /// The packet consumer (the segment writer) failed.
    #[error("{0}")]
    Sink(String),
}

/// Tags read from the container and the audio stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tags {
    /// Title tag, trimmed; empty if absent.
    pub title: String,
    /// Artist tag (or album artist), trimmed; empty if absent.
    pub artist: String,
    /// Album tag, trimmed; empty if absent.
    pub album: String,
}

/// What a transcode produced, apart from the packets themselves.
#[derive(Clone, Debug)]
pub struct Transcoded {
    /// Tags of the source.
    pub tags: Tags,
    /// Name of the source codec (for logs).
    pub codec: String,
    /// Samples per channel at 48 kHz fed to the encoder: the track's exact length.
    pub samples: u64,
    /// AAC frames (packets) produced.
    pub frames: u64,
    /// Encoder delay in samples per channel.
    pub priming: u32,
    /// Integrated loudness (EBU R128) in LUFS; `None` for silence.
    pub loudness_lufs: Option<f64>,
    /// Packets that failed to decode and were skipped.
    pub decode_errors: u64,
}

/// Sets ffmpeg's own logging: silent unless `verbose` (our errors name files and reasons; its
/// lines would only repeat them without the file name).
pub fn init(verbose: bool) {
    INIT.call_once(|| {
        let _ = ff::init();
        ff::util::log::set_level(if verbose {
            ff::util::log::Level::Warning
        } else {
            ff::util::log::Level::Quiet
        });
    });
}

static INIT: std::sync::Once = std::sync::Once::new();

fn dict_get(dict: &ff::DictionaryRef<'_>, keys: &[&str]) -> String {
    keys.iter()
        .filter_map(|k| dict.get(k))
        .map(str::trim)
        .find(|v| !v.is_empty())
        .unwrap_or_default()
        .to_owned()
}

/// What [`probe`] learns of an input before decoding.
struct Probed {
    /// The best audio stream.
    stream_index: usize,
    /// Its codec parameters.
    params: ff::codec::Parameters,
    /// The duration the container or stream declares, seconds.
    declared_s: Option<f64>,
    /// The stream's tags, completed from the container's.
    tags: Tags,
}

/// Finds the best audio stream of `ictx`, its declared duration and the tags.
fn probe(ictx: &ff::format::context::Input) -> Result<Probed, TranscodeError> {
    let stream = ictx
        .streams()
        .best(ff::media::Type::Audio)
        .ok_or(TranscodeError::NoAudioStream)?;
    let tb = stream.time_base();
    let declared_s = if stream.duration() > 0 && tb.denominator() != 0 {
        Some(stream.duration() as f64 * f64::from(tb))
    } else if ictx.duration() > 0 {
        Some(ictx.duration() as f64 / f64::from(ff::ffi::AV_TIME_BASE))
    } else {
        None
    };
    let sm = stream.metadata();
    let mut tags = Tags {
        title: dict_get(&sm, &["title"]),
        artist: dict_get(&sm, &["artist", "album_artist"]),
        album: dict_get(&sm, &["album"]),
    };
    let fm = ictx.metadata();
    let fill = |field: &mut String, keys: &[&str]| {
        if field.is_empty() {
            *field = dict_get(&fm, keys);
        }
    };
    fill(&mut tags.title, &["title"]);
    fill(&mut tags.artist, &["artist", "album_artist"]);
    fill(&mut tags.album, &["album"]);
    Ok(Probed {
        stream_index: stream.index(),
        params: stream.parameters(),
        declared_s,
        tags,
    })
}

/// Transcodes `path` to canonical AAC-LC, calling `on_packet` with every raw AAC frame in order.
pub fn transcode(
    path: &Path,
    on_packet: &mut dyn FnMut(&[u8]) -> Result<(), String>,
) -> Result<Transcoded, TranscodeError> {
    init(false);
    let mut ictx = open_input(path).map_err(|e| TranscodeError::Open(e.to_string()))?;
    let Probed {
        stream_index,
        params,
        declared_s,
        tags,
    } = probe(&ictx)?;
    let ctx = ff::codec::context::Context::from_parameters(params)
        .map_err(|e| TranscodeError::Decoder(e.to_string()))?;
    let mut decoder = ctx
        .decoder()
        .audio()
        .map_err(|e| TranscodeError::Decoder(e.to_string()))?;
    let codec = decoder
        .codec()
        .map(|c| c.name().to_owned())
        .unwrap_or_else(|| "unknown".into());

    let mut pipeline = Pipeline::new(on_packet)?;
    let mut packets = 0u64;
    let mut failed = 0u64;
    let mut decoded = ff::frame::Audio::empty();
    for (stream, packet) in ictx.packets() {
        if stream.index() != stream_index {
            continue;
        }
        packets += 1;
        if decoder.send_packet(&packet).is_err() {
            failed += 1;
            continue;
        }
        failed += drain_decoder(&mut decoder, &mut decoded, &mut pipeline)?;
    }
    let _ = decoder.send_eof();
    failed += drain_decoder(&mut decoder, &mut decoded, &mut pipeline)?;
    // A handful of damaged packets is tolerated (players skip them too); more means a broken file.
    if failed > 0 && (failed > 10 || failed * 100 > packets) {
        return Err(TranscodeError::Corrupt { failed, packets });
    }
    let out = pipeline.finish()?;
    if out.samples == 0 {
        return Err(TranscodeError::Empty);
    }
    let decoded_s = out.samples as f64 / f64::from(SAMPLE_RATE);
    if let Some(declared_s) = declared_s
        && declared_s > 2.0
        && decoded_s < declared_s * 0.9
    {
        return Err(TranscodeError::Truncated {
            decoded_s,
            declared_s,
        });
    }
    Ok(Transcoded {
        tags,
        codec,
        samples: out.samples,
        frames: out.frames,
        priming: out.priming,
        loudness_lufs: out.loudness,
        decode_errors: failed,
    })
}

/// Opens a file for demuxing, as `ff::format::input` does, but for any file name: ffmpeg-next
/// panics on names that are not UTF-8, and FFmpeg itself takes raw bytes.
fn open_input(path: &Path) -> Result<ff::format::context::Input, ff::Error> {
    #[cfg(unix)]
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()).to_vec();
    #[cfg(not(unix))]
    let bytes = path.to_string_lossy().into_owned().into_bytes();
    let c_path = std::ffi::CString::new(bytes).map_err(|_| ff::Error::InvalidData)?;
    // SAFETY: the same calls as ffmpeg-next's `format::input`, with a valid NUL-terminated path;
    // on success the context is owned by the returned `Input`, on failure it is closed here.
    unsafe {
        let mut ps = std::ptr::null_mut();
        match ff::ffi::avformat_open_input(
            &mut ps,
            c_path.as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        ) {
            0 => match ff::ffi::avformat_find_stream_info(ps, std::ptr::null_mut()) {
                r if r >= 0 => Ok(ff::format::context::Input::wrap(ps)),
                e => {
                    ff::ffi::avformat_close_input(&mut ps);
                    Err(ff::Error::from(e))
                }
            },
            e => Err(ff::Error::from(e)),
        }
    }
}

/// Receives every frame the decoder has ready; returns how many receive calls failed.
fn drain_decoder(
    decoder: &mut ff::decoder::Audio,
    frame: &mut ff::frame::Audio,
    pipeline: &mut Pipeline<'_>,
) -> Result<u64, TranscodeError> {
    let mut failed = 0;
    loop {
        match decoder.receive_frame(frame) {
            Ok(()) => pipeline.push(frame)?,
            Err(ff::Error::Eof) => return Ok(failed),
            Err(ff::Error::Other { errno }) if errno == ff::util::error::EAGAIN => {
                return Ok(failed);
            }
            Err(_) => {
                failed += 1;
                return Ok(failed);
            }
        }
    }
}

struct PipelineOut {
    samples: u64,
    frames: u64,
    priming: u32,
    loudness: Option<f64>,
}

/// Filter graph, re-chunker and encoder.
struct Pipeline<'a> {
    graph: Option<(ff::filter::Graph, u32, Sample, u16)>,
    src_pts: i64,
    fifo: [Vec<f32>; 2],
    encoder: ff::encoder::Audio,
    enc_pts: i64,
    samples: u64,
    frames: u64,
    meter: LoudnessMeter,
    filtered: ff::frame::Audio,
    packet: ff::Packet,
    on_packet: &'a mut dyn FnMut(&[u8]) -> Result<(), String>,
}

impl<'a> Pipeline<'a> {
    fn new(
        on_packet: &'a mut dyn FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<Self, TranscodeError> {
        let enc_err = |e: ff::Error| TranscodeError::Encoder(e.to_string());
        let codec = ff::encoder::find(ff::codec::Id::AAC)
            .ok_or_else(|| TranscodeError::Encoder("FFmpeg has no AAC encoder".into()))?;
        let mut enc = ff::codec::context::Context::new_with_codec(codec)
            .encoder()
            .audio()
            .map_err(enc_err)?;
        enc.set_rate(SAMPLE_RATE as i32);
        enc.set_channel_layout(ChannelLayout::STEREO);
        enc.set_channels(i32::from(CHANNELS));
        enc.set_format(Sample::F32(SampleType::Planar));
        enc.set_bit_rate(BIT_RATE);
        enc.set_time_base((1, SAMPLE_RATE as i32));
        let encoder = enc.open_as(codec).map_err(enc_err)?;
        Ok(Self {
            graph: None,
            src_pts: 0,
            fifo: [Vec::new(), Vec::new()],
            encoder,
            enc_pts: 0,
            samples: 0,
            frames: 0,
            meter: LoudnessMeter::new(),
            filtered: ff::frame::Audio::empty(),
            packet: ff::Packet::empty(),
            on_packet,
        })
    }

    fn push(&mut self, frame: &mut ff::frame::Audio) -> Result<(), TranscodeError> {
        if frame.samples() == 0 {
            return Ok(());
        }
        let props = (frame.rate(), frame.format(), frame.channels());
        match &self.graph {
            None => self.graph = Some((build_graph(frame)?, props.0, props.1, props.2)),
            Some((_, r, f, c)) if (*r, *f, *c) != props => {
                return Err(TranscodeError::FormatChange);
            }
            Some(_) => {}
        }
        frame.set_pts(Some(self.src_pts));
        self.src_pts += frame.samples() as i64;
        let graph = &mut self.graph.as_mut().expect("graph built above").0;
        graph
            .get("in")
            .expect("the graph has an input named in")
            .source()
            .add(frame)
            .map_err(|e| TranscodeError::Filter(e.to_string()))?;
        self.drain_filter()
    }

    fn drain_filter(&mut self) -> Result<(), TranscodeError> {
        let Some((graph, ..)) = self.graph.as_mut() else {
            return Ok(());
        };
        let mut sink = graph.get("out").expect("the graph has an output named out");
        while sink.sink().frame(&mut self.filtered).is_ok() {
            let n = self.filtered.samples();
            self.meter.push(
                &self.filtered.plane::<f32>(0)[..n],
                &self.filtered.plane::<f32>(1)[..n],
            );
            self.fifo[0].extend_from_slice(&self.filtered.plane::<f32>(0)[..n]);
            self.fifo[1].extend_from_slice(&self.filtered.plane::<f32>(1)[..n]);
            while self.fifo[0].len() >= FRAME_SAMPLES as usize {
                self.encode_chunk(FRAME_SAMPLES as usize)?;
            }
        }
        Ok(())
    }

    fn encode_chunk(&mut self, n: usize) -> Result<(), TranscodeError> {
        let mut frame =
            ff::frame::Audio::new(Sample::F32(SampleType::Planar), n, ChannelLayout::STEREO);
        frame.set_rate(SAMPLE_RATE);
        for ch in 0..2 {
            frame.plane_mut::<f32>(ch)[..n].copy_from_slice(&self.fifo[ch][..n]);
            self.fifo[ch].drain(..n);
        }
        frame.set_pts(Some(self.enc_pts));
        self.enc_pts += n as i64;
        self.samples += n as u64;
        self.encoder
            .send_frame(&frame)
            .map_err(|e| TranscodeError::Encoder(e.to_string()))?;
        self.drain_encoder()
    }

    fn drain_encoder(&mut self) -> Result<(), TranscodeError> {
        while self.encoder.receive_packet(&mut self.packet).is_ok() {
            let data = self.packet.data().unwrap_or_default();
            (self.on_packet)(data).map_err(TranscodeError::Sink)?;
            self.frames += 1;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<PipelineOut, TranscodeError> {
        if let Some((graph, ..)) = self.graph.as_mut() {
            graph
                .get("in")
                .expect("the graph has an input named in")
                .source()
                .flush()
                .map_err(|e| TranscodeError::Filter(e.to_string()))?;
        }
        self.drain_filter()?;
        let rest = self.fifo[0].len();
        if rest > 0 {
            self.encode_chunk(rest)?;
        }
        self.encoder
            .send_eof()
            .map_err(|e| TranscodeError::Encoder(e.to_string()))?;
        self.drain_encoder()?;
        // SAFETY: reading a plain integer field of the open encoder context we own.
        let priming = unsafe { (*self.encoder.as_ptr()).initial_padding }.max(0) as u32;
        Ok(PipelineOut {
            samples: self.samples,
            frames: self.frames,
            priming,
            loudness: self.meter.integrated(),
        })
    }
}

fn build_graph(frame: &ff::frame::Audio) -> Result<ff::filter::Graph, TranscodeError> {
    let err = |e: ff::Error| TranscodeError::Filter(e.to_string());
    let mut layout = frame.channel_layout();
    if layout.bits() == 0 || layout.channels() != i32::from(frame.channels()) {
        layout = ChannelLayout::default(i32::from(frame.channels()));
    }
    let args = format!(
        "time_base=1/{rate}:sample_rate={rate}:sample_fmt={}:channel_layout=0x{:x}",
        frame.format().name(),
        layout.bits(),
        rate = frame.rate(),
    );
    let mut graph = ff::filter::Graph::new();
    let abuffer = ff::filter::find("abuffer")
        .ok_or_else(|| TranscodeError::Filter("no abuffer filter".into()))?;
    let abuffersink = ff::filter::find("abuffersink")
        .ok_or_else(|| TranscodeError::Filter("no abuffersink filter".into()))?;
    graph.add(&abuffer, "in", &args).map_err(err)?;
    graph.add(&abuffersink, "out", "").map_err(err)?;
    {
        let mut out = graph.get("out").expect("just added");
        out.set_sample_format(Sample::F32(SampleType::Planar));
        out.set_channel_layout(ChannelLayout::STEREO);
        out.set_sample_rate(SAMPLE_RATE);
    }
    graph
        .output("in", 0)
        .and_then(|p| p.input("out", 0))
        .and_then(|p| p.parse("aresample=osr=48000:osf=fltp:ocl=stereo"))
        .map_err(err)?;
    graph.validate().map_err(err)?;
    Ok(graph)
}
