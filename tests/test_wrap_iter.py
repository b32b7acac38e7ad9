"""``wrap_iter``: async iterables from sync code, lockstep (``prefetch=0``) and prefetched.

Every test runs on real loops; threads and the loop are synchronised with events, queues and
round trips through the loop, never sleeps.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
import threading
import time
import traceback
from typing import Any

import blockon
import pytest

from tests.support import (
    HANG,
    BaseBoom,
    Boom,
    blockon_frames,
    run_in_threads,
    run_script,
    send_sigint_after_started,
    start_script,
)

MODES = pytest.mark.parametrize("prefetch", [0, 4], ids=["lockstep", "prefetch"])


async def numbers(n: int):
    for i in range(n):
        yield i


def barrier(run: Any) -> None:
    """A round trip through the loop that lets everything ready on it run a few times over."""

    async def spin() -> None:
        for _ in range(5):
            await asyncio.sleep(0)

    run(spin())


# --- basics, on every loop kind ------------------------------------------------------------


@MODES
def test_items_in_order_then_stop_iteration(target, prefetch):
    it = target.api.wrap_iter(numbers(50), prefetch=prefetch)
    assert iter(it) is it
    assert list(it) == list(range(50))
    with pytest.raises(StopIteration):
        next(it)
    it.close()  # closing an exhausted iterator is a no-op


@MODES
def test_empty_async_iterable(target, prefetch):
    it = target.api.wrap_iter(numbers(0), prefetch=prefetch)
    assert list(it) == []


@MODES
def test_async_iterable_class_whose_aiter_runs_on_the_loop(target, prefetch):
    """``__aiter__`` is called on the loop thread, in the iterator's task, not in the caller."""
    seen: list[tuple[Any, ...]] = []

    class Source:
        def __aiter__(self):
            seen.append(("aiter", threading.current_thread().name, asyncio.current_task()))
            return Cursor()

    class Cursor:
        def __init__(self):
            self.i = 0

        async def __anext__(self):
            seen.append(("anext", threading.current_thread().name, asyncio.current_task()))
            if self.i == 3:
                raise StopAsyncIteration
            self.i += 1
            return self.i

    it = target.api.wrap_iter(Source(), prefetch=prefetch)
    assert list(it) == [1, 2, 3]
    assert seen[0][0] == "aiter"
    assert {name for _, name, _ in seen} == {target.thread.name}
    tasks = {task for _, _, task in seen}
    assert len(tasks) == 1 and None not in tasks


@MODES
def test_runs_in_a_copy_of_the_callers_context(target, prefetch):
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    async def read_and_write():
        yield var.get()
        var.set("changed inside")
        yield var.get()

    token = var.set("caller's")
    try:
        it = target.api.wrap_iter(read_and_write(), prefetch=prefetch)
        assert list(it) == ["caller's", "changed inside"]
        assert var.get() == "caller's"
    finally:
        var.reset(token)


@MODES
def test_usable_from_a_thread_other_than_the_one_that_made_it(target, prefetch):
    it = target.api.wrap_iter(numbers(20), prefetch=prefetch)
    assert next(it) == 0
    got: list[int] = []
    worker = threading.Thread(target=lambda: got.extend(it))
    worker.start()
    worker.join(30)
    assert not worker.is_alive()
    assert got == list(range(1, 20))


# --- one task per iterator -----------------------------------------------------------------


@MODES
def test_every_step_runs_in_one_task(target, prefetch):
    steps: list[tuple[Any, str]] = []

    async def watcher():
        for i in range(6):
            steps.append((asyncio.current_task(), threading.current_thread().name))
            await asyncio.sleep(0)  # a real suspension between steps
            yield i

    it = target.api.wrap_iter(watcher(), prefetch=prefetch)
    assert list(it) == list(range(6))
    tasks = {task for task, _ in steps}
    assert len(tasks) == 1, tasks
    assert None not in tasks
    assert {name for _, name in steps} == {target.thread.name}


@MODES
def test_task_bound_manager_held_across_yields(target, prefetch):
    """An async generator holding ``asyncio.timeout()`` across its yields: only possible if
    every step runs in the task that entered the timeout."""

    async def guarded():
        async with asyncio.timeout(3600):
            for i in range(5):
                await asyncio.sleep(0)
                yield i

    it = target.api.wrap_iter(guarded(), prefetch=prefetch)
    assert list(it) == list(range(5))


# --- closing ------------------------------------------------------------------------------


def _finalizing(log: list[Any], n: int = 1000):
    async def agen():
        try:
            for i in range(n):
                await asyncio.sleep(0)
                yield i
        finally:
            await asyncio.sleep(0)  # cleanup that needs the loop
            log.append(("finally", threading.current_thread().name, asyncio.current_task()))

    return agen()


@MODES
def test_break_closes_on_the_loop_before_the_for_loop_moves_on(target, prefetch):
    log: list[Any] = []
    got = []
    for x in target.api.wrap_iter(_finalizing(log), prefetch=prefetch):
        got.append(x)
        if x == 2:
            break
    # A dropped bridge closes synchronously, like a generator: the finally has already run.
    assert got == [0, 1, 2]
    assert len(log) == 1, log
    assert log[0][1] == target.thread.name


@MODES
def test_close_awaits_aclose_on_the_loop(target, prefetch):
    log: list[Any] = []
    it = target.api.wrap_iter(_finalizing(log), prefetch=prefetch)
    assert [next(it), next(it)] == [0, 1]
    it.close()
    assert len(log) == 1 and log[0][1] == target.thread.name
    with pytest.raises(StopIteration):
        next(it)
    it.close()  # idempotent
    assert len(log) == 1


@MODES
def test_garbage_collection_closes(target, prefetch):
    log: list[Any] = []
    it = target.api.wrap_iter(_finalizing(log), prefetch=prefetch)
    assert next(it) == 0
    del it
    assert len(log) == 1 and log[0][1] == target.thread.name


@MODES
def test_aclose_runs_in_the_iterators_own_task(target, prefetch):
    tasks: list[Any] = []
    log: list[Any] = []

    async def agen():
        try:
            while True:
                tasks.append(asyncio.current_task())
                yield len(tasks)
        finally:
            log.append(asyncio.current_task())

    it = target.api.wrap_iter(agen(), prefetch=prefetch)
    assert next(it) == 1
    it.close()
    assert log == [tasks[0]]


def test_closing_an_unstarted_iterator_does_not_start_it(target):
    started = []

    async def agen():
        started.append(True)
        yield 1

    gen = agen()
    it = target.api.wrap_iter(gen)
    it.close()
    assert started == []
    with pytest.raises(StopIteration):
        next(it)


def test_closing_a_plain_async_iterator_without_aclose(target):
    """An async iterator with no ``aclose`` is simply dropped on close."""

    class Counter:
        def __init__(self):
            self.i = 0

        def __aiter__(self):
            return self

        async def __anext__(self):
            self.i += 1
            return self.i

    counter = Counter()
    it = target.api.wrap_iter(counter)
    assert [next(it), next(it)] == [1, 2]
    it.close()
    assert counter.i == 2


# --- lockstep: nothing consumed that was not asked for -------------------------------------


def test_lockstep_partial_read_of_a_shared_queue_loses_nothing(target):
    b = target.api

    async def make_queue():
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(10):
            queue.put_nowait(i)
        return queue

    queue = target.run(make_queue())

    class QueueReader:
        """An async iterator over the queue (no aclose): takes one item per ``__anext__``."""

        def __aiter__(self):
            return self

        async def __anext__(self):
            if queue.empty():
                raise StopAsyncIteration
            return await queue.get()

    it = b.wrap_iter(QueueReader())
    assert [next(it), next(it), next(it)] == [0, 1, 2]
    it.close()

    async def drain():
        return [queue.get_nowait() for _ in range(queue.qsize())]

    assert target.run(drain()) == list(range(3, 10))


def test_lockstep_partial_read_of_a_stream_reader_leaves_the_rest_readable(target):
    b = target.api
    lines = [f"line {i}\n".encode() for i in range(10)]

    async def make_reader():
        reader = asyncio.StreamReader()
        reader.feed_data(b"".join(lines))
        reader.feed_eof()
        return reader

    reader = target.run(make_reader())
    it = b.wrap_iter(reader)  # StreamReader iterates line by line
    assert [next(it), next(it), next(it)] == lines[:3]
    it.close()
    assert target.run(reader.read()) == b"".join(lines[3:])


def test_lockstep_pulls_exactly_one_item_per_next(target):
    produced = [0]

    async def counting():
        while True:
            produced[0] += 1
            yield produced[0]

    it = target.api.wrap_iter(counting())
    for consumed in range(1, 21):
        assert next(it) == consumed
        barrier(target.run)  # give the loop every chance to run ahead: it must not
        assert produced[0] == consumed
    it.close()


def test_an_async_generator_over_a_queue_read_part_way_keeps_the_rest(target):
    """The same with an async generator (which has aclose) over a shared queue."""

    async def make_queue():
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(8):
            queue.put_nowait(i)
        return queue

    queue = target.run(make_queue())

    async def items():
        while not queue.empty():
            yield await queue.get()

    it = target.api.wrap_iter(items())
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    it.close()

    async def drain():
        return [item async for item in items()]

    assert target.run(drain()) == [3, 4, 5, 6, 7]


# --- prefetch: bounded, with backpressure -------------------------------------------------


@pytest.mark.parametrize("bound", [1, 2, 8])
def test_prefetch_bound_holds_at_every_step(target, bound):
    produced = [0]
    total = 60

    async def counting():
        for i in range(total):
            produced[0] += 1  # counted before it is handed over: in flight counts
            yield i

    it = target.api.wrap_iter(counting(), prefetch=bound)
    leads = []
    for consumed in range(1, total + 1):
        assert next(it) == consumed - 1
        barrier(target.run)  # the pump runs on this loop: let it run as far ahead as it may
        lead = produced[0] - consumed
        assert lead <= bound + 1, (consumed, produced[0])
        leads.append(lead)
    # It did prefetch: the producer ran ahead up to the bound while the consumer was slow.
    assert bound <= max(leads) <= bound + 1, leads
    with pytest.raises(StopIteration):
        next(it)


def test_prefetch_bound_holds_with_a_fast_consumer(target):
    """No round trips from the consumer: the producer never gets more than N+1 ahead."""
    produced = [0]
    bound = 16

    async def counting():
        for i in range(3000):
            produced[0] += 1
            yield i

    it = target.api.wrap_iter(counting(), prefetch=bound)
    for consumed, item in enumerate(it, 1):
        assert item == consumed - 1
        assert produced[0] - consumed <= bound + 1, (consumed, produced[0])
    assert produced[0] == 3000


def test_prefetch_close_drops_at_most_n_plus_one_items(target):
    """What prefetch drops on close: items pulled ahead and never taken (at most N+1)."""
    bound = 4

    async def make_queue():
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(20):
            queue.put_nowait(i)
        return queue

    queue = target.run(make_queue())

    async def items():
        while not queue.empty():
            yield await queue.get()

    it = target.api.wrap_iter(items(), prefetch=bound)
    taken = [next(it) for _ in range(3)]
    barrier(target.run)
    it.close()

    async def drain():
        return [queue.get_nowait() for _ in range(queue.qsize())]

    rest = target.run(drain())
    assert taken == [0, 1, 2]
    dropped = 20 - len(taken) - len(rest)
    assert 1 <= dropped <= bound + 1, (taken, rest)
    assert rest == list(range(3 + dropped, 20))


def test_prefetch_consumer_waits_for_a_slow_producer(target):
    """An empty buffer makes next() wait (here: for an event set from this thread later)."""
    b = target.api
    gate = threading.Event()

    async def gated():
        yield "first"
        await asyncio.get_running_loop().run_in_executor(None, gate.wait, 30)
        yield "second"

    it = b.wrap_iter(gated(), prefetch=8)
    assert next(it) == "first"
    got: list[str] = []
    consumer = threading.Thread(target=lambda: got.append(next(it)))
    consumer.start()
    gate.set()
    consumer.join(30)
    assert got == ["second"]
    it.close()


# --- exceptions ---------------------------------------------------------------------------


@MODES
def test_raises_after_k_items_delivers_k_items_then_the_exception(target, prefetch):
    error = Boom("after 3")

    async def failing():
        for i in range(3):
            yield i
        await asyncio.sleep(0)
        raise error

    it = target.api.wrap_iter(failing(), prefetch=prefetch)
    got = []
    with pytest.raises(Boom) as info:
        while True:
            got.append(next(it))
    assert got == [0, 1, 2]
    assert info.value is error
    # The traceback shows the async generator's own frame, and no blockon internals.
    frames = traceback.extract_tb(info.value.__traceback__)
    assert any(frame.name == "failing" for frame in frames), frames
    assert blockon_frames(info.value) == []
    # Like a generator that raised: finished from now on.
    with pytest.raises(StopIteration):
        next(it)
    it.close()


@MODES
def test_raises_at_once(target, prefetch):
    async def failing():
        raise Boom("first")
        yield  # pragma: no cover - makes it an async generator

    it = target.api.wrap_iter(failing(), prefetch=prefetch)
    with pytest.raises(Boom, match="first"):
        next(it)
    it.close()


@MODES
def test_base_exception_from_the_iterator_propagates(target, prefetch):
    async def failing():
        yield 1
        raise BaseBoom

    it = target.api.wrap_iter(failing(), prefetch=prefetch)
    assert next(it) == 1
    with pytest.raises(BaseBoom):
        next(it)
    it.close()
    # The loop thread is sound afterwards.
    assert target.run(asyncio.sleep(0, "fine")) == "fine"


@pytest.fixture(scope="module")
def probes() -> Any:
    """Scripts whose failure would be a deadlock no in-process guard can stop, started
    together in fresh interpreters on first use, so their hang guards overlap (one wait for
    all, not one each); killed at the module's end."""
    scripts = {
        "reentrant-asyncio": REENTRANT_PREFETCH_SCRIPT.format(kind="asyncio"),
        "shared-first-next": SHARED_FIRST_NEXT_SCRIPT,
    }
    try:
        import uvloop  # noqa: F401

        scripts["reentrant-uvloop"] = REENTRANT_PREFETCH_SCRIPT.format(kind="uvloop")
    except ImportError:
        pass
    procs = {name: start_script(script) for name, script in scripts.items()}
    # Hang guard, shared by all: each takes a second or two when it works, more on a loaded
    # machine, so the guard is generous.
    deadline = time.monotonic() + 2 * HANG

    def result(name: str) -> tuple[int, str, str] | None:
        proc = procs.get(name)
        if proc is None:
            return None
        out, err = proc.communicate(timeout=max(0.0, deadline - time.monotonic()))
        return proc.returncode, out, err

    try:
        yield result
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


# An exception leaving a for loop over a bridge nobody else holds: a regression here has
# crashed the interpreter, so it runs in a fresh one.
FOR_LOOP_ERROR_SCRIPT = """
import asyncio, threading
import blockon

PREFETCH = {prefetch}
WHERE = {where!r}
log = []

async def agen():
    try:
        for i in range(10):
            yield i
            if WHERE == "iterator" and i == 2:
                raise ValueError("from the iterator")
    finally:
        log.append(threading.current_thread().name)

try:
    for x in blockon.wrap_iter(agen(), prefetch=PREFETCH):
        if WHERE == "body" and x == 2:
            raise ValueError("from the body")
except ValueError as exc:
    print("caught", exc, log, flush=True)
"""


@pytest.mark.parametrize(
    ("prefetch", "where"),
    [
        pytest.param(0, "body", id="lockstep-body"),
        pytest.param(0, "iterator", id="lockstep-iterator"),
        pytest.param(4, "body", id="prefetch-body"),
        pytest.param(4, "iterator", id="prefetch-iterator"),
    ],
)
def test_exception_leaving_a_for_loop_over_a_temporary_bridge(prefetch, where):
    proc, _ = run_script(FOR_LOOP_ERROR_SCRIPT.format(prefetch=prefetch, where=where))
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout == f"caught from the {where} ['blockon']\n"


# --- threads ------------------------------------------------------------------------------


@MODES
def test_eight_threads_each_on_their_own_iterator(target, prefetch):
    b = target.api
    n_threads, n_items = 8, 200

    async def tagged(tag: int):
        for i in range(n_items):
            if i % 10 == 0:
                await asyncio.sleep(0)
            yield tag, i

    def consume(tag: int) -> list[tuple[int, int]]:
        return list(b.wrap_iter(tagged(tag), prefetch=prefetch))

    results = run_in_threads(n_threads, consume)
    assert results == [[(tag, i) for i in range(n_items)] for tag in range(n_threads)]


@MODES
def test_one_iterator_shared_by_several_threads(target, prefetch):
    """Each item goes to exactly one consumer, and each sees them in increasing order."""
    it = target.api.wrap_iter(numbers(2000), prefetch=prefetch)
    first = next(it)  # started here (see the next test)
    got = run_in_threads(4, lambda _: list(it))
    got[0].insert(0, first)
    assert sorted(item for mine in got for item in mine) == list(range(2000))
    assert all(mine == sorted(mine) for mine in got)


SHARED_FIRST_NEXT_SCRIPT = """
import threading
import blockon

async def numbers(n):
    for i in range(n):
        yield i

for prefetch in (0, 4):
    for _ in range(20):
        it = blockon.wrap_iter(numbers(500), prefetch=prefetch)
        got = [[] for _ in range(4)]
        threads = [threading.Thread(target=mine.extend, args=(it,)) for mine in got]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(sum(got, [])) == list(range(500))
print("ok", flush=True)
"""


def test_one_iterator_started_by_several_threads_at_once(probes):
    """Runs in a fresh interpreter: a regression here deadlocks the whole process (with the
    GIL held)."""
    assert probes("shared-first-next") == (0, "ok\n", "")


# --- sync code on the loop thread itself --------------------------------------------------


def test_on_the_loop_thread_itself_lockstep(reentrant_target):
    target = reentrant_target
    b = target.api
    log: list[Any] = []

    async def main():
        # Sync code running on the loop thread (called from a coroutine there).
        it = b.wrap_iter(_finalizing(log, 5))
        first = [next(it), next(it)]
        it.close()
        return first, list(b.wrap_iter(numbers(4)))

    assert target.run(main()) == ([0, 1], [0, 1, 2, 3])
    assert log and log[0][1] == target.thread.name


def test_on_the_loop_thread_itself_other_tasks_keep_running(reentrant_target):
    """The loop is driven while the sync code waits: here the iterator waits for an event
    that only another task on the same loop sets."""
    target = reentrant_target
    b = target.api

    async def main():
        ready = asyncio.Event()

        async def gated():
            yield "before"
            await ready.wait()
            yield "after"

        async def setter() -> None:
            ready.set()

        it = b.wrap_iter(gated())
        first = next(it)
        task = asyncio.get_running_loop().create_task(setter())
        rest = list(it)  # sync: blocks this coroutine, yet `setter` runs
        await task
        return [first, *rest]

    assert target.run(main()) == ["before", "after"]


REENTRANT_PREFETCH_SCRIPT = """
import asyncio
import blockon

KIND = {kind!r}

async def numbers(n):
    for i in range(n):
        await asyncio.sleep(0)
        yield i

if KIND == "uvloop":
    import uvloop
    lt = blockon.LoopThread(uvloop.new_event_loop)
else:
    lt = blockon.LoopThread()

async def main():
    it = lt.wrap_iter(numbers(5), prefetch=2)
    try:
        return list(it)
    except RuntimeError:
        return "RuntimeError"

print(lt.run(main()), flush=True)
lt.close()
"""


def test_on_the_loop_thread_itself_prefetch(probes):
    """Runs in fresh interpreters: a regression here deadlocks the loop thread for good."""
    assert probes("reentrant-asyncio") == (0, "[0, 1, 2, 3, 4]\n", "")
    uvloop_result = probes("reentrant-uvloop")
    if uvloop_result is not None:  # uvloop cannot re-enter: RuntimeError at once
        # (stderr is not checked here: see test_on_a_uvloop_thread_itself_lockstep_...)
        assert uvloop_result[:2] == (0, "RuntimeError\n")


def test_on_a_uvloop_thread_itself_lockstep_raises_at_once(uvloop_module):
    with blockon.LoopThread(uvloop_module.new_event_loop, name="test-uvloop-self") as lt:

        async def main():
            it = lt.wrap_iter(numbers(3))
            with pytest.raises(RuntimeError, match="re-ent"):
                next(it)

        lt.run(main())


# --- bad input ----------------------------------------------------------------------------


def test_a_list_is_refused_naming_list(target):
    with pytest.raises(TypeError, match="'list'"):
        target.api.wrap_iter([1, 2, 3])


def test_a_sync_generator_is_refused(target):
    with pytest.raises(TypeError, match="'generator'"):
        target.api.wrap_iter(i for i in range(3))


def test_an_uncalled_async_generator_function_gets_a_hint(target):
    with pytest.raises(TypeError, match=r"call it first: wrap_iter\(numbers\(\.\.\.\)\)"):
        target.api.wrap_iter(numbers)


def test_negative_prefetch_is_a_value_error(target):
    gen = numbers(3)
    with pytest.raises(ValueError, match="prefetch"):
        target.api.wrap_iter(gen, prefetch=-1)
    with pytest.raises(TypeError, match="prefetch"):
        target.api.wrap_iter(gen, prefetch=1.5)
    with pytest.raises(TypeError, match="prefetch"):
        target.api.wrap_iter(gen, prefetch=True)


def test_aiter_that_raises_is_reported_on_first_next(target):
    class Broken:
        def __aiter__(self):
            raise Boom("no iterator today")

    it = target.api.wrap_iter(Broken())
    with pytest.raises(Boom, match="no iterator today"):
        next(it)
    it.close()  # like a generator that raised: finished, closing is a no-op
    with pytest.raises(StopIteration):
        next(it)


def test_closed_loop_thread_refuses_with_runtime_error():
    lt = blockon.LoopThread(name="test-closed")
    lt.run(asyncio.sleep(0))
    lt.close()
    it = lt.wrap_iter(numbers(3))
    with pytest.raises(RuntimeError, match="closed"):
        next(it)


# --- interpreter exit ---------------------------------------------------------------------

EXIT_SCRIPT = """
import asyncio, threading
import blockon

async def endless():
    try:
        i = 0
        while True:
            await asyncio.sleep(0)
            yield i
            i += 1
    finally:
        await asyncio.sleep(0)
        print("finally on", threading.current_thread().name, flush=True)

it = blockon.wrap_iter(endless(), prefetch={prefetch})
print([next(it) for _ in range(5)], flush=True)
"""


@pytest.mark.parametrize("prefetch", [0, 16], ids=["lockstep", "prefetch"])
def test_interpreter_exit_with_a_half_consumed_iterator_is_quick_and_quiet(prefetch):
    proc, elapsed = run_script(EXIT_SCRIPT.format(prefetch=prefetch), "-X", "dev")
    assert proc.stderr == ""
    assert proc.returncode == 0
    assert proc.stdout == "[0, 1, 2, 3, 4]\nfinally on blockon\n"
    assert elapsed < 10, elapsed  # hang guard: it takes a fraction of a second


CTRL_C_SCRIPT = """
import asyncio, threading
import blockon

async def endless():
    try:
        i = 0
        while True:
            yield i
            i += 1
            if i == 3:
                print("started", flush=True)
                await asyncio.Event().wait()  # never set: next() waits here
    finally:
        print("finally on", threading.current_thread().name, flush=True)

it = blockon.wrap_iter(endless(), prefetch={prefetch})
try:
    for _ in range(10):
        next(it)
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
    it.close()
    print("closed", flush=True)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("prefetch", [0, 16], ids=["lockstep", "prefetch"])
def test_ctrl_c_while_next_waits(prefetch):
    done = send_sigint_after_started(CTRL_C_SCRIPT.format(prefetch=prefetch))
    assert done.stderr == ""
    assert done.returncode == 0
    lines = done.texts
    # Lockstep cancels the waiting step (the generator's finally runs first); prefetch stops
    # the pump on close(). Either way the finally runs on the loop thread before close returns.
    assert sorted(lines) == sorted(["KeyboardInterrupt", "finally on blockon", "closed"]), lines
    assert lines[-1] == "closed"
