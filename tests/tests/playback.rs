//! Synchronized playback (PROTOCOL.md 7 and 8) with real nodes writing what they play to wav
//! sinks: three nodes whose clocks are 400 ms behind, right and 350 ms ahead play every sample
//! at the same true time; a late joiner starts at the right sample; a slot of output equals the
//! decoded track after its loudness gain, sample for sample.

// Test code: each test is one scenario read top to bottom, however long.
#![allow(clippy::too_many_lines)]

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chorus_media::BlockStore;
use chorus_media::Hash32;
use chorus_media::decode::decode_track;
use chorus_media::player::linear;
use chorus_tests::net::{Node, bootstrap, join, library, s, slot};
use chorus_tests::sync::{Row, first_audio, offsets, quantile, read_csv, time_of};
use serde_json::Value;

const LONG: Duration = Duration::from_secs(300);

/// The tests run one at a time: timing is what they check, and the machine may have two cores.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn wav_args(root: &Path, name: &str, skew_ms: i64) -> Vec<String> {
    vec![
        s("--audio"),
        format!("wav:{}", root.join(format!("{name}.wav")).display()),
        format!("--clock-skew-ms={skew_ms}"),
    ]
}

fn rows(root: &Path, name: &str) -> Vec<Row> {
    read_csv(&root.join(format!("{name}.wav.csv"))).expect("read the wav sink's CSV")
}

fn audio_event(node: &Node, k: u64) -> Value {
    node.wait_for(&format!("audio in slot {k}"), LONG, move |v| {
        v["event"] == "audio" && slot(v) == Some(k)
    })
}

/// The node's clock steps and time-source reports so far, for a failure's message.
fn clock_events(node: &Node) -> Vec<String> {
    let mut events = node.events("clock_step");
    events.extend(node.events("time_sources"));
    events.sort_by_key(|v| v["timestamp"].as_str().map(str::to_owned));
    events
        .into_iter()
        .map(|v| format!("{} {}", v["timestamp"], v["message"]))
        .collect()
}

/// `chorus ingest` of `lib` into the store of the node that will run in `dir`.
fn ingest(dir: &Path, lib: &Path) {
    let lib = lib.to_str().expect("a UTF-8 temporary path");
    chorus_tests::net::chorus_with(
        &dir.join("data"),
        &dir.join("config"),
        &["ingest", "--library", lib],
    );
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_micros() as i64
}

#[test]
fn skewed_nodes_play_in_sync_a_late_joiner_starts_right_and_output_equals_the_track() {
    let _one = one_at_a_time();
    let tmp = chorus_tests::kept_tempdir();
    let root = tmp.path();
    let lib = |name: &str, seed| library(&root.join(format!("lib-{name}")), seed, 6);
    let (lib_a, lib_b, lib_c, lib_d) = (lib("a", 1), lib("b", 2), lib("c", 3), lib("d", 4));
    // The late joiner's library is ingested now, before any node runs: started mid-track with
    // its library to transcode, it would take both cores of a two-core machine for seconds,
    // and the time samples the other three take meanwhile would carry the scheduler's delays
    // (seen in CI: two nodes 1.35 ms apart for seconds while it ingested). On separate
    // machines that load would be nobody else's; here it is a test artifact.
    ingest(&root.join("d"), &lib_d);

    let (a, network, addr) = bootstrap(root, &lib_a, "in 12s", &wav_args(root, "a", -400));
    let b = join(
        root,
        "b",
        &lib_b,
        &network,
        &[&addr],
        &wav_args(root, "b", 0),
    );
    let c = join(
        root,
        "c",
        &lib_c,
        &network,
        &[&addr],
        &wav_args(root, "c", 350),
    );

    // The nodes 400 ms behind and 350 ms ahead step their network time to the median clock.
    for (node, skew) in [(&a, -400.0), (&c, 350.0)] {
        let step = node.wait_for("a clock step", LONG, |v| v["event"] == "clock_step");
        let to = step["to_ms"].as_f64().expect("to_ms");
        assert!(
            (to + skew).abs() < 250.0,
            "{}: stepped to an offset of {to} ms with a skew of {skew} ms",
            node.name
        );
    }

    // A late joiner, started while slot 3 plays. It is given all three peers, so that they
    // count for its network time together (with only one, the median of itself and that peer
    // would lie halfway between their clocks until the others are sampled).
    a.wait_for("slot 3 playing", LONG, |v| {
        v["event"] == "playing" && slot(v) == Some(3)
    });
    let (addr_b, addr_c) = (b.address(), c.address());
    let d_started_us = now_us();
    let d = join(
        root,
        "d",
        &lib_d,
        &network,
        &[&addr, &addr_b, &addr_c],
        &wav_args(root, "d", 0),
    );
    let d_audio = d.wait_for("d's first sound", LONG, |v| v["event"] == "audio");

    // Slot 6 has begun everywhere: slots up to 5 are complete in every CSV.
    for n in [&a, &b, &c, &d] {
        audio_event(n, 6);
    }
    let (ra, rb, rc, rd) = (
        rows(root, "a"),
        rows(root, "b"),
        rows(root, "c"),
        rows(root, "d"),
    );

    // 1. After the first 10 s, any two nodes play each sample within 1 ms of each other (p99
    //    over every comparison), and never 2 ms apart in any slot. The single worst instant is
    //    held to 2 ms, not 1: on a two-core machine shared with other processes a scheduling
    //    stall now and then puts one comparison past 1 ms (seen: 1155 µs while a compile ran
    //    beside the test, every other slot under 410 µs); the sync benchmark reports max too.
    let from = [&ra, &rb, &rc]
        .iter()
        .map(|r| r.first().expect("rows").system_us)
        .max()
        .expect("three nodes")
        + 10_000_000;
    let mut all = Vec::new();
    // Per slot: comparisons, and the largest |offset| with its pair and second after `from`.
    let mut per_slot: std::collections::BTreeMap<u64, (usize, f64, &str, f64)> = Default::default();
    for (pair, x, y) in [("a-b", &ra, &rb), ("a-c", &ra, &rc), ("b-c", &rb, &rc)] {
        for (k, at, off) in offsets(x, y, from) {
            let e = per_slot.entry(k).or_default();
            e.0 += 1;
            if off.abs() > e.1 {
                *e = (e.0, off.abs(), pair, (at - from) as f64 / 1e6);
            }
            all.push(off.abs());
        }
    }
    println!(
        "offsets per slot (comparisons, max |offset| µs, pair, s after the first 10 s): {per_slot:?}"
    );
    let slots: Vec<u64> = per_slot.keys().copied().collect();
    assert!(
        slots.len() >= 4 && (2..=5).all(|k| slots.contains(&k)),
        "too few slots compared: {slots:?}"
    );
    for (k, (n, max, pair, at)) in &per_slot {
        assert!(*n >= 100, "slot {k}: only {n} comparisons");
        if *max >= 2000.0 {
            for node in [&a, &b, &c] {
                println!("{}'s clock: {:?}", node.name, clock_events(node));
            }
        }
        assert!(
            *max < 2000.0,
            "slot {k}: {pair} {max:.0} µs apart, {at:.1} s after the first 10 s"
        );
    }
    let (p50, p99) = (quantile(&mut all, 0.5), quantile(&mut all, 0.99));
    println!("offset between nodes after 10 s: p50 {p50:.1} µs, p99 {p99:.1} µs");
    if p99 >= 1000.0 {
        for node in [&a, &b, &c] {
            println!("{}'s clock: {:?}", node.name, clock_events(node));
        }
    }
    assert!(p99 < 1000.0, "p99 offset between nodes {p99:.0} µs");

    // 2. The late joiner's first sound is the right sample for the moment it is heard, and it
    //    came mid-track: the converged nodes played that sample within 2 ms of it, measured
    //    against the median of their three times (network time is a median of clocks). Its
    //    error is that of its first estimate, from three samples of each peer: typically
    //    100-650 µs here, once 1373 µs against b alone on a machine loaded by a build (taking
    //    six samples before the first sound was tried and did not narrow it).
    let first = first_audio(&rd).expect("d played audio");
    let (k, sample) = (first.slot.expect("slot"), first.sample.expect("sample"));
    assert_eq!(d_audio["slot"].as_u64(), Some(k));
    assert_eq!(d_audio["sample"].as_u64(), Some(sample));
    assert!(sample > 0, "d started at the start of a track: {first:?}");
    let mut times: Vec<f64> = [&ra, &rb, &rc]
        .iter()
        .map(|r| time_of(r, k, sample).expect("a, b and c played the same sample"))
        .collect();
    let tb = quantile(&mut times, 0.5);
    if (first.system_us as f64 - tb).abs() >= 2000.0 {
        println!("d's clock: {:?}", clock_events(&d));
        let later: Vec<String> = offsets(&rb, &rd, first.system_us)
            .into_iter()
            .step_by(50)
            .take(40)
            .map(|(k, at, off)| {
                format!(
                    "slot {k} +{:.1} s: {off:.0} µs",
                    (at - first.system_us) as f64 / 1e6
                )
            })
            .collect();
        println!("d's offset from b after its first sound: {later:?}");
    }
    assert!(
        (first.system_us as f64 - tb).abs() < 2000.0,
        "d's first sound (slot {k} sample {sample}) came {:.0} µs off the others'",
        first.system_us as f64 - tb
    );
    println!(
        "late joiner: first sound at slot {k} sample {sample}, {:.0} µs from the others' median, {:.2} s after its start",
        first.system_us as f64 - tb,
        (first.system_us - d_started_us) as f64 / 1e6
    );

    // 2b. Listeners of different nodes hear the same moment: in the live playlists of the four
    //     nodes, a given EXT-X-PROGRAM-DATE-TIME (network time) is always the same segment. (Keyed
    //     by date: a track played again in a later slot lists the same segment at another date.)
    let mut at_date: std::collections::BTreeMap<String, String> = Default::default();
    let mut shared = 0;
    for n in [&a, &b, &c, &d] {
        let addr = std::fs::read_to_string(n.data_dir.join("http.addr")).expect("http.addr");
        let (code, _, body) = chorus_tests::http_get(addr.trim(), "/live.m3u8").expect("playlist");
        assert_eq!(code, 200);
        let text = String::from_utf8(body).expect("UTF-8");
        let mut date = None;
        for line in text.lines() {
            if let Some(d) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
                date = Some(d.to_owned());
            } else if line.starts_with("live/") {
                let d = date.take().expect("a date before every segment");
                if let Some(other) = at_date.insert(d.clone(), line.to_owned()) {
                    assert_eq!(other, line, "{}: another segment at {d}:\n{text}", n.name);
                    shared += 1;
                }
            }
        }
    }
    assert!(
        shared >= 6,
        "only {shared} segments listed by several nodes"
    );

    // 3. One whole slot of b's output is the decoded track after its gain, sample for sample.
    let k = 4;
    let ev = audio_event(&b, k);
    assert_eq!(
        ev["sample"].as_u64(),
        Some(0),
        "b started slot {k} mid-track"
    );
    let manifest: Hash32 = ev["manifest_id"]
        .as_str()
        .expect("manifest_id")
        .parse()
        .expect("manifest id");
    let gain = linear(ev["gain_db"].as_f64().expect("gain_db"));
    let store = BlockStore::open(b.data_dir.join("store")).expect("open b's store");
    let track = decode_track(&store, &manifest).expect("decode the track");
    let wav = chorus_media::player::clocked::read_wav(&root.join("b.wav")).expect("read b.wav");
    let mut compared = 0u64;
    let mut worst = 0f32;
    for r in rb.iter().filter(|r| r.slot == Some(k)) {
        let Some(first) = r.sample else {
            // Silence inside the slot: the track is shorter than the slot by under a ms.
            assert!(
                compared + 48 >= (track.len() / 2) as u64,
                "silence in slot {k} at {r:?}"
            );
            continue;
        };
        for i in 0..r.frames as usize {
            for ch in 0..2 {
                let played = wav[(r.wav_frame as usize + i) * 2 + ch];
                let want = track[(first as usize + i) * 2 + ch] * gain;
                worst = worst.max((played - want).abs());
            }
        }
        compared += r.frames;
    }
    let track_frames = (track.len() / 2) as u64;
    println!(
        "slot {k}: {compared} frames compared with the decoded track, worst difference {worst}"
    );
    assert!(
        compared + 4800 >= track_frames,
        "slot {k}: only {compared} of {track_frames} frames played"
    );
    assert_eq!(
        worst, 0.0,
        "slot {k}: output differs from the decoded track"
    );
}

/// One node bootstrapped on its own library with `--audio` and `env`; returns it once slot 1
/// has begun.
fn lone_node(root: &Path, audio: &str, env: &[(&str, &str)]) -> Node {
    let node = chorus_tests::net::lone_node(root, "solo", 7, &[s("--audio"), s(audio)], env);
    audio_event(&node, 1);
    node
}

/// The cpal path against a real audio server: PulseAudio with a null sink, which runs the
/// callbacks in real time like a sound card.
#[test]
fn a_node_plays_through_a_real_audio_server_with_cpal() {
    let _one = one_at_a_time();
    if !chorus_tests::pulse_available() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let node = lone_node(tmp.path(), "cpal", &[]);
    let out = node.wait_for("audio output", LONG, |v| v["event"] == "audio_output");
    assert_eq!(out["sink"], "cpal");
    let first = node.status()["audio"].clone();
    audio_event(&node, 2);
    let audio = node.status()["audio"].clone();
    println!("cpal: {audio}");
    assert_eq!(audio["sink"], "cpal");
    let frames = |a: &Value| a["frames"].as_u64().expect("frames");
    // A whole 7 s slot went to the device between the two looks.
    assert!(
        frames(&audio) >= frames(&first) + 7 * 48_000 - 4_800,
        "{first} -> {audio}"
    );
    // The stream's start-up stall (about 2 s on PulseAudio) costs at most a resync or two;
    // afterwards the error stays under 1 ms.
    assert!(audio["resyncs"].as_u64().expect("resyncs") <= 3, "{audio}");
    let error = audio["error_us"].as_f64().expect("error_us");
    assert!(error.abs() < 1000.0, "error {error} µs: {audio}");
    assert!(node.events("resync").len() <= 3);
}

/// A machine without any audio device: `--audio auto` says so once and the node plays on,
/// paced by the clock.
#[test]
fn without_any_audio_device_a_node_warns_once_and_plays_on() {
    let _one = one_at_a_time();
    let tmp = tempfile::tempdir().expect("tempdir");
    let conf = tmp.path().join("asound.conf");
    std::fs::write(&conf, "# no devices at all\n").expect("write asound.conf");
    let conf = conf.display().to_string();
    let node = lone_node(
        tmp.path(),
        "auto",
        &[
            ("ALSA_CONFIG_PATH", conf.as_str()),
            ("PULSE_SERVER", "unix:/nonexistent"),
        ],
    );
    let warnings = node.events("no_audio_device");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0]["level"], "WARN");
    let out = node.wait_for("audio output", LONG, |v| v["event"] == "audio_output");
    assert_eq!(out["sink"], "null");
    let audio = node.status()["audio"].clone();
    assert_eq!(audio["sink"], "null");
    assert!(
        audio["frames"].as_u64().expect("frames") > 48_000,
        "{audio}"
    );
    // Every other warning is about something else.
    assert_eq!(node.events("audio_failed").len(), 0);
}

/// Sends `POST path` to `addr` as curl would; returns the status code and body.
fn post(addr: &str, path: &str) -> (u16, String) {
    let (code, _, body) = chorus_tests::http_request(addr, "POST", path, &[("Host", addr)])
        .expect("POST to the HTTP API");
    (code, String::from_utf8_lossy(&body).into_owned())
}

/// `--volume` scales what is played, and mute through the HTTP API silences it within the
/// sink's lead; the controls answer only on loopback.
#[test]
fn volume_and_mute_change_what_is_played() {
    let _one = one_at_a_time();
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let wav = root.join("solo.wav");
    let node = chorus_tests::net::lone_node(
        root,
        "solo",
        8,
        &[
            s("--audio"),
            format!("wav:{}", wav.display()),
            s("--volume"),
            s("50"),
        ],
        &[],
    );
    let ev = audio_event(&node, 0);
    audio_event(&node, 1);
    let addr = std::fs::read_to_string(node.data_dir.join("http.addr")).expect("http.addr");
    let addr = addr.trim();
    assert_eq!(post(addr, "/volume?level=101").0, 400);
    let before_mute = now_us();
    let (code, body) = post(addr, "/mute?on=true");
    let after_mute = now_us();
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("JSON"),
        serde_json::json!({"volume": 50, "muted": true})
    );
    audio_event(&node, 2);
    assert_eq!(node.status()["audio"]["muted"], true);

    // Slot 0, before the mute: the decoded track at its gain, at half volume; after the mute
    // (and the sink's 150 ms lead): silence.
    let manifest: Hash32 = ev["manifest_id"].as_str().expect("id").parse().expect("id");
    let gain = linear(ev["gain_db"].as_f64().expect("gain_db")) * 0.5;
    let store = BlockStore::open(node.data_dir.join("store")).expect("store");
    let track = decode_track(&store, &manifest).expect("decode");
    let samples = chorus_media::player::clocked::read_wav(&wav).expect("read wav");
    let rows = read_csv(&root.join("solo.wav.csv")).expect("csv");
    let (mut loud, mut silent) = (0u64, 0u64);
    // Rows read after the audio may describe audio written since: only complete ones count.
    let complete =
        |r: &&Row| r.frames > 0 && ((r.wav_frame + r.frames) as usize) * 2 <= samples.len();
    for r in rows.iter().filter(complete) {
        let played = &samples[r.wav_frame as usize * 2..(r.wav_frame + r.frames) as usize * 2];
        if let (true, Some(0), Some(first)) = (r.system_us + 10_000 < before_mute, r.slot, r.sample)
        {
            let first = first as usize;
            let want: Vec<f32> = track[first * 2..first * 2 + played.len()]
                .iter()
                .map(|x| x * gain)
                .collect();
            assert_eq!(played, &want[..], "row {r:?}");
            loud += r.frames;
        } else if r.system_us > after_mute + 200_000 {
            assert!(
                played.iter().all(|x| *x == 0.0),
                "sound after the mute: {r:?}"
            );
            silent += r.frames;
        }
    }
    assert!(loud > 48_000 && silent > 48_000, "{loud} {silent}");
}
