//! The cpal sink on real devices: none at all (an error, not a panic), and PulseAudio's null
//! sink through ALSA's pulse plugin, which runs callbacks in real time like a sound card.
// Test code: helpers may unwrap (a failure is the test failing) and scenarios read top to bottom.
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use std::f32::consts::TAU;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use chorus_media::player::cpal::open;
use chorus_media::player::sink::{BufferTag, Sink, SinkError};

/// Set in the child process of [`no_device_is_an_error_not_a_panic`].
const CHILD_ENV: &str = "CHORUS_CPAL_TEST_NO_DEVICE_CHILD";
/// Printed by the child when `open` failed as it should.
const CHILD_MARK: &str = "no-device-child: open failed with: ";

#[test]
fn no_device_is_an_error_not_a_panic() {
    if std::env::var_os(CHILD_ENV).is_some() {
        match open(Duration::from_millis(200)) {
            Err(e @ (SinkError::NoDevice(_) | SinkError::Device(_))) => println!("{CHILD_MARK}{e}"),
            Err(other) => panic!("unexpected kind of error: {other}"),
            Ok(sink) => panic!(
                "opened {:?} where no audio device can work",
                sink.device_name()
            ),
        }
        return;
    }

    // The environment variables would leak into other tests of this process, so the check
    // runs in a child: this same test binary, filtered to this test. An ALSA configuration
    // without any PCM and an unreachable PulseAudio server hide every device (and the pulse
    // plugin's "load if running" hook finds no server either).
    let dir = tempfile::tempdir().expect("temp dir");
    let conf = dir.path().join("asound.conf");
    std::fs::write(&conf, "# no devices at all\n").expect("write asound.conf");
    let exe = std::env::current_exe().expect("test binary path");
    let out = Command::new(exe)
        .args([
            "no_device_is_an_error_not_a_panic",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .env("ALSA_CONFIG_PATH", &conf)
        .env("PULSE_SERVER", "unix:/nonexistent")
        .env_remove("PULSE_RUNTIME_PATH")
        .output()
        .expect("run the child test process");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "child failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let line = stdout
        .lines()
        .find(|l| l.contains(CHILD_MARK))
        .unwrap_or_else(|| panic!("the child did not run the check:\n{stdout}\n{stderr}"));
    println!("{line}");
}

/// Makes sure a PulseAudio server runs (scripts/start-pulse.sh). Returns false when the test
/// should be skipped: PulseAudio is not installed and this is not CI.
fn pulse_available() -> bool {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/start-pulse.sh");
    let out = Command::new("bash").arg(&script).output();
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    let installed = Command::new("pulseaudio")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    match out {
        Ok(o) if o.status.success() => true,
        _ if !installed && !ci => {
            println!(
                "SKIPPED: PulseAudio is not installed (scripts/install-deps.sh --test installs it)"
            );
            false
        }
        Ok(o) => panic!(
            "{} could not start PulseAudio ({}): {}",
            script.display(),
            o.status,
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("cannot run {}: {e}", script.display()),
    }
}

/// One write: when it returned, the `next_due` that preceded it, and the counters after it.
struct Step {
    wall: Instant,
    due: Instant,
    played: u64,
}

#[test]
fn plays_through_pulseaudio_in_real_time() {
    if !pulse_available() {
        return;
    }
    let lead = Duration::from_millis(200);
    let opened = Instant::now();
    let mut sink = match open(lead) {
        Ok(s) => s,
        Err(e) => panic!(
            "PulseAudio runs but cpal cannot open it ({e}); is ALSA's pulse plugin \
             (libasound2-plugins) installed?"
        ),
    };
    assert_eq!(sink.name(), "cpal");
    println!("device: {}", sink.device_name());

    // 10 ms buffers of a 440 Hz tone at -12 dBFS, 6 s in all: the stall after play() takes up
    // to about 2 s, and the measurement wants 2 s of steady playback after it with margin.
    const BUFFER: usize = 480;
    let total_buffers = 600;
    let mut phase = 0f32;
    let mut steps = Vec::with_capacity(total_buffers);
    let mut buf = vec![0f32; BUFFER * 2];
    for _ in 0..total_buffers {
        for frame in buf.chunks_exact_mut(2) {
            let s = 0.25 * (phase * TAU).sin();
            frame[0] = s;
            frame[1] = s;
            phase = (phase + 440.0 / 48_000.0).fract();
        }
        let due = sink.next_due();
        sink.write(&buf, BufferTag::default())
            .unwrap_or_else(|e| panic!("write failed: {e}"));
        steps.push(Step {
            wall: Instant::now(),
            due,
            played: sink.frames_played(),
        });
    }
    let end = steps.last().expect("steps were written");

    // The stall: the longest time a single write blocked, and when the first frame was played.
    let first_played = steps
        .iter()
        .find(|s| s.played > 0)
        .map(|s| s.wall.duration_since(opened));
    let longest_block = steps
        .windows(2)
        .map(|w| w[1].wall.duration_since(w[0].wall))
        .max()
        .unwrap_or_default();
    let ahead: Vec<Duration> = steps
        .iter()
        .map(|s| s.due.saturating_duration_since(s.wall))
        .collect();
    println!(
        "device delay {:?}, underruns {}, frames played {}, first callback by {:?} after open, \
         stall after play (longest blocked write) {:?}, total wall {:?}",
        sink.device_delay(),
        sink.underruns(),
        end.played,
        first_played,
        longest_block,
        end.wall.duration_since(opened),
    );
    for s in steps.iter().step_by(50) {
        println!(
            "  t={:>7.1?} due-now={:>7.1?} played={}",
            s.wall.duration_since(opened),
            s.due.saturating_duration_since(s.wall),
            s.played
        );
    }

    assert!(
        end.played > 48_000 * 3,
        "the device played only {} frames",
        end.played
    );

    // Over the last 2 s of wall time (well after the stall), next_due advances at the rate of
    // the wall clock, is always in the future, and never further ahead than the lead plus the
    // device delay.
    let from = end.wall - Duration::from_secs(2);
    let start = steps
        .iter()
        .find(|s| s.wall >= from)
        .expect("a write 2 s before the end");
    let wall = end.wall.duration_since(start.wall).as_secs_f64();
    let due = end.due.duration_since(start.due).as_secs_f64();
    println!(
        "over {wall:.3} s of wall time next_due advanced {due:.3} s (diff {:+.1} ms)",
        (due - wall) * 1e3
    );
    assert!(
        (due - wall).abs() < 0.050,
        "next_due advanced {due:.3} s in {wall:.3} s"
    );
    for (s, a) in steps.iter().zip(&ahead).filter(|(s, _)| s.wall >= from) {
        assert!(s.due > s.wall, "next_due is in the past");
        assert!(
            *a <= Duration::from_millis(500),
            "next_due is {a:?} ahead of now"
        );
    }
}
