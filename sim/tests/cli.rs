//! The `chorus-sim` command line.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_chorus-sim");

#[test]
fn scenario_file_json_report() {
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/lan-10.toml");
    let out = Command::new(BIN)
        .args(["--scenario", scenario, "--slots", "4", "--report", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("seed 1"));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["nodes"], 10);
    assert_eq!(report["slots"], 4, "flags override the scenario");
    assert_eq!(report["min_agreement"], 1.0);
}

#[test]
fn text_report_starts_with_the_seed_and_bad_flags_are_errors() {
    let out = Command::new(BIN)
        .args(["--nodes", "4", "--slots", "2", "--seed", "77"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("seed 77: 4 nodes"));
    for bad in [
        &["--latency", "fast"][..],
        &["--partition", "3:100:2"],
        &["--loss", "1.5"],
        &["--nodes", "1"],
        &["--adversary", "sybil:2"],
        &["--nodes", "4", "--adversary", "spam:2"],
        &["--churn", "0.9"],
        &["--track-ms", "1000..2000"],
        &["--protocol", "2"],
    ] {
        let out = Command::new(BIN).args(bad).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(!out.stderr.is_empty());
    }
}

#[test]
fn churn_and_adversary_flags_reach_the_json_report() {
    let out = Command::new(BIN)
        .args([
            "--nodes",
            "8",
            "--slots",
            "6",
            "--seed",
            "3",
            "--churn",
            "0.1",
            "--adversary",
            "liar:1",
            "--adversary",
            "spam:1",
            "--track-ms",
            "20000..40000",
            "--protocol",
            "1",
            "--report",
            "json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["adversaries"], 2);
    assert!(report["wins"]["fairness_p"].is_number());
    assert!(report["churn"]["crashes"].is_number());
    assert!(report["traffic"]["spam"]["sent"].as_f64().unwrap() > 0.0);
    assert_eq!(report["protocol"], "1");
    assert_eq!(report["withheld_slots"], 0, "no withholder");
}
