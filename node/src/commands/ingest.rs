//! `chorus ingest`.
//!
//! - `report`: the progress bar and the log lines of an ingest.

mod report;

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use anyhow::{Context, Result};
use chorus_media::ingest::{IngestOptions, IngestSummary, Library};
use chorus_media::{TrackLimits, ingest_library};
use tracing::{info, warn};

use report::{Progress, log_summary};

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
    let mut progress = Progress::new(!json_logs && std::io::stderr().is_terminal());
    info!(event = "ingest_start", library = %library.display(), data_dir = %data_dir.display(), jobs = opts.jobs, "ingesting {}", library.display());

    let summary = ingest_library(library, &lib, &opts, &cancel, &mut |ev| progress.on(ev));
    progress.finish();
    let summary = summary.with_context(|| format!("ingest of {} stopped", library.display()))?;
    log_summary(&summary);
    Ok(summary)
}
