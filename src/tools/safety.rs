//! Safe sending: the rules every send tool passes before anything reaches WhatsApp, and the send
//! log that records each attempt.
//!
//! Owns: the send allowlist (`SEND_ALLOWLIST`), the per-minute rate limit
//! (`SEND_RATE_PER_MIN`), whether the log keeps message texts (`SEND_LOG_BODIES`), the duplicate
//! window's length (`WA_SEND_DEDUP_WINDOW_MS`), the in-process "one identical send at a time"
//! rule, writing send-log entries and their JSON shape. Must not: send, resolve recipients
//! (`send.rs`), or decide `READ_ONLY` (the registry hides and refuses the send tools).
//!
//! Limits set by the environment can only be tightened at runtime, never loosened: there is no
//! setter that widens [`SendPolicy`]; a future settings API may only narrow it.
//!
//! The rate limit counts every send that passes the allowlist, is not answered from an earlier
//! result (a replayed `idempotency_key` or a duplicate inside the window sends nothing) and finds
//! WhatsApp connected (an agent retrying through an outage is not locked out afterwards). The
//! window is a rolling minute kept in memory.

use crate::json::{self, Value};
use crate::store::Store;
use crate::store::send_log::Entry;
use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

/// What the operator allowed, from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendPolicy {
    /// Normalized JIDs; `None` allows every recipient.
    pub allowlist: Option<Vec<String>>,
    /// Sends per rolling minute; 0 = no limit.
    pub rate_per_min: u32,
    /// Keep message texts in the send log.
    pub log_bodies: bool,
    /// The duplicate-send window in ms; 0 = off.
    pub dedup_window_ms: u64,
}

impl Default for SendPolicy {
    fn default() -> SendPolicy {
        SendPolicy {
            allowlist: None,
            rate_per_min: crate::config::DEFAULT_SEND_RATE_PER_MIN as u32,
            log_bodies: false,
            dedup_window_ms: crate::config::DEFAULT_SEND_DEDUP_WINDOW_MS,
        }
    }
}

/// The rate limit's window.
const MINUTE_MS: u64 = 60_000;

/// The policy plus the state it needs while the server runs.
#[derive(Default)]
pub struct SendGuard {
    pub policy: SendPolicy,
    /// Times (ms) of the sends inside the current rolling minute, oldest first.
    recent: Mutex<VecDeque<u64>>,
    /// Operation keys (an idempotency key, a duplicate-window key) of sends in flight.
    inflight: Mutex<HashSet<String>>,
    inflight_done: event_listener::Event,
}

/// Holds operation keys in flight; dropping it releases them and wakes whoever waits.
pub struct InFlight<'a> {
    guard: &'a SendGuard,
    keys: Vec<String>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Ok(mut set) = self.guard.inflight.lock() {
            for k in &self.keys {
                set.remove(k);
            }
        }
        self.guard.inflight_done.notify(usize::MAX);
    }
}

impl SendGuard {
    pub fn new(policy: SendPolicy) -> SendGuard {
        SendGuard {
            policy,
            ..SendGuard::default()
        }
    }

    /// `None` when the recipient may be written to; else the refusal text. `identities` are all
    /// the JIDs the recipient goes by (a person's phone JID and LID); one listed is enough.
    pub fn allowlist_refusal(&self, shown: &str, identities: &[String]) -> Option<String> {
        let list = self.policy.allowlist.as_ref()?;
        if identities.iter().any(|j| list.contains(j)) {
            return None;
        }
        Some(format!(
            "Refused by SEND_ALLOWLIST: {shown} is not on the list of recipients this server may \
             write to. Ask the operator to add it to SEND_ALLOWLIST if this send is intended."
        ))
    }

    /// Takes one send from the rate limit at `now_ms`. `Err(seconds)` when the limit is reached:
    /// the seconds until a send is allowed again (at least 1).
    pub fn take_rate_slot(&self, now_ms: u64) -> Result<(), u64> {
        let limit = self.policy.rate_per_min as usize;
        if limit == 0 {
            return Ok(());
        }
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        while recent
            .front()
            .is_some_and(|t| now_ms.saturating_sub(*t) >= MINUTE_MS)
        {
            recent.pop_front();
        }
        if recent.len() >= limit {
            let oldest = recent.front().copied().unwrap_or(now_ms);
            let wait_ms = (oldest + MINUTE_MS).saturating_sub(now_ms);
            return Err(wait_ms.div_ceil(1000).max(1));
        }
        recent.push_back(now_ms);
        Ok(())
    }

    /// The refusal text for a reached rate limit.
    pub fn rate_refusal(&self, wait_secs: u64) -> String {
        format!(
            "Refused by SEND_RATE_PER_MIN: this server allows {} sends per minute and that many \
             were made in the last minute. Wait {wait_secs} seconds and try again.",
            self.policy.rate_per_min
        )
    }

    /// Waits until none of `keys` is in flight in this process, then marks them in flight until
    /// the returned value is dropped. Two identical sends therefore run one after the other, so
    /// the second finds the first one's stored result.
    pub async fn begin(&self, keys: Vec<String>) -> InFlight<'_> {
        loop {
            let listener = self.inflight_done.listen();
            {
                let mut set = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
                if !keys.iter().any(|k| set.contains(k)) {
                    for k in &keys {
                        set.insert(k.clone());
                    }
                    return InFlight { guard: self, keys };
                }
            }
            listener.await;
        }
    }

    /// An entry as the log keeps it: the text dropped unless `SEND_LOG_BODIES` is on, the time
    /// set if the caller left it 0. For callers that append it inside their own commit.
    pub fn prepare(&self, mut entry: Entry) -> Entry {
        // A text no send could carry is not kept, whatever the setting.
        if !self.policy.log_bodies
            || entry
                .body
                .as_deref()
                .is_some_and(|b| b.chars().nth(MAX_LOGGED_BODY_CHARS).is_some())
        {
            entry.body = None;
        }
        // What a caller typed is kept only as long as a real value can be (a refused call may
        // carry anything, up to the request size limit).
        entry.recipient = clip(&entry.recipient, MAX_LOGGED_FIELD_CHARS);
        entry.result = clip(&entry.result, MAX_LOGGED_RESULT_CHARS);
        entry.idempotency_key = entry
            .idempotency_key
            .map(|k| clip(&k, MAX_LOGGED_FIELD_CHARS));
        if entry.at_ms == 0 {
            entry.at_ms = crate::store::idempotency::now_ms();
        }
        entry
    }

    /// Appends one attempt to the send log (the text only when `SEND_LOG_BODIES` is on). A
    /// failure to log is logged, never an error for the caller: the send itself is decided.
    pub async fn log(&self, store: &Store, entry: Entry) {
        let entry = self.prepare(entry);
        let result = store
            .write(move |txn| crate::store::send_log::append(txn, &entry).map(|_| ()))
            .await;
        if let Err(e) = result {
            log::warn!("could not write the send log: {e}");
        }
    }
}

/// The longest text the send log keeps (with `SEND_LOG_BODIES`): WhatsApp's limit for one
/// text message (`send.rs`'s `MAX_TEXT_CHARS`).
const MAX_LOGGED_BODY_CHARS: usize = 65_536;
/// The longest recipient or idempotency key the log keeps, in characters.
const MAX_LOGGED_FIELD_CHARS: usize = 256;
/// The longest result (`error:<message>`) the log keeps, in characters.
const MAX_LOGGED_RESULT_CHARS: usize = 1_024;

/// `s` cut to at most `max` characters (at a character boundary), marked with `…` when cut.
pub fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some((at, _)) => {
            let keep = s[..at]
                .char_indices()
                .nth(max.saturating_sub(1))
                .map_or(at, |(i, _)| i);
            format!("{}…", &s[..keep])
        }
    }
}

/// The `refused:<rule>` results of the send log.
pub const REFUSED_READ_ONLY: &str = "refused:read_only";
pub const REFUSED_ALLOWLIST: &str = "refused:allowlist";
pub const REFUSED_RATE: &str = "refused:rate_limit";

/// One send-log entry as JSON (for `GET /api/send-log`): `{seq, timestamp (ms), tool,
/// recipient, bytes, result, messageId, idempotencyKey}`, plus `body` when it was kept.
pub fn entry_value(seq: u64, e: &Entry) -> Value {
    let opt = |v: &Option<String>| v.clone().map(json::s).unwrap_or(Value::Null);
    let mut v = json::obj([
        ("seq", json::int(i64::try_from(seq).unwrap_or(i64::MAX))),
        (
            "timestamp",
            json::int(i64::try_from(e.at_ms).unwrap_or(i64::MAX)),
        ),
        ("tool", json::s(e.tool.clone())),
        ("recipient", json::s(e.recipient.clone())),
        (
            "bytes",
            json::int(i64::try_from(e.bytes).unwrap_or(i64::MAX)),
        ),
        ("result", json::s(e.result.clone())),
        ("messageId", opt(&e.message_id)),
        ("idempotencyKey", opt(&e.idempotency_key)),
    ]);
    if let (Some(body), Value::Object(o)) = (&e.body, &mut v) {
        o.insert("body".into(), json::s(body.clone()));
    }
    v
}

/// The newest `limit` send-log entries as a JSON array, newest first.
pub async fn newest_entries(store: &Store, limit: usize) -> crate::store::Result<Value> {
    let rows = store
        .read(move |txn| crate::store::send_log::newest(txn, limit))
        .await?;
    Ok(json::arr(rows.iter().map(|(seq, e)| entry_value(*seq, e))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(policy: SendPolicy) -> SendGuard {
        SendGuard::new(policy)
    }

    #[test]
    fn the_allowlist_accepts_any_identity_of_a_listed_person() {
        let g = guard(SendPolicy {
            allowlist: Some(crate::config::parse_allowlist("+44 7700 900123,1-2@g.us").unwrap()),
            ..SendPolicy::default()
        });
        let person = vec![
            "447700900123@s.whatsapp.net".to_string(),
            "999@lid".to_string(),
        ];
        assert_eq!(g.allowlist_refusal("999@lid", &person), None);
        assert_eq!(g.allowlist_refusal("1-2@g.us", &["1-2@g.us".into()]), None);
        let refused = g
            .allowlist_refusal(
                "447700900999@s.whatsapp.net",
                &["447700900999@s.whatsapp.net".into()],
            )
            .unwrap();
        assert!(refused.contains("SEND_ALLOWLIST"), "{refused}");
        assert!(refused.contains("447700900999@s.whatsapp.net"), "{refused}");
        // No list: everyone.
        assert_eq!(
            guard(SendPolicy::default()).allowlist_refusal("x", &[]),
            None
        );
    }

    #[test]
    fn the_rate_limit_is_a_rolling_minute_and_says_how_long_to_wait() {
        let g = guard(SendPolicy {
            rate_per_min: 2,
            ..SendPolicy::default()
        });
        let t = 1_000_000;
        assert_eq!(g.take_rate_slot(t), Ok(()));
        assert_eq!(g.take_rate_slot(t + 10_000), Ok(()));
        // The third within the minute waits until the first is a minute old: 59.5 s → 60.
        assert_eq!(g.take_rate_slot(t + 500), Err(60));
        assert_eq!(g.take_rate_slot(t + 59_001), Err(1));
        assert_eq!(g.take_rate_slot(t + 60_000), Ok(()));
        assert!(g.rate_refusal(7).contains("Wait 7 seconds"));
        // 0 = no limit.
        let free = guard(SendPolicy {
            rate_per_min: 0,
            ..SendPolicy::default()
        });
        for i in 0..1000 {
            assert_eq!(free.take_rate_slot(t + i), Ok(()));
        }
    }

    #[test]
    fn identical_sends_run_one_after_the_other() {
        let g = guard(SendPolicy::default());
        smol::block_on(async {
            let first = g.begin(vec!["k".into()]).await;
            let other = g.begin(vec!["other".into()]).await;
            let waiting = g.begin(vec!["k".into()]);
            let mut waiting = std::pin::pin!(waiting);
            assert!(
                futures_lite::future::poll_once(waiting.as_mut())
                    .await
                    .is_none()
            );
            drop(first);
            let _second = waiting.await;
            drop(other);
        });
    }

    #[test]
    fn send_log_entries_as_json_hide_an_absent_body() {
        let e = Entry {
            at_ms: 5,
            tool: "send_message".into(),
            recipient: "1@s.whatsapp.net".into(),
            bytes: 3,
            result: REFUSED_RATE.into(),
            message_id: None,
            idempotency_key: Some("k".into()),
            body: None,
        };
        let text = json::to_pretty(&entry_value(9, &e));
        assert!(
            text.contains("\"result\": \"refused:rate_limit\""),
            "{text}"
        );
        assert!(text.contains("\"messageId\": null"), "{text}");
        assert!(!text.contains("body"), "{text}");
        let with_body = Entry {
            body: Some("hey".into()),
            ..e
        };
        assert!(json::to_pretty(&entry_value(9, &with_body)).contains("\"body\": \"hey\""));
    }

    #[test]
    fn clipping_keeps_whole_characters() {
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("abcd", 3), "ab…");
        assert_eq!(clip("ééééé", 3), "éé…");
        assert_eq!(clip("👍👍👍👍", 2), "👍…");
        assert_eq!(clip("", 0), "");
        assert_eq!(clip("x", 0), "…");
        let g = guard(SendPolicy {
            log_bodies: true,
            ..SendPolicy::default()
        });
        let e = g.prepare(Entry {
            recipient: "ü".repeat(10_000),
            idempotency_key: Some("k".repeat(10_000)),
            result: format!("error:{}", "x".repeat(10_000)),
            body: Some("b".repeat(MAX_LOGGED_BODY_CHARS + 1)),
            ..Entry::default()
        });
        assert_eq!(e.recipient.chars().count(), MAX_LOGGED_FIELD_CHARS);
        assert_eq!(e.result.chars().count(), MAX_LOGGED_RESULT_CHARS);
        assert!(e.idempotency_key.unwrap().ends_with('…'));
        assert_eq!(e.body, None);
        let kept = g.prepare(Entry {
            body: Some("b".repeat(MAX_LOGGED_BODY_CHARS)),
            ..Entry::default()
        });
        assert!(kept.body.is_some());
    }

    #[test]
    fn the_log_drops_bodies_unless_asked() {
        let store = Store::open_in_memory().unwrap();
        let entry = Entry {
            tool: "send_message".into(),
            body: Some("secret".into()),
            ..Entry::default()
        };
        smol::block_on(async {
            guard(SendPolicy::default())
                .log(&store, entry.clone())
                .await;
            guard(SendPolicy {
                log_bodies: true,
                ..SendPolicy::default()
            })
            .log(&store, entry)
            .await;
        });
        let rows = store
            .read_blocking(|t| crate::store::send_log::newest(t, 10))
            .unwrap();
        assert_eq!(rows[0].1.body.as_deref(), Some("secret"));
        assert_eq!(rows[1].1.body, None);
        assert!(rows[1].1.at_ms > 0);
    }
}
