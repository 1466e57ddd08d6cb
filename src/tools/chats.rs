//! Chat tools: `list_chats`, `list_system_chats`, `list_groups`, `get_chat_by_id`,
//! `get_direct_chat_by_contact_number`, `get_chat_by_contact`.
//!
//! Owns: listing and finding chats in the store. Must not: send anything, or read message bodies
//! beyond a chat's last message (that is the messages group); the group audits live in `audit`.
//!
//! Lists walk `chats_by_time` newest first until `limit` chats pass the filters, merging a
//! person's LID and phone chats into one as they go (`views`), so every stored chat and group can
//! be reached, not only the most recent few.

use super::views::{self, Answer, Views};
use super::{Annotations, Param, Tool, ToolCall, ToolResult};
use crate::json::{self, Value};
use crate::store::{Result, jid};
use std::collections::HashSet;

pub fn tools() -> Vec<Tool> {
    vec![
        Tool::new(
            "list_chats",
            "List chats with people and groups, most recent activity first. Status updates and \
             chats whose latest event is a system notice are left out (see list_system_chats). \
             Returns a JSON array of {id, name, isGroup, unreadCount, timestamp, lastMessage?}; \
             timestamp is the last activity in epoch milliseconds. Pass an id as chat_id to \
             list_messages to read the chat.",
            vec![
                Param::positive("limit", 20, "Maximum number of chats to return."),
                Param::boolean(
                    "include_last_message",
                    true,
                    "Include each chat's newest message as lastMessage (same shape as in \
                     list_messages).",
                ),
            ],
            Annotations::READ_LOCAL,
            crate::tool_fn!(list_chats),
        ),
        Tool::new(
            "list_system_chats",
            "List the chats whose latest event is a WhatsApp system notice (for example a deleted \
             or edited message, a disappearing-messages setting or a sync notice) rather than a \
             normal message; list_chats leaves these out. Returns a JSON array shaped as in \
             list_chats, newest first, with lastMessage.",
            vec![Param::positive(
                "limit",
                20,
                "Maximum number of chats to return.",
            )],
            Annotations::READ_LOCAL,
            crate::tool_fn!(list_system_chats),
        ),
        Tool::new(
            "list_groups",
            "List group chats only, most recent activity first. Returns a JSON array shaped as in \
             list_chats (isGroup is always true). For a group's members, use get_group_info.",
            vec![
                Param::positive("limit", 20, "Maximum number of groups to return."),
                Param::boolean(
                    "include_last_message",
                    true,
                    "Include each group's newest message as lastMessage.",
                ),
            ],
            Annotations::READ_LOCAL,
            crate::tool_fn!(list_groups),
        ),
        Tool::new(
            "get_chat_by_id",
            "Get one chat by JID. A person's phone-number JID and privacy id (...@lid) count as \
             one chat. Returns {id, name, isGroup, unreadCount, timestamp (epoch ms of the last \
             activity), lastMessage}, or an error if no such chat is stored.",
            vec![
                Param::string(
                    "jid",
                    "JID of the chat: a person (...@s.whatsapp.net) or a group (...@g.us), e.g. \
                     447700900123@s.whatsapp.net.",
                )
                .required(),
            ],
            Annotations::READ_LOCAL,
            crate::tool_fn!(get_chat_by_id),
        ),
        Tool::new(
            "get_direct_chat_by_contact_number",
            "Get the one-to-one chat with a phone number. Returns the chat shaped as in \
             get_chat_by_id, or an error if there is no direct chat with that number. When you \
             know the JID, get_chat_by_id is more reliable; for a name, use get_chat_by_contact.",
            vec![
                Param::string(
                    "phone_number",
                    "Phone number with country code, e.g. 447700900123 (a leading +, spaces and \
                     dashes are ignored).",
                )
                .required(),
            ],
            Annotations::READ_LOCAL,
            crate::tool_fn!(get_direct_chat_by_contact_number),
        ),
        Tool::new(
            "get_chat_by_contact",
            "Find a contact by name or phone number (as resolve_contact does) and return the chat \
             with them. With one clear match, returns the chat shaped as in get_chat_by_id, or \
             {contact, chat: null} if you have never chatted. With several plausible matches, \
             returns {matches: [...]} instead: pick one and call get_chat_by_id with its id. \
             Errors if nothing matches.",
            vec![
                Param::string(
                    "query",
                    "A contact's name, or a phone number (country code optional).",
                )
                .required(),
                Param::positive(
                    "max_candidates",
                    5,
                    "Maximum number of contact matches to consider, and to return when the match \
                     is ambiguous.",
                ),
            ],
            Annotations::READ_LOCAL,
            crate::tool_fn!(get_chat_by_contact),
        ),
    ]
}

/// Which chats a list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Everything but status updates and chats whose newest event is a system notice.
    Chats,
    /// Only chats whose newest event is a system notice (`protocolMessage`).
    System,
    /// Groups only (system notices left out, as in `Chats`).
    Groups,
}

/// The message type of WhatsApp's system notices (revokes, edits, ephemeral settings, syncs).
const SYSTEM_TYPE: &str = "protocolMessage";

/// Up to `limit` chats of `kind`, newest activity first, LID and phone halves merged.
pub(crate) fn list(
    v: &mut Views,
    kind: Kind,
    limit: usize,
    include_last: bool,
) -> Result<Vec<(views::ChatView, Value)>> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    let lk = v.lk;
    lk.chat_jids_newest(&mut |_, chat_jid| {
        if chat_jid == jid::STATUS_BROADCAST || (kind == Kind::Groups && !jid::is_group(chat_jid)) {
            return Ok(true);
        }
        let canonical = v.canonical(chat_jid)?;
        if !seen.insert(canonical) {
            return Ok(true);
        }
        let Some(chat) = v.chat_view(chat_jid)? else {
            return Ok(true);
        };
        let last = v.last_message(&chat)?;
        let system = last.as_ref().is_some_and(|m| m.row.kind == SYSTEM_TYPE);
        if system != (kind == Kind::System) {
            return Ok(true);
        }
        let shown = if include_last || kind == Kind::System {
            last.as_ref()
        } else {
            None
        };
        let value = v.chat_value(&chat, shown)?;
        out.push((chat, value));
        Ok(out.len() < limit)
    })?;
    if kind == Kind::Groups && out.len() < limit {
        // Groups known from their metadata only (no chat row yet) come last.
        for (gid, row) in lk.groups_all()? {
            if out.len() >= limit {
                break;
            }
            if seen.contains(&gid) {
                continue;
            }
            let name = row
                .subject
                .filter(|s| !s.trim().is_empty())
                .unwrap_or_else(|| gid.clone());
            let chat = views::ChatView {
                id: gid.clone(),
                jids: vec![gid],
                name,
                is_group: true,
                unread: 0,
                ts: 0,
                last_doc: 0,
            };
            let value = v.chat_value(&chat, None)?;
            out.push((chat, value));
        }
    }
    Ok(out)
}

fn limit_arg(call: &ToolCall, name: &str, default: i64) -> usize {
    usize::try_from(call.args.int(name).unwrap_or(default)).unwrap_or(1)
}

async fn list_tool(call: ToolCall, kind: Kind, failure: &str) -> ToolResult {
    let limit = limit_arg(&call, "limit", 20);
    let include_last = call.args.bool("include_last_message").unwrap_or(true);
    views::answer(&call, failure.into(), move |v| {
        let chats = list(v, kind, limit, include_last)?;
        Ok(Ok(json::arr(chats.into_iter().map(|(_, value)| value))))
    })
    .await
}

async fn list_chats(call: ToolCall) -> ToolResult {
    list_tool(call, Kind::Chats, "Error listing chats").await
}

async fn list_system_chats(call: ToolCall) -> ToolResult {
    list_tool(call, Kind::System, "Error listing system chats").await
}

async fn list_groups(call: ToolCall) -> ToolResult {
    list_tool(call, Kind::Groups, "Error listing groups").await
}

/// The chat with its last message, or `None`.
fn chat_with_last(v: &mut Views, any: &str) -> Result<Option<(views::ChatView, Value)>> {
    let Some(chat) = v.chat_view(any)? else {
        return Ok(None);
    };
    let last = v.last_message(&chat)?;
    let value = v.chat_value(&chat, last.as_ref())?;
    Ok(Some((chat, value)))
}

async fn get_chat_by_id(call: ToolCall) -> ToolResult {
    let raw = call.args.str("jid").unwrap_or_default().to_string();
    let failure = format!("Error getting chat {raw}");
    views::answer(&call, failure, move |v| {
        let chat_jid = match views::parse_jid("jid", &raw) {
            Ok(j) => j,
            Err(e) => return Ok(Err(e)),
        };
        let answer: Answer = match chat_with_last(v, &chat_jid)? {
            Some((_, value)) => Ok(value),
            None => Err(format!("Chat not found for JID: {raw}")),
        };
        Ok(answer)
    })
    .await
}

async fn get_direct_chat_by_contact_number(call: ToolCall) -> ToolResult {
    let raw = call
        .args
        .str("phone_number")
        .unwrap_or_default()
        .to_string();
    let failure = format!("Could not find direct chat for number: {raw}");
    views::answer(&call, failure, move |v| {
        let pn = if raw.contains('@') {
            jid::normalize(&raw).filter(|j| jid::is_pn(j))
        } else {
            jid::pn_from_number(&raw)
        };
        let Some(pn) = pn else {
            return Ok(Err(format!(
                "Invalid phone_number: \"{raw}\" is not a phone number. Give the number with its \
                 country code, e.g. +44 7700 900123 or 447700900123."
            )));
        };
        let answer: Answer = match chat_with_last(v, &pn)? {
            Some((chat, value)) if !chat.is_group => Ok(value),
            _ => Err(format!("Direct chat not found for number: {raw}")),
        };
        Ok(answer)
    })
    .await
}

/// `get_chat_by_contact` picks the best match itself (with `AUTO_SELECT_CONTACT=1`) only when it
/// scores at least this much, and this much more than the runner-up.
const AUTO_MIN_SCORE: u32 = 90;
const AUTO_MIN_LEAD: u32 = 10;

async fn get_chat_by_contact(call: ToolCall) -> ToolResult {
    let query = call.args.str("query").unwrap_or_default().to_string();
    let max = limit_arg(&call, "max_candidates", 5);
    let auto = call.env.auto_select_contact;
    let failure = format!("Error getting chat for {query}");
    views::answer(&call, failure, move |v| {
        let matches = v.resolve(&query, max)?;
        let picked = match matches.as_slice() {
            [] => return Ok(Err(format!("No contacts matched for query: {query}"))),
            [only] => only,
            [top, second, ..]
                if auto
                    && top.score >= AUTO_MIN_SCORE
                    && top.score >= second.score + AUTO_MIN_LEAD =>
            {
                top
            }
            _ => {
                let list = json::arr(matches.iter().map(|m| v.resolved_full(m)));
                return Ok(Ok(json::obj([("matches", list)])));
            }
        };
        let answer = match chat_with_last(v, &picked.contact.id)? {
            Some((_, value)) => value,
            None => json::obj([("contact", v.resolved_full(picked)), ("chat", Value::Null)]),
        };
        Ok(Ok(answer))
    })
    .await
}
