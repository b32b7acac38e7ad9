//! The Python objects the engine calls, imported once and cached for the process.
//!
//! Keeping every import in one place makes the engine's dependencies on Python visible at a
//! glance: the stdlib pieces it uses on the hot path, and the parts of blockon that are
//! clearer in Python: `blockon._arguments` (teaching error messages), `blockon._reentry`
//! (re-entrant loop driving) and `blockon._futures` (the futures `submit` hands out). It also
//! holds the helpers every message that names a Python object uses, so they all name it the
//! same way.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

pub(crate) struct Cached {
    /// `asyncio._get_running_loop`: the running loop of the calling thread, or None.
    pub(crate) get_running_loop: Py<PyAny>,
    /// `sys.getrecursionlimit`: read at each re-entrant run (the limit can change).
    pub(crate) recursion_limit: Py<PyAny>,
    /// `asyncio.current_task`.
    pub(crate) current_task: Py<PyAny>,
    /// `asyncio.tasks._enter_task` and `_leave_task` (C-accelerated), if this Python has
    /// them: they make a task current, for the eager first step (see `eager_task`).
    pub(crate) enter_task: Option<Py<PyAny>>,
    pub(crate) leave_task: Option<Py<PyAny>>,
    /// `contextvars.copy_context`.
    pub(crate) copy_context: Py<PyAny>,
    /// `types.CoroutineType`, to recognise native coroutines without a Python call.
    pub(crate) coroutine_type: Py<PyType>,
    /// `asyncio.CancelledError`.
    pub(crate) asyncio_cancelled: Py<PyType>,
    /// `concurrent.futures.CancelledError`, what sync callers see for work cancelled elsewhere.
    pub(crate) futures_cancelled: Py<PyType>,
    /// `concurrent.futures.Future`, what `submit` returns.
    pub(crate) future_type: Py<PyAny>,
    /// `blockon._arguments.awaitable_iterator(obj, api)`: the iterator to drive, or a teaching TypeError.
    pub(crate) awaitable_iterator: Py<PyAny>,
    /// `blockon._reentry.drive_until(loop, queued, done, cancel, timeout, grace) -> bool`:
    /// re-entrant running.
    pub(crate) drive_until: Py<PyAny>,
    /// `blockon._reentry.check_reentry(loop)`: the RuntimeError for a loop that cannot re-enter.
    pub(crate) check_reentry: Py<PyAny>,
    /// `blockon._futures.settle_future(future, kind, value)`.
    pub(crate) settle_future: Py<PyAny>,
    /// `blockon._futures.link_future(future) -> link`: ties a `submit` future to its task.
    pub(crate) link_future: Py<PyAny>,
    /// `blockon._futures.attach_task(link, loop, task)`: the task exists now.
    pub(crate) attach_task: Py<PyAny>,
    /// `blockon._blockon._spawn_here`, scheduled on foreign loops.
    pub(crate) spawn_here: Py<PyAny>,
}

static CACHED: PyOnceLock<Cached> = PyOnceLock::new();

fn attr<'py>(py: Python<'py>, module: &str, name: &str) -> PyResult<Bound<'py, PyAny>> {
    py.import(module)?.getattr(name)
}

/// The cached objects, imported on first use.
pub(crate) fn cached(py: Python<'_>) -> PyResult<&Cached> {
    CACHED.get_or_try_init(py, || {
        let arguments = py.import("blockon._arguments")?;
        let reentry = py.import("blockon._reentry")?;
        let futures = py.import("blockon._futures")?;
        Ok(Cached {
            get_running_loop: attr(py, "asyncio", "_get_running_loop")?.unbind(),
            recursion_limit: attr(py, "sys", "getrecursionlimit")?.unbind(),
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
            awaitable_iterator: arguments.getattr("awaitable_iterator")?.unbind(),
            drive_until: reentry.getattr("drive_until")?.unbind(),
            check_reentry: reentry.getattr("check_reentry")?.unbind(),
            settle_future: futures.getattr("settle_future")?.unbind(),
            link_future: futures.getattr("link_future")?.unbind(),
            attach_task: futures.getattr("attach_task")?.unbind(),
            spawn_here: attr(py, "blockon._blockon", "_spawn_here")?.unbind(),
        })
    })
}

/// The name of `obj`'s type, as messages quote what they received (`'int'`, `'coroutine'`).
pub(crate) fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map_or_else(|_| "?".to_owned(), |name| name.to_string())
}

/// `'int' (42)`: the type and a short repr, as messages quote a value a protocol method
/// returned when it should have returned something else.
pub(crate) fn described(obj: &Bound<'_, PyAny>) -> String {
    /// Enough to recognise the value; a huge one must not swamp the message.
    const LONGEST: usize = 80;
    let repr = obj
        .repr()
        .map_or_else(|_| "?".to_owned(), |repr| repr.to_string());
    let repr = if repr.chars().count() > LONGEST {
        format!("{}...", repr.chars().take(LONGEST).collect::<String>())
    } else {
        repr
    };
    format!("'{}' ({repr})", type_name(obj))
}

/// `obj.__qualname__` where it has a string one (coroutines, async generators, functions).
pub(crate) fn qualname(obj: &Bound<'_, PyAny>) -> Option<String> {
    obj.getattr_opt(pyo3::intern!(obj.py(), "__qualname__"))
        .ok()
        .flatten()
        .and_then(|name| name.extract().ok())
}

/// What a name made for `obj` calls it: its `__qualname__` (an async generator's
/// `numbers`), or else its type's name.
pub(crate) fn name_of(obj: &Bound<'_, PyAny>) -> String {
    qualname(obj).unwrap_or_else(|| type_name(obj))
}
