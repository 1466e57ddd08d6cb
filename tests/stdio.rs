//! MCP over stdio against the real binary: initialize, tools/list and ping; logs stay off stdout.

mod common;

use common::serde_like::Json;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

#[test]
fn stdio_serves_initialize_tools_list_and_ping() {
    let dir = common::TempDir::new("stdio");
    let mut child = Command::new(common::BIN)
        .arg("--stdio")
        .arg("--data-dir")
        .arg(dir.path())
        .env("RUST_LOG", "debug")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut ask = |line: &str| -> Json {
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
        if line.contains("notifications/") {
            return Json::parse("null").unwrap();
        }
        let answer = lines.next().expect("an answer line").unwrap();
        Json::parse(&answer).unwrap_or_else(|| panic!("stdout carried a non-JSON line: {answer:?}"))
    };
    let init = ask(
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#,
    );
    assert_eq!(
        init.path("result.protocolVersion").str().as_deref(),
        Some("2025-11-25")
    );
    ask(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    let list = ask(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#);
    assert_eq!(list.path("result.tools").arr().len(), 33);
    let pong = ask(
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"ping","arguments":{}}}"#,
    );
    assert_eq!(
        pong.path("result.content.0.text").str().as_deref(),
        Some("pong")
    );
    let ping = ask(r#"{"jsonrpc":"2.0","id":4,"method":"ping"}"#);
    assert_eq!(ping.get("id").num(), Some(4.0));
    let bad = ask("{oops");
    assert_eq!(bad.path("error.code").num(), Some(-32700.0));
    drop(stdin);
    let status = child.wait().unwrap();
    assert!(status.success());
}
