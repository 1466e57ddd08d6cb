//! Crash safety (issue 12): SIGKILL in the middle of a large import.
//!
//! A small import that exited 0 is durable; a large import killed at any point is either
//! entirely absent or entirely present afterwards, and the database opens cleanly. The kill
//! points are conditions (the file being read, the "writing" line, the database file growing),
//! each waited for with a deadline; nothing sleeps for a fixed time.

mod common;

use common::{BIN, TempDir, wait_for};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/store-sample.jsonl"
);
/// Messages in the large file: enough for every kill point to fall mid-import in a debug build
/// (which imports about 4,000 messages/s), few enough to keep the test under a minute.
const BIG: usize = 100_000;

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env("RUST_LOG", "warn")
        .env_remove("DB_PATH")
        .stdin(Stdio::null())
        .output()
        .expect("run the binary")
}

#[track_caller]
fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn export(dir: &Path) -> String {
    ok(&run(dir, &["export", "--out", "-"]))
}

/// A JSON Lines file of `n` messages over 300 chats (about 100 bytes a line).
fn write_big(path: &Path, n: usize) {
    let mut w = BufWriter::new(std::fs::File::create(path).unwrap());
    for c in 0..300 {
        writeln!(
            w,
            r#"{{"kind":"chat","jid":"4479{c:08}@s.whatsapp.net","name":"Bulk {c}","unreadCount":0}}"#
        )
        .unwrap();
    }
    for i in 0..n {
        writeln!(
            w,
            r#"{{"kind":"message","chat":"4479{:08}@s.whatsapp.net","id":"BIG{i:07}","body":"bulk message {i} über die Straße","timestamp":{}}}"#,
            i % 300,
            1_600_000_000_000u64 + i as u64 * 1000
        )
        .unwrap();
    }
    w.flush().unwrap();
}

/// Whether process `pid` has `file` open (Linux `/proc`).
fn has_open(pid: u32, file: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    entries
        .flatten()
        .any(|e| std::fs::read_link(e.path()).is_ok_and(|t| t == file))
}

#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// While the file is being validated (it is open, nothing written yet).
    Reading,
    /// As soon as it says it is writing the one transaction.
    Writing,
    /// Once the database file has grown: pages of the transaction are on disk.
    Growing,
}

#[test]
fn a_killed_import_is_all_or_nothing_and_earlier_imports_survive() {
    let tmp = TempDir::new("crash");
    let dir = tmp.path().join("data");
    let store = dir.join("store.redb");
    // A: imported, exit 0 = durable.
    ok(&run(&dir, &["import", FIXTURE]));
    let after_a = export(&dir);
    let a_messages: Vec<&str> = after_a
        .lines()
        .filter(|l| l.contains(r#""kind":"message""#))
        .collect();
    assert_eq!(a_messages.len(), 15);
    let pristine = tmp.path().join("pristine.redb");
    std::fs::copy(&store, &pristine).unwrap();

    let big: PathBuf = tmp.path().join("big.jsonl");
    write_big(&big, BIG);
    let big = big.canonicalize().unwrap();

    for point in [KillAt::Reading, KillAt::Writing, KillAt::Growing] {
        // Each attempt starts from the store as A left it.
        std::fs::copy(&pristine, &store).unwrap();
        let size_before = std::fs::metadata(&store).unwrap().len();
        let mut child = Command::new(BIN)
            .arg("import")
            .arg(&big)
            .arg("--data-dir")
            .arg(&dir)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut writing = false;
        let mut exited = false;
        wait_for(
            &format!("kill point {point:?}"),
            Duration::from_secs(300),
            || {
                while let Ok(line) = rx.try_recv() {
                    writing |= line.contains("writing it in one transaction");
                }
                exited = matches!(child.try_wait(), Ok(Some(_)));
                let reached = match point {
                    KillAt::Reading => has_open(pid, &big) && !writing,
                    KillAt::Writing => writing,
                    KillAt::Growing => {
                        writing && std::fs::metadata(&store).is_ok_and(|m| m.len() > size_before)
                    }
                };
                (reached || exited).then_some(())
            },
        );
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();

        // The database opens cleanly and A is all there.
        let after = export(&dir);
        for line in &a_messages {
            assert!(after.contains(line), "{point:?}: lost {line}");
        }
        let b = after.matches(r#""id":"BIG"#).count();
        assert!(
            b == 0 || b == BIG,
            "{point:?}: {b} of {BIG} messages of the killed import are in the store"
        );
        if b == 0 {
            assert_eq!(after, after_a, "{point:?}: the store changed");
        }
        eprintln!(
            "killed at {point:?} ({}): the large import is {}",
            if exited {
                format!("it had already exited: {status}")
            } else {
                "mid-way".into()
            },
            if b == 0 { "absent" } else { "present" }
        );
    }

    // After the crashes the import runs to the end, and only then is B there.
    ok(&run(&dir, &["import", big.to_str().unwrap()]));
    let done = export(&dir);
    assert_eq!(done.matches(r#""id":"BIG"#).count(), BIG);
    for line in &a_messages {
        assert!(done.contains(line));
    }
}
