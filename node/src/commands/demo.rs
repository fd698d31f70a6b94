//! `chorus demo`: the radio with no configuration at all. Until the node exists it generates a
//! demo library, ingests it and exports a track as HLS that any player can play.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use chorus_media::synth::{FileTags, Format, Tune, write_tune};

use super::{export, ingest, library};

const TITLES: [&str; 10] = [
    "Morning Light",
    "Harbour Lanterns",
    "Paper Satellites",
    "Slow River",
    "Night Market",
    "Glass Orchard",
    "Northern Static",
    "Late Bus Home",
    "Copper Fields",
    "Open Window",
];
const ARTISTS: [&str; 3] = ["The Demo Ensemble", "Loopback Choir", "Quiet Carrier"];

/// Writes the demo library into `dir` (files that exist are kept, so a second demo is quick).
pub fn write_demo_library(dir: &Path, tracks: u16) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for i in 0..usize::from(tracks) {
        let format = Format::ALL[i % Format::ALL.len()];
        let title = format!(
            "{}{}",
            TITLES[i % TITLES.len()],
            if i >= TITLES.len() {
                format!(" {}", i / TITLES.len() + 1)
            } else {
                String::new()
            }
        );
        let artist = ARTISTS[i % ARTISTS.len()];
        let path = dir.join(format!("{artist} - {title}.{}", format.extension()));
        if path.exists() {
            continue;
        }
        let tune = Tune::new(i as u64 + 1, 20.0 + (i % 4) as f64 * 5.0);
        let tags = FileTags {
            title: title.clone(),
            artist: artist.into(),
            album: "Chorus Demo".into(),
        };
        write_tune(&path, format, &tune, &tags)
            .with_context(|| format!("cannot write demo track {}", path.display()))?;
    }
    Ok(())
}

/// `chorus demo`.
pub fn run(data_dir: &Path, tracks: u16, json_logs: bool) -> Result<ExitCode> {
    let demo_lib = data_dir.join("demo-library");
    tracing::info!(event = "demo", library = %demo_lib.display(), "generating a demo library of {tracks} tracks in {}", demo_lib.display());
    write_demo_library(&demo_lib, tracks)?;
    let summary = ingest::ingest(data_dir, &demo_lib, None, json_logs)?;
    if summary.interrupted {
        return Ok(ExitCode::from(130));
    }
    let (lib, index) = library::load(data_dir)?;
    let tracks = index.tracks();
    println!();
    library::print_table(&tracks);
    let first = export::find(
        &tracks,
        &tracks
            .first()
            .context("the demo library is empty")?
            .track_hash
            .to_hex(),
    )?;
    let out = data_dir.join("demo-hls");
    let playlist = chorus_media::export::export_hls(&lib.store, &first.manifest_id, &out)?;
    println!();
    println!(
        "Exported \"{}\" as HLS: {}",
        first.display_name(),
        playlist.display()
    );
    println!(
        "Play it with any HLS player, for example: ffplay -nodisp -autoexit {}",
        playlist.display()
    );
    Ok(ExitCode::SUCCESS)
}
