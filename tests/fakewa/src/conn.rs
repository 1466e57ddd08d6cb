//! One client connection on `/ws/chat`: the Noise XX responder, the frame layer, the login
//! (with the offline-queue drain) and the stanza loop that dispatches each stanza to the
//! state (IQs by namespace; messages, receipts, acks, presence and chatstates to the router).

use std::sync::Arc;

use anyhow::{Context as _, anyhow, bail};
use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message;
use buffa::Message as _;
use futures_lite::{AsyncRead, AsyncWrite, StreamExt as _};
use wacore::handshake::NoiseHandshake;
use wacore::libsignal::protocol::KeyPair;
use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;
use wacore_binary::consts::{NOISE_PATTERN_XX, WA_CONN_HEADER};
use wacore_noise::NoiseCipher;
use wacore_noise::framing::{FrameDecoder, encode_frame};
use waproto::whatsapp as wa;

use crate::state::{Outgoing, State};

/// The server's Noise static key and the certificate chain naming it.
pub struct NoiseIdentity {
    pub static_key: KeyPair,
    pub static_pub: [u8; 32],
    pub cert_chain: Vec<u8>,
}

impl NoiseIdentity {
    pub fn generate() -> Self {
        let static_key = KeyPair::generate(&mut crate::state::rng());
        let static_pub: [u8; 32] = static_key
            .public_key
            .public_key_bytes()
            .try_into()
            .expect("X25519 public keys are 32 bytes");
        let cert_chain = crate::certs::noise_cert_chain(&static_pub);
        Self {
            static_key,
            static_pub,
            cert_chain,
        }
    }
}

type Ws<S> = WebSocketStream<S>;

/// Reads binary WebSocket messages into a frame decoder until one whole frame is there.
struct FrameReader<S> {
    rx: async_tungstenite::WebSocketReceiver<S>,
    decoder: FrameDecoder,
    header_seen: bool,
    pending: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> FrameReader<S> {
    /// The next frame, or `None` when the socket closed.
    async fn next_frame(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        loop {
            if self.header_seen
                && let Some(frame) = self.decoder.decode_frame()
            {
                return Ok(Some(frame.to_vec()));
            }
            let Some(msg) = self.rx.next().await else {
                return Ok(None);
            };
            let data = match msg? {
                Message::Binary(b) => b,
                Message::Close(_) => return Ok(None),
                _ => continue,
            };
            if self.header_seen {
                self.decoder.feed(&data);
            } else {
                self.pending.extend_from_slice(&data);
                if self.pending.len() >= WA_CONN_HEADER.len() {
                    if self.pending[..WA_CONN_HEADER.len()] != WA_CONN_HEADER {
                        bail!("the connection does not start with the WA header");
                    }
                    self.header_seen = true;
                    let rest = self.pending.split_off(WA_CONN_HEADER.len());
                    self.decoder.feed(&rest);
                }
            }
        }
    }
}

/// Serves one WebSocket until it closes.
pub async fn serve<S>(ws: Ws<S>, state: Arc<State>, noise: Arc<NoiseIdentity>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (out_tx, out_rx) = async_channel::unbounded();
    let conn = state.open_connection(out_tx.clone());
    if let Err(e) = run(ws, &state, &noise, conn, out_tx, out_rx).await {
        log::debug!("connection {conn} ended: {e:#}");
    }
    state.close_connection(conn);
}

async fn run<S>(
    ws: Ws<S>,
    state: &Arc<State>,
    noise: &NoiseIdentity,
    conn: u64,
    out_tx: async_channel::Sender<Outgoing>,
    out_rx: async_channel::Receiver<Outgoing>,
) -> anyhow::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, rx) = ws.split();
    let mut reader = FrameReader {
        rx,
        decoder: FrameDecoder::new(),
        header_seen: false,
        pending: Vec::new(),
    };

    // --- Noise XX, responder side ---
    let hello = reader
        .next_frame()
        .await?
        .ok_or_else(|| anyhow!("closed before ClientHello"))?;
    let hello = wa::HandshakeMessage::decode_from_slice(&hello).context("ClientHello")?;
    let client_eph: [u8; 32] = hello
        .client_hello
        .into_option()
        .and_then(|h| h.ephemeral)
        .ok_or_else(|| anyhow!("ClientHello without ephemeral"))?
        .try_into()
        .map_err(|_| anyhow!("bad ephemeral length"))?;
    let mut hs = NoiseHandshake::new(NOISE_PATTERN_XX, &WA_CONN_HEADER)?;
    hs.authenticate(&client_eph);
    let eph = KeyPair::generate(&mut crate::state::rng());
    let eph_pub = eph.public_key.public_key_bytes().to_vec();
    hs.authenticate(&eph_pub);
    hs.mix_shared_secret(eph.private_key.serialize(), &client_eph)?;
    let enc_static = hs.encrypt(&noise.static_pub)?;
    hs.mix_shared_secret(noise.static_key.private_key.serialize(), &client_eph)?;
    let enc_cert = hs.encrypt(&noise.cert_chain)?;
    let server_hello = wa::HandshakeMessage {
        server_hello: buffa::MessageField::some(wa::handshake_message::ServerHello {
            ephemeral: Some(eph_pub),
            r#static: Some(enc_static),
            payload: Some(enc_cert),
            ..Default::default()
        }),
        ..Default::default()
    };
    sink.send(Message::binary(encode_frame(
        &server_hello.encode_to_vec(),
        None,
    )?))
    .await?;

    let finish = reader
        .next_frame()
        .await?
        .ok_or_else(|| anyhow!("closed before ClientFinish"))?;
    let finish = wa::HandshakeMessage::decode_from_slice(&finish)
        .context("ClientFinish")?
        .client_finish
        .into_option()
        .ok_or_else(|| anyhow!("no ClientFinish"))?;
    let client_static = hs.decrypt(
        finish
            .r#static
            .as_deref()
            .ok_or_else(|| anyhow!("ClientFinish without static"))?,
    )?;
    hs.mix_shared_secret(eph.private_key.serialize(), &client_static)?;
    let payload = hs.decrypt(
        finish
            .payload
            .as_deref()
            .ok_or_else(|| anyhow!("ClientFinish without payload"))?,
    )?;
    let payload = wa::ClientPayload::decode_from_slice(&payload).context("ClientPayload")?;
    let (read_key, write_key) = hs.finish()?;
    let mut out = Sender {
        key: write_key,
        counter: 0,
    };
    let mut read_counter: u32 = 0;

    // --- Login or registration ---
    match (payload.username, payload.device) {
        (Some(username), device) => {
            let (node, ok) = state.login(conn, username, device.unwrap_or(0));
            log::info!("conn {conn}: login username={username} device={device:?} ok={ok}");
            sink.send(out.frame(&node)?).await?;
            if !ok {
                let _ = sink.close(None).await;
                return Ok(());
            }
            // What was queued while the device was away, in order, then the end of the
            // offline drain with its count (route.rs).
            let queued = state.take_offline(conn);
            let count = queued.len();
            for node in &queued {
                sink.send(out.frame(node)?).await?;
            }
            let offline = NodeBuilder::new("ib")
                .attr("from", "s.whatsapp.net")
                .children([NodeBuilder::new("offline")
                    .attr("count", count.to_string())
                    .build()])
                .build();
            sink.send(out.frame(&offline)?).await?;
            // Presence and fresh chatstates held while it was away (presence.rs).
            for node in state.take_held(conn) {
                sink.send(out.frame(&node)?).await?;
            }
        }
        (None, _) => {
            let push_name = payload.push_name.clone().unwrap_or_default();
            log::info!("conn {conn}: registration push_name={push_name:?}");
            let node = state.begin_pairing(conn, &push_name);
            sink.send(out.frame(&node)?).await?;
        }
    }

    // --- Stanzas ---
    enum Step {
        In(anyhow::Result<Option<Vec<u8>>>),
        Out(Option<Outgoing>),
    }
    loop {
        let step = futures_lite::future::or(async { Step::In(reader.next_frame().await) }, async {
            Step::Out(out_rx.recv().await.ok())
        })
        .await;
        match step {
            Step::In(frame) => {
                let Some(mut frame) = frame? else {
                    return Ok(());
                };
                read_key
                    .decrypt_in_place_with_counter(read_counter, &mut frame)
                    .map_err(|e| anyhow!("decrypt: {e}"))?;
                read_counter = read_counter.wrapping_add(1);
                let plain = wacore_binary::util::unpack(&frame)?;
                let node = wacore_binary::marshal::unmarshal_ref(&plain)?.to_owned();
                handle(state, conn, &out_tx, node);
            }
            Step::Out(Some(Outgoing::Node(node))) => {
                sink.send(out.frame(&node)?).await?;
            }
            Step::Out(Some(Outgoing::Close)) | Step::Out(None) => {
                let _ = sink.close(None).await;
                return Ok(());
            }
        }
    }
}

struct Sender {
    key: NoiseCipher,
    counter: u32,
}

impl Sender {
    fn frame(&mut self, node: &Node) -> anyhow::Result<Message> {
        let plain = wacore_binary::marshal::marshal(node)?;
        let sealed = self
            .key
            .encrypt_with_counter(self.counter, &plain)
            .map_err(|e| anyhow!("encrypt: {e}"))?;
        self.counter = self.counter.wrapping_add(1);
        Ok(Message::binary(encode_frame(&sealed, None)?))
    }
}

fn attr(node: &Node, key: &str) -> Option<String> {
    node.attrs.get(key).map(|v| v.to_string())
}

/// One stanza from a client.
fn handle(state: &Arc<State>, conn: u64, out: &async_channel::Sender<Outgoing>, node: Node) {
    log::debug!("conn {conn} <- {node:?}");
    let reply = |n: Node| {
        let _ = out.try_send(Outgoing::Node(n));
    };
    // Routed stanzas (route.rs, presence.rs).
    match node.tag.as_ref() {
        "iq" => {}
        "message" => {
            if let Some(ack) = state.route_message(conn, &node) {
                reply(ack);
            }
            return;
        }
        "receipt" => {
            if let Some(ack) = state.route_receipt(conn, &node) {
                reply(ack);
            }
            return;
        }
        "ack" => {
            state.client_ack(conn, &node);
            return;
        }
        "presence" => {
            state.presence(conn, &node);
            return;
        }
        "chatstate" => {
            state.chatstate(conn, &node);
            return;
        }
        _ => return,
    }
    let xmlns = attr(&node, "xmlns");
    match (attr(&node, "type").as_deref(), xmlns.as_deref()) {
        (Some("result") | Some("error"), _) => state.iq_answer(conn, &node),
        // Keep-alive ping, and the passive/active switch after login.
        (Some("get"), Some("w:p")) | (Some("set"), Some("passive")) => reply(result_for(&node)),
        (Some("set"), Some("encrypt")) if node.get_optional_child("registration").is_some() => {
            if state.upload_prekeys(conn, &node) {
                reply(result_for(&node));
                let state = state.clone();
                smol::spawn(async move {
                    if let Err(e) = state.share_app_state_key(conn).await {
                        log::warn!("conn {conn}: app-state key share failed: {e:#}");
                    }
                })
                .detach();
            } else {
                reply(error_for(&node, 400, "bad-request"));
            }
        }
        (Some("get"), Some("encrypt")) if node.get_optional_child("key").is_some() => {
            reply(with_children(&node, [state.prekey_bundles(&node)]))
        }
        (Some("get"), Some("encrypt")) if node.get_optional_child("count").is_some() => {
            match state.prekey_count(conn) {
                Some(n) => reply(
                    NodeBuilder::new("iq")
                        .attrs(result_attrs(&node))
                        .children([NodeBuilder::new("count")
                            .attr("value", n.to_string())
                            .build()])
                        .build(),
                ),
                None => reply(error_for(&node, 401, "not-authorized")),
            }
        }
        (Some("get"), Some("encrypt")) if node.get_optional_child("digest").is_some() => {
            match state.digest(conn) {
                Some(digest) => reply(with_children(&node, [digest])),
                None => reply(error_for(&node, 404, "item-not-found")),
            }
        }
        (Some("get"), Some("usync")) => match state.usync(&node) {
            Some(usync) => reply(with_children(&node, [usync])),
            None => reply(error_for(&node, 400, "bad-request")),
        },
        (Some("set"), Some("w:sync:app:state")) => {
            reply(with_children(&node, [state.app_state_sync(conn, &node)]))
        }
        (Some("set"), Some("md"))
            if node.get_optional_child("remove-companion-device").is_some() =>
        {
            let jid = node
                .get_optional_child("remove-companion-device")
                .and_then(|n| attr(n, "jid"))
                .unwrap_or_default();
            if state.remove_companion(conn, &jid) {
                reply(result_for(&node));
            } else {
                reply(error_for(&node, 404, "item-not-found"));
            }
        }
        (Some("set"), Some("md"))
            if node.get_optional_child("link_code_companion_reg").is_some() =>
        {
            let Some(reg) = node.get_optional_child("link_code_companion_reg") else {
                return;
            };
            match attr(reg, "stage").as_deref() {
                Some("companion_hello") => match state.companion_hello(conn, reg) {
                    Ok(child) => reply(with_children(&node, [child])),
                    Err(e) => reply(error_for(&node, e.status, "bad-request")),
                },
                Some("companion_finish") => {
                    // Answer first: pair-success follows the result, as on WhatsApp.
                    reply(result_for(&node));
                    if !state.companion_finish(conn, reg) {
                        log::warn!("conn {conn}: companion_finish refused");
                    }
                }
                _ => reply(error_for(&node, 400, "bad-request")),
            }
        }
        // The media CDN's host and upload auth (cdn.rs).
        (Some("set"), Some("w:m")) if node.get_optional_child("media_conn").is_some() => {
            match state.media_conn() {
                Some(media_conn) => reply(with_children(&node, [media_conn])),
                None => reply(error_for(&node, 503, "service-unavailable")),
            }
        }
        // Profile picture and about text (profile_iq.rs).
        (Some("get") | Some("set"), Some("w:profile:picture")) => {
            match state.profile_picture_iq(conn, &node) {
                Ok(children) => reply(with_children(&node, children)),
                Err(code) => reply(error_for(&node, code, "item-not-found")),
            }
        }
        (Some("set"), Some("status")) => {
            if state.set_status_text(conn, &node) {
                reply(result_for(&node));
            } else {
                reply(error_for(&node, 401, "not-authorized"));
            }
        }
        // Groups (groups.rs).
        (Some("get") | Some("set"), Some("w:g2")) => match state.group_iq(conn, &node) {
            Ok(children) => reply(with_children(&node, children)),
            Err((code, text)) => reply(error_for(&node, code, text)),
        },
        (Some("get"), Some("abt")) => reply(with_children(
            &node,
            [NodeBuilder::new("props")
                .attr("protocol", "1")
                .attr("hash", "fakewa")
                .build()],
        )),
        (Some("get"), Some("blocklist")) => {
            reply(with_children(&node, [NodeBuilder::new("list").build()]))
        }
        (Some("get"), Some("privacy")) => {
            let categories = [
                ("last", "all"),
                ("online", "all"),
                ("profile", "all"),
                ("status", "contacts"),
                ("readreceipts", "all"),
                ("groupadd", "all"),
                ("calladd", "all"),
            ]
            .map(|(name, value)| {
                NodeBuilder::new("category")
                    .attr("name", name)
                    .attr("value", value)
                    .build()
            });
            reply(with_children(
                &node,
                [NodeBuilder::new("privacy").children(categories).build()],
            ))
        }
        _ => {}
    }
}

/// An `<iq type="result">` answering `node` with `children`.
fn with_children(node: &Node, children: impl IntoIterator<Item = Node>) -> Node {
    NodeBuilder::new("iq")
        .attrs(result_attrs(node))
        .children(children)
        .build()
}

fn result_attrs(node: &Node) -> [(&'static str, String); 3] {
    [
        ("from", "s.whatsapp.net".to_string()),
        ("type", "result".to_string()),
        ("id", attr(node, "id").unwrap_or_default()),
    ]
}

/// An `<iq type="error">` answering `node`.
fn error_for(node: &Node, code: u16, text: &str) -> Node {
    NodeBuilder::new("iq")
        .attrs([
            ("from", "s.whatsapp.net".to_string()),
            ("type", "error".to_string()),
            ("id", attr(node, "id").unwrap_or_default()),
        ])
        .children([NodeBuilder::new("error")
            .attr("code", code.to_string())
            .attr("text", text)
            .build()])
        .build()
}

/// An empty `<iq type="result">` answering `node`.
fn result_for(node: &Node) -> Node {
    NodeBuilder::new("iq").attrs(result_attrs(node)).build()
}
