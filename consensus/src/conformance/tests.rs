use std::fs;

use super::*;
use crate::hash::Hash32;

/// The project's shared vectors (PROTOCOL.md: `../shared/vectors` from the workspace root).
const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors");

fn copy_vectors() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for name in ["tickets.json", "replay.json", "chain.json"] {
        fs::copy(Path::new(VECTORS).join(name), dir.path().join(name)).expect("copy vector file");
    }
    dir
}

fn edit(path: &Path, change: impl FnOnce(&mut serde_json::Value)) {
    let mut value: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(path).expect("read")).expect("json");
    change(&mut value);
    fs::write(path, serde_json::to_string_pretty(&value).expect("json")).expect("write");
}

#[test]
fn all_shared_vectors_pass() {
    let report = run_dir(Path::new(VECTORS)).expect("vector directory runs");
    assert!(report.is_success(), "{report}");
    // 5 ticket cases, 7 replay cases, chain_hash(L-1) and 12 chain steps.
    assert_eq!(report.passed, 25, "{report}");
}

#[test]
fn a_mutated_ticket_fails() {
    let dir = copy_vectors();
    edit(&dir.path().join("tickets.json"), |v| {
        v["cases"][2]["expect"]["tickets"][1] = "8455297944723561590".into();
    });
    let report = run_dir(dir.path()).expect("runs");
    assert_eq!((report.passed, report.failed), (24, 1), "{report}");
    assert!(
        report.failures[0].contains("tickets.json case 2"),
        "{report}"
    );
    assert!(report.failures[0].contains("expected 8455297944723561590, got 8455297944723561589"));
}

#[test]
fn mutated_replay_and_chain_values_fail() {
    let dir = copy_vectors();
    edit(&dir.path().join("replay.json"), |v| {
        v["cases"][3]["expect"]["index"] = 3.into();
    });
    edit(&dir.path().join("chain.json"), |v| {
        v["steps"][4]["expect_chain_hash"] = Hash32::ZERO.to_hex().into();
    });
    let report = run_dir(dir.path()).expect("runs");
    assert_eq!((report.passed, report.failed), (23, 2), "{report}");
    assert!(
        report
            .failures
            .iter()
            .any(|f| f.contains("replay.json case 3") && f.contains("index"))
    );
    assert!(
        report
            .failures
            .iter()
            .any(|f| f.contains("chain.json slot 9")),
        "{report}"
    );
}

#[test]
fn unknown_and_malformed_files_are_reported() {
    let dir = copy_vectors();
    fs::write(
        dir.path().join("beacon.json"),
        r#"{"about": "v2", "rounds": []}"#,
    )
    .expect("write");
    fs::write(dir.path().join("broken.json"), "{").expect("write");
    fs::write(dir.path().join("README.md"), "not a vector").expect("write");
    let report = run_dir(dir.path()).expect("runs");
    assert_eq!((report.passed, report.failed), (25, 2), "{report}");
    assert!(
        report
            .failures
            .iter()
            .any(|f| f.starts_with("beacon.json: not a known vector file"))
    );
    assert!(
        report
            .failures
            .iter()
            .any(|f| f.starts_with("broken.json: not valid JSON"))
    );
    let bad_case = run_json("t.json", r#"{"cases": [{"peer_ids": ["zz"]}]}"#);
    assert_eq!(bad_case.failed, 1);
    assert!(
        bad_case.failures[0].contains("malformed tickets vector file"),
        "{bad_case}"
    );
}

#[test]
fn empty_or_missing_directories_are_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    assert!(matches!(
        run_dir(dir.path()),
        Err(ConformanceError::NoVectors { .. })
    ));
    let missing = dir.path().join("missing");
    assert!(matches!(
        run_dir(&missing),
        Err(ConformanceError::ReadDir { .. })
    ));
}

/// Protocol 1.1's vectors, kept in this repository (written by `scripts/vectors/beacon.py`).
const BEACON_VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../vectors/beacon.json");

#[test]
fn the_beacon_vectors_pass_and_a_changed_byte_fails() {
    let report = run_file(Path::new(BEACON_VECTORS));
    assert!(report.is_success(), "{report}");
    // 3 chains, 2 beacons, 3 ticket cases.
    assert_eq!(report.passed, 8, "{report}");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("beacon.json");
    fs::copy(BEACON_VECTORS, &path).expect("copy");
    edit(&path, |v| {
        let b = v["beacons"][0]["steps"][3]["reveal"]
            .as_str()
            .map(str::to_owned);
        // One reveal changed: that beacon and every one after it differ.
        let changed = Hash32::digest(b.unwrap_or_default().as_bytes()).to_hex();
        v["beacons"][0]["steps"][3]["reveal"] = changed.into();
        v["chains"][1]["reveals"][0]["valid"] = false.into();
    });
    let report = run_file(&path);
    assert_eq!((report.passed, report.failed), (6, 2), "{report}");
    assert!(
        report.failures.iter().any(|f| f.contains("beacon(")),
        "{report}"
    );
}
