//! Messaging end to end (`test-network`): the real binary against the fakewa binary, with peers
//! that are real whatsapp-rust clients inside fakewa. Everything a peer reads was encrypted by
//! the product and decrypted by a real client, and the other way round.
//!
//! Every wait polls a condition until a deadline; nothing sleeps for a fixed time.
#![cfg(feature = "test-network")]

mod common;

use common::fakewa::*;
use common::serde_like::Json;
use common::{TempDir, wait_for};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A text no other test (or run) uses.
/// `send_message` of `text` to `to`; its JSON answer.
fn send_text(mcp: &Mcp, to: &str, text: &str) -> Json {
    mcp.json(
        "send_message",
        &format!(r#"{{"recipient_jid":"{to}","message":"{text}"}}"#),
    )
}

/// Whether an inbox message's text is `text`.
fn has_text(text: &str) -> impl Fn(&Json) -> bool + '_ {
    move |m| m.get("text").str().as_deref() == Some(text)
}

fn unique(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{tag}-{}-{nanos}", std::process::id())
}

fn body_is(m: &Json, text: &str) -> bool {
    m.get("body").str().as_deref() == Some(text)
}

fn list_messages(mcp: &Mcp, chat: &str, limit: usize) -> Vec<Json> {
    mcp.json(
        "list_messages",
        &format!(r#"{{"chat_id":"{chat}","limit":{limit}}}"#),
    )
    .arr()
}

fn wait_listed(mcp: &Mcp, chat: &str, what: &str, ok: impl Fn(&Json) -> bool) -> Json {
    wait_for(what, Duration::from_secs(30), || {
        let found = list_messages(mcp, chat, 100).into_iter().find(|m| ok(m));
        if found.is_none() {
            std::thread::sleep(Duration::from_millis(50));
        }
        found
    })
}

fn search(mcp: &Mcp, query: &str) -> Vec<Json> {
    mcp.json("search_messages", &format!(r#"{{"query":"{query}"}}"#))
        .arr()
}

/// The WhatsApp id part of a public message id `"<chat jid>:<id>"`.
fn wa_id(public: &str) -> String {
    public.rsplit(':').next().unwrap_or(public).to_string()
}

#[test]
fn a_peers_message_is_stored_and_found_and_a_send_and_a_reply_reach_the_peer() {
    let fw = start_fakewa();
    let server = start_product(&fw, TempDir::new("msg-dm"), "msg-dm");
    let mcp = Mcp::open(&server);
    let own = account_of(&link(&fw, &mcp));
    let bob = create_peer(&fw, "bob");

    // Inbound: the peer's text is stored, fromMe false, and searchable.
    let hello = unique("hello");
    let peer_id = peer_send(&fw, &bob, &format!(r#"{{"to":"{own}","text":"{hello}"}}"#));
    let got = wait_listed(&mcp, &bob.jid, "the peer's message in list_messages", |m| {
        body_is(m, &hello)
    });
    assert_eq!(got.get("fromMe").bool(), Some(false), "{got:?}");
    assert_eq!(wa_id(&got.get("id").str().unwrap()), peer_id);
    let found = search(&mcp, &hello);
    assert!(
        found.iter().any(|m| body_is(m, &hello)),
        "search_messages finds it: {found:?}"
    );

    // Outbound: the text reaches the peer, and we read our own write at once.
    let out = unique("out");
    let sent = send_text(&mcp, &bob.jid, &out);
    let sent_id = sent.get("messageId").str().expect("messageId");
    let mine = list_messages(&mcp, &bob.jid, 100);
    assert!(
        mine.iter()
            .any(|m| body_is(m, &out) && m.get("fromMe").bool() == Some(true)),
        "our own message is listed as soon as send_message returns: {mine:?}"
    );
    let seen = wait_peer_message(&fw, &bob, "the send in the peer's inbox", has_text(&out));
    assert_eq!(
        seen.get("id").str().as_deref(),
        Some(wa_id(&sent_id).as_str())
    );

    // A reply carries the quote.
    let reply = unique("reply");
    mcp.json(
        "send_message",
        &format!(
            r#"{{"recipient_jid":"{}","message":"{reply}","reply_to":"{}"}}"#,
            bob.jid,
            got.get("id").str().unwrap()
        ),
    );
    let quoted = wait_peer_message(&fw, &bob, "the reply in the peer's inbox", has_text(&reply));
    assert_eq!(quoted.get("quoted_id").str(), Some(peer_id.clone()));
    assert_eq!(quoted.get("quoted_text").str(), Some(hello.clone()));
}

#[test]
fn edits_revokes_and_reactions_from_a_peer_update_the_store_and_search() {
    let fw = start_fakewa();
    let server = start_product(&fw, TempDir::new("msg-edit"), "msg-edit");
    let mcp = Mcp::open(&server);
    let own = account_of(&link(&fw, &mcp));
    let carol = create_peer(&fw, "carol");

    let first = unique("draft");
    let id = peer_send(
        &fw,
        &carol,
        &format!(r#"{{"to":"{own}","text":"{first}"}}"#),
    );
    wait_listed(&mcp, &carol.jid, "the original", |m| body_is(m, &first));

    let fixed = unique("fixed");
    peer_send(
        &fw,
        &carol,
        &format!(r#"{{"to":"{own}","edit":{{"id":"{id}","text":"{fixed}"}}}}"#),
    );
    let edited = wait_listed(&mcp, &carol.jid, "the edit applied", |m| body_is(m, &fixed));
    assert_eq!(wa_id(&edited.get("id").str().unwrap()), id);
    assert!(
        search(&mcp, &first).is_empty(),
        "the old text left the index"
    );
    assert_eq!(search(&mcp, &fixed).len(), 1);

    peer_send(
        &fw,
        &carol,
        &format!(r#"{{"to":"{own}","reaction":{{"id":"{id}","emoji":"👍"}}}}"#),
    );
    // Reactions are not part of SimpleMessage; the message itself must stay as it is (a
    // reaction is not a message).
    let second = unique("second");
    peer_send(
        &fw,
        &carol,
        &format!(r#"{{"to":"{own}","text":"{second}"}}"#),
    );
    wait_listed(&mcp, &carol.jid, "a later message", |m| body_is(m, &second));
    let listed = list_messages(&mcp, &carol.jid, 100);
    assert_eq!(listed.len(), 2, "the reaction is not a message: {listed:?}");

    peer_send(
        &fw,
        &carol,
        &format!(r#"{{"to":"{own}","revoke":{{"id":"{id}"}}}}"#),
    );
    wait_for("the revoke applied", Duration::from_secs(30), || {
        let gone = search(&mcp, &fixed).is_empty();
        if !gone {
            std::thread::sleep(Duration::from_millis(50));
        }
        gone.then_some(())
    });
    let listed = list_messages(&mcp, &carol.jid, 100);
    let revoked = listed
        .iter()
        .find(|m| wa_id(&m.get("id").str().unwrap()) == id)
        .expect("the revoked message keeps its place");
    assert_eq!(revoked.get("body").str().as_deref(), Some(""));

    // The reaction is in the store (no tool shows reactions): read it from the stopped
    // product's redb file.
    drop(mcp);
    let data = server.stop();
    let store =
        whatsapp_mcp_stream::store::Store::open(&data.path().join("store.redb"), 4).unwrap();
    let reactions = store
        .read_blocking(|txn| {
            let m = whatsapp_mcp_stream::store::queries::message(txn, &carol.jid, &id)?
                .expect("the reacted message");
            whatsapp_mcp_stream::store::queries::reactions(txn, m.doc)
        })
        .unwrap();
    assert_eq!(reactions, [(carol.jid.clone(), "👍".to_string())]);
}

#[test]
fn wait_for_messages_is_woken_by_a_peers_message() {
    let fw = start_fakewa();
    let server = start_product(&fw, TempDir::new("msg-wait"), "msg-wait");
    let mcp = Mcp::open(&server);
    let own = account_of(&link(&fw, &mcp));
    let dave = create_peer(&fw, "dave");
    // A cursor from now: what arrives after it is returned, even before the wait starts.
    let cursor = mcp
        .json("wait_for_messages", r#"{"timeout_secs":1}"#)
        .get("cursor")
        .str()
        .expect("a cursor");
    let text = unique("wake");
    std::thread::scope(|s| {
        // The peer sends from another thread while this one waits.
        let sender = s.spawn(|| {
            peer_send(&fw, &dave, &format!(r#"{{"to":"{own}","text":"{text}"}}"#));
        });
        let answer = mcp.json(
            "wait_for_messages",
            &format!(
                r#"{{"chat_jid":"{}","since":"{cursor}","timeout_secs":20}}"#,
                dave.jid
            ),
        );
        sender.join().unwrap();
        let msgs = answer.get("messages").arr();
        assert!(
            msgs.iter().any(|m| body_is(m, &text)),
            "wait_for_messages returns the message, not the timeout: {answer:?}"
        );
    });
}

#[test]
fn history_sync_fills_chats_with_names_unread_counts_and_lid_merges() {
    let fw = start_fakewa();
    let server = start_product(&fw, TempDir::new("msg-hist"), "msg-hist");
    let mcp = Mcp::open(&server);
    let own = account_of(&link(&fw, &mcp));
    let number = own.split('@').next().unwrap();
    // Erin is known by her LID only in the conversation; the mapping names her phone JID.
    let erin_pn = "15559990001@s.whatsapp.net";
    let erin_lid = "199999000000001@lid";
    let frank = "15559990002@s.whatsapp.net";
    let body = format!(
        r#"{{"account":"{number}","conversations":[
            {{"jid":"{erin_lid}","name":"Erin Example","unread_count":2,"messages":[
                {{"id":"HE1","from_me":false,"text":"erin one","timestamp":1700000000}},
                {{"id":"HE2","from_me":false,"text":"erin two","timestamp":1700000100}},
                {{"id":"HE3","from_me":true,"text":"erin mine","timestamp":1700000050}}]}},
            {{"jid":"{frank}","name":"Frank Fake","unread_count":0,"messages":[
                {{"id":"HF1","from_me":false,"text":"frank hello","timestamp":1700000200}}]}}],
          "push_names":[{{"jid":"{frank}","name":"Franky"}}],
          "lid_mappings":[{{"lid":"{erin_lid}","pn":"{erin_pn}"}}]}}"#
    );
    let (status, answer) = control(&fw, "POST", "/control/history", &body);
    assert_eq!(status, 200, "history: {answer}");
    let chats = mcp.wait_json(
        "both history chats in list_chats",
        "list_chats",
        r#"{"limit":50}"#,
        |j| {
            let ids: Vec<String> = j.arr().iter().filter_map(|c| c.get("id").str()).collect();
            ids.iter().any(|i| i == erin_pn) && ids.iter().any(|i| i == frank)
        },
    );
    let chats = chats.arr();
    let erin = chats
        .iter()
        .find(|c| c.get("id").str().as_deref() == Some(erin_pn))
        .unwrap();
    assert_eq!(erin.get("name").str().as_deref(), Some("Erin Example"));
    assert_eq!(erin.get("unreadCount").num(), Some(2.0));
    assert!(
        !chats
            .iter()
            .any(|c| c.get("id").str().as_deref() == Some(erin_lid)),
        "the LID chat is merged into the phone chat: {chats:?}"
    );
    let frank_chat = chats
        .iter()
        .find(|c| c.get("id").str().as_deref() == Some(frank))
        .unwrap();
    assert_eq!(frank_chat.get("unreadCount").num(), Some(0.0));
    let msgs = list_messages(&mcp, erin_pn, 50);
    let bodies: Vec<String> = msgs.iter().filter_map(|m| m.get("body").str()).collect();
    assert_eq!(
        bodies,
        ["erin one", "erin mine", "erin two"],
        "oldest first"
    );
}

#[test]
fn offline_queue_of_fifty_is_stored_once_and_in_order_after_a_restart() {
    let fw = start_fakewa();
    let server = start_product(&fw, TempDir::new("msg-offline"), "msg-offline");
    let own = {
        let mcp = Mcp::open(&server);
        account_of(&link(&fw, &mcp))
    };
    let gina = create_peer(&fw, "gina");
    let data = server.stop();
    let tag = unique("queued");
    for i in 0..50 {
        peer_send(
            &fw,
            &gina,
            &format!(r#"{{"to":"{own}","text":"{tag} {i:02}"}}"#),
        );
    }
    let server = start_product(&fw, data, "msg-offline");
    let mcp = Mcp::open(&server);
    mcp.wait_connected("connected again after the restart", 60);
    let all = wait_for(
        "all 50 queued messages stored",
        Duration::from_secs(60),
        || {
            let msgs: Vec<String> = list_messages(&mcp, &gina.jid, 200)
                .iter()
                .filter_map(|m| m.get("body").str())
                .filter(|b| b.starts_with(&tag))
                .collect();
            if msgs.len() >= 50 {
                Some(msgs)
            } else {
                std::thread::sleep(Duration::from_millis(100));
                None
            }
        },
    );
    let expected: Vec<String> = (0..50).map(|i| format!("{tag} {i:02}")).collect();
    assert_eq!(all, expected, "each once, in order");
    let chats = mcp.json("list_chats", r#"{"limit":50}"#).arr();
    let chat = chats
        .iter()
        .find(|c| c.get("id").str().as_deref() == Some(gina.jid.as_str()))
        .expect("gina's chat");
    assert_eq!(chat.get("unreadCount").num(), Some(50.0), "{chat:?}");
}

#[test]
fn our_reaction_and_read_receipts_reach_the_peer() {
    let fw = start_fakewa();
    let server = start_product(&fw, TempDir::new("msg-react"), "msg-react");
    let mcp = Mcp::open(&server);
    let own = account_of(&link(&fw, &mcp));
    let hank = create_peer(&fw, "hank");
    let text = unique("react-to-me");
    let id = peer_send(&fw, &hank, &format!(r#"{{"to":"{own}","text":"{text}"}}"#));
    let listed = wait_listed(&mcp, &hank.jid, "the peer's message", |m| body_is(m, &text));
    let public = listed.get("id").str().unwrap();

    mcp.json(
        "send_reaction",
        &format!(
            r#"{{"chat_jid":"{}","message_id":"{public}","emoji":"🎉"}}"#,
            hank.jid
        ),
    );
    let reaction = wait_peer_message(&fw, &hank, "our reaction at the peer", |m| {
        m.path("reaction.target_id").str().as_deref() == Some(id.as_str())
    });
    assert_eq!(reaction.path("reaction.emoji").str().as_deref(), Some("🎉"));

    mcp.json("mark_as_read", &format!(r#"{{"chat_jid":"{}"}}"#, hank.jid));
    wait_for(
        "a read receipt at the peer",
        Duration::from_secs(30),
        || {
            let read = peer_receipts(&fw, &hank).iter().any(|r| {
                r.get("id").str().as_deref() == Some(id.as_str())
                    && r.get("type").str().as_deref() == Some("read")
            });
            if !read {
                std::thread::sleep(Duration::from_millis(50));
            }
            read.then_some(())
        },
    );
    let chats = mcp.json("list_chats", r#"{"limit":50}"#).arr();
    let chat = chats
        .iter()
        .find(|c| c.get("id").str().as_deref() == Some(hank.jid.as_str()))
        .expect("hank's chat");
    assert_eq!(chat.get("unreadCount").num(), Some(0.0));
}

#[test]
fn get_profile_pic_answers_the_url_fakewa_serves() {
    let fw = start_fakewa();
    let server = start_product(&fw, TempDir::new("msg-pic"), "msg-pic");
    let mcp = Mcp::open(&server);
    link(&fw, &mcp);
    let kim = create_peer(&fw, "kim");
    // A 1×1 PNG.
    let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
    let (status, body) = control(
        &fw,
        "POST",
        "/control/profile-pic",
        &format!(r#"{{"number":"{}","png_base64":"{png}"}}"#, kim.number),
    );
    assert_eq!(status, 200, "profile-pic: {body}");
    let pic = mcp.json("get_profile_pic", &format!(r#"{{"jid":"{}"}}"#, kim.jid));
    let url = pic.get("url").str().expect("a url");
    assert!(url.starts_with("https://"), "{url}");
    // Someone without a picture: a clear error, not a crash.
    let none = mcp.call("get_profile_pic", r#"{"jid":"15559990009@s.whatsapp.net"}"#);
    assert_eq!(none.get("isError").bool(), Some(true), "{none:?}");
}

/// Added by the tools helper: an `idempotency_key` replay after a process restart returns the
/// stored answer and sends nothing: the peer holds exactly one copy.
#[test]
fn an_idempotent_send_is_replayed_after_a_restart_and_reaches_the_peer_once() {
    let fw = start_fakewa();
    let server = start_product(&fw, TempDir::new("msg-idem"), "msg-idem");
    let ida = create_peer(&fw, "ida");
    let text = unique("idem");
    let key = unique("key");
    let args = format!(
        r#"{{"recipient_jid":"{}","message":"{text}","idempotency_key":"{key}"}}"#,
        ida.jid
    );
    let first = {
        let mcp = Mcp::open(&server);
        link(&fw, &mcp);
        mcp.json("send_message", &args)
    };
    assert_eq!(first.get("deduplicated").bool(), Some(false), "{first:?}");
    assert_eq!(first.get("idempotencyKey").str(), Some(key.clone()));
    wait_peer_message(
        &fw,
        &ida,
        "the first send in the peer's inbox",
        has_text(&text),
    );
    let data = server.stop();
    let server = start_product(&fw, data, "msg-idem");
    let mcp = Mcp::open(&server);
    mcp.wait_connected("connected again after the restart", 60);
    let again = mcp.json("send_message", &args);
    assert_eq!(again.get("deduplicated").bool(), Some(true), "{again:?}");
    assert_eq!(again.get("messageId").str(), first.get("messageId").str());
    assert_eq!(again.get("timestamp").num(), first.get("timestamp").num());
    // A marker sent after the replay arrives after anything the replay might have sent.
    let marker = unique("marker");
    send_text(&mcp, &ida.jid, &marker);
    wait_peer_message(
        &fw,
        &ida,
        "the marker in the peer's inbox",
        has_text(&marker),
    );
    let copies = peer_inbox(&fw, &ida)
        .iter()
        .filter(|m| m.get("text").str().as_deref() == Some(text.as_str()))
        .count();
    assert_eq!(copies, 1, "the peer holds exactly one copy");
    // The same key with another text is refused.
    let misuse = mcp.call(
        "send_message",
        &format!(
            r#"{{"recipient_jid":"{}","message":"other","idempotency_key":"{key}"}}"#,
            ida.jid
        ),
    );
    assert_eq!(misuse.get("isError").bool(), Some(true));
    assert!(
        misuse
            .path("content.0.text")
            .str()
            .unwrap_or_default()
            .contains("different send_message parameters"),
        "{misuse:?}"
    );
}

#[test]
fn the_rate_limit_refuses_a_linked_send_with_the_seconds_to_wait_and_logs_it() {
    let fw = start_fakewa();
    let server = start_product_with(
        &fw,
        TempDir::new("msg-rate"),
        "msg-rate",
        &[("SEND_RATE_PER_MIN", "2"), ("WA_SEND_DEDUP_WINDOW_MS", "0")],
    );
    let mcp = Mcp::open(&server);
    link(&fw, &mcp);
    let peer = create_peer(&fw, "rate-peer");
    for n in 0..2 {
        let text = unique(&format!("rate-{n}"));
        send_text(&mcp, &peer.jid, &text);
        wait_peer_message(&fw, &peer, "an allowed send in the inbox", has_text(&text));
    }
    let third = unique("rate-refused");
    let refused = mcp.call(
        "send_message",
        &format!(r#"{{"recipient_jid":"{}","message":"{third}"}}"#, peer.jid),
    );
    assert_eq!(refused.get("isError").bool(), Some(true), "{refused:?}");
    let text = refused.path("content.0.text").str().unwrap_or_default();
    assert!(text.contains("SEND_RATE_PER_MIN"), "{text}");
    let secs: u64 = text
        .split("Wait ")
        .nth(1)
        .unwrap_or_default()
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("no seconds in {text}"));
    assert!((1..=60).contains(&secs), "{text}");
    let log = server.request("GET", "/api/send-log", &[], b"").json();
    let results: Vec<String> = log
        .get("entries")
        .arr()
        .iter()
        .map(|e| e.get("result").str().unwrap_or_default())
        .collect();
    assert_eq!(results, ["refused:rate_limit", "sent", "sent"], "{log:?}");
    // Nothing of the refused text reached the peer.
    let inbox = peer_inbox(&fw, &peer);
    assert!(!inbox.iter().any(has_text(&third)), "{inbox:?}");
}

/// `POST /control/groups {subject, members}` → the group JID.
fn create_group(fw: &FakeWa, subject: &str, members: &[&str]) -> String {
    let members: Vec<String> = members.iter().map(|m| format!("\"{m}\"")).collect();
    let (status, body) = control(
        fw,
        "POST",
        "/control/groups",
        &format!(
            r#"{{"subject":"{subject}","members":[{}]}}"#,
            members.join(",")
        ),
    );
    assert_eq!(status, 200, "create group: {body}");
    Json::parse(&body)
        .and_then(|j| j.get("jid").str())
        .unwrap_or_else(|| panic!("create group answers a jid: {body}"))
}

#[test]
fn a_group_message_goes_both_ways_and_the_group_is_listed() {
    let fw = start_fakewa();
    let server = start_product(&fw, TempDir::new("msg-group"), "msg-group");
    let mcp = Mcp::open(&server);
    let own = account_of(&link(&fw, &mcp));
    let ivan = create_peer(&fw, "ivan");
    let judy = create_peer(&fw, "judy");
    let group = create_group(&fw, "Team Test", &[&own, &ivan.jid, &judy.jid]);

    // Ours reaches both members.
    let out = unique("to-group");
    send_text(&mcp, &group, &out);
    for peer in [&ivan, &judy] {
        let got = wait_peer_message(&fw, peer, "our group message at a member", has_text(&out));
        assert_eq!(got.get("chat").str().as_deref(), Some(group.as_str()));
    }

    // A member's reaches us, attributed to the member.
    let back = unique("from-member");
    peer_send(
        &fw,
        &ivan,
        &format!(r#"{{"to":"{group}","text":"{back}"}}"#),
    );
    let got = wait_listed(&mcp, &group, "the member's group message", |m| {
        body_is(m, &back)
    });
    assert_eq!(got.get("fromMe").bool(), Some(false));
    assert_eq!(got.get("from").str().as_deref(), Some(ivan.jid.as_str()));

    // Live metadata and the group list.
    let info = mcp.json("get_group_info", &format!(r#"{{"group_jid":"{group}"}}"#));
    assert!(info.get("source").is_null(), "live, not cached: {info:?}");
    assert_eq!(info.get("subject").str().as_deref(), Some("Team Test"));
    let groups = mcp.json("list_groups", "{}");
    assert!(
        format!("{groups:?}").contains(&group),
        "list_groups has the group: {groups:?}"
    );
}

/// Added by the tools helper: with `refresh_group_info` the group audits read the members live
/// from WhatsApp, and `get_group_info` answers from the stored copy (`source: "cached"`) once
/// WhatsApp cannot be reached.
#[test]
fn group_audits_refresh_live_members_and_group_info_falls_back_to_the_cache() {
    let fw = start_fakewa();
    let server = start_product(&fw, TempDir::new("msg-audit"), "msg-audit");
    let mcp = Mcp::open(&server);
    let own = account_of(&link(&fw, &mcp));
    let kate = create_peer(&fw, "kate");
    let leo = create_peer(&fw, "leo");
    let one = create_group(&fw, "Audit One", &[&own, &kate.jid, &leo.jid]);
    let two = create_group(&fw, "Audit Two", &[&own, &kate.jid]);

    let r = mcp.json("analyze_group_overlaps", r#"{"refresh_group_info":true}"#);
    assert!(r.get("note").is_null(), "the refresh worked: {r:?}");
    let is = |m: &Json, p: &Peer| {
        m.get("number").str().as_deref() == Some(p.number.as_str())
            || m.get("ids").arr().iter().any(|i| {
                i.str().as_deref() == Some(p.jid.as_str()) || i.str() == Some(p.lid.clone())
            })
    };
    let overlaps = r.get("overlaps").arr();
    let k = overlaps
        .iter()
        .find(|m| is(m, &kate))
        .unwrap_or_else(|| panic!("kate shares both groups: {r:?}"));
    assert_eq!(k.get("groupCount").num(), Some(2.0), "{k:?}");
    let groups: Vec<String> = k
        .get("groups")
        .arr()
        .iter()
        .filter_map(|g| g.get("id").str())
        .collect();
    assert!(groups.contains(&one) && groups.contains(&two), "{groups:?}");
    assert!(
        !overlaps.iter().any(|m| is(m, &leo)),
        "leo is in one group only"
    );
    let audit = mcp.json("run_group_audit", r#"{"refresh_group_info":true}"#);
    assert!(
        audit.path("summary.totalMembers").num().unwrap_or(0.0) >= 2.0,
        "{audit:?}"
    );

    // WhatsApp goes away: the stored copy answers, marked as such.
    drop(fw);
    let cached = wait_for(
        "get_group_info from the cache",
        Duration::from_secs(60),
        || {
            let r = mcp.call("get_group_info", &format!(r#"{{"group_jid":"{one}"}}"#));
            let text = r.path("content.0.text").str().unwrap_or_default();
            let j = Json::parse(&text)?;
            if j.get("source").str().as_deref() == Some("cached") {
                Some(j)
            } else {
                std::thread::sleep(Duration::from_millis(100));
                None
            }
        },
    );
    assert_eq!(cached.get("subject").str().as_deref(), Some("Audit One"));
    assert_eq!(cached.get("participants").arr().len(), 3, "{cached:?}");
}

/// A whatsapp-rust client the test drives itself, for group administration (neither the
/// product's tools nor fakewa's control API add members to a group). It runs on the product
/// library's executor, over the product's own transport, linked by QR through fakewa.
fn start_admin_client(
    fw: &FakeWa,
    name: &str,
) -> (
    whatsapp_rust::bot::BotHandle,
    std::sync::Arc<whatsapp_rust::Client>,
) {
    use std::sync::Arc;
    use whatsapp_mcp_stream::wa::http_client::{HttpClientConfig, WaHttpClient};
    use whatsapp_mcp_stream::wa::runtime::SmolRuntime;
    use whatsapp_mcp_stream::wa::transport::{TransportConfig, WaTransportFactory};
    use whatsapp_rust::types::events::Event;
    let transport = WaTransportFactory::new(TransportConfig {
        url: format!("wss://{}/ws/chat", fw.listen),
        extra_ca_pem: Some(fw.ca.clone()),
        ..TransportConfig::default()
    })
    .unwrap();
    let http = WaHttpClient::new(HttpClientConfig {
        extra_ca_pem: Some(fw.ca.clone()),
        ..HttpClientConfig::default()
    })
    .unwrap();
    let (qr_tx, qr_rx) = async_channel::unbounded::<String>();
    let (up_tx, up_rx) = async_channel::unbounded::<()>();
    let name = name.to_string();
    let (handle, client) = whatsapp_mcp_stream::runtime::block_on(2, async move {
        let bot = whatsapp_rust::bot::Bot::builder()
            .with_backend_arc(Arc::new(
                whatsapp_rust::wacore::store::InMemoryBackend::new(),
            ))
            .with_transport_factory(transport)
            .with_http_client(http)
            .with_runtime(SmolRuntime)
            .with_version((2, 3000, 0))
            .with_push_name(name)
            .on_event(move |ev, _client| {
                match &*ev {
                    Event::PairingQrCode(q) => {
                        let _ = qr_tx.try_send(q.code.clone());
                    }
                    Event::Connected(_) => {
                        let _ = up_tx.try_send(());
                    }
                    _ => {}
                }
                async {}
            })
            .build()
            .await
            .expect("the admin client builds");
        // The bot runs on the executor's worker thread; the test aborts it at its end.
        let handle = bot.spawn();
        let client = handle.client();
        (handle, client)
    });
    let poll = |rx: &async_channel::Receiver<_>| {
        let got = rx.try_recv().ok();
        if got.is_none() {
            std::thread::sleep(Duration::from_millis(20));
        }
        got
    };
    let qr: String = wait_for("the admin client's QR", Duration::from_secs(30), || {
        poll(&qr_rx)
    });
    let (status, body) = control(fw, "POST", "/control/scan", &format!(r#"{{"qr":"{qr}"}}"#));
    assert_eq!(status, 200, "scan the admin client: {body}");
    wait_for(
        "the admin client connected",
        Duration::from_secs(60),
        || {
            let got = up_rx.try_recv().ok();
            if got.is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
            got
        },
    );
    (handle, client)
}

#[test]
fn a_member_added_later_receives_the_next_group_message() {
    let fw = start_fakewa();
    let server = start_product(&fw, TempDir::new("msg-later"), "msg-later");
    let mcp = Mcp::open(&server);
    let own = account_of(&link(&fw, &mcp));
    let (admin_bot, admin) = start_admin_client(&fw, "admin");
    let admin_jid = admin
        .pn()
        .expect("the admin is linked")
        .to_non_ad()
        .to_string();
    let ivan = create_peer(&fw, "ivan");
    let judy = create_peer(&fw, "judy");
    let group = create_group(&fw, "Later", &[&admin_jid, &own, &ivan.jid]);

    let before = unique("before");
    send_text(&mcp, &group, &before);
    wait_peer_message(
        &fw,
        &ivan,
        "the first group message at ivan",
        has_text(&before),
    );

    let group_jid: whatsapp_rust::Jid = group.parse().unwrap();
    let judy_jid: whatsapp_rust::Jid = judy.jid.parse().unwrap();
    whatsapp_mcp_stream::runtime::block_on(2, async {
        admin
            .groups()
            .add_participants(group_jid, &[judy_jid])
            .await
            .expect("the admin adds judy")
    });
    // The product learns of the change (w:gp2) and refreshes the group in its store.
    mcp.wait_json(
        "judy among the stored members",
        "get_group_info",
        &format!(r#"{{"group_jid":"{group}"}}"#),
        |j| format!("{j:?}").contains(&judy.number),
    );

    let after = unique("after");
    send_text(&mcp, &group, &after);
    for peer in [&ivan, &judy] {
        wait_peer_message(
            &fw,
            peer,
            "the next group message at every member",
            has_text(&after),
        );
    }
    assert!(
        !peer_inbox(&fw, &judy).iter().any(has_text(&before)),
        "judy was not a member for the first message"
    );
    admin_bot.abort();
}

#[test]
fn a_group_send_after_removal_is_refused_clearly_after_one_refresh() {
    let fw = start_fakewa();
    let server = start_product(&fw, TempDir::new("msg-removed"), "msg-removed");
    let mcp = Mcp::open(&server);
    let own = account_of(&link(&fw, &mcp));
    let (admin_bot, admin) = start_admin_client(&fw, "admin2");
    let admin_jid = admin
        .pn()
        .expect("the admin is linked")
        .to_non_ad()
        .to_string();
    let lena = create_peer(&fw, "lena");
    let group = create_group(&fw, "Removal", &[&admin_jid, &own, &lena.jid]);
    let first = unique("member");
    send_text(&mcp, &group, &first);
    wait_peer_message(&fw, &lena, "the message while a member", has_text(&first));

    let group_jid: whatsapp_rust::Jid = group.parse().unwrap();
    let own_jid: whatsapp_rust::Jid = own.parse().unwrap();
    whatsapp_mcp_stream::runtime::block_on(2, async {
        admin
            .groups()
            .remove_participants(group_jid, &[own_jid])
            .await
            .expect("the admin removes the product")
    });
    let refused = unique("refused");
    let result = mcp.call(
        "send_message",
        &format!(r#"{{"recipient_jid":"{group}","message":"{refused}"}}"#),
    );
    let text = result.path("content.0.text").str().unwrap_or_default();
    assert_eq!(result.get("isError").bool(), Some(true), "{text}");
    assert!(
        text.contains("403") || text.to_lowercase().contains("forbidden"),
        "the refusal says why: {text}"
    );
    assert!(
        !peer_inbox(&fw, &lena).iter().any(has_text(&refused)),
        "nothing reached the group"
    );
    // The refusal came after the one refresh-and-retry.
    server.wait_log("refreshing the group", Duration::from_secs(5));
    admin_bot.abort();
}

/// Rough latency figures (debug build; run by hand:
/// `cargo test --features test-network --test messaging latency_figures -- --ignored --nocapture`).
#[test]
#[ignore]
fn latency_figures() {
    let fw = start_fakewa();
    let url = format!("wss://{}/ws/chat", fw.listen);
    let ca = fw.ca.display().to_string();
    let server = common::Server::start_in(
        "127.0.0.1:0",
        TempDir::new("msg-lat"),
        &[
            ("WA_WS_URL", &url),
            ("WA_TEST_CA", &ca),
            ("WA_PUSH_NAME", "msg-lat"),
            ("SEND_RATE_PER_MIN", "1000"),
        ],
    );
    let mcp = Mcp::open(&server);
    let own = account_of(&link(&fw, &mcp));
    let peer = create_peer(&fw, "lat");
    let p50 = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let mut sends = Vec::new();
    for i in 0..30 {
        let text = unique(&format!("lat-out-{i}"));
        let start = std::time::Instant::now();
        send_text(&mcp, &peer.jid, &text);
        wait_for("at the peer", Duration::from_secs(30), || {
            peer_inbox(&fw, &peer)
                .iter()
                .any(has_text(&text))
                .then_some(())
        });
        sends.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    let mut inbound = Vec::new();
    for i in 0..30 {
        let cursor = mcp
            .json("wait_for_messages", r#"{"timeout_secs":1}"#)
            .get("cursor")
            .str()
            .unwrap();
        let text = unique(&format!("lat-in-{i}"));
        let start = std::time::Instant::now();
        peer_send(&fw, &peer, &format!(r#"{{"to":"{own}","text":"{text}"}}"#));
        let got = mcp.json(
            "wait_for_messages",
            &format!(r#"{{"since":"{cursor}","timeout_secs":20}}"#),
        );
        assert!(got.get("messages").arr().iter().any(|m| body_is(m, &text)));
        inbound.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "send_message to peer inbox p50 = {:.1} ms; peer send to wait_for_messages p50 = {:.1} ms",
        p50(sends),
        p50(inbound)
    );
}

#[test]
fn lid_addressed_messages_merge_with_the_phone_chat_both_ways() {
    let fw = start_fakewa();
    let server = start_product(&fw, TempDir::new("msg-lid"), "msg-lid");
    let mcp = Mcp::open(&server);
    let own = account_of(&link(&fw, &mcp));
    let own_lid = fakewa_state(&fw)
        .get("accounts")
        .arr()
        .into_iter()
        .find(|a| a.get("jid").str().as_deref() == Some(own.as_str()))
        .and_then(|a| a.get("lid").str())
        .expect("our LID");
    let mia = create_peer(&fw, "mia");
    assert!(mia.lid.ends_with("@lid"), "{mia:?}");

    // The peer writes to our LID: the message lands in the peer's phone chat.
    let text = unique("via-lid");
    peer_send(
        &fw,
        &mia,
        &format!(r#"{{"to":"{own_lid}","text":"{text}"}}"#),
    );
    let got = wait_listed(&mcp, &mia.jid, "the LID-addressed message", |m| {
        body_is(m, &text)
    });
    assert_eq!(got.get("fromMe").bool(), Some(false));
    let chats = mcp.json("list_chats", r#"{"limit":50}"#).arr();
    let ids: Vec<String> = chats.iter().filter_map(|c| c.get("id").str()).collect();
    assert!(
        !ids.contains(&mia.lid),
        "no separate LID chat in list_chats: {ids:?}"
    );

    // We write to the peer's LID: it arrives, and it is listed in the same chat.
    let out = unique("to-lid");
    send_text(&mcp, &mia.lid, &out);
    wait_peer_message(
        &fw,
        &mia,
        "our LID-addressed send at the peer",
        has_text(&out),
    );
    let listed = list_messages(&mcp, &mia.jid, 50);
    assert!(
        listed.iter().any(|m| body_is(m, &out)),
        "our LID send is in the phone chat: {listed:?}"
    );
}

#[test]
fn chat_actions_from_another_device_of_the_account_reach_the_store() {
    let fw = start_fakewa();
    let server = start_product(&fw, TempDir::new("msg-actions"), "msg-actions");
    let mcp = Mcp::open(&server);
    let own = account_of(&link(&fw, &mcp));
    let nora = create_peer(&fw, "nora");
    let otto = create_peer(&fw, "otto");
    let pia = create_peer(&fw, "pia");
    for peer in [&nora, &otto, &pia] {
        let text = unique("action");
        peer_send(&fw, peer, &format!(r#"{{"to":"{own}","text":"{text}"}}"#));
        wait_listed(&mcp, &peer.jid, "a message to act on", |m| {
            body_is(m, &text)
        });
    }
    // A second device of the same account (same push name) acts on the chats, one action at a
    // time, alternating app-state collections: whatsapp-rust skips a server_sync fetch while
    // one for the same collection is in flight, so a burst could leave a patch unfetched until
    // the next change. Each step waits for the product to log the applied action.
    let (other_bot, other) = start_admin_client(&fw, "msg-actions");
    let jid = |j: &str| j.parse::<whatsapp_rust::Jid>().unwrap();
    let (n, o, p) = (jid(&nora.jid), jid(&otto.jid), jid(&pia.jid));
    let step = |what: &str, chat: &str| {
        server.wait_log(&format!("chat {chat} {what}"), Duration::from_secs(30));
    };
    let run = |f: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>>| {
        whatsapp_mcp_stream::runtime::block_on(2, f)
    };
    let actions = other.chat_actions();
    run(Box::pin(async { actions.pin_chat(&n).await.expect("pin") }));
    step("pinned", &nora.jid);
    run(Box::pin(async {
        actions.mute_chat(&n).await.expect("mute")
    }));
    step("muted", &nora.jid);
    run(Box::pin(async {
        actions.archive_chat(&n, None).await.expect("archive")
    }));
    step("archived", &nora.jid);
    run(Box::pin(async {
        actions
            .clear_chat(&o, false, false, None)
            .await
            .expect("clear")
    }));
    step("cleared", &otto.jid);
    run(Box::pin(async {
        actions
            .mark_chat_as_read(&n, true, None)
            .await
            .expect("mark read")
    }));
    step("marked read", &nora.jid);
    run(Box::pin(async {
        actions.delete_chat(&p, false, None).await.expect("delete")
    }));
    step("deleted", &pia.jid);

    let chats = mcp.json("list_chats", r#"{"limit":50}"#).arr();
    let find = |id: &str| {
        chats
            .iter()
            .find(|c| c.get("id").str().as_deref() == Some(id))
            .cloned()
    };
    assert_eq!(
        find(&nora.jid).map(|c| c.get("unreadCount").num()),
        Some(Some(0.0)),
        "read on the other device"
    );
    assert!(find(&pia.jid).is_none(), "deleted on the other device");
    assert!(
        list_messages(&mcp, &otto.jid, 10).is_empty(),
        "cleared on the other device"
    );
    // What the other device sends is ours too (fromMe), in the recipient's chat.
    let mine = unique("from-other-device");
    let m = mine.clone();
    run(Box::pin(async move {
        use whatsapp_rust::wacore::proto_helpers::MessageBuilderExt;
        let message = whatsapp_rust::waproto::whatsapp::Message::text(m);
        other.send_message(o, message).await.expect("send");
    }));
    let got = wait_listed(&mcp, &otto.jid, "the other device's message", |m| {
        body_is(m, &mine)
    });
    assert_eq!(got.get("fromMe").bool(), Some(true), "{got:?}");
    other_bot.abort();
    drop(mcp);
    let data = server.stop();
    let store =
        whatsapp_mcp_stream::store::Store::open(&data.path().join("store.redb"), 4).unwrap();
    let chat = store
        .read_blocking(|txn| whatsapp_mcp_stream::store::queries::chat(txn, &nora.jid))
        .unwrap()
        .expect("nora's chat");
    assert!(chat.pinned && chat.archived, "{chat:?}");
    assert!(chat.muted_until > 0, "{chat:?}");
}

#[test]
fn a_message_acknowledged_to_whatsapp_survives_a_kill_at_once() {
    let fw = start_fakewa();
    let server = start_product(&fw, TempDir::new("msg-kill"), "msg-kill");
    let own = {
        let mcp = Mcp::open(&server);
        account_of(&link(&fw, &mcp))
    };
    let quinn = create_peer(&fw, "quinn");
    let text = unique("acked");
    let id = peer_send(&fw, &quinn, &format!(r#"{{"to":"{own}","text":"{text}"}}"#));
    // The delivery receipt means the product acknowledged it: kill it (SIGKILL) right then,
    // without reading anything through the product first.
    wait_for(
        "the delivery receipt at the peer",
        Duration::from_secs(30),
        || {
            let delivered = peer_receipts(&fw, &quinn)
                .iter()
                .any(|r| r.get("id").str().as_deref() == Some(id.as_str()));
            if !delivered {
                std::thread::sleep(Duration::from_millis(5));
            }
            delivered.then_some(())
        },
    );
    let data = server.stop();
    let server = start_product(&fw, data, "msg-kill");
    let mcp = Mcp::open(&server);
    let listed: Vec<Json> = list_messages(&mcp, &quinn.jid, 50)
        .into_iter()
        .filter(|m| body_is(m, &text))
        .collect();
    assert_eq!(listed.len(), 1, "stored once, before the ack: {listed:?}");
}

/// The `status` of our message in `list_messages` for a chat, once `ok` accepts it.
fn wait_status(mcp: &Mcp, chat: &str, sent_id: &str, what: &str, ok: impl Fn(&str) -> bool) {
    wait_listed(mcp, chat, what, |m| {
        m.get("id").str().as_deref() == Some(sent_id)
            && m.get("status").str().as_deref().is_some_and(&ok)
    });
}

/// `POST /control/peers/:peer/read`: the peer's client reads messages it received.
fn peer_read(fw: &FakeWa, peer: &Peer, ids: &[&str]) {
    let ids: Vec<String> = ids.iter().map(|i| format!("\"{i}\"")).collect();
    let (status, body) = control(
        fw,
        "POST",
        &format!("/control/peers/{}/read", peer.number),
        &format!(r#"{{"ids":[{}]}}"#, ids.join(",")),
    );
    assert_eq!(status, 200, "peer read: {body}");
}

/// Delivery and read receipts from peers raise our messages' `status` (1:1 and group), and a
/// late delivery receipt never lowers it.
#[test]
fn receipts_raise_the_status_of_our_messages_to_delivered_then_read() {
    let fw = start_fakewa();
    let server = start_product(&fw, TempDir::new("msg-receipts"), "msg-receipts");
    let mcp = Mcp::open(&server);
    let own = account_of(&link(&fw, &mcp));
    let kim = create_peer(&fw, "kim");
    let leo = create_peer(&fw, "leo");

    // 1:1: sent (stored at once) → delivered (the peer's client acknowledges it) → read.
    let out = unique("receipt-dm");
    let sent = send_text(&mcp, &kim.jid, &out);
    let sent_id = sent.get("messageId").str().expect("messageId");
    let listed = list_messages(&mcp, &kim.jid, 100);
    let mine = listed
        .iter()
        .find(|m| m.get("id").str().as_deref() == Some(sent_id.as_str()))
        .unwrap_or_else(|| panic!("our message is listed at once: {listed:?}"));
    assert!(
        matches!(
            mine.get("status").str().as_deref(),
            Some("sent" | "delivered")
        ),
        "{mine:?}"
    );
    wait_status(&mcp, &kim.jid, &sent_id, "our message delivered", |s| {
        s == "delivered" || s == "read"
    });
    wait_peer_message(&fw, &kim, "our message at the peer", has_text(&out));
    let wa = wa_id(&sent_id);
    peer_read(&fw, &kim, &[&wa]);
    wait_status(&mcp, &kim.jid, &sent_id, "our message read", |s| {
        s == "read"
    });
    // Others' messages carry no status.
    let theirs = unique("receipt-theirs");
    peer_send(&fw, &kim, &format!(r#"{{"to":"{own}","text":"{theirs}"}}"#));
    let got = wait_listed(&mcp, &kim.jid, "the peer's message", |m| {
        body_is(m, &theirs)
    });
    assert!(!got.keys().contains(&"status".to_string()), "{got:?}");
    // Still read: a later receipt (the one for the peer's own message goes the other way)
    // never lowers ours.
    let again = list_messages(&mcp, &kim.jid, 100);
    let mine = again
        .iter()
        .find(|m| m.get("id").str().as_deref() == Some(sent_id.as_str()))
        .unwrap();
    assert_eq!(mine.get("status").str().as_deref(), Some("read"));

    // Group: any member's receipt counts.
    let group = create_group(&fw, "Receipts", &[&own, &kim.jid, &leo.jid]);
    let to_group = unique("receipt-group");
    let sent = send_text(&mcp, &group, &to_group);
    let group_id = sent.get("messageId").str().expect("messageId");
    wait_status(
        &mcp,
        &group,
        &group_id,
        "our group message delivered",
        |s| s == "delivered" || s == "read",
    );
    wait_peer_message(
        &fw,
        &leo,
        "our group message at a member",
        has_text(&to_group),
    );
    let wa = wa_id(&group_id);
    peer_read(&fw, &leo, &[&wa]);
    wait_status(&mcp, &group, &group_id, "our group message read", |s| {
        s == "read"
    });
}
