//! The outcome of a conformance run.

use std::fmt;

/// How many checks passed and failed, with a message per failure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Checks that passed.
    pub passed: usize,
    /// Checks that failed.
    pub failed: usize,
    /// One human-readable line per failure: file, case and what differed.
    pub failures: Vec<String>,
}

impl Report {
    /// A report of one failure.
    pub fn failure(message: String) -> Report {
        Report {
            passed: 0,
            failed: 1,
            failures: vec![message],
        }
    }

    /// Records one check: passed if `problems` is empty, else failed with them joined.
    pub fn check(&mut self, label: String, problems: Vec<String>) {
        if problems.is_empty() {
            self.passed += 1;
        } else {
            self.failed += 1;
            self.failures
                .push(format!("{label}: {}", problems.join("; ")));
        }
    }

    /// Adds another report's counts and failures.
    pub fn merge(&mut self, other: Report) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.failures.extend(other.failures);
    }

    /// Whether something ran and nothing failed.
    pub fn is_success(&self) -> bool {
        self.failed == 0 && self.passed > 0
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for failure in &self.failures {
            writeln!(f, "FAIL {failure}")?;
        }
        write!(f, "{} passed, {} failed", self.passed, self.failed)
    }
}
