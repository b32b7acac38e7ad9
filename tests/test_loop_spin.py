"""A busy loop thread spins briefly for new work before it sleeps; the spin yields to the
loop's own work. Sockets that have data, callbacks queued from other threads and task steps
that are ready all run while the loop would otherwise spin, on every kind of loop: a stdlib
loop (its selector spins), uvloop and a loop blockon does not know (they pulse).

Nothing here is timed. The spin is set to many seconds for each test (`_set_spin`), so a spin
that held the loop while it had work of its own would hold it for that long; each test waits
for its work with a hang guard far shorter than that.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import blockon
import pytest
from blockon._blockon import _set_spin

from tests.support import loop_factory

#: Seconds the spin lasts during these tests.
LONG_SPIN = 60.0
#: Seconds a test waits for work the loop should run at once: far under LONG_SPIN.
GUARD = 15.0


async def noop() -> None:
    return None


@pytest.fixture(params=["asyncio", "uvloop", "generic"])
def hot(request: pytest.FixtureRequest) -> Iterator[blockon.LoopThread]:
    """A loop thread of each kind, with the spin set to LONG_SPIN; busy (it just ran a call)."""
    lt = blockon.LoopThread(loop_factory(request.param), name=f"spin-{request.param}")
    _set_spin(LONG_SPIN)
    try:
        lt.run(noop())
        yield lt
    finally:
        _set_spin(None)
        lt.close()
        # A loop thread that was busy when the spin was set may be in a long spin: one call
        # ends it, and the next spin is the default one again.
        blockon.run(noop())


def test_socket_data_is_read_while_the_loop_is_hot(hot: blockon.LoopThread) -> None:
    ours, theirs = socket.socketpair()
    read = threading.Event()

    def on_readable() -> None:
        ours.recv(1)
        read.set()

    try:
        hot.call(hot.loop.add_reader, ours.fileno(), on_readable)
        hot.run(noop())  # busy again: the loop spins from here on
        theirs.send(b"x")
        assert read.wait(GUARD), "the loop spun on while its socket had data"
    finally:
        hot.call(hot.loop.remove_reader, ours.fileno())
        ours.close()
        theirs.close()


def test_callback_from_another_thread_runs_while_the_loop_is_hot(
    hot: blockon.LoopThread,
) -> None:
    ran = threading.Event()
    hot.run(noop())
    hot.loop.call_soon_threadsafe(ran.set)
    assert ran.wait(GUARD), "the loop spun on while a callback was queued for it"


def test_ready_task_steps_run_while_the_loop_is_hot(hot: blockon.LoopThread) -> None:
    """Each `sleep(0)` queues the task's next step behind whatever the loop runs next."""

    async def three_sleeps() -> str:
        for _ in range(3):
            await asyncio.sleep(0)
        return "done"

    assert hot.run(three_sleeps(), timeout=GUARD) == "done"


def test_a_task_started_by_another_task_runs_while_the_loop_is_hot(
    hot: blockon.LoopThread,
) -> None:
    started = threading.Event()

    async def start_one() -> None:
        async def mark() -> None:
            started.set()

        asyncio.get_running_loop().create_task(mark())

    hot.run(start_one())
    assert started.wait(GUARD), "the loop spun on while a task it started was ready"


def test_sleep_zero_lets_what_was_queued_before_it_run_first(
    hot: blockon.LoopThread,
) -> None:
    """The first step of a call runs at once (eagerly); a bare yield in it still lets the
    callbacks and tasks it queued run before the coroutine goes on."""

    async def queue_then_yield() -> list[str]:
        order: list[str] = []

        async def task() -> None:
            order.append("task")

        loop = asyncio.get_running_loop()
        loop.call_soon(order.append, "callback")
        started = loop.create_task(task())
        await asyncio.sleep(0)
        order.append("after sleep(0)")
        await started
        return order

    assert sorted(hot.run(queue_then_yield(), timeout=GUARD)[:2]) == ["callback", "task"]
