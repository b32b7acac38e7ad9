"""Many threads at once: each caller gets its own result or exception, in its own context,
and no lock is held while user code runs."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading

import blockon
import pytest

from tests.support import run_in_threads, run_script

N_THREADS = 32
ROUNDS = 20
VAR: contextvars.ContextVar[object] = contextvars.ContextVar("VAR", default=None)


async def echo(value):
    await asyncio.sleep(0)
    return value, VAR.get()


def test_32_threads_calling_run_at_once_each_get_their_own_result(target):
    def body(i):
        VAR.set(("thread", i))
        return [target.run(echo((i, k))) for k in range(ROUNDS)]

    results = run_in_threads(N_THREADS, body)
    assert results == [[((i, k), ("thread", i)) for k in range(ROUNDS)] for i in range(N_THREADS)]


def test_32_threads_mixing_run_and_submit(target):
    def body(i):
        futures = [target.submit(echo(("s", i, k))) for k in range(ROUNDS)]
        direct = [target.run(echo(("r", i, k)))[0] for k in range(ROUNDS)]
        return direct, [f.result(timeout=30)[0] for f in futures]

    results = run_in_threads(N_THREADS, body)
    for i, (direct, submitted) in enumerate(results):
        assert direct == [("r", i, k) for k in range(ROUNDS)]
        assert submitted == [("s", i, k) for k in range(ROUNDS)]


def test_32_threads_exceptions_go_to_their_own_caller(target):
    class Tagged(Exception):
        pass

    async def fail(tag):
        await asyncio.sleep(0)
        raise Tagged(tag)

    def body(i):
        tags = []
        for k in range(ROUNDS):
            try:
                target.run(fail((i, k)))
            except Tagged as exc:
                tags.append(exc.args[0])
        return tags

    results = run_in_threads(N_THREADS, body)
    assert results == [[(i, k) for k in range(ROUNDS)] for i in range(N_THREADS)]


def test_no_lock_is_held_while_user_code_runs(target):
    """Thread A's coroutine waits for something only thread B's call can do."""
    setup = {}

    async def make_event():
        setup["event"] = asyncio.Event()

    target.run(make_event())
    a_started = threading.Event()

    async def waiter():
        a_started.set()
        await setup["event"].wait()
        return "a done"

    async def setter():
        setup["event"].set()
        return "b done"

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        a = pool.submit(target.run, waiter())
        assert a_started.wait(30)
        b = pool.submit(target.run, setter())
        assert b.result(timeout=30) == "b done"
        assert a.result(timeout=30) == "a done"


def test_user_code_calling_run_from_a_worker_thread_it_started(target):
    """A coroutine on the loop waits on a thread that itself calls run() on that loop."""

    async def inner():
        await asyncio.sleep(0)
        return "inner"

    async def outer():
        return await asyncio.to_thread(target.run, inner())

    assert target.run(outer()) == "inner"


@pytest.mark.parametrize("nest", [False, True], ids=["default-path", "nest"])
def test_threads_with_their_own_running_loops(nest):
    n = 16

    def body(i):
        async def main():
            loop = asyncio.get_running_loop()

            async def inner(k):
                await asyncio.sleep(0)
                return i, k, asyncio.get_running_loop() is loop

            return [blockon.run(inner(k), nest=nest) for k in range(ROUNDS)]

        return asyncio.run(main(), debug=True)

    results = run_in_threads(n, body)
    assert results == [[(i, k, nest) for k in range(ROUNDS)] for i in range(n)]


def test_close_while_many_threads_are_calling():
    """Every caller ends with a result, RuntimeError('...closed...') or CancelledError."""
    lt = blockon.LoopThread(name="closing")
    n = 16
    all_called = threading.Barrier(n + 1)

    def body(i):
        outcomes = []
        first = True
        while True:
            try:
                outcomes.append(lt.run(echo(i))[0])
            except RuntimeError as exc:
                assert "closed" in str(exc)
                return outcomes, "closed"
            except concurrent.futures.CancelledError:
                return outcomes, "cancelled"
            if first:
                first = False
                all_called.wait(timeout=30)

    def close_once_all_called() -> None:
        all_called.wait(timeout=30)
        lt.close()

    closer = threading.Thread(target=close_once_all_called)
    closer.start()
    try:
        results = run_in_threads(n, body)
    finally:
        closer.join(30)
    assert lt.closed
    for i, (outcomes, how) in enumerate(results):
        assert outcomes and set(outcomes) == {i}
        assert how in ("closed", "cancelled")


def test_first_use_of_the_default_loop_thread_from_many_threads_at_once():
    proc, _ = run_script(
        """
        import asyncio, threading
        import blockon

        N = 16
        barrier = threading.Barrier(N)
        seen = []

        async def where():
            return asyncio.get_running_loop(), threading.get_ident()

        def body():
            barrier.wait(30)
            default = blockon.default_loop_thread()
            seen.append((default, blockon.run(where())))

        threads = [threading.Thread(target=body) for _ in range(N)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(seen) == N
        assert len({id(d) for d, _ in seen}) == 1, "more than one default loop thread"
        assert len({id(loop) for _, (loop, _) in seen}) == 1, "more than one default loop"
        assert len({ident for _, (_, ident) in seen}) == 1, "more than one loop thread"
        print("ok")
        """
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "ok\n", "")
