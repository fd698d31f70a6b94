//! The seed-queue file (PROTOCOL.md 11): the network's name, its start time, the first L tracks
//! from the operator's library and optional rule overrides.
//!
//! ```toml
//! name = "Friday Night Radio"
//! start = "in 30s"             # "now", "in 2m", or an RFC 3339 time
//! [[track]]
//! path = "Artist - Song.flac"  # relative to the library; exactly 5 [[track]] entries
//! [rules]                      # optional overrides of the default rules
//! proposal_pct = 25
//! ```
//!
//! The file is read through toml's spanned document so that every mistake can be reported with
//! its line and field: an operator starting a network is told exactly what to fix, once, rather
//! than a serde path or a byte offset.

mod error;
mod paths;
mod rules;
mod start;
#[cfg(test)]
mod tests;

use std::ops::Range;
use std::path::{Path, PathBuf};

use chorus_consensus::Rules;
use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue};

pub use error::{Problem, SeedError};
pub use start::PAST_TOLERANCE_MS;

use paths::TrackPath;

/// The top-level keys of a seed queue.
const KEYS: [&str; 4] = ["name", "start", "track", "rules"];

/// A seed queue that parsed and passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct SeedQueue {
    /// The network's name (surrounding blanks trimmed).
    pub name: String,
    /// When slot 0 starts, ms since the Unix epoch.
    pub start_ms: u64,
    /// The tracks of slots 0 .. L-1 in order: the library's canonical path joined with each
    /// relative path, the form the library index keys its files by.
    pub tracks: Vec<PathBuf>,
    /// The default rules with the file's overrides, validated.
    pub rules: Rules,
}

impl SeedQueue {
    /// Reads and checks the seed-queue `file`; its tracks are looked up under `library`, and a
    /// relative start counts from `now_ms` (ms since the Unix epoch).
    pub fn load(file: &Path, library: &Path, now_ms: u64) -> Result<SeedQueue, SeedError> {
        let text = std::fs::read_to_string(file).map_err(|source| SeedError::Read {
            file: file.to_path_buf(),
            source,
        })?;
        SeedQueue::parse(&text, file, library, now_ms)
    }

    /// Checks the text of a seed queue; `file` is the name errors give it. Every track must be an
    /// existing file under `library`. The first mistake found is returned.
    pub fn parse(
        text: &str,
        file: &Path,
        library: &Path,
        now_ms: u64,
    ) -> Result<SeedQueue, SeedError> {
        let src = Source { text, file };
        let document = DeTable::parse(text).map_err(|e| src.syntax(&e))?;
        let library = library
            .canonicalize()
            .map_err(|source| SeedError::Library {
                library: library.to_path_buf(),
                source,
            })?;
        let fields = src.fields(document.get_ref(), now_ms)?;

        let rules = fields.rules.unwrap_or_default();
        let lookahead = rules.lookahead;
        let missing = |field: &str, hint: String| src.error(0..0, field, Problem::Missing { hint });
        let name = fields.name.ok_or_else(|| {
            missing(
                "name",
                "add a line like name = \"Friday Night Radio\"".into(),
            )
        })?;
        let start_ms = fields.start_ms.ok_or_else(|| {
            missing(
                "start",
                "add a line like start = \"in 30s\" (or \"now\", or an RFC 3339 time)".into(),
            )
        })?;
        let (tracks_span, written) = fields.tracks.ok_or_else(|| {
            missing(
                "track",
                format!(
                    "add exactly {lookahead} [[track]] tables, each with a path relative to the library"
                ),
            )
        })?;
        src.check_track_count(&written, tracks_span, lookahead)?;
        Ok(SeedQueue {
            name,
            start_ms,
            tracks: src.resolve(written, &library)?,
            rules,
        })
    }
}

/// The top-level fields of a seed queue as read, each checked on its own (None: absent).
#[derive(Default)]
struct Fields {
    name: Option<String>,
    start_ms: Option<u64>,
    /// The span of the `[[track]]` array and its tables.
    tracks: Option<(Range<usize>, Vec<WrittenTrack>)>,
    rules: Option<Rules>,
}

/// One `[[track]]` as written, before its path is checked.
struct WrittenTrack {
    /// The table (its `[[track]]` header).
    table: Range<usize>,
    /// The `path` value.
    path_span: Range<usize>,
    /// The path as written.
    path: String,
}

/// The text being parsed and its file name: turns spans into located errors.
struct Source<'a> {
    text: &'a str,
    file: &'a Path,
}

impl Source<'_> {
    /// The 1-based line of a byte offset.
    fn line(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    fn error(&self, span: Range<usize>, field: impl Into<String>, problem: Problem) -> SeedError {
        SeedError::Invalid {
            file: self.file.to_path_buf(),
            line: self.line(span.start),
            field: Some(field.into()),
            problem,
        }
    }

    /// A TOML syntax error, with the key of its line as the field when the line has one.
    fn syntax(&self, e: &toml::de::Error) -> SeedError {
        let offset = e.span().map_or(0, |span| span.start);
        let line = self.line(offset);
        let field = self
            .text
            .lines()
            .nth(line - 1)
            .and_then(|text| text.split_once('='))
            .map(|(key, _)| key.trim())
            .filter(|key| {
                !key.is_empty()
                    && key
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            })
            .map(str::to_owned);
        SeedError::Invalid {
            file: self.file.to_path_buf(),
            line,
            field,
            problem: Problem::Syntax(e.message().to_owned()),
        }
    }

    /// Reads the top-level keys in file order; the first mistake is returned.
    fn fields(&self, document: &DeTable<'_>, now_ms: u64) -> Result<Fields, SeedError> {
        let mut fields = Fields::default();
        for (key, value) in in_file_order(document) {
            match key.get_ref().as_ref() {
                "name" => fields.name = Some(self.name(value)?),
                "start" => {
                    let start = start::parse(value.get_ref(), now_ms)
                        .map_err(|p| self.error(value.span(), "start", p))?;
                    fields.start_ms = Some(start);
                }
                "track" => fields.tracks = Some((value.span(), self.tracks(value)?)),
                "rules" => fields.rules = Some(rules::parse(self, value)?),
                other => return Err(self.error(key.span(), other, unknown_key(other, &KEYS))),
            }
        }
        Ok(fields)
    }

    /// Checks that exactly `lookahead` tracks are written (`span`: the `[[track]]` array).
    fn check_track_count(
        &self,
        written: &[WrittenTrack],
        span: Range<usize>,
        lookahead: u64,
    ) -> Result<(), SeedError> {
        let expected = usize::try_from(lookahead).unwrap_or(usize::MAX);
        if written.len() == expected {
            return Ok(());
        }
        // Point at the first track too many, or at the last one there is.
        let span = written
            .get(expected)
            .or(written.last())
            .map_or(span, |t| t.table.clone());
        Err(self.error(
            span,
            "track",
            Problem::TrackCount {
                expected,
                found: written.len(),
            },
        ))
    }

    /// Each written track as a file under `library` (canonical), refusing one written twice.
    fn resolve(
        &self,
        written: Vec<WrittenTrack>,
        library: &Path,
    ) -> Result<Vec<PathBuf>, SeedError> {
        let mut resolved: Vec<(TrackPath, Range<usize>)> = Vec::with_capacity(written.len());
        for track in written {
            let at = |p| self.error(track.path_span.clone(), "track.path", p);
            let path = paths::resolve(&track.path, library).map_err(at)?;
            if let Some(index) = resolved
                .iter()
                .position(|(p, _)| p.relative == path.relative)
            {
                return Err(at(Problem::DuplicatePath {
                    path: PathBuf::from(&track.path),
                    first_track: index + 1,
                    first_line: self.line(resolved[index].1.start),
                }));
            }
            resolved.push((path, track.path_span));
        }
        Ok(resolved.into_iter().map(|(p, _)| p.absolute).collect())
    }

    fn name(&self, value: &Spanned<DeValue<'_>>) -> Result<String, SeedError> {
        match value.get_ref() {
            DeValue::String(name) if name.trim().is_empty() => {
                Err(self.error(value.span(), "name", Problem::EmptyName))
            }
            DeValue::String(name) => Ok(name.trim().to_owned()),
            other => Err(self.error(
                value.span(),
                "name",
                Problem::WrongType {
                    expected: "a string",
                    found: other.type_str(),
                },
            )),
        }
    }

    /// The `[[track]]` tables and their paths, in order.
    fn tracks(&self, value: &Spanned<DeValue<'_>>) -> Result<Vec<WrittenTrack>, SeedError> {
        let not_tables = |span: Range<usize>, found| {
            self.error(
                span,
                "track",
                Problem::WrongType {
                    expected: "[[track]] tables, each with a path",
                    found,
                },
            )
        };
        let DeValue::Array(items) = value.get_ref() else {
            return Err(not_tables(value.span(), value.get_ref().type_str()));
        };
        let mut tracks = Vec::with_capacity(items.len());
        for item in items.iter() {
            let DeValue::Table(entries) = item.get_ref() else {
                return Err(not_tables(item.span(), item.get_ref().type_str()));
            };
            let mut path = None;
            for (key, value) in in_file_order(entries) {
                match key.get_ref().as_ref() {
                    "path" => path = Some(value),
                    other => {
                        return Err(self.error(
                            key.span(),
                            format!("track.{other}"),
                            unknown_key(other, &["path"]),
                        ));
                    }
                }
            }
            let Some(path) = path else {
                return Err(self.error(
                    item.span(),
                    "track.path",
                    Problem::Missing {
                        hint:
                            "add a line like path = \"Artist - Song.flac\", relative to the library"
                                .into(),
                    },
                ));
            };
            let DeValue::String(written) = path.get_ref() else {
                return Err(self.error(
                    path.span(),
                    "track.path",
                    Problem::WrongType {
                        expected: "a string",
                        found: path.get_ref().type_str(),
                    },
                ));
            };
            tracks.push(WrittenTrack {
                table: item.span(),
                path_span: path.span(),
                path: written.to_string(),
            });
        }
        Ok(tracks)
    }
}

/// A table's entries in the order they were written, so that the first mistake reported is the
/// first in the file.
fn in_file_order<'t, 'i>(
    table: &'t DeTable<'i>,
) -> Vec<(&'t Spanned<DeString<'i>>, &'t Spanned<DeValue<'i>>)> {
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    entries
}

/// The problem of a key not in `known`, with the closest known key as a suggestion.
fn unknown_key(name: &str, known: &[&str]) -> Problem {
    // Up to a third of the letters wrong, and at least one: "proposal_pc", "tracks", "rule".
    let suggestion = known
        .iter()
        .map(|k| (edit_distance(name, k), *k))
        .filter(|(d, _)| *d <= (name.chars().count() / 3).max(1))
        .min()
        .map(|(_, k)| k.to_owned());
    Problem::UnknownKey {
        suggestion,
        known: known.iter().map(|k| (*k).to_owned()).collect(),
    }
}

/// Levenshtein distance between two short strings.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}
