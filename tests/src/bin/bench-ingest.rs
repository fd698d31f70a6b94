//! Benchmark: Chorus's ingest against the ffmpeg program doing the same job on the same files,
//! and the cost of an unchanged rescan.
//!
//!     cargo run --release -p chorus-tests --bin bench-ingest -- [--files N] [--seconds S] [--rescan-files M]
//!
//! Generates N stereo 44.1 kHz FLAC files of S seconds (the usual shape of a ripped library),
//! then times, on the same files:
//! - the ffmpeg program, one file at a time, one thread each:
//!   `ffmpeg -i IN -c:a aac -b:a 160k -ar 48000 -ac 2 -f hls -hls_time 6 -hls_playlist_type vod OUT`
//! - `chorus ingest` with one job, and with one job per core;
//!
//! and prints the times and their ratios. Finally it ingests M one-second files and times an
//! unchanged rescan of them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chorus_media::ingest::{IngestOptions, Library};
use chorus_media::synth::{FileTags, Format, Tune, write_tune};
use chorus_media::{TrackLimits, ingest_library};

fn arg(args: &[String], name: &str, default: usize) -> Result<usize> {
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .context("missing value")?
            .parse()
            .with_context(|| format!("bad {name}")),
        None => Ok(default),
    }
}

fn chorus_ingest(
    library: &Path,
    data: &Path,
    jobs: usize,
) -> Result<(Duration, chorus_media::IngestSummary)> {
    let lib = Library::open(data)?;
    let cancel = AtomicBool::new(false);
    let opts = IngestOptions {
        jobs,
        limits: TrackLimits::default(),
    };
    let start = Instant::now();
    let summary = ingest_library(library, &lib, &opts, &cancel, &mut |_| {})?;
    Ok((start.elapsed(), summary))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let files = arg(&args, "--files", 8)?;
    let seconds = arg(&args, "--seconds", 60)? as f64;
    let rescan_files = arg(&args, "--rescan-files", 1000)?;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    chorus_media::transcode::init(false);

    let tmp = tempfile::tempdir()?;
    let library = tmp.path().join("library");
    let paths = write_library(&library, files, seconds)?;
    let audio_s = files as f64 * seconds;
    println!(
        "library: {files} FLAC files, 44.1 kHz stereo, {seconds} s each ({:.1} min of audio); {cores} cores",
        audio_s / 60.0
    );

    let ffmpeg = ffmpeg_program(&paths, tmp.path())?;
    let (one, s1) = chorus_ingest(&library, &tmp.path().join("data-1"), 1)?;
    let (all, sn) = chorus_ingest(&library, &tmp.path().join("data-n"), cores)?;
    if s1.ingested != files || sn.ingested != files {
        bail!(
            "chorus ingested {} and {} of {files} files",
            s1.ingested,
            sn.ingested
        );
    }
    print_times(audio_s, cores, ffmpeg, one, all);
    if rescan_files > 0 {
        rescan(tmp.path(), rescan_files, cores)?;
    }
    Ok(())
}

/// Writes `files` stereo 44.1 kHz FLAC files of `seconds` each into `library`.
fn write_library(library: &Path, files: usize, seconds: f64) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(library)?;
    let paths = (0..files)
        .map(|i| {
            let path = library.join(format!("track{i:03}.flac"));
            let tune = Tune {
                rate: 44_100,
                ..Tune::new(i as u64 + 1, seconds)
            };
            write_tune(&path, Format::Flac, &tune, &FileTags::default()).map(|_| path)
        })
        .collect::<Result<_, _>>()?;
    Ok(paths)
}

/// Times the ffmpeg program encoding `paths` to HLS under `tmp`, one file at a time.
fn ffmpeg_program(paths: &[PathBuf], tmp: &Path) -> Result<Duration> {
    let start = Instant::now();
    for (i, p) in paths.iter().enumerate() {
        let out = tmp.join(format!("ffmpeg-{i}"));
        std::fs::create_dir_all(&out)?;
        let status = Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-threads", "1", "-i"])
            .arg(p)
            .args([
                "-c:a",
                "aac",
                "-b:a",
                "160k",
                "-ar",
                "48000",
                "-ac",
                "2",
                "-f",
                "hls",
                "-hls_time",
                "6",
            ])
            .args(["-hls_playlist_type", "vod"])
            .arg(out.join("index.m3u8"))
            .status()
            .context("cannot run the ffmpeg program (apt-get install ffmpeg)")?;
        if !status.success() {
            bail!("ffmpeg failed on {}", p.display());
        }
    }
    Ok(start.elapsed())
}

/// Prints the three times over `audio_s` seconds of audio, and their ratios.
fn print_times(audio_s: f64, cores: usize, ffmpeg: Duration, one: Duration, all: Duration) {
    let rt = |d: Duration| audio_s / d.as_secs_f64();
    println!(
        "ffmpeg program, 1 file at a time:   {:>7.2} s  ({:.0}x real time)",
        ffmpeg.as_secs_f64(),
        rt(ffmpeg)
    );
    println!(
        "chorus ingest --jobs 1:             {:>7.2} s  ({:.0}x real time)",
        one.as_secs_f64(),
        rt(one)
    );
    println!(
        "chorus ingest --jobs {cores}:             {:>7.2} s  ({:.0}x real time)",
        all.as_secs_f64(),
        rt(all)
    );
    println!(
        "per core, chorus vs ffmpeg:          {:.2}x",
        ffmpeg.as_secs_f64() / one.as_secs_f64()
    );
    println!(
        "{cores} jobs vs 1 job:                    {:.2}x",
        one.as_secs_f64() / all.as_secs_f64()
    );
    println!(
        "chorus --jobs {cores} vs ffmpeg (1 at a time): {:.2}x",
        ffmpeg.as_secs_f64() / all.as_secs_f64()
    );
}

/// Ingests `rescan_files` one-second files, then times an unchanged rescan of them.
fn rescan(tmp: &Path, rescan_files: usize, cores: usize) -> Result<()> {
    let small = tmp.join("small");
    std::fs::create_dir_all(&small)?;
    for i in 0..rescan_files {
        // 50 folders of 20 files, like albums.
        let dir = small.join(format!("{:02}", i % 50));
        std::fs::create_dir_all(&dir)?;
        let tune = Tune::new(i as u64, 1.0);
        write_tune(
            &dir.join(format!("s{i:04}.wav")),
            Format::Wav,
            &tune,
            &FileTags::default(),
        )?;
    }
    let data = tmp.join("data-rescan");
    let (first, s) = chorus_ingest(&small, &data, cores)?;
    let (rescan, r) = chorus_ingest(&small, &data, cores)?;
    if r.unchanged != rescan_files || r.ingested != 0 {
        bail!(
            "rescan: {} unchanged, {} ingested of {rescan_files}",
            r.unchanged,
            r.ingested
        );
    }
    println!(
        "{rescan_files} files: first ingest {:.2} s ({} ingested), unchanged rescan {:.3} s",
        first.as_secs_f64(),
        s.ingested,
        rescan.as_secs_f64()
    );
    Ok(())
}
