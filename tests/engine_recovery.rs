//! The WhatsApp engine recovering on its own, end to end: the real binary (built with
//! `test-network`) against the fakewa binary over TLS.
//!
//! - Reconnect: fakewa drops the connection; the product reconnects without pairing again.
//! - Refused connections: while fakewa refuses WebSocket upgrades, /mcp and /healthz keep
//!   answering and check_auth_status shows a non-connected state; afterwards it connects again.
//! - Two products on two accounts are both connected, and a third product with the first's push
//!   name becomes a second companion device of that account (checked in fakewa's
//!   `/control/state`: the product has no tool that lists an account's devices).
//! - Repeated drops: three drops in a row, each followed by a login of the same device.
//!
//! No fixed sleeps: every wait polls a condition until a deadline. The fakewa helpers are in
//! `tests/common/fakewa.rs`.
#![cfg(feature = "test-network")]

mod common;

use common::fakewa::*;
use common::{TempDir, serde_like::Json, wait_for};
use std::time::Duration;

#[test]
fn reconnects_by_itself_after_fakewa_drops_the_connection() {
    let fw = start_fakewa();
    let server = start_product(&fw, TempDir::new("reconnect"), "recover-drop");
    let mcp = Mcp::open(&server);
    let device = link(&fw, &mcp);
    wait_for(
        "fakewa sees the device logged in",
        Duration::from_secs(30),
        || logged_in(&fw, &device).then_some(()),
    );

    let pairings = counter(&fw, "pairing_attempts");
    let connections = counter(&fw, "connections");
    let logins = counter(&fw, "logins");
    let (status, body) = control(&fw, "POST", "/control/disconnect", "{}");
    assert_eq!(status, 200, "disconnect: {body}");
    let n = Json::parse(&body)
        .and_then(|j| j.get("disconnected").num())
        .expect("{disconnected: n}");
    assert!(n >= 1.0, "nothing was disconnected: {body}");

    // A new connection reaches fakewa and logs in again, and the product says connected.
    wait_for(
        "a new WebSocket connection to fakewa",
        Duration::from_secs(30),
        || (counter(&fw, "connections") > connections).then_some(()),
    );
    wait_for(
        "the device logged in again",
        Duration::from_secs(30),
        || (counter(&fw, "logins") > logins && logged_in(&fw, &device)).then_some(()),
    );
    let status = mcp.wait_connected("state: connected after the drop", 30);
    let number = device.split([':', '@']).next().unwrap();
    assert!(status.contains(&format!("number: +{number}")), "{status}");
    assert_eq!(
        counter(&fw, "pairing_attempts"),
        pairings,
        "a reconnect must not pair again"
    );
    assert_eq!(
        companions(&fw, &account_of(&device)),
        vec![device.clone()],
        "a reconnect must not add a device"
    );
    healthz_ok(&server);
}

#[test]
fn restart_builds_a_fresh_client_over_the_same_keys() {
    let fw = start_fakewa();
    let server = start_product(&fw, TempDir::new("restart"), "recover-restart");
    let mcp = Mcp::open(&server);
    let device = link(&fw, &mcp);
    wait_for(
        "fakewa sees the device logged in",
        Duration::from_secs(30),
        || logged_in(&fw, &device).then_some(()),
    );
    let pairings = counter(&fw, "pairing_attempts");
    let logins = counter(&fw, "logins");
    let r = server.request(
        "POST",
        "/api/restart-wa",
        &[("Content-Type", "application/json")],
        b"{}",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json().get("restarted").bool(), Some(true), "{}", r.text());
    wait_for(
        "the device logged in again after the restart",
        Duration::from_secs(30),
        || (counter(&fw, "logins") > logins && logged_in(&fw, &device)).then_some(()),
    );
    mcp.wait_connected("state: connected after the restart", 30);
    assert_eq!(
        counter(&fw, "pairing_attempts"),
        pairings,
        "a restart must not pair again"
    );
    assert_eq!(
        companions(&fw, &account_of(&device)),
        vec![device.clone()],
        "a restart must not add a device"
    );
}

#[test]
fn repeated_drops_each_reconnect() {
    let fw = start_fakewa();
    let server = start_product(&fw, TempDir::new("redrop"), "recover-redrop");
    let mcp = Mcp::open(&server);
    let device = link(&fw, &mcp);
    let pairings = counter(&fw, "pairing_attempts");
    for round in 1..=3 {
        wait_for("the device logged in", Duration::from_secs(30), || {
            logged_in(&fw, &device).then_some(())
        });
        let logins = counter(&fw, "logins");
        let (status, body) = control(&fw, "POST", "/control/disconnect", "{}");
        assert_eq!(status, 200, "disconnect: {body}");
        // whatsapp-rust's own reconnect delay grows (1, 1, 2, 3, 5 s) until a connection has
        // been stable for a while, so give each round room; what matters is that every drop is
        // followed by a login of the same device, never by a new pairing.
        wait_for(
            &format!("reconnect #{round}"),
            Duration::from_secs(30),
            || (counter(&fw, "logins") > logins && logged_in(&fw, &device)).then_some(()),
        );
        mcp.wait_connected(&format!("state: connected after drop #{round}"), 5);
    }
    assert_eq!(counter(&fw, "pairing_attempts"), pairings);
}

#[test]
fn keeps_serving_while_connections_are_refused_then_reconnects() {
    const REFUSE_SECS: u64 = 5;
    let fw = start_fakewa();
    let server = start_product(&fw, TempDir::new("refused"), "recover-refused");
    let mcp = Mcp::open(&server);
    let device = link(&fw, &mcp);
    wait_for(
        "fakewa sees the device logged in",
        Duration::from_secs(30),
        || logged_in(&fw, &device).then_some(()),
    );
    let pairings = counter(&fw, "pairing_attempts");

    let (status, body) = control(
        &fw,
        "POST",
        "/control/refuse-connections",
        &format!(r#"{{"secs":{REFUSE_SECS}}}"#),
    );
    assert_eq!(status, 200, "refuse-connections: {body}");
    let refused_at = std::time::Instant::now();
    let (status, body) = control(&fw, "POST", "/control/disconnect", "{}");
    assert_eq!(status, 200, "disconnect: {body}");

    // While refused the product cannot be connected; it says so, and everything else answers.
    let status = mcp.wait_status("a non-connected state", 10, |t| !is_connected(t));
    assert!(
        refused_at.elapsed() < Duration::from_secs(REFUSE_SECS),
        "the product noticed the drop only after the refusal window; cannot check it"
    );
    assert!(
        status.contains("state: connecting") || status.contains("state: unlinked"),
        "expected connecting while WhatsApp refuses connections: {status}"
    );
    assert!(!status.contains("state: logged_out"), "{status}");
    let mut rounds = 0;
    while refused_at.elapsed() < Duration::from_secs(REFUSE_SECS - 1) {
        mcp_answers(&mcp);
        healthz_ok(&server);
        let status = mcp.text("check_auth_status");
        assert!(
            !is_connected(&status),
            "connected while fakewa refuses connections: {status}"
        );
        // A fresh session works too.
        let _ = server.initialize(&[], "2025-06-18");
        rounds += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(rounds > 0);

    // After the window it links up again by itself, with the same keys.
    mcp.wait_connected("state: connected after the refusal window", 90);
    wait_for(
        "the device logged in again",
        Duration::from_secs(30),
        || logged_in(&fw, &device).then_some(()),
    );
    assert_eq!(
        counter(&fw, "pairing_attempts"),
        pairings,
        "refused connections must not lead to a new pairing"
    );
}

#[test]
fn two_accounts_and_a_second_device_of_the_same_account() {
    let fw = start_fakewa();
    let alice = start_product(&fw, TempDir::new("alice"), "recover-alice");
    let bob = start_product(&fw, TempDir::new("bob"), "recover-bob");
    let alice_mcp = Mcp::open(&alice);
    let bob_mcp = Mcp::open(&bob);
    let alice_dev = link(&fw, &alice_mcp);
    let bob_dev = link(&fw, &bob_mcp);
    let alice_acc = account_of(&alice_dev);
    let bob_acc = account_of(&bob_dev);
    assert_ne!(
        alice_acc, bob_acc,
        "different push names are different accounts"
    );

    // Both connected at the same time.
    alice_mcp.wait_connected("alice connected", 30);
    bob_mcp.wait_connected("bob connected", 30);
    wait_for("both logged in at fakewa", Duration::from_secs(30), || {
        (logged_in(&fw, &alice_dev) && logged_in(&fw, &bob_dev)).then_some(())
    });
    assert_eq!(companions(&fw, &alice_acc), vec![alice_dev.clone()]);
    assert_eq!(companions(&fw, &bob_acc), vec![bob_dev.clone()]);

    // A third instance with alice's push name is a new device of alice's account.
    let alice2 = start_product(&fw, TempDir::new("alice2"), "recover-alice");
    let alice2_mcp = Mcp::open(&alice2);
    let alice2_dev = link(&fw, &alice2_mcp);
    assert_eq!(
        account_of(&alice2_dev),
        alice_acc,
        "same push name, same account"
    );
    assert_ne!(alice2_dev, alice_dev, "a new device id");
    let mut devices = companions(&fw, &alice_acc);
    devices.sort();
    let mut want = vec![alice_dev.clone(), alice2_dev.clone()];
    want.sort();
    assert_eq!(
        devices, want,
        "alice's account lists both companion devices"
    );
    assert_eq!(companions(&fw, &bob_acc), vec![bob_dev.clone()]);

    // All three stay connected and show their own numbers.
    wait_for("all three logged in", Duration::from_secs(30), || {
        (logged_in(&fw, &alice_dev) && logged_in(&fw, &alice2_dev) && logged_in(&fw, &bob_dev))
            .then_some(())
    });
    for (mcp, dev) in [
        (&alice_mcp, &alice_dev),
        (&alice2_mcp, &alice2_dev),
        (&bob_mcp, &bob_dev),
    ] {
        let status = mcp.wait_connected("still connected", 30);
        let number = dev.split([':', '@']).next().unwrap();
        assert!(status.contains(&format!("number: +{number}")), "{status}");
    }
}

#[test]
fn a_tool_that_needs_the_connection_says_not_connected_while_refused() {
    const REFUSE_SECS: u64 = 4;
    let fw = start_fakewa();
    let server = start_product(&fw, TempDir::new("notconn"), "recover-notconn");
    let mcp = Mcp::open(&server);
    link(&fw, &mcp);
    let (status, body) = control(
        &fw,
        "POST",
        "/control/refuse-connections",
        &format!(r#"{{"secs":{REFUSE_SECS}}}"#),
    );
    assert_eq!(status, 200, "refuse-connections: {body}");
    let (status, body) = control(&fw, "POST", "/control/disconnect", "{}");
    assert_eq!(status, 200, "disconnect: {body}");
    mcp.wait_status("a non-connected state", 10, |t| !is_connected(t));

    // force_resync needs a live connection: an isError naming the state and the next step.
    let result = mcp.call("force_resync", "{}");
    let text = result.path("content.0.text").str().unwrap_or_default();
    assert_eq!(result.get("isError").bool(), Some(true), "{text}");
    assert!(
        text.contains("WhatsApp is not connected (state: "),
        "force_resync while refused: {text}"
    );
    mcp_answers(&mcp);
    healthz_ok(&server);
    mcp.wait_connected("state: connected after the refusal window", 90);
}
