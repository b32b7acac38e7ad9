//! The home loop of a worker thread started by `blockon.to_thread`: a bare `blockon.run()`
//! in that thread runs its awaitable on the loop that awaited `to_thread`.
//!
//! A thread-local rather than a context variable: the worker's context is a copy of the
//! caller's, and anything set in it would leak into tasks started from the worker.

use std::cell::RefCell;

use pyo3::prelude::*;

use crate::lifecycle::interpreter_exiting;

thread_local! {
    static HOME: RefCell<Option<Py<PyAny>>> = const { RefCell::new(None) };
}

/// Sets (or with None clears) this thread's home loop; returns the previous one.
#[pyfunction]
#[pyo3(signature = (event_loop, /))]
pub(crate) fn _set_home_loop(event_loop: Option<Py<PyAny>>) -> Option<Py<PyAny>> {
    HOME.with(|home| home.replace(event_loop))
}

/// This thread's home loop, if it is a `to_thread` worker.
pub(crate) fn home_loop(py: Python<'_>) -> Option<Bound<'_, PyAny>> {
    HOME.with(|home| home.borrow().as_ref().map(|l| l.bind(py).clone()))
}

/// Whether a `to_thread` worker should stop waiting because the interpreter is exiting: its
/// work is cancelled (and the cleanup awaited), so the interpreter's join of the worker
/// cannot hang.
pub(crate) fn worker_must_stop(py: Python<'_>) -> bool {
    interpreter_exiting() && home_loop(py).is_some()
}
