"""`run(aw, loop=L)`: run on a given loop that is running in another thread.

`loop=` comes first, wherever the caller stands, and every promise `run()` makes holds there
too: results and errors, context, timeouts, Ctrl-C, bad input, cancellation from elsewhere,
many threads at once. `L` here is a loop nobody but the test manages: a stdlib loop in asyncio
debug mode (which raises when touched from a foreign thread) or a uvloop one, running
`run_forever()` in a plain thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import gc
import inspect
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import blockon
import pytest

from tests.support import (
    HANG,
    BaseBoom,
    Boom,
    blockon_frames,
    debug_loop,
    loop_factory,
    run_in_threads,
    run_script,
    send_sigint_after_started,
    this_task,
)

AT_ONCE = 1.0  # seconds: "at once" (a refusal takes microseconds)
VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")


class ForeignLoop:
    """A loop running forever in a plain thread: not a blockon LoopThread."""

    def __init__(self, factory: Callable[[], asyncio.AbstractEventLoop]) -> None:
        self.loop = factory()
        self.thread = threading.Thread(target=self._body, name="foreign-loop")
        self._running = threading.Event()

    def _body(self) -> None:
        self.loop.call_soon(self._running.set)
        self.loop.run_forever()

    def start(self) -> ForeignLoop:
        self.thread.start()
        assert self._running.wait(HANG)
        return self

    def stop(self) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(HANG)
            assert not self.thread.is_alive()

    def close(self) -> None:
        self.stop()
        if self.loop.is_closed():
            return
        tasks = asyncio.all_tasks(self.loop)
        for task in tasks:
            task.cancel()
        if tasks:
            self.loop.run_until_complete(asyncio.wait(tasks))
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()


@pytest.fixture(params=["asyncio", "uvloop"])
def foreign(request: pytest.FixtureRequest) -> Iterator[ForeignLoop]:
    fl = ForeignLoop(loop_factory(request.param)).start()
    try:
        yield fl
    finally:
        fl.close()


async def where() -> tuple[str, asyncio.AbstractEventLoop]:
    await asyncio.sleep(0)
    return threading.current_thread().name, asyncio.get_running_loop()


# --- many threads --------------------------------------------------------------------------


def test_sixteen_threads_at_once_each_get_their_own_result(foreign):
    n = 16
    loop = foreign.loop
    arrived = 0
    all_in: asyncio.Event | None = None

    async def meet(i: int) -> tuple[int, str, str, bool]:
        # Every call is in flight at once: each waits here until all sixteen have arrived.
        nonlocal arrived, all_in
        if all_in is None:
            all_in = asyncio.Event()
        arrived += 1
        if arrived == n:
            all_in.set()
        await asyncio.wait_for(all_in.wait(), HANG)
        return i, VAR.get(), threading.current_thread().name, asyncio.get_running_loop() is loop

    def caller(i: int) -> Any:
        VAR.set(f"caller {i}")
        return blockon.run(meet(i), loop=loop)

    results = run_in_threads(n, caller)
    assert results == [(i, f"caller {i}", "foreign-loop", True) for i in range(n)]


# --- where the work runs -------------------------------------------------------------------


def test_loop_comes_first_wherever_the_caller_stands(foreign):
    loop = foreign.loop
    results: dict[str, Any] = {}
    on_l = ("foreign-loop", loop)

    # A plain thread (the test's own), with no loop.
    results["plain thread"] = blockon.run(where(), loop=loop)
    # Sync code on blockon's default loop thread (which would otherwise re-enter its loop).
    results["default loop thread"] = blockon.run(_on_default_loop_thread(loop))

    # A thread whose loop is running (an async handler calling sync code) ...
    async def handler() -> None:
        results["running loop"] = blockon.run(where(), loop=loop)
        # ... and a to_thread worker, whose home is that running loop.
        results["to_thread worker"] = await blockon.to_thread(
            lambda: blockon.run(where(), loop=loop)
        )

    with asyncio.Runner(loop_factory=debug_loop) as runner:
        runner.run(handler())

    # A LoopThread's own run method honours loop= too.
    with blockon.LoopThread(debug_loop, name="other") as lt:
        results["LoopThread.run"] = lt.run(where(), loop=loop)

    assert results == {
        "plain thread": on_l,
        "default loop thread": on_l,
        "running loop": on_l,
        "to_thread worker": on_l,
        "LoopThread.run": on_l,
    }


async def _on_default_loop_thread(loop: asyncio.AbstractEventLoop) -> Any:
    return blockon.run(where(), loop=loop)  # sync call from a coroutine on the loop thread


def test_loop_of_a_loop_thread_is_a_loop_like_any_other():
    with blockon.LoopThread(debug_loop, name="lt") as lt:
        assert blockon.run(where(), loop=lt.loop) == ("lt", lt.loop)


# --- a loop that cannot take the work ------------------------------------------------------


def _never_started() -> asyncio.AbstractEventLoop:
    return debug_loop()


def _closed() -> asyncio.AbstractEventLoop:
    loop = debug_loop()
    loop.close()
    return loop


def _stopped() -> asyncio.AbstractEventLoop:
    fl = ForeignLoop(debug_loop).start()
    fl.stop()
    return fl.loop


def _closed_loop_thread() -> asyncio.AbstractEventLoop:
    lt = blockon.LoopThread(debug_loop)
    loop = lt.loop
    lt.close()
    return loop


def _uvloop_never_started() -> asyncio.AbstractEventLoop:
    return pytest.importorskip("uvloop").new_event_loop()  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("make", "state"),
    [
        (_never_started, "not running"),
        (_closed, "closed"),
        (_stopped, "not running"),
        (_closed_loop_thread, "closed"),
        (_uvloop_never_started, "not running"),
    ],
    ids=["never-started", "closed", "stopped", "closed-LoopThread", "uvloop-never-started"],
)
@pytest.mark.parametrize("timeout", [None, 30])
def test_loop_not_running_or_closed_raises_runtime_error_at_once(make, state, timeout):
    loop = make()
    coro = where()
    started = time.monotonic()
    with pytest.raises(RuntimeError, match=state):
        blockon.run(coro, loop=loop, timeout=timeout)
    assert time.monotonic() - started < AT_ONCE
    # The coroutine that never ran is closed: no "never awaited" warning (warnings are errors).
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
    if not loop.is_closed():
        loop.close()


# --- the caller's own running loop ---------------------------------------------------------


def test_own_running_loop_means_nest_other_tasks_keep_running():
    async def main() -> Any:
        loop = asyncio.get_running_loop()
        ping = asyncio.Event()
        pong = asyncio.Event()

        async def background() -> None:  # another task of the same loop, e.g. a server
            await ping.wait()
            pong.set()

        task = asyncio.create_task(background())

        async def needs_the_loop() -> tuple[int, asyncio.AbstractEventLoop]:
            ping.set()
            await pong.wait()  # only the background task can set it
            return threading.get_ident(), asyncio.get_running_loop()

        def sync_code() -> Any:  # sync code called from the coroutine, on the loop's thread
            return blockon.run(needs_the_loop(), loop=loop, timeout=HANG)

        ident, ran_on = sync_code()
        await task
        return ident == threading.get_ident(), ran_on is loop

    with asyncio.Runner(loop_factory=debug_loop) as runner:
        assert runner.run(main()) == (True, True)


def test_own_running_uvloop_raises_runtime_error_at_once():
    uvloop = pytest.importorskip("uvloop")

    async def main() -> None:
        coro = where()
        started = time.monotonic()
        with pytest.raises(RuntimeError, match="cannot be re-entered"):
            blockon.run(coro, loop=asyncio.get_running_loop())
        assert time.monotonic() - started < AT_ONCE
        assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())


# --- run()'s promises on a given loop ------------------------------------------------------


def test_exception_is_the_same_object_with_the_coroutine_frames(foreign):
    raised: list[BaseException] = []

    async def inner() -> None:
        await asyncio.sleep(0)
        exc = Boom("on L")
        raised.append(exc)
        raise exc

    async def outer() -> None:
        await inner()

    with pytest.raises(Boom) as info:
        blockon.run(outer(), loop=foreign.loop)
    assert info.value is raised[0]
    frames = traceback.extract_tb(info.value.__traceback__)
    names = [f.name for f in frames]
    assert names[-2:] == ["outer", "inner"], names
    assert names[0] == test_exception_is_the_same_object_with_the_coroutine_frames.__name__
    assert blockon_frames(info.value) == []


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit, BaseBoom])
def test_base_exceptions_reach_the_caller_and_the_loop_keeps_running(foreign, exc_type):
    async def bails() -> None:
        await asyncio.sleep(0)
        raise exc_type()

    with pytest.raises(exc_type):
        blockon.run(bails(), loop=foreign.loop)
    assert foreign.loop.is_running()
    assert blockon.run(where(), loop=foreign.loop) == ("foreign-loop", foreign.loop)


def test_result_is_returned_as_is(foreign):
    marker = object()

    async def give() -> object:
        await asyncio.sleep(0)
        return marker

    assert blockon.run(give(), loop=foreign.loop) is marker
    # Any awaitable, not only coroutines: a Task-free Future-like object from __await__.
    assert blockon.run(asyncio.sleep(0, "slept"), loop=foreign.loop) == "slept"


@pytest.mark.parametrize(
    "when",
    [
        "in the first step",
        "after an await",
    ],
)
def test_runs_in_a_copy_of_the_callers_context(foreign, when):
    async def reads_and_writes() -> tuple[str, str]:
        seen = VAR.get()
        if when == "after an await":
            await asyncio.sleep(0)
        VAR.set("set on L")
        await asyncio.sleep(0)
        return seen, VAR.get()

    token = VAR.set("set by the caller")
    try:
        assert blockon.run(reads_and_writes(), loop=foreign.loop) == (
            "set by the caller",
            "set on L",
        )
        assert VAR.get() == "set by the caller"  # nothing leaks back
    finally:
        VAR.reset(token)


def test_timeout_cancels_and_cleanup_runs_on_the_loop_before_timeout_error(foreign):
    started = threading.Event()
    cleanup: list[tuple[str, str]] = []

    async def stuck() -> None:
        try:
            started.set()
            await asyncio.Event().wait()  # never set
        except asyncio.CancelledError:
            cleanup.append(("cancelled", threading.current_thread().name))
            raise
        finally:
            await asyncio.sleep(0)  # cleanup that needs the loop
            cleanup.append(("finally done", threading.current_thread().name))

    with pytest.raises(TimeoutError):
        blockon.run(stuck(), loop=foreign.loop, timeout=0.05)
    assert started.is_set()
    assert cleanup == [("cancelled", "foreign-loop"), ("finally done", "foreign-loop")]
    assert foreign.loop.is_running()


def test_cancelled_from_elsewhere_raises_concurrent_futures_cancelled_error(foreign):
    async def cancels_itself() -> None:
        this_task().cancel()
        await asyncio.sleep(0)

    with pytest.raises(concurrent.futures.CancelledError):
        blockon.run(cancels_itself(), loop=foreign.loop)


@pytest.mark.parametrize("how", ["stops", "closes"])
def test_loop_stopping_or_closing_while_the_caller_waits_raises_runtime_error(how):
    fl = ForeignLoop(debug_loop).start()
    started = threading.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    outcome: list[BaseException] = []
    done = threading.Event()

    def caller() -> None:
        try:
            blockon.run(forever(), loop=fl.loop)
        except BaseException as exc:
            outcome.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=caller)
    thread.start()
    try:
        assert started.wait(HANG)
        fl.stop()
        if how == "closes":
            fl.loop.close()
        assert done.wait(HANG), "the caller hangs on a loop that went away"
        [exc] = outcome
        assert type(exc) is RuntimeError
        assert "not running" in str(exc) or "closed" in str(exc), str(exc)
    finally:
        thread.join(HANG)
        fl.close()
        gc.collect()  # a loop closed under a task: its "destroyed but pending" log stays here


def test_bad_input_with_loop(foreign):
    with pytest.raises(TypeError, match="int"):
        blockon.run(42, loop=foreign.loop)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"call it: run\(f\(\)\)"):
        blockon.run(where, loop=foreign.loop)  # type: ignore[arg-type]


def test_awaitable_bound_to_another_loop_fails_with_asyncios_error(foreign):
    with blockon.LoopThread(debug_loop, name="owner") as owner:

        async def make_future() -> asyncio.Future[None]:
            return asyncio.get_running_loop().create_future()

        future = owner.run(make_future())

        async def awaits_it() -> None:
            await future

        with pytest.raises(RuntimeError, match="attached to a different loop"):
            blockon.run(awaits_it(), loop=foreign.loop, timeout=HANG)


# --- Ctrl-C --------------------------------------------------------------------------------

CTRL_C_SCRIPT = """
import asyncio, os, sys, threading
import blockon

KIND = {kind!r}

def say(line):
    os.write(1, (line + "\\n").encode())

if KIND == "uvloop":
    import uvloop
    loop = uvloop.new_event_loop()
else:
    loop = asyncio.new_event_loop()
threading.Thread(target=loop.run_forever, daemon=True).start()

async def main():
    # SIGINT only once the caller waits, not while it is still inside call_soon_threadsafe:
    # that window has a test of its own (below).
    caller = threading.main_thread().ident
    while sys._current_frames()[caller].f_code.co_name != "<module>":
        await asyncio.sleep(0)
    try:
        say("started")
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        say("cancelled")
        raise
    finally:
        await asyncio.sleep(0.05)  # cleanup that needs the loop for a while
        say("cleanup done")

try:
    blockon.run(main(), loop=loop)
except KeyboardInterrupt:
    say("KeyboardInterrupt")
    raise
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("kind", ["asyncio", "uvloop"])
def test_ctrl_c_while_waiting_on_a_given_loop_cancels_cleans_up_and_reraises(kind):
    if kind == "uvloop":
        pytest.importorskip("uvloop")
    done = send_sigint_after_started(CTRL_C_SCRIPT.format(kind=kind), exit_within=5)
    assert done.texts == ["cancelled", "cleanup done", "KeyboardInterrupt"], done.stderr
    assert "KeyboardInterrupt" in done.stderr
    assert done.returncode == -signal.SIGINT, done.stderr


INTERRUPTED_WHILE_SCHEDULING = """
import asyncio, os, signal, threading
import blockon

def say(line):
    os.write(1, (line + "\\n").encode())

started = threading.Event()

class Loop(asyncio.SelectorEventLoop):
    interrupted = False

    def call_soon_threadsafe(self, callback, *args, context=None):
        handle = super().call_soon_threadsafe(callback, *args, context=context)
        if callback is not self.stop and not self.interrupted:
            self.interrupted = True
            started.wait(10)  # the loop thread is running the coroutine by now
            signal.raise_signal(signal.SIGINT)  # Ctrl-C lands before run() starts waiting
        return handle

loop = Loop()
threading.Thread(target=loop.run_forever, name="foreign-loop", daemon=True).start()

async def main():
    try:
        started.set()
        await asyncio.Event().wait()
    finally:
        await asyncio.sleep(0)  # cleanup that needs the loop
        say(f"cleanup ran on {threading.current_thread().name}")

try:
    blockon.run(main(), loop=loop)
except KeyboardInterrupt:
    say("KeyboardInterrupt")
except BaseException as exc:
    say(f"{type(exc).__name__}: {exc}")
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_while_scheduling_on_a_given_loop_still_cancels_on_that_loop():
    proc, _ = run_script(INTERRUPTED_WHILE_SCHEDULING)
    assert proc.stdout.splitlines() == ["cleanup ran on foreign-loop", "KeyboardInterrupt"], (
        proc.stdout,
        proc.stderr,
    )
