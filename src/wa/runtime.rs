//! whatsapp-rust's `Runtime` on the product's smol executor.
//!
//! Owns: `SmolRuntime`, the adapter that lets the engine spawn tasks, sleep, run blocking work and
//! yield. Tasks go to the product's shared executor (`crate::runtime::spawn`), timers to
//! `async_io::Timer`, blocking work to `smol::unblock`'s thread pool.
//!
//! Must not: touch the store, the network or the engine's state; start its own executor threads;
//! pull in tokio.
//!
//! Cancellation: `AbortHandle::detach()` drops the abort closure, so the closure must never own
//! the `smol::Task` (dropping a task cancels it). The task is detached at spawn time and cancelled
//! cooperatively through `futures::future::abortable` instead (notes §1).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use whatsapp_rust::Runtime;
use whatsapp_rust::futures::future::abortable;
use whatsapp_rust::wacore::runtime::AbortHandle;

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;
type BoxFutureSend = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The engine's runtime: every task runs on the product's smol executor.
#[derive(Debug, Clone, Copy, Default)]
pub struct SmolRuntime;

impl Runtime for SmolRuntime {
    fn spawn(&self, future: BoxFuture) -> AbortHandle {
        let (future, handle) = abortable(future);
        crate::runtime::spawn(async move {
            // `Err(Aborted)` only says the handle fired; there is nothing to report.
            let _ = future.await;
        })
        .detach();
        AbortHandle::new(move || handle.abort())
    }

    fn spawn_detached(&self, future: BoxFuture) {
        crate::runtime::spawn(future).detach();
    }

    fn sleep(&self, duration: Duration) -> BoxFutureSend {
        Box::pin(async move {
            async_io::Timer::after(duration).await;
        })
    }

    fn spawn_blocking(&self, f: Box<dyn FnOnce() + Send + 'static>) -> BoxFutureSend {
        Box::pin(smol::unblock(f))
    }

    fn yield_now(&self) -> Option<BoxFutureSend> {
        Some(Box::pin(futures_lite::future::yield_now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    /// Reports on `tx` when the task's future is dropped (that is, cancelled).
    struct DropFlag(async_channel::Sender<()>);

    impl Drop for DropFlag {
        fn drop(&mut self) {
            let _ = self.0.try_send(());
        }
    }

    /// A task that bumps `counter` every 5 ms, forever, and reports its cancellation.
    fn ticker(counter: Arc<AtomicUsize>) -> (BoxFuture, async_channel::Receiver<()>) {
        let (tx, dropped) = async_channel::bounded(1);
        let fut = Box::pin(async move {
            let _flag = DropFlag(tx);
            loop {
                counter.fetch_add(1, Ordering::SeqCst);
                async_io::Timer::after(Duration::from_millis(5)).await;
            }
        });
        (fut, dropped)
    }

    /// Waits (up to 10 s, generous for a loaded CI machine) until `counter` passes `above`.
    async fn wait_past(counter: &AtomicUsize, above: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while counter.load(Ordering::SeqCst) <= above {
            assert!(Instant::now() < deadline, "the task stopped running");
            async_io::Timer::after(Duration::from_millis(5)).await;
        }
    }

    /// Waits (up to 10 s) for the task's future to be dropped.
    async fn wait_cancelled(dropped: &async_channel::Receiver<()>) {
        let cancelled = futures_lite::future::or(async { dropped.recv().await.is_ok() }, async {
            async_io::Timer::after(Duration::from_secs(10)).await;
            false
        })
        .await;
        assert!(cancelled, "the task was not cancelled");
    }

    fn run<T>(fut: impl Future<Output = T>) -> T {
        crate::runtime::block_on(2, fut)
    }

    #[test]
    fn spawned_task_runs() {
        run(async {
            let (tx, rx) = async_channel::bounded(1);
            let handle = SmolRuntime.spawn(Box::pin(async move {
                let _ = tx.send(42u32).await;
            }));
            assert_eq!(rx.recv().await.unwrap(), 42);
            drop(handle);
        });
    }

    #[test]
    fn abort_stops_the_task() {
        run(async {
            let counter = Arc::new(AtomicUsize::new(0));
            let (fut, dropped) = ticker(counter.clone());
            let handle = SmolRuntime.spawn(fut);
            wait_past(&counter, 0).await;
            handle.abort();
            wait_cancelled(&dropped).await;
            let stopped_at = counter.load(Ordering::SeqCst);
            async_io::Timer::after(Duration::from_millis(30)).await;
            assert_eq!(counter.load(Ordering::SeqCst), stopped_at);
        });
    }

    #[test]
    fn detach_keeps_the_task_running() {
        run(async {
            let counter = Arc::new(AtomicUsize::new(0));
            let (fut, dropped) = ticker(counter.clone());
            SmolRuntime.spawn(fut).detach();
            wait_past(&counter, 0).await;
            let seen = counter.load(Ordering::SeqCst);
            wait_past(&counter, seen + 3).await;
            assert!(
                dropped.try_recv().is_err(),
                "a detached task must not be cancelled"
            );
        });
    }

    #[test]
    fn spawn_detached_runs() {
        run(async {
            let (tx, rx) = async_channel::bounded(1);
            SmolRuntime.spawn_detached(Box::pin(async move {
                let _ = tx.send(()).await;
            }));
            rx.recv().await.unwrap();
        });
    }

    #[test]
    fn dropping_the_handle_aborts() {
        run(async {
            let counter = Arc::new(AtomicUsize::new(0));
            let (fut, dropped) = ticker(counter.clone());
            let handle = SmolRuntime.spawn(fut);
            wait_past(&counter, 0).await;
            drop(handle);
            wait_cancelled(&dropped).await;
        });
    }

    #[test]
    fn sleep_sleeps_at_least_the_duration() {
        run(async {
            let start = Instant::now();
            SmolRuntime.sleep(Duration::from_millis(50)).await;
            assert!(start.elapsed() >= Duration::from_millis(50));
        });
    }

    #[test]
    fn spawn_blocking_runs_on_another_thread() {
        run(async {
            let caller = std::thread::current().id();
            let (tx, rx) = std::sync::mpsc::channel();
            SmolRuntime
                .spawn_blocking(Box::new(move || {
                    let _ = tx.send(std::thread::current().id());
                }))
                .await;
            assert_ne!(rx.recv().unwrap(), caller);
        });
    }

    #[test]
    fn yield_now_is_some_and_completes() {
        run(async {
            let fut = SmolRuntime.yield_now();
            assert!(fut.is_some());
            if let Some(fut) = fut {
                fut.await;
            }
        });
    }
}
