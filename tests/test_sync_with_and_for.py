"""``sync()`` twins' call results that are awaitable and also an async context manager or an
async iterable: ``with`` on them is ``async with`` (no await first), iteration is
``async for``, any other use awaits them at the call.

One fake for each shape real SDKs have: awaiting it returns itself (aiosqlite's ``connect()``,
asyncpg's ``create_pool()``); its ``__aenter__`` has side effects of its own (redis'
``Redis``, which counts its users); awaiting it returns something else (asyncpg's
``pool.acquire()``, aiohttp's ``session.get()``); it is awaitable and async iterable
(asyncpg's ``conn.cursor()``); a statement whose result is dropped (aiosqlite's
``db.execute()``). Each is used by ``with``, ``for``, comprehensions, ``list()``,
``ExitStack.enter_context``, and otherwise. Real loops; threads synchronised with barriers.
"""

from __future__ import annotations

import _thread
import asyncio
import contextlib
import signal
import sys
import threading
import types
from collections.abc import AsyncIterator, Generator
from typing import Any

import pytest
from blockon import _sync

from tests.support import HANG, Boom, run_in_threads, run_script, send_sigint_after_started

# --- the fakes ------------------------------------------------------------------------------


class OpensItself:
    """Awaiting it opens it (once) and returns it; its ``__aenter__`` is that same await."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.opened = 0
        self.closed = 0

    def __await__(self) -> Generator[Any, None, OpensItself]:
        return self._open().__await__()

    async def _open(self) -> OpensItself:
        await asyncio.sleep(0)
        if not self.opened:
            self.opened += 1
            self.log.append("open")
        return self

    async def __aenter__(self) -> OpensItself:
        return await self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.closed += 1
        self.log.append("close")

    async def query(self, q: str) -> str:
        self.log.append(q)
        return q.upper()


class CountsUsers:
    """Like redis.asyncio.Redis: awaiting it initializes it and returns it; ``__aenter__``
    also counts a user, and ``__aexit__`` closes it when the last user leaves."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.users = 0
        self.closed = False

    def __await__(self) -> Generator[Any, None, CountsUsers]:
        return self.initialize().__await__()

    async def initialize(self) -> CountsUsers:
        await asyncio.sleep(0)
        self.log.append("initialize")
        return self

    async def __aenter__(self) -> CountsUsers:
        self.users += 1
        return await self.initialize()

    async def __aexit__(self, *exc_info: Any) -> None:
        self.users -= 1
        if self.users == 0:
            self.closed = True
            self.log.append("close")

    async def ping(self) -> str:
        return "PONG"

    @classmethod
    def from_url(cls, log: list[str]) -> CountsUsers:
        """A factory classmethod, as redis' ``Redis.from_url``."""
        return cls(log)


class Conn:
    """A pooled connection."""

    def __init__(self, number: int, log: list[str]) -> None:
        self.number = number
        self.log = log

    async def fetch(self, q: str) -> str:
        await asyncio.sleep(0)
        return f"{q} on {self.number}"

    def cursor(self, n: int) -> CursorFactory:
        """Like asyncpg's: awaitable (a cursor object) and async iterable (the rows)."""
        return CursorFactory(n, self.log)

    def execute(self, statement: str) -> Statement:
        """Like aiosqlite's: awaitable (runs the statement) and an async context manager."""
        return Statement(statement, self.log)


class AcquireContext:
    """Like asyncpg's ``pool.acquire()``: awaiting it acquires a connection (another
    object); ``__aenter__`` acquires one and ``__aexit__`` releases it."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.conn: Conn | None = None

    def __await__(self) -> Generator[Any, None, Conn]:
        return self.pool._acquire().__await__()

    async def __aenter__(self) -> Conn:
        self.conn = await self.pool._acquire()
        return self.conn

    async def __aexit__(self, *exc_info: Any) -> None:
        assert self.conn is not None
        await self.pool.release(self.conn)


class Pool:
    """Hands out connections; ``close()`` fails while any is still in use."""

    def __init__(self, log: list[str] | None = None, *, fail_acquire: bool = False) -> None:
        self.log = [] if log is None else log
        self.in_use: list[Conn] = []
        self.made = 0
        self.fail_acquire = fail_acquire

    def acquire(self) -> AcquireContext:
        return AcquireContext(self)

    get = acquire  # an alias, found through the twin

    async def _acquire(self) -> Conn:
        await asyncio.sleep(0)
        if self.fail_acquire:
            raise Boom("no connection")
        self.made += 1
        conn = Conn(self.made, self.log)
        self.in_use.append(conn)
        self.log.append(f"acquire {conn.number}")
        return conn

    async def release(self, conn: Conn) -> None:
        self.in_use.remove(conn)
        self.log.append(f"release {conn.number}")

    async def close(self) -> None:
        if self.in_use:
            raise RuntimeError(f"{len(self.in_use)} connections were never released")
        self.log.append("pool closed")


class CursorFactory:
    """Awaiting it declares a server-side cursor; iterating it streams the rows."""

    def __init__(self, n: int, log: list[str]) -> None:
        self.n = n
        self.log = log

    def __await__(self) -> Generator[Any, None, Cursor]:
        return self._declare().__await__()

    async def _declare(self) -> Cursor:
        self.log.append("declare")
        return Cursor(self.n)

    def __aiter__(self) -> AsyncIterator[int]:
        return self._rows()

    async def _rows(self) -> AsyncIterator[int]:
        self.log.append("iterate")
        try:
            for i in range(self.n):
                await asyncio.sleep(0)
                self.log.append(f"row {i}")
                yield i
        finally:
            self.log.append("rows closed")


class Cursor:
    def __init__(self, n: int) -> None:
        self.n = n

    async def fetch(self, k: int) -> list[int]:
        return list(range(min(k, self.n)))


class Statement:
    """Awaiting it runs the statement (and fails for "FAIL"); ``async with`` runs it too, and
    closes what it made at exit."""

    def __init__(self, statement: str, log: list[str]) -> None:
        self.statement = statement
        self.log = log

    def __await__(self) -> Generator[Any, None, str]:
        return self._run().__await__()

    async def _run(self) -> str:
        await asyncio.sleep(0)
        if self.statement == "FAIL":
            raise Boom(self.statement)
        self.log.append(self.statement)
        return f"done {self.statement}"

    async def __aenter__(self) -> str:
        return await self._run()

    async def __aexit__(self, *exc_info: Any) -> None:
        self.log.append(f"closed {self.statement}")


def make_driver(log: list[str]) -> types.ModuleType:
    driver = types.ModuleType("fake_driver", "A fake async database driver.")

    def connect() -> OpensItself:
        return OpensItself(log)

    def create_pool() -> Pool:
        return Pool(log)

    async def connect_async() -> OpensItself:
        return OpensItself(log)

    vars(driver).update(
        connect=connect, create_pool=create_pool, connect_async=connect_async, Client=CountsUsers
    )
    return driver


@pytest.fixture
def log() -> list[str]:
    return []


@pytest.fixture
def db(target, log) -> Any:
    """The fake driver's module twin, on the target's loop thread."""
    return target.api.sync(make_driver(log))


@pytest.fixture
def pool(db) -> Any:
    """A pool twin; the test fails if a connection is left in use."""
    pool = db.create_pool()
    yield pool
    pool.close()


# --- await returning itself -----------------------------------------------------------------


def test_with_on_what_awaits_to_itself_enters_it_once(db, log):
    with db.connect() as conn:
        assert conn.query("q") == "Q"
        assert isinstance(conn.__wrapped__, OpensItself)
    assert log == ["open", "q", "close"]
    assert (conn.__wrapped__.opened, conn.__wrapped__.closed) == (1, 1)


def test_kept_first_then_entered_mirrors_await_then_async_with(db, log):
    conn = db.connect()  # await obj.connect(): opened now
    assert log == ["open"]
    with conn:  # async with conn: its __aenter__ awaits it again (already open), then exits
        conn.query("q")
    assert log == ["open", "q", "close"]


def test_a_constructor_whose_instances_open_by_await(target, log):
    Conn = target.api.sync(OpensItself)
    with Conn(log) as conn:
        assert isinstance(conn, Conn)
        conn.query("x")
    assert log == ["open", "x", "close"]
    opened = Conn(log)  # not entered: awaited at the call
    assert opened.__wrapped__.opened == 1


# --- an __aenter__ with side effects of its own ---------------------------------------------


def test_with_goes_through_aenter_and_aexit(db, log):
    with db.Client(log) as client:  # a class reached through the module twin
        assert client.__wrapped__.users == 1
        assert client.ping() == "PONG"
    assert client.__wrapped__.closed
    assert log == ["initialize", "close"]


def test_with_on_what_a_factory_classmethod_returns(db, log):
    with db.Client.from_url(log) as client:
        assert client.__wrapped__.users == 1
    assert client.__wrapped__.closed
    assert log == ["initialize", "close"]  # entered, not awaited first


def test_nested_users_close_it_once_at_the_last_exit(db, log):
    with db.Client(log) as client:
        with client as inner:
            assert inner is client
            assert client.__wrapped__.users == 2
        assert not client.__wrapped__.closed
    assert client.__wrapped__.closed and client.__wrapped__.users == 0


def test_awaited_then_entered_counts_one_user(db, log):
    client = db.Client(log)  # awaited: initialized, no user counted
    assert client.__wrapped__.users == 0
    with client:
        assert client.__wrapped__.users == 1
    assert client.__wrapped__.closed


# --- await returning something else ---------------------------------------------------------


def test_with_acquires_and_releases_through_the_manager(pool, log):
    with pool.acquire() as conn:
        assert isinstance(conn.__wrapped__, Conn)
        assert conn.fetch("q") == "q on 1"
        assert len(pool.in_use) == 1
    assert pool.in_use == []
    assert log == ["acquire 1", "release 1"]


def test_awaited_when_kept_as_the_async_code_would(pool):
    conn = pool.acquire()  # conn = await pool.acquire()
    assert isinstance(conn.__wrapped__, Conn)
    assert len(pool.in_use) == 1
    pool.release(conn)
    assert pool.in_use == []


def test_the_bodys_error_releases_and_the_pool_closes(pool, log):
    with pytest.raises(Boom), pool.acquire():
        raise Boom("in the body")
    assert pool.in_use == []
    assert log[-1] == "release 1"


def test_an_aenter_error_acquires_nothing(target, db):
    pool = target.api.sync(Pool([], fail_acquire=True))
    with pytest.raises(Boom, match="no connection"), pool.acquire():
        raise AssertionError("the body must not run")
    assert pool.in_use == []


def test_a_result_acquired_but_not_handed_over_is_released(target, pool, monkeypatch):
    registry = _sync.registry_of(target.thread)

    def fail(value: Any) -> Any:
        raise Boom("cannot hand it over")

    monkeypatch.setattr(registry, "adopt", fail)
    with pytest.raises(Boom, match="cannot hand it over"), pool.acquire():
        raise AssertionError("the body must not run")
    monkeypatch.undo()
    assert pool.in_use == []


def test_several_managers_in_one_with(pool):
    with pool.acquire() as a, pool.acquire() as b:
        assert (a.__wrapped__.number, b.__wrapped__.number) == (1, 2)
        assert len(pool.in_use) == 2
    assert pool.in_use == []


def test_a_callee_bound_to_a_name_or_an_alias(pool):
    acquire = pool.acquire
    with acquire() as conn:
        assert len(pool.in_use) == 1
    with pool.get() as conn:  # `get = acquire` in the class: found through the twin
        assert isinstance(conn.__wrapped__, Conn)
    assert pool.in_use == []


def test_exit_stack_enter_context(pool):
    with contextlib.ExitStack() as stack:
        conn = stack.enter_context(pool.acquire())
        assert isinstance(conn.__wrapped__, Conn)
        assert len(pool.in_use) == 1
    assert pool.in_use == []


def test_with_inside_a_comprehension(pool):
    with contextlib.ExitStack() as stack:
        conns = [stack.enter_context(pool.acquire()) for _ in range(3)]
        assert [c.__wrapped__.number for c in conns] == [1, 2, 3]
        assert len(pool.in_use) == 3
    assert pool.in_use == []

    def fetched(n: int) -> Generator[str, None, None]:
        for i in range(n):
            with pool.acquire() as conn:
                yield conn.fetch(f"q{i}")

    assert [row for row in fetched(2)] == ["q0 on 4", "q1 on 5"]
    assert pool.in_use == []


def test_many_threads_share_one_pool(pool):
    def body(i: int) -> str:
        with pool.acquire() as conn:
            return str(conn.fetch(f"t{i}"))

    assert len(run_in_threads(16, body)) == 16
    assert pool.in_use == []
    assert pool.__wrapped__.made == 16


# --- awaitable and async iterable -----------------------------------------------------------


def test_for_is_async_for_lockstep(pool, log):
    with pool.acquire() as conn:
        for row in conn.cursor(5):
            if row == 1:
                break
        assert log[1:] == ["iterate", "row 0", "row 1", "rows closed"]  # lockstep, closed
        assert "declare" not in log


def test_every_iteration_is_async_for(pool, log):
    # Each use is on a line of its own: pytest rewrites `assert` statements, and a call
    # inside one has its result stored first (so it is awaited, as `x = twin.f()` is).
    with pool.acquire() as conn:
        listed = list(conn.cursor(3))
        comprehended = [row * 10 for row in conn.cursor(2)]
        a_set = {row for row in conn.cursor(2)}
        ordered = sorted(conn.cursor(3))
        a_tuple = tuple(conn.cursor(2))
        starred = [*conn.cursor(2)]
        first, second = conn.cursor(2)
        total = sum(row for row in conn.cursor(4))  # a generator expression

        def rows() -> Generator[int, None, None]:
            yield from conn.cursor(2)

        yielded = list(rows())
    assert listed == [0, 1, 2]
    assert comprehended == [0, 10]
    assert a_set == {0, 1}
    assert ordered == [0, 1, 2]
    assert a_tuple == (0, 1)
    assert starred == [0, 1]
    assert (first, second) == (0, 1)
    assert total == 6
    assert yielded == [0, 1]
    assert "declare" not in log


def test_any_other_use_awaits_it(pool, log):
    with pool.acquire() as conn:
        cursor = conn.cursor(5)  # cursor = await conn.cursor(5)
        assert cursor.fetch(2) == [0, 1]
        assert conn.cursor(3).fetch(9) == [0, 1, 2]
    assert log.count("declare") == 2
    assert "iterate" not in log


# --- a dropped result with side effects -----------------------------------------------------


def test_a_dropped_result_runs_before_the_next_line(pool, log):
    with pool.acquire() as conn:
        conn.execute("INSERT 1")
        log.append("next line")
        conn.execute("INSERT 2")
        assert log[1:] == ["INSERT 1", "next line", "INSERT 2"]
        with pytest.raises(Boom, match="FAIL"):
            conn.execute("FAIL")  # its error is raised at the call
        with conn.execute("SELECT") as done:  # async with: run, then closed at exit
            assert done == "done SELECT"
        assert log[-2:] == ["SELECT", "closed SELECT"]


# --- what keeps today's behaviour -----------------------------------------------------------


def test_async_def_results_are_awaited_as_before(db, log):
    with db.connect_async() as conn:  # the coroutine is awaited; `with` enters its result
        conn.query("q")
    assert log == ["open", "q", "close"]


def test_called_from_c_code_the_result_is_awaited(pool):
    with pool.acquire() as conn:
        cursors = list(map(conn.cursor, [1, 2]))  # map() calls the twin: cannot tell
        assert [c.fetch(9) for c in cursors] == [[0], [0, 1]]
        for cursor in map(conn.cursor, [3]):
            assert cursor.fetch(9) == [0, 1, 2]


def test_without_source_positions_it_awaits_at_once():
    # `python -X no_debug_ranges` leaves the call sites unreadable: the result is awaited at
    # the call, and `with` then enters what the await returned.
    proc, _ = run_script(
        """
        import asyncio
        import blockon


        class Client:
            def __init__(self):
                self.users, self.inits = 0, 0

            def __await__(self):
                return self.init().__await__()

            async def init(self):
                self.inits += 1
                return self

            async def __aenter__(self):
                self.users += 1
                return await self

            async def __aexit__(self, *exc_info):
                self.users -= 1


        with blockon.sync(Client)() as client:
            print(client.__wrapped__.inits, client.__wrapped__.users)
        print(client.__wrapped__.users)
        """,
        "-X",
        "no_debug_ranges",
    )
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout.split() == ["2", "1", "0"]


# --- Ctrl-C ----------------------------------------------------------------------------------

CTRL_C_SCRIPT = """
import asyncio
import threading

import blockon


class Acquire:
    def __init__(self, pool):
        self.pool = pool

    def __await__(self):
        return self.pool.take().__await__()

    async def __aenter__(self):
        return await self.pool.take()

    async def __aexit__(self, *exc_info):
        await asyncio.sleep(0)  # a release that needs the loop
        self.pool.in_use -= 1
        print("released", exc_info[0].__name__, flush=True)


class Pool:
    in_use = 0

    def acquire(self):
        return Acquire(self)

    async def take(self):
        self.in_use += 1
        return "conn"


pool = blockon.sync(Pool())
try:
    with pool.acquire() as conn:
        print("started", flush=True)
        threading.Event().wait()  # sync work in the body, interrupted by Ctrl-C
finally:
    print("in use", pool.in_use, flush=True)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_in_the_body_releases_what_with_acquired():
    done = send_sigint_after_started(CTRL_C_SCRIPT, exit_within=10)
    assert done.texts == ["released KeyboardInterrupt", "in use 0"], done.stderr
    assert done.returncode == -signal.SIGINT, done.stderr


class Signal:
    """Awaiting it sets an event; it is an async context manager too."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __await__(self) -> Generator[Any, None, None]:
        return self._set().__await__()

    async def _set(self) -> None:
        self.event.set()

    async def __aenter__(self) -> None:
        await self._set()

    async def __aexit__(self, *exc_info: Any) -> None:
        pass


class Signals:
    def signal(self, event: threading.Event) -> Signal:
        return Signal(event)

    async def ping(self) -> str:  # an async method: its instances get twins
        return "pong"


def test_called_with_no_python_frame_above_it_awaits(target):
    # A thread started from C code runs the twin with no Python frame above it.
    signals = target.api.sync(Signals())
    event = threading.Event()
    _thread.start_new_thread(signals.signal, (event,))
    assert event.wait(HANG)
