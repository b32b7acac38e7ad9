"""`run()` from a thread with no running loop: the work runs on the loop thread, and the caller
gets its result or its exception, in a copy of its context, within its timeout."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import gc
import inspect
import re
import threading
import traceback
import types
import weakref
from typing import Any

import blockon
import pytest

from tests.support import BaseBoom, Boom, answer, blockon_frames, started, this_task, where

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")


async def fail_outer(exc):
    await asyncio.sleep(0)
    await fail_inner(exc)


async def fail_inner(exc):
    await asyncio.sleep(0)
    raise exc


def assert_closed_unrun(coro, ran):
    """The coroutine was closed (so no "never awaited" warning) and its body never ran."""
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
    assert ran == []


# --- results -----------------------------------------------------------------------------


def test_returns_the_result(target):
    assert target.run(answer()) == 42


def test_returns_the_same_object(target):
    obj = object()
    assert target.run(answer(obj)) is obj


def test_returns_none(target):
    async def nothing():
        await asyncio.sleep(0)

    assert target.run(nothing()) is None


def test_coroutine_that_never_suspends(target):
    async def immediate():
        return "now"

    assert target.run(immediate()) == "now"


def test_runs_on_the_loop_thread_not_the_caller(target):
    ident, loop = target.run(where())
    assert ident != threading.get_ident()
    assert loop is target.loop


def test_awaitable_object_with_dunder_await(target):
    class Awaitable:
        def __await__(self):
            yield from asyncio.sleep(0).__await__()
            return "awaited"

    assert target.run(Awaitable()) == "awaited"


def test_generator_based_coroutine(target):
    @types.coroutine
    def legacy():
        yield from asyncio.sleep(0)
        return "legacy"

    assert target.run(legacy()) == "legacy"


def test_future_and_task_of_the_same_loop(target):
    async def make():
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        loop.call_soon(fut.set_result, "future")
        task = asyncio.ensure_future(answer("task"))
        return fut, task

    fut, task = target.run(make())
    assert target.run(fut) == "future"
    assert target.run(task) == "task"


def test_many_calls_in_a_row(target):
    assert [target.run(answer(i)) for i in range(200)] == list(range(200))


# --- errors ------------------------------------------------------------------------------


def test_exception_is_the_same_object(target):
    exc = Boom("boom")
    with pytest.raises(Boom) as info:
        target.run(fail_outer(exc))
    assert info.value is exc


def test_exception_raised_before_the_first_await(target):
    exc = Boom("early")

    async def early():
        raise exc

    with pytest.raises(Boom) as info:
        target.run(early())
    assert info.value is exc


def test_traceback_shows_coroutine_frames_and_no_blockon_frames(target):
    with pytest.raises(Boom) as info:
        target.run(fail_outer(Boom("tb")))
    frames = traceback.extract_tb(info.value.__traceback__)
    names = [frame.name for frame in frames]
    assert names[0] == "test_traceback_shows_coroutine_frames_and_no_blockon_frames"
    assert names[-2:] == ["fail_outer", "fail_inner"]
    assert blockon_frames(info.value) == []


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit, BaseBoom])
@pytest.mark.parametrize("when", ["first-step", "after-await"])
def test_base_exceptions_raised_inside_propagate(target, exc_type, when):
    exc = exc_type()

    async def raiser():
        if when == "after-await":
            await asyncio.sleep(0)
        raise exc

    with pytest.raises(exc_type) as info:
        target.run(raiser())
    assert info.value is exc
    # The loop thread survived it.
    assert target.run(answer()) == 42


# --- cancelled from elsewhere ------------------------------------------------------------


async def cancels_itself():
    this_task().cancel()
    await asyncio.sleep(0)
    return "not reached"


async def raises_cancelled_error():
    await asyncio.sleep(0)
    raise asyncio.CancelledError


async def cancelled_by_a_loop_callback():
    asyncio.get_running_loop().call_soon(this_task().cancel)
    await asyncio.Event().wait()


@pytest.mark.parametrize(
    "make", [cancels_itself, raises_cancelled_error, cancelled_by_a_loop_callback]
)
def test_cancelled_from_elsewhere_raises_concurrent_cancelled_error(target, make):
    with pytest.raises(concurrent.futures.CancelledError) as info:
        target.run(make())
    assert not isinstance(info.value, asyncio.CancelledError)
    assert target.run(answer()) == 42


def test_awaited_future_cancelled_elsewhere(target):
    async def make():
        return asyncio.get_running_loop().create_future()

    fut = target.run(make())
    target.loop.call_soon_threadsafe(fut.cancel)
    with pytest.raises(concurrent.futures.CancelledError) as info:
        target.run(fut)
    assert not isinstance(info.value, asyncio.CancelledError)


# --- context -----------------------------------------------------------------------------


def test_runs_in_a_copy_of_the_callers_context(target):
    async def read_then_write():
        seen = VAR.get()
        VAR.set("changed inside")
        await asyncio.sleep(0)
        return seen, VAR.get()

    token = VAR.set("caller")
    try:
        assert target.run(read_then_write()) == ("caller", "changed inside")
        assert VAR.get() == "caller"
        # each call gets its own fresh copy
        assert target.run(read_then_write()) == ("caller", "changed inside")
        VAR.set("caller again")
        assert target.run(read_then_write()) == ("caller again", "changed inside")
    finally:
        VAR.reset(token)


def test_context_reaches_tasks_the_coroutine_spawns(target):
    async def spawn():
        return await asyncio.create_task(answer(VAR.get()))

    token = VAR.set("inherited")
    try:
        assert target.run(spawn()) == "inherited"
    finally:
        VAR.reset(token)


# --- timeouts ----------------------------------------------------------------------------


def test_timeout_not_reached_returns_the_result(target):
    assert target.run(answer(), timeout=30) == 42


def test_timeout_cancels_then_waits_for_cleanup_then_raises(target):
    started(target.thread)  # the deadline is for the work, not a cold start
    log = []

    async def slow():
        try:
            log.append("started")
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            log.append("cancelled")
            raise
        finally:
            # Cleanup that needs the loop for a while: it must finish before run() raises.
            await asyncio.sleep(0.05)
            await asyncio.sleep(0)
            log.append("cleanup done")

    with pytest.raises(TimeoutError):
        target.run(slow(), timeout=0.05)
    assert log == ["started", "cancelled", "cleanup done"]


def test_timeout_runs_aexit_to_completion(target):
    started(target.thread)  # the deadline is for the work, not a cold start
    log: list[Any] = []

    class Resource:
        async def __aenter__(self):
            log.append("enter")
            return self

        async def __aexit__(self, *exc_info):
            await asyncio.sleep(0.01)
            log.append(("exit", exc_info[0]))

    async def use():
        async with Resource():
            await asyncio.Event().wait()

    with pytest.raises(TimeoutError):
        target.run(use(), timeout=0.05)
    assert log == ["enter", ("exit", asyncio.CancelledError)]


def test_timeout_swallowed_cancellation_returns_the_value(target):
    # Decided in docs/how-it-works.md, "Decisions recorded": asyncio.timeout() semantics.
    started(target.thread)  # the deadline is for the work, not a cold start

    async def swallow():
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            return "swallowed"

    assert target.run(swallow(), timeout=0.05) == "swallowed"


def test_timeout_cleanup_that_raises_propagates_that_exception(target):
    started(target.thread)  # the deadline is for the work, not a cold start
    exc = Boom("cleanup failed")

    async def bad_cleanup():
        try:
            await asyncio.Event().wait()
        finally:
            raise exc

    with pytest.raises(Boom) as info:
        target.run(bad_cleanup(), timeout=0.05)
    assert info.value is exc


def test_timeout_error_raised_by_the_coroutine_itself(target):
    exc = TimeoutError("my own")

    async def own():
        await asyncio.sleep(0)
        raise exc

    with pytest.raises(TimeoutError) as info:
        target.run(own(), timeout=30)
    assert info.value is exc


# --- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [42, None, "text", [1, 2], {"a": 1}, (x for x in range(0)), lambda: None, object()],
    ids=["int", "None", "str", "list", "dict", "generator", "function", "object"],
)
def test_non_awaitable_raises_type_error_naming_its_type(target, bad):
    with pytest.raises(TypeError) as info:
        target.run(bad)
    assert type(bad).__name__ in str(info.value)


async def fetch_thing():
    return 1


class Client:
    async def fetch(self):
        return 1


@pytest.mark.parametrize(
    "fn",
    [fetch_thing, Client().fetch, functools.partial(fetch_thing)],
    ids=["function", "bound-method", "partial"],
)
def test_async_function_passed_uncalled_gets_a_hint(target, fn):
    with pytest.raises(TypeError) as info:
        target.run(fn)
    message = str(info.value)
    assert re.search(r"call it: [\w.]*run\(\w*\(\)\)", message), message


def test_coroutine_not_run_because_of_a_bad_timeout_is_closed(target):
    ran = []

    async def work():
        ran.append(True)

    coro = work()
    with pytest.raises((TypeError, ValueError)):
        target.run(coro, timeout="soon")
    assert_closed_unrun(coro, ran)


def test_future_of_another_loop_fails_with_asyncios_error(target):
    other = asyncio.new_event_loop()
    try:
        fut = other.create_future()
        with pytest.raises(RuntimeError, match=r"different (event )?loop"):
            target.run(fut)
        assert target.run(answer()) == 42
    finally:
        other.close()


def test_future_of_another_running_loop_fails_with_asyncios_error(target):
    with blockon.LoopThread(name="other-loop") as other:

        async def make():
            return asyncio.get_running_loop().create_future()

        fut = other.run(make())
        try:
            with pytest.raises(RuntimeError, match=r"different (event )?loop"):
                target.run(fut)
        finally:
            other.loop.call_soon_threadsafe(fut.cancel)


def test_primitive_bound_to_another_loop_fails_with_asyncios_error(target):
    event = asyncio.Event()

    async def bind():
        waiter = asyncio.ensure_future(event.wait())
        await asyncio.sleep(0)
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiter

    other = asyncio.new_event_loop()
    try:
        other.run_until_complete(bind())
    finally:
        other.close()
    with pytest.raises(RuntimeError, match=r"different (event )?loop"):
        target.run(event.wait())


def test_thread_with_an_event_loop_that_is_not_running(target):
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        ident, running = target.run(where())
        assert ident != threading.get_ident()
        assert running is target.loop
        assert loop.run_until_complete(answer(5)) == 5
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def test_nest_true_without_a_running_loop_uses_the_loop_thread(target):
    # nest=True only matters where the calling thread runs a loop.
    ident, running = target.run(where(), nest=True)
    assert ident != threading.get_ident()
    assert running is target.loop


def test_timeout_zero_on_work_that_suspends(target):
    ran = []

    async def suspends():
        ran.append("started")
        await asyncio.Event().wait()

    coro = suspends()
    with pytest.raises(TimeoutError):
        target.run(coro, timeout=0)
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED


@pytest.mark.parametrize("timeout", [0, -1])
def test_timeout_zero_on_work_that_never_suspends_returns_its_value(target, timeout):
    # asyncio.timeout() semantics (docs/how-it-works.md, "Decisions recorded"): the deadline is
    # checked when the work suspends, so work that finishes in its first step is not timed out,
    # exactly as `async with asyncio.timeout(0): return await immediate()` returns.
    async def immediate():
        return "done at once"

    assert target.run(immediate(), timeout=timeout) == "done at once"


# --- no references kept --------------------------------------------------------------------


class Token:
    pass


def test_no_reference_kept_to_the_result_or_the_coroutine(target):
    token = Token()
    token_ref = weakref.ref(token)

    async def give(value):
        await asyncio.sleep(0)
        return value

    coro = give(token)
    coro_ref = weakref.ref(coro)
    assert target.run(coro) is token
    del token, coro
    target.run(answer())  # let the loop thread finish its bookkeeping
    gc.collect()
    assert token_ref() is None, "run() keeps the result alive"
    assert coro_ref() is None, "run() keeps the coroutine alive"


def test_no_reference_kept_to_the_exception(target):
    async def fail():
        await asyncio.sleep(0)
        raise Boom()

    with pytest.raises(Boom) as info:
        target.run(fail())
    exc_ref = weakref.ref(info.value)
    del info
    target.run(answer())
    gc.collect()
    assert exc_ref() is None, "run() keeps the exception alive"
