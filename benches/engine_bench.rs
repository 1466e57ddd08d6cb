//! WhatsApp engine benchmark against fakewa (loopback, Linux only: /proc). Prints one
//! `name=value` line per figure:
//!
//! - `connect_ms`: process start → `check_auth_status` says `state: connected`, for an already
//!   linked device (the median of three restarts; `connect_ms_min` and `connect_ms_max` too);
//! - `idle_connected_rss_kb`: VmRSS after 60 s connected and idle;
//! - `binary_bytes`: the size of the stripped release binary.
//!
//!     bench/run_engine.sh
//!
//! builds everything and runs it. Builds nothing itself. Three binaries, all overridable:
//!
//! - `NET_BIN` (default `target/bench-net/release/whatsapp-mcp-stream`): the release binary
//!   built with `--features test-network`, since only that build accepts `WA_WS_URL` and
//!   `WA_TEST_CA`; it is the one that is started, linked, timed and measured;
//! - `BIN` (default `target/release/whatsapp-mcp-stream`): the real release artifact (no
//!   test-network), whose size is `binary_bytes`;
//! - `FAKEWA` (default `target/debug/fakewa`).
//!
//! `IDLE_SECS` (default 60) shortens the idle wait for a quick try.

#[path = "support/mod.rs"]
mod support;

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};
use support::{
    FakeWa, Proc, Result, Scratch, Session, env_or, figure, free_addr, get_num, proc_status_kb,
    product_command, spawn_error, start_fakewa,
};

const PUSH_NAME: &str = "engine-bench";
const RESTARTS: usize = 3;

/// The product process and its MCP session.
struct Product {
    proc: Proc,
    session: Session,
}

/// Spawns the product over `data` and returns it once it answers `initialize`, with the spawn
/// instant.
fn start_product(bin: &str, data: &Path, fw: &FakeWa) -> Result<(Product, Instant)> {
    let addr = free_addr()?;
    let mut cmd = product_command(bin, addr, data, fw, PUSH_NAME);
    cmd.env_remove("RUST_LOG")
        .stderr(std::process::Stdio::null());
    let started = Instant::now();
    let child = cmd.spawn().map_err(|e| spawn_error(bin, e))?;
    let mut proc = Proc(child);
    let session = Session::open(addr, &mut proc)?;
    Ok((Product { proc, session }, started))
}

impl Product {
    /// Polls check_auth_status until connected; returns when it first said so.
    fn wait_connected(&mut self, within: Duration) -> Result<Instant> {
        let deadline = Instant::now() + within;
        loop {
            if self.session.connected()? {
                return Ok(Instant::now());
            }
            self.proc.check_alive("the product")?;
            if Instant::now() > deadline {
                return Err(format!("not connected within {within:?}"));
            }
            thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Links a fresh product by QR through fakewa's mock phone.
fn link(bin: &str, data: &Path, fw: &FakeWa) -> Result<()> {
    let (mut product, _) = start_product(bin, data, fw)?;
    product.session.scan_qr(&mut product.proc, fw)?;
    product.wait_connected(Duration::from_secs(60))?;
    Ok(())
}

fn run() -> Result<()> {
    let bin = env_or("BIN", "target/release/whatsapp-mcp-stream");
    let net_bin = env_or("NET_BIN", "target/bench-net/release/whatsapp-mcp-stream");
    let fakewa_bin = env_or("FAKEWA", "target/debug/fakewa");
    let idle_secs: u64 = env_or("IDLE_SECS", "60")
        .parse()
        .map_err(|_| "IDLE_SECS is not a number")?;
    for (var, path) in [
        ("BIN", &bin),
        ("NET_BIN", &net_bin),
        ("FAKEWA", &fakewa_bin),
    ] {
        if !Path::new(path).is_file() {
            return Err(format!(
                "no binary at {path} ({var}): run bench/run_engine.sh, or set {var}"
            ));
        }
    }

    let mut fw = start_fakewa(&fakewa_bin)?;
    let data = Scratch::new("data")?;
    link(&net_bin, &data.0, &fw)?;
    let pairings = fw
        .control("GET", "/control/state", "")
        .map(|s| get_num(&s, &["counters", "pairing_attempts"]))?;

    // Restarts of the linked device: spawn → connected.
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..RESTARTS {
        drop(last.take());
        let (mut product, started) = start_product(&net_bin, &data.0, &fw)?;
        let at = product.wait_connected(Duration::from_secs(60))?;
        times.push(at.duration_since(started));
        last = Some(product);
    }
    let state = fw.control("GET", "/control/state", "")?;
    if get_num(&state, &["counters", "pairing_attempts"]) != pairings {
        return Err("a restart paired again; the figures are not for a linked device".into());
    }
    times.sort();
    let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1000.0);
    figure("connect_ms", ms(times[times.len() / 2]));
    figure("connect_ms_min", ms(times[0]));
    figure("connect_ms_max", ms(times[times.len() - 1]));

    // Connected and idle.
    let mut product = last.ok_or("no product")?;
    let idle_until = Instant::now() + Duration::from_secs(idle_secs);
    while Instant::now() < idle_until {
        thread::sleep(Duration::from_millis(500));
        product.proc.check_alive("the product")?;
        fw.proc.check_alive("fakewa")?;
    }
    if !product.session.connected()? {
        return Err(format!("not connected after {idle_secs} s idle"));
    }
    figure("idle_secs", idle_secs);
    figure(
        "idle_connected_rss_kb",
        proc_status_kb(product.proc.0.id(), "VmRSS:")?,
    );
    drop(product);

    let size = std::fs::metadata(&bin)
        .map_err(|e| format!("stat {bin}: {e}"))?
        .len();
    figure("binary_bytes", size);
    Ok(())
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument (a filter) is ignored.
    if let Err(e) = run() {
        eprintln!("engine_bench: {e}");
        std::process::exit(1);
    }
}
