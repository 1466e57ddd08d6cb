//! Messages by arrival: which stored messages came in after a point, whatever their timestamps
//! (for `wait_for_messages`).
//!
//! Owns: the arrival cursor ([`Cursor`]) and the scan that finds the messages stored after it.
//! Must not: write, or decide which messages a caller wants (the caller's filter does).
//!
//! Every newly stored message takes the next value of the global `seq` counter (`meta`), and the
//! low [`DOC_SEQ_BITS`] bits of its doc are that value (`writes::put_messages`). A cursor is the
//! counter's value at one moment plus a time floor: a message arrived after the cursor when its
//! sequence is newer. Only messages whose own timestamp is at or after the floor are looked at,
//! so a scan reads the recent part of the message table, never all of it; the floor lies
//! [`FLOOR_SLACK_MS`] before the moment the cursor was made, so late deliveries (an offline
//! queue, a slow peer clock) within that slack are still found. History sync stores old
//! messages, below the floor: they are history, not arrivals.

use super::model::{DOC_SEQ_BITS, Doc, MessageRow, doc_floor};
use super::queries::StoredMessage;
use super::schema::{CHAT_JIDS, MESSAGES, META, meta_u64};
use super::{Context, Result};
use redb::ReadTransaction;

/// How far before a cursor's moment its time floor lies: one hour.
pub const FLOOR_SLACK_MS: u64 = 3_600_000;

const SEQ_MASK: u64 = (1u64 << DOC_SEQ_BITS) - 1;

/// A point in the arrival order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The `seq` counter at that point: messages with a newer sequence arrived after it.
    pub seq: u64,
    /// Messages older than this (epoch ms) are not looked at.
    pub floor_ms: u64,
}

impl Cursor {
    /// The text form handed to clients: `<seq>.<floor_ms>`.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.seq, self.floor_ms)
    }

    pub fn decode(text: &str) -> Option<Cursor> {
        let (seq, floor) = text.trim().split_once('.')?;
        Some(Cursor {
            seq: seq.parse().ok()?,
            floor_ms: floor.parse().ok()?,
        })
    }
}

/// A cursor at the current end of the arrival order, made at `now_ms`.
pub fn cursor_now(txn: &ReadTransaction, now_ms: u64) -> Result<Cursor> {
    let meta = txn.open_table(META).ctx("opening meta")?;
    Ok(Cursor {
        seq: meta_u64(&meta, "seq")?,
        floor_ms: now_ms.saturating_sub(FLOOR_SLACK_MS),
    })
}

/// What [`arrived_since`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrivals {
    /// The accepted messages, oldest first by timestamp.
    pub messages: Vec<StoredMessage>,
    /// Where the next scan starts (every message up to it has been looked at).
    pub next: Cursor,
}

/// Whether the message with sequence bits `low` was stored after the counter was `after`, given
/// that `delta` messages have been stored since then (`delta < 2^DOC_SEQ_BITS`).
fn is_after(low: u64, after: u64, delta: u64) -> Option<u64> {
    let step = low.wrapping_sub(after & SEQ_MASK) & SEQ_MASK;
    (step >= 1 && step <= delta).then(|| after + step)
}

/// The messages stored after `since` (with timestamps at or after its floor) that `accept`
/// takes, at most `limit` of them, in arrival order's first `limit`; and the cursor to continue
/// from. `now_ms` sets the next cursor's floor.
pub fn arrived_since(
    txn: &ReadTransaction,
    since: Cursor,
    now_ms: u64,
    limit: usize,
    accept: &mut dyn FnMut(&str, &MessageRow) -> bool,
) -> Result<Arrivals> {
    let meta = txn.open_table(META).ctx("opening meta")?;
    let now_seq = meta_u64(&meta, "seq")?;
    let next_floor = now_ms.saturating_sub(FLOOR_SLACK_MS).max(since.floor_ms);
    let done = |messages| Arrivals {
        messages,
        next: Cursor {
            seq: now_seq,
            floor_ms: next_floor,
        },
    };
    if now_seq == since.seq {
        return Ok(done(Vec::new()));
    }
    // A counter that went backwards (a restored backup) or moved by more than the sequence
    // bits can tell apart: every message above the floor counts as new.
    let delta = now_seq.wrapping_sub(since.seq);
    let exact = now_seq > since.seq && delta <= SEQ_MASK;
    let messages = txn.open_table(MESSAGES).ctx("opening messages")?;
    let chat_jids = txn.open_table(CHAT_JIDS).ctx("opening chat_jids")?;
    // (full sequence, doc, chat, row)
    let mut found: Vec<(u64, Doc, String, MessageRow)> = Vec::new();
    let keep = limit.max(1);
    let mut truncated = false;
    for entry in messages
        .range(doc_floor(since.floor_ms)..)
        .ctx("reading messages")?
    {
        let (k, v) = entry.ctx("reading messages")?;
        let doc = k.value();
        let seq = if exact {
            match is_after(doc & SEQ_MASK, since.seq, delta) {
                Some(s) => s,
                None => continue,
            }
        } else {
            doc & SEQ_MASK
        };
        let row = MessageRow::decode(v.value())?;
        let chat = chat_jids
            .get(row.chat_no)
            .ctx("reading chat_jids")?
            .map(|j| j.value().to_string())
            .unwrap_or_default();
        if accept(&chat, &row) {
            found.push((seq, doc, chat, row));
            // Memory stays bounded by the limit however far back the floor lies: only the
            // first `limit` in arrival order can be returned.
            if found.len() >= keep.saturating_mul(2) {
                found.sort_by_key(|f| f.0);
                found.truncate(keep);
                truncated = true;
            }
        }
    }
    let mut next_seq = now_seq;
    let mut next_floor = next_floor;
    if found.len() > keep {
        found.sort_by_key(|f| f.0);
        found.truncate(keep);
        truncated = true;
    }
    if truncated
        && exact
        && let Some(last) = found.last()
    {
        next_seq = last.0;
        // The rest may be older than the new floor (a long offline queue): keep looking from
        // the old one until every message after the cursor has been returned.
        next_floor = since.floor_ms;
    }
    found.sort_by_key(|f| f.1);
    let out = found
        .into_iter()
        .map(|(_, doc, chat_jid, row)| StoredMessage { doc, chat_jid, row })
        .collect();
    Ok(Arrivals {
        messages: out,
        next: Cursor {
            seq: next_seq,
            floor_ms: next_floor,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::store::writes::{NewMessage, put_message};

    fn msg(chat: &str, id: &str, ts: u64, from_me: bool) -> NewMessage {
        NewMessage {
            chat_jid: chat.into(),
            id: id.into(),
            sender: String::new(),
            from_me,
            timestamp_ms: ts,
            body: format!("body {id}"),
            kind: "conversation".into(),
            ..NewMessage::default()
        }
    }

    fn put(store: &Store, m: NewMessage) {
        store
            .write_blocking(move |txn| put_message(txn, &m).map(|_| ()))
            .unwrap();
    }

    const NOW: u64 = 1_800_000_000_000;

    #[test]
    fn a_commit_wakes_a_waiter_and_a_seen_generation_returns_at_once() {
        let store = Store::open_in_memory().unwrap();
        let seen = store.change_generation();
        let waiting = store.clone();
        let waiter = std::thread::spawn(move || smol::block_on(waiting.wait_for_change(seen)));
        put(&store, msg("1@s.whatsapp.net", "x", NOW, false));
        let now = waiter.join().unwrap();
        assert!(now > seen);
        assert_eq!(
            smol::block_on(store.wait_for_change(seen)),
            store.change_generation()
        );
    }

    #[test]
    fn cursor_text_round_trips() {
        let c = Cursor {
            seq: 42,
            floor_ms: 7,
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        assert_eq!(Cursor::decode("nonsense"), None);
        assert_eq!(Cursor::decode("1.x"), None);
    }

    #[test]
    fn sequence_bits_tell_new_from_old_across_the_wrap() {
        assert_eq!(is_after(5, 4, 1), Some(5));
        assert_eq!(is_after(4, 4, 1), None);
        assert_eq!(is_after(3, 4, 10), None);
        // The counter wrapped its low bits: 0 follows SEQ_MASK.
        let after = SEQ_MASK + (1 << DOC_SEQ_BITS);
        assert_eq!(is_after(0, after, 2), Some(after + 1));
        assert_eq!(is_after(1, after, 2), Some(after + 2));
        assert_eq!(is_after(2, after, 2), None);
    }

    #[test]
    fn late_messages_with_old_timestamps_still_arrive() {
        let store = Store::open_in_memory().unwrap();
        put(
            &store,
            msg("1@s.whatsapp.net", "before", NOW - 1_000, false),
        );
        let start = store.read_blocking(|t| cursor_now(t, NOW)).unwrap();
        // Delivered now, but sent ten minutes ago (an offline queue).
        put(
            &store,
            msg("1@s.whatsapp.net", "late", NOW - 600_000, false),
        );
        put(&store, msg("2@s.whatsapp.net", "mine", NOW + 5, true));
        // History from last year is not an arrival.
        put(
            &store,
            msg("1@s.whatsapp.net", "history", NOW - 86_400_000 * 365, false),
        );
        let got = store
            .read_blocking(|t| arrived_since(t, start, NOW + 10, 100, &mut |_, row| !row.from_me))
            .unwrap();
        let ids: Vec<&str> = got.messages.iter().map(|m| m.row.id.as_str()).collect();
        assert_eq!(ids, ["late"]);
        // Nothing more from the returned cursor.
        let again = store
            .read_blocking(|t| arrived_since(t, got.next, NOW + 20, 100, &mut |_, _| true))
            .unwrap();
        assert!(again.messages.is_empty());
        assert_eq!(again.next.seq, got.next.seq);
    }

    #[test]
    fn a_long_late_queue_is_returned_in_full_across_calls() {
        // The product was down for hours: a queue of messages older than the floor slack
        // arrives at once, more than one call returns.
        let store = Store::open_in_memory().unwrap();
        let start = store
            .read_blocking(|t| cursor_now(t, NOW - 3 * FLOOR_SLACK_MS))
            .unwrap();
        for i in 0..25u64 {
            let ts = NOW - 2 * FLOOR_SLACK_MS + i;
            put(
                &store,
                msg("1@s.whatsapp.net", &format!("q{i:02}"), ts, false),
            );
        }
        let mut cursor = start;
        let mut ids = Vec::new();
        for _ in 0..10 {
            let got = store
                .read_blocking(|t| arrived_since(t, cursor, NOW, 4, &mut |_, _| true))
                .unwrap();
            assert!(got.messages.len() <= 4);
            if got.messages.is_empty() {
                break;
            }
            ids.extend(got.messages.iter().map(|m| m.row.id.clone()));
            cursor = got.next;
        }
        let want: Vec<String> = (0..25).map(|i| format!("q{i:02}")).collect();
        assert_eq!(ids, want);
    }

    #[test]
    fn a_limit_keeps_the_rest_for_the_next_call() {
        let store = Store::open_in_memory().unwrap();
        let start = store.read_blocking(|t| cursor_now(t, NOW)).unwrap();
        for i in 0..5u64 {
            put(
                &store,
                msg("1@s.whatsapp.net", &format!("m{i}"), NOW + i, false),
            );
        }
        let first = store
            .read_blocking(|t| arrived_since(t, start, NOW, 3, &mut |_, _| true))
            .unwrap();
        let ids: Vec<String> = first.messages.iter().map(|m| m.row.id.clone()).collect();
        assert_eq!(ids, ["m0", "m1", "m2"]);
        let rest = store
            .read_blocking(|t| arrived_since(t, first.next, NOW, 3, &mut |_, _| true))
            .unwrap();
        let ids: Vec<String> = rest.messages.iter().map(|m| m.row.id.clone()).collect();
        assert_eq!(ids, ["m3", "m4"]);
        assert_eq!(rest.messages[0].chat_jid, "1@s.whatsapp.net");
    }
}
