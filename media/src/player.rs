//! The player thread (ARCHITECTURE.md house style 5, after librespot's `Player`): a [`Player`]
//! handle with a command channel and a join handle; the sink is built inside the thread.
//!
//! The thread keeps the audio heard at every instant equal to the schedule (PROTOCOL.md 8): for
//! every buffer it asks the sink when its first frame will be heard, converts that instant to
//! network time, and compares the slot position due then with the position it is about to
//! play. Errors of a sample or more are corrected by dropping or repeating single samples spread
//! over the buffer (at most [`MAX_CORRECTIONS`] per 10 ms buffer, so up to 8 ms per second, above
//! the network clock's 5 ms/s slew); errors above [`RESYNC`] jump to the right position at once.
//! A segment missing at its deadline plays as silence and the schedule does not move; a join or
//! a restart mid-track starts at the right sample as soon as the segment is there.
//!
//! # Layout
//! - [`sink`]: the [`Sink`] trait, [`SinkSpec`] and the time base sinks need.
//! - [`clocked`]: the `null` and `wav` sinks, paced by the clock.
//! - [`cpal`]: a real audio device through cpal.
//! - [`schedule`]: [`SlotPlan`], loudness gain, locating a network time in the schedule.
//! - [`track`]: decoding one track's segments just ahead of the playhead.

pub mod clocked;
pub mod cpal;
pub mod schedule;
pub mod sink;
pub mod track;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::{info, warn};

pub use schedule::{SlotPlan, TrackAudio, TrackTags, fade_out_gain, gain_db, linear};
pub use sink::{BufferTag, CHANNELS, RATE, Sink, SinkError, SinkSpec, TimeBase};

use crate::store::BlockStore;
use track::{Audio, TrackStream};

/// Frames per buffer: 10 ms.
pub const BUFFER: u64 = RATE as u64 / 100;
/// Most single-sample corrections per buffer.
pub const MAX_CORRECTIONS: i64 = 4;
/// Errors above this resynchronise at once (PROTOCOL.md 8: 50 ms), in frames.
pub const RESYNC: f64 = 0.050 * RATE as f64;
/// How far ahead of the playhead segments are decoded.
const DECODE_AHEAD: u64 = 2 * RATE as u64;
/// Frames decoded per buffer at most (a little over 0.3 s of audio per 10 ms).
const DECODE_BUDGET: usize = 16;

/// How the player is set up.
pub struct PlayerConfig {
    /// The output.
    pub sink: SinkSpec,
    /// Where the segments are.
    pub store: BlockStore,
    /// Network time and system time.
    pub time: Arc<dyn TimeBase>,
    /// Volume, 0.0 to 1.0.
    pub volume: f32,
    /// Muted at start.
    pub muted: bool,
    /// How far ahead of the clock the `null` and `wav` sinks accept audio (cpal: the queue in
    /// front of the device).
    pub lead: Duration,
}

enum Command {
    Schedule(Vec<SlotPlan>),
    Stop,
}

/// What the player is doing, for `/status` and metrics.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct PlayerStats {
    /// The sink's name: `cpal`, `null` or `wav`.
    pub sink: String,
    /// Volume, 0.0 to 1.0.
    pub volume: f32,
    /// Muted.
    pub muted: bool,
    /// The slot under the playhead.
    pub slot: Option<u64>,
    /// The track sample under the playhead (`None`: silence).
    pub sample: Option<u64>,
    /// The last measured error between what is heard and the schedule, microseconds (positive:
    /// the audio is late).
    pub error_us: f64,
    /// Single-sample corrections made.
    pub corrections: u64,
    /// Resynchronisations (errors above 50 ms).
    pub resyncs: u64,
    /// Segments that were missing at their deadline and played as silence.
    pub missing_segments: u64,
    /// Frames handed to the sink.
    pub frames: u64,
}

/// What the player thread reports as it plays (librespot's `PlayerEvent` stream): the node's
/// playback state follows what was actually sounded and missed, not what the store holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlayerEvent {
    /// The first sound of `slot`'s track, at track sample `sample`.
    Sounded {
        /// The slot.
        slot: u64,
        /// The track sample.
        sample: u64,
    },
    /// Segment `segment` of `slot`'s track was not in the store at its deadline: silence
    /// plays in its place.
    SegmentMissing {
        /// The slot.
        slot: u64,
        /// The segment's index in the track.
        segment: usize,
    },
}

/// Where the player thread sends its events.
type EventSink = Box<dyn Fn(PlayerEvent) + Send + Sync>;

#[derive(Default)]
struct Shared {
    events: Mutex<Option<EventSink>>,
    sink: Mutex<String>,
    volume: AtomicU32,
    muted: AtomicBool,
    slot: AtomicI64,
    sample: AtomicI64,
    error_ns: AtomicI64,
    corrections: AtomicU64,
    resyncs: AtomicU64,
    missing: AtomicU64,
    frames: AtomicU64,
}

impl Shared {
    fn emit(&self, event: PlayerEvent) {
        if let Some(f) = self.events.lock().expect("not poisoned").as_ref() {
            f(event);
        }
    }
}

/// The handle of the player thread. Dropping it stops the thread and flushes the sink.
pub struct Player {
    tx: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Player {
    /// Starts the thread and opens the sink in it. `SinkSpec::Auto` falls back to `null` with
    /// one warning when no device can be opened; any other sink that cannot be opened is an
    /// error.
    pub fn start(config: PlayerConfig) -> Result<Player, SinkError> {
        let shared = Arc::new(Shared::default());
        shared
            .volume
            .store(config.volume.clamp(0.0, 1.0).to_bits(), Ordering::Relaxed);
        shared.muted.store(config.muted, Ordering::Relaxed);
        shared.slot.store(-1, Ordering::Relaxed);
        shared.sample.store(-1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        let (opened_tx, opened_rx) = mpsc::sync_channel(1);
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("player".into())
            .spawn(move || {
                let sink = match open_sink(&config) {
                    Ok(sink) => {
                        *thread_shared.sink.lock().expect("not poisoned") = sink.name().into();
                        let _ = opened_tx.send(Ok(()));
                        sink
                    }
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                        return;
                    }
                };
                Engine::new(sink, config, thread_shared).run(rx);
            })
            .map_err(|e| SinkError::Device(format!("cannot start the player thread: {e}")))?;
        match opened_rx.recv() {
            Ok(Ok(())) => Ok(Player {
                tx,
                shared,
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(SinkError::Device(
                    "the player thread stopped while opening the sink".into(),
                ))
            }
        }
    }

    /// Sends the thread's events to `f` from now on (it runs on the player thread: it must not
    /// block, e.g. a send on an unbounded channel).
    pub fn on_event(&self, f: impl Fn(PlayerEvent) + Send + Sync + 'static) {
        *self.shared.events.lock().expect("not poisoned") = Some(Box::new(f));
    }

    /// Replaces the schedule: the slots from the one playing on, in order.
    pub fn schedule(&self, plans: Vec<SlotPlan>) {
        let _ = self.tx.send(Command::Schedule(plans));
    }

    /// Sets the volume (0.0 to 1.0); takes effect within the sink's lead.
    pub fn set_volume(&self, volume: f32) {
        self.shared
            .volume
            .store(volume.clamp(0.0, 1.0).to_bits(), Ordering::Relaxed);
    }

    /// Mutes or unmutes.
    pub fn set_muted(&self, muted: bool) {
        self.shared.muted.store(muted, Ordering::Relaxed);
    }

    /// What the player is doing.
    pub fn stats(&self) -> PlayerStats {
        let s = &self.shared;
        let opt = |v: i64| u64::try_from(v).ok();
        PlayerStats {
            sink: s.sink.lock().expect("not poisoned").clone(),
            volume: f32::from_bits(s.volume.load(Ordering::Relaxed)),
            muted: s.muted.load(Ordering::Relaxed),
            slot: opt(s.slot.load(Ordering::Relaxed)),
            sample: opt(s.sample.load(Ordering::Relaxed)),
            error_us: s.error_ns.load(Ordering::Relaxed) as f64 / 1000.0,
            corrections: s.corrections.load(Ordering::Relaxed),
            resyncs: s.resyncs.load(Ordering::Relaxed),
            missing_segments: s.missing.load(Ordering::Relaxed),
            frames: s.frames.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Player {
    fn drop(&mut self) {
        let _ = self.tx.send(Command::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn open_sink(config: &PlayerConfig) -> Result<Box<dyn Sink>, SinkError> {
    Ok(match &config.sink {
        SinkSpec::Null => Box::new(clocked::NullSink::new(config.lead)),
        SinkSpec::Wav(path) => Box::new(clocked::WavSink::create(
            path,
            config.time.clone(),
            config.lead,
        )?),
        SinkSpec::Cpal => Box::new(cpal::open(config.lead)?),
        SinkSpec::Auto => match cpal::open(config.lead) {
            Ok(sink) => Box::new(sink),
            Err(e) => {
                warn!(
                    event = "no_audio_device",
                    "{e}: playing to the null sink (no sound); use --audio wav:PATH to record what the node plays"
                );
                Box::new(clocked::NullSink::new(config.lead))
            }
        },
    })
}

/// Where the next frame to be played is: a slot and a position in frames from its start.
#[derive(Clone, Copy, Debug)]
struct Cursor {
    slot: u64,
    pos: u64,
}

struct Engine {
    sink: Box<dyn Sink>,
    time: Arc<dyn TimeBase>,
    store: BlockStore,
    shared: Arc<Shared>,
    plans: Vec<SlotPlan>,
    streams: BTreeMap<u64, TrackStream>,
    /// Slots whose manifest could not be opened, and when that was last tried.
    unopened: BTreeMap<u64, Instant>,
    cursor: Option<Cursor>,
    /// A slot has played: from then on the player follows network time whatever it does
    /// ([`TimeBase::settled`] only holds back the first sound).
    sounding: bool,
    started: BTreeSet<u64>,
    silent: BTreeSet<(u64, usize)>,
    out: Vec<f32>,
}

impl Engine {
    fn new(sink: Box<dyn Sink>, config: PlayerConfig, shared: Arc<Shared>) -> Self {
        Engine {
            sink,
            time: config.time,
            store: config.store,
            shared,
            plans: Vec::new(),
            streams: BTreeMap::new(),
            unopened: BTreeMap::new(),
            cursor: None,
            sounding: false,
            started: BTreeSet::new(),
            silent: BTreeSet::new(),
            out: Vec::with_capacity(BUFFER as usize * CHANNELS),
        }
    }

    fn run(mut self, rx: mpsc::Receiver<Command>) {
        loop {
            loop {
                match rx.try_recv() {
                    Ok(Command::Schedule(plans)) => self.set_schedule(plans),
                    Ok(Command::Stop) | Err(mpsc::TryRecvError::Disconnected) => {
                        if let Err(e) = self.sink.flush() {
                            warn!("{e}");
                        }
                        return;
                    }
                    Err(mpsc::TryRecvError::Empty) => break,
                }
            }
            if let Err(e) = self.step() {
                warn!(
                    event = "audio_failed",
                    "{e}: the player stops; the node goes on without sound"
                );
                // Keep answering commands until the node stops, without sound.
                while let Ok(cmd) = rx.recv() {
                    if matches!(cmd, Command::Stop) {
                        return;
                    }
                }
                return;
            }
        }
    }

    fn set_schedule(&mut self, mut plans: Vec<SlotPlan>) {
        plans.sort_by_key(|p| p.slot);
        let keep: BTreeSet<u64> = plans.iter().map(|p| p.slot).collect();
        // A stream stays only while its slot plays the same track.
        self.streams.retain(|slot, stream| {
            plans.iter().any(|p| {
                p.slot == *slot
                    && p.audio.as_ref().map(|a| a.manifest_id) == Some(stream.manifest_id())
            })
        });
        self.unopened.retain(|slot, _| keep.contains(slot));
        self.plans = plans;
    }

    fn plan(&self, slot: u64) -> Option<&SlotPlan> {
        self.plans
            .binary_search_by_key(&slot, |p| p.slot)
            .ok()
            .map(|i| &self.plans[i])
    }

    /// One buffer: measure the error, correct, play, decode ahead.
    fn step(&mut self) -> Result<(), SinkError> {
        let due = self.sink.next_due();
        if !self.sounding && !self.time.settled() {
            self.cursor = None;
            self.publish_position(None, None);
            return self.silence(BUFFER, None);
        }
        let t_us = self.time.network_us(due);
        let Some((i, expected)) = schedule::locate(&self.plans, t_us) else {
            self.cursor = None;
            self.publish_position(None, None);
            // Silence up to the next slot's start at most, so that its first buffer begins
            // there (track sample 0), not somewhere inside a buffer. `t_us` is truncated to the
            // microsecond: aiming 1 µs early keeps the next buffer within its first sample (a
            // buffer that lands just before the start gets one more frame of silence).
            let until_next = self
                .plans
                .iter()
                .find(|p| p.start_us() > t_us)
                .map_or(BUFFER, |p| {
                    ((p.start_us() - t_us - 1) as f64 * f64::from(RATE) / 1e6).ceil() as u64
                });
            return self.silence(until_next.clamp(1, BUFFER), None);
        };
        self.sounding = true;
        let expected_slot = self.plans[i].slot;
        let error = self.cursor.and_then(|c| {
            let p = self.plan(c.slot)?;
            let at_us = p.start_us() as f64 + c.pos as f64 * 1e6 / f64::from(RATE);
            Some((t_us as f64 - at_us) * f64::from(RATE) / 1e6)
        });
        let mut corrections = 0;
        match error {
            Some(e) if e.abs() <= RESYNC => {
                self.shared
                    .error_ns
                    .store((e * 1e9 / f64::from(RATE)) as i64, Ordering::Relaxed);
                if e.abs() >= 1.0 {
                    corrections = (e.trunc() as i64).clamp(-MAX_CORRECTIONS, MAX_CORRECTIONS);
                }
            }
            other => {
                if let Some(e) = other {
                    self.shared.resyncs.fetch_add(1, Ordering::Relaxed);
                    info!(
                        event = "resync",
                        slot = expected_slot,
                        error_ms = e * 1000.0 / f64::from(RATE),
                        "audio was {:.1} ms off the schedule: jumped to slot {expected_slot} at {:.0} ms",
                        e * 1000.0 / f64::from(RATE),
                        expected * 1000.0 / f64::from(RATE)
                    );
                }
                self.shared.error_ns.store(0, Ordering::Relaxed);
                self.cursor = Some(Cursor {
                    slot: expected_slot,
                    // Down: the frame due now is this sample or at most one sample late,
                    // which a slot started from silence plays from its first sample.
                    pos: expected.floor() as u64,
                });
            }
        }
        self.play(BUFFER, corrections)?;
        self.decode_ahead();
        Ok(())
    }

    /// Plays `frames` frames from the cursor, with `corrections` single-sample corrections spread
    /// evenly (positive: drop samples, negative: repeat samples).
    fn play(&mut self, frames: u64, corrections: i64) -> Result<(), SinkError> {
        let parts = corrections.unsigned_abs() + 1;
        let mut done = 0;
        for part in 0..parts {
            let end = frames * (part + 1) / parts;
            self.play_run(end - done)?;
            done = end;
            if part + 1 < parts
                && let Some(c) = self.cursor.as_mut()
            {
                if corrections > 0 {
                    c.pos += 1;
                } else {
                    c.pos = c.pos.saturating_sub(1);
                }
                self.shared.corrections.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Plays `frames` frames from the cursor without corrections, one sink write per piece of
    /// the same kind (one slot, all audio or all silence).
    fn play_run(&mut self, mut frames: u64) -> Result<(), SinkError> {
        while frames > 0 {
            let Some(c) = self.cursor else {
                return self.silence(frames, None);
            };
            let Some(plan) = self.plan(c.slot).cloned() else {
                self.cursor = None;
                continue;
            };
            let slot_frames = plan.frames();
            if c.pos >= slot_frames {
                // On to the next slot, if it follows without a hole.
                let next = self
                    .plans
                    .iter()
                    .find(|p| p.slot > c.slot)
                    .filter(|p| p.start_ms == plan.end_ms)
                    .map(|p| p.slot);
                self.cursor = next.map(|slot| Cursor {
                    slot,
                    pos: c.pos - slot_frames,
                });
                continue;
            }
            let room = frames.min(slot_frames - c.pos);
            let played = self.play_piece(&plan, c.pos, room)?;
            if let Some(cur) = self.cursor.as_mut() {
                cur.pos += played;
            }
            frames -= played;
        }
        Ok(())
    }

    /// Plays up to `room` frames of `plan` from `pos`; returns how many it played.
    fn play_piece(&mut self, plan: &SlotPlan, pos: u64, room: u64) -> Result<u64, SinkError> {
        let slot = plan.slot;
        let Some(audio) = plan.audio.clone() else {
            self.publish_position(Some(slot), None);
            self.silence(room, Some(slot))?;
            return Ok(room);
        };
        let volume = if self.shared.muted.load(Ordering::Relaxed) {
            0.0
        } else {
            f32::from_bits(self.shared.volume.load(Ordering::Relaxed))
        };
        let gain = linear(audio.gain_db) * volume;
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        let (n, missing) = match self.stream(slot, &audio) {
            None => (room, None),
            Some(stream) => match stream.audio_at(pos) {
                Audio::Samples(s) => {
                    let n = room.min((s.len() / CHANNELS) as u64);
                    let fade = u64::from(audio.fade_out_ms) * u64::from(RATE) / 1000;
                    let end = plan.frames();
                    if fade > 0 && pos + n + fade > end {
                        for (i, frame) in s[..n as usize * CHANNELS].chunks(CHANNELS).enumerate() {
                            let g = gain * fade_out_gain(pos + i as u64, end, fade);
                            out.extend(frame.iter().map(|x| x * g));
                        }
                    } else {
                        out.extend(s[..n as usize * CHANNELS].iter().map(|x| x * gain));
                    }
                    (n, None)
                }
                Audio::Missing(left) => (room.min(left).max(1), Some(stream.segment_of(pos))),
                Audio::End => (room, None),
            },
        };
        if let Some(seg) = missing
            && self.silent.insert((slot, seg))
        {
            self.shared.missing.fetch_add(1, Ordering::Relaxed);
            self.shared
                .emit(PlayerEvent::SegmentMissing { slot, segment: seg });
            warn!(
                event = "silence",
                slot,
                segment = seg,
                "slot {slot}: segment {seg} is not here at its deadline; playing silence in its place (the schedule does not move)"
            );
        }
        if out.is_empty() {
            self.out = out;
            self.publish_position(Some(slot), None);
            self.silence(n, Some(slot))?;
            return Ok(n);
        }
        if self.started.insert(slot) {
            self.shared.emit(PlayerEvent::Sounded { slot, sample: pos });
            info!(event = "audio", slot, sample = pos, position_ms = pos * 1000 / u64::from(RATE), sink = self.sink.name(),
                manifest_id = %audio.manifest_id, gain_db = audio.gain_db,
                "slot {slot}: first sound at track sample {pos} ({} ms into the track)", pos * 1000 / u64::from(RATE));
        }
        self.publish_position(Some(slot), Some(pos));
        let r = self.sink.write(
            &out,
            BufferTag {
                slot: Some(slot),
                sample: Some(pos),
            },
        );
        self.out = out;
        self.shared.frames.fetch_add(n, Ordering::Relaxed);
        r.map(|()| n)
    }

    fn silence(&mut self, frames: u64, slot: Option<u64>) -> Result<(), SinkError> {
        self.out.clear();
        self.out.resize(frames as usize * CHANNELS, 0.0);
        let out = std::mem::take(&mut self.out);
        let r = self.sink.write(&out, BufferTag { slot, sample: None });
        self.out = out;
        self.out.clear();
        self.shared.frames.fetch_add(frames, Ordering::Relaxed);
        r
    }

    fn publish_position(&self, slot: Option<u64>, sample: Option<u64>) {
        let v = |o: Option<u64>| o.map_or(-1, |x| x as i64);
        self.shared.slot.store(v(slot), Ordering::Relaxed);
        self.shared.sample.store(v(sample), Ordering::Relaxed);
    }

    /// The slot's stream, opened on first use (a manifest not yet fetched is looked for again
    /// every 100 ms).
    fn stream(&mut self, slot: u64, audio: &TrackAudio) -> Option<&mut TrackStream> {
        if !self.streams.contains_key(&slot) {
            if self
                .unopened
                .get(&slot)
                .is_some_and(|t| t.elapsed() < Duration::from_millis(100))
            {
                return None;
            }
            match TrackStream::open(&self.store, audio.manifest_id) {
                Ok(s) => {
                    self.unopened.remove(&slot);
                    self.streams.insert(slot, s);
                }
                Err(_) => {
                    self.unopened.insert(slot, Instant::now());
                    return None;
                }
            }
        }
        self.streams.get_mut(&slot)
    }

    /// Decodes ahead of the playhead in the current slot, and the start of the next one when
    /// it is near (gapless track changes).
    fn decode_ahead(&mut self) {
        let Some(c) = self.cursor else { return };
        let mut budget = DECODE_BUDGET;
        if let Some(audio) = self.plan(c.slot).and_then(|p| p.audio.clone())
            && let Some(s) = self.stream(c.slot, &audio)
        {
            budget -= s.decode_ahead(c.pos, c.pos + DECODE_AHEAD, budget);
        }
        let left = self
            .plan(c.slot)
            .map_or(0, |p| p.frames().saturating_sub(c.pos));
        if left < DECODE_AHEAD
            && budget > 0
            && let Some(next) = self.plans.iter().find(|p| p.slot > c.slot).cloned()
            && let Some(audio) = next.audio
            && let Some(s) = self.stream(next.slot, &audio)
        {
            s.decode_ahead(0, DECODE_AHEAD - left, budget);
        }
        self.streams.retain(|slot, _| *slot + 1 >= c.slot);
        self.started.retain(|slot| *slot + 8 >= c.slot);
        self.silent.retain(|(slot, _)| *slot + 8 >= c.slot);
    }
}
