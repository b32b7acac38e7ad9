//! Sessions: one asyncio task on the loop that runs many steps for sync callers, one after
//! another. `wrap_context` runs `__aenter__` and later `__aexit__` as two steps of one
//! session; `wrap_iter` runs `__aiter__` and every `__anext__` in one session. So all of them
//! run in the same task, and managers bound to their task (`asyncio.timeout()`, task groups,
//! cancel scopes) and async generators that look at `asyncio.current_task()` work. Bridges
//! that start a task per step break exactly these.
//!
//! The session is the task's coroutine, written natively like the driver: stepping it runs
//! the current step's awaitable; when that finishes, it settles the step's [`Call`] and
//! starts the next queued step; with nothing queued it parks on a future that the next job
//! resolves. With a prefetch buffer attached it also pumps: when idle and the buffer has
//! room, it pulls the next item itself.
//!
//! All state is touched on the loop thread only (jobs arrive through the inbox), so the lock
//! is never contended; it is there because the object is shared between threads.
//!
//! Cancelling one step cancels the task while that step runs, and is undone (`uncancel`)
//! once the step ends, so the task's cancellation count stays truthful for the next step.
//! The task cancelled while parked by something else (an `asyncio.timeout()` or task group
//! the subject holds) hands the `CancelledError` to the next step, where `async with` or
//! `async for` would have seen it. The loop thread closing ends the session, after its closer
//! step (`aclose`, or `__aexit__`) has run.
//!
//! What each step does to the subject lives in `session_op`; this module decides when steps
//! run.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyStopAsyncIteration, PyStopIteration};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple, PyWeakrefReference};
use pyo3::{PyTraverseError, PyVisit};

use crate::completion::{lock, Call, Outcome};
use crate::job::{Job, LoopWork};
use crate::lifecycle::Core;
use crate::prefetch::{Item, Prefetch};
use crate::session_op::{Begun, Op, Subject, Then};
use crate::stepping::{self, Sent};

/// One unit of work for a session, and the call it settles.
pub(crate) struct Step {
    pub(crate) op: Op,
    pub(crate) call: Arc<Call>,
}

struct Running {
    inner: Py<PyAny>,
    /// The step's call; `None` for the pump's own `__anext__`.
    call: Option<Arc<Call>>,
    then: Then,
    /// Cancels issued for this step, undone when it ends.
    cancels: usize,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Step>,
    running: Option<Running>,
    parked: Option<Py<PyAny>>,
    task: Option<Py<PyWeakrefReference>>,
    started: bool,
    finishing: bool,
    ended: bool,
    closer: Option<Step>,
    /// The task was cancelled while parked: the next step gets the `CancelledError`.
    cancel_pending: bool,
    pump: Option<Arc<Prefetch>>,
}

/// The native coroutine behind one bridged context manager or iterator.
#[pyclass(frozen, module = "blockon._blockon")]
pub(crate) struct Session {
    pub(crate) core: Arc<Core>,
    state: Mutex<State>,
    subject: Subject,
    /// Its task's name (`blockon.wrap_iter(numbers)`): what a listing of the loop's tasks
    /// shows, where every session's coroutine reads the same.
    name: String,
}

enum Input<'py> {
    Send(Bound<'py, PyAny>),
    Throw(Bound<'py, PyTuple>),
}

/// What a bridge asks of a session, run on the session's loop thread.
pub(crate) enum SessionJob {
    /// Queue a step (starting the session's task in `context` on first use).
    Step {
        step: Step,
        context: Option<Py<PyAny>>,
    },
    /// Cancel one step.
    CancelStep(Arc<Call>),
    /// The consumer made room in the prefetch buffer: resume pumping.
    Unpark,
    /// Start pumping into this buffer.
    StartPump(Arc<Prefetch>),
    /// Stop pumping (cancel the in-flight `__anext__`).
    StopPump,
    /// No more steps: end the task once idle.
    Finish,
}

/// A [`SessionJob`] on its way to its session, as the inbox carries it.
struct Queued {
    session: Py<Session>,
    job: SessionJob,
}

impl LoopWork for Queued {
    fn run(self: Box<Self>, py: Python<'_>) -> PyResult<()> {
        let session = self.session.bind(py);
        let this = session.get();
        match self.job {
            SessionJob::Step { step, context } => {
                Session::enqueue(session, step, context.as_ref().map(|c| c.bind(py)))
            }
            SessionJob::CancelStep(call) => this.cancel_step(py, &call),
            SessionJob::Unpark => this.unpark(py),
            SessionJob::StartPump(buffer) => this.start_pump(py, buffer),
            SessionJob::StopPump => this.stop_pump(py),
            SessionJob::Finish => this.finish(py),
        }
    }

    fn refuse(self: Box<Self>) {
        if let SessionJob::Step { step, .. } = self.job {
            step.call.settle(Outcome::Cancelled);
        }
    }
}

impl Session {
    pub(crate) fn new(core: Arc<Core>, name: String) -> Self {
        Self {
            core,
            state: Mutex::new(State::default()),
            subject: Subject::default(),
            name,
        }
    }

    /// `job` for `session`, ready for its loop thread's inbox.
    pub(crate) fn job(session: &Py<Session>, py: Python<'_>, job: SessionJob) -> Job {
        Job::Session(Box::new(Queued {
            session: session.clone_ref(py),
            job,
        }))
    }

    /// The session's task, while it lives. The garbage collector clears weak references to
    /// the objects of a cycle before it takes them apart, so `None` also means the task is
    /// being collected and must not be woken.
    pub(crate) fn task<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        let weak = lock(&self.state).task.as_ref().map(|w| w.clone_ref(py));
        weak.and_then(|w| w.bind(py).upgrade())
    }

    /// Whether the subject exists (`__aiter__` succeeded, or the manager was entered).
    pub(crate) fn has_subject(&self) -> bool {
        self.subject.exists()
    }

    /// The step to run if the task is cancelled from outside (the loop closing).
    pub(crate) fn set_closer(&self, closer: Step) {
        lock(&self.state).closer = Some(closer);
    }

    // ---------------------------------------------------------------- jobs (loop thread)

    /// Queues a step, starting the session's task on first use (in `context`).
    fn enqueue(
        slf: &Bound<'_, Self>,
        step: Step,
        context: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let start = {
            let mut state = lock(&this.state);
            if state.ended {
                drop(state);
                step.call.settle(Outcome::Lost);
                return Ok(());
            }
            state.queue.push_back(step);
            !std::mem::replace(&mut state.started, true)
        };
        if start {
            let kwargs = PyDict::new(py);
            kwargs.set_item(intern!(py, "name"), &this.name)?;
            if let Some(context) = context {
                kwargs.set_item(intern!(py, "context"), context)?;
            }
            let event_loop = this.core.event_loop.bind(py);
            let task = event_loop.call_method(intern!(py, "create_task"), (slf,), Some(&kwargs))?;
            // The task is parked whenever its bridge is idle, and a bridge dropped in a
            // reference cycle is collected with it: asyncio's "Task was destroyed but it is
            // pending!" would then only alarm. Whoever still waits is told by the session's
            // `Drop`, and asyncio finalizes an async generator subject with its own hook.
            let _ = task.setattr(intern!(py, "_log_destroy_pending"), false);
            lock(&this.state).task = Some(PyWeakrefReference::new(&task)?.unbind());
            Ok(())
        } else {
            this.unpark(py)
        }
    }

    /// Cancels `call`'s step: the running one through the task, a queued one by dropping it.
    pub(crate) fn cancel_step(&self, py: Python<'_>, call: &Arc<Call>) -> PyResult<()> {
        let mut state = lock(&self.state);
        if let Some(running) = state.running.as_mut() {
            if running.call.as_ref().is_some_and(|c| Arc::ptr_eq(c, call)) {
                running.cancels += 1;
                drop(state);
                if let Some(task) = self.task(py) {
                    task.call_method0(intern!(py, "cancel"))?;
                }
                return Ok(());
            }
        }
        if let Some(at) = state.queue.iter().position(|s| Arc::ptr_eq(&s.call, call)) {
            if let Some(step) = state.queue.remove(at) {
                step.call.settle(Outcome::Cancelled);
            }
        }
        Ok(())
    }

    /// Stops the pump: cancels its in-flight `__anext__`, if any.
    fn stop_pump(&self, py: Python<'_>) -> PyResult<()> {
        let mut state = lock(&self.state);
        state.pump = None;
        let pumping = state.running.as_mut().filter(|r| r.call.is_none());
        if let Some(running) = pumping {
            running.cancels += 1;
            drop(state);
            if let Some(task) = self.task(py) {
                task.call_method0(intern!(py, "cancel"))?;
            }
        }
        Ok(())
    }

    /// Attaches a prefetch buffer: the session pulls from its subject whenever it is idle.
    fn start_pump(&self, py: Python<'_>, buffer: Arc<Prefetch>) -> PyResult<()> {
        lock(&self.state).pump = Some(buffer);
        self.unpark(py)
    }

    /// No more steps: the task ends once the queue is empty.
    fn finish(&self, py: Python<'_>) -> PyResult<()> {
        lock(&self.state).finishing = true;
        self.unpark(py)
    }

    /// Wakes the task if it is parked.
    fn unpark(&self, py: Python<'_>) -> PyResult<()> {
        let parked = lock(&self.state).parked.take();
        if let Some(future) = parked {
            let future = future.bind(py);
            if !future.call_method0(intern!(py, "done"))?.is_truthy()? {
                future.call_method1(intern!(py, "set_result"), (py.None(),))?;
            }
        }
        Ok(())
    }

    // ---------------------------------------------------------------- the task's coroutine

    fn advance(&self, py: Python<'_>, input: Input<'_>) -> PyResult<Py<PyAny>> {
        let mut input = Some(input);
        loop {
            let running = lock(&self.state).running.take();
            if let Some(running) = running {
                let inner = running.inner.bind(py);
                let step = match input.take() {
                    Some(Input::Throw(args)) => stepping::throw(inner, &args),
                    Some(Input::Send(value)) => stepping::send(inner, &value),
                    None => stepping::send(inner, &py.None().into_bound(py)),
                };
                match step {
                    Ok(Sent::Yielded(value)) => {
                        lock(&self.state).running = Some(running);
                        return Ok(value);
                    }
                    Ok(Sent::Returned(value)) => {
                        self.step_done(py, running, Outcome::Value(value))?;
                    }
                    Err(err) => {
                        let outcome = stepping::outcome_of(py, err);
                        self.step_done(py, running, outcome)?;
                    }
                }
                continue;
            }
            // Idle. The loop thread is shutting down (its inbox is closed, and it cancels
            // every task): run the closer, then end.
            let thrown = matches!(input.take(), Some(Input::Throw(_)));
            if self.core.inbox.is_closed() {
                let mut state = lock(&self.state);
                if !state.finishing {
                    state.finishing = true;
                    if let Some(buffer) = state.pump.take() {
                        // The consumer learns after the items before: cancelled from elsewhere.
                        buffer.push(Item::Cancelled);
                    }
                    if let Some(closer) = state.closer.take() {
                        state.queue.push_front(closer);
                    }
                }
            } else if thrown {
                // Cancelled while parked by something the subject itself set up (an
                // `asyncio.timeout()` or a task group held across `yield`, between `__aenter__`
                // and `__aexit__`): where `async with` or `async for` would see it, at the next
                // await on the subject. The next step gets the `CancelledError`.
                lock(&self.state).cancel_pending = true;
            }
            if let Some(step) = self.next_step(py)? {
                lock(&self.state).running = Some(step);
                continue;
            }
            let mut state = lock(&self.state);
            if state.finishing {
                state.ended = true;
                return Err(PyStopIteration::new_err(()));
            }
            drop(state);
            let future = self
                .core
                .event_loop
                .bind(py)
                .call_method0(intern!(py, "create_future"))?;
            future.setattr(intern!(py, "_asyncio_future_blocking"), true)?;
            lock(&self.state).parked = Some(future.clone().unbind());
            return Ok(future.unbind());
        }
    }

    /// The next awaitable to run: a queued step (steps that need no awaiting settle at once),
    /// or the pump's next `__anext__`.
    fn next_step(&self, py: Python<'_>) -> PyResult<Option<Running>> {
        loop {
            let step = lock(&self.state).queue.pop_front();
            if let Some(step) = step {
                let op = self.deliver_pending_cancel(py, step.op)?;
                match self.subject.begin(py, op) {
                    Ok(Begun::Done(value)) => step.call.settle(Outcome::Value(value)),
                    Ok(Begun::Await(inner, then)) => {
                        return Ok(Some(Running {
                            inner: inner.unbind(),
                            call: Some(step.call),
                            then,
                            cancels: 0,
                        }))
                    }
                    Err(err) => step.call.settle(stepping::outcome_of(py, err)),
                }
                continue;
            }
            let buffer = lock(&self.state).pump.clone();
            let Some(buffer) = buffer else {
                return Ok(None);
            };
            if !buffer.wants_more() {
                return Ok(None);
            }
            match self.subject.begin(py, Op::Anext) {
                Ok(Begun::Await(inner, then)) => {
                    return Ok(Some(Running {
                        inner: inner.unbind(),
                        call: None,
                        then,
                        cancels: 0,
                    }))
                }
                Ok(Begun::Done(value)) => self.pumped(py, Outcome::Value(value), 0),
                Err(err) => self.pumped(py, stepping::outcome_of(py, err), 0),
            }
        }
    }

    /// A cancellation that arrived while parked goes into the next step on the subject (see
    /// [`Op::with_cancel`]); one that step cannot take stays pending for the step after.
    fn deliver_pending_cancel(&self, py: Python<'_>, op: Op) -> PyResult<Op> {
        let pending = std::mem::take(&mut lock(&self.state).cancel_pending);
        if !pending {
            return Ok(op);
        }
        Ok(match op.with_cancel(py)? {
            Ok(op) => op,
            Err(op) => {
                lock(&self.state).cancel_pending = true;
                op
            }
        })
    }

    fn step_done(&self, py: Python<'_>, running: Running, outcome: Outcome) -> PyResult<()> {
        match (running.call, running.then, outcome) {
            (Some(call), Then::Enter, Outcome::Value(manager)) => {
                // The awaitable gave the context manager: enter it, in the same step.
                match self.subject.enter_returned(py, manager) {
                    Ok(Begun::Await(inner, then)) => {
                        lock(&self.state).running = Some(Running {
                            inner: inner.unbind(),
                            call: Some(call),
                            then,
                            cancels: running.cancels,
                        });
                        return Ok(());
                    }
                    Ok(Begun::Done(value)) => call.settle(Outcome::Value(value)),
                    Err(err) => call.settle(stepping::outcome_of(py, err)),
                }
            }
            (Some(call), _, outcome) => call.settle(outcome),
            (None, _, outcome) => self.pumped(py, outcome, running.cancels),
        }
        if running.cancels > 0 {
            if let Some(task) = self.task(py) {
                for _ in 0..running.cancels {
                    task.call_method0(intern!(py, "uncancel"))?;
                }
            }
        }
        Ok(())
    }

    /// Queues what one pumped `__anext__` produced.
    fn pumped(&self, py: Python<'_>, outcome: Outcome, cancels: usize) {
        let buffer = lock(&self.state).pump.clone();
        let Some(buffer) = buffer else {
            return; // the consumer stopped the pump; what was in flight is dropped
        };
        buffer.push(match outcome {
            Outcome::Value(value) => Item::Value(value),
            Outcome::Raised(exc) if exc.bind(py).is_instance_of::<PyStopAsyncIteration>() => {
                Item::End
            }
            Outcome::Raised(exc) => Item::Raised(exc),
            Outcome::Cancelled if cancels > 0 => return,
            Outcome::Cancelled | Outcome::Lost => Item::Cancelled,
        });
    }
}

#[pymethods]
impl Session {
    fn __await__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Shows the garbage collector what the session holds, as the driver does. A session
    /// can be part of a cycle through Python objects: its subject (an async generator)
    /// may refer to the bridge that holds the session, and a parked session's task, future
    /// and the future's wake-up callback refer to each other. Without these edges the
    /// subject looks held from outside, and the whole cycle lives until the interpreter
    /// exits. No `__clear__`: the task's own clearing, and the bridge's, drop the session,
    /// which breaks the cycle.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.subject.visit(&visit)?;
        // try_lock: a traversal must never block; a step in progress holds what it works on
        // on its own stack anyway.
        let Ok(state) = self.state.try_lock() else {
            return Ok(());
        };
        for step in state.queue.iter().chain(state.closer.as_ref()) {
            step.op.visit(&visit)?;
        }
        if let Some(running) = &state.running {
            visit.call(&running.inner)?;
        }
        visit.call(&state.parked)?;
        visit.call(&state.task)
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.advance(py, Input::Send(py.None().into_bound(py)))
    }

    fn send(&self, value: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.advance(value.py(), Input::Send(value.clone()))
    }

    #[pyo3(signature = (*args))]
    fn throw(&self, args: &Bound<'_, PyTuple>) -> PyResult<Py<PyAny>> {
        self.advance(args.py(), Input::Throw(args.clone()))
    }

    /// Closes the running step, if any, and ends the session.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let (running, queued) = {
            let mut state = lock(&self.state);
            state.ended = true;
            (state.running.take(), std::mem::take(&mut state.queue))
        };
        for step in queued {
            step.call.settle(Outcome::Cancelled);
        }
        if let Some(running) = running {
            stepping::close(running.inner.bind(py))?;
            if let Some(call) = running.call {
                call.settle(Outcome::Cancelled);
            }
        }
        Ok(())
    }

    /// Whether the caller of the running step gave up on its cleanup after Ctrl-C: the loop
    /// thread's shutdown then does not wait for this task again.
    #[getter]
    fn _abandoned(&self) -> bool {
        let state = lock(&self.state);
        let call = state.running.as_ref().and_then(|r| r.call.as_ref());
        call.is_some_and(|call| call.is_abandoned())
    }

    /// What asyncio shows for the session's task (`coro=<blockon.session()>`). Getters, as
    /// the driver's: a class attribute of this name would rename the class itself.
    #[getter]
    #[allow(clippy::unused_self)] // a getter is a method, whatever it reads
    fn __qualname__(&self) -> &'static str {
        "blockon.session"
    }

    #[getter]
    #[allow(clippy::unused_self)]
    fn __name__(&self) -> &'static str {
        "blockon.session"
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // A session whose task vanished (its loop closed) must not leave anyone waiting.
        let state = self
            .state
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for step in state.queue.drain(..) {
            step.call.settle(Outcome::Lost);
        }
        if let Some(call) = state.running.take().and_then(|r| r.call) {
            call.settle(Outcome::Lost);
        }
        if let Some(buffer) = state.pump.take() {
            buffer.push(Item::Cancelled);
        }
    }
}
