//! The server's shared state: accounts (each with a mock phone, device 0), live connections,
//! pending QR refs and counters, and the data the router keeps (each device's offline queue,
//! groups, presence subscriptions, held chatstates); pairing, login, key uploads, usync and
//! app state are answered here. Routing itself is in route.rs, groups.rs, presence.rs,
//! prekeys.rs and profile_iq.rs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use buffa::Message as _;
use hmac::{Hmac, KeyInit, Mac as _};
use serde_json::{Value, json};
use sha2::Sha256;
use wacore::libsignal::protocol::{KeyPair, PublicKey};
use wacore::pair::PairUtils;
use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;
use waproto::whatsapp as wa;

use crate::phone::{AppStateKey, PhoneStore};

const ADV_PREFIX_ACCOUNT_SIGNATURE: &[u8] = &[6, 0];
const ADV_PREFIX_DEVICE_SIGNATURE: &[u8] = &[6, 1];
/// How long `scan` waits for the companion's `pair-device-sign`.
const PAIR_SIGN_TIMEOUT: Duration = Duration::from_secs(20);

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::Rng::fill_bytes(&mut rng(), &mut v);
    v
}

pub fn rng() -> rand::rngs::StdRng {
    rand::make_rng::<rand::rngs::StdRng>()
}

/// What a push name asks for: `restricted:<name>` and `scenario:<f1,f2,…>:<name>`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    pub restricted: bool,
    /// `scenario:` flags as given, `key=value` or a bare key (value "1").
    pub scenario: Vec<(String, String)>,
}

/// Splits a push name into its display name and flags.
pub fn parse_push_name(push_name: &str) -> (String, Flags) {
    let mut flags = Flags::default();
    if let Some(rest) = push_name.strip_prefix("restricted:") {
        flags.restricted = true;
        return (rest.to_string(), flags);
    }
    if let Some(rest) = push_name.strip_prefix("scenario:")
        && let Some((list, name)) = rest.split_once(':')
    {
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (k, v) = item.split_once('=').unwrap_or((item, "1"));
            if k == "restricted" && v != "0" {
                flags.restricted = true;
            }
            flags.scenario.push((k.to_string(), v.to_string()));
        }
        return (name.to_string(), flags);
    }
    (push_name.to_string(), flags)
}

pub struct Account {
    /// The push name exactly as clients sent it: the account's key.
    pub push_name: String,
    pub display_name: String,
    pub flags: Flags,
    /// Phone number, digits only.
    pub number: String,
    /// LID user part, digits only.
    pub lid: String,
    /// The mock phone's (device 0) identity key: signs the ADV account signature.
    pub phone_identity: KeyPair,
    pub next_device: u32,
    /// Linked companion device ids (never 0).
    pub devices: Vec<u32>,
    /// What each companion uploaded with `<iq xmlns="encrypt" type="set">`.
    pub keys: HashMap<u32, DeviceKeys>,
    /// The app-state sync key the phone shares with new companions.
    pub app_key: AppStateKey,
    /// App-state patches the account's devices uploaded, opaque, by collection name; the
    /// patch at index i has version i + 1.
    pub app_state: HashMap<String, Vec<Vec<u8>>>,
    /// The phone's (device 0) signed prekey as served in prekey bundles: id, public key,
    /// signature by the phone's identity key.
    pub phone_signed_prekey: (u32, Vec<u8>, Vec<u8>),
    /// The push name last announced in a `<presence name=…>`: the `notify` of its messages.
    pub notify_name: Option<String>,
    /// Last presence: `available` or `unavailable`, and when (unix seconds).
    pub presence: Option<(String, u64)>,
    /// Status text (`about`) and when it was set.
    pub status_text: Option<(String, u64)>,
    /// Profile picture: (id, full image, preview).
    pub picture: Option<(u64, Vec<u8>, Vec<u8>)>,
}

/// A device's Signal keys as uploaded: registration id, identity, signed prekey and the
/// one-time prekeys not yet handed out.
#[derive(Clone, Debug, Default)]
pub struct DeviceKeys {
    pub registration_id: u32,
    pub identity: Vec<u8>,
    pub signed_prekey: Option<(u32, Vec<u8>, Vec<u8>)>,
    pub prekeys: Vec<(u32, Vec<u8>)>,
    /// Whether the phone already shared the app-state key with this device.
    pub key_shared: bool,
}

impl Account {
    pub fn jid(&self) -> String {
        format!("{}@s.whatsapp.net", self.number)
    }
    pub fn device_jid(&self, device: u32) -> String {
        format!("{}:{device}@s.whatsapp.net", self.number)
    }
    pub fn device_lid(&self, device: u32) -> String {
        format!("{}:{device}@lid", self.lid)
    }
}

/// What the connection task is told to do.
pub enum Outgoing {
    Node(Node),
    /// Flush, then close the WebSocket.
    Close,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Handshake,
    Pairing,
    LoggedIn,
}

struct PairWait {
    req_id: String,
    device: u32,
    companion_identity: [u8; 32],
    done: async_channel::Sender<Result<String, String>>,
}

struct PairCodeFlow {
    conn: u64,
    account: usize,
    pairing_ref: String,
    companion_wrapped: Vec<u8>,
    phone_ephemeral: Option<KeyPair>,
    companion_ephemeral: Option<[u8; 32]>,
    done: Option<async_channel::Sender<Result<String, String>>>,
}

pub(crate) struct Conn {
    pub(crate) tx: async_channel::Sender<Outgoing>,
    push_name: Option<String>,
    pub(crate) account: Option<usize>,
    pub(crate) device: Option<u32>,
    pub(crate) phase: Phase,
    pair_wait: Option<PairWait>,
    /// Routed stanzas sent on this connection and not yet acked by the client:
    /// (class, id, stanza). Delivered again elsewhere when the connection closes.
    pub(crate) unacked: Vec<(String, String, Node)>,
}

#[derive(Default)]
struct Counters {
    connections: u64,
    pairing_attempts: u64,
    pair_code_attempts: u64,
    logins: u64,
    scans: u64,
    app_state_patches: u64,
}

#[derive(Default)]
pub(crate) struct Inner {
    pub(crate) accounts: Vec<Account>,
    pub(crate) conns: HashMap<u64, Conn>,
    next_conn: u64,
    next_id: u64,
    /// Each device's offline queue, by (account index, device id), oldest first.
    pub(crate) queues: HashMap<(usize, u32), std::collections::VecDeque<Node>>,
    /// Groups by their JID user part.
    pub(crate) groups: HashMap<String, crate::groups::Group>,
    /// Presence subscriptions per target account: (subscriber account, device, the JID it
    /// subscribed to, as written).
    pub(crate) presence_subs: HashMap<usize, Vec<(usize, u32, String)>>,
    /// (sender, recipient) account pairs that exchanged a 1:1 message: a restricted
    /// recipient accepts a sender it has written to (route.rs).
    pub(crate) contacted: std::collections::HashSet<(usize, usize)>,
    /// Presence and chatstates held for offline devices: (expiry, coalescing key, stanza).
    pub(crate) ephemeral: HashMap<(usize, u32), Vec<crate::presence::Held>>,
    /// QR ref → the connection it was issued to.
    refs: HashMap<String, u64>,
    counters: Counters,
    /// Pair-code flows by phone number.
    pair_codes: HashMap<String, PairCodeFlow>,
    /// WebSocket upgrades are refused until then (`/control/refuse-connections`).
    refuse_until: Option<std::time::Instant>,
}

#[derive(Default)]
pub struct State {
    inner: Mutex<Inner>,
    /// Each account's phone Signal store, by account index.
    phones: smol::lock::Mutex<HashMap<usize, PhoneStore>>,
    /// The media CDN `media_conn` announces (set once at start).
    pub cdn: std::sync::OnceLock<Arc<crate::cdn::Cdn>>,
}

#[derive(Debug)]
pub struct ControlError {
    pub status: u16,
    pub message: String,
}

impl ControlError {
    pub(crate) fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl State {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new WebSocket connection; returns its id.
    pub fn open_connection(&self, tx: async_channel::Sender<Outgoing>) -> u64 {
        let mut g = self.lock();
        g.next_conn += 1;
        g.counters.connections += 1;
        let id = g.next_conn;
        g.conns.insert(
            id,
            Conn {
                tx,
                push_name: None,
                account: None,
                device: None,
                phase: Phase::Handshake,
                pair_wait: None,
                unacked: Vec::new(),
            },
        );
        id
    }

    pub fn close_connection(&self, id: u64) {
        let mut g = self.lock();
        if let Some(c) = g.conns.remove(&id) {
            let logged_in = c.phase == Phase::LoggedIn;
            if logged_in {
                Self::requeue_closed(&mut g, c.account, c.device, c.unacked);
            }
        }
        g.refs.retain(|_, c| *c != id);
        g.pair_codes.retain(|_, f| f.conn != id);
    }

    fn account_for_push_name(g: &mut Inner, push_name: &str) -> usize {
        if let Some(i) = g.accounts.iter().position(|a| a.push_name == push_name) {
            return i;
        }
        Self::new_account(g, push_name)
    }

    fn new_account(g: &mut Inner, push_name: &str) -> usize {
        let n = g.accounts.len() as u64 + 1;
        let (display_name, flags) = parse_push_name(push_name);
        g.accounts.push(Account {
            push_name: push_name.to_string(),
            display_name,
            flags,
            number: format!("{}", 15_550_000_000u64 + n),
            lid: format!("{}", 100_000_000_000_000u64 + n),
            phone_identity: KeyPair::generate(&mut rng()),
            next_device: 1,
            devices: Vec::new(),
            keys: HashMap::new(),
            app_key: AppStateKey {
                key_id: vec![0, 0, 0, 0, 0, n as u8],
                key_data: random_bytes(32),
                timestamp_ms: now_secs() as i64 * 1000,
            },
            app_state: HashMap::new(),
            phone_signed_prekey: (0, Vec::new(), Vec::new()),
            notify_name: None,
            presence: None,
            status_text: None,
            picture: None,
        });
        let i = g.accounts.len() - 1;
        g.accounts[i].phone_signed_prekey = phone_signed_prekey(&g.accounts[i].phone_identity);
        i
    }

    pub(crate) fn next_id(g: &mut Inner, prefix: &str) -> String {
        g.next_id += 1;
        format!("{prefix}.{}", g.next_id)
    }

    /// A `<notification from="s.whatsapp.net" type=kind id t=now>` from the server, its id the
    /// next one with `id_prefix`; the caller adds the children.
    pub(crate) fn server_notification(g: &mut Inner, kind: &str, id_prefix: &str) -> NodeBuilder {
        let id = Self::next_id(g, id_prefix);
        NodeBuilder::new("notification").attrs([
            ("from", "s.whatsapp.net".to_string()),
            ("type", kind.to_string()),
            ("id", id),
            ("t", now_secs().to_string()),
        ])
    }

    /// A registration (no username): picks the account by push name and returns the
    /// `<pair-device>` IQ with fresh refs.
    pub fn begin_pairing(&self, conn: u64, push_name: &str) -> Node {
        let mut g = self.lock();
        let account = Self::account_for_push_name(&mut g, push_name);
        g.counters.pairing_attempts += 1;
        let mut refs = Vec::new();
        for _ in 0..6 {
            let mut raw = [0u8; 18];
            rand::Rng::fill_bytes(&mut rng(), &mut raw);
            let r = format!("2@{}", BASE64_STANDARD.encode(raw));
            g.refs.insert(r.clone(), conn);
            refs.push(r);
        }
        if let Some(c) = g.conns.get_mut(&conn) {
            c.account = Some(account);
            c.phase = Phase::Pairing;
            c.push_name = Some(push_name.to_string());
        }
        let id = Self::next_id(&mut g, "pd");
        NodeBuilder::new("iq")
            .attrs([
                ("from", "s.whatsapp.net".to_string()),
                ("type", "set".to_string()),
                ("id", id),
                ("xmlns", "md".to_string()),
                ("t", now_secs().to_string()),
            ])
            .children([NodeBuilder::new("pair-device")
                .children(
                    refs.into_iter()
                        .map(|r| NodeBuilder::new("ref").bytes(r.into_bytes()).build()),
                )
                .build()])
            .build()
    }

    /// A login (username and device in the payload). Returns the `<success>` node, or
    /// the `<failure>` node and `false` when the device is unknown.
    pub fn login(&self, conn: u64, username: u64, device: u32) -> (Node, bool) {
        let mut g = self.lock();
        let number = username.to_string();
        let found = g
            .accounts
            .iter()
            .position(|a| a.number == number && a.devices.contains(&device));
        let Some(account) = found else {
            let node = NodeBuilder::new("failure")
                .attr("reason", "401")
                .attr("location", "fakewa")
                .build();
            return (node, false);
        };
        g.counters.logins += 1;
        let lid = g.accounts[account].device_lid(device);
        if let Some(c) = g.conns.get_mut(&conn) {
            c.account = Some(account);
            c.device = Some(device);
            c.phase = Phase::LoggedIn;
        }
        let t = now_secs();
        let node = NodeBuilder::new("success")
            .attrs([
                ("t", t.to_string()),
                ("lid", lid),
                ("props", "1".to_string()),
                ("abprops", "1".to_string()),
                ("location", "fakewa".to_string()),
                ("creation", t.to_string()),
            ])
            .build();
        (node, true)
    }

    /// The mock phone scans a QR string. Sends `<pair-success>` to the connection that
    /// was issued the ref and waits for the companion's `pair-device-sign`; returns the
    /// new device JID.
    pub async fn scan(&self, qr: &str) -> Result<String, ControlError> {
        let qr = qr.trim();
        let (pairing_ref, _noise_pub, identity_pub) =
            PairUtils::parse_qr_code(qr).map_err(|e| ControlError::new(400, e.to_string()))?;
        let adv_b64 = qr.split(',').nth(3).unwrap_or_default();
        let adv_secret = BASE64_STANDARD
            .decode(adv_b64)
            .map_err(|e| ControlError::new(400, format!("bad adv secret: {e}")))?;

        let (done_tx, done_rx) = async_channel::bounded(1);
        {
            let mut g = self.lock();
            g.counters.scans += 1;
            let conn_id = *g
                .refs
                .get(&pairing_ref)
                .ok_or_else(|| ControlError::new(404, "unknown or expired QR ref"))?;
            let account_idx = g
                .conns
                .get(&conn_id)
                .and_then(|c| c.account)
                .ok_or_else(|| ControlError::new(409, "the connection of that QR is gone"))?;
            Self::send_pair_success(
                &mut g,
                conn_id,
                account_idx,
                identity_pub,
                &adv_secret,
                done_tx,
            )?;
        }
        wait_done(done_rx).await
    }

    /// The phone's `<pair-success>` for a companion whose identity key and adv secret it
    /// learnt (from a QR or a pair-code exchange); `done` hears the outcome.
    fn send_pair_success(
        g: &mut Inner,
        conn_id: u64,
        account_idx: usize,
        identity_pub: [u8; 32],
        adv_secret: &[u8],
        done: async_channel::Sender<Result<String, String>>,
    ) -> Result<(), ControlError> {
        let req_id = Self::next_id(g, "ps");
        let account = &mut g.accounts[account_idx];
        let device = account.next_device;
        account.next_device += 1;
        let identity = sign_device_identity(account, device, &identity_pub, adv_secret)
            .map_err(|e| ControlError::new(500, e))?;
        let node = NodeBuilder::new("iq")
            .attrs([
                ("from", "s.whatsapp.net".to_string()),
                ("type", "set".to_string()),
                ("id", req_id.clone()),
                ("t", now_secs().to_string()),
            ])
            .children([NodeBuilder::new("pair-success")
                .children([
                    NodeBuilder::new("device-identity").bytes(identity).build(),
                    NodeBuilder::new("platform").attr("name", "android").build(),
                    NodeBuilder::new("device")
                        .attr("jid", account.device_jid(device))
                        .attr("lid", account.device_lid(device))
                        .build(),
                ])
                .build()])
            .build();
        let conn = g
            .conns
            .get_mut(&conn_id)
            .ok_or_else(|| ControlError::new(409, "the companion's connection is gone"))?;
        conn.account = Some(account_idx);
        conn.pair_wait = Some(PairWait {
            req_id,
            device,
            companion_identity: identity_pub,
            done,
        });
        conn.tx
            .try_send(Outgoing::Node(node))
            .map_err(|_| ControlError::new(409, "the companion's connection is gone"))
    }

    /// A companion's `companion_hello` (stage 1 of linking by phone number): records the
    /// flow for that number, creating the account if the number has none, and returns the
    /// `link_code_pairing_ref` answer's child.
    pub fn companion_hello(&self, conn: u64, reg: &Node) -> Result<Node, ControlError> {
        let number: String = reg
            .attrs
            .get("jid")
            .map(|v| v.to_string())
            .unwrap_or_default()
            .split('@')
            .next()
            .unwrap_or_default()
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        if number.is_empty() {
            return Err(ControlError::new(400, "companion_hello without a number"));
        }
        let wrapped =
            node_bytes(reg.get_optional_child("link_code_pairing_wrapped_companion_ephemeral_pub"))
                .ok_or_else(|| ControlError::new(400, "companion_hello without wrapped key"))?;
        let mut g = self.lock();
        g.counters.pair_code_attempts += 1;
        g.counters.pairing_attempts += 1;
        let account = match g.accounts.iter().position(|a| a.number == number) {
            Some(i) => i,
            None => {
                let push_name = g
                    .conns
                    .get(&conn)
                    .and_then(|c| c.push_name.clone())
                    .unwrap_or_else(|| number.clone());
                let i = Self::new_account(&mut g, &push_name);
                g.accounts[i].number = number.clone();
                i
            }
        };
        let pairing_ref = Self::next_id(&mut g, "lc");
        g.pair_codes.insert(
            number,
            PairCodeFlow {
                conn,
                account,
                pairing_ref: pairing_ref.clone(),
                companion_wrapped: wrapped,
                phone_ephemeral: None,
                companion_ephemeral: None,
                done: None,
            },
        );
        Ok(NodeBuilder::new("link_code_companion_reg")
            .children([NodeBuilder::new("link_code_pairing_ref")
                .bytes(pairing_ref.into_bytes())
                .build()])
            .build())
    }

    /// `/control/pair-code {phone, code}`: the phone of that number enters the code the
    /// companion shows (`primary_hello`), then completes the link when the companion
    /// answers (`companion_finish` → `pair-success`). Returns the new device JID.
    pub async fn enter_pair_code(&self, phone: &str, code: &str) -> Result<String, ControlError> {
        let number: String = phone.chars().filter(char::is_ascii_digit).collect();
        let (wrapped, tx, pairing_ref, phone_identity) = {
            let g = self.lock();
            let flow = g
                .pair_codes
                .get(&number)
                .ok_or_else(|| ControlError::new(404, "no pair-code request for that number"))?;
            let tx = g
                .conns
                .get(&flow.conn)
                .map(|c| c.tx.clone())
                .ok_or_else(|| ControlError::new(409, "the companion's connection is gone"))?;
            (
                flow.companion_wrapped.clone(),
                tx,
                flow.pairing_ref.clone(),
                g.accounts[flow.account].phone_identity.public_key,
            )
        };
        let code = code.trim().replace('-', "").to_uppercase();
        let phone_ephemeral = KeyPair::generate(&mut rng());
        let eph_pub: [u8; 32] = phone_ephemeral
            .public_key
            .public_key_bytes()
            .try_into()
            .map_err(|_| ControlError::new(500, "key length"))?;
        // PBKDF2 with many rounds, twice: off the executor.
        let (companion_ephemeral, wrapped_primary) = {
            let code = code.clone();
            smol::unblock(move || {
                let companion = wacore::pair_code::PairCodeUtils::decrypt_primary_ephemeral_pub(
                    &wrapped, &code,
                );
                let ours = wacore::pair_code::PairCodeUtils::encrypt_ephemeral_pub(&eph_pub, &code);
                (companion, ours)
            })
            .await
        };
        let companion_ephemeral = companion_ephemeral
            .map_err(|e| ControlError::new(400, format!("companion key: {e}")))?;
        let (done_tx, done_rx) = async_channel::bounded(1);
        {
            let mut g = self.lock();
            let flow = g
                .pair_codes
                .get_mut(&number)
                .ok_or_else(|| ControlError::new(409, "the pair-code request is gone"))?;
            flow.phone_ephemeral = Some(phone_ephemeral);
            flow.companion_ephemeral = Some(companion_ephemeral);
            flow.done = Some(done_tx);
            let hello = Self::server_notification(&mut g, "link_code_companion_reg", "ph")
                .children([NodeBuilder::new("link_code_companion_reg")
                    .attr("stage", "primary_hello")
                    .children([
                        NodeBuilder::new("link_code_pairing_ref")
                            .bytes(pairing_ref.into_bytes())
                            .build(),
                        NodeBuilder::new("link_code_pairing_wrapped_primary_ephemeral_pub")
                            .bytes(wrapped_primary.to_vec())
                            .build(),
                        NodeBuilder::new("primary_identity_pub")
                            .bytes(phone_identity.public_key_bytes().to_vec())
                            .build(),
                    ])
                    .build()])
                .build();
            tx.try_send(Outgoing::Node(hello))
                .map_err(|_| ControlError::new(409, "the companion's connection is gone"))?;
        }
        wait_done(done_rx).await
    }

    /// A companion's `companion_finish`: the phone unwraps the key bundle, derives the adv
    /// secret and sends `pair-success`. Returns false when refused.
    pub fn companion_finish(&self, conn: u64, reg: &Node) -> bool {
        let mut g = self.lock();
        let Some(number) = g
            .pair_codes
            .iter()
            .find(|(_, f)| f.conn == conn && f.phone_ephemeral.is_some())
            .map(|(n, _)| n.clone())
        else {
            return false;
        };
        let Some(flow) = g.pair_codes.remove(&number) else {
            return false;
        };
        let done = flow.done.clone();
        let outcome = (|| -> Result<([u8; 32], Vec<u8>), String> {
            let phone_eph = flow.phone_ephemeral.as_ref().ok_or("no primary_hello")?;
            let companion_eph = PublicKey::from_djb_public_key_bytes(
                &flow.companion_ephemeral.ok_or("no companion key")?,
            )
            .map_err(|e| e.to_string())?;
            let wrapped =
                node_bytes(reg.get_optional_child("link_code_pairing_wrapped_key_bundle"))
                    .ok_or("companion_finish without key bundle")?;
            if wrapped.len() < 32 + 12 + 16 {
                return Err("short key bundle".into());
            }
            let eph_shared = phone_eph
                .private_key
                .calculate_agreement(&companion_eph)
                .map_err(|e| e.to_string())?;
            let mut key = [0u8; 32];
            wacore::crypto::hkdf_sha256_into(
                &eph_shared,
                Some(&wrapped[..32]),
                b"link_code_pairing_key_bundle_encryption_key",
                &mut key,
            )
            .map_err(|e| format!("{e:?}"))?;
            let iv: [u8; 12] = wrapped[32..44].try_into().map_err(|_| "iv")?;
            let mut bundle = Vec::new();
            wacore::libsignal::crypto::aes_256_gcm_decrypt(
                &key,
                &iv,
                b"",
                &wrapped[44..],
                &mut bundle,
            )
            .map_err(|_| "the key bundle does not decrypt (wrong code?)".to_string())?;
            if bundle.len() != 96 {
                return Err("bad key bundle length".into());
            }
            let companion_identity: [u8; 32] = bundle[..32].try_into().map_err(|_| "identity")?;
            let account = &g.accounts[flow.account];
            if bundle[32..64] != *account.phone_identity.public_key.public_key_bytes() {
                return Err("the key bundle names another primary".into());
            }
            let identity_shared = account
                .phone_identity
                .private_key
                .calculate_agreement(
                    &PublicKey::from_djb_public_key_bytes(&companion_identity)
                        .map_err(|e| e.to_string())?,
                )
                .map_err(|e| e.to_string())?;
            let combined = [&eph_shared[..], &identity_shared[..], &bundle[64..96]].concat();
            let mut adv_secret = vec![0u8; 32];
            wacore::crypto::hkdf_sha256_into(&combined, None, b"adv_secret", &mut adv_secret)
                .map_err(|e| format!("{e:?}"))?;
            Ok((companion_identity, adv_secret))
        })();
        match (outcome, done) {
            (Ok((identity, adv_secret)), Some(done)) => {
                Self::send_pair_success(&mut g, conn, flow.account, identity, &adv_secret, done)
                    .is_ok()
            }
            (Err(e), Some(done)) => {
                let _ = done.try_send(Err(e));
                false
            }
            (_, None) => false,
        }
    }

    /// An `<iq type="result|error">` from a client. Completes a pairing when it answers
    /// our `pair-success`.
    pub fn iq_answer(&self, conn: u64, node: &Node) {
        let id = node
            .attrs
            .get("id")
            .map(|v| v.to_string())
            .unwrap_or_default();
        let mut g = self.lock();
        let Some(c) = g.conns.get_mut(&conn) else {
            return;
        };
        if c.pair_wait.as_ref().is_none_or(|w| w.req_id != id) {
            return;
        }
        let Some(wait) = c.pair_wait.take() else {
            return;
        };
        let Some(account_idx) = c.account else {
            return;
        };
        let tx = c.tx.clone();
        let is_result = node.attrs.get("type").is_some_and(|v| *v == "result");
        let verdict = if !is_result {
            Err(format!("the companion refused pair-success: {node:?}"))
        } else {
            verify_pair_device_sign(&g.accounts[account_idx], &wait, node)
        };
        match verdict {
            Ok(()) => {
                let account = &mut g.accounts[account_idx];
                account.devices.push(wait.device);
                let jid = account.device_jid(wait.device);
                g.refs.retain(|_, c| *c != conn);
                let _ = wait.done.try_send(Ok(jid));
                // As on WhatsApp: a 515 (restart required) and the companion logs in anew.
                let restart = NodeBuilder::new("stream:error").attr("code", "515").build();
                let _ = tx.try_send(Outgoing::Node(restart));
                let _ = tx.try_send(Outgoing::Close);
            }
            Err(e) => {
                let _ = wait.done.try_send(Err(e));
            }
        }
    }

    /// The account and device a logged-in connection speaks for.
    pub(crate) fn logged_in(g: &Inner, conn: u64) -> Option<(usize, u32)> {
        let c = g.conns.get(&conn)?;
        match (c.phase, c.account, c.device) {
            (Phase::LoggedIn, Some(a), Some(d)) => Some((a, d)),
            _ => None,
        }
    }

    /// `<iq xmlns="encrypt" type="set">` with `<registration>`: stores the device's keys.
    /// Returns false when the connection is not logged in or the upload is malformed.
    pub fn upload_prekeys(&self, conn: u64, node: &Node) -> bool {
        let mut g = self.lock();
        let Some((account, device)) = Self::logged_in(&g, conn) else {
            return false;
        };
        let bytes = |n: Option<&Node>| -> Option<Vec<u8>> {
            match &n?.content {
                Some(wacore_binary::NodeContent::Bytes(b)) => Some(b.clone()),
                _ => None,
            }
        };
        let be = |b: &[u8]| b.iter().fold(0u32, |acc, x| (acc << 8) | u32::from(*x));
        let Some(registration) = bytes(node.get_optional_child("registration")) else {
            return false;
        };
        let Some(identity) = bytes(node.get_optional_child("identity")) else {
            return false;
        };
        let keys = g.accounts[account].keys.entry(device).or_default();
        keys.registration_id = be(&registration);
        keys.identity = identity;
        if let Some(skey) = node.get_optional_child("skey") {
            let id = bytes(skey.get_optional_child("id")).unwrap_or_default();
            let value = bytes(skey.get_optional_child("value")).unwrap_or_default();
            let sig = bytes(skey.get_optional_child("signature")).unwrap_or_default();
            keys.signed_prekey = Some((be(&id), value, sig));
        }
        if let Some(list) = node.get_optional_child("list") {
            for key in list.get_children_by_tag("key") {
                let id = be(&bytes(key.get_optional_child("id")).unwrap_or_default());
                let value = bytes(key.get_optional_child("value")).unwrap_or_default();
                keys.prekeys.retain(|(i, _)| *i != id);
                keys.prekeys.push((id, value));
            }
        }
        true
    }

    /// The phone shares the account's app-state key with a logged-in device that uploaded
    /// its prekeys, once: a `pkmsg` from device 0 (consuming one of the device's prekeys).
    pub async fn share_app_state_key(&self, conn: u64) -> anyhow::Result<()> {
        let (account, device, number, keys, prekey, app_key, phone_identity, tx, id) = {
            let mut g = self.lock();
            let Some((account, device)) = Self::logged_in(&g, conn) else {
                return Ok(());
            };
            let id = Self::next_id(&mut g, "ks").replace('.', "").to_uppercase();
            let tx = g.conns.get(&conn).map(|c| c.tx.clone());
            let a = &mut g.accounts[account];
            let Some(keys) = a.keys.get_mut(&device) else {
                return Ok(());
            };
            if keys.key_shared {
                return Ok(());
            }
            keys.key_shared = true;
            let prekey = (!keys.prekeys.is_empty()).then(|| keys.prekeys.remove(0));
            let keys = keys.clone();
            (
                account,
                device,
                a.number.clone(),
                keys,
                prekey,
                a.app_key.clone(),
                a.phone_identity.clone(),
                tx,
                id,
            )
        };
        let ciphertext = {
            let mut phones = self.phones.lock().await;
            let store = phones
                .entry(account)
                .or_insert_with(|| PhoneStore::new(&phone_identity, 1));
            crate::phone::encrypt_key_share(store, &number, device, &keys, prekey, &app_key).await?
        };
        let node = NodeBuilder::new("message")
            .attrs([
                ("from", format!("{number}@s.whatsapp.net")),
                ("id", format!("3EB0{id}")),
                ("type", "text".to_string()),
                ("t", now_secs().to_string()),
            ])
            .children([NodeBuilder::new("enc")
                .attr("v", "2")
                .attr("type", "pkmsg")
                .bytes(ciphertext)
                .build()])
            .build();
        if let Some(tx) = tx {
            let _ = tx.try_send(Outgoing::Node(node));
        }
        Ok(())
    }

    /// How many one-time prekeys the server holds for a logged-in connection's device.
    pub fn prekey_count(&self, conn: u64) -> Option<usize> {
        let g = self.lock();
        let (account, device) = Self::logged_in(&g, conn)?;
        Some(
            g.accounts[account]
                .keys
                .get(&device)
                .map_or(0, |k| k.prekeys.len()),
        )
    }

    /// `<iq xmlns="encrypt" type="get"><digest/>`: the stored bundle of the connection's
    /// device and its SHA-1 digest, or `None` when nothing was uploaded (a 404).
    pub fn digest(&self, conn: u64) -> Option<Node> {
        let g = self.lock();
        let (account, device) = Self::logged_in(&g, conn)?;
        let keys = g.accounts[account].keys.get(&device)?;
        let (skey_id, skey_pub, skey_sig) = keys.signed_prekey.clone().unwrap_or_default();
        let pubs: Vec<&[u8]> = keys.prekeys.iter().map(|(_, v)| v.as_slice()).collect();
        let hash =
            wacore::prekeys::compute_key_bundle_digest(&keys.identity, &skey_pub, &skey_sig, &pubs);
        let mut children = crate::prekeys::bundle_keys(
            keys.registration_id,
            keys.identity.clone(),
            (skey_id, skey_pub, skey_sig),
        );
        children.push(
            NodeBuilder::new("list")
                .children(keys.prekeys.iter().map(|(id, _)| {
                    NodeBuilder::new("id")
                        .bytes(crate::prekeys::be3(*id))
                        .build()
                }))
                .build(),
        );
        children.push(NodeBuilder::new("hash").bytes(hash).build());
        Some(NodeBuilder::new("digest").children(children).build())
    }

    /// `<iq xmlns="usync" type="get">`: answers the `devices`, `lid` and `contact`
    /// protocols for the listed users (by `jid`, PN or LID, or by `<contact>` phone).
    pub fn usync(&self, query: &Node) -> Option<Node> {
        let usync = query.get_optional_child("usync")?;
        let protocols: Vec<String> = usync
            .get_optional_child("query")
            .and_then(|q| q.children())
            .map(|c| c.iter().map(|n| n.tag.to_string()).collect())
            .unwrap_or_default();
        let g = self.lock();
        let mut users = Vec::new();
        for user in usync
            .get_optional_child("list")
            .map(|l| l.get_children_by_tag("user").collect::<Vec<_>>())
            .unwrap_or_default()
        {
            let jid = user.attrs.get("jid").map(|v| v.to_string());
            let phone = user
                .get_optional_child("contact")
                .and_then(|c| match &c.content {
                    Some(wacore_binary::NodeContent::String(s)) => Some(s.to_string()),
                    Some(wacore_binary::NodeContent::Bytes(b)) => {
                        Some(String::from_utf8_lossy(b).into_owned())
                    }
                    _ => None,
                });
            let (user_part, is_lid) = match &jid {
                Some(j) => {
                    let (u, server) = j.split_once('@').unwrap_or((j, ""));
                    (
                        u.split(':').next().unwrap_or(u).to_string(),
                        server == "lid",
                    )
                }
                None => (
                    phone
                        .clone()
                        .unwrap_or_default()
                        .chars()
                        .filter(char::is_ascii_digit)
                        .collect(),
                    false,
                ),
            };
            let account = g.accounts.iter().find(|a| {
                if is_lid {
                    a.lid == user_part
                } else {
                    a.number == user_part
                }
            });
            let mut children = Vec::new();
            for protocol in &protocols {
                match (protocol.as_str(), account) {
                    ("devices", Some(a)) => {
                        // Companions carry their ADV key index (= their device id), and the
                        // signed key-index list names the valid ones.
                        let devices =
                            std::iter::once(0)
                                .chain(a.devices.iter().copied())
                                .map(|d| {
                                    let mut n =
                                        NodeBuilder::new("device").attr("id", d.to_string());
                                    if d != 0 {
                                        n = n.attr("key-index", d.to_string());
                                    }
                                    n.build()
                                });
                        let mut list =
                            vec![NodeBuilder::new("device-list").children(devices).build()];
                        if !a.devices.is_empty() {
                            list.push(
                                NodeBuilder::new("key-index-list")
                                    .attr("ts", now_secs().to_string())
                                    .bytes(signed_key_index_list(a))
                                    .build(),
                            );
                        }
                        children.push(NodeBuilder::new("devices").children(list).build());
                    }
                    ("devices", None) => children.push(
                        NodeBuilder::new("devices")
                            .children([NodeBuilder::new("device-list").build()])
                            .build(),
                    ),
                    ("status", Some(a)) => children.push(match &a.status_text {
                        Some((text, t)) => NodeBuilder::new("status")
                            .attr("t", t.to_string())
                            .string_content(text.clone())
                            .build(),
                        None => NodeBuilder::new("status").build(),
                    }),
                    ("lid", Some(a)) if !is_lid => children.push(
                        NodeBuilder::new("lid")
                            .attr("val", format!("{}@lid", a.lid))
                            .build(),
                    ),
                    ("contact", found) => {
                        let mut c = NodeBuilder::new("contact")
                            .attr("type", if found.is_some() { "in" } else { "out" });
                        if let Some(p) = &phone {
                            c = c.string_content(p.clone());
                        }
                        children.push(c.build());
                    }
                    _ => {}
                }
            }
            let mut u = NodeBuilder::new("user");
            let answer_jid = match (&jid, account) {
                (Some(j), _) => Some(j.clone()),
                (None, Some(a)) => Some(a.jid()),
                (None, None) => None,
            };
            if let Some(j) = answer_jid {
                u = u.attr("jid", j);
            }
            users.push(u.children(children).build());
        }
        let mut answer = NodeBuilder::new("usync");
        for key in ["sid", "mode", "context", "index", "last"] {
            if let Some(v) = usync.attrs.get(key) {
                answer = answer.attr(key, v.to_string());
            }
        }
        Some(
            answer
                .children([NodeBuilder::new("list").children(users).build()])
                .build(),
        )
    }

    /// `/control/disconnect`: closes every WhatsApp connection (or those of `jid`, an
    /// account or device JID). Returns how many.
    pub fn disconnect(&self, jid: Option<&str>) -> usize {
        let g = self.lock();
        let mut n = 0;
        for c in g.conns.values() {
            let matches = match jid {
                None => true,
                Some(j) => c.account.is_some_and(|a| {
                    let a = &g.accounts[a];
                    a.jid() == j || c.device.is_some_and(|d| a.device_jid(d) == j)
                }),
            };
            if matches && c.tx.try_send(Outgoing::Close).is_ok() {
                n += 1;
            }
        }
        n
    }

    /// `/control/refuse-connections`: WebSocket upgrades are refused for `secs`.
    pub fn refuse_connections(&self, secs: f64) {
        let until = std::time::Instant::now() + Duration::from_secs_f64(secs.max(0.0));
        self.lock().refuse_until = Some(until);
    }

    pub fn refusing(&self) -> bool {
        self.lock()
            .refuse_until
            .is_some_and(|t| std::time::Instant::now() < t)
    }

    /// Removes companion devices: `N:D@s.whatsapp.net` removes that device,
    /// `N@s.whatsapp.net` all of the account's companions. Their live connections get
    /// `<stream:error><conflict type="device_removed"/>` and are closed. Returns the
    /// removed device JIDs.
    pub fn unlink(&self, jid: &str) -> Result<Vec<String>, ControlError> {
        let mut g = self.lock();
        let (user, _) = jid
            .split_once('@')
            .ok_or_else(|| ControlError::new(400, "expected a JID"))?;
        let (number, device) = match user.split_once(':') {
            Some((n, d)) => (
                n,
                Some(
                    d.parse::<u32>()
                        .map_err(|_| ControlError::new(400, "bad device in JID"))?,
                ),
            ),
            None => (user, None),
        };
        let account = g
            .accounts
            .iter()
            .position(|a| a.number == number)
            .ok_or_else(|| ControlError::new(404, "no such account"))?;
        let removed: Vec<u32> = match device {
            Some(0) => {
                return Err(ControlError::new(
                    400,
                    "the phone (device 0) cannot be unlinked",
                ));
            }
            Some(d) if g.accounts[account].devices.contains(&d) => vec![d],
            Some(_) => return Err(ControlError::new(404, "no such device")),
            None => g.accounts[account].devices.clone(),
        };
        Ok(Self::remove_devices(&mut g, account, &removed))
    }

    fn remove_devices(g: &mut Inner, account: usize, removed: &[u32]) -> Vec<String> {
        let a = &mut g.accounts[account];
        a.devices.retain(|d| !removed.contains(d));
        for d in removed {
            a.keys.remove(d);
        }
        let jids = removed.iter().map(|d| a.device_jid(*d)).collect();
        for c in g.conns.values() {
            if c.account == Some(account) && c.device.is_some_and(|d| removed.contains(&d)) {
                let conflict = NodeBuilder::new("stream:error")
                    .children([NodeBuilder::new("conflict")
                        .attr("type", "device_removed")
                        .build()])
                    .build();
                let _ = c.tx.try_send(Outgoing::Node(conflict));
                let _ = c.tx.try_send(Outgoing::Close);
            }
        }
        jids
    }

    /// A logged-in companion's `<remove-companion-device jid=…>` (its logout). Only its own
    /// account's companions can be removed. Returns false when refused.
    pub fn remove_companion(&self, conn: u64, jid: &str) -> bool {
        let mut g = self.lock();
        let Some((account, _)) = Self::logged_in(&g, conn) else {
            return false;
        };
        let a = &g.accounts[account];
        let Some(device) = a.devices.iter().copied().find(|d| {
            let dj = a.device_jid(*d);
            dj == jid || a.device_lid(*d) == jid
        }) else {
            return false;
        };
        // The requester closes its own socket; mark its connection so no conflict is sent
        // before its result.
        if let Some(c) = g.conns.get_mut(&conn) {
            c.phase = Phase::Handshake;
            c.device = None;
        }
        Self::remove_devices(&mut g, account, &[device]);
        true
    }

    /// `w:sync:app:state`. A `<collection>` carrying a `<patch>` is an upload: the patch is
    /// stored (opaque) as the collection's next version and the account's other logged-in
    /// devices get a `server_sync` notification. Any other `<collection version=V>` is a
    /// fetch: the stored patches newer than V, at the collection's current version. A
    /// first sync (version 0) of a `critical_block` with nothing stored gets one patch
    /// (version 1) setting the account's push name (`setting_pushName`), encrypted with
    /// the shared app-state key.
    pub fn app_state_sync(&self, conn: u64, node: &Node) -> Node {
        let mut g = self.lock();
        let who = Self::logged_in(&g, conn);
        let requested: Vec<Node> = node
            .get_optional_child("sync")
            .map(|s| s.get_children_by_tag("collection").cloned().collect())
            .unwrap_or_default();
        let mut changed: Vec<(String, usize)> = Vec::new();
        let mut collections = Vec::new();
        for c in &requested {
            let name = c
                .attrs
                .get("name")
                .map(|v| v.to_string())
                .unwrap_or_default();
            let version: usize = c
                .attrs
                .get("version")
                .and_then(|v| v.to_string().parse().ok())
                .unwrap_or(0);
            let out = NodeBuilder::new("collection").attr("name", name.clone());
            let Some((a, _)) = who else {
                collections.push(out.attr("version", version.to_string()).build());
                continue;
            };
            if let Some(patch) = node_bytes(c.get_optional_child("patch")) {
                let stored = g.accounts[a].app_state.entry(name.clone()).or_default();
                if version < stored.len() {
                    // A stale base: WhatsApp's 409, and the client fetches and rebuilds.
                    collections.push(
                        out.attr("type", "error")
                            .attr("version", stored.len().to_string())
                            .attr("has_more_patches", "true")
                            .children([NodeBuilder::new("error")
                                .attr("code", "409")
                                .attr("text", "conflict")
                                .build()])
                            .build(),
                    );
                    continue;
                }
                stored.push(patch);
                let current = stored.len();
                g.counters.app_state_patches += 1;
                changed.push((name.clone(), current));
                collections.push(out.attr("version", current.to_string()).build());
                continue;
            }
            // The first fetch of an empty `critical_block` stores the phone's push-name
            // patch as version 1, shared by every device of the account.
            let empty = g.accounts[a].app_state.get(&name).is_none_or(Vec::is_empty);
            if empty && name == "critical_block" {
                let patch = push_name_patch(&g.accounts[a], &name);
                g.accounts[a].app_state.insert(name.clone(), vec![patch]);
            }
            let account = &g.accounts[a];
            let stored = account
                .app_state
                .get(&name)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let current = stored.len().max(version);
            let newer: Vec<Node> = stored
                .iter()
                .enumerate()
                .skip(version)
                .map(|(i, p)| {
                    NodeBuilder::new("patch")
                        .bytes(with_patch_version(p, i as u64 + 1))
                        .build()
                })
                .collect();
            let out = out.attr("version", current.to_string());
            collections.push(if newer.is_empty() {
                out.build()
            } else {
                out.children([NodeBuilder::new("patches").children(newer).build()])
                    .build()
            });
        }
        if let Some((a, _)) = who
            && !changed.is_empty()
        {
            let targets: Vec<async_channel::Sender<Outgoing>> = g
                .conns
                .iter()
                .filter(|(id, c)| {
                    **id != conn && c.phase == Phase::LoggedIn && c.account == Some(a)
                })
                .map(|(_, c)| c.tx.clone())
                .collect();
            for tx in targets {
                let notification = Self::server_notification(&mut g, "server_sync", "ss")
                    .children(changed.iter().map(|(name, version)| {
                        NodeBuilder::new("collection")
                            .attr("name", name.clone())
                            .attr("version", version.to_string())
                            .build()
                    }))
                    .build();
                let _ = tx.try_send(Outgoing::Node(notification));
            }
        }
        NodeBuilder::new("sync").children(collections).build()
    }

    /// `GET /control/state`.
    pub fn snapshot(&self) -> Value {
        let g = self.lock();
        let accounts: Vec<Value> = g
            .accounts
            .iter()
            .map(|a| {
                let mut devices = vec![Value::String(a.jid())];
                devices.extend(a.devices.iter().map(|d| Value::String(a.device_jid(*d))));
                let prekeys: serde_json::Map<String, Value> = a
                    .keys
                    .iter()
                    .map(|(d, k)| (a.device_jid(*d), json!(k.prekeys.len())))
                    .collect();
                let app_state: serde_json::Map<String, Value> = a
                    .app_state
                    .iter()
                    .map(|(name, patches)| (name.clone(), json!(patches.len())))
                    .collect();
                json!({
                    "jid": a.jid(),
                    "number": a.number,
                    "lid": format!("{}@lid", a.lid),
                    "push_name": a.push_name,
                    "devices": devices,
                    "prekeys": prekeys,
                    "app_state": app_state,
                })
            })
            .collect();
        let mut conns: Vec<(&u64, &Conn)> = g.conns.iter().collect();
        conns.sort_by_key(|(id, _)| **id);
        let connections: Vec<Value> = conns
            .into_iter()
            .map(|(id, c)| {
                let account = c.account.map(|i| &g.accounts[i]);
                let jid = match (account, c.device) {
                    (Some(a), Some(d)) => Value::String(a.device_jid(d)),
                    _ => Value::Null,
                };
                let phase = match c.phase {
                    Phase::Handshake => "handshake",
                    Phase::Pairing => "pairing",
                    Phase::LoggedIn => "logged_in",
                };
                json!({
                    "id": id,
                    "phase": phase,
                    "account": account.map(|a| a.jid()),
                    "jid": jid,
                })
            })
            .collect();
        json!({
            "accounts": accounts,
            "connections": connections,
            "counters": {
                "connections": g.counters.connections,
                "pairing_attempts": g.counters.pairing_attempts,
                "pair_code_attempts": g.counters.pair_code_attempts,
                "logins": g.counters.logins,
                "scans": g.counters.scans,
                "app_state_patches": g.counters.app_state_patches,
            },
        })
    }
}

/// A signed prekey for a phone identity: (id 1, public key, XEdDSA signature over the
/// serialized public key).
fn phone_signed_prekey(identity: &KeyPair) -> (u32, Vec<u8>, Vec<u8>) {
    let spk = KeyPair::generate(&mut rng());
    let signature = identity
        .private_key
        .calculate_signature(&spk.public_key.serialize(), &mut rng())
        .map(|s| s.to_vec())
        .unwrap_or_default();
    (1, spk.public_key.public_key_bytes().to_vec(), signature)
}

/// The push name the phone stores for an account: its display name, or `User <number>`.
pub fn account_push_name(a: &Account) -> String {
    if a.display_name.is_empty() {
        format!("User {}", a.number)
    } else {
        a.display_name.clone()
    }
}

/// A `SyncdPatch` (version 1 over an empty collection) with one SET of
/// `["setting_pushName"]`, encrypted and MACed with the account's app-state key.
fn push_name_patch(a: &Account, collection: &str) -> Vec<u8> {
    use wacore::appstate::hash::{HashState, generate_patch_mac};
    let keys = wacore::appstate::expand_app_state_keys(&a.app_key.key_data);
    let value = wa::SyncActionValue {
        timestamp: Some(now_secs() as i64 * 1000),
        push_name_setting: buffa::MessageField::some(wa::sync_action_value::PushNameSetting {
            name: Some(account_push_name(a)),
        }),
        ..Default::default()
    };
    let iv: [u8; 16] = random_bytes(16).try_into().unwrap_or([7; 16]);
    let (mutation, _value_mac) = wacore::appstate::encode_record(
        wa::syncd_mutation::SyncdOperation::SET,
        br#"["setting_pushName"]"#,
        &value,
        &keys,
        &a.app_key.key_id,
        &iv,
        1,
    );
    let mutations = vec![mutation];
    let mut hash = HashState::default();
    let _ = hash.update_hash(&mutations, |_, _| Ok(None));
    hash.version = 1;
    let mut patch = wa::SyncdPatch {
        version: buffa::MessageField::some(wa::SyncdVersion { version: Some(1) }),
        snapshot_mac: Some(hash.generate_snapshot_mac(collection, &keys.snapshot_mac)),
        key_id: buffa::MessageField::some(wa::KeyId {
            id: Some(a.app_key.key_id.clone()),
        }),
        mutations,
        ..Default::default()
    };
    patch.patch_mac = Some(generate_patch_mac(&patch, collection, &keys.patch_mac, 1));
    patch.encode_to_vec()
}

/// A stored patch as served: the client uploads it without a version (the server assigns
/// one), so the `SyncdPatch.version` field is set; nothing else is read or changed.
fn with_patch_version(patch: &[u8], version: u64) -> Vec<u8> {
    match wa::SyncdPatch::decode_from_slice(patch) {
        Ok(mut p) => {
            p.version = buffa::MessageField::some(wa::SyncdVersion {
                version: Some(version),
            });
            p.encode_to_vec()
        }
        Err(_) => patch.to_vec(),
    }
}

async fn wait_done(
    done_rx: async_channel::Receiver<Result<String, String>>,
) -> Result<String, ControlError> {
    let timeout = async {
        smol::Timer::after(PAIR_SIGN_TIMEOUT).await;
        Err(ControlError::new(
            502,
            "the companion did not complete the link",
        ))
    };
    let answer = async {
        match done_rx.recv().await {
            Ok(Ok(jid)) => Ok(jid),
            Ok(Err(e)) => Err(ControlError::new(502, e)),
            Err(_) => Err(ControlError::new(502, "the companion disconnected")),
        }
    };
    futures_lite::future::or(answer, timeout).await
}

fn node_bytes(node: Option<&Node>) -> Option<Vec<u8>> {
    match &node?.content {
        Some(wacore_binary::NodeContent::Bytes(b)) => Some(b.clone()),
        _ => None,
    }
}

/// The account's ADV raw id: one per account, shared by its device identities and its
/// key-index list.
pub fn account_raw_id(a: &Account) -> u32 {
    (a.lid.parse::<u64>().unwrap_or(0) % 1_000_000_007) as u32
}

/// An `ADVSignedKeyIndexList` naming the account's companions (key index = device id),
/// signed by the phone's identity key over `[6,2] ‖ details`.
fn signed_key_index_list(a: &Account) -> Vec<u8> {
    let details = wa::ADVKeyIndexList {
        raw_id: Some(account_raw_id(a)),
        timestamp: Some(now_secs()),
        current_index: Some(a.next_device.saturating_sub(1)),
        valid_indexes: a.devices.clone(),
        ..Default::default()
    }
    .encode_to_vec();
    let msg = [&[6u8, 2][..], &details].concat();
    let signature = a
        .phone_identity
        .private_key
        .calculate_signature(&msg, &mut rng())
        .map(|s| s.to_vec())
        .unwrap_or_default();
    wa::ADVSignedKeyIndexList {
        details: Some(details),
        account_signature: Some(signature),
        ..Default::default()
    }
    .encode_to_vec()
}

/// The phone's side of linking: an `ADVSignedDeviceIdentityHMAC` for `device`, with the
/// account signature by the phone's identity key over the companion's identity key, and
/// the HMAC keyed with the adv secret from the QR.
fn sign_device_identity(
    account: &Account,
    device: u32,
    companion_identity: &[u8; 32],
    adv_secret: &[u8],
) -> Result<Vec<u8>, String> {
    let details = wa::ADVDeviceIdentity {
        raw_id: Some(account_raw_id(account)),
        timestamp: Some(now_secs()),
        key_index: Some(device),
        ..Default::default()
    }
    .encode_to_vec();
    let msg = [ADV_PREFIX_ACCOUNT_SIGNATURE, &details, companion_identity].concat();
    let signature = account
        .phone_identity
        .private_key
        .calculate_signature(&msg, &mut rng())
        .map_err(|e| format!("account signature: {e}"))?;
    let signed = wa::ADVSignedDeviceIdentity {
        details: Some(details),
        account_signature_key: Some(
            account
                .phone_identity
                .public_key
                .public_key_bytes()
                .to_vec(),
        ),
        account_signature: Some(signature.to_vec()),
        ..Default::default()
    }
    .encode_to_vec();
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(adv_secret)
        .map_err(|e| format!("adv secret: {e}"))?;
    mac.update(&signed);
    let hmac = mac.finalize().into_bytes().to_vec();
    Ok(wa::ADVSignedDeviceIdentityHMAC {
        details: Some(signed),
        hmac: Some(hmac),
        ..Default::default()
    }
    .encode_to_vec())
}

/// Checks the companion's `pair-device-sign`: its device signature over our details, its
/// identity key and the phone's account key.
fn verify_pair_device_sign(account: &Account, wait: &PairWait, node: &Node) -> Result<(), String> {
    let identity = node
        .get_optional_child_by_tag(&["pair-device-sign", "device-identity"])
        .ok_or("pair-device-sign without device-identity")?;
    let bytes = match &identity.content {
        Some(wacore_binary::NodeContent::Bytes(b)) => b.as_slice(),
        _ => return Err("device-identity without bytes".into()),
    };
    let signed = wa::ADVSignedDeviceIdentity::decode_from_slice(bytes)
        .map_err(|e| format!("device-identity: {e}"))?;
    let details = signed.details.as_deref().unwrap_or_default();
    let account_key = account.phone_identity.public_key.public_key_bytes();
    let msg = [
        ADV_PREFIX_DEVICE_SIGNATURE,
        details,
        wait.companion_identity.as_slice(),
        account_key,
    ]
    .concat();
    let key = PublicKey::from_djb_public_key_bytes(&wait.companion_identity)
        .map_err(|e| format!("companion identity: {e}"))?;
    let sig = signed.device_signature.as_deref().unwrap_or_default();
    if key.verify_signature(&msg, sig) {
        Ok(())
    } else {
        Err("bad device signature in pair-device-sign".into())
    }
}

// --- Accessors for peers, history sync, the CDN and profile pictures (h2) ---

impl State {
    /// The phones' Signal stores, by account index (history sync sends from device 0).
    pub(crate) fn phone_stores(&self) -> &smol::lock::Mutex<HashMap<usize, PhoneStore>> {
        &self.phones
    }

    /// The `<media_conn>` answer child, once the CDN runs.
    pub fn media_conn(&self) -> Option<Node> {
        self.cdn.get().map(|c| c.media_conn_node())
    }

    /// The account for a push name (peers), created when missing. With `number`, the
    /// account must have that number, or gets it when it is new (409 when the push name
    /// has another number or the number belongs to another push name).
    pub fn ensure_account(
        &self,
        push_name: &str,
        number: Option<&str>,
    ) -> Result<usize, ControlError> {
        let mut g = self.lock();
        let digits: Option<String> =
            number.map(|n| n.chars().filter(char::is_ascii_digit).collect());
        if digits.as_deref() == Some("") {
            return Err(ControlError::new(400, "the number has no digits"));
        }
        if let Some(i) = g.accounts.iter().position(|a| a.push_name == push_name) {
            if let Some(d) = &digits
                && g.accounts[i].number != *d
            {
                return Err(ControlError::new(
                    409,
                    format!("{push_name:?} already has number {}", g.accounts[i].number),
                ));
            }
            return Ok(i);
        }
        if let Some(d) = &digits
            && g.accounts.iter().any(|a| a.number == *d)
        {
            return Err(ControlError::new(
                409,
                format!("number {d} belongs to another push name"),
            ));
        }
        let i = Self::new_account(&mut g, push_name);
        if let Some(d) = digits {
            g.accounts[i].number = d;
        }
        Ok(i)
    }

    /// `POST /control/profile-pic`: the account's picture (full image and preview, the
    /// same bytes), under a new id; `w:profile:picture` answers it. Returns the id.
    pub fn set_profile_picture(&self, number: &str, bytes: Vec<u8>) -> Result<u64, ControlError> {
        let digits: String = number.chars().filter(char::is_ascii_digit).collect();
        let mut g = self.lock();
        let a = g
            .accounts
            .iter_mut()
            .find(|a| a.number == digits)
            .ok_or_else(|| ControlError::new(404, "no such account"))?;
        let id = a
            .picture
            .as_ref()
            .map_or(0, |(id, _, _)| *id)
            .max(now_secs())
            + 1;
        a.picture = Some((id, bytes.clone(), bytes));
        Ok(id)
    }
}

pub type SharedState = Arc<State>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_name_prefixes() {
        assert_eq!(parse_push_name("alice"), ("alice".into(), Flags::default()));
        let (name, flags) = parse_push_name("restricted:bob");
        assert_eq!(name, "bob");
        assert!(flags.restricted);
        let (name, flags) = parse_push_name("scenario:tc_enabled=1,nct_send_ab=1:carol");
        assert_eq!(name, "carol");
        assert!(!flags.restricted);
        assert_eq!(
            flags.scenario,
            vec![
                ("tc_enabled".into(), "1".into()),
                ("nct_send_ab".into(), "1".into())
            ]
        );
        let (_, flags) = parse_push_name("scenario:restricted,cs_enabled=0:dave");
        assert!(flags.restricted);
    }

    #[test]
    fn same_push_name_same_number() {
        let state = State::default();
        let (tx, _rx) = async_channel::unbounded();
        let c1 = state.open_connection(tx.clone());
        let c2 = state.open_connection(tx.clone());
        let c3 = state.open_connection(tx);
        state.begin_pairing(c1, "alice");
        state.begin_pairing(c2, "alice");
        state.begin_pairing(c3, "bob");
        let snap = state.snapshot();
        let accounts = snap["accounts"].as_array().unwrap();
        assert_eq!(accounts.len(), 2);
        assert!(
            accounts[0]["number"]
                .as_str()
                .unwrap()
                .bytes()
                .all(|b| b.is_ascii_digit())
        );
        assert_ne!(accounts[0]["number"], accounts[1]["number"]);
        assert_eq!(snap["counters"]["pairing_attempts"], 3);
    }
}
