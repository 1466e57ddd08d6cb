//! Peers: real whatsapp-rust clients fakewa runs itself, linked through their account's mock
//! phone and driven over the control API; two peers exchange texts, replies, reactions,
//! edits and revokes through fakewa's routing.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

async fn post(server: &fakewa::Server, path: &str, body: Value) -> (u16, Value) {
    let (status, text) = http_async(server.control_addr, "POST", path, &body.to_string()).await;
    let value = serde_json::from_str(&text).unwrap_or_else(|_| json!({ "raw": text }));
    (status, value)
}

async fn inbox(server: &fakewa::Server, number: &str) -> Value {
    inbox_when(server, number, "").await
}

/// The inbox, answered once it satisfies `query` (`min_messages`, `min_receipts`, `wait_ms`).
async fn inbox_when(server: &fakewa::Server, number: &str, query: &str) -> Value {
    let path = format!("/control/peers/{number}/inbox?{query}");
    let (status, text) = http_async(server.control_addr, "GET", &path, "").await;
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

/// Waits (long-polling the inbox) until a message `pick` accepts is there.
async fn wait_inbox(
    server: &fakewa::Server,
    number: &str,
    what: &str,
    pick: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut seen = 0;
    loop {
        let query = format!("min_messages={}&wait_ms=5000", seen + 1);
        let inbox = inbox_when(server, number, &query).await;
        let messages = inbox["messages"].as_array().unwrap();
        if let Some(m) = messages.iter().find(|m| pick(m)) {
            return m.clone();
        }
        seen = messages.len();
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what} in {number}'s inbox: {inbox}"
        );
    }
}

async fn new_peer(server: &fakewa::Server, body: Value) -> Value {
    let (status, peer) = post(server, "/control/peers", body).await;
    assert_eq!(status, 200, "{peer}");
    peer
}

#[test]
fn a_peer_links_and_connects_with_an_empty_inbox() {
    smol::block_on(async {
        let server = start_fakewa(false).await;
        let peer = new_peer(&server, json!({"name": "pat", "number": "+1 555 777 0001"})).await;
        assert_eq!(peer["number"], "15557770001");
        assert_eq!(peer["jid"], "15557770001@s.whatsapp.net");
        assert!(peer["lid"].as_str().unwrap().ends_with("@lid"));
        // The same name again is the same peer.
        let again = new_peer(&server, json!({"name": "pat"})).await;
        assert_eq!(again["device"], peer["device"]);
        let inbox = inbox(&server, "15557770001").await;
        assert_eq!(inbox["connected"], true);
        assert_eq!(inbox["messages"], json!([]));
        let st = state(&server).await;
        let conn = st["connections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["jid"] == peer["device"])
            .cloned();
        assert_eq!(conn.unwrap()["phase"], "logged_in");
        // A push name with another number is refused; unknown peers are 404.
        let (status, _) = post(
            &server,
            "/control/peers",
            json!({"name": "pat", "number": "1"}),
        )
        .await;
        assert_eq!(status, 409);
        let (status, _) =
            http_async(server.control_addr, "GET", "/control/peers/999/inbox", "").await;
        assert_eq!(status, 404);
        let (status, body) = post(
            &server,
            "/control/peers/15557770001/send",
            json!({"to": "15557770001", "media": {"kind": "gif"}}),
        )
        .await;
        assert_eq!(status, 400, "{body}");
    });
}

#[test]
fn two_peers_exchange_texts_replies_reactions_edits_and_revokes() {
    smol::block_on(async {
        let server = start_fakewa(false).await;
        let a = new_peer(&server, json!({"name": "quinn"})).await;
        let b = new_peer(&server, json!({"name": "rosa"})).await;
        let (na, nb) = (a["number"].as_str().unwrap(), b["number"].as_str().unwrap());

        let (status, sent) = post(
            &server,
            &format!("/control/peers/{na}/send"),
            json!({"to": b["jid"], "text": "hello rosa"}),
        )
        .await;
        assert_eq!(status, 200, "{sent}");
        let id = sent["id"].as_str().unwrap().to_string();
        let got = wait_inbox(&server, nb, "the text", |m| m["id"] == id).await;
        assert_eq!(got["text"], "hello rosa");
        assert_eq!(got["from_me"], false);
        assert_eq!(got["chat"], a["jid"]);
        assert_eq!(got["sender"], a["jid"]);
        assert_eq!(got["sender_device"], a["device"]);
        assert_eq!(got["push_name"], "quinn");
        // The sender hears the receipt.
        let inbox = inbox_when(&server, na, "min_receipts=1&wait_ms=30000").await;
        let receipt = &inbox["receipts"][0];
        assert_eq!(receipt["id"], id.as_str(), "{inbox}");
        // Peers mark themselves available, so this is a delivery (not `inactive`).
        assert_eq!(receipt["type"], "delivery", "{inbox}");

        // A reply quotes it.
        let (status, reply) = post(
            &server,
            &format!("/control/peers/{nb}/send"),
            json!({"to": na, "text": "hi quinn", "reply_to": id}),
        )
        .await;
        assert_eq!(status, 200, "{reply}");
        let reply_id = reply["id"].as_str().unwrap().to_string();
        let got = wait_inbox(&server, na, "the reply", |m| m["id"] == reply_id).await;
        assert_eq!(got["text"], "hi quinn");
        assert_eq!(got["quoted_id"], id.as_str());
        assert_eq!(got["quoted_text"], "hello rosa");

        // A reaction to the reply, an edit and a revoke of the first text.
        let (status, _) = post(
            &server,
            &format!("/control/peers/{na}/send"),
            json!({"to": nb, "reaction": {"id": reply_id, "emoji": "👍"}}),
        )
        .await;
        assert_eq!(status, 200);
        let got = wait_inbox(&server, nb, "the reaction", |m| !m["reaction"].is_null()).await;
        assert_eq!(
            got["reaction"],
            json!({"target_id": reply_id, "emoji": "👍"})
        );

        let (status, _) = post(
            &server,
            &format!("/control/peers/{na}/send"),
            json!({"to": nb, "edit": {"id": id, "text": "hello rosa!"}}),
        )
        .await;
        assert_eq!(status, 200);
        let got = wait_inbox(&server, nb, "the edit", |m| m["edit_of"] == id.as_str()).await;
        assert_eq!(got["text"], "hello rosa!");

        let (status, _) = post(
            &server,
            &format!("/control/peers/{na}/send"),
            json!({"to": nb, "revoke": {"id": id}}),
        )
        .await;
        assert_eq!(status, 200);
        wait_inbox(&server, nb, "the revoke", |m| {
            m["revoked_id"] == id.as_str()
        })
        .await;
    });
}

#[test]
fn a_linked_client_and_a_peer_talk_both_ways() {
    use whatsapp_rust::types::events::Event;
    use whatsapp_rust::wacore::proto_helpers::MessageExt as _;
    smol::block_on(async {
        let server = start_fakewa(true).await;
        let (_bot, client, events, _device) = link_connected(&server, "sam").await;
        let peer = new_peer(&server, json!({"name": "tess"})).await;
        let number = peer["number"].as_str().unwrap();
        let sam = state(&server).await["accounts"][0]["jid"]
            .as_str()
            .unwrap()
            .to_string();

        let (status, sent) = post(
            &server,
            &format!("/control/peers/{number}/send"),
            json!({"to": sam, "text": "from the peer"}),
        )
        .await;
        assert_eq!(status, 200, "{sent}");
        let (id, text) = wait_for(&events, 30, "the peer's message", |ev| match ev {
            Event::Messages(batch) => batch.iter().find_map(|m| {
                let text = m.message.get_base_message().text_content()?.to_string();
                Some((m.info.id.to_string(), text))
            }),
            _ => None,
        })
        .await;
        assert_eq!(
            (id.as_str(), text.as_str()),
            (sent["id"].as_str().unwrap(), "from the peer")
        );

        let to: whatsapp_rust::Jid = peer["jid"].as_str().unwrap().parse().unwrap();
        let out = client.send_text(to, "from the client").await.unwrap();
        let got = wait_inbox(&server, number, "the client's message", |m| {
            m["id"] == out.message_id.as_str()
        })
        .await;
        assert_eq!(got["text"], "from the client");
        assert_eq!(got["sender"], sam.as_str());
    });
}

#[test]
fn peers_talk_in_a_group() {
    smol::block_on(async {
        let server = start_fakewa(false).await;
        let a = new_peer(&server, json!({"name": "uma"})).await;
        let b = new_peer(&server, json!({"name": "vic"})).await;
        let (na, nb) = (a["number"].as_str().unwrap(), b["number"].as_str().unwrap());
        let (status, group) = post(
            &server,
            "/control/groups",
            json!({"subject": "Peers", "members": [na, nb]}),
        )
        .await;
        assert_eq!(status, 200, "{group}");
        let gjid = group["jid"].as_str().unwrap();

        let (status, sent) = post(
            &server,
            &format!("/control/peers/{na}/send"),
            json!({"to": gjid, "text": "hello group"}),
        )
        .await;
        assert_eq!(status, 200, "{sent}");
        let id = sent["id"].as_str().unwrap().to_string();
        let got = wait_inbox(&server, nb, "the group text", |m| m["id"] == id.as_str()).await;
        assert_eq!(got["chat"], gjid);
        assert_eq!(got["text"], "hello group");

        let (status, reply) = post(
            &server,
            &format!("/control/peers/{nb}/send"),
            json!({"to": gjid, "text": "hi all", "reply_to": id}),
        )
        .await;
        assert_eq!(status, 200, "{reply}");
        let reply_id = reply["id"].as_str().unwrap().to_string();
        let got = wait_inbox(&server, na, "the group reply", |m| {
            m["id"] == reply_id.as_str()
        })
        .await;
        assert_eq!(got["quoted_id"], id.as_str());
        assert_eq!(got["chat"], gjid);
    });
}

#[test]
fn a_peer_sends_media_through_the_cdn_and_the_other_downloads_it() {
    smol::block_on(async {
        let server = start_fakewa(false).await;
        let a = new_peer(&server, json!({"name": "wes"})).await;
        let b = new_peer(&server, json!({"name": "xia"})).await;
        let (na, nb) = (a["number"].as_str().unwrap(), b["number"].as_str().unwrap());
        let bytes: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 256) as u8).collect();
        let b64 = base64::Engine::encode(&base64::prelude::BASE64_STANDARD, &bytes);
        for (kind, extra) in [
            (
                "image",
                json!({"caption": "a picture", "mimetype": "image/png"}),
            ),
            (
                "document",
                json!({"file_name": "notes.txt", "mimetype": "text/plain"}),
            ),
        ] {
            let mut media = json!({"kind": kind, "data_base64": b64});
            for (k, v) in extra.as_object().unwrap() {
                media[k] = v.clone();
            }
            let (status, sent) = post(
                &server,
                &format!("/control/peers/{na}/send"),
                json!({"to": nb, "media": media}),
            )
            .await;
            assert_eq!(status, 200, "{sent}");
            let id = sent["id"].as_str().unwrap().to_string();
            let got = wait_inbox(&server, nb, kind, |m| m["id"] == id.as_str()).await;
            assert_eq!(got["media"]["kind"], kind, "{got}");
            assert_eq!(got["media"]["mimetype"], extra["mimetype"]);
            assert_eq!(got["media"]["file_length"], bytes.len());
            assert!(
                got["media"]["direct_path"]
                    .as_str()
                    .unwrap()
                    .starts_with("/v/")
            );
            if kind == "image" {
                assert_eq!(got["text"], "a picture");
            } else {
                assert_eq!(got["media"]["file_name"], "notes.txt");
            }
            let path = format!("/control/peers/{nb}/media/{id}");
            let (status, text) = http_async(server.control_addr, "GET", &path, "").await;
            assert_eq!(status, 200, "{text}");
            let downloaded: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(downloaded["data_base64"], b64.as_str());
        }
    });
}
