//! Bad input to the sending and waiting tools, end to end on the real binary (no WhatsApp account
//! linked). Every invalid call answers `isError: true` with a text that names what to fix, is
//! decided before the connection check (so it never says "not connected") and the send rate
//! limit, and leaves no send-log entry that claims a send. The server keeps serving.

mod common;

use common::serde_like::Json;
use common::{ACCEPT_BOTH, BIN, JSON_CT, Resp, Server, TempDir};
use std::cell::Cell;
use std::process::Command;

const TOKEN: &str = "send-input-test-token-0123456789abc";

const ANNA: &str = "447700900123@s.whatsapp.net";
/// Two contacts share this exact name.
const TWIN_A: &str = "447700900201@s.whatsapp.net";
const TWIN_B: &str = "447700900202@s.whatsapp.net";
const GROUP: &str = "120363444444444444@g.us";

const SEED: &str = r#"{"kind":"contact","jid":"447700900123@s.whatsapp.net","name":"Anna Smith","isMyContact":true}
{"kind":"contact","jid":"447700900201@s.whatsapp.net","name":"Sam Jones","isMyContact":true}
{"kind":"contact","jid":"447700900202@s.whatsapp.net","name":"Sam Jones","isMyContact":true}
{"kind":"chat","jid":"447700900123@s.whatsapp.net","name":"Anna Smith"}
{"kind":"message","chat":"447700900123@s.whatsapp.net","id":"A1","timestamp":1767261600000,"body":"hello from Anna","from":"447700900123@s.whatsapp.net","type":"conversation"}
{"kind":"chat","jid":"120363444444444444@g.us","name":"Input testers"}
"#;

/// A data dir holding a store imported from [`SEED`].
fn seeded_data() -> TempDir {
    let data = TempDir::new("send-input");
    let file = data.path().join("seed.jsonl");
    std::fs::write(&file, SEED).unwrap();
    let out = Command::new(BIN)
        .arg("import")
        .arg(&file)
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

struct Mcp {
    server: Server,
    session: String,
    auth: String,
    next_id: Cell<u64>,
}

impl Mcp {
    fn start(env: &[(&str, &str)]) -> Mcp {
        let mut all = vec![("ACCESS_TOKEN", TOKEN)];
        all.extend_from_slice(env);
        let server = Server::start_in("127.0.0.1:0", seeded_data(), &all);
        let auth = format!("Bearer {TOKEN}");
        let session = server.initialize(&[("Authorization", auth.as_str())], "2025-11-25");
        Mcp {
            server,
            session,
            auth,
            next_id: Cell::new(10),
        }
    }

    fn get(&self, path: &str) -> Resp {
        self.server
            .request("GET", path, &[("Authorization", self.auth.as_str())], b"")
    }

    /// Calls a tool with raw JSON arguments; returns (isError, text).
    fn tool(&self, name: &str, args: &str) -> (bool, String) {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{name}","arguments":{args}}}}}"#
        );
        let headers = [
            ACCEPT_BOTH,
            JSON_CT,
            ("MCP-Session-Id", self.session.as_str()),
            ("Authorization", self.auth.as_str()),
        ];
        let r = self
            .server
            .request("POST", "/mcp", &headers, body.as_bytes());
        assert_eq!(r.status, 200, "{name} {args}: {}", r.text());
        let j = r.json();
        let is_error = j.path("result.isError").bool().unwrap_or(false);
        let text = j
            .path("result.content.0.text")
            .str()
            .unwrap_or_else(|| panic!("{name}: no text in {:?}", j.0));
        (is_error, text)
    }

    /// The call must fail with a text holding every one of `needles`, decided before the
    /// connection check.
    fn refused(&self, name: &str, args: &str, needles: &[&str]) -> String {
        let (is_error, text) = self.tool(name, args);
        assert!(is_error, "{name} {args} should fail: {text}");
        for n in needles {
            assert!(text.contains(n), "{name} {args}: {n:?} not in {text:?}");
        }
        assert!(
            !text.contains("not connected"),
            "{name} {args}: validation must come before the connection check: {text}"
        );
        text
    }

    fn send_log(&self) -> Vec<Json> {
        let r = self.get("/api/send-log?limit=1000");
        assert_eq!(r.status, 200, "{}", r.text());
        r.json().get("entries").arr()
    }

    /// The server still answers.
    fn alive(&self) {
        let (is_error, text) = self.tool("ping", "{}");
        assert!(!is_error, "{text}");
    }
}

fn send(to: &str, text: &str) -> String {
    format!(r#"{{"recipient_jid":"{to}","message":"{text}"}}"#)
}

#[test]
fn send_message_refuses_bad_input_clearly_before_any_limit_or_connection_check() {
    let m = Mcp::start(&[("SEND_RATE_PER_MIN", "1"), ("WA_SEND_DEDUP_WINDOW_MS", "0")]);
    // Missing and empty fields.
    m.refused(
        "send_message",
        r#"{"message":"hi"}"#,
        &["recipient_jid", "missing"],
    );
    m.refused("send_message", &send("", "hi"), &["recipient_jid", "empty"]);
    m.refused("send_message", &send("   ", "hi"), &["recipient_jid"]);
    m.refused(
        "send_message",
        &format!(r#"{{"recipient_jid":"{ANNA}"}}"#),
        &["message", "missing"],
    );
    m.refused("send_message", &send(ANNA, ""), &["message is empty"]);
    m.refused("send_message", &send(ANNA, "  \\n "), &["message is empty"]);
    m.refused(
        "send_message",
        r#"{"recipient_jid":7,"message":"hi"}"#,
        &["recipient_jid", "string"],
    );
    // Over WhatsApp's 65,536 characters (multi-byte characters count once each).
    let long = "é".repeat(65_537);
    m.refused(
        "send_message",
        &send(ANNA, &long),
        &["too long", "65537", "65536"],
    );
    // Bad addresses.
    for bad in [
        "abc@",
        "@s.whatsapp.net",
        "123@unknown.server",
        "abc@s.whatsapp.net",
        "status@broadcast",
        "+",
        "123",
        "1@2@g.us",
    ] {
        m.refused(
            "send_message",
            &send(bad, "hi"),
            &["recipient_jid", "s.whatsapp.net"],
        );
    }
    m.refused(
        "send_message",
        &send(&"Sam_".repeat(5_000), "hi"),
        &["recipient_jid", "20000 characters"],
    );
    // A name two contacts share: both are listed, with their JIDs.
    let text = m.refused(
        "send_message",
        &send("Sam Jones", "hi"),
        &["matches 2 contacts"],
    );
    assert!(text.contains(TWIN_A) && text.contains(TWIN_B), "{text}");
    m.refused(
        "send_message",
        &send("Nobody Known", "hi"),
        &["No contact matches", "Nobody Known"],
    );
    // idempotency_key of 0, 201 and only blank characters.
    let key =
        |k: &str| format!(r#"{{"recipient_jid":"{ANNA}","message":"hi","idempotency_key":"{k}"}}"#);
    m.refused("send_message", &key(""), &["idempotency_key", "at least 1"]);
    m.refused(
        "send_message",
        &key(&"k".repeat(201)),
        &["idempotency_key", "at most 200"],
    );
    m.refused("send_message", &key("   "), &["idempotency_key is blank"]);
    // reply_to a message that is not stored: the error names it.
    m.refused(
        "send_message",
        &format!(r#"{{"recipient_jid":"{ANNA}","message":"hi","reply_to":"NOPE42"}}"#),
        &["reply_to", "NOPE42"],
    );
    m.refused(
        "send_message",
        &format!(r#"{{"recipient_jid":"{ANNA}","message":"hi","reply_to":"{ANNA}:NOPE43"}}"#),
        &["reply_to", "NOPE43"],
    );
    // An unknown field.
    m.refused(
        "send_message",
        &format!(r#"{{"recipient_jid":"{ANNA}","message":"hi","to":"x"}}"#),
        &["unknown field `to`"],
    );

    // None of that was refused by the rate limit: a valid call gets as far as the connection.
    // (That invalid calls take no send from a connected product's limit is a unit test in
    // src/tools/tests_send.rs, with a fake engine that is connected.)
    let (is_error, text) = m.tool("send_message", &send(ANNA, "a valid message"));
    assert!(is_error && text.contains("not connected"), "{text}");
    assert!(!text.contains("SEND_RATE_PER_MIN"), "{text}");

    // The log claims no send: no `sent`, no message id; the long text is not kept.
    for e in m.send_log() {
        let result = e.get("result").str().unwrap_or_default();
        assert!(
            result.starts_with("error:") || result.starts_with("refused:"),
            "{result}"
        );
        assert!(e.get("messageId").is_null(), "{:?}", e.0);
        assert!(!e.keys().contains(&"body".to_string()));
    }
    m.alive();
}

#[test]
fn the_long_text_is_not_logged_even_with_bodies_on() {
    let m = Mcp::start(&[("SEND_LOG_BODIES", "1")]);
    let long = "x".repeat(70_000);
    m.refused("send_message", &send(ANNA, &long), &["too long"]);
    m.refused("send_message", &send(ANNA, ""), &["message is empty"]);
    let log = m.send_log();
    assert_eq!(log.len(), 2);
    assert_eq!(
        log[1].get("result").str().as_deref(),
        Some("error:message too long")
    );
    assert!(!log[1].keys().contains(&"body".to_string()));
    assert_eq!(log[1].get("bytes").num(), Some(70_000.0));
}

#[test]
fn send_reaction_and_mark_as_read_refuse_bad_input() {
    let m = Mcp::start(&[("SEND_RATE_PER_MIN", "1")]);
    let react = |emoji: &str, id: &str| {
        format!(r#"{{"chat_jid":"{ANNA}","message_id":"{id}","emoji":"{emoji}"}}"#)
    };
    let a1 = format!("{ANNA}:A1");
    for bad in ["👍👍", "👍 ", "ok", "a", "é"] {
        m.refused("send_reaction", &react(bad, &a1), &["single emoji"]);
    }
    m.refused(
        "send_reaction",
        &react(&"😀".repeat(40), &a1),
        &["single emoji"],
    );
    m.refused(
        "send_reaction",
        &react("👍", &format!("{ANNA}:NOSUCH9")),
        &["message_id", "NOSUCH9"],
    );
    m.refused(
        "send_reaction",
        r#"{"chat_jid":"123@unknown.server","message_id":"A1","emoji":"👍"}"#,
        &["chat_jid"],
    );
    // Single emoji of several code points pass validation and stop at the connection.
    for good in ["👍🏽", "🇩🇪", "1️⃣", "👨‍👩‍👧"] {
        let (is_error, text) = m.tool("send_reaction", &react(good, &a1));
        assert!(is_error, "{text}");
        assert!(text.contains("not connected"), "{good}: {text}");
    }

    let mark = |args: &str| m.refused("mark_as_read", args, &[]);
    let t = mark(&format!(r#"{{"chat_jid":"{ANNA}","message_ids":"A1"}}"#));
    assert!(t.contains("message_ids") && t.contains("array"), "{t}");
    let t = mark(&format!(r#"{{"chat_jid":"{ANNA}","message_ids":[1,2]}}"#));
    assert!(t.contains("message_ids"), "{t}");
    let t = mark(&format!(r#"{{"chat_jid":"{ANNA}","message_ids":[]}}"#));
    assert!(t.contains("message_ids is empty"), "{t}");
    let t = mark(r#"{"chat_jid":"447700900999@s.whatsapp.net"}"#);
    assert!(
        t.contains("Chat not found") && t.contains("447700900999"),
        "{t}"
    );
    let t = mark(&format!(
        r#"{{"chat_jid":"{ANNA}","message_ids":["NOPE7"]}}"#
    ));
    assert!(t.contains("NOPE7"), "{t}");
    let t = mark(r#"{"chat_jid":"abc@"}"#);
    assert!(t.contains("chat_jid"), "{t}");
    m.alive();
}

#[test]
fn wait_get_group_info_get_profile_pic_and_the_send_log_refuse_bad_input() {
    let m = Mcp::start(&[]);
    for (timeout, needle) in [
        ("-1", "greater than 0"),
        ("0", "greater than 0"),
        ("56", "at most 55"),
        ("1e12", "at most 55"),
        ("1e300", "at most 55"),
        ("18446744073709551616", "at most 55"),
        ("-1e300", "greater than 0"),
        ("1.5", "whole number"),
        (r#""10""#, "integer"),
        ("null", ""),
    ] {
        let args = format!(r#"{{"timeout_secs":{timeout},"since":"x"}}"#);
        let (is_error, text) = m.tool("wait_for_messages", &args);
        assert!(is_error, "{timeout}: {text}");
        assert!(text.contains(needle), "{timeout}: {text}");
    }
    for since in [
        "garbage",
        "1",
        "-1.5",
        "1.2.3",
        "..",
        "99999999999999999999999.1",
    ] {
        let (is_error, text) = m.tool(
            "wait_for_messages",
            &format!(r#"{{"timeout_secs":1,"since":"{since}"}}"#),
        );
        assert!(is_error && text.contains("since"), "{since}: {text}");
    }
    // Cursors from the future: a sequence or a time floor ahead of the store.
    for since in ["999999.1", "0.99999999999999"] {
        let (is_error, text) = m.tool(
            "wait_for_messages",
            &format!(r#"{{"timeout_secs":1,"since":"{since}"}}"#),
        );
        assert!(is_error && text.contains("ahead"), "{since}: {text}");
    }
    // An old cursor is accepted (what was stored after it is returned at once).
    let (is_error, text) = m.tool("wait_for_messages", r#"{"timeout_secs":1,"since":"0.0"}"#);
    assert!(!is_error, "{text}");
    let (is_error, text) = m.tool(
        "wait_for_messages",
        r#"{"timeout_secs":1,"chat_jid":"abc@"}"#,
    );
    assert!(is_error && text.contains("chat_jid"), "{text}");

    m.refused(
        "get_group_info",
        &format!(r#"{{"group_jid":"{ANNA}"}}"#),
        &["not a group", "@g.us"],
    );
    m.refused("get_group_info", r#"{"group_jid":"abc@"}"#, &["group_jid"]);
    m.refused(
        "get_group_info",
        r#"{"group_jid":"abc@g.us"}"#,
        &["group_jid"],
    );
    for bad in ["abc@", "@s.whatsapp.net", "123@unknown.server", "+"] {
        m.refused(
            "get_profile_pic",
            &format!(r#"{{"jid":"{bad}"}}"#),
            &["jid"],
        );
    }
    // A stored group without a connection answers from the cache.
    let (is_error, text) = m.tool("get_group_info", &format!(r#"{{"group_jid":"{GROUP}"}}"#));
    assert!(is_error || text.contains("cached"), "{text}");

    for limit in ["0", "-1", "abc", "1001", "", "1e3", "%31"] {
        let r = m.get(&format!("/api/send-log?limit={limit}"));
        assert_eq!(r.status, 400, "limit={limit}: {}", r.text());
        assert!(r.text().contains("limit"), "{}", r.text());
    }
    for limit in ["1", "1000"] {
        let r = m.get(&format!("/api/send-log?limit={limit}"));
        assert_eq!(r.status, 200, "limit={limit}: {}", r.text());
    }
    m.alive();
}
