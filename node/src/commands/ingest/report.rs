//! What an ingest shows: a progress bar on a terminal, a log line per file (at debug level
//! under the bar), warnings for skipped files, and the closing summary.

use std::path::Path;
use std::time::Duration;

use chorus_media::ingest::{FileOutcome, IngestEvent, IngestSummary};
use indicatif::{ProgressBar, ProgressStyle};
use tracing::{info, warn};

/// The progress of one ingest, fed its events in order.
pub(super) struct Progress {
    /// Whether to draw a bar (stderr is a terminal and the logs are text).
    show_bar: bool,
    /// The bar, once the plan is known and there is work to do.
    bar: Option<ProgressBar>,
}

impl Progress {
    pub(super) fn new(show_bar: bool) -> Progress {
        Progress {
            show_bar,
            bar: None,
        }
    }

    /// Reports one event of the ingest.
    pub(super) fn on(&mut self, event: IngestEvent<'_>) {
        match event {
            IngestEvent::Planned {
                to_ingest,
                bytes,
                unchanged,
            } => self.planned(to_ingest, bytes, unchanged),
            IngestEvent::Warning { path, reason } => {
                let log = || warn!(event = "ingest_skipped", file = %path.display(), %reason, "skipped {}: {reason}", path.display());
                match &self.bar {
                    Some(pb) => pb.suspend(log),
                    None => log(),
                }
            }
            IngestEvent::Done { path, outcome } => self.done(path, outcome),
        }
    }

    /// Clears the bar.
    pub(super) fn finish(&mut self) {
        if let Some(pb) = self.bar.take() {
            pb.finish_and_clear();
        }
    }

    fn planned(&mut self, to_ingest: usize, bytes: u64, unchanged: usize) {
        info!(
            event = "ingest_plan",
            to_ingest,
            unchanged,
            bytes,
            "{to_ingest} files to ingest ({:.1} MB), {unchanged} unchanged",
            bytes as f64 / 1e6
        );
        if self.show_bar && to_ingest > 0 {
            let pb = ProgressBar::new(to_ingest as u64);
            pb.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} files, eta {eta} {wide_msg}")
                    .expect("the progress template is valid"),
            );
            pb.enable_steady_tick(Duration::from_millis(200));
            self.bar = Some(pb);
        }
    }

    fn done(&mut self, path: &Path, outcome: &FileOutcome) {
        let quiet = self.bar.is_some();
        let log = || log_outcome(path, outcome, quiet);
        match &self.bar {
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
}

/// Logs what became of one file; `quiet` (under a progress bar) logs a finished track at debug
/// level only.
fn log_outcome(path: &Path, outcome: &FileOutcome, quiet: bool) {
    match outcome {
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
            if quiet {
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
    }
}

/// The closing line: what was done, how much audio, how fast.
pub(super) fn log_summary(summary: &IngestSummary) {
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
}
