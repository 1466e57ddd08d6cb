//! The store: everything the app knows, in one redb file.
//!
//! Owns: opening the database (with an explicit cache size), the schema version, the one writer
//! thread that performs every write transaction (group commit), and read access for queries.
//! Must not: know about MCP, HTTP or WhatsApp's wire types; callers hand it plain rows.
//!
//! # Writes: one writer, group commit
//! Every write is a closure over a `redb::WriteTransaction`, sent to the writer thread with
//! [`Store::write`]. The writer takes the first queued closure, then every closure that queued
//! meanwhile, runs them all in one transaction and commits once (`Durability::Immediate`, an
//! fsync). The future returned by `write` resolves after that commit: awaiting it means the
//! write is durable. If one closure of a batch fails, the batch is rolled back and its closures
//! are retried one transaction each, so only the failing one reports an error. Closures are
//! therefore `Fn`: they may run twice, and must only write what they captured.
//!
//! # Change signal
//! After every committed batch the writer bumps a generation counter and wakes everyone waiting in
//! [`Store::wait_for_change`] (`wait_for_messages` uses it). Writers need nothing special: any
//! write through [`Store::write`] fires it once its batch is committed.
//!
//! # Reads
//! [`Store::read`] runs a closure over a `redb::ReadTransaction` on a blocking thread. Readers
//! see the last commit and never wait for the writer.
//!
//! # Schema (version [`SCHEMA_VERSION`])
//! See `schema.rs` for the tables and key layouts; values are encoded by `codec.rs`.

pub mod arrivals;
pub mod codec;
pub mod demo;
pub mod idempotency;
pub mod jid;
pub mod jsonl;
pub mod model;
pub mod queries;
pub mod schema;
pub mod search;
pub mod send_log;
pub mod writes;

#[cfg(test)]
mod tests;

use redb::{Database, ReadTransaction, ReadableDatabase, WriteTransaction};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bumped when the layout of a table changes; `open` refuses files from a newer version.
pub const SCHEMA_VERSION: u32 = 1;

/// A store error: what failed, with context for a person to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StoreError {}

/// Adds context to any error: `result.ctx("reading chats")?`.
pub trait Context<T> {
    fn ctx(self, what: &str) -> Result<T, StoreError>;
}

impl<T, E: std::fmt::Display> Context<T> for Result<T, E> {
    fn ctx(self, what: &str) -> Result<T, StoreError> {
        self.map_err(|e| StoreError(format!("{what}: {e}")))
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Why the database could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// Another process (a running server) holds the file.
    Locked(PathBuf),
    Other(StoreError),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Locked(p) => write!(
                f,
                "the store {} is in use by another process (a running server?); stop it first",
                p.display()
            ),
            OpenError::Other(e) => e.fmt(f),
        }
    }
}

/// A write: may run twice (a failed group commit retries each job alone), so it is `Fn`.
type WriteJob = Box<dyn Fn(&WriteTransaction) -> Result<()> + Send>;

struct Queued {
    job: WriteJob,
    done: async_channel::Sender<Result<()>>,
}

/// Fired by the writer after each committed batch.
#[derive(Default)]
struct ChangeSignal {
    /// Counts committed batches.
    generation: AtomicU64,
    event: event_listener::Event,
}

impl ChangeSignal {
    fn fire(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.event.notify(usize::MAX);
    }
}

/// The store handle. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    queue: async_channel::Sender<Queued>,
    path: Arc<PathBuf>,
    changes: Arc<ChangeSignal>,
}

impl Store {
    /// Opens (or creates) the store at `path` with a page cache of `cache_mb` MiB, and starts the
    /// writer thread.
    pub fn open(path: &Path, cache_mb: usize) -> std::result::Result<Store, OpenError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .ctx(&format!("creating {}", dir.display()))
                .map_err(OpenError::Other)?;
        }
        let mut builder = Database::builder();
        builder.set_cache_size(cache_mb.max(1) * 1024 * 1024);
        let db = match builder.create(path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(OpenError::Locked(path.to_path_buf()));
            }
            Err(e) => {
                return Err(OpenError::Other(StoreError(format!(
                    "opening the store {}: {e}",
                    path.display()
                ))));
            }
        };
        Store::start(db, path.to_path_buf()).map_err(OpenError::Other)
    }

    /// A store that lives in memory only (tests and tools that need a scratch store).
    pub fn open_in_memory() -> Result<Store> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .ctx("creating an in-memory store")?;
        Store::start(db, PathBuf::from(":memory:"))
    }

    fn start(db: Database, path: PathBuf) -> Result<Store> {
        let db = Arc::new(db);
        schema::init(&db)?;
        let (queue, rx) = async_channel::unbounded::<Queued>();
        let writer_db = db.clone();
        let changes = Arc::new(ChangeSignal::default());
        let writer_changes = changes.clone();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer_loop(&writer_db, rx, &writer_changes))
            .ctx("starting the store writer thread")?;
        Ok(Store {
            db,
            queue,
            path: Arc::new(path),
            changes,
        })
    }

    /// How many write batches have been committed since the store was opened. Pass it to
    /// [`Store::wait_for_change`] to wait for the next commit.
    pub fn change_generation(&self) -> u64 {
        self.changes.generation.load(Ordering::Acquire)
    }

    /// Waits until a batch is committed after generation `seen` was read; returns the new
    /// generation. Dropping the future stops the wait.
    pub async fn wait_for_change(&self, seen: u64) -> u64 {
        loop {
            let now = self.change_generation();
            if now != seen {
                return now;
            }
            let listener = self.changes.event.listen();
            let now = self.change_generation();
            if now != seen {
                return now;
            }
            listener.await;
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `job` in a write transaction on the writer thread; resolves once it is committed.
    pub async fn write<F>(&self, job: F) -> Result<()>
    where
        F: Fn(&WriteTransaction) -> Result<()> + Send + 'static,
    {
        let (done, rx) = async_channel::bounded(1);
        self.queue
            .send(Queued {
                job: Box::new(job),
                done,
            })
            .await
            .map_err(|_| StoreError("the store writer has stopped".into()))?;
        rx.recv()
            .await
            .map_err(|_| StoreError("the store writer stopped before committing".into()))?
    }

    /// The same as [`Store::write`], blocking the calling thread (CLI commands and tests).
    pub fn write_blocking<F>(&self, job: F) -> Result<()>
    where
        F: Fn(&WriteTransaction) -> Result<()> + Send + 'static,
    {
        smol::block_on(self.write(job))
    }

    /// Runs `query` in a read transaction on a blocking thread.
    pub async fn read<T, F>(&self, query: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&ReadTransaction) -> Result<T> + Send + 'static,
    {
        let db = self.db.clone();
        smol::unblock(move || {
            let txn = db.begin_read().ctx("starting a read transaction")?;
            query(&txn)
        })
        .await
    }

    /// Runs `query` in a read transaction on the calling thread.
    pub fn read_blocking<T, F>(&self, query: F) -> Result<T>
    where
        F: FnOnce(&ReadTransaction) -> Result<T>,
    {
        let txn = self.db.begin_read().ctx("starting a read transaction")?;
        query(&txn)
    }

    /// Checks that a commit goes through (for /healthz).
    pub async fn probe(&self) -> Result<()> {
        self.write(|txn| {
            let mut meta = txn.open_table(schema::META).ctx("opening meta")?;
            meta.insert("probe", &[][..]).ctx("writing the probe")?;
            Ok(())
        })
        .await
    }
}

/// The writer thread: group commit of everything queued.
fn writer_loop(db: &Database, rx: async_channel::Receiver<Queued>, changes: &ChangeSignal) {
    while let Ok(first) = rx.recv_blocking() {
        let mut batch = vec![first];
        while batch.len() < 4096 {
            match rx.try_recv() {
                Ok(q) => batch.push(q),
                Err(_) => break,
            }
        }
        run_batch(db, batch);
        changes.fire();
    }
    log::debug!("store writer stopped");
}

fn run_batch(db: &Database, batch: Vec<Queued>) {
    if batch.len() > 1 {
        match run_shared(db, &batch) {
            Ok(()) => {
                for q in &batch {
                    let _ = q.done.try_send(Ok(()));
                }
                return;
            }
            Err(e) => log::debug!(
                "group commit of {} writes failed ({e}); retrying each alone",
                batch.len()
            ),
        }
    }
    for q in batch {
        let result = run_one(db, &q.job);
        let _ = q.done.try_send(result);
    }
}

/// Runs every job of the batch in one transaction and commits once.
fn run_shared(db: &Database, batch: &[Queued]) -> Result<()> {
    let txn = db.begin_write().ctx("starting a write transaction")?;
    for q in batch {
        if let Err(e) = guarded(&q.job, &txn) {
            let _ = txn.abort();
            return Err(e);
        }
    }
    txn.commit().ctx("committing")
}

/// Runs one job, turning a panic into an error.
fn guarded(job: &WriteJob, txn: &WriteTransaction) -> Result<()> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(txn)))
        .unwrap_or_else(|_| Err(StoreError("a store write panicked".into())))
}

fn run_one(db: &Database, job: &WriteJob) -> Result<()> {
    let txn = db.begin_write().ctx("starting a write transaction")?;
    match guarded(job, &txn) {
        Ok(()) => txn.commit().ctx("committing"),
        Err(e) => {
            let _ = txn.abort();
            Err(e)
        }
    }
}
