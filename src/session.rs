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

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyRuntimeError, PyStopAsyncIteration, PyStopIteration};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyTuple, PyWeakrefReference};

use crate::completion::{lock, Call, Outcome};
use crate::lifecycle::Core;
use crate::prefetch::{Item, Prefetch};
use crate::stepping::{self, Sent};

/// What a step does, in the session's task. The session holds the object it works on (the
/// async iterator, or the async context manager) as its *subject*.
pub enum Op {
    /// `subject = type(source).__aiter__(source)`.
    Aiter(Py<PyAny>),
    /// Await `type(subject).__anext__(subject)`.
    Anext,
    /// Await `subject.asend(value)` (an async generator's `send`).
    Asend(Py<PyAny>),
    /// Await `subject.athrow(*args)` (an async generator's `throw`).
    Athrow(Py<PyTuple>),
    /// Await `subject.aclose()` where it has one.
    Aclose,
    /// Enter an async context manager, or an awaitable that returns one: the subject becomes
    /// the manager, and the step's value is what `__aenter__` returned.
    Enter(Py<PyAny>),
    /// Await `type(subject).__aexit__(subject, *args)`.
    Exit(Py<PyTuple>),
    /// Call `func(*args)`, awaiting the result.
    Call(Py<PyAny>, Py<PyTuple>),
}

/// One unit of work for a session, and the call it settles.
pub struct Step {
    pub op: Op,
    pub call: Arc<Call>,
}

/// What a running step does when its awaitable finishes.
enum Then {
    /// Settle the step's call (or feed the pump) with the outcome.
    Settle,
    /// The awaited value is the context manager: make it the subject and enter it.
    Enter,
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
    subject: Option<Py<PyAny>>,
    /// The task was cancelled while parked: the next step gets the `CancelledError`.
    cancel_pending: bool,
    /// Why there is no subject (`__aiter__` failed): what later steps raise.
    subject_error: Option<Py<PyAny>>,
    pump: Option<Arc<Prefetch>>,
}

/// The native coroutine behind one bridged context manager or iterator.
#[pyclass(frozen, module = "blockon._blockon")]
pub struct Session {
    pub core: Arc<Core>,
    state: Mutex<State>,
}

enum Input<'py> {
    Send(Bound<'py, PyAny>),
    Throw(Bound<'py, PyTuple>),
}

impl Session {
    pub fn new(core: Arc<Core>) -> Self {
        Self {
            core,
            state: Mutex::new(State::default()),
        }
    }

    fn task<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        let weak = lock(&self.state).task.as_ref().map(|w| w.clone_ref(py));
        weak.and_then(|w| w.bind(py).upgrade())
    }

    // ---------------------------------------------------------------- jobs (loop thread)

    /// Queues a step, starting the session's task on first use (in `context`).
    pub fn enqueue(
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
            let kwargs = pyo3::types::PyDict::new(py);
            if let Some(context) = context {
                kwargs.set_item(intern!(py, "context"), context)?;
            }
            let event_loop = this.core.event_loop.bind(py);
            let task = event_loop.call_method(intern!(py, "create_task"), (slf,), Some(&kwargs))?;
            lock(&this.state).task = Some(PyWeakrefReference::new(&task)?.unbind());
            Ok(())
        } else {
            this.unpark(py)
        }
    }

    /// Cancels `call`'s step: the running one through the task, a queued one by dropping it.
    pub fn cancel_step(&self, py: Python<'_>, call: &Arc<Call>) -> PyResult<()> {
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
    pub fn stop_pump(&self, py: Python<'_>) -> PyResult<()> {
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
    pub fn start_pump(&self, py: Python<'_>, buffer: Arc<Prefetch>) -> PyResult<()> {
        lock(&self.state).pump = Some(buffer);
        self.unpark(py)
    }

    /// The step to run if the task is cancelled from outside (the loop closing).
    pub fn set_closer(&self, closer: Step) {
        lock(&self.state).closer = Some(closer);
    }

    /// No more steps: the task ends once the queue is empty.
    pub fn finish(&self, py: Python<'_>) -> PyResult<()> {
        lock(&self.state).finishing = true;
        self.unpark(py)
    }

    /// Wakes the task if it is parked.
    pub fn unpark(&self, py: Python<'_>) -> PyResult<()> {
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
                match self.begin(py, op) {
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
            match self.begin(py, Op::Anext) {
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

    /// A cancellation that arrived while parked goes into the next step on the subject: an
    /// `__anext__` becomes `athrow(CancelledError())`, an `__aexit__` without an exception gets
    /// the `CancelledError` (so `asyncio.timeout()` turns it into `TimeoutError`, and a task
    /// group into its errors).
    fn deliver_pending_cancel(&self, py: Python<'_>, op: Op) -> PyResult<Op> {
        let pending = std::mem::take(&mut lock(&self.state).cancel_pending);
        if !pending {
            return Ok(op);
        }
        let cancelled = crate::py::cached(py)?.asyncio_cancelled.bind(py);
        let exc = cancelled.call0()?;
        Ok(match op {
            Op::Anext | Op::Asend(_) => Op::Athrow(PyTuple::new(py, [exc])?.unbind()),
            Op::Exit(args) if args.bind(py).get_item(0)?.is_none() => Op::Exit(
                PyTuple::new(
                    py,
                    [cancelled.clone().into_any(), exc, py.None().into_bound(py)],
                )?
                .unbind(),
            ),
            other => {
                lock(&self.state).cancel_pending = true;
                other
            }
        })
    }

    /// Whether the subject exists (`__aiter__` succeeded, or the manager was entered).
    pub fn has_subject(&self) -> bool {
        lock(&self.state).subject.is_some()
    }

    fn subject<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let state = lock(&self.state);
        if let Some(subject) = &state.subject {
            return Ok(subject.bind(py).clone());
        }
        Err(match &state.subject_error {
            Some(exc) => PyErr::from_value(exc.bind(py).clone()),
            None => PyRuntimeError::new_err("blockon: no async iterator or context manager yet"),
        })
    }

    /// Starts one operation: either it is done at once, or there is an awaitable to step.
    fn begin<'py>(&self, py: Python<'py>, op: Op) -> PyResult<Begun<'py>> {
        let method = |name: &Bound<'py, pyo3::types::PyString>,
                      args: &[Bound<'py, PyAny>]|
         -> PyResult<Bound<'py, PyAny>> {
            let subject = self.subject(py)?;
            let func = subject.get_type().getattr(name)?;
            let mut all = vec![subject];
            all.extend_from_slice(args);
            func.call1(PyTuple::new(py, all)?)
        };
        let awaited =
            |aw: Bound<'py, PyAny>| Ok(Begun::Await(awaitable_for_step(&aw)?, Then::Settle));
        match op {
            Op::Aiter(source) => {
                let source = source.bind(py);
                match source
                    .get_type()
                    .getattr(intern!(py, "__aiter__"))
                    .and_then(|f| f.call1((source,)))
                {
                    Ok(iterator) => {
                        lock(&self.state).subject = Some(iterator.unbind());
                        Ok(Begun::Done(py.None()))
                    }
                    Err(err) => {
                        let err = not_async_iterable(source, err);
                        lock(&self.state).subject_error =
                            Some(err.clone_ref(py).into_value(py).into_any());
                        Err(err)
                    }
                }
            }
            Op::Anext => awaited(method(intern!(py, "__anext__"), &[])?),
            Op::Asend(value) => awaited(method(intern!(py, "asend"), &[value.into_bound(py)])?),
            Op::Athrow(args) => {
                let args: Vec<Bound<'py, PyAny>> = args.bind(py).iter().collect();
                awaited(method(intern!(py, "athrow"), &args)?)
            }
            Op::Aclose => {
                let Ok(subject) = self.subject(py) else {
                    return Ok(Begun::Done(py.None())); // never started: nothing to close
                };
                match subject.getattr_opt(intern!(py, "aclose"))? {
                    Some(aclose) => awaited(aclose.call0()?),
                    None => Ok(Begun::Done(py.None())),
                }
            }
            Op::Enter(obj) => {
                let obj = obj.into_bound(py);
                if obj.get_type().hasattr(intern!(py, "__aenter__"))? {
                    lock(&self.state).subject = Some(obj.unbind());
                    awaited(method(intern!(py, "__aenter__"), &[])?)
                } else if obj.get_type().hasattr(intern!(py, "__await__"))?
                    || obj.cast::<pyo3::types::PyIterator>().is_ok()
                {
                    Ok(Begun::Await(awaitable_for_step(&obj)?, Then::Enter))
                } else {
                    Err(pyo3::exceptions::PyTypeError::new_err(format!(
                        "blockon.wrap_context() needs an async context manager (an object with \
                         __aenter__ and __aexit__) or an awaitable that returns one, got {:?}",
                        obj.get_type().name()?.to_string()
                    )))
                }
            }
            Op::Exit(args) => {
                let args: Vec<Bound<'py, PyAny>> = args.bind(py).iter().collect();
                awaited(method(intern!(py, "__aexit__"), &args)?)
            }
            Op::Call(func, args) => awaited(func.bind(py).call1(args.bind(py))?),
        }
    }

    fn step_done(&self, py: Python<'_>, running: Running, outcome: Outcome) -> PyResult<()> {
        match (running.call, running.then, outcome) {
            (Some(call), Then::Enter, Outcome::Value(manager)) => {
                // The awaitable gave the context manager: enter it, in the same step.
                match self.begin(py, Op::Enter(manager)) {
                    Ok(Begun::Await(inner, then)) if matches!(then, Then::Settle) => {
                        lock(&self.state).running = Some(Running {
                            inner: inner.unbind(),
                            call: Some(call),
                            then,
                            cancels: running.cancels,
                        });
                        return Ok(());
                    }
                    Ok(Begun::Await(..)) => call.settle(Outcome::Raised(
                        pyo3::exceptions::PyTypeError::new_err(
                            "blockon.wrap_context(): the awaitable returned another awaitable, \
                             not an async context manager",
                        )
                        .into_value(py)
                        .into_any(),
                    )),
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

/// How an operation began.
enum Begun<'py> {
    /// Finished at once with this value.
    Done(Py<PyAny>),
    /// Step this awaitable, then do `Then`.
    Await(Bound<'py, PyAny>, Then),
}

/// The TypeError for something `wrap_iter` cannot iterate, naming what was received.
fn not_async_iterable(source: &Bound<'_, PyAny>, err: PyErr) -> PyErr {
    let py = source.py();
    if !err.is_instance_of::<pyo3::exceptions::PyAttributeError>(py) {
        return err;
    }
    let name = source
        .get_type()
        .name()
        .map_or_else(|_| "?".to_owned(), |n| n.to_string());
    let hint = if source.hasattr("__iter__").unwrap_or(false) {
        "; it is a plain (sync) iterable: iterate it directly"
    } else {
        ""
    };
    pyo3::exceptions::PyTypeError::new_err(format!(
        "blockon.wrap_iter() needs an async iterable (an object with __aiter__), got {name:?}{hint}"
    ))
}

/// The object to step for a step's awaitable: itself when it can be sent into directly (a
/// coroutine, or an iterator such as an async generator's `asend` object), else `__await__()`.
fn awaitable_for_step<'py>(awaitable: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    if awaitable.cast::<pyo3::types::PyIterator>().is_ok() {
        return Ok(awaitable.clone());
    }
    crate::awaitable::prepare(awaitable, "wrap_iter")
}

#[pymethods]
impl Session {
    fn __await__(slf: Py<Self>) -> Py<Self> {
        slf
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

    #[classattr]
    fn __qualname__() -> &'static str {
        "blockon.session"
    }

    #[classattr]
    fn __name__() -> &'static str {
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

/// `RuntimeError` for a session whose loop thread is gone (closed, or from before a fork).
pub fn gone() -> PyErr {
    PyRuntimeError::new_err(
        "the loop thread this bridge was started on has closed (or this process was forked \
         since); create the bridge again",
    )
}
