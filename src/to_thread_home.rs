//! The home loop of a worker thread started by `blockon.to_thread`: a bare `blockon.run()`
//! in that thread runs its awaitable on the loop that awaited `to_thread`.
//!
//! A thread-local rather than a context variable: the worker's context is a copy of the
//! caller's, and anything set in it would leak into tasks started from the worker.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::prelude::*;

thread_local! {
    static HOME: RefCell<Option<Py<PyAny>>> = const { RefCell::new(None) };
}

/// Sets (or with None clears) this thread's home loop; returns the previous one.
#[pyfunction]
#[pyo3(signature = (event_loop, /))]
pub fn _set_home_loop(event_loop: Option<Py<PyAny>>) -> Option<Py<PyAny>> {
    HOME.with(|home| home.replace(event_loop))
}

/// This thread's home loop, if it is a `to_thread` worker.
pub fn home_loop(py: Python<'_>) -> Option<Bound<'_, PyAny>> {
    HOME.with(|home| home.borrow().as_ref().map(|l| l.bind(py).clone()))
}

/// Set when the interpreter starts exiting, before it joins its threads.
static EXITING: AtomicBool = AtomicBool::new(false);

/// Registered to run when the interpreter starts exiting, before it joins the threads it
/// waits for (`to_thread` workers among them): workers still waiting on a loop stop waiting
/// (their work is cancelled and its cleanup awaited), so the join cannot hang.
#[pyfunction]
pub fn _interpreter_exiting() {
    EXITING.store(true, Ordering::Release);
}

/// Whether a `to_thread` worker should stop waiting because the interpreter is exiting.
pub fn worker_must_stop(py: Python<'_>) -> bool {
    EXITING.load(Ordering::Acquire) && home_loop(py).is_some()
}
