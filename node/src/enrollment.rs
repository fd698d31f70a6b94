//! The node's beacon seed (PROTOCOL.md 12.3): 32 secret bytes in `DATA/beacon.seed` (atomic
//! write, mode 0600). Its hash chain's commit enrolls the node; each proposal reveals the next
//! value, so a restarted node reproduces its reveals from the file. A node that lost the file
//! (or finds it damaged) makes a new seed and re-enrolls, which costs it `enroll_delay` slots
//! of not proposing, and says so in its log.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chorus_consensus::Hash32;
use chorus_consensus::beacon::{CHAIN_LEN, HashChain};

/// The seed file in the data directory.
pub const SEED_FILE: &str = "beacon.seed";

/// Where the seed came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeedOrigin {
    /// Read from the data directory.
    Loaded,
    /// There was none: made now.
    Created,
    /// The file was damaged: moved to this path, and a new seed made.
    Replaced(PathBuf),
}

/// The seed of `data_dir`, made (and stored) when there is none; a damaged file is moved
/// aside (never overwritten) and replaced.
pub fn load_or_create_seed(data_dir: &Path) -> Result<(Hash32, SeedOrigin)> {
    let path = data_dir.join(SEED_FILE);
    let origin = match std::fs::read(&path) {
        Ok(bytes) => match <[u8; 32]>::try_from(bytes.as_slice()) {
            Ok(seed) => return Ok((Hash32(seed), SeedOrigin::Loaded)),
            Err(_) => {
                let aside = path.with_extension(format!("damaged-{}", std::process::id()));
                std::fs::rename(&path, &aside).with_context(|| {
                    format!(
                        "the beacon seed {} is damaged ({} bytes, not 32) and cannot be moved aside",
                        path.display(),
                        bytes.len()
                    )
                })?;
                SeedOrigin::Replaced(aside)
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => SeedOrigin::Created,
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot read the beacon seed {}", path.display()));
        }
    };
    let seed: [u8; 32] = rand::random();
    crate::state::write_private(&path, &seed)
        .with_context(|| format!("cannot store the beacon seed {}", path.display()))?;
    Ok((Hash32(seed), origin))
}

/// The hash chain of `seed` at the default length (2^20 values: about 84 days of 7-second
/// slots, or years of real tracks; a node re-enrolls when it runs out). Costs 2^20 hashes:
/// call it off the async threads.
pub fn hash_chain(seed: &Hash32) -> HashChain {
    HashChain::new(seed, CHAIN_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_private_reloaded_and_a_damaged_file_is_kept_aside() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let (seed, origin) = load_or_create_seed(dir.path()).expect("created");
        assert_eq!(origin, SeedOrigin::Created);
        let mode = std::fs::metadata(dir.path().join(SEED_FILE))
            .expect("stored")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (again, origin) = load_or_create_seed(dir.path()).expect("loaded");
        assert_eq!((again, origin), (seed, SeedOrigin::Loaded));
        std::fs::write(dir.path().join(SEED_FILE), b"short").expect("damage it");
        let (fresh, origin) = load_or_create_seed(dir.path()).expect("replaced");
        assert_ne!(fresh, seed);
        let SeedOrigin::Replaced(aside) = origin else {
            panic!("{origin:?}");
        };
        assert_eq!(std::fs::read(aside).expect("kept"), b"short");
        std::fs::remove_file(dir.path().join(SEED_FILE)).expect("lose it");
        let (lost, origin) = load_or_create_seed(dir.path()).expect("made anew");
        assert_eq!(origin, SeedOrigin::Created);
        assert_ne!(lost, fresh);
    }
}
