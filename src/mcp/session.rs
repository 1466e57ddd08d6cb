//! MCP sessions: creation, lookup, idle expiry and the cap on how many are open.
//!
//! Owns: the session table and each session's small state (negotiated version, the credential it
//! is bound to, its GET stream slot, requests in flight). Must not: parse HTTP or run tools.
//!
//! Invariants: an ended, expired or evicted session is gone from the table, so every later use of
//! its id is answered 404. The table never holds more than `max` sessions; creating one more
//! evicts the idlest.

use super::jsonrpc::Id;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One MCP session.
pub struct Session {
    pub id: String,
    /// The protocol revision negotiated at `initialize`.
    pub protocol_version: &'static str,
    /// The bearer token that created the session (`None` when auth is off).
    pub credential: Option<String>,
    state: Mutex<SessionState>,
}

#[derive(Default)]
struct SessionState {
    last_used: Option<Instant>,
    initialized: bool,
    log_level: Option<String>,
    /// The open GET stream, if any: its sender is closed once the client is gone.
    get_stream: Option<async_channel::Sender<crate::json::Value>>,
    /// Cancellation handles of requests in flight.
    in_flight: HashMap<Id, async_channel::Sender<()>>,
}

impl Session {
    pub fn new(id: String, protocol_version: &'static str, credential: Option<String>) -> Session {
        let state = SessionState {
            last_used: Some(Instant::now()),
            ..SessionState::default()
        };
        Session {
            id,
            protocol_version,
            credential,
            state: Mutex::new(state),
        }
    }

    fn state(&self) -> MutexGuard<'_, SessionState> {
        // A panic while holding this lock leaves plain data behind; keep serving.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn touch(&self) {
        self.state().last_used = Some(Instant::now());
    }

    fn idle_for(&self, now: Instant) -> Duration {
        self.state()
            .last_used
            .map(|t| now.saturating_duration_since(t))
            .unwrap_or_default()
    }

    pub fn mark_initialized(&self) {
        self.state().initialized = true;
    }

    pub fn is_initialized(&self) -> bool {
        self.state().initialized
    }

    pub fn set_log_level(&self, level: &str) {
        self.state().log_level = Some(level.to_string());
    }

    pub fn log_level(&self) -> Option<String> {
        self.state().log_level.clone()
    }

    /// Claims the session's one GET stream. `None` when a live one is already open.
    pub fn open_get_stream(&self) -> Option<async_channel::Receiver<crate::json::Value>> {
        let mut st = self.state();
        if st.get_stream.as_ref().is_some_and(|s| !s.is_closed()) {
            return None;
        }
        let (tx, rx) = async_channel::bounded(64);
        st.get_stream = Some(tx);
        Some(rx)
    }

    /// Registers a request in flight; the receiver closes when it is cancelled.
    pub fn begin_request(&self, id: &Id) -> async_channel::Receiver<()> {
        let (tx, rx) = async_channel::bounded(1);
        self.state().in_flight.insert(id.clone(), tx);
        rx
    }

    pub fn end_request(&self, id: &Id) {
        self.state().in_flight.remove(id);
    }

    /// Cancels a request in flight. Unknown or finished ids are ignored.
    pub fn cancel_request(&self, id: &Id) -> bool {
        match self.state().in_flight.remove(id) {
            Some(tx) => {
                tx.close();
                true
            }
            None => false,
        }
    }

    /// Ends the session: closes its GET stream and cancels what is in flight.
    fn close(&self) {
        let mut st = self.state();
        if let Some(tx) = st.get_stream.take() {
            tx.close();
        }
        for (_, tx) in st.in_flight.drain() {
            tx.close();
        }
    }
}

/// The table of open sessions.
pub struct Sessions {
    table: Mutex<HashMap<String, Arc<Session>>>,
    idle: Duration,
    max: usize,
}

impl Sessions {
    pub fn new(idle: Duration, max: usize) -> Sessions {
        Sessions {
            table: Mutex::new(HashMap::new()),
            idle,
            max: max.max(1),
        }
    }

    fn table(&self) -> MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Creates a session with a fresh random id, evicting the idlest one when full.
    pub fn create(
        &self,
        protocol_version: &'static str,
        credential: Option<String>,
    ) -> std::io::Result<Arc<Session>> {
        let id = new_session_id()?;
        let session = Arc::new(Session::new(id.clone(), protocol_version, credential));
        let mut table = self.table();
        while table.len() >= self.max {
            let now = Instant::now();
            let idlest = table
                .iter()
                .max_by_key(|(_, s)| s.idle_for(now))
                .map(|(k, _)| k.clone());
            match idlest.and_then(|k| table.remove(&k)) {
                Some(evicted) => {
                    log::info!(
                        "mcp session {} evicted: MCP_MAX_SESSIONS={} reached",
                        short(&evicted.id),
                        self.max
                    );
                    evicted.close();
                }
                None => break,
            }
        }
        table.insert(id, session.clone());
        Ok(session)
    }

    /// Looks a session up and marks it used. Expired sessions are removed and not returned.
    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        let mut table = self.table();
        let session = table.get(id)?.clone();
        if session.idle_for(Instant::now()) > self.idle {
            table.remove(id);
            session.close();
            log::info!(
                "mcp session {} expired after {} s idle",
                short(id),
                self.idle.as_secs()
            );
            return None;
        }
        session.touch();
        Some(session)
    }

    /// Ends a session (DELETE). Returns false if it did not exist.
    pub fn remove(&self, id: &str) -> bool {
        match self.table().remove(id) {
            Some(s) => {
                s.close();
                true
            }
            None => false,
        }
    }

    /// Removes every session idle longer than the limit. Returns how many were removed.
    pub fn sweep(&self) -> usize {
        let now = Instant::now();
        let mut table = self.table();
        let expired: Vec<String> = table
            .iter()
            .filter(|(_, s)| s.idle_for(now) > self.idle)
            .map(|(k, _)| k.clone())
            .collect();
        for id in &expired {
            if let Some(s) = table.remove(id) {
                s.close();
            }
        }
        expired.len()
    }

    pub fn len(&self) -> usize {
        self.table().len()
    }

    pub fn is_empty(&self) -> bool {
        self.table().is_empty()
    }

    /// How often [`Sessions::sweep`] should run.
    pub fn sweep_interval(&self) -> Duration {
        (self.idle / 2).clamp(Duration::from_millis(200), Duration::from_secs(60))
    }
}

/// The first characters of a session id, enough to follow it in logs.
pub fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// 128 random bits as 32 lower-case hex characters (visible ASCII only).
pub fn new_session_id() -> std::io::Result<String> {
    random_hex(16)
}

/// `n` random bytes from the OS CSPRNG, hex-encoded.
pub fn random_hex(n: usize) -> std::io::Result<String> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes)
        .map_err(|e| std::io::Error::other(format!("the OS random source failed: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random_visible_ascii() {
        let a = new_session_id().unwrap();
        let b = new_session_id().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| (0x21..=0x7e).contains(&c)));
    }

    #[test]
    fn the_idlest_session_is_evicted_at_the_cap() {
        let sessions = Sessions::new(Duration::from_secs(60), 2);
        let first = sessions.create("2025-11-25", None).unwrap();
        let second = sessions.create("2025-11-25", None).unwrap();
        // Touch the first so the second becomes the idlest.
        std::thread::sleep(Duration::from_millis(5));
        assert!(sessions.get(&first.id).is_some());
        let third = sessions.create("2025-11-25", None).unwrap();
        assert_eq!(sessions.len(), 2);
        assert!(sessions.get(&second.id).is_none());
        assert!(sessions.get(&first.id).is_some());
        assert!(sessions.get(&third.id).is_some());
    }

    #[test]
    fn expired_sessions_are_gone() {
        let sessions = Sessions::new(Duration::from_millis(0), 10);
        let s = sessions.create("2025-11-25", None).unwrap();
        std::thread::sleep(Duration::from_millis(2));
        assert!(sessions.get(&s.id).is_none());
        let s2 = sessions.create("2025-11-25", None).unwrap();
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(sessions.sweep(), 1);
        assert!(!sessions.remove(&s2.id));
    }

    #[test]
    fn one_get_stream_per_session_and_cancellation() {
        let s = Session::new("x".into(), "2025-11-25", None);
        let rx = s.open_get_stream().unwrap();
        assert!(s.open_get_stream().is_none());
        drop(rx);
        assert!(
            s.open_get_stream().is_some(),
            "a closed stream frees the slot"
        );
        let id = Id::Int(7);
        let cancel = s.begin_request(&id);
        assert!(s.cancel_request(&id));
        assert!(cancel.is_closed());
        assert!(!s.cancel_request(&Id::Int(8)));
    }
}
