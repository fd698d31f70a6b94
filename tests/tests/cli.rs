//! The `chorus` command line as a user runs it: real processes, real files.

use std::fs;
use std::io::{BufRead, BufReader, Lines};
use std::path::Path;
use std::process::{Child, ChildStderr, Command, Stdio};

use chorus_media::decode::decode_track;
use chorus_media::ingest::Library;
use chorus_media::synth::Format;
use chorus_tests::{chorus, chorus_bin, write_tracks};

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
                    chorus_media::Hash32::of(&fs::read(&path).unwrap()),
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
    for sub in ["ingest", "library", "export-hls", "demo"] {
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
