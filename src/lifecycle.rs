//! The life of one loop thread: idle, starting, running, closing, closed; plus what the
//! process's own life does to it (a fork, interpreter exit).
//!
//! The thread itself is a Python `threading.Thread` (so `threading.current_thread().name` is
//! the name users gave), started by the Python subclass's `_spawn`; its body is Python
//! (`blockon._loopthread`), because shutting a loop down is a sequence of asyncio calls. What
//! lives here is the state machine every caller consults on every call, and the waits on it,
//! which release the GIL and still honour Ctrl-C (through `waiter`, like every wait).
//!
//! Fork: a child process has no loop thread, only a copy of the parent's bookkeeping. Each
//! [`Core`] records the fork generation it was made in; `after_fork_in_child` bumps the
//! generation, and any state from an older generation reads as idle, so the next call in the
//! child starts a fresh loop thread. The parent's loop objects are parked in [`ABANDONED`] and
//! never freed in the child: freeing them would run their `__del__`, which warns about an
//! unclosed loop, and closing them would touch the parent's file descriptors.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

use crate::completion::lock;
use crate::fork;
use crate::inbox::Inbox;
use crate::job::Job;
use crate::waiter::{self, Waitable, Wake};
use crate::wakeup::Waker;

/// Cores inherited from the parent through a fork, kept alive forever (see the module docs).
static ABANDONED: Mutex<Vec<Arc<Core>>> = Mutex::new(Vec::new());

/// Set when the interpreter starts exiting, before it joins its threads.
static EXITING: AtomicBool = AtomicBool::new(false);

/// Registered to run when the interpreter starts exiting, before it joins the threads it
/// waits for (`to_thread` workers among them) and before `atexit` closes the loop threads.
#[pyfunction]
pub(crate) fn _interpreter_exiting() {
    EXITING.store(true, Ordering::Release);
}

/// Whether the interpreter is exiting: `to_thread` workers stop waiting, and a closed default
/// loop thread is no longer replaced.
pub(crate) fn interpreter_exiting() -> bool {
    EXITING.load(Ordering::Acquire)
}

/// A running loop thread's shared parts.
pub(crate) struct Core {
    pub(crate) event_loop: Py<PyAny>,
    pub(crate) inbox: Inbox<Job>,
    generation: u64,
    /// The loop thread has shut its loop down: work still unfinished (an awaitable that
    /// ignored cancellation through the shutdown's grace) will never finish.
    stopped: AtomicBool,
}

impl Core {
    /// Whether this core belongs to this process (and not to a parent before a fork).
    pub(crate) fn is_current(&self) -> bool {
        self.generation == fork::generation()
    }

    /// Whether the loop thread has shut its loop down (see the field).
    pub(crate) fn has_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Queues `job` without waiting for it, waking the loop (GIL released) if it sleeps;
    /// `false` if the loop thread is shutting down (the job is then refused).
    pub(crate) fn post(&self, py: Python<'_>, job: Job) -> bool {
        match self.inbox.push(job) {
            Ok(must_wake) => {
                if must_wake {
                    py.detach(|| self.inbox.wake());
                }
                true
            }
            Err(job) => {
                job.refuse(py);
                false
            }
        }
    }
}

enum Life {
    Idle,
    Starting {
        generation: u64,
        core: Option<Arc<Core>>,
    },
    Running(Arc<Core>),
    Failed(PyErr),
    Closing(Arc<Core>),
    Closed,
}

impl Life {
    /// Reads state inherited through a fork as what it is in the child.
    fn refresh(&mut self) {
        let stale = match self {
            Life::Starting { generation, .. } => *generation != fork::generation(),
            Life::Running(core) | Life::Closing(core) => !core.is_current(),
            _ => false,
        };
        if stale {
            let closing = matches!(self, Life::Closing(_));
            let old = std::mem::replace(self, if closing { Life::Closed } else { Life::Idle });
            if let Life::Running(core)
            | Life::Closing(core)
            | Life::Starting {
                core: Some(core), ..
            } = old
            {
                lock(&ABANDONED).push(core);
            }
        }
    }
}

/// What `begin_close` found.
pub(crate) enum CloseStep {
    /// Nothing was running; the loop thread is now closed.
    AlreadyClosed,
    /// The thread was asked to stop; wait for `Closed`.
    Wait,
}

/// The error for work handed to a closed loop thread. A closed default loop thread starts
/// afresh on next use (see `default`), so this is about one the caller made.
pub(crate) fn closed_error() -> PyErr {
    PyRuntimeError::new_err(
        "this LoopThread is closed; create a new blockon.LoopThread() (or use the module-level \
         functions, which use the default loop thread)",
    )
}

pub(crate) struct Lifecycle {
    life: Mutex<Life>,
    changed: Condvar,
    /// Once closed, start afresh on next use (the default loop thread: see `default`).
    reopens: AtomicBool,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self {
            life: Mutex::new(Life::Idle),
            changed: Condvar::new(),
            reopens: AtomicBool::new(false),
        }
    }
}

impl Lifecycle {
    fn set(&self, life: Life) {
        *lock(&self.life) = life;
        self.changed.notify_all();
    }

    /// The running core, if there is one; never starts anything.
    pub(crate) fn running(&self) -> Option<Arc<Core>> {
        let mut life = lock(&self.life);
        life.refresh();
        match &*life {
            Life::Running(core) => Some(Arc::clone(core)),
            _ => None,
        }
    }

    /// The core the loop thread works with, from the moment it attached until it stopped.
    pub(crate) fn attached(&self) -> Option<Arc<Core>> {
        match &*lock(&self.life) {
            Life::Starting {
                core: Some(core), ..
            }
            | Life::Running(core)
            | Life::Closing(core) => Some(Arc::clone(core)),
            _ => None,
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        let mut life = lock(&self.life);
        life.refresh();
        matches!(*life, Life::Closing(_) | Life::Closed)
    }

    /// Makes this loop thread start afresh on next use once closed, until interpreter exit.
    pub(crate) fn reopen_when_closed(&self) {
        self.reopens.store(true, Ordering::Release);
    }

    /// Whether a closed loop thread starts afresh on next use: the default one, until the
    /// interpreter exits (a thread started after that would never be closed).
    fn reopens(&self) -> bool {
        self.reopens.load(Ordering::Acquire) && !interpreter_exiting()
    }

    /// The running core, starting the loop thread with `spawn` if none runs yet.
    pub(crate) fn acquire(
        &self,
        py: Python<'_>,
        spawn: impl Fn() -> PyResult<()>,
    ) -> PyResult<Arc<Core>> {
        loop {
            let mut life = lock(&self.life);
            life.refresh();
            match &mut *life {
                Life::Running(core) => return Ok(Arc::clone(core)),
                Life::Closing(_) if self.reopens() => {
                    drop(life);
                    self.wait_while(py, None, |l| matches!(l, Life::Closing(_)))?;
                }
                Life::Closed if self.reopens() => *life = Life::Idle,
                Life::Closing(_) | Life::Closed => return Err(closed_error()),
                Life::Failed(_) => {
                    let Life::Failed(err) = std::mem::replace(&mut *life, Life::Idle) else {
                        unreachable!("matched Failed above")
                    };
                    return Err(err);
                }
                Life::Starting { .. } => {
                    drop(life);
                    self.wait_while(py, None, |l| matches!(l, Life::Starting { .. }))?;
                }
                Life::Idle => {
                    *life = Life::Starting {
                        generation: fork::generation(),
                        core: None,
                    };
                    drop(life);
                    if let Err(err) = spawn() {
                        self.set(Life::Idle);
                        return Err(err);
                    }
                    self.wait_while(py, None, |l| matches!(l, Life::Starting { .. }))?;
                }
            }
        }
    }

    /// The loop thread made its loop: give it an inbox, woken through `wake` (see `wakeup`).
    pub(crate) fn attach(
        &self,
        event_loop: Py<PyAny>,
        wake: Option<Py<PyAny>>,
    ) -> PyResult<Arc<Core>> {
        let waker = Waker::new(wake).map_err(|e| {
            PyRuntimeError::new_err(format!(
                "cannot create the loop thread's wake-up socket: {e}"
            ))
        })?;
        let inbox = Inbox::new(waker);
        let mut life = lock(&self.life);
        let Life::Starting { generation, core } = &mut *life else {
            return Err(PyRuntimeError::new_err(
                "the loop thread attached while not starting",
            ));
        };
        let fresh = Arc::new(Core {
            event_loop,
            inbox,
            generation: *generation,
            stopped: AtomicBool::new(false),
        });
        *core = Some(Arc::clone(&fresh));
        Ok(fresh)
    }

    /// The loop thread is ready for work.
    pub(crate) fn started(&self) {
        let mut life = lock(&self.life);
        if let Life::Starting {
            core: Some(core), ..
        } = &*life
        {
            *life = Life::Running(Arc::clone(core));
        }
        drop(life);
        self.changed.notify_all();
    }

    pub(crate) fn start_failed(&self, err: PyErr) {
        self.set(Life::Failed(err));
    }

    /// The loop thread has shut its loop down and is about to end.
    pub(crate) fn stopped(&self) {
        let mut life = lock(&self.life);
        if let Life::Running(core) | Life::Closing(core) = &*life {
            core.stopped.store(true, Ordering::Release);
        }
        *life = match &*life {
            Life::Closing(_) | Life::Closed => Life::Closed,
            // The loop stopped without being asked (something called loop.stop()): the next
            // call starts a fresh one.
            _ => Life::Idle,
        };
        drop(life);
        self.changed.notify_all();
    }

    /// Asks the loop thread to stop; the caller then waits with [`Lifecycle::wait_closed`].
    pub(crate) fn begin_close(&self, py: Python<'_>) -> PyResult<CloseStep> {
        loop {
            let mut life = lock(&self.life);
            life.refresh();
            match &*life {
                Life::Idle | Life::Failed(_) | Life::Closed => {
                    *life = Life::Closed;
                    return Ok(CloseStep::AlreadyClosed);
                }
                Life::Starting { .. } => {
                    drop(life);
                    self.wait_while(py, None, |l| matches!(l, Life::Starting { .. }))?;
                }
                Life::Closing(_) => return Ok(CloseStep::Wait),
                Life::Running(core) => {
                    let core = Arc::clone(core);
                    *life = Life::Closing(Arc::clone(&core));
                    drop(life);
                    // A loop already shutting down refuses it: it is stopping anyway.
                    core.post(py, Job::Stop);
                    return Ok(CloseStep::Wait);
                }
            }
        }
    }

    /// Waits until the loop thread has closed; `false` if `until` passed first.
    pub(crate) fn wait_closed(&self, py: Python<'_>, until: Option<Instant>) -> PyResult<bool> {
        self.wait_while(py, until, |l| !matches!(l, Life::Closed | Life::Idle))
    }

    /// Waits, GIL released and Ctrl-C honoured, while `pred` holds; `false` on expiry.
    fn wait_while(
        &self,
        py: Python<'_>,
        until: Option<Instant>,
        pred: impl Fn(&Life) -> bool + Sync,
    ) -> PyResult<bool> {
        let change = Change {
            lifecycle: self,
            pred: &pred,
        };
        let woke = waiter::wait(py, &change, until, waiter::Start::default())?;
        Ok(matches!(woke, Wake::Done))
    }
}

/// A wait for the life to leave the states `pred` holds for.
struct Change<'a> {
    lifecycle: &'a Lifecycle,
    pred: &'a (dyn Fn(&Life) -> bool + Sync),
}

impl Waitable for Change<'_> {
    fn is_ready(&self) -> bool {
        !(self.pred)(&lock(&self.lifecycle.life))
    }

    fn park_until(&self, until: Instant) -> bool {
        let mut life = lock(&self.lifecycle.life);
        while (self.pred)(&life) {
            let now = Instant::now();
            if now >= until {
                return false;
            }
            life = self
                .lifecycle
                .changed
                .wait_timeout(life, until - now)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        true
    }
}
