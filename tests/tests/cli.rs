//! The `chorus` command line as a user runs it: real processes, real files.

// Test code: its helpers outside `#[test]` functions panic on failure as the tests do, and
// each test is one scenario read top to bottom, however long.
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use std::fs;
use std::io::{BufRead, BufReader, Lines};
use std::path::Path;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::time::Duration;

use chorus_media::decode::decode_track;
use chorus_media::ingest::Library;
use chorus_media::synth::Format;
use chorus_tests::{chorus, chorus_bin, write_tracks};
use serde_json::Value;

/// Every index entry decodes from blocks that verify; returns the number of entries.
fn check_consistent(data: &Path) -> usize {
    let lib = Library::open(data).unwrap();
    let index = lib.load_index().unwrap();
    for e in index.files.values() {
        let pcm = decode_track(&lib.store, &e.track.manifest_id)
            .unwrap_or_else(|err| panic!("{}: {err}", e.path.to_path().display()));
        assert_eq!(pcm.len() as u64, e.track.samples * 2);
    }
    // Every block file in the store hashes to its name: nothing partial reads as valid.
    let blocks = lib.store.root().join("blocks");
    if blocks.exists() {
        for fan in fs::read_dir(&blocks).unwrap() {
            for f in fs::read_dir(fan.unwrap().path()).unwrap() {
                let path = f.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                let id: chorus_media::Hash32 = name.parse().unwrap();
                assert_eq!(
                    chorus_media::Hash32::digest(&fs::read(&path).unwrap()),
                    id,
                    "{}",
                    path.display()
                );
            }
        }
    }
    index.files.len()
}

#[test]
fn help_on_every_subcommand() {
    let out = Command::new(chorus_bin()).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for sub in [
        "ingest",
        "library",
        "export-hls",
        "demo",
        "bootstrap",
        "run",
        "blacklist",
        "status",
    ] {
        assert!(text.contains(sub), "--help lacks {sub}: {text}");
        let out = Command::new(chorus_bin())
            .args([sub, "--help"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{sub} --help failed");
        let help = String::from_utf8(out.stdout).unwrap();
        assert!(help.contains("Usage: chorus"), "{sub} --help: {help}");
    }
    // A mistake on the command line is an error with a message, not a panic.
    let out = Command::new(chorus_bin())
        .args(["ingest"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--library"));
}

#[test]
fn ingest_library_and_export_with_json_logs() {
    let tmp = tempfile::tempdir().unwrap();
    let music = tmp.path().join("music");
    write_tracks(
        &music,
        3,
        6.5,
        &[Format::Mp3, Format::Flac, Format::OggVorbis],
    );
    fs::write(music.join("broken.flac"), b"fLaC but nothing after").unwrap();
    let data = tmp.path().join("data");
    let events = ingest_json(&data, &music);
    let of = |kind: &str| {
        events
            .iter()
            .filter(|e| e["event"] == kind)
            .collect::<Vec<_>>()
    };
    assert_eq!(of("ingested").len(), 3);
    let skipped = of("ingest_skipped");
    assert_eq!(skipped.len(), 1, "one warning for the broken file");
    assert!(
        skipped[0]["file"]
            .as_str()
            .unwrap()
            .ends_with("broken.flac")
    );
    assert_eq!(skipped[0]["level"], "WARN");
    let summary = &of("ingest_summary")[0];
    assert_eq!(
        (summary["ingested"].as_u64(), summary["failed"].as_u64()),
        (Some(3), Some(1))
    );

    // `chorus library --json` lists them with their TrackRef fields.
    let out = chorus(&data).args(["library", "--json"]).output().unwrap();
    assert!(out.status.success());
    let tracks: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(tracks.len(), 3);
    for t in &tracks {
        for field in [
            "track_hash",
            "manifest_id",
            "duration_ms",
            "segment_count",
            "title",
            "artist",
            "album",
            "loudness_lufs",
        ] {
            assert!(t.get(field).is_some(), "library --json lacks {field}: {t}");
        }
    }
    // The table form names every track.
    let out = chorus(&data).arg("library").output().unwrap();
    let table = String::from_utf8(out.stdout).unwrap();
    for i in 0..3 {
        assert!(
            table.contains(&format!("Artist {i} - Track {i}")),
            "{table}"
        );
    }

    // export-hls by hash prefix writes a playlist and its segments.
    let hash = tracks[0]["track_hash"].as_str().unwrap();
    let export = tmp.path().join("export");
    let out = chorus(&data)
        .args(["export-hls", &hash[..10]])
        .arg(&export)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let playlist = fs::read_to_string(export.join("index.m3u8")).unwrap();
    let segments = playlist.lines().filter(|l| l.ends_with(".aac")).count() as u64;
    assert_eq!(segments, tracks[0]["segment_count"].as_u64().unwrap());
    // An unknown hash is a clear error.
    let out = chorus(&data)
        .args(["export-hls", "0123456789abcdef"])
        .arg(&export)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no track in the library"));
}

#[test]
fn kill_9_mid_ingest_then_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let music = tmp.path().join("music");
    let files = write_tracks(&music, 8, 8.0, &[Format::Flac, Format::Wav]);
    let data = tmp.path().join("data");
    // Kill it as soon as the first track is finished: other tracks are then mid-transcode.
    let (mut child, _) = spawn_ingest_until_first_track(&data, &music, 2);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let done = check_consistent(&data);
    assert!(
        done >= 1 && done < files.len(),
        "{done} of {} finished before the kill",
        files.len()
    );

    let events = ingest_json(&data, &music);
    let summary = events
        .iter()
        .find(|e| e["event"] == "ingest_summary")
        .unwrap();
    assert_eq!(
        summary["unchanged"].as_u64().unwrap() as usize,
        done,
        "finished tracks are not redone"
    );
    assert_eq!(
        summary["ingested"].as_u64().unwrap() as usize,
        files.len() - done
    );
    assert_eq!(check_consistent(&data), files.len());
}

#[test]
fn ctrl_c_stops_cleanly_and_the_next_run_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let music = tmp.path().join("music");
    let files = write_tracks(&music, 8, 8.0, &[Format::Flac]);
    let data = tmp.path().join("data");
    let (mut child, stderr) = spawn_ingest_until_first_track(&data, &music, 1);
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let rest: Vec<String> = stderr.map(|l| l.unwrap()).collect();
    assert_eq!(child.wait().unwrap().code(), Some(130), "{rest:#?}");
    let summary = rest
        .iter()
        .find(|l| l.contains("ingest_summary"))
        .expect("a closing summary");
    let summary: serde_json::Value = serde_json::from_str(summary).unwrap();
    assert_eq!(summary["interrupted"], true);
    let done = check_consistent(&data);
    assert!(done >= 1 && done < files.len(), "{done}");

    ingest_json(&data, &music);
    assert_eq!(check_consistent(&data), files.len());
}

/// Starts `chorus ingest` with JSON logs and returns once it reports its first finished track,
/// with the rest of its log.
fn spawn_ingest_until_first_track(
    data: &Path,
    music: &Path,
    jobs: u8,
) -> (Child, Lines<BufReader<ChildStderr>>) {
    let mut child = chorus(data)
        .args([
            "--log-format",
            "json",
            "ingest",
            "--jobs",
            &jobs.to_string(),
            "--library",
        ])
        .arg(music)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    for line in stderr.by_ref() {
        if line.unwrap().contains("\"event\":\"ingested\"") {
            return (child, stderr);
        }
    }
    let status = child.wait();
    panic!("chorus ingest ended ({status:?}) without ingesting a track");
}

/// Runs `chorus ingest` to completion with JSON logs, checks that it succeeded, and returns its
/// log events.
fn ingest_json(data: &Path, music: &Path) -> Vec<serde_json::Value> {
    let out = chorus(data)
        .args(["--log-format", "json", "ingest", "--library"])
        .arg(music)
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

/// A data directory on a tiny file system: the ingest stops with one clear error, keeps what it
/// finished, and leaves no partial block. The mount lives in a private mount namespace
/// (`unshare`), so nothing is left mounted whatever happens.
#[test]
fn full_disk_gives_one_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let music = tmp.path().join("music");
    write_tracks(&music, 4, 20.0, &[Format::Flac]);
    let data = tmp.path().join("data");
    let copy = tmp.path().join("copy");
    fs::create_dir_all(&data).unwrap();
    let script = format!(
        "mount -t tmpfs -o size=900k tmpfs '{data}' && '{bin}' --data-dir '{data}' --log-format json ingest --jobs 1 --library '{music}'; \
         echo \"exit=$?\" >&2; cp -a '{data}' '{copy}'",
        data = data.display(),
        bin = chorus_bin().display(),
        music = music.display(),
        copy = copy.display(),
    );
    let mut cmd = Command::new("unshare");
    // As root a mount namespace is enough; otherwise map to root in a user namespace.
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    cmd.args(if root { &["-m"][..] } else { &["-r", "-m"][..] });
    let out = cmd
        .args(["sh", "-c", &script])
        .output()
        .expect("unshare (util-linux) runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("exit=1"), "the ingest must fail: {stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("\"level\":\"ERROR\""))
        .collect();
    assert_eq!(errors.len(), 1, "exactly one error: {stderr}");
    assert!(errors[0].contains("disk full"), "{}", errors[0]);
    let kept = check_consistent(&copy);
    assert!(kept < 4, "a 900 KiB disk cannot hold four 20 s tracks");
    let leftovers: Vec<_> = fs::read_dir(copy.join("store/tmp")).unwrap().collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

#[test]
fn conformance_vectors_pass_and_a_broken_vector_fails() {
    let vectors = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors");
    let out = Command::new(chorus_bin())
        .arg("conformance")
        .arg(&vectors)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap();
    assert!(last.ends_with(" passed, 0 failed"), "{stdout}");

    // One changed expectation is caught, reported, and makes the command fail.
    let tmp = tempfile::tempdir().unwrap();
    for f in fs::read_dir(&vectors).unwrap() {
        let f = f.unwrap().path();
        fs::copy(&f, tmp.path().join(f.file_name().unwrap())).unwrap();
    }
    let chain = tmp.path().join("chain.json");
    let text = fs::read_to_string(&chain).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let hash = find_hex64(&v).expect("chain.json holds a chain hash");
    let flipped = format!(
        "{}{}",
        if hash.starts_with('0') { "1" } else { "0" },
        &hash[1..]
    );
    fs::write(&chain, text.replacen(&hash, &flipped, 1)).unwrap();
    let out = Command::new(chorus_bin())
        .arg("conformance")
        .arg(tmp.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout
            .lines()
            .last()
            .unwrap()
            .ends_with(" passed, 1 failed"),
        "{stdout}"
    );
}

fn find_hex64(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s)
            if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            Some(s.clone())
        }
        serde_json::Value::Array(a) => a.iter().rev().find_map(find_hex64),
        serde_json::Value::Object(o) => o.values().rev().find_map(find_hex64),
        _ => None,
    }
}

fn run_chorus(data: &Path, config: &Path, args: &[&str]) -> std::process::Output {
    chorus(data)
        .arg("--config-dir")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn bootstrap_names_line_and_field_of_seed_queue_mistakes() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = tmp.path().join("music");
    fs::create_dir_all(&lib).unwrap();
    for i in 0..5 {
        fs::write(
            lib.join(format!("t{i}.flac")),
            b"not ingested before the check",
        )
        .unwrap();
    }
    let seed = tmp.path().join("seed.toml");
    let tracks: String = (0..5)
        .map(|i| format!("[[track]]\npath = \"t{i}.flac\"\n"))
        .collect();
    let cases = [
        (
            format!("name = \"R\"\nstart = \"in 30s\"\n{tracks}[rules]\nproposal_pc = 3\n"),
            "line 14",
            "proposal_pc",
        ),
        (
            format!("name = \"R\"\nstart = \"tomorrow\"\n{tracks}"),
            "line 2",
            "start",
        ),
        (
            format!("name = \"R\"\nstart = \"in 30s\"\n{tracks}[[track]]\npath = \"t0.flac\"\n"),
            "line 13",
            "track",
        ),
    ];
    for (text, line, field) in cases {
        fs::write(&seed, &text).unwrap();
        let out = run_chorus(
            &tmp.path().join("data"),
            &tmp.path().join("config"),
            &[
                "bootstrap",
                "--seed-queue",
                seed.to_str().unwrap(),
                "--library",
                lib.to_str().unwrap(),
            ],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains(line) && err.contains(field) && err.contains("seed.toml"),
            "{text}\n->\n{err}"
        );
    }
    // Nothing was created: the mistakes were found before any work.
    assert!(!tmp.path().join("data").join("genesis.cbor").exists());
}

#[test]
fn run_without_a_network_and_status_without_a_node_explain_themselves() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let config = tmp.path().join("config");
    let out = run_chorus(&data, &config, &["run"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("--network") && err.contains("--peer"), "{err}");
    let out = run_chorus(&data, &config, &["run", "--network", "xyz"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a network id"));
    let out = run_chorus(&data, &config, &["status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no node has run"));
}

#[test]
fn blacklist_add_list_remove() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let config = tmp.path().join("config");
    let music = tmp.path().join("music");
    write_tracks(&music, 2, 5.5, &[Format::Flac]);
    let out = chorus(&data)
        .args(["ingest", "--library", music.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = run_chorus(
        &data,
        &config,
        &["blacklist", "add", "--artist", "ARTIST 1"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    // The rule catches "Artist 1 - Track 1" of the library, whatever the case.
    assert!(
        text.contains("added") && text.contains("Artist 1 - Track 1"),
        "{text}"
    );
    assert!(!text.contains("Artist 0"), "{text}");
    let out = run_chorus(&data, &config, &["blacklist", "list"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("artist contains \"ARTIST 1\""));
    let out = run_chorus(&data, &config, &["blacklist", "add", "12345"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a track hash"));
    let out = run_chorus(
        &data,
        &config,
        &["blacklist", "remove", "--artist", "ARTIST 1"],
    );
    assert!(out.status.success());
    let out = run_chorus(&data, &config, &["blacklist", "list"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("empty"));
    let out = run_chorus(
        &data,
        &config,
        &["blacklist", "remove", "--title", "nothing"],
    );
    assert_eq!(out.status.code(), Some(1));
}

/// The README's command to run the radio: three real nodes on loopback reach consensus, shown
/// in the log; then Ctrl-C stops all of them. Run again over what the first run left (its chain,
/// of a network of its own), the demo starts a fresh network that every node joins.
#[test]
fn demo_runs_a_three_node_network_and_runs_again() {
    let tmp = tempfile::tempdir().unwrap();
    let mut finals = std::collections::BTreeMap::new();
    demo_until(tmp.path(), |line| {
        if line.contains("final slot=5 ") {
            let node = line.split(']').next().unwrap_or("").to_owned();
            let track = line.split("track=").nth(1).unwrap_or("");
            let track = track.split(" ticket").next().unwrap_or("").to_owned();
            finals.insert(node, track);
        }
        finals.len() == 3
    });
    let seen: Vec<&String> = finals.values().collect();
    assert!(
        seen.iter().all(|t| *t == seen[0]),
        "demo nodes disagree: {finals:?}"
    );
    // The second run's joiners find the first run's chain in their directories; they must
    // come up in sync with all three nodes instead of refusing it.
    let mut in_sync = std::collections::BTreeSet::new();
    let mut table = String::new();
    demo_until(tmp.path(), |line| {
        if line.contains("in_sync=3/3") {
            in_sync.insert(line.split(']').next().unwrap_or("").to_owned());
        }
        if in_sync.len() < 3 {
            return false;
        }
        // `chorus status` of the running node1 names the network.
        let out = chorus(&tmp.path().join("demo/node1"))
            .arg("status")
            .output()
            .unwrap();
        table = String::from_utf8_lossy(&out.stdout).into_owned();
        true
    });
    assert!(
        table.contains("network   Chorus Demo Radio ("),
        "chorus status:\n{table}"
    );
}

/// Runs `chorus demo` in `data` until `done` says so of one of its lines (failing if its output
/// ends first), then stops it with Ctrl-C and checks that its nodes stopped and it succeeded.
fn demo_until(data: &Path, mut done: impl FnMut(&str) -> bool) {
    let mut child = chorus(data)
        .args(["demo", "--tracks", "5"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let mut last = Vec::new();
    let mut reached = false;
    for line in lines.by_ref().map_while(Result::ok) {
        if done(&line) {
            reached = true;
            break;
        }
        last.push(line);
        if last.len() > 40 {
            last.remove(0);
        }
    }
    if !reached {
        let status = child.wait().unwrap();
        panic!("the demo ended ({status}) before it got there; its last lines: {last:#?}");
    }
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    // Keep reading: the demo reports its nodes stopping.
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert!(rest.iter().any(|l| l.contains("node stopped")), "{rest:?}");
    assert!(status.success(), "demo exit {status}");
}

/// `chorus queue`: tracks of the library by title, artist, hash or a file; clear answers for
/// what names no track, too many, or too much; nothing changes on a refusal.
#[test]
fn queue_add_list_remove_clear_and_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let config = tmp.path().join("config");
    let music = tmp.path().join("music");
    // Before any ingest: the queue needs the library.
    let out = run_chorus(&data, &config, &["queue", "add", "--title", "Track 1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("chorus ingest"));
    write_tracks(&music, 3, 5.5, &[Format::Flac]);
    let out = chorus(&data)
        .args(["ingest", "--library", music.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let ok = |args: &[&str]| {
        let out = run_chorus(&data, &config, args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let refused = |args: &[&str], why: &str| {
        let before = std::fs::read(config.join("queue.toml")).ok();
        let out = run_chorus(&data, &config, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(err.contains(why), "{args:?}: {err}");
        assert_eq!(std::fs::read(config.join("queue.toml")).ok(), before);
    };
    assert!(ok(&["queue", "list"]).contains("empty"));
    assert!(ok(&["queue", "add", "--title", "track 2"]).contains("queued 0: "));
    assert!(ok(&["queue", "add", "--artist", "ARTIST 0"]).contains("queued 1: "));
    let list = ok(&["queue", "list"]);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 2, "{list}");
    assert!(lines[0].ends_with("Artist 2 - Track 2") && lines[0].trim_start().starts_with('0'));
    assert!(lines[1].ends_with("Artist 0 - Track 0"), "{list}");
    refused(&["queue", "add", "--title", "Track"], "3 tracks have title");
    refused(&["queue", "add", "--title", "Nocturne"], "no track");
    refused(&["queue", "add", &"x".repeat(64)], "not a track hash");
    let stranger = "ab".repeat(32);
    refused(&["queue", "add", &stranger], "not in this node's library");
    let long = "y".repeat(300);
    refused(&["queue", "add", "--title", &long], "characters at most");
    refused(&["queue", "remove", "7"], "no entry");
    // A file of tracks: a title's text per line, comments and blank lines aside.
    let file = tmp.path().join("set.txt");
    std::fs::write(&file, "# tonight\nTrack 1\n\ntrack 0\n").unwrap();
    let added = ok(&["queue", "add", "--file", file.to_str().unwrap()]);
    assert!(
        added.contains("queued 2: ") && added.contains("queued 3: "),
        "{added}"
    );
    std::fs::write(&file, "Track 1\nno such song\n").unwrap();
    refused(
        &["queue", "add", "--file", file.to_str().unwrap()],
        "set.txt line 2",
    );
    assert!(ok(&["queue", "remove", "1"]).contains("removed entry 1"));
    let list = ok(&["queue", "list"]);
    assert_eq!(list.lines().count(), 3, "{list}");
    assert!(!list.contains("Track 0\n  ") && list.lines().all(|l| !l.starts_with("   1")));
    assert!(ok(&["queue", "clear"]).contains("empty"));
    assert!(ok(&["queue", "list"]).contains("empty"));
    // Ids are never reused.
    assert!(ok(&["queue", "add", "--title", "Track 2"]).contains("queued 4: "));
}

/// The DJ's queue on a running node: three queued tracks are proposed in order in its next
/// three proposals, then the automatic pick goes on; a track queued while it runs is its next
/// proposal once it has reread the queue, and proposed entries leave `chorus queue list`.
#[test]
fn a_running_node_proposes_its_queue_in_order_then_its_own_pick() {
    use chorus_tests::net::{bootstrap, library};
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // The seed queue takes the first five file names in sorted order (Songs 21.0, 21.1, 21.10,
    // 21.2 and 21.3: the winners of the first slots); 21.4 to 21.9 can be proposed.
    let lib = library(&root.join("lib"), 21, 11);
    let (data, config) = (root.join("a/data"), root.join("a/config"));
    let out = chorus(&data)
        .args(["ingest", "--library", lib.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    for title in ["Song 21.7", "Song 21.5", "Song 21.6"] {
        let out = run_chorus(&data, &config, &["queue", "add", "--title", title]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (a, _, _) = bootstrap(root, &lib, "in 5s", &[]);
    let long = Duration::from_secs(120);
    let title_of = |v: &Value| {
        let message = v["message"].as_str().unwrap_or("");
        message.split("track=").nth(1).unwrap_or("").to_owned()
    };
    let mut from = 0;
    let mut next_proposal = |what: &str| {
        let v = a.wait_for_from(from, what, long, |v| v["event"] == "proposed");
        from = a.index_of(&v).expect("the event") + 1;
        v
    };
    for want in ["Song 21.7", "Song 21.5", "Song 21.6"] {
        let proposed = next_proposal(want);
        assert!(title_of(&proposed).contains(want), "{want}: {proposed}");
    }
    // Then its own pick (the queue is empty), one of 21.4, 21.8 and 21.9.
    let fourth = title_of(&next_proposal("a fourth proposal"));
    // The request and the DJ's entry name the two others (the own pick may win, and then it
    // waits 20 slots as a recent winner).
    let mut spare = ["Song 21.9", "Song 21.8", "Song 21.4"]
        .into_iter()
        .filter(|t| !fourth.contains(&format!("{t}\"")));
    let (requested, dj) = (spare.next().expect("two"), spare.next().expect("two"));
    assert_eq!(a.events("queue_proposed").len(), 3);
    let out = run_chorus(&data, &config, &["queue", "list"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("empty"));
    // A listener's request (over HTTP) and, after it, the DJ's entry queued while running:
    // the DJ's entry is proposed first, then the request.
    let http = std::fs::read_to_string(data.join("http.addr")).expect("http.addr");
    let http = http.trim();
    let query = format!(
        "/library?q={}",
        requested.to_lowercase().replace(' ', "%20")
    );
    let (_, _, body) = chorus_tests::http_get(http, &query).expect("search");
    let found: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(found["tracks"].as_array().map(Vec::len), Some(1), "{found}");
    let hash = found["tracks"][0]["track_hash"].as_str().expect("hash");
    let requested_at = std::time::Instant::now();
    let (code, _, body) = chorus_tests::http_post_json(
        http,
        "/requests",
        &format!(r#"{{"track_hash": "{hash}", "name": "Ada"}}"#),
        &[],
    )
    .expect("request");
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    let out = run_chorus(&data, &config, &["queue", "add", "--title", dj]);
    assert!(out.status.success());
    let reread = a.wait_for("the queue reread", long, |v| {
        v["event"] == "queue" && v["pending"] == 1 && v["requests"] == 1
    });
    let queued = a.status()["queue"].clone();
    assert_eq!(
        (&queued[0]["title"], &queued[0]["source"]),
        (&Value::from(dj), &Value::from("dj")),
        "/status queue: {queued}"
    );
    assert_eq!(
        (&queued[1]["title"], &queued[1]["requested_by"]),
        (&Value::from(requested), &Value::from("Ada")),
        "/status queue: {queued}"
    );
    let from = a.index_of(&reread).expect("the event");
    let next = a.wait_for_from(from, "the next proposal", long, |v| {
        v["event"] == "proposed"
    });
    assert!(title_of(&next).contains(&format!("{dj}\"")), "{next}");
    let from = a.index_of(&next).expect("the event") + 1;
    let next = a.wait_for_from(from, "the request's proposal", long, |v| {
        v["event"] == "proposed"
    });
    assert!(
        title_of(&next).contains(&format!("{requested}\"")),
        "{next}"
    );
    let taken = a.wait_for("request_proposed", long, |v| {
        v["event"] == "request_proposed"
    });
    assert_eq!(taken["request"], 0);
    println!(
        "request to proposal: {:.1} s (behind one DJ entry; one proposal window per slot)",
        requested_at.elapsed().as_secs_f64()
    );
}

/// `config.toml` in the config directory sets flags of `chorus run` (keys named as the flags),
/// the command line overrides it, `chorus config show` says where each value came from, a bad
/// key or value is an error naming the file, and a running node takes its values.
#[test]
fn a_config_file_sets_flags_which_the_command_line_overrides() {
    use chorus_tests::net::{bootstrap, library, s};
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (data, config) = (root.join("a/data"), root.join("a/config"));
    fs::create_dir_all(&config).unwrap();
    fs::write(
        config.join("config.toml"),
        "# the station\nvolume = 40\nrequests-per-hour = 5\nmute = true\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\nnetwork = \"only for run\"\n",
    )
    .unwrap();
    let out = run_chorus(&data, &config, &["config", "show", "--volume", "70"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("no {key} in\n{text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let file = config.join("config.toml").display().to_string();
    assert_eq!(line("volume"), "volume = 70 # command line");
    assert_eq!(line("mute"), format!("mute = true # config file {file}"));
    assert_eq!(
        line("requests_per_hour"),
        format!("requests_per_hour = 5 # config file {file}")
    );
    assert_eq!(
        line("listen"),
        format!("listen = [\"/ip4/127.0.0.1/tcp/0\"] # config file {file}")
    );
    assert_eq!(line("store_budget_mb"), "store_budget_mb = 2048 # default");

    // Mistakes: the file and the key are named, nothing runs.
    for (text, says) in [
        ("volume = 400\n", "'400' for '--volume"),
        ("volum = 40\n", "unknown key `volum`"),
        ("mute = \"yes\"\n", "`mute` must be true or false"),
        ("volume = \n", "not valid TOML"),
        ("config_dir = \"x\"\n", "`config_dir` cannot be set"),
    ] {
        fs::write(config.join("config.toml"), text).unwrap();
        let out = run_chorus(&data, &config, &["config", "show"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {err}");
        assert!(err.contains(&file) && err.contains(says), "{text}: {err}");
    }

    // A node started with the file: muted at 40 %, as its log and /status say; `network` (a
    // key of `run` only) does not trouble `bootstrap`.
    fs::write(
        config.join("config.toml"),
        "volume = 40\nmute = true\nnetwork = \"only for run\"\n",
    )
    .unwrap();
    let lib = library(&root.join("lib"), 31, 5);
    let (a, _, _) = bootstrap(root, &lib, "in 5s", &[s("--audio"), s("null")]);
    let said = a.wait_for("the config line", Duration::from_secs(60), |v| {
        v["event"] == "config"
    });
    assert_eq!(said["keys"], "mute,volume", "{said}");
    a.wait_for("the HTTP API", Duration::from_secs(120), |v| {
        v["event"] == "http"
    });
    let audio = a.status()["audio"].clone();
    assert_eq!(audio["muted"], true, "{audio}");
    assert!(
        (audio["volume"].as_f64().unwrap() - 0.4).abs() < 1e-6,
        "{audio}"
    );
}
