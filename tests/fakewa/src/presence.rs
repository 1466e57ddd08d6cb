//! Presence and chatstate relay: `<presence>` updates (available/unavailable, push name),
//! subscriptions answered with the current state, `<chatstate>` to the other party's
//! devices (or a group's members), and what an offline device gets on its next login: the
//! latest presence of each contact it follows, and chatstates younger than 3 s. Owns
//! nothing persistent beyond the account's presence and notify name.

use std::time::{Duration, Instant};

use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;

use crate::route::{Addr, attr, device_jid, is_online, resolve, send_if_online};
use crate::state::{Inner, State, now_secs};

/// A presence or chatstate held for an offline device.
pub struct Held {
    /// Dropped after this (never, without one).
    expires: Option<Instant>,
    /// A newer stanza under the same key replaces it.
    key: String,
    node: Node,
}

/// How long a chatstate waits for an offline device (upstream's `CHATSTATE_TTL_SECS=3`).
const CHATSTATE_TTL: Duration = Duration::from_secs(3);

/// Sends to a device now, or holds it (replacing what is held under the same key) for its
/// next login, until `ttl` runs out (never, without one).
fn send_or_hold(
    g: &mut Inner,
    account: usize,
    device: u32,
    key: String,
    ttl: Option<Duration>,
    node: Node,
) {
    if device == 0 || !g.accounts[account].devices.contains(&device) {
        return;
    }
    if is_online(g, account, device) && send_if_online(g, account, device, node.clone()) {
        return;
    }
    let held = g.ephemeral.entry((account, device)).or_default();
    held.retain(|h| h.key != key);
    held.push(Held {
        expires: ttl.map(|t| Instant::now() + t),
        key,
        node,
    });
}

/// The `<presence>` a subscriber sees for `target`, named as it subscribed.
fn presence_node(g: &Inner, target: usize, named: &str) -> Node {
    let a = &g.accounts[target];
    let (kind, last) = a
        .presence
        .clone()
        .unwrap_or_else(|| ("unavailable".to_string(), now_secs()));
    let mut b = NodeBuilder::new("presence").attr("from", named.to_string());
    if kind == "unavailable" {
        b = b.attr("type", "unavailable").attr("last", last.to_string());
    }
    b.build()
}

impl State {
    /// A `<presence>` from a logged-in device.
    pub fn presence(&self, conn: u64, node: &Node) {
        let mut g = self.lock();
        let Some((account, device)) = State::logged_in(&g, conn) else {
            return;
        };
        let kind = attr(node, "type").unwrap_or_else(|| "available".to_string());
        match kind.as_str() {
            "subscribe" => {
                let Some(named) = attr(node, "to") else {
                    return;
                };
                let Some(target) = Addr::parse(&named).and_then(|t| resolve(&g, &t)) else {
                    return;
                };
                let subs = g.presence_subs.entry(target).or_default();
                subs.retain(|(a, d, _)| !(*a == account && *d == device));
                subs.push((account, device, named.clone()));
                let answer = presence_node(&g, target, &named);
                send_if_online(&g, account, device, answer);
            }
            "unsubscribe" => {
                if let Some(target) = attr(node, "to")
                    .and_then(|t| Addr::parse(&t))
                    .and_then(|t| resolve(&g, &t))
                    && let Some(subs) = g.presence_subs.get_mut(&target)
                {
                    subs.retain(|(a, d, _)| !(*a == account && *d == device));
                }
            }
            "available" | "unavailable" => {
                if let Some(name) = attr(node, "name").filter(|n| !n.is_empty()) {
                    g.accounts[account].notify_name = Some(name);
                }
                g.accounts[account].presence = Some((kind, now_secs()));
                let subs = g.presence_subs.get(&account).cloned().unwrap_or_default();
                for (sa, sd, named) in subs {
                    let update = presence_node(&g, account, &named);
                    send_or_hold(&mut g, sa, sd, format!("presence:{named}"), None, update);
                }
            }
            _ => {}
        }
    }

    /// A `<chatstate to=…>` from a logged-in device: to every device of the other party
    /// (for a group, of every other member), held 3 s for offline ones.
    pub fn chatstate(&self, conn: u64, node: &Node) {
        let mut g = self.lock();
        let Some((account, device)) = State::logged_in(&g, conn) else {
            return;
        };
        let Some(to) = attr(node, "to").and_then(|t| Addr::parse(&t)) else {
            return;
        };
        let children = node.children().map(<[Node]>::to_vec).unwrap_or_default();
        let mut targets: Vec<(usize, Node)> = Vec::new();
        if to.is_group() {
            let members = crate::groups::member_accounts(&g, &to.user);
            for (m, lid) in members {
                if m == account {
                    continue;
                }
                let out = NodeBuilder::new("chatstate")
                    .attr("from", to.bare())
                    .attr("participant", device_jid(&g.accounts[account], 0, lid))
                    .children(children.clone())
                    .build();
                targets.push((m, out));
            }
        } else if let Some(target) = resolve(&g, &to) {
            let out = NodeBuilder::new("chatstate")
                .attr("from", device_jid(&g.accounts[account], 0, to.is_lid()))
                .children(children)
                .build();
            targets.push((target, out));
        }
        for (target, out) in targets {
            for d in g.accounts[target].devices.clone() {
                if target == account && d == device {
                    continue;
                }
                let key = format!("chatstate:{}", attr(&out, "from").unwrap_or_default());
                send_or_hold(&mut g, target, d, key, Some(CHATSTATE_TTL), out.clone());
            }
        }
    }

    /// What was held for a device while it was away and has not expired, taken.
    pub fn take_held(&self, conn: u64) -> Vec<Node> {
        let mut g = self.lock();
        let Some((account, device)) = State::logged_in(&g, conn) else {
            return Vec::new();
        };
        let now = Instant::now();
        g.ephemeral
            .remove(&(account, device))
            .unwrap_or_default()
            .into_iter()
            .filter(|h| h.expires.is_none_or(|e| e > now))
            .map(|h| h.node)
            .collect()
    }
}
