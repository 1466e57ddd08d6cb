//! Shaping store rows into the original's JSON: `SimpleMessage`, `SimpleChat`, `SimpleContact`
//! and `ResolvedContact` (seed-behaviour §3), with a person's LID and phone JIDs merged and
//! display names chosen as the original's ContactPresenter does (§2.4).
//!
//! Owns: identity merging for display, display names, contact scoring (`resolve_contact`), the
//! JSON shapes shared by the read tools, JID and time arguments, and running one tool call's
//! reads in one read transaction ([`answer`]). Must not: write to the store, or know MCP framing.
//!
//! Merging rules (one person = a phone JID plus, when mapped, a LID):
//! - The shown id is the canonical JID: the phone JID for a mapped LID, otherwise the JID itself.
//! - A chat stored under both identities is one `SimpleChat`: the two rows are the two halves of
//!   one conversation, so `unreadCount` is their sum, `timestamp` the newest, `lastMessage` the
//!   newest message of either half, and the name the first usable one.
//! - Messages of both halves are merged by time; their ids and `to` use the canonical chat JID
//!   (a lookup by either identity finds them). `from` is the sender's canonical JID; our own
//!   messages say the own JID when it is known, else `"me"`.
//! - Contacts stored under both identities are one contact: the first usable name, the first
//!   push name and number, `isMyContact` if either says so.

use super::{ToolCall, ToolResult};
use crate::json::{self, Value};
use crate::store::model::{ContactRow, Doc, doc_time};
use crate::store::queries::{Lookup, StoredMessage};
use crate::store::{Result, jid};
use redb::ReadTransaction;
use std::collections::HashMap;

/// What a read tool answers: JSON, or the text of an `isError` result.
pub type Answer = std::result::Result<Value, String>;

/// Runs one tool call's reads in one read transaction (on a blocking thread). A store failure
/// becomes an `isError` result prefixed with `failure`, as the original words them.
pub async fn answer<F>(call: &ToolCall, failure: String, f: F) -> ToolResult
where
    F: FnOnce(&mut Views) -> Result<Answer> + Send + 'static,
{
    let result = call
        .env
        .store
        .read(move |txn| {
            let lk = Lookup::new(txn)?;
            let mut views = Views::new(txn, &lk)?;
            f(&mut views)
        })
        .await;
    match result {
        Ok(Ok(v)) => ToolResult::json(&v),
        Ok(Err(text)) => ToolResult::error(text),
        Err(e) => ToolResult::error(format!("{failure}: {e}")),
    }
}

/// What a JID looks like, for error messages.
pub const JID_HELP: &str = "A JID looks like 447700900123@s.whatsapp.net (a person, by phone \
     number), 123456789012345@lid (a person's privacy id) or 120363012345678901@g.us (a group); \
     a phone number with country code such as +44 7700 900123 works too.";

/// A JID argument: a JID (normalized, `:device` dropped, `c.us` → `s.whatsapp.net`) or a phone
/// number in any common form.
pub fn parse_jid(field: &str, raw: &str) -> std::result::Result<String, String> {
    jid::parse_address(raw)
        .ok_or_else(|| format!("Invalid {field}: \"{raw}\" is not a JID. {JID_HELP}"))
}

/// A JID argument that must name someone WhatsApp can reach (a send, a profile picture): as
/// [`parse_jid`], and then a person's phone JID or LID (digits before the `@`) or a group
/// (digits and `-`). Other servers (`…@unknown.server`, `status@broadcast`) and user parts
/// (`abc@s.whatsapp.net`) are refused with the forms that work.
pub fn parse_wa_jid(field: &str, raw: &str) -> std::result::Result<String, String> {
    let j = parse_jid(field, raw)?;
    let (user, server) = (jid::user(&j), jid::server(&j));
    let digits_only = |u: &str| u.len() <= 64 && u.chars().all(|c| c.is_ascii_digit());
    let ok = match server {
        jid::PN_SERVER | jid::LID_SERVER => digits_only(user),
        jid::GROUP_SERVER => {
            user.len() <= 64
                && user.chars().any(|c| c.is_ascii_digit())
                && user.chars().all(|c| c.is_ascii_digit() || c == '-')
        }
        _ => false,
    };
    if ok {
        Ok(j)
    } else {
        Err(format!(
            "Invalid {field}: \"{}\" is not an address WhatsApp can reach (the part before @ \
             must be digits, and the server s.whatsapp.net, lid or g.us). {JID_HELP}",
            raw.trim()
        ))
    }
}

/// Full Unicode case folding (`ß` → `ss`) and diacritics stripped (`é` → `e`), for matching:
/// the search index's folding, so names and message text match alike.
pub fn fold(s: &str) -> String {
    crate::store::search::fold(s)
}

/// A name worth showing: not blank, not the id itself, not a LID (seed §2.4).
fn usable<'s>(v: Option<&'s str>, canonical: &str) -> Option<&'s str> {
    v.filter(|s| {
        let t = s.trim();
        !t.is_empty() && t != canonical && !jid::is_lid(t)
    })
}

fn opt(v: Option<&str>) -> Value {
    v.map(json::s).unwrap_or(Value::Null)
}

fn ms(v: u64) -> Value {
    json::int(i64::try_from(v).unwrap_or(i64::MAX))
}

/// The display fields of a person, merged over their identities.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub name: Option<String>,
    pub pushname: Option<String>,
    pub number: Option<String>,
    pub is_my_contact: bool,
}

/// One conversation, merged over a person's identities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatView {
    /// Canonical JID.
    pub id: String,
    /// Every JID the conversation may be stored under (canonical first).
    pub jids: Vec<String>,
    pub name: String,
    pub is_group: bool,
    pub unread: u64,
    pub ts: u64,
    pub last_doc: Doc,
}

/// One contact, merged over a person's identities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactView {
    /// Canonical JID.
    pub id: String,
    /// The stored JIDs merged into it.
    pub jids: Vec<String>,
    pub name: Option<String>,
    pub pushname: Option<String>,
    /// Phone digits; empty when unknown.
    pub number: String,
    pub is_my_contact: bool,
    pub updated_at: u64,
}

/// A contact match of `resolve_contact`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub contact: ContactView,
    pub matched_by: &'static str,
    pub score: u32,
}

/// Display-side reads over one transaction, with a cache of canonical JIDs.
pub struct Views<'a> {
    /// For queries that take the transaction itself (search).
    pub txn: &'a ReadTransaction,
    pub lk: &'a Lookup,
    canon: HashMap<String, String>,
    /// The own JID, canonical.
    own: Option<String>,
}

impl<'a> Views<'a> {
    pub fn new(txn: &'a ReadTransaction, lk: &'a Lookup) -> Result<Views<'a>> {
        let own = match lk.own_jid() {
            Some(o) => Some(lk.canonical(&jid::normalize(o).unwrap_or_else(|| o.to_string()))?),
            None => None,
        };
        Ok(Views {
            txn,
            lk,
            canon: HashMap::new(),
            own,
        })
    }

    /// The own account's canonical JID, when known.
    pub fn own(&self) -> Option<&str> {
        self.own.as_deref()
    }

    /// The canonical JID (phone JID for a mapped LID), cached.
    pub fn canonical(&mut self, any: &str) -> Result<String> {
        if let Some(c) = self.canon.get(any) {
            return Ok(c.clone());
        }
        let c = self.lk.canonical(any)?;
        self.canon.insert(any.to_string(), c.clone());
        Ok(c)
    }

    /// Every JID one person or chat may be stored under: the canonical JID, its other identity,
    /// and `any` itself.
    pub fn identities(&mut self, any: &str) -> Result<(String, Vec<String>)> {
        let canonical = self.canonical(any)?;
        let mut jids = self.lk.related(&canonical)?;
        if !jids.iter().any(|j| j == any) {
            jids.push(any.to_string());
        }
        Ok((canonical, jids))
    }

    // ---- names ---------------------------------------------------------------------------

    /// The contact fields of `jid`, merged over its identities (its own row first).
    pub fn summary(&self, any: &str) -> Result<Option<Summary>> {
        let mut jids = self.lk.related(any)?;
        if let Ok(c) = self.lk.canonical(any)
            && !jids.contains(&c)
        {
            jids.push(c);
        }
        let mut out: Option<Summary> = None;
        for j in &jids {
            if let Some(row) = self.lk.contact(j)? {
                let s = out.get_or_insert_with(Summary::default);
                merge_summary(s, &row, any);
            }
        }
        Ok(out)
    }

    /// The first usable of name, push name and number.
    pub fn best_contact_name(&self, any: &str) -> Result<Option<String>> {
        let Some(s) = self.summary(any)? else {
            return Ok(None);
        };
        Ok(usable(s.name.as_deref(), any)
            .or_else(|| usable(s.pushname.as_deref(), any))
            .or_else(|| usable(s.number.as_deref(), any))
            .map(str::to_string))
    }

    /// seed §2.4 `getBestChatName`: groups by subject; then the stored chat name; then the
    /// contact's names; then a phone JID's digits.
    pub fn best_chat_name(
        &self,
        related: &[String],
        canonical: &str,
        stored: Option<&str>,
    ) -> Result<Option<String>> {
        if jid::is_group(canonical) {
            if let Some(n) = usable(stored, canonical) {
                return Ok(Some(n.to_string()));
            }
            for j in std::iter::once(canonical).chain(related.iter().map(String::as_str)) {
                if let Some(g) = self.lk.group(j)?
                    && let Some(n) = usable(g.subject.as_deref(), canonical)
                {
                    return Ok(Some(n.to_string()));
                }
            }
        }
        if let Some(n) = usable(stored, canonical) {
            return Ok(Some(n.to_string()));
        }
        for j in related.iter().map(String::as_str).chain([canonical]) {
            if let Some(n) = self.best_contact_name(j)? {
                return Ok(Some(n));
            }
        }
        if jid::is_pn(canonical) {
            return Ok(Some(jid::user(canonical).to_string()));
        }
        Ok(None)
    }

    // ---- chats ---------------------------------------------------------------------------

    /// The conversation `any` belongs to, merged over identities; `None` when no chat row
    /// exists under any of them.
    pub fn chat_view(&mut self, any: &str) -> Result<Option<ChatView>> {
        let (id, jids) = self.identities(any)?;
        let mut found = false;
        let mut stored: Option<String> = None;
        let mut is_group = jid::is_group(&id);
        let (mut unread, mut ts, mut last_doc) = (0u64, 0u64, 0);
        for j in &jids {
            if let Some(row) = self.lk.chat(j)? {
                found = true;
                if stored.is_none() {
                    stored = usable(row.name.as_deref(), &id).map(str::to_string);
                }
                is_group |= row.is_group;
                unread += u64::from(row.unread);
                ts = ts.max(row.ts);
                last_doc = last_doc.max(row.last_doc);
            }
        }
        if !found {
            return Ok(None);
        }
        let name = self
            .best_chat_name(&jids, &id, stored.as_deref())?
            .or(stored)
            .unwrap_or_else(|| id.clone());
        Ok(Some(ChatView {
            id,
            jids,
            name,
            is_group,
            unread,
            ts,
            last_doc,
        }))
    }

    /// A chat's newest message.
    pub fn last_message(&self, chat: &ChatView) -> Result<Option<StoredMessage>> {
        if chat.last_doc == 0 {
            return Ok(None);
        }
        self.lk.message_at(chat.last_doc)
    }

    /// `SimpleChat`; `last` is shown as `lastMessage` when given.
    pub fn chat_value(&mut self, chat: &ChatView, last: Option<&StoredMessage>) -> Result<Value> {
        let mut v = json::obj([
            ("id", json::s(chat.id.clone())),
            ("name", json::s(chat.name.clone())),
            ("isGroup", json::bool(chat.is_group)),
            ("unreadCount", ms(chat.unread)),
            ("timestamp", ms(chat.ts)),
        ]);
        if let Some(m) = last {
            let mv = self.message(m)?;
            if let Value::Object(o) = &mut v {
                o.insert("lastMessage".into(), mv);
            }
        }
        Ok(v)
    }

    // ---- messages ------------------------------------------------------------------------

    /// `SimpleMessage`: `{id, body, from, to, timestamp, fromMe, hasMedia, type}`, and for our
    /// own messages (`fromMe: true`) only, `status`: `"sent"`, `"delivered"`, `"read"` or
    /// `"played"` (from receipts; in a group, the furthest any member got). Others' messages
    /// keep the original's shape exactly (no `status` key rather than a null one).
    pub fn message(&mut self, m: &StoredMessage) -> Result<Value> {
        let chat = self.canonical(&m.chat_jid)?;
        let from = if m.row.from_me {
            match &self.own {
                Some(o) => o.clone(),
                None if !m.row.sender.is_empty() && m.row.sender != "me" => {
                    self.canonical(&m.row.sender)?
                }
                None => "me".to_string(),
            }
        } else if m.row.sender.is_empty() {
            chat.clone()
        } else {
            self.canonical(&m.row.sender)?
        };
        let mut v = json::obj([
            ("id", json::s(format!("{chat}:{}", m.row.id))),
            ("body", json::s(m.row.body.clone())),
            ("from", json::s(from)),
            ("to", json::s(chat)),
            ("timestamp", ms(doc_time(m.doc))),
            ("fromMe", json::bool(m.row.from_me)),
            ("hasMedia", json::bool(m.row.has_media)),
            ("type", json::s(m.row.kind.clone())),
        ]);
        if m.row.from_me
            && let Value::Object(o) = &mut v
        {
            o.insert("status".into(), json::s(m.row.delivery().as_str()));
        }
        Ok(v)
    }

    /// Up to `limit` messages of the chats `jids` older than `before` (`None` = newest), newest
    /// first, merged by time.
    pub fn newest_across(
        &self,
        jids: &[String],
        before: Option<Doc>,
        limit: usize,
    ) -> Result<Vec<StoredMessage>> {
        let mut all = Vec::new();
        for j in jids {
            all.extend(self.lk.messages_before(j, before, limit)?);
        }
        all.sort_by_key(|m| std::cmp::Reverse(m.doc));
        all.truncate(limit);
        Ok(all)
    }

    /// Up to `limit` messages of the chats `jids` newer than `after`, oldest first.
    pub fn oldest_across(
        &self,
        jids: &[String],
        after: Doc,
        limit: usize,
    ) -> Result<Vec<StoredMessage>> {
        let mut all = Vec::new();
        for j in jids {
            all.extend(self.lk.messages_after(j, after, limit)?);
        }
        all.sort_by_key(|m| m.doc);
        all.truncate(limit);
        Ok(all)
    }

    // ---- contacts ------------------------------------------------------------------------

    /// The contact `any` belongs to, merged over identities; `None` when no contact row exists
    /// under any of them.
    pub fn contact_view(&mut self, any: &str) -> Result<Option<ContactView>> {
        let (id, jids) = self.identities(any)?;
        let mut rows = Vec::new();
        for j in &jids {
            if let Some(row) = self.lk.contact(j)? {
                rows.push((j.clone(), row));
            }
        }
        if rows.is_empty() {
            return Ok(None);
        }
        Ok(Some(merge_contact(id, rows)))
    }

    /// Every contact, merged by person, most recently updated first.
    pub fn all_contacts(&mut self) -> Result<Vec<ContactView>> {
        let mut rows: Vec<(String, ContactRow)> = Vec::new();
        self.lk.contacts_all(&mut |j, row| {
            rows.push((j.to_string(), row));
            Ok(())
        })?;
        let mut groups: HashMap<String, Vec<(String, ContactRow)>> = HashMap::new();
        let mut order: Vec<String> = Vec::new();
        for (j, row) in rows {
            let c = self.canonical(&j)?;
            let entry = groups.entry(c.clone()).or_default();
            if entry.is_empty() {
                order.push(c);
            }
            entry.push((j, row));
        }
        let mut out: Vec<ContactView> = order
            .into_iter()
            .filter_map(|c| groups.remove(&c).map(|rows| merge_contact(c, rows)))
            .collect();
        out.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// seed §5.2 `resolve_contact` over every contact: scored matches, best first.
    pub fn resolve(&mut self, query: &str, limit: usize) -> Result<Vec<Resolved>> {
        let text = fold(query.trim());
        if text.is_empty() {
            return Ok(Vec::new());
        }
        let digits = jid::pn_from_number(query)
            .map(|j| jid::user(&j).to_string())
            .or_else(|| jid::digits(query))
            .filter(|d| d.len() >= 6);
        let mut out: Vec<Resolved> = self
            .all_contacts()?
            .into_iter()
            .filter_map(|c| {
                score(&c, &text, digits.as_deref()).map(|(score, matched_by)| Resolved {
                    contact: c,
                    matched_by,
                    score,
                })
            })
            .collect();
        out.sort_by_cached_key(|r| {
            (
                std::cmp::Reverse(r.score),
                sort_name(&r.contact),
                r.contact.id.clone(),
            )
        });
        out.truncate(limit);
        Ok(out)
    }

    /// `SimpleContact` plus `matchedBy` and `score` (the full `ResolvedContact`).
    pub fn resolved_full(&self, r: &Resolved) -> Value {
        let c = &r.contact;
        json::obj([
            ("id", json::s(c.id.clone())),
            ("name", opt(c.name.as_deref())),
            ("pushname", opt(c.pushname.as_deref())),
            (
                "isMe",
                json::bool(self.own.as_deref() == Some(c.id.as_str())),
            ),
            ("isUser", json::bool(!jid::is_group(&c.id))),
            ("isGroup", json::bool(jid::is_group(&c.id))),
            ("isWAContact", json::bool(true)),
            ("isMyContact", json::bool(c.is_my_contact)),
            ("number", json::s(c.number.clone())),
            ("matchedBy", json::s(r.matched_by)),
            ("score", json::int(i64::from(r.score))),
        ])
    }
}

/// `{id, name, number, pushname, isMyContact}` (search_contacts).
pub fn contact_brief(c: &ContactView) -> Value {
    json::obj([
        ("id", json::s(c.id.clone())),
        ("name", opt(c.name.as_deref())),
        ("number", json::s(c.number.clone())),
        ("pushname", opt(c.pushname.as_deref())),
        ("isMyContact", json::bool(c.is_my_contact)),
    ])
}

/// `{id, name, number, pushname, matchedBy, score}` (resolve_contact).
pub fn resolved_brief(r: &Resolved) -> Value {
    let c = &r.contact;
    json::obj([
        ("id", json::s(c.id.clone())),
        ("name", opt(c.name.as_deref())),
        ("number", json::s(c.number.clone())),
        ("pushname", opt(c.pushname.as_deref())),
        ("matchedBy", json::s(r.matched_by)),
        ("score", json::int(i64::from(r.score))),
    ])
}

fn merge_summary(s: &mut Summary, row: &ContactRow, id: &str) {
    if s.name.is_none() {
        s.name = usable(row.name.as_deref(), id).map(str::to_string);
    }
    if s.pushname.is_none() {
        s.pushname = row.pushname.clone().filter(|p| !p.trim().is_empty());
    }
    if s.number.is_none() {
        s.number = row.number.clone().filter(|n| !n.is_empty());
    }
    s.is_my_contact |= row.is_my_contact;
}

/// Merges the rows of one person (seed §2.4 `mergeContacts`): the newest row's fields first.
fn merge_contact(id: String, mut rows: Vec<(String, ContactRow)>) -> ContactView {
    rows.sort_by(|a, b| b.1.updated_at.cmp(&a.1.updated_at).then(a.0.cmp(&b.0)));
    let mut s = Summary::default();
    for (_, row) in &rows {
        merge_summary(&mut s, row, &id);
    }
    // A name equal to the id is kept only when nothing better exists (as the original does).
    if s.name.is_none() {
        s.name = rows
            .iter()
            .find_map(|(_, r)| r.name.clone().filter(|n| !n.trim().is_empty()))
            .filter(|n| !jid::is_lid(n.trim()));
    }
    let number = s
        .number
        .or_else(|| {
            std::iter::once(id.as_str())
                .chain(rows.iter().map(|(j, _)| j.as_str()))
                .find(|j| jid::is_pn(j))
                .map(|j| jid::user(j).to_string())
        })
        .unwrap_or_default();
    let mut jids: Vec<String> = rows.iter().map(|(j, _)| j.clone()).collect();
    jids.sort();
    ContactView {
        updated_at: rows.iter().map(|(_, r)| r.updated_at).max().unwrap_or(0),
        id,
        jids,
        name: s.name,
        pushname: s.pushname,
        number,
        is_my_contact: s.is_my_contact,
    }
}

fn sort_name(c: &ContactView) -> String {
    fold(c.name.as_deref().unwrap_or(""))
}

/// seed §5.2 scores. `text` is the folded query; `digits` is set when it holds 6+ digits.
fn score(c: &ContactView, text: &str, digits: Option<&str>) -> Option<(u32, &'static str)> {
    let name = c.name.as_deref().map(fold).unwrap_or_default();
    let push = c.pushname.as_deref().map(fold).unwrap_or_default();
    // JIDs are lower-case ASCII already.
    let ids_contain =
        |needle: &str| c.id.contains(needle) || c.jids.iter().any(|j| j.contains(needle));
    if let Some(d) = digits {
        let n = c.number.as_str();
        if !n.is_empty() {
            if n == d {
                return Some((100, "number"));
            }
            if n.starts_with(d) {
                return Some((90, "number"));
            }
            if n.contains(d) {
                return Some((70, "number"));
            }
        }
        if ids_contain(d) {
            return Some((60, "id"));
        }
        if !name.is_empty() && name.contains(text) {
            return Some((50, "name"));
        }
        if !push.is_empty() && push.contains(text) {
            return Some((50, "pushname"));
        }
        if ids_contain(text) {
            return Some((50, "id"));
        }
        return None;
    }
    if !name.is_empty() && name == text {
        return Some((100, "name"));
    }
    if !push.is_empty() && push == text {
        return Some((95, "pushname"));
    }
    if name.starts_with(text) && !name.is_empty() {
        return Some((80, "name"));
    }
    if push.starts_with(text) && !push.is_empty() {
        return Some((75, "pushname"));
    }
    if name.contains(text) {
        return Some((60, "name"));
    }
    if push.contains(text) {
        return Some((55, "pushname"));
    }
    if ids_contain(text) {
        return Some((50, "id"));
    }
    None
}

// ---- time arguments ------------------------------------------------------------------------

/// `after`/`before`: epoch milliseconds as digits, or ISO-8601 `YYYY-MM-DD` or
/// `YYYY-MM-DDTHH:MM[:SS[.fff]]` with `Z`, `±HH:MM` (also `±HHMM`, `±HH`) or nothing (UTC).
pub fn parse_time(field: &str, raw: &str) -> std::result::Result<u64, String> {
    let s = raw.trim();
    let err = || {
        format!(
            "Invalid {field}: \"{raw}\". Give epoch milliseconds as digits (e.g. 1769882400000) \
             or an ISO-8601 date or date-time such as 2026-01-31, 2026-01-31T18:00, \
             2026-01-31T18:00:00Z or 2026-01-31T18:00:00.250+01:00 (no offset means UTC)."
        )
    };
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<u64>().map_err(|_| err());
    }
    iso_ms(s).ok_or_else(err)
}

fn num(b: &[u8], from: usize, len: usize) -> Option<i64> {
    let part = b.get(from..from + len)?;
    if !part.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(part.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

fn iso_ms(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, mo, d) = (num(b, 0, 4)?, num(b, 5, 2)?, num(b, 8, 2)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) {
        return None;
    }
    let mut total = days_from_civil(y, mo, d) * 86_400_000;
    if b.len() == 10 {
        return u64::try_from(total).ok();
    }
    if !matches!(b[10], b'T' | b't' | b' ') || b.len() < 16 || b[13] != b':' {
        return None;
    }
    let (h, mi) = (num(b, 11, 2)?, num(b, 14, 2)?);
    let mut pos = 16;
    let mut sec = 0;
    let mut frac_ms = 0;
    if b.get(pos) == Some(&b':') {
        sec = num(b, pos + 1, 2)?;
        pos += 3;
        if matches!(b.get(pos), Some(b'.' | b',')) {
            pos += 1;
            let start = pos;
            while b.get(pos).is_some_and(u8::is_ascii_digit) {
                pos += 1;
            }
            let digits = &b[start..pos];
            if digits.is_empty() || digits.len() > 9 {
                return None;
            }
            frac_ms = (0..3).fold(0i64, |n, i| {
                n * 10 + digits.get(i).map(|d| i64::from(d - b'0')).unwrap_or(0)
            });
        }
    }
    if h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let offset_min = match b.get(pos) {
        None => 0,
        Some(b'Z' | b'z') if pos + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) => {
            let rest = &b[pos + 1..];
            let (oh, om) = match rest.len() {
                2 => (num(rest, 0, 2)?, 0),
                4 => (num(rest, 0, 2)?, num(rest, 2, 2)?),
                5 if rest[2] == b':' => (num(rest, 0, 2)?, num(rest, 3, 2)?),
                _ => return None,
            };
            if oh > 23 || om > 59 {
                return None;
            }
            let m = oh * 60 + om;
            if *sign == b'+' { m } else { -m }
        }
        _ => return None,
    };
    total += ((h * 60 + mi - offset_min) * 60 + sec) * 1000 + frac_ms;
    u64::try_from(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_8601_and_epoch_ms() {
        let t = |s: &str| parse_time("after", s);
        assert_eq!(t("1769882400000"), Ok(1_769_882_400_000));
        assert_eq!(t("1970-01-01"), Ok(0));
        assert_eq!(t("2026-01-31"), Ok(1_769_817_600_000));
        assert_eq!(t("2026-01-31T18:00:00Z"), Ok(1_769_882_400_000));
        assert_eq!(t("2026-01-31T18:00Z"), Ok(1_769_882_400_000));
        assert_eq!(t("2026-01-31T18:00"), Ok(1_769_882_400_000));
        assert_eq!(t("2026-01-31 18:00:00"), Ok(1_769_882_400_000));
        assert_eq!(t("2026-01-31T19:00:00+01:00"), Ok(1_769_882_400_000));
        assert_eq!(t("2026-01-31T19:00:00+0100"), Ok(1_769_882_400_000));
        assert_eq!(t("2026-01-31T13:30:00-04:30"), Ok(1_769_882_400_000));
        assert_eq!(t("2026-01-31T18:00:00.250Z"), Ok(1_769_882_400_250));
        assert_eq!(t("2026-01-31T18:00:00.5Z"), Ok(1_769_882_400_500));
        assert_eq!(t("2026-01-31T18:00:00.123456789Z"), Ok(1_769_882_400_123));
        assert_eq!(t("2024-02-29"), Ok(1_709_164_800_000));
        assert_eq!(t(" 2026-01-31 "), Ok(1_769_817_600_000));
        for bad in [
            "",
            "yesterday",
            "2026-1-31",
            "2026-02-30",
            "2025-02-29",
            "2026-13-01",
            "2026-01-31T25:00",
            "2026-01-31T18",
            "2026-01-31T18:00:00+1",
            "2026-01-31T18:00:00Zjunk",
            "1969-12-31",
            "-5",
            "12.5",
            "2026-01-31T18:00:00.Z",
        ] {
            let e = t(bad).unwrap_err();
            assert!(e.contains("Invalid after"), "{bad}: {e}");
        }
    }

    #[test]
    fn folding_is_full_case_and_diacritics() {
        assert_eq!(fold("STRASSE"), fold("straße"));
        assert_eq!(fold("Café"), "cafe");
        assert_eq!(fold("СПАСИБО"), "спасибо");
        assert_eq!(fold("ΣΟΦΟΣ"), fold("σοφος"));
    }

    #[test]
    fn jid_arguments() {
        assert_eq!(
            parse_jid("jid", "+44 7700-900123").as_deref(),
            Ok("447700900123@s.whatsapp.net")
        );
        assert_eq!(
            parse_jid("jid", "1:2@s.whatsapp.net").as_deref(),
            Ok("1@s.whatsapp.net")
        );
        let e = parse_jid("jid", "bob").unwrap_err();
        assert!(
            e.contains("@s.whatsapp.net") && e.contains("\"bob\""),
            "{e}"
        );
    }
}
