//! The driver's audio outputs: the player thread (told the schedule) and the live HLS playlist
//! (`GET /live.m3u8`), kept on a thread of its own because it reads manifests from the store
//! and saves its window to disk as segments start.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chorus_media::live::{LiveLog, LiveView};
use chorus_media::player::{Player, SlotPlan, TimeBase};
use chorus_media::store::BlockStore;
use tokio::sync::{oneshot, watch};

use crate::clock::Clock;

/// How often the live playlist looks for segments that started.
const LIVE_EVERY: Duration = Duration::from_millis(100);

/// What the live playlist's thread is told.
enum Live {
    /// A new schedule.
    Plans(Vec<SlotPlan>),
    /// List what started by now, then answer.
    Sync(oneshot::Sender<()>),
}

/// See the module's doc.
pub struct Audio {
    player: Arc<Player>,
    live: Option<std_mpsc::Sender<Live>>,
    thread: Option<JoinHandle<()>>,
}

impl Audio {
    /// Starts the live playlist's thread beside `player`; the playlist is published on
    /// `playlist`.
    pub fn start(
        player: Arc<Player>,
        data_dir: &Path,
        store: BlockStore,
        clock: Arc<Clock>,
        playlist: watch::Sender<LiveView>,
    ) -> std::io::Result<Audio> {
        let mut log = LiveLog::load(data_dir);
        playlist.send_replace(log.view());
        let (tx, rx) = std_mpsc::channel::<Live>();
        let thread = std::thread::Builder::new()
            .name("live playlist".into())
            .spawn(move || {
                let mut plans = Vec::new();
                loop {
                    let answer = match rx.recv_timeout(LIVE_EVERY) {
                        Ok(Live::Plans(new)) => {
                            plans = new;
                            None
                        }
                        Ok(Live::Sync(answer)) => Some(answer),
                        Err(std_mpsc::RecvTimeoutError::Timeout) => None,
                        Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
                    };
                    let now_us = clock.network_us(Instant::now());
                    if log.advance(now_us, &plans, &store) {
                        playlist.send_replace(log.view());
                    }
                    if let Some(answer) = answer {
                        let _ = answer.send(());
                    }
                }
            })?;
        Ok(Audio {
            player,
            live: Some(tx),
            thread: Some(thread),
        })
    }

    /// A new schedule: the live playlist first (it lists a segment before the player, whose
    /// lead is 150 ms, can sound it), then the player.
    pub fn schedule(&self, plans: Vec<SlotPlan>) {
        if let Some(tx) = &self.live {
            let _ = tx.send(Live::Plans(plans.clone()));
        }
        self.player.schedule(plans);
    }

    /// Waits (up to a second) until the live playlist lists every segment started by now: a
    /// new slot is in the playlist before the log says it plays.
    pub async fn sync_live(&self) {
        let (answer, answered) = oneshot::channel();
        if let Some(tx) = &self.live
            && tx.send(Live::Sync(answer)).is_ok()
        {
            let _ = tokio::time::timeout(Duration::from_secs(1), answered).await;
        }
    }

    /// Stops the live playlist's thread (its window is saved as it goes), and lets the player
    /// go: the last handle dropped stops its thread and flushes the sink (a wav file), which
    /// happens here on a blocking thread unless the HTTP API still holds one.
    pub async fn close(mut self) {
        self.live = None;
        let thread = self.thread.take();
        let player = self.player;
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(thread) = thread {
                let _ = thread.join();
            }
            drop(player);
        })
        .await;
    }
}
