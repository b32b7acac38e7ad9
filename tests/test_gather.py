"""`gather()`: many awaitables at once from sync code.

Through the public API: `blockon.gather` on the default loop thread, `LoopThread.gather` on a
debug stdlib `LoopThread` and on a uvloop one (the `target` fixture). Synchronisation is by
events, never by sleeping; timeouts in `timeout=` tests are the thing under test, and hang
guards are generous.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import sys
import traceback

import blockon
import pytest

from tests.support import (
    Boom,
    Tracker,
    blockon_frames,
    run_in_threads,
    send_sigint_after_started,
    started,
)

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")


@pytest.fixture
def gather(target):
    """`blockon.gather` for the default loop thread, else the LoopThread's `gather`."""
    return target.api.gather


async def value(x):
    await asyncio.sleep(0)
    return x


def loop_events(n):
    """n asyncio.Events (they bind to the loop that first waits on them)."""
    return [asyncio.Event() for _ in range(n)]


# --- results ---------------------------------------------------------------------------------


def test_results_in_argument_order_whatever_the_completion_order(gather):
    n = 6
    events = loop_events(n)
    finished = []

    async def item(i):
        if i < n - 1:
            await events[i].wait()  # the last finishes first, then releases the one before
        finished.append(i)
        if i > 0:
            events[i - 1].set()
        return f"r{i}"

    assert gather(*(item(i) for i in range(n))) == [f"r{i}" for i in range(n)]
    assert finished == list(reversed(range(n)))


def test_returns_the_same_objects(gather):
    objs = [object() for _ in range(3)]
    out = gather(*(value(o) for o in objs))
    assert all(a is b for a, b in zip(out, objs, strict=True))


def test_no_awaitables_gives_an_empty_list(gather):
    assert gather() == []


def test_any_awaitable_not_only_coroutines(gather, target):
    class Later:
        def __await__(self):
            yield from asyncio.sleep(0).__await__()
            return "later"

    async def make_future():
        fut = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(fut.set_result, "future")
        return fut

    fut = target.run(make_future())
    assert gather(value(1), Later(), fut) == [1, "later", "future"]


def test_runs_in_a_copy_of_the_callers_context(gather):
    async def read():
        await asyncio.sleep(0)
        seen = VAR.get()
        VAR.set("changed by the coroutine")
        return seen

    token = VAR.set("caller")
    try:
        assert gather(read(), read()) == ["caller", "caller"]
        assert VAR.get() == "caller"
    finally:
        VAR.reset(token)


@pytest.fixture(params=["stdlib", "uvloop"])
def quiet_loop_thread(request):
    """A LoopThread whose loop is not in debug mode (debug mode records a stack for every task
    created, which makes 10,000 of them slow; the other tests keep it on)."""
    if request.param == "uvloop":
        new_loop = pytest.importorskip("uvloop").new_event_loop
    else:
        new_loop = asyncio.new_event_loop

    def factory():
        loop = new_loop()
        loop.set_debug(False)
        return loop

    with blockon.LoopThread(factory, name=f"test-quiet-{request.param}") as lt:
        yield lt


def test_ten_thousand_coroutines(quiet_loop_thread):
    n = 10_000
    aws = [asyncio.sleep(0, result=i) for i in range(n)]
    assert quiet_loop_thread.gather(*aws) == list(range(n))


def test_ten_thousand_coroutines_with_a_limit(quiet_loop_thread):
    n = 10_000
    t = Tracker()
    assert quiet_loop_thread.gather(*(t.run(i) for i in range(n)), limit=50) == list(range(n))
    assert t.max == 50


# --- limit -----------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 3, 7])
def test_limit_bounds_the_measured_concurrency(gather, limit):
    t = Tracker()
    assert gather(*(t.run(i) for i in range(20)), limit=limit) == list(range(20))
    assert t.max == limit
    assert t.started == list(range(20)), "started in argument order"


def test_without_limit_all_run_at_once(gather):
    t = Tracker()
    gather(*(t.run(i) for i in range(20)))
    assert t.max == 20


def test_limit_larger_than_the_batch(gather):
    t = Tracker()
    assert gather(*(t.run(i) for i in range(5)), limit=100) == list(range(5))
    assert t.max == 5


def test_coroutines_wait_unstarted_until_a_slot_frees(gather):
    gate = asyncio.Event()
    t = Tracker()
    seen = []

    async def opener():
        await asyncio.sleep(0)
        seen.append(list(t.started))  # only the first two slots are taken
        gate.set()
        return "opener"

    out = gather(opener(), t.run(1, until=gate), t.run(2), t.run(3), limit=2)
    assert out == ["opener", 1, 2, 3]
    assert seen == [[1]]


# --- failure ---------------------------------------------------------------------------------


def test_first_exception_cancels_the_rest_and_waits_for_their_cleanup(gather):
    exc = Boom("first")
    never = asyncio.Event()
    t = Tracker()
    started = asyncio.Event()

    async def fail():
        await started.wait()
        raise exc

    async def last_to_start(i):
        started.set()
        return await t.run(i, until=never)

    with pytest.raises(Boom) as info:
        gather(t.run(0, until=never), fail(), t.run(2, until=never), last_to_start(3))
    assert info.value is exc
    # Every other one was cancelled and its finally had run before gather() raised.
    assert sorted(t.cancelled) == [0, 2, 3]
    assert sorted(t.cleaned) == [0, 2, 3]


def test_first_exception_with_a_limit_closes_the_unstarted(gather):
    exc = Boom()
    ran = []

    async def fail():
        await asyncio.sleep(0)
        raise exc

    async def later(i):
        ran.append(i)

    never = asyncio.Event()
    t = Tracker()
    waiting = [later(i) for i in range(5)]
    with pytest.raises(Boom) as info:
        gather(t.run(0, until=never), fail(), *waiting, limit=2)
    assert info.value is exc
    assert ran == []
    assert all(inspect.getcoroutinestate(c) == inspect.CORO_CLOSED for c in waiting)
    assert t.cleaned == [0] and t.cancelled == [0]


def test_only_the_first_exception_is_raised(gather):
    first, second = Boom("first"), Boom("second")
    go = asyncio.Event()

    async def fail_first():
        await asyncio.sleep(0)
        go.set()
        raise first

    async def fail_later():
        try:
            await go.wait()
            await asyncio.sleep(0)
        finally:
            raise second  # raised during its cleanup: not the one the caller gets

    with pytest.raises(Boom) as info:
        gather(fail_first(), fail_later())
    assert info.value is first


def test_return_exceptions_puts_them_in_place(gather):
    errors = [Boom("a"), ValueError("b")]

    async def fail(exc):
        await asyncio.sleep(0)
        raise exc

    out = gather(value(0), fail(errors[0]), value(2), fail(errors[1]), return_exceptions=True)
    assert out[0] == 0 and out[2] == 2
    assert out[1] is errors[0] and out[3] is errors[1]


def test_return_exceptions_with_a_limit_runs_everything(gather):
    t = Tracker()

    async def fail(i):
        await asyncio.sleep(0)
        raise Boom(i)

    aws = [fail(i) if i % 3 == 0 else t.run(i) for i in range(12)]
    out = gather(*aws, limit=2, return_exceptions=True)
    for i, r in enumerate(out):
        if i % 3 == 0:
            assert isinstance(r, Boom) and r.args == (i,)
        else:
            assert r == i
    assert t.max <= 2


def test_traceback_shows_the_coroutines_frames(gather):
    async def inner():
        await asyncio.sleep(0)
        raise Boom("deep")

    async def outer():
        await inner()

    with pytest.raises(Boom) as info:
        gather(value(1), outer())
    frames = traceback.extract_tb(info.value.__traceback__)
    assert [f.name for f in frames][-2:] == ["outer", "inner"]
    # blockon's frames are only the calls that lead to the raise: none from the machinery on
    # the loop thread between the caller's frames and the coroutines'.
    ours = blockon_frames(info.value)
    assert ours and frames[1 : 1 + len(ours)] == ours, frames


def test_awaitable_cancelled_from_elsewhere(gather):
    async def awaits_a_cancelled_future():
        fut = asyncio.get_running_loop().create_future()
        fut.cancel()
        await fut

    with pytest.raises(concurrent.futures.CancelledError):
        gather(value(1), awaits_a_cancelled_future())
    out = gather(value(1), awaits_a_cancelled_future(), return_exceptions=True)
    assert out[0] == 1
    assert isinstance(out[1], concurrent.futures.CancelledError)


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_keyboard_interrupt_inside_reaches_the_caller_and_the_loop_survives(lt, exc_type):
    async def interrupt():
        await asyncio.sleep(0)
        raise exc_type

    never = asyncio.Event()
    t = Tracker()
    with pytest.raises(exc_type):
        lt.gather(t.run(0, until=never), interrupt())
    assert t.cancelled == [0]
    assert lt.gather(value("still alive")) == ["still alive"]


# --- timeout ---------------------------------------------------------------------------------


def test_timeout_cancels_everything_and_waits_for_cleanup(gather, target):
    started(target.thread)
    never = asyncio.Event()
    t = Tracker()
    unstarted = [t.run(i) for i in range(2, 5)]
    with pytest.raises(TimeoutError):
        gather(t.run(0, until=never), t.run(1, until=never), *unstarted, limit=2, timeout=0.05)
    assert sorted(t.cancelled) == [0, 1]
    assert sorted(t.cleaned) == [0, 1]
    assert all(inspect.getcoroutinestate(c) == inspect.CORO_CLOSED for c in unstarted)


def test_timeout_not_reached(gather):
    assert gather(value(1), value(2), timeout=60) == [1, 2]


def test_timeout_cleanup_that_needs_the_loop(gather, target):
    started(target.thread)
    cleaned = []

    async def slow_cleanup(i):
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            cleaned.append(i)

    with pytest.raises(TimeoutError):
        gather(*(slow_cleanup(i) for i in range(10)), timeout=0.05)
    assert sorted(cleaned) == list(range(10))


# --- bad input -------------------------------------------------------------------------------


def test_non_awaitable_names_its_type_and_position_and_closes_the_rest(gather):
    coros = [value(1), value(2)]
    with pytest.raises(TypeError, match=r"'int' as argument 2\b"):
        gather(coros[0], 42, coros[1])
    assert all(inspect.getcoroutinestate(c) == inspect.CORO_CLOSED for c in coros)


def test_async_function_passed_uncalled_gets_a_hint(gather):
    coro = value(1)
    with pytest.raises(TypeError, match=r"call it: gather\(value\(\)\)"):
        gather(coro, value)
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED


@pytest.mark.parametrize(
    ("limit", "error"),
    [(0, ValueError), (-1, ValueError), ("3", TypeError), (2.0, TypeError), (True, TypeError)],
)
def test_bad_limit_closes_the_coroutines(gather, limit, error):
    coro = value(1)
    with pytest.raises(error, match="limit must be None or an int >= 1"):
        gather(coro, limit=limit)
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED


def test_closed_loop_thread_raises_and_closes_the_coroutines(lt):
    lt.close()
    coros = [value(1), value(2)]
    with pytest.raises(RuntimeError, match="closed"):
        lt.gather(*coros)
    assert all(inspect.getcoroutinestate(c) == inspect.CORO_CLOSED for c in coros)


# --- threads ---------------------------------------------------------------------------------


def test_many_threads_gather_at_once(gather):
    def worker(k):
        return gather(*(value((k, i)) for i in range(50)), limit=5)

    assert run_in_threads(8, worker) == [[(k, i) for i in range(50)] for k in range(8)]


# --- Ctrl-C ----------------------------------------------------------------------------------

CTRL_C_SCRIPT = """
import asyncio
import blockon

N = 5
running = 0

async def item(i):
    global running
    try:
        running += 1
        if running == N:
            print("started", flush=True)
        await asyncio.Event().wait()
    finally:
        await asyncio.sleep(0)  # cleanup that needs the loop
        print(f"cleanup {i}", flush=True)

async def never_started():
    print("never started ran", flush=True)

waiting = [never_started() for _ in range(3)]
try:
    blockon.gather(*(item(i) for i in range(N)), *waiting, limit=N)
except KeyboardInterrupt:
    import inspect
    print("closed", all(inspect.getcoroutinestate(c) == "CORO_CLOSED" for c in waiting))
    print("KeyboardInterrupt", flush=True)
    raise
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_cancels_everything_and_waits_for_cleanup():
    done = send_sigint_after_started(CTRL_C_SCRIPT, exit_within=10)
    texts, err = done.texts, done.stderr
    assert sorted(texts[:5]) == [f"cleanup {i}" for i in range(5)], err
    assert texts[5:] == ["closed True", "KeyboardInterrupt"], err
    assert "KeyboardInterrupt" in err and "never awaited" not in err
    assert done.returncode < 0, err


# --- where it runs ---------------------------------------------------------------------------


def test_from_sync_code_on_the_loop_thread_itself(reentrant_target):
    async def outer():
        # Sync code called by a coroutine on the loop thread: gather re-enters the loop.
        return reentrant_target.api.gather(value(1), value(2), limit=1)

    assert reentrant_target.run(outer()) == [1, 2]


def test_future_of_another_loop_fails_with_asyncios_error(gather, lt):
    async def make_future():
        return asyncio.get_running_loop().create_future()

    foreign = lt.run(make_future())
    with pytest.raises(RuntimeError, match="attached to a different loop"):
        gather(foreign, timeout=30)
