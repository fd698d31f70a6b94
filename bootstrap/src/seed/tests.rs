//! Parsing whole seed queues: each mistake is reported at its line and field.

use std::fs;
use std::path::Path;

use chorus_consensus::{Rules, RulesError};
use tempfile::TempDir;

use super::*;

/// 2026-11-23T00:00:00Z.
const NOW: u64 = 1_795_392_000_000;
/// Lines 1 and 2; the tracks start at line 3, two lines each.
const TOP: &str = "name = \"Friday Night Radio\"\nstart = \"in 30s\"\n";
const FIVE: [&str; 5] = ["a.flac", "b.mp3", "sub/c.ogg", "d.wav", "e.m4a"];

/// A library folder holding `files` (any bytes) and a folder `folder`.
fn library(files: &[&str]) -> TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::create_dir(dir.path().join("folder")).expect("mkdir");
    for file in files {
        let path = dir.path().join(file);
        fs::create_dir_all(path.parent().expect("a file has a parent")).expect("mkdir");
        fs::write(&path, b"not really audio").expect("write");
    }
    dir
}

/// `top`, then one `[[track]]` per path (header at line 3 + 2i after a two-line top, path on the
/// line after), then `[rules]` and `rules` if any.
fn seed(top: &str, tracks: &[&str], rules: &str) -> String {
    let mut text = top.to_owned();
    for track in tracks {
        text.push_str(&format!("[[track]]\npath = \"{track}\"\n"));
    }
    if !rules.is_empty() {
        text.push_str("[rules]\n");
        text.push_str(rules);
    }
    text
}

fn parse(text: &str, library: &TempDir) -> Result<SeedQueue, SeedError> {
    SeedQueue::parse(text, Path::new("seed.toml"), library.path(), NOW)
}

/// The error of `text` against a library of the five tracks; checks its line and field, and
/// that its message begins with them.
fn error_at(text: &str, line: usize, field: &str) -> SeedError {
    let lib = library(&FIVE);
    let err = parse(text, &lib).expect_err("a mistake");
    assert_eq!(
        (err.line(), err.field()),
        (Some(line), Some(field)),
        "{err}"
    );
    let head = format!("seed.toml line {line}, field \"{field}\": ");
    assert!(err.to_string().starts_with(&head), "{err}");
    err
}

fn message(err: &SeedError) -> String {
    err.to_string()
}

#[test]
fn a_valid_queue_parses() {
    let lib = library(&FIVE);
    let text = seed(TOP, &FIVE, "proposal_pct = 30\ntarget_lufs = -14\n");
    let queue = parse(&text, &lib).expect("valid");
    assert_eq!(queue.name, "Friday Night Radio");
    assert_eq!(queue.start_ms, NOW + 30_000);
    let root = lib.path().canonicalize().expect("canonical");
    let expected: Vec<_> = FIVE.iter().map(|t| root.join(t)).collect();
    assert_eq!(queue.tracks, expected);
    assert_eq!(
        queue.rules,
        Rules {
            proposal_pct: 30,
            target_lufs: -14.0,
            ..Rules::default()
        }
    );
    // Without [rules], the defaults.
    let plain = parse(&seed(TOP, &FIVE, ""), &lib).expect("valid");
    assert_eq!(plain.rules, Rules::default());
}

#[test]
fn start_may_be_a_toml_datetime_or_rfc_3339_text() {
    let lib = library(&FIVE);
    for top in [
        "name = \"R\"\nstart = 2026-12-01T20:00:00Z\n",
        "name = \"R\"\nstart = \"2026-12-01T21:00:00+01:00\"\n",
    ] {
        let queue = parse(&seed(top, &FIVE, ""), &lib).expect("valid");
        assert_eq!(queue.start_ms, 1_796_155_200_000);
    }
}

#[test]
fn the_example_seed_queue_parses() {
    let text = include_str!("../../examples/seed-queue.toml");
    // Make the library it names.
    let plain: toml::Table = toml::from_str(text).expect("the example is TOML");
    let tracks = plain["track"].as_array().expect("tracks");
    let names: Vec<&str> = tracks
        .iter()
        .map(|t| t["path"].as_str().expect("a path"))
        .collect();
    let lib = library(&names);
    let queue = SeedQueue::parse(text, Path::new("seed-queue.toml"), lib.path(), NOW)
        .expect("the example parses");
    assert_eq!(queue.tracks.len(), 5);
    assert_eq!(queue.start_ms, NOW + 30_000);
}

#[test]
fn syntax_errors_name_the_line() {
    let err = error_at("name = Friday\n", 1, "name");
    assert!(matches!(err.problem(), Some(Problem::Syntax(_))), "{err}");
    let err = error_at(
        &seed(TOP, &FIVE, "proposal_pct = 25\nproposal_pct = 30\n"),
        15,
        "proposal_pct",
    );
    assert!(message(&err).contains("duplicate key"), "{err}");
    // A line without a key has no field.
    let lib = library(&FIVE);
    let err = parse(&seed(TOP, &FIVE, "[oops\n"), &lib).expect_err("bad header");
    assert_eq!((err.line(), err.field()), (Some(14), None), "{err}");
    assert!(
        message(&err).starts_with("seed.toml line 14: this is not valid TOML"),
        "{err}"
    );
}

#[test]
fn missing_entries_are_named() {
    let err = error_at(&seed("start = \"now\"\n", &FIVE, ""), 1, "name");
    assert!(
        message(&err).contains("is missing: add a line like name = "),
        "{err}"
    );
    error_at(&seed("name = \"R\"\n", &FIVE, ""), 1, "start");
    let err = error_at(TOP, 1, "track");
    assert!(message(&err).contains("exactly 5 [[track]]"), "{err}");
    let err = error_at(&format!("{TOP}[[track]]\n"), 3, "track.path");
    assert!(
        matches!(err.problem(), Some(Problem::Missing { .. })),
        "{err}"
    );
}

#[test]
fn unknown_keys_are_errors_with_a_suggestion() {
    let err = error_at(
        &seed(TOP, &FIVE, "proposal_pc = 25\n"),
        14,
        "rules.proposal_pc",
    );
    assert!(
        message(&err).contains("(did you mean \"proposal_pct\"?)"),
        "{err}"
    );
    assert!(message(&err).contains("selection_pct"), "{err}");
    let err = error_at(&format!("{TOP}colour = \"red\"\n"), 3, "colour");
    assert!(
        message(&err).ends_with("is not a known key; the known ones are name, start, track, rules"),
        "{err}"
    );
    let err = error_at(
        &format!("{TOP}[[tracks]]\npath = \"a.flac\"\n"),
        3,
        "tracks",
    );
    assert!(message(&err).contains("did you mean \"track\""), "{err}");
    let err = error_at(&format!("{TOP}[rule]\ngap_ms = 1\n"), 3, "rule");
    assert!(message(&err).contains("did you mean \"rules\""), "{err}");
    let err = error_at(
        &format!("{TOP}[[track]]\npath = \"a.flac\"\ntitle = \"A\"\n"),
        5,
        "track.title",
    );
    assert!(message(&err).contains("the known ones are path"), "{err}");
}

#[test]
fn wrong_types_are_named() {
    let err = error_at(&seed("name = 5\nstart = \"now\"\n", &FIVE, ""), 1, "name");
    assert!(
        message(&err).ends_with("expected a string, found integer"),
        "{err}"
    );
    error_at(&seed("name = \"R\"\nstart = 30\n", &FIVE, ""), 2, "start");
    let err = error_at(
        &seed(TOP, &FIVE, "proposal_pct = \"25\"\n"),
        14,
        "rules.proposal_pct",
    );
    assert!(
        message(&err).ends_with("expected a whole number, found string"),
        "{err}"
    );
    let err = error_at(
        &seed(TOP, &FIVE, "target_lufs = true\n"),
        14,
        "rules.target_lufs",
    );
    assert!(
        message(&err).ends_with("expected a number, found boolean"),
        "{err}"
    );
    let err = error_at(&seed(TOP, &FIVE, "gap_ms = -1\n"), 14, "rules.gap_ms");
    assert!(message(&err).ends_with("-1 is not 0 or more"), "{err}");
    error_at(&format!("{TOP}rules = 5\n"), 3, "rules");
    error_at(&format!("{TOP}[[track]]\npath = 5\n"), 4, "track.path");
    let err = error_at(&format!("{TOP}track = \"a.flac\"\n"), 3, "track");
    assert!(
        message(&err).ends_with("expected [[track]] tables, each with a path, found string"),
        "{err}"
    );
    error_at(&format!("{TOP}[track]\npath = \"a.flac\"\n"), 3, "track");
    let err = error_at(
        &seed("name = \"  \"\nstart = \"now\"\n", &FIVE, ""),
        1,
        "name",
    );
    assert!(matches!(err.problem(), Some(Problem::EmptyName)), "{err}");
}

#[test]
fn start_mistakes_point_at_start() {
    let err = error_at(
        &seed("name = \"R\"\nstart = \"tomorrow\"\n", &FIVE, ""),
        2,
        "start",
    );
    assert_eq!(
        message(&err),
        "seed.toml line 2, field \"start\": cannot read \"tomorrow\": expected \"in 30s\", \"in 2m\", \
         \"now\" or an RFC 3339 time like 2026-12-01T20:00:00Z"
    );
    let err = error_at(
        &seed(
            "name = \"R\"\nstart = \"2026-11-22T20:00:00Z\"\n",
            &FIVE,
            "",
        ),
        2,
        "start",
    );
    assert!(message(&err).contains("is 4 h in the past"), "{err}");
    let err = error_at(
        &seed("name = \"R\"\nstart = 2026-12-01T20:00:00\n", &FIVE, ""),
        2,
        "start",
    );
    assert!(message(&err).contains("has no time zone"), "{err}");
}

#[test]
fn the_track_count_must_be_the_lookahead() {
    let six = [
        "a.flac",
        "b.mp3",
        "sub/c.ogg",
        "d.wav",
        "e.m4a",
        "folder/../f.flac",
    ];
    // The sixth track's header is at line 13; it is reported before its own bad path.
    let err = error_at(&seed(TOP, &six, ""), 13, "track");
    assert!(matches!(
        err.problem(),
        Some(Problem::TrackCount {
            expected: 5,
            found: 6
        })
    ));
    assert!(message(&err).contains("this is track 6"), "{err}");
    // Four: the last one there is, at line 9.
    let err = error_at(&seed(TOP, &FIVE[..4], ""), 9, "track");
    assert!(
        message(&err).contains("holds 4 tracks and needs exactly 5: add 1 more"),
        "{err}"
    );
    error_at(&format!("{TOP}track = []\n"), 3, "track");
}

#[test]
fn track_paths_must_be_files_inside_the_library() {
    let with = |path: &str, line| {
        let mut tracks = FIVE;
        tracks[2] = path;
        error_at(&seed(TOP, &tracks, ""), line, "track.path")
    };
    let err = with("missing.flac", 8);
    assert!(
        message(&err).contains("missing.flac does not exist in the library folder"),
        "{err}"
    );
    let err = with("/etc/passwd", 8);
    assert!(
        message(&err).contains("/etc/passwd is an absolute path"),
        "{err}"
    );
    let err = with("../outside.flac", 8);
    assert!(message(&err).contains("contains \"..\""), "{err}");
    let err = with("folder", 8);
    assert!(
        matches!(err.problem(), Some(Problem::NotAFile { .. })),
        "{err}"
    );
    let err = with("", 8);
    assert!(matches!(err.problem(), Some(Problem::EmptyPath)), "{err}");
    let err = with("./b.mp3", 8);
    assert!(
        message(&err)
            .ends_with("./b.mp3 is already track 2 (line 6); the tracks must be different files"),
        "{err}"
    );
    let lib = library(&[".hidden.flac"]);
    let mut tracks = FIVE;
    tracks[0] = ".hidden.flac";
    let err = parse(&seed(TOP, &tracks, ""), &lib).expect_err("hidden");
    assert!(
        matches!(err.problem(), Some(Problem::HiddenFile { .. })),
        "{err}"
    );
}

#[test]
fn invalid_rules_point_at_the_override() {
    let err = error_at(
        &seed(TOP, &FIVE, "gap_ms = 10\nproposal_pct = 0\n"),
        15,
        "rules.proposal_pct",
    );
    assert!(matches!(
        err.problem(),
        Some(Problem::Rules(RulesError::Percent { .. }))
    ));
    let err = error_at(
        &seed(TOP, &FIVE, "min_track_ms = 1000000\n"),
        14,
        "rules.min_track_ms",
    );
    assert!(
        message(&err).ends_with("min_track_ms (1000000) is above max_track_ms (900000)"),
        "{err}"
    );
    error_at(
        &seed(TOP, &FIVE, "max_track_ms = 1000\n"),
        14,
        "rules.max_track_ms",
    );
    error_at(&seed(TOP, &FIVE, "lookahead = 4\n"), 14, "rules.lookahead");
    error_at(
        &seed(TOP, &FIVE, "status_interval_ms = 0\n"),
        14,
        "rules.status_interval_ms",
    );
    error_at(
        &seed(TOP, &FIVE, "target_lufs = nan\n"),
        14,
        "rules.target_lufs",
    );
    let err = error_at(
        &seed(TOP, &FIVE, "segment_ms = 4000\n"),
        14,
        "rules.segment_ms",
    );
    assert!(matches!(
        err.problem(),
        Some(Problem::SegmentLength {
            value: 4000,
            supported: 6000
        })
    ));
}

#[test]
fn unreadable_file_and_missing_library() {
    let lib = library(&FIVE);
    let err = SeedQueue::load(&lib.path().join("nope.toml"), lib.path(), NOW).expect_err("no file");
    assert!(matches!(err, SeedError::Read { .. }), "{err}");
    assert!(message(&err).contains("nope.toml"), "{err}");
    let gone = lib.path().join("no-library");
    let err = SeedQueue::parse(&seed(TOP, &FIVE, ""), Path::new("s.toml"), &gone, NOW)
        .expect_err("no library");
    assert!(matches!(err, SeedError::Library { .. }), "{err}");
    // load reads the file and parses it.
    let file = lib.path().join("seed.toml");
    fs::write(&file, seed(TOP, &FIVE, "")).expect("write");
    assert!(SeedQueue::load(&file, lib.path(), NOW).is_ok());
}

#[test]
fn parse_genesis_save_load_round_trip() {
    use crate::genesis::tests::{info, keypair};
    use crate::{create_genesis, load_genesis, save_genesis, track_ref};

    let lib = library(&FIVE);
    let queue = parse(&seed(TOP, &FIVE, "gap_ms = 500\n"), &lib).expect("valid");
    let refs = queue
        .tracks
        .iter()
        .map(|path| track_ref(&info(&path.display().to_string(), 120_000)))
        .collect();
    let genesis = create_genesis(
        &keypair(),
        &queue,
        refs,
        NOW,
        crate::genesis::tests::enroll(),
    )
    .expect("genesis");
    assert_eq!(genesis.rules().gap_ms, 500);
    assert_eq!(genesis.genesis().start_ms, NOW + 30_000);
    let data = tempfile::tempdir().expect("temp dir");
    save_genesis(data.path(), &genesis).expect("saved");
    let loaded = load_genesis(data.path(), Some(&genesis.network_id()))
        .expect("verifies")
        .expect("present");
    assert_eq!(loaded.network_id(), genesis.network_id());
    assert_eq!(loaded.genesis().name, "Friday Night Radio");
}

#[test]
fn suggestions_are_close_keys_only() {
    assert_eq!(edit_distance("proposal_pc", "proposal_pct"), 1);
    assert_eq!(edit_distance("", "abc"), 3);
    assert_eq!(edit_distance("kitten", "sitting"), 3);
    let suggestion = |name| match unknown_key(name, &KEYS) {
        Problem::UnknownKey { suggestion, .. } => suggestion,
        other => panic!("{other}"),
    };
    assert_eq!(suggestion("Name").as_deref(), Some("name"));
    assert_eq!(suggestion("colour"), None);
}
