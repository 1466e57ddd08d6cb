//! Store benchmark: builds a demo store and prints `name=value` figures.
//!
//!     cargo bench --bench store_bench            (1,000,000 messages over 2,000 chats)
//!     BENCH_MESSAGES=100000 BENCH_CHATS=500 cargo bench --bench store_bench
//!
//! Figures: ingest rate through the writer, bytes on disk per message, peak RSS during ingest,
//! `search_messages` p50/p99 for one-word (common and rare), two-word and prefix queries with and
//! without `chat_id`, `list_chats`, `list_messages` and `get_message_context` p50, and
//! `run_group_audit` over at least 300 groups. The tools run in-process through the same
//! `Registry::call` path that MCP uses. With `python3` available, the same searches run on the
//! same data in SQLite (FTS5 and `LIKE '%q%'`) via `bench/sqlite_compare.py`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use whatsapp_mcp_stream::json::{self, Value};
use whatsapp_mcp_stream::store::{Store, demo, jsonl, queries, search, writes};
use whatsapp_mcp_stream::tools::{ProgressSink, Registry, ToolEnv};

struct NoProgress;
impl ProgressSink for NoProgress {
    fn report(&self, _: f64, _: Option<f64>, _: Option<&str>) {}
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn call(reg: &Registry, tool: &str, args: Value) -> (f64, Value) {
    let started = Instant::now();
    let result = smol::block_on(reg.call(tool, Some(&args), Arc::new(NoProgress)));
    let ms = started.elapsed().as_secs_f64() * 1e3;
    match result {
        Ok(r) => {
            if r.is_error {
                eprintln!("{tool} answered an error: {:?}", r.content);
            }
            (ms, r.to_value())
        }
        Err(e) => panic!("{tool}: {e:?}"),
    }
}

/// Runs `tool` `n` times and prints p50 and p99 (ms).
fn timed(
    reg: &Registry,
    name: &str,
    tool: &str,
    n: usize,
    mut args: impl FnMut(usize) -> Value,
) -> Vec<f64> {
    let mut times: Vec<f64> = (0..n).map(|i| call(reg, tool, args(i)).0).collect();
    times.sort_by(|a, b| a.total_cmp(b));
    println!("{name}_p50_ms={:.3}", percentile(&times, 0.5));
    println!("{name}_p99_ms={:.3}", percentile(&times, 0.99));
    times
}

fn main() {
    let messages = env_u64("BENCH_MESSAGES", 1_000_000);
    let chats = env_u64("BENCH_CHATS", 2_000);
    let dir = std::env::temp_dir().join(format!("wams-store-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    let path = dir.join("store.redb");
    let store = Store::open(&path, 16).unwrap_or_else(|e| panic!("open: {e}"));

    // Ingest, sampling RSS meanwhile.
    let peak = Arc::new(AtomicU64::new(rss_kb()));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kb(), Ordering::Relaxed);
                std::thread::park_timeout(Duration::from_millis(20));
            }
        })
    };
    let rss_before = rss_kb();
    let started = Instant::now();
    let report =
        demo::generate(&store, messages, chats).unwrap_or_else(|e| panic!("demo-data: {e}"));
    let secs = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    eprintln!("{report}");
    println!("messages={messages}");
    println!("chats={chats}");
    println!("ingest_messages_per_s={:.0}", messages as f64 / secs);
    println!("ingest_rss_peak_kb={}", peak.load(Ordering::Relaxed));
    println!("ingest_rss_before_kb={rss_before}");
    // redb grows its file in large steps: report the file length and the disk space in use.
    let meta = std::fs::metadata(&path).expect("store file");
    let size = meta.len();
    let used = std::os::unix::fs::MetadataExt::blocks(&meta) * 512;
    println!("db_file_bytes={size}");
    println!(
        "db_file_bytes_per_message={:.0}",
        size as f64 / messages as f64
    );
    println!(
        "db_disk_bytes_per_message={:.0}",
        used as f64 / messages as f64
    );

    // At least 300 groups for the audit, with members drawn from the stored contacts.
    let counts = store.read_blocking(queries::counts).expect("counts");
    let mut contacts = Vec::new();
    store
        .read_blocking(|r| {
            queries::contacts_all(r, &mut |jid, _| {
                contacts.push(jid.to_string());
                Ok(())
            })
        })
        .expect("contacts");
    let missing = 300u64.saturating_sub(counts.groups);
    if missing > 0 && !contacts.is_empty() {
        let contacts = contacts.clone();
        store
            .write_blocking(move |txn| {
                for g in 0..missing {
                    let members: Vec<(String, String)> = (0..40)
                        .map(|k| {
                            (
                                contacts[((g * 97 + k * 31) as usize) % contacts.len()].clone(),
                                String::new(),
                            )
                        })
                        .collect();
                    writes::upsert_group(
                        txn,
                        &writes::GroupUpdate {
                            jid: format!("120363{g:09}@g.us"),
                            subject: Some(format!("Bench group {g}")),
                            participants: Some(members),
                            ..writes::GroupUpdate::default()
                        },
                    )?;
                }
                Ok(())
            })
            .expect("groups");
    }
    let groups = store.read_blocking(queries::counts).expect("counts").groups;
    println!("groups={groups}");

    // Query words from the dictionary: the most common word, and rare ones.
    let (common, rare, second) = store
        .read_blocking(|r| {
            let terms = r
                .open_table(search::TERMS)
                .map_err(|e| whatsapp_mcp_stream::store::StoreError(e.to_string()))?;
            let mut all: Vec<(String, u32)> = Vec::new();
            for e in redb::ReadableTable::iter(&terms)
                .map_err(|e| whatsapp_mcp_stream::store::StoreError(e.to_string()))?
            {
                let (k, v) =
                    e.map_err(|e| whatsapp_mcp_stream::store::StoreError(e.to_string()))?;
                let t = k.value();
                if t.len() >= 4 && t.chars().all(|c| c.is_ascii_lowercase()) {
                    all.push((t.to_string(), v.value()));
                }
            }
            all.sort_by_key(|t| std::cmp::Reverse(t.1));
            let common = all
                .first()
                .map(|t| t.0.clone())
                .unwrap_or_else(|| "hello".into());
            let second = all
                .get(1)
                .map(|t| t.0.clone())
                .unwrap_or_else(|| "world".into());
            // The rarest words that still occur more than once; in a small vocabulary, simply
            // the least frequent ones.
            let mut rare: Vec<String> = all
                .iter()
                .rev()
                .filter(|t| (2..=50).contains(&t.1))
                .take(50)
                .map(|t| t.0.clone())
                .collect();
            if rare.is_empty() {
                rare = all.iter().rev().take(20).map(|t| t.0.clone()).collect();
            }
            if rare.is_empty() {
                rare.push("zebra".into());
            }
            Ok((common, rare, second))
        })
        .expect("terms");
    eprintln!(
        "queries: common={common:?} second={second:?} rare={:?}",
        rare.iter().take(5).collect::<Vec<_>>()
    );

    let reg = Registry::new(ToolEnv {
        read_only: true,
        auto_select_contact: false,
        store: store.clone(),
        engine: None,
        idempotency_ttl_ms: whatsapp_mcp_stream::store::idempotency::DEFAULT_TTL_MS,
        send_guard: Default::default(),
    });

    // The busiest of the 50 most recently active direct chats (as stored, so that SQLite sees the
    // same JID), for chat-scoped queries, list_messages and get_message_context.
    let chat_id = store
        .read_blocking(|r| {
            let mut recent = Vec::new();
            queries::chats_newest(r, &mut |c| {
                if !c.row.is_group {
                    recent.push(c.jid);
                }
                Ok(recent.len() < 50)
            })?;
            let mut best = (0usize, String::new());
            for jid in recent {
                let n = queries::messages_before(r, &jid, None, 1_000_000)?.len();
                if n > best.0 {
                    best = (n, jid);
                }
            }
            Ok(best.1)
        })
        .expect("busiest chat");
    eprintln!("chat-scoped queries use {chat_id}");

    let n = 200;
    let q = |text: String| json::obj([("query", json::s(text)), ("limit", json::int(20))]);
    let qc = |text: String| {
        json::obj([
            ("query", json::s(text)),
            ("limit", json::int(20)),
            ("chat_id", json::s(chat_id.clone())),
        ])
    };
    timed(&reg, "search_common_word", "search_messages", n, |_| {
        q(common.clone())
    });
    timed(&reg, "search_rare_word", "search_messages", n, |i| {
        q(rare[i % rare.len().max(1)].clone())
    });
    timed(&reg, "search_two_words", "search_messages", n, |_| {
        q(format!("{common} {second}"))
    });
    let prefix: String = common.chars().take(3).collect();
    timed(&reg, "search_prefix", "search_messages", n, |_| {
        q(prefix.clone())
    });
    timed(
        &reg,
        "search_common_word_in_chat",
        "search_messages",
        n,
        |_| qc(common.clone()),
    );
    timed(
        &reg,
        "search_rare_word_in_chat",
        "search_messages",
        n,
        |i| qc(rare[i % rare.len().max(1)].clone()),
    );
    timed(
        &reg,
        "search_two_words_in_chat",
        "search_messages",
        n,
        |_| qc(format!("{common} {second}")),
    );
    timed(&reg, "search_prefix_in_chat", "search_messages", n, |_| {
        qc(prefix.clone())
    });

    timed(&reg, "list_chats", "list_chats", n, |_| json::obj([]));
    timed(&reg, "list_messages", "list_messages", n, |_| {
        json::obj([("chat_id", json::s(chat_id.clone()))])
    });

    // Context around messages spread over the busy chat.
    let sample: Vec<String> = store
        .read_blocking(|r| queries::messages_before(r, &chat_id, None, 2000))
        .expect("sample")
        .iter()
        .step_by(20)
        .map(|m| m.public_id())
        .collect();
    if !sample.is_empty() {
        timed(&reg, "get_message_context", "get_message_context", n, |i| {
            json::obj([("message_id", json::s(sample[i % sample.len()].clone()))])
        });
    }
    timed(&reg, "run_group_audit", "run_group_audit", 10, |_| {
        json::obj([("group_limit", json::int(1000))])
    });

    // SQLite on the same data.
    let export = dir.join("export.jsonl");
    if let Err(e) = jsonl::export_file(&store, None, &export) {
        eprintln!("export for the SQLite comparison failed: {e}");
    } else {
        let mut words = HashMap::new();
        words.insert("common", common.clone());
        words.insert("rare", rare.first().cloned().unwrap_or_default());
        words.insert("two", format!("{common} {second}"));
        words.insert("prefix", prefix.clone());
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/sqlite_compare.py");
        let out = std::process::Command::new("python3")
            .arg(script)
            .arg(&export)
            .arg(&words["common"])
            .arg(&words["rare"])
            .arg(&words["two"])
            .arg(&words["prefix"])
            .arg(&chat_id)
            .output();
        match out {
            Ok(o) => {
                print!("{}", String::from_utf8_lossy(&o.stdout));
                if !o.status.success() {
                    eprintln!(
                        "sqlite comparison failed: {}",
                        String::from_utf8_lossy(&o.stderr)
                    );
                }
            }
            Err(e) => eprintln!("python3 not available for the SQLite comparison: {e}"),
        }
    }
    drop(reg);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
