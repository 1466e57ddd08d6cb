//! A real whatsapp-rust client links to fakewa by QR and logs in again after the 515.

mod common;

use std::time::Duration;

use common::*;
use whatsapp_rust::types::events::Event;

/// Pairs "alice" through `/control/scan` and waits for the login that follows.
async fn pair_and_login(plain: bool) {
    let server = start_fakewa(plain).await;
    assert!(
        server.ca_pem_path.exists(),
        "ca.pem is written before serving"
    );
    let (bot, events) = start_client(&server, plain, "alice").await;

    let qr = wait_for(&events, 30, "PairingQrCode", |ev| match ev {
        Event::PairingQrCode(q) => Some(q.code.clone()),
        _ => None,
    })
    .await;
    assert_eq!(qr.split(',').count(), 5, "QR has five fields: {qr}");

    let body = serde_json::json!({ "qr": qr }).to_string();
    let (status, answer) = http_async(server.control_addr, "POST", "/control/scan", &body).await;
    assert_eq!(status, 200, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let jid = answer["jid"].as_str().expect("jid").to_string();

    let (id, lid) = wait_for(&events, 30, "PairSuccess", |ev| match ev {
        Event::PairSuccess(p) => Some((p.id.to_string(), p.lid.to_string())),
        _ => None,
    })
    .await;
    assert_eq!(id, jid);
    assert!(lid.ends_with("@lid"), "{lid}");

    let st = state(&server).await;
    let account = &st["accounts"][0];
    let number = account["number"].as_str().unwrap().to_string();
    assert!(number.bytes().all(|b| b.is_ascii_digit()), "{number}");
    assert!(jid.starts_with(&format!("{number}:")), "{jid} vs {number}");
    assert_ne!(
        jid,
        format!("{number}:0@s.whatsapp.net"),
        "companions are not device 0"
    );
    assert_eq!(account["devices"].as_array().unwrap().len(), 2, "{st}");
    assert_eq!(st["counters"]["pairing_attempts"], 1);

    // After the 515 the client reconnects and logs in with its number and device.
    let client = bot.client();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let st = state(&server).await;
        let logged_in = st["connections"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["phase"] == "logged_in" && c["jid"] == jid.as_str());
        if logged_in && client.is_logged_in() {
            assert!(st["counters"]["connections"].as_u64().unwrap() >= 2);
            assert_eq!(st["counters"]["pairing_attempts"], 1, "no second pairing");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no login: {st}");
        smol::Timer::after(Duration::from_millis(100)).await;
    }
    assert_eq!(
        client.pn().map(|j| j.user.to_string()).as_deref(),
        Some(number.as_str())
    );
    bot.abort();
}

#[test]
fn qr_pairing_then_login_over_tls() {
    smol::block_on(pair_and_login(false));
}

#[test]
fn qr_pairing_then_login_over_plain_ws() {
    smol::block_on(pair_and_login(true));
}

/// After login the client's first IQs are answered: the prekey upload is stored, and props,
/// blocklist and privacy settings come back.
#[test]
fn post_login_iqs_are_answered() {
    smol::block_on(async {
        let server = start_fakewa(true).await;
        let (bot, events) = start_client(&server, true, "carol").await;
        let qr = wait_for(&events, 30, "PairingQrCode", |ev| match ev {
            Event::PairingQrCode(q) => Some(q.code.clone()),
            _ => None,
        })
        .await;
        let body = serde_json::json!({ "qr": qr }).to_string();
        let (status, answer) =
            http_async(server.control_addr, "POST", "/control/scan", &body).await;
        assert_eq!(status, 200, "{answer}");
        let jid = serde_json::from_str::<serde_json::Value>(&answer).unwrap()["jid"]
            .as_str()
            .unwrap()
            .to_string();
        let client = bot.client();
        // Connected comes after the phone's key share, which took one of the prekeys.
        wait_for(&events, 30, "Connected", |ev| {
            matches!(ev, Event::Connected(_)).then_some(())
        })
        .await;
        let st = state(&server).await;
        let prekeys = st["accounts"][0]["prekeys"][jid.as_str()]
            .as_u64()
            .unwrap_or(0);
        assert!(prekeys > 0, "no prekey upload: {st}");
        // Prekey count and digest: the bundle the client uploaded, with a matching hash.
        use whatsapp_rust::wacore::iq::prekeys::{DigestKeyBundleSpec, PreKeyCountSpec};
        let count = client.execute(PreKeyCountSpec::new()).await.expect("count");
        let st = state(&server).await;
        assert_eq!(
            Some(count.count as u64),
            st["accounts"][0]["prekeys"][jid.as_str()].as_u64()
        );
        let digest = client
            .execute(DigestKeyBundleSpec::new())
            .await
            .expect("digest");
        let device = client.persistence_manager().get_device_snapshot();
        assert_eq!(digest.reg_id, device.registration_id);
        assert_eq!(
            digest.identity,
            device.identity_key.public_key.public_key_bytes()
        );
        assert_eq!(digest.skey_id, device.signed_pre_key_id);
        assert_eq!(digest.prekey_ids.len(), count.count);
        let loaded = device
            .backend
            .load_prekeys_batch(&digest.prekey_ids)
            .await
            .expect("local prekeys");
        let loaded: std::collections::HashMap<u32, _> = loaded.into_iter().collect();
        let pubs: Vec<Vec<u8>> = digest
            .prekey_ids
            .iter()
            .map(|id| {
                whatsapp_rust::wacore::prekeys::extract_prekey_public_key(&loaded[id])
                    .expect("prekey public key")
                    .to_vec()
            })
            .collect();
        let pubs: Vec<&[u8]> = pubs.iter().map(Vec::as_slice).collect();
        let local = whatsapp_rust::wacore::prekeys::compute_key_bundle_digest(
            device.identity_key.public_key.public_key_bytes(),
            device.signed_pre_key.public_key.public_key_bytes(),
            &device.signed_pre_key_signature,
            &pubs,
        );
        assert_eq!(digest.hash, local, "digest hash matches the client's keys");
        client
            .validate_digest_key()
            .await
            .expect("digest validates");
        // usync: devices and LID of the own account, registration of numbers.
        let number = jid.split(':').next().unwrap().to_string();
        let own: whatsapp_rust::Jid = format!("{number}@s.whatsapp.net").parse().unwrap();
        let info = client
            .contacts()
            .get_user_info(std::slice::from_ref(&own))
            .await
            .expect("user info");
        let me = &info[&own];
        let device: u16 = jid
            .split(':')
            .nth(1)
            .unwrap()
            .split('@')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(me.devices, vec![0, device]);
        assert_eq!(
            me.lid.as_ref().map(|l| l.to_string()),
            st["accounts"][0]["lid"].as_str().map(str::to_string)
        );
        let stranger: whatsapp_rust::Jid = "19990000000@s.whatsapp.net".parse().unwrap();
        let on_wa = client
            .contacts()
            .is_on_whatsapp(&[own.clone(), stranger.clone()])
            .await
            .expect("is_on_whatsapp");
        let registered = |j: &whatsapp_rust::Jid| {
            on_wa
                .iter()
                .find(|r| r.jid.user == j.user)
                .is_some_and(|r| r.is_registered)
        };
        assert!(registered(&own), "{on_wa:?}");
        assert!(!registered(&stranger), "{on_wa:?}");
        client.fetch_props().await.expect("props");
        let blocked = client.blocking().get_blocklist().await.expect("blocklist");
        assert!(blocked.is_empty());
        let privacy = client.fetch_privacy_settings().await.expect("privacy");
        assert!(format!("{privacy:?}").contains("Contacts"), "{privacy:?}");
        bot.abort();
    });
}

/// Pairs a fresh client with `push_name` and waits for its login; returns its device JID.
async fn link(
    server: &fakewa::Server,
    push_name: &str,
) -> (
    whatsapp_rust::bot::BotHandle,
    std::sync::Arc<whatsapp_rust::Client>,
    String,
) {
    let (bot, events) = start_client(server, true, push_name).await;
    let qr = wait_for(&events, 30, "PairingQrCode", |ev| match ev {
        Event::PairingQrCode(q) => Some(q.code.clone()),
        _ => None,
    })
    .await;
    let body = serde_json::json!({ "qr": qr }).to_string();
    let (status, answer) = http_async(server.control_addr, "POST", "/control/scan", &body).await;
    assert_eq!(status, 200, "{answer}");
    let jid = serde_json::from_str::<serde_json::Value>(&answer).unwrap()["jid"]
        .as_str()
        .unwrap()
        .to_string();
    let client = bot.client();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !client.is_logged_in() {
        assert!(
            std::time::Instant::now() < deadline,
            "{push_name} never logged in"
        );
        smol::Timer::after(Duration::from_millis(50)).await;
    }
    (bot, client, jid)
}

/// The same push name is the same number with a new device; another push name is another
/// account; and the first device sees the second in its own device list.
#[test]
fn accounts_by_push_name() {
    smol::block_on(async {
        let server = start_fakewa(true).await;
        let (bot1, client1, jid1) = link(&server, "alice").await;
        let (bot2, _client2, jid2) = link(&server, "alice").await;
        let (bot3, _client3, jid3) = link(&server, "scenario:tc_enabled=1:dave").await;
        let number = |j: &str| j.split(':').next().unwrap().to_string();
        assert_eq!(number(&jid1), number(&jid2));
        assert_ne!(jid1, jid2);
        assert_ne!(number(&jid1), number(&jid3));

        let st = state(&server).await;
        let accounts = st["accounts"].as_array().unwrap();
        assert_eq!(accounts.len(), 2, "{st}");
        assert_eq!(accounts[0]["devices"].as_array().unwrap().len(), 3, "{st}");
        assert_eq!(st["counters"]["pairing_attempts"], 3);

        let own: whatsapp_rust::Jid = format!("{}@s.whatsapp.net", number(&jid1)).parse().unwrap();
        let info = client1
            .contacts()
            .get_user_info(std::slice::from_ref(&own))
            .await
            .expect("user info");
        assert_eq!(info[&own].devices, vec![0, 1, 2]);
        bot1.abort();
        bot2.abort();
        bot3.abort();
    });
}

/// After login the phone shares the account's app-state key (Signal `pkmsg` from device 0),
/// and with the offline marker and the (empty) critical app-state collections the client
/// reaches `Event::Connected` — without waiting out its 10 s grace for a key share.
#[test]
fn connected_after_key_share_and_critical_sync() {
    smol::block_on(async {
        let server = start_fakewa(true).await;
        let (bot, events) = start_client(&server, true, "erin").await;
        let qr = wait_for(&events, 30, "PairingQrCode", |ev| match ev {
            Event::PairingQrCode(q) => Some(q.code.clone()),
            _ => None,
        })
        .await;
        let body = serde_json::json!({ "qr": qr }).to_string();
        let (status, answer) =
            http_async(server.control_addr, "POST", "/control/scan", &body).await;
        assert_eq!(status, 200, "{answer}");
        let started = std::time::Instant::now();
        wait_for(&events, 60, "Connected", |ev| {
            matches!(ev, Event::Connected(_)).then_some(())
        })
        .await;
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "Connected only after {:?}: the key share did not arrive",
            started.elapsed()
        );
        let client = bot.client();
        assert!(client.is_connected() && client.is_logged_in());
        let backend = client
            .persistence_manager()
            .get_device_snapshot()
            .backend
            .clone();
        let key_id = backend
            .get_latest_sync_key_id()
            .await
            .expect("store")
            .expect("the shared app-state key is stored");
        let key = backend.get_sync_key(&key_id).await.expect("store");
        assert_eq!(key.map(|k| k.key_data.len()), Some(32));
        bot.abort();
    });
}

/// A client without a push name gets one from the phone: the first sync of `critical_block`
/// carries an encrypted `setting_pushName` patch.
#[test]
fn push_name_comes_from_critical_block() {
    smol::block_on(async {
        let server = start_fakewa(true).await;
        let (bot, client, _events, jid) = link_connected(&server, "").await;
        let number = jid.split(':').next().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while client.push_name() != format!("User {number}") {
            assert!(
                std::time::Instant::now() < deadline,
                "push name is {:?}",
                client.push_name()
            );
            smol::Timer::after(Duration::from_millis(50)).await;
        }
        bot.abort();
    });
}
