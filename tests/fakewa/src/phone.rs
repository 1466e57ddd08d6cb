//! The mock phone's Signal side (device 0 of an account): it opens a session to a newly
//! linked companion from the prekeys that companion uploaded, and shares the account's
//! app-state sync key with it, as the real phone does after linking.

use std::collections::HashMap;

use buffa::Message as _;
use wacore::libsignal::protocol::{
    CiphertextMessage, Direction, IdentityChange, IdentityKey, IdentityKeyPair, IdentityKeyStore,
    KeyPair, PreKeyBundle, ProtocolAddress, PublicKey, SessionRecord, SessionStore, UsePQRatchet,
    error::Result as SignalResult, message_encrypt, process_prekey_bundle,
};
use waproto::whatsapp as wa;

use crate::state::DeviceKeys;

/// A phone's Signal stores: its identity and its peers' identities, and its sessions.
pub struct PhoneStore {
    identity: PhoneIdentity,
    sessions: PhoneSessions,
}

struct PhoneIdentity {
    identity: IdentityKeyPair,
    registration_id: u32,
    identities: HashMap<ProtocolAddress, IdentityKey>,
}

#[derive(Default)]
struct PhoneSessions {
    sessions: HashMap<ProtocolAddress, SessionRecord>,
}

impl PhoneStore {
    pub fn new(identity: &KeyPair, registration_id: u32) -> Self {
        Self {
            identity: PhoneIdentity {
                identity: IdentityKeyPair::new(
                    IdentityKey::new(identity.public_key),
                    identity.private_key.clone(),
                ),
                registration_id,
                identities: HashMap::new(),
            },
            sessions: PhoneSessions::default(),
        }
    }
}

#[whatsapp_rust::async_trait]
impl IdentityKeyStore for PhoneIdentity {
    async fn get_identity_key_pair(&self) -> SignalResult<IdentityKeyPair> {
        Ok(self.identity.clone())
    }
    async fn get_local_registration_id(&self) -> SignalResult<u32> {
        Ok(self.registration_id)
    }
    async fn save_identity(
        &mut self,
        address: &ProtocolAddress,
        identity: &IdentityKey,
    ) -> SignalResult<IdentityChange> {
        let old = self.identities.insert(address.clone(), *identity);
        Ok(match old {
            Some(o) if o != *identity => IdentityChange::ReplacedExisting,
            _ => IdentityChange::NewOrUnchanged,
        })
    }
    async fn is_trusted_identity(
        &self,
        _address: &ProtocolAddress,
        _identity: &IdentityKey,
        _direction: Direction,
    ) -> SignalResult<bool> {
        Ok(true)
    }
    async fn get_identity(&self, address: &ProtocolAddress) -> SignalResult<Option<IdentityKey>> {
        Ok(self.identities.get(address).copied())
    }
}

#[whatsapp_rust::async_trait]
impl SessionStore for PhoneSessions {
    async fn load_session(&self, address: &ProtocolAddress) -> SignalResult<Option<SessionRecord>> {
        Ok(self.sessions.get(address).cloned())
    }
    async fn has_session(&self, address: &ProtocolAddress) -> SignalResult<bool> {
        Ok(self.sessions.contains_key(address))
    }
    async fn store_session(
        &mut self,
        address: &ProtocolAddress,
        record: SessionRecord,
    ) -> SignalResult<()> {
        self.sessions.insert(address.clone(), record);
        Ok(())
    }
}

/// The account's app-state sync key, as the phone holds it.
#[derive(Clone, Debug)]
pub struct AppStateKey {
    pub key_id: Vec<u8>,
    pub key_data: Vec<u8>,
    pub timestamp_ms: i64,
}

/// WhatsApp's message padding: 1–16 bytes, each equal to the pad length.
fn pad(mut plain: Vec<u8>) -> Vec<u8> {
    let mut b = [0u8; 1];
    rand::Rng::fill_bytes(&mut crate::state::rng(), &mut b);
    let n = (b[0] & 0x0f) + 1;
    plain.resize(plain.len() + usize::from(n), n);
    plain
}

/// A one-time prekey as the server holds it: id and public key.
pub type OneTimePreKey = (u32, Vec<u8>);

/// Whether the phone already has a Signal session with `device` of `number`.
pub async fn has_session(store: &PhoneStore, number: &str, device: u32) -> bool {
    let address = ProtocolAddress::new(number, device.into());
    store.sessions.has_session(&address).await.unwrap_or(false)
}

/// Builds a session with `device` of `number` from `keys` (one one-time prekey, already
/// taken out of the server's list, or none).
async fn open_session(
    store: &mut PhoneStore,
    number: &str,
    device: u32,
    keys: &DeviceKeys,
    prekey: Option<(u32, Vec<u8>)>,
) -> anyhow::Result<()> {
    let pk = |b: &[u8]| {
        PublicKey::from_djb_public_key_bytes(b).map_err(|e| anyhow::anyhow!("bad key: {e}"))
    };
    let (spk_id, spk_pub, spk_sig) = keys
        .signed_prekey
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no signed prekey uploaded"))?;
    let prekey = match prekey {
        Some((id, v)) => Some((id.into(), pk(&v)?)),
        None => None,
    };
    let bundle = PreKeyBundle::new(
        keys.registration_id,
        device.into(),
        prekey,
        spk_id.into(),
        pk(&spk_pub)?,
        spk_sig,
        IdentityKey::new(pk(&keys.identity)?),
    )?;
    let address = ProtocolAddress::new(number, device.into());
    process_prekey_bundle(
        &address,
        &mut store.sessions,
        &mut store.identity,
        &bundle,
        &mut crate::state::rng(),
        UsePQRatchet::No,
    )
    .await?;
    Ok(())
}

/// Encrypts `message` (padded) for `device` of `number` on the phone's session with it,
/// opening one from `bundle` (its keys and a one-time prekey) when there is none. Returns
/// the `<enc type>` (`pkmsg` or `msg`) and the ciphertext.
pub async fn encrypt_message(
    store: &mut PhoneStore,
    number: &str,
    device: u32,
    bundle: Option<(&DeviceKeys, Option<OneTimePreKey>)>,
    message: &wa::Message,
) -> anyhow::Result<(&'static str, Vec<u8>)> {
    let address = ProtocolAddress::new(number, device.into());
    if !store.sessions.has_session(&address).await.unwrap_or(false) {
        let (keys, prekey) =
            bundle.ok_or_else(|| anyhow::anyhow!("no session and no keys for {address}"))?;
        open_session(store, number, device, keys, prekey).await?;
    }
    let ct = message_encrypt(
        &pad(message.encode_to_vec()),
        &address,
        &mut store.sessions,
        &mut store.identity,
    )
    .await?;
    match ct {
        CiphertextMessage::PreKeySignalMessage(m) => Ok(("pkmsg", m.serialized().to_vec())),
        CiphertextMessage::SignalMessage(m) => Ok(("msg", m.serialized().to_vec())),
        _ => anyhow::bail!("unexpected ciphertext kind"),
    }
}

/// Encrypts an `AppStateSyncKeyShare` for `device` of `number` with a new session built from
/// `keys` (one one-time prekey, already taken out of the server's list, or none). Returns
/// the `pkmsg` bytes.
pub async fn encrypt_key_share(
    store: &mut PhoneStore,
    number: &str,
    device: u32,
    keys: &DeviceKeys,
    prekey: Option<(u32, Vec<u8>)>,
    app_key: &AppStateKey,
) -> anyhow::Result<Vec<u8>> {
    open_session(store, number, device, keys, prekey).await?;
    let address = ProtocolAddress::new(number, device.into());
    let share = wa::Message {
        protocol_message: buffa::MessageField::some(wa::message::ProtocolMessage {
            r#type: Some(wa::message::protocol_message::Type::APP_STATE_SYNC_KEY_SHARE),
            app_state_sync_key_share: buffa::MessageField::some(
                wa::message::AppStateSyncKeyShare {
                    keys: vec![wa::message::AppStateSyncKey {
                        key_id: buffa::MessageField::some(wa::message::AppStateSyncKeyId {
                            key_id: Some(app_key.key_id.clone()),
                        }),
                        key_data: buffa::MessageField::some(wa::message::AppStateSyncKeyData {
                            key_data: Some(app_key.key_data.clone()),
                            fingerprint: buffa::MessageField::some(
                                wa::message::AppStateSyncKeyFingerprint {
                                    raw_id: Some(1),
                                    current_index: Some(0),
                                    device_indexes: vec![0],
                                },
                            ),
                            timestamp: Some(app_key.timestamp_ms),
                        }),
                    }],
                },
            ),
            ..Default::default()
        }),
        ..Default::default()
    };
    let ct = message_encrypt(
        &pad(share.encode_to_vec()),
        &address,
        &mut store.sessions,
        &mut store.identity,
    )
    .await?;
    match ct {
        CiphertextMessage::PreKeySignalMessage(m) => Ok(m.serialized().to_vec()),
        CiphertextMessage::SignalMessage(m) => Ok(m.serialized().to_vec()),
        _ => anyhow::bail!("unexpected ciphertext kind"),
    }
}
