//! Checking the awaitables users pass in: what to step for one, closing one that will never
//! run, and refusing one bound to a loop that cannot run it.
//!
//! A native coroutine (by far the common case) is recognised by its exact type without a
//! Python call. Anything else goes to `blockon._arguments.awaitable_iterator`, which handles
//! Futures, Tasks, objects with `__await__` and generator-based coroutines, and writes the
//! error messages that teach (an async function passed uncalled, an async generator passed
//! where a coroutine belongs).

use pyo3::exceptions::PyRuntimeError;
use pyo3::intern;
use pyo3::prelude::*;

use crate::py::cached;

/// Whether `obj` is a native coroutine (`async def` called).
pub(crate) fn is_coroutine(obj: &Bound<'_, PyAny>) -> bool {
    cached(obj.py()).is_ok_and(|c| obj.get_type().is(c.coroutine_type.bind(obj.py())))
}

/// The object a driver steps for `aw`: the coroutine itself, or `aw.__await__()`.
/// `api` names the public function, for error messages.
pub(crate) fn prepare<'py>(aw: &Bound<'py, PyAny>, api: &str) -> PyResult<Bound<'py, PyAny>> {
    let py = aw.py();
    let c = cached(py)?;
    if aw.get_type().is(c.coroutine_type.bind(py)) {
        return Ok(aw.clone());
    }
    c.awaitable_iterator.bind(py).call1((aw, api))
}

/// Closes a coroutine that will never run because of an error, so Python does not warn that
/// it was never awaited. Errors from `close()` itself are ignored: the caller is already
/// raising the error that matters.
pub(crate) fn discard(coro: &Bound<'_, PyAny>) {
    if let Ok(Some(close)) = coro.getattr_opt(intern!(coro.py(), "close")) {
        let _ = close.call0();
    }
}

/// Refuses an awaitable bound to an event loop (a Task or Future: it has `get_loop()`) that
/// cannot run it: a closed loop, or `running`, the loop of the calling thread, when the call
/// will not run there (`nests` false) but block it while it waits. Without this check the
/// awaitable fails deep inside asyncio ("attached to a different loop") or never finishes.
/// Coroutines belong to no loop: nothing to check.
pub(crate) fn check_loop(
    aw: &Bound<'_, PyAny>,
    api: &str,
    running: Option<&Bound<'_, PyAny>>,
    nests: bool,
) -> PyResult<()> {
    let py = aw.py();
    let Some(get_loop) = aw.getattr_opt(intern!(py, "get_loop"))? else {
        return Ok(());
    };
    let Ok(owner) = get_loop.call0() else {
        return Ok(()); // not asyncio's get_loop: leave it to the awaitable itself
    };
    let closed = owner
        .call_method0(intern!(py, "is_closed"))
        .and_then(|closed| closed.is_truthy())
        .unwrap_or(false);
    if closed {
        return Err(PyRuntimeError::new_err(format!(
            "{api} cannot run {}: it belongs to the event loop {}, which is closed. Make it \
             anew inside the call: pass a coroutine that creates the task or future and \
             awaits it",
            aw.repr()?,
            owner.repr()?
        )));
    }
    if !nests && running.is_some_and(|running| running.is(&owner)) {
        return Err(PyRuntimeError::new_err(format!(
            "{api} cannot run {}: it belongs to the event loop {}, which the calling thread is \
             running, and that thread is blocked in {api} while it waits, so the loop cannot \
             run it. Pass nest=True to run it on that loop re-entrantly, or `await` it from \
             async code, or create it inside the coroutine passed to run()",
            aw.repr()?,
            owner.repr()?
        )));
    }
    Ok(())
}
