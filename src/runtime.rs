//! The process-wide smol executor.
//!
//! Owns: one `smol::Executor` that every task of the server runs on, and the worker threads that
//! drive it. Must not: block. Blocking work (disk, redb commits) goes through `smol::unblock`.

use std::future::Future;
use std::sync::OnceLock;

static EXECUTOR: smol::Executor<'static> = smol::Executor::new();
static STARTED: OnceLock<()> = OnceLock::new();

/// Spawns a task on the shared executor.
pub fn spawn<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> smol::Task<T> {
    EXECUTOR.spawn(fut)
}

/// Runs `fut` to completion on the calling thread while `threads - 1` extra worker threads (at
/// least one) also drive the executor. The workers are started once per process.
pub fn block_on<T>(threads: usize, fut: impl Future<Output = T>) -> T {
    STARTED.get_or_init(|| {
        for n in 0..threads.saturating_sub(1).max(1) {
            let spawned = std::thread::Builder::new()
                .name(format!("executor-{n}"))
                .spawn(|| smol::block_on(EXECUTOR.run(std::future::pending::<()>())));
            if let Err(e) = spawned {
                log::warn!("could not start executor thread {n}: {e}");
            }
        }
    });
    smol::block_on(EXECUTOR.run(fut))
}
