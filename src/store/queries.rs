//! Read-side queries over one `ReadTransaction`: chats, messages, contacts, identities, groups.
//!
//! Owns: the hot read paths as range scans (newest chats, a chat's messages by time, a message
//! by `jid:id`), and LID↔phone identity resolution. Must not: write, or shape JSON for tools.

use super::model::{ChatRow, ContactRow, Doc, GroupRow, MediaRef, MessageRow, doc_floor, doc_time};
use super::schema::*;
use super::{Context, Result, jid};
use redb::{ReadTransaction, ReadableTable, ReadableTableMetadata};

/// A stored message with where it lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub doc: Doc,
    pub chat_jid: String,
    pub row: MessageRow,
}

impl StoredMessage {
    pub fn timestamp_ms(&self) -> u64 {
        doc_time(self.doc)
    }
    /// The public id, `"<chat jid>:<message id>"`.
    pub fn public_id(&self) -> String {
        format!("{}:{}", self.chat_jid, self.row.id)
    }
}

/// A stored chat with its JID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChat {
    pub jid: String,
    pub row: ChatRow,
}

pub fn own_jid(txn: &ReadTransaction) -> Result<Option<String>> {
    let meta = txn.open_table(META).ctx("opening meta")?;
    Ok(meta
        .get("own_jid")
        .ctx("reading meta")?
        .and_then(|v| String::from_utf8(v.value().to_vec()).ok()))
}

pub fn chat(txn: &ReadTransaction, chat_jid: &str) -> Result<Option<ChatRow>> {
    Lookup::new(txn)?.chat(chat_jid)
}

/// Chats by last activity, newest first, for as long as `visit` returns true.
pub fn chats_newest(
    txn: &ReadTransaction,
    visit: &mut dyn FnMut(StoredChat) -> Result<bool>,
) -> Result<()> {
    let by_time = txn.open_table(CHATS_BY_TIME).ctx("opening chats_by_time")?;
    let chats = txn.open_table(CHATS).ctx("opening chats")?;
    for entry in by_time.iter().ctx("reading chats_by_time")?.rev() {
        let (k, _) = entry.ctx("reading chats_by_time")?;
        let jid = k.value().1.to_string();
        let Some(v) = chats.get(jid.as_str()).ctx("reading chats")? else {
            continue;
        };
        let row = ChatRow::decode(v.value())?;
        if !visit(StoredChat { jid, row })? {
            break;
        }
    }
    Ok(())
}

fn chat_no(txn: &ReadTransaction, chat_jid: &str) -> Result<Option<u32>> {
    let numbers = txn.open_table(CHAT_NUMBERS).ctx("opening chat_numbers")?;
    Ok(numbers
        .get(chat_jid)
        .ctx("reading chat_numbers")?
        .map(|n| n.value()))
}

pub fn chat_jid_of(txn: &ReadTransaction, chat_no: u32) -> Result<Option<String>> {
    Lookup::new(txn)?.chat_jid_of(chat_no)
}

/// A message by doc.
pub fn message_at(txn: &ReadTransaction, doc: Doc) -> Result<Option<StoredMessage>> {
    Lookup::new(txn)?.message_at(doc)
}

/// A message by chat and WhatsApp id.
pub fn message(txn: &ReadTransaction, chat_jid: &str, id: &str) -> Result<Option<StoredMessage>> {
    let Some(no) = chat_no(txn, chat_jid)? else {
        return Ok(None);
    };
    let ids = txn.open_table(MESSAGE_IDS).ctx("opening message_ids")?;
    let Some(doc) = ids
        .get((no, id))
        .ctx("reading message_ids")?
        .map(|d| d.value())
    else {
        return Ok(None);
    };
    message_at(txn, doc)
}

/// A message by its public id `"<chat jid>:<id>"`. The chat JID itself contains no `:` once
/// normalized, but an id may, so the split is at the first `:` after the `@`.
pub fn message_by_public_id(
    txn: &ReadTransaction,
    public_id: &str,
) -> Result<Option<StoredMessage>> {
    let Some(at) = public_id.find('@') else {
        return Ok(None);
    };
    let Some(colon) = public_id[at..].find(':').map(|c| c + at) else {
        return Ok(None);
    };
    let (chat, id) = (&public_id[..colon], &public_id[colon + 1..]);
    if id.is_empty() {
        return Ok(None);
    }
    if let Some(m) = message(txn, chat, id)? {
        return Ok(Some(m));
    }
    // The same message may be stored under the chat's other identity (LID vs phone).
    for other in related_jids(txn, chat)? {
        if other != chat
            && let Some(m) = message(txn, &other, id)?
        {
            return Ok(Some(m));
        }
    }
    Ok(None)
}

/// Up to `limit` messages of a chat older than `before` (exclusive; `None` = newest), newest
/// first.
pub fn messages_before(
    txn: &ReadTransaction,
    chat_jid: &str,
    before: Option<Doc>,
    limit: usize,
) -> Result<Vec<StoredMessage>> {
    Lookup::new(txn)?.messages_before(chat_jid, before, limit)
}

/// Up to `limit` messages of a chat newer than `after` (exclusive), oldest first.
pub fn messages_after(
    txn: &ReadTransaction,
    chat_jid: &str,
    after: Doc,
    limit: usize,
) -> Result<Vec<StoredMessage>> {
    Lookup::new(txn)?.messages_after(chat_jid, after, limit)
}

/// Messages of any chat newer than `after` (exclusive), oldest first (for waiting on new
/// messages). Scans the global message table from the given doc.
pub fn messages_since(
    txn: &ReadTransaction,
    after: Doc,
    limit: usize,
) -> Result<Vec<StoredMessage>> {
    let messages = txn.open_table(MESSAGES).ctx("opening messages")?;
    let mut out = Vec::new();
    for entry in messages
        .range(after.saturating_add(1)..)
        .ctx("reading messages")?
    {
        if out.len() >= limit {
            break;
        }
        let (k, v) = entry.ctx("reading messages")?;
        let row = MessageRow::decode(v.value())?;
        let chat_jid = chat_jid_of(txn, row.chat_no)?.unwrap_or_default();
        out.push(StoredMessage {
            doc: k.value(),
            chat_jid,
            row,
        });
    }
    Ok(out)
}

/// The newest doc of all (0 when empty).
pub fn newest_doc(txn: &ReadTransaction) -> Result<Doc> {
    let messages = txn.open_table(MESSAGES).ctx("opening messages")?;
    Ok(messages
        .last()
        .ctx("reading messages")?
        .map(|(k, _)| k.value())
        .unwrap_or(0))
}

/// Docs at or after `ts_ms` start at this value (for `since` cursors given as times).
pub fn doc_at(ts_ms: u64) -> Doc {
    doc_floor(ts_ms)
}

pub fn media(txn: &ReadTransaction, doc: Doc) -> Result<Option<MediaRef>> {
    Lookup::new(txn)?.media(doc)
}

/// `(reactor, emoji)` pairs on a message.
pub fn reactions(txn: &ReadTransaction, doc: Doc) -> Result<Vec<(String, String)>> {
    let table = txn.open_table(REACTIONS).ctx("opening reactions")?;
    let mut out = Vec::new();
    for e in table.range((doc, "")..).ctx("reading reactions")? {
        let (k, v) = e.ctx("reading reactions")?;
        if k.value().0 != doc {
            break;
        }
        out.push((k.value().1.to_string(), v.value().to_string()));
    }
    Ok(out)
}

pub fn contact(txn: &ReadTransaction, contact_jid: &str) -> Result<Option<ContactRow>> {
    Lookup::new(txn)?.contact(contact_jid)
}

/// Every contact, in JID order.
pub fn contacts_all(
    txn: &ReadTransaction,
    visit: &mut dyn FnMut(&str, ContactRow) -> Result<()>,
) -> Result<()> {
    Lookup::new(txn)?.contacts_all(visit)
}

pub fn pn_for_lid(txn: &ReadTransaction, lid: &str) -> Result<Option<String>> {
    Lookup::new(txn)?.pn_for_lid(lid)
}

pub fn lid_for_pn(txn: &ReadTransaction, pn: &str) -> Result<Option<String>> {
    Lookup::new(txn)?.lid_for_pn(pn)
}

/// Every `(lid, pn)` mapping.
pub fn mappings_all(txn: &ReadTransaction) -> Result<Vec<(String, String)>> {
    let t = txn.open_table(LID_TO_PN).ctx("opening lid_to_pn")?;
    let mut out = Vec::new();
    for e in t.iter().ctx("reading lid_to_pn")? {
        let (k, v) = e.ctx("reading lid_to_pn")?;
        out.push((k.value().to_string(), v.value().to_string()));
    }
    Ok(out)
}

/// The JID a person is shown under: the phone JID for a mapped LID, otherwise the JID itself.
pub fn canonical(txn: &ReadTransaction, any_jid: &str) -> Result<String> {
    Lookup::new(txn)?.canonical(any_jid)
}

/// The JID itself plus its other identity (LID ↔ phone), if known. The first entry is `jid`.
pub fn related_jids(txn: &ReadTransaction, any_jid: &str) -> Result<Vec<String>> {
    Lookup::new(txn)?.related(any_jid)
}

pub fn group(txn: &ReadTransaction, group_jid: &str) -> Result<Option<GroupRow>> {
    Lookup::new(txn)?.group(group_jid)
}

/// Every group, in JID order.
pub fn groups_all(txn: &ReadTransaction) -> Result<Vec<(String, GroupRow)>> {
    Lookup::new(txn)?.groups_all()
}

/// `(member JID, role)` of a group.
pub fn group_members(txn: &ReadTransaction, group_jid: &str) -> Result<Vec<(String, String)>> {
    Lookup::new(txn)?.group_members(group_jid)
}

/// Row counts, for `/api/status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub chats: u64,
    pub messages: u64,
    pub contacts: u64,
    pub groups: u64,
    pub media: u64,
}

pub fn counts(txn: &ReadTransaction) -> Result<Counts> {
    Ok(Counts {
        chats: txn
            .open_table(CHATS)
            .ctx("opening chats")?
            .len()
            .ctx("counting chats")?,
        messages: txn
            .open_table(MESSAGES)
            .ctx("opening messages")?
            .len()
            .ctx("counting messages")?,
        contacts: txn
            .open_table(CONTACTS)
            .ctx("opening contacts")?
            .len()
            .ctx("counting contacts")?,
        groups: txn
            .open_table(GROUPS)
            .ctx("opening groups")?
            .len()
            .ctx("counting groups")?,
        media: txn
            .open_table(MEDIA)
            .ctx("opening media")?
            .len()
            .ctx("counting media")?,
    })
}

// ---------------------------------------------------------------------------------------------
// Point lookups with every table opened once (the read tools make many lookups per call).

type StrTable = redb::ReadOnlyTable<&'static str, &'static [u8]>;
type JidTable = redb::ReadOnlyTable<&'static str, &'static str>;

/// Lookups over one read transaction, each table opened once: for callers that make many
/// lookups per call (chat lists, message windows, the group audit). Same answers as the free
/// functions above.
pub struct Lookup {
    own_jid: Option<String>,
    chats: StrTable,
    chats_by_time: redb::ReadOnlyTable<(u64, &'static str), ()>,
    chat_numbers: redb::ReadOnlyTable<&'static str, u32>,
    chat_jids: redb::ReadOnlyTable<u32, &'static str>,
    messages: redb::ReadOnlyTable<u64, &'static [u8]>,
    timeline: redb::ReadOnlyTable<(u32, u64), ()>,
    media: redb::ReadOnlyTable<u64, &'static [u8]>,
    contacts: StrTable,
    lid_to_pn: JidTable,
    pn_to_lid: JidTable,
    groups: StrTable,
    group_members: redb::ReadOnlyTable<(&'static str, &'static str), &'static str>,
}

impl Lookup {
    pub fn new(txn: &ReadTransaction) -> Result<Lookup> {
        Ok(Lookup {
            own_jid: own_jid(txn)?,
            chats: txn.open_table(CHATS).ctx("opening chats")?,
            chats_by_time: txn.open_table(CHATS_BY_TIME).ctx("opening chats_by_time")?,
            chat_numbers: txn.open_table(CHAT_NUMBERS).ctx("opening chat_numbers")?,
            chat_jids: txn.open_table(CHAT_JIDS).ctx("opening chat_jids")?,
            messages: txn.open_table(MESSAGES).ctx("opening messages")?,
            timeline: txn.open_table(CHAT_TIMELINE).ctx("opening chat_timeline")?,
            media: txn.open_table(MEDIA).ctx("opening media")?,
            contacts: txn.open_table(CONTACTS).ctx("opening contacts")?,
            lid_to_pn: txn.open_table(LID_TO_PN).ctx("opening lid_to_pn")?,
            pn_to_lid: txn.open_table(PN_TO_LID).ctx("opening pn_to_lid")?,
            groups: txn.open_table(GROUPS).ctx("opening groups")?,
            group_members: txn.open_table(GROUP_MEMBERS).ctx("opening group_members")?,
        })
    }

    /// The account's own JID, when known.
    pub fn own_jid(&self) -> Option<&str> {
        self.own_jid.as_deref()
    }

    pub fn chat(&self, chat_jid: &str) -> Result<Option<ChatRow>> {
        let row = self.chats.get(chat_jid).ctx("reading chats")?;
        row.map(|v| ChatRow::decode(v.value())).transpose()
    }

    /// `(activity ms, chat JID)` newest first, for as long as `visit` returns true. Reads no
    /// chat rows, so callers can filter by JID first.
    pub fn chat_jids_newest(&self, visit: &mut dyn FnMut(u64, &str) -> Result<bool>) -> Result<()> {
        for entry in self
            .chats_by_time
            .iter()
            .ctx("reading chats_by_time")?
            .rev()
        {
            let (k, _) = entry.ctx("reading chats_by_time")?;
            let (ts, jid) = k.value();
            if !visit(ts, jid)? {
                break;
            }
        }
        Ok(())
    }

    pub fn chat_no(&self, chat_jid: &str) -> Result<Option<u32>> {
        Ok(self
            .chat_numbers
            .get(chat_jid)
            .ctx("reading chat_numbers")?
            .map(|n| n.value()))
    }

    pub fn chat_jid_of(&self, chat_no: u32) -> Result<Option<String>> {
        Ok(self
            .chat_jids
            .get(chat_no)
            .ctx("reading chat_jids")?
            .map(|v| v.value().to_string()))
    }

    /// A message row by doc, without its chat JID.
    pub fn message_row(&self, doc: Doc) -> Result<Option<MessageRow>> {
        let row = self.messages.get(doc).ctx("reading messages")?;
        row.map(|v| MessageRow::decode(v.value())).transpose()
    }

    pub fn message_at(&self, doc: Doc) -> Result<Option<StoredMessage>> {
        let Some(row) = self.message_row(doc)? else {
            return Ok(None);
        };
        let chat_jid = self.chat_jid_of(row.chat_no)?.unwrap_or_default();
        Ok(Some(StoredMessage { doc, chat_jid, row }))
    }

    /// Up to `limit` messages of a chat older than `before` (exclusive; `None` = newest),
    /// newest first.
    pub fn messages_before(
        &self,
        chat_jid: &str,
        before: Option<Doc>,
        limit: usize,
    ) -> Result<Vec<StoredMessage>> {
        let Some(no) = self.chat_no(chat_jid)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(limit.min(1024));
        if limit == 0 {
            return Ok(out);
        }
        let end = before.unwrap_or(u64::MAX);
        let range = self
            .timeline
            .range((no, 0)..(no, end))
            .ctx("reading chat_timeline")?;
        for entry in range.rev() {
            let doc = entry.ctx("reading chat_timeline")?.0.value().1;
            if let Some(row) = self.message_row(doc)? {
                out.push(StoredMessage {
                    doc,
                    chat_jid: chat_jid.to_string(),
                    row,
                });
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Up to `limit` messages of a chat newer than `after` (exclusive), oldest first.
    pub fn messages_after(
        &self,
        chat_jid: &str,
        after: Doc,
        limit: usize,
    ) -> Result<Vec<StoredMessage>> {
        let Some(no) = self.chat_no(chat_jid)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(limit.min(1024));
        if limit == 0 || after == u64::MAX {
            return Ok(out);
        }
        for entry in self
            .timeline
            .range((no, after + 1)..=(no, u64::MAX))
            .ctx("reading chat_timeline")?
        {
            let doc = entry.ctx("reading chat_timeline")?.0.value().1;
            if let Some(row) = self.message_row(doc)? {
                out.push(StoredMessage {
                    doc,
                    chat_jid: chat_jid.to_string(),
                    row,
                });
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Messages of every chat with docs in `from..=to`, newest first, for as long as `visit`
    /// returns true.
    pub fn messages_newest_in(
        &self,
        from: Doc,
        to: Doc,
        visit: &mut dyn FnMut(Doc, MessageRow) -> Result<bool>,
    ) -> Result<()> {
        if from > to {
            return Ok(());
        }
        for entry in self
            .messages
            .range(from..=to)
            .ctx("reading messages")?
            .rev()
        {
            let (k, v) = entry.ctx("reading messages")?;
            if !visit(k.value(), MessageRow::decode(v.value())?)? {
                break;
            }
        }
        Ok(())
    }

    /// Docs of one chat in `from..=to`, newest first, for as long as `visit` returns true.
    pub fn chat_docs_newest_in(
        &self,
        chat_no: u32,
        from: Doc,
        to: Doc,
        visit: &mut dyn FnMut(Doc) -> Result<bool>,
    ) -> Result<()> {
        if from > to {
            return Ok(());
        }
        for entry in self
            .timeline
            .range((chat_no, from)..=(chat_no, to))
            .ctx("reading chat_timeline")?
            .rev()
        {
            if !visit(entry.ctx("reading chat_timeline")?.0.value().1)? {
                break;
            }
        }
        Ok(())
    }

    /// The newest doc of a chat at or before `doc` (a chat filter for `search::search_within`).
    pub fn chat_doc_at_or_before(&self, chat_no: u32, doc: Doc) -> Result<Option<Doc>> {
        let mut range = self
            .timeline
            .range((chat_no, 0)..=(chat_no, doc))
            .ctx("reading chat_timeline")?;
        Ok(range
            .next_back()
            .transpose()
            .ctx("reading chat_timeline")?
            .map(|(k, _)| k.value().1))
    }

    /// A chat's docs at or before `upto`, newest first (a cursor for stepping down a timeline).
    pub fn chat_docs_rev(
        &self,
        chat_no: u32,
        upto: Doc,
    ) -> Result<impl Iterator<Item = Result<Doc>> + '_> {
        Ok(self
            .timeline
            .range((chat_no, 0)..=(chat_no, upto))
            .ctx("reading chat_timeline")?
            .rev()
            .map(|e| e.map(|(k, _)| k.value().1).ctx("reading chat_timeline")))
    }

    pub fn media(&self, doc: Doc) -> Result<Option<MediaRef>> {
        let row = self.media.get(doc).ctx("reading media")?;
        row.map(|v| MediaRef::decode(v.value())).transpose()
    }

    pub fn contact(&self, contact_jid: &str) -> Result<Option<ContactRow>> {
        let row = self.contacts.get(contact_jid).ctx("reading contacts")?;
        row.map(|v| ContactRow::decode(v.value())).transpose()
    }

    /// Every contact, in JID order.
    pub fn contacts_all(
        &self,
        visit: &mut dyn FnMut(&str, ContactRow) -> Result<()>,
    ) -> Result<()> {
        for e in self.contacts.iter().ctx("reading contacts")? {
            let (k, v) = e.ctx("reading contacts")?;
            visit(k.value(), ContactRow::decode(v.value())?)?;
        }
        Ok(())
    }

    pub fn pn_for_lid(&self, lid: &str) -> Result<Option<String>> {
        Ok(self
            .lid_to_pn
            .get(lid)
            .ctx("reading lid_to_pn")?
            .map(|v| v.value().to_string()))
    }

    pub fn lid_for_pn(&self, pn: &str) -> Result<Option<String>> {
        Ok(self
            .pn_to_lid
            .get(pn)
            .ctx("reading pn_to_lid")?
            .map(|v| v.value().to_string()))
    }

    /// As [`canonical`].
    pub fn canonical(&self, any_jid: &str) -> Result<String> {
        if jid::is_lid(any_jid)
            && let Some(pn) = self.pn_for_lid(any_jid)?
        {
            return Ok(pn);
        }
        Ok(any_jid.to_string())
    }

    /// As [`related_jids`]: the JID first, then its other identity.
    pub fn related(&self, any_jid: &str) -> Result<Vec<String>> {
        let mut out = vec![any_jid.to_string()];
        if jid::is_lid(any_jid) {
            if let Some(pn) = self.pn_for_lid(any_jid)? {
                out.push(pn);
            }
        } else if jid::is_pn(any_jid)
            && let Some(lid) = self.lid_for_pn(any_jid)?
        {
            out.push(lid);
        }
        Ok(out)
    }

    pub fn group(&self, group_jid: &str) -> Result<Option<GroupRow>> {
        let row = self.groups.get(group_jid).ctx("reading groups")?;
        row.map(|v| GroupRow::decode(v.value())).transpose()
    }

    /// Every group JID with its row, in JID order.
    pub fn groups_all(&self) -> Result<Vec<(String, GroupRow)>> {
        let mut out = Vec::new();
        for e in self.groups.iter().ctx("reading groups")? {
            let (k, v) = e.ctx("reading groups")?;
            out.push((k.value().to_string(), GroupRow::decode(v.value())?));
        }
        Ok(out)
    }

    /// `(member JID, role)` of a group.
    pub fn group_members(&self, group_jid: &str) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        for e in self
            .group_members
            .range((group_jid, "")..)
            .ctx("reading group_members")?
        {
            let (k, v) = e.ctx("reading group_members")?;
            if k.value().0 != group_jid {
                break;
            }
            out.push((k.value().1.to_string(), v.value().to_string()));
        }
        Ok(out)
    }
}

/// Every chat, in JID order (export).
pub fn chats_all(
    txn: &ReadTransaction,
    visit: &mut dyn FnMut(StoredChat) -> Result<()>,
) -> Result<()> {
    let chats = txn.open_table(CHATS).ctx("opening chats")?;
    for e in chats.iter().ctx("reading chats")? {
        let (k, v) = e.ctx("reading chats")?;
        visit(StoredChat {
            jid: k.value().to_string(),
            row: ChatRow::decode(v.value())?,
        })?;
    }
    Ok(())
}

/// A message with its media reference and reactions (export).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FullMessage {
    pub message: StoredMessage,
    pub media: Option<MediaRef>,
    /// `(reactor, emoji)`, in reactor order.
    pub reactions: Vec<(String, String)>,
}

/// Every message of a chat, oldest first, with media and reactions (export). Opens each table
/// once.
pub fn chat_messages_full(
    txn: &ReadTransaction,
    chat_jid: &str,
    visit: &mut dyn FnMut(FullMessage) -> Result<()>,
) -> Result<()> {
    let Some(no) = chat_no(txn, chat_jid)? else {
        return Ok(());
    };
    let timeline = txn.open_table(CHAT_TIMELINE).ctx("opening chat_timeline")?;
    let messages = txn.open_table(MESSAGES).ctx("opening messages")?;
    let media = txn.open_table(MEDIA).ctx("opening media")?;
    let reactions = txn.open_table(REACTIONS).ctx("opening reactions")?;
    for entry in timeline
        .range((no, 0)..=(no, u64::MAX))
        .ctx("reading chat_timeline")?
    {
        let doc = entry.ctx("reading chat_timeline")?.0.value().1;
        let Some(v) = messages.get(doc).ctx("reading messages")? else {
            continue;
        };
        let row = MessageRow::decode(v.value())?;
        let media_ref = match media.get(doc).ctx("reading media")? {
            Some(m) => Some(MediaRef::decode(m.value())?),
            None => None,
        };
        let mut list = Vec::new();
        for e in reactions.range((doc, "")..).ctx("reading reactions")? {
            let (k, v) = e.ctx("reading reactions")?;
            if k.value().0 != doc {
                break;
            }
            list.push((k.value().1.to_string(), v.value().to_string()));
        }
        visit(FullMessage {
            message: StoredMessage {
                doc,
                chat_jid: chat_jid.to_string(),
                row,
            },
            media: media_ref,
            reactions: list,
        })?;
    }
    Ok(())
}
