"""``wrap_context``: async context managers from sync ``with`` blocks.

Values and exceptions forwarded by the book, ``__aenter__`` and ``__aexit__`` in one task (so
task-bound managers work), awaitables that return a manager, Ctrl-C in the body, every loop
kind, sync code on the loop thread itself.
"""

from __future__ import annotations

import asyncio
import contextvars
import signal
import sys
import threading
import traceback
from contextlib import asynccontextmanager
from typing import Any

import blockon
import pytest

from tests.support import (
    BaseBoom,
    Boom,
    Recorder,
    blockon_frames,
    run_in_threads,
    send_sigint_after_started,
)

# --- values and exceptions ----------------------------------------------------------------


def test_enter_returns_what_aenter_returned(target):
    sentinel = object()
    manager = Recorder(sentinel)
    with target.api.wrap_context(manager) as value:
        assert value is sentinel
        assert [step.what for step in manager.log] == ["enter"]  # entered before the body
    assert [step.what for step in manager.log] == ["enter", "exit"]
    exit_step = manager.log[1]
    assert (exit_step.exc_type, exit_step.exc, exit_step.tb) == (None, None, None)


def test_enter_and_exit_run_in_one_task_on_the_loop_thread(target):
    manager = Recorder()
    with target.api.wrap_context(manager):
        pass
    entered, exited = manager.log
    assert entered.thread == exited.thread == target.thread.name
    assert entered.task is exited.task
    assert entered.task is not None


def test_the_bodys_exception_reaches_aexit_and_propagates(target):
    manager = Recorder()
    error = Boom("in the body")
    with pytest.raises(Boom) as info, target.api.wrap_context(manager):
        raise error
    assert info.value is error
    exited = manager.log[1]
    assert exited.exc_type is Boom
    assert exited.exc is error
    assert exited.tb is not None
    assert (
        exited.tb.tb_frame.f_code.co_name == "test_the_bodys_exception_reaches_aexit_and_propagates"
    )


@pytest.mark.parametrize("result", [True, 1, "yes"], ids=["True", "1", "non-empty-str"])
def test_a_true_aexit_result_suppresses(target, result):
    manager = Recorder(suppress=result)
    with target.api.wrap_context(manager):
        raise Boom("suppressed")
    assert manager.log[1].exc_type is Boom


@pytest.mark.parametrize("result", [False, None, 0])
def test_a_false_aexit_result_does_not_suppress(target, result):
    manager = Recorder(suppress=result)
    with pytest.raises(Boom), target.api.wrap_context(manager):
        raise Boom("propagates")


def test_base_exceptions_from_the_body_reach_aexit(target):
    manager = Recorder()
    with pytest.raises(BaseBoom), target.api.wrap_context(manager):
        raise BaseBoom
    assert manager.log[1].exc_type is BaseBoom


def test_a_base_exception_suppressed_by_aexit(target):
    manager = Recorder(suppress=True)
    with target.api.wrap_context(manager):
        raise KeyboardInterrupt  # handed to __aexit__, which suppresses it
    assert manager.log[1].exc_type is KeyboardInterrupt
    # The loop thread is sound afterwards.
    assert target.run(asyncio.sleep(0, "fine")) == "fine"


def test_asynccontextmanager_sees_the_bodys_exception_and_may_swallow_it(target):
    seen: list[BaseException] = []

    @asynccontextmanager
    async def swallowing():
        try:
            yield "value"
        except Boom as exc:
            seen.append(exc)  # returning normally after the yield suppresses it

    error = Boom("swallowed")
    with target.api.wrap_context(swallowing()) as value:
        assert value == "value"
        raise error
    assert seen == [error]


def test_aenter_error_propagates_and_aexit_is_not_called(target):
    error = Boom("cannot enter")

    class Refusing(Recorder):
        async def __aenter__(self):
            raise error

    manager = Refusing()
    with pytest.raises(Boom) as info, target.api.wrap_context(manager):
        pytest.fail("the body must not run")  # pragma: no cover
    assert info.value is error
    assert manager.log == []
    # The traceback shows __aenter__'s own frame and no blockon internals.
    frames = traceback.extract_tb(info.value.__traceback__)
    assert frames[-1].name == "__aenter__"
    assert blockon_frames(info.value) == []


def test_aexit_error_propagates(target):
    error = Boom("cannot exit")

    class Failing(Recorder):
        async def __aexit__(self, *exc_info):
            raise error

    with pytest.raises(Boom) as info, target.api.wrap_context(Failing()):
        pass
    assert info.value is error
    assert traceback.extract_tb(info.value.__traceback__)[-1].name == "__aexit__"


def test_aexit_error_replacing_the_bodys_is_chained_to_it(target):
    body_error = Boom("body")

    class Failing(Recorder):
        async def __aexit__(self, *exc_info):
            raise RuntimeError("exit")

    with pytest.raises(RuntimeError) as info, target.api.wrap_context(Failing()):
        raise body_error
    assert info.value.__context__ is body_error


def test_runs_in_a_copy_of_the_callers_context(target):
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    seen = []

    class Reading:
        async def __aenter__(self):
            seen.append(var.get())
            var.set("set by __aenter__")

        async def __aexit__(self, *exc_info):
            seen.append(var.get())  # same task, same context as __aenter__

    token = var.set("caller's")
    try:
        with target.api.wrap_context(Reading()):
            assert var.get() == "caller's"  # the copy's changes stay on the loop
    finally:
        var.reset(token)
    assert seen == ["caller's", "set by __aenter__"]


def test_the_body_can_use_the_loop_while_inside(target):
    b = target.api

    @asynccontextmanager
    async def connection():
        queue: asyncio.Queue[str] = asyncio.Queue()
        yield queue
        queue.put_nowait("closing")

    with b.wrap_context(connection()) as queue:
        b.run(queue.put("from the body"))
        assert b.run(queue.get()) == "from the body"


def test_a_manager_is_entered_once(target):
    bridge = target.api.wrap_context(Recorder())
    with bridge:
        pass
    with pytest.raises((RuntimeError, ValueError), match="already"), bridge:
        pass  # pragma: no cover


def test_nested_and_in_many_threads(target):
    b = target.api

    def work(tag: int) -> None:
        outer, inner = Recorder(("outer", tag)), Recorder(("inner", tag))
        for _ in range(20):
            with b.wrap_context(outer) as o, b.wrap_context(inner) as i:
                assert (o, i) == (("outer", tag), ("inner", tag))
        assert len(outer.log) == len(inner.log) == 40

    run_in_threads(8, work)


# --- task-bound managers held across the yield --------------------------------------------


def test_timeout_and_task_group_held_across_the_yield(target):
    b = target.api
    log: list[Any] = []

    @asynccontextmanager
    async def scoped():
        async with asyncio.timeout(3600), asyncio.TaskGroup() as tg:
            log.append(("enter", asyncio.current_task()))
            yield tg
            log.append(("exit", asyncio.current_task()))
        log.append("group done")

    async def child(tag: str) -> None:
        await asyncio.sleep(0)
        log.append(tag)

    async def spawn(tg: asyncio.TaskGroup, tag: str) -> None:
        tg.create_task(child(tag))

    with b.wrap_context(scoped()) as tg:
        b.run(spawn(tg, "child 1"))
        b.run(spawn(tg, "child 2"))
    # The group waited for its children at exit, in the task that entered it.
    tasks = [entry[1] for entry in log if isinstance(entry, tuple)]
    assert len(tasks) == 2 and tasks[0] is tasks[1]
    assert log[-1] == "group done"
    assert sorted(e for e in log if isinstance(e, str) and e.startswith("child")) == [
        "child 1",
        "child 2",
    ]


def test_timeout_held_across_the_yield_expires_during_aexit(target):
    """The timeout cancels the task it was entered in; that is the task running __aexit__,
    so the TaskGroup's wait is cancelled and TimeoutError comes out of the ``with``."""
    log: list[str] = []

    async def forever(started: asyncio.Event) -> None:
        try:
            started.set()
            await asyncio.Event().wait()
        finally:
            log.append("child cancelled")

    @asynccontextmanager
    async def guarded():
        async with asyncio.timeout(None) as deadline, asyncio.TaskGroup() as tg:
            started = asyncio.Event()
            tg.create_task(forever(started))
            await started.wait()
            yield
            # Expire now, while the group waits for a child that never ends on its own.
            deadline.reschedule(asyncio.get_running_loop().time())

    with pytest.raises(TimeoutError), target.api.wrap_context(guarded()):
        pass
    assert log == ["child cancelled"]


def test_task_group_child_failure_during_aexit_surfaces_at_exit(target):
    @asynccontextmanager
    async def group():
        release = asyncio.Event()

        async def failing() -> None:
            await release.wait()
            raise Boom("child failed")

        async with asyncio.TaskGroup() as tg:
            tg.create_task(failing())
            yield tg
            release.set()  # the child fails while the group waits for it

    with pytest.raises(ExceptionGroup) as info, target.api.wrap_context(group()):
        pass
    assert [type(e) for e in info.value.exceptions] == [Boom]


def test_task_group_child_failing_while_the_body_runs_surfaces_at_exit(target):
    b = target.api

    @asynccontextmanager
    async def group():
        async with asyncio.TaskGroup() as tg:
            yield tg

    async def failing() -> None:
        raise Boom("child failed")

    async def fail_now(tg: asyncio.TaskGroup) -> None:
        child = tg.create_task(failing())
        await asyncio.wait([child])  # failed; the group has cancelled the task it is in

    with pytest.raises(ExceptionGroup) as info, b.wrap_context(group()) as tg:
        b.run(fail_now(tg))
    assert [type(e) for e in info.value.exceptions] == [Boom]


def test_timeout_expiring_while_the_body_runs_raises_timeout_error(target):
    b = target.api
    seen: list[Any] = []

    @asynccontextmanager
    async def guarded():
        try:
            async with asyncio.timeout(None) as deadline:
                yield deadline
        except BaseException as exc:
            seen.append(type(exc))
            raise

    async def expire(deadline: Any) -> None:
        deadline.reschedule(asyncio.get_running_loop().time())
        while not deadline.expired():  # the loop's own timer fires it
            await asyncio.sleep(0)

    with pytest.raises(TimeoutError), b.wrap_context(guarded()) as deadline:
        b.run(expire(deadline))
    assert seen == [TimeoutError]


# --- awaitables that return a manager -----------------------------------------------------


def test_a_coroutine_returning_a_manager(target):
    manager = Recorder("connected")
    steps = []

    async def connect():
        await asyncio.sleep(0)
        steps.append(("connect", asyncio.current_task()))
        return manager

    with target.api.wrap_context(connect()) as value:
        assert value == "connected"
    # Awaited, entered and exited in one task.
    assert steps[0][1] is manager.log[0].task is manager.log[1].task


def test_an_awaitable_object_returning_a_manager(target):
    manager = Recorder("from __await__")

    class Pending:
        def __await__(self):
            yield from asyncio.sleep(0).__await__()
            return manager

    with target.api.wrap_context(Pending()) as value:
        assert value == "from __await__"
    assert [step.what for step in manager.log] == ["enter", "exit"]


def test_an_object_both_awaitable_and_a_manager_is_entered_not_awaited(target):
    """As aiohttp's ``session.get(url)``: ``async with`` uses ``__aenter__``."""
    log = []

    class RequestContext(Recorder):
        def __await__(self):
            log.append("awaited")
            yield from asyncio.sleep(0).__await__()
            return self

    with target.api.wrap_context(RequestContext("response")) as value:
        assert value == "response"
    assert log == []


def test_an_awaitable_returning_something_else_is_a_type_error(target):
    async def not_a_manager():
        return 42

    with (
        pytest.raises(TypeError, match=r"""['"]int['"]"""),
        target.api.wrap_context(not_a_manager()),
    ):
        pytest.fail("the body must not run")  # pragma: no cover


def test_an_awaitable_that_raises(target):
    async def refused():
        raise ConnectionRefusedError("no server")

    with pytest.raises(ConnectionRefusedError), target.api.wrap_context(refused()):
        pytest.fail("the body must not run")  # pragma: no cover


# --- bad input ----------------------------------------------------------------------------


def test_a_plain_object_is_refused_naming_its_type(target):
    with pytest.raises(TypeError, match="'object'"):
        target.api.wrap_context(object())


def test_a_sync_context_manager_gets_a_hint(target):
    with pytest.raises(TypeError, match="plain context manager"):
        target.api.wrap_context(threading.Lock())


def test_an_uncalled_coroutine_function_gets_a_hint(target):
    async def connect():
        return Recorder()  # pragma: no cover

    with pytest.raises(TypeError, match="call it first"):
        target.api.wrap_context(connect)


def test_closed_loop_thread_refuses_with_runtime_error():
    lt = blockon.LoopThread(name="test-closed")
    lt.run(asyncio.sleep(0))
    lt.close()
    with pytest.raises(RuntimeError, match="closed"), lt.wrap_context(Recorder()):
        pytest.fail("the body must not run")  # pragma: no cover


# --- sync code on the loop thread itself --------------------------------------------------


def test_on_the_loop_thread_itself(reentrant_target):
    target = reentrant_target
    b = target.api
    manager = Recorder("inside")

    async def main():
        # Sync code running on the loop thread (called from a coroutine there).
        with b.wrap_context(manager) as value:
            return value, asyncio.current_task()

    value, caller_task = target.run(main())
    assert value == "inside"
    enter_task, exit_task = manager.log[0].task, manager.log[1].task
    assert enter_task is exit_task is not caller_task


def test_on_the_loop_thread_itself_other_tasks_keep_running(reentrant_target):
    target = reentrant_target
    b = target.api

    async def main():
        ready = asyncio.Event()

        class WaitsForAnotherTask:
            async def __aenter__(self):
                await ready.wait()
                return "entered"

            async def __aexit__(self, *exc_info):
                return False

        async def setter() -> None:
            ready.set()

        task = asyncio.get_running_loop().create_task(setter())
        with b.wrap_context(WaitsForAnotherTask()) as value:  # sync: `setter` runs meanwhile
            pass
        await task
        return value

    assert target.run(main()) == "entered"


def test_on_a_uvloop_thread_itself_raises_at_once(uvloop_module):
    with blockon.LoopThread(uvloop_module.new_event_loop, name="test-uvloop-self") as lt:

        async def main():
            with pytest.raises(RuntimeError, match="re-ent"), lt.wrap_context(Recorder()):
                pytest.fail("the body must not run")  # pragma: no cover

        lt.run(main())


# --- Ctrl-C inside the body ---------------------------------------------------------------

CTRL_C_SCRIPT = """
import asyncio, threading
from contextlib import asynccontextmanager
import blockon

KIND = {kind!r}

class Resource:
    async def __aenter__(self):
        return self

    async def __aexit__(self, exc_type, exc, tb):
        await asyncio.sleep(0)  # cleanup that needs the loop
        name = exc_type.__name__ if exc_type else None
        print("aexit", name, threading.current_thread().name, flush=True)
        return False

@asynccontextmanager
async def resource():
    try:
        yield
    except BaseException as exc:
        await asyncio.sleep(0)
        print("aexit", type(exc).__name__, threading.current_thread().name, flush=True)
        raise

if KIND == "uvloop":
    import uvloop
    lt = blockon.LoopThread(uvloop.new_event_loop, name="blockon")
else:
    lt = blockon.default_loop_thread()

manager = resource() if KIND == "asynccontextmanager" else Resource()
try:
    with lt.wrap_context(manager):
        print("started", flush=True)
        threading.Event().wait()  # never set: only Ctrl-C ends it
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
    raise
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("kind", ["class", "asynccontextmanager", "uvloop"])
def test_ctrl_c_in_the_body_still_runs_aexit(kind):
    if kind == "uvloop":
        pytest.importorskip("uvloop")
    done = send_sigint_after_started(CTRL_C_SCRIPT.format(kind=kind))
    assert done.texts == ["aexit KeyboardInterrupt blockon", "KeyboardInterrupt"], done.stderr
    assert done.returncode == -signal.SIGINT
    assert done.stderr.rstrip().endswith("KeyboardInterrupt"), done.stderr
