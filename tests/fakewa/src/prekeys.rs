//! Prekey bundles (`<iq xmlns="encrypt" type="get"><key><user jid=…/>…`): served from what
//! each device uploaded, one one-time prekey consumed per fetch, the low-count
//! notification below 5; the phone (device 0) serves its identity and signed prekey. Owns
//! bundle answers only; uploads, counts and digests stay in state.rs.

use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;

use crate::route::{Addr, attr, deliver, resolve};
use crate::state::State;

/// Below this many one-time prekeys the device is told to upload more.
const LOW_PREKEYS: usize = 5;

pub(crate) fn be3(v: u32) -> Vec<u8> {
    v.to_be_bytes()[1..].to_vec()
}

fn skey(id: u32, value: Vec<u8>, signature: Vec<u8>) -> Node {
    NodeBuilder::new("skey")
        .children([
            NodeBuilder::new("id").bytes(be3(id)).build(),
            NodeBuilder::new("value").bytes(value).build(),
            NodeBuilder::new("signature").bytes(signature).build(),
        ])
        .build()
}

/// The key children a bundle starts with: `<registration>`, `<type>` (5), `<identity>` and
/// `<skey>` (id, public key, signature). A prekey fetch's `<user>` and the `<digest>` answer
/// both carry them.
pub(crate) fn bundle_keys(
    registration_id: u32,
    identity: Vec<u8>,
    (skey_id, skey_pub, skey_sig): (u32, Vec<u8>, Vec<u8>),
) -> Vec<Node> {
    vec![
        NodeBuilder::new("registration")
            .bytes(registration_id.to_be_bytes().to_vec())
            .build(),
        NodeBuilder::new("type").bytes(vec![5u8]).build(),
        NodeBuilder::new("identity").bytes(identity).build(),
        skey(skey_id, skey_pub, skey_sig),
    ]
}

impl State {
    /// The `<list>` answering a prekey fetch: one `<user>` per requested device (a user JID
    /// without a device means every device of that user), or `<error code="404">` for an
    /// unknown device.
    pub fn prekey_bundles(&self, query: &Node) -> Node {
        let mut g = self.lock();
        let mut users = Vec::new();
        let mut low = Vec::new();
        let requested: Vec<String> = query
            .get_optional_child("key")
            .map(|k| {
                k.get_children_by_tag("user")
                    .filter_map(|u| attr(u, "jid"))
                    .collect()
            })
            .unwrap_or_default();
        for jid in requested {
            let Some(addr) = Addr::parse(&jid) else {
                continue;
            };
            let Some(account) = resolve(&g, &addr) else {
                users.push(error_user(&jid, 404));
                continue;
            };
            let devices: Vec<(String, u32)> = match addr.device {
                Some(d) => vec![(jid.clone(), d)],
                None => std::iter::once(0)
                    .chain(g.accounts[account].devices.iter().copied())
                    .map(|d| {
                        let lid = addr.is_lid();
                        (crate::route::device_jid(&g.accounts[account], d, lid), d)
                    })
                    .collect(),
            };
            for (jid, device) in devices {
                let a = &mut g.accounts[account];
                if device == 0 {
                    let phone_keys = bundle_keys(
                        1,
                        a.phone_identity.public_key.public_key_bytes().to_vec(),
                        a.phone_signed_prekey.clone(),
                    );
                    users.push(
                        NodeBuilder::new("user")
                            .attr("jid", jid)
                            .children(phone_keys)
                            .build(),
                    );
                    continue;
                }
                let Some(keys) = a.keys.get_mut(&device) else {
                    users.push(error_user(&jid, 404));
                    continue;
                };
                let Some(signed_prekey) = keys.signed_prekey.clone() else {
                    users.push(error_user(&jid, 404));
                    continue;
                };
                let one_time = (!keys.prekeys.is_empty()).then(|| keys.prekeys.remove(0));
                if keys.prekeys.len() < LOW_PREKEYS {
                    low.push((account, device, keys.prekeys.len()));
                }
                let mut children =
                    bundle_keys(keys.registration_id, keys.identity.clone(), signed_prekey);
                if let Some((id, value)) = one_time {
                    children.push(
                        NodeBuilder::new("key")
                            .children([
                                NodeBuilder::new("id").bytes(be3(id)).build(),
                                NodeBuilder::new("value").bytes(value).build(),
                            ])
                            .build(),
                    );
                }
                users.push(
                    NodeBuilder::new("user")
                        .attr("jid", jid)
                        .children(children)
                        .build(),
                );
            }
        }
        for (account, device, left) in low {
            let note = State::server_notification(&mut g, "encrypt", "pk")
                .children([NodeBuilder::new("count")
                    .attr("value", left.to_string())
                    .build()])
                .build();
            deliver(&mut g, account, device, note);
        }
        NodeBuilder::new("list").children(users).build()
    }
}

fn error_user(jid: &str, code: u16) -> Node {
    NodeBuilder::new("user")
        .attr("jid", jid.to_string())
        .children([NodeBuilder::new("error")
            .attr("code", code.to_string())
            .attr("text", "item-not-found")
            .build()])
        .build()
}
