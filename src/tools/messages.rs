//! Message tools: `list_messages`, `get_message_by_id`, `search_messages`, `get_message_context`,
//! `get_last_interaction`, `send_message`, and the new `send_reaction`, `mark_as_read` and
//! `wait_for_messages`.
//!
//! Owns: reading, searching, sending, reacting to and marking messages, and waiting for new ones.
//! Must not: handle media bytes (that is the media group) or change chats and contacts. The store
//! and the WhatsApp engine are not built yet, so every tool here is a stub that says so.

use super::{Annotations, Param, Tool};

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
            crate::not_yet!("list_messages", "the message store (not built yet)"),
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
            crate::not_yet!("get_message_by_id", "the message store (not built yet)"),
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
            crate::not_yet!(
                "search_messages",
                "the message store and its search index (not built yet)"
            ),
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
            crate::not_yet!("get_message_context", "the message store (not built yet)"),
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
            crate::not_yet!("get_last_interaction", "the message store (not built yet)"),
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
                        "JID of the person (...@s.whatsapp.net) or group (...@g.us) to write to, \
                         e.g. 447700900123@s.whatsapp.net.",
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
                crate::not_yet!(
                    "send_message",
                    "a linked WhatsApp account (the WhatsApp engine is not built yet)"
                ),
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
                crate::not_yet!(
                    "send_reaction",
                    "a linked WhatsApp account (the WhatsApp engine is not built yet)"
                ),
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
            crate::not_yet!(
                "mark_as_read",
                "a linked WhatsApp account (the WhatsApp engine is not built yet)"
            ),
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
                crate::not_yet!(
                    "wait_for_messages",
                    "a linked WhatsApp account (the WhatsApp engine is not built yet)"
                ),
            )
        },
    ]
}
