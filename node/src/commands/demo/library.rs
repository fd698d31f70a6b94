//! The demo's music: short synthesized tunes in every input format, with tags.

use std::path::Path;

use anyhow::{Context, Result};
use chorus_media::synth::{FileTags, Format, Tune, write_tune};

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
/// Libraries with different `offset`s hold different music.
pub fn write_demo_library(dir: &Path, tracks: u16, offset: usize) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for i in offset..offset + usize::from(tracks) {
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
        let tune = Tune::new(i as u64 + 1, 15.0 + (i % 4) as f64 * 5.0);
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
