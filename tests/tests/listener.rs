//! Listening without a node: a real node's live HLS stream read by the ffmpeg program and by
//! hls.js in headless Chromium (the status page), its segments and its Prometheus metrics.

// Test code: each test is one scenario read top to bottom, however long.
#![allow(clippy::too_many_lines)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chorus_media::player::clocked::read_wav;
use chorus_media::player::linear;
use chorus_media::{BlockStore, Hash32, Manifest};
use chorus_tests::net::{Node, s, slot};
use chorus_tests::sync::read_csv;
use chorus_tests::{has_program, http_get};
use serde_json::Value;
use sha2::{Digest, Sha256};

const LONG: Duration = Duration::from_secs(300);

static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A lone node on a 5-track library of 7 s tracks, slot 0 four seconds from now.
fn node(root: &Path, audio: &str) -> Node {
    chorus_tests::net::lone_node(root, "radio", 11, &[s("--audio"), s(audio)], &[])
}

fn audio_event(node: &Node, k: u64) -> Value {
    node.wait_for(&format!("audio in slot {k}"), LONG, move |v| {
        v["event"] == "audio" && slot(v) == Some(k)
    })
}

fn http_addr(node: &Node) -> String {
    std::fs::read_to_string(node.data_dir.join("http.addr"))
        .expect("http.addr")
        .trim()
        .to_owned()
}

fn get(addr: &str, path: &str) -> (u16, String, Vec<u8>) {
    http_get(addr, path).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// `(media sequence, segment URIs, discontinuities, program date-times)` of a live playlist.
fn playlist(text: &str) -> (u64, Vec<String>, usize, Vec<String>) {
    assert!(text.starts_with("#EXTM3U\n"), "{text}");
    assert!(text.contains("#EXT-X-TARGETDURATION:6\n"), "{text}");
    assert!(
        !text.contains("#EXT-X-ENDLIST"),
        "a live playlist never ends: {text}"
    );
    let seq = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .map_or(0, |n| n.parse().expect("media sequence"));
    let uris: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(str::to_owned)
        .collect();
    let dates: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:"))
        .map(str::to_owned)
        .collect();
    assert_eq!(dates.len(), uris.len(), "{text}");
    for d in &dates {
        // RFC 3339 with milliseconds in UTC: fixed width, so they sort as text.
        assert!(d.ends_with('Z') && d.len() == 24, "{d}");
    }
    let disc = text.matches("#EXT-X-DISCONTINUITY\n").count();
    (seq, uris, disc, dates)
}

/// Sum of squared differences between `a` (from `at`) and `b`, left channel + right channel.
fn ssd(a: &[f32], at: usize, b: &[f32]) -> f64 {
    a[at * 2..at * 2 + b.len()]
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(x - y).powi(2))
        .sum()
}

#[test]
fn ffmpeg_reads_the_live_stream_across_track_changes_and_hears_what_the_node_played() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let wav = root.join("played.wav");
    let mut radio = node(root, &format!("wav:{}", wav.display()));
    // The playlist lists slot 0's first segment when the slot starts.
    radio.wait_for("slot 0 playing", LONG, |v| {
        v["event"] == "playing" && slot(v) == Some(0)
    });
    let addr = http_addr(&radio);

    // The playlist, and its first segment served from the store.
    let (code, head, body) = get(&addr, "/live.m3u8");
    assert_eq!(code, 200);
    assert!(
        head.contains("content-type: application/vnd.apple.mpegurl"),
        "{head}"
    );
    let (first_seq, uris, disc, _) = playlist(&String::from_utf8(body).expect("UTF-8"));
    assert!(!uris.is_empty() && uris.len() <= 2, "{uris:?}");
    assert_eq!(disc, 1, "a new stream starts with a discontinuity");
    let first_id = uris[0]
        .strip_prefix("live/")
        .and_then(|u| u.strip_suffix(".aac"))
        .expect("relative segment URI with the .aac extension");
    let (code, head, body) = get(&addr, &format!("/segments/{first_id}.aac"));
    assert_eq!(code, 200);
    assert!(head.contains("content-type: audio/aac"), "{head}");
    assert!(head.contains("immutable"), "{head}");
    assert_eq!(hex::encode(Sha256::digest(&body)), first_id);
    // Strict ids: nothing but 64 lowercase hex digits names a file.
    for bad in [
        "ZZ".to_owned(),
        "../../etc/passwd".to_owned(),
        "%2e%2e%2fidentity.key".to_owned(),
        first_id.to_uppercase(),
        format!("{first_id}.mp3"),
        format!("{first_id}.aac.aac"),
    ] {
        let (code, _, _) = get(&addr, &format!("/segments/{bad}"));
        assert!(code == 400 || code == 404, "{bad}: {code}");
    }
    assert_eq!(get(&addr, &format!("/segments/{}", "0".repeat(64))).0, 404);

    // ffmpeg, a third-party HLS client, reads 26 s of the live stream from its first segment:
    // slots 0 to 3, three track changes.
    let raw = root.join("ffmpeg.f32");
    let mut ffmpeg = Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "error",
            "-live_start_index",
            "0",
        ])
        .arg("-i")
        .arg(format!("http://{addr}/live.m3u8"))
        .args(["-t", "26", "-f", "f32le", "-ac", "2", "-ar", "48000", "-y"])
        .arg(&raw)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ffmpeg");
    // Meanwhile the playlist slides: the media sequence never decreases, and every track
    // change brings a discontinuity.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last_seq = first_seq;
    let mut seen: BTreeMap<u64, (String, String)> = BTreeMap::new();
    let status = loop {
        if let Some(status) = ffmpeg.try_wait().expect("ffmpeg") {
            break status;
        }
        assert!(Instant::now() < deadline, "ffmpeg did not finish");
        let (_, _, body) = get(&addr, "/live.m3u8");
        let (seq, uris, _, dates) = playlist(&String::from_utf8(body).expect("UTF-8"));
        assert!(
            seq >= last_seq,
            "media sequence went from {last_seq} to {seq}"
        );
        last_seq = seq;
        for (i, (u, d)) in uris.iter().zip(dates).enumerate() {
            let entry = (u.clone(), d);
            if let Some(old) = seen.insert(seq + i as u64, entry.clone()) {
                assert_eq!(old, entry, "sequence number {} changed", seq + i as u64);
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut ffmpeg.stderr.take().expect("stderr"), &mut err)
        .expect("read ffmpeg's errors");
    assert!(status.success(), "ffmpeg failed: {err}");
    assert!(err.trim().is_empty(), "ffmpeg reported errors: {err}");
    let heard = std::fs::read(&raw).expect("ffmpeg output");
    let heard: Vec<f32> = heard
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert!(
        heard.len() / 2 >= 25 * 48_000,
        "ffmpeg decoded {} frames",
        heard.len() / 2
    );

    // What the node played in slots 0..=3, and where ffmpeg's output should have each track:
    // the stream is the tracks' segments back to back, encoder priming and padding included.
    let store = BlockStore::open(radio.data_dir.join("store")).expect("store");
    // Slot 4 has begun: slots 0 to 3 are in the wav file (flushed every second).
    audio_event(&radio, 4);
    let played = read_wav(&wav).expect("wav");
    let rows = read_csv(&root.join("played.wav.csv")).expect("csv");
    let mut stream_start = 0usize;
    for k in 0..4u64 {
        let ev = audio_event(&radio, k);
        let manifest_id: Hash32 = ev["manifest_id"].as_str().expect("id").parse().expect("id");
        let manifest =
            Manifest::parse(&store.get(&manifest_id).expect("manifest")).expect("manifest");
        let gain = linear(ev["gain_db"].as_f64().expect("gain"));
        // 0.5 s of the track from 2 s on, as the node played it, without its gain.
        let from = 96_000u64;
        let mut excerpt = Vec::with_capacity(48_000);
        // Rows read after the audio may describe audio written since: only complete ones.
        let complete = |r: &&chorus_tests::sync::Row| {
            r.slot == Some(k)
                && r.frames > 0
                && ((r.wav_frame + r.frames) as usize) * 2 <= played.len()
        };
        for r in rows.iter().filter(complete) {
            let Some(first) = r.sample else { continue };
            for i in 0..r.frames {
                let t = first + i;
                if t >= from + excerpt.len() as u64 / 2 && t < from + 24_000 {
                    assert_eq!(
                        t,
                        from + excerpt.len() as u64 / 2,
                        "slot {k}: a hole at {t}"
                    );
                    let at = (r.wav_frame + i) as usize * 2;
                    excerpt.push(played[at] / gain);
                    excerpt.push(played[at + 1] / gain);
                }
            }
        }
        assert_eq!(
            excerpt.len(),
            48_000,
            "slot {k}: the node did not play 2.0-2.5 s"
        );
        let predicted = stream_start + manifest.priming as usize + from as usize;
        let window = 14_400; // ±0.3 s
        let probe = &excerpt[..8192];
        let best = (predicted.saturating_sub(window)..predicted + window)
            .filter(|o| (o + 24_000) * 2 <= heard.len())
            .min_by(|a, b| ssd(&heard, *a, probe).total_cmp(&ssd(&heard, *b, probe)))
            .expect("the excerpt fits in ffmpeg's output");
        let worst = heard[best * 2..best * 2 + excerpt.len()]
            .iter()
            .zip(&excerpt)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        let peak = excerpt.iter().fold(0f32, |m, x| m.max(x.abs()));
        println!(
            "slot {k}: found {} frames from where predicted, worst difference {worst:.2e} (peak {peak:.2})",
            best as i64 - predicted as i64
        );
        assert!(peak > 0.05, "slot {k}: the excerpt is silent");
        assert!(
            worst < 1e-3,
            "slot {k}: ffmpeg heard something else ({worst})"
        );
        stream_start += manifest.encoded_samples() as usize;
    }

    // /metrics is Prometheus text exposition with libp2p's metrics and ours.
    let (code, head, body) = get(&addr, "/metrics");
    assert_eq!(code, 200);
    assert!(
        head.contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    let text = String::from_utf8(body).expect("UTF-8");
    let samples = chorus_tests::prom::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let value = |name: &str| {
        samples
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.value)
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    };
    assert!(value("chorus_slot") >= 4.0);
    assert!(value("chorus_decisions_total") >= 1.0);
    for name in [
        "chorus_conflicts_total",
        "chorus_divergences_total",
        "chorus_peers_connected",
        "chorus_fetch_bytes_total",
        "chorus_fetch_seconds_count",
        "chorus_clock_offset_seconds",
        "chorus_drift_corrections_total",
        "chorus_resyncs_total",
    ] {
        value(name);
    }
    assert!(
        samples.iter().any(|s| s.name.starts_with("libp2p_")),
        "no libp2p metrics in\n{text}"
    );

    // A restart (kill -9) keeps the media sequence going up.
    radio.kill9();
    radio.restart(&[
        s("--audio"),
        s("null"),
        s("--library"),
        root.join("lib").display().to_string(),
    ]);
    let restarted = radio.event_count();
    radio.wait_for_from(restarted, "sound after the restart", LONG, |v| {
        v["event"] == "audio"
    });
    let addr = http_addr(&radio);
    let (_, _, body) = get(&addr, "/live.m3u8");
    let (seq, uris, _, dates) = playlist(&String::from_utf8(body).expect("UTF-8"));
    assert!(
        !uris.is_empty(),
        "the restarted node serves its window at once"
    );
    let (&last_listed, (_, last_date)) = seen.last_key_value().expect("segments were listed");
    assert!(
        seq >= last_seq,
        "after the restart the sequence is {seq}, before {last_seq}"
    );
    for (i, (u, d)) in uris.iter().zip(&dates).enumerate() {
        let n = seq + i as u64;
        match seen.get(&n) {
            // A number listed before the restart keeps its segment and date...
            Some(old) => assert_eq!(old, &(u.clone(), d.clone()), "number {n} changed"),
            // ...and a new one is a segment that starts later: nothing is listed twice.
            None => assert!(
                n > last_listed && d > last_date,
                "number {n} ({d}) after {last_listed} ({last_date})"
            ),
        }
    }
}

/// The headers of `GET /stream` (with `Icy-MetaData: 1`), read before the connection is
/// dropped: the body never ends.
fn stream_headers(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        s,
        "GET /stream HTTP/1.1\r\nHost: {addr}\r\nIcy-MetaData: 1\r\n\r\n"
    )
    .expect("send");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).expect("headers");
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).to_lowercase()
}

#[test]
fn ffmpeg_reads_now_playing_from_the_icecast_stream_and_the_hls_segments_carry_it() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().expect("tempdir");
    let radio = node(tmp.path(), "null");
    audio_event(&radio, 0);
    let addr = http_addr(&radio);
    let status: Value = serde_json::from_slice(&get(&addr, "/status").2).expect("status is JSON");
    let network = status["network"]["name"].as_str().expect("network name");

    let head = stream_headers(&addr);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: audio/aac"), "{head}");
    assert!(head.contains("icy-metaint: 16000"), "{head}");
    assert!(
        head.contains(&format!("icy-name: {}", network.to_lowercase())),
        "{head}"
    );

    // The ffmpeg program reads 26 s of /stream (it asks for ICY metadata by default) and says
    // each title it is told (at its verbose level).
    let ffmpeg = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-v", "verbose", "-i"])
        .arg(format!("http://{addr}/stream"))
        .args(["-t", "26", "-f", "null", "-"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ffmpeg");
    // Meanwhile, the live playlist's segments as a listener fetches them.
    let mut segments: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut ffmpeg = ffmpeg;
    let exit = loop {
        if let Some(exit) = ffmpeg.try_wait().expect("ffmpeg") {
            break exit;
        }
        assert!(Instant::now() < deadline, "ffmpeg did not finish");
        let (_, _, body) = get(&addr, "/live.m3u8");
        let (_, uris, _, _) = playlist(&String::from_utf8(body).expect("UTF-8"));
        for uri in uris {
            if let std::collections::btree_map::Entry::Vacant(e) = segments.entry(uri) {
                let (code, _, body) = get(&addr, &format!("/{}", e.key()));
                assert_eq!(code, 200, "{}", e.key());
                e.insert(body);
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut ffmpeg.stderr.take().expect("stderr"), &mut err)
        .expect("read ffmpeg's output");
    assert!(exit.success(), "ffmpeg failed: {err}");
    assert!(
        err.contains(&format!("icy-name        : {network}")),
        "ffmpeg did not see the network's name: {err}"
    );
    let titles: Vec<&str> = err
        .lines()
        .filter_map(|l| {
            l.split_once("Metadata update for StreamTitle: ")
                .map(|(_, t)| t)
        })
        .collect();

    // What the node played, slot by slot: its title, and the segments of its track.
    let store = BlockStore::open(radio.data_dir.join("store")).expect("store");
    let mut played: Vec<String> = Vec::new();
    let mut title_of_segment: BTreeMap<Hash32, String> = BTreeMap::new();
    for ev in radio.events("playing") {
        let track = ev["track"].as_str().expect("track").to_owned();
        let k = slot(&ev).expect("slot");
        let audio = audio_event(&radio, k);
        let manifest_id: Hash32 = audio["manifest_id"]
            .as_str()
            .expect("id")
            .parse()
            .expect("id");
        let manifest =
            Manifest::parse(&store.get(&manifest_id).expect("manifest")).expect("manifest");
        for seg in &manifest.segments {
            title_of_segment.insert(seg.id, track.clone());
        }
        played.push(track);
    }
    println!("ICY titles: {titles:?}; played: {played:?}");
    // Three titles at least (two track changes), each the next track the node played.
    assert!(titles.len() >= 3, "{titles:?}\n{err}");
    let start = played
        .iter()
        .position(|t| t == titles[0])
        .unwrap_or_else(|| panic!("{} was not played: {played:?}", titles[0]));
    assert_eq!(
        titles,
        played[start..start + titles.len()],
        "ICY titles out of the order played"
    );

    // Every live segment carries its track's title and artist in its ID3 tag, the timestamp
    // still first; the audio behind the tag is the block's.
    let mut seen_titles = Vec::new();
    for (uri, body) in &segments {
        let id: Hash32 = uri
            .strip_prefix("live/")
            .and_then(|u| u.strip_suffix(".aac"))
            .expect("live/ID.aac")
            .parse()
            .expect("id");
        let frames = chorus_media::adts::text_frames(body);
        let text = |f: &str| {
            frames
                .iter()
                .find(|(id, _)| id == f)
                .map(|(_, t)| t.clone())
                .unwrap_or_default()
        };
        let name = format!("{} - {}", text("TPE1"), text("TIT2"));
        assert_eq!(Some(&name), title_of_segment.get(&id), "{uri}: {frames:?}");
        assert_eq!(text("TALB"), "Test");
        let block = store.get(&id).expect("block");
        let (ts, audio) = chorus_media::adts::split_id3(body).expect("a tag");
        let (block_ts, block_audio) = chorus_media::adts::split_id3(&block).expect("a tag");
        assert_eq!((ts, audio), (block_ts, block_audio), "{uri}");
        if !seen_titles.contains(&name) {
            seen_titles.push(name);
        }
    }
    assert!(
        seen_titles.len() >= 3,
        "live segments of only {seen_titles:?}"
    );
}

/// Whether CI asks for every test to run (no skipping for a missing program).
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Loads `url` in headless Chromium (tests/browser/probe.py): `values` sampled every 250 ms
/// until `stop` holds or `timeout_s` passed, then a screenshot to `shot`. The samples, with
/// their seconds since the page was loaded.
fn probe(url: &str, shot: &Path, timeout_s: u32, values: &str, stop: &str) -> Vec<(f64, Value)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser/probe.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(url)
        .arg(shot)
        .args([&timeout_s.to_string(), values, stop])
        .output()
        .expect("run the browser probe");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("DONE"),
        "probe failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("SAMPLE "))
        .map(|l| {
            let (t, v) = l.split_once(' ').expect("time and value");
            (
                t.parse().expect("time"),
                serde_json::from_str(v).expect("JSON"),
            )
        })
        .collect()
}

/// An IPv4 address of this machine that is not loopback (`ip -4 addr`), for a page that comes
/// "from another address": a connection to it from this machine has it as its source.
fn global_ipv4() -> Option<String> {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let mut words = l.split_whitespace();
        words.find(|w| *w == "inet")?;
        words.next()?.split('/').next().map(str::to_owned)
    })
}

#[test]
fn chromium_a_listener_requests_a_track_and_the_operator_approves_and_mutes_from_another_address() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (Some(ip), true) = (
        global_ipv4(),
        has_program("chromium") && has_program("python3"),
    ) else {
        assert!(
            !in_ci(),
            "CI must have chromium, python3 and a non-loopback IPv4 address"
        );
        println!("SKIPPED: chromium, python3 or a non-loopback IPv4 address is missing");
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    // Eight tracks: the seed queue's five play first, Songs 11.5-11.7 can be requested.
    let mut radio = chorus_tests::net::lone_node_of(
        tmp.path(),
        "radio",
        11,
        8,
        &[
            s("--audio"),
            s("null"),
            s("--approve-requests"),
            s("--http-listen"),
            s("0.0.0.0:0"),
        ],
        &[],
    );
    audio_event(&radio, 0);
    // Open to the network as a station would run it (every address), reached at this
    // machine's non-loopback one.
    let bound = http_addr(&radio);
    assert!(bound.starts_with("0.0.0.0:"), "{bound}");
    let addr = format!("{ip}:{}", bound.rsplit(':').next().expect("a port"));
    let token = std::fs::read_to_string(radio.data_dir.join("operator.token"))
        .expect("the operator token")
        .trim()
        .to_owned();
    let link = radio.wait_for("the operator link", LONG, |v| v["event"] == "operator_link");
    // The link names an address of this machine (not 0.0.0.0) with the port and the token.
    assert!(
        link["message"]
            .as_str()
            .is_some_and(|m| m.contains(&format!(
                ":{}/?token={token}",
                bound.rsplit(':').next().unwrap_or_default()
            )) && !m.contains("http://0.0.0.0")),
        "{link}"
    );

    // A listener searches, requests Song 11.5 as Ada (it waits for approval), and asks for it
    // again: refused by the cooldown, with a message.
    let listener_js = "(() => { const $ = (id) => document.getElementById(id); \
        const s = window.__s = window.__s || { step: 0 }; const msg = $('req-msg').textContent; \
        const buttons = document.querySelectorAll('#results button.request'); \
        if (s.step === 0 && buttons.length > 1) { $('search').value = 'song 11.5'; \
            $('search').dispatchEvent(new Event('input')); s.step = 1; } \
        else if (s.step === 1 && buttons.length === 1) { $('req-name').value = 'Ada'; buttons[0].click(); s.step = 2; } \
        else if (s.step === 2 && msg.startsWith('Requested')) { s.first = msg; buttons[0].click(); s.step = 3; } \
        else if (s.step === 3 && msg !== s.first) { s.second = msg; s.step = 4; } \
        return { step: s.step, first: s.first || null, second: s.second || null, \
            results: $('results').textContent, requests: $('requests').textContent, \
            operator: !$('operator').hidden }; })()";
    let listener_stop = "window.__s !== undefined && window.__s.step === 4 && \
        document.getElementById('requests').textContent.includes('by Ada')";
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("requests-listener.png");
    let samples = probe(
        &format!("http://{addr}/"),
        &shot,
        60,
        listener_js,
        listener_stop,
    );
    let (_, last) = samples.last().expect("samples");
    println!("listener page: {last}");
    assert_eq!(last["step"], 4, "{last}");
    assert!(
        last["first"]
            .as_str()
            .is_some_and(|m| m.contains("Song 11.5") && m.contains("approval")),
        "{last}"
    );
    assert!(
        last["second"]
            .as_str()
            .is_some_and(|m| m.contains("was requested") && m.contains("again in")),
        "{last}"
    );
    assert!(
        last["requests"]
            .as_str()
            .is_some_and(|r| r.contains("Song 11.5") && r.contains("waits for approval")),
        "{last}"
    );
    assert_eq!(last["operator"], false, "a listener sees no controls");

    // Bad input over the API changes nothing, and says why.
    let json_error = |body: &[u8]| -> String {
        serde_json::from_slice::<Value>(body).map_or_else(
            |_| String::from_utf8_lossy(body).into_owned(),
            |v| v["error"].as_str().unwrap_or("").to_owned(),
        )
    };
    let post = |path: &str, body: &str, headers: &[(&str, &str)]| {
        chorus_tests::http_post_json(&addr, path, body, headers).expect("POST")
    };
    let (code, _, body) = post("/requests", r#"{"track_hash": "00"}"#, &[]);
    assert_eq!(code, 404, "{}", json_error(&body));
    assert!(json_error(&body).contains("no track 00"));
    let known = radio.events("playing")[0]["track_hash"]
        .as_str()
        .expect("hash")
        .to_owned();
    let long_name = format!(
        r#"{{"track_hash": "{known}", "name": "{}"}}"#,
        "x".repeat(41)
    );
    let (code, _, body) = post("/requests", &long_name, &[]);
    assert_eq!(code, 400, "{}", json_error(&body));
    assert!(json_error(&body).contains("at most 40 characters"));
    let (code, _, _) = post("/requests", "not json", &[]);
    assert_eq!(code, 400);
    let (code, _, _) = chorus_tests::http_request_with_body(
        &addr,
        "POST",
        "/requests",
        &[("Host", &addr), ("Content-Type", "text/plain")],
        br#"{"track_hash": "00"}"#,
    )
    .expect("POST");
    assert_eq!(code, 415, "a form-like body is refused");
    let (code, _, body) = post("/mute?on=true", "", &[]);
    assert_eq!(
        code,
        403,
        "no token from another address: {}",
        json_error(&body)
    );
    let (code, _, _) = post("/mute?on=true", "", &[("Authorization", "Bearer 0123")]);
    assert_eq!(code, 401, "a wrong token");
    // A track decided for a coming slot (the seed queue's Song 11.4 plays in slot 4): refused,
    // and said why (it would only wait in the queue).
    let (_, _, body) = chorus_tests::http_get(&addr, "/library?q=song%2011.4").expect("search");
    let found: Value = serde_json::from_slice(&body).expect("JSON");
    let coming = found["tracks"][0]["track_hash"].as_str().expect("hash");
    let (code, _, body) = post(
        "/requests",
        &format!(r#"{{"track_hash": "{coming}"}}"#),
        &[],
    );
    assert_eq!(code, 409, "{}", json_error(&body));
    // (Slot 4 is a few slots away; on a slow machine it may be playing already.)
    let said = json_error(&body);
    assert!(
        said.contains("Song 11.4")
            && (said.contains("coming up already (slot 4)") || said.contains("is playing now")),
        "{said}"
    );
    // A flood of requests from one listener: its hourly limit, then refusals.
    let mut codes = Vec::new();
    for i in [6, 7, 0, 1] {
        let (_, _, body) =
            chorus_tests::http_get(&addr, &format!("/library?q=song%2011.{i}")).expect("search");
        let found: Value = serde_json::from_slice(&body).expect("JSON");
        let hash = found["tracks"][0]["track_hash"].as_str().expect("hash");
        let (code, _, body) = post("/requests", &format!(r#"{{"track_hash": "{hash}"}}"#), &[]);
        codes.push((code, json_error(&body)));
    }
    assert_eq!(
        codes.iter().map(|c| c.0).collect::<Vec<_>>(),
        [201, 201, 429, 429],
        "{codes:?}"
    );
    assert!(
        codes[2].1.contains("requests in the last hour"),
        "{codes:?}"
    );
    let (_, _, body) = chorus_tests::http_get(&addr, "/requests").expect("requests");
    let listed: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(
        listed["requests"].as_array().map(Vec::len),
        Some(3),
        "{listed}"
    );
    assert_eq!(radio.status()["audio"]["muted"], false);

    // The operator, with the link, from the same other address: approves Ada's request (it
    // joins the queue), mutes the node, queues Song 11.6 from the library and removes it
    // again, and blacklists the track playing.
    let operator_js = "(() => { const $ = (id) => document.getElementById(id); \
        const s = window.__s = window.__s || { step: 0 }; \
        const ada = [...document.querySelectorAll('#requests li')].find((li) => li.textContent.includes('by Ada')); \
        const approve = ada && ada.querySelector('button.approve'); \
        if (s.step === 0 && !$('operator').hidden && approve) { approve.click(); s.step = 1; } \
        else if (s.step === 1 && $('queue').textContent.includes('requested by Ada')) { $('mute').click(); s.step = 2; } \
        else if (s.step === 2 && $('mute-state').textContent === 'muted') { \
            $('search').value = 'song 11.6'; $('search').dispatchEvent(new Event('input')); s.step = 3; } \
        else if (s.step === 3) { const q = document.querySelectorAll('#results button.queue-add'); \
            if (q.length === 1) { q[0].click(); s.step = 4; } } \
        else if (s.step === 4) { const r = document.querySelector('#queue button.queue-remove'); \
            if (r && $('queue').textContent.includes('Song 11.6')) { s.queued = $('queue').textContent; r.click(); s.step = 5; } } \
        else if (s.step === 5 && !$('queue').textContent.includes('Song 11.6')) { \
            $('blacklist-now').click(); s.step = 6; } \
        else if (s.step === 6 && $('operator-msg').textContent.startsWith('blacklisted')) { s.step = 7; } \
        return { step: s.step, operator: !$('operator').hidden, queue: $('queue').textContent, \
            queued: s.queued || null, mute: $('mute-state').textContent, \
            message: $('operator-msg').textContent, address: location.href }; })()";
    let operator_stop = "window.__s !== undefined && window.__s.step === 7";
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("requests-operator.png");
    let samples = probe(
        &format!("http://{addr}/?token={token}"),
        &shot,
        60,
        operator_js,
        operator_stop,
    );
    let (_, last) = samples.last().expect("samples");
    println!("operator page: {last}");
    assert_eq!(last["step"], 7, "{last}");
    assert!(
        !last["address"].as_str().unwrap_or("").contains(&token),
        "the token left the address bar: {last}"
    );
    assert!(
        last["queue"]
            .as_str()
            .is_some_and(|q| q.contains("Song 11.5") && q.contains("requested by Ada")),
        "{last}"
    );
    // The DJ's entry queued from the page came before the request, then was removed.
    let queued = last["queued"].as_str().unwrap_or("");
    assert!(
        queued.find("Song 11.6") < queued.find("Song 11.5"),
        "the DJ's entry first: {last}"
    );
    assert_eq!(radio.status()["audio"]["muted"], true);
    // The page's blacklist button wrote a rule the node took up.
    let edited = radio.wait_for("the blacklist edit", LONG, |v| {
        v["event"] == "blacklist_edited" && v["added"] == true
    });
    let rules = std::fs::read_to_string(radio.config_dir.join("blacklist.toml"))
        .expect("the blacklist file");
    let rule = edited["rule"].as_str().expect("rule");
    assert!(
        rules.contains(rule.trim_start_matches("track ")),
        "{rules}\n{edited}"
    );
    radio.wait_for("the blacklist reread", LONG, |v| {
        v["event"] == "blacklist" && v["rules"] == 1
    });
    let (code, _, _) = post("/queue", &format!(r#"{{"track_hash": "{known}"}}"#), &[]);
    assert_eq!(
        code, 403,
        "the queue without the token from another address"
    );
    radio.wait_for("the approval", LONG, |v| {
        v["event"] == "request_decided" && v["approved"] == true
    });

    // Requests, their states and the token survive kill -9.
    radio.kill9();
    radio.restart(&[
        s("--audio"),
        s("null"),
        s("--approve-requests"),
        s("--http-listen"),
        s("0.0.0.0:0"),
        s("--library"),
        tmp.path().join("lib").display().to_string(),
    ]);
    let restarted = radio.event_count();
    radio.wait_for_from(restarted, "the HTTP API", LONG, |v| v["event"] == "http");
    let bound = http_addr(&radio);
    let addr = format!("{ip}:{}", bound.rsplit(':').next().expect("a port"));
    let (_, _, body) = chorus_tests::http_get(&addr, "/requests").expect("requests");
    let after: Value = serde_json::from_slice(&body).expect("JSON");
    let states: Vec<(String, String)> = after["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .map(|r| {
            (
                r["title"].as_str().unwrap_or("").to_owned(),
                r["state"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert!(
        states.contains(&("Song 11.5".to_owned(), "queued".to_owned()))
            || states.contains(&("Song 11.5".to_owned(), "proposed".to_owned())),
        "{states:?}"
    );
    assert_eq!(states.len(), 3, "{states:?}");
    assert_eq!(
        std::fs::read_to_string(radio.data_dir.join("operator.token"))
            .expect("token")
            .trim(),
        token
    );
    let (code, _, _) = post_to(&addr, "/mute?on=false", &token);
    assert_eq!(code, 200, "the same token after the restart");
}

fn post_to(addr: &str, path: &str, token: &str) -> (u16, String, Vec<u8>) {
    let bearer = format!("Bearer {token}");
    chorus_tests::http_post_json(addr, path, "", &[("Authorization", &bearer)]).expect("POST")
}

#[test]
fn chromium_shows_the_status_page_and_plays_the_live_stream() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    if !(has_program("chromium") && has_program("python3")) {
        assert!(
            !ci,
            "CI must have chromium and python3 (scripts/install-deps.sh --test)"
        );
        println!("SKIPPED: chromium or python3 is not installed (scripts/install-deps.sh --test)");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let radio = node(tmp.path(), "null");
    audio_event(&radio, 0);
    let addr = http_addr(&radio);
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let values = "({title: document.getElementById('title').textContent, \
        network: document.getElementById('network').textContent, \
        queue: document.getElementById('queue').textContent, \
        t: document.getElementById('audio').currentTime, \
        state: document.getElementById('stream-state').textContent, \
        next: document.getElementById('next').rows.length})";
    // Stop once the audio element has played 4 s past its first position.
    let stop = "(() => { const a = document.getElementById('audio'); \
        if (window.__t0 === undefined) { if (a.currentTime > 0) window.__t0 = a.currentTime; return false; } \
        return a.currentTime - window.__t0 > 4; })()";
    let samples = probe(&format!("http://{addr}/?autoplay"), &shot, 60, values, stop);
    let (_, last) = samples.last().expect("samples");
    let first_play = samples
        .iter()
        .find(|(_, v)| v["t"].as_f64().is_some_and(|t| t > 0.0))
        .expect("the audio element started");
    println!(
        "page: audio started {:.1} s after loading; last sample {last}; screenshot {}",
        first_play.0,
        shot.display()
    );
    let advanced = last["t"].as_f64().expect("t") - first_play.1["t"].as_f64().expect("t");
    assert!(
        advanced > 4.0,
        "currentTime advanced only {advanced} s: {last}"
    );
    assert_eq!(last["state"], "playing", "{last}");
    assert_eq!(last["next"], 5, "{last}");
    // The DJ's queue (this node has none).
    assert!(
        last["queue"]
            .as_str()
            .is_some_and(|q| q.contains("own pick")),
        "{last}"
    );
    // The network's name, from its genesis, where a listener looks.
    assert!(
        last["network"]
            .as_str()
            .is_some_and(|n| n.starts_with("Test Radio · ")),
        "{last}"
    );
    // The page shows the track the node plays (or the one just before, at a slot change).
    let title = last["title"].as_str().expect("title");
    let playing: Vec<String> = radio
        .events("playing")
        .iter()
        .filter_map(|v| v["track"].as_str().map(str::to_owned))
        .collect();
    assert!(
        playing.iter().any(|t| t.ends_with(&format!(" - {title}"))),
        "the page shows {title:?}; the node played {playing:?}"
    );
    let png = std::fs::read(&shot).expect("screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
}
