//! Group audit tools: `analyze_group_overlaps`, `find_members_without_direct_chat`,
//! `find_members_not_in_contacts`, `run_group_audit`.
//!
//! Owns: the member matrix over your groups (who is in which group, who has a direct chat, who is
//! a contact). Must not: change groups, contacts or chats, or send anything.
//!
//! The matrix covers every stored group (group chats, most recently active first, then groups
//! known only from their metadata), up to `group_limit`, with the member lists stored by
//! `get_group_info` or history sync. Members are merged by person (LID → phone JID). Your own
//! account is not listed as a member. `refresh_group_info` first asks WhatsApp for every group
//! we are in with its members (the engine stores them); when WhatsApp cannot be asked, the
//! stored lists are used and the answer carries a `note` saying why.

use super::views::{self, Views};
use super::{Annotations, Param, Tool, ToolCall, ToolResult};
use crate::json::{self, Value};
use crate::store::{Result, jid};
use std::collections::{BTreeSet, HashMap, HashSet};

fn group_limit() -> Param {
    Param::positive(
        "group_limit",
        200,
        "Maximum number of groups to scan, most recently active first.",
    )
}

fn refresh_group_info() -> Param {
    Param::boolean(
        "refresh_group_info",
        false,
        "Ask WhatsApp for each group's current members before the analysis (slower: one request \
         per group). When false, only groups whose members were fetched before (by get_group_info \
         or an earlier refresh) contribute members.",
    )
}

pub fn tools() -> Vec<Tool> {
    vec![
        Tool::new(
            "analyze_group_overlaps",
            "Find people who are members of several of your groups. Returns {groupsProcessed, \
             totalMembers, overlaps}; each overlap is {canonicalId, ids, name, pushname, number, \
             groupCount, groups: [{id, name}], hasDirectChat, inContacts}, sorted by groupCount, \
             highest first, then by name.",
            vec![
                group_limit(),
                refresh_group_info(),
                Param::positive(
                    "min_shared_groups",
                    2,
                    "List only members found in at least this many of the scanned groups (values \
                     below 2 count as 2).",
                ),
            ],
            Annotations::READ_REMOTE,
            crate::tool_fn!(analyze_group_overlaps),
        ),
        Tool::new(
            "find_members_without_direct_chat",
            "Find members of your groups with whom you have no one-to-one chat yet. Returns \
             {groupsProcessed, totalMembers, members}; members are shaped as the overlaps of \
             analyze_group_overlaps, most shared groups first.",
            vec![
                group_limit(),
                refresh_group_info(),
                Param::positive(
                    "min_shared_groups",
                    1,
                    "List only members found in at least this many of the scanned groups.",
                ),
            ],
            Annotations::READ_REMOTE,
            crate::tool_fn!(find_members_without_direct_chat),
        ),
        Tool::new(
            "find_members_not_in_contacts",
            "Find members of your groups who are not in your contacts. Returns {groupsProcessed, \
             totalMembers, members}; members are shaped as the overlaps of analyze_group_overlaps, \
             most shared groups first.",
            vec![
                group_limit(),
                refresh_group_info(),
                Param::positive(
                    "min_shared_groups",
                    1,
                    "List only members found in at least this many of the scanned groups.",
                ),
            ],
            Annotations::READ_REMOTE,
            crate::tool_fn!(find_members_not_in_contacts),
        ),
        Tool::new(
            "run_group_audit",
            "Run the three group audits in one pass: members who share several groups with you, \
             members without a one-to-one chat, and members not in your contacts. Returns \
             {summary: {groupsProcessed, totalMembers, overlapCount, withoutDirectChatCount, \
             notInContactsCount}, overlaps, withoutDirectChat, notInContacts}, each list shaped as \
             in analyze_group_overlaps.",
            vec![
                group_limit(),
                refresh_group_info(),
                Param::positive(
                    "overlap_min_shared_groups",
                    2,
                    "Minimum number of shared groups for a member to appear in overlaps.",
                ),
                Param::positive(
                    "min_shared_groups",
                    1,
                    "Minimum number of scanned groups for a member to appear in withoutDirectChat \
                     and notInContacts.",
                ),
            ],
            Annotations::READ_REMOTE,
            crate::tool_fn!(run_group_audit),
        ),
    ]
}

/// Refreshes every group from WhatsApp when asked; the answer's `note` when that failed.
async fn refresh(call: &ToolCall, asked: bool) -> Option<String> {
    if !asked {
        return None;
    }
    let reason = match call.env.engine.clone() {
        None => "no WhatsApp engine runs in this process".to_string(),
        Some(engine) => {
            let snap = engine.snapshot();
            if snap.state != crate::wa::engine::EngineState::Connected {
                crate::wa::engine::not_connected(&snap)
            } else {
                match engine.refresh_groups().await {
                    Ok(_) => return None,
                    Err(e) => e,
                }
            }
        }
    };
    Some(format!(
        "refresh_group_info could not fetch current member lists ({reason}); these results use \
         the stored member lists (from get_group_info, an earlier refresh or history sync)."
    ))
}

/// One person across the scanned groups.
#[derive(Debug, Clone)]
struct Member {
    canonical: String,
    ids: BTreeSet<String>,
    name: Option<String>,
    pushname: Option<String>,
    number: Option<String>,
    /// `(name, id)`, sorted by name.
    groups: Vec<(String, String)>,
    has_direct_chat: bool,
    in_contacts: bool,
}

impl Member {
    fn to_value(&self) -> Value {
        let opt = |v: &Option<String>| v.clone().map(json::s).unwrap_or(Value::Null);
        json::obj([
            ("canonicalId", json::s(self.canonical.clone())),
            ("ids", json::arr(self.ids.iter().cloned().map(json::s))),
            ("name", opt(&self.name)),
            ("pushname", opt(&self.pushname)),
            ("number", opt(&self.number)),
            ("groupCount", json::int(self.groups.len() as i64)),
            (
                "groups",
                json::arr(self.groups.iter().map(|(name, id)| {
                    json::obj([("id", json::s(id.clone())), ("name", json::s(name.clone()))])
                })),
            ),
            ("hasDirectChat", json::bool(self.has_direct_chat)),
            ("inContacts", json::bool(self.in_contacts)),
        ])
    }
}

/// The member matrix.
struct Matrix {
    groups_processed: usize,
    /// Sorted by group count (highest first), then name.
    members: Vec<Member>,
}

/// Up to `limit` groups as `(id, display name)`: group chats by activity, then groups known only
/// from their metadata.
fn scanned_groups(v: &mut Views, limit: usize) -> Result<Vec<(String, String)>> {
    let lk = v.lk;
    let mut ids: Vec<String> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    lk.chat_jids_newest(&mut |_, chat_jid| {
        if jid::is_group(chat_jid) && seen.insert(chat_jid.to_string()) {
            ids.push(chat_jid.to_string());
        }
        Ok(ids.len() < limit)
    })?;
    if ids.len() < limit {
        for (gid, _) in lk.groups_all()? {
            if ids.len() >= limit {
                break;
            }
            if seen.insert(gid.clone()) {
                ids.push(gid);
            }
        }
    }
    let mut out = Vec::with_capacity(ids.len());
    for gid in ids {
        let stored = lk.chat(&gid)?.and_then(|c| c.name);
        let name = v
            .best_chat_name(std::slice::from_ref(&gid), &gid, stored.as_deref())?
            .unwrap_or_else(|| gid.clone());
        out.push((gid, name));
    }
    Ok(out)
}

fn build_matrix(v: &mut Views, group_limit: usize) -> Result<Matrix> {
    let groups = scanned_groups(v, group_limit)?;
    let lk = v.lk;
    let mut own: HashSet<String> = HashSet::new();
    if let Some(o) = lk.own_jid() {
        let o = jid::normalize(o).unwrap_or_else(|| o.to_string());
        own.extend(lk.related(&o)?);
        own.insert(lk.canonical(&o)?);
    }
    // canonical JID → (the raw JIDs seen, the groups as (name, id))
    type Seen = (BTreeSet<String>, Vec<(String, String)>);
    let mut by_person: HashMap<String, Seen> = HashMap::new();
    for (gid, gname) in &groups {
        for (raw, _role) in lk.group_members(gid)? {
            let Some(member) = jid::normalize(&raw) else {
                continue;
            };
            if own.contains(&member) {
                continue;
            }
            let canonical = v.canonical(&member)?;
            if own.contains(&canonical) {
                continue;
            }
            let entry = by_person.entry(canonical).or_default();
            entry.0.insert(member);
            if !entry.1.iter().any(|(_, id)| id == gid) {
                entry.1.push((gname.clone(), gid.clone()));
            }
        }
    }
    let mut members = Vec::with_capacity(by_person.len());
    for (canonical, (ids, mut member_groups)) in by_person {
        let mut jids = lk.related(&canonical)?;
        jids.extend(
            ids.iter()
                .filter(|i| !jids.contains(i))
                .cloned()
                .collect::<Vec<_>>(),
        );
        let mut has_direct_chat = false;
        let mut in_contacts = false;
        for j in &jids {
            if !has_direct_chat && lk.chat(j)?.is_some_and(|c| !c.is_group) {
                has_direct_chat = true;
            }
            if !in_contacts && lk.contact(j)?.is_some() {
                in_contacts = true;
            }
        }
        let summary = v.summary(&canonical)?.unwrap_or_default();
        let number = summary
            .number
            .or_else(|| jid::is_pn(&canonical).then(|| jid::user(&canonical).to_string()));
        member_groups.sort_by_cached_key(|(name, id)| (views::fold(name), id.clone()));
        members.push(Member {
            canonical,
            ids,
            name: summary.name,
            pushname: summary.pushname,
            number,
            groups: member_groups,
            has_direct_chat,
            in_contacts,
        });
    }
    members.sort_by_cached_key(|m| {
        (
            std::cmp::Reverse(m.groups.len()),
            views::fold(m.name.as_deref().unwrap_or("")),
            m.canonical.clone(),
        )
    });
    Ok(Matrix {
        groups_processed: groups.len(),
        members,
    })
}

struct AuditArgs {
    group_limit: usize,
    refresh: bool,
}

fn audit_args(call: &ToolCall) -> AuditArgs {
    AuditArgs {
        group_limit: usize::try_from(call.args.int("group_limit").unwrap_or(200)).unwrap_or(1),
        refresh: call.args.bool("refresh_group_info").unwrap_or(false),
    }
}

fn threshold(call: &ToolCall, name: &str, default: i64, floor: usize) -> usize {
    usize::try_from(call.args.int(name).unwrap_or(default))
        .unwrap_or(floor)
        .max(floor)
}

/// Adds the refresh note to an answer object.
fn with_note(mut v: Value, note: Option<String>) -> Value {
    if let (Some(n), Value::Object(o)) = (note, &mut v) {
        o.insert("note".into(), json::s(n));
    }
    v
}

fn pick(members: &[Member], keep: impl Fn(&Member) -> bool) -> Vec<Value> {
    members
        .iter()
        .filter(|m| keep(m))
        .map(Member::to_value)
        .collect()
}

async fn analyze_group_overlaps(call: ToolCall) -> ToolResult {
    let min = threshold(&call, "min_shared_groups", 2, 2);
    member_list(
        call,
        "Error analyzing group overlaps",
        "overlaps",
        move |x| x.groups.len() >= min,
    )
    .await
}

async fn find_members_without_direct_chat(call: ToolCall) -> ToolResult {
    let min = threshold(&call, "min_shared_groups", 1, 1);
    member_list(
        call,
        "Error finding members without direct chat",
        "members",
        move |x| !x.has_direct_chat && x.groups.len() >= min,
    )
    .await
}

async fn find_members_not_in_contacts(call: ToolCall) -> ToolResult {
    let min = threshold(&call, "min_shared_groups", 1, 1);
    member_list(
        call,
        "Error finding members not in contacts",
        "members",
        move |x| !x.in_contacts && x.groups.len() >= min,
    )
    .await
}

/// The shape the three single-list audits share: `{groupsProcessed, totalMembers, <key>: […]}`
/// with the members `keep` accepts.
async fn member_list(
    call: ToolCall,
    failure: &str,
    key: &'static str,
    keep: impl Fn(&Member) -> bool + Send + 'static,
) -> ToolResult {
    let a = audit_args(&call);
    let note = refresh(&call, a.refresh).await;
    views::answer(&call, failure.to_string(), move |v| {
        let m = build_matrix(v, a.group_limit)?;
        let listed = pick(&m.members, &keep);
        Ok(Ok(with_note(
            json::obj([
                ("groupsProcessed", json::int(m.groups_processed as i64)),
                ("totalMembers", json::int(m.members.len() as i64)),
                (key, json::arr(listed)),
            ]),
            note,
        )))
    })
    .await
}

async fn run_group_audit(call: ToolCall) -> ToolResult {
    let a = audit_args(&call);
    let overlap_min = threshold(&call, "overlap_min_shared_groups", 2, 2);
    let min = threshold(&call, "min_shared_groups", 1, 1);
    let note = refresh(&call, a.refresh).await;
    views::answer(&call, "Error running group audit".into(), move |v| {
        let m = build_matrix(v, a.group_limit)?;
        let overlaps = pick(&m.members, |x| x.groups.len() >= overlap_min);
        let without = pick(&m.members, |x| !x.has_direct_chat && x.groups.len() >= min);
        let not_in = pick(&m.members, |x| !x.in_contacts && x.groups.len() >= min);
        let summary = json::obj([
            ("groupsProcessed", json::int(m.groups_processed as i64)),
            ("totalMembers", json::int(m.members.len() as i64)),
            ("overlapCount", json::int(overlaps.len() as i64)),
            ("withoutDirectChatCount", json::int(without.len() as i64)),
            ("notInContactsCount", json::int(not_in.len() as i64)),
        ]);
        Ok(Ok(with_note(
            json::obj([
                ("summary", summary),
                ("overlaps", json::arr(overlaps)),
                ("withoutDirectChat", json::arr(without)),
                ("notInContacts", json::arr(not_in)),
            ]),
            note,
        )))
    })
    .await
}
