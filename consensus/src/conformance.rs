//! The conformance runner: checks this crate against the vector files of PROTOCOL.md
//! (`tickets`, `replay` and `chain`) and of protocol 1.1 (`beacon`: hash chains, the beacon,
//! ticket v2), so that `chorus conformance DIR` and the tests share one
//! implementation.
//!
//! A file's format is recognised by its content, not its name: `cases[].peer_ids` is a tickets
//! file, `cases[].track_hashes` a replay file, `steps[]` with `network_id` a chain file,
//! `beacons[]` a beacon file. Every
//! `*.json` file of the directory is run; a JSON file of no known format is reported as a
//! failure, other files are skipped.

mod beacon;
mod chain;
mod replay;
mod report;
mod tickets;

use std::fs;
use std::path::{Path, PathBuf};

pub use report::Report;

/// Why a directory of vectors could not be run at all (problems inside a file are failures in
/// the [`Report`] instead).
#[derive(Debug, thiserror::Error)]
pub enum ConformanceError {
    /// The directory could not be listed.
    #[error(
        "cannot read the vector directory {dir}: {source}; pass the folder that holds tickets.json, replay.json and chain.json"
    )]
    ReadDir {
        /// The directory given.
        dir: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The directory holds no `*.json` file.
    #[error(
        "no *.json vector file in {dir}; pass the folder that holds tickets.json, replay.json and chain.json"
    )]
    NoVectors {
        /// The directory given.
        dir: PathBuf,
    },
}

/// Runs every `*.json` vector file in `dir` (in name order) and reports each check.
pub fn run_dir(dir: &Path) -> Result<Report, ConformanceError> {
    let read_err = |source| ConformanceError::ReadDir {
        dir: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(read_err)? {
        let path = entry.map_err(read_err)?.path();
        let is_json = path
            .extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("json"));
        if is_json && path.is_file() {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(ConformanceError::NoVectors {
            dir: dir.to_path_buf(),
        });
    }
    files.sort();
    let mut report = Report::default();
    for path in files {
        report.merge(run_file(&path));
    }
    Ok(report)
}

/// Runs one vector file; an unreadable file is one failure.
pub fn run_file(path: &Path) -> Report {
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    match fs::read_to_string(path) {
        Ok(text) => run_json(&name, &text),
        Err(e) => Report::failure(format!("{name}: cannot read the file: {e}")),
    }
}

/// Runs the vectors in `text`, a JSON document named `name` in messages.
pub fn run_json(name: &str, text: &str) -> Report {
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(e) => return Report::failure(format!("{name}: not valid JSON: {e}")),
    };
    match Format::recognise(&value) {
        Some(Format::Tickets) => tickets::run(name, value),
        Some(Format::Replay) => replay::run(name, value),
        Some(Format::Chain) => chain::run(name, value),
        Some(Format::Beacon) => beacon::run(name, value),
        None => Report::failure(format!(
            "{name}: not a known vector file (expected tickets with cases[].peer_ids, \
             replay with cases[].track_hashes, chain with network_id and steps[], or beacon \
             with beacons[])"
        )),
    }
}

/// The vector formats this runner knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Tickets,
    Replay,
    Chain,
    Beacon,
}

impl Format {
    fn recognise(value: &serde_json::Value) -> Option<Format> {
        if let Some(cases) = value.get("cases").and_then(|c| c.as_array()) {
            let first = cases.first()?;
            if first.get("peer_ids").is_some() {
                return Some(Format::Tickets);
            }
            if first.get("track_hashes").is_some() {
                return Some(Format::Replay);
            }
            return None;
        }
        if value.get("beacons").is_some() {
            return Some(Format::Beacon);
        }
        if value.get("steps").is_some() && value.get("network_id").is_some() {
            return Some(Format::Chain);
        }
        None
    }
}

/// Decodes a typed vector file, or reports it malformed.
fn parse<T: serde::de::DeserializeOwned>(
    name: &str,
    what: &str,
    value: serde_json::Value,
) -> Result<T, Report> {
    serde_json::from_value(value)
        .map_err(|e| Report::failure(format!("{name}: malformed {what} vector file: {e}")))
}

/// Parses a hex hash field, naming it in the error.
fn hash(field: &str, text: &str) -> Result<crate::hash::Hash32, String> {
    crate::hash::Hash32::from_hex(text)
        .map_err(|e| format!("{field} {text:?} is not a 32-byte hex hash: {e}"))
}

#[cfg(test)]
mod tests;
