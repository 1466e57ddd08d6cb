//! Contact tools: `search_contacts`, `resolve_contact`, `get_contact_by_id`, `get_profile_pic`,
//! `get_group_info`.
//!
//! Owns: looking people and groups up by name, number or JID. Must not: write chats or messages,
//! or send anything. The first three answer from the store (shapes in `views`); the profile
//! picture is asked live from WhatsApp, and the group info live too, falling back to the stored
//! copy (`source: "cached"`) when WhatsApp cannot answer. A live answer is stored by the engine,
//! so both shapes come from the store: `{id, subject, subjectOwner, subjectTime, owner, desc,
//! creation, size, restrict, announce, participants: [{id, admin, name, pushname, number,
//! is_my_contact}]}` (times in epoch ms; `admin` is null, `admin` or `superadmin`).

use super::views::{self, Answer, Views};
use super::{Annotations, Param, Tool, ToolCall, ToolResult};
use crate::json;

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
            crate::tool_fn!(search_contacts),
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
            crate::tool_fn!(resolve_contact),
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
            crate::tool_fn!(get_contact_by_id),
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
            crate::tool_fn!(get_profile_pic),
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
            crate::tool_fn!(get_group_info),
        ),
    ]
}

/// At most this many contacts are listed by `search_contacts` (as the original).
const SEARCH_LIMIT: usize = 50;

async fn search_contacts(call: ToolCall) -> ToolResult {
    let query = call.args.str("query").unwrap_or_default().to_string();
    views::answer(&call, "Error searching contacts".into(), move |v| {
        Ok(Ok(json::arr(
            search(v, &query)?.iter().map(views::contact_brief),
        )))
    })
    .await
}

/// Contacts whose name, push name, number or JID contains `query` (folded), newest first.
fn search(v: &mut Views, query: &str) -> crate::store::Result<Vec<views::ContactView>> {
    let needle = views::fold(query.trim());
    let digits = crate::store::jid::digits(query).filter(|_| {
        query
            .trim()
            .chars()
            .all(|c| c.is_ascii_digit() || " +-().".contains(c))
    });
    Ok(v.all_contacts()?
        .into_iter()
        .filter(|c| {
            needle.is_empty()
                || [c.name.as_deref(), c.pushname.as_deref()]
                    .into_iter()
                    .flatten()
                    .any(|f| views::fold(f).contains(&needle))
                // Numbers and JIDs are lower-case ASCII already.
                || c.number.contains(&needle)
                || c.id.contains(&needle)
                || c.jids.iter().any(|j| j.contains(&needle))
                || digits
                    .as_deref()
                    .is_some_and(|d| !c.number.is_empty() && c.number.contains(d))
        })
        .take(SEARCH_LIMIT)
        .collect())
}

async fn resolve_contact(call: ToolCall) -> ToolResult {
    let query = call.args.str("query").unwrap_or_default().to_string();
    let limit = call.args.int("limit").unwrap_or(5).max(1) as usize;
    views::answer(&call, "Error resolving contact".into(), move |v| {
        Ok(Ok(json::arr(
            v.resolve(&query, limit)?.iter().map(views::resolved_brief),
        )))
    })
    .await
}

async fn get_contact_by_id(call: ToolCall) -> ToolResult {
    let raw = call.args.str("jid").unwrap_or_default().to_string();
    let failure = format!("Error getting contact {raw}");
    views::answer(&call, failure, move |v| {
        let jid = match views::parse_jid("jid", &raw) {
            Ok(j) => j,
            Err(e) => return Ok(Err(e)),
        };
        let Some(c) = v.contact_view(&jid)? else {
            return Ok(Err(format!("Contact not found for JID: {raw}")));
        };
        let answer: Answer = Ok(json::obj([
            ("id", json::s(c.id.clone())),
            (
                "name",
                c.name.clone().map(json::s).unwrap_or(json::Value::Null),
            ),
            ("number", json::s(c.number.clone())),
            (
                "pushname",
                c.pushname.clone().map(json::s).unwrap_or(json::Value::Null),
            ),
            ("isMyContact", json::bool(c.is_my_contact)),
            ("isWAContact", json::bool(true)),
        ]));
        Ok(answer)
    })
    .await
}

/// The engine when it is connected, else the not-connected text.
fn connected_engine(call: &ToolCall) -> Result<crate::wa::engine::Engine, String> {
    let Some(engine) = call.env.engine.clone() else {
        return Err(
            "WhatsApp is not connected (state: unlinked): no WhatsApp engine runs in this process"
                .into(),
        );
    };
    let snap = engine.snapshot();
    if snap.state != crate::wa::engine::EngineState::Connected {
        return Err(crate::wa::engine::not_connected(&snap));
    }
    Ok(engine)
}

async fn get_profile_pic(call: ToolCall) -> ToolResult {
    let raw = call.args.str("jid").unwrap_or_default().to_string();
    let jid = match views::parse_wa_jid("jid", &raw) {
        Ok(j) => j,
        Err(e) => return ToolResult::error(e),
    };
    let engine = match connected_engine(&call) {
        Ok(e) => e,
        Err(e) => {
            return ToolResult::error(format!("Error getting profile picture for {raw}: {e}"));
        }
    };
    match engine.profile_pic(&jid, false).await {
        Ok(Some((url, _id))) => {
            ToolResult::json(&json::obj([("jid", json::s(jid)), ("url", json::s(url))]))
        }
        Ok(None) => ToolResult::error(format!(
            "Profile picture not found for JID: {raw} (there is none, or the person's privacy \
             settings hide it)"
        )),
        Err(e) => ToolResult::error(format!("Error getting profile picture for {raw}: {e}")),
    }
}

/// The stored group as the answer's JSON, or `None` when it is not stored.
fn group_value(v: &mut Views, gid: &str) -> crate::store::Result<Option<json::Value>> {
    let Some(g) = v.lk.group(gid)? else {
        return Ok(None);
    };
    let opt = |x: &Option<String>| x.clone().map(json::s).unwrap_or(json::Value::Null);
    let ms = |t: u64| json::int(i64::try_from(t).unwrap_or(i64::MAX));
    let mut participants = Vec::new();
    for (member, role) in v.lk.group_members(gid)? {
        let summary = v.summary(&member)?.unwrap_or_default();
        let canonical = v.canonical(&member)?;
        let number = summary.number.clone().or_else(|| {
            crate::store::jid::is_pn(&canonical)
                .then(|| crate::store::jid::user(&canonical).to_string())
        });
        participants.push(json::obj([
            ("id", json::s(member.clone())),
            (
                "admin",
                if role.is_empty() {
                    json::Value::Null
                } else {
                    json::s(role)
                },
            ),
            ("name", opt(&summary.name)),
            ("pushname", opt(&summary.pushname)),
            ("number", opt(&number)),
            ("is_my_contact", json::bool(summary.is_my_contact)),
        ]));
    }
    let size = if g.size > 0 {
        g.size
    } else {
        participants.len() as u64
    };
    Ok(Some(json::obj([
        ("id", json::s(gid)),
        ("subject", opt(&g.subject)),
        ("subjectOwner", opt(&g.subject_owner)),
        ("subjectTime", ms(g.subject_time)),
        ("owner", opt(&g.owner)),
        ("desc", opt(&g.desc)),
        ("creation", ms(g.creation)),
        ("size", ms(size)),
        ("restrict", json::bool(g.restrict)),
        ("announce", json::bool(g.announce)),
        ("participants", json::arr(participants)),
    ])))
}

async fn get_group_info(call: ToolCall) -> ToolResult {
    let raw = call.args.str("group_jid").unwrap_or_default().to_string();
    let gid = match views::parse_wa_jid("group_jid", &raw) {
        Ok(j) if crate::store::jid::is_group(&j) => j,
        Ok(j) => {
            return ToolResult::error(format!(
                "Invalid group_jid: {j} is not a group; a group JID ends in @g.us, e.g. \
                 120363012345678901@g.us (list_groups lists yours)"
            ));
        }
        Err(e) => return ToolResult::error(e),
    };
    // Live first; the engine stores what WhatsApp answers.
    let live_error = match connected_engine(&call) {
        Ok(engine) => engine.group_info(&gid).await.err(),
        Err(e) => Some(e),
    };
    let failure = format!("Error getting group info for {raw}");
    views::answer(&call, failure.clone(), move |v| {
        let Some(mut value) = group_value(v, &gid)? else {
            let why = live_error.unwrap_or_else(|| "the group is not stored".into());
            return Ok(Err(format!("{failure}: {why}")));
        };
        if let (Some(e), json::Value::Object(o)) = (&live_error, &mut value) {
            o.insert("source".into(), json::s("cached"));
            o.insert("liveError".into(), json::s(e.clone()));
        }
        Ok(Ok(value))
    })
    .await
}
