//! Starting a driver's task with its first step run at once, inside the task, as Python
//! 3.12's eager tasks do: work that never suspends finishes without waiting for another turn
//! of the loop. Every task the engine starts for a driver starts here, on whichever loop runs
//! it (blockon's loop thread, a `loop=` target, a `to_thread` worker's home loop, or the
//! caller's own loop when running re-entrantly).
//!
//! The engine's own emulation on every version, rather than asyncio's eager tasks (3.12's
//! `eager_task_factory`, 3.14's `eager_start=`): those would need a task factory installed on
//! the user's loop, or a branch per version, for the same effect.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::completion::Outcome;
use crate::driver::Driver;
use crate::py::cached;

/// Starts a task for `driver` on `event_loop` (which must be running in this thread) in
/// `context` (default: a copy of the current one), and remembers it for cancellation.
pub(crate) fn spawn_task(
    event_loop: &Bound<'_, PyAny>,
    driver: &Bound<'_, Driver>,
    context: Option<&Bound<'_, PyAny>>,
    link: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let py = event_loop.py();
    let kwargs = PyDict::new(py);
    if let Some(context) = context {
        kwargs.set_item(intern!(py, "context"), context)?;
    }
    let ready = event_loop.getattr_opt(intern!(py, "_ready"))?;
    let before = ready.as_ref().map_or(Ok(0), PyAnyMethods::len)?;
    let task = event_loop.call_method(intern!(py, "create_task"), (driver,), Some(&kwargs))?;
    if let Some(link) = link {
        cached(py)?
            .attach_task
            .call1(py, (link, event_loop, &task))?;
    }
    // `create_task` queued the task's own first step last in the ready queue, if the queue
    // grew by exactly one: that step is held back while the eager step runs.
    let held = match ready {
        Some(ready) if ready.len()? == before + 1 => Some(ready),
        _ => None,
    };
    start_eagerly(event_loop, &task, driver, context, held)?;
    if let Some(call) = driver.get().call() {
        if !driver.get().is_finished() {
            call.set_task(&task)?;
        }
    }
    Ok(())
}

/// Runs the task's first step now, inside the task (it is the current task meanwhile, and
/// its context is entered), as Python 3.12's eager tasks do: work that never suspends
/// finishes without waiting for another turn of the loop. The task's own first step then
/// takes over where this one stopped.
///
/// That own first step is held back (taken out of `ready` and put back after): sync code in
/// the eager step may run the loop re-entrantly, which must not step this same task a second
/// time. Loops without a visible ready queue (uvloop) cannot be re-entered at all.
///
/// Skipped where asyncio lacks the task-switching functions (the task then simply runs on
/// the loop's next turn).
fn start_eagerly(
    event_loop: &Bound<'_, PyAny>,
    task: &Bound<'_, PyAny>,
    driver: &Bound<'_, Driver>,
    context: Option<&Bound<'_, PyAny>>,
    ready: Option<Bound<'_, PyAny>>,
) -> PyResult<()> {
    let py = event_loop.py();
    let c = cached(py)?;
    let (Some(enter), Some(leave)) = (&c.enter_task, &c.leave_task) else {
        return Ok(());
    };
    let (enter, leave) = (enter.bind(py), leave.bind(py));
    let held = ready
        .map(|ready| {
            ready
                .call_method0(intern!(py, "pop"))
                .map(|handle| (ready, handle))
        })
        .transpose()?;
    let outer = c.current_task.bind(py).call1((event_loop,))?;
    let nested = !outer.is_none();
    if nested {
        leave.call1((event_loop, &outer))?;
    }
    enter.call1((event_loop, task))?;
    let eager = driver.getattr(intern!(py, "_eager"))?;
    let stepped = match context {
        Some(context) => context.call_method1(intern!(py, "run"), (eager,)).map(drop),
        None => eager.call0().map(drop),
    };
    leave.call1((event_loop, task))?;
    if nested {
        enter.call1((event_loop, &outer))?;
    }
    if let Some((ready, handle)) = held {
        ready.call_method1(intern!(py, "append"), (handle,))?;
    }
    stepped
}

/// Called on a foreign loop through `call_soon_threadsafe`: starts the driver's task there.
#[pyfunction]
pub(crate) fn _spawn_here(
    event_loop: &Bound<'_, PyAny>,
    driver: &Bound<'_, Driver>,
    context: &Bound<'_, PyAny>,
) {
    if let Err(err) = spawn_task(event_loop, driver, Some(context), None) {
        let py = event_loop.py();
        let outcome = Outcome::Raised(err.into_value(py).into_any());
        if let Err(err) = driver.get().abandon(py, outcome) {
            err.write_unraisable(py, Some(&PyString::new(py, "blockon: starting a task")));
        }
    }
}
