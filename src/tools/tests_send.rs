//! Unit tests of the sending tools over a fake engine ([`FakeWire`]) and a real in-memory store:
//! recipient resolution, fingerprints, the duplicate window, idempotency replay and misuse, the
//! pending-id retry, the safety refusals and their send-log entries, quoting and mark_as_read.

use super::ToolEnv;
use super::safety::{SendGuard, SendPolicy};
use super::send::*;
use super::views::Views;
use crate::json;
use crate::store::Store;
use crate::store::queries::Lookup;
use crate::store::writes::{self, ContactUpdate, NewMessage};
use std::sync::{Arc, Mutex};

const ALICE: &str = "447700900001@s.whatsapp.net";
const ALICE_LID: &str = "111111@lid";
const BOB: &str = "447700900002@s.whatsapp.net";
const BOBBY: &str = "447700900003@s.whatsapp.net";
const GROUP: &str = "120363000000000001@g.us";
const OWN: &str = "447700900000@s.whatsapp.net";

/// `(to, text, id, quote)` of a send.
type SentText = (String, String, String, Option<QuoteArg>);
/// `(chat, target id, target sender, target from me, emoji)` of a reaction.
type SentReaction = (String, String, Option<String>, bool, String);
/// `(chat, [(id, sender)])` of a receipt call.
type SentReceipts = (String, Vec<(String, Option<String>)>);

/// A fake engine: records what it was asked to do.
#[derive(Default)]
struct FakeWire {
    offline: bool,
    fail: Mutex<Option<String>>,
    next: Mutex<u32>,
    sent: Mutex<Vec<SentText>>,
    reactions: Mutex<Vec<SentReaction>>,
    receipts: Mutex<Vec<SentReceipts>>,
}

impl Wire for FakeWire {
    fn not_connected(&self) -> Option<String> {
        self.offline
            .then(|| "WhatsApp is not connected (state: connecting)".to_string())
    }
    fn new_message_id(&self) -> String {
        let mut n = self.next.lock().unwrap();
        *n += 1;
        format!("3EB0FAKE{n}")
    }
    fn send_text<'a>(
        &'a self,
        to: &'a str,
        text: &'a str,
        id: &'a str,
        quote: Option<&'a QuoteArg>,
    ) -> WireFuture<'a, SentArg> {
        Box::pin(async move {
            if let Some(e) = self.fail.lock().unwrap().clone() {
                return Err(e);
            }
            self.sent.lock().unwrap().push((
                to.to_string(),
                text.to_string(),
                id.to_string(),
                quote.cloned(),
            ));
            Ok(SentArg {
                id: id.to_string(),
                chat_jid: to.to_string(),
                timestamp_ms: 1_800_000_000_123,
            })
        })
    }
    fn send_reaction<'a>(
        &'a self,
        chat: &'a str,
        target_id: &'a str,
        target_sender: Option<&'a str>,
        target_from_me: bool,
        emoji: &'a str,
    ) -> WireFuture<'a, SentArg> {
        Box::pin(async move {
            self.reactions.lock().unwrap().push((
                chat.to_string(),
                target_id.to_string(),
                target_sender.map(str::to_string),
                target_from_me,
                emoji.to_string(),
            ));
            Ok(SentArg {
                id: "R1".into(),
                chat_jid: chat.to_string(),
                timestamp_ms: 5,
            })
        })
    }
    fn mark_read<'a>(
        &'a self,
        chat: &'a str,
        messages: &'a [(String, Option<String>)],
    ) -> WireFuture<'a, ()> {
        Box::pin(async move {
            self.receipts
                .lock()
                .unwrap()
                .push((chat.to_string(), messages.to_vec()));
            Ok(())
        })
    }
}

fn msg(chat: &str, id: &str, ts: u64, from_me: bool, sender: &str, body: &str) -> NewMessage {
    NewMessage {
        chat_jid: chat.into(),
        id: id.into(),
        sender: sender.into(),
        from_me,
        timestamp_ms: ts,
        body: body.into(),
        kind: "conversation".into(),
        ..NewMessage::default()
    }
}

fn seeded() -> Store {
    let store = Store::open_in_memory().unwrap();
    store
        .write_blocking(|txn| {
            writes::set_own_jid(txn, OWN)?;
            for (jid, name) in [
                (ALICE, "Alice Smith"),
                (BOB, "Bob Jones"),
                (BOBBY, "Bobby Jones"),
            ] {
                writes::upsert_contact(
                    txn,
                    &ContactUpdate {
                        jid: jid.into(),
                        name: Some(name.into()),
                        ..ContactUpdate::default()
                    },
                )?;
            }
            writes::put_mapping(txn, ALICE_LID, ALICE)?;
            writes::put_message(txn, &msg(BOB, "B1", 1_000, false, "", "hello there"))?;
            writes::put_message(txn, &msg(BOB, "B2", 2_000, false, "", "are you there?"))?;
            writes::put_message(txn, &msg(GROUP, "G1", 3_000, false, BOBBY, "group hi"))?;
            Ok(())
        })
        .unwrap();
    store
}

fn env(store: &Store, policy: SendPolicy) -> ToolEnv {
    ToolEnv {
        read_only: false,
        auto_select_contact: false,
        store: store.clone(),
        engine: None,
        idempotency_ttl_ms: crate::store::idempotency::DEFAULT_TTL_MS,
        send_guard: Arc::new(SendGuard::new(policy)),
    }
}

/// The default policy without the duplicate-send window.
fn no_dedup() -> SendPolicy {
    SendPolicy {
        dedup_window_ms: 0,
        ..SendPolicy::default()
    }
}

fn resolve(store: &Store, raw: &str) -> Result<Recipient, String> {
    let raw = raw.to_string();
    store
        .read_blocking(move |txn| {
            let lk = Lookup::new(txn)?;
            let mut v = Views::new(txn, &lk)?;
            resolve_recipient(&mut v, "recipient_jid", &raw)
        })
        .unwrap()
}

fn text(r: &super::ToolResult) -> String {
    match &r.content[0] {
        super::Content::Text(t) => t.clone(),
        other => panic!("not text: {other:?}"),
    }
}

fn answer(r: &super::ToolResult) -> json::Value {
    assert!(!r.is_error, "{}", text(r));
    json::parse(&text(r)).unwrap()
}

fn flag(v: &json::Value, key: &str) -> Option<bool> {
    match json::get(v, key) {
        Some(json::Value::Bool(b)) => Some(*b),
        _ => None,
    }
}

fn req(to: &str, body: &str, key: Option<&str>) -> SendRequest {
    SendRequest {
        recipient: to.into(),
        text: body.into(),
        key: key.map(str::to_string),
        reply_to: None,
    }
}

fn send(env: &ToolEnv, wire: &FakeWire, r: SendRequest) -> super::ToolResult {
    smol::block_on(send_text_checked(env, Some(wire), r))
}

fn log(store: &Store) -> Vec<crate::store::send_log::Entry> {
    store
        .read_blocking(|t| crate::store::send_log::newest(t, 100))
        .unwrap()
        .into_iter()
        .map(|(_, e)| e)
        .collect()
}

#[test]
fn recipients_resolve_from_jids_numbers_lids_and_names() {
    let store = seeded();
    // A phone JID mapped to a LID is sent to by LID, shown by phone.
    let r = resolve(&store, ALICE).unwrap();
    assert_eq!((r.to.as_str(), r.shown.as_str()), (ALICE_LID, ALICE));
    assert!(r.identities.contains(&ALICE_LID.to_string()));
    let r = resolve(&store, ALICE_LID).unwrap();
    assert_eq!((r.to.as_str(), r.shown.as_str()), (ALICE_LID, ALICE));
    let r = resolve(&store, "+44 7700 900002").unwrap();
    assert_eq!((r.to.as_str(), r.shown.as_str()), (BOB, BOB));
    let r = resolve(&store, "447700900002:3@s.whatsapp.net").unwrap();
    assert_eq!(r.to, BOB);
    let r = resolve(&store, "555@lid").unwrap();
    assert_eq!(r.to, "555@lid");
    assert_eq!(resolve(&store, GROUP).unwrap().to, GROUP);
    // A name: exact and unique.
    assert_eq!(resolve(&store, "alice smith").unwrap().to, ALICE_LID);
    assert_eq!(resolve(&store, "Bobby Jones").unwrap().to, BOBBY);
    // Ambiguous: both Bobs are listed.
    let e = resolve(&store, "jones").unwrap_err();
    assert!(
        e.contains(BOB) && e.contains(BOBBY) && e.contains("matches 2"),
        "{e}"
    );
    let e = resolve(&store, "nobody here").unwrap_err();
    assert!(e.contains("No contact matches"), "{e}");
    assert!(resolve(&store, "not@a@jid").is_err());
}

#[test]
fn fingerprints_are_stable_and_distinguish_their_inputs() {
    let a = dedup_fingerprint(BOB, "hi");
    assert_eq!(a.len(), 64);
    assert_eq!(a, dedup_fingerprint(BOB, "hi"));
    assert_ne!(a, dedup_fingerprint(BOB, "hi "));
    assert_ne!(a, dedup_fingerprint(ALICE, "hi"));
    // The key fingerprint adds the quote.
    assert_eq!(key_fingerprint(BOB, "hi", None), a);
    assert_ne!(key_fingerprint(BOB, "hi", Some("B1")), a);
    // SHA-256 of "x\ny", checked against a known value.
    assert_eq!(
        dedup_fingerprint("x", "y"),
        "9ab9de25768ac172235e119b76362ecddad33878fe9a7792cdddbe47236f9a87"
    );
    for (state, text) in [
        (
            SendState::Pending { id: "3EB0".into() },
            r#"{"state":"pending","id":"3EB0"}"#,
        ),
        (
            SendState::Sent {
                message_id: format!("{BOB}:3EB0"),
                timestamp_ms: 7,
            },
            r#"{"state":"sent","messageId":"447700900002@s.whatsapp.net:3EB0","timestamp":7}"#,
        ),
    ] {
        assert_eq!(SendState::decode(&state.encode()), Some(state.clone()));
        assert_eq!(SendState::decode(text), Some(state));
    }
    assert_eq!(SendState::decode("nonsense"), None);
}

#[test]
fn a_send_answers_with_the_original_keys_and_the_window_deduplicates() {
    let store = seeded();
    let env = env(&store, SendPolicy::default());
    let wire = FakeWire::default();
    let first = answer(&send(&env, &wire, req(BOB, "ping", None)));
    assert_eq!(flag(&first, "success"), Some(true));
    assert_eq!(
        json::get_str(&first, "message"),
        Some("Message sent successfully.")
    );
    assert_eq!(
        json::get_str(&first, "messageId"),
        Some(format!("{BOB}:3EB0FAKE1").as_str())
    );
    assert_eq!(
        json::get(&first, "timestamp").and_then(json::as_i64),
        Some(1_800_000_000_123)
    );
    assert_eq!(flag(&first, "deduplicated"), Some(false));
    assert!(matches!(
        json::get(&first, "idempotencyKey"),
        Some(json::Value::Null)
    ));
    // The same text to the same person inside the window: the first answer, nothing sent.
    let again = answer(&send(&env, &wire, req("+447700900002", "ping", None)));
    assert_eq!(flag(&again, "deduplicated"), Some(true));
    assert_eq!(
        json::get_str(&again, "messageId"),
        json::get_str(&first, "messageId")
    );
    assert_eq!(wire.sent.lock().unwrap().len(), 1);
    // Another text is sent.
    answer(&send(&env, &wire, req(BOB, "pong", None)));
    assert_eq!(wire.sent.lock().unwrap().len(), 2);
    let results: Vec<String> = log(&store).into_iter().map(|e| e.result).collect();
    assert_eq!(results, ["sent", "deduplicated", "sent"]);
    // A duplicate with a fresh key: the key now names the first send, beyond the window too.
    let keyed = answer(&send(&env, &wire, req(BOB, "ping", Some("late-key"))));
    assert_eq!(flag(&keyed, "deduplicated"), Some(true));
    assert_eq!(json::get_str(&keyed, "idempotencyKey"), Some("late-key"));
    let record = store
        .read_blocking(|t| crate::store::idempotency::get(t, "late-key", 0))
        .unwrap()
        .expect("the key is stored");
    assert_eq!(
        SendState::decode(&record.result),
        Some(SendState::Sent {
            message_id: format!("{BOB}:3EB0FAKE1"),
            timestamp_ms: 1_800_000_000_123
        })
    );
    assert_eq!(wire.sent.lock().unwrap().len(), 2);
}

#[test]
fn a_zero_window_sends_every_time() {
    let store = seeded();
    let env = env(&store, no_dedup());
    let wire = FakeWire::default();
    for _ in 0..3 {
        let a = answer(&send(&env, &wire, req(BOB, "same", None)));
        assert_eq!(flag(&a, "deduplicated"), Some(false));
    }
    assert_eq!(wire.sent.lock().unwrap().len(), 3);
}

#[test]
fn an_idempotency_key_replays_and_refuses_other_parameters() {
    let store = seeded();
    let env = env(&store, no_dedup());
    let wire = FakeWire::default();
    let first = answer(&send(&env, &wire, req(BOB, "once", Some("k1"))));
    assert_eq!(json::get_str(&first, "idempotencyKey"), Some("k1"));
    let replay = answer(&send(&env, &wire, req(BOB, "once", Some("k1"))));
    assert_eq!(flag(&replay, "deduplicated"), Some(true));
    assert_eq!(
        json::get_str(&replay, "messageId"),
        json::get_str(&first, "messageId")
    );
    assert_eq!(wire.sent.lock().unwrap().len(), 1);
    let misuse = send(&env, &wire, req(BOB, "different", Some("k1")));
    assert!(misuse.is_error);
    assert!(
        text(&misuse)
            .contains("idempotency_key was already used with different send_message parameters"),
        "{}",
        text(&misuse)
    );
    // A key used by another operation.
    store
        .write_blocking(|txn| {
            crate::store::idempotency::put(
                txn,
                "k2",
                &crate::store::idempotency::Record {
                    op: "logout".into(),
                    fingerprint: "logout".into(),
                    result: "done".into(),
                    expires_at: u64::MAX,
                },
            )
        })
        .unwrap();
    let other = send(&env, &wire, req(BOB, "x", Some("k2")));
    assert!(
        text(&other).contains("already used for logout"),
        "{}",
        text(&other)
    );
    assert_eq!(wire.sent.lock().unwrap().len(), 1);
}

#[test]
fn a_pending_send_is_retried_with_the_same_id() {
    let store = seeded();
    let env = env(&store, SendPolicy::default());
    let wire = FakeWire::default();
    // The first try fails after its id was stored as pending (as after a crash).
    *wire.fail.lock().unwrap() = Some("the ack never came".into());
    let failed = send(&env, &wire, req(BOB, "retry me", Some("k")));
    assert!(failed.is_error);
    assert!(text(&failed).contains("the ack never came"));
    *wire.fail.lock().unwrap() = None;
    let ok = answer(&send(&env, &wire, req(BOB, "retry me", Some("k"))));
    assert_eq!(flag(&ok, "deduplicated"), Some(false));
    let sent = wire.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].2, "3EB0FAKE1", "the retry reuses the pending id");
    assert_eq!(*wire.next.lock().unwrap(), 1, "no second id was made");
    // Without a key, the duplicate window's pending record does the same.
    *wire.fail.lock().unwrap() = Some("down".into());
    assert!(send(&env, &wire, req(BOB, "no key", None)).is_error);
    *wire.fail.lock().unwrap() = None;
    answer(&send(&env, &wire, req(BOB, "no key", None)));
    assert_eq!(wire.sent.lock().unwrap()[1].2, "3EB0FAKE2");
    let entries = log(&store);
    assert_eq!(entries[3].result, "error:the ack never came");
    assert_eq!(entries[3].message_id.as_deref(), Some("3EB0FAKE1"));
}

#[test]
fn safety_refusals_are_clear_and_logged_without_the_text() {
    let store = seeded();
    let env = env(
        &store,
        SendPolicy {
            allowlist: Some(vec![BOB.to_string(), ALICE_LID.to_string()]),
            rate_per_min: 2,
            dedup_window_ms: 0,
            log_bodies: false,
        },
    );
    let wire = FakeWire::default();
    let refused = send(&env, &wire, req(BOBBY, "secret words", None));
    assert!(refused.is_error);
    assert!(
        text(&refused).contains("SEND_ALLOWLIST"),
        "{}",
        text(&refused)
    );
    // Alice is listed by LID; her phone JID reaches her too.
    answer(&send(&env, &wire, req(ALICE, "one", None)));
    answer(&send(&env, &wire, req(BOB, "two", None)));
    let limited = send(&env, &wire, req(BOB, "three", None));
    assert!(limited.is_error);
    let t = text(&limited);
    assert!(
        t.contains("SEND_RATE_PER_MIN") && t.contains("Wait "),
        "{t}"
    );
    assert_eq!(wire.sent.lock().unwrap().len(), 2);
    assert_eq!(wire.sent.lock().unwrap()[0].0, ALICE_LID);
    let entries = log(&store);
    let results: Vec<&str> = entries.iter().map(|e| e.result.as_str()).collect();
    assert_eq!(
        results,
        ["refused:rate_limit", "sent", "sent", "refused:allowlist"]
    );
    assert!(entries.iter().all(|e| e.body.is_none()));
    assert_eq!(entries[3].recipient, BOBBY);
    assert_eq!(entries[3].bytes, "secret words".len() as u64);
    // Not connected: an error that says so, logged.
    let offline = FakeWire {
        offline: true,
        ..FakeWire::default()
    };
    let env2 = self::env(&store, SendPolicy::default());
    let r = send(&env2, &offline, req(BOB, "hello?", None));
    assert!(text(&r).contains("not connected"), "{}", text(&r));
    assert!(
        log(&store)[0]
            .result
            .starts_with("error:WhatsApp is not connected")
    );
}

#[test]
fn reply_to_quotes_a_message_of_the_same_chat() {
    let store = seeded();
    let env = env(&store, SendPolicy::default());
    let wire = FakeWire::default();
    let mut r = req(BOB, "yes!", None);
    r.reply_to = Some(format!("{BOB}:B2"));
    answer(&send(&env, &wire, r));
    let mut r = req(BOB, "and again", None);
    r.reply_to = Some("B1".into());
    answer(&send(&env, &wire, r));
    let sent = wire.sent.lock().unwrap().clone();
    assert_eq!(
        sent[0].3,
        Some(QuoteArg {
            id: "B2".into(),
            sender_jid: BOB.into(),
            from_me: false,
            text: "are you there?".into(),
        })
    );
    assert_eq!(sent[1].3.as_ref().map(|q| q.id.as_str()), Some("B1"));
    // A message of another chat, or an unknown one, is refused before anything is sent.
    let mut r = req(BOB, "x", None);
    r.reply_to = Some(format!("{GROUP}:G1"));
    let e = send(&env, &wire, r);
    assert!(text(&e).contains("another chat"), "{}", text(&e));
    let mut r = req(BOB, "x", None);
    r.reply_to = Some("NOPE".into());
    assert!(text(&send(&env, &wire, r)).contains("no stored message"));
    assert_eq!(wire.sent.lock().unwrap().len(), 2);
}

#[test]
fn reactions_name_the_group_author() {
    let store = seeded();
    let env = env(&store, SendPolicy::default());
    let wire = FakeWire::default();
    let r = smol::block_on(react_checked(
        &env,
        Some(&wire),
        GROUP,
        &format!("{GROUP}:G1"),
        "👍",
    ));
    let a = answer(&r);
    assert_eq!(json::get_str(&a, "message"), Some("Reaction sent."));
    let r = smol::block_on(react_checked(&env, Some(&wire), BOB, "B1", ""));
    assert_eq!(
        json::get_str(&answer(&r), "message"),
        Some("Reaction removed.")
    );
    let got = wire.reactions.lock().unwrap().clone();
    assert_eq!(
        got[0],
        (
            GROUP.into(),
            "G1".into(),
            Some(BOBBY.into()),
            false,
            "👍".into()
        )
    );
    assert_eq!(
        got[1],
        (BOB.into(), "B1".into(), None, false, String::new())
    );
    let results: Vec<String> = log(&store).into_iter().map(|e| e.result).collect();
    assert_eq!(results, ["sent", "sent"]);
}

#[test]
fn mark_as_read_sends_receipts_then_clears_the_unread_count() {
    let store = seeded();
    let env = env(&store, SendPolicy::default());
    let wire = FakeWire::default();
    let unread = |store: &Store| {
        store
            .read_blocking(|t| crate::store::queries::chat(t, BOB))
            .unwrap()
            .unwrap()
            .unread
    };
    assert_eq!(unread(&store), 2);
    // One message first: the count drops to one.
    let r = smol::block_on(mark_checked(
        &env,
        Some(&wire),
        BOB,
        Some(vec!["B1".into()]),
    ));
    let a = answer(&r);
    assert_eq!(json::get(&a, "markedCount").and_then(json::as_i64), Some(1));
    assert_eq!(unread(&store), 1);
    // Then the rest.
    let r = smol::block_on(mark_checked(&env, Some(&wire), "+447700900002", None));
    let a = answer(&r);
    assert_eq!(json::get(&a, "unreadCount").and_then(json::as_i64), Some(0));
    assert_eq!(unread(&store), 0);
    let receipts = wire.receipts.lock().unwrap().clone();
    assert_eq!(
        receipts[0],
        (BOB.to_string(), vec![("B1".to_string(), None)])
    );
    assert_eq!(
        receipts[1]
            .1
            .iter()
            .map(|(id, _)| id.as_str())
            .collect::<Vec<_>>(),
        ["B1", "B2"]
    );
    // Group receipts carry the author.
    let r = smol::block_on(mark_checked(&env, Some(&wire), GROUP, None));
    answer(&r);
    assert_eq!(
        wire.receipts.lock().unwrap()[2].1,
        vec![("G1".to_string(), Some(BOBBY.to_string()))]
    );
    // Nothing unread: no receipts, still fine.
    let r = smol::block_on(mark_checked(&env, Some(&wire), GROUP, None));
    assert_eq!(
        json::get(&answer(&r), "markedCount").and_then(json::as_i64),
        Some(0)
    );
    assert_eq!(wire.receipts.lock().unwrap().len(), 3);
}

#[test]
fn group_info_falls_back_to_the_stored_group_when_whatsapp_cannot_answer() {
    let store = seeded();
    store
        .write_blocking(|txn| {
            writes::upsert_group(
                txn,
                &writes::GroupUpdate {
                    jid: GROUP.into(),
                    subject: Some("Walkers".into()),
                    owner: Some(BOBBY.into()),
                    creation: Some(1_700_000_000_000),
                    participants: Some(vec![
                        (BOBBY.into(), "superadmin".into()),
                        (ALICE_LID.into(), String::new()),
                    ]),
                    ..writes::GroupUpdate::default()
                },
            )
        })
        .unwrap();
    let reg = super::Registry::new(env(&store, SendPolicy::default()));
    let call = |args: &str| {
        let args = json::parse(args).unwrap();
        smol::block_on(reg.call("get_group_info", Some(&args), Arc::new(NoProgress))).unwrap()
    };
    let r = call(&format!(r#"{{"group_jid":"{GROUP}"}}"#));
    let g = answer(&r);
    assert_eq!(json::get_str(&g, "source"), Some("cached"));
    assert_eq!(json::get_str(&g, "subject"), Some("Walkers"));
    assert_eq!(json::get(&g, "size").and_then(json::as_i64), Some(2));
    assert_eq!(
        json::get(&g, "creation").and_then(json::as_i64),
        Some(1_700_000_000_000)
    );
    assert!(json::get_str(&g, "liveError").is_some_and(|e| e.contains("not connected")));
    let members = match json::get(&g, "participants") {
        Some(json::Value::Array(a)) => a.clone(),
        other => panic!("{other:?}"),
    };
    let alice = members
        .iter()
        .find(|p| json::get_str(p, "id") == Some(ALICE_LID))
        .expect("alice");
    assert_eq!(json::get_str(alice, "name"), Some("Alice Smith"));
    assert_eq!(json::get_str(alice, "number"), Some("447700900001"));
    assert!(matches!(json::get(alice, "admin"), Some(json::Value::Null)));
    let bobby = members
        .iter()
        .find(|p| json::get_str(p, "id") == Some(BOBBY))
        .expect("bobby");
    assert_eq!(json::get_str(bobby, "admin"), Some("superadmin"));
    // Not stored and not reachable: an error that says both.
    let r = call(r#"{"group_jid":"120363999999999999@g.us"}"#);
    assert!(r.is_error);
    assert!(
        text(&r).starts_with("Error getting group info for 120363999999999999@g.us:"),
        "{}",
        text(&r)
    );
    // A person is not a group.
    let r = call(&format!(r#"{{"group_jid":"{BOB}"}}"#));
    assert!(text(&r).contains("not a group"), "{}", text(&r));
}

struct NoProgress;
impl super::ProgressSink for NoProgress {
    fn report(&self, _: f64, _: Option<f64>, _: Option<&str>) {}
}

#[test]
fn bad_send_input_is_refused_before_the_wire_and_takes_no_rate_slot() {
    let store = seeded();
    let env = env(
        &store,
        SendPolicy {
            rate_per_min: 1,
            ..no_dedup()
        },
    );
    let wire = FakeWire::default();
    let refused = |r: SendRequest, needle: &str| {
        let res = send(&env, &wire, r);
        assert!(res.is_error, "{}", text(&res));
        assert!(text(&res).contains(needle), "{needle}: {}", text(&res));
    };
    refused(req(BOB, " \n\t", None), "message is empty");
    refused(req(BOB, &"ü".repeat(MAX_TEXT_CHARS + 1), None), "too long");
    refused(req(BOB, "hi", Some("")), "idempotency_key is blank");
    refused(
        req(BOB, "hi", Some("\u{0}dedup:abc")),
        "idempotency_key contains control characters",
    );
    for bad in [
        "abc@",
        "@s.whatsapp.net",
        "123@unknown.server",
        "+",
        "x@lid",
    ] {
        refused(req(bad, "hi", None), "recipient_jid");
    }
    refused(req(&"a".repeat(300), "hi", None), "300 characters");
    assert!(wire.sent.lock().unwrap().is_empty());
    // The one slot of the minute is still there.
    let ok = send(&env, &wire, req(BOB, "hi", None));
    assert!(!ok.is_error, "{}", text(&ok));
    assert_eq!(wire.sent.lock().unwrap().len(), 1);
    // A text of exactly the limit is sent (after the minute's slot is used: refused by rate).
    let at_limit = send(&env, &wire, req(BOB, &"ü".repeat(MAX_TEXT_CHARS), None));
    assert!(
        text(&at_limit).contains("SEND_RATE_PER_MIN"),
        "{}",
        text(&at_limit)
    );
    assert!(log(&store).iter().all(|e| e.body.is_none()));
}

#[test]
fn a_reaction_is_one_emoji() {
    for good in ["", "👍", "👍🏽", "🇩🇪", "1️⃣", "👨‍👩‍👧", "❤️", "©"]
    {
        assert_eq!(emoji_problem(good), None, "{good}");
    }
    for bad in [
        "👍👍",
        "a",
        "ok",
        " ",
        "👍 ",
        "é",
        "\u{7}",
        &"😀".repeat(20),
    ] {
        let e = emoji_problem(bad).unwrap_or_else(|| panic!("{bad:?} passed"));
        assert!(e.contains("single emoji"), "{e}");
    }
    // One grapheme of many combining marks is not an emoji and not slow.
    let zalgo = format!("x{}", "\u{301}".repeat(100_000));
    assert!(emoji_problem(&zalgo).is_some());
}

#[test]
fn mark_as_read_refuses_an_empty_list_and_unknown_chats_and_counts_repeats_once() {
    let store = seeded();
    let env = env(&store, SendPolicy::default());
    let wire = FakeWire::default();
    let r = smol::block_on(mark_checked(&env, Some(&wire), BOB, Some(vec![])));
    assert!(
        r.is_error && text(&r).contains("message_ids is empty"),
        "{}",
        text(&r)
    );
    let r = smol::block_on(mark_checked(
        &env,
        Some(&wire),
        "447700900999@s.whatsapp.net",
        None,
    ));
    assert!(
        r.is_error && text(&r).contains("Chat not found"),
        "{}",
        text(&r)
    );
    let r = smol::block_on(mark_checked(
        &env,
        Some(&wire),
        BOB,
        Some(vec!["B1".into(), "B1".into(), format!("{BOB}:B1")]),
    ));
    let a = answer(&r);
    assert_eq!(json::get(&a, "markedCount").and_then(json::as_i64), Some(1));
    assert_eq!(wire.receipts.lock().unwrap()[0].1.len(), 1);
}
