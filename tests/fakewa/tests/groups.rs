//! Groups through fakewa with real whatsapp-rust clients: a group created by a client and
//! one created through `POST /control/groups`; sender-key (`skmsg`) messages fanned out to
//! every member device, a member added later receiving the next one, and the metadata
//! naming members by LID with their phone numbers.

mod common;

use std::sync::Arc;

use common::*;
use serde_json::json;
use whatsapp_rust::Jid;
use whatsapp_rust::features::{GroupCreateOptions, GroupParticipantOptions};
use whatsapp_rust::types::events::Event;

async fn wait_group_text(events: &async_channel::Receiver<Arc<Event>>, group: &Jid, want: &str) {
    wait_for(events, 30, want, |ev| {
        ev.messages()
            .any(|m| {
                m.info.source.chat == *group && m.message.conversation.as_deref() == Some(want)
            })
            .then_some(())
    })
    .await
}

/// A creates a group with B and sends: B decrypts it. A adds C (B hears the `w:gp2`
/// notification); A's next message reaches B and C, and C's reply reaches A and B.
#[test]
fn group_message_reaches_members_and_a_later_member() {
    smol::block_on(async {
        let server = start_fakewa(true).await;
        let (_bot_a, client_a, events_a, _jid_a) = link_connected(&server, "gina").await;
        let (_bot_b, _client_b, events_b, jid_b) = link_connected(&server, "hank").await;
        let (_bot_c, client_c, events_c, jid_c) = link_connected(&server, "ivy").await;

        let created = client_a
            .groups()
            .create_group(GroupCreateOptions {
                subject: "router test".to_string(),
                participants: vec![GroupParticipantOptions::new(account_jid(&jid_b))],
                ..Default::default()
            })
            .await
            .expect("group created");
        let group = created.metadata.id.clone();
        client_a
            .send_message(group.clone(), text("hello group"))
            .await
            .expect("A sends to the group");
        wait_group_text(&events_b, &group, "hello group").await;

        let added = client_a
            .groups()
            .add_participants(&group, &[account_jid(&jid_c)])
            .await
            .expect("C added");
        assert_eq!(added[0].status.as_deref(), Some("200"));
        wait_for(&events_b, 30, "the w:gp2 add notification", |ev| match ev {
            Event::Notification(n) => n
                .get()
                .get_attr("type")
                .is_some_and(|v| v.as_str() == "w:gp2")
                .then_some(()),
            _ => None,
        })
        .await;

        client_a
            .send_message(group.clone(), text("welcome ivy"))
            .await
            .expect("A sends again");
        wait_group_text(&events_b, &group, "welcome ivy").await;
        wait_group_text(&events_c, &group, "welcome ivy").await;

        client_c
            .send_message(group.clone(), text("thanks"))
            .await
            .expect("C sends");
        wait_group_text(&events_a, &group, "thanks").await;
        wait_group_text(&events_b, &group, "thanks").await;
    });
}

/// `POST /control/groups` creates a group whose first member is its superadmin; the
/// metadata names members by LID with their numbers; a member's message reaches the other.
#[test]
fn control_created_group_carries_messages() {
    smol::block_on(async {
        let server = start_fakewa(true).await;
        let (_bot_a, client_a, events_a, jid_a) = link_connected(&server, "jack").await;
        let (_bot_b, client_b, _events_b, jid_b) = link_connected(&server, "kim").await;
        let number_a = account_jid(&jid_a).user.to_string();
        let body = json!({"subject": "made by the test", "members": [number_a, account_jid(&jid_b).to_string()]});
        let (status, answer) = http_async(
            server.control_addr,
            "POST",
            "/control/groups",
            &body.to_string(),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        let group: Jid = serde_json::from_str::<serde_json::Value>(&answer).unwrap()["jid"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();

        let meta = client_b
            .groups()
            .get_metadata(&group)
            .await
            .expect("metadata");
        assert_eq!(meta.subject, "made by the test");
        assert_eq!(meta.participants.len(), 2);
        let a = meta
            .participants
            .iter()
            .find(|p| {
                p.phone_number
                    .as_ref()
                    .is_some_and(|pn| pn.user == number_a)
            })
            .expect("A listed with its number");
        assert!(a.is_admin());
        assert_eq!(a.jid.server, whatsapp_rust::wacore_binary::Server::Lid);

        client_b
            .send_message(group.clone(), text("hi from kim"))
            .await
            .expect("B sends");
        wait_group_text(&events_a, &group, "hi from kim").await;

        let (status, answer) = http_async(
            server.control_addr,
            "POST",
            "/control/groups",
            &json!({"subject": "x", "members": ["19999999999"]}).to_string(),
        )
        .await;
        assert_eq!(status, 404, "{answer}");
        let _ = client_a;
    });
}
