//! The engine facade: the one door from the app into WhatsApp.
//!
//! Owns: starting the whatsapp-rust `Bot` on our smol runtime with the smol/rustls transport, the
//! ureq HTTP client and the redb backend; a supervisor task that rebuilds the client when its run
//! loop ends (after a logout a fresh device is built over the cleared keys); the link state as
//! plain data ([`EngineState`], [`Snapshot`]): the current QR payload, the pair code, the own JID
//! and the last error; linking by phone number, logout and a full app-state resync.
//!
//! Incoming messages are acknowledged to WhatsApp only after they are committed: the engine
//! installs an inbound durability hook ([`InboxHook`]) that commits each decrypted batch to the
//! backend's `wa_inbox` table before the client sends the acks (whatsapp-rust buffers the batch in
//! `wa_pending_inbound` first, so a crash in between replays it on the next connect).
//!
//! The announced WhatsApp Web version is, in this order: `WA_WEB_VERSION`, the version cached in
//! the store's own `meta` table under [`WEB_VERSION_KEY`] (which logout does not clear), else
//! [`DEFAULT_VERSION`]. Once connected to WhatsApp Web, the engine fetches the current version
//! from `sw.js` in the background and caches it for the next client; linking never waits on it.
//!
//! Events: [`Engine::subscribe`] hands out one ordered stream of [`EngineEvent`]s. Every event
//! the client emits is forwarded, from the synchronous part of its event handler, in the order
//! the client emits them, together with a `state_changed` event each time the state name changes
//! (sent under the state lock, so those follow the order of the state transitions). The channels
//! are unbounded: the handler only ever `try_send`s, so it never blocks or waits on a slow
//! consumer, and no event (a history sync, a receipt) is lost while the consumer catches up; the
//! price is memory if a subscriber stops draining, so a subscriber must keep reading or drop its
//! receiver. Each subscriber gets every event from the moment it subscribed; a dropped receiver
//! is forgotten on the next send, and with no subscriber an event costs one lock and nothing is
//! built. [`EngineEvent`] is plain data; the raw whatsapp-rust event rides along in a
//! crate-private field for ingest inside `src/wa`.
//!
//! Must not: block its caller (starting only spawns; a failed connection is retried in the
//! background by the client's own run loop, and a client that cannot be built is retried by the
//! supervisor with a backoff); hand whatsapp-rust types to the rest of the app.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use whatsapp_rust::bot::Bot;
use whatsapp_rust::pair_code::PairCodeOptions;
use whatsapp_rust::sync_task::MajorSyncTask;
use whatsapp_rust::types::events::{Event, InboundMessage};
use whatsapp_rust::wacore::appstate::patch_decode::WAPatchName;
use whatsapp_rust::{Client, InboundDurabilityHook};

use super::backend::{InboxRow, RedbBackend};
use super::http_client::{HttpClientConfig, WaHttpClient};
use super::runtime::SmolRuntime;
use super::transport::{TransportConfig, WaTransportFactory};
use crate::store::{Context, Store};

pub use super::send::{Quote, Sent};

/// The version announced when neither `WA_WEB_VERSION` nor a cached one exists, so linking never
/// waits on the `sw.js` fetch.
pub const DEFAULT_VERSION: (u32, u32, u32) = (2, 3000, 0);
/// The key in the store's own `meta` table that caches the last known good web version.
pub const WEB_VERSION_KEY: &str = "wa_web_version";
/// The app-state collections, in the order a full resync asks for them.
const COLLECTIONS: [WAPatchName; 5] = [
    WAPatchName::CriticalBlock,
    WAPatchName::CriticalUnblockLow,
    WAPatchName::RegularHigh,
    WAPatchName::Regular,
    WAPatchName::RegularLow,
];
/// How long a pair code is valid (WhatsApp's own figure, about three minutes).
const PAIR_CODE_VALIDITY: Duration = Duration::from_secs(180);
/// How long `logout` waits for the keys to be cleared.
const LOGOUT_WAIT: Duration = Duration::from_secs(20);

/// How the engine reaches WhatsApp.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The WebSocket URL (`WA_WS_URL`, test-network builds only); `None` is WhatsApp Web.
    pub ws_url: Option<String>,
    /// `WA_PROXY`.
    pub proxy: Option<String>,
    /// `WA_TEST_CA` (test-network builds only).
    pub extra_ca: Option<std::path::PathBuf>,
    /// `WA_WEB_VERSION`; `None` announces the cached version, else [`DEFAULT_VERSION`].
    pub version: Option<(u32, u32, u32)>,
    /// `WA_PUSH_NAME`.
    pub push_name: String,
}

/// Where the link to WhatsApp stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineState {
    /// No account linked and no code to show yet.
    Unlinked,
    /// A QR code is ready to scan.
    WaitingForQr,
    /// A pair code was issued; waiting for the phone to confirm it.
    Pairing,
    /// Linked; connecting or reconnecting.
    Connecting,
    Connected,
    /// WhatsApp ended the link (from the phone, or the account was removed); keys are cleared.
    LoggedOut,
    /// WhatsApp banned the account (temporarily or for good).
    Banned,
}

impl EngineState {
    /// The name used in `state: <name>` and `/api/status`.
    pub fn name(self) -> &'static str {
        match self {
            EngineState::Unlinked => "unlinked",
            EngineState::WaitingForQr => "waiting_for_qr",
            EngineState::Pairing => "pairing",
            EngineState::Connecting => "connecting",
            EngineState::Connected => "connected",
            EngineState::LoggedOut => "logged_out",
            EngineState::Banned => "banned",
        }
    }
}

/// One event on the [`Engine::subscribe`] stream.
#[derive(Debug, Clone)]
pub struct EngineEvent {
    /// What happened: `state_changed`, or the client event's kind (`pairing_qr`, `pairing_code`,
    /// `pair_success`, `pair_error`, `connected`, `disconnected`, `logged_out`, `messages`,
    /// `receipt`, `history_sync`, `offline_sync_completed`, `temporary_ban`, `connect_failure`,
    /// `stream_replaced`, `client_outdated`, `other`).
    pub kind: &'static str,
    /// When the engine saw it, in epoch milliseconds.
    pub at_ms: i64,
    /// The new state, for `state_changed`.
    pub state: Option<EngineState>,
    /// The client's own event (shared, not copied), for ingest inside `src/wa`; `None` for
    /// `state_changed`.
    #[allow(dead_code, reason = "read by ingest (src/wa/ingest.rs), a later issue")]
    pub(crate) raw: Option<Arc<Event>>,
}

/// The [`EngineEvent::kind`] name of a client event.
fn event_kind(ev: &Event) -> &'static str {
    match ev {
        Event::PairingQrCode(_) => "pairing_qr",
        Event::PairingCode(_) => "pairing_code",
        Event::PairSuccess(_) => "pair_success",
        Event::PairError(_) => "pair_error",
        Event::Connected(_) => "connected",
        Event::Disconnected(_) => "disconnected",
        Event::LoggedOut(_) => "logged_out",
        Event::Messages(_) => "messages",
        Event::Receipt(_) => "receipt",
        Event::HistorySync(_) => "history_sync",
        Event::OfflineSyncCompleted(_) => "offline_sync_completed",
        Event::TemporaryBan(_) => "temporary_ban",
        Event::ConnectFailure(_) => "connect_failure",
        Event::StreamReplaced(_) => "stream_replaced",
        Event::ClientOutdated(_) => "client_outdated",
        _ => "other",
    }
}

/// A pair code to type on the phone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairCode {
    pub code: String,
    /// Epoch milliseconds.
    pub expires_at: i64,
}

/// The engine's state as plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub state: EngineState,
    /// The raw payload of the current QR code.
    pub qr: Option<String>,
    pub pair_code: Option<PairCode>,
    /// The linked device's JID (`number:device@s.whatsapp.net`), once known.
    pub own_jid: Option<String>,
    pub last_error: Option<String>,
    /// Why the connection last ended (a drop, a logout, a refusal), if it ever did.
    pub last_disconnect_reason: Option<String>,
    /// When, in epoch milliseconds.
    pub last_disconnect_at: Option<i64>,
}

impl Snapshot {
    /// The account's phone number (the user part of the own JID, without the device).
    pub fn own_number(&self) -> Option<String> {
        let jid = self.own_jid.as_deref()?;
        let user = jid.split('@').next()?;
        Some(user.split(':').next().unwrap_or(user).to_string())
    }
}

/// Who ended the link, as seen by the supervisor when the client's run loop ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// Our `logout`.
    Local,
    /// WhatsApp's side (unlink from the phone, account removed).
    Remote,
}

struct Shared {
    snap: Snapshot,
    ended: Option<Ended>,
    /// Counts the times the keys were cleared after a logout.
    clears: u64,
}

struct Inner {
    config: EngineConfig,
    store: Store,
    backend: Arc<RedbBackend>,
    /// Set once the background `sw.js` version refresh has been started.
    version_refresh: AtomicBool,
    shared: Mutex<Shared>,
    client: Mutex<Option<Arc<Client>>>,
    /// Wakes a supervisor that waits after a remote logout (someone asked to link again).
    relink_tx: async_channel::Sender<()>,
    relink_rx: async_channel::Receiver<()>,
    /// The [`Engine::subscribe`] streams (unbounded; see the module doc).
    subscribers: Mutex<Vec<async_channel::Sender<EngineEvent>>>,
    /// Outgoing message ids waiting for their server ack (`send.rs`).
    acks: super::send::AckWaiters,
    /// Live messages the durability hook committed to `wa_inbox` alone (`ingest.rs`).
    hook_misses: Arc<super::ingest::HookMisses>,
}

/// The engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Engine {
    /// Checks the configuration (URL, proxy, CA file) and starts the supervisor in the
    /// background. Never waits for WhatsApp.
    pub fn start(store: Store, config: EngineConfig) -> Result<Engine, String> {
        let engine = Engine::new(store, config)?;
        // Ingest subscribes before the client exists, so it sees every event.
        super::ingest::start(&engine);
        let supervisor = engine.clone();
        crate::runtime::spawn(async move { supervisor.supervise().await }).detach();
        Ok(engine)
    }

    /// Checks the configuration and builds the engine without starting anything.
    fn new(store: Store, config: EngineConfig) -> Result<Engine, String> {
        // Fail early on a bad URL, proxy or CA file; the supervisor rebuilds these per client.
        transport_factory(&config)?;
        http_client(&config)?;
        let (relink_tx, relink_rx) = async_channel::bounded(1);
        let engine = Engine {
            inner: Arc::new(Inner {
                config,
                backend: Arc::new(RedbBackend::new(store.clone())),
                store,
                version_refresh: AtomicBool::new(false),
                shared: Mutex::new(Shared {
                    snap: Snapshot {
                        state: EngineState::Unlinked,
                        qr: None,
                        pair_code: None,
                        own_jid: None,
                        last_error: None,
                        last_disconnect_reason: None,
                        last_disconnect_at: None,
                    },
                    ended: None,
                    clears: 0,
                }),
                client: Mutex::new(None),
                relink_tx,
                relink_rx,
                subscribers: Mutex::new(Vec::new()),
                acks: super::send::AckWaiters::default(),
                hook_misses: Arc::new(super::ingest::HookMisses::default()),
            }),
        };
        Ok(engine)
    }

    /// One ordered stream of everything the engine sees from now on: each client event in the
    /// order the client emits it, and a `state_changed` event on each state change. Unbounded
    /// (the client's handler never waits on it); keep draining it, or drop it to unsubscribe.
    pub fn subscribe(&self) -> async_channel::Receiver<EngineEvent> {
        let (tx, rx) = async_channel::unbounded();
        lock(&self.inner.subscribers).push(tx);
        rx
    }

    /// Sends `build()` to every subscriber without waiting; forgets closed ones. Builds nothing
    /// when there is no subscriber.
    fn emit(&self, build: impl FnOnce() -> EngineEvent) {
        let mut subs = lock(&self.inner.subscribers);
        if subs.is_empty() {
            return;
        }
        let event = build();
        subs.retain(|tx| tx.try_send(event.clone()).is_ok());
    }

    /// Forwards a client event to the subscribers.
    fn forward(&self, ev: &Arc<Event>) {
        self.emit(|| EngineEvent {
            kind: event_kind(ev),
            at_ms: now_ms(),
            state: None,
            raw: Some(ev.clone()),
        });
    }

    /// The app's store (for the send and ingest code in `src/wa`).
    pub(super) fn store(&self) -> &Store {
        &self.inner.store
    }

    /// whatsapp-rust's storage backend (ingest reads `wa_inbox` through it).
    pub(super) fn backend(&self) -> &RedbBackend {
        &self.inner.backend
    }

    /// Live messages whose app-table write the durability hook could not make.
    pub(super) fn hook_misses(&self) -> &super::ingest::HookMisses {
        &self.inner.hook_misses
    }

    /// The outgoing messages waiting for their server ack.
    pub(super) fn ack_waiters(&self) -> &super::send::AckWaiters {
        &self.inner.acks
    }

    /// The current state.
    pub fn snapshot(&self) -> Snapshot {
        let mut snap = lock(&self.inner.shared).snap.clone();
        if snap
            .pair_code
            .as_ref()
            .is_some_and(|p| p.expires_at <= now_ms())
        {
            snap.pair_code = None;
        }
        snap
    }

    /// How many chats, messages, contacts, groups and media the store holds (for
    /// `/api/status`).
    pub async fn counts(&self) -> Result<crate::store::queries::Counts, String> {
        self.inner
            .store
            .read(crate::store::queries::counts)
            .await
            .map_err(|e| format!("counting the store: {e}"))
    }

    /// Drops the current connection; the supervisor then builds a fresh client over the same
    /// redb state (keys, history), as it does after any stop. False when no client is running.
    pub async fn restart(&self) -> bool {
        let client = lock(&self.inner.client).clone();
        match client {
            Some(c) => {
                log::info!("whatsapp: restart requested; reconnecting with a fresh client");
                c.disconnect().await;
                true
            }
            None => false,
        }
    }

    /// Asks a supervisor that stopped after a remote logout to build a new device (a new QR).
    pub fn relink(&self) {
        let _ = self.inner.relink_tx.try_send(());
    }

    /// Starts linking by phone number; returns the code to type on the phone.
    pub async fn request_pairing_code(&self, phone: &str) -> Result<PairCode, String> {
        let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
        if digits.len() < 7 || digits.len() > 15 {
            return Err(format!(
                "{phone:?} is not a phone number in international form; give the country code and \
                 number, e.g. 447700900123"
            ));
        }
        let snap = self.snapshot();
        match snap.state {
            EngineState::Connected | EngineState::Connecting => {
                return Err(format!(
                    "an account is already linked ({}); call logout first to link another",
                    snap.own_number().unwrap_or_else(|| "number unknown".into())
                ));
            }
            EngineState::LoggedOut => {
                self.relink();
                return Err(
                    "the previous link was ended by WhatsApp; a new device is being \
                     prepared, call request_pairing_code again in a few seconds"
                        .into(),
                );
            }
            EngineState::Banned => {
                return Err("WhatsApp has banned this account; linking is not possible".into());
            }
            _ => {}
        }
        let client = lock(&self.inner.client)
            .clone()
            .ok_or("the WhatsApp connection is still starting; try again in a few seconds")?;
        let options = PairCodeOptions {
            phone_number: digits,
            ..PairCodeOptions::default()
        };
        let code = client
            .pair_with_code(options)
            .await
            .map_err(|e| format!("WhatsApp did not issue a pair code: {e}"))?;
        let pair = PairCode {
            code,
            expires_at: now_ms() + PAIR_CODE_VALIDITY.as_millis() as i64,
        };
        let shown = pair.clone();
        self.update(|s| {
            s.snap.pair_code = Some(shown);
            s.snap.state = EngineState::Pairing;
        });
        Ok(pair)
    }

    /// The live client, or the not-connected error text: "WhatsApp is not connected (state:
    /// <name>): <next step>". Every tool that needs a live connection goes through this.
    pub fn connected_client(&self) -> Result<Arc<Client>, String> {
        let snap = self.snapshot();
        let client = lock(&self.inner.client).clone();
        match client {
            Some(c) if snap.state == EngineState::Connected => Ok(c),
            _ => Err(not_connected(&snap)),
        }
    }

    /// Asks WhatsApp for every app-state collection again in full (snapshots, not patches), in
    /// the background. Errors with the not-connected text when there is no live connection.
    pub fn force_resync(&self) -> Result<(), String> {
        let client = self.connected_client()?;
        crate::runtime::spawn(async move {
            for name in COLLECTIONS {
                client
                    .process_sync_task(MajorSyncTask::AppStateSync {
                        name,
                        full_sync: true,
                    })
                    .await;
            }
            log::info!("whatsapp: full app-state resync requested for every collection");
        })
        .detach();
        Ok(())
    }

    /// Unlinks the device on WhatsApp's side, then clears the keys (history stays). Returns
    /// false when no account was linked.
    pub async fn logout(&self) -> Result<bool, String> {
        let client = lock(&self.inner.client).clone();
        let linked = client.as_ref().is_some_and(|c| c.pn().is_some());
        let Some(client) = client.filter(|_| linked) else {
            return Ok(false);
        };
        let clears = {
            let mut shared = lock(&self.inner.shared);
            shared.ended = Some(Ended::Local);
            shared.clears
        };
        client.logout().await;
        let deadline = std::time::Instant::now() + LOGOUT_WAIT;
        while lock(&self.inner.shared).clears == clears {
            if std::time::Instant::now() >= deadline {
                return Err(
                    "the device was unlinked but clearing the local keys did not finish \
                     in time; check the server log"
                        .into(),
                );
            }
            async_io::Timer::after(Duration::from_millis(50)).await;
        }
        Ok(true)
    }

    /// Changes the shared state; emits `state_changed` (under the state lock, so in transition
    /// order) when the state name changed.
    fn update(&self, f: impl FnOnce(&mut Shared)) {
        let mut shared = lock(&self.inner.shared);
        let before = shared.snap.state;
        f(&mut shared);
        let after = shared.snap.state;
        if after != before {
            self.emit(|| EngineEvent {
                kind: "state_changed",
                at_ms: now_ms(),
                state: Some(after),
                raw: None,
            });
        }
    }

    /// Builds, runs and rebuilds clients forever.
    async fn supervise(self) {
        let mut backoff = Duration::from_secs(1);
        loop {
            let bot = match self.build_bot().await {
                Ok(bot) => bot,
                Err(e) => {
                    log::warn!("whatsapp: cannot start the client: {e}; retrying in {backoff:?}");
                    self.update(|s| s.snap.last_error = Some(e));
                    async_io::Timer::after(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                    continue;
                }
            };
            let handle = bot.spawn();
            let client = handle.client();
            let own = client.pn().map(|j| j.to_string());
            self.update(|s| {
                s.ended = None;
                s.snap.qr = None;
                s.snap.pair_code = None;
                s.snap.state = if own.is_some() {
                    EngineState::Connecting
                } else {
                    EngineState::Unlinked
                };
                s.snap.own_jid = own;
            });
            *lock(&self.inner.client) = Some(client);
            handle.await;
            *lock(&self.inner.client) = None;
            let ended = lock(&self.inner.shared).ended.take();
            match ended {
                Some(who) => {
                    log::info!("whatsapp: logged out ({who:?}); clearing the keys");
                    if let Err(e) = self.inner.backend.clear().await {
                        log::error!("whatsapp: clearing the keys failed: {e}");
                        self.update(|s| s.snap.last_error = Some(format!("clearing keys: {e}")));
                    }
                    self.update(|s| {
                        s.clears += 1;
                        s.snap.own_jid = None;
                        s.snap.qr = None;
                        s.snap.pair_code = None;
                        s.snap.state = match who {
                            Ended::Local => EngineState::Unlinked,
                            Ended::Remote => EngineState::LoggedOut,
                        };
                    });
                    backoff = Duration::from_secs(1);
                    if who == Ended::Remote {
                        // No new pairing until someone asks for it.
                        let _ = self.inner.relink_rx.recv().await;
                    }
                }
                None => {
                    log::info!("whatsapp: the client stopped; restarting in {backoff:?}");
                    async_io::Timer::after(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                }
            }
        }
    }

    async fn build_bot(&self) -> Result<Bot, String> {
        let config = &self.inner.config;
        let events = self.clone();
        Bot::builder()
            .with_backend_arc(self.inner.backend.clone())
            .with_transport_factory(transport_factory(config)?)
            .with_http_client(http_client(config)?)
            .with_runtime(SmolRuntime)
            .with_version(choose_version(
                config.version,
                cached_version(&self.inner.store).await,
            ))
            .with_inbound_durability_hook(InboxHook {
                backend: self.inner.backend.clone(),
                misses: self.inner.hook_misses.clone(),
            })
            .with_push_name(config.push_name.clone())
            .on_event(move |ev, client| {
                events.forward(&ev);
                events.on_event(&ev, &client);
                async {}
            })
            .build()
            .await
            .map_err(|e| format!("building the WhatsApp client: {e}"))
    }

    fn on_event(&self, ev: &Event, client: &Arc<Client>) {
        match ev {
            Event::ServerAck(ack) => self.inner.acks.resolve(ack),
            Event::PairingQrCode(q) => self.update(|s| {
                s.snap.qr = Some(q.code.clone());
                if s.snap.state != EngineState::Pairing {
                    s.snap.state = EngineState::WaitingForQr;
                }
            }),
            Event::PairingCode(p) => self.update(|s| {
                s.snap.pair_code = Some(PairCode {
                    code: p.code.clone(),
                    expires_at: now_ms() + p.timeout.as_millis() as i64,
                });
                s.snap.state = EngineState::Pairing;
            }),
            Event::PairSuccess(p) => self.update(|s| {
                s.snap.qr = None;
                s.snap.pair_code = None;
                s.snap.own_jid = Some(p.id.to_string());
                s.snap.state = EngineState::Connecting;
            }),
            Event::PairError(e) => {
                let why = format!("pairing failed: {e:?}");
                self.update(|s| s.snap.last_error = Some(why));
            }
            Event::Connected(_) => {
                let own = client.pn().map(|j| j.to_string());
                self.update(|s| {
                    if own.is_some() {
                        s.snap.own_jid = own;
                    }
                    s.snap.qr = None;
                    s.snap.pair_code = None;
                    s.snap.last_error = None;
                    s.snap.state = EngineState::Connected;
                });
                self.refresh_version(false);
            }
            Event::Disconnected(d) => {
                let why = d.reason.to_string();
                self.update(|s| {
                    if s.snap.state == EngineState::Connected {
                        s.snap.state = EngineState::Connecting;
                    }
                    s.snap.last_disconnect_reason = Some(why);
                    s.snap.last_disconnect_at = Some(now_ms());
                })
            }
            Event::LoggedOut(l) => {
                let why = format!("logged out: {:?}", l.reason);
                self.update(|s| {
                    s.snap.last_disconnect_reason = Some(why.clone());
                    s.snap.last_disconnect_at = Some(now_ms());
                    if s.ended.is_none() {
                        s.ended = Some(Ended::Remote);
                        s.snap.last_error = Some(why);
                        s.snap.state = EngineState::LoggedOut;
                    }
                });
            }
            Event::TemporaryBan(b) => {
                let why = format!("temporarily banned ({:?}) for {:?}", b.code, b.expire);
                self.update(|s| {
                    s.snap.state = EngineState::Banned;
                    s.snap.last_error = Some(why);
                });
            }
            Event::ConnectFailure(f) => {
                let why = format!(
                    "connection refused by WhatsApp: {:?}{}",
                    f.reason,
                    f.message
                        .as_deref()
                        .map(|m| format!(" ({m})"))
                        .unwrap_or_default()
                );
                self.update(|s| s.snap.last_error = Some(why));
            }
            Event::StreamReplaced(_) => self.update(|s| {
                s.snap.last_error =
                    Some("another connection with the same keys replaced this one".into())
            }),
            Event::ClientOutdated(_) => {
                self.update(|s| {
                    s.snap.last_error = Some(
                        "WhatsApp says this client version is outdated; fetching the current one \
                         (or set WA_WEB_VERSION)"
                            .into(),
                    )
                });
                self.refresh_version(true);
            }
            Event::PairingQrCodesExhausted(_) => self.update(|s| {
                s.snap.qr = None;
                s.snap.last_error = Some("the QR codes ran out without a scan".into());
            }),
            _ => {}
        }
    }
}

impl Engine {
    /// Fetches the current web version from `sw.js` in the background and caches it for the next
    /// client (once per process unless `again`). Only against WhatsApp Web and without
    /// `WA_WEB_VERSION`: nothing waits on it.
    fn refresh_version(&self, again: bool) {
        let config = &self.inner.config;
        if config.version.is_some() || config.ws_url.is_some() {
            return;
        }
        if self.inner.version_refresh.swap(true, Ordering::SeqCst) && !again {
            return;
        }
        let http: Arc<dyn whatsapp_rust::http::HttpClient> = match http_client(config) {
            Ok(h) => Arc::new(h),
            Err(e) => {
                log::warn!("whatsapp: no HTTP client for the version check: {e}");
                return;
            }
        };
        let store = self.inner.store.clone();
        crate::runtime::spawn(async move {
            match whatsapp_rust::version::fetch_latest_app_version(&http).await {
                Ok(v) => match cache_version(&store, v).await {
                    Ok(()) => log::info!("whatsapp: cached web version {}", format_version(v)),
                    Err(e) => log::warn!("whatsapp: caching the web version failed: {e}"),
                },
                Err(e) => log::info!("whatsapp: fetching the web version failed: {e:#}"),
            }
        })
        .detach();
    }
}

/// The not-connected error text for tools that need a live connection.
pub fn not_connected(snap: &Snapshot) -> String {
    let next = match snap.state {
        EngineState::Unlinked | EngineState::WaitingForQr => {
            "link an account first with get_qr_code or request_pairing_code"
        }
        EngineState::Pairing => {
            "finish linking by typing the pair code on the phone, then call check_auth_status"
        }
        EngineState::Connecting => {
            "the account is linked and the connection is being set up; try again in a few seconds"
        }
        EngineState::Connected => "the connection is being rebuilt; try again in a few seconds",
        EngineState::LoggedOut => {
            "WhatsApp ended the link; link again with get_qr_code or request_pairing_code"
        }
        EngineState::Banned => "WhatsApp has banned this account",
    };
    format!(
        "WhatsApp is not connected (state: {}): {next}",
        snap.state.name()
    )
}

/// The version to announce: `WA_WEB_VERSION`, else the cached one, else [`DEFAULT_VERSION`].
pub fn choose_version(
    env: Option<(u32, u32, u32)>,
    cached: Option<(u32, u32, u32)>,
) -> (u32, u32, u32) {
    env.or(cached).unwrap_or(DEFAULT_VERSION)
}

fn format_version((a, b, c): (u32, u32, u32)) -> String {
    format!("{a}.{b}.{c}")
}

fn parse_cached_version(s: &str) -> Option<(u32, u32, u32)> {
    let mut parts = s.trim().split('.').map(|p| p.parse::<u32>().ok());
    let v = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(v)
}

/// The version cached in the store's `meta` table, if any (an unreadable one counts as none).
pub async fn cached_version(store: &Store) -> Option<(u32, u32, u32)> {
    let read = store
        .read(|txn| {
            let meta = txn
                .open_table(crate::store::schema::META)
                .ctx("opening meta")?;
            let v = meta.get(WEB_VERSION_KEY).ctx("reading the web version")?;
            Ok(v.map(|v| String::from_utf8_lossy(v.value()).into_owned()))
        })
        .await;
    match read {
        Ok(Some(s)) => parse_cached_version(&s),
        Ok(None) => None,
        Err(e) => {
            log::warn!("whatsapp: reading the cached web version failed: {e}");
            None
        }
    }
}

/// Caches `version` in the store's `meta` table.
pub async fn cache_version(
    store: &Store,
    version: (u32, u32, u32),
) -> Result<(), crate::store::StoreError> {
    let text = format_version(version);
    store
        .write(move |txn| {
            let mut meta = txn
                .open_table(crate::store::schema::META)
                .ctx("opening meta")?;
            meta.insert(WEB_VERSION_KEY, text.as_bytes())
                .ctx("writing the web version")?;
            Ok(())
        })
        .await
}

/// whatsapp-rust's inbound durability hook: commits each decrypted batch to `wa_inbox` (one
/// transaction, durable on return) before the client acknowledges it. Idempotent by (chat,
/// sender, id), as the hook contract asks.
pub struct InboxHook {
    backend: Arc<RedbBackend>,
    /// Where the ids of a batch whose app-table write failed go (ingest writes them later).
    misses: Arc<super::ingest::HookMisses>,
}

/// The `wa_inbox` rows for a batch.
fn inbox_rows(batch: &[InboundMessage]) -> Vec<InboxRow> {
    batch
        .iter()
        .map(|m| {
            let mut message = Vec::new();
            whatsapp_rust::waproto::codec::message_encode_into(&m.message, &mut message);
            InboxRow {
                chat: m.info.source.chat.to_string(),
                sender: m.info.source.sender.to_string(),
                id: m.info.id.to_string(),
                timestamp: m.info.timestamp.timestamp(),
                from_me: m.info.source.is_from_me,
                push_name: m.info.push_name.clone(),
                message,
            }
        })
        .collect()
}

#[whatsapp_rust::async_trait]
impl InboundDurabilityHook for InboxHook {
    async fn on_messages(
        &self,
        client: Arc<Client>,
        batch: &[InboundMessage],
    ) -> whatsapp_rust::anyhow::Result<()> {
        // The app's tables get the same messages in the same transaction (ingest.rs), so a
        // crash after the ack never loses one.
        let own = client.pn().map(|j| j.to_non_ad_string());
        // The conversion of odd input must not take the client's message loop down: a panic
        // here commits the batch to wa_inbox alone, and ingest retries it under its own guard.
        let converted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            super::ingest::batch_effects(batch, own.as_deref())
        }));
        let Ok(effects) = converted else {
            log::error!("whatsapp: converting inbound messages panicked; ingest retries them");
            self.misses.add(batch.iter().map(|m| m.info.id.to_string()));
            return self
                .backend
                .commit_inbox(inbox_rows(batch))
                .await
                .map_err(|e| whatsapp_rust::anyhow::anyhow!("committing inbound messages: {e}"));
        };
        let together = self
            .backend
            .commit_inbox_with(inbox_rows(batch), move |txn| {
                super::ingest::apply(txn, &effects)
            })
            .await;
        match together {
            Ok(()) => Ok(()),
            Err(e) => {
                log::warn!(
                    "whatsapp: storing inbound messages failed ({e}); committing them to wa_inbox \
                     alone, ingest retries the rest"
                );
                self.misses.add(batch.iter().map(|m| m.info.id.to_string()));
                self.backend
                    .commit_inbox(inbox_rows(batch))
                    .await
                    .map_err(|e| whatsapp_rust::anyhow::anyhow!("committing inbound messages: {e}"))
            }
        }
    }
}

fn transport_factory(config: &EngineConfig) -> Result<WaTransportFactory, String> {
    let mut tc = TransportConfig {
        proxy: config.proxy.clone(),
        ..TransportConfig::default()
    };
    if let Some(url) = &config.ws_url {
        tc.url = url.clone();
    }
    #[cfg(feature = "test-network")]
    {
        tc.extra_ca_pem = config.extra_ca.clone();
    }
    WaTransportFactory::new(tc).map_err(|e| format!("WhatsApp transport: {e:#}"))
}

fn http_client(config: &EngineConfig) -> Result<WaHttpClient, String> {
    #[allow(unused_mut)]
    let mut hc = HttpClientConfig {
        proxy: config.proxy.clone(),
        ..HttpClientConfig::default()
    };
    #[cfg(feature = "test-network")]
    {
        hc.extra_ca_pem = config.extra_ca.clone();
    }
    WaHttpClient::new(hc).map_err(|e| format!("WhatsApp HTTP client: {e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config whose WebSocket URL nothing answers (port 9, discard).
    fn unreachable_config() -> EngineConfig {
        EngineConfig {
            ws_url: Some("ws://127.0.0.1:9/ws/chat".into()),
            proxy: None,
            extra_ca: None,
            version: None,
            push_name: "test".into(),
        }
    }

    #[test]
    fn state_names() {
        let all = [
            EngineState::Unlinked,
            EngineState::WaitingForQr,
            EngineState::Pairing,
            EngineState::Connecting,
            EngineState::Connected,
            EngineState::LoggedOut,
            EngineState::Banned,
        ];
        let names: Vec<&str> = all.iter().map(|s| s.name()).collect();
        assert_eq!(
            names,
            [
                "unlinked",
                "waiting_for_qr",
                "pairing",
                "connecting",
                "connected",
                "logged_out",
                "banned"
            ]
        );
    }

    #[test]
    fn version_precedence_env_then_cache_then_default() {
        let env = Some((2, 3000, 111));
        let cached = Some((2, 3000, 222));
        assert_eq!(choose_version(env, cached), (2, 3000, 111));
        assert_eq!(choose_version(None, cached), (2, 3000, 222));
        assert_eq!(choose_version(None, None), DEFAULT_VERSION);
        assert_eq!(
            parse_cached_version("2.3000.1027934701"),
            Some((2, 3000, 1027934701))
        );
        assert_eq!(parse_cached_version("2.3000"), None);
        assert_eq!(parse_cached_version("2.3000.1.4"), None);
        assert_eq!(parse_cached_version("x.y.z"), None);
    }

    #[test]
    fn version_cache_round_trip_survives_logout_clear() {
        let store = Store::open_in_memory().unwrap();
        smol::block_on(async {
            assert_eq!(cached_version(&store).await, None);
            cache_version(&store, (2, 3000, 1027934701)).await.unwrap();
            assert_eq!(cached_version(&store).await, Some((2, 3000, 1027934701)));
            RedbBackend::new(store.clone()).clear().await.unwrap();
            assert_eq!(
                cached_version(&store).await,
                Some((2, 3000, 1027934701)),
                "the cache lives in the store's meta table, which logout keeps"
            );
            assert_eq!(
                choose_version(None, cached_version(&store).await),
                (2, 3000, 1027934701)
            );
        });
    }

    #[test]
    fn inbox_hook_rows_carry_the_message_and_its_source() {
        use whatsapp_rust::types::message::MessageInfo;
        use whatsapp_rust::waproto::whatsapp as wa;
        let mut info = MessageInfo::default();
        info.source.chat = "15550000002@s.whatsapp.net".parse().unwrap();
        info.source.sender = "15550000002@s.whatsapp.net".parse().unwrap();
        info.id = "3EB0ABC".into();
        info.push_name = "Bob".into();
        let message = wa::Message {
            conversation: Some("hello".into()),
            ..Default::default()
        };
        let batch = [InboundMessage::builder()
            .message(Arc::new(message.clone()))
            .info(Arc::new(info))
            .build()];
        let rows = inbox_rows(&batch);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].chat, "15550000002@s.whatsapp.net");
        assert_eq!(rows[0].id, "3EB0ABC");
        assert_eq!(rows[0].push_name, "Bob");
        let decoded = whatsapp_rust::waproto::codec::message_decode(&rows[0].message).unwrap();
        assert_eq!(decoded, message);
        // What the hook commits is durable before it returns (and so before the ack).
        let store = Store::open_in_memory().unwrap();
        let backend = RedbBackend::new(store);
        smol::block_on(async {
            backend.commit_inbox(rows.clone()).await.unwrap();
            let back = backend
                .inbox_get(
                    "15550000002@s.whatsapp.net",
                    "15550000002@s.whatsapp.net",
                    "3EB0ABC",
                )
                .await
                .unwrap();
            assert_eq!(back.as_ref(), rows.first());
        });
    }

    #[test]
    fn inbox_rows_missing_from_the_app_tables_are_written_once_at_start() {
        use whatsapp_rust::waproto::whatsapp as wa;
        let store = Store::open_in_memory().unwrap();
        let engine = Engine::new(store.clone(), unreachable_config()).unwrap();
        let mut message = Vec::new();
        whatsapp_rust::waproto::codec::message_encode_into(
            &wa::Message {
                conversation: Some("kept in the inbox".into()),
                ..Default::default()
            },
            &mut message,
        );
        let row = InboxRow {
            chat: "15550000002@s.whatsapp.net".into(),
            sender: "15550000002:4@s.whatsapp.net".into(),
            id: "3EB0INBOX".into(),
            timestamp: 1_700_000_000,
            from_me: false,
            push_name: "Bob".into(),
            message: message.clone(),
        };
        let template = message;
        smol::block_on(async {
            // What a hook that fell back to the inbox alone leaves behind.
            engine.backend().commit_inbox(vec![row]).await.unwrap();
            assert_eq!(super::super::ingest::reconcile_inbox(&engine).await, Ok(1));
            assert_eq!(super::super::ingest::reconcile_inbox(&engine).await, Ok(0));
            // Written, so pruned from the inbox.
            let left = engine
                .backend()
                .inbox_get(
                    "15550000002@s.whatsapp.net",
                    "15550000002:4@s.whatsapp.net",
                    "3EB0INBOX",
                )
                .await
                .unwrap();
            assert_eq!(left, None);
            // Many rows are read page by page.
            let many: Vec<InboxRow> = (0..2_500)
                .map(|i| InboxRow {
                    chat: "15550000003@s.whatsapp.net".into(),
                    sender: "15550000003@s.whatsapp.net".into(),
                    id: format!("3EB0M{i:05}"),
                    timestamp: 1_700_000_000 + i,
                    from_me: false,
                    push_name: String::new(),
                    message: template.clone(),
                })
                .collect();
            engine.backend().commit_inbox(many).await.unwrap();
            assert_eq!(
                super::super::ingest::reconcile_inbox(&engine).await,
                Ok(2_500)
            );
            assert_eq!(super::super::ingest::reconcile_inbox(&engine).await, Ok(0));
        });
        let (m, chat) = store
            .read_blocking(|txn| {
                Ok((
                    crate::store::queries::message(txn, "15550000002@s.whatsapp.net", "3EB0INBOX")?,
                    crate::store::queries::chat(txn, "15550000002@s.whatsapp.net")?,
                ))
            })
            .unwrap();
        let m = m.expect("stored from the inbox");
        assert_eq!(m.row.body, "kept in the inbox");
        assert_eq!(m.row.sender, "15550000002@s.whatsapp.net");
        assert_eq!(m.timestamp_ms(), 1_700_000_000_000);
        assert_eq!(chat.unwrap().unread, 1);
    }

    #[test]
    fn not_connected_names_the_state_and_the_next_step() {
        let snap = |state| Snapshot {
            state,
            qr: None,
            pair_code: None,
            own_jid: None,
            last_error: None,
            last_disconnect_reason: None,
            last_disconnect_at: None,
        };
        let t = not_connected(&snap(EngineState::Unlinked));
        assert!(
            t.starts_with("WhatsApp is not connected (state: unlinked): "),
            "{t}"
        );
        assert!(t.contains("get_qr_code"), "{t}");
        let t = not_connected(&snap(EngineState::Connecting));
        assert!(
            t.starts_with("WhatsApp is not connected (state: connecting): "),
            "{t}"
        );
    }

    #[test]
    fn subscribe_streams_events_and_state_changes_in_order() {
        use whatsapp_rust::types::events::Connected;
        let engine = Engine::new(Store::open_in_memory().unwrap(), unreachable_config()).unwrap();
        // No subscriber: nothing is built or kept.
        engine.update(|s| s.snap.state = EngineState::Connecting);
        let rx = engine.subscribe();
        engine.update(|s| s.snap.state = EngineState::WaitingForQr);
        engine.update(|s| s.snap.last_error = Some("no state change".into()));
        engine.update(|s| s.snap.state = EngineState::WaitingForQr);
        engine.forward(&Arc::new(Event::Connected(Connected::builder().build())));
        engine.update(|s| s.snap.state = EngineState::Connected);
        let got: Vec<(&str, Option<EngineState>, bool)> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|e| (e.kind, e.state, e.raw.is_some()))
            .collect();
        assert_eq!(
            got,
            [
                ("state_changed", Some(EngineState::WaitingForQr), false),
                ("connected", None, true),
                ("state_changed", Some(EngineState::Connected), false),
            ]
        );
        // A second subscriber sees only what follows; a dropped one is forgotten.
        let rx2 = engine.subscribe();
        drop(rx);
        engine.update(|s| s.snap.state = EngineState::Pairing);
        assert_eq!(lock(&engine.inner.subscribers).len(), 1);
        let e = rx2.try_recv().unwrap();
        assert_eq!(
            (e.kind, e.state),
            ("state_changed", Some(EngineState::Pairing))
        );
        assert!(e.at_ms > 0);
        assert!(rx2.try_recv().is_err());
    }

    #[test]
    fn own_number_drops_device_and_server() {
        let snap = Snapshot {
            state: EngineState::Connected,
            qr: None,
            pair_code: None,
            own_jid: Some("15550000001:3@s.whatsapp.net".into()),
            last_error: None,
            last_disconnect_reason: None,
            last_disconnect_at: None,
        };
        assert_eq!(snap.own_number().as_deref(), Some("15550000001"));
    }
}
