//! Routing between real whatsapp-rust clients through fakewa, which never decrypts: text
//! both ways, delivery and read receipts back to the sender, the offline queue drained in
//! order on the next login with its `<offline count>`, and the prekeys a fetch consumes.

mod common;

use std::sync::Arc;

use common::*;
use wacore::types::presence::ReceiptType;
use whatsapp_rust::types::events::Event;
use whatsapp_rust::wacore::store::InMemoryBackend;

/// Waits for a decrypted text message; returns whether it came from the offline queue and
/// the sender's push name.
async fn wait_text(
    events: &async_channel::Receiver<Arc<Event>>,
    want: &str,
) -> (bool, String, String) {
    wait_for(events, 30, want, |ev| {
        ev.messages()
            .find(|m| m.message.conversation.as_deref() == Some(want))
            .map(|m| {
                (
                    m.info.is_offline,
                    m.info.push_name.clone(),
                    m.info.id.clone(),
                )
            })
    })
    .await
}

/// A text from A decrypts at B with the same text and A's push name; A gets B's delivery
/// receipt, then B's read receipt; B's reply reaches A.
#[test]
fn text_both_ways_with_receipts() {
    smol::block_on(async {
        let server = start_fakewa(true).await;
        let (_bot_a, client_a, events_a, jid_a) = link_connected(&server, "alice").await;
        let (_bot_b, client_b, events_b, jid_b) = link_connected(&server, "bob").await;

        let sent = client_a
            .send_message(account_jid(&jid_b), text("hello bob"))
            .await
            .expect("A sends");
        let (offline, push_name, id) = wait_text(&events_b, "hello bob").await;
        assert!(!offline);
        assert_eq!(push_name, "alice");
        assert_eq!(id, sent.message_id);

        let want = sent.message_id.clone();
        wait_for(&events_a, 30, "B's delivery receipt", |ev| match ev {
            Event::Receipt(r)
                if r.r#type == ReceiptType::Delivered && r.message_ids.contains(&want) =>
            {
                Some(())
            }
            _ => None,
        })
        .await;

        client_b
            .mark_as_read(&account_jid(&jid_a), None, &[sent.message_id.as_str()])
            .await
            .expect("B marks read");
        wait_for(&events_a, 30, "B's read receipt", |ev| match ev {
            Event::Receipt(r) if r.r#type == ReceiptType::Read && r.message_ids.contains(&want) => {
                Some(())
            }
            _ => None,
        })
        .await;

        client_b
            .send_message(account_jid(&jid_a), text("hello alice"))
            .await
            .expect("B replies");
        let (_, push_name, _) = wait_text(&events_a, "hello alice").await;
        assert_eq!(push_name, "bob");
    });
}

/// Fifty messages to a device that is away wait in its queue and arrive on its next login,
/// in the order sent, each once, marked offline, with an `<offline count>` covering them.
#[test]
fn offline_queue_delivered_in_order_on_login() {
    smol::block_on(async {
        let server = start_fakewa(true).await;
        let (_bot_a, client_a, _events_a, _jid_a) = link_connected(&server, "carol").await;

        let backend = Arc::new(InMemoryBackend::new());
        let (bot_b, events_b) =
            start_client_with(server.listen_addr, None, "dave", backend.clone()).await;
        let jid_b = scan_until_connected(&server, &events_b).await;
        bot_b.shutdown().await;
        wait_state(&server, 30, "B's connection gone", |st| {
            !st["connections"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["jid"] == jid_b.as_str())
        })
        .await;

        let texts: Vec<String> = (1..=50).map(|i| format!("queued {i}")).collect();
        for t in &texts {
            client_a
                .send_message(account_jid(&jid_b), text(t))
                .await
                .expect("A sends to the absent B");
        }

        let (_bot_b, events_b) = start_client_with(server.listen_addr, None, "dave", backend).await;
        let mut received = Vec::new();
        let mut offline_count = None;
        while received.len() < texts.len() || offline_count.is_none() {
            let ev = wait_for(
                &events_b,
                30,
                "queued messages and the offline count",
                |ev| match ev {
                    Event::OfflineSyncCompleted(c) => Some((Vec::new(), Some(c.count))),
                    _ => {
                        let got: Vec<(String, bool)> = ev
                            .messages()
                            .filter_map(|m| {
                                m.message
                                    .conversation
                                    .clone()
                                    .map(|c| (c, m.info.is_offline))
                            })
                            .collect();
                        (!got.is_empty()).then_some((got, None))
                    }
                },
            )
            .await;
            received.extend(ev.0);
            if ev.1.is_some() {
                offline_count = ev.1;
            }
        }
        let order: Vec<&String> = received.iter().map(|(t, _)| t).collect();
        assert_eq!(order, texts.iter().collect::<Vec<_>>());
        assert!(received.iter().all(|(_, offline)| *offline), "{received:?}");
        assert!(
            offline_count.is_some_and(|n| n >= texts.len() as i32),
            "offline count {offline_count:?}"
        );
    });
}

/// A prekey fetch hands out one of the device's one-time prekeys: the first message to a
/// new device consumes them (`/control/state` counts them).
#[test]
fn first_message_consumes_one_prekey() {
    smol::block_on(async {
        let server = start_fakewa(true).await;
        let (_bot_a, client_a, _events_a, _jid_a) = link_connected(&server, "erin").await;
        let (_bot_b, _client_b, events_b, jid_b) = link_connected(&server, "frank").await;
        let count = |st: &serde_json::Value| {
            st["accounts"]
                .as_array()
                .unwrap()
                .iter()
                .find_map(|a| a["prekeys"][jid_b.as_str()].as_u64())
        };
        let before = wait_state(&server, 30, "B's prekeys", |st| count(st).is_some()).await;
        let before = count(&before).unwrap();
        client_a
            .send_message(account_jid(&jid_b), text("first contact"))
            .await
            .expect("A sends");
        wait_text(&events_b, "first contact").await;
        // One per bundle fetch (the client may fetch the identity before the session).
        let after = count(&state(&server).await).unwrap();
        assert!(after < before && after + 3 > before, "{before} -> {after}");
    });
}

/// A first message to a privacy-restricted account (`restricted:` push name) is nacked
/// with 463 and not delivered; once that account has written, the reply goes through.
#[test]
fn first_contact_to_a_restricted_account_gets_463() {
    smol::block_on(async {
        let server = start_fakewa(true).await;
        let (_bot_a, client_a, events_a, jid_a) = link_connected(&server, "gus").await;
        let (_bot_r, client_r, events_r, jid_r) = link_connected(&server, "restricted:rita").await;

        let sent = client_a
            .send_message(account_jid(&jid_r), text("may I?"))
            .await
            .expect("the send itself goes out");
        let want = sent.message_id.clone();
        wait_for(&events_a, 30, "the 463 nack", |ev| match ev {
            Event::ServerAck(ack) if ack.id == want => Some(ack.error.clone()),
            _ => None,
        })
        .await
        .filter(|e| e == "463")
        .expect("a 463 nack");

        client_r
            .send_message(account_jid(&jid_a), text("hello gus"))
            .await
            .expect("R writes first");
        wait_text(&events_a, "hello gus").await;
        client_a
            .send_message(account_jid(&jid_r), text("hello rita"))
            .await
            .expect("A replies");
        let (_, _, id) = wait_text(&events_r, "hello rita").await;
        assert_ne!(id, sent.message_id, "the refused message never arrives");
    });
}

/// A typing indicator reaches the other account; a presence subscription is answered with
/// the current state and then hears its changes.
#[test]
fn chatstate_and_presence_are_relayed() {
    smol::block_on(async {
        let server = start_fakewa(true).await;
        let (_bot_a, client_a, _events_a, jid_a) = link_connected(&server, "hugo").await;
        let (_bot_b, client_b, events_b, jid_b) = link_connected(&server, "iris").await;

        client_a
            .chatstate()
            .send_composing(&account_jid(&jid_b))
            .await
            .expect("A types");
        wait_for(&events_b, 30, "A's typing", |ev| {
            matches!(ev, Event::ChatPresence(_)).then_some(())
        })
        .await;

        client_a
            .presence()
            .set_available()
            .await
            .expect("A available");
        client_b
            .presence()
            .subscribe(account_jid(&jid_a))
            .await
            .expect("B subscribes");
        let want = account_jid(&jid_a);
        wait_for(&events_b, 30, "A available", |ev| match ev {
            Event::Presence(p) if p.from == want && !p.unavailable => Some(()),
            _ => None,
        })
        .await;
        client_a
            .presence()
            .set_unavailable()
            .await
            .expect("A unavailable");
        wait_for(&events_b, 30, "A unavailable", |ev| match ev {
            Event::Presence(p) if p.from == want && p.unavailable => Some(()),
            _ => None,
        })
        .await;
    });
}
