"""`LoopThread` and `default_loop_thread()`: lazy start, name, `.loop`, `close()` (which ends
what is left on the loop, as interpreter exit does for the default loop thread), context
manager, a failing loop factory."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import inspect
import os
import threading
import uuid

import blockon
import pytest

from tests.support import Boom, answer, debug_loop, run_script


async def thread_name():
    return threading.current_thread().name


async def running_loop():
    return asyncio.get_running_loop()


def unique_name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --- start, name, .loop ---------------------------------------------------------------------


def test_lazy_start():
    calls = []

    def factory():
        calls.append(True)
        return debug_loop()

    name = unique_name("lazy")
    lt = blockon.LoopThread(factory, name=name)
    try:
        assert calls == []
        assert lt.closed is False
        assert name not in [t.name for t in threading.enumerate()]
        assert lt.run(answer()) == 42
        assert calls == [True]
        assert lt.run(answer()) == 42
        assert calls == [True]
    finally:
        lt.close()


def test_loop_attribute_starts_it_and_is_the_running_loop():
    calls = []

    def factory():
        calls.append(True)
        return debug_loop()

    lt = blockon.LoopThread(factory)
    try:
        loop = lt.loop
        assert calls == [True]
        assert isinstance(loop, asyncio.AbstractEventLoop)
        assert lt.loop is loop
        assert lt.run(running_loop()) is loop
        assert loop.get_debug()
    finally:
        lt.close()
    assert loop.is_closed()


def test_thread_name():
    name = unique_name("my-loop")
    with blockon.LoopThread(name=name) as lt:
        assert lt.run(thread_name()) == name
        assert threading.current_thread().name != name


def test_default_thread_name_is_blockon():
    with blockon.LoopThread() as lt:
        assert lt.run(thread_name()) == "blockon"


def test_without_a_factory_the_loop_comes_from_new_event_loop():
    with blockon.LoopThread() as lt:
        loop = lt.run(running_loop())
    probe = asyncio.new_event_loop()
    try:
        assert type(loop) is type(probe)
    finally:
        probe.close()


def test_loop_factory_uvloop(uvloop_module):
    with blockon.LoopThread(uvloop_module.new_event_loop) as lt:
        assert isinstance(lt.loop, uvloop_module.Loop)
        assert isinstance(lt.run(running_loop()), uvloop_module.Loop)
        assert lt.run(answer()) == 42


def test_asyncio_debug_loop_every_operation():
    """asyncio debug mode raises if the loop is touched from a foreign thread."""
    with blockon.LoopThread(debug_loop) as lt:

        async def debug_on():
            return asyncio.get_running_loop().get_debug()

        assert lt.run(debug_on()) is True
        assert lt.run(answer()) == 42
        assert lt.submit(answer(7)).result(timeout=30) == 7
        started = threading.Event()

        async def forever():
            started.set()
            await asyncio.Event().wait()

        fut = lt.submit(forever())
        assert started.wait(30)
        assert fut.cancel()
        with pytest.raises(TimeoutError):
            lt.run(forever(), timeout=0.01)
        leftover = lt.submit(forever())
    assert leftover.done()


# --- blocked_warning ------------------------------------------------------------------------


def test_blocked_warning_default_and_setter():
    lt = blockon.LoopThread()
    try:
        assert lt.blocked_warning == 10.0
        lt.blocked_warning = 0.5
        assert lt.blocked_warning == 0.5
        lt.blocked_warning = None
        assert lt.blocked_warning is None
    finally:
        lt.close()
    lt2 = blockon.LoopThread(blocked_warning=None)
    try:
        assert lt2.blocked_warning is None
    finally:
        lt2.close()


# --- close ---------------------------------------------------------------------------------


def test_close_is_idempotent():
    lt = blockon.LoopThread(debug_loop)
    lt.run(answer())
    lt.close()
    assert lt.closed is True
    lt.close()
    lt.close(timeout=1)
    assert lt.closed is True


def test_close_of_a_never_started_loop_thread_starts_nothing():
    calls = []

    def factory():
        calls.append(True)
        return debug_loop()

    lt = blockon.LoopThread(factory)
    lt.close()
    assert lt.closed is True
    assert calls == []
    lt.close()


@pytest.mark.parametrize("method", ["run", "submit"])
@pytest.mark.parametrize("started", [True, False], ids=["started", "never-started"])
def test_closed_loop_thread_raises_and_closes_the_coroutine(method, started):
    lt = blockon.LoopThread(debug_loop)
    if started:
        lt.run(answer())
    lt.close()
    ran = []

    async def work():
        ran.append(True)

    coro = work()
    with pytest.raises(RuntimeError, match="closed"):
        getattr(lt, method)(coro)
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
    assert ran == []


def test_close_closes_the_loop():
    lt = blockon.LoopThread(debug_loop)
    loop = lt.loop
    lt.run(answer())
    lt.close()
    assert loop.is_closed()


def test_close_cancels_leftover_tasks_and_their_cleanup_runs():
    lt = blockon.LoopThread(debug_loop)
    started = threading.Event()
    log = []

    async def leftover(tag):
        try:
            started.set()
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            log.append(("cancelled", tag))
            raise
        finally:
            await asyncio.sleep(0)  # cleanup that needs the loop
            log.append(("finally", tag))

    fut = lt.submit(leftover("submitted"))
    assert started.wait(30)
    started.clear()

    spawned = []

    async def spawn():
        # a task the user created on the loop and left running
        spawned.append(asyncio.create_task(leftover("spawned")))
        await asyncio.sleep(0)

    lt.run(spawn())
    assert started.wait(30)
    lt.close()
    assert sorted(log) == sorted(
        [
            ("cancelled", "submitted"),
            ("finally", "submitted"),
            ("cancelled", "spawned"),
            ("finally", "spawned"),
        ]
    )
    assert fut.cancelled()
    with pytest.raises(concurrent.futures.CancelledError):
        fut.result(timeout=0)


def test_close_while_a_caller_waits_raises_concurrent_cancelled_error():
    lt = blockon.LoopThread(debug_loop)
    started = threading.Event()
    log = []
    outcome = {}

    async def wait_forever():
        try:
            started.set()
            await asyncio.Event().wait()
        finally:
            log.append("finally")

    def caller():
        try:
            outcome["result"] = lt.run(wait_forever())
        except BaseException as exc:
            outcome["exc"] = exc

    thread = threading.Thread(target=caller)
    thread.start()
    assert started.wait(30)
    lt.close()
    thread.join(30)
    assert not thread.is_alive()
    assert type(outcome.get("exc")) is concurrent.futures.CancelledError, outcome
    assert log == ["finally"]


def test_close_finalizes_async_generators():
    log = []

    async def agen():
        try:
            yield 1
            yield 2
        finally:
            await asyncio.sleep(0)
            log.append("agen finally")

    async def start():
        gen = agen()
        assert await gen.__anext__() == 1
        return gen

    lt = blockon.LoopThread(debug_loop)
    gen = lt.run(start())  # half-consumed, still referenced
    lt.close()
    assert log == ["agen finally"]
    del gen


def test_close_shuts_down_the_default_executor():
    lt = blockon.LoopThread(debug_loop)

    async def executor_thread():
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, threading.current_thread)

    worker = lt.run(executor_thread())
    assert worker.is_alive()
    lt.close()
    assert not worker.is_alive()


# --- context manager ------------------------------------------------------------------------


def test_context_manager_returns_itself_and_closes():
    with blockon.LoopThread(debug_loop) as lt:
        assert isinstance(lt, blockon.LoopThread)
        loop = lt.loop
        assert lt.run(answer()) == 42
        assert not lt.closed
    assert lt.closed
    assert loop.is_closed()


def test_context_manager_lets_the_body_exception_through_and_closes():
    exc = Boom()
    with pytest.raises(Boom) as info, blockon.LoopThread(debug_loop) as lt:
        lt.run(answer())
        raise exc
    assert info.value is exc
    assert lt.closed


def test_context_manager_never_started():
    with blockon.LoopThread(debug_loop) as lt:
        pass
    assert lt.closed


# --- default_loop_thread ---------------------------------------------------------------------


def test_default_loop_thread_is_one_loop_thread():
    default = blockon.default_loop_thread()
    assert isinstance(default, blockon.LoopThread)
    assert blockon.default_loop_thread() is default
    assert not default.closed
    assert blockon.run(running_loop()) is default.loop
    assert default.run(running_loop()) is default.loop
    assert blockon.submit(running_loop()).result(timeout=30) is default.loop


def test_default_loop_thread_honours_the_event_loop_policy(uvloop_module):
    proc, _ = run_script(
        """
        import asyncio, warnings
        import uvloop
        import blockon
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())

        async def loop_type():
            return type(asyncio.get_running_loop())

        assert issubclass(blockon.run(loop_type()), uvloop.Loop), blockon.run(loop_type())
        assert isinstance(blockon.default_loop_thread().loop, uvloop.Loop)
        print("ok")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "ok\n"


# --- a loop_factory that fails: an error, never a hang --------------------------------------


def call_without_hanging(fn, *args, limit=15):
    """Call fn in a daemon thread; fail (instead of hanging the suite) if it does not return."""
    outcome = {}

    def body():
        try:
            outcome["value"] = fn(*args)
        except BaseException as exc:
            outcome["exc"] = exc

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    thread.join(limit)
    if thread.is_alive():
        pytest.fail(f"{fn!r} hung (still blocked after {limit} s)")
    if "exc" in outcome:
        raise outcome["exc"]
    return outcome["value"]


@pytest.mark.parametrize("result", ["raises", "not-a-loop"])
def test_loop_factory_that_fails_raises_and_closes_the_coroutine(result):
    exc = Boom("no loop today")

    def factory():
        if result == "raises":
            raise exc
        return "not a loop"

    lt = blockon.LoopThread(factory)
    ran = []

    async def work():
        ran.append(True)

    for _ in range(2):  # and again on the next call
        coro = work()
        with pytest.raises(Boom if result == "raises" else TypeError) as info:
            call_without_hanging(lt.run, coro)
        if result == "raises":
            assert info.value is exc
        else:
            assert "str" in str(info.value)
        assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
        assert ran == []
    call_without_hanging(lt.close)


# --- close from odd places ------------------------------------------------------------------


def test_close_from_inside_the_loop_thread_does_not_deadlock():
    lt = blockon.LoopThread(debug_loop)

    async def closes_its_own_loop_thread():
        lt.close()
        await asyncio.sleep(0)
        return "returned"

    # Either it returns, or the closing loop cancelled the caller's task: both are fine.
    with contextlib.suppress(concurrent.futures.CancelledError):
        assert lt.run(closes_its_own_loop_thread()) == "returned"
    assert lt.closed
    coro = answer()
    with pytest.raises(RuntimeError, match="closed"):
        lt.run(coro)
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED


def test_close_with_a_timeout_is_bounded_by_it():
    lt = blockon.LoopThread(debug_loop)
    started = threading.Event()
    release = threading.Event()

    async def stubborn():
        started.set()
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):  # refuses to be cancelled
                await asyncio.sleep(0.01)

    lt.submit(stubborn())
    assert started.wait(30)
    try:
        with pytest.raises(TimeoutError):  # docstring of LoopThread.close
            lt.close(timeout=0.2)
        assert lt.closed
    finally:
        release.set()


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_close_releases_file_descriptors():
    def open_fds():
        return len(os.listdir("/proc/self/fd"))

    with blockon.LoopThread(debug_loop) as warm_up:  # first-use imports and caches
        warm_up.run(answer())
    gc.collect()
    before = open_fds()
    for _ in range(20):
        lt = blockon.LoopThread(debug_loop)
        lt.run(answer())
        lt.submit(answer()).result(timeout=30)
        lt.close()
    for _ in range(5):
        with blockon.LoopThread() as lt:
            lt.run(answer())
    gc.collect()
    # 25 loop threads opened and closed: a leak would show as growth of 25 or more.
    assert open_fds() <= before
