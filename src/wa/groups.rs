//! Live group metadata and profile pictures, as methods on [`Engine`].
//!
//! Owns: asking WhatsApp for one group's metadata (`w:g2` query), for every group we are in
//! (`w:g2` participating), and for a profile picture URL; turning group metadata into the
//! store's [`GroupUpdate`] (participants with roles, and the LID↔phone pairs they reveal) and
//! upserting it.
//!
//! Must not: answer from the cache (the tools fall back to the store themselves), or hand
//! whatsapp-rust types out of `src/wa`.

use whatsapp_rust::Jid;
use whatsapp_rust::features::GroupMetadata;
use whatsapp_rust::wacore_binary::JidExt;

use super::engine::Engine;

/// How long a profile picture lookup waits for WhatsApp's answer.
pub const PROFILE_PIC_WAIT: std::time::Duration = std::time::Duration::from_secs(20);
use crate::store::writes::{self, GroupUpdate};

/// The store's record of a group's metadata, and the (LID, phone JID) pairs its participant
/// list reveals.
pub fn group_update(meta: &GroupMetadata) -> (GroupUpdate, Vec<(String, String)>) {
    let mut mappings = Vec::new();
    let participants: Vec<(String, String)> = meta
        .participants
        .iter()
        .map(|p| {
            let jid = p.jid.to_non_ad_string();
            let pn = p.phone_number.as_ref().map(|j| j.to_non_ad_string());
            let lid = p
                .lid
                .as_ref()
                .map(|j| j.to_non_ad_string())
                .or_else(|| p.jid.is_lid().then(|| jid.clone()));
            if let (Some(lid), Some(pn)) = (lid, pn.clone())
                && crate::store::jid::is_lid(&lid)
                && crate::store::jid::is_pn(&pn)
            {
                mappings.push((lid, pn));
            }
            let role = if p.is_super_admin() {
                "superadmin"
            } else if p.is_admin() {
                "admin"
            } else {
                ""
            };
            // Members are listed by phone JID when WhatsApp tells us the number.
            let member = match (&pn, p.jid.is_lid()) {
                (Some(pn), true) => pn.clone(),
                _ => jid,
            };
            (member, role.to_string())
        })
        .collect();
    let update = GroupUpdate {
        jid: meta.id.to_non_ad_string(),
        subject: Some(meta.subject.clone()),
        owner: meta
            .creator_pn
            .as_ref()
            .or(meta.creator.as_ref())
            .map(|j| j.to_non_ad_string()),
        subject_owner: meta
            .subject_owner_pn
            .as_ref()
            .or(meta.subject_owner.as_ref())
            .map(|j| j.to_non_ad_string()),
        subject_time: meta.subject_time.map(|s| s.saturating_mul(1000)),
        desc: meta.description.clone(),
        creation: meta.creation_time.map(|s| s.saturating_mul(1000)),
        announce: Some(meta.is_announcement),
        restrict: Some(meta.is_locked),
        participants: Some(participants),
    };
    (update, mappings)
}

/// Upserts groups and their mappings in one write.
async fn store_groups(
    engine: &Engine,
    groups: Vec<(GroupUpdate, Vec<(String, String)>)>,
) -> Result<(), String> {
    engine
        .store()
        .write(move |txn| {
            for (update, mappings) in &groups {
                writes::upsert_group(txn, update)?;
                for (lid, pn) in mappings {
                    writes::put_mapping(txn, lid, pn)?;
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| format!("storing group metadata failed: {e}"))
}

impl Engine {
    /// Live group metadata; on success also upserts it into the store (groups table).
    pub async fn group_info(&self, group_jid: &str) -> Result<GroupUpdate, String> {
        let jid: Jid = group_jid
            .parse()
            .map_err(|e| format!("{group_jid:?} is not a group JID: {e}"))?;
        if !jid.is_group() {
            return Err(format!("{group_jid:?} is not a group JID (…@g.us)"));
        }
        let client = self.connected_client()?;
        let meta = client
            .groups()
            .get_metadata(&jid)
            .await
            .map_err(|e| format!("WhatsApp did not return the group {group_jid}: {e}"))?;
        let (update, mappings) = group_update(&meta);
        store_groups(self, vec![(update.clone(), mappings)]).await?;
        Ok(update)
    }

    /// Every group we are in, live (`w:g2` participating); upserts all into the store. Returns
    /// how many there are.
    pub async fn refresh_groups(&self) -> Result<usize, String> {
        let client = self.connected_client()?;
        let all = client
            .groups()
            .get_participating()
            .await
            .map_err(|e| format!("WhatsApp did not list our groups: {e}"))?;
        let groups: Vec<_> = all.values().map(group_update).collect();
        let n = groups.len();
        store_groups(self, groups).await?;
        Ok(n)
    }

    /// The profile picture URL and id of a user or group; `Ok(None)` when there is none or it
    /// is hidden from us.
    pub async fn profile_pic(
        &self,
        jid: &str,
        preview: bool,
    ) -> Result<Option<(String, String)>, String> {
        let target: Jid = jid
            .parse()
            .map_err(|e| format!("{jid:?} is not a WhatsApp JID: {e}"))?;
        let client = self.connected_client()?;
        let pic = client
            .contacts()
            .get_profile_picture_with_timeout(&target, preview, Some(PROFILE_PIC_WAIT))
            .await
            .map_err(|e| format!("WhatsApp did not return the profile picture of {jid}: {e}"))?;
        Ok(pic.map(|p| (p.url, p.id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use whatsapp_rust::features::GroupParticipant;
    use whatsapp_rust::wacore::iq::groups::ParticipantType;

    fn member(jid: &str, pn: Option<&str>, kind: ParticipantType) -> GroupParticipant {
        GroupParticipant {
            jid: jid.parse().unwrap(),
            phone_number: pn.map(|p| p.parse().unwrap()),
            lid: None,
            username: None,
            participant_type: kind,
            details: None,
        }
    }

    #[test]
    fn lid_addressed_members_are_stored_by_phone_with_roles_and_mappings() {
        let meta = GroupMetadata {
            id: "120363000000000001@g.us".parse().unwrap(),
            subject: "Team".into(),
            creator: Some("100000000000001@lid".parse().unwrap()),
            creator_pn: Some("15550000001@s.whatsapp.net".parse().unwrap()),
            creation_time: Some(1_700_000_000),
            description: Some("the team".into()),
            is_announcement: true,
            participants: vec![
                member(
                    "100000000000001@lid",
                    Some("15550000001@s.whatsapp.net"),
                    ParticipantType::SuperAdmin,
                ),
                member(
                    "100000000000002@lid",
                    Some("15550000002@s.whatsapp.net"),
                    ParticipantType::Member,
                ),
                member("100000000000003@lid", None, ParticipantType::Admin),
            ],
            ..GroupMetadata::default()
        };
        let (update, mappings) = group_update(&meta);
        assert_eq!(update.jid, "120363000000000001@g.us");
        assert_eq!(update.subject.as_deref(), Some("Team"));
        assert_eq!(update.owner.as_deref(), Some("15550000001@s.whatsapp.net"));
        assert_eq!(update.creation, Some(1_700_000_000_000));
        assert_eq!(update.announce, Some(true));
        assert_eq!(
            update.participants.unwrap(),
            [
                (
                    "15550000001@s.whatsapp.net".to_string(),
                    "superadmin".to_string()
                ),
                ("15550000002@s.whatsapp.net".to_string(), String::new()),
                ("100000000000003@lid".to_string(), "admin".to_string()),
            ]
        );
        assert_eq!(
            mappings,
            [
                (
                    "100000000000001@lid".to_string(),
                    "15550000001@s.whatsapp.net".to_string()
                ),
                (
                    "100000000000002@lid".to_string(),
                    "15550000002@s.whatsapp.net".to_string()
                ),
            ]
        );
    }
}
