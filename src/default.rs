//! The process's default loop thread and the module-level functions that use it.
//!
//! The Python package registers its `LoopThread` class as the factory at import; the first
//! module-level call creates the one instance, which then lives for the process (after a
//! fork the same object starts a fresh thread in the child; see `lifecycle`).

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use crate::loop_thread::{self, LoopThreadBase};

static FACTORY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static DEFAULT: PyOnceLock<Py<LoopThreadBase>> = PyOnceLock::new();

/// Registers the class the default loop thread is made from (once, at import).
#[pyfunction]
pub fn _set_default_factory(py: Python<'_>, factory: Py<PyAny>) {
    let _ = FACTORY.set(py, factory);
}

/// The default loop thread (created, not started, on first use).
pub fn default_loop_thread(py: Python<'_>) -> PyResult<&Py<LoopThreadBase>> {
    DEFAULT.get_or_try_init(py, || {
        let factory = FACTORY
            .get(py)
            .ok_or_else(|| PyRuntimeError::new_err("import blockon, not blockon._blockon"))?;
        Ok(factory.bind(py).call0()?.cast_into::<LoopThreadBase>()?.unbind())
    })
}

/// Python's way to [`default_loop_thread`].
#[pyfunction]
pub fn _default_loop_thread(py: Python<'_>) -> PyResult<Py<LoopThreadBase>> {
    default_loop_thread(py).map(|p| p.clone_ref(py))
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
#[pyo3(signature = (aw, /, *, timeout=None, nest=false, r#loop=None))]
pub fn run(
    py: Python<'_>,
    aw: &Bound<'_, PyAny>,
    timeout: Option<&Bound<'_, PyAny>>,
    nest: bool,
    r#loop: Option<&Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    let portal = match default_loop_thread(py) {
        Ok(portal) => portal.bind(py),
        Err(err) => {
            crate::awaitable::discard(aw);
            return Err(err);
        }
    };
    loop_thread::run(portal, aw, timeout, nest, r#loop, true)
}

/// Start one awaitable on the default loop thread now; return a
/// ``concurrent.futures.Future`` for its result. ``future.cancel()`` cancels the task.
#[pyfunction]
#[pyo3(signature = (aw, /))]
pub fn submit(py: Python<'_>, aw: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    loop_thread::submit(default_loop_thread(py)?.bind(py), aw)
}
