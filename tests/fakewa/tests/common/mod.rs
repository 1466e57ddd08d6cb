//! Test helpers: fakewa in process, and a real whatsapp-rust client on smol through
//! `fakewa::client` (runtime, WebSocket transport over TLS trusting `DIR/ca.pem` or plain,
//! the CDN's HTTPS client).

#![allow(dead_code)]

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use whatsapp_rust::Jid;
use whatsapp_rust::bot::BotHandle;
use whatsapp_rust::types::events::Event;
use whatsapp_rust::wacore::store::InMemoryBackend;
use whatsapp_rust::waproto::whatsapp as wa;

/// A fakewa in this process on 127.0.0.1:0, in a fresh temporary directory.
pub async fn start_fakewa(plain: bool) -> fakewa::Server {
    let _ = env_logger::builder().is_test(true).try_init();
    let dir = scratch_dir();
    fakewa::start(fakewa::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        control: "127.0.0.1:0".parse().unwrap(),
        dir,
        plain,
    })
    .await
    .expect("fakewa starts")
}

pub fn scratch_dir() -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "fakewa-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A real whatsapp-rust client with `push_name`, connected to `server`; its events arrive
/// on the returned channel.
pub async fn start_client(
    server: &fakewa::Server,
    plain: bool,
    push_name: &str,
) -> (BotHandle, async_channel::Receiver<Arc<Event>>) {
    let config = fakewa::client::ClientConfig {
        addr: server.listen_addr,
        tls: !plain,
        // The CDN is HTTPS even when the WebSocket is plain.
        ca_pem: Some(std::fs::read(&server.ca_pem_path).expect("ca.pem")),
    };
    fakewa::client::start_bot(&config, push_name, Arc::new(InMemoryBackend::new()))
        .await
        .expect("bot builds")
}

/// Like `start_client`, for a fakewa at `addr` (TLS trusting `ca`, or plain without it).
pub async fn start_client_at(
    addr: SocketAddr,
    ca: Option<&std::path::Path>,
    push_name: &str,
) -> (BotHandle, async_channel::Receiver<Arc<Event>>) {
    start_client_with(addr, ca, push_name, Arc::new(InMemoryBackend::new())).await
}

/// Like `start_client_at`, over an existing store (a restarted client).
pub async fn start_client_with(
    addr: SocketAddr,
    ca: Option<&std::path::Path>,
    push_name: &str,
    backend: Arc<InMemoryBackend>,
) -> (BotHandle, async_channel::Receiver<Arc<Event>>) {
    let config = fakewa::client::ClientConfig {
        addr,
        tls: ca.is_some(),
        ca_pem: ca.map(|path| std::fs::read(path).expect("ca.pem")),
    };
    fakewa::client::start_bot(&config, push_name, backend)
        .await
        .expect("bot builds")
}

/// Waits up to `secs` for an event `pick` accepts.
pub async fn wait_for<T>(
    events: &async_channel::Receiver<Arc<Event>>,
    secs: u64,
    what: &str,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let next = futures_lite::future::or(async { events.recv().await.ok() }, async {
            smol::Timer::after(left).await;
            None
        })
        .await;
        match next {
            Some(ev) => {
                if let Some(v) = pick(&ev) {
                    return v;
                }
            }
            None => panic!("timed out after {secs}s waiting for {what}"),
        }
    }
}

/// A blocking HTTP/1.1 exchange with the control port (std only): (status, body).
pub fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).expect("response");
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// `http` off the async thread.
pub async fn http_async(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let (method, path, body) = (method.to_string(), path.to_string(), body.to_string());
    smol::unblock(move || http(addr, &method, &path, &body)).await
}

pub async fn state(server: &fakewa::Server) -> serde_json::Value {
    state_at(server.control_addr).await
}

pub async fn state_at(control: SocketAddr) -> serde_json::Value {
    let (status, body) = http_async(control, "GET", "/control/state", "").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("state JSON")
}

/// A client with `push_name` linked by QR (through `/control/scan`) and `Connected`;
/// returns its handle, client, event channel and device JID.
pub async fn link_connected(
    server: &fakewa::Server,
    push_name: &str,
) -> (
    BotHandle,
    Arc<whatsapp_rust::Client>,
    async_channel::Receiver<Arc<Event>>,
    String,
) {
    let (bot, events) = start_client(server, true, push_name).await;
    let jid = scan_until_connected(server, &events).await;
    let client = bot.client();
    (bot, client, events, jid)
}

/// Scans the QR code a fresh client shows on `events` through `/control/scan` and waits for
/// it to be `Connected`; returns its device JID.
pub async fn scan_until_connected(
    server: &fakewa::Server,
    events: &async_channel::Receiver<Arc<Event>>,
) -> String {
    let qr = wait_for(events, 30, "PairingQrCode", |ev| match ev {
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
    wait_for(events, 30, "Connected", |ev| {
        matches!(ev, Event::Connected(_)).then_some(())
    })
    .await;
    jid
}

/// A text message.
pub fn text(t: &str) -> wa::Message {
    wa::Message {
        conversation: Some(t.to_string()),
        ..Default::default()
    }
}

/// The account JID (`N@s.whatsapp.net`) of a device JID (`N:D@s.whatsapp.net`).
pub fn account_jid(device_jid: &str) -> Jid {
    let (user, server) = device_jid.split_once('@').unwrap();
    let user = user.split(':').next().unwrap();
    format!("{user}@{server}").parse().unwrap()
}

/// Polls `/control/state` until `check` accepts it.
pub async fn wait_state(
    server: &fakewa::Server,
    secs: u64,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let st = state(server).await;
        if check(&st) {
            return st;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}: {st}"
        );
        smol::Timer::after(Duration::from_millis(50)).await;
    }
}
