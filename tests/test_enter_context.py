"""``enter_context``: async context managers entered now, exited when the loop thread closes.

Entered at once, exited newest first (on ``close()``, at the end of a ``with LoopThread()``
block, at interpreter exit for the default loop thread), errors from one exit reported without
hiding the others, and ``ExitStack`` semantics for an exception leaving the ``with`` body
(``LoopThread`` as a context manager).
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import Any

import blockon
import pytest

from tests.support import (
    Recorder,
    Step,
    debug_loop,
    exits,
    loop_factory,
    run_in_threads,
    run_script,
)


def named(name: str, log: list[Step], **options: Any) -> Recorder:
    """A recorder that enters as "<name> value" and logs to a shared log."""
    return Recorder(f"{name} value", name=name, log=log, **options)


@pytest.fixture(params=["asyncio", "uvloop"])
def factory(request: pytest.FixtureRequest) -> Any:
    return loop_factory(request.param)


# --- entered now, exited newest first -----------------------------------------------------


def test_entered_at_once_and_returns_the_value(factory):
    log: list[Step] = []
    lt = blockon.LoopThread(factory, name="test-enter")
    try:
        assert lt.enter_context(named("a", log)) == "a value"
        assert [(step.what, step.name) for step in log] == [("enter", "a")]  # entered already
    finally:
        lt.close()
    assert exits(log) == [("a", None)]


def test_exited_newest_first_on_close_in_the_task_that_entered(factory):
    log: list[Step] = []
    lt = blockon.LoopThread(factory, name="test-enter")
    for name in "abc":
        lt.enter_context(named(name, log))
    assert exits(log) == []  # nothing exits while the loop thread is open
    lt.close()
    assert lt.closed
    assert exits(log) == [("c", None), ("b", None), ("a", None)]
    enter_tasks = {step.name: step.task for step in log if step.what == "enter"}
    for step in log:
        if step.what == "exit":
            assert step.thread == "test-enter"
            assert step.task is enter_tasks[step.name]  # task-bound managers work
    lt.close()  # idempotent: nothing exits twice
    assert len(exits(log)) == 3


def test_task_bound_managers_entered_for_the_loop_threads_lifetime(factory):
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

    lt = blockon.LoopThread(factory, name="test-enter")
    stop = lt.enter_context(pool())
    assert isinstance(stop, asyncio.Event)
    lt.close()
    assert log == ["worker stopped", "pool closed"]


def test_an_awaitable_returning_a_manager(factory):
    log: list[Step] = []

    async def connect():
        await asyncio.sleep(0)
        return named("conn", log)

    with blockon.LoopThread(factory, name="test-enter") as lt:
        assert lt.enter_context(connect()) == "conn value"
    assert exits(log) == [("conn", None)]


def test_a_failing_enter_registers_nothing(lt):
    log: list[Step] = []

    class Refusing(Recorder):
        async def __aenter__(self):
            raise ConnectionRefusedError("no")

    with pytest.raises(ConnectionRefusedError):
        lt.enter_context(Refusing(name="x", log=log))
    lt.enter_context(named("ok", log))
    lt.close()
    assert exits(log) == [("ok", None)]


def test_entered_from_many_threads(lt):
    log: list[Step] = []

    def enter(tag: int) -> Any:
        return lt.enter_context(named(str(tag), log))

    assert run_in_threads(8, enter) == [f"{tag} value" for tag in range(8)]
    entered = [step.name for step in log if step.what == "enter"]
    lt.close()
    # Concurrent enters have no order among themselves; each is exited exactly once.
    assert sorted(name for name, _ in exits(log)) == sorted(entered) == [str(t) for t in range(8)]


def test_closed_loop_thread_refuses_with_runtime_error():
    lt = blockon.LoopThread(name="test-closed")
    lt.run(asyncio.sleep(0))
    lt.close()
    with pytest.raises(RuntimeError, match="closed"):
        lt.enter_context(named("late", []))


def test_bad_input_is_a_type_error(lt):
    with pytest.raises(TypeError, match="'object'"):
        lt.enter_context(object())
    with pytest.raises(TypeError, match="'object'"):
        blockon.enter_context(object())  # type: ignore[arg-type]


# --- errors from exits --------------------------------------------------------------------


def test_errors_from_exits_are_reported_and_do_not_hide_the_others(lt):
    log: list[Step] = []
    first, second = ValueError("b failed"), KeyError("c failed")
    lt.enter_context(named("a", log))
    lt.enter_context(named("b", log, fail=first))
    lt.enter_context(named("c", log, fail=second))
    with pytest.raises(ValueError) as info:
        lt.close()
    # Every exit ran, newest first; like ExitStack, each older exit is handed what is
    # pending, and the error raised is chained to the one before it.
    assert exits(log) == [("c", None), ("b", second), ("a", first)]
    assert info.value is first
    assert info.value.__context__ is second


def test_a_failing_exit_still_closes_the_loop_thread():
    log: list[Step] = []
    lt = blockon.LoopThread(debug_loop, name="test-enter")
    try:
        lt.enter_context(named("a", log, fail=ValueError("a failed")))
        with pytest.raises(ValueError):
            lt.close()
        assert lt.closed
    finally:
        lt.close()


# --- LoopThread as a context manager: ExitStack semantics ---------------------------------


def test_with_block_exits_newest_first_and_closes(factory):
    log: list[Step] = []
    with blockon.LoopThread(factory, name="test-enter") as lt:
        lt.enter_context(named("a", log))
        lt.enter_context(named("b", log))
    assert lt.closed
    assert exits(log) == [("b", None), ("a", None)]


def test_the_bodys_exception_goes_to_each_exit_newest_first(lt):
    log: list[Step] = []
    error = RuntimeError("body")
    with pytest.raises(RuntimeError) as info, lt:
        lt.enter_context(named("a", log))
        lt.enter_context(named("b", log))
        raise error
    assert info.value is error
    assert exits(log) == [("b", error), ("a", error)]
    assert lt.closed


def test_an_exit_may_suppress_and_older_exits_then_see_nothing(lt):
    log: list[Step] = []
    error = RuntimeError("body")
    with lt:
        lt.enter_context(named("a", log))
        lt.enter_context(named("b", log, suppress=True))
        lt.enter_context(named("c", log))
        raise error
    assert exits(log) == [("c", error), ("b", error), ("a", None)]
    assert lt.closed


def test_an_exit_error_replaces_the_bodys_and_an_older_exit_may_suppress_it(lt):
    log: list[Step] = []
    body, replacement = RuntimeError("body"), KeyError("from b")
    with lt:
        lt.enter_context(named("a", log, suppress=True))
        lt.enter_context(named("b", log, fail=replacement))
        raise body
    assert exits(log) == [("b", body), ("a", replacement)]
    assert replacement.__context__ is body


def test_an_exit_error_replaces_the_bodys_and_propagates(lt):
    log: list[Step] = []
    body, replacement = RuntimeError("body"), KeyError("from b")
    with pytest.raises(KeyError) as info, lt:
        lt.enter_context(named("a", log))
        lt.enter_context(named("b", log, fail=replacement))
        raise body
    assert info.value is replacement
    assert info.value.__context__ is body
    assert exits(log) == [("b", body), ("a", replacement)]
    assert lt.closed


def test_base_exception_from_the_body_goes_to_the_exits(lt):
    log: list[Step] = []
    with lt:
        lt.enter_context(named("a", log, suppress=True))
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
