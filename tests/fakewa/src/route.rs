//! Routing between devices, opaque (the server never decrypts): `<message>` fan-out to the
//! devices a sender encrypted for, `<receipt>` back to the sender's devices, the server's
//! `<ack>`s, and each device's offline queue (delivered in order on its next login) with
//! redelivery of what a closed connection never acked. Owns queues and delivery; it must
//! not touch pairing, keys or app state. Group fan-out is in groups.rs.

use std::collections::VecDeque;

use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;

use crate::state::{Account, Inner, Outgoing, Phase, State, account_push_name, now_secs};

/// A parsed JID: `user[.agent][:device]@server`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Addr {
    pub user: String,
    pub device: Option<u32>,
    pub server: String,
}

impl Addr {
    pub fn parse(jid: &str) -> Option<Addr> {
        let (user, server) = jid.split_once('@')?;
        let (user, device) = match user.split_once(':') {
            Some((u, d)) => (u, Some(d.parse().ok()?)),
            None => (user, None),
        };
        let user = user.split('.').next().unwrap_or(user);
        Some(Addr {
            user: user.to_string(),
            device,
            server: server.to_string(),
        })
    }

    pub fn is_lid(&self) -> bool {
        self.server == "lid"
    }

    pub fn is_group(&self) -> bool {
        self.server == "g.us"
    }

    /// The user JID without a device.
    pub fn bare(&self) -> String {
        format!("{}@{}", self.user, self.server)
    }
}

/// An attribute as a string.
pub fn attr(node: &Node, key: &str) -> Option<String> {
    node.attrs.get(key).map(|v| v.to_string())
}

/// The account a JID names (by phone number or LID).
pub fn resolve(g: &Inner, addr: &Addr) -> Option<usize> {
    match addr.server.as_str() {
        "lid" => g.accounts.iter().position(|a| a.lid == addr.user),
        "s.whatsapp.net" | "c.us" => g.accounts.iter().position(|a| a.number == addr.user),
        _ => None,
    }
}

/// A device JID of `a` in LID or phone-number form (device 0 is the bare user JID).
pub fn device_jid(a: &Account, device: u32, lid: bool) -> String {
    let (user, server) = if lid {
        (&a.lid, "lid")
    } else {
        (&a.number, "s.whatsapp.net")
    };
    if device == 0 {
        format!("{user}@{server}")
    } else {
        format!("{user}:{device}@{server}")
    }
}

/// The account's user JID in LID or phone-number form.
pub fn user_jid(a: &Account, lid: bool) -> String {
    device_jid(a, 0, lid)
}

/// The name shown as `notify` on what the account sends.
pub fn notify_name(a: &Account) -> String {
    a.notify_name
        .clone()
        .unwrap_or_else(|| account_push_name(a))
}

/// The newest logged-in connection of a device.
fn online_conn(g: &Inner, account: usize, device: u32) -> Option<u64> {
    g.conns
        .iter()
        .filter(|(_, c)| {
            c.phase == Phase::LoggedIn && c.account == Some(account) && c.device == Some(device)
        })
        .map(|(id, _)| *id)
        .max()
}

/// Whether a device has a logged-in connection.
pub fn is_online(g: &Inner, account: usize, device: u32) -> bool {
    online_conn(g, account, device).is_some()
}

/// Sends a routed stanza to one device now, or queues it for the device's next login. The
/// phone (device 0) takes what is sent to it and never answers; unknown devices are skipped.
pub fn deliver(g: &mut Inner, account: usize, device: u32, node: Node) {
    if device == 0 || !g.accounts[account].devices.contains(&device) {
        return;
    }
    if let Some(id) = online_conn(g, account, device)
        && let Some(c) = g.conns.get_mut(&id)
        && c.tx.try_send(Outgoing::Node(node.clone())).is_ok()
    {
        let class = node.tag.to_string();
        let sid = attr(&node, "id").unwrap_or_default();
        c.unacked.push((class, sid, node));
        return;
    }
    g.queues
        .entry((account, device))
        .or_default()
        .push_back(node);
}

/// Sends a stanza that is not acked by the client (presence, chatstate) to a device if it
/// is online. Returns whether it was sent.
pub fn send_if_online(g: &Inner, account: usize, device: u32, node: Node) -> bool {
    match online_conn(g, account, device).and_then(|id| g.conns.get(&id)) {
        Some(c) => c.tx.try_send(Outgoing::Node(node)).is_ok(),
        None => false,
    }
}

/// Delivers to every companion of an account, except `except`.
pub fn deliver_to_account(g: &mut Inner, account: usize, except: Option<u32>, node: &Node) {
    let devices = g.accounts[account].devices.clone();
    for d in devices {
        if Some(d) != except {
            deliver(g, account, d, node.clone());
        }
    }
}

/// What a closed connection had not acked goes back in front of its device's queue (or to
/// its newer connection).
pub fn redeliver_unacked(g: &mut Inner, account: usize, device: u32, unacked: Vec<Node>) {
    if unacked.is_empty() {
        return;
    }
    if is_online(g, account, device) {
        for node in unacked {
            deliver(g, account, device, node);
        }
        return;
    }
    let queue = g.queues.entry((account, device)).or_default();
    for node in unacked.into_iter().rev() {
        queue.push_front(node);
    }
}

/// `<ack>` from the server for a client stanza.
fn server_ack(class: &str, node: &Node) -> Node {
    let mut b = NodeBuilder::new("ack")
        .attr("class", class.to_string())
        .attr("id", attr(node, "id").unwrap_or_default())
        .attr("t", now_secs().to_string());
    if let Some(to) = attr(node, "to") {
        b = b.attr("from", to);
    }
    if class == "receipt"
        && let Some(t) = attr(node, "type")
    {
        b = b.attr("type", t);
    }
    b.build()
}

/// Copies a client stanza's attributes except those in `skip`.
pub fn copy_attrs(node: &Node, skip: &[&str]) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for (k, v) in node.attrs.iter() {
        if skip.contains(&k.as_ref()) {
            continue;
        }
        if let Some(key) = static_key(k) {
            out.push((key, v.to_string()));
        }
    }
    out
}

/// Attribute names pass through a `'static` builder: the ones routed stanzas carry.
fn static_key(k: &str) -> Option<&'static str> {
    const KEYS: &[&str] = &[
        "id",
        "type",
        "edit",
        "category",
        "mediatype",
        "t",
        "recipient",
        "participant",
        "addressing_mode",
        "context",
        "push_priority",
        "verified_name",
        "peer_recipient_pn",
        "peer_participant_pn",
        "meta",
        "count",
    ];
    KEYS.iter().copied().find(|key| *key == k)
}

fn build(tag: &'static str, attrs: Vec<(&'static str, String)>, children: Vec<Node>) -> Node {
    let mut b = NodeBuilder::new(tag);
    for (k, v) in attrs {
        b = b.attr(k, v);
    }
    if !children.is_empty() {
        b = b.children(children);
    }
    b.build()
}

fn set(attrs: &mut Vec<(&'static str, String)>, key: &'static str, value: String) {
    attrs.retain(|(k, _)| *k != key);
    attrs.push((key, value));
}

impl State {
    /// The device's offline queue, taken for delivery on its login: each stanza marked
    /// `offline`, remembered as unacked on `conn`.
    pub fn take_offline(&self, conn: u64) -> Vec<Node> {
        let mut g = self.lock();
        let Some((account, device)) = State::logged_in(&g, conn) else {
            return Vec::new();
        };
        let queued: VecDeque<Node> = g.queues.remove(&(account, device)).unwrap_or_default();
        let mut out = Vec::with_capacity(queued.len());
        for mut node in queued {
            node.attrs.insert("offline", "1");
            out.push(node);
        }
        if let Some(c) = g.conns.get_mut(&conn) {
            for node in &out {
                let class = node.tag.to_string();
                let id = attr(node, "id").unwrap_or_default();
                c.unacked.push((class, id, node.clone()));
            }
        }
        out
    }

    /// A client's `<ack class=… id=…>` for a routed stanza.
    pub fn client_ack(&self, conn: u64, node: &Node) {
        let class = attr(node, "class").unwrap_or_default();
        let id = attr(node, "id").unwrap_or_default();
        let mut g = self.lock();
        if let Some(c) = g.conns.get_mut(&conn)
            && let Some(i) = c
                .unacked
                .iter()
                .position(|(k, sid, _)| *k == class && *sid == id)
        {
            c.unacked.remove(i);
        }
    }

    /// A closed connection's unacked stanzas, delivered again.
    pub(crate) fn requeue_closed(
        g: &mut Inner,
        account: Option<usize>,
        device: Option<u32>,
        unacked: Vec<(String, String, Node)>,
    ) {
        if let (Some(a), Some(d)) = (account, device)
            && a < g.accounts.len()
        {
            let nodes = unacked.into_iter().map(|(_, _, n)| n).collect();
            redeliver_unacked(g, a, d, nodes);
        }
    }

    /// A `<message>` from a logged-in device: routed to every device it was encrypted for
    /// (and, for groups, to every member device). Returns the server's ack.
    pub fn route_message(&self, conn: u64, node: &Node) -> Option<Node> {
        let mut g = self.lock();
        let (sa, sd) = State::logged_in(&g, conn)?;
        let to = attr(node, "to").and_then(|t| Addr::parse(&t));
        let Some(to) = to else {
            return Some(server_ack("message", node));
        };
        if to.is_group() {
            let err = crate::groups::route_group_message(&mut g, sa, sd, &to, node);
            let mut ack = server_ack("message", node);
            if let Some(code) = err {
                ack.attrs.insert("error", code.to_string());
            }
            return Some(ack);
        }
        if to.server == "broadcast" {
            return Some(server_ack("message", node));
        }
        if let Some(recipient) = resolve(&g, &to)
            && recipient != sa
        {
            if first_contact_refused(&g, sa, recipient, node) {
                let mut ack = server_ack("message", node);
                ack.attrs.insert("error", "463");
                return Some(ack);
            }
            g.contacted.insert((sa, recipient));
        }
        route_dm(&mut g, sa, sd, &to, node);
        Some(server_ack("message", node))
    }

    /// A `<receipt>` from a logged-in device: to the devices of the message's sender.
    /// Returns the server's ack.
    pub fn route_receipt(&self, conn: u64, node: &Node) -> Option<Node> {
        let mut g = self.lock();
        let (ra, rd) = State::logged_in(&g, conn)?;
        let to = attr(node, "to").and_then(|t| Addr::parse(&t))?;
        let kind = attr(node, "type").unwrap_or_default();
        let children = node.children().map(<[Node]>::to_vec).unwrap_or_default();
        let mut attrs = copy_attrs(node, &["to", "participant"]);
        // An inactive device's delivery receipt reaches the sender as a plain delivery.
        if kind == "inactive" {
            attrs.retain(|(k, _)| *k != "type");
        }
        if attr(node, "t").is_none() {
            set(&mut attrs, "t", now_secs().to_string());
        }
        if to.is_group() {
            let participant = attr(node, "participant").and_then(|p| Addr::parse(&p));
            let target = participant.as_ref().and_then(|p| resolve(&g, p));
            if let (Some(p), Some(target)) = (participant, target) {
                let lid = p.is_lid();
                set(&mut attrs, "from", to.bare());
                set(
                    &mut attrs,
                    "participant",
                    device_jid(&g.accounts[ra], rd, lid),
                );
                let out = build("receipt", attrs, children);
                let except = (target == ra).then_some(rd);
                deliver_to_account(&mut g, target, except, &out);
            }
            return Some(server_ack("receipt", node));
        }
        let Some(target) = resolve(&g, &to) else {
            return Some(server_ack("receipt", node));
        };
        set(
            &mut attrs,
            "from",
            device_jid(&g.accounts[ra], rd, to.is_lid()),
        );
        let out = build("receipt", attrs, children);
        let only_device = matches!(kind.as_str(), "retry" | "enc_rekey_retry")
            .then_some(to.device)
            .flatten();
        match only_device {
            Some(d) => deliver(&mut g, target, d, out),
            None => {
                let except = (target == ra).then_some(rd);
                deliver_to_account(&mut g, target, except, &out);
            }
        }
        Some(server_ack("receipt", node))
    }
}

/// WhatsApp's 463: a first message to a privacy-restricted account (`restricted:` push name)
/// is refused unless that account wrote to the sender before or the stanza carries a
/// `<tctoken>` (or a `<cstoken>`, unless the account's `cs_enabled=0`). Token issuance and
/// validation are not modelled: any token is accepted.
fn first_contact_refused(g: &Inner, sender: usize, recipient: usize, node: &Node) -> bool {
    let flags = &g.accounts[recipient].flags;
    if !flags.restricted || g.contacted.contains(&(recipient, sender)) {
        return false;
    }
    let cs_disabled = flags
        .scenario
        .iter()
        .any(|(k, v)| k == "cs_enabled" && v == "0");
    let has = |tag: &str| node.get_optional_child(tag).is_some();
    !(has("tctoken") || (has("cstoken") && !cs_disabled))
}

/// A message's children other than `<participants>` and `<enc>` (those are addressed per
/// device): they go to every recipient as they are.
pub fn passed_on_children(node: &Node) -> Vec<Node> {
    node.children()
        .unwrap_or_default()
        .iter()
        .filter(|c| c.tag != "participants" && c.tag != "enc")
        .cloned()
        .collect()
}

/// A 1:1 (or own-device, or peer) message: each `<participants><to jid>` gets its own
/// `<enc>`; a bare `<enc>` goes to the device `to` names (a user JID: its primary).
fn route_dm(g: &mut Inner, sa: usize, sd: u32, to: &Addr, node: &Node) {
    if resolve(g, to).is_none() {
        return;
    }
    let extra = passed_on_children(node);
    let mut targets: Vec<(Addr, Vec<Node>)> = Vec::new();
    if let Some(participants) = node.get_optional_child("participants") {
        for t in participants.get_children_by_tag("to") {
            let Some(addr) = attr(t, "jid").and_then(|j| Addr::parse(&j)) else {
                continue;
            };
            let encs = t.children().map(<[Node]>::to_vec).unwrap_or_default();
            targets.push((addr, encs));
        }
    } else {
        // A bare user JID names its primary (device 0).
        let encs: Vec<Node> = node.get_children_by_tag("enc").cloned().collect();
        targets.push((to.clone(), encs));
    }
    let base = copy_attrs(node, &["to", "phash", "participant", "addressing_mode"]);
    let t = now_secs().to_string();
    for (addr, encs) in targets {
        let Some(account) = resolve(g, &addr) else {
            continue;
        };
        let device = addr.device.unwrap_or(0);
        if account == sa && device == sd {
            continue;
        }
        // Own devices see each other by LID (the requester of a key share is answered
        // at its LID), others in the form the sender addressed them.
        let lid = addr.is_lid() || account == sa;
        let sender = &g.accounts[sa];
        let mut attrs = base.clone();
        set(&mut attrs, "from", device_jid(sender, sd, lid));
        set(&mut attrs, "t", t.clone());
        set(&mut attrs, "notify", notify_name(sender));
        if account == sa {
            if attr(node, "category").as_deref() != Some("peer") {
                set(&mut attrs, "recipient", to.bare());
            }
        } else if lid {
            attrs.push(("sender_pn", user_jid(sender, false)));
        } else {
            attrs.push(("sender_lid", user_jid(sender, true)));
        }
        let mut children = encs;
        children.extend(extra.iter().cloned());
        let out = build("message", attrs, children);
        deliver(g, account, device, out);
    }
}
