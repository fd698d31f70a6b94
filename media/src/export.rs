//! Writing a track as plain HLS files that any web server can serve and any HLS player can play.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::Hash32;
use crate::fsutil;
use crate::manifest::{Manifest, ManifestError};
use crate::store::{BlockStore, StoreError};

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A block is missing or damaged.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The manifest cannot be parsed.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The output folder cannot be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// Writes `DIR/index.m3u8` and one `DIR/<segment id>.aac` per segment (the extension gives web
/// servers the right content type). Returns the playlist's path.
pub fn export_hls(
    store: &BlockStore,
    manifest_id: &Hash32,
    dir: &Path,
) -> Result<PathBuf, ExportError> {
    let manifest = Manifest::parse_with_max_segments(&store.get(manifest_id)?, usize::MAX)?;
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ExportError::Write { path, source }
    };
    fs::create_dir_all(dir).map_err(write_err(dir))?;
    for seg in &manifest.segments {
        let bytes = store.get(&seg.id)?;
        let path = dir.join(format!("{}.aac", seg.id));
        fsutil::atomic_write(&path, &bytes).map_err(write_err(&path))?;
    }
    let playlist = dir.join("index.m3u8");
    let text = manifest.to_playlist_with_uris(|id| format!("{id}.aac"));
    fsutil::atomic_write(&playlist, text.as_bytes()).map_err(write_err(&playlist))?;
    Ok(playlist)
}
