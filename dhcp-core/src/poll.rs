//! Driving the engine's futures without an async runtime.

use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};

/// Polls `future` once and returns its output if it completed.
///
/// The engine's methods are `async` so that network stores can wait on I/O; with a store
/// whose futures are ready at once (the in-memory store), one poll completes them. This lets a
/// benchmark, a test or a single-threaded firmware loop drive the engine with no runtime.
/// Returns `None` if the future was not ready, which means the store needs a real executor.
pub fn block_on<F: Future>(future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}
