"""blockon under pytest-asyncio: async tests whose code under test is sync and uses blockon.

Inside an async test the thread's loop (pytest-asyncio's) is running, so a bare `run()` goes
to the loop thread, and `run(..., nest=True)` runs on the test's own loop, re-entrantly, while
that loop's other tasks (here: a server from an async fixture) keep running.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import blockon
import pytest
import pytest_asyncio

from tests.support import HANG

# --- sync code under test: a library with a sync API over async internals ---------------


async def _lookup(key: str) -> tuple[str, asyncio.AbstractEventLoop, bool]:
    await asyncio.sleep(0)
    return key.upper(), asyncio.get_running_loop(), threading.current_thread().daemon


def lookup(key: str) -> tuple[str, asyncio.AbstractEventLoop, bool]:
    """Sync API: callers never see that it is async underneath."""
    return blockon.run(_lookup(key), timeout=HANG)


class Counter:
    """Async state bound to the loop it was created on."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.lock = asyncio.Lock()
        self.value = 0

    async def bump(self, by: int) -> int:
        assert asyncio.get_running_loop() is self.loop, "Counter used off its loop"
        async with self.lock:
            self.value += by
            return self.value


async def _new_counter() -> Counter:
    return Counter()


class SyncCounter:
    """A sync facade over Counter: the Counter lives on blockon's loop thread."""

    def __init__(self) -> None:
        self._counter = blockon.run(_new_counter(), timeout=HANG)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._counter.loop

    def bump(self, by: int = 1) -> int:
        return blockon.run(self._counter.bump(by), timeout=HANG)


async def ask(port: int, question: str) -> tuple[str, asyncio.AbstractEventLoop]:
    """An async-only client for the line server below."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(question.encode() + b"\n")
        await writer.drain()
        answer = await reader.readline()
    finally:
        writer.close()
        await writer.wait_closed()
    return answer.decode().rstrip("\n"), asyncio.get_running_loop()


def ask_sync(port: int, question: str) -> tuple[str, asyncio.AbstractEventLoop]:
    """Sync code that reaches a server on the caller's own running loop: needs nest=True."""
    return blockon.run(ask(port, question), nest=True, timeout=HANG)


def ask_many_sync(port: int, questions: list[str]) -> list[str]:
    async def all_of_them() -> list[str]:
        answers = await asyncio.gather(*(ask(port, q) for q in questions))
        return [text for text, _ in answers]

    return blockon.run(all_of_them(), nest=True, timeout=HANG)


# --- an async fixture: a real TCP server on the test's own loop -------------------------


@dataclass
class Server:
    port: int
    loop: asyncio.AbstractEventLoop
    handled: list[str] = field(default_factory=list)
    handler_loops: set[asyncio.AbstractEventLoop] = field(default_factory=set)


@pytest_asyncio.fixture
async def server() -> AsyncIterator[Server]:
    loop = asyncio.get_running_loop()
    state: Server

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = (await reader.readline()).decode().rstrip("\n")
            if line:
                state.handled.append(line)
                state.handler_loops.add(asyncio.get_running_loop())
                writer.write(f"answer:{line}\n".encode())
                await writer.drain()
        except ConnectionError:
            pass  # the client gave up (the timeout test below): nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    state = Server(port=srv.sockets[0].getsockname()[1], loop=loop)
    async with srv:
        yield state
    await srv.wait_closed()


# --- tests ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_sync_code_in_async_test_runs_on_loop_thread() -> None:
    test_loop = asyncio.get_running_loop()
    value, ran_on, daemon_thread = lookup("key")
    assert value == "KEY"
    assert ran_on is blockon.default_loop_thread().loop
    assert ran_on is not test_loop
    assert daemon_thread  # blockon's loop thread, not the test's (main) thread
    # The test's loop is usable again straight away.
    assert await asyncio.sleep(0, result="still running") == "still running"


@pytest.mark.asyncio
async def test_sync_facade_keeps_state_on_loop_thread_across_calls() -> None:
    counter = SyncCounter()
    assert counter.loop is blockon.default_loop_thread().loop
    assert [counter.bump(), counter.bump(2), counter.bump(3)] == [1, 3, 6]
    # The state lives on the loop thread; the test can also await it there.
    assert await asyncio.wrap_future(blockon.submit(counter._counter.bump(4))) == 10
    assert counter.bump() == 11


@pytest.mark.asyncio
async def test_sync_code_from_many_tasks_of_the_test_loop() -> None:
    counter = SyncCounter()

    async def worker(i: int) -> str:
        await asyncio.sleep(0)
        counter.bump()
        value, _, _ = lookup(f"w{i}")
        return value

    results = await asyncio.gather(*(worker(i) for i in range(8)))
    assert results == [f"W{i}" for i in range(8)]
    assert counter.bump(0) == 8


@pytest.mark.asyncio
async def test_nest_reaches_server_from_async_fixture(server: Server) -> None:
    test_loop = asyncio.get_running_loop()
    assert server.loop is test_loop  # the fixture's server runs on the test's own loop

    answer, client_loop = ask_sync(server.port, "hello")

    assert answer == "answer:hello"
    assert client_loop is test_loop  # nest=True ran the client on the caller's loop
    assert server.handled == ["hello"]
    assert server.handler_loops == {test_loop}


@pytest.mark.asyncio
async def test_nest_concurrent_requests_and_repeat_calls(server: Server) -> None:
    questions = [f"q{i}" for i in range(10)]
    assert ask_many_sync(server.port, questions) == [f"answer:{q}" for q in questions]
    # Sync calls again and again, interleaved with the test's own awaits.
    for i in range(5):
        answer, _ = ask_sync(server.port, f"again{i}")
        assert answer == f"answer:again{i}"
        text, _ = await ask(server.port, f"awaited{i}")
        assert text == f"answer:awaited{i}"
    assert sorted(server.handled) == sorted(
        questions + [f"again{i}" for i in range(5)] + [f"awaited{i}" for i in range(5)]
    )


@pytest.mark.asyncio
async def test_nest_while_test_loop_has_background_task(server: Server) -> None:
    test_loop = asyncio.get_running_loop()
    started = asyncio.Event()
    release = asyncio.Event()

    async def background() -> str:
        started.set()
        await release.wait()
        return "background finished"

    task = asyncio.create_task(background())

    async def client_then_release() -> tuple[str, str]:
        await started.wait()  # the test loop's other task runs during the nested call
        answer, _ = await ask(server.port, "with-background")
        release.set()
        return answer, await task  # ...and runs to its end while the sync caller waits

    answer, background_result = blockon.run(client_then_release(), nest=True, timeout=HANG)
    assert answer == "answer:with-background"
    assert background_result == "background finished"
    assert task.done()
    assert server.handler_loops == {test_loop}


@pytest.mark.asyncio
async def test_without_nest_the_blocked_test_loop_cannot_answer(server: Server) -> None:
    """Why nest=True is needed: a bare run() sends the client to the loop thread while the
    test's loop, which owns the server, is blocked waiting for it. The request cannot be
    answered until the call gives up."""
    with pytest.raises(TimeoutError):
        blockon.run(ask(server.port, "unanswerable"), timeout=0.5)
    # Once the loop is free again the server works normally.
    text, _ = await ask(server.port, "fine")
    assert text == "answer:fine"


@pytest_asyncio.fixture
async def counter_from_async_fixture() -> SyncCounter:
    # Sync code called from an async fixture: still goes to the loop thread.
    return SyncCounter()


@pytest.mark.asyncio
async def test_async_fixture_made_sync_object(counter_from_async_fixture: SyncCounter) -> None:
    counter = counter_from_async_fixture
    assert counter.loop is blockon.default_loop_thread().loop
    assert counter.loop is not asyncio.get_running_loop()
    assert counter.bump(5) == 5
