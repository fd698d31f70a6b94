//! The output side of the player: one [`Sink`] trait, backends chosen by name at run time
//! ([`SinkSpec`]), as librespot's `audio_backend` table does.

use std::path::PathBuf;
use std::time::Instant;

/// Sample rate of everything the player writes (the canonical audio, PROTOCOL.md 6).
pub const RATE: u32 = 48_000;
/// Channels of everything the player writes (interleaved).
pub const CHANNELS: usize = 2;

/// Converts between the monotonic clock and the two wall clocks a sink may need. The node's
/// network clock implements it; `Instant`s are the common currency.
pub trait TimeBase: Send + Sync {
    /// Network time at `at`, microseconds since the Unix epoch (PROTOCOL.md 7).
    fn network_us(&self, at: Instant) -> i64;
    /// The true system time at `at`, microseconds since the Unix epoch: no test skew and no
    /// network offset. Only the wav sink's CSV uses it.
    fn system_us(&self, at: Instant) -> i64;
    /// Whether network time is good enough to play by. Until it is, the player plays silence:
    /// a node that has just met its peers has a provisional guess of their time (the midpoint
    /// of its own clock and the first peer's), and its first sound would come that far off.
    fn settled(&self) -> bool {
        true
    }
}

/// What the first frame of a buffer is: the wav sink writes it to its CSV.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BufferTag {
    /// The slot whose audio this is (`None` before the schedule is known).
    pub slot: Option<u64>,
    /// The track sample index of the first frame, `None` for silence.
    pub sample: Option<u64>,
}

/// An audio output. Built inside the player thread (cpal streams are not `Send`).
///
/// Call order: [`Sink::next_due`] to learn when the next frame will be heard, then
/// [`Sink::write`] with the audio for that instant; repeat. `write` blocks while the sink holds
/// more than its lead, so the player thread is paced by the output.
pub trait Sink {
    /// The backend's name, for logs and `/status`: `cpal`, `null` or `wav`.
    fn name(&self) -> &'static str;
    /// The monotonic instant at which the next frame written will be heard.
    fn next_due(&mut self) -> Instant;
    /// Queues `samples` (interleaved stereo at 48 kHz, a whole number of frames) right after
    /// everything written before. Blocks until the sink wants more.
    fn write(&mut self, samples: &[f32], tag: BufferTag) -> Result<(), SinkError>;
    /// Makes what was written durable where that means something (the wav file and its CSV).
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Which sink to build (`--audio`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SinkSpec {
    /// cpal when a device can be opened, else null with one warning.
    Auto,
    /// The default cpal output device; failing to open it is an error.
    Cpal,
    /// No output, paced by the clock.
    Null,
    /// A 48 kHz stereo float WAV file and `PATH.csv` beside it.
    Wav(PathBuf),
}

impl std::str::FromStr for SinkSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(SinkSpec::Auto),
            "cpal" => Ok(SinkSpec::Cpal),
            "null" => Ok(SinkSpec::Null),
            _ => match s.strip_prefix("wav:") {
                Some("") => Err("wav needs a path: wav:PATH".into()),
                Some(path) => Ok(SinkSpec::Wav(PathBuf::from(path))),
                None => Err(format!(
                    "unknown audio output {s:?}: use auto, cpal, null or wav:PATH"
                )),
            },
        }
    }
}

/// Why a sink could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// No usable audio device (no sound card, no audio server, no 48 kHz stereo output).
    #[error("no usable audio device: {0}")]
    NoDevice(String),
    /// The device failed while playing.
    #[error("audio device failed: {0}")]
    Device(String),
    /// The wav file or its CSV could not be created or written.
    #[error("cannot write {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Frames (samples per channel) in `d` at [`RATE`], rounded down.
pub fn frames_in(d: std::time::Duration) -> u64 {
    (d.as_nanos() * u128::from(RATE) / 1_000_000_000) as u64
}

/// The duration of `frames` frames at [`RATE`].
pub fn duration_of(frames: u64) -> std::time::Duration {
    std::time::Duration::from_nanos((u128::from(frames) * 1_000_000_000 / u128::from(RATE)) as u64)
}
