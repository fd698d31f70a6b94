//! `chorus library`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use chorus_media::ingest::Library;
use chorus_media::{LibraryIndex, TrackInfo};

/// Loads the library index of the data directory.
pub fn load(data_dir: &Path) -> Result<(Library, LibraryIndex)> {
    let lib = Library::open(data_dir).context("cannot open the block store")?;
    let index = lib.load_index()?;
    Ok((lib, index))
}

fn duration(ms: u64) -> String {
    format!("{}:{:02}", ms / 60_000, ms / 1000 % 60)
}

/// Prints the tracks as an aligned table.
pub fn print_table(tracks: &[&TrackInfo]) {
    let rows: Vec<[String; 6]> = tracks
        .iter()
        .map(|t| {
            [
                t.track_hash.short(),
                duration(t.duration_ms),
                t.loudness_lufs
                    .map(|l| format!("{l:.1}"))
                    .unwrap_or_else(|| "-".into()),
                if t.not_proposable.is_some() {
                    "no".into()
                } else {
                    "yes".into()
                },
                t.display_name(),
                t.album.clone(),
            ]
        })
        .collect();
    let header = [
        "TRACK",
        "LENGTH",
        "LUFS",
        "PROPOSABLE",
        "ARTIST - TITLE",
        "ALBUM",
    ];
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 6]| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            out.push_str(cell);
            if i < 5 {
                out.push_str(&" ".repeat(w - cell.chars().count()));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header);
    for row in &rows {
        line([&row[0], &row[1], &row[2], &row[3], &row[4], &row[5]]);
    }
}

/// `chorus library [--json]`.
pub fn run(data_dir: &Path, json: bool) -> Result<ExitCode> {
    let (_, index) = load(data_dir)?;
    let tracks = index.tracks();
    if json {
        println!("{}", serde_json::to_string_pretty(&tracks)?);
    } else if tracks.is_empty() {
        println!("The library is empty: run `chorus ingest --library DIR` first.");
    } else {
        print_table(&tracks);
        let secs: u64 = tracks.iter().map(|t| t.duration_ms).sum::<u64>() / 1000;
        println!(
            "{} tracks, {}:{:02}:{:02}",
            tracks.len(),
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        );
    }
    Ok(ExitCode::SUCCESS)
}
