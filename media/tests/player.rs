//! The player thread on a real store with the wav sink, without a network: a missing segment
//! plays as silence without moving the schedule, and changes of network time are followed by
//! single-sample corrections.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use chorus_media::decode::decode_track;
use chorus_media::manifest::Manifest;
use chorus_media::player::clocked::{csv_path, read_wav};
use chorus_media::player::{
    Player, PlayerConfig, SinkSpec, SlotPlan, TimeBase, TrackAudio, fade_out_gain, linear,
};
use chorus_media::synth::{FileTags, Format, Tune, write_tune};
use chorus_media::track::ingest_file;
use chorus_media::{BlockStore, Hash32, TrackLimits};

/// Network time = system time + an offset the test moves.
struct TestTime {
    anchor: Instant,
    system_us: i64,
    offset_us: AtomicI64,
    settled: AtomicBool,
}

impl TestTime {
    fn new() -> Arc<Self> {
        Arc::new(TestTime {
            anchor: Instant::now(),
            system_us: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("after 1970")
                .as_micros() as i64,
            offset_us: AtomicI64::new(0),
            settled: AtomicBool::new(true),
        })
    }
}

impl TimeBase for TestTime {
    fn network_us(&self, at: Instant) -> i64 {
        self.system_us(at) + self.offset_us.load(Ordering::Relaxed)
    }

    fn system_us(&self, at: Instant) -> i64 {
        self.system_us + at.saturating_duration_since(self.anchor).as_micros() as i64
    }

    fn settled(&self) -> bool {
        self.settled.load(Ordering::Relaxed)
    }
}

/// A 7 s track (two segments) ingested into a store in `dir`.
fn track(dir: &Path) -> (BlockStore, Hash32, Manifest) {
    let file = dir.join("tune.flac");
    write_tune(
        &file,
        Format::Flac,
        &Tune::new(42, 7.0),
        &FileTags::default(),
    )
    .expect("tune");
    let store = BlockStore::open(dir.join("store")).expect("store");
    let info = ingest_file(&file, &store, &TrackLimits::default(), &|| false).expect("ingest");
    let manifest =
        Manifest::parse(&store.get(&info.manifest_id).expect("manifest")).expect("parse");
    (store, info.manifest_id, manifest)
}

struct Row {
    system_us: i64,
    sample: Option<u64>,
}

fn rows(wav: &Path) -> Vec<Row> {
    let text = std::fs::read_to_string(csv_path(wav)).expect("csv");
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<i64> = l.split(',').map(|x| x.parse().expect("number")).collect();
            Row {
                system_us: f[0],
                sample: u64::try_from(f[2]).ok(),
            }
        })
        .collect()
}

fn now_ms(time: &TestTime) -> u64 {
    (time.network_us(Instant::now()) / 1000) as u64
}

fn play_until(player: &Player, slot: u64, sample: u64) {
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    while player.stats().slot != Some(slot) || player.stats().sample.is_none_or(|s| s < sample) {
        assert!(Instant::now() < deadline, "stuck: {:?}", player.stats());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A player on a wav sink at `wav`, playing `manifest_id` at `gain_db` as slot 0 from
/// `start_ms` (network time) for 7 s.
fn play(
    store: &BlockStore,
    time: &Arc<TestTime>,
    wav: &Path,
    manifest_id: Hash32,
    start_ms: u64,
    gain_db: f64,
) -> Player {
    let audio = TrackAudio {
        manifest_id,
        gain_db,
        tags: Default::default(),
        fade_out_ms: 0,
    };
    play_slot(store, time, wav, audio, start_ms, 7_000)
}

/// A player on a wav sink at `wav`, playing `audio` as slot 0 from `start_ms` (network time)
/// for `length_ms`.
fn play_slot(
    store: &BlockStore,
    time: &Arc<TestTime>,
    wav: &Path,
    audio: TrackAudio,
    start_ms: u64,
    length_ms: u64,
) -> Player {
    let player = Player::start(PlayerConfig {
        sink: SinkSpec::Wav(wav.to_owned()),
        store: store.clone(),
        time: time.clone(),
        volume: 1.0,
        muted: false,
        lead: std::time::Duration::from_millis(150),
    })
    .expect("player");
    player.schedule(vec![SlotPlan {
        slot: 0,
        start_ms,
        end_ms: start_ms + length_ms,
        audio: Some(audio),
    }]);
    player
}

/// PROTOCOL.md 5: a substitute plays for its slot's length, faded out at the slot's end: a
/// 7 s track in a 4 s slot with a 2 s fade is the track times the fade's gain, down to near
/// silence at the slot's end, and untouched before the fade.
#[test]
fn a_substitute_fades_out_at_its_slots_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, manifest_id, _) = track(dir.path());
    let full = decode_track(&store, &manifest_id).expect("decode");
    let time = TestTime::new();
    let wav = dir.path().join("out.wav");
    // Slot 0 began 1.5 s ago and lasts 4 s.
    let start_ms = now_ms(&time) - 1_500;
    let audio = TrackAudio {
        manifest_id,
        gain_db: -3.0,
        tags: Default::default(),
        fade_out_ms: 2_000,
    };
    let player = play_slot(&store, &time, &wav, audio, start_ms, 4_000);
    let (end, fade) = (192_000u64, 96_000u64);
    play_until(&player, 0, end - 2_000);
    drop(player);
    let rows = rows(&wav);
    let samples = read_wav(&wav).expect("wav");
    let gain = linear(-3.0);
    // Each row's buffer starts at the wav frame its time says (the file's timeline is the
    // clock's, from the first row on). Per buffer, the output's level against the track's
    // (times the gain) is the fade's mean gain over the buffer: compared by level, not sample
    // by sample, because the player may drop or repeat a single sample within a buffer to keep
    // time, which shifts the rest of that buffer by one.
    let frame_of = |r: &Row| ((r.system_us - rows[0].system_us) as f64 * 0.048).round() as usize;
    let mut checked = (0, 0);
    for (i, r) in rows.iter().enumerate() {
        let (frame, next) = (
            frame_of(r),
            rows.get(i + 1).map_or(samples.len() / 2, frame_of),
        );
        let Some(first) = r.sample else { continue };
        let n = (next - frame) as u64;
        if first < 72_000 || first + n > end - 2_000 || next * 2 > samples.len() || n == 0 {
            continue;
        }
        let level = |f: &dyn Fn(u64) -> f32| (0..n).map(|k| f64::from(f(k).abs())).sum::<f64>();
        let out = level(&|k| samples[(frame + k as usize) * 2]);
        let track = level(&|k| full[(first + k) as usize * 2] * gain);
        let want = (0..n)
            .map(|k| f64::from(fade_out_gain(first + k, end, fade)))
            .sum::<f64>()
            / n as f64;
        if track < 1.0 {
            continue;
        }
        assert!(
            (out / track - want).abs() < 0.03,
            "buffer from sample {first}: level {:.3} of the track's, the fade says {want:.3}",
            out / track
        );
        if first + n <= end - fade {
            checked.0 += 1;
        } else {
            checked.1 += 1;
        }
    }
    assert!(
        checked.0 > 10 && checked.1 > 50,
        "buffers checked: {checked:?}"
    );
    assert!(fade_out_gain(end - 2_000, end, fade) < 0.04);
    assert_eq!(fade_out_gain(end - fade, end, fade), 1.0);
}

#[test]
fn a_missing_segment_plays_as_silence_and_the_schedule_does_not_move() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, manifest_id, manifest) = track(dir.path());
    let full = decode_track(&store, &manifest_id).expect("decode");
    // Segment 0 never arrives.
    std::fs::remove_file(store.path_of(&manifest.segments[0].id)).expect("remove segment 0");
    let time = TestTime::new();
    let wav = dir.path().join("out.wav");
    // Slot 0 started 5.5 s ago: the playhead is in segment 0.
    let start_ms = now_ms(&time) - 5_500;
    let player = play(&store, &time, &wav, manifest_id, start_ms, -3.0);
    let seg1 = u64::from(manifest.segments[0].frames) * 1024 - u64::from(manifest.priming);
    play_until(&player, 0, seg1 + 4800);
    let stats = player.stats();
    drop(player);
    assert_eq!(stats.missing_segments, 1, "{stats:?}");

    let rows = rows(&wav);
    let first = rows.iter().position(|r| r.sample.is_some()).expect("sound");
    // Silence up to the end of segment 0, then segment 1 from its first sample, at the time
    // the schedule says (within a sample: the player corrects errors of a sample or more; plus
    // the CSV's whole microseconds: a run under load printed 21 µs against 20.8).
    assert_eq!(rows[first].sample, Some(seg1));
    let due = start_ms as f64 * 1000.0 + seg1 as f64 * 1e6 / 48_000.0;
    assert!(
        (rows[first].system_us as f64 - due).abs() < 1e6 / 48_000.0 + 1.0,
        "{} vs {due}",
        rows[first].system_us
    );
    assert!(rows[..first].iter().all(|r| r.sample.is_none()));
    let samples = read_wav(&wav).expect("wav");
    let at = ((rows[first].system_us - rows[0].system_us) as f64 * 0.048).round() as usize;
    let gain = linear(-3.0);
    assert!(samples[..at * 2].iter().all(|x| *x == 0.0));
    // The first AAC frame after the hole decodes without the previous frame's overlap (it is
    // missing): it differs, as a short fade-in. From the next frame on, the samples are the
    // track's.
    for i in 1024 * 2..4800 * 2 {
        assert_eq!(
            samples[at * 2 + i],
            full[seg1 as usize * 2 + i] * gain,
            "sample {i}"
        );
    }
}

#[test]
fn changes_of_network_time_are_followed_sample_by_sample() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, manifest_id, _) = track(dir.path());
    let time = TestTime::new();
    let wav = dir.path().join("out.wav");
    let start_ms = now_ms(&time) + 200;
    let player = play(&store, &time, &wav, manifest_id, start_ms, 0.0);
    play_until(&player, 0, 48_000);
    // The first sound is the sample due when it is heard (within a sample), at the slot's
    // start (track sample 0 when the machine kept up; a stall of the sink's lead could make
    // the first buffer come later, and then it starts later in the track, still on time).
    let first = rows(&wav)
        .into_iter()
        .find(|r| r.sample.is_some())
        .expect("sound");
    let sample = first.sample.expect("audio");
    let due = start_ms as f64 * 1000.0 + sample as f64 * 1e6 / 48_000.0;
    assert!(
        (first.system_us as f64 - due).abs() < 21.0,
        "sample {sample} heard at {} instead of {due}",
        first.system_us
    );
    // Network time moves 1.5 ms ahead (as a slewing estimator would, in steps): the audio must
    // move 72 samples ahead (71 leave it within a sample) with single-sample drops, without a
    // resync.
    let moved_at = time.system_us(Instant::now());
    time.offset_us.store(1_500, Ordering::Relaxed);
    play_until(&player, 0, 3 * 48_000);
    let stats = player.stats();
    drop(player);
    assert_eq!(stats.resyncs, 0, "{stats:?}");
    assert!(stats.corrections >= 71, "{stats:?}");

    // Before the move and from 0.5 s after it (plus the sink's lead), every buffer's first
    // sample is heard within a sample of its scheduled network time.
    for r in rows(&wav).iter().filter(|r| r.sample.is_some()) {
        let offset = if r.system_us < moved_at { 0 } else { 1_500 };
        if r.system_us >= moved_at - 200_000 && r.system_us < moved_at + 700_000 {
            continue;
        }
        let heard = (r.system_us + offset) as f64;
        let due = start_ms as f64 * 1000.0 + r.sample.expect("audio") as f64 * 1e6 / 48_000.0;
        assert!(
            (heard - due).abs() < 21.0,
            "row at {}: {:.1} µs off",
            r.system_us,
            heard - due
        );
    }
}

#[test]
fn nothing_plays_before_network_time_settles_and_nothing_stops_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, manifest_id, _) = track(dir.path());
    let time = TestTime::new();
    time.settled.store(false, Ordering::Relaxed);
    let wav = dir.path().join("out.wav");
    // Slot 0 started 1 s ago, on a provisional time 200 ms off.
    time.offset_us.store(-200_000, Ordering::Relaxed);
    let start_ms = now_ms(&time) - 1_000;
    let player = play(&store, &time, &wav, manifest_id, start_ms, 0.0);
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(player.stats().sample, None, "played before time settled");
    // The lock steps time by 200 ms and settles it: the first sound is the sample due then.
    time.offset_us.store(0, Ordering::Relaxed);
    let settled_at = time.system_us(Instant::now());
    time.settled.store(true, Ordering::Relaxed);
    play_until(&player, 0, 3 * 48_000);
    // Unsettled again (a slew after playing began): the audio goes on.
    time.settled.store(false, Ordering::Relaxed);
    play_until(&player, 0, 4 * 48_000);
    drop(player);
    let rows = rows(&wav);
    let first = rows.iter().find(|r| r.sample.is_some()).expect("sound");
    assert!(first.system_us >= settled_at, "sound before settling");
    let due = start_ms as f64 * 1000.0 + first.sample.expect("audio") as f64 * 1e6 / 48_000.0;
    assert!(
        (first.system_us as f64 - due).abs() < 21.0,
        "first sound {:.1} µs off",
        first.system_us as f64 - due
    );
    let last = rows
        .iter()
        .rev()
        .find(|r| r.sample.is_some())
        .expect("sound");
    assert!(
        last.sample.expect("audio") >= 4 * 48_000 - 480,
        "{}",
        last.system_us
    );
}
