//! How a sleeping loop thread is told that work arrived: the one part of the inbox that
//! depends on the system and on the event loop.
//!
//! - [`Waker::Socket`] (Unix only): one byte written to a socket pair whose read end the loop
//!   watches with `add_reader`. Writing needs no GIL, so a caller releases the GIL first and
//!   then wakes the loop thread, which then never wakes up only to wait for a GIL the caller
//!   still holds. The stdlib selector loops (through the hot selector) and uvloop use it.
//! - [`Waker::Threadsafe`]: `loop.call_soon_threadsafe(on_wake)`, the one wake-up every asyncio
//!   loop has. It is the portable path: Windows' proactor loop (it has no `add_reader`), any
//!   loop without `add_reader`, and every loop under the `BLOCKON_GENERIC_PATH=1` testing
//!   switch, which is how this path is tested on Linux. It needs the GIL, which the waking
//!   thread takes back for the call.
//!
//! Rejected for Windows: a loopback TCP socket pair (what `socket.socketpair` emulates there)
//! read by a task awaiting `loop.sock_recv`. Waking would need no GIL, but the reader would be
//! a task of blockon's own in `asyncio.all_tasks()`, cancelled by code that cancels every task,
//! and a second, Windows-only mechanism that no machine of this project can run.

#[cfg(unix)]
use std::io::{ErrorKind, Read, Write};
#[cfg(unix)]
use std::os::fd::AsRawFd;
#[cfg(unix)]
use std::os::unix::net::UnixStream;
use std::sync::Mutex;

use pyo3::exceptions::{PyKeyboardInterrupt, PyRuntimeError};
use pyo3::prelude::*;

use crate::completion::lock;

/// How many times a wake-up through `call_soon_threadsafe` is tried when a signal handler's
/// exception (Ctrl-C) interrupts the call.
const ATTEMPTS: usize = 3;

/// A loop thread's wake-up (see the module docs).
pub(crate) enum Waker {
    #[cfg(unix)]
    Socket(Socket),
    Threadsafe(Threadsafe),
}

impl Waker {
    /// `Threadsafe` with `call` (`functools.partial(loop.call_soon_threadsafe, on_wake)`);
    /// without one, a socket pair where the system has one.
    pub(crate) fn new(call: Option<Py<PyAny>>) -> std::io::Result<Self> {
        match call {
            Some(call) => Ok(Waker::Threadsafe(Threadsafe {
                call: Mutex::new(Some(call)),
            })),
            #[cfg(unix)]
            None => Socket::pair().map(Waker::Socket),
            #[cfg(not(unix))]
            None => Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "this system has no wake-up socket: the loop is woken through \
                 call_soon_threadsafe",
            )),
        }
    }

    /// The descriptor the loop watches with `add_reader`, if it is woken through a socket.
    pub(crate) fn read_fd(&self) -> Option<i32> {
        match self {
            #[cfg(unix)]
            Waker::Socket(socket) => Some(socket.rx.as_raw_fd()),
            Waker::Threadsafe(_) => None,
        }
    }

    /// Wakes the loop. Safe from any thread, with or without the GIL; never under a lock that
    /// a thread holding the GIL may wait for, since `Threadsafe` runs Python code, which lets
    /// other threads take the GIL.
    pub(crate) fn wake(&self) {
        match self {
            #[cfg(unix)]
            Waker::Socket(socket) => socket.wake(),
            Waker::Threadsafe(threadsafe) => Python::attach(|py| threadsafe.wake(py)),
        }
    }

    /// Consumer: forgets the wake-ups that arrived (they are being answered).
    pub(crate) fn clear(&self) {
        match self {
            #[cfg(unix)]
            Waker::Socket(socket) => socket.clear(),
            Waker::Threadsafe(_) => {}
        }
    }

    /// The inbox closed: no more wake-ups. Drops the Python callable, which refers to the loop
    /// thread whose core holds this waker: a cycle through Rust that Python's garbage
    /// collector cannot see.
    pub(crate) fn shut(&self) {
        match self {
            #[cfg(unix)]
            Waker::Socket(_) => {}
            Waker::Threadsafe(threadsafe) => {
                // Released after the lock: letting go of it may run Python code.
                let call = lock(&threadsafe.call).take();
                drop(call);
            }
        }
    }
}

/// The Unix wake-up: a non-blocking socket pair.
#[cfg(unix)]
pub(crate) struct Socket {
    tx: UnixStream,
    rx: UnixStream,
}

#[cfg(unix)]
impl Socket {
    fn pair() -> std::io::Result<Self> {
        let (tx, rx) = UnixStream::pair()?;
        tx.set_nonblocking(true)?;
        rx.set_nonblocking(true)?;
        Ok(Self { tx, rx })
    }

    fn wake(&self) {
        // A full socket buffer means a wake-up is already pending, so WouldBlock is fine.
        let _ = (&self.tx).write(&[1]);
    }

    fn clear(&self) {
        let mut buf = [0_u8; 64];
        loop {
            match (&self.rx).read(&mut buf) {
                Ok(n) if n == buf.len() => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                _ => break,
            }
        }
    }

    /// Reads (and so consumes) the wake-up bytes waiting on the loop's end.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        let mut buf = [0_u8; 16];
        match (&self.rx).read(&mut buf) {
            Ok(n) => n,
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::WouldBlock);
                0
            }
        }
    }
}

/// The portable wake-up: a callback queued with `call_soon_threadsafe`.
pub(crate) struct Threadsafe {
    /// `None` once shut (see [`Waker::shut`]).
    call: Mutex<Option<Py<PyAny>>>,
}

impl Threadsafe {
    /// Queues the loop's wake-up callback.
    ///
    /// `call_soon_threadsafe` is Python code (on the stdlib loops), and Python runs signal
    /// handlers between its instructions: Ctrl-C in the main thread can raise
    /// `KeyboardInterrupt` inside it, before or after it queued the callback. The call is then
    /// made again (a second callback finds nothing to do), and the interrupt is raised again
    /// with `_thread.interrupt_main()`, so that the caller's wait, which checks signals
    /// every 100 ms, still raises it. A `RuntimeError` means the loop is closed: its loop
    /// thread is shutting down and refuses work, so there is nothing to wake.
    fn wake(&self, py: Python<'_>) {
        // Cloned out first: the call may release the GIL, and no lock is held across it.
        let Some(call) = lock(&self.call).as_ref().map(|call| call.clone_ref(py)) else {
            return;
        };
        let mut interrupted = None;
        for _ in 0..ATTEMPTS {
            match call.call0(py) {
                Ok(_) => break,
                Err(err) if err.is_instance_of::<PyRuntimeError>(py) => break,
                Err(err) => {
                    interrupted.get_or_insert(err);
                }
            }
        }
        let Some(err) = interrupted else {
            return;
        };
        if err.is_instance_of::<PyKeyboardInterrupt>(py) {
            let again = py
                .import("_thread")
                .and_then(|thread| thread.call_method0("interrupt_main"));
            if let Err(failed) = again {
                failed.write_unraisable(py, Some(call.bind(py)));
            }
        } else {
            err.write_unraisable(py, Some(call.bind(py)));
        }
    }
}
