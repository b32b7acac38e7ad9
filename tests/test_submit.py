"""`submit()`: start now, collect later through a concurrent.futures.Future."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import gc
import inspect
import logging
import re
import threading
from typing import Any

import blockon
import pytest

from tests.support import Boom, answer, this_task

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")


async def cancels_itself():
    this_task().cancel()
    await asyncio.sleep(0)


def test_returns_a_future_with_the_result(target):
    fut = target.submit(answer())
    assert isinstance(fut, concurrent.futures.Future)
    assert fut.result(timeout=30) == 42


def test_starts_now_without_anyone_waiting(target):
    started = threading.Event()

    async def mark():
        started.set()
        return "marked"

    fut = target.submit(mark())
    assert started.wait(30), "the submitted coroutine did not start on its own"
    assert fut.result(timeout=30) == "marked"


def test_exception_is_the_same_object(target):
    exc = Boom()

    async def fail():
        await asyncio.sleep(0)
        raise exc

    fut = target.submit(fail())
    assert fut.exception(timeout=30) is exc
    with pytest.raises(Boom) as info:
        fut.result()
    assert info.value is exc


def test_done_callbacks_run(target):
    done = threading.Event()
    fut = target.submit(answer())
    fut.add_done_callback(lambda f: done.set())
    assert done.wait(30)
    assert fut.result() == 42


def test_context_is_copied(target):
    async def read_then_write():
        seen = VAR.get()
        VAR.set("inner")
        return seen

    token = VAR.set("caller")
    try:
        assert target.submit(read_then_write()).result(timeout=30) == "caller"
        assert VAR.get() == "caller"
    finally:
        VAR.reset(token)


def test_cancel_cancels_the_task_and_its_cleanup_runs(target):
    started = threading.Event()
    cleaned = threading.Event()
    log = []

    async def victim():
        try:
            started.set()
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            log.append("cancelled")
            raise
        finally:
            await asyncio.sleep(0)  # cleanup that needs the loop
            log.append("finally")
            cleaned.set()

    fut = target.submit(victim())
    assert started.wait(30)
    assert fut.cancel() is True
    assert fut.cancelled()
    assert fut.done()
    with pytest.raises(concurrent.futures.CancelledError):
        fut.result(timeout=0)
    assert cleaned.wait(30), "the task was not cancelled, or its finally did not run"
    assert log == ["cancelled", "finally"]
    # The loop is fine afterwards.
    assert target.run(answer()) == 42


def test_cancel_right_after_submit_closes_the_coroutine(target):
    ran = []

    async def work():
        ran.append("started")
        try:
            await asyncio.Event().wait()
        finally:
            ran.append("finally")

    coro = work()
    fut = target.submit(coro)
    fut.cancel()
    assert fut.cancelled()
    # Barrier calls until the loop has dealt with the cancellation (bounded).
    for _ in range(1000):
        if inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED:
            break
        target.run(asyncio.sleep(0))
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
    assert ran in ([], ["started", "finally"])


def test_task_ending_cancelled_counts_as_done_for_as_completed(target):
    go = threading.Event()

    async def cancels_itself_when_told():
        await asyncio.to_thread(go.wait, 30)
        this_task().cancel()
        await asyncio.sleep(0)

    finished = target.submit(answer())
    finished.result(timeout=30)
    pending = target.submit(cancels_itself_when_told())
    completions = concurrent.futures.as_completed([finished, pending], timeout=30)
    # as_completed installs its waiter before yielding the already-finished future, so the
    # pending one is certainly being waited on when it ends cancelled.
    assert next(completions) is finished
    assert not pending.done()
    go.set()
    assert next(completions) is pending
    assert pending.cancelled()


def test_task_ending_cancelled_counts_as_done_for_wait(target):
    waiter_installed = threading.Event()

    async def cancels_itself_when_waited_on():
        await asyncio.to_thread(waiter_installed.wait, 30)
        this_task().cancel()
        await asyncio.sleep(0)

    fut = target.submit(cancels_itself_when_waited_on())

    class SignallingList(list[Any]):
        def append(self, item):
            super().append(item)
            waiter_installed.set()

    if not hasattr(fut, "_waiters"):  # pragma: no cover - CPython's Future has it
        pytest.skip("needs CPython's concurrent.futures.Future internals")
    # Hook CPython's Future so the task cancels itself only once wait() is waiting on it.
    fut._waiters = SignallingList(fut._waiters)
    done, not_done = concurrent.futures.wait([fut], timeout=30)
    assert done == {fut}
    assert not_done == set()
    assert fut.cancelled()


def test_task_ending_cancelled_before_wait(target):
    fut = target.submit(cancels_itself())
    for _ in concurrent.futures.as_completed([fut], timeout=30):
        pass
    done, _ = concurrent.futures.wait([fut], timeout=30)
    assert done == {fut}
    assert fut.cancelled()
    with pytest.raises(concurrent.futures.CancelledError) as info:
        fut.result()
    assert not isinstance(info.value, asyncio.CancelledError)


def test_many_submissions_complete_in_wait(target):
    futures = [target.submit(answer(i)) for i in range(100)]
    futures += [target.submit(cancels_itself()) for _ in range(10)]
    _done, not_done = concurrent.futures.wait(futures, timeout=30)
    assert not_done == set()
    assert [f.result() for f in futures[:100]] == list(range(100))
    assert all(f.cancelled() for f in futures[100:])


@pytest.mark.asyncio
async def test_submit_from_a_running_loop_does_not_block():
    release = threading.Event()

    async def gated():
        await asyncio.to_thread(release.wait, 30)
        return "done"

    fut = blockon.submit(gated())
    assert not fut.done()
    release.set()
    assert await asyncio.wrap_future(fut) == "done"


def test_submit_from_the_loop_thread_itself(target):
    async def outer():
        fut = target.submit(answer(7))
        return await asyncio.wrap_future(fut)

    assert target.run(outer()) == 7


@pytest.mark.parametrize("bad", [42, None, "text"], ids=["int", "None", "str"])
def test_non_awaitable_raises_type_error_naming_its_type(target, bad):
    with pytest.raises(TypeError) as info:
        target.submit(bad)
    assert type(bad).__name__ in str(info.value)


def test_async_function_passed_uncalled_gets_a_hint(target):
    async def fetch():
        return 1

    with pytest.raises(TypeError) as info:
        target.submit(fetch)
    assert re.search(r"call it: [\w.]*(submit|run)\(\w*\(\)\)", str(info.value)), str(info.value)


def test_unretrieved_exception_of_a_dropped_future_is_not_logged(target, caplog):
    # A concurrent.futures.Future holds its exception; like run_coroutine_threadsafe, nothing
    # is logged when the caller never looks at it.
    async def fail():
        await asyncio.sleep(0)
        raise Boom("nobody looks")

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        fut = target.submit(fail())
        done = threading.Event()
        fut.add_done_callback(lambda f: done.set())
        assert done.wait(30)
        del fut
        gc.collect()
        target.run(answer())  # the loop thread has run its callbacks since
        gc.collect()
    assert [r for r in caplog.records if r.name == "asyncio"] == []
