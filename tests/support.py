"""What several test files share: loops, targets, trackers and recorders, thread and
subprocess harnesses (Ctrl-C included). Fixtures live in conftest.py."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import blockon
import pytest

T = TypeVar("T")

#: Seconds: a guard against hangs only. What it guards happens in milliseconds.
HANG = 30.0

BLOCKON_DIR = Path(blockon.__file__).resolve().parent


class Boom(Exception):
    """The exception tests raise on purpose."""


class BaseBoom(BaseException):
    """A BaseException of the user's own: neither an Exception, KeyboardInterrupt nor
    SystemExit."""


# --- loops and where the work runs ----------------------------------------------------------


def debug_loop() -> asyncio.AbstractEventLoop:
    """A stdlib event loop in asyncio debug mode (which raises when the loop is touched from a
    foreign thread): a `loop_factory` for LoopThread."""
    loop = asyncio.new_event_loop()
    loop.set_debug(True)
    return loop


def generic_loop() -> asyncio.AbstractEventLoop:
    """A loop blockon does not know: uvloop's, with the one private method blockon looks for
    on it (its poller's descriptor) hidden, so that blockon drives it as it drives any loop it
    does not know. Skips the test where uvloop is missing."""
    uvloop = pytest.importorskip("uvloop")

    class UnknownLoop(uvloop.Loop):  # type: ignore[misc, name-defined]
        @property
        def _get_backend_id(self) -> Any:
            raise AttributeError("_get_backend_id")

    return UnknownLoop()


def loop_factory(kind: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """The loop factory of a kind: "asyncio" (a debug stdlib loop), "uvloop" or "generic"
    (see `generic_loop`); the last two skip the test where uvloop is missing."""
    if kind == "uvloop":
        return pytest.importorskip("uvloop").new_event_loop  # type: ignore[no-any-return]
    if kind == "asyncio":
        return debug_loop
    if kind == "generic":
        return generic_loop
    raise ValueError(f"no loop kind {kind!r}")


@dataclass
class Target:
    """Where a test's work runs: `run`/`submit` plus the LoopThread behind them."""

    kind: str
    run: Callable[..., Any]
    submit: Callable[..., Any]
    thread: blockon.LoopThread

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self.thread.loop

    @property
    def api(self) -> Any:
        """The module-level functions for the default loop thread, else the LoopThread's
        methods: ``target.api.gather(...)``, ``target.api.wrap_iter(...)`` and so on."""
        return blockon if self.kind == "default" else self.thread


def started(lt: blockon.LoopThread) -> blockon.LoopThread:
    """Start the loop thread now, so a cold start cannot eat a deadline under test."""
    lt.run(asyncio.sleep(0))
    return lt


async def answer(value: Any = 42) -> Any:
    await asyncio.sleep(0)
    return value


async def where() -> tuple[int, asyncio.AbstractEventLoop]:
    """The thread and the loop a coroutine runs on."""
    return threading.get_ident(), asyncio.get_running_loop()


def this_task() -> asyncio.Task[Any]:
    """The task running the calling coroutine."""
    task = asyncio.current_task()
    assert task is not None, "no task runs here"
    return task


def blockon_frames(exc: BaseException) -> list[traceback.FrameSummary]:
    """The frames of the exception's traceback that are blockon's own code."""
    return [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if BLOCKON_DIR in Path(frame.filename).resolve().parents
    ]


# --- trackers and recorders -----------------------------------------------------------------


class Tracker:
    """Counts the calls in flight (and the most at once); records which started, were
    cancelled and finished their cleanup.

    ``await tracker.run(i, until=event)`` waits for the event first; items ``>= block_from``
    wait until they are cancelled. A Tracker is also the async function ``tracker(i)``.
    """

    def __init__(self, block_from: int | None = None) -> None:
        self.now = 0
        self.max = 0
        self.started: list[int] = []
        self.cancelled: list[int] = []
        self.cleaned: list[int] = []
        self.block_from = block_from
        self.never = asyncio.Event()  # never set

    async def run(self, i: int, until: asyncio.Event | None = None) -> int:
        self.started.append(i)
        self.now += 1
        self.max = max(self.max, self.now)
        try:
            if until is None and self.block_from is not None and i >= self.block_from:
                until = self.never
            if until is not None:
                await until.wait()
            for _ in range(3):
                await asyncio.sleep(0)  # give the others a turn: concurrency is measurable
            return i
        except asyncio.CancelledError:
            self.cancelled.append(i)
            raise
        finally:
            self.now -= 1
            self.cleaned.append(i)

    async def __call__(self, i: int) -> int:
        return await self.run(i)


@dataclass
class Step:
    """One step of a Recorder: its enter, or its exit and what the exit was handed."""

    what: str  # "enter" or "exit"
    name: str
    thread: str
    task: asyncio.Task[Any] | None
    exc_type: type[BaseException] | None = None
    exc: BaseException | None = None
    tb: TracebackType | None = None


class Recorder:
    """An async context manager that records its enter and exit (the thread, the task, what
    the exit was handed) in ``log``, which several recorders may share.

    ``__aenter__`` returns ``value``; ``__aexit__`` raises ``fail`` if given, else returns
    ``suppress``.
    """

    def __init__(
        self,
        value: Any = "entered",
        *,
        name: str = "",
        log: list[Step] | None = None,
        suppress: Any = False,
        fail: BaseException | None = None,
    ) -> None:
        self.value = value
        self.name = name
        self.log: list[Step] = [] if log is None else log
        self.suppress = suppress
        self.fail = fail

    def _step(self, what: str, *exc_info: Any) -> None:
        here = threading.current_thread().name
        self.log.append(Step(what, self.name, here, asyncio.current_task(), *exc_info))

    async def __aenter__(self) -> Any:
        await asyncio.sleep(0)
        self._step("enter")
        return self.value

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Any:
        await asyncio.sleep(0)
        self._step("exit", exc_type, exc, tb)
        if self.fail is not None:
            raise self.fail
        return self.suppress


def exits(log: list[Step]) -> list[tuple[str, BaseException | None]]:
    """(name, exception handed to __aexit__) for each exit in the log, in order."""
    return [(step.name, step.exc) for step in log if step.what == "exit"]


# --- threads --------------------------------------------------------------------------------


def run_in_threads(n: int, body: Callable[[int], T], *, timeout: float = HANG) -> list[T]:
    """Call ``body(i)`` in n threads released together by a barrier; their results in order.

    Fails if a thread still runs after ``timeout`` seconds (a hang), and re-raises the first
    error a thread saw.
    """
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[tuple[int, BaseException]] = []

    def worker(i: int) -> None:
        try:
            barrier.wait(timeout=timeout)
            results[i] = body(i)
        except BaseException as exc:  # reported below, with the thread that saw it
            errors.append((i, exc))

    threads = [threading.Thread(target=worker, args=(i,), name=f"caller-{i}") for i in range(n)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    hung = [thread.name for thread in threads if thread.is_alive()]
    assert not hung, f"still running after {timeout} s (a hang): {hung}"
    if errors:
        first = errors[0][1]
        raise AssertionError(f"{len(errors)} of {n} threads failed: {errors[:3]!r}") from first
    return results


# --- fresh interpreters ---------------------------------------------------------------------


def clean_env(*drop: str) -> dict[str, str]:
    """This process's environment for a fresh interpreter: without the suite's asyncio debug
    mode (which logs slow callbacks to stderr) and the variables named, unbuffered."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("PYTHONASYNCIODEBUG") and key not in drop
    }
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_script(script: str, *args: str) -> subprocess.Popen[str]:
    """Start ``python *args -c script`` (dedented) with pipes for stdout and stderr."""
    return subprocess.Popen(
        [sys.executable, *args, "-c", textwrap.dedent(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )


def run_script(
    script: str, *args: str, timeout: float = HANG, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``python *args -c script`` (dedented) in `clean_env()` (or ``env``); the finished
    process and the seconds it took."""
    began = time.monotonic()
    proc = subprocess.run(
        [sys.executable, *args, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_env() if env is None else env,
        check=False,
    )
    return proc, time.monotonic() - began


@dataclass
class Interrupted:
    """What a script did after Ctrl-C (SIGINT)."""

    returncode: int
    #: Its stdout lines after the signal, each with the seconds it took to arrive.
    lines: list[tuple[str, float]]
    stderr: str
    #: Seconds from the signal to the process's exit.
    elapsed: float

    @property
    def texts(self) -> list[str]:
        return [text for text, _ in self.lines]


def send_sigint_after_started(script: str, *, exit_within: float = HANG) -> Interrupted:
    """Run the script in a fresh interpreter; once it prints "started", send it SIGINT.

    Fails if it does not print "started" within HANG seconds, or does not exit within
    ``exit_within`` seconds of the signal (it is killed then).
    """
    with start_script(script) as proc:
        out, err = proc.stdout, proc.stderr
        assert out is not None and err is not None
        stderr: list[str] = []
        reader = threading.Thread(target=lambda: stderr.append(err.read()))
        reader.start()
        killed = threading.Event()

        def kill() -> None:
            killed.set()
            proc.kill()

        guard = threading.Timer(HANG, kill)
        guard.start()
        try:
            first = out.readline()
            guard.cancel()
            if first != "started\n":
                proc.kill()
                reader.join(HANG)
                pytest.fail(f"the script did not start: {first!r}\n{''.join(stderr)}")
            sent = time.monotonic()
            guard = threading.Timer(exit_within, kill)
            guard.start()
            proc.send_signal(signal.SIGINT)
            lines = [(line.rstrip("\n"), time.monotonic() - sent) for line in out]
            returncode = proc.wait()
            elapsed = time.monotonic() - sent
            reader.join(HANG)
        finally:
            guard.cancel()
            if proc.poll() is None:
                proc.kill()
        if killed.is_set():
            pytest.fail(
                f"still running {exit_within} s after SIGINT; output so far: {lines!r}\n"
                + "".join(stderr)
            )
        return Interrupted(returncode, lines, "".join(stderr), elapsed)
