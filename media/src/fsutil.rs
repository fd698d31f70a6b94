//! Crash-safe file writes: temp file, fsync, rename, fsync of the directory.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` atomically: readers (and a process killed at any moment) see either
/// the old file or the complete new one, never a partial write. The temp file lives in `tmp_dir`,
/// which must be on the same file system as `path`; it is removed on any error.
pub fn atomic_write_in(tmp_dir: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_renamed(tmp_dir, path, bytes, true)
}

/// As [`atomic_write_in`] without the fsyncs: a process killed at any moment still leaves the
/// old file or the complete new one, but a power cut may leave a torn file. Only for content
/// that is verified when read and can be fetched again (blocks fetched from peers).
pub fn renamed_write_in(tmp_dir: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_renamed(tmp_dir, path, bytes, false)
}

fn write_renamed(tmp_dir: &Path, path: &Path, bytes: &[u8], durable: bool) -> io::Result<()> {
    write_renamed_with(tmp_dir, path, bytes, durable, |from, to| {
        fs::rename(from, to)
    })
}

/// As [`atomic_write_in`] (`durable`) or [`renamed_write_in`], with `rename` moving the complete
/// temp file into place: the block store counts its bytes under the same lock as the rename.
pub(crate) fn write_renamed_with(
    tmp_dir: &Path,
    path: &Path,
    bytes: &[u8],
    durable: bool,
    rename: impl FnOnce(&Path, &Path) -> io::Result<()>,
) -> io::Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = tmp_dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        if durable {
            file.sync_all()?;
        }
        drop(file);
        rename(&tmp, path)?;
        if durable && let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes `bytes` to `path` atomically, with the temp file beside it.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    atomic_write_in(dir, path, bytes)
}

/// Makes a rename inside `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Removes temp files left in `dir` by a process that was killed in the middle of a write.
/// Only files named like [`atomic_write_in`]'s temp files and older than `min_age` are touched, so
/// that a concurrent writer's file in progress survives.
pub fn remove_stale_temp_files(dir: &Path, min_age: std::time::Duration) -> io::Result<usize> {
    let mut removed = 0;
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with('.') && name.ends_with(".tmp")) {
            continue;
        }
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= min_age);
        if old && fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.json");
        atomic_write(&path, b"one").unwrap();
        atomic_write(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn failed_write_leaves_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        atomic_write(&path, b"old").unwrap();
        // A temp dir that does not exist makes the write fail before the rename.
        let err = atomic_write_in(&dir.path().join("missing"), &path, b"new");
        assert!(err.is_err());
        assert_eq!(fs::read(&path).unwrap(), b"old");
    }

    #[test]
    fn stale_temp_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(".x.1.2.tmp"), b"partial").unwrap();
        fs::write(dir.path().join("keep"), b"data").unwrap();
        assert_eq!(
            remove_stale_temp_files(dir.path(), std::time::Duration::ZERO).unwrap(),
            1
        );
        assert!(dir.path().join("keep").exists());
    }
}
