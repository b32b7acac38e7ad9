"""What the ``workloads`` section measures: realistic coroutines, the contenders that run them
from sync code, and the crews of threads that call them.

- A **workload** is one call's coroutine, with what it needs opened first: per loop (a TCP echo
  server, an aiohttp server and its client session) and per calling thread (a connection to
  the echo server). Everything is opened on the loop that runs the calls, by the contender
  itself, and closed at the end.
- A **contender** runs a coroutine function on its loop from any thread and returns the
  result: blockon on a stdlib loop and on uvloop, ``run_coroutine_threadsafe`` on a background
  loop of each type, a same-thread cached loop of each type (``run_until_complete`` in the
  calling thread: each thread has its own loop), asyncio-thread-runner, anyio's blocking
  portal and synchronicity (stdlib loops).
- A **crew** is 1, 4 or 16 threads that call one contender at once. Its threads live for the
  whole section, each with its own per-thread state; a batch releases them all on a barrier,
  each makes the same number of calls, and the clock stops when the last is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import _harness as h
import bench_run as br

try:
    import blockon
except ImportError:
    blockon = None  # type: ignore[assignment]

try:
    import uvloop
except ImportError:
    uvloop = None  # type: ignore[assignment]

STD, UV = br.STD, br.UV
Fn = Callable[..., Any]


# --------------------------------------------------------------------------- workloads


class Workload:
    """One call's coroutine (``call``), with what it needs opened on the contender's loop."""

    key = ""
    title = ""

    async def open_loop(self) -> Any:
        """Opened once per loop; what ``open_thread`` gets."""
        return None

    async def open_thread(self, shared: Any) -> Any:
        """Opened once per calling thread; what ``call`` gets."""
        return shared

    async def call(self, state: Any) -> Any:
        raise NotImplementedError

    async def close_thread(self, state: Any) -> None:
        return None

    async def close_loop(self, shared: Any) -> None:
        return None


class NoOp(Workload):
    key, title = "noop", "no-op (`return None`)"

    async def call(self, state: Any) -> None:
        return None


class Sleeps(Workload):
    def __init__(self, times: int) -> None:
        self.times = times
        self.key = f"sleep0x{times}"
        self.title = "`await asyncio.sleep(0)`" + (f" x{times}" if times > 1 else "")

    async def call(self, state: Any) -> None:
        for _ in range(self.times):
            await asyncio.sleep(0)


class Echo(Workload):
    """A round trip to a TCP echo server on 127.0.0.1 served by the same loop: one write and
    one read per call, on a connection each calling thread opened once."""

    key, title = "echo", "TCP echo round trip (127.0.0.1, connection reused)"

    async def open_loop(self) -> asyncio.Server:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await reader.read(65536):
                    writer.write(data)
            writer.close()

        return await asyncio.start_server(echo, "127.0.0.1", 0)

    async def open_thread(self, shared: asyncio.Server) -> Any:
        port = shared.sockets[0].getsockname()[1]
        return await asyncio.open_connection("127.0.0.1", port)

    async def call(self, state: Any) -> bytes:
        reader, writer = state
        writer.write(b"x")
        return await reader.readexactly(1)

    async def close_thread(self, state: Any) -> None:
        _, writer = state
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    async def close_loop(self, shared: asyncio.Server) -> None:
        shared.close()
        # From Python 3.12 this waits for every connection to the server, which the calling
        # threads close first; bounded, so one left open fails the run instead of hanging it.
        await asyncio.wait_for(shared.wait_closed(), 10)


class HttpGet(Workload):
    """A GET of a tiny page from an aiohttp server on 127.0.0.1 served by the same loop, with
    one aiohttp client session per loop, reused (keep-alive connections)."""

    key, title = "http", "aiohttp GET (127.0.0.1, one session reused)"

    async def open_loop(self) -> Any:
        from aiohttp import ClientSession, web

        async def page(request: web.Request) -> web.Response:
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_get("/", page)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        return runner, ClientSession(), f"http://127.0.0.1:{port}/"

    async def call(self, state: Any) -> bytes:
        _, session, url = state
        async with session.get(url) as response:
            return await response.read()

    async def close_loop(self, shared: Any) -> None:
        runner, session, _ = shared
        await session.close()
        await runner.cleanup()


def workloads(notes: list[str]) -> list[Workload]:
    out: list[Workload] = [NoOp(), Sleeps(1), Sleeps(3), Echo()]
    if importlib.util.find_spec("aiohttp") is not None:
        out.append(HttpGet())
    else:
        notes.append("aiohttp is not installed: the HTTP rows are missing (pip install aiohttp).")
    return out


# --------------------------------------------------------------------------- contenders


@dataclass
class Contender:
    """Runs ``fn(*args)`` (a coroutine function) on its loop from any thread."""

    name: str
    loop: str  # STD or UV
    run: Callable[..., Any]
    tids: list[int] = field(default_factory=list)  # its loop threads (none: the caller's own)
    per_thread: bool = False  # each calling thread has a loop of its own
    thread_exit: Callable[[], None] | None = None  # run by each calling thread at the end
    _shared: dict[str, Any] = field(default_factory=dict)
    _local: threading.local = field(default_factory=threading.local)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def key(self) -> str:
        return f"{self.name} [{self.loop}]"

    def shared(self, w: Workload) -> Any:
        """``w``'s per-loop state on the calling thread's loop, opened on first use."""
        if self.per_thread:
            cache: dict[str, Any] = self._local.__dict__.setdefault("shared", {})
            if w.key not in cache:
                cache[w.key] = self.run(w.open_loop)
            return cache[w.key]
        with self._lock:
            if w.key not in self._shared:
                self._shared[w.key] = self.run(w.open_loop)
            return self._shared[w.key]

    def close_shared(self, ws: list[Workload], *, mine: bool) -> None:
        """Close the per-loop states: the calling thread's own (``mine``), or the one loop's."""
        cache = self._local.__dict__.get("shared", {}) if mine else self._shared
        for w in ws:
            if w.key in cache:
                self.run(w.close_loop, cache.pop(w.key))


async def _tid() -> int:
    return threading.get_native_id()


async def _await_call(fn: Fn, *args: Any) -> Any:
    return await fn(*args)


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


BLOCKON, RCTS, SAME = "blockon", "run_coroutine_threadsafe", "same-thread loop"
ATR, ANYIO, SYNCHRONICITY = "asyncio-thread-runner", "anyio portal", "synchronicity"


def _same_thread(factory: Callable[[], asyncio.AbstractEventLoop], loop: str) -> Contender:
    """A cached loop in each calling thread, run with ``run_until_complete``."""
    local = threading.local()

    def own_loop() -> asyncio.AbstractEventLoop:
        mine: asyncio.AbstractEventLoop | None = getattr(local, "loop", None)
        if mine is None:
            mine = local.loop = factory()
        return mine

    def run(fn: Fn, *args: Any) -> Any:
        return own_loop().run_until_complete(fn(*args))

    def thread_exit() -> None:
        mine = getattr(local, "loop", None)
        if mine is not None:
            mine.close()

    return Contender(SAME, loop, run, per_thread=True, thread_exit=thread_exit)


@contextlib.contextmanager
def contenders(notes: list[str]) -> Iterator[list[Contender]]:
    """Every contender, started; stopped afterwards."""
    with contextlib.ExitStack() as stack:
        out: list[Contender] = []
        if blockon is not None:
            run = blockon.run
            out.append(Contender(BLOCKON, STD, lambda fn, *a: run(fn(*a)), [run(_tid())]))
            if uvloop is not None:
                lt = blockon.LoopThread(uvloop.new_event_loop, name="bench-blockon-uvloop")
                stack.callback(lt.close)
                out.append(Contender(BLOCKON, UV, lambda fn, *a: lt.run(fn(*a)), [lt.run(_tid())]))
        else:
            notes.append("blockon is not importable: its rows are missing.")
        factories = [(STD, asyncio.new_event_loop)]
        if uvloop is not None:
            factories.append((UV, uvloop.new_event_loop))
        for kind, factory in factories:
            bg = br.BackgroundLoop(factory, f"bench-rcts-{kind}")
            stack.callback(bg.close)

            def rcts(fn: Fn, *a: Any, _loop: asyncio.AbstractEventLoop = bg.loop) -> Any:
                return asyncio.run_coroutine_threadsafe(fn(*a), _loop).result()

            out.append(Contender(RCTS, kind, rcts, [rcts(_tid)]))
            out.append(_same_thread(factory, kind))
        if _has("asyncio_thread_runner"):
            from asyncio_thread_runner import ThreadRunner

            runner = stack.enter_context(ThreadRunner())
            out.append(Contender(ATR, STD, lambda fn, *a: runner.run(fn(*a)), [runner.run(_tid())]))
        if _has("anyio"):
            from anyio.from_thread import start_blocking_portal

            portal = stack.enter_context(start_blocking_portal("asyncio"))
            out.append(Contender(ANYIO, STD, portal.call, [portal.call(_tid)]))
        if _has("synchronicity"):
            from synchronicity import Synchronizer

            synchronizer = Synchronizer()
            stack.callback(synchronizer._close_loop)  # no public close; atexit does the same
            # It wraps plain async functions only (not bound methods): one trampoline, wrapped once.
            sync_run = synchronizer.wrap(_await_call)
            out.append(Contender(SYNCHRONICITY, STD, sync_run, [sync_run(_tid)]))
        yield out


# --------------------------------------------------------------------------- crews


class Crew:
    """``n`` threads that call one contender at once; each opens its state for every
    workload when it starts and closes it when the crew closes."""

    def __init__(self, contender: Contender, n: int, ws: list[Workload]) -> None:
        self.contender, self.n, self.ws = contender, n, ws
        self._start = threading.Barrier(n + 1)
        self._end = threading.Barrier(n + 1)
        self._job: tuple[Workload, int] | None = None
        self._errors: list[BaseException] = []
        self.tids: list[int] = []
        self._threads = [
            threading.Thread(target=self._work, name=f"bench-{contender.key}-{i}", daemon=True)
            for i in range(n)
        ]
        for t in self._threads:
            t.start()
        self._end.wait()  # every thread has opened its states
        if self._errors:
            self.close()
            raise self._errors[0]

    def _work(self) -> None:
        c = self.contender
        self.tids.append(threading.get_native_id())
        states: dict[str, Any] = {}
        try:
            for w in self.ws:
                states[w.key] = c.run(w.open_thread, c.shared(w))
        except BaseException as exc:
            self._errors.append(exc)
        self._end.wait()
        while True:
            self._start.wait()
            job = self._job
            if job is None:
                break
            w, per = job
            try:
                call, state = w.call, states[w.key]
                for _ in range(per):
                    c.run(call, state)
            except BaseException as exc:
                self._errors.append(exc)
            self._end.wait()
        with contextlib.suppress(Exception):
            for w in self.ws:
                if w.key in states:
                    c.run(w.close_thread, states.pop(w.key))
            if c.per_thread:
                c.close_shared(self.ws, mine=True)
            if c.thread_exit is not None:
                c.thread_exit()
        self._end.wait()

    def run(self, w: Workload, per: int) -> int:
        """Every thread makes ``per`` calls of ``w``; the wall time in nanoseconds."""
        self._job = (w, per)
        self._start.wait()
        t0 = time.perf_counter_ns()
        self._end.wait()
        ns = time.perf_counter_ns() - t0
        if self._errors:
            raise self._errors.pop()
        return ns

    def close(self) -> None:
        self._job = None
        self._start.wait()
        self._end.wait()
        for t in self._threads:
            t.join(10)

    def measure(self, w: Workload, batch_s: float, switches: Switches | None = None) -> h.Measure:
        """Calibrated to about ``batch_s`` a batch: a measure of µs per call (wall time over
        every thread's calls). ``switches``, if given, adds up the thread switches of the
        calling threads and the contender's loop threads over every batch measured."""

        def batch(total: int) -> None:
            self.run(w, max(1, math.ceil(total / self.n)))

        per = max(1, math.ceil(h.calibrate(batch, batch_s) / self.n))

        def measure() -> float:
            before = _switches(self.tids) + _switches(self.contender.tids)
            ns = self.run(w, per)
            if switches is not None:
                after = _switches(self.tids) + _switches(self.contender.tids)
                switches.add(per * self.n, before, after, len(self.tids))
            return ns / (per * self.n) / 1000.0

        return measure


def _switches(tids: list[int]) -> list[tuple[int, int]]:
    """(voluntary, involuntary) context switches of each thread so far, from /proc."""
    out = []
    for tid in tids:
        counts = [0, 0]
        try:
            with open(f"/proc/self/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        counts[0] = int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches"):
                        counts[1] = int(line.split()[1])
        except (OSError, ValueError, IndexError):
            pass
        out.append((counts[0], counts[1]))
    return out


@dataclass
class Switches:
    """Thread switches per call, added up over batches: the calling threads' and the loop
    thread's, voluntary (the thread slept and had to be woken) and involuntary (it yielded
    the CPU in a spin, or was pre-empted)."""

    calls: int = 0
    callers: list[int] = field(default_factory=lambda: [0, 0])
    loop: list[int] = field(default_factory=lambda: [0, 0])

    def add(
        self, calls: int, before: list[tuple[int, int]], after: list[tuple[int, int]], n: int
    ) -> None:
        self.calls += calls
        for i, (b, a) in enumerate(zip(before, after, strict=True)):
            side = self.callers if i < n else self.loop
            side[0] += a[0] - b[0]
            side[1] += a[1] - b[1]

    def per_call(self) -> tuple[float, float, float, float]:
        """(callers voluntary, callers involuntary, loop voluntary, loop involuntary)."""
        c = max(1, self.calls)
        return (self.callers[0] / c, self.callers[1] / c, self.loop[0] / c, self.loop[1] / c)
