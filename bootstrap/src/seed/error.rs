//! What can be wrong with a seed queue, and where.

use std::fmt;
use std::io;
use std::path::PathBuf;

use chorus_consensus::RulesError;

/// Why a seed queue was refused.
///
/// A mistake inside the file is [`SeedError::Invalid`]; it displays as
/// `seed.toml line 5, field "start": cannot read "tomorrow": ...`, so that the operator can go
/// straight to it.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// The seed-queue file could not be read.
    #[error("cannot read the seed queue {}: {source}", .file.display())]
    Read {
        /// The file as given.
        file: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The library folder does not exist or cannot be opened.
    #[error(
        "cannot open the library folder {}: {source}; pass the folder that holds the seed queue's tracks",
        .library.display()
    )]
    Library {
        /// The folder as given.
        library: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A mistake in the file, at a line and (where there is one) a field.
    #[error("{} line {line}{}: {problem}", .file.display(), FieldLabel(.field.as_deref()))]
    Invalid {
        /// The file as given.
        file: PathBuf,
        /// 1-based line of the mistake.
        line: usize,
        /// The field, as a dotted TOML path (`start`, `track.path`, `rules.proposal_pct`); none
        /// for a syntax error.
        field: Option<String>,
        /// What is wrong.
        problem: Problem,
    },
}

impl SeedError {
    /// The 1-based line of a mistake in the file.
    pub fn line(&self) -> Option<usize> {
        match self {
            SeedError::Invalid { line, .. } => Some(*line),
            _ => None,
        }
    }

    /// The field of a mistake in the file, where it has one.
    pub fn field(&self) -> Option<&str> {
        match self {
            SeedError::Invalid { field, .. } => field.as_deref(),
            _ => None,
        }
    }

    /// What is wrong, for a mistake in the file.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            SeedError::Invalid { problem, .. } => Some(problem),
            _ => None,
        }
    }
}

/// `, field "x"`, or nothing.
struct FieldLabel<'a>(Option<&'a str>);

impl fmt::Display for FieldLabel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(field) => write!(f, ", field \"{field}\""),
            None => Ok(()),
        }
    }
}

/// What is wrong at one place of a seed queue.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    /// The text is not valid TOML.
    #[error("this is not valid TOML: {0}")]
    Syntax(String),
    /// A required entry is absent.
    #[error("is missing: {hint}")]
    Missing {
        /// What to add.
        hint: String,
    },
    /// A key the seed queue does not know: a typo, most often.
    #[error("is not a known key{}; the known ones are {}", DidYouMean(.suggestion.as_deref()), .known.join(", "))]
    UnknownKey {
        /// The known key closest to it, if one is close.
        suggestion: Option<String>,
        /// Every key allowed there.
        known: Vec<String>,
    },
    /// A value of the wrong TOML type.
    #[error("expected {expected}, found {found}")]
    WrongType {
        /// What the field takes.
        expected: &'static str,
        /// The TOML type written.
        found: &'static str,
    },
    /// A number the field cannot take.
    #[error("{value} is not {expected}")]
    Number {
        /// The number as written.
        value: String,
        /// What the field takes.
        expected: &'static str,
    },
    /// A value that has the right type but cannot be read into the field.
    #[error("cannot be read: {0}")]
    Value(String),
    /// The network's name is empty.
    #[error("the network's name must not be empty")]
    EmptyName,
    /// The start time was not understood.
    #[error(
        "cannot read {text:?}: expected \"in 30s\", \"in 2m\", \"now\" or an RFC 3339 time like 2026-12-01T20:00:00Z"
    )]
    StartUnreadable {
        /// The text written.
        text: String,
    },
    /// A date or time that lacks its date, its time of day or its time zone.
    #[error(
        "{text:?} has no {missing}: write a full time like 2026-12-01T20:00:00Z (Z is UTC; an offset like +01:00 works too)"
    )]
    StartIncomplete {
        /// The time written.
        text: String,
        /// The part that is missing.
        missing: &'static str,
    },
    /// The start time lies more than a minute in the past.
    #[error("{text} is {} in the past; choose a later time, or \"in 30s\"", Ago(*.ago_ms))]
    StartInPast {
        /// The time written.
        text: String,
        /// How far in the past, ms.
        ago_ms: u64,
    },
    /// More or fewer tracks than the rules' lookahead.
    #[error("{}", TrackCount { expected: *.expected, found: *.found })]
    TrackCount {
        /// `rules.lookahead`.
        expected: usize,
        /// The tracks in the file.
        found: usize,
    },
    /// A track's path is empty.
    #[error("the path is empty; name a file in the library")]
    EmptyPath,
    /// A track's path is absolute.
    #[error(
        "{} is an absolute path; write it relative to the library folder {}",
        .path.display(),
        .library.display()
    )]
    AbsolutePath {
        /// The path written.
        path: PathBuf,
        /// The library folder.
        library: PathBuf,
    },
    /// A track's path holds `..`, which could lead out of the library.
    #[error(
        "{} contains \"..\", which could lead out of the library; write the path down from {} without it",
        .path.display(),
        .library.display()
    )]
    EscapesLibrary {
        /// The path written.
        path: PathBuf,
        /// The library folder.
        library: PathBuf,
    },
    /// A track is a hidden file, which the library ingest skips.
    #[error(
        "{} is a hidden file (its name starts with \".\") and the library ingest skips those; rename it",
        .path.display()
    )]
    HiddenFile {
        /// The path written.
        path: PathBuf,
    },
    /// No file by that name in the library.
    #[error("{} does not exist in the library folder {}", .path.display(), .library.display())]
    NotFound {
        /// The path written.
        path: PathBuf,
        /// The library folder.
        library: PathBuf,
    },
    /// The path names a folder (or a device), not a file.
    #[error("{} is not a file; name one audio file", .path.display())]
    NotAFile {
        /// The path written.
        path: PathBuf,
    },
    /// The track exists but its metadata cannot be read.
    #[error("{} cannot be read: {source}", .path.display())]
    Unreadable {
        /// The path written.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Two tracks name the same file.
    #[error(
        "{} is already track {first_track} (line {first_line}); the tracks must be different files",
        .path.display()
    )]
    DuplicatePath {
        /// The path written.
        path: PathBuf,
        /// 1-based position of the first track with that path.
        first_track: usize,
        /// Its line.
        first_line: usize,
    },
    /// The rules, with the overrides applied, cannot run a network.
    #[error(transparent)]
    Rules(#[from] RulesError),
    /// A segment length this build's media pipeline does not cut.
    #[error(
        "this build cuts segments of {supported} ms; a network of {value} ms segments could play none of its tracks, so leave segment_ms out"
    )]
    SegmentLength {
        /// The segment length asked for.
        value: u64,
        /// The one the media pipeline cuts.
        supported: u64,
    },
}

/// `; did you mean "x"?`, or nothing.
struct DidYouMean<'a>(Option<&'a str>);

impl fmt::Display for DidYouMean<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(key) => write!(f, " (did you mean \"{key}\"?)"),
            None => Ok(()),
        }
    }
}

/// A duration in the past, as a person would say it.
struct Ago(u64);

impl fmt::Display for Ago {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0 / 1000;
        match secs {
            0..120 => write!(f, "{secs} s"),
            120..7200 => write!(f, "{} min", secs / 60),
            7200..172_800 => write!(f, "{} h", secs / 3600),
            _ => write!(f, "{} days", secs / 86_400),
        }
    }
}

/// The message for a wrong number of tracks, which says what to do about it.
struct TrackCount {
    expected: usize,
    found: usize,
}

impl fmt::Display for TrackCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let TrackCount { expected, found } = *self;
        if found > expected {
            write!(
                f,
                "the seed queue holds {found} tracks and needs exactly {expected}; this is track {}: \
                 remove it and those after it (once the network runs, anyone can propose more)",
                expected + 1
            )
        } else {
            write!(
                f,
                "the seed queue holds {found} tracks and needs exactly {expected}: add {} more [[track]] entries",
                expected - found
            )
        }
    }
}
