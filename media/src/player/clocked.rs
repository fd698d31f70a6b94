//! Sinks paced by the monotonic clock: `null` (plays nothing) and `wav` (writes what it plays).
//!
//! Their timeline is exact: frame `k` is heard at `t0 + k / 48 kHz`, `t0` being the instant the
//! first buffer was due. A write that comes after its frames were due is what a real device calls
//! an underrun: the device played silence meanwhile, so the timeline moves on by that silence and
//! the player sees the jump in [`Sink::next_due`].

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::sink::{BufferTag, CHANNELS, RATE, Sink, SinkError, TimeBase, duration_of, frames_in};

/// The timeline of a clock-paced sink.
#[derive(Debug)]
struct Timeline {
    t0: Option<Instant>,
    written: u64,
    lead: Duration,
}

impl Timeline {
    fn new(lead: Duration) -> Self {
        Timeline {
            t0: None,
            written: 0,
            lead,
        }
    }

    fn due(&mut self) -> Instant {
        let lead = self.lead;
        *self.t0.get_or_insert_with(|| Instant::now() + lead) + duration_of(self.written)
    }

    /// Frames of silence the "device" played because nothing was written in time (0 if none);
    /// the timeline has moved past them.
    fn underrun(&mut self) -> u64 {
        let due = self.due();
        let now = Instant::now();
        if due >= now {
            return 0;
        }
        // A millisecond of margin so that the next buffer is not late again at once.
        let gap = frames_in(now - due) + u64::from(RATE) / 1000;
        self.written += gap;
        gap
    }

    /// Blocks until the next frame is due within the lead.
    fn pace(&mut self) {
        let due = self.due();
        let now = Instant::now();
        if due > now + self.lead {
            std::thread::sleep(due - now - self.lead);
        }
    }
}

/// Plays nothing, at the pace of the clock.
#[derive(Debug)]
pub struct NullSink {
    timeline: Timeline,
    underruns: u64,
}

impl NullSink {
    /// A null sink that stays at most `lead` ahead of the clock.
    pub fn new(lead: Duration) -> Self {
        NullSink {
            timeline: Timeline::new(lead),
            underruns: 0,
        }
    }
}

impl Sink for NullSink {
    fn name(&self) -> &'static str {
        "null"
    }

    fn next_due(&mut self) -> Instant {
        if self.timeline.underrun() > 0 {
            self.underruns += 1;
        }
        self.timeline.due()
    }

    fn write(&mut self, samples: &[f32], _tag: BufferTag) -> Result<(), SinkError> {
        self.timeline.pace();
        self.timeline.written += (samples.len() / CHANNELS) as u64;
        Ok(())
    }
}

const HEADER_BYTES: u64 = 44;
const BYTES_PER_FRAME: u64 = 4 * CHANNELS as u64;

/// Writes exactly what it plays to a 48 kHz stereo 32-bit float WAV file, and one CSV row per
/// buffer to `PATH.csv`: `system_us,slot,sample`, the true system time at which the buffer's
/// first frame is due, its slot and its track sample index (-1 for silence or no slot).
///
/// The WAV header's sizes are brought up to date every second and when the sink is dropped, so a
/// node killed at any moment leaves a readable file of everything up to the last second.
pub struct WavSink {
    timeline: Timeline,
    time: Arc<dyn TimeBase>,
    path: PathBuf,
    csv_path: PathBuf,
    wav: BufWriter<File>,
    csv: BufWriter<File>,
    frames: u64,
    synced_frames: u64,
    error: Option<SinkError>,
}

impl WavSink {
    /// Creates (or truncates) `path` and `path.csv`.
    pub fn create(path: &Path, time: Arc<dyn TimeBase>, lead: Duration) -> Result<Self, SinkError> {
        let csv_path = csv_path(path);
        let open = |p: &Path| {
            File::create(p).map_err(|source| SinkError::File {
                path: p.to_owned(),
                source,
            })
        };
        let mut sink = WavSink {
            timeline: Timeline::new(lead),
            time,
            path: path.to_owned(),
            wav: BufWriter::with_capacity(1 << 16, open(path)?),
            csv: BufWriter::with_capacity(1 << 17, open(&csv_path)?),
            csv_path,
            frames: 0,
            synced_frames: 0,
            error: None,
        };
        sink.wav
            .write_all(&header(0))
            .map_err(|e| sink.wav_error(e))?;
        sink.csv
            .write_all(b"system_us,slot,sample\n")
            .map_err(|e| sink.csv_error(e))?;
        Ok(sink)
    }

    fn wav_error(&self, source: std::io::Error) -> SinkError {
        SinkError::File {
            path: self.path.clone(),
            source,
        }
    }

    fn csv_error(&self, source: std::io::Error) -> SinkError {
        SinkError::File {
            path: self.csv_path.clone(),
            source,
        }
    }

    fn append(&mut self, samples: &[f32], tag: BufferTag, due: Instant) -> Result<(), SinkError> {
        let system_us = self.time.system_us(due);
        let slot = tag.slot.map_or(-1, |s| s as i64);
        let sample = tag.sample.map_or(-1, |s| s as i64);
        writeln!(self.csv, "{system_us},{slot},{sample}").map_err(|e| self.csv_error(e))?;
        let mut bytes = Vec::with_capacity(samples.len() * 4);
        for s in samples {
            bytes.extend_from_slice(&s.to_le_bytes());
        }
        self.wav.write_all(&bytes).map_err(|e| self.wav_error(e))?;
        self.frames += (samples.len() / CHANNELS) as u64;
        if self.frames - self.synced_frames >= u64::from(RATE) {
            self.sync()?;
        }
        Ok(())
    }

    /// Flushes both files and writes the current sizes into the WAV header: the audio first,
    /// then the header, then the CSV, so that a reader (or a crash) never finds CSV rows for
    /// audio the header does not cover yet. The CSV's buffer holds more than a second of rows,
    /// so it is written only here.
    fn sync(&mut self) -> Result<(), SinkError> {
        self.wav.flush().map_err(|e| self.wav_error(e))?;
        self.wav
            .get_ref()
            .write_all_at(&header(self.frames * BYTES_PER_FRAME), 0)
            .map_err(|e| self.wav_error(e))?;
        self.csv.flush().map_err(|e| self.csv_error(e))?;
        self.synced_frames = self.frames;
        Ok(())
    }
}

/// The CSV written beside a wav sink's file: `PATH.csv`.
pub fn csv_path(wav: &Path) -> PathBuf {
    let mut name = wav.as_os_str().to_owned();
    name.push(".csv");
    PathBuf::from(name)
}

/// A canonical 44-byte WAV header for `data_bytes` of 32-bit float stereo at 48 kHz (sizes
/// saturate at 4 GiB, WAV's limit: about 3 hours).
fn header(data_bytes: u64) -> [u8; HEADER_BYTES as usize] {
    let data = u32::try_from(data_bytes).unwrap_or(u32::MAX - 36);
    let mut h = [0u8; HEADER_BYTES as usize];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&(data + 36).to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&3u16.to_le_bytes()); // WAVE_FORMAT_IEEE_FLOAT
    h[22..24].copy_from_slice(&(CHANNELS as u16).to_le_bytes());
    h[24..28].copy_from_slice(&RATE.to_le_bytes());
    h[28..32].copy_from_slice(&(RATE * BYTES_PER_FRAME as u32).to_le_bytes());
    h[32..34].copy_from_slice(&(BYTES_PER_FRAME as u16).to_le_bytes());
    h[34..36].copy_from_slice(&32u16.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data.to_le_bytes());
    h
}

impl Sink for WavSink {
    fn name(&self) -> &'static str {
        "wav"
    }

    fn next_due(&mut self) -> Instant {
        let due = self.timeline.due();
        let gap = self.timeline.underrun();
        if gap > 0 && self.error.is_none() {
            // The silence a device would have played is in the file too: the file's timeline
            // stays the wall clock's.
            let silence = vec![0.0; gap as usize * CHANNELS];
            if let Err(e) = self.append(&silence, BufferTag::default(), due) {
                self.error = Some(e);
            }
        }
        self.timeline.due()
    }

    fn write(&mut self, samples: &[f32], tag: BufferTag) -> Result<(), SinkError> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.timeline.pace();
        let due = self.timeline.due();
        self.append(samples, tag, due)?;
        self.timeline.written += (samples.len() / CHANNELS) as u64;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.sync()
    }
}

impl Drop for WavSink {
    fn drop(&mut self) {
        if let Err(e) = self.sync() {
            tracing::warn!("the wav output is incomplete: {e}");
        }
    }
}

/// Reads a WAV file written by [`WavSink`]: its interleaved samples.
pub fn read_wav(path: &Path) -> std::io::Result<Vec<f32>> {
    let bytes = std::fs::read(path)?;
    let bad = |what: &str| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {what}", path.display()),
        )
    };
    if bytes.len() < HEADER_BYTES as usize || &bytes[0..4] != b"RIFF" || &bytes[36..40] != b"data" {
        return Err(bad("not a WAV file written by the wav sink"));
    }
    let declared = u32::from_le_bytes([bytes[40], bytes[41], bytes[42], bytes[43]]) as usize;
    let body = &bytes[HEADER_BYTES as usize..];
    // A file cut by a crash holds more than its header says: the header is the safe bound.
    let body = &body[..declared.min(body.len()) / 8 * 8];
    Ok(body
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}
