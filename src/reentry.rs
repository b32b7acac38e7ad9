//! Re-entrant running: `run(aw, nest=True)` from inside a running loop, and the loop thread
//! calling `run()` on itself, run `aw` on that same loop while the caller waits.
//!
//! The loop stepping itself lives in Python (`blockon._hooks.run_nested`): it is a short
//! sequence of asyncio calls whose correctness depends on asyncio's own internals, and reads
//! best next to them. This side wraps the awaitable in a [`Driver`] so the outcome lands in a
//! Rust slot, like every other path, and re-raises it from native code so tracebacks show the
//! awaitable's frames and no blockon frame.

use std::sync::Arc;

use pyo3::prelude::*;

use crate::calls::{deliver, timed_out};
use crate::completion::{Call, Outcome};
use crate::driver::{Driver, Target};
use crate::py::cached;

pub fn run_nested(
    event_loop: &Bound<'_, PyAny>,
    coro: Bound<'_, PyAny>,
    timeout: Option<f64>,
    grace: f64,
) -> PyResult<Py<PyAny>> {
    let py = event_loop.py();
    let c = cached(py)?;
    let call = Arc::new(Call::default());
    let driver = Bound::new(py, Driver::new(coro, Target::Call(Arc::clone(&call))))?;
    let context = c.copy_context.call0(py)?;
    let timed_out_flag = match c
        .run_nested
        .call1(py, (event_loop, &driver, context, timeout, grace))
    {
        Ok(flag) => flag.is_truthy(py)?,
        Err(err) => {
            // Unsupported loop (nothing ran yet), Ctrl-C, or the outer task was cancelled:
            // make sure the awaitable is closed either way.
            let _ = driver.get().abandon(py, Outcome::Cancelled);
            return Err(err);
        }
    };
    let outcome = call.outcome.take();
    if timed_out_flag && matches!(outcome, Some(Outcome::Cancelled)) {
        return Err(timed_out(timeout));
    }
    deliver(py, outcome)
}
