//! Peers: real whatsapp-rust clients (in-memory store, on smol) that fakewa runs itself,
//! each linked through its account's mock phone, and driven over the control API:
//! `POST /control/peers`, `GET /control/peers`, `POST /control/peers/:peer/send` (text,
//! reply, reaction, edit, revoke, media through the CDN), `GET /control/peers/:peer/inbox`
//! (long-polled on request), `GET /control/peers/:peer/media/:id` and
//! `POST /control/peers/:peer/read` (read receipts); it also dispatches
//! `/control/history` (history.rs) and `/control/profile-pic`. Everything a peer reads was
//! decrypted by the real client. Owns the peers and their inboxes; it must not touch
//! routing, pairing internals or keys (it links through `State::scan` like any phone).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};
use wacore::download::{Downloadable, MediaType};
use waproto::whatsapp as wa;
use whatsapp_rust::Jid;
use whatsapp_rust::bot::BotHandle;
use whatsapp_rust::types::events::Event;
use whatsapp_rust::wacore::proto_helpers::{MessageBuilderExt as _, MessageExt as _};
use whatsapp_rust::wacore::store::InMemoryBackend;

use crate::client::{ClientConfig, start_bot};
use crate::state::{ControlError, State};

/// How long a new peer may take to show its QR and then to connect.
const LINK_TIMEOUT: Duration = Duration::from_secs(60);

/// A message a peer received (or sent, for quoting and reacting).
#[derive(Clone)]
struct Known {
    chat: Jid,
    sender: Jid,
    from_me: bool,
    message: wa::Message,
}

#[derive(Default)]
struct Log {
    inbox: Vec<Value>,
    receipts: Vec<Value>,
    known: HashMap<String, Known>,
    connected: bool,
}

/// One peer.
pub struct Peer {
    pub name: String,
    pub number: String,
    pub jid: String,
    pub lid: String,
    pub device_jid: String,
    handle: BotHandle,
    log: Arc<Mutex<Log>>,
    /// Fired after every change to the log (long-polled inbox reads).
    changed: Arc<event_listener::Event>,
}

impl Peer {
    fn log(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn info(&self) -> Value {
        json!({
            "jid": self.jid,
            "lid": self.lid,
            "number": self.number,
            "name": self.name,
            "device": self.device_jid,
        })
    }
}

/// fakewa's peers, by number.
pub struct Peers {
    state: Arc<State>,
    client: ClientConfig,
    peers: Mutex<HashMap<String, Arc<Peer>>>,
    /// One link at a time.
    creating: smol::lock::Mutex<()>,
}

fn err(status: u16, message: impl Into<String>) -> ControlError {
    ControlError {
        status,
        message: message.into(),
    }
}

fn text_of(m: &wa::Message) -> Option<String> {
    m.text_content()
        .map(str::to_string)
        .or_else(|| m.get_caption().map(str::to_string))
}

fn context_of(m: &wa::Message) -> Option<&wa::ContextInfo> {
    if let Some(e) = m.extended_text_message.as_option() {
        return e.context_info.as_option();
    }
    if let Some(i) = m.image_message.as_option() {
        return i.context_info.as_option();
    }
    if let Some(d) = m.document_message.as_option() {
        return d.context_info.as_option();
    }
    None
}

/// The media kinds a peer sends and lists: (name, upload type).
const MEDIA_KINDS: [(&str, MediaType); 5] = [
    ("image", MediaType::Image),
    ("video", MediaType::Video),
    ("audio", MediaType::Audio),
    ("document", MediaType::Document),
    ("sticker", MediaType::Sticker),
];

/// The media part of a message: its kind and the downloadable sub-message.
fn media_of(m: &wa::Message) -> Option<(&'static str, &dyn Downloadable)> {
    if let Some(x) = m.image_message.as_option() {
        return Some(("image", x));
    }
    if let Some(x) = m.video_message.as_option() {
        return Some(("video", x));
    }
    if let Some(x) = m.audio_message.as_option() {
        return Some(("audio", x));
    }
    if let Some(x) = m.document_message.as_option() {
        return Some(("document", x));
    }
    if let Some(x) = m.sticker_message.as_option() {
        return Some(("sticker", x));
    }
    None
}

/// `{kind, mimetype, file_name, direct_path, url, file_length}` of a media message.
fn media_json(m: &wa::Message) -> Option<Value> {
    let (kind, d) = media_of(m)?;
    let mimetype = m
        .image_message
        .as_option()
        .and_then(|x| x.mimetype.clone())
        .or_else(|| m.video_message.as_option().and_then(|x| x.mimetype.clone()))
        .or_else(|| m.audio_message.as_option().and_then(|x| x.mimetype.clone()))
        .or_else(|| {
            m.document_message
                .as_option()
                .and_then(|x| x.mimetype.clone())
        })
        .or_else(|| {
            m.sticker_message
                .as_option()
                .and_then(|x| x.mimetype.clone())
        });
    let url = m
        .image_message
        .as_option()
        .and_then(|x| x.url.clone())
        .or_else(|| m.video_message.as_option().and_then(|x| x.url.clone()))
        .or_else(|| m.audio_message.as_option().and_then(|x| x.url.clone()))
        .or_else(|| m.document_message.as_option().and_then(|x| x.url.clone()))
        .or_else(|| m.sticker_message.as_option().and_then(|x| x.url.clone()));
    Some(json!({
        "kind": kind,
        "mimetype": mimetype,
        "file_name": m.document_message.as_option().and_then(|x| x.file_name.clone()),
        "direct_path": d.direct_path(),
        "url": url,
        "file_length": d.file_length(),
    }))
}

/// One inbox entry for a decrypted message, or `None` for protocol traffic no user sees.
fn inbox_entry(
    message: &wa::Message,
    info: &whatsapp_rust::types::message::MessageInfo,
) -> Option<Value> {
    let base = message.get_base_message();
    let mut text = text_of(base);
    let mut edit_of = Value::Null;
    let mut revoked_id = Value::Null;
    if let Some(p) = base.protocol_message.as_option() {
        use wa::message::protocol_message::Type;
        let target = p.key.as_option().and_then(|k| k.id.clone());
        match p.r#type {
            Some(Type::REVOKE) => revoked_id = json!(target),
            Some(Type::MESSAGE_EDIT) => {
                edit_of = json!(target);
                text = p.edited_message.as_option().and_then(text_of);
            }
            _ => return None,
        }
    }
    let reaction = base.reaction_message.as_option().map(|r| {
        json!({
            "target_id": r.key.as_option().and_then(|k| k.id.clone()),
            "emoji": r.text.clone().unwrap_or_default(),
        })
    });
    let ctx = context_of(base);
    let quoted_id = ctx.and_then(|c| c.stanza_id.clone());
    let quoted_text = ctx
        .and_then(|c| c.quoted_message.as_option())
        .and_then(text_of);
    let media = media_json(base);
    if text.is_none()
        && reaction.is_none()
        && edit_of.is_null()
        && revoked_id.is_null()
        && quoted_id.is_none()
        && media.is_none()
    {
        return None;
    }
    Some(json!({
        "id": info.id.to_string(),
        "chat": info.source.chat.to_string(),
        "sender": info.source.sender.to_non_ad_string(),
        "sender_device": info.source.sender.to_string(),
        "from_me": info.source.is_from_me,
        "timestamp": info.timestamp.timestamp(),
        "text": text,
        "quoted_id": quoted_id,
        "quoted_text": quoted_text,
        "reaction": reaction,
        "edit_of": edit_of,
        "revoked_id": revoked_id,
        "media": media,
        "push_name": info.push_name.to_string(),
    }))
}

/// Records what a peer's client emits: inbox, receipts, link progress.
fn record(log: &Mutex<Log>, ev: &Event, qr_tx: &async_channel::Sender<String>) {
    let mut g = log.lock().unwrap_or_else(|p| p.into_inner());
    match ev {
        Event::PairingQrCode(q) => {
            let _ = qr_tx.try_send(q.code.clone());
        }
        Event::Connected(_) => g.connected = true,
        Event::Disconnected(_) => g.connected = false,
        Event::Messages(batch) => {
            for m in batch.iter() {
                let info = &m.info;
                g.known.insert(
                    info.id.to_string(),
                    Known {
                        chat: info.source.chat.clone(),
                        sender: info.source.sender.clone(),
                        from_me: info.source.is_from_me,
                        message: m.message.get_base_message().clone(),
                    },
                );
                if let Some(entry) = inbox_entry(&m.message, info) {
                    g.inbox.push(entry);
                }
            }
        }
        Event::Receipt(r) => {
            for id in &r.message_ids {
                let entry = json!({
                    "id": id.to_string(),
                    "type": r.r#type.as_wire_str(),
                    "from": r.source.sender.to_string(),
                    "chat": r.source.chat.to_string(),
                });
                g.receipts.push(entry);
            }
        }
        _ => {}
    }
}

/// A JID, or a phone number (`+`, spaces and dashes allowed) as a user JID.
fn parse_to(to: &str) -> Result<Jid, ControlError> {
    if to.contains('@') {
        return to
            .parse::<Jid>()
            .map_err(|e| err(400, format!("bad JID {to:?}: {e}")));
    }
    let digits: String = to.chars().filter(char::is_ascii_digit).collect();
    if digits.is_empty() {
        return Err(err(
            400,
            format!("\"to\" {to:?} is neither a JID nor a number"),
        ));
    }
    format!("{digits}@s.whatsapp.net")
        .parse::<Jid>()
        .map_err(|e| err(400, format!("bad number {to:?}: {e}")))
}

impl Peers {
    pub fn new(state: Arc<State>, client: ClientConfig) -> Self {
        Self {
            state,
            client,
            peers: Mutex::new(HashMap::new()),
            creating: smol::lock::Mutex::new(()),
        }
    }

    fn map(&self) -> MutexGuard<'_, HashMap<String, Arc<Peer>>> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A peer by number (digits, `+` allowed), JID user or name.
    fn find(&self, key: &str) -> Option<Arc<Peer>> {
        let digits: String = key.chars().filter(char::is_ascii_digit).collect();
        let map = self.map();
        map.get(&digits)
            .cloned()
            .or_else(|| map.values().find(|p| p.name == key).cloned())
    }

    /// Stops every peer's client (the server is going away).
    pub fn stop_all(&self) {
        for peer in self.map().values() {
            peer.handle.abort();
        }
    }

    /// `POST /control/peers {name, number?}`: links a new client for that account through
    /// its mock phone and waits until it is connected (an existing peer is returned as is).
    pub async fn create(&self, name: &str, number: Option<&str>) -> Result<Value, ControlError> {
        if name.is_empty() {
            return Err(err(400, "expected {\"name\": \"…\", \"number\"?: \"…\"}"));
        }
        let _one_at_a_time = self.creating.lock().await;
        let account = self.state.ensure_account(name, number)?;
        let (acct_number, acct_jid, acct_lid) = {
            let g = self.state.lock();
            let a = &g.accounts[account];
            (a.number.clone(), a.jid(), format!("{}@lid", a.lid))
        };
        if let Some(existing) = self.map().get(&acct_number) {
            return Ok(existing.info());
        }
        let backend = Arc::new(InMemoryBackend::new());
        let (handle, events) = start_bot(&self.client, name, backend)
            .await
            .map_err(|e| err(500, format!("starting the peer's client: {e:#}")))?;
        let log = Arc::new(Mutex::new(Log::default()));
        let changed = Arc::new(event_listener::Event::new());
        let (qr_tx, qr_rx) = async_channel::bounded(8);
        let (conn_tx, conn_rx) = async_channel::bounded::<()>(1);
        {
            let (log, changed) = (log.clone(), changed.clone());
            smol::spawn(async move {
                while let Ok(ev) = events.recv().await {
                    record(&log, &ev, &qr_tx);
                    changed.notify(usize::MAX);
                    if matches!(*ev, Event::Connected(_)) {
                        let _ = conn_tx.try_send(());
                    }
                }
            })
            .detach();
        }
        let outcome = async {
            let qr = with_timeout(qr_rx.recv(), "the peer's QR code").await?;
            let device_jid = self.state.scan(&qr).await?;
            with_timeout(conn_rx.recv(), "the peer to connect").await?;
            Ok::<_, ControlError>(device_jid)
        }
        .await;
        let device_jid = match outcome {
            Ok(d) => d,
            Err(e) => {
                handle.abort();
                return Err(e);
            }
        };
        // Online, as a phone in use is: its receipts are deliveries, not `inactive`.
        if let Err(e) = handle.client().presence().set_available().await {
            log::warn!("peer {name}: cannot mark itself available: {e}");
        }
        let peer = Arc::new(Peer {
            name: name.to_string(),
            number: acct_number.clone(),
            jid: acct_jid,
            lid: acct_lid,
            device_jid,
            handle,
            log,
            changed,
        });
        let info = peer.info();
        self.map().insert(acct_number, peer);
        Ok(info)
    }

    /// `GET /control/peers`: every peer and whether it is connected.
    pub fn list(&self) -> Value {
        let mut peers: Vec<Value> = self
            .map()
            .values()
            .map(|p| {
                let mut v = p.info();
                v["connected"] = json!(p.log().connected);
                v
            })
            .collect();
        peers.sort_by(|a, b| a["number"].as_str().cmp(&b["number"].as_str()));
        json!({ "peers": peers })
    }

    /// `GET /control/peers/:number/inbox[?min_messages=N&min_receipts=R&wait_ms=T]`: with
    /// a wait, answers as soon as the inbox holds at least N messages and R receipts, or
    /// after T ms (at most 60 s) with what it holds then.
    pub async fn inbox(&self, key: &str, query: &str) -> Result<Value, ControlError> {
        let peer = self.find(key).ok_or_else(|| err(404, "no such peer"))?;
        let param = |name: &str| -> Result<usize, ControlError> {
            match query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| *k == name)
            {
                None => Ok(0),
                Some((_, v)) => v
                    .parse()
                    .map_err(|_| err(400, format!("{name} must be a number"))),
            }
        };
        let (min_messages, min_receipts) = (param("min_messages")?, param("min_receipts")?);
        let wait = Duration::from_millis(param("wait_ms")?.min(60_000) as u64);
        let deadline = std::time::Instant::now() + wait;
        let enough =
            |log: &Log| log.inbox.len() >= min_messages && log.receipts.len() >= min_receipts;
        loop {
            let listener = peer.changed.listen();
            if enough(&peer.log()) {
                break;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            futures_lite::future::or(listener, async {
                smol::Timer::after(left).await;
            })
            .await;
        }
        let log = peer.log();
        Ok(json!({
            "jid": peer.jid,
            "connected": log.connected,
            "messages": log.inbox,
            "receipts": log.receipts,
        }))
    }

    /// `POST /control/peers/:number/read {"ids": […], "chat"?, "sender"?}`: the peer's client
    /// reads messages it received, sending read receipts as WhatsApp does. `chat` defaults to
    /// the chat the peer received the first id in, and `sender` (a group message's author) to
    /// that message's sender in a group, none in a 1:1 chat.
    pub async fn read(&self, key: &str, body: &Value) -> Result<Value, ControlError> {
        let peer = self.find(key).ok_or_else(|| err(404, "no such peer"))?;
        let usage =
            "expected {\"ids\": [\"<message id>\", …], \"chat\"?: \"…\", \"sender\"?: \"…\"}";
        let ids: Vec<&str> = match body.get("ids").and_then(Value::as_array) {
            Some(list) => list.iter().filter_map(Value::as_str).collect(),
            None => Vec::new(),
        };
        let Some(first) = ids.first() else {
            return Err(err(400, usage));
        };
        let known = peer.log().known.get(*first).cloned();
        let chat = match body.get("chat").and_then(Value::as_str) {
            Some(c) => parse_to(c)?,
            None => known
                .as_ref()
                .map(|k| k.chat.clone())
                .ok_or_else(|| err(404, format!("the peer knows no message {first:?}")))?,
        };
        let sender = match body.get("sender").and_then(Value::as_str) {
            Some(s) => Some(parse_to(s)?),
            None if chat.server == whatsapp_rust::Server::Group => {
                known.as_ref().map(|k| k.sender.clone())
            }
            None => None,
        };
        peer.handle
            .client()
            .mark_as_read(&chat, sender.as_ref(), &ids)
            .await
            .map_err(|e| err(502, format!("the peer's read receipt failed: {e}")))?;
        Ok(json!({ "read": ids, "chat": chat.to_string() }))
    }

    /// `GET /control/peers/:number/media/:id`: the peer downloads and decrypts the media of a
    /// message it received (or sent) from the CDN.
    pub async fn media(&self, key: &str, id: &str) -> Result<Value, ControlError> {
        let peer = self.find(key).ok_or_else(|| err(404, "no such peer"))?;
        let known = peer
            .log()
            .known
            .get(id)
            .cloned()
            .ok_or_else(|| err(404, format!("the peer knows no message {id:?}")))?;
        let (kind, downloadable) =
            media_of(&known.message).ok_or_else(|| err(404, "that message has no media"))?;
        let bytes = peer
            .handle
            .client()
            .download(downloadable)
            .await
            .map_err(|e| err(502, format!("the peer's download failed: {e:#}")))?;
        Ok(json!({
            "id": id,
            "media": media_json(&known.message),
            "kind": kind,
            "data_base64": base64::Engine::encode(&base64::prelude::BASE64_STANDARD, bytes),
        }))
    }

    /// `POST /control/peers/:number/send`.
    pub async fn send(&self, key: &str, body: &Value) -> Result<Value, ControlError> {
        let peer = self.find(key).ok_or_else(|| err(404, "no such peer"))?;
        let to = body
            .get("to")
            .and_then(Value::as_str)
            .ok_or_else(|| err(400, "expected \"to\" (a JID or a number)"))?;
        let to = parse_to(to)?;
        let client = peer.handle.client();
        let text = body.get("text").and_then(Value::as_str);
        let lookup = |id: &str| peer.log().known.get(id).cloned();
        let failed = |e: &dyn std::fmt::Display| err(502, format!("the peer's send failed: {e}"));

        let media = match body.get("media").filter(|m| !m.is_null()) {
            Some(m) => Some(upload_media(&client, m).await?),
            None => None,
        };
        if let Some(r) = body.get("reaction").filter(|v| !v.is_null()) {
            let id = r
                .get("id")
                .and_then(Value::as_str)
                .ok_or_else(|| err(400, "reaction needs {\"id\", \"emoji\"}"))?;
            let emoji = r.get("emoji").and_then(Value::as_str).unwrap_or_default();
            let known = lookup(id);
            let is_group = to.server == whatsapp_rust::Server::Group;
            let key = wa::MessageKey {
                remote_jid: Some(to.to_string()),
                from_me: Some(known.as_ref().is_some_and(|k| k.from_me)),
                id: Some(id.to_string()),
                participant: match (&known, is_group) {
                    (Some(k), true) => Some(k.sender.to_string()),
                    _ => None,
                },
            };
            let sent = client
                .send_reaction(to, key, emoji)
                .await
                .map_err(|e| failed(&e))?;
            return Ok(json!({ "id": sent.message_id }));
        }
        if let Some(e) = body.get("edit").filter(|v| !v.is_null()) {
            let (Some(id), Some(new_text)) = (
                e.get("id").and_then(Value::as_str),
                e.get("text").and_then(Value::as_str),
            ) else {
                return Err(err(400, "edit needs {\"id\", \"text\"}"));
            };
            let id = client
                .edit_message(to, id, wa::Message::text(new_text))
                .await
                .map_err(|e| failed(&e))?;
            return Ok(json!({ "id": id }));
        }
        if let Some(r) = body.get("revoke").filter(|v| !v.is_null()) {
            let id = r
                .get("id")
                .and_then(Value::as_str)
                .ok_or_else(|| err(400, "revoke needs {\"id\"}"))?;
            client
                .revoke_message(to, id, whatsapp_rust::send::RevokeType::Sender)
                .await
                .map_err(|e| failed(&e))?;
            return Ok(json!({ "id": id, "revoked": true }));
        }
        let message = match media {
            Some(message) => message,
            None => {
                let text = text.ok_or_else(|| {
                    err(
                        400,
                        "expected one of \"text\" (with \"reply_to\"?), \"reaction\", \"edit\", \"revoke\", \"media\"",
                    )
                })?;
                match body.get("reply_to").and_then(Value::as_str) {
                    Some(reply_to) => {
                        let quoted = lookup(reply_to).ok_or_else(|| {
                            err(
                                404,
                                format!("the peer knows no message {reply_to:?} to quote"),
                            )
                        })?;
                        let context =
                            whatsapp_rust::wacore::proto_helpers::build_quote_context_with_info(
                                reply_to,
                                &quoted.sender,
                                &quoted.chat,
                                &to,
                                &quoted.message,
                            );
                        wa::Message::text_with_context(text, context)
                    }
                    None => wa::Message::text(text),
                }
            }
        };
        let sent = client
            .send_message(to.clone(), message.clone())
            .await
            .map_err(|e| failed(&e))?;
        let own = peer.jid.parse::<Jid>().unwrap_or_else(|_| to.clone());
        peer.log().known.insert(
            sent.message_id.clone(),
            Known {
                chat: to,
                sender: own,
                from_me: true,
                message,
            },
        );
        Ok(json!({ "id": sent.message_id }))
    }
}

/// The control routes this module and history.rs own: `/control/peers…`,
/// `/control/history` and `/control/profile-pic`. Returns (status, JSON).
pub async fn control(
    state: &Arc<State>,
    peers: &Peers,
    method: &str,
    path_and_query: &str,
    body: &Value,
) -> (u16, Value) {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let answer = match (method, path) {
        ("POST", "/control/peers") => {
            let name = body.get("name").and_then(Value::as_str).unwrap_or_default();
            let number = match body.get("number") {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            };
            peers.create(name, number.as_deref()).await
        }
        ("GET", "/control/peers") => Ok(peers.list()),
        ("POST", "/control/history") => match crate::history::parse_request(body) {
            Ok(req) => state
                .push_history(&req)
                .await
                .map(|sent| json!({ "sent_to": sent })),
            Err(e) => Err(err(400, e)),
        },
        ("POST", "/control/profile-pic") => profile_pic(state, body),
        (method, p) => {
            let rest = p.trim_start_matches("/control/peers/");
            match (method, rest.split_once('/')) {
                ("POST", Some((key, "send"))) => peers.send(key, body).await,
                ("POST", Some((key, "read"))) => peers.read(key, body).await,
                ("GET", Some((key, "inbox"))) => peers.inbox(key, query).await,
                ("GET", Some((key, rest))) if rest.starts_with("media/") => {
                    peers.media(key, rest.trim_start_matches("media/")).await
                }
                _ => Err(err(404, "no such endpoint")),
            }
        }
    };
    match answer {
        Ok(v) => (200, v),
        Err(e) => (e.status, json!({ "error": e.message })),
    }
}

/// `POST /control/profile-pic {number, png_base64}` → `{id}`.
fn profile_pic(state: &State, body: &Value) -> Result<Value, ControlError> {
    let usage = "expected {\"number\": \"…\", \"png_base64\": \"…\"}";
    let number = match body.get("number") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(err(400, usage)),
    };
    let b64 = body
        .get("png_base64")
        .and_then(Value::as_str)
        .ok_or_else(|| err(400, usage))?;
    let bytes = base64::Engine::decode(&base64::prelude::BASE64_STANDARD, b64.trim())
        .map_err(|e| err(400, format!("png_base64 is not base64: {e}")))?;
    if bytes.is_empty() {
        return Err(err(400, "png_base64 is empty"));
    }
    let id = state.set_profile_picture(&number, bytes)?;
    Ok(json!({ "id": id.to_string() }))
}

/// A `$message` (one of the media messages) in a `MessageField`, carrying the fields every
/// uploaded media message takes from the upload `$up`, then the kind's own fields.
macro_rules! uploaded {
    ($($message:ident)::+, $up:ident, $($field:ident $(: $value:expr)?),* $(,)?) => {
        buffa::MessageField::some($($message)::+ {
            url: Some($up.url),
            direct_path: Some($up.direct_path),
            media_key: Some($up.media_key.to_vec()),
            file_enc_sha256: Some($up.file_enc_sha256.to_vec()),
            file_sha256: Some($up.file_sha256.to_vec()),
            file_length: Some($up.file_length),
            media_key_timestamp: Some($up.media_key_timestamp),
            $($field $(: $value)?,)*
            ..Default::default()
        })
    };
}

/// Uploads `media` (`{kind, data_base64, mimetype?, caption?, file_name?}`) through the
/// peer's client and builds the message that carries it.
async fn upload_media(
    client: &whatsapp_rust::Client,
    media: &Value,
) -> Result<wa::Message, ControlError> {
    let usage = "media needs {\"kind\": \"image|video|audio|document|sticker\", \"data_base64\": \"…\", \"mimetype\"?, \"caption\"?, \"file_name\"?}";
    let kind = media
        .get("kind")
        .and_then(Value::as_str)
        .ok_or_else(|| err(400, usage))?;
    let media_type = MEDIA_KINDS
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, t)| *t)
        .ok_or_else(|| err(400, usage))?;
    let data = media
        .get("data_base64")
        .and_then(Value::as_str)
        .ok_or_else(|| err(400, usage))?;
    let data = base64::Engine::decode(&base64::prelude::BASE64_STANDARD, data.trim())
        .map_err(|e| err(400, format!("data_base64 is not base64: {e}")))?;
    let field = |k: &str| media.get(k).and_then(Value::as_str).map(str::to_string);
    let mimetype = field("mimetype").or_else(|| {
        Some(
            match kind {
                "image" => "image/jpeg",
                "video" => "video/mp4",
                "audio" => "audio/ogg; codecs=opus",
                "sticker" => "image/webp",
                _ => "application/octet-stream",
            }
            .to_string(),
        )
    });
    let caption = field("caption");
    let up = client
        .upload(data, media_type, Default::default())
        .await
        .map_err(|e| err(502, format!("the peer's upload failed: {e:#}")))?;
    let mut message = wa::Message::default();
    match kind {
        "image" => {
            message.image_message = uploaded!(wa::message::ImageMessage, up, mimetype, caption);
        }
        "video" => {
            message.video_message = uploaded!(
                wa::message::VideoMessage,
                up,
                streaming_sidecar: up.streaming_sidecar,
                mimetype,
                caption,
            );
        }
        "audio" => {
            message.audio_message = uploaded!(
                wa::message::AudioMessage,
                up,
                streaming_sidecar: up.streaming_sidecar,
                mimetype,
            );
        }
        "document" => {
            message.document_message = uploaded!(
                wa::message::DocumentMessage,
                up,
                file_name: field("file_name"),
                mimetype,
                caption,
            );
        }
        _ => {
            message.sticker_message = uploaded!(wa::message::StickerMessage, up, mimetype);
        }
    }
    Ok(message)
}

async fn with_timeout<T, E>(
    fut: impl std::future::Future<Output = Result<T, E>>,
    what: &str,
) -> Result<T, ControlError> {
    let timeout = async {
        smol::Timer::after(LINK_TIMEOUT).await;
        Err(err(504, format!("timed out waiting for {what}")))
    };
    let value = async {
        fut.await
            .map_err(|_| err(502, format!("the peer's client stopped before {what}")))
    };
    futures_lite::future::or(value, timeout).await
}

#[cfg(test)]
mod tests {
    use super::parse_to;

    #[test]
    fn recipients_parse() {
        assert_eq!(
            parse_to("+1 555-000-0001").unwrap().to_string(),
            "15550000001@s.whatsapp.net"
        );
        assert_eq!(
            parse_to("100000000000001@lid").unwrap().to_string(),
            "100000000000001@lid"
        );
        assert!(parse_to("bob").is_err());
    }
}
