//! The send log: one row per attempt to send (allowed or refused), for the admin page and
//! `GET /api/send-log`.
//!
//! Owns: the [`Entry`] row of the `send_log` table (sequence number → entry), its encoding,
//! appending (with a cap on the number of rows kept) and reading the newest rows. Must not: decide
//! what is allowed (the tools' safety rules do) or shape JSON.
//!
//! The message text is stored only when the operator asked for it (`SEND_LOG_BODIES=1`); the
//! caller leaves [`Entry::body`] empty otherwise.

use super::codec::{Dec, Enc};
use super::schema::SEND_LOG;
use super::{Context, Result};
use redb::{ReadTransaction, ReadableTable, WriteTransaction};

const VERSION: u8 = 1;

/// Rows kept at most; the oldest go first.
pub const MAX_ENTRIES: u64 = 10_000;

/// One send attempt.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Entry {
    /// Epoch milliseconds.
    pub at_ms: u64,
    /// The tool (`send_message`, `send_reaction`, `send_media`).
    pub tool: String,
    /// The recipient as resolved (a JID), or as given when it could not be resolved.
    pub recipient: String,
    /// Size of what was to be sent, in bytes (the text's UTF-8 length).
    pub bytes: u64,
    /// `sent`, `deduplicated`, `refused:<rule>` or `error:<message>`.
    pub result: String,
    /// The WhatsApp message id, once one was chosen.
    pub message_id: Option<String>,
    pub idempotency_key: Option<String>,
    /// The text, only with `SEND_LOG_BODIES=1`.
    pub body: Option<String>,
}

impl Entry {
    pub fn encode(&self) -> Vec<u8> {
        Enc::new(VERSION)
            .u64(self.at_ms)
            .str(&self.tool)
            .str(&self.recipient)
            .u64(self.bytes)
            .str(&self.result)
            .opt_str(self.message_id.as_deref())
            .opt_str(self.idempotency_key.as_deref())
            .opt_str(self.body.as_deref())
            .finish()
    }

    pub fn decode(buf: &[u8]) -> Result<Entry> {
        let mut d = Dec::new(buf)?;
        Ok(Entry {
            at_ms: d.u64()?,
            tool: d.str()?,
            recipient: d.str()?,
            bytes: d.u64()?,
            result: d.str()?,
            message_id: d.opt_str()?,
            idempotency_key: d.opt_str()?,
            body: d.opt_str()?,
        })
    }
}

/// Appends `entry` under the next sequence number and drops the oldest rows beyond
/// [`MAX_ENTRIES`]. Returns the sequence number.
pub fn append(txn: &WriteTransaction, entry: &Entry) -> Result<u64> {
    let mut table = txn.open_table(SEND_LOG).ctx("opening send_log")?;
    let next = table
        .last()
        .ctx("reading send_log")?
        .map(|(k, _)| k.value().saturating_add(1))
        .unwrap_or(1);
    table
        .insert(next, entry.encode().as_slice())
        .ctx("writing send_log")?;
    if next > MAX_ENTRIES {
        let cut = next - MAX_ENTRIES;
        // Usually exactly one row leaves.
        loop {
            let first = table
                .first()
                .ctx("reading send_log")?
                .map(|(k, _)| k.value());
            match first {
                Some(k) if k <= cut => {
                    table.remove(k).ctx("trimming send_log")?;
                }
                _ => break,
            }
        }
    }
    Ok(next)
}

/// The newest `limit` entries with their sequence numbers, newest first.
pub fn newest(txn: &ReadTransaction, limit: usize) -> Result<Vec<(u64, Entry)>> {
    let table = txn.open_table(SEND_LOG).ctx("opening send_log")?;
    let mut out = Vec::new();
    for row in table.iter().ctx("reading send_log")?.rev().take(limit) {
        let (k, v) = row.ctx("reading send_log")?;
        out.push((k.value(), Entry::decode(v.value())?));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u64) -> Entry {
        Entry {
            at_ms: 1_700_000_000_000 + n,
            tool: "send_message".into(),
            recipient: "447700900123@s.whatsapp.net".into(),
            bytes: 5,
            result: "refused:allowlist".into(),
            message_id: None,
            idempotency_key: Some("k-ü".into()),
            body: None,
        }
    }

    #[test]
    fn entry_round_trips_with_and_without_optional_fields() {
        let plain = entry(1);
        assert_eq!(Entry::decode(&plain.encode()).unwrap(), plain);
        let full = Entry {
            message_id: Some("3EB0ABC".into()),
            body: Some("héllo".into()),
            result: "sent".into(),
            ..entry(2)
        };
        assert_eq!(Entry::decode(&full.encode()).unwrap(), full);
        assert!(Entry::decode(&full.encode()[..6]).is_err());
    }

    #[test]
    fn append_numbers_rows_and_newest_reads_backwards() {
        let store = crate::store::Store::open_in_memory().unwrap();
        for n in 1..=3 {
            let e = entry(n);
            let seq = store.write_blocking(move |txn| append(txn, &e).map(|_| ()));
            seq.unwrap();
        }
        let got = store.read_blocking(|txn| newest(txn, 2)).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, 3);
        assert_eq!(got[0].1, entry(3));
        assert_eq!(got[1].0, 2);
        assert_eq!(store.read_blocking(|txn| newest(txn, 10)).unwrap().len(), 3);
    }

    #[test]
    fn the_log_is_capped() {
        let store = crate::store::Store::open_in_memory().unwrap();
        store
            .write_blocking(|txn| {
                for n in 0..MAX_ENTRIES + 5 {
                    append(txn, &entry(n))?;
                }
                Ok(())
            })
            .unwrap();
        let all = store.read_blocking(|txn| newest(txn, usize::MAX)).unwrap();
        assert_eq!(all.len() as u64, MAX_ENTRIES);
        assert_eq!(all[0].0, MAX_ENTRIES + 5);
        assert_eq!(all.last().map(|e| e.0), Some(6));
    }
}
