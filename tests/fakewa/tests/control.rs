//! The control API's disconnect, refuse-connections and unlink, and logout from the client.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use whatsapp_rust::types::events::Event;

fn devices(st: &serde_json::Value) -> Vec<String> {
    st["accounts"][0]["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect()
}

/// fakewa drops the connection; the client reconnects and logs in on its own.
#[test]
fn disconnect_then_client_reconnects() {
    smol::block_on(async {
        let server = start_fakewa(true).await;
        let (bot, _client, events, _jid) = link_connected(&server, "alice").await;
        let (status, body) =
            http_async(server.control_addr, "POST", "/control/disconnect", "{}").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&body).unwrap()["disconnected"],
            1
        );
        wait_for(&events, 30, "Disconnected", |ev| {
            matches!(ev, Event::Disconnected(_)).then_some(())
        })
        .await;
        wait_for(&events, 60, "Connected again", |ev| {
            matches!(ev, Event::Connected(_)).then_some(())
        })
        .await;
        let st = state(&server).await;
        assert_eq!(st["counters"]["logins"], 2, "{st}");
        assert_eq!(st["counters"]["pairing_attempts"], 1, "{st}");
        bot.abort();
    });
}

/// While fakewa refuses connections the client cannot log in; afterwards it does.
#[test]
fn refused_connections_then_recovery() {
    smol::block_on(async {
        let server = start_fakewa(true).await;
        let (bot, _client, events, _jid) = link_connected(&server, "bob").await;
        let (status, body) = http_async(
            server.control_addr,
            "POST",
            "/control/refuse-connections",
            &json!({"secs": 3}).to_string(),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let refused_at = std::time::Instant::now();
        http_async(server.control_addr, "POST", "/control/disconnect", "{}").await;
        wait_for(&events, 30, "Connected again", |ev| {
            matches!(ev, Event::Connected(_)).then_some(())
        })
        .await;
        assert!(
            refused_at.elapsed() >= Duration::from_millis(2900),
            "logged in while refusing, after {:?}",
            refused_at.elapsed()
        );
        let st = state(&server).await;
        assert_eq!(st["counters"]["logins"], 2, "{st}");
        let (status, _) = http_async(
            server.control_addr,
            "POST",
            "/control/refuse-connections",
            "{\"secs\": \"x\"}",
        )
        .await;
        assert_eq!(status, 400);
        bot.abort();
    });
}

/// An unlink from the phone's side logs the device out, removes it, and no new pairing
/// attempt follows.
#[test]
fn unlink_from_the_phone_logs_out() {
    smol::block_on(async {
        let server = start_fakewa(true).await;
        let (bot, client, events, jid) = link_connected(&server, "carol").await;
        let (status, body) = http_async(
            server.control_addr,
            "POST",
            "/control/unlink",
            &json!({ "jid": jid }).to_string(),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&body).unwrap()["removed"],
            json!([jid])
        );
        wait_for(&events, 30, "LoggedOut", |ev| {
            matches!(ev, Event::LoggedOut(_)).then_some(())
        })
        .await;
        let st = state(&server).await;
        assert!(!devices(&st).contains(&jid), "{st}");
        smol::Timer::after(Duration::from_secs(2)).await;
        let st = state(&server).await;
        assert_eq!(st["counters"]["pairing_attempts"], 1, "{st}");
        assert_eq!(st["counters"]["logins"], 1, "{st}");
        assert!(!client.is_connected());
        // Unknown JIDs and the phone itself are refused.
        let number = jid.split(':').next().unwrap();
        for (jid, want) in [
            (format!("{number}:0@s.whatsapp.net"), 400),
            ("19990000000@s.whatsapp.net".to_string(), 404),
            ("nonsense".to_string(), 400),
        ] {
            let (status, body) = http_async(
                server.control_addr,
                "POST",
                "/control/unlink",
                &json!({ "jid": jid }).to_string(),
            )
            .await;
            assert_eq!(status, want, "{jid}: {body}");
        }
        bot.abort();
    });
}

/// The client's own logout removes its device from the account.
#[test]
fn logout_from_the_client_removes_the_device() {
    smol::block_on(async {
        let server = start_fakewa(true).await;
        let (bot, client, _events, jid) = link_connected(&server, "dave").await;
        client.logout().await;
        let st = wait_state(&server, 30, "device removed", |st| {
            !devices(st).iter().any(|d| d == &jid)
        })
        .await;
        assert_eq!(devices(&st).len(), 1, "only the phone is left: {st}");
        bot.abort();
    });
}

/// Linking by phone number: the companion asks for a code for a number with no account
/// (which creates it), the phone enters the code through `/control/pair-code`, and the
/// client pairs, logs in and connects.
#[test]
fn pair_code_links_a_new_number() {
    smol::block_on(async {
        let server = start_fakewa(true).await;
        let (bot, events) = start_client(&server, true, "grace").await;
        wait_for(&events, 30, "PairingQrCode", |ev| {
            matches!(ev, Event::PairingQrCode(_)).then_some(())
        })
        .await;
        let client = bot.client();
        let code = client
            .pair_with_code(whatsapp_rust::pair_code::PairCodeOptions {
                phone_number: "15557654321".to_string(),
                ..Default::default()
            })
            .await
            .expect("pair code");
        let st = state(&server).await;
        assert_eq!(st["counters"]["pair_code_attempts"], 1, "{st}");
        assert_eq!(st["counters"]["pairing_attempts"], 2, "{st}");

        // A wrong number is refused.
        let (status, _) = http_async(
            server.control_addr,
            "POST",
            "/control/pair-code",
            &json!({"phone": "+1 999 000 0000", "code": code}).to_string(),
        )
        .await;
        assert_eq!(status, 404);

        let (status, body) = http_async(
            server.control_addr,
            "POST",
            "/control/pair-code",
            &json!({"phone": "+1 555 765 4321", "code": code}).to_string(),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let jid = serde_json::from_str::<serde_json::Value>(&body).unwrap()["jid"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(jid.starts_with("15557654321:"), "{jid}");
        let id = wait_for(&events, 30, "PairSuccess", |ev| match ev {
            Event::PairSuccess(p) => Some(p.id.to_string()),
            _ => None,
        })
        .await;
        assert_eq!(id, jid);
        wait_for(&events, 30, "Connected", |ev| {
            matches!(ev, Event::Connected(_)).then_some(())
        })
        .await;
        let st = state(&server).await;
        let account = st["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["number"] == "15557654321")
            .expect("the account was created");
        assert!(
            account["devices"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d == jid.as_str())
        );
        bot.abort();
    });
}

/// A client restarted over the same store logs in again without pairing.
#[test]
fn restarted_client_logs_in_without_pairing() {
    smol::block_on(async {
        let server = start_fakewa(true).await;
        let backend = std::sync::Arc::new(whatsapp_rust::wacore::store::InMemoryBackend::new());
        let (bot, events) =
            start_client_with(server.listen_addr, None, "heidi", backend.clone()).await;
        scan_until_connected(&server, &events).await;
        bot.shutdown().await;

        let (bot, events) = start_client_with(server.listen_addr, None, "heidi", backend).await;
        wait_for(&events, 30, "Connected after restart", |ev| match ev {
            Event::PairingQrCode(_) => panic!("a restarted client must not pair again"),
            Event::Connected(_) => Some(()),
            _ => None,
        })
        .await;
        let st = state(&server).await;
        assert_eq!(st["counters"]["pairing_attempts"], 1, "{st}");
        assert_eq!(st["counters"]["logins"], 2, "{st}");
        bot.abort();
    });
}
