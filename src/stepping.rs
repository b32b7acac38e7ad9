//! Stepping an awaitable by hand, as a task would: send a value or throw an exception into
//! it, and learn whether it yielded, returned or raised. Shared by the driver (one awaitable
//! per task) and sessions (many awaitables, one after another, in one task).

use pyo3::exceptions::{PyBaseException, PyStopIteration};
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::completion::Outcome;
use crate::py::cached;

/// What one step of an awaitable did, short of raising.
pub(crate) enum Sent {
    Yielded(Py<PyAny>),
    Returned(Py<PyAny>),
}

/// Sends `value` into `inner` (a coroutine or an `__await__` iterator).
pub(crate) fn send(inner: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<Sent> {
    let py = inner.py();
    let mut out: *mut ffi::PyObject = std::ptr::null_mut();
    // SAFETY: `inner` and `value` are live references held by the caller for the whole call;
    // PyIter_Send stores a new reference (or NULL) in `out`.
    let status = unsafe { ffi::PyIter_Send(inner.as_ptr(), value.as_ptr(), &raw mut out) };
    match status {
        // SAFETY: on PYGEN_NEXT and PYGEN_RETURN, `out` is a new, non-NULL reference.
        ffi::PySendResult::PYGEN_NEXT => Ok(Sent::Yielded(unsafe { own(py, out) })),
        // SAFETY: as above.
        ffi::PySendResult::PYGEN_RETURN => Ok(Sent::Returned(unsafe { own(py, out) })),
        ffi::PySendResult::PYGEN_ERROR => Err(PyErr::fetch(py)),
    }
}

/// Throws into `inner` what a task throws into its coroutine (`args` as given to `throw`).
pub(crate) fn throw(inner: &Bound<'_, PyAny>, args: &Bound<'_, PyTuple>) -> PyResult<Sent> {
    let py = inner.py();
    let Some(throw) = inner.getattr_opt(intern!(py, "throw"))? else {
        // Like `yield from`: an iterator without `throw` gets the exception raised at it.
        let exc = args.get_item(0)?;
        return Err(if exc.is_instance_of::<PyBaseException>() {
            PyErr::from_value(exc)
        } else {
            PyErr::from_value(exc.call0()?)
        });
    };
    match throw.call1(args) {
        Ok(yielded) => Ok(Sent::Yielded(yielded.unbind())),
        Err(err) if err.is_instance_of::<PyStopIteration>(py) => {
            let value = err.value(py).getattr(intern!(py, "value"))?;
            Ok(Sent::Returned(value.unbind()))
        }
        Err(err) => Err(err),
    }
}

/// Closes `inner` if it can be closed (no "never awaited" warning for one that never ran).
pub(crate) fn close(inner: &Bound<'_, PyAny>) -> PyResult<()> {
    match inner.getattr_opt(intern!(inner.py(), "close"))? {
        Some(close) => close.call0().map(drop),
        None => Ok(()),
    }
}

/// The outcome an exception escaping an awaitable stands for.
pub(crate) fn outcome_of(py: Python<'_>, err: PyErr) -> Outcome {
    let cancelled = cached(py).map(|c| err.is_instance(py, c.asyncio_cancelled.bind(py)));
    if matches!(cancelled, Ok(true)) {
        Outcome::Cancelled
    } else {
        Outcome::Raised(err.into_value(py).into_any())
    }
}

/// Takes ownership of a new reference returned by the C API.
///
/// # Safety
/// `ptr` must be a new, non-NULL reference.
unsafe fn own(py: Python<'_>, ptr: *mut ffi::PyObject) -> Py<PyAny> {
    // SAFETY: guaranteed by the caller.
    unsafe { Bound::from_owned_ptr(py, ptr) }.unbind()
}
