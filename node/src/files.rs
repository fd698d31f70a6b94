//! Small files the node and the command line share (the blacklist, the DJ's queue): read when
//! present, written atomically (temp file, fsync, rename) so a kill -9 leaves the old or the
//! new version, edited under a lock when two processes may write them; errors name the file.

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

/// The JSON file `path` parsed, or `None` when it does not exist; a file that does not parse
/// gets the error `invalid` says (it names the file).
pub fn read_json<T: serde::de::DeserializeOwned>(
    path: &Path,
    invalid: impl FnOnce() -> String,
) -> Result<Option<T>> {
    let Some(bytes) = read_if_exists(path)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .with_context(invalid)
}

/// Writes `value` to `path` as JSON, atomically.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes =
        serde_json::to_vec(value).with_context(|| format!("cannot encode {}", path.display()))?;
    write_atomic(path, &bytes)
}

/// When `path` last changed (`None`: absent), to notice edits while running.
pub fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Writes `bytes` to `path` atomically, creating its folder first.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    chorus_media::fsutil::atomic_write(path, bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Runs `edit` (a read-modify-write of `path`) holding an exclusive lock on `PATH.lock`, so
/// that two writers (the command line and the node's HTTP API) never lose each other's change.
/// The OS releases the lock when the process dies, so a kill -9 never leaves it held.
pub fn locked<T>(path: &Path, edit: impl FnOnce() -> Result<T>) -> Result<T> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let lock_path = std::path::PathBuf::from(name);
    if let Some(dir) = lock_path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    file.lock()
        .with_context(|| format!("cannot lock {}", lock_path.display()))?;
    let result = edit();
    drop(file);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locked_edits_from_two_threads_lose_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("count");
        write_atomic(&path, b"0").expect("write");
        let bump = |path: std::path::PathBuf| {
            std::thread::spawn(move || {
                for _ in 0..50 {
                    locked(&path, || {
                        let n: u32 = String::from_utf8(read_if_exists(&path)?.unwrap_or_default())?
                            .parse()?;
                        std::thread::yield_now();
                        write_atomic(&path, (n + 1).to_string().as_bytes())
                    })
                    .expect("edit");
                }
            })
        };
        let (a, b) = (bump(path.clone()), bump(path.clone()));
        a.join().expect("thread");
        b.join().expect("thread");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "100");
    }

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
