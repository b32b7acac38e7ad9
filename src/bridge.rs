//! The sync faces of sessions: `IterBridge` (what `wrap_iter` returns) and `ContextBridge`
//! (what `wrap_context` returns, and what `enter_context` enters).
//!
//! Both are native so that an exception from the async iterator or manager reaches the
//! caller with the caller's frame and then the awaitable's own, and no blockon frame; and so
//! that taking a prefetched item costs a lock and a pop, not a Python frame.
//!
//! A bridge starts its session lazily, on first use, on the loop thread it was made from.
//! Where the caller runs that very loop (sync code on the loop thread), steps are driven
//! re-entrantly instead of waited for, exactly like `run()`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyStopAsyncIteration, PyStopIteration, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::blocking::{self, deliver, post};
use crate::completion::{lock, Call};
use crate::lifecycle::{Job, SessionJob};
use crate::loop_thread::LoopThreadBase;
use crate::prefetch::{Item, Prefetch, Take};
use crate::py::cached;
use crate::reentry::drive_nested;
use crate::session::{gone, Op, Session, Step};
use crate::waiter::{self, SIGNAL_CHECK};

/// Runs one step on `session` and waits for its outcome (or drives it, on its own loop).
fn step(
    py: Python<'_>,
    portal: &Bound<'_, LoopThreadBase>,
    session: &Py<Session>,
    op: Op,
    context: Option<Py<PyAny>>,
    timeout: Option<f64>,
) -> PyResult<Py<PyAny>> {
    let core = Arc::clone(&session.get().core);
    if !core.is_current() {
        return Err(gone());
    }
    let call = Arc::new(Call::default());
    let job = Job::Step {
        session: session.clone_ref(py),
        step: Step {
            op,
            call: Arc::clone(&call),
        },
        context,
    };
    let running = cached(py)?.get_running_loop.bind(py).call0()?;
    let portal = portal.get();
    if core.event_loop.bind(py).is(&running) {
        // Sync code on this session's own loop: drive the loop until the step is done.
        let queued = crate::reentry::ready_len(&running)?;
        post(py, &core, job);
        let (target, to_cancel) = (session.clone_ref(py), Arc::clone(&call));
        let cancel = move |py: Python<'_>| target.get().cancel_step(py, &to_cancel);
        return drive_nested(&running, &call, queued, cancel, timeout, portal.grace());
    }
    let blocked = (!running.is_none()).then_some(running);
    let cancel = |py: Python<'_>| Job::CancelStep(session.clone_ref(py), Arc::clone(&call));
    blocking::through_inbox(
        py,
        &core,
        job,
        &call,
        &cancel,
        &portal.waiting(timeout, blocked),
    )
}

/// Creates a session on `portal`'s loop thread.
fn open_session(portal: &Bound<'_, LoopThreadBase>) -> PyResult<Py<Session>> {
    let core = LoopThreadBase::core(portal)?;
    Py::new(portal.py(), Session::new(core))
}

/// Queues `job` and wakes the loop if needed, without releasing the GIL.
fn post_now(py: Python<'_>, core: &crate::lifecycle::Core, job: Job) -> bool {
    match core.inbox.push(job) {
        Ok(must_wake) => {
            if must_wake {
                core.inbox.wake();
            }
            true
        }
        Err(job) => {
            job.refuse(py);
            false
        }
    }
}

fn session_job(py: Python<'_>, session: &Py<Session>, job: SessionJob) {
    post(
        py,
        &session.get().core,
        Job::Session(session.clone_ref(py), job),
    );
}

// ------------------------------------------------------------------------------ iterators

struct IterState {
    session: Option<Py<Session>>,
    buffer: Option<Arc<Prefetch>>,
    /// Exhausted or closed: `next()` raises `StopIteration` from now on.
    finished: bool,
}

/// A sync iterator over an async iterable, made by `wrap_iter`.
#[pyclass(frozen, module = "blockon._blockon")]
pub struct IterBridge {
    portal: Py<LoopThreadBase>,
    source: Py<PyAny>,
    prefetch: usize,
    state: Mutex<IterState>,
}

impl IterBridge {
    /// The session, started on first use with `__aiter__` (and the pump) queued.
    ///
    /// Everything that calls Python is prepared before the bridge's lock is taken: a Python
    /// call may release the GIL (a first-use import does), and a thread waiting for this
    /// lock holds the GIL, so holding the lock across one could deadlock.
    fn session(&self, py: Python<'_>) -> PyResult<(Py<Session>, Option<Arc<Prefetch>>)> {
        {
            let state = lock(&self.state);
            if let Some(session) = &state.session {
                return Ok((session.clone_ref(py), state.buffer.clone()));
            }
        }
        let session = open_session(self.portal.bind(py))?;
        let context = cached(py)?.copy_context.call0(py)?;
        session.get().set_closer(Step {
            op: Op::Aclose,
            call: Arc::new(Call::default()),
        });
        let buffer = (self.prefetch > 0).then(|| Arc::new(Prefetch::new(self.prefetch)));
        let mut jobs = vec![Job::Step {
            session: session.clone_ref(py),
            step: Step {
                op: Op::Aiter(self.source.clone_ref(py)),
                call: Arc::new(Call::default()),
            },
            context: Some(context),
        }];
        if let Some(buffer) = &buffer {
            jobs.push(Job::Session(
                session.clone_ref(py),
                SessionJob::StartPump(Arc::clone(buffer)),
            ));
        }
        let core = Arc::clone(&session.get().core);
        let refused = {
            let mut state = lock(&self.state);
            if let Some(existing) = &state.session {
                // Another thread won the race; ours never started.
                return Ok((existing.clone_ref(py), state.buffer.clone()));
            }
            // Queued under the lock, so no other thread's step can come before `__aiter__`.
            let mut refused = Vec::new();
            let mut wake = false;
            for job in jobs {
                match core.inbox.push(job) {
                    Ok(must_wake) => wake |= must_wake,
                    Err(job) => refused.push(job),
                }
            }
            if wake {
                core.inbox.wake();
            }
            if refused.is_empty() {
                state.session = Some(session.clone_ref(py));
                state.buffer.clone_from(&buffer);
            }
            refused
        };
        if !refused.is_empty() {
            for job in refused {
                job.refuse(py);
            }
            return Err(crate::lifecycle::closed_error());
        }
        Ok((session, buffer))
    }

    fn finish(&self, py: Python<'_>) {
        let session = {
            let mut state = lock(&self.state);
            state.finished = true;
            state.session.take()
        };
        if let Some(session) = session {
            session_job(py, &session, SessionJob::Finish);
        }
    }

    /// Takes the next prefetched item, waiting (GIL released, Ctrl-C honoured) for one.
    fn take(
        &self,
        py: Python<'_>,
        session: &Py<Session>,
        buffer: Arc<Prefetch>,
    ) -> PyResult<Option<Py<PyAny>>> {
        loop {
            match buffer.take() {
                Take::Item(item, wake_pump) => {
                    if wake_pump {
                        session_job(py, session, SessionJob::Unpark);
                    }
                    return match item {
                        Item::Value(value) => Ok(Some(value)),
                        Item::End => {
                            self.finish(py);
                            Ok(None)
                        }
                        Item::Raised(exc) => {
                            self.finish(py);
                            Err(PyErr::from_value(exc.into_bound(py)))
                        }
                        Item::Cancelled => {
                            self.finish(py);
                            deliver(py, Some(crate::completion::Outcome::Cancelled)).map(Some)
                        }
                    };
                }
                Take::Empty => {
                    if lock(&self.state).finished {
                        return Ok(None);
                    }
                    let core = &session.get().core;
                    let running = cached(py)?.get_running_loop.bind(py).call0()?;
                    if core.event_loop.bind(py).is(&running) {
                        // Sync code on the loop thread: run the loop until the pump delivers.
                        let queued = crate::reentry::ready_len(&running)?;
                        let watched = Arc::clone(&buffer);
                        let grace = self.portal.get().grace();
                        let ready = move || watched.has_items();
                        crate::reentry::drive(&running, queued, ready, |_| Ok(()), None, grace)?;
                        continue;
                    }
                    py.detach(|| {
                        let spin_end = Instant::now() + Duration::from_micros(50);
                        if !waiter::spin_until(spin_end, || buffer.has_items()) {
                            buffer.park_until(Instant::now() + SIGNAL_CHECK);
                        }
                    });
                    py.check_signals()?;
                    if !session.get().core.is_current() {
                        return Err(gone());
                    }
                }
            }
        }
    }

    /// One `asend`/`athrow` step: like `__next__` in lockstep, for generator twins.
    fn generator_step(&self, py: Python<'_>, op: Op) -> PyResult<Py<PyAny>> {
        if self.prefetch > 0 {
            return Err(PyValueError::new_err(
                "send() and throw() need a lockstep iterator (prefetch=0): items pulled \
                 ahead cannot take a value sent in",
            ));
        }
        if lock(&self.state).finished {
            return match op {
                Op::Athrow(args) => Err(PyErr::from_value(args.bind(py).get_item(0)?)),
                _ => Err(PyStopIteration::new_err(())),
            };
        }
        let (session, _) = self.session(py)?;
        match step(py, self.portal.bind(py), &session, op, None, None) {
            Ok(value) => Ok(value),
            Err(err) if err.is_instance_of::<PyStopAsyncIteration>(py) => {
                self.finish(py);
                Err(PyStopIteration::new_err(()))
            }
            Err(err) => Err(err),
        }
    }

    /// Whether the calling thread runs this bridge's loop.
    fn on_own_loop(&self, py: Python<'_>) -> bool {
        let state = lock(&self.state);
        let Some(session) = &state.session else {
            return false;
        };
        cached(py)
            .and_then(|c| c.get_running_loop.bind(py).call0())
            .is_ok_and(|running| session.get().core.event_loop.bind(py).is(&running))
    }

    /// Closes without waiting: queues the pump's stop, `aclose()` and the end.
    fn close_later(&self, py: Python<'_>) {
        let (session, buffer) = {
            let mut state = lock(&self.state);
            state.finished = true;
            (state.session.take(), state.buffer.take())
        };
        let Some(session) = session else {
            return;
        };
        let core = &session.get().core;
        if let Some(buffer) = buffer {
            drop(buffer.close());
            post_now(
                py,
                core,
                Job::Session(session.clone_ref(py), SessionJob::StopPump),
            );
        }
        let aclose = Job::Step {
            session: session.clone_ref(py),
            step: Step {
                op: Op::Aclose,
                call: Arc::new(Call::default()),
            },
            context: None,
        };
        post_now(py, core, aclose);
        post_now(
            py,
            core,
            Job::Session(session.clone_ref(py), SessionJob::Finish),
        );
    }

    fn close_now(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let (session, buffer) = {
            let mut state = lock(&self.state);
            state.finished = true;
            (state.session.take(), state.buffer.take())
        };
        let Some(session) = session else {
            return Ok(());
        };
        if let Some(buffer) = buffer {
            drop(buffer.close());
            session_job(py, &session, SessionJob::StopPump);
        }
        let closed = step(
            py,
            self.portal.bind(py),
            &session,
            Op::Aclose,
            None,
            timeout,
        );
        session_job(py, &session, SessionJob::Finish);
        closed.map(drop)
    }
}

#[pymethods]
impl IterBridge {
    #[new]
    #[pyo3(signature = (portal, source, prefetch=0))]
    fn new(portal: Py<LoopThreadBase>, source: Py<PyAny>, prefetch: usize) -> Self {
        Self {
            portal,
            source,
            prefetch,
            state: Mutex::new(IterState {
                session: None,
                buffer: None,
                finished: false,
            }),
        }
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        if lock(&self.state).finished {
            return Ok(None);
        }
        let (session, buffer) = self.session(py)?;
        if let Some(buffer) = buffer {
            return self.take(py, &session, buffer);
        }
        match step(py, self.portal.bind(py), &session, Op::Anext, None, None) {
            Ok(value) => Ok(Some(value)),
            Err(err) if err.is_instance_of::<PyStopAsyncIteration>(py) => {
                self.finish(py);
                Ok(None)
            }
            Err(err) => {
                if !session.get().has_subject() {
                    self.finish(py); // `__aiter__` failed: nothing to iterate or close
                }
                Err(err)
            }
        }
    }

    /// Like a generator's ``send``: ``asend(value)`` on the async generator (lockstep only).
    fn send(&self, py: Python<'_>, value: Py<PyAny>) -> PyResult<Py<PyAny>> {
        if value.is_none(py) {
            return self
                .__next__(py)?
                .ok_or_else(|| PyStopIteration::new_err(()));
        }
        self.generator_step(py, Op::Asend(value))
    }

    /// Like a generator's ``throw``: ``athrow(...)`` on the async generator (lockstep only).
    #[pyo3(signature = (typ, val=None, tb=None))]
    fn throw(
        &self,
        py: Python<'_>,
        typ: Py<PyAny>,
        val: Option<Py<PyAny>>,
        tb: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let mut args = vec![typ];
        args.extend(val);
        args.extend(tb);
        self.generator_step(py, Op::Athrow(PyTuple::new(py, args)?.unbind()))
    }

    /// Stop iterating: stops the pump (dropping prefetched items nobody took) and awaits
    /// the async iterator's ``aclose()`` on the loop, where it has one.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.close_now(py, None)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "<blockon.wrap_iter of {} prefetch={}>",
            self.source.bind(py).repr()?,
            self.prefetch
        ))
    }
}

impl Drop for IterBridge {
    fn drop(&mut self) {
        // Like a generator's: a bridge dropped while iterating closes its async iterator, so
        // `break` runs the async generator's `finally` on the loop before the loop goes on.
        let live = lock(&self.state)
            .session
            .as_ref()
            .is_some_and(|s| s.get().core.is_current() && !s.get().core.inbox.is_closed());
        if live {
            Python::try_attach(|py| {
                // Dropped while an exception propagates (a `for` loop's iterator, freed during
                // unwinding): keep that exception, and put it back afterwards.
                let pending = PyErr::take(py);
                let closed = if self.on_own_loop(py) {
                    // The loop cannot be waited for from its own thread: hand it the close.
                    self.close_later(py);
                    Ok(())
                } else {
                    self.close_now(py, Some(self.portal.get().grace()))
                };
                if let Err(err) = closed {
                    err.write_unraisable(py, Some(self.source.bind(py)));
                }
                if let Some(pending) = pending {
                    pending.restore(py);
                }
            });
        }
    }
}

// ------------------------------------------------------------------------------ contexts

/// A sync context manager over an async one, made by `wrap_context`.
#[pyclass(frozen, module = "blockon._blockon")]
pub struct ContextBridge {
    portal: Py<LoopThreadBase>,
    source: Mutex<Option<Py<PyAny>>>,
    session: Mutex<Option<Py<Session>>>,
}

#[pymethods]
impl ContextBridge {
    #[new]
    fn new(portal: Py<LoopThreadBase>, source: Py<PyAny>) -> Self {
        Self {
            portal,
            source: Mutex::new(Some(source)),
            session: Mutex::new(None),
        }
    }

    /// Enters the async context manager on the loop; returns what ``__aenter__`` returned.
    fn __enter__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let source = lock(&self.source).take().ok_or_else(|| {
            PyValueError::new_err(
                "this wrap_context() manager was entered already; wrap the async manager again",
            )
        })?;
        let session = open_session(self.portal.bind(py))?;
        session.get().set_closer(Step {
            op: Op::Exit(PyTuple::new(py, [py.None(), py.None(), py.None()])?.unbind()),
            call: Arc::new(Call::default()),
        });
        let context = cached(py)?.copy_context.call0(py)?;
        let entered = step(
            py,
            self.portal.bind(py),
            &session,
            Op::Enter(source),
            Some(context),
            None,
        );
        if entered.is_ok() {
            *lock(&self.session) = Some(session);
        } else {
            session_job(py, &session, SessionJob::Finish);
        }
        entered
    }

    /// Exits it, in the same task that entered it; a true ``__aexit__`` result suppresses
    /// the exception.
    #[pyo3(signature = (exc_type=None, exc=None, tb=None))]
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<Py<PyAny>>,
        exc: Option<Py<PyAny>>,
        tb: Option<Py<PyAny>>,
    ) -> PyResult<bool> {
        let Some(session) = lock(&self.session).take() else {
            return Ok(false);
        };
        let body_exc = exc.as_ref().map(|e| e.clone_ref(py));
        let args = PyTuple::new(py, [exc_type, exc, tb])?.unbind();
        let exited = step(
            py,
            self.portal.bind(py),
            &session,
            Op::Exit(args),
            None,
            None,
        );
        session_job(py, &session, SessionJob::Finish);
        match exited {
            Ok(suppress) => suppress.bind(py).is_truthy(),
            Err(err) => {
                // `async with` raises `__aexit__`'s error inside the handler of the body's
                // exception, which chains them; so does this.
                if let Some(body_exc) = body_exc {
                    let value = err.value(py);
                    if !value.is(&body_exc) && value.getattr("__context__")?.is_none() {
                        value.setattr("__context__", body_exc)?;
                    }
                }
                Err(err)
            }
        }
    }
}
