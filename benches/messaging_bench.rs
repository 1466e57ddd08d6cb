//! Messaging benchmark against fakewa and its peers (real whatsapp-rust clients inside fakewa;
//! loopback, Linux only: /proc). Prints one `name=value` line per figure, and `# ` comment lines
//! saying what each group measured; it asserts nothing about timings.
//!
//! - `send_*_ms` (p50, p90, p99, n): a `send_message` `tools/call` request sent → the peer's
//!   inbox (`GET /control/peers/:number/inbox`, polled in a tight loop while the call runs)
//!   shows that unique text (the sends rotate over 4 peers, so each inbox stays short);
//!   `send_call_*_ms` is the same call's own answer time (the server's ack included);
//! - `inbound_*_ms` (p50, p90, p99, n): just before the peer's `POST /control/peers/:n/send` →
//!   a `wait_for_messages` call already pending on another connection answers with that text;
//! - `history_*`: `POST /control/history` with `HISTORY_MESSAGES` messages (default 100,000)
//!   over `HISTORY_CONVERSATIONS` conversations (default 500) for the product's account; the
//!   ingest time runs from fakewa's answer to that POST (the notification has then been sent;
//!   building the blob is fakewa's time, printed apart as `history_post_ms`) until
//!   `/api/status`'s `messageCount` has grown by all of them; the peak RSS is the highest VmRSS
//!   sampled every 2 ms meanwhile (and the process's VmHWM).
//!
//!     bench/run_messaging.sh
//!
//! builds everything and runs it. Builds nothing itself. Binaries, overridable:
//!
//! - `NET_BIN` (default `target/bench-net/release/whatsapp-mcp-stream`): the release binary
//!   built with `--features test-network` (only it accepts `WA_WS_URL` and `WA_TEST_CA`);
//! - `FAKEWA` (default `target/debug/fakewa`).
//!
//! `SENDS` (default 200) and `INBOUND` (default 100) set the sample counts; `LOG_FILE` keeps
//! the product's stderr (`RUST_LOG` is passed through) for looking into a figure.

#[path = "support/mod.rs"]
mod support;

use miniserde::json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};
use support::{
    FakeWa, Proc, Result, Scratch, Session, env_or, figure, free_addr, get, get_num, get_str, http,
    js, parse, proc_status_kb, product_command, spawn_error, start_fakewa,
};

const PUSH_NAME: &str = "messaging-bench";
const PEER_NAME: &str = "bench-peer";
/// Peers the sends rotate over, so each inbox (re-read whole on every poll) stays short.
const SEND_PEERS: usize = 4;
/// Samples run first and left out of the figures (Signal session setup, caches).
const WARMUP: usize = 5;
/// Pause between two inbox polls (the poll's own round trip comes on top).
const POLL_PAUSE: Duration = Duration::from_micros(500);
/// How long a pending `wait_for_messages` is given to reach its wait before the peer sends.
const WAIT_SETTLE: Duration = Duration::from_millis(20);
/// `/api/status` and /proc sampling period during the history ingest.
const SAMPLE_EVERY: Duration = Duration::from_millis(2);

/// The product process.
struct Product {
    proc: Proc,
    addr: SocketAddr,
}

fn start_product(bin: &str, data: &Path, fw: &FakeWa) -> Result<Product> {
    let addr = free_addr()?;
    let mut cmd = product_command(bin, addr, data, fw, PUSH_NAME);
    cmd.env("SEND_RATE_PER_MIN", "0")
        .env("WA_SEND_DEDUP_WINDOW_MS", "0");
    for var in ["READ_ONLY", "SEND_ALLOWLIST", "SEND_LOG_BODIES"] {
        cmd.env_remove(var);
    }
    match std::env::var("LOG_FILE") {
        Ok(path) => {
            let file = std::fs::File::create(&path).map_err(|e| format!("create {path}: {e}"))?;
            cmd.stderr(file);
        }
        Err(_) => {
            cmd.env_remove("RUST_LOG").stderr(Stdio::null());
        }
    }
    let child = cmd.spawn().map_err(|e| spawn_error(bin, e))?;
    Ok(Product {
        proc: Proc(child),
        addr,
    })
}

impl Product {
    fn pid(&self) -> u32 {
        self.proc.0.id()
    }

    /// A new MCP session, once the product answers `initialize`.
    fn session(&mut self) -> Result<Session> {
        Session::open(self.addr, &mut self.proc)
    }

    /// `/api/status`'s `messageCount`.
    fn message_count(&self) -> Result<u64> {
        let (status, _, body) = http(
            self.addr,
            "GET",
            "/api/status",
            &[],
            "",
            Duration::from_secs(30),
        )?;
        if status != 200 {
            return Err(format!("/api/status: HTTP {status} {body}"));
        }
        get_num(&parse(&body)?, &["messageCount"])
            .map(|n| n as u64)
            .ok_or_else(|| format!("/api/status has no messageCount: {body}"))
    }
}

/// Links a fresh product by QR through fakewa's mock phone; returns the account JID.
fn link(product: &mut Product, session: &Session, fw: &FakeWa) -> Result<String> {
    let device = session.scan_qr(&mut product.proc, fw)?;
    let number = device.split([':', '@']).next().unwrap_or(&device);
    let account = format!("{number}@s.whatsapp.net");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !session.connected()? {
        product.proc.check_alive("the product")?;
        if Instant::now() > deadline {
            return Err("not connected within 60 s of the scan".into());
        }
        thread::sleep(Duration::from_millis(10));
    }
    Ok(account)
}

/// A peer's (jid, number).
fn create_peer(fw: &FakeWa, name: &str) -> Result<(String, String)> {
    let peer = fw.control(
        "POST",
        "/control/peers",
        &format!(r#"{{"name":{}}}"#, js(name)),
    )?;
    let jid = get_str(&peer, &["jid"]).ok_or("peer without jid")?;
    let number = get_str(&peer, &["number"]).ok_or("peer without number")?;
    Ok((jid.to_string(), number.to_string()))
}

fn note(text: &str) {
    println!("# {text}");
}

fn env_count(name: &str, default: usize) -> Result<usize> {
    env_or(name, &default.to_string())
        .parse()
        .map_err(|_| format!("{name} is not a number"))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// p50, p90, p99 (nearest rank), min, max and n of millisecond samples, as `prefix_*` figures.
fn percentiles(prefix: &str, samples: &[f64]) {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        figure(&format!("{prefix}_n"), 0);
        return;
    }
    let rank = |q: f64| s[((q * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1];
    figure(&format!("{prefix}_p50_ms"), format!("{:.2}", rank(0.50)));
    figure(&format!("{prefix}_p90_ms"), format!("{:.2}", rank(0.90)));
    figure(&format!("{prefix}_p99_ms"), format!("{:.2}", rank(0.99)));
    figure(&format!("{prefix}_min_ms"), format!("{:.2}", s[0]));
    figure(
        &format!("{prefix}_max_ms"),
        format!("{:.2}", s[s.len() - 1]),
    );
    figure(&format!("{prefix}_n"), s.len());
}

/// `send_message` → the peer's inbox, rotating over `peers` (jid, number); the first send to
/// each is a warm-up. Returns (round trips, call answer times, mean poll round trip), all in
/// ms, warm-up samples left out.
fn bench_sends(
    fw: &FakeWa,
    session: &Session,
    peers: &[(String, String)],
    count: usize,
) -> Result<(Vec<f64>, Vec<f64>, f64)> {
    let warmup = WARMUP.max(peers.len());
    let (mut trips, mut calls) = (Vec::new(), Vec::new());
    let (mut polls, mut poll_time) = (0u64, Duration::ZERO);
    for i in 0..warmup + count {
        let (peer_jid, peer_number) = &peers[i % peers.len()];
        let inbox_path = format!("/control/peers/{peer_number}/inbox");
        let text = format!("bench send {} {i}", std::process::id());
        let needle = format!("\"text\":{}", js(&text));
        let args = format!(
            r#"{{"recipient_jid":{},"message":{}}}"#,
            js(peer_jid),
            js(&text)
        );
        let (trip, call) = thread::scope(|s| -> Result<(Duration, Duration)> {
            let started = Instant::now();
            let args = &args;
            let caller = s.spawn(move || {
                let answer = session.call_json("send_message", args);
                (answer, started.elapsed())
            });
            let deadline = started + Duration::from_secs(60);
            let seen = loop {
                let poll_start = Instant::now();
                let body = fw.control_raw("GET", &inbox_path, "", Duration::from_secs(30))?;
                let now = Instant::now();
                polls += 1;
                poll_time += now - poll_start;
                if body.contains(&needle) {
                    break now - started;
                }
                if now > deadline {
                    return Err(format!("send {i} never reached the peer's inbox"));
                }
                thread::sleep(POLL_PAUSE);
            };
            let (answer, call) = caller
                .join()
                .map_err(|_| "the send_message thread panicked".to_string())?;
            let answer = answer?;
            get_str(&answer, &["messageId"])
                .ok_or_else(|| format!("send_message answered no messageId: {answer:?}"))?;
            Ok((seen, call))
        })?;
        if i >= warmup {
            trips.push(ms(trip));
            calls.push(ms(call));
        }
    }
    let poll_ms = ms(poll_time) / polls.max(1) as f64;
    Ok((trips, calls, poll_ms))
}

/// A peer's send → a pending `wait_for_messages` answers. Returns ms samples, warm-up left out.
fn bench_inbound(
    fw: &FakeWa,
    waiter: &Session,
    own: &str,
    peer_jid: &str,
    peer_number: &str,
    count: usize,
) -> Result<Vec<f64>> {
    let send_path = format!("/control/peers/{peer_number}/send");
    // A cursor from now (a 1 s wait that times out).
    let first = waiter.call_json("wait_for_messages", r#"{"timeout_secs":1}"#)?;
    let mut cursor = get_str(&first, &["cursor"])
        .ok_or("wait_for_messages answered no cursor")?
        .to_string();
    let mut samples = Vec::new();
    for i in 0..WARMUP + count {
        let text = format!("bench inbound {} {i}", std::process::id());
        let args = format!(
            r#"{{"chat_jid":{},"since":{},"timeout_secs":30}}"#,
            js(peer_jid),
            js(&cursor)
        );
        let (latency, next) = thread::scope(|s| -> Result<(Duration, String)> {
            let waiting = s.spawn(|| {
                let answer = waiter.call_json("wait_for_messages", &args);
                (answer, Instant::now())
            });
            thread::sleep(WAIT_SETTLE);
            let body = format!(r#"{{"to":{},"text":{}}}"#, js(own), js(&text));
            let started = Instant::now();
            fw.control_raw("POST", &send_path, &body, Duration::from_secs(60))?;
            let (answer, answered) = waiting
                .join()
                .map_err(|_| "the wait_for_messages thread panicked".to_string())?;
            let answer = answer?;
            let has_it = match get(&answer, &["messages"]) {
                Some(Value::Array(msgs)) => msgs
                    .iter()
                    .any(|m| get_str(m, &["body"]) == Some(text.as_str())),
                _ => false,
            };
            if !has_it {
                return Err(format!(
                    "wait_for_messages answered without inbound {i}: {answer:?}"
                ));
            }
            let next = get_str(&answer, &["cursor"])
                .ok_or("wait_for_messages answered no cursor")?
                .to_string();
            Ok((answered.saturating_duration_since(started), next))
        })?;
        cursor = next;
        if i >= WARMUP {
            samples.push(ms(latency));
        }
    }
    Ok(samples)
}

/// The `/control/history` body: `messages` messages over `conversations` chats of strangers.
fn history_body(account: &str, conversations: usize, messages: usize) -> String {
    let mut body = String::with_capacity(messages * 160);
    body.push_str(&format!(
        r#"{{"account":{},"sync_type":"initial_bootstrap","conversations":["#,
        js(account)
    ));
    for c in 0..conversations {
        // Spread `messages` as evenly as possible.
        let n = messages / conversations + usize::from(c < messages % conversations);
        if c > 0 {
            body.push(',');
        }
        body.push_str(&format!(
            r#"{{"jid":"1555300{c:04}@s.whatsapp.net","name":"History Contact {c}","unread_count":0,"messages":["#
        ));
        for m in 0..n {
            if m > 0 {
                body.push(',');
            }
            body.push_str(&format!(
                r#"{{"id":"HB{c:04}X{m:06}","from_me":{},"text":"history message {m} in conversation {c} about the weather and the news","timestamp":{}}}"#,
                m % 3 == 0,
                1_600_000_000 + c * 100_000 + m
            ));
        }
        body.push_str("]}");
    }
    body.push_str("]}");
    body
}

/// What the ingest sampler saw.
struct Ingest {
    /// POST answered → the count first grew / reached the target.
    first_ms: Option<f64>,
    done_ms: Option<f64>,
    stored: u64,
    peak_rss_kb: u64,
}

fn bench_history(
    fw: &FakeWa,
    product: &mut Product,
    account: &str,
    conversations: usize,
    messages: usize,
) -> Result<()> {
    let number = account.split('@').next().unwrap_or(account);
    let body = history_body(number, conversations, messages);
    let before = product.message_count()?;
    let rss_before = proc_status_kb(product.pid(), "VmRSS:")?;
    let hwm_before = proc_status_kb(product.pid(), "VmHWM:")?;
    let pid = product.pid();

    // RSS sampler, from before the POST (the product may start downloading before fakewa
    // answers).
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(rss_before));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(kb) = proc_status_kb(pid, "VmRSS:") {
                    peak.fetch_max(kb, Ordering::Relaxed);
                }
                thread::sleep(SAMPLE_EVERY);
            }
        })
    };
    let posted = Instant::now();
    let answer = fw.control_raw("POST", "/control/history", &body, Duration::from_secs(600));
    let answered = Instant::now();
    drop(body);
    let outcome = answer.and_then(|a| {
        let sent_to = parse(&a)?;
        match get(&sent_to, &["sent_to"]) {
            Some(Value::Array(d)) if !d.is_empty() => Ok(()),
            _ => Err(format!("/control/history went to no device: {a}")),
        }
    });
    let ingest = outcome.and_then(|()| {
        let target = before + messages as u64;
        let mut seen = Ingest {
            first_ms: None,
            done_ms: None,
            stored: 0,
            peak_rss_kb: 0,
        };
        let mut last_growth = Instant::now();
        loop {
            let count = product.message_count()?;
            let now = Instant::now();
            let stored = count.saturating_sub(before);
            if stored > seen.stored {
                seen.stored = stored;
                last_growth = now;
                seen.first_ms.get_or_insert(ms(now - answered));
            }
            if count >= target {
                seen.done_ms = Some(ms(now - answered));
                break;
            }
            product.proc.check_alive("the product")?;
            // Nothing more for 60 s: report what went through.
            if now - last_growth > Duration::from_secs(60) {
                break;
            }
            thread::sleep(SAMPLE_EVERY);
        }
        Ok(seen)
    });
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let mut ingest = ingest?;
    ingest.peak_rss_kb = peak.load(Ordering::Relaxed);
    let hwm_after = proc_status_kb(pid, "VmHWM:")?;

    note(&format!(
        "history: {messages} messages over {conversations} conversations in one \
         /control/history push (one HistorySync blob); ingest time from fakewa's answer to the \
         POST until /api/status messageCount grew by all of them (sampled every {} ms)",
        SAMPLE_EVERY.as_millis()
    ));
    figure("history_messages", messages);
    figure("history_conversations", conversations);
    figure("history_post_ms", format!("{:.1}", ms(answered - posted)));
    figure("history_stored", ingest.stored);
    if let Some(first) = ingest.first_ms {
        figure("history_first_stored_ms", format!("{first:.1}"));
    }
    match ingest.done_ms {
        Some(done) => {
            figure("history_ingest_ms", format!("{done:.1}"));
            figure(
                "history_ingest_msgs_per_s",
                format!("{:.0}", messages as f64 / (done / 1000.0)),
            );
        }
        None => note(&format!(
            "history: only {} of {messages} stored (no growth for 60 s)",
            ingest.stored
        )),
    }
    figure("history_rss_before_kb", rss_before);
    // VmHWM can trail the sampled VmRSS a little (per-thread RSS counters are folded in lazily).
    figure(
        "history_ingest_peak_rss_kb",
        ingest.peak_rss_kb.max(hwm_after),
    );
    figure("history_vmhwm_before_kb", hwm_before);
    figure("history_vmhwm_after_kb", hwm_after);
    Ok(())
}

fn run() -> Result<()> {
    let net_bin = env_or("NET_BIN", "target/bench-net/release/whatsapp-mcp-stream");
    let fakewa_bin = env_or("FAKEWA", "target/debug/fakewa");
    let sends = env_count("SENDS", 200)?;
    let inbound = env_count("INBOUND", 100)?;
    let history_messages = env_count("HISTORY_MESSAGES", 100_000)?;
    let history_conversations = env_count("HISTORY_CONVERSATIONS", 500)?.max(1);
    for (var, path) in [("NET_BIN", &net_bin), ("FAKEWA", &fakewa_bin)] {
        if !Path::new(path).is_file() {
            return Err(format!(
                "no binary at {path} ({var}): run bench/run_messaging.sh, or set {var}"
            ));
        }
    }

    let mut fw = start_fakewa(&fakewa_bin)?;
    let data = Scratch::new("data")?;
    let mut product = start_product(&net_bin, &data.0, &fw)?;
    let session = product.session()?;
    let own = link(&mut product, &session, &fw)?;
    let peers = (0..SEND_PEERS)
        .map(|k| create_peer(&fw, &format!("{PEER_NAME}-{k}")))
        .collect::<Result<Vec<_>>>()?;
    let (peer_jid, peer_number) = &peers[0];
    note(&format!(
        "product {own} (pid {}), {} peers; fakewa at {fakewa_bin}, product at {net_bin}",
        product.pid(),
        peers.len(),
    ));

    if sends > 0 {
        let (trips, calls, poll_ms) = bench_sends(&fw, &session, &peers, sends)?;
        note(&format!(
            "send: send_message tools/call sent → the text in the peer's inbox; the inbox is \
             polled every {} µs plus one poll round trip (mean {poll_ms:.2} ms), so a figure \
             is late by up to about {:.2} ms; sends rotate over {} peers, the first {} sends \
             (warm-up) left out",
            POLL_PAUSE.as_micros(),
            poll_ms + POLL_PAUSE.as_secs_f64() * 1000.0,
            peers.len(),
            WARMUP.max(peers.len()),
        ));
        percentiles("send", &trips);
        percentiles("send_call", &calls);
        figure("send_inbox_poll_ms", format!("{poll_ms:.2}"));
        fw.proc.check_alive("fakewa")?;
    }

    if inbound > 0 {
        let waiter = product.session()?;
        let samples = bench_inbound(&fw, &waiter, &own, peer_jid, peer_number, inbound)?;
        note(&format!(
            "inbound: just before POST /control/peers/:n/send → the answer of a \
             wait_for_messages pending on another connection (started {} ms before); \
             {WARMUP} warm-up messages left out",
            WAIT_SETTLE.as_millis()
        ));
        percentiles("inbound", &samples);
        fw.proc.check_alive("fakewa")?;
    }

    if history_messages > 0 {
        bench_history(
            &fw,
            &mut product,
            &own,
            history_conversations,
            history_messages,
        )?;
    }
    product.proc.check_alive("the product")?;
    Ok(())
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument (a filter) is ignored.
    if let Err(e) = run() {
        eprintln!("messaging_bench: {e}");
        std::process::exit(1);
    }
}
