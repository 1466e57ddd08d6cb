//! Profile pictures as the CDN serves them: the `<picture id url direct_path type>` answer
//! for an account's picture (set by `POST /control/profile-pic` or by the account itself),
//! with the image stored on the CDN at a path named by the account and the picture id.
//! Owns only that answer; the `w:profile:picture` IQ dispatch and picture storage are in
//! conn.rs and state.rs.

use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;

use crate::state::State;

impl State {
    /// The `<picture>` child answering a `w:profile:picture` get for the account whose
    /// number or LID user part is `user` (`preview`: the thumbnail), or `None` when it has
    /// no picture (or the account is unknown).
    pub fn profile_picture_node(&self, user: &str, preview: bool) -> Option<Node> {
        let cdn = self.cdn.get()?.clone();
        let (number, id, bytes) = {
            let g = self.lock();
            let a = g
                .accounts
                .iter()
                .find(|a| a.number == user || a.lid == user)?;
            let (id, full, small) = a.picture.as_ref()?;
            let bytes = if preview { small.clone() } else { full.clone() };
            (a.number.clone(), *id, bytes)
        };
        let kind = if preview { "preview" } else { "image" };
        let direct_path = format!("/v/fakewa/pp/{number}/{id}/{kind}.jpg");
        let stored = if cdn.has(&direct_path) {
            crate::cdn::Stored {
                url: format!("https://{}{direct_path}", cdn.host()),
                direct_path,
            }
        } else {
            cdn.put_at(&direct_path, bytes)
        };
        Some(
            NodeBuilder::new("picture")
                .attr("id", id.to_string())
                .attr("type", kind)
                .attr("url", stored.url)
                .attr("direct_path", stored.direct_path)
                .build(),
        )
    }
}
