//! Checking what users pass in: awaitables and timeouts.
//!
//! A native coroutine (by far the common case) is recognised by its exact type without a
//! Python call. Anything else goes to `blockon._hooks.awaitable_iterator`, which handles
//! Futures, Tasks, objects with `__await__` and generator-based coroutines, and writes the
//! error messages that teach (an async function passed uncalled, an async generator passed
//! where a coroutine belongs).

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;

use crate::py::cached;

/// The object a driver steps for `aw`: the coroutine itself, or `aw.__await__()`.
/// `api` names the public function, for error messages.
pub fn prepare<'py>(aw: &Bound<'py, PyAny>, api: &str) -> PyResult<Bound<'py, PyAny>> {
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
pub fn discard(coro: &Bound<'_, PyAny>) {
    if let Ok(Some(close)) = coro.getattr_opt(intern!(coro.py(), "close")) {
        let _ = close.call0();
    }
}

/// Seconds from a `timeout=` argument: `None`, or a number (negative means "already due").
pub fn parse_timeout(timeout: Option<&Bound<'_, PyAny>>) -> PyResult<Option<f64>> {
    let Some(timeout) = timeout else {
        return Ok(None);
    };
    let seconds: f64 = timeout.extract().map_err(|_| {
        let kind = timeout
            .get_type()
            .name()
            .map_or_else(|_| "?".to_owned(), |n| n.to_string());
        PyTypeError::new_err(format!(
            "timeout must be a number of seconds or None, got '{kind}': pass e.g. timeout=2.5"
        ))
    })?;
    if seconds.is_nan() {
        return Err(PyValueError::new_err(
            "timeout must be a number of seconds or None, got NaN",
        ));
    }
    Ok(Some(seconds))
}
