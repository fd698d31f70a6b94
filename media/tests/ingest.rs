//! End-to-end ingest of a generated library with every supported format and the usual kinds of
//! bad input, on real files, with real ffmpeg-next encoding and real symphonia decoding.
// Test code: helpers may unwrap (a failure is the test failing) and scenarios read top to bottom.
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use chorus_media::decode::decode_track;
use chorus_media::export::export_hls;
use chorus_media::ingest::{
    FileOutcome, IngestError, IngestEvent, IngestOptions, Library, ingest_library,
};
use chorus_media::synth::{FileTags, Format, Tune, write_tune};
use chorus_media::{Manifest, TrackInfo, TrackLimits};

struct Expect {
    /// Samples per channel at 48 kHz the source holds.
    samples_48k: u64,
}

/// Writes a library: one file per format (tagged), a mono 44.1 kHz file, an untagged file, a
/// silent file, a unicode name, and bad files. Returns the good files with what to expect.
fn write_library(dir: &Path) -> BTreeMap<PathBuf, Expect> {
    let mut good = BTreeMap::new();
    let mut add = |name: &Path, format: Format, tune: Tune, tags: FileTags| {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        // Written under a UTF-8 name, then renamed (the encoder wants UTF-8 names; ingest does not).
        let staging = dir.join("staging.tmp");
        write_tune(&staging, format, &tune, &tags).unwrap();
        fs::rename(&staging, &path).unwrap();
        let samples_48k =
            (tune.frames() as u64 * 48_000 + u64::from(tune.rate) / 2) / u64::from(tune.rate);
        good.insert(path, Expect { samples_48k });
    };
    for (i, format) in Format::ALL.into_iter().enumerate() {
        let tags = FileTags {
            title: format!("Song {i}"),
            artist: "The Testers".into(),
            album: "Formats".into(),
        };
        add(
            Path::new(&format!("formats/track{i}.{}", format.extension())),
            format,
            Tune::new(i as u64 + 1, 7.0 + i as f64),
            tags,
        );
    }
    let mono = Tune {
        seed: 40,
        seconds: 9.5,
        rate: 44_100,
        channels: 1,
        amplitude: 0.3,
    };
    add(
        Path::new("odd/mono 44k.flac"),
        Format::Flac,
        mono,
        FileTags {
            title: "Mono".into(),
            ..Default::default()
        },
    );
    add(
        Path::new("odd/Nobody - Untagged Song.wav"),
        Format::Wav,
        Tune::new(41, 6.0),
        FileTags::default(),
    );
    let silent = Tune {
        amplitude: 0.0,
        ..Tune::new(42, 6.0)
    };
    add(
        Path::new("odd/silence.flac"),
        Format::Flac,
        silent,
        FileTags {
            title: "Silence".into(),
            ..Default::default()
        },
    );
    add(
        Path::new("odd/Café – Ünïcödé 東京 (live).opus"),
        Format::Opus,
        Tune::new(43, 13.0),
        FileTags::default(),
    );
    // A FLAC file named .mp3: content decides, not the name.
    add(
        Path::new("odd/really flac.mp3"),
        Format::Flac,
        Tune::new(44, 6.5),
        FileTags::default(),
    );

    // Bad input.
    let bad = dir.join("bad");
    fs::create_dir_all(&bad).unwrap();
    fs::write(bad.join("empty.mp3"), b"").unwrap();
    let flac = fs::read(dir.join("formats/track1.flac")).unwrap();
    fs::write(bad.join("truncated.flac"), &flac[..flac.len() / 3]).unwrap();
    let noise: Vec<u8> = (0..50_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(bad.join("noise.mp3"), &noise).unwrap();
    fs::write(bad.join("notes.txt"), "liner notes\n").unwrap();
    fs::write(
        bad.join("cover.jpg"),
        [0xFF, 0xD8, 0xFF, 0xE0, 0, 16, b'J', b'F', b'I', b'F'],
    )
    .unwrap();
    fs::write(bad.join("image.mp3"), b"\x89PNG\r\n\x1a\n....").unwrap();
    // A media file without any audio stream (a short MJPEG video), made by the ffmpeg program.
    let status = Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=duration=1:size=64x48:rate=5",
            "-c:v",
            "mjpeg",
        ])
        .arg(bad.join("video only.avi"))
        .status()
        .unwrap();
    assert!(status.success());
    #[cfg(unix)]
    {
        // A file name that is not UTF-8 (Latin-1 "café") is ingested and kept byte for byte.
        use std::os::unix::ffi::OsStrExt;
        let latin1 = dir
            .join("odd")
            .join(std::ffi::OsStr::from_bytes(b"caf\xe9 latin1.flac"));
        add(
            latin1.strip_prefix(dir).unwrap(),
            Format::Flac,
            Tune::new(45, 5.5),
            FileTags::default(),
        );
        std::os::unix::fs::symlink(dir, dir.join("odd/loop")).unwrap();
        std::os::unix::fs::symlink(dir.join("missing.flac"), dir.join("odd/dangling.flac"))
            .unwrap();
    }
    good
}

struct Run {
    summary: chorus_media::IngestSummary,
    warnings: Vec<(PathBuf, String)>,
    done: Vec<PathBuf>,
}

fn ingest(root: &Path, lib: &Library, jobs: usize, limits: TrackLimits) -> Run {
    let cancel = AtomicBool::new(false);
    let mut warnings = Vec::new();
    let mut done = Vec::new();
    let opts = IngestOptions { jobs, limits };
    let summary = ingest_library(root, lib, &opts, &cancel, &mut |ev| match ev {
        IngestEvent::Warning { path, reason } => warnings.push((path.to_path_buf(), reason)),
        IngestEvent::Done { path, outcome } => {
            done.push(path.to_path_buf());
            if let FileOutcome::Failed(reason) = outcome {
                warnings.push((path.to_path_buf(), reason.clone()));
            }
        }
        IngestEvent::Planned { .. } => {}
    })
    .unwrap();
    Run {
        summary,
        warnings,
        done,
    }
}

fn block_mtimes(lib: &Library) -> BTreeMap<PathBuf, std::time::SystemTime> {
    let mut out = BTreeMap::new();
    for e in walk(&lib.store.root().join("blocks")) {
        out.insert(e.clone(), fs::metadata(&e).unwrap().modified().unwrap());
    }
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p))
        } else {
            out.push(p)
        }
    }
    out
}

fn ffprobe_ok(path: &Path) -> Result<(), String> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,sample_rate,channels",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .map_err(|e| format!("cannot run ffprobe: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !stderr.trim().is_empty() || !stdout.contains("aac,48000,2") {
        return Err(format!(
            "ffprobe {}: status {}, stdout {stdout:?}, stderr {stderr:?}",
            path.display(),
            out.status
        ));
    }
    Ok(())
}

#[test]
fn library_ingest_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("music");
    let good = write_library(&root);
    let lib = Library::open(&tmp.path().join("data")).unwrap();
    let limits = TrackLimits {
        min_track_ms: 5_000,
        max_track_ms: 12_000,
    };

    let run = ingest(&root, &lib, 2, limits);
    let index = lib.load_index().unwrap();
    let root = root.canonicalize().unwrap();
    let canon = |p: &Path| root.join(p.strip_prefix(tmp.path().join("music")).unwrap());

    // Every good file is in the index; every bad one produced one warning naming it.
    assert_eq!(run.summary.ingested, good.len(), "{:#?}", run.warnings);
    let warned: BTreeMap<String, String> = run
        .warnings
        .iter()
        .map(|(p, r)| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                r.clone(),
            )
        })
        .collect();
    for (name, needle) in [
        ("empty.mp3", "empty"),
        ("truncated.flac", ""),
        ("noise.mp3", ""),
        ("image.mp3", "not audio"),
        ("loop", "loops"),
        ("dangling.flac", "broken symbolic link"),
        ("video only.avi", "no audio stream"),
    ] {
        let reason = warned
            .get(name)
            .unwrap_or_else(|| panic!("no warning for {name}: {warned:#?}"));
        assert!(reason.contains(needle), "{name}: {reason}");
    }
    assert_eq!(
        run.warnings.len(),
        7,
        "exactly one warning per bad file: {warned:#?}"
    );
    assert_eq!(run.summary.failed, 7);
    assert_eq!(
        run.summary.not_audio, 2,
        "notes.txt and cover.jpg are skipped quietly"
    );

    let by_path: BTreeMap<PathBuf, &TrackInfo> = index
        .files
        .values()
        .map(|e| (e.path.to_path(), &e.track))
        .collect();
    for (path, expect) in &good {
        let t = by_path
            .get(&canon(path))
            .unwrap_or_else(|| panic!("{} not in index", path.display()));
        // The decoded track (priming and padding trimmed) has exactly the samples the index records,
        // and the source's length within one AAC frame.
        let pcm = decode_track(&lib.store, &t.manifest_id).unwrap();
        assert_eq!(pcm.len() as u64, t.samples * 2, "{}", path.display());
        let diff = t.samples.abs_diff(expect.samples_48k);
        assert!(
            diff <= 1024,
            "{}: {} samples vs source {}",
            path.display(),
            t.samples,
            expect.samples_48k
        );
        assert_eq!(t.priming, 1024);
        let manifest = Manifest::parse(&lib.store.get(&t.manifest_id).unwrap()).unwrap();
        assert_eq!(manifest.segments.len() as u32, t.segment_count);
        assert_eq!(manifest.track_samples(), t.samples);
        let expected_segments = t.duration_ms.div_ceil(6000);
        assert!(u64::from(t.segment_count).abs_diff(expected_segments) <= 1);
        assert_eq!(
            t.track_hash,
            chorus_media::Hash32::digest(&fs::read(path).unwrap())
        );
        // The decoded audio is the tune, not silence or noise: its level is in the right range.
        let rms = (pcm.iter().map(|v| v * v).sum::<f32>() / pcm.len() as f32).sqrt();
        if t.title == "Silence" {
            assert!(rms < 1e-3, "silence decoded with rms {rms}");
            assert_eq!(
                t.loudness_lufs, None,
                "silence has no loudness (no infinite gain)"
            );
        } else {
            assert!(rms > 0.02 && rms < 0.5, "{}: rms {rms}", path.display());
            let l = t.loudness_lufs.unwrap();
            assert!((-40.0..-5.0).contains(&l), "{}: {l} LUFS", path.display());
        }
        // ffprobe accepts the exported playlist and every segment.
        let out = tmp.path().join("export").join(t.track_hash.to_hex());
        let playlist = export_hls(&lib.store, &t.manifest_id, &out).unwrap();
        ffprobe_ok(&playlist).unwrap();
        for seg in &manifest.segments {
            ffprobe_ok(&out.join(format!("{}.aac", seg.id))).unwrap();
        }
    }
    // Tags, file-name fallback, unicode names and the proposable limit.
    let get = |name: &str| by_path[&canon(&tmp.path().join("music").join(name))];
    let t0 = get("formats/track0.mp3");
    assert_eq!(
        (t0.title.as_str(), t0.artist.as_str(), t0.album.as_str()),
        ("Song 0", "The Testers", "Formats")
    );
    for i in 1..6 {
        let t = by_path
            .values()
            .find(|t| t.title == format!("Song {i}"))
            .unwrap();
        assert_eq!(t.artist, "The Testers", "tags of format {i}");
    }
    let untagged = get("odd/Nobody - Untagged Song.wav");
    assert_eq!(
        (untagged.title.as_str(), untagged.artist.as_str()),
        ("Untagged Song", "Nobody")
    );
    assert_eq!(
        get("odd/Café – Ünïcödé 東京 (live).opus").title,
        "Café – Ünïcödé 東京 (live)"
    );
    assert!(
        get("odd/Café – Ünïcödé 東京 (live).opus")
            .not_proposable
            .as_deref()
            .unwrap()
            .contains("max_track_ms")
    );
    assert!(get("formats/track0.mp3").not_proposable.is_none());

    // An unchanged rescan re-encodes nothing and rewrites no block.
    let before = block_mtimes(&lib);
    let again = ingest(&root, &lib, 2, limits);
    assert_eq!(again.summary.ingested, 0);
    assert_eq!(
        again.summary.unchanged,
        good.len() + 2 /* not-audio files are looked at again */ - 2
    );
    assert_eq!(block_mtimes(&lib), before);
    assert_eq!(lib.load_index().unwrap(), index);

    // A changed file is re-ingested, a removed one leaves the index, a moved one is not re-encoded.
    let changed = root.join("formats/track4.wav");
    write_tune(
        &changed,
        Format::Wav,
        &Tune::new(99, 8.0),
        &FileTags::default(),
    )
    .unwrap();
    fs::remove_file(root.join("formats/track2.ogg")).unwrap();
    fs::rename(
        root.join("formats/track3.opus"),
        root.join("odd/moved.opus"),
    )
    .unwrap();
    let third = ingest(&root, &lib, 1, limits);
    assert_eq!(third.summary.ingested, 1, "{:?}", third.done);
    assert_eq!(third.summary.reused, 1);
    assert_eq!(third.summary.removed, 2);
    let index = lib.load_index().unwrap();
    assert_eq!(index.files.len(), good.len() - 1);
    assert!(index.files.values().any(|e| e.path.to_path() == changed
        && e.track.track_hash == chorus_media::Hash32::digest(&fs::read(&changed).unwrap())));
}

#[test]
fn interrupted_ingest_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("music");
    fs::create_dir_all(&root).unwrap();
    for i in 0..5u64 {
        write_tune(
            &root.join(format!("t{i}.flac")),
            Format::Flac,
            &Tune::new(i, 6.0),
            &FileTags::default(),
        )
        .unwrap();
    }
    let lib = Library::open(&tmp.path().join("data")).unwrap();
    let cancel = AtomicBool::new(false);
    let opts = IngestOptions {
        jobs: 1,
        limits: TrackLimits::default(),
    };
    let summary = ingest_library(&root, &lib, &opts, &cancel, &mut |ev| {
        if let IngestEvent::Done { .. } = ev {
            cancel.store(true, Ordering::SeqCst); // Ctrl-C after the first file
        }
    })
    .unwrap();
    assert!(summary.interrupted);
    assert_eq!(summary.ingested, 1);
    assert_eq!(lib.load_index().unwrap().files.len(), 1);

    let cancel = AtomicBool::new(false);
    let summary = ingest_library(&root, &lib, &opts, &cancel, &mut |_| {}).unwrap();
    assert!(!summary.interrupted);
    assert_eq!((summary.ingested, summary.unchanged), (4, 1));
    assert_eq!(lib.load_index().unwrap().files.len(), 5);
}

#[test]
fn concurrent_ingests_never_corrupt_the_index() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("music");
    fs::create_dir_all(&root).unwrap();
    for i in 0..6u64 {
        write_tune(
            &root.join(format!("t{i}.wav")),
            Format::Wav,
            &Tune::new(i + 10, 5.5),
            &FileTags::default(),
        )
        .unwrap();
    }
    let data = tmp.path().join("data");
    let lib = Library::open(&data).unwrap();
    let opts = IngestOptions {
        jobs: 4,
        limits: TrackLimits::default(),
    };
    // Four jobs write blocks in parallel while a second ingest of the same data directory is
    // attempted in the middle: it is refused with a clear error instead of racing on the index.
    let mut second = None;
    let cancel = AtomicBool::new(false);
    let summary = ingest_library(&root, &lib, &opts, &cancel, &mut |ev| {
        if matches!(ev, IngestEvent::Done { .. }) && second.is_none() {
            let other = Library::open(&data).unwrap();
            let never = AtomicBool::new(false);
            second = Some(ingest_library(&root, &other, &opts, &never, &mut |_| {}));
        }
    })
    .unwrap();
    assert_eq!(summary.ingested, 6);
    match second {
        Some(Err(e @ IngestError::Busy(_))) => {
            assert!(e.to_string().contains("another chorus ingest is running"))
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    // The index is whole and every track in it decodes from verified blocks.
    let index = lib.load_index().unwrap();
    assert_eq!(index.files.len(), 6);
    for e in index.files.values() {
        let pcm = decode_track(&lib.store, &e.track.manifest_id).unwrap();
        assert_eq!(pcm.len() as u64, e.track.samples * 2);
    }
    // Once the first has finished, the lock is free again.
    let s = ingest_library(&root, &lib, &opts, &cancel, &mut |_| {}).unwrap();
    assert_eq!(s.unchanged, 6);
}

#[test]
fn loudness_follows_level() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("music");
    fs::create_dir_all(&root).unwrap();
    let quiet = Tune {
        amplitude: 0.1,
        ..Tune::new(7, 8.0)
    };
    let loud = Tune {
        amplitude: 0.2,
        ..Tune::new(7, 8.0)
    };
    write_tune(
        &root.join("quiet.flac"),
        Format::Flac,
        &quiet,
        &FileTags {
            title: "quiet".into(),
            ..Default::default()
        },
    )
    .unwrap();
    write_tune(
        &root.join("loud.flac"),
        Format::Flac,
        &loud,
        &FileTags {
            title: "loud".into(),
            ..Default::default()
        },
    )
    .unwrap();
    let lib = Library::open(&tmp.path().join("data")).unwrap();
    ingest(&root, &lib, 2, TrackLimits::default());
    let index = lib.load_index().unwrap();
    let l = |title: &str| {
        index
            .files
            .values()
            .find(|e| e.track.title == title)
            .unwrap()
            .track
            .loudness_lufs
            .unwrap()
    };
    // Twice the amplitude is +6.02 dB.
    let delta = l("loud") - l("quiet");
    assert!((delta - 6.02).abs() < 0.3, "loudness delta {delta}");
    // And the ffmpeg program's own EBU R128 meter agrees on the absolute value.
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-nostats", "-i"])
        .arg(root.join("loud.flac"))
        .args(["-af", "ebur128", "-f", "null", "-"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    let summary = &log[log.rfind("Integrated loudness:").expect("ebur128 summary")..];
    let reference: f64 = summary
        .lines()
        .find_map(|l| l.trim().strip_prefix("I:"))
        .and_then(|v| v.trim().trim_end_matches("LUFS").trim().parse().ok())
        .unwrap();
    assert!(
        (l("loud") - reference).abs() < 0.2,
        "ours {} vs ffmpeg {reference}",
        l("loud")
    );
}

#[test]
fn a_moved_library_is_not_encoded_again() {
    let tmp = tempfile::tempdir().unwrap();
    let old = tmp.path().join("old music");
    fs::create_dir_all(&old).unwrap();
    for i in 0..3u64 {
        write_tune(
            &old.join(format!("t{i}.flac")),
            Format::Flac,
            &Tune::new(i + 20, 5.5),
            &FileTags::default(),
        )
        .unwrap();
    }
    let lib = Library::open(&tmp.path().join("data")).unwrap();
    let first = ingest(&old, &lib, 2, TrackLimits::default());
    assert_eq!(first.summary.ingested, 3);
    let new = tmp.path().join("new music");
    fs::rename(&old, &new).unwrap();
    let second = ingest(&new, &lib, 2, TrackLimits::default());
    assert_eq!(
        (
            second.summary.ingested,
            second.summary.reused,
            second.summary.removed
        ),
        (0, 3, 3)
    );
    let index = lib.load_index().unwrap();
    assert_eq!(index.files.len(), 3);
    assert!(
        index
            .files
            .values()
            .all(|e| e.path.to_path().starts_with(new.canonicalize().unwrap()))
    );
}
