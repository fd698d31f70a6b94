//! Spawned tasks never end silently.
//!
//! - [`spawn`]: a short-lived helper task (one request, one answer). A panic inside it is caught,
//!   logged with its cause as `task_failed`, and counted; the node goes on, and whatever waited
//!   for the answer sees its channel close.
//! - [`Critical`]: the node's long-lived tasks (the swarm's event loop, the segment exchange, the
//!   HTTP API). Any of them ending while the node runs, by a panic or by returning, is an error
//!   that brings the node down with the task's name and cause ([`Critical::ended`]), so that the
//!   operator (or systemd) sees it and restarts; a node without a fetcher would otherwise play
//!   silence for ever while reporting itself healthy.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::FutureExt;
use tokio::task::{JoinHandle, JoinSet};

static FAILED: AtomicU64 = AtomicU64::new(0);

/// Helper tasks that panicked since start.
pub fn failed_tasks() -> u64 {
    FAILED.load(Ordering::Relaxed)
}

/// The text of a panic's payload.
pub fn panic_text(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// Spawns a helper task named `name`; a panic in it is logged and counted, never lost.
pub fn spawn<F>(name: &'static str, task: F) -> JoinHandle<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(payload) = AssertUnwindSafe(task).catch_unwind().await {
            FAILED.fetch_add(1, Ordering::Relaxed);
            tracing::error!(event = "task_failed", task = name, cause = %panic_text(&*payload),
                "the {name} task panicked: {}; the node goes on without its answer", panic_text(&*payload));
        }
    })
}

/// Runs blocking work (disk writes) on tokio's blocking threads, with a panic caught and logged
/// like [`spawn`]'s.
pub fn spawn_blocking<F>(name: &'static str, work: F) -> JoinHandle<()>
where
    F: FnOnce() + Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        if let Err(payload) = std::panic::catch_unwind(AssertUnwindSafe(work)) {
            FAILED.fetch_add(1, Ordering::Relaxed);
            tracing::error!(event = "task_failed", task = name, cause = %panic_text(&*payload),
                "the {name} task panicked: {}", panic_text(&*payload));
        }
    })
}

/// The node's long-lived tasks; see the module's doc.
#[derive(Default)]
pub struct Critical {
    tasks: JoinSet<(&'static str, Result<(), String>)>,
}

impl Critical {
    /// No tasks yet.
    pub fn new() -> Critical {
        Critical::default()
    }

    /// Spawns a task that must run as long as the node.
    pub fn spawn<F>(&mut self, name: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(async move {
            let outcome = match AssertUnwindSafe(task).catch_unwind().await {
                Ok(()) => Err("it returned".to_owned()),
                Err(payload) => Err(format!("it panicked: {}", panic_text(&*payload))),
            };
            (name, outcome)
        });
    }

    /// Waits until one of the tasks ends and returns why, as an error for the node to stop
    /// with (the caller logs it, unless the node is stopping anyway: then the HTTP API ends
    /// first by design). Pending for ever when there are no tasks.
    pub async fn ended(&mut self) -> anyhow::Error {
        match self.tasks.join_next().await {
            Some(Ok((name, outcome))) => {
                let why = outcome.err().unwrap_or_else(|| "it returned".to_owned());
                anyhow::anyhow!("the {name} task ended while the node was running: {why}")
            }
            Some(Err(e)) => anyhow::anyhow!("a node task could not be joined: {e}"),
            None => std::future::pending().await,
        }
    }

    /// At shutdown, once their tokens are cancelled: waits up to `grace` for every task to end
    /// (flushing what it holds), then aborts the ones still running and names them.
    pub async fn shut_down(mut self, grace: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            match tokio::time::timeout_at(deadline, self.tasks.join_next()).await {
                Ok(Some(Ok((name, Err(why))))) if why.contains("panicked") => {
                    tracing::error!(
                        event = "task_failed",
                        task = name,
                        "the {name} task ended at shutdown: {why}"
                    );
                }
                Ok(Some(_)) => {}
                Ok(None) => return,
                Err(_) => {
                    tracing::warn!(
                        tasks = self.tasks.len(),
                        "{} node tasks did not stop within {} s; aborted",
                        self.tasks.len(),
                        grace.as_secs()
                    );
                    self.tasks.abort_all();
                    while self.tasks.join_next().await.is_some() {}
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_helper_panic_is_caught_and_counted() {
        let before = failed_tasks();
        let handle = spawn("test helper", async { panic!("boom") });
        handle.await.expect("the wrapper itself does not panic");
        assert_eq!(failed_tasks(), before + 1);
    }

    #[tokio::test]
    async fn a_critical_task_that_panics_or_returns_is_reported_by_name() {
        let mut c = Critical::new();
        c.spawn("exchange", async {
            tokio::task::yield_now().await;
            panic!("manifest says -1");
        });
        let e = c.ended().await.to_string();
        assert!(
            e.contains("exchange") && e.contains("manifest says -1"),
            "{e}"
        );

        let mut c = Critical::new();
        c.spawn("swarm", async {});
        let e = c.ended().await.to_string();
        assert!(e.contains("swarm") && e.contains("returned"), "{e}");
    }
}
