//! Ingest: what WhatsApp tells the engine, written into the app's tables.
//!
//! Owns: the pure conversion of whatsapp-rust's messages, history syncs and app-state chat
//! actions into store writes ([`Envelope`] + `wa::Message` → [`Effect`]s; `wa::HistorySync` →
//! effects and chat updates), applying them inside a write transaction ([`apply`],
//! [`apply_history`]), and the task that consumes [`Engine::subscribe`] and writes each event
//! through `Store::write`.
//!
//! Durability: live messages are written by the engine's inbound durability hook (`engine.rs`,
//! `InboxHook`) in the same transaction that commits them to `wa_inbox`, before WhatsApp gets
//! the ack; the later `Event::Messages` (marked `hook_committed`) is then skipped. Storing is
//! idempotent by (chat, id), and unread counts grow only on a first insert, so a replay never
//! double-counts. At start, messages in `wa_inbox` that never reached the app's tables (a hook
//! that fell back to the inbox alone) are written, and the inbox is pruned page by page.
//!
//! History syncs are streamed (`stream_history`): mappings and push names first, then one
//! conversation decoded at a time, written in transactions of about [`HISTORY_CHUNK`] messages.
//! App-state chat actions (archive, pin, mute, mark read, delete, clear, delete-for-me) are
//! logged as `whatsapp ingest: chat <jid> <action>` once applied.
//!
//! Receipts: a delivery (or `inactive`), read or played receipt raises the delivery state of
//! our own messages it names ([`receipt_effect`], `writes::apply_receipt`: only ever upward,
//! unknown ids ignored; in a group any member's receipt counts). A history sync's
//! `WebMessageInfo.status` of our messages does the same. A live receipt that found none of its
//! messages may have overtaken the write of our own send (stored after the server's ack), so
//! it is tried again a few times in the background ([`RECEIPT_RETRY_DELAYS_MS`]). A read-self
//! receipt (read on another of our devices) marks the chat read; other receipt types (retry,
//! sender, server errors, …) are not stored.
//!
//! Identities: a LID with a known phone number is stored under the phone JID (chats, senders,
//! reactors); mappings learnt from a message (`sender_alt`, `recipient_alt`), a history sync
//! (`phoneNumberToLidMappings`, conversations' `pnJid`/`lidJid`) or a contact action are
//! written first, so the same batch already canonicalizes with them.
//!
//! Must not: send anything to WhatsApp except group metadata queries (all our groups after
//! connecting, one group after it changed); hand whatsapp-rust types out of `src/wa`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use redb::WriteTransaction;
use whatsapp_rust::types::events::{Event, MessageBatch, Receipt};
use whatsapp_rust::types::message::MessageInfo;
use whatsapp_rust::types::presence::ReceiptType;
use whatsapp_rust::wacore::proto_helpers::MessageExt;
use whatsapp_rust::wacore_binary::JidExt;
use whatsapp_rust::waproto::whatsapp as wa;

use super::backend::InboxRow;
use super::engine::{Engine, lock};
use super::send::account_of;
use crate::store::jid;
use crate::store::model::{Delivery, MediaRef};
use crate::store::writes::{self, ChatUpdate, ContactUpdate, NewMessage};

/// Where a message came from, as plain data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    /// The chat JID (no device).
    pub chat: String,
    /// The chat's other identity (LID ↔ phone), when the stanza named it.
    pub chat_alt: Option<String>,
    /// The author (no device); our own account JID for our messages.
    pub sender: String,
    /// The author's other identity (LID ↔ phone).
    pub sender_alt: Option<String>,
    pub id: String,
    pub timestamp_ms: u64,
    pub from_me: bool,
    pub push_name: Option<String>,
}

/// One write that a message, history sync or chat action asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Message(Box<NewMessage>),
    Edit {
        chat: String,
        id: String,
        body: String,
    },
    Revoke {
        chat: String,
        id: String,
    },
    Reaction {
        chat: String,
        id: String,
        reactor: String,
        emoji: String,
    },
    DeleteForMe {
        chat: String,
        id: String,
    },
    Mapping {
        lid: String,
        pn: String,
    },
    Contact(ContactUpdate),
    /// Our messages `ids` in `chat` reached `state` (applied after the batch's messages).
    Receipt {
        chat: String,
        ids: Vec<String>,
        state: Delivery,
    },
}

/// The (LID, phone) pair of two JIDs naming the same person, if they do.
fn mapping_of(a: &str, b: &str) -> Option<Effect> {
    let (lid, pn) = if jid::is_lid(a) && jid::is_pn(b) {
        (a, b)
    } else if jid::is_lid(b) && jid::is_pn(a) {
        (b, a)
    } else {
        return None;
    };
    Some(Effect::Mapping {
        lid: lid.to_string(),
        pn: pn.to_string(),
    })
}

/// The envelope of a live message. `own` is our account JID (no device).
pub fn envelope_of(info: &MessageInfo, own: Option<&str>) -> Envelope {
    let src = &info.source;
    let from_me = src.is_from_me;
    let sender = match (from_me, own) {
        (true, Some(own)) => own.to_string(),
        _ => src.sender.to_non_ad_string(),
    };
    let sender_alt = src.sender_alt.as_ref().map(|j| j.to_non_ad_string());
    let chat_alt = if src.is_group || src.chat.is_group() {
        None
    } else if from_me {
        src.recipient_alt.as_ref().map(|j| j.to_non_ad_string())
    } else {
        sender_alt.clone()
    };
    Envelope {
        chat: src.chat.to_non_ad_string(),
        chat_alt,
        sender,
        sender_alt: if from_me { None } else { sender_alt },
        id: info.id.to_string(),
        timestamp_ms: info.timestamp.timestamp_millis().max(0) as u64,
        from_me,
        push_name: Some(info.push_name.clone()).filter(|p| !p.trim().is_empty()),
    }
}

/// The envelope of a message committed to `wa_inbox`.
pub fn envelope_of_inbox(row: &InboxRow, own: Option<&str>) -> Envelope {
    Envelope {
        chat: account_of(&row.chat),
        chat_alt: None,
        sender: match (row.from_me, own) {
            (true, Some(own)) => own.to_string(),
            _ => account_of(&row.sender),
        },
        sender_alt: None,
        id: row.id.clone(),
        timestamp_ms: (row.timestamp.max(0) as u64).saturating_mul(1000),
        from_me: row.from_me,
        push_name: Some(row.push_name.clone()).filter(|p| !p.trim().is_empty()),
    }
}

/// What a storable message holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    /// The message type (`conversation`, `extendedTextMessage`, `imageMessage`, …).
    pub kind: &'static str,
    pub body: String,
    pub quoted_id: Option<String>,
    pub media: Option<MediaRef>,
}

fn quoted(ctx: &whatsapp_rust::waproto::buffa::MessageField<wa::ContextInfo>) -> Option<String> {
    ctx.as_option()
        .and_then(|c| c.stanza_id.clone())
        .filter(|s| !s.is_empty())
}

/// The stored form of a message's content; `None` for what is not a message a person wrote
/// (protocol messages, reactions, key distribution alone).
pub fn content_of(m: &wa::Message) -> Option<Content> {
    let m = m.get_base_message();
    if let Some(text) = &m.conversation {
        return Some(Content {
            kind: "conversation",
            body: text.clone(),
            quoted_id: None,
            media: None,
        });
    }
    if let Some(ext) = m.extended_text_message.as_option() {
        return Some(Content {
            kind: "extendedTextMessage",
            body: ext.text.clone().unwrap_or_default(),
            quoted_id: quoted(&ext.context_info),
            media: None,
        });
    }
    macro_rules! media {
        ($field:ident, $kind:literal, $media_kind:literal, $caption:expr, $filename:expr, $ptt:expr) => {
            if let Some(x) = m.$field.as_option() {
                #[allow(clippy::redundant_closure_call)]
                let caption: Option<String> = ($caption)(x);
                #[allow(clippy::redundant_closure_call)]
                let filename: Option<String> = ($filename)(x);
                #[allow(clippy::redundant_closure_call)]
                let ptt: bool = ($ptt)(x);
                return Some(Content {
                    kind: $kind,
                    body: caption.unwrap_or_default(),
                    quoted_id: quoted(&x.context_info),
                    media: Some(MediaRef {
                        kind: $media_kind.into(),
                        mimetype: x.mimetype.clone(),
                        filename,
                        size: x.file_length.unwrap_or(0),
                        direct_path: x.direct_path.clone(),
                        url: x.url.clone(),
                        media_key: x.media_key.clone(),
                        file_sha256: x.file_sha256.clone(),
                        file_enc_sha256: x.file_enc_sha256.clone(),
                        local_file: None,
                        ptt,
                    }),
                });
            }
        };
    }
    media!(
        image_message,
        "imageMessage",
        "image",
        |x: &wa::message::ImageMessage| x.caption.clone(),
        |_| None,
        |_| false
    );
    media!(
        video_message,
        "videoMessage",
        "video",
        |x: &wa::message::VideoMessage| x.caption.clone(),
        |_| None,
        |_| false
    );
    media!(
        audio_message,
        "audioMessage",
        "audio",
        |_| None,
        |_| None,
        |x: &wa::message::AudioMessage| x.ptt.unwrap_or(false)
    );
    media!(
        document_message,
        "documentMessage",
        "document",
        |x: &wa::message::DocumentMessage| x.caption.clone(),
        |x: &wa::message::DocumentMessage| x.file_name.clone(),
        |_| false
    );
    media!(
        sticker_message,
        "stickerMessage",
        "sticker",
        |_| None,
        |_| None,
        |_| false
    );
    if let Some(loc) = m.location_message.as_option() {
        return Some(Content {
            kind: "locationMessage",
            body: loc.name.clone().unwrap_or_default(),
            quoted_id: quoted(&loc.context_info),
            media: None,
        });
    }
    if let Some(c) = m.contact_message.as_option() {
        return Some(Content {
            kind: "contactMessage",
            body: c.display_name.clone().unwrap_or_default(),
            quoted_id: quoted(&c.context_info),
            media: None,
        });
    }
    None
}

/// The writes one message asks for: the message itself, or the edit, revoke or reaction it
/// carries; plus the mapping and push name its envelope reveals.
pub fn message_effects(env: &Envelope, m: &wa::Message) -> Vec<Effect> {
    let mut out = Vec::new();
    if let Some(alt) = &env.sender_alt
        && let Some(map) = mapping_of(&env.sender, alt)
    {
        out.push(map);
    }
    if let Some(alt) = &env.chat_alt
        && let Some(map) = mapping_of(&env.chat, alt)
        && !out.contains(&map)
    {
        out.push(map);
    }
    if !env.from_me
        && let Some(name) = &env.push_name
        && !jid::is_group(&env.sender)
    {
        out.push(Effect::Contact(ContactUpdate {
            jid: env.sender.clone(),
            pushname: Some(name.clone()),
            ..ContactUpdate::default()
        }));
    }
    // Status updates are not a chat (the original's list_chats hid them too).
    if env.id.is_empty() || env.chat.is_empty() || jid::is_broadcast(&env.chat) {
        return out;
    }
    let base = m.get_base_message();
    if let Some(p) = base.protocol_message.as_option() {
        use wa::message::protocol_message::Type;
        let target = p.key.as_option().and_then(|k| k.id.clone());
        match (p.r#type, target) {
            (Some(Type::REVOKE), Some(id)) => out.push(Effect::Revoke {
                chat: env.chat.clone(),
                id,
            }),
            (Some(Type::MESSAGE_EDIT), Some(id)) => {
                let body = p
                    .edited_message
                    .as_option()
                    .and_then(content_of)
                    .map(|c| c.body)
                    .unwrap_or_default();
                out.push(Effect::Edit {
                    chat: env.chat.clone(),
                    id,
                    body,
                });
            }
            _ => {}
        }
        return out;
    }
    if let Some(r) = base.reaction_message.as_option() {
        if let Some(id) = r.key.as_option().and_then(|k| k.id.clone()) {
            out.push(Effect::Reaction {
                chat: env.chat.clone(),
                id,
                reactor: env.sender.clone(),
                emoji: r.text.clone().unwrap_or_default(),
            });
        }
        return out;
    }
    if let Some(c) = content_of(m) {
        out.push(Effect::Message(Box::new(NewMessage {
            chat_jid: env.chat.clone(),
            id: env.id.clone(),
            sender: env.sender.clone(),
            from_me: env.from_me,
            timestamp_ms: env.timestamp_ms,
            body: c.body,
            kind: c.kind.to_string(),
            has_media: c.media.is_some(),
            quoted_id: c.quoted_id,
            push_name: env.push_name.clone(),
            media: c.media,
        })));
    }
    out
}

/// The delivery state a receipt from someone else reports about our messages, if it reports
/// one. `inactive` is a delivery to a device that is not in use; `read-self`, `played-self`,
/// `sender`, `retry`, `sent` (a delivery the server downgraded) and the rest say nothing about
/// how far our message got.
pub fn delivery_of_receipt(kind: &ReceiptType) -> Option<Delivery> {
    match kind {
        ReceiptType::Delivered | ReceiptType::Inactive => Some(Delivery::Delivered),
        ReceiptType::Read => Some(Delivery::Read),
        ReceiptType::Played => Some(Delivery::Played),
        _ => None,
    }
}

/// The write a live receipt asks for: the delivery state of the messages it names, in the
/// chat it came from (the peer's JID in a 1:1 chat, the group's JID in a group). `None` for
/// receipts that report no delivery state, and for status updates.
pub fn receipt_effect(r: &Receipt) -> Option<Effect> {
    let state = delivery_of_receipt(&r.r#type)?;
    let chat = r.source.chat.to_non_ad_string();
    let ids: Vec<String> = r
        .message_ids
        .iter()
        .filter(|id| !id.is_empty())
        .cloned()
        .collect();
    if chat.is_empty() || jid::is_broadcast(&chat) || ids.is_empty() {
        return None;
    }
    Some(Effect::Receipt { chat, ids, state })
}

/// The delivery state a history sync records for one of our messages.
fn delivery_of_status(status: Option<wa::web_message_info::Status>) -> Option<Delivery> {
    use wa::web_message_info::Status;
    match status? {
        Status::DELIVERY_ACK => Some(Delivery::Delivered),
        Status::READ => Some(Delivery::Read),
        Status::PLAYED => Some(Delivery::Played),
        _ => None,
    }
}

/// A history sync's writes: mappings, push names and messages (as effects), and one chat
/// update per conversation (name, unread count, time, archive, pin, mute), applied after the
/// messages. `own` is our account JID.
pub fn history_effects(hs: &wa::HistorySync, own: Option<&str>) -> (Vec<Effect>, Vec<ChatUpdate>) {
    let mut effects = Vec::new();
    for m in &hs.phone_number_to_lid_mappings {
        if let (Some(pn), Some(lid)) = (&m.pn_jid, &m.lid_jid)
            && let Some(map) = mapping_of(&account_of(pn), &account_of(lid))
        {
            effects.push(map);
        }
    }
    for p in &hs.pushnames {
        if let (Some(id), Some(name)) = (&p.id, &p.pushname)
            && !name.trim().is_empty()
        {
            effects.push(Effect::Contact(ContactUpdate {
                jid: account_of(id),
                pushname: Some(name.clone()),
                ..ContactUpdate::default()
            }));
        }
    }
    let mut chats = Vec::new();
    for conv in &hs.conversations {
        conversation_effects(conv, own, &mut effects, &mut chats);
    }
    (effects, chats)
}

/// One history conversation's writes: its mappings and messages into `effects`, its chat
/// update into `chats`.
pub fn conversation_effects(
    conv: &wa::Conversation,
    own: Option<&str>,
    effects: &mut Vec<Effect>,
    chats: &mut Vec<ChatUpdate>,
) {
    let chat = account_of(&conv.id);
    if chat.is_empty() {
        return;
    }
    for alt in [&conv.pn_jid, &conv.lid_jid].into_iter().flatten() {
        if let Some(map) = mapping_of(&chat, &account_of(alt)) {
            effects.push(map);
        }
    }
    // Our messages' delivery states, one receipt effect per state after the messages.
    let mut delivered: [Vec<String>; 3] = Default::default();
    for hm in &conv.messages {
        let Some(web) = hm.message.as_option() else {
            continue;
        };
        let Some(key) = web.key.as_option() else {
            continue;
        };
        let from_me = key.from_me.unwrap_or(false);
        if from_me
            && let (Some(state), Some(id)) = (delivery_of_status(web.status), key.id.as_ref())
        {
            let slot = match state {
                Delivery::Played => 2,
                Delivery::Read => 1,
                _ => 0,
            };
            delivered[slot].push(id.clone());
        }
        let participant = key
            .participant
            .clone()
            .or_else(|| web.participant.clone())
            .map(|p| account_of(&p));
        let sender = match (from_me, own) {
            (true, Some(own)) => own.to_string(),
            _ => participant.clone().unwrap_or_else(|| chat.clone()),
        };
        let env = Envelope {
            chat: chat.clone(),
            chat_alt: None,
            sender,
            sender_alt: None,
            id: key.id.clone().unwrap_or_default(),
            timestamp_ms: web.message_timestamp.unwrap_or(0).saturating_mul(1000),
            from_me,
            push_name: web.push_name.clone().filter(|p| !p.trim().is_empty()),
        };
        if let Some(msg) = web.message.as_option() {
            effects.extend(message_effects(&env, msg));
        }
    }
    for (ids, state) in
        delivered
            .into_iter()
            .zip([Delivery::Delivered, Delivery::Read, Delivery::Played])
    {
        if !ids.is_empty() {
            effects.push(Effect::Receipt {
                chat: chat.clone(),
                ids,
                state,
            });
        }
    }
    let ts_secs = conv
        .conversation_timestamp
        .or(conv.last_msg_timestamp)
        .unwrap_or(0);
    chats.push(ChatUpdate {
        jid: chat.clone(),
        name: conv
            .name
            .clone()
            .or_else(|| conv.display_name.clone())
            .filter(|n| !n.trim().is_empty()),
        unread: conv.unread_count,
        timestamp_ms: (ts_secs > 0).then(|| ts_secs.saturating_mul(1000)),
        archived: conv.archived,
        pinned: conv.pinned.map(|p| p > 0),
        muted_until: conv.mute_end_time.map(|t| t.saturating_mul(1000)),
    });
}

/// How many messages a history sync writes per transaction (bounds the memory a large sync
/// needs: the compressed blob, one decoded conversation and one chunk of writes).
pub const HISTORY_CHUNK: usize = 5_000;

/// Streams a history sync blob into `sink` in chunks of about [`HISTORY_CHUNK`] messages:
/// first its mappings and push names (so later chunks canonicalize with them), then its
/// conversations, one decoded at a time. Blocking (zlib and protobuf): run it off the
/// executor. Returns how many messages it handed over.
pub fn stream_history(
    compressed: &[u8],
    max_size: u64,
    own: Option<&str>,
    mut sink: impl FnMut(Vec<Effect>, Vec<ChatUpdate>) -> Result<(), String>,
) -> Result<usize, String> {
    use whatsapp_rust::wacore::history_sync::HistorySyncStream;
    let bad = |e: &dyn std::fmt::Display| format!("a history sync blob did not decode: {e}");
    // Pass 1: skip the conversations, read the rest (mappings, push names).
    let mut first = HistorySyncStream::new(compressed, max_size);
    while first
        .next_conversation_bytes()
        .map_err(|e| bad(&e))?
        .is_some()
    {}
    let rest = first.remainder().map_err(|e| bad(&e))?;
    let (effects, _) = history_effects(&rest, own);
    sink(effects, Vec::new())?;
    // Pass 2: the conversations.
    let mut stream = HistorySyncStream::new(compressed, max_size);
    let mut conv = wa::Conversation::default();
    let (mut effects, mut chats) = (Vec::new(), Vec::new());
    let mut total = 0usize;
    let mut in_chunk = 0usize;
    while stream
        .next_conversation_into(&mut conv)
        .map_err(|e| bad(&e))?
    {
        in_chunk += conv.messages.len();
        conversation_effects(&conv, own, &mut effects, &mut chats);
        if in_chunk >= HISTORY_CHUNK {
            total += in_chunk;
            in_chunk = 0;
            sink(std::mem::take(&mut effects), std::mem::take(&mut chats))?;
        }
    }
    total += in_chunk;
    if !effects.is_empty() || !chats.is_empty() {
        sink(effects, chats)?;
    }
    Ok(total)
}

/// The JID a chat, sender or reactor is stored under: a mapped LID becomes its phone JID.
fn canonical(txn: &WriteTransaction, any: &str) -> crate::store::Result<String> {
    Ok(writes::pn_for_lid_in(txn, any)?.unwrap_or_else(|| any.to_string()))
}

/// Runs `op` against the canonical chat, then the chat as named, until one knows the message.
fn on_target(
    txn: &WriteTransaction,
    chat: &str,
    op: impl Fn(&str) -> crate::store::Result<bool>,
) -> crate::store::Result<bool> {
    let canon = canonical(txn, chat)?;
    if op(&canon)? {
        return Ok(true);
    }
    if canon != chat { op(chat) } else { Ok(false) }
}

/// Applies effects in order inside one write transaction. Mappings and contacts go first, so
/// the batch canonicalizes with what it taught; consecutive messages are stored as one batch;
/// receipts go last, so they find the messages of the same batch (raising a state does not
/// depend on order).
pub fn apply(txn: &WriteTransaction, effects: &[Effect]) -> crate::store::Result<()> {
    // A history sync repeats the same mapping and push name on many messages: each is written
    // once, and each JID is canonicalized once.
    let mut seen_mappings: HashSet<(&str, &str)> = HashSet::new();
    let mut seen_contacts: HashSet<(&str, Option<&str>, Option<&str>)> = HashSet::new();
    for e in effects {
        match e {
            Effect::Mapping { lid, pn } if seen_mappings.insert((lid, pn)) => {
                writes::put_mapping(txn, lid, pn)?
            }
            Effect::Contact(c)
                if c.number.is_some()
                    || c.is_my_contact.is_some()
                    || seen_contacts.insert((
                        c.jid.as_str(),
                        c.name.as_deref(),
                        c.pushname.as_deref(),
                    )) =>
            {
                let mut c = c.clone();
                c.jid = canonical(txn, &c.jid)?;
                writes::upsert_contact(txn, &c)?;
            }
            _ => {}
        }
    }
    let mut canon: HashMap<String, String> = HashMap::new();
    let mut canonical_cached = |jid: &str| -> crate::store::Result<String> {
        if let Some(c) = canon.get(jid) {
            return Ok(c.clone());
        }
        let c = canonical(txn, jid)?;
        canon.insert(jid.to_string(), c.clone());
        Ok(c)
    };
    let mut pending: Vec<NewMessage> = Vec::new();
    let flush = |pending: &mut Vec<NewMessage>| -> crate::store::Result<()> {
        if !pending.is_empty() {
            writes::put_messages(txn, pending)?;
            pending.clear();
        }
        Ok(())
    };
    for e in effects {
        match e {
            Effect::Message(m) => {
                let mut m = NewMessage::clone(m);
                m.chat_jid = canonical_cached(&m.chat_jid)?;
                m.sender = canonical_cached(&m.sender)?;
                pending.push(m);
            }
            Effect::Edit { chat, id, body } => {
                flush(&mut pending)?;
                on_target(txn, chat, |c| writes::edit_message(txn, c, id, body))?;
            }
            Effect::Revoke { chat, id } => {
                flush(&mut pending)?;
                on_target(txn, chat, |c| writes::revoke_message(txn, c, id))?;
            }
            Effect::Reaction {
                chat,
                id,
                reactor,
                emoji,
            } => {
                flush(&mut pending)?;
                let reactor = canonical(txn, reactor)?;
                on_target(txn, chat, |c| {
                    writes::put_reaction(txn, c, id, &reactor, emoji)
                })?;
            }
            Effect::DeleteForMe { chat, id } => {
                flush(&mut pending)?;
                on_target(txn, chat, |c| writes::delete_message(txn, c, id))?;
            }
            Effect::Mapping { .. } | Effect::Contact(_) | Effect::Receipt { .. } => {}
        }
    }
    flush(&mut pending)?;
    for e in effects {
        if let Effect::Receipt { chat, ids, state } = e {
            apply_receipt(txn, chat, ids, *state)?;
        }
    }
    Ok(())
}

/// Raises our messages `ids` of a chat to `state`, under the canonical chat and under the chat
/// as named (a conversation may be stored under both identities). Returns how many of our
/// messages it found.
pub fn apply_receipt(
    txn: &WriteTransaction,
    chat: &str,
    ids: &[String],
    state: Delivery,
) -> crate::store::Result<usize> {
    let canon = canonical(txn, chat)?;
    let mut known = writes::apply_receipt(txn, &canon, ids, state)?.known;
    if canon != chat {
        known += writes::apply_receipt(txn, chat, ids, state)?.known;
    }
    Ok(known)
}

/// Applies a history sync: its effects, then each conversation's chat update. A conversation
/// without an unread count keeps the count the chat had before the sync (its old messages are
/// not new to anyone).
pub fn apply_history(
    txn: &WriteTransaction,
    effects: &[Effect],
    chats: &[ChatUpdate],
) -> crate::store::Result<()> {
    // Mappings first, so the prior counts are read under the canonical chat.
    for e in effects {
        if let Effect::Mapping { lid, pn } = e {
            writes::put_mapping(txn, lid, pn)?;
        }
    }
    let mut prior = Vec::with_capacity(chats.len());
    for c in chats {
        let jid = canonical(txn, &c.jid)?;
        let before = writes::chat_unread(txn, &jid)?;
        prior.push((jid, before));
    }
    apply(txn, effects)?;
    for (c, (jid, before)) in chats.iter().zip(prior) {
        let mut u = c.clone();
        u.jid = jid;
        u.unread = u.unread.or(before).or(Some(0));
        writes::update_chat(txn, &u)?;
    }
    Ok(())
}

/// The writes of a batch of live messages.
pub fn batch_effects(
    batch: &[whatsapp_rust::types::events::InboundMessage],
    own: Option<&str>,
) -> Vec<Effect> {
    batch
        .iter()
        .flat_map(|m| message_effects(&envelope_of(&m.info, own), &m.message))
        .collect()
}

/// Ids of live messages whose app-table write failed in the durability hook (which then
/// committed them to `wa_inbox` alone); the ingest task writes them from `Event::Messages`.
#[derive(Default)]
pub struct HookMisses {
    ids: Mutex<HashSet<String>>,
}

impl HookMisses {
    pub fn add(&self, ids: impl IntoIterator<Item = String>) {
        lock(&self.ids).extend(ids);
    }

    /// Removes and reports whether any of `ids` missed.
    fn take_any(&self, ids: impl IntoIterator<Item = String>) -> bool {
        let mut set = lock(&self.ids);
        if set.is_empty() {
            return false;
        }
        let mut any = false;
        for id in ids {
            any |= set.remove(&id);
        }
        any
    }
}

/// Starts the ingest task: it subscribes now (before the client starts, so nothing is missed),
/// writes what `wa_inbox` holds that the app's tables lack, then handles every event in order.
pub fn start(engine: &Engine) {
    let rx = engine.subscribe();
    let engine = engine.clone();
    crate::runtime::spawn(async move {
        if let Err(e) = reconcile_inbox(&engine).await {
            log::warn!("whatsapp ingest: reconciling wa_inbox failed: {e}");
        }
        while let Ok(ev) = rx.recv().await {
            let Some(raw) = ev.raw else { continue };
            let outcome = std::panic::AssertUnwindSafe(handle(&engine, raw));
            match futures_lite::FutureExt::catch_unwind(outcome).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => log::warn!("whatsapp ingest: {} event: {e}", ev.kind),
                Err(_) => log::error!("whatsapp ingest: handling a {} event panicked", ev.kind),
            }
        }
    })
    .detach();
}

/// How many `wa_inbox` rows reconciliation reads per transaction.
const INBOX_PAGE: usize = 1_000;

/// Writes the messages of `wa_inbox` that the app's tables do not have (edits, revokes and
/// reactions are not replayed: their order against later changes is unknown), then prunes the
/// rows, page by page: the hook writes the app's tables in the same transaction as the inbox,
/// so a row is only waiting for ingest when that write failed or predates it. Returns how many
/// messages were written.
pub async fn reconcile_inbox(engine: &Engine) -> Result<usize, String> {
    let own = engine.own_account_jid();
    let mut after = None;
    let mut written = 0usize;
    loop {
        let rows = engine
            .backend()
            .inbox_page(after.clone(), INBOX_PAGE)
            .await
            .map_err(|e| format!("reading wa_inbox: {e}"))?;
        let Some(last) = rows.last() else {
            break;
        };
        after = Some((last.chat.clone(), last.sender.clone(), last.id.clone()));
        let mut effects = Vec::new();
        for row in &rows {
            let Ok(msg) = whatsapp_rust::waproto::codec::message_decode(&row.message) else {
                continue;
            };
            let env = envelope_of_inbox(row, own.as_deref());
            effects.extend(
                message_effects(&env, &msg)
                    .into_iter()
                    .filter(|e| matches!(e, Effect::Message(_) | Effect::Mapping { .. })),
            );
        }
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = count.clone();
        engine
            .store()
            .write(move |txn| {
                let mut missing = Vec::new();
                for e in &effects {
                    if let Effect::Message(m) = e {
                        let chat = canonical(txn, &m.chat_jid)?;
                        if writes::find_doc(txn, &chat, &m.id)?.is_none()
                            && writes::find_doc(txn, &m.chat_jid, &m.id)?.is_none()
                        {
                            missing.push(e.clone());
                        }
                    } else {
                        missing.push(e.clone());
                    }
                }
                counted.store(
                    missing
                        .iter()
                        .filter(|e| matches!(e, Effect::Message(_)))
                        .count(),
                    std::sync::atomic::Ordering::SeqCst,
                );
                apply(txn, &missing)?;
                super::backend::inbox_remove(txn, &rows)
            })
            .await
            .map_err(|e| format!("writing inbox messages: {e}"))?;
        written += count.load(std::sync::atomic::Ordering::SeqCst);
    }
    if written > 0 {
        log::info!(
            "whatsapp ingest: wrote {written} message(s) from wa_inbox that were not stored"
        );
    }
    Ok(written)
}

async fn write_effects(engine: &Engine, effects: Vec<Effect>) -> Result<(), String> {
    if effects.is_empty() {
        return Ok(());
    }
    engine
        .store()
        .write(move |txn| apply(txn, &effects))
        .await
        .map_err(|e| e.to_string())
}

/// How many of our messages a receipt names, and how many of them it would raise, read
/// without writing (under the canonical chat and the chat as named, as [`apply_receipt`]).
fn receipt_need(
    txn: &redb::ReadTransaction,
    chat: &str,
    ids: &[String],
    state: Delivery,
) -> crate::store::Result<(usize, usize)> {
    use crate::store::queries;
    let canon = match queries::pn_for_lid(txn, chat)? {
        Some(pn) if jid::is_lid(chat) => pn,
        _ => chat.to_string(),
    };
    let (mut known, mut rises) = (0, 0);
    for c in std::iter::once(canon.as_str()).chain((canon != chat).then_some(chat)) {
        for id in ids {
            if let Some(m) = queries::message(txn, c, id)?.filter(|m| m.row.from_me) {
                known += 1;
                rises += usize::from(m.row.delivery() < state);
            }
        }
    }
    Ok((known, rises))
}

/// Stores a receipt; returns how many of our messages it names. It is read first and written
/// only when it raises one (every device of a peer sends its own delivery and read receipts,
/// and most of them change nothing).
async fn receipt_write(
    engine: &Engine,
    chat: &str,
    ids: &[String],
    state: Delivery,
) -> Result<usize, String> {
    let (owned_chat, owned_ids) = (chat.to_string(), ids.to_vec());
    let (known, rises) = engine
        .store()
        .read(move |txn| receipt_need(txn, &owned_chat, &owned_ids, state))
        .await
        .map_err(|e| e.to_string())?;
    if rises > 0 {
        let (chat, ids) = (chat.to_string(), ids.to_vec());
        engine
            .store()
            .write(move |txn| apply_receipt(txn, &chat, &ids, state).map(|_| ()))
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(known)
}

/// When a live receipt that found none of its messages is tried again (ms after the first
/// try, one after the other). Our own send is stored once the server acknowledged it, and a
/// peer on a fast link may answer with its delivery receipt before that write commits.
pub const RECEIPT_RETRY_DELAYS_MS: [u64; 3] = [200, 1_000, 5_000];
/// At most this many receipts wait for a retry at once; beyond it a receipt for unknown
/// messages (say, for messages sent before this store existed) is dropped at once.
const MAX_RECEIPTS_WAITING: usize = 256;
static RECEIPTS_WAITING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn retry_receipt_later(engine: &Engine, chat: String, ids: Vec<String>, state: Delivery) {
    use std::sync::atomic::Ordering;
    if RECEIPTS_WAITING.fetch_add(1, Ordering::SeqCst) >= MAX_RECEIPTS_WAITING {
        RECEIPTS_WAITING.fetch_sub(1, Ordering::SeqCst);
        return;
    }
    let engine = engine.clone();
    crate::runtime::spawn(async move {
        for delay in RECEIPT_RETRY_DELAYS_MS {
            smol::Timer::after(std::time::Duration::from_millis(delay)).await;
            match receipt_write(&engine, &chat, &ids, state).await {
                Ok(0) => {}
                Ok(_) => break,
                Err(e) => {
                    log::info!("whatsapp ingest: storing a receipt for {chat} failed: {e}");
                    break;
                }
            }
        }
        RECEIPTS_WAITING.fetch_sub(1, Ordering::SeqCst);
    })
    .detach();
}

async fn chat_update(engine: &Engine, u: ChatUpdate) -> Result<(), String> {
    engine
        .store()
        .write(move |txn| {
            let mut u = u.clone();
            u.jid = canonical(txn, &u.jid)?;
            writes::update_chat(txn, &u)
        })
        .await
        .map_err(|e| e.to_string())
}

/// Runs `f` on the canonical form of a chat JID in a write.
async fn chat_write(
    engine: &Engine,
    chat: String,
    f: impl Fn(&WriteTransaction, &str) -> crate::store::Result<()> + Send + 'static,
) -> Result<(), String> {
    engine
        .store()
        .write(move |txn| {
            let canon = canonical(txn, &chat)?;
            f(txn, &canon)?;
            if canon != chat {
                f(txn, &chat)?;
            }
            Ok(())
        })
        .await
        .map_err(|e| e.to_string())
}

fn messages_event(engine: &Engine, batch: &MessageBatch) -> Option<Vec<Effect>> {
    let ids = batch.iter().map(|m| m.info.id.to_string());
    let missed = engine.hook_misses().take_any(ids);
    if batch.hook_committed && !missed {
        return None;
    }
    Some(batch_effects(
        &batch.messages,
        engine.own_account_jid().as_deref(),
    ))
}

/// The name and chat of an app-state chat action (for the log).
fn chat_action(ev: &Event) -> Option<(&'static str, String)> {
    let either = |on: bool, yes, no| if on { yes } else { no };
    Some(match ev {
        Event::ArchiveUpdate(a) => (
            either(a.action.archived.unwrap_or(false), "archived", "unarchived"),
            a.jid.to_non_ad_string(),
        ),
        Event::PinUpdate(p) => (
            either(p.action.pinned.unwrap_or(false), "pinned", "unpinned"),
            p.jid.to_non_ad_string(),
        ),
        Event::MuteUpdate(m) => (
            either(m.action.muted.unwrap_or(false), "muted", "unmuted"),
            m.jid.to_non_ad_string(),
        ),
        Event::MarkChatAsReadUpdate(m) => (
            either(
                m.action.read.unwrap_or(true),
                "marked read",
                "marked unread",
            ),
            m.jid.to_non_ad_string(),
        ),
        Event::DeleteChatUpdate(d) => ("deleted", d.jid.to_non_ad_string()),
        Event::ClearChatUpdate(c) => ("cleared", c.jid.to_non_ad_string()),
        _ => return None,
    })
}

async fn handle(engine: &Engine, raw: Arc<Event>) -> Result<(), String> {
    match &*raw {
        Event::Messages(batch) => {
            if let Some(effects) = messages_event(engine, batch) {
                write_effects(engine, effects).await?;
            }
        }
        Event::HistorySync(_) => {
            let own = engine.own_account_jid();
            let store = engine.store().clone();
            let ev = raw.clone();
            let n = smol::unblock(move || {
                let Event::HistorySync(h) = &*ev else {
                    return Ok(0);
                };
                stream_history(
                    h.compressed_bytes(),
                    h.decompressed_size() as u64,
                    own.as_deref(),
                    |effects, chats| {
                        store
                            .write_blocking(move |txn| apply_history(txn, &effects, &chats))
                            .map_err(|e| e.to_string())
                    },
                )
            })
            .await?;
            log::info!("whatsapp ingest: history sync stored {n} message(s)");
        }
        Event::Receipt(r) if r.r#type == ReceiptType::ReadSelf => {
            // Read on another of our devices: the chat is read there.
            let chat = r.source.chat.to_non_ad_string();
            chat_write(engine, chat, |txn, c| {
                writes::mark_chat_read(txn, c).map(|_| ())
            })
            .await?;
        }
        Event::Receipt(r) => {
            if let Some(Effect::Receipt { chat, ids, state }) = receipt_effect(r) {
                let known = receipt_write(engine, &chat, &ids, state).await?;
                if known == 0 && !r.offline {
                    retry_receipt_later(engine, chat, ids, state);
                }
            }
        }
        Event::PushNameUpdate(p) => {
            write_effects(
                engine,
                vec![Effect::Contact(ContactUpdate {
                    jid: p.jid.to_non_ad_string(),
                    pushname: Some(p.new_push_name.clone()),
                    ..ContactUpdate::default()
                })],
            )
            .await?;
        }
        Event::ContactUpdate(c) => {
            let jid = c.jid.to_non_ad_string();
            let mut effects = Vec::new();
            for alt in [&c.action.lid_jid, &c.action.pn_jid].into_iter().flatten() {
                if let Some(map) = mapping_of(&jid, &account_of(alt)) {
                    effects.push(map);
                }
            }
            let name = c
                .action
                .full_name
                .clone()
                .or_else(|| c.action.first_name.clone());
            effects.push(Effect::Contact(ContactUpdate {
                jid,
                name,
                is_my_contact: Some(true),
                ..ContactUpdate::default()
            }));
            write_effects(engine, effects).await?;
        }
        Event::ArchiveUpdate(a) => {
            chat_update(
                engine,
                ChatUpdate {
                    jid: a.jid.to_non_ad_string(),
                    archived: Some(a.action.archived.unwrap_or(false)),
                    ..ChatUpdate::default()
                },
            )
            .await?;
        }
        Event::PinUpdate(p) => {
            chat_update(
                engine,
                ChatUpdate {
                    jid: p.jid.to_non_ad_string(),
                    pinned: Some(p.action.pinned.unwrap_or(false)),
                    ..ChatUpdate::default()
                },
            )
            .await?;
        }
        Event::MuteUpdate(m) => {
            let until = if m.action.muted.unwrap_or(false) {
                match m.action.mute_end_timestamp {
                    Some(t) if t > 0 => t as u64,
                    _ => u64::MAX,
                }
            } else {
                0
            };
            chat_update(
                engine,
                ChatUpdate {
                    jid: m.jid.to_non_ad_string(),
                    muted_until: Some(until),
                    ..ChatUpdate::default()
                },
            )
            .await?;
        }
        Event::MarkChatAsReadUpdate(m) => {
            let chat = m.jid.to_non_ad_string();
            if m.action.read.unwrap_or(true) {
                chat_write(engine, chat, |txn, c| {
                    writes::mark_chat_read(txn, c).map(|_| ())
                })
                .await?;
            } else {
                chat_write(engine, chat, |txn, c| {
                    let unread = writes::chat_unread(txn, c)?.unwrap_or(0).max(1);
                    writes::update_chat(
                        txn,
                        &ChatUpdate {
                            jid: c.to_string(),
                            unread: Some(unread),
                            ..ChatUpdate::default()
                        },
                    )
                })
                .await?;
            }
        }
        Event::DeleteChatUpdate(d) => {
            chat_write(engine, d.jid.to_non_ad_string(), |txn, c| {
                writes::delete_chat(txn, c)
            })
            .await?;
        }
        Event::ClearChatUpdate(c) => {
            chat_write(engine, c.jid.to_non_ad_string(), |txn, c| {
                writes::clear_chat(txn, c).map(|_| ())
            })
            .await?;
        }
        Event::DeleteMessageForMeUpdate(d) => {
            write_effects(
                engine,
                vec![Effect::DeleteForMe {
                    chat: d.chat_jid.to_non_ad_string(),
                    id: d.message_id.clone(),
                }],
            )
            .await?;
        }
        Event::GroupUpdate(g) => {
            // Membership or subject changed: refresh the stored metadata from WhatsApp.
            let group = g.group_jid.to_non_ad_string();
            let engine = engine.clone();
            crate::runtime::spawn(async move {
                if let Err(e) = engine.group_info(&group).await {
                    log::info!("whatsapp ingest: refreshing {group} after a change failed: {e}");
                }
            })
            .detach();
        }
        Event::Connected(_) => {
            // Every group we are in, so list_groups covers groups without messages yet.
            let refresher = engine.clone();
            crate::runtime::spawn(async move {
                match refresher.refresh_groups().await {
                    Ok(n) => log::info!("whatsapp ingest: {n} group(s) refreshed after connecting"),
                    Err(e) => log::info!("whatsapp ingest: refreshing the groups failed: {e}"),
                }
            })
            .detach();
            if let Some(own) = engine.own_account_jid() {
                engine
                    .store()
                    .write(move |txn| writes::set_own_jid(txn, &own))
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        _ => {}
    }
    if let Some((what, chat)) = chat_action(&raw) {
        log::info!("whatsapp ingest: chat {chat} {what}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use whatsapp_rust::waproto::buffa::MessageField;

    fn env(chat: &str, sender: &str, id: &str) -> Envelope {
        Envelope {
            chat: chat.into(),
            sender: sender.into(),
            id: id.into(),
            timestamp_ms: 1_700_000_000_000,
            push_name: Some("Bob".into()),
            ..Envelope::default()
        }
    }

    fn stored(effects: &[Effect]) -> Vec<&NewMessage> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Message(m) => Some(m.as_ref()),
                _ => None,
            })
            .collect()
    }

    const BOB: &str = "15550000002@s.whatsapp.net";

    #[test]
    fn text_message_is_stored_with_its_push_name() {
        let m = wa::Message {
            conversation: Some("hello there".into()),
            ..Default::default()
        };
        let effects = message_effects(&env(BOB, BOB, "3EB0A"), &m);
        let msgs = stored(&effects);
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].body, "hello there");
        assert_eq!(msgs[0].kind, "conversation");
        assert_eq!(msgs[0].chat_jid, BOB);
        assert!(!msgs[0].from_me);
        assert!(effects.contains(&Effect::Contact(ContactUpdate {
            jid: BOB.into(),
            pushname: Some("Bob".into()),
            ..ContactUpdate::default()
        })));
        // A status update is not stored as a chat message.
        let status = message_effects(&env("status@broadcast", BOB, "3EB0S"), &m);
        assert!(stored(&status).is_empty());
    }

    #[test]
    fn extended_text_keeps_the_quote() {
        let m = wa::Message {
            extended_text_message: MessageField::some(wa::message::ExtendedTextMessage {
                text: Some("yes".into()),
                context_info: MessageField::some(wa::ContextInfo {
                    stanza_id: Some("3EB0Q".into()),
                    participant: Some(BOB.into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let effects = message_effects(&env(BOB, BOB, "3EB0B"), &m);
        let msgs = stored(&effects);
        assert_eq!(msgs[0].kind, "extendedTextMessage");
        assert_eq!(msgs[0].body, "yes");
        assert_eq!(msgs[0].quoted_id.as_deref(), Some("3EB0Q"));
    }

    #[test]
    fn image_keeps_caption_and_everything_to_download_it() {
        let m = wa::Message {
            image_message: MessageField::some(wa::message::ImageMessage {
                caption: Some("a cat".into()),
                mimetype: Some("image/jpeg".into()),
                direct_path: Some("/v/t62/abc".into()),
                url: Some("https://mmg.example/abc".into()),
                media_key: Some(vec![1; 32]),
                file_sha256: Some(vec![2; 32]),
                file_enc_sha256: Some(vec![3; 32]),
                file_length: Some(12345),
                ..Default::default()
            }),
            ..Default::default()
        };
        let effects = message_effects(&env(BOB, BOB, "3EB0C"), &m);
        let msg = stored(&effects)[0];
        assert_eq!(msg.kind, "imageMessage");
        assert_eq!(msg.body, "a cat");
        assert!(msg.has_media);
        let media = msg.media.as_ref().unwrap();
        assert_eq!(media.kind, "image");
        assert_eq!(media.mimetype.as_deref(), Some("image/jpeg"));
        assert_eq!(media.direct_path.as_deref(), Some("/v/t62/abc"));
        assert_eq!(media.media_key.as_deref(), Some(&[1u8; 32][..]));
        assert_eq!(media.file_sha256.as_deref(), Some(&[2u8; 32][..]));
        assert_eq!(media.file_enc_sha256.as_deref(), Some(&[3u8; 32][..]));
        assert_eq!(media.size, 12345);
    }

    fn protocol(kind: wa::message::protocol_message::Type, target: &str) -> wa::Message {
        wa::Message {
            protocol_message: MessageField::some(wa::message::ProtocolMessage {
                key: MessageField::some(wa::MessageKey {
                    id: Some(target.into()),
                    remote_jid: Some(BOB.into()),
                    ..Default::default()
                }),
                r#type: Some(kind),
                edited_message: MessageField::some(wa::Message {
                    conversation: Some("fixed text".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn edits_and_revokes_name_their_target() {
        use wa::message::protocol_message::Type;
        let effects = message_effects(
            &env(BOB, BOB, "3EB0E"),
            &protocol(Type::MESSAGE_EDIT, "3EB0A"),
        );
        assert!(stored(&effects).is_empty());
        assert!(effects.contains(&Effect::Edit {
            chat: BOB.into(),
            id: "3EB0A".into(),
            body: "fixed text".into()
        }));
        let effects = message_effects(&env(BOB, BOB, "3EB0R"), &protocol(Type::REVOKE, "3EB0A"));
        assert!(effects.contains(&Effect::Revoke {
            chat: BOB.into(),
            id: "3EB0A".into()
        }));
        // Other protocol messages (key shares, history notifications) store nothing.
        let effects = message_effects(
            &env(BOB, BOB, "3EB0K"),
            &protocol(Type::APP_STATE_SYNC_KEY_SHARE, "x"),
        );
        assert!(
            effects
                .iter()
                .all(|e| matches!(e, Effect::Contact(_) | Effect::Mapping { .. }))
        );
    }

    #[test]
    fn reactions_name_their_target_and_reactor() {
        let m = wa::Message {
            reaction_message: MessageField::some(wa::message::ReactionMessage {
                key: MessageField::some(wa::MessageKey {
                    id: Some("3EB0A".into()),
                    ..Default::default()
                }),
                text: Some("❤️".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let effects = message_effects(&env(BOB, BOB, "3EB0X"), &m);
        assert!(effects.contains(&Effect::Reaction {
            chat: BOB.into(),
            id: "3EB0A".into(),
            reactor: BOB.into(),
            emoji: "❤️".into()
        }));
        assert!(stored(&effects).is_empty());
    }

    #[test]
    fn sender_alt_teaches_the_mapping() {
        let mut e = env("100000000000002@lid", "100000000000002@lid", "3EB0L");
        e.sender_alt = Some(BOB.into());
        e.chat_alt = Some(BOB.into());
        let m = wa::Message {
            conversation: Some("via lid".into()),
            ..Default::default()
        };
        let effects = message_effects(&e, &m);
        let maps: Vec<_> = effects
            .iter()
            .filter(|e| matches!(e, Effect::Mapping { .. }))
            .collect();
        assert_eq!(
            maps,
            [&Effect::Mapping {
                lid: "100000000000002@lid".into(),
                pn: BOB.into()
            }]
        );
    }

    fn history() -> wa::HistorySync {
        let web = |id: &str, from_me: bool, text: &str, ts: u64| wa::HistorySyncMsg {
            message: MessageField::some(wa::WebMessageInfo {
                key: MessageField::some(wa::MessageKey {
                    remote_jid: Some("100000000000002@lid".into()),
                    from_me: Some(from_me),
                    id: Some(id.into()),
                    participant: None,
                }),
                message: MessageField::some(wa::Message {
                    conversation: Some(text.into()),
                    ..Default::default()
                }),
                message_timestamp: Some(ts),
                ..Default::default()
            }),
            ..Default::default()
        };
        wa::HistorySync {
            conversations: vec![wa::Conversation {
                id: "100000000000002@lid".into(),
                name: Some("Bob Builder".into()),
                unread_count: Some(1),
                conversation_timestamp: Some(1_700_000_100),
                messages: vec![
                    web("H2", false, "second from bob", 1_700_000_100),
                    web("H1", true, "first from me", 1_700_000_000),
                ],
                ..Default::default()
            }],
            pushnames: vec![wa::Pushname {
                id: Some(BOB.into()),
                pushname: Some("Bobby".into()),
            }],
            phone_number_to_lid_mappings: vec![wa::PhoneNumberToLIDMapping {
                pn_jid: Some(BOB.into()),
                lid_jid: Some("100000000000002@lid".into()),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn history_sync_conversation_becomes_chat_messages_and_mappings() {
        let own = "15550000001@s.whatsapp.net";
        let (effects, chats) = history_effects(&history(), Some(own));
        let msgs = stored(&effects);
        assert_eq!(msgs.len(), 2);
        let mine = msgs.iter().find(|m| m.id == "H1").unwrap();
        assert!(mine.from_me);
        assert_eq!(mine.sender, own);
        assert_eq!(mine.timestamp_ms, 1_700_000_000_000);
        let theirs = msgs.iter().find(|m| m.id == "H2").unwrap();
        assert_eq!(theirs.sender, "100000000000002@lid");
        assert!(effects.contains(&Effect::Mapping {
            lid: "100000000000002@lid".into(),
            pn: BOB.into()
        }));
        assert_eq!(chats.len(), 1);
        assert_eq!(chats[0].name.as_deref(), Some("Bob Builder"));
        assert_eq!(chats[0].unread, Some(1));
        assert_eq!(chats[0].timestamp_ms, Some(1_700_000_100_000));

        // Applied: one chat under the phone JID, both messages, the unread count from the sync,
        // and the contact's push name.
        let store = crate::store::Store::open_in_memory().unwrap();
        store
            .write_blocking(move |txn| apply_history(txn, &effects, &chats))
            .unwrap();
        let (chat, lid_chat, h2, contact) = store
            .read_blocking(|txn| {
                Ok((
                    crate::store::queries::chat(txn, BOB)?,
                    crate::store::queries::chat(txn, "100000000000002@lid")?,
                    crate::store::queries::message(txn, BOB, "H2")?,
                    crate::store::queries::contact(txn, BOB)?,
                ))
            })
            .unwrap();
        let chat = chat.expect("the chat is stored under the phone JID");
        assert!(lid_chat.is_none());
        assert_eq!(chat.name.as_deref(), Some("Bob Builder"));
        assert_eq!(chat.unread, 1);
        let h2 = h2.expect("H2 stored");
        assert_eq!(
            h2.row.sender, BOB,
            "the LID sender is stored as its phone JID"
        );
        assert_eq!(contact.unwrap().pushname.as_deref(), Some("Bobby"));
    }

    /// zlib with stored (uncompressed) deflate blocks: enough to feed the history stream.
    fn zlib_stored(data: &[u8]) -> Vec<u8> {
        let mut out = vec![0x78, 0x01];
        let mut chunks = data.chunks(65_535).peekable();
        if chunks.peek().is_none() {
            out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
        }
        while let Some(c) = chunks.next() {
            out.push(u8::from(chunks.peek().is_none()));
            let len = c.len() as u16;
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&(!len).to_le_bytes());
            out.extend_from_slice(c);
        }
        let (mut a, mut b) = (1u32, 0u32);
        for &x in data {
            a = (a + x as u32) % 65_521;
            b = (b + a) % 65_521;
        }
        out.extend_from_slice(&((b << 16) | a).to_be_bytes());
        out
    }

    #[test]
    fn a_history_blob_streams_mappings_first_then_conversations() {
        let mut raw = Vec::new();
        whatsapp_rust::waproto::codec::history_sync_encode_into(&history(), &mut raw);
        let blob = zlib_stored(&raw);
        let mut chunks = Vec::new();
        let n = stream_history(
            &blob,
            raw.len() as u64,
            Some("15550000001@s.whatsapp.net"),
            |e, c| {
                chunks.push((e, c));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(n, 2);
        assert_eq!(chunks.len(), 2);
        // First the mappings and push names alone, then the conversation.
        assert!(
            chunks[0]
                .0
                .iter()
                .all(|e| matches!(e, Effect::Mapping { .. } | Effect::Contact(_)))
        );
        assert!(chunks[0].0.contains(&Effect::Mapping {
            lid: "100000000000002@lid".into(),
            pn: BOB.into()
        }));
        assert_eq!(stored(&chunks[1].0).len(), 2);
        assert_eq!(chunks[1].1.len(), 1);
        assert!(stream_history(b"not zlib", 100, None, |_, _| Ok(())).is_err());
    }

    /// History ingest throughput on a file-backed store (run by hand:
    /// `cargo test --features test-network --lib history_ingest_rate -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn history_ingest_rate() {
        const CONVS: usize = 1_000;
        const PER: usize = 100;
        let web = |chat: &str, id: String, i: usize| wa::HistorySyncMsg {
            message: MessageField::some(wa::WebMessageInfo {
                key: MessageField::some(wa::MessageKey {
                    remote_jid: Some(chat.to_string()),
                    from_me: Some(i % 3 == 0),
                    id: Some(id),
                    participant: None,
                }),
                message: MessageField::some(wa::Message {
                    conversation: Some(format!("history message number {i} about the weather")),
                    ..Default::default()
                }),
                message_timestamp: Some(1_600_000_000 + i as u64),
                ..Default::default()
            }),
            ..Default::default()
        };
        let conversations = (0..CONVS)
            .map(|c| {
                let chat = format!("1555{c:07}@s.whatsapp.net");
                wa::Conversation {
                    messages: (0..PER)
                        .map(|i| web(&chat, format!("H{c}X{i}"), i))
                        .collect(),
                    id: chat,
                    unread_count: Some(1),
                    ..Default::default()
                }
            })
            .collect();
        let hs = wa::HistorySync {
            conversations,
            ..Default::default()
        };
        let mut raw = Vec::new();
        whatsapp_rust::waproto::codec::history_sync_encode_into(&hs, &mut raw);
        drop(hs);
        let blob = zlib_stored(&raw);
        let dir = std::env::temp_dir().join(format!("wams-hist-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = crate::store::Store::open(&dir.join("store.redb"), 64).unwrap();
        let start = std::time::Instant::now();
        let n = stream_history(&blob, raw.len() as u64, None, |effects, chats| {
            store
                .write_blocking(move |txn| apply_history(txn, &effects, &chats))
                .map_err(|e| e.to_string())
        })
        .unwrap();
        let secs = start.elapsed().as_secs_f64();
        println!(
            "history ingest: {n} messages in {secs:.2} s = {:.0} messages/s",
            n as f64 / secs
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn applying_twice_stores_once_and_counts_unread_once() {
        let m = wa::Message {
            conversation: Some("only once".into()),
            ..Default::default()
        };
        let effects = message_effects(&env(BOB, BOB, "3EB0ONCE"), &m);
        let store = crate::store::Store::open_in_memory().unwrap();
        for _ in 0..2 {
            let effects = effects.clone();
            store
                .write_blocking(move |txn| apply(txn, &effects))
                .unwrap();
        }
        let chat = store
            .read_blocking(|txn| crate::store::queries::chat(txn, BOB))
            .unwrap()
            .unwrap();
        assert_eq!(chat.unread, 1);
        // Then an edit, a reaction and a revoke reach the stored message.
        use wa::message::protocol_message::Type;
        let mut later = message_effects(
            &env(BOB, BOB, "3EB0E"),
            &protocol(Type::MESSAGE_EDIT, "3EB0ONCE"),
        );
        later.push(Effect::Reaction {
            chat: BOB.into(),
            id: "3EB0ONCE".into(),
            reactor: BOB.into(),
            emoji: "👍".into(),
        });
        store.write_blocking(move |txn| apply(txn, &later)).unwrap();
        let (msg, reactions) = store
            .read_blocking(|txn| {
                let m = crate::store::queries::message(txn, BOB, "3EB0ONCE")?.unwrap();
                let r = crate::store::queries::reactions(txn, m.doc)?;
                Ok((m, r))
            })
            .unwrap();
        assert_eq!(msg.row.body, "fixed text");
        assert_eq!(reactions, [(BOB.to_string(), "👍".to_string())]);
        let revoke = message_effects(&env(BOB, BOB, "3EB0R"), &protocol(Type::REVOKE, "3EB0ONCE"));
        store
            .write_blocking(move |txn| apply(txn, &revoke))
            .unwrap();
        let msg = store
            .read_blocking(|txn| crate::store::queries::message(txn, BOB, "3EB0ONCE"))
            .unwrap()
            .unwrap();
        assert!(msg.row.is_revoked());
        assert!(msg.row.body.is_empty());
    }

    fn receipt(from: &str, ids: &[&str], kind: ReceiptType) -> Receipt {
        use whatsapp_rust::wacore::chrono::DateTime;
        let from: whatsapp_rust::Jid = from.parse().unwrap();
        Receipt::builder()
            .source(whatsapp_rust::types::message::MessageSource {
                chat: from.clone(),
                sender: from,
                ..Default::default()
            })
            .message_ids(ids.iter().map(|s| s.to_string()).collect())
            .timestamp(DateTime::from_timestamp(1_700_000_000, 0).unwrap())
            .r#type(kind)
            .offline(false)
            .build()
    }

    #[test]
    fn receipts_become_delivery_states_of_the_chat_they_came_from() {
        let effect =
            |from: &str, kind: ReceiptType| receipt_effect(&receipt(from, &["A", "B"], kind));
        let expect = |chat: &str, state: Delivery| {
            Some(Effect::Receipt {
                chat: chat.into(),
                ids: vec!["A".into(), "B".into()],
                state,
            })
        };
        // A peer's device: the chat is the peer's user JID.
        assert_eq!(
            effect("15550000002:3@s.whatsapp.net", ReceiptType::Delivered),
            expect(BOB, Delivery::Delivered)
        );
        assert_eq!(
            effect(BOB, ReceiptType::Inactive),
            expect(BOB, Delivery::Delivered)
        );
        assert_eq!(effect(BOB, ReceiptType::Read), expect(BOB, Delivery::Read));
        assert_eq!(
            effect(BOB, ReceiptType::Played),
            expect(BOB, Delivery::Played)
        );
        assert_eq!(
            effect("120363000000000001@g.us", ReceiptType::Read),
            expect("120363000000000001@g.us", Delivery::Read)
        );
        // Receipts that say nothing about how far our message got.
        for kind in [
            ReceiptType::ReadSelf,
            ReceiptType::PlayedSelf,
            ReceiptType::Sender,
            ReceiptType::Retry,
            ReceiptType::Sent,
            ReceiptType::ServerError,
            ReceiptType::Other("view".into()),
        ] {
            assert_eq!(effect(BOB, kind.clone()), None, "{kind:?}");
        }
        assert_eq!(effect("status@broadcast", ReceiptType::Read), None);
        assert_eq!(receipt_effect(&receipt(BOB, &[], ReceiptType::Read)), None);
    }

    #[test]
    fn a_receipt_from_a_mapped_lid_raises_our_message_in_the_phone_chat() {
        let lid = "100000000000002@lid";
        let mut mine = message_effects(
            &Envelope {
                from_me: true,
                ..env(BOB, "15550000001@s.whatsapp.net", "3EB0MINE")
            },
            &wa::Message {
                conversation: Some("ours".into()),
                ..Default::default()
            },
        );
        // The receipt comes first in the batch: it is applied after the messages.
        let mut effects = vec![
            receipt_effect(&receipt(lid, &["3EB0MINE"], ReceiptType::Read)).unwrap(),
            Effect::Mapping {
                lid: lid.into(),
                pn: BOB.into(),
            },
        ];
        effects.append(&mut mine);
        // A late delivery receipt for the same message, and one for an unknown id.
        let late = vec![
            receipt_effect(&receipt(
                BOB,
                &["3EB0MINE", "3EB0NONE"],
                ReceiptType::Delivered,
            ))
            .unwrap(),
        ];
        let store = crate::store::Store::open_in_memory().unwrap();
        store
            .write_blocking(move |txn| apply(txn, &effects))
            .unwrap();
        store.write_blocking(move |txn| apply(txn, &late)).unwrap();
        let msg = store
            .read_blocking(|txn| crate::store::queries::message(txn, BOB, "3EB0MINE"))
            .unwrap()
            .unwrap();
        assert_eq!(msg.row.delivery(), Delivery::Read);
        assert_eq!(msg.row.body, "ours");
        // The read-only check the live path makes first: known under the LID too, and a
        // receipt that would not raise anything is not written.
        let need = |chat: &'static str, state: Delivery| {
            store
                .read_blocking(move |txn| {
                    receipt_need(txn, chat, &["3EB0MINE".into(), "NONE".into()], state)
                })
                .unwrap()
        };
        assert_eq!(need(lid, Delivery::Delivered), (1, 0));
        assert_eq!(need(BOB, Delivery::Played), (1, 1));
        assert_eq!(need("999@s.whatsapp.net", Delivery::Read), (0, 0));
    }

    #[test]
    fn history_sync_keeps_how_far_our_messages_got() {
        use wa::web_message_info::Status;
        let own = "15550000001@s.whatsapp.net";
        let mut hs = history();
        let conv = &mut hs.conversations[0];
        for (i, status) in [Status::DELIVERY_ACK, Status::READ].into_iter().enumerate() {
            let mut m = conv.messages[1].clone();
            if let Some(web) = m.message.as_option_mut() {
                web.status = Some(status);
                if let Some(k) = web.key.as_option_mut() {
                    k.id = Some(format!("MINE{i}"));
                }
            }
            conv.messages.push(m);
        }
        // Theirs with a status: not ours, so no state.
        if let Some(web) = conv.messages[0].message.as_option_mut() {
            web.status = Some(Status::READ);
        }
        let (effects, chats) = history_effects(&hs, Some(own));
        let receipts: Vec<&Effect> = effects
            .iter()
            .filter(|e| matches!(e, Effect::Receipt { .. }))
            .collect();
        assert_eq!(receipts.len(), 2, "{receipts:?}");
        let store = crate::store::Store::open_in_memory().unwrap();
        store
            .write_blocking(move |txn| apply_history(txn, &effects, &chats))
            .unwrap();
        let state = |id: &'static str| {
            store
                .read_blocking(move |txn| crate::store::queries::message(txn, BOB, id))
                .unwrap()
                .unwrap()
                .row
                .delivery()
        };
        assert_eq!(state("H1"), Delivery::Sent);
        assert_eq!(state("MINE0"), Delivery::Delivered);
        assert_eq!(state("MINE1"), Delivery::Read);
        assert_eq!(state("H2"), Delivery::Sent);
    }
}
