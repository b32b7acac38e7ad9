//! Which process the engine's state belongs to: a counter bumped in a child after
//! `os.fork()`. State stamped with an older value is the parent's: the child has none of
//! its threads, and nobody in the child waits for its outcomes.
//!
//! Its own module because two sides read it: a loop thread's life (whose state from before a
//! fork reads as idle in the child) and the driver (whose caller exists only in the parent).

use std::sync::atomic::{AtomicU64, Ordering};

use pyo3::prelude::*;

/// Incremented in a child process after `os.fork()`.
static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);

/// The current fork generation (0 in a process that was not forked from a blockon user).
pub(crate) fn generation() -> u64 {
    FORK_GENERATION.load(Ordering::Acquire)
}

/// Registered with `os.register_at_fork(after_in_child=...)`.
#[pyfunction]
pub(crate) fn _after_fork_in_child() {
    FORK_GENERATION.fetch_add(1, Ordering::AcqRel);
}
