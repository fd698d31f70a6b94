//! `chorus ingest`.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use chorus_media::ingest::{FileOutcome, IngestEvent, IngestOptions, IngestSummary, Library};
use chorus_media::{TrackLimits, ingest_library};
use indicatif::{ProgressBar, ProgressStyle};
use tracing::{info, warn};

/// Exit status after Ctrl-C (128 + SIGINT), as shells expect.
const INTERRUPTED: u8 = 130;

/// Whether an ingest is running: the Ctrl-C handler stays installed afterwards (a running node
/// has its own), and must then leave the signal to the node.
static INGESTING: AtomicBool = AtomicBool::new(false);

/// Marks an ingest as running while alive.
struct Ingesting;

impl Ingesting {
    fn start() -> Ingesting {
        INGESTING.store(true, Ordering::SeqCst);
        Ingesting
    }
}

impl Drop for Ingesting {
    fn drop(&mut self) {
        INGESTING.store(false, Ordering::SeqCst);
    }
}

/// Installs the Ctrl-C handler once: the first Ctrl-C during an ingest asks it to stop after
/// saving what is finished; a second one exits at once (safe: every write is atomic).
fn cancel_flag() -> Arc<AtomicBool> {
    static FLAG: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let presses = AtomicU8::new(0);
        let f = flag.clone();
        let installed = ctrlc::set_handler(move || {
            if !INGESTING.load(Ordering::SeqCst) {
                return;
            }
            if presses.fetch_add(1, Ordering::SeqCst) > 0 {
                std::process::exit(i32::from(INTERRUPTED));
            }
            f.store(true, Ordering::SeqCst);
            eprintln!("stopping after saving the finished tracks (Ctrl-C again to quit at once; the next run resumes)");
        });
        if let Err(e) = installed {
            warn!("cannot install the Ctrl-C handler: {e}");
        }
        flag
    })
    .clone()
}

/// The track limits of the protocol's default rules.
pub fn default_limits() -> TrackLimits {
    let rules = chorus_consensus::Rules::default();
    TrackLimits {
        min_track_ms: rules.min_track_ms,
        max_track_ms: rules.max_track_ms,
    }
}

/// Ingests `library` into the data directory.
pub fn run(
    data_dir: &Path,
    library: &Path,
    jobs: Option<u16>,
    json_logs: bool,
) -> Result<ExitCode> {
    let summary = ingest(data_dir, library, jobs, json_logs)?;
    Ok(if summary.interrupted {
        ExitCode::from(INTERRUPTED)
    } else {
        ExitCode::SUCCESS
    })
}

/// Runs an ingest with progress reporting and returns its summary.
pub fn ingest(
    data_dir: &Path,
    library: &Path,
    jobs: Option<u16>,
    json_logs: bool,
) -> Result<IngestSummary> {
    let lib = Library::open(data_dir).context("cannot open the block store")?;
    let mut opts = IngestOptions {
        limits: default_limits(),
        ..IngestOptions::default()
    };
    if let Some(j) = jobs {
        opts.jobs = usize::from(j);
    }
    let cancel = cancel_flag();
    let _running = Ingesting::start();
    let show_bar = !json_logs && std::io::stderr().is_terminal();
    let mut bar: Option<ProgressBar> = None;
    info!(event = "ingest_start", library = %library.display(), data_dir = %data_dir.display(), jobs = opts.jobs, "ingesting {}", library.display());

    let summary = ingest_library(library, &lib, &opts, &cancel, &mut |ev| match ev {
        IngestEvent::Planned {
            to_ingest,
            bytes,
            unchanged,
        } => {
            info!(
                event = "ingest_plan",
                to_ingest,
                unchanged,
                bytes,
                "{to_ingest} files to ingest ({:.1} MB), {unchanged} unchanged",
                bytes as f64 / 1e6
            );
            if show_bar && to_ingest > 0 {
                let pb = ProgressBar::new(to_ingest as u64);
                pb.set_style(
                    ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} files, eta {eta} {wide_msg}")
                        .expect("the progress template is valid"),
                );
                pb.enable_steady_tick(Duration::from_millis(200));
                bar = Some(pb);
            }
        }
        IngestEvent::Warning { path, reason } => {
            let log = || warn!(event = "ingest_skipped", file = %path.display(), %reason, "skipped {}: {reason}", path.display());
            match &bar {
                Some(pb) => pb.suspend(log),
                None => log(),
            }
        }
        IngestEvent::Done { path, outcome } => {
            let log = || match outcome {
                FileOutcome::Ingested(t) | FileOutcome::Reused(t) => {
                    let how = if matches!(outcome, FileOutcome::Reused(_)) {
                        "reused"
                    } else {
                        "ingested"
                    };
                    let level = t
                        .loudness_lufs
                        .map(|l| format!("{l:.1} LUFS"))
                        .unwrap_or_else(|| "silent".into());
                    let line = format!(
                        "{how} {} \"{}\" {}:{:02} {level}{}",
                        path.display(),
                        t.display_name(),
                        t.duration_ms / 60_000,
                        t.duration_ms / 1000 % 60,
                        t.not_proposable
                            .as_ref()
                            .map(|r| format!(" (not proposable: {r})"))
                            .unwrap_or_default()
                    );
                    if bar.is_some() {
                        tracing::debug!(event = how, file = %path.display(), track_hash = %t.track_hash, duration_ms = t.duration_ms, "{line}");
                    } else {
                        info!(event = how, file = %path.display(), track_hash = %t.track_hash, duration_ms = t.duration_ms, "{line}");
                    }
                    if let Some(reason) = &t.not_proposable {
                        warn!(event = "not_proposable", file = %path.display(), %reason, "{} is ingested but cannot be proposed: it is {reason}", path.display());
                    }
                }
                FileOutcome::Failed(reason) => {
                    warn!(event = "ingest_skipped", file = %path.display(), %reason, "skipped {}: {reason}", path.display());
                }
                FileOutcome::NotAudio(reason) => {
                    tracing::debug!(event = "not_audio", file = %path.display(), %reason, "ignored {}: {reason}", path.display());
                }
            };
            match &bar {
                Some(pb) => {
                    pb.suspend(log);
                    pb.set_message(
                        path.file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                    );
                    pb.inc(1);
                }
                None => log(),
            }
        }
    });
    if let Some(pb) = bar.take() {
        pb.finish_and_clear();
    }
    let summary = summary.with_context(|| format!("ingest of {} stopped", library.display()))?;
    let hours = summary.audio_seconds / 3600.0;
    info!(
        event = "ingest_summary",
        ingested = summary.ingested,
        reused = summary.reused,
        unchanged = summary.unchanged,
        failed = summary.failed,
        removed = summary.removed,
        not_audio = summary.not_audio,
        audio_hours = hours,
        elapsed_s = summary.elapsed.as_secs_f64(),
        realtime_factor = summary.realtime_factor(),
        interrupted = summary.interrupted,
        "{}: {} ingested, {} unchanged, {} failed{}{}; {:.2} h of audio in {:.1} s ({:.0}x real time); library: {:.2} h",
        if summary.interrupted {
            "ingest interrupted (run again to resume)"
        } else {
            "ingest finished"
        },
        summary.ingested,
        summary.unchanged,
        summary.failed,
        if summary.reused > 0 {
            format!(", {} reused (moved or copied)", summary.reused)
        } else {
            String::new()
        },
        if summary.removed > 0 {
            format!(", {} removed", summary.removed)
        } else {
            String::new()
        },
        hours,
        summary.elapsed.as_secs_f64(),
        summary.realtime_factor(),
        summary.library_seconds / 3600.0,
    );
    Ok(summary)
}
