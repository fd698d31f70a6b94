//! The local blacklist as the driver uses it: reloaded when its file changes, and turned into
//! the track hashes consensus substitutes (every winner of the chain and every own track it
//! catches).

use std::path::PathBuf;
use std::time::SystemTime;

use chorus_consensus::{Chain, Hash32, TrackRef};
use std::collections::BTreeSet;
use tracing::{info, warn};

use crate::blacklist::{self, Blacklist};

/// See the module's doc.
pub struct Blacklisting {
    config_dir: PathBuf,
    stamp: Option<SystemTime>,
    list: Blacklist,
}

impl Blacklisting {
    /// The blacklist of `config_dir` (not read yet).
    pub fn new(config_dir: PathBuf) -> Blacklisting {
        Blacklisting {
            config_dir,
            stamp: None,
            list: Blacklist::default(),
        }
    }

    /// Reloads the file when it changed (or `force`); true when the list was replaced. A file
    /// that does not parse keeps the previous list and says so.
    pub fn reload(&mut self, force: bool) -> bool {
        let stamp = blacklist::stamp(&self.config_dir);
        if !force && stamp == self.stamp {
            return false;
        }
        self.stamp = stamp;
        match Blacklist::load(&self.config_dir) {
            Ok(list) => {
                if !force || !list.rules.is_empty() {
                    info!(
                        event = "blacklist",
                        rules = list.rules.len(),
                        "blacklist loaded: {} rules",
                        list.rules.len()
                    );
                }
                self.list = list;
                true
            }
            Err(e) => {
                warn!(
                    event = "blacklist_invalid",
                    "{e:#}; keeping the previous blacklist"
                );
                false
            }
        }
    }

    /// The hashes the list catches among the chain's winners and `library`.
    pub fn hashes(&self, chain: &Chain, library: &[TrackRef]) -> BTreeSet<Hash32> {
        self.list.hashes(
            (0..chain.len())
                .filter_map(|s| chain.winner(s))
                .chain(library),
        )
    }

    /// The rule that catches `track`, for the log.
    pub fn rule_for(&self, track: Option<&TrackRef>) -> String {
        track
            .and_then(|w| self.list.rule_for(w))
            .map_or_else(|| "blacklisted".to_owned(), |r| r.to_string())
    }
}
