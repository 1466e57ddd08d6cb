//! App-state patches uploaded by one device reach the account's other devices.

mod common;

use common::*;
use whatsapp_rust::Jid;
use whatsapp_rust::types::events::Event;

/// Device A pins a chat; fakewa stores the patch, tells device B (same account) with a
/// `server_sync` notification, and B fetches it and emits `Event::PinUpdate`.
#[test]
fn pin_on_one_device_reaches_the_other() {
    smol::block_on(async {
        let server = start_fakewa(true).await;
        let (_bot_a, client_a, _events_a, _jid_a) = link_connected(&server, "alice").await;
        let (_bot_b, _client_b, events_b, _jid_b) = link_connected(&server, "alice").await;
        let st = state(&server).await;
        assert_eq!(st["counters"]["app_state_patches"], 0);

        let chat: Jid = "15550000099@s.whatsapp.net".parse().unwrap();
        client_a
            .chat_actions()
            .pin_chat(&chat)
            .await
            .expect("pin_chat is accepted");

        let pinned = wait_for(&events_b, 30, "PinUpdate on device B", |ev| match ev {
            Event::PinUpdate(p) => Some(p.clone()),
            _ => None,
        })
        .await;
        assert_eq!(pinned.jid, chat);
        assert_eq!(pinned.action.pinned, Some(true));

        let st = state(&server).await;
        assert_eq!(st["counters"]["app_state_patches"], 1);
        assert_eq!(st["accounts"][0]["app_state"]["regular_low"], 1, "{st}");
    });
}

/// Both devices pin at once: whichever uploads on a stale base gets the 409 conflict,
/// fetches the other's patch and uploads again; both patches end up stored and each device
/// sees the other's pin.
#[test]
fn concurrent_uploads_both_land() {
    smol::block_on(async {
        let server = start_fakewa(true).await;
        let (_bot_a, client_a, events_a, _jid_a) = link_connected(&server, "bob").await;
        let (_bot_b, client_b, events_b, _jid_b) = link_connected(&server, "bob").await;
        let chat_a: Jid = "15550000098@s.whatsapp.net".parse().unwrap();
        let chat_b: Jid = "15550000097@s.whatsapp.net".parse().unwrap();
        let (ra, rb) = futures_lite::future::zip(
            client_a.chat_actions().pin_chat(&chat_a),
            client_b.chat_actions().pin_chat(&chat_b),
        )
        .await;
        ra.expect("A's pin is accepted");
        rb.expect("B's pin is accepted");
        let want_b = chat_b.clone();
        wait_for(&events_a, 30, "B's PinUpdate on A", |ev| match ev {
            Event::PinUpdate(p) if p.jid == want_b => Some(()),
            _ => None,
        })
        .await;
        let want_a = chat_a.clone();
        wait_for(&events_b, 30, "A's PinUpdate on B", |ev| match ev {
            Event::PinUpdate(p) if p.jid == want_a => Some(()),
            _ => None,
        })
        .await;
        let st = state(&server).await;
        assert_eq!(st["counters"]["app_state_patches"], 2, "{st}");
        assert_eq!(st["accounts"][0]["app_state"]["regular_low"], 2, "{st}");
    });
}
