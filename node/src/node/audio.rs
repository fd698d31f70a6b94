//! The driver's audio outputs: the player thread (told the schedule) and the live HLS playlist
//! (`GET /live.m3u8`), kept on a thread of its own because it reads manifests from the store
//! and saves its window to disk as segments start.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chorus_media::live::LiveLog;
use chorus_media::player::{Player, SlotPlan, TimeBase};
use chorus_media::store::BlockStore;
use tokio::sync::watch;

use crate::clock::Clock;

/// How often the live playlist looks for segments that started.
const LIVE_EVERY: Duration = Duration::from_millis(100);

/// See the module's doc.
pub struct Audio {
    player: Arc<Player>,
    live: Option<std_mpsc::Sender<Vec<SlotPlan>>>,
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
        playlist: watch::Sender<String>,
    ) -> std::io::Result<Audio> {
        let mut log = LiveLog::load(data_dir);
        playlist.send_replace(log.playlist());
        let (tx, rx) = std_mpsc::channel::<Vec<SlotPlan>>();
        let thread = std::thread::Builder::new()
            .name("live playlist".into())
            .spawn(move || {
                let mut plans = Vec::new();
                loop {
                    match rx.recv_timeout(LIVE_EVERY) {
                        Ok(new) => plans = new,
                        Err(std_mpsc::RecvTimeoutError::Timeout) => {}
                        Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                    let now_us = clock.network_us(Instant::now());
                    if log.advance(now_us, &plans, &store) {
                        playlist.send_replace(log.playlist());
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
            let _ = tx.send(plans.clone());
        }
        self.player.schedule(plans);
    }

    /// Stops the live playlist's thread (its window is saved as it goes).
    pub async fn close(mut self) {
        self.live = None;
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}
