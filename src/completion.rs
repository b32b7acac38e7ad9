//! Completion slots: the one-shot cells a sync caller waits on while its awaitable runs on a
//! loop thread.
//!
//! A [`Slot`] is written once (first writer wins) from the loop thread and read once by the
//! waiting caller. The `done` flag is an atomic so a caller can spin on it without touching
//! the mutex; the mutex and condition variable are for callers that park. [`Call`] pairs a
//! slot holding the awaitable's [`Outcome`] with a weak reference to the asyncio task running
//! it, which is what cancellation (timeouts, Ctrl-C) needs. The reference is weak on purpose:
//! the task holds the driver, the driver holds the call, and a strong reference back to the
//! task would be a cycle that Python's garbage collector cannot see through Rust.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use pyo3::prelude::*;
use pyo3::types::PyWeakrefReference;

use crate::deferred_wake;
use crate::waiter::Waitable;

/// Locks a mutex, ignoring poisoning: every critical section here only moves plain data, so a
/// panic inside one cannot leave it half-updated.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A one-shot cell that one thread completes and another waits on.
pub(crate) struct Slot<T> {
    done: AtomicBool,
    /// A waiter is parked (or about to park) on `ready`; completing must notify it.
    parked: AtomicBool,
    value: Mutex<Option<T>>,
    ready: Condvar,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Self {
            done: AtomicBool::new(false),
            parked: AtomicBool::new(false),
            value: Mutex::new(None),
            ready: Condvar::new(),
        }
    }
}

impl<T> Slot<T> {
    /// Stores `value` unless the slot is already complete; returns whether it was stored.
    pub(crate) fn complete(&self, value: T) -> bool {
        let (stored, parked) = self.complete_quietly(value);
        if parked {
            self.wake();
        }
        stored
    }

    /// Stores `value` unless the slot is already complete, without waking a parked waiter;
    /// returns whether it was stored, and whether a waiter is parked and must be woken
    /// ([`Slot::wake`]). A waiter sets `parked` under the mutex before it checks `done` and
    /// sleeps, so it is either seen here or sees `done` itself; no wake-up (a system call)
    /// otherwise.
    pub(crate) fn complete_quietly(&self, value: T) -> (bool, bool) {
        let mut guard = lock(&self.value);
        if self.done.load(Ordering::Relaxed) {
            return (false, false);
        }
        *guard = Some(value);
        self.done.store(true, Ordering::Release);
        drop(guard);
        (true, self.parked.load(Ordering::Acquire))
    }

    /// Wakes the waiter parked on a complete slot. (`done` was set under the mutex, which a
    /// waiter holds from its check of `done` until it sleeps, so this cannot fall between
    /// the two.)
    pub(crate) fn wake(&self) {
        self.ready.notify_all();
    }

    /// Whether a value has been stored (it may have been taken since).
    pub(crate) fn is_complete(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// Takes the stored value, if any.
    pub(crate) fn take(&self) -> Option<T> {
        lock(&self.value).take()
    }

    /// Parks the calling thread until the slot is complete or `until` passes; returns whether
    /// it is complete.
    pub(crate) fn park_until(&self, until: Instant) -> bool {
        let mut guard = lock(&self.value);
        self.parked.store(true, Ordering::Release);
        loop {
            if self.done.load(Ordering::Acquire) {
                return true;
            }
            let now = Instant::now();
            if now >= until {
                return false;
            }
            guard = self
                .ready
                .wait_timeout(guard, until - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl<T: Send> Waitable for Slot<T> {
    fn is_ready(&self) -> bool {
        self.is_complete()
    }

    fn park_until(&self, until: Instant) -> bool {
        Slot::park_until(self, until)
    }
}

/// How an awaitable ended.
pub(crate) enum Outcome {
    /// It returned this value.
    Value(Py<PyAny>),
    /// It raised this exception (any `BaseException`).
    Raised(Py<PyAny>),
    /// It ended with `asyncio.CancelledError`.
    Cancelled,
    /// Its task vanished without finishing: the loop running it stopped or closed.
    Lost,
}

/// One blocking call in flight: its outcome and a way to cancel its task.
#[derive(Default)]
pub(crate) struct Call {
    pub(crate) outcome: Slot<Outcome>,
    task: Mutex<Option<Py<PyWeakrefReference>>>,
    /// The caller stopped waiting for the cleanup (its grace after Ctrl-C passed, or a second
    /// Ctrl-C came): the loop thread's shutdown cancels the task but does not wait for it a
    /// second time.
    abandoned: AtomicBool,
}

impl Call {
    /// Remembers the task running this call (weakly: see the module docs).
    pub(crate) fn set_task(&self, task: &Bound<'_, PyAny>) -> PyResult<()> {
        let weak = PyWeakrefReference::new(task)?;
        *lock(&self.task) = Some(weak.unbind());
        Ok(())
    }

    /// Cancels the task running this call, if it is still alive. Loop thread only.
    pub(crate) fn cancel_task(&self, py: Python<'_>) -> PyResult<()> {
        let weak = lock(&self.task).as_ref().map(|w| w.clone_ref(py));
        if let Some(task) = weak.and_then(|w| w.bind(py).upgrade()) {
            task.call_method0(pyo3::intern!(py, "cancel"))?;
        }
        Ok(())
    }

    /// The caller gave up on the cleanup (see the field).
    pub(crate) fn abandon(&self) {
        self.abandoned.store(true, Ordering::Release);
    }

    /// Whether the caller gave up on the cleanup while the awaitable still ran.
    pub(crate) fn is_abandoned(&self) -> bool {
        self.abandoned.load(Ordering::Acquire) && !self.outcome.is_complete()
    }

    /// Stores the outcome (first one wins) and drops the task reference.
    pub(crate) fn settle(&self, outcome: Outcome) {
        self.outcome.complete(outcome);
        lock(&self.task).take();
    }

    /// `settle`, on the loop thread that runs the call: a parked caller is woken once the
    /// loop thread lets go of the GIL (`deferred_wake`), not while it still holds it.
    pub(crate) fn settle_from_loop(self: &Arc<Self>, py: Python<'_>, outcome: Outcome) {
        let (_, parked) = self.outcome.complete_quietly(outcome);
        lock(&self.task).take();
        crate::pulse::settled(py);
        if parked {
            deferred_wake::wake_later(self);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;
    use std::time::Duration;

    #[test]
    fn first_completion_wins() {
        let slot = Slot::default();
        assert!(!slot.is_complete());
        assert!(slot.complete(1));
        assert!(!slot.complete(2));
        assert!(slot.is_complete());
        assert_eq!(slot.take(), Some(1));
        assert_eq!(slot.take(), None);
        assert!(slot.is_complete(), "taking does not un-complete");
    }

    #[test]
    fn park_times_out_when_nobody_completes() {
        let slot: Slot<u8> = Slot::default();
        let start = Instant::now();
        assert!(!slot.park_until(start + Duration::from_millis(20)));
        assert!(start.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn park_wakes_on_completion_from_another_thread() {
        let slot = Arc::new(Slot::default());
        let writer = {
            let slot = Arc::clone(&slot);
            thread::spawn(move || slot.complete(7_u32))
        };
        assert!(slot.park_until(Instant::now() + Duration::from_secs(30)));
        assert!(writer.join().unwrap());
        assert_eq!(slot.take(), Some(7));
    }

    #[test]
    fn many_writers_one_winner() {
        let slot = Arc::new(Slot::default());
        let wins: usize = (0..8)
            .map(|i| {
                let slot = Arc::clone(&slot);
                thread::spawn(move || usize::from(slot.complete(i)))
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum();
        assert_eq!(wins, 1);
        assert!(slot.take().is_some());
    }
}
