//! Work for a loop thread: what callers queue in its inbox, and what becomes of work the loop
//! thread will never run. The loop thread runs jobs in `loop_thread`'s drain.
//!
//! Work for a session is boxed behind [`LoopWork`] instead of being named here. A session
//! holds its loop thread's core, whose inbox holds jobs; a job type that named the session
//! type would tie this module and `session` into a cycle. The box costs one small allocation
//! per session step, next to a cross-thread hand-off that costs microseconds. Driver jobs,
//! on the path of every `run()`, stay unboxed.

use pyo3::prelude::*;

use crate::completion::Outcome;
use crate::driver::Driver;

/// Work that knows how to run itself on the loop thread, and how to let go of itself when it
/// never will.
pub(crate) trait LoopWork: Send {
    /// Runs on the loop thread.
    fn run(self: Box<Self>, py: Python<'_>) -> PyResult<()>;

    /// The loop thread will never run it: whoever waits on it learns it was cancelled.
    fn refuse(self: Box<Self>);
}

/// Work for the loop thread.
pub(crate) enum Job {
    /// Start a task for this driver, in this context. `link` ties a `submit` future to it.
    Run {
        driver: Py<Driver>,
        context: Py<PyAny>,
        link: Option<Py<PyAny>>,
    },
    /// Cancel the task running this driver.
    Cancel(Py<Driver>),
    /// Something for a session to do.
    Session(Box<dyn LoopWork>),
    /// Stop the loop (the thread then shuts it down).
    Stop,
}

impl Job {
    /// Disposes of a job the loop thread will never run: the awaitable is closed (no "never
    /// awaited" warning), and whoever waits on it learns it was cancelled.
    pub(crate) fn refuse(self, py: Python<'_>) {
        match self {
            Job::Run { driver, .. } => {
                if let Err(err) = driver.get().abandon(py, Outcome::Cancelled) {
                    err.write_unraisable(py, None);
                }
            }
            Job::Session(work) => work.refuse(),
            Job::Cancel(_) | Job::Stop => {}
        }
    }
}
