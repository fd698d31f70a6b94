//! Where state lives.

use std::path::PathBuf;

use anyhow::{Context, Result};

/// The data directory: `--data-dir`, or the platform's (directories' `ProjectDirs`).
pub fn data_dir(flag: Option<PathBuf>) -> Result<PathBuf> {
    let dir = match flag {
        Some(d) => d,
        None => directories::ProjectDirs::from("org", "Chorus", "chorus")
            .context("cannot find a home directory for Chorus's data: pass --data-dir DIR")?
            .data_dir()
            .to_path_buf(),
    };
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    Ok(dir)
}

/// The config directory: `--config-dir`, or the platform's.
pub fn config_dir(flag: Option<PathBuf>) -> Result<PathBuf> {
    match flag {
        Some(d) => Ok(d),
        None => Ok(directories::ProjectDirs::from("org", "Chorus", "chorus")
            .context(
                "cannot find a home directory for Chorus's configuration: pass --config-dir DIR",
            )?
            .config_dir()
            .to_path_buf()),
    }
}
