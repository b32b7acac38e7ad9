"""blockon under greenlet-based sync APIs, and uvloop as either side's loop.

Playwright's sync API runs its asyncio loop in a dispatcher greenlet of the user's own thread:
the user's greenlet schedules a task, switches into the dispatcher (which runs the loop), and
the task's done-callback switches back. While the user's code runs, the loop greenlet is
suspended *inside* a callback of that loop, so ``asyncio._get_running_loop()`` in the user's
greenlet returns that loop (the running loop is per thread, not per greenlet), and Playwright
even re-sets it explicitly.

So the caller is "a thread whose loop is running": a bare ``blockon.run`` sends the awaitable
to the loop thread and waits (the greenlet loop cannot make progress meanwhile, exactly as it
cannot while any other sync code runs in that greenlet), and ``nest=True`` drives the
greenlet's loop re-entrantly, its other tasks running while the caller waits. On uvloop
``nest=True`` raises ``RuntimeError`` at once.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import blockon
import pytest

from tests.support import debug_loop, loop_factory

greenlet = pytest.importorskip("greenlet")

T = TypeVar("T")


async def where(value: Any = None) -> tuple[int, asyncio.AbstractEventLoop, Any]:
    await asyncio.sleep(0)
    return threading.get_ident(), asyncio.get_running_loop(), value


def loop_thread_of(lt: Any) -> int:
    ident, loop, _ = lt.run(where())
    assert loop is lt.loop
    return ident  # type: ignore[no-any-return]


class GreenletSyncAPI:
    """A sync API built the way Playwright's is: the loop runs in a dispatcher greenlet.

    ``call(coro)`` schedules the coroutine on the loop and switches into the dispatcher until
    the task's done-callback switches back (playwright/_impl/_sync_base.py, ``_sync``).
    """

    def __init__(self, loop_factory: Callable[[], asyncio.AbstractEventLoop]) -> None:
        self.loop = loop_factory()
        self._stop: asyncio.Event | None = None
        self._dispatcher = greenlet.greenlet(self._dispatch)
        self._owner = greenlet.getcurrent()
        # Start the loop; it switches back once it is running.
        self._dispatcher.switch()

    def _dispatch(self) -> None:
        async def serve() -> None:
            self._stop = asyncio.Event()
            self._owner.switch()  # the loop runs: hand control to the user's greenlet
            await self._stop.wait()

        self.loop.run_until_complete(serve())

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        me = greenlet.getcurrent()
        task = self.loop.create_task(coro)
        task.add_done_callback(lambda _: me.switch())
        while not task.done():
            self._dispatcher.switch()
        asyncio._set_running_loop(self.loop)  # what Playwright does after each call
        return task.result()

    def close(self) -> None:
        assert self._stop is not None
        self.loop.call_soon(self._stop.set)
        self._dispatcher.switch()  # the loop finishes run_until_complete; the greenlet ends
        assert self._dispatcher.dead
        assert asyncio._get_running_loop() is None
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()


@pytest.fixture(params=["asyncio", "uvloop"])
def api(request: pytest.FixtureRequest) -> Iterator[GreenletSyncAPI]:
    sync_api = GreenletSyncAPI(loop_factory(request.param))
    try:
        yield sync_api
    finally:
        sync_api.close()


def in_child_greenlet(fn: Callable[[], T]) -> T:
    """Run fn in a fresh greenlet of this thread (its parent is the current greenlet)."""
    return greenlet.greenlet(fn).switch()  # type: ignore[no-any-return]


CALLERS = {"owner-greenlet": lambda fn: fn(), "child-greenlet": in_child_greenlet}


# --- Playwright-style: the loop is owned by a suspended greenlet of this thread -------------


@pytest.mark.parametrize("caller", CALLERS)
def test_the_greenlet_loop_counts_as_running_in_this_thread(
    api: GreenletSyncAPI, caller: str
) -> None:
    def observe() -> Any:
        return asyncio._get_running_loop()

    assert CALLERS[caller](observe) is api.loop


@pytest.mark.parametrize("caller", CALLERS)
def test_default_path_runs_on_the_loop_thread(api: GreenletSyncAPI, caller: str) -> None:
    loop_thread = loop_thread_of(blockon.default_loop_thread())

    def use_both() -> list[Any]:
        seen = []
        for i in range(20):
            # The greenlet API and blockon, interleaved in the same greenlet.
            ident, loop, value = api.call(where(("api", i)))
            assert (ident, loop) == (threading.get_ident(), api.loop)
            seen.append(value)
            ident, loop, value = blockon.run(where(("blockon", i)), timeout=30)
            assert (ident, loop) == (loop_thread, blockon.default_loop_thread().loop)
            seen.append(value)
        return seen

    seen = CALLERS[caller](use_both)
    assert seen == [(who, i) for i in range(20) for who in ("api", "blockon")]


@pytest.mark.parametrize("caller", CALLERS)
def test_default_path_reaches_a_client_bound_to_the_loop_thread(
    api: GreenletSyncAPI, caller: str
) -> None:
    """An async-only resource made on the loop thread, used from the greenlet world."""

    async def make_queue() -> asyncio.Queue[int]:
        return asyncio.Queue()

    queue = blockon.run(make_queue())

    def produce_and_consume() -> list[int]:
        for i in range(10):
            blockon.run(queue.put(i), timeout=30)
            api.call(asyncio.sleep(0))
        return [blockon.run(queue.get(), timeout=30) for _ in range(10)]

    assert CALLERS[caller](produce_and_consume) == list(range(10))


@pytest.mark.parametrize("caller", CALLERS)
def test_loop_thread_and_explicit_loop_targets(api: GreenletSyncAPI, caller: str) -> None:
    """A LoopThread of each kind, and loop= naming a loop in another thread."""
    with (
        blockon.LoopThread(debug_loop, name="test-gl-asyncio") as lt_asyncio,
        blockon.LoopThread(loop_factory("uvloop"), name="test-gl-uvloop") as lt_uvloop,
    ):
        expected = {lt: loop_thread_of(lt) for lt in (lt_asyncio, lt_uvloop)}

        def use() -> None:
            for lt, ident in expected.items():
                assert lt.run(where(1), timeout=30)[:2] == (ident, lt.loop)
                assert blockon.run(where(2), loop=lt.loop, timeout=30)[:2] == (ident, lt.loop)

        CALLERS[caller](use)


@pytest.mark.parametrize("caller", CALLERS)
def test_nest_drives_the_greenlet_loop(caller: str) -> None:
    """nest=True on the stdlib greenlet loop: its other tasks keep running meanwhile."""
    api = GreenletSyncAPI(debug_loop)
    try:
        done = asyncio.Event()
        ticks: list[int] = []

        async def background() -> None:
            # Sets `done` only after several rounds of the loop: the caller's wait can end
            # only if the loop keeps running other tasks while the caller waits.
            for i in range(5):
                ticks.append(i)
                await asyncio.sleep(0)
            done.set()

        def nested() -> tuple[Any, ...]:
            task = api.loop.create_task(background())
            first = blockon.run(where("x"), nest=True, timeout=30)
            blockon.run(done.wait(), nest=True, timeout=30)
            assert task.done()
            return first

        ident, loop, value = CALLERS[caller](nested)
        assert (ident, loop, value) == (threading.get_ident(), api.loop, "x")
        assert ticks == list(range(5))
        # The greenlet API still works afterwards.
        assert api.call(where("after"))[1:] == (api.loop, "after")
    finally:
        api.close()


@pytest.mark.parametrize("caller", CALLERS)
def test_nest_on_a_uvloop_greenlet_loop_raises_at_once(caller: str) -> None:
    api = GreenletSyncAPI(loop_factory("uvloop"))
    try:
        started = []

        async def never() -> None:
            started.append(True)

        def nested() -> None:
            with pytest.raises(RuntimeError, match=r"uvloop.*nest=True|nest=True.*uvloop"):
                blockon.run(never(), nest=True, timeout=30)

        CALLERS[caller](nested)
        assert started == []
        # The default path still works from the same place, and so does the greenlet API.
        assert CALLERS[caller](lambda: blockon.run(where(3), timeout=30))[2] == 3
        assert api.call(where(4))[1:] == (api.loop, 4)
    finally:
        api.close()


# --- a greenlet on blockon's own loop thread -----------------------------------------------


@pytest.mark.parametrize("kind", ["default", "asyncio-debug"])
def test_greenlet_on_the_loop_thread_runs_reentrantly(kind: str) -> None:
    """Sync code on the loop thread, inside a child greenlet, calls run(): re-entrant."""
    lt = blockon.default_loop_thread() if kind == "default" else blockon.LoopThread(debug_loop)
    try:

        async def outer() -> tuple[Any, ...]:
            def sync_code() -> tuple[Any, ...]:
                return lt.run(where("inner"), timeout=30)

            inner = in_child_greenlet(sync_code)
            return (threading.get_ident(), asyncio.get_running_loop(), *inner)

        ident, loop, inner_ident, inner_loop, value = lt.run(outer(), timeout=30)
        assert (inner_ident, inner_loop, value) == (ident, loop, "inner")
        assert loop is lt.loop
    finally:
        if kind != "default":
            lt.close()


# --- uvloop as the caller's loop and as the loop thread's loop -----------------------------


@pytest.mark.parametrize("thread_loop", ["default", "uvloop"])
def test_uvloop_caller_default_path_and_nest(thread_loop: str) -> None:
    uvloop = pytest.importorskip("uvloop")
    lt = (
        blockon.default_loop_thread()
        if thread_loop == "default"
        else blockon.LoopThread(uvloop.new_event_loop, name="test-uvloop-lt")
    )
    try:
        expected_ident = loop_thread_of(lt)
        run = blockon.run if thread_loop == "default" else lt.run
        started = []

        async def never() -> None:
            started.append(True)

        async def caller() -> tuple[Any, ...]:
            assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
            result = run(where("uv"), timeout=30)
            with pytest.raises(RuntimeError, match="uvloop"):
                run(never(), nest=True, timeout=30)
            return result

        ident, loop, value = uvloop.run(caller())
        assert (ident, loop, value) == (expected_ident, lt.loop, "uv")
        assert isinstance(loop, uvloop.Loop) == (thread_loop == "uvloop")
        assert started == []
    finally:
        if thread_loop != "default":
            lt.close()


def test_uvloop_loop_thread_calling_itself_raises_at_once() -> None:
    """Sync code on a uvloop loop thread calling run() on it: RuntimeError, never a hang."""
    uvloop = pytest.importorskip("uvloop")
    with blockon.LoopThread(uvloop.new_event_loop, name="test-uvloop-self") as lt:
        started = []

        async def never() -> None:
            started.append(True)

        async def outer() -> str:
            with pytest.raises(RuntimeError, match="uvloop"):
                lt.run(never(), timeout=30)
            return "survived"

        assert lt.run(outer(), timeout=30) == "survived"
        assert started == []
