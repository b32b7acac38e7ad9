"""``call(fn, /, *args, **kwargs)``: a callable run on the loop thread, its result awaited there
if awaitable. Errors, context, cancellation and Ctrl-C as ``run()``'s; objects that bind to
the loop of the thread that makes them are made where they belong.

Real loops on every kind of loop thread; Ctrl-C in a fresh interpreter with a time limit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import signal
import sys
import threading
import traceback
import warnings
from typing import Any, assert_type

import blockon
import pytest

from tests.support import BaseBoom, Boom, blockon_frames, send_sigint_after_started

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")


class Session:
    """Bound to the loop running where it is made, as aiohttp's ClientSession or asyncpg's
    pool are: made outside a running loop it fails."""

    def __init__(self, name: str, *, tag: str = "") -> None:
        self.name = name
        self.tag = tag
        self.loop = asyncio.get_running_loop()
        self.thread = threading.current_thread().name

    async def fetch(self) -> str:
        assert asyncio.get_running_loop() is self.loop, "used from another loop"
        await asyncio.sleep(0)
        return f"{self.name} fetched"


async def create_session(name: str, *, tag: str = "") -> Session:
    await asyncio.sleep(0)
    return Session(name, tag=tag)


def test_a_sync_callable_runs_on_the_loop_thread(target):
    session = target.api.call(Session, "s", tag="t")
    assert (session.name, session.tag) == ("s", "t")
    assert session.thread == target.thread.name
    assert session.loop is target.loop
    assert target.run(session.fetch()) == "s fetched"  # it belongs to that loop


def test_an_awaitable_result_is_awaited_there(target):
    session = target.api.call(create_session, "a", tag="b")
    assert isinstance(session, Session)
    assert (session.loop, session.tag) == (target.loop, "b")
    assert target.api.call(asyncio.sleep, 0, "slept") == "slept"


def test_made_outside_a_loop_it_fails_which_is_what_call_is_for():
    with pytest.raises(RuntimeError, match="no running event loop"):
        Session("here")


def test_a_keyword_named_fn_goes_to_the_callable(target):
    def echo(*, fn: str) -> str:
        return fn

    assert target.api.call(echo, fn="mine") == "mine"


def test_types(target):
    # Checked by mypy (the suite runs it over tests): awaitables are typed by their result.
    session = blockon.call(create_session, "typed")
    assert_type(session, Session)
    count = blockon.call(len, [1, 2])
    assert_type(count, int)
    assert (session.name, count) == ("typed", 2)


# --- errors --------------------------------------------------------------------------------


def test_errors_propagate_as_the_same_object(target):
    error = Boom("from fn")

    def fails() -> None:
        raise error

    async def fails_later() -> None:
        await asyncio.sleep(0)
        raise error

    for fn in (fails, fails_later):
        with pytest.raises(Boom) as info:
            target.api.call(fn)
        assert info.value is error


def test_the_traceback_shows_one_blockon_line_then_the_callables_frames(target):
    async def inner() -> None:
        raise Boom("deep")

    async def outer() -> None:
        await inner()

    with pytest.raises(Boom) as info:
        target.api.call(outer)
    frames = traceback.extract_tb(info.value.__traceback__)
    assert [f.name for f in frames][-2:] == ["outer", "inner"]
    assert [f.name for f in blockon_frames(info.value)] == ["call"]


def test_base_exceptions_propagate(target):
    async def fails() -> None:
        raise BaseBoom("base")

    with pytest.raises(BaseBoom):
        target.api.call(fails)
    assert target.api.call(asyncio.sleep, 0, "still running") == "still running"


def test_cancelled_from_elsewhere_is_concurrent_futures_cancelled_error(target):
    async def awaits_a_cancelled_future() -> None:
        fut = asyncio.get_running_loop().create_future()
        fut.cancel()
        await fut

    with pytest.raises(concurrent.futures.CancelledError):
        target.api.call(awaits_a_cancelled_future)


def test_not_callable_says_what_to_pass(target):
    with pytest.raises(TypeError, match=r"blockon.call\(\) needs a callable as fn, got 'int'"):
        target.api.call(42)
    coro = create_session("x")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a "never awaited" warning would fail here
        with pytest.raises(TypeError, match=r"coroutine create_session\(\.\.\.\).*blockon.run"):
            target.api.call(coro)
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED


def test_a_closed_loop_thread_says_so():
    lt = blockon.LoopThread()
    lt.close()
    with pytest.raises(RuntimeError, match="closed"):
        lt.call(len, [])


# --- context and where it runs ---------------------------------------------------------------


def test_runs_in_a_copy_of_the_callers_context(target):
    def read_and_set() -> str:
        seen = VAR.get()
        VAR.set("changed inside")
        return seen

    async def read_later() -> str:
        await asyncio.sleep(0)
        return VAR.get()

    token = VAR.set("caller's")
    try:
        assert target.api.call(read_and_set) == "caller's"
        assert target.api.call(read_later) == "caller's"
        assert VAR.get() == "caller's"
    finally:
        VAR.reset(token)


def test_from_sync_code_on_the_loop_thread_itself(reentrant_target):
    async def outer():
        return reentrant_target.api.call(create_session, "inner")  # re-enters the loop

    session = reentrant_target.run(outer())
    assert session.loop is reentrant_target.loop


def test_from_inside_a_running_loop_it_goes_to_the_loop_thread(target):
    async def handler():
        return target.api.call(Session, "from a handler")

    session = asyncio.run(handler())
    assert session.loop is target.loop


# --- Ctrl-C --------------------------------------------------------------------------------

CTRL_C_SCRIPT = """
import asyncio
import blockon

async def slow():
    try:
        print("started", flush=True)
        await asyncio.Event().wait()
    finally:
        await asyncio.sleep(0)  # cleanup that needs the loop
        print("cleanup", flush=True)

try:
    blockon.call(slow)
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
    raise
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_cancels_the_awaited_work_and_waits_for_its_cleanup():
    done = send_sigint_after_started(CTRL_C_SCRIPT, exit_within=10)
    assert done.texts == ["cleanup", "KeyboardInterrupt"], done.stderr
    assert done.returncode == -signal.SIGINT, done.stderr


def test_call_is_a_loop_thread_method_bound_for_the_module() -> None:
    method: Any = blockon.call
    assert method.__self__ is blockon.default_loop_thread()
    assert method.__func__ is blockon.LoopThread.call
