//! The WhatsApp engine end to end: the real binary (built with `test-network`) against the fakewa
//! binary over TLS trusting fakewa's CA. Linking by QR through MCP, a restart that stays linked,
//! and logout.
//!
//! fakewa is a workspace package, not a dependency (it must not change the product's features),
//! so its binary is looked up next to ours in the target dir and built once with
//! `cargo build -p fakewa` when it is missing.
#![cfg(feature = "test-network")]

mod common;

use common::fakewa::*;
use common::{Server, TempDir, serde_like::Json};
use std::time::Duration;

#[test]
fn link_by_qr_restart_and_logout() {
    let fw = start_fakewa();
    let server = start_product(&fw, TempDir::new("engine"), "engine-test");
    let mcp = Mcp::open(&server);

    // The QR image encodes exactly the payload fakewa issued (the text block), read back by a
    // QR decoder from the PNG pixels.
    let (png, payload) = wait_qr_image(&mcp);
    assert_eq!(decode_qr_png(&png), payload);
    let device = link(&fw, &mcp);
    let number = device.split([':', '@']).next().unwrap().to_string();
    let status = mcp.wait_status("state: connected", 60, |t| t.contains("state: connected"));
    assert!(status.contains(&format!("number: +{number}")), "{status}");

    // /api/status agrees.
    let api = server.request("GET", "/api/status", &[], b"").json();
    assert_eq!(api.get("state").str().as_deref(), Some("connected"));
    assert_eq!(api.get("authenticated").bool(), Some(true));
    assert_eq!(api.get("ready").bool(), Some(true));
    assert_eq!(api.get("ownJid").str().as_deref(), Some(device.as_str()));

    // Already linked: get_qr_code says so instead of a code.
    let qr = mcp.text("get_qr_code");
    assert!(qr.contains("Already linked"), "{qr}");
    drop(mcp);

    // A restart comes back connected from the keys in redb, without a new pairing.
    let pairings = fakewa_state(&fw)
        .path("counters.pairing_attempts")
        .num()
        .unwrap_or(0.0);
    let data = server.stop();
    let server = start_product(&fw, data, "engine-test");
    let mcp = Mcp::open(&server);
    let status = mcp.wait_status("connected after restart", 60, |t| {
        t.contains("state: connected")
    });
    assert!(status.contains(&format!("number: +{number}")), "{status}");
    assert_eq!(
        fakewa_state(&fw)
            .path("counters.pairing_attempts")
            .num()
            .unwrap_or(0.0),
        pairings,
        "a restart must not pair again"
    );

    // Logout unlinks on fakewa's side and returns to unlinked (then a new QR).
    let key = r#"{"idempotency_key":"logout-1"}"#;
    let first = mcp.call("logout", key);
    let out = first.path("content.0.text").str().unwrap_or_default();
    assert!(out.contains("Logged out"), "{first:?}");
    assert!(first.path("content.1.text").str().is_none(), "{first:?}");
    let status = mcp.text("check_auth_status");
    assert!(
        status.contains("state: unlinked") || status.contains("state: waiting_for_qr"),
        "{status}"
    );
    let devices: Vec<String> = fakewa_state(&fw)
        .path("accounts.0.devices")
        .arr()
        .iter()
        .filter_map(Json::str)
        .collect();
    assert!(!devices.contains(&device), "{device} still in {devices:?}");
    // A fresh device offers a new QR code.
    wait_qr(&mcp);
    // The same key again: the first answer, replayed, and no second logout.
    let replay = mcp.call("logout", key);
    assert_eq!(
        replay.path("content.0.text").str().as_deref(),
        Some(out.as_str())
    );
    let note = replay.path("content.1.text").str().unwrap_or_default();
    assert!(note.starts_with("Replayed"), "{replay:?}");
    let again = mcp.text("logout");
    assert!(again.contains("No account was linked"), "{again}");

    // Link a new device, then replay the old key: the answer is the stored one and the new
    // device stays linked, so no logout ran.
    let new_device = link(&fw, &mcp);
    assert_ne!(new_device, device);
    let replay = mcp.call("logout", key);
    assert_eq!(
        replay.path("content.0.text").str().as_deref(),
        Some(out.as_str())
    );
    assert!(
        replay
            .path("content.1.text")
            .str()
            .unwrap_or_default()
            .starts_with("Replayed"),
        "{replay:?}"
    );
    let status = mcp.text("check_auth_status");
    assert!(is_connected(&status), "{status}");
    assert!(logged_in(&fw, &new_device), "{new_device} was logged out");
    assert!(
        companions(&fw, &account_of(&new_device)).contains(&new_device),
        "{new_device} was removed"
    );
}

#[test]
fn tools_answer_while_whatsapp_is_unreachable() {
    // Nothing listens on this port: the engine keeps retrying in the background.
    let dir = TempDir::new("unreach");
    let server = Server::start_in(
        "127.0.0.1:0",
        dir,
        &[("WA_WS_URL", "ws://127.0.0.1:9/ws/chat")],
    );
    let mcp = Mcp::open(&server);
    let status = mcp.text("check_auth_status");
    assert!(status.contains("state: unlinked"), "{status}");
    let qr = mcp.text("get_qr_code");
    assert!(qr.contains("No QR code yet"), "{qr}");
    // A tool that needs the live connection says so, with the state and the next step.
    let result = mcp.call("force_resync", "{}");
    assert_eq!(result.get("isError").bool(), Some(true), "{result:?}");
    let text = result.path("content.0.text").str().unwrap_or_default();
    assert!(
        text.starts_with("WhatsApp is not connected (state: unlinked): "),
        "{text}"
    );
    let health = server.request("GET", "/healthz", &[], b"");
    assert_eq!(health.status, 200);
    // /api/status carries the original's keys.
    let api = server.request("GET", "/api/status", &[], b"").json();
    let keys = api.keys();
    for key in [
        "authenticated",
        "ready",
        "qrAvailable",
        "ownJid",
        "chatCount",
        "messageCount",
        "dbChats",
        "dbMessages",
        "dbMedia",
        "dbContacts",
        "lastDisconnectReason",
        "lastDisconnectAt",
        "lastHistorySyncAt",
        "lastChatsSyncAt",
        "lastMessagesSyncAt",
        "warmupAttempts",
        "warmupInProgress",
        "lastRecoveryReason",
        "lastRecoveryAt",
        "syncRecoveryAttempts",
        "syncRecoveryInProgress",
        "autoDownload",
        "messageIndex",
        "recovery",
        "timestamp",
        "state",
    ] {
        assert!(
            keys.iter().any(|k| k == key),
            "/api/status lacks {key}: {keys:?}"
        );
    }
    assert_eq!(api.get("dbMessages").num(), Some(0.0));
    assert_eq!(api.path("recovery.reconnecting").bool(), Some(false));
    assert_eq!(api.path("messageIndex.messageCount").num(), Some(0.0));
    assert!(
        api.get("timestamp").num().unwrap_or(0.0) > 1.0e12,
        "ms: {api:?}"
    );
}

#[test]
fn force_resync_on_a_connected_client() {
    let fw = start_fakewa();
    let server = start_product(&fw, TempDir::new("resync"), "engine-test");
    let mcp = Mcp::open(&server);
    link(&fw, &mcp);
    mcp.wait_status("state: connected", 60, |t| t.contains("state: connected"));
    let result = mcp.call("force_resync", "{}");
    assert_ne!(result.get("isError").bool(), Some(true), "{result:?}");
    let text = result.path("content.0.text").str().unwrap_or_default();
    assert!(text.starts_with("Resync started"), "{text}");
    // The resync runs in the background; the link stays up.
    std::thread::sleep(Duration::from_secs(2));
    let status = mcp.text("check_auth_status");
    assert!(status.contains("state: connected"), "{status}");
}

#[test]
fn link_by_pair_code() {
    let fw = start_fakewa();
    let server = start_product(&fw, TempDir::new("paircode"), "engine-test");
    let mcp = Mcp::open(&server);
    // The socket is up once a QR code is offered.
    wait_qr(&mcp);
    let phone = "15557770001";
    let result = mcp.call(
        "request_pairing_code",
        &format!(r#"{{"phone_number":"+{phone}"}}"#),
    );
    assert_ne!(result.get("isError").bool(), Some(true), "{result:?}");
    let text = result.path("content.0.text").str().expect("a text block");
    let answer = Json::parse(&text).expect("{code, expires_at}");
    let code = answer.get("code").str().expect("code");
    assert!(
        answer.get("expires_at").num().unwrap_or(0.0) > 0.0,
        "{text}"
    );
    let status = mcp.text("check_auth_status");
    assert!(status.contains("state: pairing"), "{status}");
    let (status, body) = control(
        &fw,
        "POST",
        "/control/pair-code",
        &format!(r#"{{"phone":"{phone}","code":"{code}"}}"#),
    );
    assert_eq!(status, 200, "pair-code: {body}");
    let status = mcp.wait_status("connected by pair code", 60, |t| {
        t.contains("state: connected")
    });
    assert!(status.contains(&format!("number: +{phone}")), "{status}");
}

#[test]
fn unlink_from_the_phone_is_logged_out_without_a_new_pairing() {
    let fw = start_fakewa();
    let server = start_product(&fw, TempDir::new("unlink"), "engine-test");
    let mcp = Mcp::open(&server);
    let device = link(&fw, &mcp);
    mcp.wait_status("state: connected", 60, |t| t.contains("state: connected"));
    let (status, body) = control(
        &fw,
        "POST",
        "/control/unlink",
        &format!(r#"{{"jid":"{device}"}}"#),
    );
    assert_eq!(status, 200, "unlink: {body}");
    mcp.wait_status("state: logged_out", 30, |t| t.contains("state: logged_out"));
    let pairings = fakewa_state(&fw).path("counters.pairing_attempts").num();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        fakewa_state(&fw).path("counters.pairing_attempts").num(),
        pairings,
        "no pairing may start by itself after a logout from the phone"
    );
    // Asking for a code links again from scratch.
    wait_qr(&mcp);
}
