//! The process's default loop thread and the module-level functions that use it.
//!
//! The Python package registers its `LoopThread` class as the factory at import; the first
//! use creates the one instance, which then lives as long as the process. After a fork it
//! starts a fresh thread in the child (see `lifecycle`); once closed
//! (`default_loop_thread().close()`) it starts afresh on next use the same way, so
//! module-level calls never stop working because something closed the shared instance, and
//! what holds it (the module-level functions are its bound methods, twins are bound to it)
//! keeps working too. The exception is interpreter exit, which closes it for good: a loop
//! thread started after that would never be closed.
//!
//! Rejected: replacing a closed default with a new object. Everything bound to the old one
//! would then fail as closed, for as long as the process lives.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple};

use crate::awaitable::discard;
use crate::blocking::Api;
use crate::loop_thread::{self, LoopThreadBase};
use crate::run_args;

static FACTORY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static DEFAULT: PyOnceLock<Py<LoopThreadBase>> = PyOnceLock::new();

/// Registers the class the default loop thread is made from (once, at import).
#[pyfunction]
pub(crate) fn _set_default_factory(py: Python<'_>, factory: Py<PyAny>) {
    let _ = FACTORY.set(py, factory);
}

/// The default loop thread (created, not started, on first use).
pub(crate) fn default_loop_thread(py: Python<'_>) -> PyResult<Bound<'_, LoopThreadBase>> {
    let default = DEFAULT.get_or_try_init(py, || {
        let factory = FACTORY
            .get(py)
            .ok_or_else(|| PyRuntimeError::new_err("import blockon, not blockon._blockon"))?;
        let made = factory.bind(py).call0()?.cast_into::<LoopThreadBase>()?;
        made.get().reopen_when_closed();
        PyResult::Ok(made.unbind())
    })?;
    Ok(default.bind(py).clone())
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
