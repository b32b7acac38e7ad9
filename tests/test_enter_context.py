"""``enter_context``: async context managers entered now, exited when the loop thread closes.

SPEC section 3 (``enter_context``, ``LoopThread`` as a context manager) and issue 3: entered
at once, exited newest first (on ``close()``, at the end of a ``with LoopThread()`` block, at
interpreter exit for the default loop thread), errors from one exit reported without hiding
the others, and ``ExitStack`` semantics for an exception leaving the ``with`` body.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
import time
from contextlib import asynccontextmanager
from typing import Any

import blockon
import pytest
from conftest import debug_loop


class Named:
    """An async context manager that logs its enter and exit (with what the exit was given)."""

    def __init__(
        self, name: str, log: list[Any], *, fail: BaseException | None = None, suppress=False
    ) -> None:
        self.name, self.log, self.fail, self.suppress = name, log, fail, suppress

    async def __aenter__(self) -> str:
        await asyncio.sleep(0)
        self.log.append(("enter", self.name, asyncio.current_task()))
        return f"{self.name} value"

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        await asyncio.sleep(0)
        self.log.append(
            ("exit", self.name, exc, threading.current_thread().name, asyncio.current_task())
        )
        if self.fail is not None:
            raise self.fail
        return self.suppress


def exits(log: list[Any]) -> list[tuple[str, Any]]:
    """(name, exception handed to __aexit__) for each exit, in order."""
    return [(entry[1], entry[2]) for entry in log if entry[0] == "exit"]


@pytest.fixture(params=["asyncio-debug", "uvloop"])
def loop_factory(request: pytest.FixtureRequest) -> Any:
    if request.param == "uvloop":
        return pytest.importorskip("uvloop").new_event_loop
    return debug_loop


# --- entered now, exited newest first -----------------------------------------------------


def test_entered_at_once_and_returns_the_value(loop_factory):
    log: list[Any] = []
    lt = blockon.LoopThread(loop_factory, name="test-enter")
    try:
        assert lt.enter_context(Named("a", log)) == "a value"
        assert [entry[:2] for entry in log] == [("enter", "a")]  # before enter_context returned
    finally:
        lt.close()
    assert exits(log) == [("a", None)]


def test_exited_newest_first_on_close_in_the_task_that_entered(loop_factory):
    log: list[Any] = []
    lt = blockon.LoopThread(loop_factory, name="test-enter")
    for name in "abc":
        lt.enter_context(Named(name, log))
    assert exits(log) == []  # nothing exits while the loop thread is open
    lt.close()
    assert lt.closed
    assert exits(log) == [("c", None), ("b", None), ("a", None)]
    enter_tasks = {entry[1]: entry[2] for entry in log if entry[0] == "enter"}
    for _, name, _, thread_name, task in (entry for entry in log if entry[0] == "exit"):
        assert thread_name == "test-enter"
        assert task is enter_tasks[name]  # task-bound managers work
    lt.close()  # idempotent: nothing exits twice
    assert len(exits(log)) == 3


def test_task_bound_managers_entered_for_the_loop_threads_lifetime(loop_factory):
    log: list[str] = []

    @asynccontextmanager
    async def pool():
        async with asyncio.timeout(3600), asyncio.TaskGroup() as tg:
            stop = asyncio.Event()

            async def worker() -> None:
                await stop.wait()
                log.append("worker stopped")

            tg.create_task(worker())
            yield stop
            stop.set()
        log.append("pool closed")

    lt = blockon.LoopThread(loop_factory, name="test-enter")
    stop = lt.enter_context(pool())
    assert isinstance(stop, asyncio.Event)
    lt.close()
    assert log == ["worker stopped", "pool closed"]


def test_an_awaitable_returning_a_manager(loop_factory):
    log: list[Any] = []

    async def connect():
        await asyncio.sleep(0)
        return Named("conn", log)

    with blockon.LoopThread(loop_factory, name="test-enter") as lt:
        assert lt.enter_context(connect()) == "conn value"
    assert exits(log) == [("conn", None)]


def test_a_failing_enter_registers_nothing(lt):
    log: list[Any] = []

    class Refusing(Named):
        async def __aenter__(self):
            raise ConnectionRefusedError("no")

    with pytest.raises(ConnectionRefusedError):
        lt.enter_context(Refusing("x", log))
    lt.enter_context(Named("ok", log))
    lt.close()
    assert exits(log) == [("ok", None)]


def test_entered_from_many_threads(lt):
    log: list[Any] = []
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def enter(tag: int) -> None:
        try:
            start.wait(30)
            assert lt.enter_context(Named(str(tag), log)) == f"{tag} value"
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=enter, args=(tag,)) for tag in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    entered = [entry[1] for entry in log if entry[0] == "enter"]
    lt.close()
    # Concurrent enters have no order among themselves; each is exited exactly once.
    assert sorted(name for name, _ in exits(log)) == sorted(entered) == [str(t) for t in range(8)]


def test_closed_loop_thread_refuses_with_runtime_error():
    lt = blockon.LoopThread(name="test-closed")
    lt.run(asyncio.sleep(0))
    lt.close()
    with pytest.raises(RuntimeError, match="closed"):
        lt.enter_context(Named("late", []))


def test_bad_input_is_a_type_error(lt):
    with pytest.raises(TypeError, match="'object'"):
        lt.enter_context(object())
    with pytest.raises(TypeError, match="'object'"):
        blockon.enter_context(object())


# --- errors from exits --------------------------------------------------------------------


def test_errors_from_exits_are_reported_and_do_not_hide_the_others(lt):
    log: list[Any] = []
    first, second = ValueError("b failed"), KeyError("c failed")
    lt.enter_context(Named("a", log))
    lt.enter_context(Named("b", log, fail=first))
    lt.enter_context(Named("c", log, fail=second))
    with pytest.raises(ValueError) as info:
        lt.close()
    # Every exit ran, newest first; like ExitStack, each older exit is handed what is
    # pending, and the error raised is chained to the one before it.
    assert exits(log) == [("c", None), ("b", second), ("a", first)]
    assert info.value is first
    assert info.value.__context__ is second


def test_a_failing_exit_still_closes_the_loop_thread():
    log: list[Any] = []
    lt = blockon.LoopThread(debug_loop, name="test-enter")
    try:
        lt.enter_context(Named("a", log, fail=ValueError("a failed")))
        with pytest.raises(ValueError):
            lt.close()
        assert lt.closed
    finally:
        lt.close()


# --- LoopThread as a context manager: ExitStack semantics ---------------------------------


def test_with_block_exits_newest_first_and_closes(loop_factory):
    log: list[Any] = []
    with blockon.LoopThread(loop_factory, name="test-enter") as lt:
        lt.enter_context(Named("a", log))
        lt.enter_context(Named("b", log))
    assert lt.closed
    assert exits(log) == [("b", None), ("a", None)]


def test_the_bodys_exception_goes_to_each_exit_newest_first(lt):
    log: list[Any] = []
    error = RuntimeError("body")
    with pytest.raises(RuntimeError) as info, lt:
        lt.enter_context(Named("a", log))
        lt.enter_context(Named("b", log))
        raise error
    assert info.value is error
    assert exits(log) == [("b", error), ("a", error)]
    assert lt.closed


def test_an_exit_may_suppress_and_older_exits_then_see_nothing(lt):
    log: list[Any] = []
    error = RuntimeError("body")
    with lt:
        lt.enter_context(Named("a", log))
        lt.enter_context(Named("b", log, suppress=True))
        lt.enter_context(Named("c", log))
        raise error
    assert exits(log) == [("c", error), ("b", error), ("a", None)]
    assert lt.closed


def test_an_exit_error_replaces_the_bodys_and_an_older_exit_may_suppress_it(lt):
    log: list[Any] = []
    body, replacement = RuntimeError("body"), KeyError("from b")
    with lt:
        lt.enter_context(Named("a", log, suppress=True))
        lt.enter_context(Named("b", log, fail=replacement))
        raise body
    assert exits(log) == [("b", body), ("a", replacement)]
    assert replacement.__context__ is body


def test_an_exit_error_replaces_the_bodys_and_propagates(lt):
    log: list[Any] = []
    body, replacement = RuntimeError("body"), KeyError("from b")
    with pytest.raises(KeyError) as info, lt:
        lt.enter_context(Named("a", log))
        lt.enter_context(Named("b", log, fail=replacement))
        raise body
    assert info.value is replacement
    assert info.value.__context__ is body
    assert exits(log) == [("b", body), ("a", replacement)]
    assert lt.closed


def test_base_exception_from_the_body_goes_to_the_exits(lt):
    log: list[Any] = []
    with lt:
        lt.enter_context(Named("a", log, suppress=True))
        raise KeyboardInterrupt
    assert [(name, type(exc)) for name, exc in exits(log)] == [("a", KeyboardInterrupt)]


# --- the default loop thread: exits at interpreter exit -----------------------------------

EXIT_SCRIPT = """
import asyncio, threading
import blockon

FAIL = {fail!r}

class Named:
    def __init__(self, name):
        self.name = name

    async def __aenter__(self):
        print("enter", self.name, flush=True)
        return self.name

    async def __aexit__(self, exc_type, exc, tb):
        await asyncio.sleep(0)
        print("exit", self.name, threading.current_thread().name, flush=True)
        if self.name in FAIL:
            raise RuntimeError(f"exit of {{self.name}} failed")

for name in "abc":
    assert blockon.enter_context(Named(name)) == name
print("main done", flush=True)
"""


def run_script(script: str, *args: str) -> tuple[Any, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHONASYNCIODEBUG")}
    env["PYTHONUNBUFFERED"] = "1"
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, *args, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )
    return proc, time.monotonic() - started


def test_default_loop_thread_exits_them_at_interpreter_exit_newest_first():
    proc, elapsed = run_script(EXIT_SCRIPT.format(fail=""), "-X", "dev")
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout.splitlines() == [
        "enter a",
        "enter b",
        "enter c",
        "main done",
        "exit c blockon",
        "exit b blockon",
        "exit a blockon",
    ]
    assert elapsed < 10, elapsed  # hang guard: it takes a fraction of a second


def test_errors_from_exits_at_interpreter_exit_are_reported():
    proc, _ = run_script(EXIT_SCRIPT.format(fail="bc"))
    assert proc.stdout.splitlines()[-3:] == ["exit c blockon", "exit b blockon", "exit a blockon"]
    assert "exit of c failed" in proc.stderr
    assert "exit of b failed" in proc.stderr
