//! Idempotency records: what a tool call with an `idempotency_key` answered, so a retry with the
//! same key gets the same answer instead of doing the work again.
//!
//! Owns: the [`Record`] row of the `idempotency` table (key → record), its encoding (`codec.rs`),
//! reading a record that has not expired, and writing one. Must not: know what a tool does; the
//! caller decides what `op`, `fingerprint` and `result` mean. An expired record is treated as
//! absent and is overwritten by the next [`put`] with the same key.

use super::codec::{Dec, Enc};
use super::schema::IDEMPOTENCY;
use super::{Context, Result};
use redb::{ReadTransaction, ReadableTable, WriteTransaction};

/// How long a record is honoured when `WA_IDEMPOTENCY_TTL_MS` is not set: one day.
pub const DEFAULT_TTL_MS: u64 = 86_400_000;
/// The shortest allowed time to live: one minute.
pub const MIN_TTL_MS: u64 = 60_000;

const VERSION: u8 = 1;

/// One stored answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The tool (e.g. `logout`).
    pub op: String,
    /// What the call asked for; a repeat with the same key but another fingerprint is a misuse.
    pub fingerprint: String,
    /// The answer's text, returned unchanged on replay.
    pub result: String,
    /// Epoch milliseconds after which the record is ignored.
    pub expires_at: u64,
}

impl Record {
    pub fn encode(&self) -> Vec<u8> {
        Enc::new(VERSION)
            .str(&self.op)
            .str(&self.fingerprint)
            .str(&self.result)
            .u64(self.expires_at)
            .finish()
    }

    pub fn decode(buf: &[u8]) -> Result<Record> {
        let mut d = Dec::new(buf)?;
        Ok(Record {
            op: d.str()?,
            fingerprint: d.str()?,
            result: d.str()?,
            expires_at: d.u64()?,
        })
    }

    /// Whether the record still counts at `now_ms`.
    pub fn live_at(&self, now_ms: u64) -> bool {
        now_ms < self.expires_at
    }
}

/// The record under `key` if it has not expired at `now_ms`.
pub fn get(txn: &ReadTransaction, key: &str, now_ms: u64) -> Result<Option<Record>> {
    let table = txn.open_table(IDEMPOTENCY).ctx("opening idempotency")?;
    let Some(raw) = table.get(key).ctx("reading idempotency")? else {
        return Ok(None);
    };
    let record = Record::decode(raw.value())?;
    Ok(record.live_at(now_ms).then_some(record))
}

/// Stores `record` under `key`, replacing any earlier (expired) record.
pub fn put(txn: &WriteTransaction, key: &str, record: &Record) -> Result<()> {
    let mut table = txn.open_table(IDEMPOTENCY).ctx("opening idempotency")?;
    table
        .insert(key, record.encode().as_slice())
        .ctx("writing idempotency")?;
    Ok(())
}

/// Deletes up to `max` records that expired by `now_ms` (a record that cannot be decoded counts
/// as expired). Returns how many went.
pub fn prune_expired(txn: &WriteTransaction, now_ms: u64, max: usize) -> Result<usize> {
    let mut table = txn.open_table(IDEMPOTENCY).ctx("opening idempotency")?;
    let mut dead: Vec<String> = Vec::new();
    for row in table.iter().ctx("reading idempotency")? {
        if dead.len() >= max {
            break;
        }
        let (k, v) = row.ctx("reading idempotency")?;
        let live = Record::decode(v.value()).is_ok_and(|r| r.live_at(now_ms));
        if !live {
            dead.push(k.value().to_string());
        }
    }
    for k in &dead {
        table.remove(k.as_str()).ctx("pruning idempotency")?;
    }
    Ok(dead.len())
}

/// The current time in epoch milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(expires_at: u64) -> Record {
        Record {
            op: "logout".into(),
            fingerprint: "logout".into(),
            result: "Logged out: ünïcode".into(),
            expires_at,
        }
    }

    #[test]
    fn record_round_trips() {
        let r = record(1_700_000_000_000);
        assert_eq!(Record::decode(&r.encode()).unwrap(), r);
    }

    #[test]
    fn truncated_record_is_an_error() {
        let raw = record(5).encode();
        assert!(Record::decode(&raw[..4]).is_err());
        assert!(Record::decode(&[]).is_err());
    }

    #[test]
    fn pruning_removes_only_expired_records() {
        use redb::ReadableTableMetadata;
        let store = crate::store::Store::open_in_memory().unwrap();
        store
            .write_blocking(|txn| {
                put(txn, "old", &record(10))?;
                put(txn, "older", &record(5))?;
                put(txn, "live", &record(1_000))
            })
            .unwrap();
        // At most `max` at a time: one, then the other.
        store
            .write_blocking(|txn| prune_expired(txn, 100, 1).map(|n| assert_eq!(n, 1)))
            .unwrap();
        store
            .write_blocking(|txn| prune_expired(txn, 100, 10).map(|n| assert_eq!(n, 1)))
            .unwrap();
        assert_eq!(
            store.read_blocking(|txn| get(txn, "live", 100)).unwrap(),
            Some(record(1_000))
        );
        let left = store
            .read_blocking(|txn| {
                let t = txn.open_table(IDEMPOTENCY).ctx("open")?;
                t.len().ctx("len")
            })
            .unwrap();
        assert_eq!(left, 1);
    }

    #[test]
    fn expiry_and_replay() {
        let store = crate::store::Store::open_in_memory().unwrap();
        let first = record(1_000);
        let r = first.clone();
        store.write_blocking(move |txn| put(txn, "k", &r)).unwrap();
        // Within the TTL the record is replayed; at and after expiry it is absent.
        let got = store.read_blocking(|txn| get(txn, "k", 999)).unwrap();
        assert_eq!(got, Some(first));
        assert_eq!(
            store.read_blocking(|txn| get(txn, "k", 1_000)).unwrap(),
            None
        );
        assert_eq!(
            store.read_blocking(|txn| get(txn, "other", 0)).unwrap(),
            None
        );
        // An expired record is replaced.
        let mut second = record(5_000);
        second.result = "second".into();
        let r = second.clone();
        store.write_blocking(move |txn| put(txn, "k", &r)).unwrap();
        assert_eq!(
            store.read_blocking(|txn| get(txn, "k", 2_000)).unwrap(),
            Some(second)
        );
    }
}
