//! The store's CLI on the real binary: `import`, `export` and `demo-data` (SPEC §9).
//!
//! Every test works in its own temp data dir; nothing sleeps for a fixed time.

mod common;

use common::{BIN, TempDir};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/store-sample.jsonl"
);

/// Runs the binary with `--data-dir dir` and `args`.
fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env("RUST_LOG", "warn")
        .env_remove("DB_PATH")
        .env_remove("DATA_DIR")
        .stdin(Stdio::null())
        .output()
        .expect("run the binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[track_caller]
fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn import(dir: &Path, file: &Path) -> Output {
    run(dir, &["import", file.to_str().unwrap()])
}

/// The whole store as exported to standard output.
fn export(dir: &Path) -> String {
    ok(&run(dir, &["export", "--out", "-"]))
}

fn message_lines(export: &str) -> Vec<&str> {
    export
        .lines()
        .filter(|l| l.contains(r#""kind":"message""#))
        .collect()
}

#[test]
fn import_then_export_round_trips_byte_for_byte() {
    let one = TempDir::new("cli-rt1");
    let two = TempDir::new("cli-rt2");
    let report = ok(&import(one.path(), Path::new(FIXTURE)));
    assert_eq!(
        report.trim(),
        "imported 4 chats, 16 messages (15 new), 6 contacts, 2 groups, 2 mappings"
    );
    // A: to a file.
    let a_path = one.path().join("a.jsonl");
    ok(&run(
        one.path(),
        &["export", "--out", a_path.to_str().unwrap()],
    ));
    let a = std::fs::read_to_string(&a_path).unwrap();
    assert!(!one.path().join("a.jsonl.partial").exists());
    // B: A imported into a fresh store, exported to standard output.
    ok(&import(two.path(), &a_path));
    let b = export(two.path());
    assert_eq!(a, b, "export → import → export must be byte-identical");

    // What the fixture holds is all there, normalized.
    assert_eq!(message_lines(&a).len(), 15);
    let count = |kind: &str| {
        a.lines()
            .filter(|l| l.contains(&format!(r#""kind":"{kind}""#)))
            .count()
    };
    assert_eq!(
        (
            count("mapping"),
            count("contact"),
            count("group"),
            count("chat")
        ),
        (2, 6, 2, 7)
    );
    assert!(a.contains(r#""jid":"819012345678@s.whatsapp.net""#));
    assert!(a.contains(r#""from":"79161234567@s.whatsapp.net""#));
    assert!(a.contains(r#""number":"491511234567""#));
    assert!(a.contains(r#""mediaKey":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=""#));
    assert!(a.contains(r#""emoji":"🔥","from":"212345678901234@lid""#));
    assert!(a.contains("مرحبا! كيف حالك؟ 你好"));
    assert!(!a.contains("a duplicate of the line above"));
    assert!(!a.contains("futureField"));
    // The revoked message keeps its place but not its text; the edit is flagged.
    let revoked = a.lines().find(|l| l.contains("3EB0B20000000003")).unwrap();
    assert!(revoked.contains(r#""body":"""#) && revoked.contains(r#""revoked":true"#));
    let edited = a
        .lines()
        .find(|l| l.contains("A1F00000000000000000000000000003"))
        .unwrap();
    assert!(edited.contains(r#""edited":true"#));
    // The chat record's unread count wins over what the messages counted.
    let chat = a
        .lines()
        .find(|l| l.starts_with(r#"{"kind":"chat","#) && l.contains("33612345678@s.whatsapp.net"))
        .unwrap();
    assert!(chat.contains(r#""unreadCount":2"#), "{chat}");
    // Messages of a chat come oldest first, chats in JID order.
    let order: Vec<&str> = message_lines(&a)
        .iter()
        .map(|l| {
            l.split(r#""id":""#)
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
        })
        .collect();
    assert_eq!(order[0], "C3000000000000000000000000000001");
    assert_eq!(order[order.len() - 1], "F6000000000000000000000000000001");
}

#[test]
fn export_of_one_chat_holds_only_that_chat() {
    let dir = TempDir::new("cli-chat");
    ok(&import(dir.path(), Path::new(FIXTURE)));
    let group = "120363012345678901@g.us";
    let out = ok(&run(dir.path(), &["export", "--chat", group, "--out", "-"]));
    let messages = message_lines(&out);
    assert_eq!(messages.len(), 4, "{out}");
    assert!(
        messages
            .iter()
            .all(|l| l.contains(&format!(r#""chat":"{group}""#)))
    );
    let chats: Vec<&str> = out
        .lines()
        .filter(|l| l.contains(r#""kind":"chat""#))
        .collect();
    assert_eq!(chats.len(), 1);
    assert!(chats[0].contains(group));
    assert_eq!(
        out.lines()
            .filter(|l| l.contains(r#""kind":"group""#))
            .count(),
        1
    );
    // Its people: the members' contacts and the LID mapping of the owner, not the others.
    assert!(out.contains(r#""kind":"mapping","lid":"212345678901234@lid""#));
    assert!(out.contains("Chloé Lefèvre"));
    assert!(out.contains("Jürgen Größ"));
    assert!(!out.contains("198765432109876@lid"));
    assert!(!out.contains("Γιώργος"));
    // The one-chat export imports on its own and exports the same again.
    let file = dir.path().join("group.jsonl");
    std::fs::write(&file, &out).unwrap();
    let fresh = TempDir::new("cli-chat2");
    ok(&import(fresh.path(), &file));
    let again = ok(&run(
        fresh.path(),
        &["export", "--chat", group, "--out", "-"],
    ));
    assert_eq!(again, out);
    // A chat that is not there is an error.
    let missing = run(
        dir.path(),
        &["export", "--chat", "999@s.whatsapp.net", "--out", "-"],
    );
    assert!(!missing.status.success());
    assert!(text(&missing.stderr).contains("no chat 999@s.whatsapp.net"));
}

#[test]
fn importing_twice_changes_nothing() {
    let dir = TempDir::new("cli-twice");
    ok(&import(dir.path(), Path::new(FIXTURE)));
    let first = export(dir.path());
    let report = ok(&import(dir.path(), Path::new(FIXTURE)));
    assert!(report.contains("(0 new)"), "{report}");
    assert_eq!(export(dir.path()), first);
    // Importing the store's own export changes nothing either.
    let file = dir.path().join("self.jsonl");
    std::fs::write(&file, &first).unwrap();
    ok(&import(dir.path(), &file));
    assert_eq!(export(dir.path()), first);
    // A pipe (here standard input) cannot be read twice; it is imported from memory.
    let fresh = TempDir::new("cli-stdin");
    let mut child = Command::new(BIN)
        .args(["import", "/dev/stdin", "--data-dir"])
        .arg(fresh.path())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(first.as_bytes())
        .unwrap();
    ok(&child.wait_with_output().unwrap());
    assert_eq!(export(fresh.path()), first);
}

#[test]
fn a_bad_file_is_refused_whole_with_its_line_and_field() {
    let dir = TempDir::new("cli-bad");
    ok(&import(dir.path(), Path::new(FIXTURE)));
    let before = export(dir.path());
    // Two good lines (a new contact and a new chat's message) and a bad third one.
    let good = concat!(
        r#"{"kind":"contact","jid":"4420000001@s.whatsapp.net","name":"Nobody New"}"#,
        "\n",
        r#"{"kind":"message","chat":"4420000001@s.whatsapp.net","id":"NEW1","body":"should not land","timestamp":1718000000000}"#,
        "\n",
    );
    let cases = [
        (
            "bad-json",
            r#"{"kind":"message","chat":"4420000001@s.whatsapp.net","id":"NEW2","#,
            "not valid JSON",
        ),
        (
            "missing",
            r#"{"kind":"message","chat":"4420000001@s.whatsapp.net","id":"NEW2"}"#,
            "message: field `timestamp` is missing",
        ),
        (
            "wrong-type",
            r#"{"kind":"message","chat":"4420000001@s.whatsapp.net","id":"NEW2","timestamp":"yesterday"}"#,
            "message: field `timestamp` must be a number (epoch ms)",
        ),
        (
            "bad-jid",
            r#"{"kind":"contact","jid":"not a jid"}"#,
            "contact: field `jid` must be a WhatsApp JID",
        ),
    ];
    for (name, line3, want) in cases {
        let file = dir.path().join(format!("{name}.jsonl"));
        std::fs::write(&file, format!("{good}{line3}\n")).unwrap();
        let out = import(dir.path(), &file);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains("line 3: "), "{name}: {err}");
        assert!(err.contains(want), "{name}: {err}");
        assert!(err.contains("nothing was imported"), "{name}: {err}");
        assert_eq!(export(dir.path()), before, "{name}: the store changed");
    }
    // A file that is not there.
    let out = import(dir.path(), &dir.path().join("absent.jsonl"));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("absent.jsonl"));
}

#[test]
fn demo_data_makes_what_it_says() {
    let dir = TempDir::new("cli-demo");
    let report = ok(&run(
        dir.path(),
        &["demo-data", "--messages", "500", "--chats", "10"],
    ));
    assert!(
        report.starts_with("demo-data: 500 messages, 10 chats, 1 groups, "),
        "{report}"
    );
    assert!(report.contains("messages/s)"), "{report}");
    let all = export(dir.path());
    assert_eq!(message_lines(&all).len(), 500);
    assert_eq!(
        all.lines()
            .filter(|l| l.contains(r#""kind":"chat""#))
            .count(),
        10
    );
    assert!(all.contains(r#""kind":"group""#));
    assert!(all.contains(r#""kind":"mapping""#));
    // The export of a demo store round-trips too.
    let file = dir.path().join("demo.jsonl");
    std::fs::write(&file, &all).unwrap();
    let fresh = TempDir::new("cli-demo2");
    ok(&import(fresh.path(), &file));
    assert_eq!(export(fresh.path()), all);
}

/// A server holding the data dir's store.
struct Holder {
    child: Child,
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hold(dir: &Path) -> Holder {
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env("RUST_LOG", "info")
        .env_remove("ACCESS_TOKEN")
        .env_remove("ALLOWED_HOSTS")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the server");
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
    let holder = Holder { child };
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) if line.contains("serving on") => return holder,
            Ok(line) => seen.push(line),
            Err(_) => panic!("the server did not start:\n{}", seen.join("\n")),
        }
    }
}

#[test]
fn a_store_held_by_a_running_server_is_left_alone() {
    let dir = TempDir::new("cli-held");
    ok(&import(dir.path(), Path::new(FIXTURE)));
    let before = export(dir.path());
    let server = hold(dir.path());
    let out_file: PathBuf = dir.path().join("out.jsonl");
    let attempts: Vec<(&str, Output)> = vec![
        ("import", import(dir.path(), Path::new(FIXTURE))),
        (
            "export",
            run(dir.path(), &["export", "--out", out_file.to_str().unwrap()]),
        ),
        ("export -", run(dir.path(), &["export", "--out", "-"])),
        (
            "demo-data",
            run(
                dir.path(),
                &["demo-data", "--messages", "50", "--chats", "2"],
            ),
        ),
    ];
    for (what, out) in &attempts {
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{what}: {err}");
        assert!(err.contains("in use by another process"), "{what}: {err}");
        assert!(out.stdout.is_empty(), "{what} wrote to stdout");
    }
    assert!(!out_file.exists());
    assert!(!dir.path().join("out.jsonl.partial").exists());
    drop(server);
    assert_eq!(export(dir.path()), before);
}
