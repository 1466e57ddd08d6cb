//! `wait_for_messages` (declared in `messages.rs`): block until new incoming messages are stored,
//! or until a timeout.
//!
//! Owns: the wait loop: read what arrived after the cursor, else sleep until the store commits
//! again (`Store::wait_for_change`), the timeout or the next progress tick (every 10 s when the
//! caller sent a progress token). Must not: write, or know the transport: a cancelled request
//! drops this future, which ends the wait (nothing is left behind).
//!
//! Cursors come from `store::arrivals` (`<seq>.<floor ms>`): messages count by when they were
//! stored, not by their timestamps, so nothing is missed or repeated between calls. Only incoming
//! messages count (not our own, not reactions or system notices). A `since` ahead of the store
//! (a sequence it has not reached, or a time floor in the future) is refused: it cannot be a
//! cursor this server returned, and it would hide every message.

use super::views::{self, Views};
use super::{ToolCall, ToolResult};
use crate::json::{self, Value};
use crate::store::arrivals::{self, Arrivals, Cursor};
use crate::store::idempotency::now_ms;
use crate::store::queries::Lookup;
use std::time::{Duration, Instant};

/// Messages returned at most by one call; the cursor then points after the last one returned.
const MAX_MESSAGES: usize = 200;
/// Seconds between progress notifications.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// `timeout_secs` bounds (SPEC §9).
const DEFAULT_TIMEOUT_SECS: i64 = 25;
const MAX_TIMEOUT_SECS: i64 = 55;

/// Message types that are not conversation.
fn counts(kind: &str) -> bool {
    kind != "protocolMessage" && kind != "reactionMessage"
}

/// What one look at the store found: the answer when something arrived, and the cursor.
fn look(
    txn: &redb::ReadTransaction,
    cursor: Cursor,
    only: Option<&[String]>,
) -> crate::store::Result<(Option<Value>, Cursor)> {
    let Arrivals { messages, next } =
        arrivals::arrived_since(txn, cursor, now_ms(), MAX_MESSAGES, &mut |chat, row| {
            !row.from_me && counts(&row.kind) && only.is_none_or(|o| o.iter().any(|j| j == chat))
        })?;
    if messages.is_empty() {
        return Ok((None, next));
    }
    let lk = Lookup::new(txn)?;
    let mut v = Views::new(txn, &lk)?;
    let mut out = Vec::with_capacity(messages.len());
    for m in &messages {
        out.push(v.message(m)?);
    }
    Ok((Some(answer(json::arr(out), next)), next))
}

fn answer(messages: Value, cursor: Cursor) -> Value {
    json::obj([("messages", messages), ("cursor", json::s(cursor.encode()))])
}

pub async fn wait_for_messages(call: ToolCall) -> ToolResult {
    let timeout_secs = call
        .args
        .int("timeout_secs")
        .unwrap_or(DEFAULT_TIMEOUT_SECS)
        .clamp(1, MAX_TIMEOUT_SECS);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(timeout_secs as u64);
    let chat = call
        .args
        .str("chat_jid")
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string);
    let since = call
        .args
        .str("since")
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string);
    let start_cursor = match &since {
        Some(s) => match Cursor::decode(s) {
            Some(c) => Some(c),
            None => {
                return ToolResult::error(format!(
                    "Invalid since: \"{s}\" is not a cursor. Pass the cursor a previous \
                     wait_for_messages call returned, or leave since out to wait for messages \
                     arriving from now on."
                ));
            }
        },
        None => None,
    };
    let store = call.env.store.clone();
    let setup = store
        .read(move |txn| {
            let only = match &chat {
                None => None,
                Some(raw) => match views::parse_jid("chat_jid", raw) {
                    Ok(j) => {
                        let lk = Lookup::new(txn)?;
                        let mut v = Views::new(txn, &lk)?;
                        Some(v.identities(&j)?.1)
                    }
                    Err(e) => return Ok(Err(e)),
                },
            };
            let now = arrivals::cursor_now(txn, now_ms())?;
            let cursor = match start_cursor {
                // Every cursor this store hands out lies at or before its present: one from the
                // future was made up (or belongs to another store) and would hide every message
                // until the store caught up with it.
                Some(c) if c.seq > now.seq || c.floor_ms > now_ms() => {
                    return Ok(Err(format!(
                        "Invalid since: \"{}\" is ahead of this server's messages, so it is not \
                         a cursor this server returned. Leave since out to wait for messages \
                         arriving from now on.",
                        c.encode()
                    )));
                }
                Some(c) => c,
                None => now,
            };
            Ok(Ok((only, cursor)))
        })
        .await;
    let (only, mut cursor) = match setup {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return ToolResult::error(e),
        Err(e) => return ToolResult::error(format!("Error waiting for messages: {e}")),
    };
    let mut next_progress = started + PROGRESS_EVERY;
    loop {
        let seen = store.change_generation();
        let only_now = only.clone();
        let looked = store
            .read(move |txn| look(txn, cursor, only_now.as_deref()))
            .await;
        match looked {
            Ok((Some(found), _)) => return ToolResult::json(&found),
            Ok((None, next)) => cursor = next,
            Err(e) => return ToolResult::error(format!("Error waiting for messages: {e}")),
        }
        let now = Instant::now();
        if now >= deadline {
            return ToolResult::json(&answer(json::arr([]), cursor));
        }
        let wake_at = deadline.min(next_progress);
        futures_lite::future::or(
            async {
                store.wait_for_change(seen).await;
            },
            async {
                smol::Timer::at(wake_at).await;
            },
        )
        .await;
        if Instant::now() >= next_progress {
            let elapsed = started.elapsed().as_secs_f64().floor();
            call.progress.report(
                elapsed,
                Some(timeout_secs as f64),
                Some("waiting for new messages"),
            );
            next_progress += PROGRESS_EVERY;
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::json::{self, Value};
    use crate::store::Store;
    use crate::store::writes::{NewMessage, put_message};
    use crate::tools::{ProgressSink, Registry, ToolEnv, ToolResult};
    use std::sync::Arc;

    struct NoProgress;
    impl ProgressSink for NoProgress {
        fn report(&self, _: f64, _: Option<f64>, _: Option<&str>) {}
    }

    fn registry(store: &Store) -> Registry {
        Registry::new(ToolEnv {
            read_only: false,
            auto_select_contact: false,
            store: store.clone(),
            engine: None,
            idempotency_ttl_ms: crate::store::idempotency::DEFAULT_TTL_MS,
            send_guard: Default::default(),
        })
    }

    fn wait(reg: &Registry, args: &str) -> Value {
        let args = json::parse(args).unwrap();
        let r: ToolResult =
            smol::block_on(reg.call("wait_for_messages", Some(&args), Arc::new(NoProgress)))
                .unwrap();
        assert!(!r.is_error, "{r:?}");
        match &r.content[0] {
            crate::tools::Content::Text(t) => json::parse(t).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    fn put(store: &Store, chat: &str, id: &str, from_me: bool) {
        let m = NewMessage {
            chat_jid: chat.into(),
            id: id.into(),
            from_me,
            timestamp_ms: crate::store::idempotency::now_ms(),
            body: format!("text {id}"),
            kind: "conversation".into(),
            ..NewMessage::default()
        };
        store
            .write_blocking(move |txn| put_message(txn, &m).map(|_| ()))
            .unwrap();
    }

    #[test]
    fn a_stored_message_ends_the_wait_and_the_cursor_moves_past_it() {
        let store = Store::open_in_memory().unwrap();
        let reg = Arc::new(registry(&store));
        let first = wait(&reg, r#"{"timeout_secs":1}"#);
        let cursor = json::get_str(&first, "cursor").unwrap().to_string();
        let args = format!(
            r#"{{"timeout_secs":20,"since":"{cursor}","chat_jid":"447700900002@s.whatsapp.net"}}"#
        );
        let waiting = {
            let reg = reg.clone();
            std::thread::spawn(move || wait(&reg, &args))
        };
        // Our own message and another chat's do not end it; the peer's message in the chat does.
        put(&store, "447700900002@s.whatsapp.net", "MINE", true);
        put(&store, "447700900009@s.whatsapp.net", "OTHER", false);
        put(&store, "447700900002@s.whatsapp.net", "THEIRS", false);
        let got = waiting.join().unwrap();
        let messages = match json::get(&got, "messages") {
            Some(Value::Array(a)) => a.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(messages.len(), 1, "{}", json::to_pretty(&got));
        assert_eq!(
            json::get_str(&messages[0], "id"),
            Some("447700900002@s.whatsapp.net:THEIRS")
        );
        assert_eq!(
            json::get(&messages[0], "fromMe")
                .map(json::to_string)
                .as_deref(),
            Some("false")
        );
        // From the new cursor, the same message is not returned again.
        let next = json::get_str(&got, "cursor").unwrap().to_string();
        let again = wait(&reg, &format!(r#"{{"timeout_secs":1,"since":"{next}"}}"#));
        assert!(matches!(json::get(&again, "messages"), Some(Value::Array(a)) if a.is_empty()));
        // Any chat: the earlier cursor sees the other chat's message too.
        let any = wait(&reg, &format!(r#"{{"timeout_secs":1,"since":"{cursor}"}}"#));
        assert!(matches!(json::get(&any, "messages"), Some(Value::Array(a)) if a.len() == 2));
    }
}
