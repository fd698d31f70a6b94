//! The local blacklist (PROTOCOL.md 5): tracks this node never proposes nor plays, kept in
//! `blacklist.toml` in the config directory. Rules are a track hash, or a case-insensitive
//! substring of the title or the artist; substring rules also catch tracks of other nodes'
//! libraries as soon as their TrackRef is known (a proposal's winner).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use chorus_consensus::{Hash32, TrackRef};
use serde::{Deserialize, Serialize};

/// The file's name in the config directory.
pub const FILE: &str = "blacklist.toml";

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Rule {
    /// A track by its hash (hex).
    Hash(String),
    /// Titles containing this text (any case).
    Title(String),
    /// Artists containing this text (any case).
    Artist(String),
}

impl Rule {
    /// Whether the rule catches `track`.
    pub fn matches(&self, track: &TrackRef) -> bool {
        let contains = |hay: &str, needle: &str| {
            !needle.is_empty() && hay.to_lowercase().contains(&needle.to_lowercase())
        };
        match self {
            Rule::Hash(h) => track.track_hash.to_hex() == h.to_lowercase(),
            Rule::Title(t) => contains(&track.title, t),
            Rule::Artist(a) => contains(&track.artist, a),
        }
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rule::Hash(h) => write!(f, "track {h}"),
            Rule::Title(t) => write!(f, "title contains {t:?}"),
            Rule::Artist(a) => write!(f, "artist contains {a:?}"),
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct FileForm {
    #[serde(default)]
    rule: Vec<Rule>,
}

/// The blacklist as loaded from its file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Blacklist {
    /// The rules, sorted.
    pub rules: BTreeSet<Rule>,
}

impl Blacklist {
    /// The file of a config directory.
    pub fn path(config_dir: &Path) -> PathBuf {
        config_dir.join(FILE)
    }

    /// Loads the blacklist (empty when the file does not exist).
    pub fn load(config_dir: &Path) -> Result<Blacklist> {
        let path = Self::path(config_dir);
        let form: Option<FileForm> = crate::files::read_toml(&path, || {
            format!("the blacklist {} is not valid", path.display())
        })?;
        Ok(Blacklist {
            rules: form
                .map(|f| f.rule)
                .unwrap_or_default()
                .into_iter()
                .collect(),
        })
    }

    /// Saves the blacklist atomically.
    pub fn save(&self, config_dir: &Path) -> Result<()> {
        let form = FileForm {
            rule: self.rules.iter().cloned().collect(),
        };
        let text = format!(
            "# Tracks this Chorus node never proposes nor plays (`chorus blacklist`).\n{}",
            toml::to_string(&form).context("cannot encode the blacklist")?
        );
        crate::files::write_atomic(&Self::path(config_dir), text.as_bytes())
    }

    /// The hashes of `tracks` that a rule catches.
    pub fn hashes<'a>(&self, tracks: impl IntoIterator<Item = &'a TrackRef>) -> BTreeSet<Hash32> {
        let mut out = BTreeSet::new();
        for rule in &self.rules {
            if let Rule::Hash(h) = rule
                && let Ok(hash) = Hash32::from_hex(h)
            {
                out.insert(hash);
            }
        }
        for track in tracks {
            if self.rules.iter().any(|r| r.matches(track)) {
                out.insert(track.track_hash);
            }
        }
        out
    }

    /// The rule that catches `track`, if any.
    pub fn rule_for(&self, track: &TrackRef) -> Option<&Rule> {
        self.rules.iter().find(|r| r.matches(track))
    }
}

/// The file's modification time, to notice edits while running.
pub fn stamp(config_dir: &Path) -> Option<SystemTime> {
    crate::files::modified(&Blacklist::path(config_dir))
}

/// Checks a hash given on the command line: 64 hex digits.
pub fn parse_hash(text: &str) -> Result<String> {
    match Hash32::from_hex(text.trim()) {
        Ok(h) => Ok(h.to_hex()),
        Err(_) => bail!(
            "{text:?} is not a track hash (64 hex digits, as `chorus library` shows); use --title or --artist for text"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track(title: &str, artist: &str, n: u8) -> TrackRef {
        TrackRef {
            track_hash: Hash32([n; 32]),
            manifest_id: Hash32([0; 32]),
            duration_ms: 60_000,
            segment_count: 10,
            title: title.into(),
            artist: artist.into(),
            album: String::new(),
            loudness_lufs: None,
        }
    }

    #[test]
    fn rules_match_case_insensitively_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut list = Blacklist::default();
        list.rules.insert(Rule::Title("RIVER".into()));
        list.rules.insert(Rule::Artist("choir".into()));
        list.rules.insert(Rule::Hash(Hash32([9; 32]).to_hex()));
        list.save(dir.path()).unwrap();
        let loaded = Blacklist::load(dir.path()).unwrap();
        assert_eq!(loaded, list);
        let tracks = [
            track("Slow River", "Quiet Carrier", 1),
            track("Night Market", "Loopback Choir", 2),
            track("Open Window", "Quiet Carrier", 3),
        ];
        let hashes = loaded.hashes(&tracks);
        assert!(hashes.contains(&Hash32([1; 32])));
        assert!(hashes.contains(&Hash32([2; 32])));
        assert!(!hashes.contains(&Hash32([3; 32])));
        assert!(hashes.contains(&Hash32([9; 32])));
    }

    #[test]
    fn empty_substring_matches_nothing_and_bad_file_names_itself() {
        assert!(!Rule::Title(String::new()).matches(&track("a", "b", 1)));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), "rule = 3").unwrap();
        let e = Blacklist::load(dir.path()).unwrap_err();
        assert!(format!("{e:#}").contains(FILE), "{e:#}");
        assert!(parse_hash("abc").is_err());
    }
}
