//! The process's default loop thread and the module-level functions that use it.
//!
//! The Python package registers its `LoopThread` class as the factory at import; the first
//! module-level call creates the instance. After a fork the same object starts a fresh thread
//! in the child (see `lifecycle`). Once closed (`default_loop_thread().close()`), it is
//! replaced by a fresh one on next use, the way a fork replaces its thread: module-level
//! calls never stop working because something closed the shared instance. The exception is
//! interpreter exit, which closes it for good: a loop thread started after that would never
//! be closed.
//!
//! Rejected: a `PyOnceLock` (it cannot be replaced), and creating the replacement under the
//! lock (the factory is Python code, which may release the GIL to a thread that then waits
//! for the lock while holding the GIL).

use std::sync::Mutex;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple};

use crate::awaitable::discard;
use crate::blocking::Api;
use crate::completion::lock;
use crate::lifecycle::interpreter_exiting;
use crate::loop_thread::{self, LoopThreadBase};
use crate::run_args;

static FACTORY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static DEFAULT: Mutex<Option<Py<LoopThreadBase>>> = Mutex::new(None);

/// Registers the class the default loop thread is made from (once, at import).
#[pyfunction]
pub(crate) fn _set_default_factory(py: Python<'_>, factory: Py<PyAny>) {
    let _ = FACTORY.set(py, factory);
}

/// The default loop thread in `slot`, unless there is none or it must be replaced.
fn usable<'py>(
    py: Python<'py>,
    slot: Option<&Py<LoopThreadBase>>,
) -> Option<Bound<'py, LoopThreadBase>> {
    let current = slot?;
    let replace = current.get().is_closed() && !interpreter_exiting();
    (!replace).then(|| current.bind(py).clone())
}

/// The default loop thread (created, not started, on first use; replaced once closed).
pub(crate) fn default_loop_thread(py: Python<'_>) -> PyResult<Bound<'_, LoopThreadBase>> {
    if let Some(current) = usable(py, lock(&DEFAULT).as_ref()) {
        return Ok(current);
    }
    let factory = FACTORY
        .get(py)
        .ok_or_else(|| PyRuntimeError::new_err("import blockon, not blockon._blockon"))?;
    let fresh = factory.bind(py).call0()?.cast_into::<LoopThreadBase>()?;
    let mut slot = lock(&DEFAULT);
    if let Some(current) = usable(py, slot.as_ref()) {
        return Ok(current); // another thread made one meanwhile; ours never started
    }
    let old = slot.replace(fresh.clone().unbind());
    drop(slot);
    drop(old); // outside the lock: freeing it runs Python (weak-reference callbacks)
    Ok(fresh)
}

/// Python's way to [`default_loop_thread`].
#[pyfunction]
pub(crate) fn _default_loop_thread(py: Python<'_>) -> PyResult<Bound<'_, LoopThreadBase>> {
    default_loop_thread(py)
}

/// Run one awaitable and return its result, from synchronous code anywhere.
///
/// From a thread with no running loop, the awaitable runs on blockon's default loop thread
/// while this thread waits with the GIL released. From inside a running loop it also runs
/// there (blocking the caller's loop, with a warning after ``blocked_warning`` seconds),
/// unless ``nest=True``: then it runs on the caller's own loop, re-entrantly. In a
/// ``blockon.to_thread`` worker it runs on the loop that started the worker. ``loop=`` runs
/// it on that loop (running in another thread). ``timeout`` cancels it, waits for its
/// cleanup, and raises ``TimeoutError``. Ctrl-C cancels it too.
#[pyfunction]
#[pyo3(
    signature = (*args, **kwargs),
    text_signature = "(aw, /, *, timeout=None, nest=False, loop=None)"
)]
pub(crate) fn run(
    py: Python<'_>,
    args: &Bound<'_, PyTuple>,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<Py<PyAny>> {
    let api = Api::RUN;
    let args = run_args::run(args, kwargs, api.name)?;
    let loop_thread = match default_loop_thread(py) {
        Ok(loop_thread) => loop_thread,
        Err(err) => {
            discard(&args.aw);
            return Err(err);
        }
    };
    loop_thread::run(&loop_thread, args, api)
}

/// Start one awaitable on the default loop thread now; return a
/// ``concurrent.futures.Future`` for its result. ``future.cancel()`` cancels the task.
#[pyfunction]
#[pyo3(signature = (*args, **kwargs), text_signature = "(aw, /)")]
pub(crate) fn submit(
    py: Python<'_>,
    args: &Bound<'_, PyTuple>,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<Py<PyAny>> {
    let aw = run_args::submit(args, kwargs, "blockon.submit()")?;
    let loop_thread = match default_loop_thread(py) {
        Ok(loop_thread) => loop_thread,
        Err(err) => {
            discard(&aw);
            return Err(err);
        }
    };
    loop_thread::submit(&loop_thread, &aw)
}
