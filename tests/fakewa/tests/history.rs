//! History sync pushed by an account's mock phone (`POST /control/history`) reaches a real
//! client through the CDN: `Event::HistorySync` with the conversations, messages, push names
//! and LID↔phone mappings the test gave.

mod common;

use common::*;
use serde_json::json;
use whatsapp_rust::types::events::Event;

#[test]
fn the_phone_pushes_history_to_its_companion() {
    smol::block_on(async {
        let server = start_fakewa(true).await;
        let (_bot, _client, events, device) = link_connected(&server, "hanna").await;
        let body = json!({
            "account": "hanna",
            "conversations": [
                {"jid": "15559990001@s.whatsapp.net", "name": "Ivo", "unread_count": 2,
                 "lid": "100000000099901@lid",
                 "messages": [
                    {"id": "H1", "from_me": false, "text": "old hello", "timestamp": 1700000000},
                    {"id": "H2", "from_me": true, "text": "old answer", "timestamp": 1700000060}
                 ]},
                {"jid": "120363000000000001@g.us", "name": "Team",
                 "messages": [{"id": "H3", "from_me": false, "sender": "15559990002@s.whatsapp.net",
                               "text": "group hi", "timestamp": 1700000100}]}
            ],
            "push_names": [{"jid": "15559990001@s.whatsapp.net", "name": "Ivo P."}],
            "lid_mappings": [{"lid": "100000000099901@lid", "pn": "15559990001@s.whatsapp.net"}]
        });
        let (status, answer) = http_async(
            server.control_addr,
            "POST",
            "/control/history",
            &body.to_string(),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(answer["sent_to"], json!([device]));

        let history = wait_for(&events, 30, "HistorySync", |ev| match ev {
            Event::HistorySync(h) => h.get().cloned(),
            _ => None,
        })
        .await;
        assert_eq!(history.conversations.len(), 2);
        let ivo = &history.conversations[0];
        assert_eq!(ivo.id, "15559990001@s.whatsapp.net");
        assert_eq!(ivo.name.as_deref(), Some("Ivo"));
        assert_eq!(ivo.unread_count, Some(2));
        assert_eq!(ivo.lid_jid.as_deref(), Some("100000000099901@lid"));
        let texts: Vec<_> = ivo
            .messages
            .iter()
            .map(|m| {
                let info = m.message.as_option().unwrap();
                let key = info.key.as_option().unwrap();
                (
                    key.id.clone().unwrap(),
                    key.from_me.unwrap(),
                    info.message
                        .as_option()
                        .unwrap()
                        .conversation
                        .clone()
                        .unwrap(),
                )
            })
            .collect();
        assert_eq!(
            texts,
            vec![
                ("H1".to_string(), false, "old hello".to_string()),
                ("H2".to_string(), true, "old answer".to_string())
            ]
        );
        let group_msg = history.conversations[1].messages[0]
            .message
            .as_option()
            .unwrap();
        assert_eq!(
            group_msg.key.as_option().unwrap().participant.as_deref(),
            Some("15559990002@s.whatsapp.net")
        );
        assert_eq!(history.pushnames[0].pushname.as_deref(), Some("Ivo P."));
        assert_eq!(
            history.phone_number_to_lid_mappings[0].pn_jid.as_deref(),
            Some("15559990001@s.whatsapp.net")
        );
        // The blob went through the CDN.
        let (uploads, downloads, _) = server.state.cdn.get().unwrap().counts();
        assert_eq!((uploads, downloads), (1, 1));
    });
}

#[test]
fn history_requests_are_checked() {
    smol::block_on(async {
        let server = start_fakewa(true).await;
        let (status, _) = http_async(server.control_addr, "POST", "/control/history", "{}").await;
        assert_eq!(status, 400);
        let body = json!({"account": "nobody", "conversations": []}).to_string();
        let (status, _) = http_async(server.control_addr, "POST", "/control/history", &body).await;
        assert_eq!(status, 404);
    });
}
