//! MCP over stdio: newline-delimited JSON-RPC on stdin and stdout, logs on stderr.
//!
//! Owns: reading lines, writing answers one per line, and the single implicit session of a
//! stdio connection. Must not: print anything but JSON-RPC messages on stdout.

use super::dispatch::{self, Dispatcher};
use super::jsonrpc::{self, Message};
use super::session::Session;
use crate::json::{self, Value};
use futures_lite::{AsyncBufReadExt, AsyncWriteExt, StreamExt};
use std::sync::Arc;

/// Serves MCP on stdin/stdout until stdin closes.
pub async fn serve(dispatcher: Arc<Dispatcher>) -> std::io::Result<()> {
    let stdin = smol::Unblock::new(std::io::stdin());
    let mut lines = futures_lite::io::BufReader::new(stdin).lines();
    let (out_tx, out_rx) = async_channel::unbounded::<Value>();
    let writer = crate::runtime::spawn(async move {
        let mut stdout = smol::Unblock::new(std::io::stdout());
        while let Ok(msg) = out_rx.recv().await {
            let mut line = json::to_string(&msg);
            line.push('\n');
            if stdout.write_all(line.as_bytes()).await.is_err() || stdout.flush().await.is_err() {
                break;
            }
        }
    });
    let mut session: Option<Arc<Session>> = None;
    let mut tasks = Vec::new();
    while let Some(line) = lines.next().await {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let Some(value) = json::parse(&line) else {
            let _ = out_tx
                .send(jsonrpc::error(
                    None,
                    jsonrpc::PARSE_ERROR,
                    "Parse error: the line is not valid JSON",
                    None,
                ))
                .await;
            continue;
        };
        let msg = match jsonrpc::classify(&value) {
            Ok(m) => m,
            Err((id, why)) => {
                let e = jsonrpc::error(
                    id.as_ref(),
                    jsonrpc::INVALID_REQUEST,
                    &format!("Invalid Request: {why}"),
                    None,
                );
                let _ = out_tx.send(e).await;
                continue;
            }
        };
        match msg {
            Message::Request { id, method, params }
                if method == "initialize" && session.is_none() =>
            {
                let requested = params
                    .as_ref()
                    .and_then(|p| json::get_str(p, "protocolVersion"));
                let version = dispatch::negotiate(requested);
                session = Some(Arc::new(Session::new("stdio".into(), version, None)));
                let _ = out_tx
                    .send(jsonrpc::result(&id, dispatcher.initialize_result(version)))
                    .await;
            }
            Message::Request { id, method, params } => {
                // stdio clients may skip nothing: before initialize, only ping is answered.
                let Some(s) = session.clone() else {
                    let e = if method == "ping" {
                        jsonrpc::result(&id, json::obj([]))
                    } else {
                        jsonrpc::error(
                            Some(&id),
                            jsonrpc::INVALID_REQUEST,
                            "Invalid Request: send initialize first",
                            None,
                        )
                    };
                    let _ = out_tx.send(e).await;
                    continue;
                };
                let dispatcher = dispatcher.clone();
                let out = out_tx.clone();
                tasks.push(crate::runtime::spawn(async move {
                    if let Some(answer) = dispatcher
                        .request(&s, &id, &method, params.as_ref(), Some(out.clone()))
                        .await
                    {
                        let _ = out.send(answer).await;
                    }
                }));
                tasks.retain(|t| !t.is_finished());
            }
            Message::Notification { method, params } => {
                if let Some(s) = &session {
                    dispatcher.notify(s, &method, params.as_ref());
                }
            }
            Message::Response => {}
        }
    }
    // stdin closed: finish what is running, then flush the answers.
    for t in tasks {
        t.await;
    }
    drop(out_tx);
    writer.await;
    Ok(())
}
