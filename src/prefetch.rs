//! Prefetch buffers: the bounded queue between a pump (on the loop thread, pulling items
//! from an async iterator ahead of time) and a sync consumer (any thread, `next()`).
//!
//! The consumer takes items without a round trip to the loop thread. Backpressure: the pump
//! stops when the buffer holds `capacity` items (it never has more than one more in flight,
//! so it is never more than `capacity + 1` items ahead) and parks; the consumer wakes it
//! again only once the buffer is down to half, so a fast consumer and a fast producer hand
//! the GIL back and forth once per half-buffer, not once per item.
//!
//! An error or the end of iteration is queued after the items before it, so the consumer
//! sees them in order.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use pyo3::prelude::*;

use crate::completion::lock;
use crate::waiter::Waitable;

/// One thing the pump produced.
pub(crate) enum Item {
    Value(Py<PyAny>),
    /// The iterator raised this (not `StopAsyncIteration`).
    Raised(Py<PyAny>),
    /// The pump's step was cancelled by something other than the consumer.
    Cancelled,
    /// `StopAsyncIteration`.
    End,
}

struct Buffer {
    items: VecDeque<Item>,
    /// An `End`, `Raised` or `Cancelled` item has been queued: the pump is done.
    finished: bool,
    /// The consumer closed: the pump must stop, queued items are dropped.
    closed: bool,
    /// The pump is parked for lack of room.
    pump_parked: bool,
    /// The consumer is parked for lack of items.
    consumer_parked: bool,
}

pub(crate) struct Prefetch {
    capacity: usize,
    buffer: Mutex<Buffer>,
    ready: Condvar,
}

/// What a consumer's `take` found.
pub(crate) enum Take {
    /// An item, and whether the consumer must wake the parked pump.
    Item(Item, bool),
    /// Nothing yet.
    Empty,
}

impl Prefetch {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            buffer: Mutex::new(Buffer {
                items: VecDeque::with_capacity(capacity.clamp(1, 4096)),
                finished: false,
                closed: false,
                pump_parked: false,
                consumer_parked: false,
            }),
            ready: Condvar::new(),
        }
    }

    /// Pump: whether it should pull another item now. If not because the buffer is full, the
    /// pump counts as parked from here on, and the consumer will wake it.
    pub(crate) fn wants_more(&self) -> bool {
        let mut buffer = lock(&self.buffer);
        if buffer.finished || buffer.closed {
            return false;
        }
        let room = buffer.items.len() < self.capacity;
        buffer.pump_parked = !room;
        room
    }

    /// Pump: queues an item (dropped if the consumer has closed).
    pub(crate) fn push(&self, item: Item) {
        let mut buffer = lock(&self.buffer);
        if buffer.closed {
            return;
        }
        if !matches!(item, Item::Value(_)) {
            buffer.finished = true;
        }
        buffer.items.push_back(item);
        let wake = buffer.consumer_parked;
        drop(buffer);
        if wake {
            self.ready.notify_all();
        }
    }

    /// Consumer: takes the next item, if there is one.
    pub(crate) fn take(&self) -> Take {
        let mut buffer = lock(&self.buffer);
        let Some(item) = buffer.items.pop_front() else {
            return Take::Empty;
        };
        let wake_pump = buffer.pump_parked && buffer.items.len() <= self.capacity / 2;
        if wake_pump {
            buffer.pump_parked = false;
        }
        Take::Item(item, wake_pump)
    }

    /// Consumer: whether an item is waiting (or the buffer closed), for spinning.
    pub(crate) fn has_items(&self) -> bool {
        let buffer = lock(&self.buffer);
        !buffer.items.is_empty() || buffer.closed
    }

    /// Consumer: parks until an item is queued or `until` passes; whether one is there.
    pub(crate) fn park_until(&self, until: Instant) -> bool {
        let mut buffer = lock(&self.buffer);
        buffer.consumer_parked = true;
        loop {
            if !buffer.items.is_empty() || buffer.closed {
                buffer.consumer_parked = false;
                return true;
            }
            let now = Instant::now();
            if now >= until {
                buffer.consumer_parked = false;
                return false;
            }
            buffer = self
                .ready
                .wait_timeout(buffer, until - now)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    /// Consumer: stops the pump; returns the items never consumed (drop them with the GIL).
    pub(crate) fn close(&self) -> Vec<Item> {
        let mut buffer = lock(&self.buffer);
        buffer.closed = true;
        let left = buffer.items.drain(..).collect();
        drop(buffer);
        self.ready.notify_all();
        left
    }
}

/// The consumer's wait for the next item.
impl Waitable for Prefetch {
    fn is_ready(&self) -> bool {
        self.has_items()
    }

    fn park_until(&self, until: Instant) -> bool {
        Prefetch::park_until(self, until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in item that needs no Python object.
    fn value() -> Item {
        Item::End
    }

    #[test]
    fn bound_and_low_water_mark() {
        let prefetch = Prefetch::new(4);
        let mut pushed = 0;
        while prefetch.wants_more() {
            lock(&prefetch.buffer).items.push_back(value());
            pushed += 1;
        }
        assert_eq!(pushed, 4, "the pump stops at capacity");
        let wakes: Vec<bool> = (0..4)
            .map(|_| match prefetch.take() {
                Take::Item(_, wake) => wake,
                Take::Empty => panic!("items were queued"),
            })
            .collect();
        assert_eq!(
            wakes,
            vec![false, true, false, false],
            "woken once, at half"
        );
        assert!(matches!(prefetch.take(), Take::Empty));
    }

    #[test]
    fn errors_finish_the_pump_and_come_after_items() {
        let prefetch = Prefetch::new(8);
        assert!(prefetch.wants_more());
        prefetch.push(Item::End);
        assert!(!prefetch.wants_more());
        assert!(matches!(prefetch.take(), Take::Item(Item::End, false)));
    }

    #[test]
    fn closing_drops_what_is_queued_and_refuses_more() {
        let prefetch = Prefetch::new(2);
        prefetch.push(Item::Cancelled);
        assert_eq!(prefetch.close().len(), 1);
        prefetch.push(Item::End);
        assert!(matches!(prefetch.take(), Take::Empty));
        assert!(
            prefetch.park_until(Instant::now()),
            "a closed buffer never blocks"
        );
    }
}
