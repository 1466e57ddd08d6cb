//! Server-Sent Events bodies: a channel of JSON-RPC messages read as an SSE byte stream.
//!
//! Owns: the SSE framing (`event: message` / `data: <json>`) and the `: keepalive` comments sent
//! while a stream is quiet, so a vanished client is noticed (the write fails) and its stream
//! freed. Must not: decide what goes on a stream.
//!
//! The stream ends when every sender of its channel is gone.

use crate::json::{self, Value};
use async_io::Timer;
use futures_lite::Stream;
use futures_lite::io::{AsyncBufRead, AsyncRead};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

pub struct SseBody {
    rx: Pin<Box<async_channel::Receiver<Value>>>,
    buf: Vec<u8>,
    pos: usize,
    keepalive: Timer,
    interval: Duration,
    done: bool,
}

impl SseBody {
    pub fn new(rx: async_channel::Receiver<Value>, keepalive: Duration) -> SseBody {
        SseBody {
            rx: Box::pin(rx),
            buf: Vec::new(),
            pos: 0,
            keepalive: Timer::after(keepalive),
            interval: keepalive,
            done: false,
        }
    }

    /// The bytes of one SSE event carrying `message`.
    pub fn frame(message: &Value) -> Vec<u8> {
        format!("event: message\ndata: {}\n\n", json::to_string(message)).into_bytes()
    }
}

impl AsyncBufRead for SseBody {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        if this.pos >= this.buf.len() && !this.done {
            this.buf.clear();
            this.pos = 0;
            // Take every message that is ready, so one chunk carries them all.
            loop {
                match this.rx.as_mut().poll_next(cx) {
                    Poll::Ready(Some(msg)) => this.buf.extend_from_slice(&SseBody::frame(&msg)),
                    Poll::Ready(None) => {
                        this.done = true;
                        break;
                    }
                    Poll::Pending => break,
                }
            }
            if this.buf.is_empty() && !this.done {
                if Pin::new(&mut this.keepalive).poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.buf.extend_from_slice(b": keepalive\n\n");
            }
            if !this.buf.is_empty() {
                this.keepalive.set_after(this.interval);
            }
        }
        Poll::Ready(Ok(&this.buf[this.pos..]))
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        let this = self.get_mut();
        this.pos = (this.pos + amt).min(this.buf.len());
    }
}

impl AsyncRead for SseBody {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let available = match self.as_mut().poll_fill_buf(cx) {
            Poll::Ready(Ok(bytes)) => bytes,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        };
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Poll::Ready(Ok(n))
    }
}

/// An SSE `http_types::Response` reading from `rx`.
pub fn response(rx: async_channel::Receiver<Value>, keepalive: Duration) -> http_types::Response {
    let mut res = http_types::Response::new(http_types::StatusCode::Ok);
    res.insert_header("Content-Type", "text/event-stream");
    res.insert_header("Cache-Control", "no-cache");
    res.insert_header("X-Accel-Buffering", "no");
    res.set_body(http_types::Body::from_reader(
        SseBody::new(rx, keepalive),
        None,
    ));
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::AsyncReadExt;

    #[test]
    fn frames_messages_then_ends() {
        let (tx, rx) = async_channel::unbounded();
        tx.try_send(json::obj([("a", json::int(1))])).unwrap();
        drop(tx);
        let mut body = SseBody::new(rx, Duration::from_secs(60));
        let mut out = String::new();
        smol::block_on(body.read_to_string(&mut out)).unwrap();
        assert_eq!(out, "event: message\ndata: {\"a\":1}\n\n");
    }

    #[test]
    fn quiet_streams_carry_keepalive_comments() {
        let (tx, rx) = async_channel::unbounded::<Value>();
        let mut body = SseBody::new(rx, Duration::from_millis(20));
        let mut buf = [0u8; 64];
        let n = smol::block_on(body.read(&mut buf)).unwrap();
        assert_eq!(&buf[..n], b": keepalive\n\n");
        drop(tx);
    }
}
