//! The sending tools' work: `send_message`, `send_reaction` and `mark_as_read` (declared in
//! `messages.rs`).
//!
//! Owns: turning a recipient argument into the JID to send to, quoting (`reply_to`), the
//! `send_message` order of checks (allowlist → `idempotency_key` replay → duplicate window →
//! connection → rate limit → id chosen and stored as pending → send → result stored), the stored
//! form of a send's state, and the send-log entry of every attempt. Must not: import
//! whatsapp-rust (the engine facade sends), or write chats and messages itself (the engine
//! stores what it sends; `mark_as_read` uses `store::writes`).
//!
//! # Recipients
//! `recipient_jid` may be a JID (`…@s.whatsapp.net`, `…@lid`, `…@g.us`, legacy `…@c.us`), a phone
//! number in any common form, or a contact's name that matches one contact clearly (an exact
//! name, or the only match); otherwise the error lists the candidates. A person whose phone JID is
//! mapped to a LID is sent to by LID, the address WhatsApp uses after the LID migration; a LID
//! without a mapping is sent to as it is.
//!
//! # Bad input
//! Every check on the arguments comes before the allowlist, the rate limit and the connection
//! check, so an invalid call says what to fix (never "not connected") and takes no send from the
//! rate limit. `send_message`: a blank message, more than [`MAX_TEXT_CHARS`] characters, a blank
//! `idempotency_key`, an address that is no person's or group's (`…@unknown.server`,
//! `abc@s.whatsapp.net`, `+`), more than 256 characters of recipient, an ambiguous or unknown
//! name, or a `reply_to` that is not stored in that chat. `send_reaction`: anything but one emoji
//! ([`emoji_problem`]). `mark_as_read`: an empty `message_ids`, a chat that is not stored.
//!
//! # Stored state of a send (`idempotency` table)
//! Under the caller's `idempotency_key`, and under `"\u{0}dedup:<sha256(jid, text)>"` while the
//! duplicate window is on, a record `{op: "send_message", fingerprint, result}` holds
//! `{"state":"pending","id":…}` from before the send and `{"state":"sent","messageId":…,
//! "timestamp":…}` after it. A pending record found later (a crash, or a failed send) makes the
//! retry reuse the same message id, so the peer never sees two messages. The duplicate window is
//! therefore persisted too, like the idempotency keys.
//!
//! `timestamp` in answers is epoch milliseconds (SPEC §9: every output timestamp is ms; the
//! original gave seconds here).

use super::safety::{REFUSED_ALLOWLIST, REFUSED_RATE, SendGuard};
use super::views::{self, Views};
use super::{ToolCall, ToolEnv, ToolResult};
use crate::json::{self, Value};
use crate::store::idempotency::{self, Record};
use crate::store::queries::{self, Lookup, StoredMessage};
use crate::store::send_log::Entry;
use crate::store::{Store, jid};
use sha2::{Digest, Sha256};
use std::future::Future;
use std::pin::Pin;

/// The longest text `send_message` sends, in characters (Unicode scalar values): WhatsApp's
/// limit for one text message is 65,536 characters; a longer text is refused with a request to
/// split it, never cut.
pub const MAX_TEXT_CHARS: usize = 65_536;

/// The operation name in idempotency records.
const OP: &str = "send_message";

/// A stored message being quoted (the engine's `Quote`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteArg {
    pub id: String,
    /// Who wrote it: the own JID when `from_me`; in a 1:1 chat the chat JID otherwise.
    pub sender_jid: String,
    pub from_me: bool,
    pub text: String,
}

/// What a send returned (the engine's `Sent`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentArg {
    pub id: String,
    pub chat_jid: String,
    pub timestamp_ms: u64,
}

pub type WireFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// The engine operations the send tools use. The engine implements it (`engine_wire`); unit
/// tests use a fake that records what it was asked to send.
pub trait Wire: Send + Sync {
    /// `Some(text)` when WhatsApp is not connected: the text says what to do.
    fn not_connected(&self) -> Option<String>;
    fn new_message_id(&self) -> String;
    fn send_text<'a>(
        &'a self,
        to: &'a str,
        text: &'a str,
        id: &'a str,
        quote: Option<&'a QuoteArg>,
    ) -> WireFuture<'a, SentArg>;
    fn send_reaction<'a>(
        &'a self,
        chat: &'a str,
        target_id: &'a str,
        target_sender: Option<&'a str>,
        target_from_me: bool,
        emoji: &'a str,
    ) -> WireFuture<'a, SentArg>;
    fn mark_read<'a>(
        &'a self,
        chat: &'a str,
        messages: &'a [(String, Option<String>)],
    ) -> WireFuture<'a, ()>;
}

/// The engine as a [`Wire`].
pub struct EngineWire(pub crate::wa::engine::Engine);

fn sent_arg(s: crate::wa::send::Sent) -> SentArg {
    SentArg {
        id: s.id,
        chat_jid: s.chat_jid,
        timestamp_ms: s.timestamp_ms,
    }
}

impl Wire for EngineWire {
    fn not_connected(&self) -> Option<String> {
        let snap = self.0.snapshot();
        (snap.state != crate::wa::engine::EngineState::Connected)
            .then(|| crate::wa::engine::not_connected(&snap))
    }

    fn new_message_id(&self) -> String {
        self.0.new_message_id()
    }

    fn send_text<'a>(
        &'a self,
        to: &'a str,
        text: &'a str,
        id: &'a str,
        quote: Option<&'a QuoteArg>,
    ) -> WireFuture<'a, SentArg> {
        Box::pin(async move {
            let quote = quote.map(|q| crate::wa::send::Quote {
                id: q.id.clone(),
                sender_jid: q.sender_jid.clone(),
                from_me: q.from_me,
                text: q.text.clone(),
            });
            self.0
                .send_text(to, text, id, quote.as_ref())
                .await
                .map(sent_arg)
        })
    }

    fn send_reaction<'a>(
        &'a self,
        chat: &'a str,
        target_id: &'a str,
        target_sender: Option<&'a str>,
        target_from_me: bool,
        emoji: &'a str,
    ) -> WireFuture<'a, SentArg> {
        Box::pin(async move {
            self.0
                .send_reaction(chat, target_id, target_sender, target_from_me, emoji)
                .await
                .map(sent_arg)
        })
    }

    fn mark_read<'a>(
        &'a self,
        chat: &'a str,
        messages: &'a [(String, Option<String>)],
    ) -> WireFuture<'a, ()> {
        Box::pin(async move { self.0.mark_read(chat, messages).await })
    }
}

/// The engine of a call as a [`Wire`], or the not-connected text when none runs.
fn wire_of(env: &ToolEnv) -> Result<EngineWire, String> {
    env.engine.clone().map(EngineWire).ok_or_else(|| {
        "WhatsApp is not connected (state: unlinked): no WhatsApp engine runs in this process"
            .to_string()
    })
}

// ---- recipients ------------------------------------------------------------------------------

/// Where a send goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The JID handed to the engine.
    pub to: String,
    /// The JID the person or group is shown under (phone JID for a mapped LID).
    pub shown: String,
    /// Every JID the recipient goes by (for the allowlist and for finding its messages).
    pub identities: Vec<String>,
}

/// Only phone-number characters: digits, spaces, `+ - ( ) .`.
fn looks_like_number(s: &str) -> bool {
    s.chars().any(|c| c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_digit() || " +-().".contains(c))
}

/// The longest recipient argument looked at, in characters.
const MAX_RECIPIENT_CHARS: usize = 256;

/// Candidates listed at most when a name is ambiguous.
const MAX_CANDIDATES: usize = 10;

/// Resolves `raw` (JID, phone number or contact name) to a recipient, or the error text.
pub fn resolve_recipient(
    v: &mut Views,
    field: &str,
    raw: &str,
) -> crate::store::Result<Result<Recipient, String>> {
    let t = raw.trim();
    let chars = t.chars().count();
    if chars > MAX_RECIPIENT_CHARS {
        // Matching a very long text against every contact's name would take long for nothing.
        return Ok(Err(format!(
            "Invalid {field}: {chars} characters is longer than any JID, phone number or contact \
             name (at most {MAX_RECIPIENT_CHARS}). {}",
            views::JID_HELP
        )));
    }
    let jid = if t.contains('@') || looks_like_number(t) {
        match views::parse_wa_jid(field, t) {
            Ok(j) => j,
            Err(e) => return Ok(Err(e)),
        }
    } else if !t.is_empty() && t.chars().all(|c| " +-().".contains(c)) {
        // `+`, `--`: the start of a phone number without its digits.
        return Ok(Err(format!(
            "Invalid {field}: \"{t}\" has no digits. {}",
            views::JID_HELP
        )));
    } else if t.is_empty() {
        return Ok(Err(format!(
            "Invalid {field}: it is empty. {}",
            views::JID_HELP
        )));
    } else {
        let matches = v.resolve(t, 50)?;
        let Some(top) = matches.first() else {
            return Ok(Err(format!(
                "No contact matches {field} \"{t}\". Give a JID, a phone number with country \
                 code, or a contact's name as resolve_contact finds it."
            )));
        };
        let tied = matches.iter().filter(|m| m.score == top.score).count();
        if tied == 1 && (top.score >= 90 || matches.len() == 1) {
            top.contact.id.clone()
        } else {
            let listed: Vec<String> = matches
                .iter()
                .take(MAX_CANDIDATES)
                .map(|m| {
                    let name = m
                        .contact
                        .name
                        .clone()
                        .or_else(|| m.contact.pushname.clone())
                        .unwrap_or_else(|| m.contact.number.clone());
                    format!("{name} ({})", m.contact.id)
                })
                .collect();
            return Ok(Err(format!(
                "{field} \"{t}\" matches {} contacts: {}. Pass the JID of the one you mean.",
                matches.len(),
                listed.join(", ")
            )));
        }
    };
    let (shown, identities) = v.identities(&jid)?;
    let to = if jid::is_pn(&shown) {
        v.lk.lid_for_pn(&shown)?.unwrap_or_else(|| shown.clone())
    } else {
        jid.clone()
    };
    Ok(Ok(Recipient {
        to,
        shown,
        identities,
    }))
}

/// Finds the stored message `raw` (`"<chat jid>:<id>"` or a bare id) in the chat `identities`.
fn find_in_chat(
    v: &mut Views,
    field: &str,
    raw: &str,
    identities: &[String],
) -> crate::store::Result<Result<StoredMessage, String>> {
    let raw = raw.trim();
    let found = if raw.contains('@') {
        match queries::message_by_public_id(v.txn, raw)? {
            Some(m) => {
                let (_, chat_ids) = v.identities(&m.chat_jid)?;
                if !chat_ids.iter().any(|j| identities.contains(j)) {
                    return Ok(Err(format!(
                        "{field} {raw} is a message of another chat ({}); it must be in the chat \
                         you write to.",
                        v.canonical(&m.chat_jid)?
                    )));
                }
                Some(m)
            }
            None => None,
        }
    } else {
        let mut hit = None;
        for j in identities {
            if let Some(m) = queries::message(v.txn, j, raw)? {
                hit = Some(m);
                break;
            }
        }
        hit
    };
    Ok(found.ok_or_else(|| {
        format!(
            "{field}: no stored message {raw} in this chat. Pass an id as list_messages returns it \
             (\"<chat jid>:<message id>\")."
        )
    }))
}

/// The quote of a stored message.
fn quote_of(v: &Views, m: &StoredMessage) -> QuoteArg {
    let sender_jid = if m.row.from_me {
        v.lk.own_jid()
            .and_then(jid::normalize)
            .unwrap_or_else(|| m.row.sender.clone())
    } else if m.row.sender.is_empty() {
        m.chat_jid.clone()
    } else {
        m.row.sender.clone()
    };
    QuoteArg {
        id: m.row.id.clone(),
        sender_jid,
        from_me: m.row.from_me,
        text: m.row.body.clone(),
    }
}

// ---- fingerprints and stored state --------------------------------------------------------------

fn sha256_hex(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update(b"\n");
        }
        h.update(p.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// What the duplicate window compares: the same text to the same JID.
pub fn dedup_fingerprint(to: &str, text: &str) -> String {
    sha256_hex(&[to, text])
}

/// What an `idempotency_key` must keep meaning: recipient, text and quote.
pub fn key_fingerprint(to: &str, text: &str, reply_to: Option<&str>) -> String {
    match reply_to {
        Some(r) => sha256_hex(&[to, text, r]),
        None => sha256_hex(&[to, text]),
    }
}

/// The idempotency-table key of the duplicate window for a fingerprint.
fn dedup_key(fingerprint: &str) -> String {
    format!("\u{0}dedup:{fingerprint}")
}

/// A send's state as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendState {
    /// The id was chosen; the send may or may not have reached WhatsApp.
    Pending { id: String },
    /// Sent: the public message id (`<jid>:<id>`) and time (ms).
    Sent {
        message_id: String,
        timestamp_ms: u64,
    },
}

impl SendState {
    pub fn encode(&self) -> String {
        json::to_string(&match self {
            SendState::Pending { id } => {
                json::obj([("state", json::s("pending")), ("id", json::s(id.clone()))])
            }
            SendState::Sent {
                message_id,
                timestamp_ms,
            } => json::obj([
                ("state", json::s("sent")),
                ("messageId", json::s(message_id.clone())),
                (
                    "timestamp",
                    json::int(i64::try_from(*timestamp_ms).unwrap_or(i64::MAX)),
                ),
            ]),
        })
    }

    pub fn decode(text: &str) -> Option<SendState> {
        let v = json::parse(text)?;
        match json::get_str(&v, "state")? {
            "pending" => Some(SendState::Pending {
                id: json::get_str(&v, "id")?.to_string(),
            }),
            "sent" => Some(SendState::Sent {
                message_id: json::get_str(&v, "messageId")?.to_string(),
                timestamp_ms: json::get(&v, "timestamp")
                    .and_then(json::as_i64)
                    .and_then(|t| u64::try_from(t).ok())?,
            }),
            _ => None,
        }
    }
}

/// The `send_message` answer (the original's keys).
pub fn send_answer(
    message_id: &str,
    timestamp_ms: u64,
    deduplicated: bool,
    key: Option<&str>,
) -> Value {
    json::obj([
        ("success", json::bool(true)),
        ("message", json::s("Message sent successfully.")),
        ("messageId", json::s(message_id)),
        (
            "timestamp",
            json::int(i64::try_from(timestamp_ms).unwrap_or(i64::MAX)),
        ),
        ("deduplicated", json::bool(deduplicated)),
        ("idempotencyKey", key.map(json::s).unwrap_or(Value::Null)),
    ])
}

/// What a stored record says for this call.
enum Found {
    Nothing,
    /// Answer from the stored result.
    Replay {
        message_id: String,
        timestamp_ms: u64,
    },
    /// A send with this id was started and not confirmed: retry with the same id.
    Retry {
        id: String,
    },
    /// The key belongs to something else: the error text.
    Misuse(String),
}

fn examine(record: Option<Record>, fingerprint: &str) -> Found {
    let Some(r) = record else {
        return Found::Nothing;
    };
    if r.op != OP {
        return Found::Misuse(format!(
            "idempotency_key was already used for {}, not send_message; use a new key",
            r.op
        ));
    }
    if r.fingerprint != fingerprint {
        return Found::Misuse(
            "idempotency_key was already used with different send_message parameters; use a new \
             key for a different message"
                .into(),
        );
    }
    match SendState::decode(&r.result) {
        Some(SendState::Sent {
            message_id,
            timestamp_ms,
        }) => Found::Replay {
            message_id,
            timestamp_ms,
        },
        Some(SendState::Pending { id }) => Found::Retry { id },
        None => Found::Nothing,
    }
}

async fn read_record(store: &Store, key: &str) -> crate::store::Result<Option<Record>> {
    let key = key.to_string();
    let now = idempotency::now_ms();
    store
        .read(move |txn| idempotency::get(txn, &key, now))
        .await
}

/// Every this many stored results, expired idempotency records (mostly duplicate-window ones)
/// are pruned in the same commit, at most [`PRUNE_BATCH`] at a time.
const PRUNE_EVERY: u64 = 64;
const PRUNE_BATCH: usize = 256;
static STORED_RESULTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Stores `state` under each of `keys` (`(key, fingerprint, ttl_ms)`), and appends `log` to the
/// send log, in one commit.
async fn store_state(
    store: &Store,
    keys: &[(String, String, u64)],
    state: &SendState,
    log: Option<Entry>,
) -> crate::store::Result<()> {
    let now = idempotency::now_ms();
    let records: Vec<(String, Record)> = keys
        .iter()
        .map(|(k, fp, ttl)| {
            (
                k.clone(),
                Record {
                    op: OP.into(),
                    fingerprint: fp.clone(),
                    result: state.encode(),
                    expires_at: now.saturating_add(*ttl),
                },
            )
        })
        .collect();
    if records.is_empty() && log.is_none() {
        return Ok(());
    }
    let prune = matches!(state, SendState::Sent { .. })
        && STORED_RESULTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % PRUNE_EVERY == 0;
    store
        .write(move |txn| {
            if prune {
                idempotency::prune_expired(txn, now, PRUNE_BATCH)?;
            }
            for (k, r) in &records {
                idempotency::put(txn, k, r)?;
            }
            if let Some(e) = &log {
                crate::store::send_log::append(txn, e)?;
            }
            Ok(())
        })
        .await
}

// ---- send_message -----------------------------------------------------------------------------

/// One `send_message` request.
#[derive(Debug, Clone, Default)]
pub struct SendRequest {
    pub recipient: String,
    pub text: String,
    pub key: Option<String>,
    pub reply_to: Option<String>,
}

fn log_entry(req: &SendRequest, recipient: &str, result: String) -> Entry {
    Entry {
        tool: "send_message".into(),
        recipient: recipient.to_string(),
        bytes: req.text.len() as u64,
        result,
        idempotency_key: req.key.clone(),
        body: Some(req.text.clone()),
        ..Entry::default()
    }
}

pub async fn send_message(call: ToolCall) -> ToolResult {
    let arg = |k: &str| {
        call.args
            .str(k)
            .map(str::to_string)
            .filter(|s| !s.trim().is_empty())
    };
    let req = SendRequest {
        recipient: call
            .args
            .str("recipient_jid")
            .unwrap_or_default()
            .to_string(),
        text: call.args.str("message").unwrap_or_default().to_string(),
        // A blank key is kept (as "") so that the check below refuses it: ignoring it would
        // silently lose the retry safety the caller asked for.
        key: call
            .args
            .str("idempotency_key")
            .map(|k| k.trim().to_string()),
        reply_to: arg("reply_to"),
    };
    let wire = wire_of(&call.env);
    let wire: Option<&dyn Wire> = wire.as_ref().ok().map(|w| w as &dyn Wire);
    send_text_checked(&call.env, wire, req).await
}

/// The whole `send_message` path over any [`Wire`] (`None`: no engine runs).
pub async fn send_text_checked(
    env: &ToolEnv,
    wire: Option<&dyn Wire>,
    req: SendRequest,
) -> ToolResult {
    let guard: &SendGuard = &env.send_guard;
    let store = &env.store;
    let fail = |recipient: &str, msg: String| {
        let entry = log_entry(&req, recipient, format!("error:{msg}"));
        async move {
            guard.log(store, entry).await;
            ToolResult::error(msg)
        }
    };
    if req.text.trim().is_empty() {
        return fail(
            &req.recipient,
            "message is empty; give the text to send".into(),
        )
        .await;
    }
    let chars = req.text.chars().count();
    if chars > MAX_TEXT_CHARS {
        // The text is not kept in the log, even with SEND_LOG_BODIES: it was never sendable.
        let mut entry = log_entry(&req, &req.recipient, "error:message too long".to_string());
        entry.body = None;
        guard.log(store, entry).await;
        return ToolResult::error(format!(
            "message is too long: {chars} characters, and WhatsApp takes at most \
             {MAX_TEXT_CHARS} in one text message. Split it into several messages."
        ));
    }
    if req
        .key
        .as_deref()
        .is_some_and(|k| k.chars().any(char::is_control))
    {
        // Keys of the duplicate window start with NUL; a caller's key never collides with them.
        return fail(
            &req.recipient,
            "idempotency_key contains control characters; use letters, digits and punctuation"
                .into(),
        )
        .await;
    }
    if req.key.as_deref().is_some_and(str::is_empty) {
        return fail(
            &req.recipient,
            "idempotency_key is blank; give a key of 1 to 200 characters that is not only \
             spaces, or leave it out"
                .into(),
        )
        .await;
    }
    // Recipient and quote, in one read.
    let (raw, reply_to) = (req.recipient.clone(), req.reply_to.clone());
    let looked_up = store
        .read(move |txn| {
            let lk = Lookup::new(txn)?;
            let mut v = Views::new(txn, &lk)?;
            let r = match resolve_recipient(&mut v, "recipient_jid", &raw)? {
                Ok(r) => r,
                Err(e) => return Ok(Err(e)),
            };
            let quote = match &reply_to {
                None => None,
                Some(q) => match find_in_chat(&mut v, "reply_to", q, &r.identities)? {
                    Ok(m) => Some(quote_of(&v, &m)),
                    Err(e) => return Ok(Err(e)),
                },
            };
            Ok(Ok((r, quote)))
        })
        .await;
    let (recipient, quote) = match looked_up {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return fail(&req.recipient, e).await,
        Err(e) => {
            return fail(
                &req.recipient,
                format!("Error sending message to {}: {e}", req.recipient),
            )
            .await;
        }
    };
    let to = recipient.to.clone();
    // Logged and fingerprinted by the JID the person is shown under (stable when a LID mapping
    // appears later); sent to `to`.
    let shown = recipient.shown.clone();
    if let Some(refusal) = guard.allowlist_refusal(&recipient.shown, &recipient.identities) {
        guard
            .log(store, log_entry(&req, &shown, REFUSED_ALLOWLIST.into()))
            .await;
        return ToolResult::error(refusal);
    }

    let window = guard.policy.dedup_window_ms;
    let dedup_fp = dedup_fingerprint(&shown, &req.text);
    let key_fp = key_fingerprint(&shown, &req.text, quote.as_ref().map(|q| q.id.as_str()));
    let mut op_keys = Vec::new();
    if let Some(k) = &req.key {
        op_keys.push(k.clone());
    }
    if window > 0 {
        op_keys.push(dedup_key(&dedup_fp));
    }
    let _in_flight = guard.begin(op_keys).await;

    let replay = |message_id: String, timestamp_ms: u64, entry_result: &str| {
        let mut entry = log_entry(&req, &shown, entry_result.to_string());
        entry.message_id = Some(message_id.clone());
        let answer = send_answer(&message_id, timestamp_ms, true, req.key.as_deref());
        async move {
            guard.log(store, entry).await;
            ToolResult::json(&answer)
        }
    };

    let mut retry_id: Option<String> = None;
    if let Some(k) = &req.key {
        match read_record(store, k).await {
            Err(e) => {
                return fail(&shown, format!("could not read the idempotency_key: {e}")).await;
            }
            Ok(record) => match examine(record, &key_fp) {
                Found::Nothing => {}
                Found::Replay {
                    message_id,
                    timestamp_ms,
                } => return replay(message_id, timestamp_ms, "deduplicated").await,
                Found::Retry { id } => retry_id = Some(id),
                Found::Misuse(e) => return fail(&shown, e).await,
            },
        }
    }
    if window > 0 && retry_id.is_none() {
        match read_record(store, &dedup_key(&dedup_fp)).await {
            Err(e) => {
                return fail(&shown, format!("could not read the duplicate window: {e}")).await;
            }
            Ok(record) => match examine(record, &dedup_fp) {
                Found::Replay {
                    message_id,
                    timestamp_ms,
                } => {
                    // The key now names that send too, so a retry with it after the window
                    // still replays instead of sending.
                    if let Some(k) = &req.key {
                        let state = SendState::Sent {
                            message_id: message_id.clone(),
                            timestamp_ms,
                        };
                        let keys = [(k.clone(), key_fp.clone(), env.idempotency_ttl_ms)];
                        if let Err(e) = store_state(store, &keys, &state, None).await {
                            log::warn!("could not store the idempotency_key of a duplicate: {e}");
                        }
                    }
                    return replay(message_id, timestamp_ms, "deduplicated").await;
                }
                Found::Retry { id } => retry_id = Some(id),
                Found::Nothing | Found::Misuse(_) => {}
            },
        }
    }

    let Some(wire) = wire else {
        return fail(
            &shown,
            "WhatsApp is not connected: no WhatsApp engine runs".into(),
        )
        .await;
    };
    if let Some(e) = wire.not_connected() {
        return fail(&shown, e).await;
    }
    // After the connection check: an attempt that cannot reach WhatsApp uses up no send.
    if let Err(wait) = guard.take_rate_slot(idempotency::now_ms()) {
        guard
            .log(store, log_entry(&req, &shown, REFUSED_RATE.into()))
            .await;
        return ToolResult::error(guard.rate_refusal(wait));
    }

    let id = retry_id.unwrap_or_else(|| wire.new_message_id());
    let mut keys: Vec<(String, String, u64)> = Vec::new();
    if let Some(k) = &req.key {
        keys.push((k.clone(), key_fp.clone(), env.idempotency_ttl_ms));
    }
    if window > 0 {
        keys.push((dedup_key(&dedup_fp), dedup_fp.clone(), window));
    }
    if let Err(e) = store_state(store, &keys, &SendState::Pending { id: id.clone() }, None).await {
        return fail(
            &shown,
            format!(
                "Error sending message to {}: storing the pending send failed: {e}",
                recipient.shown
            ),
        )
        .await;
    }
    match wire.send_text(&to, &req.text, &id, quote.as_ref()).await {
        Ok(sent) => {
            // The chat as shown: the recipient's own JID when the engine stored it under one of
            // its identities (the usual case, no read needed).
            let chat = if sent.chat_jid == recipient.shown
                || recipient.identities.contains(&sent.chat_jid)
            {
                recipient.shown.clone()
            } else {
                let c = sent.chat_jid.clone();
                store
                    .read(move |txn| queries::canonical(txn, &c))
                    .await
                    .unwrap_or_else(|_| sent.chat_jid.clone())
            };
            let message_id = format!("{chat}:{}", sent.id);
            let state = SendState::Sent {
                message_id: message_id.clone(),
                timestamp_ms: sent.timestamp_ms,
            };
            let mut entry = log_entry(&req, &shown, "sent".into());
            entry.message_id = Some(sent.id.clone());
            // The result and its log entry in one commit.
            let entry = guard.prepare(entry);
            let mut note = None;
            if let Err(e) = store_state(store, &keys, &state, Some(entry.clone())).await {
                note = Some(format!(
                    "Note: the result could not be stored ({e}); a retry would send again with \
                     the same message id, which WhatsApp shows once."
                ));
                guard.log(store, entry).await;
            }
            let mut result = ToolResult::json(&send_answer(
                &message_id,
                sent.timestamp_ms,
                false,
                req.key.as_deref(),
            ));
            if let Some(n) = note {
                result.content.push(super::Content::Text(n));
            }
            result
        }
        Err(e) => {
            let mut entry = log_entry(&req, &shown, format!("error:{e}"));
            entry.message_id = Some(id.clone());
            guard.log(store, entry).await;
            ToolResult::error(format!("Error sending message to {}: {e}", recipient.shown))
        }
    }
}

// ---- send_reaction ----------------------------------------------------------------------------

/// The longest reaction in bytes: the longest emoji ZWJ sequences (families, couples with skin
/// tones) take about 35.
const MAX_EMOJI_BYTES: usize = 64;

/// Why `emoji` is not one emoji (empty is fine: it removes the reaction), or `None`. One emoji
/// is one grapheme cluster (so skin tones, flags, keycaps and ZWJ sequences count as one), not
/// plain ASCII, and without letters or spaces.
pub fn emoji_problem(emoji: &str) -> Option<String> {
    use unicode_segmentation::UnicodeSegmentation;
    if emoji.is_empty() {
        return None;
    }
    let what = "emoji must be a single emoji such as 👍 (or \"\" to remove your reaction)";
    if emoji.len() > MAX_EMOJI_BYTES {
        return Some(format!("{what}; got {} characters", emoji.chars().count()));
    }
    let clusters = emoji.graphemes(true).count();
    if clusters != 1 {
        return Some(format!("{what}; got {clusters}: \"{emoji}\""));
    }
    if emoji.is_ascii()
        || emoji
            .chars()
            .any(|c| c.is_alphabetic() || c.is_whitespace() || c.is_control())
    {
        return Some(format!("{what}; \"{emoji}\" is not an emoji"));
    }
    None
}

pub async fn send_reaction(call: ToolCall) -> ToolResult {
    let chat_raw = call.args.str("chat_jid").unwrap_or_default().to_string();
    let target = call.args.str("message_id").unwrap_or_default().to_string();
    let emoji = call.args.str("emoji").unwrap_or_default().to_string();
    let wire = wire_of(&call.env);
    let wire: Option<&dyn Wire> = wire.as_ref().ok().map(|w| w as &dyn Wire);
    react_checked(&call.env, wire, &chat_raw, &target, &emoji).await
}

/// The whole `send_reaction` path over any [`Wire`].
pub async fn react_checked(
    env: &ToolEnv,
    wire: Option<&dyn Wire>,
    chat_raw: &str,
    target: &str,
    emoji: &str,
) -> ToolResult {
    let guard: &SendGuard = &env.send_guard;
    let store = &env.store;
    let entry = |recipient: &str, result: String| Entry {
        tool: "send_reaction".into(),
        recipient: recipient.to_string(),
        bytes: emoji.len() as u64,
        result,
        body: Some(emoji.to_string()),
        ..Entry::default()
    };
    if let Some(e) = emoji_problem(emoji) {
        let mut refused = entry(chat_raw, "error:not a single emoji".into());
        // Whatever was given is not kept: it can be long, and it was never sendable.
        refused.body = None;
        guard.log(store, refused).await;
        return ToolResult::error(e);
    }
    let (c, t) = (chat_raw.to_string(), target.to_string());
    let looked_up = store
        .read(move |txn| {
            let lk = Lookup::new(txn)?;
            let mut v = Views::new(txn, &lk)?;
            let chat = match views::parse_wa_jid("chat_jid", &c) {
                Ok(j) => j,
                Err(e) => return Ok(Err(e)),
            };
            let (shown, identities) = v.identities(&chat)?;
            let m = match find_in_chat(&mut v, "message_id", &t, &identities)? {
                Ok(m) => m,
                Err(e) => return Ok(Err(e)),
            };
            let q = quote_of(&v, &m);
            Ok(Ok((shown, identities, m.chat_jid.clone(), q)))
        })
        .await;
    let (shown, identities, chat, q) = match looked_up {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            guard
                .log(store, entry(chat_raw, format!("error:{e}")))
                .await;
            return ToolResult::error(e);
        }
        Err(e) => {
            let e = format!("Error reacting to {target}: {e}");
            guard
                .log(store, entry(chat_raw, format!("error:{e}")))
                .await;
            return ToolResult::error(e);
        }
    };
    if let Some(refusal) = guard.allowlist_refusal(&shown, &identities) {
        guard
            .log(store, entry(&chat, REFUSED_ALLOWLIST.into()))
            .await;
        return ToolResult::error(refusal);
    }
    let not_connected = match wire {
        None => Some("WhatsApp is not connected: no WhatsApp engine runs".to_string()),
        Some(w) => w.not_connected(),
    };
    let (Some(wire), None) = (wire, not_connected.clone()) else {
        let e = not_connected.unwrap_or_default();
        guard.log(store, entry(&chat, format!("error:{e}"))).await;
        return ToolResult::error(e);
    };
    // After the connection check: an attempt that cannot reach WhatsApp uses up no send.
    if let Err(wait) = guard.take_rate_slot(idempotency::now_ms()) {
        guard.log(store, entry(&chat, REFUSED_RATE.into())).await;
        return ToolResult::error(guard.rate_refusal(wait));
    }
    let sender = jid::is_group(&chat).then_some(q.sender_jid.as_str());
    match wire
        .send_reaction(&chat, &q.id, sender, q.from_me, emoji)
        .await
    {
        Ok(sent) => {
            let mut e = entry(&chat, "sent".into());
            e.message_id = Some(sent.id.clone());
            guard.log(store, e).await;
            ToolResult::json(&json::obj([
                ("success", json::bool(true)),
                (
                    "message",
                    json::s(if emoji.is_empty() {
                        "Reaction removed."
                    } else {
                        "Reaction sent."
                    }),
                ),
                ("messageId", json::s(format!("{shown}:{}", q.id))),
                ("emoji", json::s(emoji)),
                (
                    "timestamp",
                    json::int(i64::try_from(sent.timestamp_ms).unwrap_or(i64::MAX)),
                ),
            ]))
        }
        Err(e) => {
            guard.log(store, entry(&chat, format!("error:{e}"))).await;
            ToolResult::error(format!("Error reacting to {target}: {e}"))
        }
    }
}

// ---- mark_as_read -----------------------------------------------------------------------------

/// Receipts for one chat: `(message id, sender in groups)`.
type Receipts = Vec<(String, Option<String>)>;

/// A message to mark: its chat (as stored), id and, in groups, its sender.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ToMark {
    chat: String,
    id: String,
    sender: Option<String>,
}

/// The unread messages of the chat halves `identities`: from others, after each half's read
/// mark, oldest first.
fn unread_of(v: &Views, identities: &[String]) -> crate::store::Result<Vec<ToMark>> {
    let mut out = Vec::new();
    for j in identities {
        let Some(chat) = v.lk.chat(j)? else {
            continue;
        };
        for m in v.lk.messages_after(j, chat.read_upto, 10_000)? {
            if !m.row.from_me {
                out.push(to_mark(&m));
            }
        }
    }
    Ok(out)
}

fn to_mark(m: &StoredMessage) -> ToMark {
    ToMark {
        chat: m.chat_jid.clone(),
        id: m.row.id.clone(),
        sender: (jid::is_group(&m.chat_jid) && !m.row.sender.is_empty())
            .then(|| m.row.sender.clone()),
    }
}

pub async fn mark_as_read(call: ToolCall) -> ToolResult {
    let chat_raw = call.args.str("chat_jid").unwrap_or_default().to_string();
    let ids = call.args.strings("message_ids");
    let wire = wire_of(&call.env);
    let wire: Option<&dyn Wire> = wire.as_ref().ok().map(|w| w as &dyn Wire);
    mark_checked(&call.env, wire, &chat_raw, ids).await
}

/// The whole `mark_as_read` path over any [`Wire`]: receipts first, then the stored read state.
pub async fn mark_checked(
    env: &ToolEnv,
    wire: Option<&dyn Wire>,
    chat_raw: &str,
    ids: Option<Vec<String>>,
) -> ToolResult {
    let store = &env.store;
    if ids.as_ref().is_some_and(Vec::is_empty) {
        return ToolResult::error(
            "message_ids is empty: list the ids to mark (as list_messages returns them), or leave \
             message_ids out to mark every unread message of the chat",
        );
    }
    let explicit = ids.is_some();
    let c = chat_raw.to_string();
    let looked_up = store
        .read(move |txn| {
            let lk = Lookup::new(txn)?;
            let mut v = Views::new(txn, &lk)?;
            let chat = match views::parse_jid("chat_jid", &c) {
                Ok(j) => j,
                Err(e) => return Ok(Err(e)),
            };
            let (shown, identities) = v.identities(&chat)?;
            let mut known = false;
            for j in &identities {
                known |= v.lk.chat(j)?.is_some();
            }
            if !known {
                return Ok(Err(format!(
                    "Chat not found for JID: {}. mark_as_read works on stored chats; list_chats \
                     lists them.",
                    c.trim()
                )));
            }
            let unread = unread_of(&v, &identities)?;
            let chosen = match &ids {
                None => unread.clone(),
                Some(list) => {
                    let mut out = Vec::new();
                    let mut seen = std::collections::HashSet::new();
                    for raw in list {
                        match find_in_chat(&mut v, "message_ids", raw, &identities)? {
                            // Our own messages need no receipt.
                            Ok(m) if m.row.from_me => {}
                            Ok(m) => {
                                let m = to_mark(&m);
                                // The same message named twice is marked once.
                                if seen.insert((m.chat.clone(), m.id.clone())) {
                                    out.push(m);
                                }
                            }
                            Err(e) => return Ok(Err(e)),
                        }
                    }
                    out
                }
            };
            Ok(Ok((shown, identities, unread, chosen)))
        })
        .await;
    let (shown, identities, unread, chosen) = match looked_up {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return ToolResult::error(e),
        Err(e) => return ToolResult::error(format!("Error marking {chat_raw} as read: {e}")),
    };
    if !chosen.is_empty() {
        let not_connected = match wire {
            None => Some("WhatsApp is not connected: no WhatsApp engine runs".to_string()),
            Some(w) => w.not_connected(),
        };
        let (Some(wire), None) = (wire, not_connected.clone()) else {
            return ToolResult::error(not_connected.unwrap_or_default());
        };
        // One receipt call per stored chat half.
        let mut halves: Vec<(String, Receipts)> = Vec::new();
        for m in &chosen {
            match halves.iter_mut().find(|(c, _)| *c == m.chat) {
                Some((_, list)) => list.push((m.id.clone(), m.sender.clone())),
                None => halves.push((m.chat.clone(), vec![(m.id.clone(), m.sender.clone())])),
            }
        }
        for (chat, list) in &halves {
            if let Err(e) = wire.mark_read(chat, list).await {
                return ToolResult::error(format!("Error marking {chat_raw} as read: {e}"));
            }
        }
    }
    // The stored read state: every half read when nothing unread remains, else the count drops.
    let marked: std::collections::HashSet<(&str, &str)> = chosen
        .iter()
        .map(|c| (c.chat.as_str(), c.id.as_str()))
        .collect();
    let remaining: Vec<&ToMark> = unread
        .iter()
        .filter(|u| !marked.contains(&(u.chat.as_str(), u.id.as_str())))
        .collect();
    let mut left: Vec<(String, u32)> = Vec::new();
    for j in &identities {
        let n = remaining.iter().filter(|u| &u.chat == j).count() as u32;
        left.push((j.clone(), n));
    }
    // Only our own messages named: nothing was read, so the stored state stays as it is.
    let nothing_to_store = explicit && chosen.is_empty();
    let write = store
        .write(move |txn| {
            if nothing_to_store {
                return Ok(());
            }
            for (j, n) in &left {
                if *n == 0 {
                    crate::store::writes::mark_chat_read(txn, j)?;
                } else {
                    // Only a stored half can have unread messages left.
                    crate::store::writes::update_chat(
                        txn,
                        &crate::store::writes::ChatUpdate {
                            jid: j.clone(),
                            unread: Some(*n),
                            ..Default::default()
                        },
                    )?;
                }
            }
            Ok(())
        })
        .await;
    if let Err(e) = write {
        return ToolResult::error(format!(
            "The read receipts were sent, but the chat's read state could not be stored: {e}"
        ));
    }
    ToolResult::json(&json::obj([
        ("success", json::bool(true)),
        ("chatJid", json::s(shown.clone())),
        ("markedCount", json::int(chosen.len() as i64)),
        (
            "messageIds",
            json::arr(chosen.iter().map(|m| json::s(format!("{shown}:{}", m.id)))),
        ),
        ("unreadCount", json::int(remaining.len() as i64)),
    ]))
}
