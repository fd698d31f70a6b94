//! The real audio device: the default cpal output, fed from a queue the player thread fills.
//!
//! # Timing
//! The player needs to know *when* each frame it writes will be heard ([`Sink::next_due`]).
//! cpal tells us, for every data callback, how far ahead of the callback the first frame of
//! that callback will reach the speaker (`playback - callback`: the device delay). That gives
//! one sample of the device's *epoch*: the instant at which frame 0 of the stream was (or
//! would have been) heard, `heard(first frame of callback) - duration_of(frames before it)`.
//! If the device plays at exactly 48 kHz of our monotonic clock, every callback yields the
//! same epoch; in practice each sample carries scheduling jitter (our `Instant::now()` is taken
//! a little after the driver measured the delay) and the device clock drifts by a few ppm. So
//! we keep an exponentially filtered epoch, which averages the jitter away and still follows
//! slow drift, and reset it to the raw sample whenever a sample disagrees by more than
//! [`EPOCH_RESET`]: that only happens when the stream really jumped (an underrun inside the
//! driver, the stall after `play()`, a suspended machine), and then following the jump at once
//! is what lets the player resynchronise, where a filter would smear the jump over seconds.
//!
//! Every frame the device consumes is accounted for, including the silence played when the
//! queue ran dry: that silence counts as written, so "frames written" and "frames consumed"
//! stay on one timeline and `next_due = epoch + duration_of(frames written)` stays true. After
//! an underrun the player sees `next_due` jump forward by the gap and lines up again.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{ErrorKind, OutputCallbackInfo, SampleFormat, StreamConfig, SupportedStreamConfig};

use super::sink::{BufferTag, CHANNELS, RATE, Sink, SinkError, duration_of, frames_in};

/// A single epoch sample further than this from the filtered epoch replaces it: the stream
/// jumped. Callback jitter through PulseAudio is a few milliseconds, so 20 ms is well clear of
/// noise and well below anything audible as a sync error between two nodes.
const EPOCH_RESET: Duration = Duration::from_millis(20);

/// Weight of a new epoch sample in the filter, as a divisor. Callbacks come every 5 to 20 ms,
/// so 16 callbacks make a time constant of roughly 100 to 300 ms: short enough to settle soon
/// after the start, long enough to flatten millisecond jitter to well under a millisecond.
const EPOCH_SMOOTHING: i64 = 16;

/// How long `write` waits without the device consuming a single frame before it gives up.
/// Streams stall for up to about 2 s after `play()` (PulseAudio through ALSA); a device that
/// stays silent for longer than this is dead (e.g. the audio server went away, which ALSA's
/// pulse plugin reports only as endless non-fatal errors), and the player must hear about it
/// rather than block forever.
const STALL_LIMIT: Duration = Duration::from_secs(5);

/// The default cpal output device, playing 48 kHz stereo.
///
/// Built on the thread that uses it: the cpal stream it owns is not `Send` on every platform.
pub struct CpalSink {
    shared: Arc<Shared>,
    /// `write` blocks while more than this is queued.
    lead_frames: u64,
    device_name: String,
    /// Dropping it stops the device; it is only held.
    _stream: cpal::Stream,
}

/// What the writer and the data callback share.
struct Shared {
    state: Mutex<State>,
    /// Signalled by the callback after it consumed frames, and by the error callback.
    consumed: Condvar,
    /// Mirrors of counters in [`State`], so that status reads never contend with the callback.
    frames_played: AtomicU64,
    underruns: AtomicU64,
    delay_ns: AtomicU64,
}

struct State {
    /// Interleaved stereo samples not yet handed to the device.
    queue: VecDeque<f32>,
    /// Frames written by `write`, plus the silence the callback padded with (see module docs).
    written: u64,
    /// Frames handed to the device, silence included.
    consumed: u64,
    /// Filtered epoch (see module docs), nanoseconds relative to [`State::base`]; `None` until
    /// the first callback.
    epoch_ns: Option<i64>,
    /// Reference point for `epoch_ns`, so the filter can work in plain integers.
    base: Instant,
    /// Whether `write` was ever called: silence before the first write is not an underrun.
    started: bool,
    /// The first fatal error the stream reported.
    fatal: Option<String>,
}

/// Opens the default output device at 48 kHz stereo and starts it playing silence.
///
/// `lead` is how much audio [`Sink::write`] keeps queued ahead of the device before it blocks.
/// Call it on the thread that will write: the stream lives in the returned sink.
///
/// # Errors
/// [`SinkError::NoDevice`] when there is no output device, it offers no 48 kHz stereo
/// configuration in f32 or i16, or its stream cannot be built or started.
pub fn open(lead: Duration) -> Result<CpalSink, SinkError> {
    // alsa-lib writes its own lines to stderr while cpal looks for a device (a dozen on a
    // machine without a sound card); here they go to the debug log, and the error says it.
    #[cfg(target_os = "linux")]
    let alsa_lines = alsa::Output::local_error_handler().ok();
    let opened = open_device(lead);
    #[cfg(target_os = "linux")]
    if let Some(lines) = alsa_lines {
        let text = lines.borrow().to_string();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            tracing::debug!("alsa-lib: {line}");
        }
    }
    opened
}

fn open_device(lead: Duration) -> Result<CpalSink, SinkError> {
    let host = cpal::default_host();
    let device = host.default_output_device().ok_or_else(|| {
        SinkError::NoDevice(format!(
            "the {} host has no output device",
            host.id().name()
        ))
    })?;
    let device_name = match device.description() {
        Ok(d) => format!("{}: {}", host.id().name(), d.name()),
        Err(_) => host.id().name().to_string(),
    };
    let supported = choose_config(&device, &device_name)?;
    let config = StreamConfig {
        channels: supported.channels(),
        sample_rate: supported.sample_rate(),
        buffer_size: cpal::BufferSize::Default,
    };

    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::with_capacity(2 * frames_in(lead) as usize * CHANNELS),
            written: 0,
            consumed: 0,
            epoch_ns: None,
            base: Instant::now(),
            started: false,
            fatal: None,
        }),
        consumed: Condvar::new(),
        frames_played: AtomicU64::new(0),
        underruns: AtomicU64::new(0),
        delay_ns: AtomicU64::new(0),
    });

    let stream = match supported.sample_format() {
        SampleFormat::F32 => build::<f32>(&device, config, &shared, |s| s),
        // Out-of-range samples must clip, not wrap: clamp (and `as` saturates besides, and
        // turns NaN into silence).
        SampleFormat::I16 => build::<i16>(&device, config, &shared, |s| {
            (s.clamp(-1.0, 1.0) * f32::from(i16::MAX)) as i16
        }),
        other => {
            return Err(SinkError::NoDevice(format!(
                "{device_name}: sample format {other} was chosen but is not supported"
            )));
        }
    }
    .map_err(|e| SinkError::NoDevice(format!("{device_name}: cannot build the stream: {e}")))?;
    stream
        .play()
        .map_err(|e| SinkError::NoDevice(format!("{device_name}: cannot start the stream: {e}")))?;
    tracing::debug!(device = %device_name, format = %supported.sample_format(), ?lead, "cpal output open");

    Ok(CpalSink {
        shared,
        lead_frames: frames_in(lead),
        device_name,
        _stream: stream,
    })
}

/// Picks a 48 kHz stereo configuration: the default one when it fits, else any the device
/// lists, f32 before i16.
fn choose_config(
    device: &cpal::Device,
    device_name: &str,
) -> Result<SupportedStreamConfig, SinkError> {
    let usable = |c: &SupportedStreamConfig| {
        c.sample_rate() == RATE
            && usize::from(c.channels()) == CHANNELS
            && matches!(c.sample_format(), SampleFormat::F32 | SampleFormat::I16)
    };
    let default_problem = match device.default_output_config() {
        Ok(c) if usable(&c) => return Ok(c),
        Ok(c) => format!(
            "its default is {} Hz, {} channels, {}",
            c.sample_rate(),
            c.channels(),
            c.sample_format()
        ),
        Err(e) => format!("default output config: {e}"),
    };
    let ranges = device.supported_output_configs().map_err(|e| {
        // With no sound card both fail the same way (ALSA opens the device for either).
        let listing = format!("supported output configs: {e}");
        if default_problem.ends_with(&e.to_string()) {
            SinkError::NoDevice(format!("{device_name}: {default_problem}"))
        } else {
            SinkError::NoDevice(format!("{device_name}: {default_problem}; {listing}"))
        }
    })?;
    let mut best: Option<cpal::SupportedStreamConfigRange> = None;
    for range in ranges {
        let fits = usize::from(range.channels()) == CHANNELS
            && range.contains_rate(RATE)
            && matches!(range.sample_format(), SampleFormat::F32 | SampleFormat::I16);
        let better = match &best {
            None => true,
            Some(b) => b.sample_format() != SampleFormat::F32,
        };
        if fits && better {
            best = Some(range);
        }
    }
    best.map(|r| r.with_sample_rate(RATE)).ok_or_else(|| {
        SinkError::NoDevice(format!(
            "{device_name}: no 48000 Hz stereo f32 or i16 output configuration \
             ({default_problem})"
        ))
    })
}

/// Builds the output stream for sample type `T`; `convert` turns our f32 into `T`.
fn build<T>(
    device: &cpal::Device,
    config: StreamConfig,
    shared: &Arc<Shared>,
    convert: fn(f32) -> T,
) -> Result<cpal::Stream, cpal::Error>
where
    T: cpal::SizedSample + 'static,
{
    let data_shared = Arc::clone(shared);
    let error_shared = Arc::clone(shared);
    device.build_output_stream::<T, _, _>(
        config,
        move |data: &mut [T], info: &OutputCallbackInfo| {
            data_shared.fill(data, info, convert);
        },
        move |err: cpal::Error| error_shared.stream_error(err),
        None,
    )
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing that holds the lock can panic halfway through an update that matters, so a
        // poisoned lock still holds consistent counters.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The data callback: runs on the device's thread, must not block beyond the brief lock.
    fn fill<T: cpal::SizedSample>(
        &self,
        data: &mut [T],
        info: &OutputCallbackInfo,
        convert: fn(f32) -> T,
    ) {
        let now = Instant::now();
        let ts = info.timestamp();
        // `playback` and `callback` share the stream's own clock, which is not ours; only their
        // difference (the delay) carries over to `Instant`, applied to our own "now".
        let delay = ts.playback.duration_since(ts.callback);
        let heard = now + delay;
        let frames = (data.len() / CHANNELS) as u64;

        let mut st = self.lock();
        let raw = signed_nanos(heard, st.base) - duration_of(st.consumed).as_nanos() as i64;
        st.epoch_ns = Some(match st.epoch_ns {
            Some(filtered) if (raw - filtered).unsigned_abs() <= EPOCH_RESET.as_nanos() as u64 => {
                filtered + (raw - filtered) / EPOCH_SMOOTHING
            }
            _ => raw,
        });

        let take = st.queue.len().min(data.len());
        for (out, s) in data.iter_mut().zip(st.queue.drain(..take)) {
            *out = convert(s);
        }
        let silence = convert(0.0);
        for out in &mut data[take..] {
            *out = silence;
        }
        let short = frames - (take / CHANNELS) as u64;
        if short > 0 {
            // The silence takes the place of frames the player did not write in time; see the
            // module docs for why it counts as written.
            st.written += short;
            if st.started {
                self.underruns.fetch_add(1, Ordering::Relaxed);
            }
        }
        st.consumed += frames;
        self.frames_played.store(st.consumed, Ordering::Relaxed);
        self.delay_ns
            .store(delay.as_nanos() as u64, Ordering::Relaxed);
        drop(st);
        self.consumed.notify_all();
    }

    /// The error callback: keeps fatal errors for `write`, logs the rest.
    fn stream_error(&self, err: cpal::Error) {
        match err.kind() {
            // The stream is gone: ALSA's worker thread exits on DeviceNotAvailable, and the
            // others mean the stream must be rebuilt or can never run.
            ErrorKind::DeviceNotAvailable
            | ErrorKind::HostUnavailable
            | ErrorKind::StreamInvalidated
            | ErrorKind::PermissionDenied => {
                tracing::warn!(error = %err, "audio device failed");
                let mut st = self.lock();
                if st.fatal.is_none() {
                    st.fatal = Some(err.to_string());
                }
                drop(st);
                self.consumed.notify_all();
            }
            // The stream recovers by itself from these. Through ALSA's pulse plugin,
            // `snd_pcm_avail_delay` now and then fails with EIO (a BackendError) and the next
            // period plays normally; xruns are recovered by the worker with prepare().
            ErrorKind::Xrun | ErrorKind::BackendError => {
                tracing::debug!(error = %err, kind = ?err.kind(), "audio device hiccup");
            }
            _ => tracing::warn!(error = %err, kind = ?err.kind(), "audio device reported an error"),
        }
    }
}

/// `at - base` in nanoseconds, negative when `at` is earlier.
fn signed_nanos(at: Instant, base: Instant) -> i64 {
    match at.checked_duration_since(base) {
        Some(d) => d.as_nanos() as i64,
        None => -(base.duration_since(at).as_nanos() as i64),
    }
}

impl CpalSink {
    /// Frames the device has consumed so far, the silence played in underruns included.
    pub fn frames_played(&self) -> u64 {
        self.shared.frames_played.load(Ordering::Relaxed)
    }

    /// Data callbacks that found the queue short and padded with silence (after the first
    /// write; the silence before it is no underrun).
    pub fn underruns(&self) -> u64 {
        self.shared.underruns.load(Ordering::Relaxed)
    }

    /// The device delay the last data callback reported: how long after the callback its
    /// first frame is heard. Zero before the first callback.
    pub fn device_delay(&self) -> Duration {
        Duration::from_nanos(self.shared.delay_ns.load(Ordering::Relaxed))
    }

    /// The host and device, for logs and `/status` (e.g. `ALSA: Default Audio Device`).
    pub fn device_name(&self) -> String {
        self.device_name.clone()
    }
}

impl Sink for CpalSink {
    fn name(&self) -> &'static str {
        "cpal"
    }

    fn next_due(&mut self) -> Instant {
        let st = self.shared.lock();
        match st.epoch_ns {
            Some(epoch) => {
                let due = i128::from(epoch) + duration_of(st.written).as_nanos() as i128;
                if due >= 0 {
                    st.base + Duration::from_nanos(due as u64)
                } else {
                    st.base
                        .checked_sub(Duration::from_nanos(due.unsigned_abs() as u64))
                        .unwrap_or(st.base)
                }
            }
            // No callback yet, so no delay is known. Assume the device starts on the queue at
            // once: that is what the first callback will report, give or take the device delay
            // (it comes about 2 ms after `play()`, before the player has finished filling the
            // lead). Adding the lead here as well would date the first lead's worth of audio a
            // whole lead late, and the first callback would pull `next_due` back by that much.
            None => Instant::now() + duration_of((st.queue.len() / CHANNELS) as u64),
        }
    }

    fn write(&mut self, samples: &[f32], _tag: BufferTag) -> Result<(), SinkError> {
        let whole = samples.len() - samples.len() % CHANNELS;
        if whole != samples.len() {
            tracing::warn!(
                samples = samples.len(),
                "cpal sink got a partial frame; dropping its last sample"
            );
        }
        let mut st = self.shared.lock();
        if let Some(err) = &st.fatal {
            return Err(SinkError::Device(err.clone()));
        }
        st.queue.extend(&samples[..whole]);
        st.written += (whole / CHANNELS) as u64;
        st.started = true;

        let mut last_progress = (st.consumed, Instant::now());
        while (st.queue.len() / CHANNELS) as u64 > self.lead_frames {
            if let Some(err) = &st.fatal {
                return Err(SinkError::Device(err.clone()));
            }
            if st.consumed != last_progress.0 {
                last_progress = (st.consumed, Instant::now());
            }
            let waited = last_progress.1.elapsed();
            if waited >= STALL_LIMIT {
                return Err(SinkError::Device(format!(
                    "{}: no audio consumed for {} s",
                    self.device_name,
                    waited.as_secs()
                )));
            }
            st = self
                .shared
                .consumed
                .wait_timeout(st, STALL_LIMIT - waited)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        Ok(())
    }
}
