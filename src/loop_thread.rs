//! `LoopThreadBase`, the native base class of `blockon.LoopThread`: the entry points every
//! call goes through (`run`, `submit`), routing by where the caller stands, and the hooks the
//! Python thread body uses to attach its loop, take work, and report that it started or
//! stopped.
//!
//! Routing, in order of precedence: `loop=` runs the awaitable on that loop (re-entrantly
//! when it is the caller's own); a caller inside a running loop runs it re-entrantly on that
//! loop with `nest=True` or when the loop is this loop thread's own, and otherwise on this
//! loop thread while its own loop waits; a `to_thread` worker's bare `blockon.run()` runs it
//! on the loop that started the worker; everything else runs on this loop thread.
//!
//! `run` and `submit` are native so that the fast path (a thread with no running loop)
//! crosses no Python frame, and so that an exception re-raised from the awaitable carries
//! the caller's frame and then the awaitable's own, with no blockon frame between them.

use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::awaitable::{check_loop, discard, is_coroutine, prepare};
use crate::blocking::{self, Api, Limit, Waiting};
use crate::completion::{lock, Outcome};
use crate::deferred_wake;
use crate::driver::{Driver, Target};
use crate::eager_task::spawn_task;
use crate::job::Job;
use crate::lifecycle::{closed_error, CloseStep, Core, Lifecycle};
use crate::pulse::Pulser;
use crate::py::{cached, type_name};
use crate::reentry::run_nested;
use crate::run_args::{self, RunArgs};
use crate::selector::HotSelector;
use crate::timeout::{self, deadline_after};
use crate::to_thread_home::home_loop;

/// The engine half of a loop thread. Subclassed by `blockon.LoopThread`, which supplies the
/// thread (`_spawn`) and the Python API around it.
#[pyclass(subclass, frozen, module = "blockon._blockon")]
pub(crate) struct LoopThreadBase {
    life: Lifecycle,
    blocked_warning: Mutex<Option<f64>>,
    cancel_grace: Mutex<f64>,
}

/// A seconds setting (`blocked_warning`, `cancel_grace`): a number, not negative.
fn seconds(value: &Bound<'_, PyAny>, what: &str) -> PyResult<f64> {
    let seconds: f64 = value.extract().map_err(|_| {
        PyTypeError::new_err(format!(
            "{what} must be a number of seconds, got '{}'",
            type_name(value)
        ))
    })?;
    if seconds.is_nan() || seconds < 0.0 {
        return Err(PyValueError::new_err(format!(
            "{what} must be a non-negative number of seconds, got {seconds}"
        )));
    }
    Ok(seconds)
}

impl LoopThreadBase {
    /// Runs every queued job on the loop thread. Errors are reported as unraisable, except a
    /// `SystemExit` or `KeyboardInterrupt` that must end a forked child (see
    /// `Driver::callerless_exit`), returned once every job has run.
    fn drain(&self, py: Python<'_>) -> PyResult<()> {
        let Some(core) = self.life.attached() else {
            return Ok(());
        };
        let mut ending = None;
        let event_loop = core.event_loop.bind(py);
        for job in core.inbox.take() {
            let done = match job {
                Job::Run {
                    driver,
                    context,
                    link,
                } => {
                    let driver = driver.bind(py);
                    spawn_task(
                        event_loop,
                        driver,
                        Some(context.bind(py)),
                        link.as_ref().map(|l| l.bind(py)),
                    )
                    .or_else(|err| {
                        if driver.get().callerless_exit(py, &err) {
                            ending = Some(err);
                            return Ok(());
                        }
                        let outcome = Outcome::Raised(err.into_value(py).into_any());
                        driver.get().abandon(py, outcome)
                    })
                }
                Job::Cancel(driver) => driver
                    .bind(py)
                    .call_method0(intern!(py, "_cancel"))
                    .map(drop),
                Job::Session(work) => work.run(py),
                Job::Stop => event_loop.call_method0(intern!(py, "stop")).map(drop),
            };
            if let Err(err) = done {
                err.write_unraisable(py, Some(event_loop));
            }
        }
        ending.map_or(Ok(()), Err)
    }

    /// The running core, starting the loop thread if needed.
    pub(crate) fn core(slf: &Bound<'_, Self>) -> PyResult<Arc<Core>> {
        let py = slf.py();
        slf.get()
            .life
            .acquire(py, || slf.call_method0(intern!(py, "_spawn")).map(drop))
    }

    /// Once closed, start afresh on next use (the default loop thread).
    pub(crate) fn reopen_when_closed(&self) {
        self.life.reopen_when_closed();
    }

    pub(crate) fn grace(&self) -> f64 {
        *lock(&self.cancel_grace)
    }

    /// How a blocking call of `api` on this loop thread waits for `what`; `blocked` is the
    /// caller's running loop, which the call blocks.
    pub(crate) fn waiting<'py>(
        &self,
        api: Api,
        what: &Bound<'py, PyAny>,
        timeout: Option<f64>,
        blocked: Option<Bound<'py, PyAny>>,
    ) -> Waiting<'py> {
        let caller_task = blocked.as_ref().and_then(|running| {
            let py = running.py();
            let task = cached(py)
                .ok()?
                .current_task
                .bind(py)
                .call1((running,))
                .ok()?;
            let count = task
                .call_method0(intern!(py, "cancelling"))
                .ok()?
                .extract()
                .ok()?;
            (!task.is_none()).then_some((task, count))
        });
        Waiting {
            api,
            what: what.clone(),
            timeout,
            limit: Limit::Timeout,
            grace: self.grace(),
            blocked: blocked.and_then(|running| lock(&self.blocked_warning).map(|s| (s, running))),
            caller_task,
        }
    }
}

/// `run` on `loop_thread`. `api` says which public call it is: the module-level
/// `blockon.run()` also follows a `to_thread` worker's home loop, the method does not.
pub(crate) fn run(
    loop_thread: &Bound<'_, LoopThreadBase>,
    args: RunArgs<'_>,
    api: Api,
) -> PyResult<Py<PyAny>> {
    let py = loop_thread.py();
    let this = loop_thread.get();
    let RunArgs {
        aw,
        timeout,
        nest,
        target,
    } = args;
    let coro = prepare(&aw, "run")?;
    let fail = |err: PyErr| {
        discard(&coro);
        Err(err)
    };
    let timeout = match timeout::parse(timeout.as_ref(), api.name) {
        Ok(timeout) => timeout,
        Err(err) => return fail(err),
    };
    let running = cached(py)?.get_running_loop.bind(py).call0()?;
    let running = (!running.is_none()).then_some(running);
    if let Some(target) = &target {
        if !target.hasattr(intern!(py, "call_soon_threadsafe"))? {
            return fail(PyTypeError::new_err(format!(
                "loop= must be a running asyncio event loop (such as the one \
                 asyncio.get_running_loop() returns in that loop's thread), got '{}'",
                type_name(target)
            )));
        }
    }
    let nests = match (&target, &running) {
        (Some(target), running) => running.as_ref().is_some_and(|r| r.is(target)),
        (None, Some(running)) => {
            nest || this
                .life
                .running()
                .is_some_and(|core| core.event_loop.bind(py).is(running))
        }
        (None, None) => false,
    };
    if !is_coroutine(&aw) {
        if let Err(err) = check_loop(&aw, api.name, running.as_ref(), nests) {
            return fail(err);
        }
    }
    if let Some(target) = &target {
        if nests {
            return run_nested(target, coro, timeout, this.grace());
        }
        return blocking::on_loop(py, target, coro, &this.waiting(api, &aw, timeout, None));
    }
    if let Some(running) = running {
        if nests {
            return run_nested(&running, coro, timeout, this.grace());
        }
        let core = match LoopThreadBase::core(loop_thread) {
            Ok(core) => core,
            Err(err) => return fail(err),
        };
        let how = this.waiting(api, &aw, timeout, Some(running));
        return blocking::on_core(py, &core, coro, &how);
    }
    if api.follows_home {
        if let Some(home) = home_loop(py) {
            return blocking::on_loop(py, &home, coro, &this.waiting(api, &aw, timeout, None));
        }
    }
    let core = match LoopThreadBase::core(loop_thread) {
        Ok(core) => core,
        Err(err) => return fail(err),
    };
    blocking::on_core(py, &core, coro, &this.waiting(api, &aw, timeout, None))
}

/// `submit` on `loop_thread`: starts `aw` now, returns a `concurrent.futures.Future`.
pub(crate) fn submit(
    loop_thread: &Bound<'_, LoopThreadBase>,
    aw: &Bound<'_, PyAny>,
) -> PyResult<Py<PyAny>> {
    let py = loop_thread.py();
    let c = cached(py)?;
    let coro = prepare(aw, "submit")?;
    let core = match LoopThreadBase::core(loop_thread) {
        Ok(core) => core,
        Err(err) => {
            discard(&coro);
            return Err(err);
        }
    };
    let future = c.future_type.call0(py)?;
    let link = c.link_future.call1(py, (&future,))?;
    let context = c.copy_context.call0(py)?;
    let driver = Py::new(py, Driver::new(coro, Target::Future(future.clone_ref(py))))?;
    let job = Job::Run {
        driver: driver.clone_ref(py),
        context,
        link: Some(link),
    };
    if core.post(py, job) {
        Ok(future)
    } else {
        Err(closed_error())
    }
}

#[pymethods]
impl LoopThreadBase {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        Self {
            life: Lifecycle::default(),
            blocked_warning: Mutex::new(Some(10.0)),
            cancel_grace: Mutex::new(5.0),
        }
    }

    /// Run one awaitable on this loop thread and return its result.
    ///
    /// Waits with the GIL released. Where the calling thread runs a loop already, see
    /// ``nest``; ``loop=`` runs the awaitable on that loop (running in another thread)
    /// instead. ``timeout`` cancels the awaitable, waits for its cleanup and raises
    /// ``TimeoutError``.
    #[pyo3(
        signature = (*args, **kwargs),
        text_signature = "($self, aw, /, *, timeout=None, nest=False, loop=None)"
    )]
    fn run(
        slf: &Bound<'_, Self>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let api = Api::LOOP_THREAD_RUN;
        run(slf, run_args::run(args, kwargs, api.name)?, api)
    }

    /// ``run`` as ``gather()`` uses it: messages and the blocked-loop warning name
    /// ``gather()`` and what it waits for, not ``run`` and blockon's own coroutine.
    #[pyo3(signature = (aw, /, timeout))]
    fn _run_gather(
        slf: &Bound<'_, Self>,
        aw: Bound<'_, PyAny>,
        timeout: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let args = RunArgs {
            aw,
            timeout,
            nest: false,
            target: None,
        };
        run(slf, args, Api::GATHER)
    }

    /// Start one awaitable on this loop thread now; return a ``concurrent.futures.Future``.
    ///
    /// ``future.cancel()`` cancels the task.
    #[pyo3(signature = (*args, **kwargs), text_signature = "($self, aw, /)")]
    fn submit(
        slf: &Bound<'_, Self>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        submit(slf, &run_args::submit(args, kwargs, "LoopThread.submit()")?)
    }

    /// Seconds a caller that blocks a running loop waits before one ``RuntimeWarning``
    /// names that loop; ``None`` turns the warning off.
    #[getter]
    fn get_blocked_warning(&self) -> Option<f64> {
        *lock(&self.blocked_warning)
    }

    #[setter]
    fn set_blocked_warning(&self, value: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let value = value.map(|v| seconds(v, "blocked_warning")).transpose()?;
        *lock(&self.blocked_warning) = value;
        Ok(())
    }

    /// Seconds Ctrl-C waits for a cancelled awaitable's cleanup before re-raising.
    #[getter]
    fn get_cancel_grace(&self) -> f64 {
        *lock(&self.cancel_grace)
    }

    #[setter]
    fn set_cancel_grace(&self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        *lock(&self.cancel_grace) = seconds(value, "cancel_grace")?;
        Ok(())
    }

    /// Whether ``close()`` has been called (or interpreter exit closed it).
    #[getter]
    fn closed(&self) -> bool {
        self.life.is_closed()
    }

    /// The loop, starting the thread if needed.
    fn _event_loop(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        Ok(Self::core(slf)?.event_loop.clone_ref(slf.py()))
    }

    /// Whether the calling thread is this loop thread.
    fn _in_loop_thread(&self, py: Python<'_>) -> PyResult<bool> {
        let Some(core) = self.life.attached() else {
            return Ok(false);
        };
        let running = cached(py)?.get_running_loop.bind(py).call0()?;
        Ok(core.event_loop.bind(py).is(&running))
    }

    /// Loop thread: its loop exists. With `wake` (a callable that queues the loop's wake-up
    /// callback through `call_soon_threadsafe`) callers wake the loop through it; without, a
    /// byte on a socket (Unix), whose descriptor is returned to watch with `add_reader`.
    #[pyo3(signature = (event_loop, wake=None))]
    fn _attach(&self, event_loop: Py<PyAny>, wake: Option<Py<PyAny>>) -> PyResult<Option<i32>> {
        Ok(self.life.attach(event_loop, wake)?.inbox.read_fd())
    }

    /// Loop thread: wraps the loop's selector so the loop spins briefly before it sleeps.
    fn _hot_selector(slf: &Bound<'_, Self>, real: &Bound<'_, PyAny>) -> PyResult<HotSelector> {
        let core = slf
            .get()
            .life
            .attached()
            .ok_or_else(|| PyRuntimeError::new_err("no loop attached"))?;
        let drain = slf.getattr(intern!(slf.py(), "_drain"))?.unbind();
        Ok(HotSelector::new(real, core, drain))
    }

    /// Loop thread (loops without a wrappable selector): the pulses that keep the loop awake
    /// while it is busy; its `wake` is the inbox's reader callback.
    fn _pulser(slf: &Bound<'_, Self>) -> PyResult<Pulser> {
        let core = slf
            .get()
            .life
            .attached()
            .ok_or_else(|| PyRuntimeError::new_err("no loop attached"))?;
        let drain = slf.getattr(intern!(slf.py(), "_drain"))?.unbind();
        Ok(Pulser::new(core, drain, slf.py()))
    }

    /// Loop thread: ready for work.
    fn _started(&self) {
        self.life.started();
    }

    /// Loop thread: could not start; callers waiting for it get `exc`.
    fn _start_failed(&self, exc: Bound<'_, PyAny>) {
        self.life.start_failed(PyErr::from_value(exc));
    }

    /// Loop thread: takes the queued work (the inbox's reader callback).
    fn _drain(&self, py: Python<'_>) -> PyResult<()> {
        self.drain(py)
    }

    /// Loop thread, shutting down: refuses new work and cancels what never started.
    fn _shutdown_inbox(&self, py: Python<'_>) {
        let Some(core) = self.life.attached() else {
            return;
        };
        for job in core.inbox.close() {
            job.refuse(py);
        }
    }

    /// Loop thread: the loop is shut down and closed.
    fn _stopped(&self, py: Python<'_>) {
        deferred_wake::flush_detached(py);
        crate::pulse::forget(py);
        self.life.stopped();
    }

    /// Asks the loop thread to stop; returns whether there is a thread to wait for.
    fn _request_close(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(matches!(self.life.begin_close(py)?, CloseStep::Wait))
    }

    /// Waits for the loop thread to finish closing; `False` if `timeout` passed first.
    /// `timeout` is already parsed by `_timeout_arg`.
    #[pyo3(signature = (timeout=None))]
    fn _wait_closed(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        self.life.wait_closed(py, deadline_after(timeout))
    }
}
