//! `chorus export-hls`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Result, bail};
use chorus_media::TrackInfo;
use chorus_media::export::export_hls;

use super::library;

/// Finds a track by full hash or unique prefix (8 or more hex digits).
pub fn find<'a>(tracks: &[&'a TrackInfo], wanted: &str) -> Result<&'a TrackInfo> {
    let wanted = wanted.trim().to_ascii_lowercase();
    if wanted.len() < 8 || wanted.len() > 64 || !wanted.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!(
            "{wanted:?} is not a track hash: give 8 to 64 hex digits as `chorus library` shows them"
        );
    }
    let matches: Vec<_> = tracks
        .iter()
        .filter(|t| t.track_hash.to_hex().starts_with(&wanted))
        .collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => {
            bail!("no track in the library has a hash starting with {wanted}: see `chorus library`")
        }
        many => bail!(
            "{} tracks have hashes starting with {wanted}: give more digits",
            many.len()
        ),
    }
}

/// `chorus export-hls TRACK_HASH DIR`.
pub fn run(data_dir: &Path, track_hash: &str, dir: &Path) -> Result<ExitCode> {
    let (lib, index) = library::load(data_dir)?;
    let track = find(&index.tracks(), track_hash)?;
    let playlist = export_hls(&lib.store, &track.manifest_id, dir)?;
    tracing::info!(event = "exported", track_hash = %track.track_hash, playlist = %playlist.display(),
        "exported \"{}\" ({} segments) to {}", track.display_name(), track.segment_count, playlist.display());
    println!("{}", playlist.display());
    Ok(ExitCode::SUCCESS)
}
