//! Small files the node and the command line share (the blacklist, the DJ's queue): read when
//! present, written atomically (temp file, fsync, rename) so a kill -9 leaves the old or the
//! new version; errors name the file.

use std::path::Path;

use anyhow::{Context, Result};

/// The text of `path`, or `None` when it does not exist.
pub fn read_if_exists(path: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The TOML file `path` parsed, or `None` when it does not exist; a file that does not parse
/// gets the error `invalid` says (it names the file).
pub fn read_toml<T: serde::de::DeserializeOwned>(
    path: &Path,
    invalid: impl FnOnce() -> String,
) -> Result<Option<T>> {
    let Some(bytes) = read_if_exists(path)? else {
        return Ok(None);
    };
    std::str::from_utf8(&bytes)
        .map_err(anyhow::Error::from)
        .and_then(|text| Ok(toml::from_str(text)?))
        .map(Some)
        .with_context(invalid)
}

/// Writes `bytes` to `path` atomically, creating its folder first.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    chorus_media::fsutil::atomic_write(path, bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_is_none_and_written_files_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/file.toml");
        assert_eq!(read_if_exists(&path).expect("absent"), None);
        write_atomic(&path, b"x = 1").expect("write");
        assert_eq!(
            read_if_exists(&path).expect("read"),
            Some(b"x = 1".to_vec())
        );
        let e = read_if_exists(dir.path()).expect_err("a folder");
        assert!(format!("{e:#}").contains(&dir.path().display().to_string()));
    }
}
