//! The binary's most basic promises. (Having an integration test here also makes
//! `cargo test --workspace` build the `chorus` binary that the end-to-end tests in `tests/` run.)

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_chorus");

#[test]
fn version_and_empty_library() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("chorus {}", env!("CARGO_PKG_VERSION"))
    );

    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir.path())
        .arg("library")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("The library is empty")
    );
    // The data directory holds the store and nothing was written elsewhere.
    assert!(dir.path().join("store/blocks").is_dir());
}
