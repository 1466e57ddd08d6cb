//! Backup and seeding: the store as JSON Lines (SPEC §9).
//!
//! Owns: the record format, its validation, `import` (atomic per file, idempotent) and `export`
//! (deterministic, so that export → import → export is byte-identical). Must not: change a table
//! except through the write rules of `writes.rs`.
//!
//! # Format
//! One JSON object a line; every record carries `kind`. Keys († = required):
//!
//! | kind | keys |
//! |---|---|
//! | `mapping` | `lid`†, `pn`† |
//! | `contact` | `jid`†, `name`, `pushname`, `number`, `isMyContact` |
//! | `group` | `jid`†, `subject`, `owner`, `subjectOwner`, `subjectTime`, `desc`, `creation`, `announce`, `restrict`, `participants` (`[{jid†, admin: "" \| "admin" \| "superadmin"}]`) |
//! | `chat` | `jid`†, `name`, `unreadCount`, `timestamp`, `archived`, `pinned`, `mutedUntil` |
//! | `message` | `chat`†, `id`†, `timestamp`†, `body` (`""`), `from`, `fromMe`, `type` (`conversation`), `hasMedia`, `quotedId`, `pushName`, `edited`, `revoked`, `status`, `media`, `reactions` (`[{from†, emoji†}]`) |
//!
//! `status` is how far one of our messages got: `"sent"`, `"delivered"`, `"read"` or
//! `"played"` (exported for `fromMe` messages, `null` for others; importing it only raises the
//! stored state, and a non-null `status` on someone else's message is an error).
//! `media` is `null` or `{kind†, mimetype, filename, size, directPath, url, mediaKey,
//! fileSha256, fileEncSha256, localFile, ptt}` with the three binary fields in base64.
//! Times are epoch milliseconds. JIDs are normalized (`…:3@s.whatsapp.net` → `…@s.whatsapp.net`).
//! Unknown keys are ignored, so a newer export stays importable; known keys are type-checked
//! strictly. `null` is the same as an absent key, except for a message's `from`: absent means
//! "the chat" (or our own JID for `fromMe`), `null` means "sender unknown".
//!
//! # Import
//! The whole input is read and validated before anything is written; an error names the line
//! and the field, and nothing is imported. Then everything is applied in ONE write job, one
//! transaction: all or nothing. A file's messages are not kept in memory between the two steps:
//! the write job reads the file a second time (and fails, importing nothing, if it changed
//! meanwhile). Order: mappings, contacts, groups, chats, messages (with their edit and revoke
//! flags, delivery states and reactions), then the chats' unread counts, so a chat record's `unreadCount` wins
//! over what its messages counted. Importing the same input again changes nothing: a stored
//! message is only upgraded if it was a stub, and contacts merge.
//!
//! # Export
//! One read transaction, written through a `BufWriter`, in a fixed order: mappings (by LID),
//! contacts, groups, chats (each by JID), then every chat's messages oldest first (chats by
//! JID). A record starts with `kind`; its other keys are in alphabetical order. `--chat`
//! narrows it to that chat, its messages, its group record, and the contacts and mappings of the
//! people in it (the chat's own JIDs, the group's members, every sender and reactor).

use super::model::{DOC_SEQ_BITS, Delivery, FLAG_EDITED, MediaRef};
use super::queries::{self, FullMessage, StoredChat};
use super::writes::{self, ChatUpdate, ContactUpdate, GroupUpdate, NewMessage};
use super::{Context, Result, Store, StoreError, jid};
use crate::json::{self, Number, Object, Value};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use redb::{ReadTransaction, WriteTransaction};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The longest line accepted (a message body is far shorter; this bounds memory on bad input).
const MAX_LINE: usize = 16 << 20;
/// The latest timestamp a message can carry (docs keep 44 bits of milliseconds: year 2527).
const MAX_TIMESTAMP: u64 = u64::MAX >> DOC_SEQ_BITS;
/// Messages handed to `put_messages` at a time inside the import transaction.
const CHUNK: usize = 2048;

/// What an import read and wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub chats: u64,
    pub messages: u64,
    pub contacts: u64,
    pub groups: u64,
    pub mappings: u64,
    /// Messages that were not stored before (the rest were already there).
    pub new_messages: u64,
}

impl std::fmt::Display for ImportReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "imported {} chats, {} messages ({} new), {} contacts, {} groups, {} mappings",
            self.chats, self.messages, self.new_messages, self.contacts, self.groups, self.mappings
        )
    }
}

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportReport {
    pub chats: u64,
    pub messages: u64,
    pub contacts: u64,
    pub groups: u64,
    pub mappings: u64,
    /// Where it went (`-` = standard output).
    pub out: String,
}

impl std::fmt::Display for ExportReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exported {} chats, {} messages, {} contacts, {} groups, {} mappings to {}",
            self.chats, self.messages, self.contacts, self.groups, self.mappings, self.out
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Records and their validation
// ---------------------------------------------------------------------------------------------

/// What a `message` record carries besides the message itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct MessageExtra {
    edited: bool,
    revoked: bool,
    /// Our message's delivery state (`Sent` for others' messages).
    delivery: Delivery,
    /// `(reactor, emoji)`.
    reactions: Vec<(String, String)>,
}

/// One validated line.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Record {
    Mapping { lid: String, pn: String },
    Contact(ContactUpdate),
    Group(GroupUpdate),
    Chat(ChatUpdate),
    Message(Box<(NewMessage, MessageExtra)>),
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Typed access to the keys of one record (or of an object nested in it), with errors that
/// name the record kind and the field: ``message: field `timestamp` must be …``.
struct Fields<'a> {
    obj: &'a Object,
    kind: &'static str,
    /// Path of the nested object (`media.`, `reactions[2].`), empty at the top.
    prefix: String,
}

type Check<T> = std::result::Result<T, String>;

impl<'a> Fields<'a> {
    fn new(obj: &'a Object, kind: &'static str) -> Fields<'a> {
        Fields {
            obj,
            kind,
            prefix: String::new(),
        }
    }

    fn nested(&self, obj: &'a Object, path: String) -> Fields<'a> {
        Fields {
            obj,
            kind: self.kind,
            prefix: format!("{}{path}.", self.prefix),
        }
    }

    fn err(&self, key: &str, what: impl std::fmt::Display) -> String {
        format!("{}: field `{}{key}` {what}", self.kind, self.prefix)
    }

    /// The value of `key`; `None` when absent or `null`.
    fn value(&self, key: &str) -> Option<&'a Value> {
        self.obj.get(key).filter(|v| !matches!(v, Value::Null))
    }

    fn wrong(&self, key: &str, want: &str, got: &Value) -> String {
        self.err(key, format!("must be {want}, got {}", type_name(got)))
    }

    fn string(&self, key: &str) -> Check<Option<&'a str>> {
        match self.value(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.wrong(key, "a string", other)),
        }
    }

    fn req_string(&self, key: &str) -> Check<&'a str> {
        match self.string(key)? {
            Some(s) if !s.is_empty() => Ok(s),
            Some(_) => Err(self.err(key, "must not be empty")),
            None => Err(self.err(key, "is missing")),
        }
    }

    fn jid(&self, key: &str) -> Check<Option<String>> {
        match self.string(key)? {
            None => Ok(None),
            Some(raw) => jid::normalize(raw).map(Some).ok_or_else(|| {
                self.err(
                    key,
                    format!("must be a WhatsApp JID (user@server), got {raw:?}"),
                )
            }),
        }
    }

    fn req_jid(&self, key: &str) -> Check<String> {
        self.jid(key)?.ok_or_else(|| self.err(key, "is missing"))
    }

    fn boolean(&self, key: &str) -> Check<Option<bool>> {
        match self.value(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.wrong(key, "true or false", other)),
        }
    }

    /// A whole number from 0 to `max`; `what` describes it (`a number (epoch ms)`).
    fn number(&self, key: &str, what: &str, max: u64) -> Check<Option<u64>> {
        let Some(v) = self.value(key) else {
            return Ok(None);
        };
        let n = match v {
            Value::Number(Number::U64(n)) => Some(*n),
            Value::Number(Number::I64(n)) => u64::try_from(*n).ok(),
            Value::Number(Number::F64(f)) if f.fract() == 0.0 && *f >= 0.0 && *f < 9.0e15 => {
                Some(*f as u64)
            }
            _ => None,
        };
        match (n, v) {
            (Some(n), _) if n <= max => Ok(Some(n)),
            (_, Value::Number(num)) => Err(self.err(
                key,
                format!(
                    "must be {what}: a whole number from 0 to {max}, got {}",
                    json::to_string(&Value::Number(num.clone()))
                ),
            )),
            (_, other) => Err(self.wrong(key, what, other)),
        }
    }

    fn array(&self, key: &str) -> Check<Option<&'a [Value]>> {
        match self.value(key) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(other) => Err(self.wrong(key, "an array", other)),
        }
    }

    fn object(&self, key: &str) -> Check<Option<&'a Object>> {
        match self.value(key) {
            None => Ok(None),
            Some(Value::Object(o)) => Ok(Some(o)),
            Some(other) => Err(self.wrong(key, "an object", other)),
        }
    }

    fn base64(&self, key: &str) -> Check<Option<Vec<u8>>> {
        match self.string(key)? {
            None => Ok(None),
            Some(text) => B64
                .decode(text)
                .map(Some)
                .map_err(|e| self.err(key, format!("must be base64 ({e})"))),
        }
    }
}

/// Validates one line. `None` for a blank line.
fn parse_line(text: &str, own_jid: Option<&str>) -> Check<Option<Record>> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let Some(value) = json::parse(text) else {
        return Err("not valid JSON".into());
    };
    let Value::Object(obj) = &value else {
        return Err(format!("must be a JSON object, got {}", type_name(&value)));
    };
    let kind = match obj.get("kind") {
        None | Some(Value::Null) => return Err("field `kind` is missing".into()),
        Some(Value::String(k)) => k.as_str(),
        Some(other) => {
            return Err(format!(
                "field `kind` must be a string, got {}",
                type_name(other)
            ));
        }
    };
    let record = match kind {
        "mapping" => parse_mapping(&Fields::new(obj, "mapping"))?,
        "contact" => parse_contact(&Fields::new(obj, "contact"))?,
        "group" => parse_group(&Fields::new(obj, "group"))?,
        "chat" => parse_chat(&Fields::new(obj, "chat"))?,
        "message" => parse_message(&Fields::new(obj, "message"), own_jid)?,
        other => {
            return Err(format!(
                "unknown kind {other:?} (expected mapping, contact, group, chat or message)"
            ));
        }
    };
    Ok(Some(record))
}

fn parse_mapping(f: &Fields) -> Check<Record> {
    let lid = f.req_jid("lid")?;
    if !jid::is_lid(&lid) {
        return Err(f.err("lid", format!("must be a LID (…@lid), got {lid:?}")));
    }
    let pn = f.req_jid("pn")?;
    if !jid::is_pn(&pn) {
        return Err(f.err(
            "pn",
            format!("must be a phone JID (…@s.whatsapp.net), got {pn:?}"),
        ));
    }
    Ok(Record::Mapping { lid, pn })
}

fn parse_contact(f: &Fields) -> Check<Record> {
    Ok(Record::Contact(ContactUpdate {
        jid: f.req_jid("jid")?,
        name: f.string("name")?.map(str::to_string),
        pushname: f.string("pushname")?.map(str::to_string),
        number: f.string("number")?.map(str::to_string),
        is_my_contact: f.boolean("isMyContact")?,
    }))
}

fn parse_group(f: &Fields) -> Check<Record> {
    let group_jid = f.req_jid("jid")?;
    if !jid::is_group(&group_jid) {
        return Err(f.err(
            "jid",
            format!("must be a group JID (…@g.us), got {group_jid:?}"),
        ));
    }
    let participants = match f.array("participants")? {
        None => None,
        Some(items) => {
            let mut list = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let Value::Object(o) = item else {
                    return Err(f.wrong(&format!("participants[{i}]"), "an object", item));
                };
                let p = f.nested(o, format!("participants[{i}]"));
                let member = p.req_jid("jid")?;
                let role = p.string("admin")?.unwrap_or("");
                if !matches!(role, "" | "admin" | "superadmin") {
                    return Err(p.err(
                        "admin",
                        format!("must be \"\", \"admin\" or \"superadmin\", got {role:?}"),
                    ));
                }
                list.push((member, role.to_string()));
            }
            Some(list)
        }
    };
    Ok(Record::Group(GroupUpdate {
        jid: group_jid,
        subject: f.string("subject")?.map(str::to_string),
        owner: f.jid("owner")?,
        subject_owner: f.jid("subjectOwner")?,
        subject_time: f.number("subjectTime", "a number (epoch ms)", u64::MAX)?,
        desc: f.string("desc")?.map(str::to_string),
        creation: f.number("creation", "a number (epoch ms)", u64::MAX)?,
        announce: f.boolean("announce")?,
        restrict: f.boolean("restrict")?,
        participants,
    }))
}

fn parse_chat(f: &Fields) -> Check<Record> {
    Ok(Record::Chat(ChatUpdate {
        jid: f.req_jid("jid")?,
        name: f.string("name")?.map(str::to_string),
        unread: f
            .number("unreadCount", "a count", u32::MAX as u64)?
            .map(|n| n as u32),
        timestamp_ms: f.number("timestamp", "a number (epoch ms)", MAX_TIMESTAMP)?,
        archived: f.boolean("archived")?,
        pinned: f.boolean("pinned")?,
        muted_until: f.number("mutedUntil", "a number (epoch ms)", u64::MAX)?,
    }))
}

fn parse_media(f: &Fields) -> Check<MediaRef> {
    Ok(MediaRef {
        kind: f.req_string("kind")?.to_string(),
        mimetype: f.string("mimetype")?.map(str::to_string),
        filename: f.string("filename")?.map(str::to_string),
        size: f.number("size", "a size in bytes", u64::MAX)?.unwrap_or(0),
        direct_path: f.string("directPath")?.map(str::to_string),
        url: f.string("url")?.map(str::to_string),
        media_key: f.base64("mediaKey")?,
        file_sha256: f.base64("fileSha256")?,
        file_enc_sha256: f.base64("fileEncSha256")?,
        local_file: f.string("localFile")?.map(str::to_string),
        ptt: f.boolean("ptt")?.unwrap_or(false),
    })
}

fn parse_message(f: &Fields, own_jid: Option<&str>) -> Check<Record> {
    let chat = f.req_jid("chat")?;
    let id = f.req_string("id")?.to_string();
    let timestamp_ms = f
        .number("timestamp", "a number (epoch ms)", MAX_TIMESTAMP)?
        .ok_or_else(|| f.err("timestamp", "is missing"))?;
    let from_me = f.boolean("fromMe")?.unwrap_or(false);
    let sender = match f.obj.get("from") {
        // Absent: the chat for a message from someone else, our own JID for ours.
        None if from_me => own_jid.unwrap_or("").to_string(),
        None => chat.clone(),
        // Null: the sender is not known.
        Some(Value::Null) => String::new(),
        Some(_) => f.req_jid("from")?,
    };
    let kind = match f.string("type")? {
        None | Some("") => "conversation".to_string(),
        Some(t) => t.to_string(),
    };
    let media = match f.object("media")? {
        None => None,
        Some(o) => Some(parse_media(&f.nested(o, "media".into()))?),
    };
    let mut reactions = Vec::new();
    for (i, item) in f.array("reactions")?.unwrap_or(&[]).iter().enumerate() {
        let Value::Object(o) = item else {
            return Err(f.wrong(&format!("reactions[{i}]"), "an object", item));
        };
        let r = f.nested(o, format!("reactions[{i}]"));
        reactions.push((r.req_jid("from")?, r.req_string("emoji")?.to_string()));
    }
    let message = NewMessage {
        chat_jid: chat,
        id,
        sender,
        from_me,
        timestamp_ms,
        body: f.string("body")?.unwrap_or("").to_string(),
        kind,
        has_media: f.boolean("hasMedia")?.unwrap_or(false),
        quoted_id: f.string("quotedId")?.map(str::to_string),
        push_name: f.string("pushName")?.map(str::to_string),
        media,
    };
    let delivery = match f.string("status")? {
        None => Delivery::Sent,
        Some(_) if !from_me => {
            return Err(f.err("status", "is only for our own messages (`fromMe`: true)"));
        }
        Some(raw) => Delivery::parse(raw).ok_or_else(|| {
            f.err(
                "status",
                format!("must be \"sent\", \"delivered\", \"read\" or \"played\", got {raw:?}"),
            )
        })?,
    };
    let extra = MessageExtra {
        edited: f.boolean("edited")?.unwrap_or(false),
        revoked: f.boolean("revoked")?.unwrap_or(false),
        delivery,
        reactions,
    };
    Ok(Record::Message(Box::new((message, extra))))
}

/// Reads `reader` line by line, handing each valid record to `each`. The first bad line stops
/// the scan with an error naming it.
fn scan(
    reader: &mut dyn BufRead,
    own_jid: Option<&str>,
    each: &mut dyn FnMut(Record) -> Result<()>,
) -> Result<()> {
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    loop {
        buf.clear();
        line_no += 1;
        let n = (&mut *reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|e| StoreError(format!("line {line_no}: cannot read: {e}")))?;
        if n == 0 {
            return Ok(());
        }
        if buf.len() > MAX_LINE {
            return Err(StoreError(format!(
                "line {line_no}: longer than {} MiB",
                MAX_LINE >> 20
            )));
        }
        let mut text = std::str::from_utf8(&buf)
            .map_err(|_| StoreError(format!("line {line_no}: not valid UTF-8")))?;
        if line_no == 1 {
            text = text.strip_prefix('\u{feff}').unwrap_or(text);
        }
        match parse_line(text, own_jid) {
            Ok(Some(record)) => each(record)?,
            Ok(None) => {}
            Err(e) => return Err(StoreError(format!("line {line_no}: {e}"))),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Import
// ---------------------------------------------------------------------------------------------

/// Where the messages of a validated input are.
enum Messages {
    /// Kept from a reader (tests, small inputs).
    InMemory(Vec<NewMessage>, Vec<MessageExtra>),
    /// Read again from the file inside the write job; `len` and `modified` detect a change.
    File {
        path: PathBuf,
        len: u64,
        modified: Option<std::time::SystemTime>,
    },
}

/// A validated input, ready to apply.
struct Plan {
    mappings: Vec<(String, String)>,
    contacts: Vec<ContactUpdate>,
    groups: Vec<GroupUpdate>,
    chats: Vec<ChatUpdate>,
    messages: Messages,
    own_jid: Option<String>,
    report: ImportReport,
}

impl Plan {
    fn new(own_jid: Option<String>, messages: Messages) -> Plan {
        Plan {
            mappings: Vec::new(),
            contacts: Vec::new(),
            groups: Vec::new(),
            chats: Vec::new(),
            messages,
            own_jid,
            report: ImportReport::default(),
        }
    }

    /// Takes one record of the validation pass.
    fn add(&mut self, record: Record) {
        match record {
            Record::Mapping { lid, pn } => {
                self.report.mappings += 1;
                self.mappings.push((lid, pn));
            }
            Record::Contact(c) => {
                self.report.contacts += 1;
                self.contacts.push(c);
            }
            Record::Group(g) => {
                self.report.groups += 1;
                self.groups.push(g);
            }
            Record::Chat(c) => {
                self.report.chats += 1;
                self.chats.push(c);
            }
            Record::Message(m) => {
                self.report.messages += 1;
                if let Messages::InMemory(list, extras) = &mut self.messages {
                    let (message, extra) = *m;
                    list.push(message);
                    extras.push(extra);
                }
            }
        }
    }

    /// Applies everything in one transaction; returns how many messages were new.
    fn apply(&self, txn: &WriteTransaction) -> Result<u64> {
        for (lid, pn) in &self.mappings {
            writes::put_mapping(txn, lid, pn)?;
        }
        for c in &self.contacts {
            writes::upsert_contact(txn, c)?;
        }
        for g in &self.groups {
            writes::upsert_group(txn, g)?;
        }
        for c in &self.chats {
            writes::update_chat(
                txn,
                &ChatUpdate {
                    unread: None,
                    ..c.clone()
                },
            )?;
        }
        let mut new_messages = 0;
        match &self.messages {
            Messages::InMemory(list, extras) => {
                for (chunk, extra) in list.chunks(CHUNK).zip(extras.chunks(CHUNK)) {
                    new_messages += apply_messages(txn, chunk, extra)?;
                }
            }
            Messages::File {
                path,
                len,
                modified,
            } => new_messages += self.apply_file_messages(txn, path, *len, *modified)?,
        }
        // Last, so the chat record's count wins over what its messages counted.
        for c in self.chats.iter().filter(|c| c.unread.is_some()) {
            writes::update_chat(
                txn,
                &ChatUpdate {
                    jid: c.jid.clone(),
                    unread: c.unread,
                    ..ChatUpdate::default()
                },
            )?;
        }
        Ok(new_messages)
    }

    /// The second pass over a file: its messages, a chunk at a time.
    fn apply_file_messages(
        &self,
        txn: &WriteTransaction,
        path: &Path,
        len: u64,
        modified: Option<std::time::SystemTime>,
    ) -> Result<u64> {
        let changed = || {
            StoreError(format!(
                "{} changed while it was being imported",
                path.display()
            ))
        };
        let file = std::fs::File::open(path).ctx(&format!("reopening {}", path.display()))?;
        let meta = file
            .metadata()
            .ctx(&format!("reading {}", path.display()))?;
        if meta.len() != len || meta.modified().ok() != modified {
            return Err(changed());
        }
        let mut reader = BufReader::with_capacity(1 << 16, file);
        let mut list = Vec::with_capacity(CHUNK);
        let mut extras = Vec::with_capacity(CHUNK);
        let mut new_messages = 0;
        let mut seen = 0;
        scan(&mut reader, self.own_jid.as_deref(), &mut |record| {
            if let Record::Message(m) = record {
                let (message, extra) = *m;
                list.push(message);
                extras.push(extra);
                seen += 1;
                if list.len() >= CHUNK {
                    new_messages += apply_messages(txn, &list, &extras)?;
                    list.clear();
                    extras.clear();
                }
            }
            Ok(())
        })
        .map_err(|e| StoreError(format!("{}: {e}", changed())))?;
        new_messages += apply_messages(txn, &list, &extras)?;
        if seen != self.report.messages {
            return Err(changed());
        }
        Ok(new_messages)
    }
}

/// Stores a chunk of messages, then their flags and reactions.
fn apply_messages(
    txn: &WriteTransaction,
    list: &[NewMessage],
    extras: &[MessageExtra],
) -> Result<u64> {
    if list.is_empty() {
        return Ok(0);
    }
    let stored = writes::put_messages(txn, list)?;
    for (m, extra) in list.iter().zip(extras) {
        if extra.revoked {
            writes::revoke_message(txn, &m.chat_jid, &m.id)?;
        }
        if extra.edited {
            writes::add_message_flags(txn, &m.chat_jid, &m.id, FLAG_EDITED)?;
        }
        if extra.delivery > Delivery::Sent {
            writes::apply_receipt(
                txn,
                &m.chat_jid,
                std::slice::from_ref(&m.id),
                extra.delivery,
            )?;
        }
        for (reactor, emoji) in &extra.reactions {
            writes::put_reaction(txn, &m.chat_jid, &m.id, reactor, emoji)?;
        }
    }
    Ok(stored.iter().filter(|s| s.inserted).count() as u64)
}

fn own_jid(store: &Store) -> Result<Option<String>> {
    store.read_blocking(queries::own_jid)
}

/// Applies a validated plan in one write job and fills in the report.
fn run_plan(store: &Store, plan: Plan) -> Result<ImportReport> {
    let plan = Arc::new(plan);
    let new_messages = Arc::new(Mutex::new(0u64));
    let (job_plan, job_new) = (plan.clone(), new_messages.clone());
    store.write_blocking(move |txn| {
        // The job may run twice (see `Store::write`); each run starts from zero.
        let n = job_plan.apply(txn)?;
        if let Ok(mut slot) = job_new.lock() {
            *slot = n;
        }
        Ok(())
    })?;
    let mut report = plan.report.clone();
    report.new_messages = new_messages.lock().map(|n| *n).unwrap_or(0);
    Ok(report)
}

/// Imports JSON Lines from any reader, all or nothing. Everything is held in memory until it
/// is written; use [`import_file`] for large files.
pub fn import_reader(store: &Store, reader: &mut dyn BufRead) -> Result<ImportReport> {
    let own = own_jid(store)?;
    let mut plan = Plan::new(own.clone(), Messages::InMemory(Vec::new(), Vec::new()));
    scan(reader, own.as_deref(), &mut |record| {
        plan.add(record);
        Ok(())
    })
    .map_err(|e| StoreError(format!("{e}; nothing was imported")))?;
    run_plan(store, plan).map_err(|e| StoreError(format!("{e}; nothing was imported")))
}

/// Imports a JSON Lines file, all or nothing. The file is validated first (an error names the
/// line and the field); its messages are then read again inside the one write transaction, so
/// memory stays small whatever the file's size. `-` (standard input) and pipes cannot be read
/// twice: they are held in memory instead.
pub fn import_file(store: &Store, path: &Path) -> Result<ImportReport> {
    let fail = |e: String| StoreError(format!("importing {}: {e}", path.display()));
    if path == Path::new("-") {
        return import_reader(store, &mut std::io::stdin().lock()).map_err(|e| fail(e.0));
    }
    let file = std::fs::File::open(path).map_err(|e| fail(format!("cannot open it: {e}")))?;
    let meta = file
        .metadata()
        .map_err(|e| fail(format!("cannot read it: {e}")))?;
    if meta.is_dir() {
        return Err(fail("it is a directory, not a JSON Lines file".into()));
    }
    if !meta.is_file() {
        let mut reader = BufReader::with_capacity(1 << 16, file);
        return import_reader(store, &mut reader).map_err(|e| fail(e.0));
    }
    let own = own_jid(store)?;
    let mut plan = Plan::new(
        own.clone(),
        Messages::File {
            path: path.to_path_buf(),
            len: meta.len(),
            modified: meta.modified().ok(),
        },
    );
    let mut reader = BufReader::with_capacity(1 << 16, file);
    scan(&mut reader, own.as_deref(), &mut |record| {
        plan.add(record);
        Ok(())
    })
    .map_err(|e| fail(format!("{e}; nothing was imported")))?;
    let r = &plan.report;
    log::info!(
        "import: {} is valid ({} chats, {} messages, {} contacts, {} groups, {} mappings); writing it in one transaction",
        path.display(),
        r.chats,
        r.messages,
        r.contacts,
        r.groups,
        r.mappings
    );
    run_plan(store, plan).map_err(|e| fail(format!("{e}; nothing was imported")))
}

// ---------------------------------------------------------------------------------------------
// Export
// ---------------------------------------------------------------------------------------------

fn opt_s(v: Option<&str>) -> Value {
    v.map_or(Value::Null, json::s)
}

fn num(n: u64) -> Value {
    Value::Number(Number::U64(n))
}

fn opt_b64(v: Option<&[u8]>) -> Value {
    v.map_or(Value::Null, |b| json::s(B64.encode(b)))
}

fn mapping_record(lid: &str, pn: &str) -> Value {
    json::obj([("lid", json::s(lid)), ("pn", json::s(pn))])
}

fn contact_record(contact_jid: &str, c: &super::model::ContactRow) -> Value {
    json::obj([
        ("jid", json::s(contact_jid)),
        ("name", opt_s(c.name.as_deref())),
        ("pushname", opt_s(c.pushname.as_deref())),
        ("number", opt_s(c.number.as_deref())),
        ("isMyContact", json::bool(c.is_my_contact)),
    ])
}

fn group_record(
    group_jid: &str,
    g: &super::model::GroupRow,
    members: &[(String, String)],
) -> Value {
    let participants = members.iter().map(|(m, role)| {
        json::obj([
            ("jid", json::s(m.as_str())),
            ("admin", json::s(role.as_str())),
        ])
    });
    json::obj([
        ("jid", json::s(group_jid)),
        ("subject", opt_s(g.subject.as_deref())),
        ("owner", opt_s(g.owner.as_deref())),
        ("subjectOwner", opt_s(g.subject_owner.as_deref())),
        ("subjectTime", num(g.subject_time)),
        ("desc", opt_s(g.desc.as_deref())),
        ("creation", num(g.creation)),
        ("announce", json::bool(g.announce)),
        ("restrict", json::bool(g.restrict)),
        ("participants", json::arr(participants)),
    ])
}

fn chat_record(c: &StoredChat) -> Value {
    json::obj([
        ("jid", json::s(c.jid.as_str())),
        ("name", opt_s(c.row.name.as_deref())),
        ("unreadCount", num(c.row.unread as u64)),
        ("timestamp", num(c.row.ts)),
        ("archived", json::bool(c.row.archived)),
        ("pinned", json::bool(c.row.pinned)),
        ("mutedUntil", num(c.row.muted_until)),
    ])
}

fn media_record(m: &MediaRef) -> Value {
    json::obj([
        ("kind", json::s(m.kind.as_str())),
        ("mimetype", opt_s(m.mimetype.as_deref())),
        ("filename", opt_s(m.filename.as_deref())),
        ("size", num(m.size)),
        ("directPath", opt_s(m.direct_path.as_deref())),
        ("url", opt_s(m.url.as_deref())),
        ("mediaKey", opt_b64(m.media_key.as_deref())),
        ("fileSha256", opt_b64(m.file_sha256.as_deref())),
        ("fileEncSha256", opt_b64(m.file_enc_sha256.as_deref())),
        ("localFile", opt_s(m.local_file.as_deref())),
        ("ptt", json::bool(m.ptt)),
    ])
}

fn message_record(full: &FullMessage) -> Value {
    let m = &full.message;
    let row = &m.row;
    let reactions = full.reactions.iter().map(|(from, emoji)| {
        json::obj([
            ("from", json::s(from.as_str())),
            ("emoji", json::s(emoji.as_str())),
        ])
    });
    json::obj([
        ("chat", json::s(m.chat_jid.as_str())),
        ("id", json::s(row.id.as_str())),
        ("body", json::s(row.body.as_str())),
        ("timestamp", num(m.timestamp_ms())),
        (
            "from",
            if row.sender.is_empty() {
                Value::Null
            } else {
                json::s(row.sender.as_str())
            },
        ),
        ("fromMe", json::bool(row.from_me)),
        ("type", json::s(row.kind.as_str())),
        ("hasMedia", json::bool(row.has_media)),
        ("quotedId", opt_s(row.quoted_id.as_deref())),
        ("pushName", opt_s(row.push_name.as_deref())),
        ("edited", json::bool(row.flags & FLAG_EDITED != 0)),
        ("revoked", json::bool(row.is_revoked())),
        (
            "status",
            if row.from_me {
                json::s(row.delivery().as_str())
            } else {
                Value::Null
            },
        ),
        (
            "media",
            full.media.as_ref().map_or(Value::Null, media_record),
        ),
        ("reactions", json::arr(reactions)),
    ])
}

/// Writes records as lines, counting I/O errors as store errors that name the output.
struct Lines<'w> {
    out: &'w mut dyn Write,
    name: String,
    report: ExportReport,
}

impl Lines<'_> {
    /// Writes one record: `"kind"` first (easy to read and to grep), then the other keys in
    /// alphabetical order (miniserde's).
    fn put(&mut self, kind: &str, record: &Value) -> Result<()> {
        let text = json::to_string(record);
        let rest = text.strip_prefix('{').unwrap_or(&text);
        let sep = if rest.starts_with('}') { "" } else { "," };
        writeln!(self.out, "{{\"kind\":\"{kind}\"{sep}{rest}")
            .ctx(&format!("writing {}", self.name))
    }
}

/// The whole store.
fn export_all(txn: &ReadTransaction, w: &mut Lines) -> Result<()> {
    for (lid, pn) in queries::mappings_all(txn)? {
        w.put("mapping", &mapping_record(&lid, &pn))?;
        w.report.mappings += 1;
    }
    queries::contacts_all(txn, &mut |contact_jid, row| {
        w.put("contact", &contact_record(contact_jid, &row))?;
        w.report.contacts += 1;
        Ok(())
    })?;
    for (group_jid, row) in queries::groups_all(txn)? {
        let members = queries::group_members(txn, &group_jid)?;
        w.put("group", &group_record(&group_jid, &row, &members))?;
        w.report.groups += 1;
    }
    let mut chat_jids = Vec::new();
    queries::chats_all(txn, &mut |chat| {
        w.put("chat", &chat_record(&chat))?;
        w.report.chats += 1;
        chat_jids.push(chat.jid);
        Ok(())
    })?;
    for chat_jid in &chat_jids {
        queries::chat_messages_full(txn, chat_jid, &mut |full| {
            w.put("message", &message_record(&full))?;
            w.report.messages += 1;
            Ok(())
        })?;
    }
    Ok(())
}

/// One chat, its messages, its group record, and the contacts and mappings of its people (the
/// chat's own JIDs, the group's members, and every sender and reactor).
fn export_chat(txn: &ReadTransaction, chat_jid: &str, w: &mut Lines) -> Result<()> {
    let Some(row) = queries::chat(txn, chat_jid)? else {
        return Err(StoreError(format!(
            "there is no chat {chat_jid} in the store"
        )));
    };
    let mut people: BTreeSet<String> = BTreeSet::new();
    people.insert(chat_jid.to_string());
    let group = if jid::is_group(chat_jid) {
        match queries::group(txn, chat_jid)? {
            Some(g) => {
                let members = queries::group_members(txn, chat_jid)?;
                people.extend(members.iter().map(|(m, _)| m.clone()));
                Some((g, members))
            }
            None => None,
        }
    } else {
        None
    };
    queries::chat_messages_full(txn, chat_jid, &mut |full| {
        if !full.message.row.sender.is_empty() {
            people.insert(full.message.row.sender);
        }
        people.extend(full.reactions.into_iter().map(|(r, _)| r));
        Ok(())
    })?;
    // Each person's other identity, and the mappings between them (by LID).
    let mut mappings: BTreeSet<(String, String)> = BTreeSet::new();
    for person in people.clone() {
        let lid = if jid::is_lid(&person) {
            Some(person.clone())
        } else if jid::is_pn(&person) {
            queries::lid_for_pn(txn, &person)?
        } else {
            None
        };
        if let Some(lid) = lid
            && let Some(pn) = queries::pn_for_lid(txn, &lid)?
        {
            people.insert(lid.clone());
            people.insert(pn.clone());
            mappings.insert((lid, pn));
        }
    }
    people.remove("");
    for (lid, pn) in &mappings {
        w.put("mapping", &mapping_record(lid, pn))?;
        w.report.mappings += 1;
    }
    for person in &people {
        if let Some(c) = queries::contact(txn, person)? {
            w.put("contact", &contact_record(person, &c))?;
            w.report.contacts += 1;
        }
    }
    if let Some((g, members)) = &group {
        w.put("group", &group_record(chat_jid, g, members))?;
        w.report.groups += 1;
    }
    w.put(
        "chat",
        &chat_record(&StoredChat {
            jid: chat_jid.to_string(),
            row,
        }),
    )?;
    w.report.chats += 1;
    queries::chat_messages_full(txn, chat_jid, &mut |full| {
        w.put("message", &message_record(&full))?;
        w.report.messages += 1;
        Ok(())
    })
}

/// Exports the store (or one chat) as JSON Lines to any writer, in one read transaction.
pub fn export_to(store: &Store, chat: Option<&str>, out: &mut dyn Write) -> Result<ExportReport> {
    export_named(store, chat, out, "the output")
}

fn export_named(
    store: &Store,
    chat: Option<&str>,
    out: &mut dyn Write,
    name: &str,
) -> Result<ExportReport> {
    let chat_jid = match chat {
        None => None,
        Some(raw) => Some(jid::parse_address(raw).ok_or_else(|| {
            StoreError(format!(
                "--chat {raw:?} is not a JID (user@server) or a phone number"
            ))
        })?),
    };
    let mut buffered = BufWriter::with_capacity(1 << 16, out);
    let mut lines = Lines {
        out: &mut buffered,
        name: name.to_string(),
        report: ExportReport {
            out: name.to_string(),
            ..ExportReport::default()
        },
    };
    store.read_blocking(|txn| match &chat_jid {
        None => export_all(txn, &mut lines),
        Some(c) => export_chat(txn, c, &mut lines),
    })?;
    let report = lines.report;
    buffered.flush().ctx(&format!("writing {name}"))?;
    Ok(report)
}

/// Exports the store (or one chat) to `out` (`-` = standard output). A file is written under a
/// temporary name and renamed when complete, so a failed export leaves no partial file.
pub fn export_file(store: &Store, chat: Option<&str>, out: &Path) -> Result<ExportReport> {
    if out == Path::new("-") {
        let stdout = std::io::stdout();
        let mut lock = stdout.lock();
        let mut report = export_named(store, chat, &mut lock, "standard output")?;
        report.out = "-".into();
        return Ok(report);
    }
    let name = out.display().to_string();
    let is_special = std::fs::metadata(out).is_ok_and(|m| !m.is_file());
    if is_special {
        // A device or pipe: write to it directly.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(out)
            .ctx(&format!("opening {name}"))?;
        return export_named(store, chat, &mut file, &name);
    }
    let mut tmp_name = out.as_os_str().to_owned();
    tmp_name.push(".partial");
    let tmp = PathBuf::from(tmp_name);
    let result = (|| {
        let mut file = std::fs::File::create(&tmp).ctx(&format!("creating {}", tmp.display()))?;
        let report = export_named(store, chat, &mut file, &name)?;
        file.sync_all().ctx(&format!("writing {name}"))?;
        std::fs::rename(&tmp, out).ctx(&format!("renaming {} to {name}", tmp.display()))?;
        Ok(report)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(line: &str) -> String {
        match parse_line(line, None) {
            Err(e) => e,
            Ok(r) => panic!("expected an error for {line}, got {r:?}"),
        }
    }

    #[test]
    fn validation_names_the_kind_and_the_field() {
        assert_eq!(err("{\"kind\":\"message\""), "not valid JSON");
        assert_eq!(err("[1]"), "must be a JSON object, got an array");
        assert_eq!(err("{\"chat\":\"1@lid\"}"), "field `kind` is missing");
        assert!(err("{\"kind\":\"note\"}").starts_with("unknown kind \"note\""));
        assert_eq!(
            err(r#"{"kind":"message","chat":"1@s.whatsapp.net","id":"A","timestamp":"x"}"#),
            "message: field `timestamp` must be a number (epoch ms), got a string"
        );
        assert_eq!(
            err(r#"{"kind":"message","chat":"1@s.whatsapp.net","id":"A"}"#),
            "message: field `timestamp` is missing"
        );
        assert!(
            err(r#"{"kind":"message","chat":"1@s.whatsapp.net","id":"A","timestamp":-5}"#)
                .starts_with(
                    "message: field `timestamp` must be a number (epoch ms): a whole number"
                )
        );
        assert_eq!(
            err(r#"{"kind":"message","chat":"nobody","id":"A","timestamp":1}"#),
            "message: field `chat` must be a WhatsApp JID (user@server), got \"nobody\""
        );
        assert_eq!(
            err(r#"{"kind":"message","chat":"1@lid","id":"","timestamp":1}"#),
            "message: field `id` must not be empty"
        );
        assert_eq!(
            err(r#"{"kind":"message","chat":"1@lid","id":"A","timestamp":1,"fromMe":"yes"}"#),
            "message: field `fromMe` must be true or false, got a string"
        );
        assert!(
            err(r#"{"kind":"message","chat":"1@lid","id":"A","timestamp":1,"media":{"kind":"image","mediaKey":"%%"}}"#)
                .starts_with("message: field `media.mediaKey` must be base64")
        );
        assert_eq!(
            err(
                r#"{"kind":"message","chat":"1@lid","id":"A","timestamp":1,"reactions":[{"from":"2@lid"}]}"#
            ),
            "message: field `reactions[0].emoji` is missing"
        );
        assert_eq!(
            err(r#"{"kind":"mapping","lid":"1@s.whatsapp.net","pn":"2@s.whatsapp.net"}"#),
            "mapping: field `lid` must be a LID (…@lid), got \"1@s.whatsapp.net\""
        );
        assert_eq!(
            err(r#"{"kind":"group","jid":"1@s.whatsapp.net"}"#),
            "group: field `jid` must be a group JID (…@g.us), got \"1@s.whatsapp.net\""
        );
        assert_eq!(
            err(
                r#"{"kind":"group","jid":"1-2@g.us","participants":[{"jid":"1@lid","admin":"boss"}]}"#
            ),
            "group: field `participants[0].admin` must be \"\", \"admin\" or \"superadmin\", got \"boss\""
        );
        assert_eq!(
            err(r#"{"kind":"chat","jid":"1@lid","unreadCount":1.5}"#),
            "chat: field `unreadCount` must be a count: a whole number from 0 to 4294967295, got 1.5"
        );
        assert_eq!(
            err(r#"{"kind":"contact"}"#),
            "contact: field `jid` is missing"
        );
        assert_eq!(
            err(
                r#"{"kind":"message","chat":"1@lid","id":"A","timestamp":1,"fromMe":true,"status":"seen"}"#
            ),
            "message: field `status` must be \"sent\", \"delivered\", \"read\" or \"played\", got \"seen\""
        );
        assert_eq!(
            err(r#"{"kind":"message","chat":"1@lid","id":"A","timestamp":1,"status":"read"}"#),
            "message: field `status` is only for our own messages (`fromMe`: true)"
        );
    }

    #[test]
    fn defaults_normalization_and_unknown_keys() {
        let Ok(Some(Record::Message(m))) = parse_line(
            r#"{"kind":"message","chat":"123:4@c.us","id":"A","timestamp":5,"future":[1]}"#,
            None,
        ) else {
            panic!("a minimal message parses");
        };
        let (m, extra) = *m;
        assert_eq!(m.chat_jid, "123@s.whatsapp.net");
        assert_eq!(m.sender, "123@s.whatsapp.net");
        assert_eq!(m.kind, "conversation");
        assert_eq!(m.body, "");
        assert_eq!(extra, MessageExtra::default());
        let Ok(Some(Record::Message(m))) = parse_line(
            r#"{"kind":"message","chat":"1@lid","id":"A","timestamp":5,"fromMe":true}"#,
            Some("9@s.whatsapp.net"),
        ) else {
            panic!("a message of ours parses");
        };
        assert_eq!(m.0.sender, "9@s.whatsapp.net");
        let Ok(Some(Record::Message(m))) = parse_line(
            r#"{"kind":"message","chat":"1@lid","id":"A","timestamp":5,"from":null}"#,
            None,
        ) else {
            panic!("a message with an unknown sender parses");
        };
        assert_eq!(m.0.sender, "");
        assert_eq!(parse_line("   ", None), Ok(None));
    }

    #[test]
    fn a_bad_line_stops_the_scan_with_its_number() {
        let input = "{\"kind\":\"contact\",\"jid\":\"1@s.whatsapp.net\"}\n\n{\"kind\":\"chat\"}\n";
        let mut n = 0;
        let e = scan(&mut input.as_bytes(), None, &mut |_| {
            n += 1;
            Ok(())
        })
        .unwrap_err();
        assert_eq!(e.0, "line 3: chat: field `jid` is missing");
        assert_eq!(n, 1);
    }

    #[test]
    fn reader_import_round_trips_and_is_idempotent() {
        let input = concat!(
            r#"{"kind":"mapping","lid":"77@lid","pn":"111@s.whatsapp.net"}"#,
            "\n",
            r#"{"kind":"contact","jid":"111@s.whatsapp.net","name":"Zoë","pushname":null,"number":"111","isMyContact":true}"#,
            "\n",
            r#"{"kind":"group","jid":"1-2@g.us","subject":"Straße","participants":[{"jid":"111@s.whatsapp.net","admin":"superadmin"},{"jid":"77@lid","admin":""}]}"#,
            "\n",
            r#"{"kind":"chat","jid":"111@s.whatsapp.net","unreadCount":1,"pinned":true}"#,
            "\n",
            r#"{"kind":"message","chat":"111@s.whatsapp.net","id":"M1","body":"héllo","timestamp":1000}"#,
            "\n",
            r#"{"kind":"message","chat":"111@s.whatsapp.net","id":"M2","body":"x","timestamp":2000,"fromMe":true,"from":"9@s.whatsapp.net","edited":true,"status":"read","reactions":[{"from":"111@s.whatsapp.net","emoji":"👍"}]}"#,
            "\n",
            r#"{"kind":"message","chat":"1-2@g.us","id":"G1","body":"gone","timestamp":1500,"from":"77@lid","revoked":true,"media":{"kind":"image","mediaKey":"AQI=","size":3}}"#,
            "\n",
        );
        let t = super::super::tests::temp_store();
        let r = import_reader(&t.store, &mut input.as_bytes()).unwrap();
        assert_eq!((r.messages, r.new_messages, r.chats), (3, 3, 1));
        let export = |store: &Store| {
            let mut out = Vec::new();
            export_to(store, None, &mut out).unwrap();
            String::from_utf8(out).unwrap()
        };
        let a = export(&t.store);
        let again = import_reader(&t.store, &mut input.as_bytes()).unwrap();
        assert_eq!(again.new_messages, 0);
        assert_eq!(export(&t.store), a);
        let u = super::super::tests::temp_store();
        import_reader(&u.store, &mut a.as_bytes()).unwrap();
        assert_eq!(export(&u.store), a);
        assert!(a.contains(r#""edited":true"#));
        assert!(
            a.contains(r#""revoked":false,"status":"read","timestamp":2000"#),
            "{a}"
        );
        assert!(
            a.contains(r#""revoked":false,"status":null,"timestamp":1000"#),
            "{a}"
        );
        assert!(a.contains(r#""body":"","chat":"1-2@g.us""#));
        assert!(a.contains(r#""mediaKey":"AQI=""#));
        assert!(a.contains(r#""emoji":"👍""#));
        assert!(a.contains(r#""unreadCount":1"#));
        let mut one = Vec::new();
        export_to(&t.store, Some("1-2@g.us"), &mut one).unwrap();
        let one = String::from_utf8(one).unwrap();
        assert!(one.contains("\"id\":\"G1\"") && !one.contains("\"id\":\"M1\""));
        assert!(one.contains(r#""kind":"mapping""#));
        assert!(export_to(&t.store, Some("5@lid"), &mut Vec::new()).is_err());
    }

    #[test]
    fn a_bad_reader_imports_nothing() {
        let t = super::super::tests::temp_store();
        let input = "{\"kind\":\"contact\",\"jid\":\"1@s.whatsapp.net\"}\n{\"kind\":\"message\",\"chat\":\"1@lid\",\"id\":\"A\"}\n";
        let e = import_reader(&t.store, &mut input.as_bytes()).unwrap_err();
        assert!(
            e.0.starts_with("line 2: message: field `timestamp` is missing"),
            "{e}"
        );
        let mut out = Vec::new();
        export_to(&t.store, None, &mut out).unwrap();
        assert!(out.is_empty());
    }
}
