//! The Icecast-style stream (`GET /stream`): the live stream's AAC as one endless ADTS body,
//! for players and radio apps that do not speak HLS, with ICY metadata (`icy-metaint`, and
//! `StreamTitle='Artist - Title';` blocks) for those that send `Icy-MetaData: 1`.
//!
//! One [`Feed`] task follows the live playlist's window: each segment newly listed is read from
//! the store once, its ID3 tag taken off, and handed to every listener through a broadcast
//! channel. A listener starts with the last [`BURST`] segments (so its player has a segment's
//! worth of buffer before the next one is listed) and then gets each segment as it starts. A
//! listener that falls [`BACKLOG`] segments behind is dropped (its player reconnects), so a
//! slow reader never holds more than that; listeners beyond [`MAX_LISTENERS`] are refused with
//! 503.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use chorus_media::BlockStore;
use chorus_media::adts::{adts_payloads, clean_text, split_id3};
use chorus_media::live::LiveView;
use futures::Stream;
use tokio::sync::{broadcast, watch};
use tracing::{debug, warn};

/// Audio bytes between two metadata blocks (Icecast's usual figure).
pub const METAINT: usize = 16_000;
/// Listeners of `/stream` served at once.
pub const MAX_LISTENERS: usize = 200;
/// Segments a new listener gets at once.
pub const BURST: usize = 2;
/// Segments a listener may fall behind before it is dropped.
pub const BACKLOG: usize = 8;

/// One segment's audio as the stream sends it.
#[derive(Debug)]
pub struct Chunk {
    /// Its media sequence number in the live playlist.
    pub seq: u64,
    /// `Artist - Title` of its track.
    pub title: String,
    /// ADTS frames, the segment's ID3 tag taken off.
    pub adts: Bytes,
}

/// See the module's doc.
pub struct Feed {
    tx: broadcast::Sender<Arc<Chunk>>,
    /// The last [`BURST`] chunks, for new listeners; locked while a chunk is sent, so that a new
    /// listener misses none and gets none twice.
    recent: Mutex<VecDeque<Arc<Chunk>>>,
    listeners: Arc<AtomicUsize>,
}

impl Feed {
    /// Starts the task that follows `live`, reading segments from `store`.
    pub fn start(live: watch::Receiver<LiveView>, store: BlockStore) -> Arc<Feed> {
        let (tx, _) = broadcast::channel(BACKLOG);
        let feed = Arc::new(Feed {
            tx,
            recent: Mutex::new(VecDeque::new()),
            listeners: Arc::new(AtomicUsize::new(0)),
        });
        crate::supervise::spawn("ICY stream feed", feed.clone().follow(live, store));
        feed
    }

    /// Listeners now.
    pub fn listeners(&self) -> usize {
        self.listeners.load(Ordering::Relaxed)
    }

    /// A new listener, or `None` when [`MAX_LISTENERS`] are listening.
    pub fn listen(&self) -> Option<Listener> {
        let taken = self
            .listeners
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < MAX_LISTENERS).then_some(n + 1)
            });
        if taken.is_err() {
            return None;
        }
        let slot = Slot(self.listeners.clone());
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        Some(Listener {
            burst: recent.iter().cloned().collect(),
            rx: self.tx.subscribe(),
            _slot: slot,
        })
    }

    fn publish(&self, chunk: Chunk) {
        let chunk = Arc::new(chunk);
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.push_back(chunk.clone());
        while recent.len() > BURST {
            recent.pop_front();
        }
        // No listener is no error.
        let _ = self.tx.send(chunk);
    }

    async fn follow(self: Arc<Feed>, mut live: watch::Receiver<LiveView>, store: BlockStore) {
        let mut last: Option<u64> = None;
        loop {
            let entries = live.borrow_and_update().entries.clone();
            let fresh: Vec<_> = match last {
                Some(last) => entries.into_iter().filter(|e| e.seq > last).collect(),
                None => {
                    let skip = entries.len().saturating_sub(BURST);
                    entries.into_iter().skip(skip).collect()
                }
            };
            for entry in fresh {
                last = Some(entry.seq);
                let store = store.clone();
                let id = entry.id;
                let bytes = match tokio::task::spawn_blocking(move || store.get(&id)).await {
                    Ok(Ok(bytes)) => bytes,
                    Ok(Err(e)) => {
                        debug!("segment {id} left out of /stream: {e}");
                        continue;
                    }
                    Err(e) => {
                        warn!("reading segment {id} for /stream failed: {e}");
                        continue;
                    }
                };
                let Some(adts) = adts_of(&bytes) else {
                    warn!("segment {id} is not an ID3 tag and ADTS frames; left out of /stream");
                    continue;
                };
                self.publish(Chunk {
                    seq: entry.seq,
                    title: entry.tags.stream_title(),
                    adts: Bytes::copy_from_slice(adts),
                });
            }
            if live.changed().await.is_err() {
                return;
            }
        }
    }
}

/// The ADTS frames of a segment, when they parse.
fn adts_of(segment: &[u8]) -> Option<&[u8]> {
    let (_, adts) = split_id3(segment)?;
    adts_payloads(adts)?;
    Some(adts)
}

/// Counts a listener while it is held.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One listener's place in the feed.
pub struct Listener {
    burst: VecDeque<Arc<Chunk>>,
    rx: broadcast::Receiver<Arc<Chunk>>,
    _slot: Slot,
}

/// The body of one listener's response: its chunks with metadata blocks every `metaint` bytes
/// when asked for. Ends when the listener falls [`BACKLOG`] behind or the node stops.
pub fn body(
    listener: Listener,
    metaint: Option<usize>,
) -> impl Stream<Item = Result<Bytes, Infallible>> {
    let writer = IcyWriter::new(metaint);
    futures::stream::unfold((listener, writer), |(mut l, mut writer)| async move {
        let chunk = match l.burst.pop_front() {
            Some(chunk) => chunk,
            None => match l.rx.recv().await {
                Ok(chunk) => chunk,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    debug!("a /stream listener fell {n} segments behind; dropped");
                    return None;
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            },
        };
        let bytes = writer.write(&chunk.title, &chunk.adts);
        Some((Ok(Bytes::from(bytes)), (l, writer)))
    })
}

/// Interleaves ICY metadata blocks into the audio: after every `metaint` bytes, one length byte
/// (in units of 16) and the block, `StreamTitle='...';` padded with zeros when the title changed
/// (or first), else an empty block (one zero byte).
#[derive(Debug)]
pub struct IcyWriter {
    metaint: Option<usize>,
    /// Audio bytes until the next block.
    left: usize,
    /// The title sent last.
    sent: Option<String>,
}

impl IcyWriter {
    /// A writer with blocks every `metaint` bytes, or none.
    pub fn new(metaint: Option<usize>) -> IcyWriter {
        IcyWriter {
            metaint: metaint.filter(|&m| m > 0),
            left: metaint.unwrap_or(0),
            sent: None,
        }
    }

    /// `audio` of a track titled `title`, with the blocks due within it.
    pub fn write(&mut self, title: &str, mut audio: &[u8]) -> Vec<u8> {
        let Some(metaint) = self.metaint else {
            return audio.to_vec();
        };
        let mut out = Vec::with_capacity(audio.len() + audio.len() / metaint + 64);
        while !audio.is_empty() {
            let n = self.left.min(audio.len());
            out.extend_from_slice(&audio[..n]);
            audio = &audio[n..];
            self.left -= n;
            if self.left == 0 {
                self.block(title, &mut out);
                self.left = metaint;
            }
        }
        out
    }

    fn block(&mut self, title: &str, out: &mut Vec<u8>) {
        if self.sent.as_deref() == Some(title) {
            out.push(0);
            return;
        }
        let text = format!("StreamTitle='{}';", icy_text(title));
        let units = text.len().div_ceil(16);
        out.push(units as u8);
        out.extend_from_slice(text.as_bytes());
        out.resize(out.len() + units * 16 - text.len(), 0);
        self.sent = Some(title.to_owned());
    }
}

/// A title as a metadata block may carry it: no quote (ICY has no escape; a `'` would end the
/// value early in many players, so it becomes `’`), no control character, and short enough for
/// a block of at most 255 × 16 bytes with its `StreamTitle='';`.
fn icy_text(title: &str) -> String {
    clean_text(&title.replace('\'', "\u{2019}"), 255 * 16 - 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits an ICY body into its audio and the metadata blocks with their audio offsets.
    fn read_icy(body: &[u8], metaint: usize) -> (Vec<u8>, Vec<(usize, String)>) {
        let (mut audio, mut blocks) = (Vec::new(), Vec::new());
        let mut rest = body;
        loop {
            let n = metaint.min(rest.len());
            audio.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            let Some((&len, tail)) = rest.split_first() else {
                break;
            };
            let len = usize::from(len) * 16;
            let text = String::from_utf8(tail[..len].to_vec()).expect("UTF-8");
            if len > 0 {
                blocks.push((audio.len(), text.trim_end_matches('\0').to_owned()));
            }
            rest = &tail[len..];
        }
        (audio, blocks)
    }

    #[test]
    fn metadata_comes_every_metaint_bytes_and_names_each_new_title_once() {
        let mut w = IcyWriter::new(Some(100));
        let one: Vec<u8> = (0..250).map(|i| i as u8).collect();
        let two: Vec<u8> = (0..180).map(|i| (i * 7) as u8).collect();
        let mut body = w.write("A - One", &one);
        body.extend(w.write("B - Two's", &two));
        let (audio, blocks) = read_icy(&body, 100);
        assert_eq!(audio, [one.clone(), two].concat());
        // The first block names the first title; the next one is empty; the first block within
        // the second track names it, its quote turned typographic.
        assert_eq!(
            blocks,
            [
                (100, "StreamTitle='A - One';".to_owned()),
                (300, "StreamTitle='B - Two\u{2019}s';".to_owned())
            ]
        );
        // Without metadata the audio goes as it is.
        let mut plain = IcyWriter::new(None);
        assert_eq!(plain.write("A - One", &one), one);
    }

    #[tokio::test]
    async fn listeners_beyond_the_limit_are_refused_until_one_leaves() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = BlockStore::open(dir.path().join("store")).expect("store");
        let (_live, rx) = watch::channel(LiveView::default());
        let feed = Feed::start(rx, store);
        let mut held: Vec<Listener> = (0..MAX_LISTENERS)
            .map(|_| feed.listen().expect("room"))
            .collect();
        assert_eq!(feed.listeners(), MAX_LISTENERS);
        assert!(feed.listen().is_none());
        held.pop();
        assert_eq!(feed.listeners(), MAX_LISTENERS - 1);
        assert!(feed.listen().is_some());
    }

    #[tokio::test]
    async fn a_listener_that_falls_behind_is_dropped_and_a_new_one_starts_with_the_burst() {
        use futures::StreamExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let store = BlockStore::open(dir.path().join("store")).expect("store");
        let (_live, rx) = watch::channel(LiveView::default());
        let feed = Feed::start(rx, store);
        let slow = feed.listen().expect("room");
        for seq in 0..(BACKLOG as u64 + 2) {
            feed.publish(Chunk {
                seq,
                title: format!("Track {seq}"),
                adts: Bytes::from(vec![seq as u8; 3]),
            });
        }
        let got: Vec<_> = body(slow, None).collect().await;
        assert!(got.is_empty(), "a lagging listener got {got:?}");
        assert_eq!(feed.listeners(), 0);
        let late = feed.listen().expect("room");
        let got: Vec<Bytes> = body(late, None)
            .take(BURST)
            .map(|b| b.expect("infallible"))
            .collect()
            .await;
        let last = BACKLOG as u8 + 1;
        assert_eq!(got, [vec![last - 1; 3], vec![last; 3]]);
    }

    #[test]
    fn a_hostile_title_stays_within_one_block() {
        let mut w = IcyWriter::new(Some(10));
        let title = format!("{}\r\n\u{0}", "x'".repeat(5000));
        let body = w.write(&title, &[1; 10]);
        let units = usize::from(body[10]);
        assert!(units <= 255);
        let block = &body[11..11 + units * 16];
        let text = String::from_utf8(block.to_vec()).expect("UTF-8");
        let text = text.trim_end_matches('\0');
        assert!(text.starts_with("StreamTitle='x\u{2019}x") && text.ends_with("';"));
        assert!(!text.chars().any(char::is_control));
    }
}
