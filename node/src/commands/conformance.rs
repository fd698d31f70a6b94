//! `chorus conformance DIR`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use chorus_consensus::conformance;

/// Runs every vector file in `dir` and prints the report.
pub fn run(dir: &Path) -> Result<ExitCode> {
    let report = conformance::run_dir(dir)?;
    println!("{report}");
    Ok(if report.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
