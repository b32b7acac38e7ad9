//! The Python objects the engine calls, imported once and cached for the process.
//!
//! Keeping every import in one place makes the engine's dependencies on Python visible at a
//! glance: the stdlib pieces it uses on the hot path, and the small helper module
//! `blockon._hooks` where the parts that are clearer in Python live (re-entrant loop driving,
//! settling `concurrent.futures` futures, teaching error messages).

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

pub struct Cached {
    /// `asyncio._get_running_loop`: the running loop of the calling thread, or None.
    pub get_running_loop: Py<PyAny>,
    /// `asyncio.current_task`.
    pub current_task: Py<PyAny>,
    /// `asyncio.tasks._enter_task` and `_leave_task` (C-accelerated), if this Python has
    /// them: they make a task current, for the eager first step (see `calls`).
    pub enter_task: Option<Py<PyAny>>,
    pub leave_task: Option<Py<PyAny>>,
    /// `contextvars.copy_context`.
    pub copy_context: Py<PyAny>,
    /// `types.CoroutineType`, to recognise native coroutines without a Python call.
    pub coroutine_type: Py<PyType>,
    /// `asyncio.CancelledError`.
    pub asyncio_cancelled: Py<PyType>,
    /// `concurrent.futures.CancelledError`, what sync callers see for work cancelled elsewhere.
    pub futures_cancelled: Py<PyType>,
    /// `concurrent.futures.Future`, what `submit` returns.
    pub future_type: Py<PyAny>,
    /// `blockon._hooks.awaitable_iterator(obj)`: the iterator to drive, or a teaching TypeError.
    pub awaitable_iterator: Py<PyAny>,
    /// `blockon._hooks.drive_until(loop, queued, done, cancel, timeout, grace) -> bool`:
    /// re-entrant running.
    pub drive_until: Py<PyAny>,
    /// `blockon._hooks.check_reentry(loop)`: the RuntimeError for a loop that cannot re-enter.
    pub check_reentry: Py<PyAny>,
    /// `blockon._hooks.settle_future(future, kind, value)`.
    pub settle_future: Py<PyAny>,
    /// `blockon._hooks.link_future(future) -> link`: ties a `submit` future to its task.
    pub link_future: Py<PyAny>,
    /// `blockon._hooks.attach_task(link, loop, task)`: the task exists now.
    pub attach_task: Py<PyAny>,
    /// `blockon._blockon._spawn_here`, scheduled on foreign loops.
    pub spawn_here: Py<PyAny>,
}

static CACHED: PyOnceLock<Cached> = PyOnceLock::new();

fn attr<'py>(py: Python<'py>, module: &str, name: &str) -> PyResult<Bound<'py, PyAny>> {
    py.import(module)?.getattr(name)
}

/// The cached objects, imported on first use.
pub fn cached(py: Python<'_>) -> PyResult<&Cached> {
    CACHED.get_or_try_init(py, || {
        let hooks = py.import("blockon._hooks")?;
        Ok(Cached {
            get_running_loop: attr(py, "asyncio", "_get_running_loop")?.unbind(),
            copy_context: attr(py, "contextvars", "copy_context")?.unbind(),
            current_task: attr(py, "asyncio", "current_task")?.unbind(),
            enter_task: attr(py, "asyncio.tasks", "_enter_task")
                .ok()
                .map(Bound::unbind),
            leave_task: attr(py, "asyncio.tasks", "_leave_task")
                .ok()
                .map(Bound::unbind),
            coroutine_type: attr(py, "types", "CoroutineType")?.cast_into()?.unbind(),
            asyncio_cancelled: attr(py, "asyncio", "CancelledError")?.cast_into()?.unbind(),
            futures_cancelled: attr(py, "concurrent.futures", "CancelledError")?
                .cast_into()?
                .unbind(),
            future_type: attr(py, "concurrent.futures", "Future")?.unbind(),
            awaitable_iterator: hooks.getattr("awaitable_iterator")?.unbind(),
            drive_until: hooks.getattr("drive_until")?.unbind(),
            check_reentry: hooks.getattr("check_reentry")?.unbind(),
            settle_future: hooks.getattr("settle_future")?.unbind(),
            link_future: hooks.getattr("link_future")?.unbind(),
            attach_task: hooks.getattr("attach_task")?.unbind(),
            spawn_here: attr(py, "blockon._blockon", "_spawn_here")?.unbind(),
        })
    })
}
