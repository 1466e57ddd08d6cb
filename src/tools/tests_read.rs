//! The read tools against a real (in-memory) store seeded through `store::writes`: defaults,
//! limits, not-found results (`isError`), empty results (`[]`), identity merging and names.

use super::{ProgressSink, Registry, ToolEnv};
use crate::json::{self, Value};
use crate::store::Store;
use crate::store::model::MediaRef;
use crate::store::writes::{self, ChatUpdate, ContactUpdate, GroupUpdate, NewMessage};
use std::sync::Arc;

struct NoProgress;
impl ProgressSink for NoProgress {
    fn report(&self, _: f64, _: Option<f64>, _: Option<&str>) {}
}

const OWN: &str = "447000000001@s.whatsapp.net";
const ALICE_PN: &str = "447700900123@s.whatsapp.net";
const ALICE_LID: &str = "99001@lid";
const BOB: &str = "447700900456@s.whatsapp.net";
const ZOE: &str = "447700900789@s.whatsapp.net";
const UNAL: &str = "905551112233@s.whatsapp.net";
const ANN: &str = "447700900111@s.whatsapp.net";
const ANNA: &str = "447700900222@s.whatsapp.net";
const STRANGER: &str = "447700900999@s.whatsapp.net";
const SYSTEM: &str = "447700900555@s.whatsapp.net";
const FAMILY: &str = "120363000000000001@g.us";
const WORK: &str = "120363000000000002@g.us";
const META_ONLY: &str = "120363000000000003@g.us";

fn msg(chat: &str, id: &str, ts: u64, sender: &str, body: &str) -> NewMessage {
    NewMessage {
        chat_jid: chat.into(),
        id: id.into(),
        sender: sender.into(),
        from_me: sender == OWN,
        timestamp_ms: ts,
        body: body.into(),
        kind: "conversation".into(),
        ..NewMessage::default()
    }
}

fn contact(jid: &str, name: Option<&str>, push: Option<&str>, mine: bool) -> ContactUpdate {
    ContactUpdate {
        jid: jid.into(),
        name: name.map(Into::into),
        pushname: push.map(Into::into),
        number: None,
        is_my_contact: Some(mine),
    }
}

/// The fixture: Alice (a LID/phone pair with a chat under each), Bob (30 messages, media),
/// two groups with members, a group known only from metadata, a chat whose newest event is a
/// system notice, status updates, and contacts with diacritics.
fn seeded() -> Store {
    let store = Store::open_in_memory().unwrap();
    store
        .write_blocking(|txn| {
            writes::set_own_jid(txn, OWN)?;
            writes::put_mapping(txn, ALICE_LID, ALICE_PN)?;
            writes::upsert_contact(txn, &contact(ALICE_PN, Some("Alice Smith"), None, true))?;
            writes::upsert_contact(txn, &contact(ALICE_LID, None, Some("Ali"), false))?;
            writes::upsert_contact(txn, &contact(BOB, Some("Bob Jones"), Some("bobby"), true))?;
            writes::upsert_contact(txn, &contact(ZOE, None, Some("Zoë"), false))?;
            writes::upsert_contact(txn, &contact(UNAL, Some("Ünal Straße"), None, true))?;
            writes::upsert_contact(txn, &contact(ANN, Some("Ann"), None, true))?;
            writes::upsert_contact(txn, &contact(ANNA, Some("Anna Karenina"), None, true))?;
            // Alice: the two halves of one conversation.
            writes::put_message(txn, &msg(ALICE_PN, "a1", 1_000, ALICE_PN, "Hello there"))?;
            writes::put_message(txn, &msg(ALICE_LID, "a2", 2_000, ALICE_LID, "Bonjour café"))?;
            writes::put_message(txn, &msg(ALICE_PN, "a3", 3_000, OWN, "How are you?"))?;
            writes::put_message(txn, &msg(ALICE_LID, "a4", 4_000, ALICE_LID, "Спасибо!"))?;
            // Bob: 30 messages; b5 has a media reference, b6 claims media without one.
            for i in 1..=30u64 {
                let mut m = msg(
                    BOB,
                    &format!("b{i}"),
                    10_000 + i * 10,
                    BOB,
                    &format!("bob {i}"),
                );
                if i == 5 {
                    m.kind = "imageMessage".into();
                    m.has_media = true;
                    m.media = Some(MediaRef {
                        kind: "image".into(),
                        mimetype: Some("image/jpeg".into()),
                        filename: Some("beach.jpg".into()),
                        size: 2048,
                        ..MediaRef::default()
                    });
                }
                if i == 6 {
                    m.kind = "documentMessage".into();
                    m.has_media = true;
                }
                writes::put_message(txn, &m)?;
            }
            writes::upsert_group(
                txn,
                &GroupUpdate {
                    jid: FAMILY.into(),
                    subject: Some("Family".into()),
                    participants: Some(vec![
                        (ALICE_LID.into(), "admin".into()),
                        (BOB.into(), String::new()),
                        (OWN.into(), "superadmin".into()),
                        (STRANGER.into(), String::new()),
                    ]),
                    ..GroupUpdate::default()
                },
            )?;
            writes::put_message(txn, &msg(FAMILY, "g1", 5_000, BOB, "Dinner at 8?"))?;
            writes::put_message(
                txn,
                &msg(FAMILY, "g2", 6_000, ALICE_LID, "東京タワーに行こう"),
            )?;
            writes::upsert_group(
                txn,
                &GroupUpdate {
                    jid: WORK.into(),
                    subject: Some("Work".into()),
                    participants: Some(vec![
                        (ALICE_PN.into(), String::new()),
                        (STRANGER.into(), String::new()),
                    ]),
                    ..GroupUpdate::default()
                },
            )?;
            writes::upsert_group(
                txn,
                &GroupUpdate {
                    jid: META_ONLY.into(),
                    participants: Some(vec![(BOB.into(), String::new())]),
                    ..GroupUpdate::default()
                },
            )?;
            let mut notice = msg(SYSTEM, "s1", 7_000, SYSTEM, "");
            notice.kind = "protocolMessage".into();
            writes::put_message(txn, &notice)?;
            writes::put_message(
                txn,
                &msg("status@broadcast", "st1", 50_000, BOB, "my status"),
            )?;
            writes::update_chat(
                txn,
                &ChatUpdate {
                    jid: ZOE.into(),
                    name: Some(ZOE.into()),
                    ..ChatUpdate::default()
                },
            )?;
            Ok(())
        })
        .unwrap();
    store
}

fn registry(store: Store, auto_select_contact: bool) -> Registry {
    Registry::new(ToolEnv {
        read_only: false,
        auto_select_contact,
        store,
        engine: None,
        idempotency_ttl_ms: crate::store::idempotency::DEFAULT_TTL_MS,
        send_guard: Default::default(),
    })
}

/// Calls a tool; returns `(isError, text)`.
fn call(reg: &Registry, name: &str, args: &str) -> (bool, String) {
    let args = json::parse(args).unwrap();
    let r = smol::block_on(reg.call(name, Some(&args), Arc::new(NoProgress))).unwrap();
    let text = match &r.content[0] {
        super::Content::Text(t) => t.clone(),
        other => panic!("not text: {other:?}"),
    };
    (r.is_error, text)
}

/// Calls a tool that must succeed; returns its JSON.
fn ok(reg: &Registry, name: &str, args: &str) -> Value {
    let (err, text) = call(reg, name, args);
    assert!(!err, "{name} {args} failed: {text}");
    json::parse(&text).unwrap_or_else(|| panic!("{name}: not JSON: {text}"))
}

/// Calls a tool that must fail; returns its text.
fn fails(reg: &Registry, name: &str, args: &str) -> String {
    let (err, text) = call(reg, name, args);
    assert!(err, "{name} {args} should fail, got {text}");
    text
}

fn items(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.to_vec(),
        other => panic!("not an array: {}", json::to_string(other)),
    }
}

/// `v.a.0.b` style access.
fn at<'v>(v: &'v Value, path: &str) -> &'v Value {
    path.split('.')
        .fold(v, |v, k| match (v, k.parse::<usize>()) {
            (Value::Array(a), Ok(i)) => a.get(i).unwrap_or(&Value::Null),
            (Value::Object(o), _) => o.get(k).unwrap_or(&Value::Null),
            _ => &Value::Null,
        })
}

fn s<'v>(v: &'v Value, path: &str) -> &'v str {
    match at(v, path) {
        Value::String(t) => t,
        other => panic!("{path}: not a string: {}", json::to_string(other)),
    }
}

fn n(v: &Value, path: &str) -> i64 {
    json::as_i64(at(v, path)).unwrap_or_else(|| panic!("{path}: not a number"))
}

fn ids(v: &Value) -> Vec<String> {
    items(v).iter().map(|i| s(i, "id").to_string()).collect()
}

fn js(v: &Value) -> String {
    json::to_string(v)
}

fn b(v: &Value, path: &str) -> bool {
    match at(v, path) {
        Value::Bool(x) => *x,
        other => panic!("{path}: not a boolean: {}", json::to_string(other)),
    }
}

fn is_null(v: &Value) -> bool {
    matches!(v, Value::Null)
}

fn keys(v: &Value) -> Vec<String> {
    match v {
        Value::Object(o) => o.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

// ---- contacts ------------------------------------------------------------------------------

#[test]
fn search_contacts_folds_case_and_merges_identities() {
    let reg = registry(seeded(), false);
    let r = ok(&reg, "search_contacts", r#"{"query":"ALI"}"#);
    assert_eq!(ids(&r), vec![ALICE_PN]);
    assert_eq!(s(&r, "0.name"), "Alice Smith");
    assert_eq!(s(&r, "0.pushname"), "Ali");
    assert_eq!(s(&r, "0.number"), "447700900123");
    assert_eq!(
        keys(&items(&r)[0]),
        ["id", "isMyContact", "name", "number", "pushname"]
    );
    assert_eq!(
        ids(&ok(&reg, "search_contacts", r#"{"query":"STRASSE"}"#)),
        vec![UNAL]
    );
    assert_eq!(
        ids(&ok(&reg, "search_contacts", r#"{"query":"zoe"}"#)),
        vec![ZOE]
    );
    assert_eq!(
        ids(&ok(
            &reg,
            "search_contacts",
            r#"{"query":"+44 7700 900456"}"#
        )),
        vec![BOB]
    );
    assert_eq!(
        ids(&ok(&reg, "search_contacts", r#"{"query":"99001@lid"}"#)),
        vec![ALICE_PN]
    );
    // An empty query lists everyone once (Alice's two rows are one contact).
    let all = ids(&ok(&reg, "search_contacts", r#"{"query":""}"#));
    assert_eq!(all.len(), 6, "{all:?}");
    assert_eq!(all.iter().filter(|i| *i == ALICE_PN).count(), 1);
    assert_eq!(
        js(&ok(&reg, "search_contacts", r#"{"query":"nobody"}"#)),
        "[]"
    );
    assert!(fails(&reg, "search_contacts", "{}").contains("query"));
}

#[test]
fn search_contacts_caps_at_50() {
    let store = Store::open_in_memory().unwrap();
    store
        .write_blocking(|txn| {
            for i in 0..60 {
                let jid = format!("4477009{i:05}@s.whatsapp.net");
                writes::upsert_contact(
                    txn,
                    &contact(&jid, Some(&format!("Person {i}")), None, true),
                )?;
            }
            Ok(())
        })
        .unwrap();
    let reg = registry(store, false);
    assert_eq!(
        items(&ok(&reg, "search_contacts", r#"{"query":"person"}"#)).len(),
        50
    );
}

#[test]
fn resolve_contact_scores_over_all_contacts() {
    let reg = registry(seeded(), false);
    let r = ok(&reg, "resolve_contact", r#"{"query":"Alice Smith"}"#);
    assert_eq!(ids(&r), vec![ALICE_PN]);
    assert_eq!(n(&r, "0.score"), 100);
    assert_eq!(s(&r, "0.matchedBy"), "name");
    assert_eq!(
        keys(&items(&r)[0]),
        ["id", "matchedBy", "name", "number", "pushname", "score"]
    );
    let r = ok(&reg, "resolve_contact", r#"{"query":"bobby"}"#);
    assert_eq!((n(&r, "0.score"), s(&r, "0.matchedBy")), (95, "pushname"));
    let r = ok(&reg, "resolve_contact", r#"{"query":"+44 7700 900456"}"#);
    assert_eq!(ids(&r), vec![BOB]);
    assert_eq!((n(&r, "0.score"), s(&r, "0.matchedBy")), (100, "number"));
    let r = ok(&reg, "resolve_contact", r#"{"query":"7700900"}"#);
    assert_eq!(n(&r, "0.score"), 70);
    assert_eq!(items(&r).len(), 5, "default limit 5");
    let r = ok(&reg, "resolve_contact", r#"{"query":"ann"}"#);
    assert_eq!(ids(&r), vec![ANN, ANNA]);
    assert_eq!((n(&r, "0.score"), n(&r, "1.score")), (100, 80));
    let r = ok(&reg, "resolve_contact", r#"{"query":"ann","limit":1}"#);
    assert_eq!(ids(&r), vec![ANN]);
    let r = ok(&reg, "resolve_contact", r#"{"query":"ünal"}"#);
    assert_eq!((ids(&r), n(&r, "0.score")), (vec![UNAL.to_string()], 80));
    assert_eq!(js(&ok(&reg, "resolve_contact", r#"{"query":"  "}"#)), "[]");
    assert_eq!(js(&ok(&reg, "resolve_contact", r#"{"query":"qqq"}"#)), "[]");
    assert!(fails(&reg, "resolve_contact", r#"{"query":"a","limit":0}"#).contains("limit"));
}

#[test]
fn resolve_contact_sees_more_than_200_contacts() {
    let store = Store::open_in_memory().unwrap();
    store
        .write_blocking(|txn| {
            writes::upsert_contact(txn, &contact(ANN, Some("Oldest Friend"), None, true))?;
            for i in 0..250 {
                let jid = format!("3361234{i:05}@s.whatsapp.net");
                writes::upsert_contact(txn, &contact(&jid, Some(&format!("P {i}")), None, true))?;
            }
            Ok(())
        })
        .unwrap();
    let reg = registry(store, false);
    let r = ok(&reg, "resolve_contact", r#"{"query":"oldest friend"}"#);
    assert_eq!(ids(&r), vec![ANN]);
}

#[test]
fn get_contact_by_id_accepts_either_identity() {
    let reg = registry(seeded(), false);
    for jid in [
        ALICE_LID,
        ALICE_PN,
        "447700900123:3@s.whatsapp.net",
        "+44 7700 900123",
    ] {
        let r = ok(&reg, "get_contact_by_id", &format!(r#"{{"jid":"{jid}"}}"#));
        assert_eq!(s(&r, "id"), ALICE_PN, "{jid}");
        assert_eq!(s(&r, "name"), "Alice Smith");
        assert_eq!(s(&r, "pushname"), "Ali");
        assert_eq!(s(&r, "number"), "447700900123");
        assert!(b(&r, "isMyContact"));
        assert!(b(&r, "isWAContact"));
    }
    let t = fails(
        &reg,
        "get_contact_by_id",
        &format!(r#"{{"jid":"{STRANGER}"}}"#),
    );
    assert_eq!(t, format!("Contact not found for JID: {STRANGER}"));
    let t = fails(&reg, "get_contact_by_id", r#"{"jid":"bob"}"#);
    assert!(t.contains("@s.whatsapp.net") && t.contains("bob"), "{t}");
}

// ---- chats ---------------------------------------------------------------------------------

#[test]
fn list_chats_newest_first_merged_without_status_and_system() {
    let reg = registry(seeded(), false);
    let r = ok(&reg, "list_chats", "{}");
    assert_eq!(ids(&r), vec![BOB, FAMILY, ALICE_PN, ZOE, WORK]);
    let bob = &items(&r)[0];
    assert_eq!(s(bob, "name"), "Bob Jones");
    assert_eq!(n(bob, "unreadCount"), 30);
    assert_eq!(n(bob, "timestamp"), 10_300);
    assert!(!b(bob, "isGroup"));
    assert_eq!(s(bob, "lastMessage.id"), format!("{BOB}:b30"));
    assert_eq!(
        keys(bob),
        [
            "id",
            "isGroup",
            "lastMessage",
            "name",
            "timestamp",
            "unreadCount"
        ]
    );
    let family = &items(&r)[1];
    assert_eq!((s(family, "name"), b(family, "isGroup")), ("Family", true));
    // Alice's LID and phone chats are one chat under the phone JID.
    let alice = &items(&r)[2];
    assert_eq!(s(alice, "name"), "Alice Smith");
    assert_eq!(n(alice, "timestamp"), 4_000);
    assert_eq!(n(alice, "unreadCount"), 2, "the LID half's two unread");
    assert_eq!(s(alice, "lastMessage.id"), format!("{ALICE_PN}:a4"));
    assert_eq!(s(alice, "lastMessage.from"), ALICE_PN);
    // A chat named by its own JID shows the contact's push name instead.
    assert_eq!(s(&items(&r)[3], "name"), "Zoë");
    assert!(is_null(at(&items(&r)[3], "lastMessage")));
    let r = ok(
        &reg,
        "list_chats",
        r#"{"limit":2,"include_last_message":false}"#,
    );
    assert_eq!(ids(&r), vec![BOB, FAMILY]);
    assert!(is_null(at(&items(&r)[0], "lastMessage")));
    assert!(!keys(&items(&r)[0]).contains(&"lastMessage".to_string()));
}

#[test]
fn list_system_chats_and_groups() {
    let reg = registry(seeded(), false);
    let r = ok(&reg, "list_system_chats", "{}");
    assert_eq!(ids(&r), vec![SYSTEM]);
    assert_eq!(s(&r, "0.lastMessage.type"), "protocolMessage");
    assert_eq!(s(&r, "0.name"), "447700900555");
    let r = ok(&reg, "list_groups", "{}");
    assert_eq!(ids(&r), vec![FAMILY, WORK, META_ONLY]);
    assert_eq!(s(&r, "0.lastMessage.id"), format!("{FAMILY}:g2"));
    assert_eq!(s(&r, "0.lastMessage.from"), ALICE_PN);
    assert_eq!(s(&r, "2.name"), META_ONLY);
    assert_eq!(
        ids(&ok(&reg, "list_groups", r#"{"limit":1}"#)),
        vec![FAMILY]
    );
    let r = ok(&reg, "list_groups", r#"{"include_last_message":false}"#);
    assert!(is_null(at(&items(&r)[0], "lastMessage")));
}

#[test]
fn lists_on_an_empty_store_are_empty_arrays() {
    let reg = registry(Store::open_in_memory().unwrap(), false);
    for (tool, args) in [
        ("list_chats", "{}"),
        ("list_system_chats", "{}"),
        ("list_groups", "{}"),
        ("search_contacts", r#"{"query":""}"#),
        ("resolve_contact", r#"{"query":"x"}"#),
        ("list_messages", r#"{"chat_id":"1234567@s.whatsapp.net"}"#),
        ("search_messages", r#"{"query":"x"}"#),
        ("search_messages", r#"{"query":""}"#),
    ] {
        assert_eq!(js(&ok(&reg, tool, args)), "[]", "{tool}");
    }
    let r = ok(&reg, "run_group_audit", "{}");
    assert_eq!(n(&r, "summary.groupsProcessed"), 0);
    assert_eq!(n(&r, "summary.totalMembers"), 0);
    assert_eq!(js(at(&r, "overlaps")), "[]");
}

#[test]
fn get_chat_by_id_either_identity_and_not_found() {
    let reg = registry(seeded(), false);
    for jid in [ALICE_LID, ALICE_PN, "447700900123@c.us"] {
        let r = ok(&reg, "get_chat_by_id", &format!(r#"{{"jid":"{jid}"}}"#));
        assert_eq!(s(&r, "id"), ALICE_PN);
        assert_eq!(s(&r, "lastMessage.body"), "Спасибо!");
    }
    let r = ok(&reg, "get_chat_by_id", &format!(r#"{{"jid":"{WORK}"}}"#));
    assert_eq!(s(&r, "name"), "Work");
    assert!(is_null(at(&r, "lastMessage")));
    let t = fails(
        &reg,
        "get_chat_by_id",
        &format!(r#"{{"jid":"{STRANGER}"}}"#),
    );
    assert_eq!(t, format!("Chat not found for JID: {STRANGER}"));
    let t = fails(&reg, "get_chat_by_id", r#"{"jid":"nobody"}"#);
    assert!(t.starts_with("Invalid jid") && t.contains("@g.us"), "{t}");
}

#[test]
fn direct_chat_by_number_in_any_form() {
    let reg = registry(seeded(), false);
    for number in [
        "+44 7700-900123",
        "447700900123",
        "0044 7700 900123",
        ALICE_PN,
    ] {
        let r = ok(
            &reg,
            "get_direct_chat_by_contact_number",
            &format!(r#"{{"phone_number":"{number}"}}"#),
        );
        assert_eq!(s(&r, "id"), ALICE_PN, "{number}");
    }
    let t = fails(
        &reg,
        "get_direct_chat_by_contact_number",
        r#"{"phone_number":"+44 7700 900999"}"#,
    );
    assert_eq!(t, "Direct chat not found for number: +44 7700 900999");
    let t = fails(
        &reg,
        "get_direct_chat_by_contact_number",
        r#"{"phone_number":"call me"}"#,
    );
    assert!(t.contains("Invalid phone_number"), "{t}");
}

#[test]
fn get_chat_by_contact_single_ambiguous_and_auto_select() {
    let reg = registry(seeded(), false);
    let r = ok(&reg, "get_chat_by_contact", r#"{"query":"alice"}"#);
    assert_eq!(s(&r, "id"), ALICE_PN);
    assert_eq!(s(&r, "lastMessage.id"), format!("{ALICE_PN}:a4"));
    let r = ok(&reg, "get_chat_by_contact", r#"{"query":"ann"}"#);
    let matches = items(at(&r, "matches"));
    assert_eq!(matches.len(), 2);
    assert_eq!(
        keys(&matches[0]),
        [
            "id",
            "isGroup",
            "isMe",
            "isMyContact",
            "isUser",
            "isWAContact",
            "matchedBy",
            "name",
            "number",
            "pushname",
            "score"
        ]
    );
    let r = ok(
        &reg,
        "get_chat_by_contact",
        r#"{"query":"ann","max_candidates":1}"#,
    );
    assert_eq!(s(&r, "contact.id"), ANN);
    assert!(is_null(at(&r, "chat")));
    assert!(keys(&r).contains(&"chat".to_string()));
    let t = fails(&reg, "get_chat_by_contact", r#"{"query":"qqq"}"#);
    assert_eq!(t, "No contacts matched for query: qqq");

    let auto = registry(seeded(), true);
    let r = ok(&auto, "get_chat_by_contact", r#"{"query":"ann"}"#);
    assert_eq!(s(&r, "contact.id"), ANN, "100 vs 80 is a clear winner");
    // Too close to call: both are name prefixes (80).
    let r = ok(&auto, "get_chat_by_contact", r#"{"query":"an"}"#);
    assert!(!items(at(&r, "matches")).is_empty());
}

// ---- messages ------------------------------------------------------------------------------

#[test]
fn list_messages_merges_both_halves_oldest_first() {
    let reg = registry(seeded(), false);
    let r = ok(
        &reg,
        "list_messages",
        &format!(r#"{{"chat_id":"{ALICE_LID}"}}"#),
    );
    let got: Vec<String> = ids(&r);
    let want: Vec<String> = ["a1", "a2", "a3", "a4"]
        .iter()
        .map(|i| format!("{ALICE_PN}:{i}"))
        .collect();
    assert_eq!(got, want);
    let m = &items(&r)[2];
    assert_eq!(
        keys(m),
        [
            "body",
            "from",
            "fromMe",
            "hasMedia",
            "id",
            "status",
            "timestamp",
            "to",
            "type"
        ]
    );
    assert_eq!(s(m, "status"), "sent", "ours, no receipt yet");
    assert!(
        !keys(&items(&r)[1]).contains(&"status".to_string()),
        "others' messages keep the original's shape"
    );
    assert_eq!(s(m, "from"), OWN);
    assert_eq!(s(m, "to"), ALICE_PN);
    assert_eq!(n(m, "timestamp"), 3_000);
    assert!(b(m, "fromMe"));
    assert_eq!(s(&r, "1.from"), ALICE_PN);
    let r = ok(
        &reg,
        "list_messages",
        &format!(r#"{{"chat_id":"{ALICE_PN}","limit":2}}"#),
    );
    assert_eq!(s(&r, "0.body"), "How are you?");
    assert_eq!(s(&r, "1.body"), "Спасибо!");
    // Default limit 50, newest kept.
    let r = ok(&reg, "list_messages", &format!(r#"{{"chat_id":"{BOB}"}}"#));
    assert_eq!(items(&r).len(), 30);
    assert!(
        is_null(at(&items(&r)[4], "media")),
        "no media without include_media"
    );
    let r = ok(
        &reg,
        "list_messages",
        &format!(r#"{{"chat_id":"{BOB}","limit":3}}"#),
    );
    assert_eq!(s(&r, "0.id"), format!("{BOB}:b28"));
    assert_eq!(
        js(&ok(
            &reg,
            "list_messages",
            &format!(r#"{{"chat_id":"{STRANGER}"}}"#)
        )),
        "[]"
    );
    let t = fails(&reg, "list_messages", r#"{"chat_id":"alice"}"#);
    assert!(t.starts_with("Invalid chat_id"), "{t}");
}

#[test]
fn list_messages_media_from_stored_references() {
    let reg = registry(seeded(), false);
    let r = ok(
        &reg,
        "list_messages",
        &format!(r#"{{"chat_id":"{BOB}","include_media":true}}"#),
    );
    let b5 = &items(&r)[4];
    assert_eq!(s(b5, "media.status"), "not_downloaded");
    assert_eq!(s(b5, "media.mimetype"), "image/jpeg");
    assert_eq!(s(b5, "media.filename"), "beach.jpg");
    assert_eq!(n(b5, "media.filesize"), 2048);
    assert!(s(b5, "media.hint").contains("download_media"));
    assert_eq!(s(&items(&r)[5], "media.status"), "not_available");
    assert!(
        is_null(at(&items(&r)[6], "media")),
        "no media on text messages"
    );
    let r = ok(
        &reg,
        "list_messages",
        &format!(
            r#"{{"chat_id":"{BOB}","include_media":true,"media_limit":1,"include_full_data":true}}"#
        ),
    );
    assert_eq!(s(&items(&r)[4], "media.status"), "not_downloaded");
    assert_eq!(s(&items(&r)[5], "media.status"), "skipped");
    assert_eq!(s(&items(&r)[5], "media.reason"), "media_limit_reached");
}

#[test]
fn get_message_by_id_under_either_identity() {
    let reg = registry(seeded(), false);
    for id in [format!("{ALICE_LID}:a2"), format!("{ALICE_PN}:a2")] {
        let r = ok(
            &reg,
            "get_message_by_id",
            &format!(r#"{{"message_id":"{id}"}}"#),
        );
        assert_eq!(s(&r, "id"), format!("{ALICE_PN}:a2"));
        assert_eq!(s(&r, "body"), "Bonjour café");
        assert_eq!(n(&r, "timestamp"), 2_000);
    }
    let t = fails(
        &reg,
        "get_message_by_id",
        &format!(r#"{{"message_id":"{BOB}:nope"}}"#),
    );
    assert_eq!(t, format!("Message not found for ID: {BOB}:nope"));
    let t = fails(&reg, "get_message_by_id", r#"{"message_id":"nope:nope"}"#);
    assert!(t.starts_with("Invalid message_id"), "{t}");
}

#[test]
fn message_context_is_a_window_around_the_target() {
    let reg = registry(seeded(), false);
    let ctx = |id: &str, limit: Option<u64>| {
        let args = match limit {
            Some(l) => format!(r#"{{"message_id":"{BOB}:{id}","limit":{l}}}"#),
            None => format!(r#"{{"message_id":"{BOB}:{id}"}}"#),
        };
        let r = ok(&reg, "get_message_context", &args);
        let window: Vec<String> = items(at(&r, "contextMessages"))
            .iter()
            .map(|m| s(m, "id").rsplit(':').next().unwrap().to_string())
            .collect();
        let idx = n(&r, "targetIndex") as usize;
        assert_eq!(
            window[idx],
            s(&r, "targetMessage.id").rsplit(':').next().unwrap()
        );
        (window, idx)
    };
    let names =
        |r: std::ops::RangeInclusive<u32>| -> Vec<String> { r.map(|i| format!("b{i}")).collect() };
    assert_eq!(ctx("b15", Some(5)), (names(13..=17), 2));
    assert_eq!(ctx("b15", Some(4)), (names(13..=16), 2));
    assert_eq!(ctx("b1", Some(5)), (names(1..=5), 0));
    assert_eq!(ctx("b2", Some(5)), (names(1..=5), 1));
    assert_eq!(ctx("b30", Some(5)), (names(26..=30), 4));
    assert_eq!(ctx("b15", Some(1)), (names(15..=15), 0));
    // Default 20: 10 before, 9 after.
    assert_eq!(ctx("b15", None), (names(5..=24), 10));
    // Larger than the chat: everything.
    assert_eq!(ctx("b15", Some(100)), (names(1..=30), 14));
    // Both identities' messages are in one window.
    let r = ok(
        &reg,
        "get_message_context",
        &format!(r#"{{"message_id":"{ALICE_LID}:a2","limit":3}}"#),
    );
    assert_eq!(
        ids(at(&r, "contextMessages")),
        ["a1", "a2", "a3"]
            .iter()
            .map(|i| format!("{ALICE_PN}:{i}"))
            .collect::<Vec<_>>()
    );
    let t = fails(
        &reg,
        "get_message_context",
        &format!(r#"{{"message_id":"{BOB}:zzz"}}"#),
    );
    assert_eq!(t, format!("Target message not found: {BOB}:zzz"));
}

#[test]
fn window_split() {
    use super::messages::window;
    assert_eq!(window(20, 100, 100), (10, 9));
    assert_eq!(window(20, 3, 100), (3, 16));
    assert_eq!(window(20, 100, 2), (17, 2));
    assert_eq!(window(1, 5, 5), (0, 0));
    assert_eq!(window(2, 5, 5), (1, 0));
    assert_eq!(window(2, 0, 5), (0, 1));
    assert_eq!(window(5, 0, 0), (0, 0));
}

#[test]
fn last_interaction() {
    let reg = registry(seeded(), false);
    let r = ok(
        &reg,
        "get_last_interaction",
        &format!(r#"{{"jid":"{ALICE_LID}"}}"#),
    );
    assert_eq!(s(&r, "id"), format!("{ALICE_PN}:a4"));
    let r = ok(
        &reg,
        "get_last_interaction",
        &format!(r#"{{"jid":"{FAMILY}"}}"#),
    );
    assert_eq!(s(&r, "body"), "東京タワーに行こう");
    for jid in [WORK, STRANGER] {
        let t = fails(
            &reg,
            "get_last_interaction",
            &format!(r#"{{"jid":"{jid}"}}"#),
        );
        assert_eq!(t, format!("No recent interaction found for JID: {jid}"));
    }
    assert!(fails(&reg, "get_last_interaction", r#"{"jid":"x"}"#).starts_with("Invalid jid"));
}

#[test]
fn search_messages_filters_and_errors() {
    let reg = registry(seeded(), false);
    let r = ok(&reg, "search_messages", r#"{"query":"СПАСИБО"}"#);
    assert_eq!(ids(&r), vec![format!("{ALICE_PN}:a4")]);
    let r = ok(&reg, "search_messages", r#"{"query":"cafe"}"#);
    assert_eq!(ids(&r), vec![format!("{ALICE_PN}:a2")]);
    // chat_id: either identity covers both halves.
    let r = ok(
        &reg,
        "search_messages",
        &format!(r#"{{"query":"cafe","chat_id":"{ALICE_PN}"}}"#),
    );
    assert_eq!(items(&r).len(), 1);
    let r = ok(
        &reg,
        "search_messages",
        &format!(r#"{{"query":"cafe","chat_id":"{BOB}"}}"#),
    );
    assert_eq!(js(&r), "[]");
    // limit, newest first.
    let r = ok(&reg, "search_messages", r#"{"query":"bob","limit":3}"#);
    assert_eq!(
        ids(&r),
        ["b30", "b29", "b28"]
            .iter()
            .map(|i| format!("{BOB}:{i}"))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        items(&ok(&reg, "search_messages", r#"{"query":"bob"}"#)).len(),
        20
    );
    // from: a name, a number, a JID (either identity), me.
    let r = ok(
        &reg,
        "search_messages",
        r#"{"query":"dinner","from":"Bob Jones"}"#,
    );
    assert_eq!(ids(&r), vec![format!("{FAMILY}:g1")]);
    let r = ok(
        &reg,
        "search_messages",
        r#"{"query":"dinner","from":"Alice"}"#,
    );
    assert_eq!(js(&r), "[]");
    let r = ok(
        &reg,
        "search_messages",
        r#"{"query":"東京","from":"+44 7700 900123"}"#,
    );
    assert_eq!(ids(&r), vec![format!("{FAMILY}:g2")]);
    let r = ok(
        &reg,
        "search_messages",
        &format!(r#"{{"query":"", "from":"{ALICE_LID}"}}"#),
    );
    assert_eq!(
        ids(&r),
        ["g2", "a4", "a2", "a1"]
            .iter()
            .zip([FAMILY, ALICE_PN, ALICE_PN, ALICE_PN])
            .map(|(i, c)| format!("{c}:{i}"))
            .collect::<Vec<_>>()
    );
    let r = ok(&reg, "search_messages", r#"{"query":"","from":"me"}"#);
    assert_eq!(ids(&r), vec![format!("{ALICE_PN}:a3")]);
    // after (inclusive) / before (exclusive), epoch ms or ISO-8601.
    let r = ok(
        &reg,
        "search_messages",
        r#"{"query":"bob","after":"10100","before":"10130"}"#,
    );
    assert_eq!(
        ids(&r),
        ["b12", "b11", "b10"]
            .iter()
            .map(|i| format!("{BOB}:{i}"))
            .collect::<Vec<_>>()
    );
    let r = ok(
        &reg,
        "search_messages",
        r#"{"query":"bob","after":"1970-01-01T00:00:10.100Z","before":"1970-01-01T00:00:10.130Z"}"#,
    );
    assert_eq!(items(&r).len(), 3);
    let r = ok(
        &reg,
        "search_messages",
        r#"{"query":"","before":"1970-01-01T00:00:02Z"}"#,
    );
    assert_eq!(ids(&r), vec![format!("{ALICE_PN}:a1")]);
    let t = fails(
        &reg,
        "search_messages",
        r#"{"query":"bob","after":"last week"}"#,
    );
    assert!(
        t.starts_with("Invalid after") && t.contains("ISO-8601"),
        "{t}"
    );
    let t = fails(
        &reg,
        "search_messages",
        r#"{"query":"bob","before":"2026-02-30"}"#,
    );
    assert!(t.starts_with("Invalid before"), "{t}");
    let t = fails(
        &reg,
        "search_messages",
        r#"{"query":"bob","from":"Nobody Known"}"#,
    );
    assert!(t.contains("No contact matched from"), "{t}");
    let t = fails(
        &reg,
        "search_messages",
        r#"{"query":"bob","chat_id":"bob"}"#,
    );
    assert!(t.starts_with("Invalid chat_id"), "{t}");
    assert_eq!(
        js(&ok(&reg, "search_messages", r#"{"query":"zzzzqqq"}"#)),
        "[]"
    );
}

#[test]
fn search_in_a_small_chat_finds_a_common_word_behind_the_index_budget() {
    let store = Store::open_in_memory().unwrap();
    store
        .write_blocking(|txn| {
            let batch: Vec<NewMessage> = (0..6_000u64)
                .map(|i| msg(BOB, &format!("m{i}"), 100_000 + i, BOB, "hello world"))
                .collect();
            writes::put_messages(txn, &batch)?;
            writes::put_message(txn, &msg(ZOE, "z1", 50_000, ZOE, "hello zoe"))?;
            Ok(())
        })
        .unwrap();
    let reg = registry(store, false);
    let r = ok(
        &reg,
        "search_messages",
        &format!(r#"{{"query":"hello","chat_id":"{ZOE}"}}"#),
    );
    assert_eq!(ids(&r), vec![format!("{ZOE}:z1")]);
}

// ---- group audit ---------------------------------------------------------------------------

#[test]
fn group_audit_over_all_stored_groups() {
    let reg = registry(seeded(), false);
    let r = ok(&reg, "analyze_group_overlaps", "{}");
    assert_eq!(n(&r, "groupsProcessed"), 3);
    assert_eq!(n(&r, "totalMembers"), 3, "Alice, Bob, the stranger; not me");
    let overlaps = items(at(&r, "overlaps"));
    assert_eq!(overlaps.len(), 3);
    let alice = overlaps
        .iter()
        .find(|m| s(m, "canonicalId") == ALICE_PN)
        .unwrap();
    assert_eq!(
        keys(alice),
        [
            "canonicalId",
            "groupCount",
            "groups",
            "hasDirectChat",
            "ids",
            "inContacts",
            "name",
            "number",
            "pushname"
        ]
    );
    assert_eq!(
        js(at(alice, "ids")),
        format!(r#"["{ALICE_PN}","{ALICE_LID}"]"#)
    );
    assert_eq!(n(alice, "groupCount"), 2);
    assert_eq!(s(alice, "groups.0.name"), "Family");
    assert_eq!(s(alice, "groups.1.name"), "Work");
    assert_eq!(s(alice, "name"), "Alice Smith");
    assert_eq!(s(alice, "pushname"), "Ali");
    assert_eq!(s(alice, "number"), "447700900123");
    assert!(b(alice, "hasDirectChat"));
    assert!(b(alice, "inContacts"));
    // Sorted by group count, then name: all three share 2 groups; the stranger has no name.
    assert_eq!(s(&overlaps[0], "canonicalId"), STRANGER);
    assert!(is_null(at(&overlaps[0], "name")));
    assert_eq!(s(&overlaps[0], "number"), "447700900999");

    let r = ok(&reg, "analyze_group_overlaps", r#"{"min_shared_groups":3}"#);
    assert_eq!(js(at(&r, "overlaps")), "[]");
    let r = ok(&reg, "analyze_group_overlaps", r#"{"group_limit":1}"#);
    assert_eq!(n(&r, "groupsProcessed"), 1);
    assert_eq!(n(&r, "totalMembers"), 3);
    assert_eq!(js(at(&r, "overlaps")), "[]");

    let r = ok(&reg, "find_members_without_direct_chat", "{}");
    assert_eq!(
        items(at(&r, "members"))
            .iter()
            .map(|m| s(m, "canonicalId").to_string())
            .collect::<Vec<_>>(),
        vec![STRANGER]
    );
    let r = ok(&reg, "find_members_not_in_contacts", "{}");
    assert_eq!(n(&r, "totalMembers"), 3);
    assert_eq!(items(at(&r, "members")).len(), 1);
    let r = ok(
        &reg,
        "find_members_not_in_contacts",
        r#"{"min_shared_groups":3}"#,
    );
    assert_eq!(js(at(&r, "members")), "[]");

    let r = ok(&reg, "run_group_audit", "{}");
    assert_eq!(
        keys(&r),
        ["notInContacts", "overlaps", "summary", "withoutDirectChat"]
    );
    assert_eq!(n(&r, "summary.groupsProcessed"), 3);
    assert_eq!(n(&r, "summary.totalMembers"), 3);
    assert_eq!(n(&r, "summary.overlapCount"), 3);
    assert_eq!(n(&r, "summary.withoutDirectChatCount"), 1);
    assert_eq!(n(&r, "summary.notInContactsCount"), 1);
    let r = ok(
        &reg,
        "run_group_audit",
        r#"{"overlap_min_shared_groups":5}"#,
    );
    assert_eq!(n(&r, "summary.overlapCount"), 0);
    assert!(is_null(at(&r, "note")));
    // refresh_group_info answers from the stored lists and says so.
    let r = ok(&reg, "run_group_audit", r#"{"refresh_group_info":true}"#);
    assert!(s(&r, "note").contains("could not fetch current member lists"));
    assert_eq!(n(&r, "summary.totalMembers"), 3);
    let r = ok(
        &reg,
        "analyze_group_overlaps",
        r#"{"refresh_group_info":true}"#,
    );
    assert!(s(&r, "note").contains("stored member lists"));
}
