//! The submission queue of a loop thread, with coalesced wake-ups.
//!
//! Callers push jobs from any thread; the loop thread takes them all at once in a reader
//! callback registered on its event loop. The loop is woken by one byte written to a socket
//! pair whose read end the loop watches, and only when no wake-up is already on its way
//! (`armed`), so a burst of submissions costs one wake-up, not one per call.
//!
//! Why a socket of our own rather than `loop.call_soon_threadsafe`: writing the byte needs no
//! GIL, so a caller can release the GIL first and then wake the loop thread, which then never
//! wakes up only to wait for a GIL the caller still holds. It also works unchanged for every
//! loop that implements `add_reader` (the stdlib selector loops and uvloop).
//!
//! No wake-up is lost: the consumer clears `armed` before it takes the queue, so a job pushed
//! after the take finds `armed` clear and writes a fresh byte.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::completion::lock;

struct Queue<J> {
    jobs: Vec<J>,
    closed: bool,
}

/// A multi-producer queue drained in batches by one consumer, which it wakes through a socket.
pub struct Inbox<J> {
    queue: Mutex<Queue<J>>,
    armed: AtomicBool,
    tx: UnixStream,
    rx: UnixStream,
}

impl<J> Inbox<J> {
    pub fn new() -> std::io::Result<Self> {
        let (tx, rx) = UnixStream::pair()?;
        tx.set_nonblocking(true)?;
        rx.set_nonblocking(true)?;
        Ok(Self {
            queue: Mutex::new(Queue {
                jobs: Vec::new(),
                closed: false,
            }),
            armed: AtomicBool::new(false),
            tx,
            rx,
        })
    }

    /// The descriptor the consumer's event loop watches for readability.
    pub fn read_fd(&self) -> RawFd {
        self.rx.as_raw_fd()
    }

    /// Queues a job. `Ok(true)` means the caller must call [`Inbox::wake`] (it may first
    /// release the GIL); `Err` hands the job back because the inbox is closed.
    pub fn push(&self, job: J) -> Result<bool, J> {
        {
            let mut queue = lock(&self.queue);
            if queue.closed {
                return Err(job);
            }
            queue.jobs.push(job);
        }
        Ok(!self.armed.swap(true, Ordering::AcqRel))
    }

    /// Wakes the consumer. Safe from any thread, with or without the GIL.
    pub fn wake(&self) {
        // A full socket buffer means a wake-up is already pending, so WouldBlock is fine.
        let _ = (&self.tx).write(&[1]);
    }

    /// Takes every queued job, in submission order. Consumer only.
    pub fn take(&self) -> Vec<J> {
        self.armed.store(false, Ordering::SeqCst);
        self.clear_socket();
        std::mem::take(&mut lock(&self.queue).jobs)
    }

    /// Refuses further jobs and returns those still queued.
    pub fn close(&self) -> Vec<J> {
        let mut queue = lock(&self.queue);
        queue.closed = true;
        std::mem::take(&mut queue.jobs)
    }

    fn clear_socket(&self) {
        let mut buf = [0_u8; 64];
        loop {
            match (&self.rx).read(&mut buf) {
                Ok(n) if n == buf.len() => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                _ => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;

    fn readable(inbox: &Inbox<u32>) -> bool {
        let mut buf = [0_u8; 1];
        match (&inbox.rx).peek(&mut buf) {
            Ok(n) => n > 0,
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::WouldBlock);
                false
            }
        }
    }

    #[test]
    fn one_wake_per_batch() {
        let inbox = Inbox::new().unwrap();
        assert_eq!(inbox.push(1), Ok(true));
        inbox.wake();
        assert_eq!(inbox.push(2), Ok(false), "a wake-up is already on its way");
        assert_eq!(inbox.push(3), Ok(false));
        assert!(readable(&inbox));
        assert_eq!(inbox.take(), vec![1, 2, 3]);
        assert!(!readable(&inbox), "taking clears the wake-up byte");
        assert_eq!(
            inbox.push(4),
            Ok(true),
            "the next batch needs a new wake-up"
        );
    }

    #[test]
    fn closed_inbox_hands_jobs_back() {
        let inbox = Inbox::new().unwrap();
        assert_eq!(inbox.push(1), Ok(true));
        assert_eq!(inbox.close(), vec![1]);
        assert_eq!(inbox.push(2), Err(2));
        assert!(inbox.take().is_empty());
    }

    #[test]
    fn no_job_is_lost_under_contention() {
        let inbox = Arc::new(Inbox::new().unwrap());
        let producers: Vec<_> = (0..4)
            .map(|p| {
                let inbox = Arc::clone(&inbox);
                thread::spawn(move || {
                    for i in 0..2_500 {
                        if inbox.push(p * 10_000 + i).unwrap() {
                            inbox.wake();
                        }
                    }
                })
            })
            .collect();
        let mut seen = Vec::new();
        while seen.len() < 10_000 {
            seen.extend(inbox.take());
            thread::yield_now();
        }
        for p in producers {
            p.join().unwrap();
        }
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 10_000);
    }
}
