//! Ingesting a whole library folder: scan, skip what is unchanged, transcode the rest in
//! parallel, keep the index current, and report.
//!
//! Crash safety: a track's blocks are written (atomically) before its index entry, and the index
//! is only ever replaced atomically, so a process killed at any moment leaves an index whose every
//! entry is complete. The next run re-does only the files whose entries are missing.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use walkdir::WalkDir;

use crate::Hash32;
use crate::index::{IndexEntry, IndexError, LibraryIndex, Loaded, StoredPath};
use crate::sniff;
use crate::store::{BlockStore, StoreError};
use crate::track::{self, FileError, FileStamp, TrackInfo, TrackLimits};

/// How to run an ingest.
#[derive(Clone, Debug)]
pub struct IngestOptions {
    /// Files transcoded at once (one core each).
    pub jobs: usize,
    /// The limits that decide whether a track is proposable.
    pub limits: TrackLimits,
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self {
            jobs: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            limits: TrackLimits::default(),
        }
    }
}

/// What happened to one file, as reported to the observer.
#[derive(Debug)]
pub enum FileOutcome {
    /// Transcoded now.
    Ingested(TrackInfo),
    /// Same content as a track already in the store (a moved or copied file): nothing encoded.
    Reused(TrackInfo),
    /// Not ingested; the reason completes "skipped FILE: ...".
    Failed(String),
    /// Not audio, and its name does not claim to be (cover art, notes): skipped without a warning.
    NotAudio(String),
}

/// Progress events, in order: one `Planned`, then a `Warning` per problem found while scanning,
/// then `Done` per file that needed work.
#[derive(Debug)]
pub enum IngestEvent<'a> {
    /// The scan is complete.
    Planned {
        /// Files to (re-)ingest.
        to_ingest: usize,
        /// Their total size in bytes.
        bytes: u64,
        /// Files unchanged since the last ingest.
        unchanged: usize,
    },
    /// A file or folder that the scan could not use.
    Warning {
        /// The file or folder.
        path: &'a Path,
        /// Why, completing "skipped PATH: ...".
        reason: String,
    },
    /// One file is finished.
    Done {
        /// The file.
        path: &'a Path,
        /// The result.
        outcome: &'a FileOutcome,
    },
}

/// The closing figures of an ingest.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IngestSummary {
    /// Files transcoded in this run.
    pub ingested: usize,
    /// Files whose content was already in the store (moved or copied files).
    pub reused: usize,
    /// Files unchanged since the last run.
    pub unchanged: usize,
    /// Files that could not be ingested (each reported with its reason).
    pub failed: usize,
    /// Files that are not audio and do not claim to be (images, text...), skipped quietly.
    pub not_audio: usize,
    /// Index entries dropped because their file is gone.
    pub removed: usize,
    /// Seconds of audio transcoded in this run.
    pub audio_seconds: f64,
    /// Seconds of audio in the whole library after this run.
    pub library_seconds: f64,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
    /// Whether the run was interrupted (Ctrl-C) before it finished; the next run resumes.
    pub interrupted: bool,
}

impl IngestSummary {
    /// Transcoding speed as a multiple of real time.
    pub fn realtime_factor(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.audio_seconds / secs
        } else {
            0.0
        }
    }
}

/// Errors that stop an ingest as a whole (problems with single files are reported and skipped).
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The library folder is missing or not a folder.
    #[error("the library folder {0} does not exist or is not a folder")]
    NoLibrary(PathBuf),
    /// Another ingest holds this data directory.
    #[error("another chorus ingest is running with the data directory {0}; wait for it to finish")]
    Busy(PathBuf),
    /// The lock file of the data directory cannot be opened.
    #[error("cannot lock {path}: {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The store refused a block; the index holds every track completed before.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The index could not be read or written.
    #[error(transparent)]
    Index(#[from] IndexError),
}

/// Where the ingest keeps its results.
#[derive(Clone, Debug)]
pub struct Library {
    /// The block store.
    pub store: BlockStore,
    /// The index file.
    pub index_path: PathBuf,
}

impl Library {
    /// The library of a data directory: `DATA/store` and `DATA/library.json`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            store: BlockStore::open(data_dir.join("store"))?,
            index_path: data_dir.join("library.json"),
        })
    }

    /// Takes the data directory's ingest lock (released when the returned file is dropped, or
    /// by the OS when the process dies, so a kill -9 never leaves it stuck).
    fn lock_for_ingest(&self) -> Result<std::fs::File, IngestError> {
        let dir = self.index_path.parent().unwrap_or(Path::new("."));
        let path = dir.join("ingest.lock");
        let lock_err = |source| IngestError::Lock {
            path: path.clone(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(lock_err)?;
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => Err(IngestError::Busy(dir.to_path_buf())),
            Err(std::fs::TryLockError::Error(e)) => Err(lock_err(e)),
        }
    }

    /// Loads the index; a damaged one is moved aside with a warning in the log.
    pub fn load_index(&self) -> Result<LibraryIndex, IndexError> {
        match LibraryIndex::load(&self.index_path)? {
            Loaded::Ok(index) => Ok(index),
            Loaded::Damaged(index, aside, reason) => {
                tracing::warn!(
                    index = %self.index_path.display(), moved_to = %aside.display(), %reason,
                    "the library index was damaged; starting a new one (the store is intact)"
                );
                Ok(index)
            }
        }
    }
}

struct Job {
    path: PathBuf,
    stamp: FileStamp,
}

/// Ingests the library folder `root` into `lib`. `cancel` is checked between files and between
/// AAC frames; when it is set, finished work is saved and the summary says `interrupted`.
pub fn ingest_library(
    root: &Path,
    lib: &Library,
    opts: &IngestOptions,
    cancel: &AtomicBool,
    observer: &mut dyn FnMut(IngestEvent<'_>),
) -> Result<IngestSummary, IngestError> {
    let started = Instant::now();
    if !root.is_dir() {
        return Err(IngestError::NoLibrary(root.to_path_buf()));
    }
    // One ingest per data directory at a time: two would redo each other's work and race on the
    // index (safely, as writes are atomic, but the loser's entries would have to be redone).
    let _lock = lib.lock_for_ingest()?;
    let root = root
        .canonicalize()
        .map_err(|_| IngestError::NoLibrary(root.to_path_buf()))?;
    let mut index = lib.load_index()?;
    let mut summary = IngestSummary::default();
    // Tracks already in the store by content, so that a moved, renamed or copied file (or a
    // whole library folder moved elsewhere) costs one hash instead of an encode.
    let known: HashMap<Hash32, TrackInfo> = index
        .files
        .values()
        .map(|e| (e.track.track_hash, e.track.clone()))
        .collect();
    let root_key = StoredPath::from_path(&root);
    if index.root.as_ref() != Some(&root_key) {
        summary.removed += index.files.len();
        index = LibraryIndex::new(&root);
    }
    let (mut jobs, seen) = scan(&root, &index, &mut summary, observer);
    let before = index.files.len();
    index.files.retain(|k, _| seen.contains(k));
    summary.removed += before - index.files.len();

    // Biggest files first: the last file to finish is then a short one.
    jobs.sort_by_key(|j| std::cmp::Reverse(j.stamp.size));
    let bytes = jobs.iter().map(|j| j.stamp.size).sum();
    observer(IngestEvent::Planned {
        to_ingest: jobs.len(),
        bytes,
        unchanged: summary.unchanged,
    });
    if summary.removed > 0 || !jobs.is_empty() || !lib.index_path.exists() {
        index.save(&lib.index_path)?;
    }

    let fatal = run_jobs(
        &jobs,
        lib,
        opts,
        cancel,
        &known,
        &mut index,
        &mut summary,
        observer,
    )?;
    if let Some(e) = fatal {
        // Keep what was finished if there is room for it; the old index stays valid if not.
        if let Err(save) = index.save(&lib.index_path) {
            tracing::debug!("index not saved after the store failed: {save}");
        }
        return Err(IngestError::Store(e));
    }
    index.save(&lib.index_path)?;
    summary.library_seconds = index
        .tracks()
        .iter()
        .map(|t| t.duration_ms as f64 / 1000.0)
        .sum();
    summary.elapsed = started.elapsed();
    summary.interrupted = cancel.load(Ordering::SeqCst);
    Ok(summary)
}

/// Walks the library folder: returns the files to (re-)ingest and every file seen, counting
/// unchanged and unreadable ones in `summary` and reporting the latter.
fn scan(
    root: &Path,
    index: &LibraryIndex,
    summary: &mut IngestSummary,
    observer: &mut dyn FnMut(IngestEvent<'_>),
) -> (Vec<Job>, BTreeSet<StoredPath>) {
    let mut seen = BTreeSet::new();
    let mut jobs = Vec::new();
    for entry in WalkDir::new(root).follow_links(true).sort_by_file_name() {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                let path = e
                    .path()
                    .map_or_else(|| root.to_path_buf(), Path::to_path_buf);
                summary.failed += 1;
                observer(IngestEvent::Warning {
                    path: &path,
                    reason: walk_error_reason(&e),
                });
                continue;
            }
        };
        // Hidden files (".DS_Store", macOS "._" resource forks) are never music.
        if entry.depth() > 0 && entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if !entry.file_type().is_file() {
            continue; // folders, and FIFOs or devices, which could block a read forever
        }
        let meta = match entry.metadata() {
            Ok(m) => m,
            Err(e) => {
                summary.failed += 1;
                observer(IngestEvent::Warning {
                    path: entry.path(),
                    reason: format!("it cannot be read ({e})"),
                });
                continue;
            }
        };
        let key = StoredPath::from_path(entry.path());
        let stamp = FileStamp::of(&meta);
        seen.insert(key.clone());
        match index.files.get(&key) {
            Some(e) if e.stamp == stamp => summary.unchanged += 1,
            _ => jobs.push(Job {
                path: entry.into_path(),
                stamp,
            }),
        }
    }
    (jobs, seen)
}

/// Why the scan could not use an entry, completing "skipped PATH: ...".
fn walk_error_reason(e: &walkdir::Error) -> String {
    if e.loop_ancestor().is_some() {
        return "it is a symbolic link that loops back to a parent folder".to_owned();
    }
    match e.io_error() {
        Some(io) if io.kind() == std::io::ErrorKind::NotFound => {
            "it is a broken symbolic link or vanished during the scan".to_owned()
        }
        Some(io) => format!("it cannot be read ({io})"),
        None => e.to_string(),
    }
}

/// Runs the jobs on `opts.jobs` threads; the calling thread collects results, updates the index
/// and saves it at most every two seconds. Returns the fatal store error, if one stopped the run.
#[allow(clippy::too_many_arguments)]
fn run_jobs(
    jobs: &[Job],
    lib: &Library,
    opts: &IngestOptions,
    cancel: &AtomicBool,
    known: &HashMap<Hash32, TrackInfo>,
    index: &mut LibraryIndex,
    summary: &mut IngestSummary,
    observer: &mut dyn FnMut(IngestEvent<'_>),
) -> Result<Option<StoreError>, IngestError> {
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let stopping = || stop.load(Ordering::Relaxed) || cancel.load(Ordering::Relaxed);
    let (tx, rx) = mpsc::channel::<(usize, Result<FileOutcome, FileError>)>();
    let mut fatal = None;
    std::thread::scope(|scope| -> Result<(), IngestError> {
        for _ in 0..opts.jobs.clamp(1, jobs.len().max(1)) {
            let tx = tx.clone();
            let (next, stopping) = (&next, &stopping);
            scope.spawn(move || {
                while !stopping() {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(job) = jobs.get(i) else { break };
                    let result = process_caught(job, lib, &opts.limits, known, stopping);
                    if tx.send((i, result)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut last_save = Instant::now();
        for (i, result) in rx {
            let job = &jobs[i];
            let outcome = match result {
                Ok(o) => o,
                Err(e) if e.is_fatal() => {
                    stop.store(true, Ordering::SeqCst);
                    if let FileError::Store(e) = e {
                        fatal.get_or_insert(e);
                    }
                    continue;
                }
                Err(_) if cancel.load(Ordering::Relaxed) => continue, // interrupted mid-file
                Err(e @ FileError::NotAudio(_))
                    if !sniff::extension_claims_audio(&job.path.to_string_lossy()) =>
                {
                    FileOutcome::NotAudio(e.to_string())
                }
                Err(e) => FileOutcome::Failed(e.to_string()),
            };
            record(job, &outcome, index, summary);
            // A transcoded track is saved at once (an "ingested" report means it survives a
            // kill -9); cheap outcomes are batched.
            if matches!(outcome, FileOutcome::Ingested(_))
                || last_save.elapsed() >= Duration::from_secs(1)
            {
                index.save(&lib.index_path)?;
                last_save = Instant::now();
            }
            observer(IngestEvent::Done {
                path: &job.path,
                outcome: &outcome,
            });
        }
        Ok(())
    })?;
    Ok(fatal)
}

/// Enters `job`'s outcome in the index and the summary.
fn record(job: &Job, outcome: &FileOutcome, index: &mut LibraryIndex, summary: &mut IngestSummary) {
    let key = StoredPath::from_path(&job.path);
    match outcome {
        FileOutcome::Ingested(t) | FileOutcome::Reused(t) => {
            if matches!(outcome, FileOutcome::Ingested(_)) {
                summary.ingested += 1;
                summary.audio_seconds += t.duration_ms as f64 / 1000.0;
            } else {
                summary.reused += 1;
            }
            index.files.insert(
                key.clone(),
                IndexEntry {
                    path: key,
                    stamp: job.stamp,
                    track: t.clone(),
                },
            );
        }
        FileOutcome::Failed(_) => {
            index.files.remove(&key);
            summary.failed += 1;
        }
        FileOutcome::NotAudio(_) => {
            index.files.remove(&key);
            summary.not_audio += 1;
        }
    }
}

/// [`process`], with a panic turned into [`FileError::Crashed`]: a bug in a decoder must cost
/// one file, not the whole ingest.
fn process_caught(
    job: &Job,
    lib: &Library,
    limits: &TrackLimits,
    known: &HashMap<Hash32, TrackInfo>,
    stopping: &dyn Fn() -> bool,
) -> Result<FileOutcome, FileError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        process(job, lib, limits, known, stopping)
    }))
    .unwrap_or_else(|panic| {
        let msg = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        Err(FileError::Crashed(msg))
    })
}

fn process(
    job: &Job,
    lib: &Library,
    limits: &TrackLimits,
    known: &HashMap<Hash32, TrackInfo>,
    stopping: &dyn Fn() -> bool,
) -> Result<FileOutcome, FileError> {
    let (meta, hash, head) = track::stat_and_hash(&job.path)?;
    // A file whose content is already in the store (moved, renamed, copied) needs no encoding.
    if let Some(t) = known.get(&hash)
        && lib.store.contains(&t.manifest_id)
    {
        return Ok(FileOutcome::Reused(t.clone()));
    }
    track::ingest_hashed(&job.path, &meta, hash, &head, &lib.store, limits, stopping)
        .map(FileOutcome::Ingested)
}
