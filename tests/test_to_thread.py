"""`blockon.to_thread`: worker threads "at home" on the loop that awaited them.

Where a bare `run()` goes, first rule first: `loop=`, then the rules for a thread whose loop is
running, then a `to_thread` worker's home loop, then the default loop thread. Chains (async ->
to_thread -> run -> to_thread -> run ...) never deadlock.

Every home loop here is a real loop: an application loop run by `asyncio.Runner` in the test's
own thread (as `asyncio.run(main())` would), a uvloop one, a `LoopThread`, or the default loop
thread. Threads meet through events; the only timers are the timeouts under test and, in
subprocesses, cleanup made slow on purpose.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import gc
import signal
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import blockon
import pytest

from tests.support import (
    HANG,
    Boom,
    blockon_frames,
    debug_loop,
    loop_factory,
    run_script,
    send_sigint_after_started,
)

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")


Main = Callable[[], Awaitable[Any]]


@pytest.fixture(params=["asyncio", "uvloop"])
def app_run(request: pytest.FixtureRequest) -> Callable[[Main], Any]:
    """`asyncio.run(main())` on an application loop in this thread: stdlib (debug) or uvloop."""
    make = loop_factory(request.param)

    def run(main: Main) -> Any:
        with asyncio.Runner(loop_factory=make) as runner:
            return runner.run(main())  # type: ignore[arg-type]

    return run


@pytest.fixture(params=["asyncio.run", "uvloop", "LoopThread", "default-loop-thread"])
def top(request: pytest.FixtureRequest) -> Iterator[Callable[[Main], Any]]:
    """Where a chain starts, which is the home loop of every worker in it."""
    kind = request.param
    if kind == "LoopThread":
        with blockon.LoopThread(debug_loop, name="chain-home") as lt:
            yield lambda main: lt.run(main())
    elif kind == "default-loop-thread":
        yield lambda main: blockon.run(main())
    else:
        make = loop_factory("uvloop" if kind == "uvloop" else "asyncio")

        def run(main: Main) -> Any:
            with asyncio.Runner(loop_factory=make) as runner:
                return runner.run(main())  # type: ignore[arg-type]

        yield run


class Chain:
    """async level n -> to_thread -> sync_level n -> run -> async level n-1 ... -> bottom().

    Records every hop as (kind, level, thread ident, running loop or None).
    """

    def __init__(self, bottom: Callable[[], Awaitable[Any]]) -> None:
        self.bottom = bottom
        self.hops: list[tuple[str, int, int, Any]] = []

    async def level(self, n: int) -> Any:
        self.hops.append(("async", n, threading.get_ident(), asyncio.get_running_loop()))
        if n == 0:
            return await self.bottom()
        return await blockon.to_thread(self.sync_level, n)

    def sync_level(self, n: int) -> Any:
        self.hops.append(("sync", n, threading.get_ident(), None))
        return blockon.run(self.level(n - 1))


async def where() -> tuple[str, asyncio.AbstractEventLoop]:
    return threading.current_thread().name, asyncio.get_running_loop()


# --- an aiohttp session made on the application loop ---------------------------------------


def test_aiohttp_session_made_on_the_app_loop_works_from_sync_code_in_to_thread(app_run):
    aiohttp = pytest.importorskip("aiohttp")
    from aiohttp import web

    used_on: list[asyncio.AbstractEventLoop] = []

    def legacy_sync_code(session: Any, url: str, names: list[str]) -> list[str]:
        """Sync code (a plugin, a callback) that must use the application's session."""

        async def fetch(name: str) -> str:
            used_on.append(asyncio.get_running_loop())
            async with session.get(url, params={"name": name}) as response:
                response.raise_for_status()
                return await response.text()  # type: ignore[no-any-return]

        return [blockon.run(fetch(name)) for name in names]

    async def hello(request: Any) -> Any:
        return web.Response(text=f"hello, {request.query['name']}")

    async def main() -> Any:
        app = web.Application()
        app.router.add_get("/", hello)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)  # a free port
        await site.start()
        port = runner.addresses[0][1]
        url = f"http://127.0.0.1:{port}/"
        try:
            async with aiohttp.ClientSession() as session:  # bound to this loop
                one = await blockon.to_thread(legacy_sync_code, session, url, ["Ada", "Grace"])
                # Eight workers at home on the same loop at once, sharing the session.
                many = await asyncio.gather(
                    *(
                        blockon.to_thread(legacy_sync_code, session, url, [f"w{i}"])
                        for i in range(8)
                    )
                )
        finally:
            await runner.cleanup()
        return one, many, asyncio.get_running_loop()

    one, many, app_loop = app_run(main)
    assert one == ["hello, Ada", "hello, Grace"]
    assert many == [[f"hello, w{i}"] for i in range(8)]
    assert len(used_on) == 10
    assert all(loop is app_loop for loop in used_on)


# --- chains --------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [5, 40], ids=["five-deep", "deeper-than-asyncio-executor"])
def test_chain_completes_with_every_async_hop_on_the_home_loop(top, depth):
    # 40 is more than asyncio's default executor has workers (min(32, cpus + 4)): each level
    # holds a worker while it waits, so a pool that small would deadlock.
    async def bottom() -> str:
        return "bottom"

    chain = Chain(bottom)
    homes: list[tuple[int, asyncio.AbstractEventLoop]] = []

    async def main() -> Any:
        homes.append((threading.get_ident(), asyncio.get_running_loop()))
        return await chain.level(depth)

    assert top(main) == "bottom"
    [(home_thread, home_loop)] = homes
    async_hops = [hop for hop in chain.hops if hop[0] == "async"]
    sync_hops = [hop for hop in chain.hops if hop[0] == "sync"]
    assert [hop[1] for hop in async_hops] == list(range(depth, -1, -1))
    assert [hop[1] for hop in sync_hops] == list(range(depth, 0, -1))
    # Every coroutine ran on the home loop, in its thread ...
    assert all(loop is home_loop and ident == home_thread for _, _, ident, loop in async_hops)
    # ... and every sync level in a worker of its own (all were waiting at once).
    workers = {ident for _, _, ident, _ in sync_hops}
    assert len(workers) == depth
    assert home_thread not in workers
    assert threading.get_ident() not in workers


def test_chain_across_loops_each_worker_is_at_home_where_it_was_started():
    # asyncio.run's loop A -> to_thread -> run(loop=B) -> on B: to_thread -> bare run -> on B
    # -> to_thread -> run(loop=A) -> on A: to_thread -> bare run -> on A.
    seen: list[tuple[str, asyncio.AbstractEventLoop]] = []
    loop_a: asyncio.AbstractEventLoop | None = None  # asyncio.run's, set in main()

    with blockon.LoopThread(debug_loop, name="loop-B") as b:
        loop_b = b.loop

        async def on_a_last() -> str:
            seen.append(("a-last", asyncio.get_running_loop()))
            return "done"

        async def on_a() -> str:
            seen.append(("a", asyncio.get_running_loop()))
            return await blockon.to_thread(lambda: blockon.run(on_a_last()))

        async def on_b_again() -> str:
            seen.append(("b-again", asyncio.get_running_loop()))
            return await blockon.to_thread(lambda: blockon.run(on_a(), loop=loop_a))

        async def on_b() -> str:
            seen.append(("b", asyncio.get_running_loop()))
            return await blockon.to_thread(lambda: blockon.run(on_b_again()))

        async def main() -> str:
            nonlocal loop_a
            loop_a = asyncio.get_running_loop()
            return await blockon.to_thread(lambda: blockon.run(on_b(), loop=loop_b))

        with asyncio.Runner(loop_factory=debug_loop) as runner:
            assert runner.run(main()) == "done"

    assert [(name, loop is loop_a, loop is loop_b) for name, loop in seen] == [
        ("b", False, True),
        ("b-again", False, True),
        ("a", True, False),
        ("a-last", True, False),
    ]


@pytest.mark.parametrize("reentry", ["nest=True", "loop=own loop", "default loop thread"])
def test_chain_through_a_reentrant_run_goes_home_to_the_reentered_loop(reentry):
    # async -> sync -> run re-entrantly on the same loop -> to_thread -> bare run: the worker's
    # home is the re-entered loop, which the re-entrant run keeps driving while it waits.
    async def leaf() -> tuple[int, asyncio.AbstractEventLoop]:
        await asyncio.sleep(0)
        return threading.get_ident(), asyncio.get_running_loop()

    async def via_worker() -> Any:
        return await blockon.to_thread(lambda: blockon.run(leaf()))

    def sync_code() -> Any:
        if reentry == "nest=True":
            return blockon.run(via_worker(), nest=True, timeout=HANG)
        if reentry == "loop=own loop":
            return blockon.run(via_worker(), loop=asyncio.get_running_loop(), timeout=HANG)
        return blockon.run(via_worker(), timeout=HANG)  # sync code on the loop thread itself

    async def main() -> Any:
        ran_on = sync_code()
        return ran_on, (threading.get_ident(), asyncio.get_running_loop())

    if reentry == "default loop thread":
        ran_on, outer = blockon.run(main())
    else:
        with asyncio.Runner(loop_factory=debug_loop) as runner:
            ran_on, outer = runner.run(main())
    assert ran_on[0] == outer[0]
    assert ran_on[1] is outer[1]


@pytest.mark.parametrize(
    "when",
    [
        "in the first step",
        "after an await",
    ],
)
def test_contextvars_flow_into_each_hop_and_never_leak_back(top, when):
    depth = 5
    checks: list[str] = []

    def sync_level(n: int) -> None:
        # What the coroutine set before `to_thread` is visible in the worker ...
        assert VAR.get() == f"async {n}", VAR.get()
        VAR.set(f"sync {n}")
        blockon.run(async_level(n - 1))
        # ... and what the coroutine below set never leaks back into the worker.
        assert VAR.get() == f"sync {n}", VAR.get()
        checks.append(f"sync {n}")

    async def async_level(n: int) -> None:
        # What the worker set before `run` is visible in the coroutine ...
        assert VAR.get() == ("top" if n == depth else f"sync {n + 1}"), VAR.get()
        if when == "after an await":
            await asyncio.sleep(0)
        VAR.set(f"async {n}")
        if n > 0:
            await blockon.to_thread(sync_level, n)
        # ... and what the worker set never leaks back into the coroutine.
        assert VAR.get() == f"async {n}", VAR.get()
        checks.append(f"async {n}")

    async def main() -> None:
        VAR.set("top")
        await async_level(depth)

    top(main)
    assert VAR.get() == "unset"
    assert checks == ["async 0"] + [
        item for n in range(1, depth + 1) for item in (f"sync {n}", f"async {n}")
    ]


def test_exception_raised_at_the_bottom_reaches_the_top_with_every_frame(top):
    raised: list[BaseException] = []

    async def bottom() -> None:
        exc = Boom("at the bottom")
        raised.append(exc)
        raise exc

    chain = Chain(bottom)

    async def main() -> None:
        await chain.level(5)

    with pytest.raises(Boom) as info:
        top(main)
    assert info.value is raised[0]  # the same object, not a copy

    frames = traceback.extract_tb(info.value.__traceback__)
    ours = [f.name for f in frames if f.filename == __file__ and f.name != "<lambda>"]
    # main, then level 5, sync_level 5, level 4, ..., sync_level 1, level 0, then bottom.
    expected = ["main", *["level", "sync_level"] * 5, "level", "bottom"]
    assert ours[-len(expected) :] == expected, ours
    assert frames[-1].name == "bottom"
    assert frames[-1].line == "raise exc"
    # `run` adds no frame; the only blockon frames are to_thread's own (like asyncio.to_thread's).
    to_thread_file = Path(blockon.to_thread.__code__.co_filename).resolve()
    assert {Path(f.filename).resolve() for f in blockon_frames(info.value)} <= {to_thread_file}


def test_timeout_in_a_worker_deep_in_a_chain_cleans_up_on_the_home_loop(top):
    started = threading.Event()
    cleanup: list[tuple[str, asyncio.AbstractEventLoop]] = []
    homes: list[asyncio.AbstractEventLoop] = []

    async def stuck() -> None:
        try:
            started.set()
            await asyncio.Event().wait()  # never set
        except asyncio.CancelledError:
            cleanup.append(("cancelled", asyncio.get_running_loop()))
            raise
        finally:
            await asyncio.sleep(0)  # cleanup that needs the loop
            cleanup.append(("finally done", asyncio.get_running_loop()))

    def worker_with_timeout() -> str:
        with pytest.raises(TimeoutError):
            blockon.run(stuck(), timeout=0.05)
        assert started.is_set()
        # The cleanup ran to completion, on the home loop, before TimeoutError was raised.
        assert [step for step, _ in cleanup] == ["cancelled", "finally done"]
        assert all(loop is homes[0] for _, loop in cleanup)
        return "timed out, cleaned up"

    async def bottom() -> str:
        return await blockon.to_thread(worker_with_timeout)

    async def main() -> Any:
        homes.append(asyncio.get_running_loop())
        return await Chain(bottom).level(3)

    # The timeout is the worker's own: nothing above it is cancelled.
    assert top(main) == "timed out, cleaned up"


# --- Ctrl-C in a chain ---------------------------------------------------------------------

CTRL_C_CHAIN = """
import asyncio, os, sys, threading, time
import blockon

def frame(ident):
    return sys._current_frames()[ident]

TOP = {top!r}
SYNC_CLEANUP = {sync_cleanup!r}
DEPTH = 4

def say(line):  # one write per line: workers print at the same time
    os.write(1, (line + "\\n").encode())

WORKERS = []

def sync_level(n):
    WORKERS.append(threading.get_ident())
    try:
        return blockon.run(async_level(n))
    finally:
        time.sleep(SYNC_CLEANUP)  # cleanup that takes a while: a flush, a socket to close
        say(f"sync {{n}} finally")

async def async_level(n):
    try:
        if n == 0:
            # SIGINT only once every worker waits inside blockon.run, none still scheduling
            # its call (a window of its own: see the abort test below).
            while any(frame(t).f_code.co_name != "sync_level" for t in WORKERS):
                await asyncio.sleep(0)
            say("started")
            await asyncio.sleep(3600)
        return await blockon.to_thread(sync_level, n - 1)
    finally:
        await asyncio.sleep(0)  # cleanup that needs the loop
        say(f"async {{n}} finally")

try:
    if TOP == "asyncio.run":
        asyncio.run(async_level(DEPTH))
    elif TOP == "uvloop":
        import uvloop
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(async_level(DEPTH))
    else:
        blockon.run(async_level(DEPTH))
except KeyboardInterrupt:
    say("KeyboardInterrupt")
    raise
"""

EXIT_PROMPTLY = 3.0  # seconds from SIGINT to exit; a clean exit takes a few milliseconds
ASYNC_FINALLY = {f"async {n} finally" for n in range(5)}
SYNC_FINALLY = {f"sync {n} finally" for n in range(4)}
TOPS = ["asyncio.run", "uvloop", "blockon.run"]


def ctrl_c_chain(top_kind: str, sync_cleanup: float) -> tuple[list[str], str]:
    """Runs the chain script, sends SIGINT once the bottom runs; its stdout lines and stderr.

    Checks that the process ended by SIGINT within EXIT_PROMPTLY seconds.
    """
    if top_kind == "uvloop":
        pytest.importorskip("uvloop")
    script = CTRL_C_CHAIN.format(top=top_kind, sync_cleanup=sync_cleanup)
    done = send_sigint_after_started(script, exit_within=EXIT_PROMPTLY)
    assert "KeyboardInterrupt" in done.stderr
    assert done.returncode == -signal.SIGINT, done.stderr
    return done.texts, done.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("top_kind", TOPS)
def test_ctrl_c_in_a_chain_cancels_every_level_and_exits_promptly(top_kind):
    lines, err = ctrl_c_chain(top_kind, sync_cleanup=0)
    assert ASYNC_FINALLY | {"KeyboardInterrupt"} <= set(lines), (lines, err)
    assert set(lines) <= ASYNC_FINALLY | SYNC_FINALLY | {"KeyboardInterrupt"}, (lines, err)
    assert len(lines) == len(set(lines)), lines  # each finally ran once


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("top_kind", TOPS)
def test_ctrl_c_in_a_chain_lets_the_workers_finally_blocks_finish(top_kind):
    lines, err = ctrl_c_chain(top_kind, sync_cleanup=0.5)
    assert sorted(lines) == sorted([*ASYNC_FINALLY, *SYNC_FINALLY, "KeyboardInterrupt"]), (
        lines,
        err,
    )


EXIT_WHILE_IN_RUN = """
import asyncio, os, threading, time
import blockon

release = threading.Event()

class Loop(asyncio.SelectorEventLoop):
    def call_soon_threadsafe(self, *args, **kwargs):
        # Called from blockon.run's native code. Waiting releases the GIL, as the socket send
        # inside call_soon_threadsafe does for a moment.
        release.wait(0.5)
        return super().call_soon_threadsafe(*args, **kwargs)

class Garbage:
    # A reference cycle with a destructor: collected while the interpreter finalizes.
    def __del__(self):
        release.set()  # the worker wants the GIL back now, while the interpreter finalizes
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:  # Python code: the GIL changes hands meanwhile
            pass
        os.write(1, b"finalized\\n")

async def main():
    # The worker is abandoned, still inside blockon.run, when the program ends: cancelling
    # the task awaiting to_thread does not stop its thread.
    await asyncio.wait_for(blockon.to_thread(blockon.run, asyncio.sleep(0)), 0.05)

with asyncio.Runner(loop_factory=Loop) as runner:
    try:
        runner.run(main())
    except TimeoutError:
        os.write(1, b"main done\\n")
garbage = Garbage()
garbage.cycle = garbage
del garbage
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX threads")
def test_interpreter_exit_while_an_abandoned_worker_is_inside_run_exits_cleanly():
    proc, _ = run_script(EXIT_WHILE_IN_RUN)
    assert (proc.returncode, proc.stdout) == (0, "main done\nfinalized\n"), proc.stderr


# --- the home loop going away --------------------------------------------------------------


@pytest.mark.parametrize("how", ["stops", "closes"])
@pytest.mark.parametrize("kind", ["asyncio", "uvloop"])
def test_home_loop_stopping_or_closing_while_a_worker_waits_raises_runtime_error(kind, how):
    loop = loop_factory(kind)()
    running = threading.Event()
    exc: BaseException | None = None

    def loop_body() -> None:
        loop.call_soon(running.set)
        loop.run_forever()
        if how == "closes":
            loop.close()

    started = threading.Event()
    outcome: list[BaseException] = []
    worker_done = threading.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    def worker() -> None:
        try:
            blockon.run(forever())
        except BaseException as exc:
            outcome.append(exc)
        finally:
            worker_done.set()

    async def app() -> None:
        await blockon.to_thread(worker)

    thread = threading.Thread(target=loop_body, name="home-loop")
    thread.start()
    try:
        assert running.wait(HANG)
        asyncio.run_coroutine_threadsafe(app(), loop)
        assert started.wait(HANG)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(HANG)
        assert not thread.is_alive()
        assert worker_done.wait(HANG), "the worker hangs on a loop that stopped"
        [exc] = outcome
        assert type(exc) is RuntimeError
        assert "not running" in str(exc) or "closed" in str(exc), str(exc)
    finally:
        if thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(HANG)
        if not loop.is_closed():
            # The loop only stopped: let what it still holds finish, then close it.
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.wait(tasks))
            loop.close()
        # A loop closed under its tasks leaves them pending; asyncio logs "Task was destroyed
        # but it is pending!" when they are collected: let that happen inside this test, once
        # nothing holds the future the task awaits (the to_thread worker's closure, and the
        # exception it raised, through its traceback).
        exc = None
        outcome.clear()
        for t in threading.enumerate():
            if t.name == "blockon-to_thread":
                t.join(HANG)
        gc.collect()
    # Nothing blockon holds keeps the abandoned pending tasks alive past a collection (the
    # engine's driver shows the collector what it references).
    mine = "test_home_loop_stopping_or_closing"
    pending = [
        o
        for o in gc.get_objects()
        if isinstance(o, asyncio.Task)
        and not o.done()
        and mine in getattr(o.get_coro(), "__qualname__", "")
    ]
    assert pending == []


def test_home_loop_thread_closing_while_a_worker_waits_cancels_the_work():
    # An orderly close (LoopThread.close, the end of asyncio.run) cancels the loop's tasks:
    # the caller gets what work cancelled from elsewhere gives, concurrent.futures'
    # CancelledError.
    lt = blockon.LoopThread(debug_loop, name="closing-home")
    started = threading.Event()
    outcome: list[BaseException] = []
    worker_done = threading.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    def worker() -> None:
        try:
            blockon.run(forever())
        except BaseException as exc:
            outcome.append(exc)
        finally:
            worker_done.set()

    async def app() -> None:
        await blockon.to_thread(worker)

    future = lt.submit(app())
    assert started.wait(HANG)
    lt.close(timeout=HANG)
    assert worker_done.wait(HANG), "the worker hangs on a loop thread that closed"
    [exc] = outcome
    assert type(exc) is concurrent.futures.CancelledError
    assert future.cancelled()


def test_worker_that_outlives_its_home_loop_gets_runtime_error_not_the_default_loop():
    abandoned: asyncio.Event | None = None  # made on the home loop, in main()
    release = threading.Event()
    outcome: list[BaseException] = []
    seconds: list[float] = []
    worker_done = threading.Event()

    async def forever() -> None:
        assert abandoned is not None
        abandoned.set()
        await asyncio.Event().wait()

    def worker() -> None:
        try:
            try:
                blockon.run(forever())
            except concurrent.futures.CancelledError as exc:
                outcome.append(exc)  # asyncio.run's end cancelled the task
            assert release.wait(HANG)
            started = time.monotonic()
            try:
                blockon.run(where())  # home is gone: neither a hang nor the default loop
            except RuntimeError as exc:
                outcome.append(exc)
            seconds.append(time.monotonic() - started)
        finally:
            worker_done.set()

    async def main() -> None:
        nonlocal abandoned
        abandoned = asyncio.Event()
        waiting = asyncio.ensure_future(blockon.to_thread(worker))
        await abandoned.wait()  # the worker waits inside blockon.run, on this loop
        # Cancelling the await cannot stop the worker: it is abandoned, still waiting here.
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting

    with asyncio.Runner(loop_factory=debug_loop) as runner:
        runner.run(main())
    release.set()
    assert worker_done.wait(HANG)
    cancelled, refused = outcome
    assert type(cancelled) is concurrent.futures.CancelledError
    assert type(refused) is RuntimeError
    assert "closed" in str(refused)
    assert seconds[0] < 1  # at once


# --- what follows the home loop, and what does not -----------------------------------------


def test_in_a_worker_only_a_bare_run_follows_the_home_loop():
    results: dict[str, tuple[str, Any]] = {}
    with (
        blockon.LoopThread(debug_loop, name="own-loop-thread") as own,
        blockon.LoopThread(debug_loop, name="loop-passed") as other,
    ):
        default = blockon.default_loop_thread()

        def worker() -> None:
            results["bare run"] = blockon.run(where())
            results["bare run, nest=True"] = blockon.run(where(), nest=True)  # no loop here
            results["run(loop=)"] = blockon.run(where(), loop=other.loop)
            results["LoopThread.run"] = own.run(where())
            results["LoopThread.submit"] = own.submit(where()).result(timeout=HANG)
            results["default_loop_thread().run"] = default.run(where())
            results["blockon.submit"] = blockon.submit(where()).result(timeout=HANG)

        async def main() -> Any:
            await blockon.to_thread(worker)
            return threading.current_thread().name, asyncio.get_running_loop()

        with asyncio.Runner(loop_factory=debug_loop) as runner:
            home = runner.run(main())

        assert results == {
            "bare run": home,
            "bare run, nest=True": home,
            "run(loop=)": ("loop-passed", other.loop),
            "LoopThread.run": ("own-loop-thread", own.loop),
            "LoopThread.submit": ("own-loop-thread", own.loop),
            "default_loop_thread().run": ("blockon", default.loop),
            "blockon.submit": ("blockon", default.loop),
        }


def test_a_plain_thread_goes_to_the_default_loop_thread_even_when_started_by_a_worker():
    default = blockon.default_loop_thread()
    results: dict[str, Any] = {}

    def in_plain_thread(key: str) -> None:
        results[key] = blockon.run(where())

    def worker() -> None:
        # A thread started by a worker is not at home anywhere: home is per thread.
        child = threading.Thread(target=in_plain_thread, args=("started by a worker",))
        child.start()
        child.join(HANG)
        # asyncio's own to_thread makes no home either.
        results["worker"] = blockon.run(where())

    async def main() -> None:
        await blockon.to_thread(worker)
        await asyncio.to_thread(in_plain_thread, "asyncio.to_thread worker")

    plain = threading.Thread(target=in_plain_thread, args=("plain thread",))
    plain.start()
    plain.join(HANG)
    with asyncio.Runner(loop_factory=debug_loop) as runner:
        runner.run(main())

    on_default = ("blockon", default.loop)
    assert results["plain thread"] == on_default
    assert results["started by a worker"] == on_default
    assert results["asyncio.to_thread worker"] == on_default
    assert results["worker"][1] is not default.loop


def test_reused_workers_follow_the_loop_of_each_new_call():
    # Each call's worker is at home on the loop that awaited it, never on an earlier one.
    seen: list[tuple[asyncio.AbstractEventLoop, asyncio.AbstractEventLoop]] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for _ in range(3):
            _, ran_on = await blockon.to_thread(blockon.run, where())
            seen.append((loop, ran_on))

    for _ in range(3):
        with asyncio.Runner(loop_factory=debug_loop) as runner:
            runner.run(main())
    assert len(seen) == 9
    assert all(loop is ran_on for loop, ran_on in seen)


def test_a_worker_running_a_loop_of_its_own_follows_the_running_loop_rules():
    # Precedence: where the calling thread runs a loop, the running-loop rows win over home.
    default = blockon.default_loop_thread()
    results: dict[str, Any] = {}

    def sync_inside_inner_loop() -> None:
        results["nest=True"] = blockon.run(where(), nest=True)
        results["bare run"] = blockon.run(where())

    async def inner() -> asyncio.AbstractEventLoop:
        sync_inside_inner_loop()
        return asyncio.get_running_loop()

    def worker() -> None:
        results["inner loop"] = asyncio.run(inner())
        results["after the inner loop"] = blockon.run(where())

    async def main() -> asyncio.AbstractEventLoop:
        await blockon.to_thread(worker)
        return asyncio.get_running_loop()

    with asyncio.Runner(loop_factory=debug_loop) as runner:
        home = runner.run(main())
    assert results["nest=True"][1] is results["inner loop"]
    assert results["bare run"] == ("blockon", default.loop)
    assert results["after the inner loop"][1] is home


def test_to_thread_passes_arguments_and_results_and_raises_the_same_exception(app_run):
    exc = Boom("from the worker")

    def fn(a: int, /, b: int, *, c: int) -> tuple[int, int, int, str]:
        return a, b, c, threading.current_thread().name

    def fails() -> None:
        raise exc

    async def main() -> Any:
        result = await blockon.to_thread(fn, 1, 2, c=3)
        with pytest.raises(Boom) as info:
            await blockon.to_thread(fails)
        return result, info.value

    (a, b, c, name), raised = app_run(main)
    assert (a, b, c) == (1, 2, 3)
    assert name != threading.current_thread().name
    assert raised is exc


def test_sixty_four_workers_at_once_do_not_exhaust_the_pool(app_run):
    # All 64 must be running at the same time to pass the barrier.
    barrier = threading.Barrier(64)

    def meet(i: int) -> int:
        barrier.wait(timeout=HANG)
        return i

    async def main() -> list[int]:
        return await asyncio.gather(*(blockon.to_thread(meet, i) for i in range(64)))

    assert app_run(main) == list(range(64))


@pytest.mark.parametrize("name", ["loop", "fn", "func", "args", "kwargs", "context"])
def test_to_thread_forwards_any_keyword_argument_like_asyncio_to_thread(name):
    # `loop=` is a common keyword in asyncio-era code, e.g. to_thread(blockon.run, aw, loop=L).
    def fn(**kwargs: Any) -> dict[str, Any]:
        return kwargs

    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        return (
            await asyncio.to_thread(fn, **{name: 1}),
            await blockon.to_thread(fn, **{name: 1}),
        )

    with asyncio.Runner(loop_factory=debug_loop) as runner:
        theirs, ours = runner.run(main())
    assert ours == theirs == {name: 1}
