//! The `timeout=` rule, in one place: every public call that takes a timeout parses it here,
//! natively (`run`, and `gather` through it) or from Python through `_timeout_arg` (`map`,
//! `LoopThread.close`), so they all accept the same values and say the same thing about the
//! rest.
//!
//! The rule:
//! - `None`: no timeout.
//! - an `int` or a `float` (subclasses too): that many seconds. A `bool` is refused, though
//!   Python counts it as an int: `timeout=True` is a mistake, not one second.
//! - NaN is refused: it compares false with everything, so no deadline could ever pass.
//! - `+inf`, and any value too large for a float or a `Duration` (`10**400`, `1e300`): no
//!   timeout. Such a value asks to wait without limit, and must never overflow a deadline.
//! - negative: already expired, as `concurrent.futures` and `asyncio.timeout()` treat it: the
//!   work gets its first step (work that never suspends still returns its value), then it
//!   is cancelled.
//!
//! Rejected: accepting anything `float()` accepts (`Decimal`, strings of digits would pass
//! for some calls and not others), and refusing negatives (the standard library does not).

use std::time::{Duration, Instant};

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFloat, PyInt};

use crate::py::type_name;

/// Seconds from a `timeout=` argument (see the module docs); `api` is the public call the
/// messages name. `Ok(None)` means no timeout.
pub(crate) fn parse(value: Option<&Bound<'_, PyAny>>, api: &str) -> PyResult<Option<f64>> {
    let Some(value) = value.filter(|v| !v.is_none()) else {
        return Ok(None);
    };
    let number = !value.is_instance_of::<PyBool>()
        && (value.is_instance_of::<PyFloat>() || value.is_instance_of::<PyInt>());
    if !number {
        return Err(PyTypeError::new_err(format!(
            "{api}: timeout must be a number of seconds or None, got '{}': pass e.g. \
             timeout=2.5",
            type_name(value)
        )));
    }
    let seconds = match value.extract::<f64>() {
        Ok(seconds) => seconds,
        // An int too large for a float: far beyond any deadline, or far before now.
        Err(_) if value.lt(0)? => f64::NEG_INFINITY,
        Err(_) => return Ok(None),
    };
    if seconds.is_nan() {
        return Err(PyValueError::new_err(format!(
            "{api}: timeout must be a number of seconds or None, got nan"
        )));
    }
    if seconds >= Duration::MAX.as_secs_f64() {
        return Ok(None);
    }
    Ok(Some(seconds))
}

/// `_blockon._timeout_arg(value, api)`: [`parse`] for the Python half of the package.
#[pyfunction]
#[pyo3(signature = (value, api, /))]
pub(crate) fn _timeout_arg(value: &Bound<'_, PyAny>, api: &str) -> PyResult<Option<f64>> {
    parse(Some(value), api)
}

/// The deadline `seconds` from now; `None` for no deadline. Negative seconds are due now.
pub(crate) fn deadline_after(seconds: Option<f64>) -> Option<Instant> {
    let seconds = seconds?;
    let now = Instant::now();
    // Seconds `parse` let through can still reach past what an `Instant` holds: no deadline
    // then, rather than an overflow panic.
    Duration::try_from_secs_f64(seconds.max(0.0))
        .ok()
        .and_then(|d| now.checked_add(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines() {
        assert!(deadline_after(None).is_none());
        assert!(deadline_after(Some(-1.0)).unwrap() <= Instant::now());
        assert!(deadline_after(Some(f64::NEG_INFINITY)).unwrap() <= Instant::now());
        assert!(deadline_after(Some(1e19)).is_none());
    }
}
