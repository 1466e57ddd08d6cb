//! Group audit tools: `analyze_group_overlaps`, `find_members_without_direct_chat`,
//! `find_members_not_in_contacts`, `run_group_audit`.
//!
//! Owns: the member matrix over your groups (who is in which group, who has a direct chat, who is
//! a contact). Must not: change groups, contacts or chats, or send anything. The store and the
//! WhatsApp engine are not built yet, so every tool here is a stub that says so.

use super::{Annotations, Param, Tool};

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
            crate::not_yet!("analyze_group_overlaps", "the group store (not built yet)"),
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
            crate::not_yet!(
                "find_members_without_direct_chat",
                "the group store (not built yet)"
            ),
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
            crate::not_yet!(
                "find_members_not_in_contacts",
                "the group store (not built yet)"
            ),
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
            crate::not_yet!("run_group_audit", "the group store (not built yet)"),
        ),
    ]
}
