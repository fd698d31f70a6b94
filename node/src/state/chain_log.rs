//! The chain on disk as an append-only log (`DATA/chain.log`): each decided slot is appended and
//! fsynced once, instead of the whole chain being rewritten every slot.
//!
//! A record is `length (u32, big endian) || CBOR(DecidedSlot) || SHA-256(CBOR)`. A kill -9
//! during an append leaves a torn last record: its length runs past the end or its digest does
//! not match, and [`ChainLog::open`] cuts the file there (logged `chain_truncated`); the slots
//! lost are synced from peers like any the node missed. An adopted fork (PROTOCOL.md 9)
//! truncates the log to the slots kept and appends the new ones.
//!
//! Every record read is verified as a slot from a peer would be (`push_synced`: the chain hash
//! and the winning proposal's envelope, PROTOCOL.md 12.1). A chain file of the previous
//! format (`chain.cbor`, one CBOR array) is read once and converted.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use chorus_consensus::{Chain, ChainError, DecidedSlot, Hash32};

#[cfg(test)]
mod tests;

/// The log's file name in the data directory.
pub const FILE: &str = "chain.log";
/// The previous format: the whole chain as one CBOR array, rewritten every slot.
const OLD_FILE: &str = "chain.cbor";
/// Largest record accepted when reading (a decided slot with its envelope is about 1 KiB).
const RECORD_MAX: u32 = 1024 * 1024;

/// An open chain log; see the module's doc.
#[derive(Debug)]
pub struct ChainLog {
    path: PathBuf,
    file: File,
    /// The file offset where each record ends.
    ends: Vec<u64>,
}

impl ChainLog {
    /// Opens (or creates) the log of `data_dir` and extends `chain`, fresh from the genesis,
    /// with the slots it holds.
    pub fn open(data_dir: &Path, chain: &mut Chain) -> Result<ChainLog> {
        let path = data_dir.join(FILE);
        let old = data_dir.join(OLD_FILE);
        let converted = !path.exists() && old.exists();
        if converted {
            convert(&old, &path, chain)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open the chain log {}", path.display()))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .with_context(|| format!("cannot read the chain log {}", path.display()))?;
        let (records, good) = read_records(&bytes);
        let mut log = ChainLog {
            path,
            file,
            ends: Vec::new(),
        };
        if good < bytes.len() {
            tracing::warn!(event = "chain_truncated", file = %log.path.display(), kept = records.len(),
                "the chain log {} ends in a torn record (a write cut short); kept its first {} slots, the rest are synced from peers",
                log.path.display(), records.len());
            log.file
                .set_len(good as u64)
                .and_then(|()| log.file.sync_all())
                .with_context(|| format!("cannot cut the chain log {}", log.path.display()))?;
        }
        for (slot, end) in records {
            log.ends.push(end as u64);
            if !converted {
                verify(chain, slot, &log.path)?;
            }
        }
        Ok(log)
    }

    /// Records written.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether no record is written.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Keeps the first `keep` records, appends `slots` after them, and fsyncs.
    pub fn write(&mut self, keep: usize, slots: &[DecidedSlot]) -> Result<()> {
        if keep < self.ends.len() {
            let end = keep.checked_sub(1).map_or(0, |i| self.ends[i]);
            self.file
                .set_len(end)
                .with_context(|| format!("cannot cut the chain log {}", self.path.display()))?;
            self.ends.truncate(keep);
        }
        if slots.is_empty() && keep >= self.ends.len() {
            return Ok(());
        }
        let mut at = self.ends.last().copied().unwrap_or(0);
        let mut buf = Vec::new();
        let mut ends = Vec::new();
        for slot in slots {
            let record = encode(slot)?;
            at += record.len() as u64;
            ends.push(at);
            buf.extend_from_slice(&record);
        }
        let start = self.ends.last().copied().unwrap_or(0);
        self.file
            .seek(SeekFrom::Start(start))
            .and_then(|_| self.file.write_all(&buf))
            .and_then(|()| self.file.sync_data())
            .with_context(|| format!("cannot append to the chain log {}", self.path.display()))?;
        self.ends.extend(ends);
        Ok(())
    }
}

/// One record.
fn encode(slot: &DecidedSlot) -> Result<Vec<u8>> {
    let mut cbor = Vec::new();
    ciborium::into_writer(slot, &mut cbor).context("cannot encode a decided slot")?;
    let len = u32::try_from(cbor.len()).context("a decided slot over 4 GiB")?;
    let mut record = Vec::with_capacity(cbor.len() + 36);
    record.extend_from_slice(&len.to_be_bytes());
    record.extend_from_slice(&cbor);
    record.extend_from_slice(Hash32::digest(&cbor).as_bytes());
    Ok(record)
}

/// The whole records at the start of `bytes`, each with the offset where it ends, and the
/// length of that good prefix.
fn read_records(bytes: &[u8]) -> (Vec<(DecidedSlot, usize)>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some((slot, next)) = read_record(bytes, at) {
        out.push((slot, next));
        at = next;
    }
    (out, at)
}

fn read_record(bytes: &[u8], at: usize) -> Option<(DecidedSlot, usize)> {
    let len_bytes: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    let len = u32::from_be_bytes(len_bytes);
    if len > RECORD_MAX {
        return None;
    }
    let body = at + 4;
    let end = body + len as usize;
    let cbor = bytes.get(body..end)?;
    let digest = bytes.get(end..end + 32)?;
    if Hash32::digest(cbor).as_bytes() != digest {
        return None;
    }
    let slot = ciborium::from_reader(cbor).ok()?;
    Some((slot, end + 32))
}

fn verify(chain: &mut Chain, slot: DecidedSlot, path: &Path) -> Result<()> {
    let n = slot.slot;
    match chain.push_synced(slot) {
        Ok(()) => Ok(()),
        Err(e @ ChainError::MissingProposal(_)) => bail!(
            "the chain file {} was written for protocol 1.0 ({e}); this node speaks protocol \
             1.1, whose chain records carry the winning proposals: move the data directory's \
             chain.log and genesis.cbor away, then bootstrap or join a network of protocol 1.1",
            path.display()
        ),
        Err(e) => bail!(
            "the chain file {} does not follow from the genesis at slot {n}: {e}; move it away to sync the chain from peers",
            path.display()
        ),
    }
}

/// Converts a chain file of the previous format into a log (written aside, then renamed), and
/// removes it; its slots extend `chain` (verified, errors naming the old file). A file that does
/// not decode is moved aside: the chain is synced from peers.
fn convert(old: &Path, path: &Path, chain: &mut Chain) -> Result<()> {
    let bytes = std::fs::read(old).with_context(|| format!("cannot read {}", old.display()))?;
    let slots: Vec<DecidedSlot> = match ciborium::from_reader(bytes.as_slice()) {
        Ok(s) => s,
        Err(e) => {
            let aside = old.with_extension("damaged");
            let _ = std::fs::rename(old, &aside);
            tracing::warn!(event = "chain_damaged", file = %old.display(), "the chain file {} is damaged ({e}); moved to {}; syncing the chain from peers", old.display(), aside.display());
            return Ok(());
        }
    };
    let mut out = Vec::new();
    for slot in slots {
        out.extend_from_slice(&encode(&slot)?);
        verify(chain, slot, old)?;
    }
    chorus_media::fsutil::atomic_write(path, &out)
        .with_context(|| format!("cannot write {}", path.display()))?;
    std::fs::remove_file(old).with_context(|| format!("cannot remove {}", old.display()))?;
    Ok(())
}
