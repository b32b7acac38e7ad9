//! Blocking calls: hand one awaitable to a loop running in another thread, wait for its
//! outcome with the GIL released, and cancel it (then wait for its cleanup) on timeout or
//! Ctrl-C.
//!
//! Two kinds of loop take work: a blockon loop thread, through its inbox (one wake-up per
//! batch, woken after the GIL is released), and any other running loop, through
//! `call_soon_threadsafe` (the `loop=` argument and `to_thread` workers). Both settle the
//! same [`Call`], so waiting, timeouts and cancellation are written once, here; so are the
//! messages a waiting caller gets (the blocked-loop warning, the notice that Ctrl-C is
//! waiting for a cleanup).

use std::ffi::CString;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyKeyboardInterrupt, PyRuntimeError, PyRuntimeWarning, PyTimeoutError};
use pyo3::intern;
use pyo3::prelude::*;

use crate::completion::{Call, Outcome};
use crate::driver::{Driver, Target};
use crate::job::Job;
use crate::lifecycle::{closed_error, Core};
use crate::py::{cached, qualname, type_name};
use crate::timeout::deadline_after;
use crate::waiter::{self, Wake, SIGNAL_CHECK};

/// The public call a caller is in, as messages name it, and what to do instead of blocking
/// a running event loop with it.
#[derive(Clone, Copy)]
pub(crate) struct Api {
    pub(crate) name: &'static str,
    /// What the call waits for, where it has no name of its own.
    waits_for: &'static str,
    instead: &'static str,
    /// In a `to_thread` worker, the call runs on the worker's home loop (only the
    /// module-level `blockon.run()`: a method names its loop thread).
    pub(crate) follows_home: bool,
    /// Whether messages name the awaitable itself (its qualname) rather than `waits_for`:
    /// not for a coroutine of blockon's own, such as the one `gather` runs.
    names_awaitable: bool,
}

const RUN_INSTEAD: &str = "Pass nest=True to run the awaitable on the running loop itself, \
                           or await it directly.";

impl Api {
    /// `blockon.run()`, the module-level function.
    pub(crate) const RUN: Api = Api {
        name: "blockon.run()",
        waits_for: "the awaitable",
        instead: RUN_INSTEAD,
        follows_home: true,
        names_awaitable: true,
    };
    /// `LoopThread.run()`, the method.
    pub(crate) const LOOP_THREAD_RUN: Api = Api {
        name: "LoopThread.run()",
        waits_for: "the awaitable",
        instead: RUN_INSTEAD,
        follows_home: false,
        names_awaitable: true,
    };
    /// `LoopThread.gather()` (and `blockon.gather()`, the default loop thread's method).
    pub(crate) const GATHER: Api = Api {
        name: "gather()",
        waits_for: "the awaitables",
        instead: "Await asyncio.gather(...) from async code instead.",
        follows_home: false,
        names_awaitable: false,
    };
    /// `next()` on what `wrap_iter` returned.
    pub(crate) const ITER_NEXT: Api = Api {
        name: "next() on a blockon.wrap_iter() iterator",
        waits_for: "the async iterator",
        instead: "Iterate the async iterable with `async for` instead.",
        follows_home: false,
        names_awaitable: true,
    };
    /// Closing what `wrap_iter` returned.
    pub(crate) const ITER_CLOSE: Api = Api {
        name: "close() of a blockon.wrap_iter() iterator",
        waits_for: "the async iterator",
        instead: "Iterate the async iterable with `async for` instead.",
        follows_home: false,
        names_awaitable: true,
    };
    /// Entering what `wrap_context` returned.
    pub(crate) const CONTEXT_ENTER: Api = Api {
        name: "entering a blockon.wrap_context() manager",
        waits_for: "the async context manager",
        instead: "Use `async with` on the async context manager instead.",
        follows_home: false,
        names_awaitable: true,
    };
    /// Exiting what `wrap_context` returned.
    pub(crate) const CONTEXT_EXIT: Api = Api {
        name: "exiting a blockon.wrap_context() manager",
        waits_for: "the async context manager",
        instead: "Use `async with` on the async context manager instead.",
        follows_home: false,
        names_awaitable: true,
    };
}

/// Whose bound a blocking call's `timeout` is: that decides what happens when it runs out,
/// and what the `TimeoutError` says.
#[derive(Clone, Copy)]
pub(crate) enum Limit {
    /// The caller's `timeout=`: the work is cancelled and its cleanup awaited.
    Timeout,
    /// `cancel_grace`, given to `step` (`"aclose()"`) of a bridge dropped without closing:
    /// cancelled and awaited as for a timeout; the message must not cite a `timeout=` the
    /// user never gave.
    Grace(&'static str),
    /// `LoopThread.close()`'s bound on `step` (`"__aexit__()"`): abandoned, not cancelled,
    /// so a step that ignores cancellation cannot hold the close up; the loop thread's
    /// shutdown, which comes next, cancels its task.
    Deadline(&'static str),
}

/// How a blocking call waits.
pub(crate) struct Waiting<'py> {
    /// The public call, for messages.
    pub(crate) api: Api,
    /// What runs (the awaitable, or a bridge's async iterator or manager), for messages.
    pub(crate) what: Bound<'py, PyAny>,
    /// The bound in seconds, `timeout=` unless `limit` says otherwise.
    pub(crate) timeout: Option<f64>,
    /// Whose bound `timeout` is.
    pub(crate) limit: Limit,
    /// How long Ctrl-C waits for the cancelled awaitable's cleanup.
    pub(crate) grace: f64,
    /// Warn once after this many seconds that this running loop is blocked.
    pub(crate) blocked: Option<(f64, Bound<'py, PyAny>)>,
    /// The caller's own task (on the loop it blocks) and its cancellation count when the call
    /// began: if it is cancelled meanwhile (asyncio's Ctrl-C handler cancels the main task),
    /// the call ends with `CancelledError`, as an `await` would.
    pub(crate) caller_task: Option<(Bound<'py, PyAny>, usize)>,
}

impl Waiting<'_> {
    /// The `TimeoutError` for a bound that ran out.
    fn expired(&self) -> PyErr {
        let (Limit::Grace(step) | Limit::Deadline(step)) = self.limit else {
            return timed_out(self.timeout);
        };
        let what = self
            .what
            .repr()
            .map_or_else(|_| type_name(&self.what), |r| r.to_string());
        // Two decimals: what is left of a deadline is rarely a round number.
        let seconds = (self.timeout.unwrap_or_default() * 100.0).round() / 100.0;
        PyTimeoutError::new_err(if let Limit::Grace(_) = self.limit {
            format!(
                "{step} of {what} did not finish within the close grace of {seconds} s \
                 (LoopThread.cancel_grace); it was cancelled and its cleanup ran"
            )
        } else {
            format!(
                "{step} of {what} did not finish within {seconds} s, so it was abandoned; the \
                 loop thread's shutdown cancels its task"
            )
        })
    }

    fn caller_cancelled(&self) -> PyResult<bool> {
        let Some((task, before)) = &self.caller_task else {
            return Ok(false);
        };
        let now: usize = task
            .call_method0(intern!(task.py(), "cancelling"))?
            .extract()?;
        Ok(now > *before)
    }
}

/// Runs `coro` on a blockon loop thread and waits for it.
pub(crate) fn on_core(
    py: Python<'_>,
    core: &Core,
    coro: Bound<'_, PyAny>,
    how: &Waiting<'_>,
) -> PyResult<Py<PyAny>> {
    let c = cached(py)?;
    let call = Arc::new(Call::default());
    let context = c.copy_context.call0(py)?;
    let driver = Py::new(py, Driver::new(coro, Target::Call(Arc::clone(&call))))?;
    let job = Job::Run {
        driver: driver.clone_ref(py),
        context,
        link: None,
    };
    let cancel = |py: Python<'_>| Job::Cancel(driver.clone_ref(py));
    through_inbox(py, core, job, &call, &cancel, how)
}

/// Queues `job` on a loop thread and waits for `call`, which the job settles; on timeout or
/// Ctrl-C, queues `cancel(py)` and waits for the cleanup.
pub(crate) fn through_inbox(
    py: Python<'_>,
    core: &Core,
    job: Job,
    call: &Call,
    cancel: &dyn Fn(Python<'_>) -> Job,
    how: &Waiting<'_>,
) -> PyResult<Py<PyAny>> {
    let must_wake = match core.inbox.push(job) {
        Ok(must_wake) => must_wake,
        Err(job) => {
            job.refuse(py);
            return Err(closed_error());
        }
    };
    let inbox = &core.inbox;
    let kick = move || {
        if must_wake {
            inbox.wake();
        }
    };
    let cancel = |py: Python<'_>| {
        core.post(py, cancel(py));
        Ok(())
    };
    let gil_busy = || inbox.consumer_holds_gil();
    // A caller whose awaitable outlives the loop (it ignored cancellation while the loop
    // thread closed) must not wait forever for an outcome no one will write.
    let alive = |_py: Python<'_>| {
        if core.has_stopped() {
            return Err(PyRuntimeError::new_err(
                "the loop thread closed while this call waited, and its awaitable never \
                 finished (it did not end when cancelled at the loop's shutdown)",
            ));
        }
        Ok(())
    };
    let _waiting = inbox.waiting();
    let start = waiter::Start {
        kick: Some(&kick),
        spin: inbox.spin_for_call(),
        gil_busy: Some(&gil_busy),
    };
    wait(py, call, how, start, &cancel, Some(&alive))
}

/// Runs `coro` on `event_loop`, a loop running in another thread, and waits for it.
pub(crate) fn on_loop(
    py: Python<'_>,
    event_loop: &Bound<'_, PyAny>,
    coro: Bound<'_, PyAny>,
    how: &Waiting<'_>,
) -> PyResult<Py<PyAny>> {
    if let Err(err) = check_alive(event_loop) {
        crate::awaitable::discard(&coro);
        return Err(err);
    }
    let c = cached(py)?;
    let call = Arc::new(Call::default());
    let driver = Bound::new(py, Driver::new(coro, Target::Call(Arc::clone(&call))))?;
    // The context goes to the task itself (not to the callback that starts it), so the
    // eager first step and the later steps share it.
    let context = c.copy_context.call0(py)?;
    let scheduled = event_loop.call_method1(
        intern!(py, "call_soon_threadsafe"),
        (c.spawn_here.bind(py), event_loop, &driver, context),
    );
    let cancel = |_py: Python<'_>| {
        let cancel_it = driver.getattr(intern!(py, "_cancel"))?;
        // A loop that closed meanwhile cannot take the request; `alive` reports that.
        let _ = event_loop.call_method1(intern!(py, "call_soon_threadsafe"), (cancel_it,));
        Ok(())
    };
    let alive = |_py: Python<'_>| check_alive(event_loop);
    if let Err(err) = scheduled {
        if check_alive(event_loop).is_err() {
            // Refused by a closed loop: the awaitable never ran, so close it here.
            driver.get().abandon(py, Outcome::Cancelled)?;
        } else {
            // Interrupted (Ctrl-C) inside the call, perhaps after it queued the start: the
            // awaitable may be running on the loop already. Cancel it there, as Ctrl-C does.
            let ctrl_c = err.is_instance_of::<PyKeyboardInterrupt>(py);
            give_up(py, call.as_ref(), how, ctrl_c, &cancel, Some(&alive))?;
        }
        return Err(err);
    }
    let start = waiter::Start {
        spin: waiter::Spin::Budgeted,
        ..waiter::Start::default()
    };
    wait(py, &call, how, start, &cancel, Some(&alive))
}

/// `RuntimeError` unless `event_loop` is running and not closed.
fn check_alive(event_loop: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = event_loop.py();
    let closed = event_loop
        .call_method0(intern!(py, "is_closed"))?
        .is_truthy()?;
    let running = event_loop
        .call_method0(intern!(py, "is_running"))?
        .is_truthy()?;
    if closed || !running {
        let state = if closed { "closed" } else { "not running" };
        return Err(PyRuntimeError::new_err(format!(
            "the event loop {} is {state}, so it cannot run the awaitable. With loop=, pass a \
             loop that is running in another thread; in a to_thread worker, the loop that \
             started the worker has stopped",
            event_loop.repr()?
        )));
    }
    Ok(())
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

type Check<'a> = &'a dyn Fn(Python<'_>) -> PyResult<()>;

/// Waits for `call`; on timeout or a signal, cancels it and waits for its cleanup.
fn wait(
    py: Python<'_>,
    call: &Call,
    how: &Waiting<'_>,
    mut start: waiter::Start<'_>,
    cancel: Check<'_>,
    alive: Option<Check<'_>>,
) -> PyResult<Py<PyAny>> {
    let deadline = deadline_after(how.timeout);
    let mut warn_at = how
        .blocked
        .as_ref()
        .and_then(|(seconds, _)| deadline_after(Some(*seconds)));
    loop {
        let mut until = earliest(deadline, warn_at);
        if alive.is_some() || how.caller_task.is_some() {
            until = earliest(until, Some(Instant::now() + SIGNAL_CHECK));
        }
        let woke = waiter::wait(py, &call.outcome, until, std::mem::take(&mut start));
        let interrupt = match woke {
            Ok(Wake::Done) => return deliver(py, call.outcome.take()),
            Err(interrupt) => interrupt,
            Ok(Wake::Expired) => {
                let now = Instant::now();
                if deadline.is_some_and(|d| now >= d) {
                    if let Limit::Deadline(_) = how.limit {
                        if call.outcome.is_complete() {
                            return deliver(py, call.outcome.take()); // just in time
                        }
                        // Shutdown cancels it but does not wait for it again: it had its time.
                        call.abandon();
                        return Err(how.expired());
                    }
                    cancel(py)?;
                    return match cleanup(py, call, None, alive) {
                        Ok(Some(Outcome::Cancelled) | None) => Err(how.expired()),
                        Ok(outcome) => deliver(py, outcome),
                        Err(interrupt) => {
                            // Ctrl-C while the timeout's cleanup ran: the cancel is sent.
                            let ctrl_c = interrupt.is_instance_of::<PyKeyboardInterrupt>(py);
                            give_up(py, call, how, ctrl_c, &|_| Ok(()), alive)?;
                            Err(interrupt)
                        }
                    };
                }
                if how.caller_cancelled()? {
                    give_up(py, call, how, false, cancel, alive)?;
                    let cancelled = cached(py)?.asyncio_cancelled.bind(py).clone();
                    return Err(PyErr::from_type(cancelled, ()));
                }
                match warn_at {
                    Some(at) if now >= at => {
                        warn_at = None;
                        match warn_blocked(py, how) {
                            Ok(()) => continue,
                            Err(raised) => raised,
                        }
                    }
                    _ if crate::to_thread_home::worker_must_stop(py) => PyRuntimeError::new_err(
                        "the interpreter is exiting: this to_thread worker stopped waiting, \
                         and the awaitable was cancelled",
                    ),
                    _ => match alive.map_or(Ok(()), |alive| alive(py)) {
                        Ok(()) => continue,
                        Err(gone) => return Err(gone),
                    },
                }
            }
        };
        // Ctrl-C (or a warning turned error): cancel, give the cleanup its grace, re-raise.
        let ctrl_c = interrupt.is_instance_of::<PyKeyboardInterrupt>(py);
        give_up(py, call, how, ctrl_c, cancel, alive)?;
        return Err(interrupt);
    }
}

/// How long a cleanup after Ctrl-C may take before the caller is told it is being waited for.
/// Most cleanups finish in well under this, and then nothing is printed.
const QUIET_CLEANUP: Duration = Duration::from_millis(100);

/// After Ctrl-C, another exception from a signal handler or a warning turned error, or the
/// caller's own task being cancelled: cancels the awaitable and gives its cleanup the grace
/// period.
///
/// After Ctrl-C (`ctrl_c`), a cleanup that takes longer than a moment is announced on
/// stderr, because the user otherwise sees nothing happen for the whole grace period; a
/// second Ctrl-C stops the wait. A call whose cleanup was not waited out is marked abandoned,
/// so the loop thread's shutdown at interpreter exit does not wait for it a second time.
///
/// An error is only one from `cancel` itself; a second Ctrl-C is swallowed here, the caller
/// raises the first.
fn give_up(
    py: Python<'_>,
    call: &Call,
    how: &Waiting<'_>,
    ctrl_c: bool,
    cancel: Check<'_>,
    alive: Option<Check<'_>>,
) -> PyResult<()> {
    cancel(py)?;
    let deadline = deadline_after(Some(how.grace));
    let quiet_until = earliest(deadline, Some(Instant::now() + QUIET_CLEANUP));
    let finished = match cleanup(py, call, quiet_until, alive) {
        Ok(Some(_)) => true,
        Err(_) => false,
        Ok(None) if quiet_until == deadline => false,
        Ok(None) => {
            if ctrl_c {
                announce_cleanup_wait(py, how);
            }
            matches!(cleanup(py, call, deadline, alive), Ok(Some(_)))
        }
    };
    if !finished {
        call.abandon();
    }
    Ok(())
}

/// The one line that tells a user who pressed Ctrl-C what blockon is waiting for.
fn announce_cleanup_wait(py: Python<'_>, how: &Waiting<'_>) {
    let what = qualname(&how.what).unwrap_or_else(|| type_name(&how.what));
    let line = format!(
        "blockon: waiting up to {} s for {what} to clean up after Ctrl-C; press Ctrl-C again \
         to stop waiting\n",
        how.grace
    );
    let written = py.import("sys").and_then(|sys| {
        let stderr = sys.getattr(intern!(py, "stderr"))?;
        stderr.call_method1(intern!(py, "write"), (line,))?;
        stderr.call_method0(intern!(py, "flush")).map(drop)
    });
    // Nowhere to say it (stderr closed or replaced by something that raises): wait quietly.
    drop(written);
}

/// After a cancel request: waits for the outcome until `until` (None: as long as it takes,
/// or until the loop goes away). `Ok(None)` if `until` passed first.
fn cleanup(
    py: Python<'_>,
    call: &Call,
    until: Option<Instant>,
    alive: Option<Check<'_>>,
) -> PyResult<Option<Outcome>> {
    loop {
        let slice = if alive.is_some() {
            earliest(until, Some(Instant::now() + SIGNAL_CHECK))
        } else {
            until
        };
        match waiter::wait(py, &call.outcome, slice, waiter::Start::default())? {
            Wake::Done => return Ok(call.outcome.take()),
            Wake::Expired => {
                if until.is_some_and(|u| Instant::now() >= u) {
                    return Ok(None);
                }
                if let Some(alive) = alive {
                    if alive(py).is_err() {
                        return Ok(Some(Outcome::Lost));
                    }
                }
            }
        }
    }
}

/// Turns an outcome into the caller's return value or exception.
pub(crate) fn deliver(py: Python<'_>, outcome: Option<Outcome>) -> PyResult<Py<PyAny>> {
    match outcome {
        Some(Outcome::Value(value)) => Ok(value),
        Some(Outcome::Raised(exc)) => Err(PyErr::from_value(exc.into_bound(py))),
        Some(Outcome::Cancelled) => Err(PyErr::from_type(
            cached(py)?.futures_cancelled.bind(py).clone(),
            "the awaitable was cancelled by something other than this caller (its own code, \
             or its event loop closing)",
        )),
        Some(Outcome::Lost) | None => Err(PyRuntimeError::new_err(
            "the event loop running the awaitable stopped or closed before it finished",
        )),
    }
}

pub(crate) fn timed_out(timeout: Option<f64>) -> PyErr {
    PyTimeoutError::new_err(format!(
        "the awaitable did not finish within timeout={}; it was cancelled and its cleanup ran",
        timeout.unwrap_or_default()
    ))
}

fn warn_blocked(py: Python<'_>, how: &Waiting<'_>) -> PyResult<()> {
    let Some((seconds, blocked)) = &how.blocked else {
        return Ok(());
    };
    let what = qualname(&how.what)
        .filter(|_| how.api.names_awaitable)
        .map_or_else(|| how.api.waits_for.to_owned(), |n| format!("'{n}'"));
    let message = format!(
        "{} has blocked the running event loop {} for {seconds} s while it waits for {what} \
         on blockon's loop thread; no other task on that loop can run meanwhile. {}",
        how.api.name,
        blocked
            .repr()
            .map_or_else(|_| "?".to_owned(), |r| r.to_string()),
        how.api.instead,
    );
    let message = CString::new(message).unwrap_or_default();
    let category = py.get_type::<PyRuntimeWarning>();
    PyErr::warn(py, &category, &message, 1)
}
