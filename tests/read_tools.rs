//! The 18 read tools through MCP on the real binary, over a store seeded with
//! `whatsapp-mcp-stream import tests/fixtures/seed_store.jsonl` (multilingual bodies, groups with
//! members, a LID/phone pair with a chat under each identity, media references). Covers
//! defaults, limits, not-found results (`isError`) and empty results (`[]`).

mod common;

use common::serde_like::Json;
use common::{BIN, Server, TempDir};
use std::cell::Cell;
use std::process::Command;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/seed_store.jsonl"
);

const JURGEN: &str = "4917612345678@s.whatsapp.net";
const JURGEN_LID: &str = "88001@lid";
const ANNA: &str = "447700900123@s.whatsapp.net";
const ANNABEL: &str = "447700900124@s.whatsapp.net";
const DMITRI: &str = "79161234567@s.whatsapp.net";
const WANG: &str = "8613800138000@s.whatsapp.net";
const STRANGER: &str = "201001234567@s.whatsapp.net";
const SYSTEM: &str = "15551234567@s.whatsapp.net";
const FAMILIE: &str = "120363111111111111@g.us";
const BOOK_CLUB: &str = "120363222222222222@g.us";
const NACHBARN: &str = "120363333333333333@g.us";

/// A store seeded from the fixture by the `import` subcommand.
fn seeded_store() -> TempDir {
    let data = TempDir::new("seed");
    let out = Command::new(BIN)
        .arg("import")
        .arg(FIXTURE)
        .arg("--data-dir")
        .arg(data.path())
        .env("RUST_LOG", "warn")
        .output()
        .expect("run import");
    assert!(
        out.status.success(),
        "import failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    data
}

/// An MCP session on a server.
struct Mcp {
    server: Server,
    session: String,
    next_id: Cell<u64>,
    _data: Option<TempDir>,
}

impl Mcp {
    /// A server over the seeded store, with extra env vars.
    fn seeded(env: &[(&str, &str)]) -> Mcp {
        let data = seeded_store();
        let db = data.path().join("store.redb");
        let db = db.to_str().unwrap().to_string();
        let mut all = vec![("DB_PATH", db.as_str())];
        all.extend_from_slice(env);
        let server = Server::start(&all);
        let session = server.initialize(&[], "2025-11-25");
        Mcp {
            server,
            session,
            next_id: Cell::new(10),
            _data: Some(data),
        }
    }

    /// A server over an empty store.
    fn empty() -> Mcp {
        let server = Server::start(&[]);
        let session = server.initialize(&[], "2025-11-25");
        Mcp {
            server,
            session,
            next_id: Cell::new(10),
            _data: None,
        }
    }

    /// Calls a tool; returns `(isError, text)`.
    fn call(&self, tool: &str, args: &str) -> (bool, String) {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{args}}}}}"#
        );
        let r = self.server.rpc(&self.session, &body);
        assert_eq!(r.status, 200, "{tool}: {}", r.text());
        let j = r.json();
        assert!(
            j.get("error").is_null(),
            "{tool}: JSON-RPC error {}",
            r.text()
        );
        let result = j.get("result");
        let text = result.path("content.0.text").str().expect("a text block");
        (result.get("isError").bool() == Some(true), text)
    }

    /// A call that must succeed; its JSON.
    fn ok(&self, tool: &str, args: &str) -> Json {
        let (err, text) = self.call(tool, args);
        assert!(!err, "{tool} {args} failed: {text}");
        Json::parse(&text).unwrap_or_else(|| panic!("{tool}: not JSON: {text}"))
    }

    /// A call that must fail; its text.
    fn fails(&self, tool: &str, args: &str) -> String {
        let (err, text) = self.call(tool, args);
        assert!(err, "{tool} {args} should fail, got {text}");
        text
    }
}

fn ids(v: &Json) -> Vec<String> {
    v.arr().iter().map(|i| i.get("id").str().unwrap()).collect()
}

fn s(v: &Json, path: &str) -> String {
    v.path(path)
        .str()
        .unwrap_or_else(|| panic!("{path} is not a string"))
}

fn n(v: &Json, path: &str) -> f64 {
    v.path(path)
        .num()
        .unwrap_or_else(|| panic!("{path} is not a number"))
}

fn msg_ids(chat: &str, ids: &[&str]) -> Vec<String> {
    ids.iter().map(|i| format!("{chat}:{i}")).collect()
}

#[test]
fn contacts_and_chats_from_the_seeded_store() {
    let m = Mcp::seeded(&[]);

    // search_contacts: full case folding and diacritics; LID and phone rows are one contact.
    let r = m.ok("search_contacts", r#"{"query":"JURGEN"}"#);
    assert_eq!(ids(&r), vec![JURGEN]);
    assert_eq!(s(&r, "0.name"), "Jürgen Groß");
    assert_eq!(s(&r, "0.pushname"), "Jürgen");
    assert_eq!(
        r.at(0).keys(),
        ["id", "isMyContact", "name", "number", "pushname"]
    );
    assert_eq!(
        ids(&m.ok("search_contacts", r#"{"query":"GROSS"}"#)),
        vec![JURGEN]
    );
    assert_eq!(
        ids(&m.ok("search_contacts", r#"{"query":"дмитрий"}"#)),
        vec![DMITRI]
    );
    assert_eq!(m.ok("search_contacts", r#"{"query":""}"#).arr().len(), 5);
    assert!(
        m.ok("search_contacts", r#"{"query":"nobody"}"#)
            .arr()
            .is_empty()
    );

    // resolve_contact: scored, best first.
    let r = m.ok("resolve_contact", r#"{"query":"anna"}"#);
    assert_eq!(ids(&r), vec![ANNA, ANNABEL]);
    assert_eq!(
        (n(&r, "0.score"), s(&r, "0.matchedBy")),
        (95.0, "pushname".into())
    );
    assert_eq!(
        (n(&r, "1.score"), s(&r, "1.matchedBy")),
        (80.0, "name".into())
    );
    assert_eq!(
        ids(&m.ok("resolve_contact", r#"{"query":"anna","limit":1}"#)),
        vec![ANNA]
    );
    let r = m.ok("resolve_contact", r#"{"query":"+49 176 12345678"}"#);
    assert_eq!(
        (ids(&r), n(&r, "0.score")),
        (vec![JURGEN.to_string()], 100.0)
    );
    assert!(m.ok("resolve_contact", r#"{"query":""}"#).arr().is_empty());

    // get_contact_by_id: either identity.
    let r = m.ok("get_contact_by_id", &format!(r#"{{"jid":"{JURGEN_LID}"}}"#));
    assert_eq!(s(&r, "id"), JURGEN);
    assert_eq!(s(&r, "number"), "4917612345678");
    assert_eq!(r.get("isWAContact").bool(), Some(true));
    let t = m.fails("get_contact_by_id", &format!(r#"{{"jid":"{STRANGER}"}}"#));
    assert_eq!(t, format!("Contact not found for JID: {STRANGER}"));
    assert!(
        m.fails("get_contact_by_id", r#"{"jid":"jurgen"}"#)
            .contains("@s.whatsapp.net")
    );

    // list_chats: newest first; status and system notices left out; LID + phone merged.
    let r = m.ok("list_chats", "{}");
    assert_eq!(
        ids(&r),
        vec![FAMILIE, WANG, DMITRI, ANNA, JURGEN, BOOK_CLUB, NACHBARN]
    );
    let jurgen = r.at(4);
    assert_eq!(s(&jurgen, "name"), "Jürgen Groß");
    assert_eq!(n(&jurgen, "unreadCount"), 2.0);
    assert_eq!(n(&jurgen, "timestamp"), 1_767_351_600_000.0);
    assert_eq!(s(&jurgen, "lastMessage.id"), format!("{JURGEN}:J4"));
    assert_eq!(s(&r, "0.name"), "Familie 👨‍👩‍👧");
    assert_eq!(r.at(0).get("isGroup").bool(), Some(true));
    assert_eq!(s(&r, "1.name"), "王伟");
    assert_eq!(s(&r, "2.name"), "Дмитрий");
    let r = m.ok("list_chats", r#"{"limit":2,"include_last_message":false}"#);
    assert_eq!(ids(&r), vec![FAMILIE, WANG]);
    assert!(!r.at(0).keys().contains(&"lastMessage".to_string()));

    let r = m.ok("list_system_chats", "{}");
    assert_eq!(ids(&r), vec![SYSTEM]);
    assert_eq!(s(&r, "0.lastMessage.type"), "protocolMessage");
    let r = m.ok("list_groups", "{}");
    assert_eq!(ids(&r), vec![FAMILIE, BOOK_CLUB, NACHBARN]);
    assert_eq!(ids(&m.ok("list_groups", r#"{"limit":1}"#)), vec![FAMILIE]);

    // get_chat_by_id: either identity; not found.
    for jid in [JURGEN_LID, JURGEN] {
        let r = m.ok("get_chat_by_id", &format!(r#"{{"jid":"{jid}"}}"#));
        assert_eq!(s(&r, "id"), JURGEN);
        assert_eq!(s(&r, "lastMessage.body"), "Foto vom Kuchen");
    }
    let t = m.fails("get_chat_by_id", &format!(r#"{{"jid":"{STRANGER}"}}"#));
    assert_eq!(t, format!("Chat not found for JID: {STRANGER}"));

    // get_direct_chat_by_contact_number: any common phone form.
    let r = m.ok(
        "get_direct_chat_by_contact_number",
        r#"{"phone_number":"+49 176 1234-5678"}"#,
    );
    assert_eq!(s(&r, "id"), JURGEN);
    let t = m.fails(
        "get_direct_chat_by_contact_number",
        r#"{"phone_number":"+20 100 123 4567"}"#,
    );
    assert_eq!(t, "Direct chat not found for number: +20 100 123 4567");

    // get_chat_by_contact: one match → the chat; several → the matches.
    let r = m.ok("get_chat_by_contact", r#"{"query":"王伟"}"#);
    assert_eq!(s(&r, "id"), WANG);
    let r = m.ok("get_chat_by_contact", r#"{"query":"anna"}"#);
    assert_eq!(r.get("matches").arr().len(), 2);
    assert_eq!(s(&r, "matches.0.id"), ANNA);
    let t = m.fails("get_chat_by_contact", r#"{"query":"zzz"}"#);
    assert_eq!(t, "No contacts matched for query: zzz");
}

#[test]
fn auto_select_contact_picks_a_clear_winner() {
    let m = Mcp::seeded(&[("AUTO_SELECT_CONTACT", "1")]);
    let r = m.ok("get_chat_by_contact", r#"{"query":"anna"}"#);
    assert_eq!(s(&r, "id"), ANNA, "95 against 80 is clear");
    let r = m.ok("get_chat_by_contact", r#"{"query":"annabel"}"#);
    assert!(r.get("chat").is_null() && s(&r, "contact.id") == ANNABEL);
}

#[test]
fn messages_from_the_seeded_store() {
    let m = Mcp::seeded(&[]);

    // list_messages: both identities' halves, oldest first, canonical ids.
    let r = m.ok("list_messages", &format!(r#"{{"chat_id":"{JURGEN_LID}"}}"#));
    assert_eq!(ids(&r), msg_ids(JURGEN, &["J1", "J2", "J3", "J4"]));
    assert_eq!(
        r.at(0).keys(),
        [
            "body",
            "from",
            "fromMe",
            "hasMedia",
            "id",
            "timestamp",
            "to",
            "type"
        ]
    );
    assert_eq!(s(&r, "2.from"), JURGEN);
    assert_eq!(s(&r, "2.to"), JURGEN);
    assert_eq!(n(&r, "0.timestamp"), 1_767_261_600_000.0);
    assert_eq!(r.at(1).get("fromMe").bool(), Some(true));
    // Our own messages carry their delivery state (imported as `status`); others' do not.
    assert_eq!(r.at(1).get("status").str().as_deref(), Some("read"));
    assert!(!r.at(0).keys().contains(&"status".to_string()));
    let r = m.ok(
        "list_messages",
        &format!(r#"{{"chat_id":"{JURGEN}","limit":2,"include_media":true}}"#),
    );
    assert_eq!(ids(&r), msg_ids(JURGEN, &["J3", "J4"]));
    assert!(r.at(0).get("media").is_null());
    assert_eq!(s(&r, "1.media.status"), "not_downloaded");
    assert_eq!(s(&r, "1.media.mimetype"), "image/jpeg");
    assert_eq!(s(&r, "1.media.filename"), "kuchen.jpg");
    assert_eq!(n(&r, "1.media.filesize"), 48213.0);
    let r = m.ok(
        "list_messages",
        &format!(r#"{{"chat_id":"{ANNA}","include_media":true,"media_limit":1}}"#),
    );
    assert_eq!(s(&r, "2.media.mimetype"), "application/pdf");
    assert_eq!(s(&r, "3.media.status"), "skipped");
    assert_eq!(s(&r, "3.media.reason"), "media_limit_reached");
    let r = m.ok(
        "list_messages",
        &format!(r#"{{"chat_id":"{ANNA}","include_media":true}}"#),
    );
    assert_eq!(s(&r, "3.media.status"), "not_available");
    assert!(
        m.ok("list_messages", &format!(r#"{{"chat_id":"{STRANGER}"}}"#))
            .arr()
            .is_empty()
    );
    assert!(
        m.fails("list_messages", r#"{"chat_id":"anna"}"#)
            .starts_with("Invalid chat_id")
    );

    // get_message_by_id: either identity of the chat.
    let r = m.ok(
        "get_message_by_id",
        &format!(r#"{{"message_id":"{JURGEN_LID}:J3"}}"#),
    );
    assert_eq!(s(&r, "id"), format!("{JURGEN}:J3"));
    assert_eq!(s(&r, "body"), "Kommst du morgen ins Café?");
    let t = m.fails(
        "get_message_by_id",
        &format!(r#"{{"message_id":"{ANNA}:NOPE"}}"#),
    );
    assert_eq!(t, format!("Message not found for ID: {ANNA}:NOPE"));

    // get_message_context: a window around the target.
    let r = m.ok(
        "get_message_context",
        &format!(r#"{{"message_id":"{ANNA}:A2","limit":3}}"#),
    );
    assert_eq!(
        ids(&r.get("contextMessages")),
        msg_ids(ANNA, &["A1", "A2", "A3"])
    );
    assert_eq!(n(&r, "targetIndex"), 1.0);
    assert_eq!(s(&r, "targetMessage.id"), format!("{ANNA}:A2"));
    let r = m.ok(
        "get_message_context",
        &format!(r#"{{"message_id":"{ANNA}:A1"}}"#),
    );
    assert_eq!(r.get("contextMessages").arr().len(), 4);
    assert_eq!(n(&r, "targetIndex"), 0.0);
    let t = m.fails(
        "get_message_context",
        &format!(r#"{{"message_id":"{ANNA}:NOPE"}}"#),
    );
    assert_eq!(t, format!("Target message not found: {ANNA}:NOPE"));

    // get_last_interaction.
    let r = m.ok("get_last_interaction", &format!(r#"{{"jid":"{FAMILIE}"}}"#));
    assert_eq!(s(&r, "id"), format!("{FAMILIE}:G3"));
    assert_eq!(s(&r, "from"), STRANGER);
    let t = m.fails(
        "get_last_interaction",
        &format!(r#"{{"jid":"{BOOK_CLUB}"}}"#),
    );
    assert_eq!(
        t,
        format!("No recent interaction found for JID: {BOOK_CLUB}")
    );

    // search_messages: folding across scripts, filters, time bounds.
    let hit = |q: &str| ids(&m.ok("search_messages", &format!(r#"{{"query":"{q}"}}"#)));
    assert_eq!(hit("СПАСИБО"), msg_ids(DMITRI, &["D1"]));
    assert_eq!(hit("спасибо"), msg_ids(DMITRI, &["D1"]));
    assert_eq!(hit("hauptstrasse"), msg_ids(JURGEN, &["J1"]));
    assert_eq!(hit("cafe"), msg_ids(JURGEN, &["J3"]));
    assert_eq!(hit("σοφος"), msg_ids(DMITRI, &["D2"]));
    assert_eq!(hit("东京"), msg_ids(WANG, &["W1"]));
    assert_eq!(hit("مرحبا"), msg_ids(FAMILIE, &["G3"]));
    assert_eq!(
        hit("kuchen"),
        vec![format!("{FAMILIE}:G1"), format!("{JURGEN}:J4")]
    );
    assert!(hit("xylophone").is_empty());
    let r = m.ok(
        "search_messages",
        &format!(r#"{{"query":"kuchen","chat_id":"{JURGEN_LID}"}}"#),
    );
    assert_eq!(ids(&r), msg_ids(JURGEN, &["J4"]));
    let r = m.ok("search_messages", r#"{"query":"kuchen","limit":1}"#);
    assert_eq!(ids(&r), msg_ids(FAMILIE, &["G1"]));
    let r = m.ok("search_messages", r#"{"query":"cake","from":"Anna Smith"}"#);
    assert_eq!(ids(&r), msg_ids(FAMILIE, &["G2"]));
    let r = m.ok(
        "search_messages",
        r#"{"query":"","from":"+49 176 12345678"}"#,
    );
    assert_eq!(
        ids(&r),
        vec![
            format!("{FAMILIE}:G1"),
            format!("{JURGEN}:J4"),
            format!("{JURGEN}:J3"),
            format!("{JURGEN}:J1"),
        ]
    );
    let r = m.ok(
        "search_messages",
        r#"{"query":"","after":"2026-01-03","before":"2026-01-03T12:00:01+01:00"}"#,
    );
    assert_eq!(ids(&r), msg_ids(ANNA, &["A2", "A1"]));
    let r = m.ok(
        "search_messages",
        r#"{"query":"anna","after":"1767434400000","before":"1767434400001"}"#,
    );
    assert_eq!(ids(&r), msg_ids(ANNA, &["A1"]));
    let t = m.fails("search_messages", r#"{"query":"x","after":"tomorrow"}"#);
    assert!(t.starts_with("Invalid after"), "{t}");
    let t = m.fails("search_messages", r#"{"query":"x","before":"2026/01/03"}"#);
    assert!(t.starts_with("Invalid before"), "{t}");
}

#[test]
fn group_audits_from_the_seeded_store() {
    let m = Mcp::seeded(&[]);
    let r = m.ok("analyze_group_overlaps", "{}");
    assert_eq!(n(&r, "groupsProcessed"), 3.0);
    assert_eq!(n(&r, "totalMembers"), 4.0);
    let overlaps = r.get("overlaps").arr();
    assert_eq!(overlaps.len(), 4);
    let jurgen = overlaps
        .iter()
        .find(|o| o.get("canonicalId").str().as_deref() == Some(JURGEN))
        .expect("Jürgen is merged under his phone JID");
    assert_eq!(
        jurgen
            .get("ids")
            .arr()
            .iter()
            .map(|i| i.str().unwrap())
            .collect::<Vec<_>>(),
        vec![JURGEN, JURGEN_LID]
    );
    assert_eq!(n(jurgen, "groupCount"), 2.0);
    assert_eq!(s(jurgen, "groups.0.name"), "Book club 📚");
    assert_eq!(s(jurgen, "name"), "Jürgen Groß");
    assert_eq!(jurgen.get("hasDirectChat").bool(), Some(true));
    assert_eq!(jurgen.get("inContacts").bool(), Some(true));

    let r = m.ok("find_members_without_direct_chat", "{}");
    assert_eq!(
        r.get("members")
            .arr()
            .iter()
            .map(|x| s(x, "canonicalId"))
            .collect::<Vec<_>>(),
        vec![STRANGER]
    );
    let r = m.ok("find_members_not_in_contacts", r#"{"min_shared_groups":3}"#);
    assert!(r.get("members").arr().is_empty());
    let r = m.ok("run_group_audit", r#"{"refresh_group_info":true}"#);
    assert_eq!(n(&r, "summary.groupsProcessed"), 3.0);
    assert_eq!(n(&r, "summary.totalMembers"), 4.0);
    assert_eq!(n(&r, "summary.overlapCount"), 4.0);
    assert_eq!(n(&r, "summary.withoutDirectChatCount"), 1.0);
    assert_eq!(n(&r, "summary.notInContactsCount"), 1.0);
    assert!(s(&r, "note").contains("stored member lists"));
    let r = m.ok("run_group_audit", r#"{"group_limit":1}"#);
    assert_eq!(n(&r, "summary.groupsProcessed"), 1.0);
    assert_eq!(n(&r, "summary.overlapCount"), 0.0);
}

#[test]
fn an_empty_store_answers_empty_lists_and_not_found_errors() {
    let m = Mcp::empty();
    for (tool, args) in [
        ("list_chats", "{}"),
        ("list_system_chats", "{}"),
        ("list_groups", "{}"),
        ("search_contacts", r#"{"query":"anna"}"#),
        ("resolve_contact", r#"{"query":"anna"}"#),
        (
            "list_messages",
            r#"{"chat_id":"447700900123@s.whatsapp.net"}"#,
        ),
        ("search_messages", r#"{"query":"спасибо","limit":3}"#),
    ] {
        let (err, text) = m.call(tool, args);
        assert!(!err, "{tool}: {text}");
        assert_eq!(text, "[]", "{tool}");
    }
    for (tool, args, want) in [
        (
            "get_contact_by_id",
            r#"{"jid":"447700900123@s.whatsapp.net"}"#,
            "Contact not found for JID: 447700900123@s.whatsapp.net",
        ),
        (
            "get_chat_by_id",
            r#"{"jid":"447700900123@s.whatsapp.net"}"#,
            "Chat not found for JID: 447700900123@s.whatsapp.net",
        ),
        (
            "get_direct_chat_by_contact_number",
            r#"{"phone_number":"447700900123"}"#,
            "Direct chat not found for number: 447700900123",
        ),
        (
            "get_chat_by_contact",
            r#"{"query":"anna"}"#,
            "No contacts matched for query: anna",
        ),
        (
            "get_message_by_id",
            r#"{"message_id":"353876219642@s.whatsapp.net:AE878D86764FD890443AA4165CE69FB3"}"#,
            "Message not found for ID: 353876219642@s.whatsapp.net:AE878D86764FD890443AA4165CE69FB3",
        ),
        (
            "get_message_context",
            r#"{"message_id":"1234567@s.whatsapp.net:X"}"#,
            "Target message not found: 1234567@s.whatsapp.net:X",
        ),
        (
            "get_last_interaction",
            r#"{"jid":"1234567@s.whatsapp.net"}"#,
            "No recent interaction found for JID: 1234567@s.whatsapp.net",
        ),
    ] {
        assert_eq!(m.fails(tool, args), want, "{tool}");
    }
    for tool in [
        "analyze_group_overlaps",
        "find_members_without_direct_chat",
        "find_members_not_in_contacts",
    ] {
        let r = m.ok(tool, "{}");
        assert_eq!(n(&r, "groupsProcessed"), 0.0, "{tool}");
        assert_eq!(n(&r, "totalMembers"), 0.0, "{tool}");
    }
    let r = m.ok("run_group_audit", "{}");
    assert_eq!(n(&r, "summary.totalMembers"), 0.0);
}
