//! The `fakewa` binary: its CLI, readiness, the control API's state, and upstream's
//! harness endpoint `POST /admin/mock-phone/scan-qr` on the listen port.

mod common;

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use whatsapp_rust::types::events::Event;

struct Fakewa {
    child: Child,
    listen: SocketAddr,
    control: SocketAddr,
    dir: std::path::PathBuf,
}

impl Drop for Fakewa {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_fakewa(plain: bool) -> Fakewa {
    let dir = scratch_dir().join("nested");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fakewa"));
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--control",
        "127.0.0.1:0",
        "--dir",
    ])
    .arg(&dir)
    .stdout(Stdio::piped());
    if plain {
        cmd.arg("--plain");
    }
    let mut child = cmd.spawn().expect("fakewa runs");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut listen = None;
    let mut control = None;
    while listen.is_none() || control.is_none() {
        let line = lines.next().expect("fakewa prints its addresses").unwrap();
        if let Some(v) = line.strip_prefix("listen=") {
            listen = Some(v.parse().unwrap());
        } else if let Some(v) = line.strip_prefix("control=") {
            control = Some(v.parse().unwrap());
        }
    }
    Fakewa {
        child,
        listen: listen.unwrap(),
        control: control.unwrap(),
        dir,
    }
}

#[test]
fn cli_creates_dir_writes_ca_and_answers() {
    let fw = spawn_fakewa(false);
    let pem = std::fs::read_to_string(fw.dir.join("ca.pem")).expect("ca.pem");
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    let (status, body) = http(fw.control, "GET", "/control/state", "");
    assert_eq!(status, 200);
    let st: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(st["accounts"], serde_json::json!([]));
    assert_eq!(st["counters"]["connections"], 0);
    assert_eq!(st["counters"]["pairing_attempts"], 0);
    assert_eq!(st["counters"]["pair_code_attempts"], 0);
    let (status, _) = http(fw.control, "GET", "/control/nope", "");
    assert_eq!(status, 404);
}

#[test]
fn bad_arguments_exit_with_usage() {
    let out = Command::new(env!("CARGO_BIN_EXE_fakewa"))
        .arg("--listen")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: fakewa"));
}

/// The harness endpoint pairs exactly like `/control/scan`.
#[test]
fn admin_scan_qr_pairs_over_plain_ws() {
    let fw = spawn_fakewa(true);
    smol::block_on(async {
        let (status, body) = http_async(fw.listen, "GET", "/", "").await;
        assert_eq!(status, 200, "readiness: {body}");
        let (bot, events) = start_client_at(fw.listen, None, "bob").await;
        let qr = wait_for(&events, 30, "PairingQrCode", |ev| match ev {
            Event::PairingQrCode(q) => Some(q.code.clone()),
            _ => None,
        })
        .await;
        let (status, body) = http_async(fw.listen, "POST", "/admin/mock-phone/scan-qr", &qr).await;
        assert_eq!(status, 200, "{body}");
        wait_for(&events, 30, "PairSuccess", |ev| {
            matches!(ev, Event::PairSuccess(_)).then_some(())
        })
        .await;
        let client = bot.client();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !client.is_logged_in() {
            assert!(std::time::Instant::now() < deadline, "no login");
            smol::Timer::after(Duration::from_millis(50)).await;
        }
        let st = state_at(fw.control).await;
        assert_eq!(st["accounts"][0]["push_name"], "bob");
        assert_eq!(st["accounts"][0]["devices"].as_array().unwrap().len(), 2);
        // A stale QR is refused.
        let (status, _) = http_async(fw.listen, "POST", "/admin/mock-phone/scan-qr", &qr).await;
        assert_eq!(status, 404);
        bot.abort();
    });
}
