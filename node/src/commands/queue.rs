//! `chorus queue add|remove|list|clear`: the DJ's queue (`crate::queue`).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use chorus_consensus::{Hash32, TrackRef};

use super::library;
use crate::cli::{QueueAction, QueueAdd};
use crate::queue::{self, ENTRIES_MAX, Queue};

/// Longest text accepted to find a track by.
const TEXT_MAX: usize = 200;

/// Runs a queue action.
pub fn run(data_dir: &Path, config_dir: &Path, action: &QueueAction) -> Result<ExitCode> {
    // The node's HTTP API edits the queue too (the operator's page): one edit at a time.
    crate::files::locked(&Queue::path(config_dir), || {
        edit(data_dir, config_dir, action)
    })
}

fn edit(data_dir: &Path, config_dir: &Path, action: &QueueAction) -> Result<ExitCode> {
    let proposed = queue::load_proposed(data_dir)?;
    let mut q = Queue::load(config_dir)?;
    match action {
        QueueAction::Add(add) => {
            let tracks = library_tracks(data_dir)?;
            let picked = resolve(&tracks, add)?;
            if q.pending(&proposed).count() + picked.len() > ENTRIES_MAX {
                bail!("the queue holds {ENTRIES_MAX} tracks at most");
            }
            q.drop_proposed(&proposed);
            for t in &picked {
                let id = q.push(t.track_hash, &t.title, &t.artist);
                println!(
                    "queued {id}: {}",
                    describe(&t.track_hash, &t.artist, &t.title)
                );
            }
            q.save(config_dir)?;
        }
        QueueAction::Remove { entry } => {
            let wanted = entry.trim();
            let hash = Hash32::from_hex(wanted).ok();
            let id: Option<u64> = wanted.parse().ok();
            let Some(found) = q
                .pending(&proposed)
                .find(|e| Some(e.id) == id || (hash.is_some() && e.hash() == hash))
                .map(|e| e.id)
            else {
                bail!(
                    "the queue has no entry {wanted:?} (an id or a track hash); `chorus queue list` shows them"
                );
            };
            q.drop_proposed(&proposed);
            q.entries.retain(|e| e.id != found);
            q.save(config_dir)?;
            println!("removed entry {found}");
        }
        QueueAction::List => {
            let pending: Vec<_> = q.pending(&proposed).collect();
            if pending.is_empty() {
                println!(
                    "the queue is empty ({}): the node proposes its automatic pick",
                    Queue::path(config_dir).display()
                );
            }
            for e in pending {
                println!(
                    "{:>4}  {}",
                    e.id,
                    describe_text(&e.track_hash, &e.artist, &e.title)
                );
            }
        }
        QueueAction::Clear => {
            q.entries.clear();
            q.save(config_dir)?;
            println!("the queue is empty");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The tracks of the node's library.
fn library_tracks(data_dir: &Path) -> Result<Vec<TrackRef>> {
    let (_, index) = library::load(data_dir)
        .context("the queue takes tracks of this node's library: run `chorus ingest` first")?;
    let tracks: Vec<TrackRef> = index
        .tracks()
        .into_iter()
        .map(chorus_bootstrap::track_ref)
        .collect();
    if tracks.is_empty() {
        bail!("this node's library is empty: run `chorus ingest --library DIR` first");
    }
    Ok(tracks)
}

/// The tracks `add` names, in order; an error names what matched nothing (or too much).
fn resolve(tracks: &[TrackRef], add: &QueueAdd) -> Result<Vec<TrackRef>> {
    if let Some(h) = &add.track_hash {
        return Ok(vec![by_hash(tracks, h)?]);
    }
    if let Some(t) = &add.title {
        return Ok(vec![by_text(tracks, t, "title", |r| &r.title)?]);
    }
    if let Some(a) = &add.artist {
        return Ok(vec![by_text(tracks, a, "artist", |r| &r.artist)?]);
    }
    let Some(file) = &add.file else {
        bail!("give a track hash, --title TEXT, --artist TEXT or --file PATH");
    };
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut picked = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let track = if Hash32::from_hex(line).is_ok() {
            by_hash(tracks, line)
        } else {
            by_text(tracks, line, "title", |r| &r.title)
        };
        picked.push(track.with_context(|| format!("{} line {}", file.display(), n + 1))?);
        if picked.len() > ENTRIES_MAX {
            bail!("{}: more than {ENTRIES_MAX} tracks", file.display());
        }
    }
    if picked.is_empty() {
        bail!("{} names no track", file.display());
    }
    Ok(picked)
}

fn by_hash(tracks: &[TrackRef], text: &str) -> Result<TrackRef> {
    let hash = Hash32::from_hex(text.trim()).map_err(|_| {
        anyhow::anyhow!("{text:?} is not a track hash (64 hex digits, as `chorus library` shows)")
    })?;
    tracks
        .iter()
        .find(|t| t.track_hash == hash)
        .cloned()
        .with_context(|| format!("track {hash} is not in this node's library (`chorus library`)"))
}

fn by_text(
    tracks: &[TrackRef],
    text: &str,
    what: &str,
    field: impl Fn(&TrackRef) -> &String,
) -> Result<TrackRef> {
    let needle = text.trim().to_lowercase();
    if needle.is_empty() {
        bail!("--{what} needs some text");
    }
    if needle.chars().count() > TEXT_MAX {
        bail!("--{what}: {TEXT_MAX} characters at most");
    }
    let found: Vec<&TrackRef> = tracks
        .iter()
        .filter(|t| field(t).to_lowercase().contains(&needle))
        .collect();
    match found.as_slice() {
        [one] => Ok((*one).clone()),
        [] => bail!("no track of this node's library has {what} containing {text:?}"),
        many => {
            let names: Vec<String> = many
                .iter()
                .take(5)
                .map(|t| describe(&t.track_hash, &t.artist, &t.title))
                .collect();
            bail!(
                "{} tracks have {what} containing {text:?}; name one by its hash:\n  {}",
                many.len(),
                names.join("\n  ")
            )
        }
    }
}

fn describe(hash: &Hash32, artist: &str, title: &str) -> String {
    describe_text(&hash.to_hex(), artist, title)
}

fn describe_text(hash: &str, artist: &str, title: &str) -> String {
    let short = hash.get(..16).unwrap_or(hash);
    if artist.is_empty() {
        format!("{short}  {title}")
    } else {
        format!("{short}  {artist} - {title}")
    }
}
