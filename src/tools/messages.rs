//! Message tools: `list_messages`, `get_message_by_id`, `search_messages`, `get_message_context`,
//! `get_last_interaction`, `send_message`, and the new `send_reaction`, `mark_as_read` and
//! `wait_for_messages`.
//!
//! Owns: reading, searching, sending, reacting to and marking messages, and waiting for new ones.
//! Must not: handle media bytes (that is the media group) or change chats and contacts. The read
//! tools answer from the store; sending, reacting and marking live in `send.rs` (with the safety
//! rules of `safety.rs`), waiting in `wait.rs`.
//!
//! `get_message_context` returns a real window: `limit` messages including the target, half
//! before it and the rest after, filled from the other side at either end of the chat.
//! `search_messages` ranks through the search index (`store::search`) and applies `chat_id` and
//! `from` as candidate filters; `after` is inclusive and `before` exclusive. With an empty query
//! it lists the newest messages that pass the filters.

use super::views::{self, Answer, Views};
use super::{Annotations, Param, Tool, ToolCall, ToolResult};
use crate::json::{self, Value};
use crate::store::model::{DOC_SEQ_BITS, Doc, MessageRow, doc_floor};
use crate::store::queries::{self, Lookup, StoredMessage};
use crate::store::{Result, jid, search};
use std::collections::HashSet;

/// The annotations of a tool that writes to WhatsApp without destroying anything and can be
/// repeated safely.
const WRITE_IDEMPOTENT: Annotations = Annotations {
    read_only: false,
    destructive: Some(false),
    idempotent: true,
    open_world: true,
};

pub fn tools() -> Vec<Tool> {
    vec![
        Tool::new(
            "list_messages",
            "Get the newest messages of one chat, returned oldest first. Returns a JSON array of \
             {id, body, from, to, timestamp, fromMe, hasMedia, type}: timestamp is epoch \
             milliseconds, to is the chat's JID, and id (\"<chat jid>:<message id>\") is what \
             get_message_by_id, get_message_context and download_media take. With include_media, \
             messages that carry media also get a media field {status, mimetype, filename, \
             filesize, data?}.",
            vec![
                Param::string(
                    "chat_id",
                    "JID of the chat, e.g. 447700900123@s.whatsapp.net for a person or \
                     120363012345678901@g.us for a group.",
                )
                .required(),
                Param::positive(
                    "limit",
                    50,
                    "Maximum number of messages to return (the newest ones).",
                ),
                Param::boolean(
                    "include_media",
                    false,
                    "Add media details to messages that carry an image, video, audio, document or \
                     sticker.",
                ),
                Param::boolean(
                    "include_full_data",
                    false,
                    "With include_media, also return each file's content as base64 in media.data \
                     (can be large).",
                ),
                Param::positive(
                    "media_limit",
                    5,
                    "With include_media, the maximum number of messages to add media details to; \
                     the rest are marked skipped.",
                ),
            ],
            Annotations::READ_LOCAL,
            crate::tool_fn!(list_messages),
        ),
        Tool::new(
            "get_message_by_id",
            "Get one stored message by its id. Returns {id, body, from, to, timestamp (epoch ms), \
             fromMe, hasMedia, type}, or an error if no such message is stored.",
            vec![
                Param::string(
                    "message_id",
                    "Message id as other tools return it: \"<chat jid>:<message id>\", e.g. \
                     447700900123@s.whatsapp.net:3EB0C767D26A1D2E.",
                )
                .required(),
            ],
            Annotations::READ_LOCAL,
            crate::tool_fn!(get_message_by_id),
        ),
        Tool::new(
            "search_messages",
            "Search the text and captions of all stored messages. Matching ignores case and \
             accents (cafe finds café). Results are ranked: exact phrase first, then messages \
             containing all the words, then word prefixes, newest first within each rank. Narrow \
             the search with chat_id, from, after and before. Returns a JSON array of messages \
             shaped as in list_messages.",
            vec![
                Param::string("query", "Words or a phrase to look for.").required(),
                Param::string(
                    "chat_id",
                    "Only search this chat (its JID). Leave out to search all chats.",
                ),
                Param::positive("limit", 20, "Maximum number of results."),
                Param::string(
                    "from",
                    "Only messages sent by this person: a JID (...@s.whatsapp.net or ...@lid) or a \
                     phone number with country code.",
                ),
                Param::string(
                    "after",
                    "Only messages sent after this time: an ISO-8601 date-time such as \
                     \"2026-01-31T18:00:00Z\", or epoch milliseconds written as a string of digits \
                     such as \"1769882400000\".",
                ),
                Param::string(
                    "before",
                    "Only messages sent before this time: an ISO-8601 date-time such as \
                     \"2026-01-31T18:00:00Z\", or epoch milliseconds written as a string of digits \
                     such as \"1769882400000\".",
                ),
            ],
            Annotations::READ_LOCAL,
            crate::tool_fn!(search_messages),
        ),
        Tool::new(
            "get_message_context",
            "Get the messages around one message in its chat, to understand what it refers to. \
             Returns {targetMessage, contextMessages, targetIndex}: contextMessages is a window of \
             messages before and after the target, oldest first and including the target, and \
             targetIndex is the target's position in it. Messages are shaped as in list_messages.",
            vec![
                Param::string(
                    "message_id",
                    "Id of the target message: \"<chat jid>:<message id>\", as list_messages and \
                     search_messages return it.",
                )
                .required(),
                Param::positive(
                    "limit",
                    20,
                    "Number of messages in the window, shared between before and after the target.",
                ),
            ],
            Annotations::READ_LOCAL,
            crate::tool_fn!(get_message_context),
        ),
        Tool::new(
            "get_last_interaction",
            "Get the most recent message, sent or received, in the chat with a person or group. \
             Returns one message shaped as in list_messages, or an error if that chat has no \
             stored messages.",
            vec![
                Param::string(
                    "jid",
                    "JID of the person (...@s.whatsapp.net) or group (...@g.us), e.g. \
                     447700900123@s.whatsapp.net.",
                )
                .required(),
            ],
            Annotations::READ_LOCAL,
            crate::tool_fn!(get_last_interaction),
        ),
        Tool {
            sends: true,
            ..Tool::new(
                "send_message",
                "Send a text message to a person or group, optionally as a reply quoting an \
                 earlier message (reply_to). Returns {success, message, messageId, timestamp \
                 (epoch ms), deduplicated, idempotencyKey}. The same text to the same chat is not \
                 sent twice within a short window (the answer then says deduplicated: true); pass \
                 idempotency_key to make a retry safe. Refused when the server is read-only, the \
                 recipient is not on the send allowlist, or the send rate limit is reached.",
                vec![
                    Param::string(
                        "recipient_jid",
                        "Who to write to: a JID (a person's ...@s.whatsapp.net or ...@lid, or a \
                         group's ...@g.us), a phone number with country code such as +44 7700 \
                         900123, or a contact's name when exactly one contact clearly matches it \
                         (otherwise the error lists the candidates).",
                    )
                    .required(),
                    Param::string(
                        "message",
                        "The text to send. WhatsApp formatting works: *bold*, _italic_, \
                         ~strikethrough~, ```monospace```.",
                    )
                    .required(),
                    Param::idempotency_key(
                        "Optional key of 1 to 200 characters. Sending again with the same key \
                         returns the first call's result instead of sending a second message.",
                    ),
                    Param::string(
                        "reply_to",
                        "Optional id of a message in the same chat to quote, as list_messages \
                         returns it (\"<chat jid>:<message id>\").",
                    ),
                ],
                WRITE_IDEMPOTENT,
                crate::tool_fn!(super::send::send_message),
            )
        },
        Tool {
            sends: true,
            ..Tool::new(
                "send_reaction",
                "React to a message with an emoji, replacing any earlier reaction of yours, or \
                 remove your reaction by passing an empty emoji. Returns a JSON confirmation.",
                vec![
                    Param::string("chat_jid", "JID of the chat that holds the message.").required(),
                    Param::string(
                        "message_id",
                        "Id of the message to react to: \"<chat jid>:<message id>\", as \
                         list_messages returns it.",
                    )
                    .required(),
                    Param::string(
                        "emoji",
                        "A single emoji, e.g. 👍. An empty string removes your reaction.",
                    )
                    .required(),
                ],
                WRITE_IDEMPOTENT,
                crate::tool_fn!(super::send::send_reaction),
            )
        },
        Tool::new(
            "mark_as_read",
            "Mark messages of a chat as read: read receipts are sent (the sender sees blue ticks \
             if both sides have them on) and the chat's unread count drops. Without message_ids, \
             every unread message of the chat is marked. Returns a JSON confirmation.",
            vec![
                Param::string(
                    "chat_jid",
                    "JID of the chat whose messages to mark as read.",
                )
                .required(),
                Param::string_array(
                    "message_ids",
                    "Ids of the messages to mark, as list_messages returns them. Leave out to mark \
                     all unread messages of the chat.",
                ),
            ],
            WRITE_IDEMPOTENT,
            crate::tool_fn!(super::send::mark_as_read),
        ),
        Tool {
            long_running: true,
            ..Tool::new(
                "wait_for_messages",
                "Wait for new incoming messages, to hold a conversation. Answers as soon as at \
                 least one message has arrived (in chat_jid, or in any chat), or after \
                 timeout_secs with an empty list. Returns {messages, cursor}: messages shaped as \
                 in list_messages, oldest first. Pass cursor as since in the next call so that \
                 nothing is missed or repeated; without since, only messages arriving after the \
                 call starts count.",
                vec![
                    Param::string(
                        "chat_jid",
                        "Only wait for messages in this chat (its JID). Leave out for any chat.",
                    ),
                    Param::string(
                        "since",
                        "The cursor from the previous wait_for_messages answer. Messages that \
                         arrived after it are returned at once.",
                    ),
                    Param::positive(
                        "timeout_secs",
                        25,
                        "Longest time to wait, in seconds (at most 55).",
                    )
                    .max(55),
                ],
                Annotations::READ_LOCAL,
                crate::tool_fn!(super::wait::wait_for_messages),
            )
        },
    ]
}

fn count_arg(call: &ToolCall, name: &str, default: i64) -> usize {
    usize::try_from(call.args.int(name).unwrap_or(default)).unwrap_or(1)
}

/// What `list_messages` says about a message's media. The bytes are fetched by `download_media`
/// (media issue); here the stored reference is described.
fn media_value(v: &Views, m: &StoredMessage) -> Result<Value> {
    let Some(r) = v.lk.media(m.doc)? else {
        return Ok(json::obj([
            ("status", json::s("not_available")),
            (
                "hint",
                json::s(
                    "No media reference is stored for this message, so it cannot be downloaded.",
                ),
            ),
        ]));
    };
    let opt = |x: &Option<String>| x.clone().map(json::s).unwrap_or(Value::Null);
    let mut out = json::obj([
        ("status", json::s("not_downloaded")),
        ("mimetype", opt(&r.mimetype)),
        ("filename", opt(&r.filename)),
        (
            "filesize",
            if r.size > 0 {
                json::int(i64::try_from(r.size).unwrap_or(i64::MAX))
            } else {
                Value::Null
            },
        ),
        (
            "hint",
            json::s(
                "The file itself is not in the store yet: use download_media with this message id once WhatsApp is linked.",
            ),
        ),
    ]);
    if let (Some(file), Value::Object(o)) = (&r.local_file, &mut out) {
        o.insert("status".into(), json::s("saved"));
        o.insert("localFile".into(), json::s(file.clone()));
    }
    Ok(out)
}

async fn list_messages(call: ToolCall) -> ToolResult {
    let raw = call.args.str("chat_id").unwrap_or_default().to_string();
    let limit = count_arg(&call, "limit", 50);
    let include_media = call.args.bool("include_media").unwrap_or(false);
    let media_limit = count_arg(&call, "media_limit", 5);
    let failure = format!("Error listing messages for chat {raw}");
    views::answer(&call, failure, move |v| {
        let chat = match views::parse_jid("chat_id", &raw) {
            Ok(j) => j,
            Err(e) => return Ok(Err(e)),
        };
        let (_, jids) = v.identities(&chat)?;
        let mut msgs = v.newest_across(&jids, None, limit)?;
        msgs.reverse();
        let mut out = Vec::with_capacity(msgs.len());
        let mut with_media = 0usize;
        for m in &msgs {
            let mut value = v.message(m)?;
            if include_media && m.row.has_media {
                let media = if with_media < media_limit {
                    media_value(v, m)?
                } else {
                    json::obj([
                        ("status", json::s("skipped")),
                        ("reason", json::s("media_limit_reached")),
                    ])
                };
                with_media += 1;
                if let Value::Object(o) = &mut value {
                    o.insert("media".into(), media);
                }
            }
            out.push(value);
        }
        Ok(Ok(json::arr(out)))
    })
    .await
}

/// A message by its public id `"<chat jid>:<message id>"`, either identity of the chat.
/// `Err` when the id is malformed.
fn find_message(
    v: &Views,
    public_id: &str,
) -> Result<std::result::Result<Option<StoredMessage>, String>> {
    let id = public_id.trim();
    let split = id
        .find('@')
        .and_then(|at| id[at..].find(':').map(|c| c + at))
        .filter(|&c| c + 1 < id.len());
    let Some(colon) = split else {
        return Ok(Err(format!(
            "Invalid message_id: \"{public_id}\". A message id looks like \
             \"<chat jid>:<message id>\", e.g. 447700900123@s.whatsapp.net:3EB0C767D26A1D2E, as \
             list_messages and search_messages return it."
        )));
    };
    let chat = jid::normalize(&id[..colon]).unwrap_or_else(|| id[..colon].to_string());
    let key = &id[colon + 1..];
    Ok(Ok(queries::message_by_public_id(
        v.txn,
        &format!("{chat}:{key}"),
    )?))
}

async fn get_message_by_id(call: ToolCall) -> ToolResult {
    let id = call.args.str("message_id").unwrap_or_default().to_string();
    let failure = format!("Error getting message {id}");
    views::answer(&call, failure, move |v| {
        let answer: Answer = match find_message(v, &id)? {
            Err(e) => Err(e),
            Ok(None) => Err(format!("Message not found for ID: {id}")),
            Ok(Some(m)) => Ok(v.message(&m)?),
        };
        Ok(answer)
    })
    .await
}

/// The window of `limit` messages around a target: `before` newest first, `after` oldest
/// first. Returns `(how many before, how many after)`: half before, the rest after, each side
/// filling in for the other at the chat's ends.
pub(crate) fn window(limit: usize, before: usize, after: usize) -> (usize, usize) {
    let room = limit.saturating_sub(1);
    let b = before.min(limit / 2).min(room);
    let a = after.min(room - b);
    let b = before.min(room - a);
    (b, a)
}

async fn get_message_context(call: ToolCall) -> ToolResult {
    let id = call.args.str("message_id").unwrap_or_default().to_string();
    let limit = count_arg(&call, "limit", 20);
    let failure = format!("Error getting context for message {id}");
    views::answer(&call, failure, move |v| {
        let target = match find_message(v, &id)? {
            Err(e) => return Ok(Err(e)),
            Ok(None) => return Ok(Err(format!("Target message not found: {id}"))),
            Ok(Some(m)) => m,
        };
        let (_, jids) = v.identities(&target.chat_jid)?;
        let room = limit.saturating_sub(1);
        let before = v.newest_across(&jids, Some(target.doc), room)?;
        let after = v.oldest_across(&jids, target.doc, room)?;
        let (b, a) = window(limit, before.len(), after.len());
        let mut context = Vec::with_capacity(b + a + 1);
        for m in before[..b].iter().rev() {
            context.push(v.message(m)?);
        }
        let target_value = v.message(&target)?;
        context.push(target_value.clone());
        for m in &after[..a] {
            context.push(v.message(m)?);
        }
        Ok(Ok(json::obj([
            ("targetMessage", target_value),
            ("contextMessages", json::arr(context)),
            ("targetIndex", json::int(b as i64)),
        ])))
    })
    .await
}

async fn get_last_interaction(call: ToolCall) -> ToolResult {
    let raw = call.args.str("jid").unwrap_or_default().to_string();
    let failure = format!("Error getting last interaction for {raw}");
    views::answer(&call, failure, move |v| {
        let chat_jid = match views::parse_jid("jid", &raw) {
            Ok(j) => j,
            Err(e) => return Ok(Err(e)),
        };
        let last = match v.chat_view(&chat_jid)? {
            Some(chat) => v.last_message(&chat)?,
            None => None,
        };
        let answer: Answer = match last {
            Some(m) => Ok(v.message(&m)?),
            None => Err(format!("No recent interaction found for JID: {raw}")),
        };
        Ok(answer)
    })
    .await
}

/// Who `from` means: JIDs, and whether our own messages count.
struct Senders {
    jids: HashSet<String>,
    me: bool,
}

impl Senders {
    fn matches(&self, v: &Views, row: &MessageRow) -> Result<bool> {
        if row.from_me {
            return Ok(self.me || self.jids.contains(&row.sender));
        }
        if row.sender.is_empty() {
            // A direct chat's incoming messages come from the chat itself.
            return Ok(v
                .lk
                .chat_jid_of(row.chat_no)?
                .is_some_and(|c| self.jids.contains(&c)));
        }
        Ok(self.jids.contains(&row.sender)
            || jid::normalize(&row.sender).is_some_and(|s| self.jids.contains(&s)))
    }
}

/// Only phone-number characters: digits, spaces, `+ - ( ) .`.
fn looks_like_number(s: &str) -> bool {
    let t = s.trim();
    t.chars().any(|c| c.is_ascii_digit())
        && t.chars()
            .all(|c| c.is_ascii_digit() || " +-().".contains(c))
}

/// Resolves `from`: `me`, a JID, a phone number, or a contact name (the best-scoring contacts).
fn resolve_from(v: &mut Views, raw: &str) -> Result<std::result::Result<Senders, String>> {
    let t = raw.trim();
    let mut s = Senders {
        jids: HashSet::new(),
        me: false,
    };
    let add = |v: &mut Views, s: &mut Senders, j: &str| -> Result<()> {
        let (canonical, jids) = v.identities(j)?;
        if v.own() == Some(canonical.as_str()) {
            s.me = true;
        }
        s.jids.insert(canonical);
        s.jids.extend(jids);
        Ok(())
    };
    if t.eq_ignore_ascii_case("me") {
        s.me = true;
        if let Some(own) = v.own().map(str::to_string) {
            add(v, &mut s, &own)?;
        }
        return Ok(Ok(s));
    }
    if t.contains('@') || looks_like_number(t) {
        return Ok(match views::parse_jid("from", t) {
            Ok(j) => {
                add(v, &mut s, &j)?;
                Ok(s)
            }
            Err(e) => Err(e),
        });
    }
    let matches = v.resolve(t, 50)?;
    let Some(top) = matches.first().map(|m| m.score) else {
        return Ok(Err(format!(
            "No contact matched from: \"{raw}\". Give a JID (...@s.whatsapp.net or ...@lid), a \
             phone number with country code, or a contact's name as resolve_contact finds it."
        )));
    };
    for m in matches.iter().filter(|m| m.score == top) {
        add(v, &mut s, &m.contact.id)?;
        for j in &m.contact.jids {
            add(v, &mut s, j)?;
        }
    }
    Ok(Ok(s))
}

/// An empty query lists the newest messages passing the filters; this many are looked at at
/// most, so a filter that matches nothing cannot scan a whole large store.
const FILTER_SCAN_CAP: usize = 200_000;

/// The last doc at time `ms`.
fn doc_ceil(ms: u64) -> Doc {
    doc_floor(ms).saturating_add((1u64 << DOC_SEQ_BITS) - 1)
}

/// A chat filter for `search::search_within`: the newest doc of one chat at or before a given
/// doc. Queries mostly come in falling order, so the answer is found by stepping a reverse
/// cursor down the chat's timeline a few entries, and by a fresh range lookup when the target
/// is further down or above the cursor.
struct ChatCursor<'a> {
    no: u32,
    iter: Option<Box<dyn Iterator<Item = Result<Doc>> + 'a>>,
    /// The last query, and the cursor's current doc (the answer to it).
    asked: Doc,
    current: Option<Doc>,
}

/// Entries a [`ChatCursor`] steps before it seeks instead.
const CURSOR_STEPS: usize = 16;

impl<'a> ChatCursor<'a> {
    fn new(no: u32) -> ChatCursor<'a> {
        ChatCursor {
            no,
            iter: None,
            asked: 0,
            current: None,
        }
    }

    fn seek(&mut self, lk: &'a Lookup, doc: Doc) -> Result<Option<Doc>> {
        let mut iter: Box<dyn Iterator<Item = Result<Doc>> + 'a> =
            Box::new(lk.chat_docs_rev(self.no, doc)?);
        self.current = iter.next().transpose()?;
        self.iter = Some(iter);
        self.asked = doc;
        Ok(self.current)
    }

    fn at_or_before(&mut self, lk: &'a Lookup, doc: Doc) -> Result<Option<Doc>> {
        let Some(iter) = self.iter.as_mut().filter(|_| doc <= self.asked) else {
            return self.seek(lk, doc);
        };
        self.asked = doc;
        for _ in 0..CURSOR_STEPS {
            match self.current {
                Some(c) if c > doc => self.current = iter.next().transpose()?,
                _ => return Ok(self.current),
            }
        }
        match self.current {
            Some(c) if c > doc => self.seek(lk, doc),
            _ => Ok(self.current),
        }
    }
}

/// Messages read at most when the index could not serve a chat-scoped search.
const CHAT_SCAN_CAP: usize = 100_000;

/// Ranks the messages of the chats `nos` in `from..=to` against `query` by reading them, newest
/// first, at most `cap` of them: the same tiers as the index. Returns the hits and whether they
/// are exact: every message in range was read, or `limit` phrase hits were found (nothing older
/// can outrank them).
#[allow(clippy::too_many_arguments)]
fn scan_chats(
    v: &Views,
    nos: &[u32],
    query: &str,
    from: Doc,
    to: Doc,
    limit: usize,
    cap: usize,
    accept: &dyn Fn(&Views, &MessageRow) -> Result<bool>,
) -> Result<(Vec<Doc>, bool)> {
    let lk = v.lk;
    let mut tiers: [Vec<Doc>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    let mut scanned = 0usize;
    let mut exact = true;
    for &no in nos {
        let mut phrase = 0usize;
        let mut cut = false;
        lk.chat_docs_newest_in(no, from, to, &mut |doc| {
            if scanned >= cap {
                cut = true;
                return Ok(false);
            }
            scanned += 1;
            if let Some(row) = lk.message_row(doc)?
                && !row.body.is_empty()
                && accept(v, &row)?
                && let Some(tier) = search::matches(query, &row.body)
            {
                let slot = match tier {
                    search::Tier::Phrase => 0,
                    search::Tier::AllWords => 1,
                    search::Tier::Prefix => 2,
                };
                tiers[slot].push(doc);
                if slot == 0 {
                    phrase += 1;
                }
            }
            Ok(phrase < limit)
        })?;
        if cut && phrase < limit {
            exact = false;
        }
    }
    let mut out = Vec::new();
    for mut t in tiers {
        t.sort_unstable_by(|x, y| y.cmp(x));
        out.extend(t);
    }
    out.truncate(limit);
    Ok((out, exact))
}

struct SearchArgs {
    query: String,
    chat_id: Option<String>,
    from: Option<String>,
    after: Option<u64>,
    /// Exclusive.
    before: Option<u64>,
    limit: usize,
}

async fn search_messages(call: ToolCall) -> ToolResult {
    let time = |field: &str| -> std::result::Result<Option<u64>, String> {
        call.args
            .str(field)
            .filter(|s| !s.trim().is_empty())
            .map(|s| views::parse_time(field, s))
            .transpose()
    };
    let (after, before) = match (time("after"), time("before")) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return ToolResult::error(e),
    };
    let args = SearchArgs {
        query: call.args.str("query").unwrap_or_default().to_string(),
        chat_id: call
            .args
            .str("chat_id")
            .map(str::to_string)
            .filter(|s| !s.trim().is_empty()),
        from: call
            .args
            .str("from")
            .map(str::to_string)
            .filter(|s| !s.trim().is_empty()),
        after,
        before,
        limit: count_arg(&call, "limit", 20),
    };
    views::answer(&call, "Error searching messages".into(), move |v| {
        search(v, &args)
    })
    .await
}

fn search(v: &mut Views, a: &SearchArgs) -> Result<Answer> {
    let chat_jids: Option<Vec<String>> = match &a.chat_id {
        None => None,
        Some(raw) => match views::parse_jid("chat_id", raw) {
            Ok(j) => Some(v.identities(&j)?.1),
            Err(e) => return Ok(Err(e)),
        },
    };
    let senders = match &a.from {
        None => None,
        Some(raw) => match resolve_from(v, raw)? {
            Ok(s) => Some(s),
            Err(e) => return Ok(Err(e)),
        },
    };
    let lk = v.lk;
    let chat_nos: Option<Vec<u32>> = match &chat_jids {
        None => None,
        Some(jids) => Some(
            jids.iter()
                .map(|j| lk.chat_no(j))
                .collect::<Result<Vec<_>>>()?
                .into_iter()
                .flatten()
                .collect(),
        ),
    };
    let before_incl = match a.before {
        Some(0) => return Ok(Ok(json::arr([]))),
        Some(b) => Some(b - 1),
        None => None,
    };
    if let (Some(x), Some(y)) = (a.after, before_incl)
        && x > y
    {
        return Ok(Ok(json::arr([])));
    }
    if chat_nos.as_ref().is_some_and(Vec::is_empty) {
        return Ok(Ok(json::arr([])));
    }
    let accept = |v: &Views, row: &MessageRow| -> Result<bool> {
        if let Some(nos) = &chat_nos
            && !nos.contains(&row.chat_no)
        {
            return Ok(false);
        }
        match &senders {
            Some(s) => s.matches(v, row),
            None => Ok(true),
        }
    };
    let mut found: Vec<StoredMessage> = Vec::new();
    if a.query.trim().is_empty() {
        let from = a.after.map(doc_floor).unwrap_or(0);
        let to = before_incl.map(doc_ceil).unwrap_or(u64::MAX);
        let mut scanned = 0usize;
        match &chat_nos {
            Some(nos) => {
                let mut docs: Vec<Doc> = Vec::new();
                for &no in nos {
                    let mut taken = 0usize;
                    lk.chat_docs_newest_in(no, from, to, &mut |doc| {
                        scanned += 1;
                        if let Some(row) = lk.message_row(doc)?
                            && accept(v, &row)?
                        {
                            docs.push(doc);
                            taken += 1;
                        }
                        Ok(taken < a.limit && scanned < FILTER_SCAN_CAP)
                    })?;
                }
                docs.sort_unstable_by(|x, y| y.cmp(x));
                docs.truncate(a.limit);
                for doc in docs {
                    found.extend(lk.message_at(doc)?);
                }
            }
            None => {
                let mut docs: Vec<Doc> = Vec::new();
                lk.messages_newest_in(from, to, &mut |doc, row| {
                    scanned += 1;
                    if accept(v, &row)? {
                        docs.push(doc);
                    }
                    Ok(docs.len() < a.limit && scanned < FILTER_SCAN_CAP)
                })?;
                for doc in docs {
                    found.extend(lk.message_at(doc)?);
                }
            }
        }
    } else {
        let q = search::SearchQuery {
            text: &a.query,
            after: a.after,
            before: before_incl,
            limit: a.limit,
        };
        let mut asked = 0usize;
        let mut candidate = |doc: Doc| -> Result<Option<String>> {
            asked += 1;
            let Some(row) = lk.message_row(doc)? else {
                return Ok(None);
            };
            Ok(accept(v, &row)?.then_some(row.body))
        };
        let mut hits: Vec<Doc> = match &chat_nos {
            // The chat's timeline is joined into the index scan, so only its own matches are
            // looked at.
            Some(nos) => {
                let mut cursors: Vec<ChatCursor> =
                    nos.iter().map(|&no| ChatCursor::new(no)).collect();
                let mut within = |doc: Doc| -> Result<Option<Doc>> {
                    let mut best: Option<Doc> = None;
                    for c in cursors.iter_mut() {
                        best = best.max(c.at_or_before(lk, doc)?);
                    }
                    Ok(best)
                };
                search::search_within(v.txn, &q, Some(&mut within), &mut candidate)?
            }
            None => search::search(v.txn, &q, &mut candidate)?,
        }
        .into_iter()
        .map(|h| h.doc)
        .collect();
        if hits.len() < a.limit
            && asked >= search::MAX_CANDIDATES.min(search::MAX_BODIES)
            && let Some(nos) = &chat_nos
        {
            // The index ran out of its budget behind the sender filter: read the chat itself.
            let from = a.after.map(doc_floor).unwrap_or(0);
            let to = before_incl.map(doc_ceil).unwrap_or(u64::MAX);
            hits = scan_chats(v, nos, &a.query, from, to, a.limit, CHAT_SCAN_CAP, &accept)?.0;
        }
        let mut seen: HashSet<Doc> = HashSet::new();
        for doc in hits.into_iter().take(a.limit) {
            if seen.insert(doc) {
                found.extend(lk.message_at(doc)?);
            }
        }
    }
    let mut out = Vec::with_capacity(found.len());
    for m in &found {
        out.push(v.message(m)?);
    }
    Ok(Ok(json::arr(out)))
}
