//! Chat tools: `list_chats`, `list_system_chats`, `list_groups`, `get_chat_by_id`,
//! `get_direct_chat_by_contact_number`, `get_chat_by_contact`.
//!
//! Owns: listing and finding chats in the store. Must not: send anything, or read message bodies
//! beyond a chat's last message (that is the messages group); the group audits live in `audit`.
//! The store is not built yet, so every tool here is a stub that says so.

use super::{Annotations, Param, Tool};

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
            crate::not_yet!("list_chats", "the chat store (not built yet)"),
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
            crate::not_yet!("list_system_chats", "the chat store (not built yet)"),
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
            crate::not_yet!("list_groups", "the chat store (not built yet)"),
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
            crate::not_yet!("get_chat_by_id", "the chat store (not built yet)"),
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
            crate::not_yet!(
                "get_direct_chat_by_contact_number",
                "the chat store (not built yet)"
            ),
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
            crate::not_yet!("get_chat_by_contact", "the chat store (not built yet)"),
        ),
    ]
}
