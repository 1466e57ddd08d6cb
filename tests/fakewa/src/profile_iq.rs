//! The account-profile IQs: `w:profile:picture` get (preview or full image, through
//! profile.rs's CDN answer), set and delete of a device's own picture, and `status` (the
//! about text) set. Owns these IQ answers only; picture storage and the CDN paths are
//! state.rs's and profile.rs's, the usync `status` protocol is in state.rs.

use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;

use crate::route::{Addr, attr, notify_name};
use crate::state::{Inner, Outgoing, Phase, State, now_secs};

/// A profile notification (`picture`, `status`) from an account, sent to every logged-in
/// connection (but `except`): contacts are not tracked, everyone is told.
fn broadcast(g: &mut Inner, kind: &str, account: usize, except: Option<u64>, child: Node) {
    let id = State::next_id(g, "pr");
    let a = &g.accounts[account];
    let note = NodeBuilder::new("notification")
        .attr("from", a.jid())
        .attr("type", kind.to_string())
        .attr("id", id)
        .attr("t", now_secs().to_string())
        .attr("notify", notify_name(a))
        .children([child])
        .build();
    for (id, c) in &g.conns {
        if c.phase == Phase::LoggedIn && Some(*id) != except {
            let _ = c.tx.try_send(Outgoing::Node(note.clone()));
        }
    }
}

/// A `<picture>` carrying an error code (the client reads 404 as "no picture").
fn picture_error(code: u16, text: &str) -> Node {
    NodeBuilder::new("picture")
        .children([NodeBuilder::new("error")
            .attr("code", code.to_string())
            .attr("text", text.to_string())
            .build()])
        .build()
}

impl State {
    /// A `w:profile:picture` IQ from a logged-in device: the result's children, or an
    /// error code. `get` answers the `target`'s picture (`<picture type="preview|image">`;
    /// the same `id` as the client's gets an empty `<picture/>`); `set` with a `<picture>`
    /// stores the caller's own picture under a new id, without one deletes it.
    pub fn profile_picture_iq(&self, conn: u64, node: &Node) -> Result<Vec<Node>, u16> {
        let who = {
            let g = self.lock();
            State::logged_in(&g, conn).map(|(a, _)| g.accounts[a].number.clone())
        };
        let number = who.ok_or(401u16)?;
        let kind = attr(node, "type").unwrap_or_default();
        let request = node.get_optional_child("picture");
        if kind == "get" {
            let Some(target) = attr(node, "target").and_then(|t| Addr::parse(&t)) else {
                return Err(400);
            };
            let preview = request
                .and_then(|p| attr(p, "type"))
                .is_none_or(|t| t != "image");
            let known = request.and_then(|p| attr(p, "id"));
            return Ok(vec![
                match self.profile_picture_node(&target.user, preview) {
                    Some(pic) if known.is_some() && known == attr(&pic, "id") => {
                        NodeBuilder::new("picture").build()
                    }
                    Some(pic) => pic,
                    None => picture_error(404, "item-not-found"),
                },
            ]);
        }
        if attr(node, "target").is_some() {
            // Group pictures are not kept.
            return Err(404);
        }
        match request.and_then(|p| match &p.content {
            Some(wacore_binary::NodeContent::Bytes(b)) if !b.is_empty() => Some(b.clone()),
            _ => None,
        }) {
            Some(bytes) => {
                let id = self
                    .set_profile_picture(&number, bytes)
                    .map_err(|e| e.status)?;
                let mut g = self.lock();
                if let Some(account) = g.accounts.iter().position(|a| a.number == number) {
                    let jid = g.accounts[account].jid();
                    let set = NodeBuilder::new("set")
                        .attr("jid", jid.clone())
                        .attr("id", id.to_string())
                        .attr("author", jid)
                        .build();
                    broadcast(&mut g, "picture", account, None, set);
                }
                Ok(vec![
                    NodeBuilder::new("picture")
                        .attr("id", id.to_string())
                        .build(),
                ])
            }
            None => {
                let mut g = self.lock();
                if let Some(account) = g.accounts.iter().position(|a| a.number == number) {
                    g.accounts[account].picture = None;
                    let jid = g.accounts[account].jid();
                    let delete = NodeBuilder::new("delete").attr("jid", jid).build();
                    broadcast(&mut g, "picture", account, None, delete);
                }
                Ok(Vec::new())
            }
        }
    }

    /// `<iq xmlns="status" type="set"><status>text</status>`: the caller's about text.
    /// Returns false when the connection is not logged in.
    pub fn set_status_text(&self, conn: u64, node: &Node) -> bool {
        let text = node
            .get_optional_child("status")
            .and_then(Node::content_as_string)
            .map(|s| s.to_string())
            .unwrap_or_default();
        let mut g = self.lock();
        let Some((account, _)) = State::logged_in(&g, conn) else {
            return false;
        };
        g.accounts[account].status_text = Some((text.clone(), now_secs()));
        let set = NodeBuilder::new("set").string_content(text).build();
        broadcast(&mut g, "status", account, Some(conn), set);
        true
    }
}
