//! `IterBridge`, what `wrap_iter` returns: a sync iterator over an async iterable, whose
//! `__aiter__` and every `__anext__` run as steps of one session (one task) on the loop.
//!
//! Native so that an exception from the async iterator reaches the caller with the caller's
//! frame and then the iterator's own, and no blockon frame; and so that taking a prefetched
//! item costs a lock and a pop, not a Python frame.
//!
//! The session starts lazily, on first `next()`, on the loop thread the bridge was made
//! from. Lockstep (`prefetch=0`): each `next()` is one step. Prefetching: the session pumps
//! items into a bounded buffer that `next()` drains without a round trip.
//!
//! What the bridge is given is checked in Python (`blockon._bridges`), where the messages
//! can teach.

use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyStopAsyncIteration, PyStopIteration, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3::{PyTraverseError, PyVisit};

use crate::blocking::{deliver, Api, Limit};
use crate::completion::{lock, Call, Outcome};
use crate::lifecycle::closed_error;
use crate::loop_thread::LoopThreadBase;
use crate::prefetch::{Item, Prefetch, Take};
use crate::py::cached;
use crate::reentry::{self, drive};
use crate::session::{Session, SessionJob, Step};
use crate::session_op::Op;
use crate::sync_step::{self, gone, Purpose};
use crate::waiter;

struct IterState {
    /// The async iterable; `None` once the garbage collector cleared the bridge.
    source: Option<Py<PyAny>>,
    session: Option<Py<Session>>,
    buffer: Option<Arc<Prefetch>>,
    /// Exhausted or closed: `next()` raises `StopIteration` from now on.
    finished: bool,
}

/// A sync iterator over an async iterable, made by `wrap_iter`.
#[pyclass(frozen, module = "blockon._blockon")]
pub(crate) struct IterBridge {
    loop_thread: Py<LoopThreadBase>,
    prefetch: usize,
    state: Mutex<IterState>,
}

impl IterBridge {
    fn source(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let state = lock(&self.state);
        let source = state.source.as_ref().ok_or_else(gone)?;
        Ok(source.clone_ref(py))
    }

    /// Runs one step of the session and waits for it.
    fn step(
        &self,
        py: Python<'_>,
        session: &Py<Session>,
        op: Op,
        bound: Option<(f64, Limit)>,
        api: Api,
    ) -> PyResult<Py<PyAny>> {
        let what = self.source(py)?.into_bound(py);
        let purpose = Purpose { api, what: &what };
        let loop_thread = self.loop_thread.bind(py);
        sync_step::step(loop_thread, session, op, None, bound, &purpose)
    }

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
        let source = self.source(py)?;
        let session = sync_step::open(self.loop_thread.bind(py), "wrap_iter", source.bind(py))?;
        let context = cached(py)?.copy_context.call0(py)?;
        session.get().set_closer(Step {
            op: Op::Aclose,
            call: Arc::new(Call::default()),
        });
        let buffer = (self.prefetch > 0).then(|| Arc::new(Prefetch::new(self.prefetch)));
        let aiter = Step {
            op: Op::Aiter(source),
            call: Arc::new(Call::default()),
        };
        let mut jobs = vec![Session::job(
            &session,
            py,
            SessionJob::Step {
                step: aiter,
                context: Some(context),
            },
        )];
        if let Some(buffer) = &buffer {
            let pump = SessionJob::StartPump(Arc::clone(buffer));
            jobs.push(Session::job(&session, py, pump));
        }
        let core = Arc::clone(&session.get().core);
        let (refused, wake) = {
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
            if refused.is_empty() {
                state.session = Some(session.clone_ref(py));
                state.buffer.clone_from(&buffer);
            }
            (refused, wake)
        };
        // Not under the lock: the portable wake-up calls Python, which may switch to a thread
        // that then waits for this lock while it holds the GIL.
        if wake {
            core.inbox.wake();
        }
        if !refused.is_empty() {
            for job in refused {
                job.refuse(py);
            }
            return Err(closed_error());
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
            sync_step::post(py, &session, SessionJob::Finish);
        }
    }

    /// Takes the next prefetched item, waiting (GIL released, Ctrl-C honoured) for one.
    fn take(
        &self,
        py: Python<'_>,
        session: &Py<Session>,
        buffer: Arc<Prefetch>,
    ) -> PyResult<Option<Py<PyAny>>> {
        let core = &session.get().core;
        loop {
            // Items buffered before a fork were pulled for the parent, whose iteration goes
            // on: a forked child fails at once, as a lockstep step does.
            if !core.is_current() {
                return Err(gone());
            }
            match buffer.take() {
                Take::Item(item, wake_pump) => {
                    if wake_pump {
                        sync_step::post(py, session, SessionJob::Unpark);
                    }
                    if let Item::Value(value) = item {
                        return Ok(Some(value));
                    }
                    // The last item: finished, and other threads waiting on the buffer are
                    // woken to see it (nothing follows a last item, so closing drops none).
                    self.finish(py);
                    drop(buffer.close());
                    return match item {
                        Item::Raised(exc) => Err(PyErr::from_value(exc.into_bound(py))),
                        Item::Cancelled => deliver(py, Some(Outcome::Cancelled)).map(Some),
                        Item::Value(_) | Item::End => Ok(None),
                    };
                }
                Take::Empty => {
                    if lock(&self.state).finished {
                        return Ok(None);
                    }
                    let running = cached(py)?.get_running_loop.bind(py).call0()?;
                    if core.event_loop.bind(py).is(&running) {
                        // Sync code on the loop thread: run the loop until the pump delivers.
                        let nested = reentry::enter(&running)?;
                        let watched = Arc::clone(&buffer);
                        let grace = self.loop_thread.get().grace();
                        let ready = move || watched.has_items();
                        drive(&running, nested.queued, ready, |_| Ok(()), None, grace)?;
                        continue;
                    }
                    let start = waiter::Start {
                        spin: waiter::Spin::Budgeted,
                        ..waiter::Start::default()
                    };
                    waiter::wait(py, &*buffer, None, start)?;
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
        match self.step(py, &session, op, None, Api::ITER_NEXT) {
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

    /// The session and buffer, taken for closing: the bridge is finished from now on.
    fn take_for_close(&self) -> Option<(Py<Session>, Option<Arc<Prefetch>>)> {
        let mut state = lock(&self.state);
        state.finished = true;
        let session = state.session.take()?;
        Some((session, state.buffer.take()))
    }

    /// Closes without waiting: queues the pump's stop, `aclose()` and the end.
    fn close_later(&self, py: Python<'_>) {
        let Some((session, buffer)) = self.take_for_close() else {
            return;
        };
        if let Some(buffer) = buffer {
            drop(buffer.close());
            sync_step::post(py, &session, SessionJob::StopPump);
        }
        let aclose = Step {
            op: Op::Aclose,
            call: Arc::new(Call::default()),
        };
        let aclose = SessionJob::Step {
            step: aclose,
            context: None,
        };
        sync_step::post(py, &session, aclose);
        sync_step::post(py, &session, SessionJob::Finish);
    }

    fn close_now(&self, py: Python<'_>, bound: Option<(f64, Limit)>) -> PyResult<()> {
        let Some((session, buffer)) = self.take_for_close() else {
            return Ok(());
        };
        if let Some(buffer) = buffer {
            drop(buffer.close());
            sync_step::post(py, &session, SessionJob::StopPump);
        }
        let closed = self.step(py, &session, Op::Aclose, bound, Api::ITER_CLOSE);
        sync_step::post(py, &session, SessionJob::Finish);
        closed.map(drop)
    }
}

#[pymethods]
impl IterBridge {
    #[new]
    #[pyo3(signature = (loop_thread, source, prefetch=0))]
    fn new(loop_thread: Py<LoopThreadBase>, source: Py<PyAny>, prefetch: usize) -> Self {
        Self {
            loop_thread,
            prefetch,
            state: Mutex::new(IterState {
                source: Some(source),
                session: None,
                buffer: None,
                finished: false,
            }),
        }
    }

    /// Shows the garbage collector what the bridge holds: an async generator that refers
    /// to its own bridge (directly, or through the objects it works with) makes a cycle
    /// through the bridge, its session and the generator.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.loop_thread)?;
        // try_lock: a traversal must never block.
        if let Ok(state) = self.state.try_lock() {
            visit.call(&state.source)?;
            visit.call(&state.session)?;
        }
        Ok(())
    }

    /// Breaks such a cycle. The bridge is garbage then: nobody can iterate it any more, and
    /// its async generator is finalized by asyncio's own hook, as any dropped one is.
    fn __clear__(&self) {
        let dropped = {
            let mut state = lock(&self.state);
            state.finished = true;
            (
                state.source.take(),
                state.session.take(),
                state.buffer.take(),
            )
        };
        drop(dropped); // outside the lock: freeing them runs Python
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
        match self.step(py, &session, Op::Anext, None, Api::ITER_NEXT) {
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
        let source = match lock(&self.state).source.as_ref() {
            Some(source) => source.clone_ref(py),
            None => py.None(),
        };
        Ok(format!(
            "<blockon.wrap_iter of {} prefetch={}>",
            source.bind(py).repr()?,
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
                    let grace = self.loop_thread.get().grace();
                    self.close_now(py, Some((grace, Limit::Grace("aclose()"))))
                };
                if let Err(err) = closed {
                    let source = lock(&self.state).source.as_ref().map(|s| s.clone_ref(py));
                    err.write_unraisable(py, source.as_ref().map(|s| s.bind(py)));
                }
                if let Some(pending) = pending {
                    pending.restore(py);
                }
            });
        }
    }
}
