//! Groups (`w:g2`): creation, metadata, the participating list, participants added, removed,
//! promoted and demoted, settings (subject, description, locked, announcement, ephemeral,
//! membership approval) and leaving; the `w:gp2` notifications to every member device
//! (queued for offline ones); and the fan-out of group messages (`skmsg` to every member
//! device, each device's own `pkmsg`/`msg` sender-key distribution). Groups are LID
//! addressed: participants are named by LID with their phone number beside. Owns group
//! state only; delivery is route.rs's.

use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;

use crate::route::{
    Addr, attr, deliver, deliver_to_account, device_jid, notify_name, resolve, user_jid,
};
use crate::state::{Inner, State, now_secs};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Member,
    Admin,
    SuperAdmin,
}

/// One group, kept by the server.
#[derive(Clone, Debug)]
pub struct Group {
    /// JID user part; the group is `<id>@g.us`.
    pub id: String,
    pub subject: String,
    pub subject_owner: usize,
    pub subject_time: u64,
    pub creator: usize,
    pub creation: u64,
    /// (id, body).
    pub description: Option<(String, String)>,
    /// Member accounts in join order, with their role.
    pub members: Vec<(usize, Role)>,
    pub locked: bool,
    pub announce: bool,
    pub ephemeral: u32,
    pub membership_approval: bool,
}

impl Group {
    pub fn jid(&self) -> String {
        format!("{}@g.us", self.id)
    }

    fn role(&self, account: usize) -> Option<Role> {
        self.members
            .iter()
            .find(|(a, _)| *a == account)
            .map(|(_, r)| *r)
    }

    fn is_admin(&self, account: usize) -> bool {
        matches!(self.role(account), Some(Role::Admin | Role::SuperAdmin))
    }
}

/// A group IQ failure: status code and text.
pub type GroupError = (u16, &'static str);

/// The `<participant>` naming a member: its LID, its phone number beside.
fn participant_node(g: &Inner, account: usize, role: Option<Role>) -> Node {
    let a = &g.accounts[account];
    let mut b = NodeBuilder::new("participant")
        .attr("jid", user_jid(a, true))
        .attr("phone_number", user_jid(a, false));
    match role {
        Some(Role::Admin) => b = b.attr("type", "admin"),
        Some(Role::SuperAdmin) => b = b.attr("type", "superadmin"),
        _ => {}
    }
    b.build()
}

/// The full `<group>` node of metadata answers and the create notification.
fn group_node(g: &Inner, group: &Group) -> Node {
    let creator = &g.accounts[group.creator];
    let owner = &g.accounts[group.subject_owner];
    let mut children: Vec<Node> = group
        .members
        .iter()
        .map(|(a, r)| participant_node(g, *a, Some(*r)))
        .collect();
    if let Some((id, body)) = &group.description {
        children.push(
            NodeBuilder::new("description")
                .attr("id", id.clone())
                .children([NodeBuilder::new("body")
                    .string_content(body.clone())
                    .build()])
                .build(),
        );
    }
    if group.locked {
        children.push(NodeBuilder::new("locked").build());
    }
    if group.announce {
        children.push(NodeBuilder::new("announcement").build());
    }
    if group.ephemeral > 0 {
        children.push(
            NodeBuilder::new("ephemeral")
                .attr("expiration", group.ephemeral.to_string())
                .build(),
        );
    }
    if group.membership_approval {
        children.push(
            NodeBuilder::new("membership_approval_mode")
                .children([NodeBuilder::new("group_join").attr("state", "on").build()])
                .build(),
        );
    }
    NodeBuilder::new("group")
        .attr("id", group.id.clone())
        .attr("subject", group.subject.clone())
        .attr("s_t", group.subject_time.to_string())
        .attr("s_o", user_jid(owner, true))
        .attr("s_o_pn", user_jid(owner, false))
        .attr("creator", user_jid(creator, true))
        .attr("creator_pn", user_jid(creator, false))
        .attr("creation", group.creation.to_string())
        .attr("addressing_mode", "lid")
        .attr("size", group.members.len().to_string())
        .children(children)
        .build()
}

/// Sends a `w:gp2` notification by `actor` with `children` to every device of `accounts`,
/// except the actor's own requesting device.
fn notify(
    g: &mut Inner,
    group: &str,
    actor: usize,
    except_device: Option<u32>,
    accounts: &[usize],
    children: Vec<Node>,
) {
    let id = State::next_id(g, "gp");
    let a = &g.accounts[actor];
    let note = NodeBuilder::new("notification")
        .attr("from", format!("{group}@g.us"))
        .attr("type", "w:gp2")
        .attr("id", id)
        .attr("t", now_secs().to_string())
        .attr("participant", user_jid(a, true))
        .attr("participant_pn", user_jid(a, false))
        .attr("notify", notify_name(a))
        .attr("addressing_mode", "lid")
        .children(children)
        .build();
    let mut seen = Vec::new();
    for &account in accounts {
        if seen.contains(&account) {
            continue;
        }
        seen.push(account);
        let except = (account == actor).then_some(except_device).flatten();
        deliver_to_account(g, account, except, &note);
    }
}

/// Creates a group with `creator` as superadmin and `others` as members; sends the create
/// notification to every member device but `except_device` of the creator. Returns its id.
fn create(
    g: &mut Inner,
    creator: usize,
    except_device: Option<u32>,
    subject: &str,
    others: &[usize],
    description: Option<String>,
) -> String {
    let n = g.groups.len() as u64 + 1;
    let id = format!("120363{:012}", 100_000 + n);
    let t = now_secs();
    let mut members = vec![(creator, Role::SuperAdmin)];
    for &o in others {
        if !members.iter().any(|(a, _)| *a == o) {
            members.push((o, Role::Member));
        }
    }
    let group = Group {
        id: id.clone(),
        subject: subject.to_string(),
        subject_owner: creator,
        subject_time: t,
        creator,
        creation: t,
        description: description.map(|d| (format!("{:X}", t), d)),
        members,
        locked: false,
        announce: false,
        ephemeral: 0,
        membership_approval: false,
    };
    let accounts: Vec<usize> = group.members.iter().map(|(a, _)| *a).collect();
    let create_node = NodeBuilder::new("create")
        .attr("reason", "create")
        .children([group_node(g, &group)])
        .build();
    g.groups.insert(id.clone(), group);
    notify(g, &id, creator, except_device, &accounts, vec![create_node]);
    id
}

/// The member accounts of a group; groups address them by LID (`true`).
pub fn member_accounts(g: &Inner, group: &str) -> Vec<(usize, bool)> {
    g.groups
        .get(group)
        .map(|gr| gr.members.iter().map(|(a, _)| (*a, true)).collect())
        .unwrap_or_default()
}

/// A `<message to="…@g.us">` from (account `sa`, device `sd`): the shared `<enc>`s (the
/// `skmsg`) go to every member device but the sender's (a retry resend, naming one device
/// in `participant`, to that device only); a device listed in `<participants>` also gets
/// its own `<enc>` (the sender-key distribution). Returns an
/// error code for the sender's ack when refused (403: not a member).
pub fn route_group_message(
    g: &mut Inner,
    sa: usize,
    sd: u32,
    to: &Addr,
    node: &Node,
) -> Option<u16> {
    let group = g.groups.get(&to.user)?.clone();
    if group.role(sa).is_none() {
        return Some(403);
    }
    if group.announce && !group.is_admin(sa) {
        return Some(403);
    }
    // A retry resend names the one member device it is for.
    let only: Option<(usize, u32)> = attr(node, "participant")
        .and_then(|p| Addr::parse(&p))
        .and_then(|p| resolve(g, &p).map(|a| (a, p.device.unwrap_or(0))));
    let mut per_device: Vec<((usize, u32), Vec<Node>)> = Vec::new();
    if let Some(participants) = node.get_optional_child("participants") {
        for t in participants.get_children_by_tag("to") {
            let Some(addr) = attr(t, "jid").and_then(|j| Addr::parse(&j)) else {
                continue;
            };
            let Some(account) = resolve(g, &addr) else {
                continue;
            };
            let encs = t.children().map(<[Node]>::to_vec).unwrap_or_default();
            per_device.push(((account, addr.device.unwrap_or(0)), encs));
        }
    }
    let shared: Vec<Node> = node.get_children_by_tag("enc").cloned().collect();
    let extra = crate::route::passed_on_children(node);
    let sender = &g.accounts[sa];
    let mut attrs: Vec<(&'static str, String)> = crate::route::copy_attrs(
        node,
        &["to", "phash", "participant", "addressing_mode", "recipient"],
    );
    attrs.push(("from", group.jid()));
    attrs.push(("participant", device_jid(sender, sd, true)));
    attrs.push(("participant_pn", user_jid(sender, false)));
    attrs.push(("addressing_mode", "lid".to_string()));
    attrs.push(("notify", notify_name(sender)));
    attrs.retain(|(k, _)| *k != "t");
    attrs.push(("t", now_secs().to_string()));
    for (member, _) in &group.members {
        for d in g.accounts[*member].devices.clone() {
            if (*member == sa && d == sd) || only.is_some_and(|o| o != (*member, d)) {
                continue;
            }
            let mut children: Vec<Node> = per_device
                .iter()
                .filter(|(k, _)| *k == (*member, d))
                .flat_map(|(_, e)| e.iter().cloned())
                .collect();
            children.extend(shared.iter().cloned());
            if children.is_empty() {
                continue;
            }
            children.extend(extra.iter().cloned());
            let mut b = NodeBuilder::new("message");
            for (k, v) in &attrs {
                b = b.attr(k, v.clone());
            }
            deliver(g, *member, d, b.children(children).build());
        }
    }
    None
}

/// Accounts named by `<participant jid=…>` children (PN or LID), in order.
fn named_accounts(g: &Inner, node: &Node) -> Vec<(String, Option<usize>)> {
    node.get_children_by_tag("participant")
        .filter_map(|p| attr(p, "jid"))
        .map(|j| {
            let account = Addr::parse(&j).and_then(|a| resolve(g, &a));
            (j, account)
        })
        .collect()
}

impl State {
    /// A `w:g2` IQ from a logged-in device: the result's children, or an error.
    pub fn group_iq(&self, conn: u64, node: &Node) -> Result<Vec<Node>, GroupError> {
        let mut guard = self.lock();
        let g: &mut Inner = &mut guard;
        let (account, device) = State::logged_in(g, conn).ok_or((401, "not-authorized"))?;
        let kind = attr(node, "type").unwrap_or_default();
        let to = attr(node, "to").unwrap_or_default();
        // `to` is `g.us` (no user) for create, participating and leave.
        let target = Addr::parse(&to).map(|a| a.user).unwrap_or_default();
        let first = node
            .children()
            .and_then(|c| c.first())
            .cloned()
            .ok_or((400, "bad-request"))?;
        if target.is_empty() {
            return match (kind.as_str(), first.tag.as_ref()) {
                ("set", "create") => {
                    let subject = attr(&first, "subject").unwrap_or_default();
                    let others: Vec<usize> = named_accounts(g, &first)
                        .into_iter()
                        .filter_map(|(_, a)| a)
                        .collect();
                    let description = first
                        .get_optional_child_by_tag(&["description", "body"])
                        .and_then(Node::content_as_string)
                        .map(|s| s.to_string());
                    let id = create(g, account, Some(device), &subject, &others, description);
                    let group = g.groups.get(&id).cloned().ok_or((500, "internal"))?;
                    Ok(vec![group_node(g, &group)])
                }
                ("get", "participating") => {
                    let mut groups: Vec<&Group> = g
                        .groups
                        .values()
                        .filter(|gr| gr.role(account).is_some())
                        .collect();
                    groups.sort_by(|a, b| a.id.cmp(&b.id));
                    let nodes: Vec<Node> = groups.iter().map(|gr| group_node(g, gr)).collect();
                    Ok(vec![NodeBuilder::new("groups").children(nodes).build()])
                }
                ("set", "leave") => {
                    let ids: Vec<String> = first
                        .get_children_by_tag("group")
                        .filter_map(|n| attr(n, "id"))
                        .map(|j| j.split('@').next().unwrap_or_default().to_string())
                        .collect();
                    for id in &ids {
                        let Some(group) = g.groups.get_mut(id) else {
                            continue;
                        };
                        if group.role(account).is_none() {
                            continue;
                        }
                        let mut accounts: Vec<usize> =
                            group.members.iter().map(|(a, _)| *a).collect();
                        group.members.retain(|(a, _)| *a != account);
                        accounts.retain(|a| *a != account);
                        accounts.push(account);
                        let removed = NodeBuilder::new("remove")
                            .attr("reason", "leave")
                            .children([participant_node(g, account, None)])
                            .build();
                        notify(g, id, account, Some(device), &accounts, vec![removed]);
                    }
                    let groups = ids.iter().map(|id| {
                        NodeBuilder::new("group")
                            .attr("id", format!("{id}@g.us"))
                            .build()
                    });
                    Ok(vec![NodeBuilder::new("leave").children(groups).build()])
                }
                _ => Err((400, "bad-request")),
            };
        }
        let group = g
            .groups
            .get(&target)
            .cloned()
            .ok_or((404, "item-not-found"))?;
        if kind == "get" {
            if group.role(account).is_none() {
                return Err((403, "forbidden"));
            }
            return Ok(vec![group_node(g, &group)]);
        }
        const TAGS: &[&str] = &[
            "add",
            "remove",
            "promote",
            "demote",
            "subject",
            "description",
            "locked",
            "unlocked",
            "announcement",
            "not_announcement",
            "ephemeral",
            "not_ephemeral",
            "membership_approval_mode",
        ];
        let tag: &'static str = TAGS
            .iter()
            .copied()
            .find(|t| *t == first.tag.as_ref())
            .ok_or((400, "bad-request"))?;
        let is_admin = group.is_admin(account);
        let members: Vec<usize> = group.members.iter().map(|(a, _)| *a).collect();
        match tag {
            "add" | "remove" | "promote" | "demote" => {
                if !is_admin {
                    return Err((403, "forbidden"));
                }
                let named = named_accounts(g, &first);
                let mut results = Vec::new();
                let mut changed = Vec::new();
                for (jid, found) in named {
                    let status = match found {
                        None => "404",
                        Some(a) => {
                            let gr = g.groups.get_mut(&target).ok_or((404, "item-not-found"))?;
                            let role = gr.role(a);
                            match (tag, role) {
                                ("add", Some(_)) => "409",
                                ("add", None) => {
                                    gr.members.push((a, Role::Member));
                                    changed.push(a);
                                    "200"
                                }
                                ("remove", Some(Role::SuperAdmin)) => "406",
                                ("remove", Some(_)) => {
                                    gr.members.retain(|(m, _)| *m != a);
                                    changed.push(a);
                                    "200"
                                }
                                ("promote", Some(_)) => {
                                    for m in gr.members.iter_mut().filter(|(m, _)| *m == a) {
                                        if m.1 == Role::Member {
                                            m.1 = Role::Admin;
                                        }
                                    }
                                    changed.push(a);
                                    "200"
                                }
                                ("demote", Some(_)) => {
                                    for m in gr.members.iter_mut().filter(|(m, _)| *m == a) {
                                        m.1 = Role::Member;
                                    }
                                    changed.push(a);
                                    "200"
                                }
                                _ => "404",
                            }
                        }
                    };
                    // A LID group names the participant by LID, its number beside.
                    let named = found.map_or(jid.clone(), |a| user_jid(&g.accounts[a], true));
                    let mut p = NodeBuilder::new("participant").attr("jid", named);
                    if status == "200" {
                        p = p.attr("type", "200");
                    } else {
                        p = p.attr("error", status);
                    }
                    if let Some(a) = found {
                        p = p.attr("phone_number", user_jid(&g.accounts[a], false));
                    }
                    results.push(p.build());
                }
                if !changed.is_empty() {
                    let mut change = NodeBuilder::new(tag);
                    if tag == "add" {
                        change = change.attr("reason", "invite");
                    }
                    let role = |a: usize| {
                        (tag == "promote")
                            .then_some(Role::Admin)
                            .or_else(|| g.groups.get(&target).and_then(|gr| gr.role(a)))
                    };
                    let parts: Vec<Node> = changed
                        .iter()
                        .map(|a| participant_node(g, *a, role(*a)))
                        .collect();
                    let change = change.children(parts).build();
                    let mut accounts = members.clone();
                    accounts.extend(changed.iter().copied());
                    notify(g, &target, account, Some(device), &accounts, vec![change]);
                }
                Ok(vec![NodeBuilder::new(tag).children(results).build()])
            }
            "subject"
            | "description"
            | "locked"
            | "unlocked"
            | "announcement"
            | "not_announcement"
            | "ephemeral"
            | "not_ephemeral"
            | "membership_approval_mode" => {
                let settings_tag = !matches!(tag, "subject" | "description");
                if group.role(account).is_none() || ((settings_tag || group.locked) && !is_admin) {
                    return Err((403, "forbidden"));
                }
                let t = now_secs();
                let gr = g.groups.get_mut(&target).ok_or((404, "item-not-found"))?;
                let change = match tag {
                    "subject" => {
                        let subject = first
                            .content_as_string()
                            .map(|s| s.to_string())
                            .unwrap_or_default();
                        gr.subject = subject.clone();
                        gr.subject_owner = account;
                        gr.subject_time = t;
                        let owner = &g.accounts[account];
                        NodeBuilder::new("subject")
                            .attr("subject", subject)
                            .attr("s_o", user_jid(owner, true))
                            .attr("s_t", t.to_string())
                            .build()
                    }
                    "description" => {
                        let id = attr(&first, "id").unwrap_or_else(|| format!("{t:X}"));
                        let body = first
                            .get_optional_child("body")
                            .and_then(Node::content_as_string)
                            .map(|s| s.to_string());
                        match body {
                            Some(body) => {
                                gr.description = Some((id.clone(), body.clone()));
                                NodeBuilder::new("description")
                                    .attr("id", id)
                                    .children([NodeBuilder::new("body")
                                        .string_content(body)
                                        .build()])
                                    .build()
                            }
                            None => {
                                gr.description = None;
                                NodeBuilder::new("description")
                                    .attr("id", id)
                                    .attr("delete", "true")
                                    .build()
                            }
                        }
                    }
                    "locked" | "unlocked" => {
                        gr.locked = tag == "locked";
                        NodeBuilder::new(tag).build()
                    }
                    "announcement" | "not_announcement" => {
                        gr.announce = tag == "announcement";
                        NodeBuilder::new(tag).build()
                    }
                    "ephemeral" => {
                        gr.ephemeral = attr(&first, "expiration")
                            .and_then(|e| e.parse().ok())
                            .unwrap_or(0);
                        NodeBuilder::new("ephemeral")
                            .attr("expiration", gr.ephemeral.to_string())
                            .build()
                    }
                    "not_ephemeral" => {
                        gr.ephemeral = 0;
                        NodeBuilder::new("not_ephemeral").build()
                    }
                    _ => {
                        let state = first
                            .get_optional_child("group_join")
                            .and_then(|j| attr(j, "state"))
                            .unwrap_or_default();
                        gr.membership_approval = state == "on";
                        first.clone()
                    }
                };
                notify(g, &target, account, Some(device), &members, vec![change]);
                Ok(Vec::new())
            }
            _ => Err((400, "bad-request")),
        }
    }

    /// `POST /control/groups {subject, members}`: a group created server-side, the first
    /// member (a phone number or an account JID) its creator and superadmin; every member
    /// device gets the create notification. Returns the group JID.
    pub fn control_create_group(
        &self,
        subject: &str,
        members: &[String],
    ) -> Result<String, crate::state::ControlError> {
        let mut guard = self.lock();
        let g: &mut Inner = &mut guard;
        let mut accounts = Vec::new();
        for m in members {
            let addr = if m.contains('@') {
                Addr::parse(m)
            } else {
                let digits: String = m.chars().filter(char::is_ascii_digit).collect();
                Addr::parse(&format!("{digits}@s.whatsapp.net"))
            };
            let account = addr.and_then(|a| resolve(g, &a)).ok_or_else(|| {
                crate::state::ControlError::new(404, format!("no account for member {m:?}"))
            })?;
            accounts.push(account);
        }
        let Some((&creator, others)) = accounts.split_first() else {
            return Err(crate::state::ControlError::new(400, "members is empty"));
        };
        let id = create(g, creator, None, subject, others, None);
        Ok(format!("{id}@g.us"))
    }
}
