//! Waking parked callers once the loop thread has let go of the GIL.
//!
//! A caller whose awaitable is still running parks on its call's slot. When the loop thread
//! settles that call it holds the GIL, and often goes on holding it for a while (the rest of
//! a batch of jobs, the rest of the loop's turn). A caller woken at once wakes only to find
//! the GIL taken: it sleeps again on the GIL's own condition variable and must be woken a
//! second time when the GIL is free, and on a CPU it shares with the loop thread it first
//! pre-empts the very thread it is waiting for. With many callers that doubled the thread
//! switches per call. So a loop thread of blockon's own keeps the wake-ups of parked callers
//! it settled, and makes them all at the next point where it releases the GIL: when it spins
//! for work, before it blocks in its selector, at the end of a pulse (`loop_spin`,
//! `selector`, `pulse`), and at the end of each batch of jobs.
//!
//! Wake-ups are kept only while a flush is sure to come (`set_deferring`): on a loop
//! thread whose selector blockon wraps, always (the loop always comes back to its
//! selector); on a pulsed loop, only while pulses run (a loop that went idle blocks where
//! blockon cannot see it, and a wake-up kept then would wait for the caller's next
//! signal check, 100 ms later). On any other loop (`loop=`, a `to_thread` worker's home
//! loop) a settled call wakes its caller at once.

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use pyo3::prelude::*;

use crate::completion::Call;

thread_local! {
    /// Wake-ups are kept on this thread: a flush is sure to come.
    static DEFERRING: Cell<bool> = const { Cell::new(false) };
    /// The calls whose parked callers are still to be woken.
    static KEPT: RefCell<Vec<Arc<Call>>> = const { RefCell::new(Vec::new()) };
}

/// Whether the calling thread (a blockon loop thread) keeps wake-ups from now on. Turning
/// it off does not flush: flush first.
pub(crate) fn set_deferring(deferring: bool) {
    DEFERRING.with(|d| d.set(deferring));
}

/// Wakes `call`'s parked caller: later on a thread that flushes, at once elsewhere.
pub(crate) fn wake_later(call: &Arc<Call>) {
    if DEFERRING.with(Cell::get) {
        KEPT.with(|kept| kept.borrow_mut().push(Arc::clone(call)));
    } else {
        call.outcome.wake();
    }
}

/// Whether wake-ups are kept on this thread.
pub(crate) fn pending() -> bool {
    KEPT.with(|kept| !kept.borrow().is_empty())
}

/// Makes the kept wake-ups. Call it with the GIL released (inside `py.detach`).
pub(crate) fn flush() {
    let calls = KEPT.with(|kept| std::mem::take(&mut *kept.borrow_mut()));
    for call in calls {
        call.outcome.wake();
    }
}

/// Releases the GIL to make the kept wake-ups, if there are any.
pub(crate) fn flush_detached(py: Python<'_>) {
    if pending() {
        py.detach(flush);
    }
}
