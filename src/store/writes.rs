//! Every change to the app's tables: messages, chats, contacts, mappings, groups.
//!
//! Owns: the write rules (run inside a `WriteTransaction` on the writer thread, see `mod.rs`).
//! Must not: commit, block on anything but redb, or decide what WhatsApp meant (ingest does).
//!
//! Rules:
//! - A message is stored once per (chat, id). Storing it again only upgrades a stub: an empty
//!   body gets text, an `unknown` type gets a type, `has_media` goes false → true, media
//!   references are added.
//! - A chat's last message is the newest by time, whatever order messages arrive in; older
//!   history never replaces it. Its name is never reset by messages.
//! - The unread count grows only for a new message from someone else that is newer than the
//!   chat's read mark; reading the chat moves the mark to its newest message.
//! - Contacts merge field by field: a missing field keeps the stored value.
//! - Our own messages' delivery state (sent → delivered → read → played) only rises, from
//!   receipts ([`apply_receipt`]); it never touches the text or the search index.

use super::model::{
    ChatRow, ContactRow, DOC_SEQ_BITS, Delivery, Doc, FLAG_EDITED, FLAG_REVOKED, GroupRow,
    MediaRef, MessageRow, doc_floor, doc_time,
};
use super::schema::*;
use super::{Context, Result, StoreError, jid, search};
use redb::{ReadableTable, WriteTransaction};

/// A message to store.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewMessage {
    pub chat_jid: String,
    pub id: String,
    pub sender: String,
    pub from_me: bool,
    pub timestamp_ms: u64,
    pub body: String,
    pub kind: String,
    pub has_media: bool,
    pub quoted_id: Option<String>,
    pub push_name: Option<String>,
    pub media: Option<MediaRef>,
}

/// What storing a message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub doc: Doc,
    /// False when the message was already stored (it may have been upgraded).
    pub inserted: bool,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The chat's number, allocating one for a new chat.
pub fn chat_number(txn: &WriteTransaction, chat_jid: &str) -> Result<u32> {
    let mut numbers = txn.open_table(CHAT_NUMBERS).ctx("opening chat_numbers")?;
    if let Some(n) = numbers.get(chat_jid).ctx("reading chat_numbers")? {
        return Ok(n.value());
    }
    let mut jids = txn.open_table(CHAT_JIDS).ctx("opening chat_jids")?;
    let next = match jids.last().ctx("reading chat_jids")? {
        Some((k, _)) => k
            .value()
            .checked_add(1)
            .ok_or_else(|| StoreError("too many chats".into()))?,
        None => 1,
    };
    numbers.insert(chat_jid, next).ctx("writing chat_numbers")?;
    jids.insert(next, chat_jid).ctx("writing chat_jids")?;
    Ok(next)
}

fn load_chat(txn: &WriteTransaction, chat_jid: &str) -> Result<Option<ChatRow>> {
    let chats = txn.open_table(CHATS).ctx("opening chats")?;
    let row = chats.get(chat_jid).ctx("reading chats")?;
    row.map(|v| ChatRow::decode(v.value())).transpose()
}

/// Stores a chat row and keeps `chats_by_time` in step.
fn save_chat(
    txn: &WriteTransaction,
    chat_jid: &str,
    old: Option<&ChatRow>,
    new: &ChatRow,
) -> Result<()> {
    let mut by_time = txn.open_table(CHATS_BY_TIME).ctx("opening chats_by_time")?;
    if let Some(old) = old
        && old.ts != new.ts
    {
        by_time
            .remove((old.ts, chat_jid))
            .ctx("updating chats_by_time")?;
    }
    by_time
        .insert((new.ts, chat_jid), ())
        .ctx("updating chats_by_time")?;
    let mut chats = txn.open_table(CHATS).ctx("opening chats")?;
    chats
        .insert(chat_jid, new.encode().as_slice())
        .ctx("writing chats")?;
    Ok(())
}

fn new_chat(chat_jid: &str) -> ChatRow {
    ChatRow {
        is_group: jid::is_group(chat_jid),
        ..ChatRow::default()
    }
}

/// The number `chat_jid` is stored under, if it is stored.
fn chat_no(txn: &WriteTransaction, chat_jid: &str) -> Result<Option<u32>> {
    let numbers = txn.open_table(CHAT_NUMBERS).ctx("opening chat_numbers")?;
    Ok(numbers
        .get(chat_jid)
        .ctx("reading chat_numbers")?
        .map(|n| n.value()))
}

/// The doc of a stored message, if any.
pub fn find_doc(txn: &WriteTransaction, chat_jid: &str, id: &str) -> Result<Option<Doc>> {
    let Some(no) = chat_no(txn, chat_jid)? else {
        return Ok(None);
    };
    let ids = txn.open_table(MESSAGE_IDS).ctx("opening message_ids")?;
    Ok(ids
        .get((no, id))
        .ctx("reading message_ids")?
        .map(|d| d.value()))
}

fn load_message(txn: &WriteTransaction, doc: Doc) -> Result<Option<MessageRow>> {
    let messages = txn.open_table(MESSAGES).ctx("opening messages")?;
    let row = messages.get(doc).ctx("reading messages")?;
    row.map(|v| MessageRow::decode(v.value())).transpose()
}

fn save_message(txn: &WriteTransaction, doc: Doc, row: &MessageRow) -> Result<()> {
    let mut messages = txn.open_table(MESSAGES).ctx("opening messages")?;
    messages
        .insert(doc, row.encode().as_slice())
        .ctx("writing messages")?;
    Ok(())
}

/// Stores a message (or upgrades the stored stub) and updates its chat. The rules live in
/// [`put_messages`], which this calls with a batch of one.
pub fn put_message(txn: &WriteTransaction, m: &NewMessage) -> Result<Stored> {
    put_messages(txn, std::slice::from_ref(m))?
        .pop()
        .ok_or_else(|| StoreError("storing a message returned nothing".into()))
}

/// Replaces a message's text (an edit). Returns false if the message is unknown.
pub fn edit_message(
    txn: &WriteTransaction,
    chat_jid: &str,
    id: &str,
    new_body: &str,
) -> Result<bool> {
    let Some(doc) = find_doc(txn, chat_jid, id)? else {
        return Ok(false);
    };
    let Some(mut row) = load_message(txn, doc)? else {
        return Ok(false);
    };
    if row.is_revoked() {
        return Ok(true);
    }
    if !row.body.is_empty() {
        search::unindex(txn, doc, &row.body)?;
    }
    row.body = new_body.to_string();
    row.flags |= FLAG_EDITED;
    if !row.body.is_empty() {
        search::index(txn, doc, &row.body)?;
    }
    save_message(txn, doc, &row)?;
    Ok(true)
}

/// Marks a message as revoked ("deleted for everyone"): its text is gone and it leaves the
/// search index; the row stays so the conversation keeps its shape.
pub fn revoke_message(txn: &WriteTransaction, chat_jid: &str, id: &str) -> Result<bool> {
    let Some(doc) = find_doc(txn, chat_jid, id)? else {
        return Ok(false);
    };
    let Some(mut row) = load_message(txn, doc)? else {
        return Ok(false);
    };
    if !row.body.is_empty() {
        search::unindex(txn, doc, &row.body)?;
    }
    row.body.clear();
    row.flags |= FLAG_REVOKED;
    save_message(txn, doc, &row)?;
    Ok(true)
}

/// Deletes a message entirely ("deleted for me"). Returns false if it is unknown.
pub fn delete_message(txn: &WriteTransaction, chat_jid: &str, id: &str) -> Result<bool> {
    let Some(doc) = find_doc(txn, chat_jid, id)? else {
        return Ok(false);
    };
    remove_doc(txn, doc)?;
    let old = load_chat(txn, chat_jid)?;
    if let Some(old) = old
        && old.last_doc == doc
    {
        let mut chat = old.clone();
        chat.last_doc = newest_doc(txn, chat_jid)?.unwrap_or(0);
        save_chat(txn, chat_jid, Some(&old), &chat)?;
    }
    Ok(true)
}

fn newest_doc(txn: &WriteTransaction, chat_jid: &str) -> Result<Option<Doc>> {
    let Some(no) = chat_no(txn, chat_jid)? else {
        return Ok(None);
    };
    let timeline = txn.open_table(CHAT_TIMELINE).ctx("opening chat_timeline")?;
    let mut range = timeline
        .range((no, 0)..=(no, u64::MAX))
        .ctx("reading chat_timeline")?;
    Ok(range
        .next_back()
        .transpose()
        .ctx("reading chat_timeline")?
        .map(|(k, _)| k.value().1))
}

fn remove_doc(txn: &WriteTransaction, doc: Doc) -> Result<()> {
    let Some(row) = load_message(txn, doc)? else {
        return Ok(());
    };
    if !row.body.is_empty() {
        search::unindex(txn, doc, &row.body)?;
    }
    txn.open_table(MESSAGES)
        .ctx("opening messages")?
        .remove(doc)
        .ctx("deleting from messages")?;
    txn.open_table(CHAT_TIMELINE)
        .ctx("opening chat_timeline")?
        .remove((row.chat_no, doc))
        .ctx("deleting from chat_timeline")?;
    txn.open_table(MESSAGE_IDS)
        .ctx("opening message_ids")?
        .remove((row.chat_no, row.id.as_str()))
        .ctx("deleting from message_ids")?;
    txn.open_table(MEDIA)
        .ctx("opening media")?
        .remove(doc)
        .ctx("deleting from media")?;
    let mut reactions = txn.open_table(REACTIONS).ctx("opening reactions")?;
    let reactors: Vec<String> = reactions
        .range((doc, "")..)
        .ctx("reading reactions")?
        .map_while(|e| {
            e.ok()
                .filter(|(k, _)| k.value().0 == doc)
                .map(|(k, _)| k.value().1.to_string())
        })
        .collect();
    for r in reactors {
        reactions
            .remove((doc, r.as_str()))
            .ctx("deleting reactions")?;
    }
    Ok(())
}

/// Records a reaction; an empty emoji removes the reactor's reaction. False if the message is
/// unknown.
pub fn put_reaction(
    txn: &WriteTransaction,
    chat_jid: &str,
    id: &str,
    reactor: &str,
    emoji: &str,
) -> Result<bool> {
    let Some(doc) = find_doc(txn, chat_jid, id)? else {
        return Ok(false);
    };
    let mut reactions = txn.open_table(REACTIONS).ctx("opening reactions")?;
    if emoji.is_empty() {
        reactions
            .remove((doc, reactor))
            .ctx("deleting a reaction")?;
    } else {
        reactions
            .insert((doc, reactor), emoji)
            .ctx("writing a reaction")?;
    }
    Ok(true)
}

/// Attaches or replaces a message's media reference (e.g. after a download saved a copy).
pub fn put_media(
    txn: &WriteTransaction,
    chat_jid: &str,
    id: &str,
    media: &MediaRef,
) -> Result<bool> {
    let Some(doc) = find_doc(txn, chat_jid, id)? else {
        return Ok(false);
    };
    txn.open_table(MEDIA)
        .ctx("opening media")?
        .insert(doc, media.encode().as_slice())
        .ctx("writing media")?;
    Ok(true)
}

/// A change to a chat's own fields. `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChatUpdate {
    pub jid: String,
    pub name: Option<String>,
    pub unread: Option<u32>,
    /// Last activity (ms); only ever moves forward.
    pub timestamp_ms: Option<u64>,
    pub archived: Option<bool>,
    pub pinned: Option<bool>,
    pub muted_until: Option<u64>,
}

pub fn update_chat(txn: &WriteTransaction, u: &ChatUpdate) -> Result<()> {
    if u.jid.is_empty() {
        return Err(StoreError("a chat needs a JID".into()));
    }
    chat_number(txn, &u.jid)?;
    let old = load_chat(txn, &u.jid)?;
    let mut chat = old.clone().unwrap_or_else(|| new_chat(&u.jid));
    if let Some(name) = u
        .name
        .as_ref()
        .filter(|n| !n.trim().is_empty() && **n != u.jid)
    {
        chat.name = Some(name.clone());
    }
    if let Some(n) = u.unread {
        chat.unread = n;
        if n == 0 {
            chat.read_upto = chat.read_upto.max(chat.last_doc);
        }
    }
    if let Some(ts) = u.timestamp_ms {
        chat.ts = chat.ts.max(ts);
    }
    if let Some(a) = u.archived {
        chat.archived = a;
    }
    if let Some(p) = u.pinned {
        chat.pinned = p;
    }
    if let Some(m) = u.muted_until {
        chat.muted_until = m;
    }
    save_chat(txn, &u.jid, old.as_ref(), &chat)
}

/// Marks a chat read up to its newest message. Returns the ids of the messages that were unread
/// (from others, newer than the old read mark), oldest first.
pub fn mark_chat_read(txn: &WriteTransaction, chat_jid: &str) -> Result<Vec<String>> {
    let Some(old) = load_chat(txn, chat_jid)? else {
        return Ok(Vec::new());
    };
    let mut ids = Vec::new();
    if let Some(no) = chat_no(txn, chat_jid)? {
        let timeline = txn.open_table(CHAT_TIMELINE).ctx("opening chat_timeline")?;
        let messages = txn.open_table(MESSAGES).ctx("opening messages")?;
        for entry in timeline
            .range((no, old.read_upto.saturating_add(1))..=(no, u64::MAX))
            .ctx("reading chat_timeline")?
        {
            let (k, _) = entry.ctx("reading chat_timeline")?;
            if let Some(v) = messages.get(k.value().1).ctx("reading messages")? {
                let row = MessageRow::decode(v.value())?;
                if !row.from_me {
                    ids.push(row.id);
                }
            }
        }
    }
    let mut chat = old.clone();
    chat.read_upto = chat.read_upto.max(chat.last_doc);
    chat.unread = 0;
    save_chat(txn, chat_jid, Some(&old), &chat)?;
    Ok(ids)
}

/// Deletes every message of a chat, keeping the chat ("clear chat").
pub fn clear_chat(txn: &WriteTransaction, chat_jid: &str) -> Result<u64> {
    let docs: Vec<Doc> = {
        let Some(no) = chat_no(txn, chat_jid)? else {
            return Ok(0);
        };
        let timeline = txn.open_table(CHAT_TIMELINE).ctx("opening chat_timeline")?;
        let mut out = Vec::new();
        for e in timeline
            .range((no, 0)..=(no, u64::MAX))
            .ctx("reading chat_timeline")?
        {
            out.push(e.ctx("reading chat_timeline")?.0.value().1);
        }
        out
    };
    for doc in &docs {
        remove_doc(txn, *doc)?;
    }
    if let Some(old) = load_chat(txn, chat_jid)? {
        let chat = ChatRow {
            last_doc: 0,
            unread: 0,
            ..old.clone()
        };
        save_chat(txn, chat_jid, Some(&old), &chat)?;
    }
    Ok(docs.len() as u64)
}

/// Deletes a chat and its messages.
pub fn delete_chat(txn: &WriteTransaction, chat_jid: &str) -> Result<()> {
    clear_chat(txn, chat_jid)?;
    if let Some(old) = load_chat(txn, chat_jid)? {
        txn.open_table(CHATS_BY_TIME)
            .ctx("opening chats_by_time")?
            .remove((old.ts, chat_jid))
            .ctx("deleting chat")?;
        txn.open_table(CHATS)
            .ctx("opening chats")?
            .remove(chat_jid)
            .ctx("deleting chat")?;
    }
    Ok(())
}

/// A change to a contact. `None` keeps the stored value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContactUpdate {
    pub jid: String,
    pub name: Option<String>,
    pub pushname: Option<String>,
    pub number: Option<String>,
    pub is_my_contact: Option<bool>,
}

pub fn upsert_contact(txn: &WriteTransaction, u: &ContactUpdate) -> Result<()> {
    if u.jid.is_empty() {
        return Err(StoreError("a contact needs a JID".into()));
    }
    let mut contacts = txn.open_table(CONTACTS).ctx("opening contacts")?;
    let old = contacts
        .get(u.jid.as_str())
        .ctx("reading contacts")?
        .map(|v| ContactRow::decode(v.value()))
        .transpose()?;
    let mut row = old.unwrap_or_default();
    let keep = |new: &Option<String>| new.as_ref().filter(|s| !s.trim().is_empty()).cloned();
    if let Some(n) = keep(&u.name) {
        row.name = Some(n);
    }
    if let Some(p) = keep(&u.pushname) {
        row.pushname = Some(p);
    }
    if let Some(n) = u.number.as_deref().and_then(jid::digits) {
        row.number = Some(n);
    } else if row.number.is_none() && jid::is_pn(&u.jid) {
        row.number = Some(jid::user(&u.jid).to_string());
    }
    if let Some(m) = u.is_my_contact {
        row.is_my_contact = row.is_my_contact || m;
    }
    row.updated_at = now_ms();
    contacts
        .insert(u.jid.as_str(), row.encode().as_slice())
        .ctx("writing contacts")?;
    Ok(())
}

/// Records that a LID and a phone JID are the same person.
pub fn put_mapping(txn: &WriteTransaction, lid: &str, pn: &str) -> Result<()> {
    if !jid::is_lid(lid) || !jid::is_pn(pn) {
        return Err(StoreError(format!(
            "a mapping needs a LID and a phone JID, got {lid:?} and {pn:?}"
        )));
    }
    let mut l2p = txn.open_table(LID_TO_PN).ctx("opening lid_to_pn")?;
    let mut p2l = txn.open_table(PN_TO_LID).ctx("opening pn_to_lid")?;
    let old_pn = l2p
        .insert(lid, pn)
        .ctx("writing lid_to_pn")?
        .map(|v| v.value().to_string());
    if let Some(old) = old_pn.filter(|o| o != pn) {
        p2l.remove(old.as_str()).ctx("updating pn_to_lid")?;
    }
    p2l.insert(pn, lid).ctx("writing pn_to_lid")?;
    Ok(())
}

/// Group metadata plus, when known, the full participant list (which replaces the stored one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupUpdate {
    pub jid: String,
    pub subject: Option<String>,
    pub owner: Option<String>,
    pub subject_owner: Option<String>,
    pub subject_time: Option<u64>,
    pub desc: Option<String>,
    pub creation: Option<u64>,
    pub announce: Option<bool>,
    pub restrict: Option<bool>,
    /// `(member JID, role)`; role is `""`, `admin` or `superadmin`.
    pub participants: Option<Vec<(String, String)>>,
}

pub fn upsert_group(txn: &WriteTransaction, u: &GroupUpdate) -> Result<()> {
    if !jid::is_group(&u.jid) {
        return Err(StoreError(format!(
            "{:?} is not a group JID (…@g.us)",
            u.jid
        )));
    }
    let mut groups = txn.open_table(GROUPS).ctx("opening groups")?;
    let old = groups
        .get(u.jid.as_str())
        .ctx("reading groups")?
        .map(|v| GroupRow::decode(v.value()))
        .transpose()?;
    let mut row = old.unwrap_or_default();
    if u.subject.is_some() {
        row.subject = u.subject.clone();
    }
    if u.owner.is_some() {
        row.owner = u.owner.clone();
    }
    if u.subject_owner.is_some() {
        row.subject_owner = u.subject_owner.clone();
    }
    if let Some(t) = u.subject_time {
        row.subject_time = t;
    }
    if u.desc.is_some() {
        row.desc = u.desc.clone();
    }
    if let Some(c) = u.creation {
        row.creation = c;
    }
    if let Some(a) = u.announce {
        row.announce = a;
    }
    if let Some(r) = u.restrict {
        row.restrict = r;
    }
    row.updated_at = now_ms();
    if let Some(list) = u.participants.as_ref().filter(|l| !l.is_empty()) {
        let mut members = txn.open_table(GROUP_MEMBERS).ctx("opening group_members")?;
        let old: Vec<String> = members
            .range((u.jid.as_str(), "")..)
            .ctx("reading group_members")?
            .map_while(|e| {
                e.ok()
                    .filter(|(k, _)| k.value().0 == u.jid)
                    .map(|(k, _)| k.value().1.to_string())
            })
            .collect();
        for m in &old {
            members
                .remove((u.jid.as_str(), m.as_str()))
                .ctx("updating group_members")?;
        }
        for (member, role) in list {
            members
                .insert((u.jid.as_str(), member.as_str()), role.as_str())
                .ctx("writing group_members")?;
        }
        row.size = list.len() as u64;
    }
    groups
        .insert(u.jid.as_str(), row.encode().as_slice())
        .ctx("writing groups")?;
    drop(groups);
    if let Some(subject) = &u.subject {
        update_chat(
            txn,
            &ChatUpdate {
                jid: u.jid.clone(),
                name: Some(subject.clone()),
                ..ChatUpdate::default()
            },
        )?;
    }
    Ok(())
}

/// Stores the account's own JID (used as the sender of our messages).
pub fn set_own_jid(txn: &WriteTransaction, own: &str) -> Result<()> {
    txn.open_table(META)
        .ctx("opening meta")?
        .insert("own_jid", own.as_bytes())
        .ctx("writing meta")?;
    Ok(())
}

/// The time of a doc, for callers that need it.
pub fn time_of(doc: Doc) -> u64 {
    doc_time(doc)
}

/// Stores many messages at once: exactly the rules of [`put_message`], applied in order, but
/// each table is opened once and each chat row is written once per call (history sync, import
/// and demo data write thousands of messages a transaction). Returns one [`Stored`] per message,
/// in order. The bodies are indexed for search at the end, in the same transaction.
pub fn put_messages(txn: &WriteTransaction, batch: &[NewMessage]) -> Result<Vec<Stored>> {
    if batch
        .iter()
        .any(|m| m.chat_jid.is_empty() || m.id.is_empty())
    {
        return Err(StoreError("a message needs a chat JID and an id".into()));
    }
    let mut out = Vec::with_capacity(batch.len());
    // (doc, index into `batch`) of bodies to index once the tables are closed.
    let mut to_index: Vec<(Doc, usize)> = Vec::new();
    {
        let mut numbers = txn.open_table(CHAT_NUMBERS).ctx("opening chat_numbers")?;
        let mut jids = txn.open_table(CHAT_JIDS).ctx("opening chat_jids")?;
        let mut meta = txn.open_table(META).ctx("opening meta")?;
        let mut messages = txn.open_table(MESSAGES).ctx("opening messages")?;
        let mut timeline = txn.open_table(CHAT_TIMELINE).ctx("opening chat_timeline")?;
        let mut ids = txn.open_table(MESSAGE_IDS).ctx("opening message_ids")?;
        let mut media = txn.open_table(MEDIA).ctx("opening media")?;
        let mut chats = txn.open_table(CHATS).ctx("opening chats")?;
        // Chat rows touched by this batch: (as stored before, as it is now).
        let mut touched: std::collections::HashMap<&str, (Option<ChatRow>, ChatRow)> =
            std::collections::HashMap::new();
        let start_seq = meta_u64(&meta, "seq")?;
        let mut seq = start_seq;
        let mask = (1u64 << DOC_SEQ_BITS) - 1;
        for (i, m) in batch.iter().enumerate() {
            let known_no = numbers
                .get(m.chat_jid.as_str())
                .ctx("reading chat_numbers")?
                .map(|n| n.value());
            let known_doc = match known_no {
                Some(no) => ids
                    .get((no, m.id.as_str()))
                    .ctx("reading message_ids")?
                    .map(|d| d.value()),
                None => None,
            };
            if let Some(doc) = known_doc {
                // Already stored: only upgrade a stub (see `put_message`).
                let old = messages.get(doc).ctx("reading messages")?;
                if let Some(mut row) = old.map(|v| MessageRow::decode(v.value())).transpose()? {
                    let mut changed = false;
                    if row.body.is_empty() && !m.body.is_empty() && !row.is_revoked() {
                        row.body = m.body.clone();
                        to_index.push((doc, i));
                        changed = true;
                    }
                    if row.kind == "unknown" && !m.kind.is_empty() && m.kind != "unknown" {
                        row.kind = m.kind.clone();
                        changed = true;
                    }
                    if !row.has_media && (m.has_media || m.media.is_some()) {
                        row.has_media = true;
                        changed = true;
                    }
                    if row.quoted_id.is_none() && m.quoted_id.is_some() {
                        row.quoted_id = m.quoted_id.clone();
                        changed = true;
                    }
                    if changed {
                        messages
                            .insert(doc, row.encode().as_slice())
                            .ctx("writing messages")?;
                    }
                    if let Some(new_media) = &m.media
                        && media.get(doc).ctx("reading media")?.is_none()
                    {
                        media
                            .insert(doc, new_media.encode().as_slice())
                            .ctx("writing media")?;
                    }
                }
                out.push(Stored {
                    doc,
                    inserted: false,
                });
                continue;
            }
            let chat_no = match known_no {
                Some(no) => no,
                None => {
                    let next = match jids.last().ctx("reading chat_jids")? {
                        Some((k, _)) => k
                            .value()
                            .checked_add(1)
                            .ok_or_else(|| StoreError("too many chats".into()))?,
                        None => 1,
                    };
                    numbers
                        .insert(m.chat_jid.as_str(), next)
                        .ctx("writing chat_numbers")?;
                    jids.insert(next, m.chat_jid.as_str())
                        .ctx("writing chat_jids")?;
                    next
                }
            };
            let doc = loop {
                seq = seq.wrapping_add(1);
                let doc = doc_floor(m.timestamp_ms) | (seq & mask);
                if messages.get(doc).ctx("reading messages")?.is_none() {
                    break doc;
                }
            };
            let row = MessageRow {
                chat_no,
                id: m.id.clone(),
                sender: m.sender.clone(),
                from_me: m.from_me,
                body: m.body.clone(),
                kind: if m.kind.is_empty() {
                    "unknown".into()
                } else {
                    m.kind.clone()
                },
                has_media: m.has_media || m.media.is_some(),
                flags: 0,
                quoted_id: m.quoted_id.clone(),
                push_name: m.push_name.clone(),
            };
            messages
                .insert(doc, row.encode().as_slice())
                .ctx("writing messages")?;
            timeline
                .insert((chat_no, doc), ())
                .ctx("writing chat_timeline")?;
            ids.insert((chat_no, m.id.as_str()), doc)
                .ctx("writing message_ids")?;
            if let Some(new_media) = &m.media {
                media
                    .insert(doc, new_media.encode().as_slice())
                    .ctx("writing media")?;
            }
            if !row.body.is_empty() {
                to_index.push((doc, i));
            }
            let entry = match touched.entry(m.chat_jid.as_str()) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    let old = chats
                        .get(m.chat_jid.as_str())
                        .ctx("reading chats")?
                        .map(|v| ChatRow::decode(v.value()))
                        .transpose()?;
                    let now = old.clone().unwrap_or_else(|| new_chat(&m.chat_jid));
                    e.insert((old, now))
                }
            };
            let chat = &mut entry.1;
            if doc > chat.last_doc {
                chat.last_doc = doc;
            }
            chat.ts = chat.ts.max(m.timestamp_ms);
            if !m.from_me
                && doc > chat.read_upto
                && row.kind != "reactionMessage"
                && row.kind != "protocolMessage"
            {
                chat.unread = chat.unread.saturating_add(1);
            }
            if m.from_me && doc > chat.read_upto {
                // Writing in a chat means everything before was seen.
                chat.read_upto = doc;
                chat.unread = 0;
            }
            out.push(Stored {
                doc,
                inserted: true,
            });
        }
        if seq != start_seq {
            meta.insert("seq", &seq.to_le_bytes()[..])
                .ctx("writing meta")?;
        }
        let mut by_time = txn.open_table(CHATS_BY_TIME).ctx("opening chats_by_time")?;
        for (chat_jid, (old, new)) in &touched {
            if let Some(old) = old
                && old.ts != new.ts
            {
                by_time
                    .remove((old.ts, *chat_jid))
                    .ctx("updating chats_by_time")?;
            }
            by_time
                .insert((new.ts, *chat_jid), ())
                .ctx("updating chats_by_time")?;
            chats
                .insert(*chat_jid, new.encode().as_slice())
                .ctx("writing chats")?;
        }
    }
    let bodies: Vec<(Doc, &str)> = to_index
        .iter()
        .filter_map(|(doc, i)| batch.get(*i).map(|m| (*doc, m.body.as_str())))
        .collect();
    search::index_many(txn, &bodies)?;
    Ok(out)
}

/// Sets flags (`FLAG_EDITED`, `FLAG_REVOKED`) on a stored message without touching its text or
/// the search index (import of a message that was edited elsewhere). False if it is unknown.
pub fn add_message_flags(
    txn: &WriteTransaction,
    chat_jid: &str,
    id: &str,
    flags: u64,
) -> Result<bool> {
    let Some(doc) = find_doc(txn, chat_jid, id)? else {
        return Ok(false);
    };
    let Some(mut row) = load_message(txn, doc)? else {
        return Ok(false);
    };
    if row.flags & flags != flags {
        row.flags |= flags;
        save_message(txn, doc, &row)?;
    }
    Ok(true)
}

/// What [`apply_receipt`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReceiptApplied {
    /// Ids that name one of our own stored messages in the chat.
    pub known: usize,
    /// Of those, how many rose to a higher state.
    pub raised: usize,
}

/// Records a delivery, read or played receipt for our own messages `ids` in a chat. Each of
/// our stored messages rises to `state` and never falls: a late delivery receipt after a read
/// keeps "read". Unknown ids and messages from others are ignored; the text and the search
/// index are not touched.
///
/// Groups are kept simple: WhatsApp sends one receipt per member, and a message counts as
/// delivered (read, played) as soon as ANY member's receipt says so; there is no per-member
/// state.
pub fn apply_receipt(
    txn: &WriteTransaction,
    chat_jid: &str,
    ids: &[String],
    state: Delivery,
) -> Result<ReceiptApplied> {
    let mut out = ReceiptApplied::default();
    let Some(no) = chat_no(txn, chat_jid)? else {
        return Ok(out);
    };
    let message_ids = txn.open_table(MESSAGE_IDS).ctx("opening message_ids")?;
    let mut messages = txn.open_table(MESSAGES).ctx("opening messages")?;
    for id in ids {
        let Some(doc) = message_ids
            .get((no, id.as_str()))
            .ctx("reading message_ids")?
            .map(|d| d.value())
        else {
            continue;
        };
        let row = messages
            .get(doc)
            .ctx("reading messages")?
            .map(|v| MessageRow::decode(v.value()))
            .transpose()?;
        let Some(mut row) = row.filter(|r| r.from_me) else {
            continue;
        };
        out.known += 1;
        if row.delivery() < state {
            row.flags |= state.flags();
            messages
                .insert(doc, row.encode().as_slice())
                .ctx("writing messages")?;
            out.raised += 1;
        }
    }
    Ok(out)
}

/// The phone JID mapped to a LID, read inside a write transaction (ingest canonicalizes chats
/// with it). `None` when there is no mapping or `any_jid` is not a LID.
pub fn pn_for_lid_in(txn: &WriteTransaction, any_jid: &str) -> Result<Option<String>> {
    if !jid::is_lid(any_jid) {
        return Ok(None);
    }
    let l2p = txn.open_table(LID_TO_PN).ctx("opening lid_to_pn")?;
    Ok(l2p
        .get(any_jid)
        .ctx("reading lid_to_pn")?
        .map(|v| v.value().to_string()))
}

/// A chat's unread count, if the chat exists.
pub fn chat_unread(txn: &WriteTransaction, chat_jid: &str) -> Result<Option<u32>> {
    Ok(load_chat(txn, chat_jid)?.map(|c| c.unread))
}
