//! Contact tools: `search_contacts`, `resolve_contact`, `get_contact_by_id`, `get_profile_pic`,
//! `get_group_info`.
//!
//! Owns: looking people and groups up by name, number or JID. Must not: write chats or messages,
//! or send anything; the store and the WhatsApp engine are not built yet, so every tool here is a
//! stub that says so.

use super::{Annotations, Param, Tool};

pub fn tools() -> Vec<Tool> {
    vec![
        Tool::new(
            "search_contacts",
            "Find contacts whose name, push name (the name people set for themselves), phone \
             number or JID contains the query, ignoring case. Returns a JSON array of up to 50 \
             {id, name, number, pushname, isMyContact}, most recently updated first. An empty \
             query lists contacts. To pick the single best match for a name, use resolve_contact.",
            vec![
                Param::string(
                    "query",
                    "Text to look for in contact names, push names, phone numbers and JIDs.",
                )
                .required(),
            ],
            Annotations::READ_REMOTE,
            crate::not_yet!("search_contacts", "the contact store (not built yet)"),
        ),
        Tool::new(
            "resolve_contact",
            "Turn a name or phone number into the most likely contacts, each scored 0 to 100 \
             (exact match highest, then prefix, then substring). A query with 6 or more digits is \
             matched as a phone number. Returns a JSON array of {id, name, number, pushname, \
             matchedBy, score}, best first; matchedBy is name, pushname, number or id. Use the id \
             as the JID in other tools.",
            vec![
                Param::string(
                    "query",
                    "A contact's name, or a phone number (country code optional).",
                )
                .required(),
                Param::positive("limit", 5, "Maximum number of matches to return."),
            ],
            Annotations::READ_REMOTE,
            crate::not_yet!("resolve_contact", "the contact store (not built yet)"),
        ),
        Tool::new(
            "get_contact_by_id",
            "Get one contact by JID. A person's phone-number JID (...@s.whatsapp.net) and privacy \
             id (...@lid) are linked, so either one finds the contact. Returns {id, name, number, \
             pushname, isMyContact, isWAContact}, or an error if the contact is not known.",
            vec![
                Param::string(
                    "jid",
                    "JID of the contact, e.g. 447700900123@s.whatsapp.net or an ...@lid id.",
                )
                .required(),
            ],
            Annotations::READ_LOCAL,
            crate::not_yet!("get_contact_by_id", "the contact store (not built yet)"),
        ),
        Tool::new(
            "get_profile_pic",
            "Get the profile picture URL of a contact or group, asked live from WhatsApp. Returns \
             {jid, url}; the URL is temporary, so download it soon. Answers with an error when \
             there is no picture or privacy settings hide it.",
            vec![
                Param::string(
                    "jid",
                    "JID of the contact (...@s.whatsapp.net) or group (...@g.us), e.g. \
                     447700900123@s.whatsapp.net.",
                )
                .required(),
            ],
            Annotations::READ_REMOTE,
            crate::not_yet!(
                "get_profile_pic",
                "a linked WhatsApp account (the WhatsApp engine is not built yet)"
            ),
        ),
        Tool::new(
            "get_group_info",
            "Get a group's metadata and members, asked live from WhatsApp; when WhatsApp cannot be \
             reached, the last stored copy is returned with source: \"cached\". Returns the \
             group's id, subject, description, owner, creation time (epoch ms), size, settings and \
             participants (each with id, admin role, name, pushname and number). It also refreshes \
             the stored member list that the group audit tools read.",
            vec![
                Param::string(
                    "group_jid",
                    "JID of the group, e.g. 120363012345678901@g.us.",
                )
                .required(),
            ],
            Annotations::READ_REMOTE,
            crate::not_yet!(
                "get_group_info",
                "a linked WhatsApp account (the WhatsApp engine is not built yet)"
            ),
        ),
    ]
}
