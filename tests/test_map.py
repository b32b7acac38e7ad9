"""`map()`: Executor.map for an async function, from sync code.

Through the public API: `blockon.map` on the default loop thread, `LoopThread.map` on a debug
stdlib `LoopThread` and on a uvloop one (the `target` fixture). Synchronisation is by events,
never by sleeping (but for deadlines under test, which have to pass); hang guards are generous.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import gc
import inspect
import itertools
import sys
import time

import pytest

from tests.support import (
    Boom,
    Tracker,
    run_script,
    send_sigint_after_started,
    started,
)

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")
#: What `limit=None` means (documented): a bound, not "unbounded".
DEFAULT_MAP_LIMIT = 100


@pytest.fixture
def bmap(target):
    """`blockon.map` for the default loop thread, else the LoopThread's `map`."""
    return target.api.map


async def double(x):
    await asyncio.sleep(0)
    return 2 * x


class Counted:
    """An endless input that counts what was pulled from it."""

    def __init__(self):
        self.pulled = 0

    def __iter__(self):
        for i in itertools.count():
            self.pulled += 1
            yield i


# --- results ---------------------------------------------------------------------------------


def test_results_in_input_order_whatever_the_completion_order(bmap):
    n = 6
    events = [asyncio.Event() for _ in range(n)]
    finished = []

    async def item(i):
        if i < n - 1:
            await events[i].wait()  # the last finishes first, then releases the one before
        finished.append(i)
        if i > 0:
            events[i - 1].set()
        return f"r{i}"

    assert list(bmap(item, range(n))) == [f"r{i}" for i in range(n)]
    assert finished == list(reversed(range(n)))


def test_unordered_yields_in_completion_order(bmap):
    order = [3, 0, 4, 1, 2]  # the completion order forced below
    events = {i: asyncio.Event() for i in order}

    async def item(i):
        if i != order[0]:
            await events[i].wait()
        at = order.index(i)
        if at + 1 < len(order):
            events[order[at + 1]].set()
        return i

    assert list(bmap(item, range(5), ordered=False)) == order


def test_several_iterables_are_zipped_shortest_first(bmap):
    async def add(a, b):
        await asyncio.sleep(0)
        return a + b

    assert list(bmap(add, [1, 2, 3], itertools.count(10))) == [11, 13, 15]


def test_empty_input(bmap):
    assert list(bmap(double, [])) == []


def test_runs_in_a_copy_of_the_callers_context(bmap):
    async def read(_):
        await asyncio.sleep(0)
        seen = VAR.get()
        VAR.set("changed by the call")
        return seen

    token = VAR.set("caller")
    try:
        assert list(bmap(read, range(3))) == ["caller"] * 3
        assert VAR.get() == "caller"
    finally:
        VAR.reset(token)


def test_nothing_starts_before_the_first_next(bmap):
    t = Tracker()
    it = bmap(t, range(3))
    assert t.started == []
    assert next(it) == 0
    assert sorted(t.started) == [0, 1, 2]
    assert list(it) == [1, 2]


# --- limit and laziness ----------------------------------------------------------------------


@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize("limit", [1, 3])
def test_limit_bounds_the_measured_concurrency(bmap, limit, ordered):
    t = Tracker()
    out = list(bmap(t, range(20), limit=limit, ordered=ordered))
    assert sorted(out) == list(range(20))
    assert t.max == limit


def test_default_limit_is_a_bound_not_unbounded(bmap):
    t = Tracker()
    n = DEFAULT_MAP_LIMIT + 20
    assert list(bmap(t, range(n))) == list(range(n))
    assert t.max == DEFAULT_MAP_LIMIT


@pytest.mark.parametrize("ordered", [True, False])
def test_endless_input_is_pulled_lazily_and_close_cancels_what_is_in_flight(bmap, ordered):
    source = Counted()
    t = Tracker(block_from=10)  # items 0-9 finish; later ones stay in flight until cancelled
    it = bmap(t, source, limit=4, ordered=ordered)
    got = [next(it) for _ in range(10)]
    assert sorted(got) == list(range(10))
    assert source.pulled <= 10 + 4
    assert t.cancelled == []
    it.close()
    # close() returned after every call in flight was cancelled and its finally had run.
    in_flight = sorted(set(t.started) - set(got))
    assert in_flight and sorted(t.cancelled) == in_flight
    assert sorted(t.cleaned) == sorted(t.started)
    assert source.pulled <= 10 + 4
    with pytest.raises(StopIteration):
        next(it)


def test_break_out_of_a_for_loop_cancels_what_is_in_flight(bmap):
    t = Tracker(block_from=3)
    for x in bmap(t, itertools.count(), limit=5):
        if x == 2:
            break
    # The iterator was freed when the loop ended: its cleanup has run by now.
    assert sorted(t.cancelled) == [3, 4, 5, 6, 7]
    assert sorted(t.cleaned) == sorted(t.started)


def test_garbage_collection_cancels_what_is_in_flight(bmap):
    t = Tracker(block_from=1)
    it = bmap(t, itertools.count(), limit=3)
    assert next(it) == 0
    del it
    gc.collect()
    assert sorted(t.cancelled) == [1, 2, 3]


def test_a_slow_result_holds_its_slot_in_order(bmap):
    """ordered=True: a finished result waiting behind a slower one keeps its slot."""
    gate = asyncio.Event()
    started = []

    async def item(i):
        started.append(i)
        if i == 0:
            await gate.wait()
        elif i == 2:
            gate.set()  # the third one to start releases the first
        await asyncio.sleep(0)
        return i

    assert list(bmap(item, range(6), limit=3)) == list(range(6))
    assert started[:3] == [0, 1, 2]


# --- failure ---------------------------------------------------------------------------------


@pytest.mark.parametrize("ordered", [True, False])
def test_exception_is_raised_in_place_and_cancels_the_rest(bmap, ordered):
    exc = Boom("item 3")
    t = Tracker(block_from=4)
    first_three = asyncio.Event()

    async def item(i):
        if i == 3:
            await first_three.wait()  # fails after 0-2 finished, in either order
            raise exc
        result = await t(i)
        if len(t.cleaned) == 3:
            first_three.set()
        return result

    it = bmap(item, range(8), limit=5, ordered=ordered)
    got = [next(it) for _ in range(3)]
    assert sorted(got) == [0, 1, 2]
    with pytest.raises(Boom) as info:
        next(it)
    assert info.value is exc
    # Everything in flight was cancelled and cleaned up before next() raised.
    assert t.cancelled and sorted(t.cancelled) == sorted(set(t.started) - {0, 1, 2})
    assert sorted(t.cleaned) == sorted(t.started)
    with pytest.raises(StopIteration):
        next(it)


def test_exception_leaving_list_or_a_for_loop_is_the_exception(bmap):
    exc = Boom()

    async def item(i):
        await asyncio.sleep(0)
        if i == 2:
            raise exc
        return i

    with pytest.raises(Boom) as info:
        list(bmap(item, range(5)))
    assert info.value is exc

    def loop_in_a_function():
        for _ in bmap(item, range(5)):
            pass

    with pytest.raises(Boom) as info:
        loop_in_a_function()
    assert info.value is exc


def test_exception_from_the_for_loop_body_closes_the_iterator(bmap):
    t = Tracker(block_from=1)

    def consume():
        for _ in bmap(t, itertools.count(), limit=3):
            raise Boom("from the body")

    with pytest.raises(Boom, match="from the body"):
        consume()
    assert sorted(t.cancelled) == [1, 2, 3]


def test_traceback_shows_the_functions_frames(bmap):
    async def inner(x):
        await asyncio.sleep(0)
        raise Boom(x)

    with pytest.raises(Boom) as info:
        list(bmap(inner, [1]))
    assert info.traceback[-1].name == "inner"


def test_input_that_raises_after_the_results_before_it(bmap):
    exc = Boom("bad input")

    def source():
        yield 1
        yield 2
        raise exc

    it = bmap(double, source(), limit=5)
    assert next(it) == 2
    assert next(it) == 4
    with pytest.raises(Boom) as info:
        next(it)
    assert info.value is exc


def test_fn_that_does_not_return_an_awaitable(bmap):
    def sync_fn(x):
        return x

    with pytest.raises(TypeError, match=r"needs fn to return an awaitable; .*sync_fn.* 'int'"):
        list(bmap(sync_fn, [1]))


def test_call_cancelled_from_elsewhere(bmap):
    async def awaits_a_cancelled_future(_):
        fut = asyncio.get_running_loop().create_future()
        fut.cancel()
        await fut

    with pytest.raises(concurrent.futures.CancelledError):
        list(bmap(awaits_a_cancelled_future, [1]))


def test_keyboard_interrupt_inside_reaches_the_caller_and_the_loop_survives(lt):
    async def interrupt(i):
        await asyncio.sleep(0)
        if i == 1:
            raise KeyboardInterrupt
        return i

    with pytest.raises(KeyboardInterrupt):
        list(lt.map(interrupt, range(3)))
    assert list(lt.map(double, [1, 2])) == [2, 4]


# --- timeout ---------------------------------------------------------------------------------


@pytest.mark.parametrize("ordered", [True, False])
def test_timeout_raises_and_cancels_what_is_in_flight(bmap, target, ordered):
    started(target.thread)
    t = Tracker(block_from=2)
    it = bmap(t, range(6), limit=4, timeout=0.1, ordered=ordered)
    assert sorted([next(it), next(it)]) == [0, 1]
    with pytest.raises(TimeoutError):
        next(it)
    assert sorted(t.cancelled) == [2, 3, 4, 5]
    assert sorted(t.cleaned) == sorted(t.started)
    with pytest.raises(StopIteration):
        next(it)


def test_timeout_not_reached(bmap):
    assert list(bmap(double, range(5), timeout=60)) == [0, 2, 4, 6, 8]


def test_timeout_is_measured_from_the_call(lt):
    it = started(lt).map(double, range(3), timeout=0.05)
    time.sleep(0.1)  # the deadline passes before the first next(): nothing has started
    with pytest.raises(TimeoutError):
        next(it)


def test_result_already_finished_is_returned_after_the_deadline(lt):
    it = started(lt).map(double, range(3), timeout=0.2)
    assert next(it) == 0  # started all three; they finish at once
    time.sleep(0.3)  # past the deadline
    assert list(it) == [2, 4]


# --- bad input -------------------------------------------------------------------------------


def test_fn_not_callable(bmap):
    with pytest.raises(TypeError, match="needs an async function, got 'int'"):
        bmap(3, [1])


def test_coroutine_passed_as_fn_gets_a_hint_and_is_closed(bmap):
    coro = double(1)
    with pytest.raises(TypeError, match="pass the function itself"):
        bmap(coro, [1])
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED


def test_not_iterable(bmap):
    with pytest.raises(TypeError, match="'int' as iterable 2"):
        bmap(double, [1], 5)


def test_async_iterable_gets_a_hint(bmap):
    async def agen():
        yield 1

    gen = agen()
    with pytest.raises(TypeError, match="it is an async iterable"):
        bmap(double, gen)


def test_no_iterable(bmap):
    with pytest.raises(TypeError, match="at least one iterable"):
        bmap(double)


@pytest.mark.parametrize(("limit", "error"), [(0, ValueError), ("3", TypeError), (True, TypeError)])
def test_bad_limit(bmap, limit, error):
    with pytest.raises(error, match="limit must be None or an int >= 1"):
        bmap(double, [1], limit=limit)


def test_bad_timeout(bmap):
    with pytest.raises(TypeError, match="timeout must be a number of seconds or None"):
        bmap(double, [1], timeout="1")


# --- Ctrl-C ----------------------------------------------------------------------------------

CTRL_C_SCRIPT = """
import asyncio, itertools
import blockon

pulled = []

def source():
    for i in itertools.count():
        pulled.append(i)
        yield i

async def item(i):
    # The items start inside the first next(), so the main thread waits in it by now.
    try:
        if i == 2:
            print("started", flush=True)
        await asyncio.Event().wait()
    finally:
        await asyncio.sleep(0)  # cleanup that needs the loop
        print(f"cleanup {i}", flush=True)

it = blockon.map(item, source(), limit=3)
try:
    for x in it:
        pass
except KeyboardInterrupt:
    print("pulled", len(pulled), flush=True)
    print("KeyboardInterrupt", flush=True)
    raise
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_cancels_what_is_in_flight_and_waits_for_cleanup():
    done = send_sigint_after_started(CTRL_C_SCRIPT, exit_within=10)
    texts, err = done.texts, done.stderr
    assert sorted(texts[:3]) == ["cleanup 0", "cleanup 1", "cleanup 2"], err
    assert texts[3:] == ["pulled 3", "KeyboardInterrupt"], err
    assert "KeyboardInterrupt" in err
    assert done.returncode < 0, err


EXIT_SCRIPT = """
import asyncio, itertools
import blockon

async def item(i):
    try:
        if i == 0:
            return i
        await asyncio.Event().wait()
    finally:
        if i:
            await asyncio.sleep(0)  # cleanup that needs the loop
            print(f"cleanup {i}", flush=True)

it = blockon.map(item, itertools.count(), limit=3)
print(next(it), flush=True)
"""


def test_iterator_left_open_at_exit_is_cleaned_up_quietly():
    proc, elapsed = run_script(EXIT_SCRIPT)
    assert (proc.returncode, proc.stderr) == (0, "")
    lines = proc.stdout.splitlines()
    assert lines[0] == "0"
    assert sorted(lines[1:]) == ["cleanup 1", "cleanup 2", "cleanup 3"]
    assert elapsed < 10


# --- where it runs ---------------------------------------------------------------------------


def test_from_sync_code_on_the_loop_thread_itself(reentrant_target):
    async def outer():
        # Sync code called by a coroutine on the loop thread: each next() re-enters the loop.
        return list(reentrant_target.api.map(double, range(5), limit=2))

    assert reentrant_target.run(outer()) == [0, 2, 4, 6, 8]
