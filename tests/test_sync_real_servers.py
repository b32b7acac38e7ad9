"""Twins of real async-only SDKs against real servers on 127.0.0.1, used the way the SDKs'
docs show: asyncpg with PostgreSQL, redis.asyncio with redis-server.

- ``with sync(redis.asyncio).Redis(...) as r:`` closes the client at exit (the server's
  ``CLIENT LIST`` no longer shows it);
- ``with pool.acquire() as conn:`` on an asyncpg pool twin releases the connection (the
  pool's sizes and the server's ``pg_stat_activity`` say so);
- ``for row in conn.cursor(query):`` inside a transaction streams the rows;
- a transaction commits or rolls back; a pool is shared by 16 threads; failures leave
  nothing acquired, and the pool closes;
- ``blockon.call(asyncpg.create_pool, dsn)`` makes a pool that belongs to the loop thread.

The servers come from ``tests/servers.py``: those named by ``BLOCKON_TEST_POSTGRES`` and
``BLOCKON_TEST_REDIS`` (``.ci/run`` starts them), else started here from the installed
binaries. Tests skip, saying why, only when a server or SDK is not installed, and fail
instead under ``BLOCKON_REQUIRE_SERVERS=1`` (CI must run them). Checks of the servers' own
view wait for it to change by asking again, bounded in time: never a sleep.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, NoReturn
from urllib.parse import urlsplit

import pytest

from tests import servers
from tests.support import HANG, Boom, run_in_threads

REQUIRED = os.environ.get("BLOCKON_REQUIRE_SERVERS") == "1"


def missing(what: str) -> NoReturn:
    """Skip, saying what is missing; under BLOCKON_REQUIRE_SERVERS=1 (CI), fail instead."""
    if REQUIRED:
        pytest.fail(f"{what}, and BLOCKON_REQUIRE_SERVERS=1 says these tests must run here")
    pytest.skip(what)


def library(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        missing(f"{name} is not installed: pip install -e '.[test]'")


def server(env: str, what: str, find: Callable[[], Any], start: Callable[[Any], Any]) -> Any:
    """The address of the server ``env`` names, else of one started from its binary."""
    given = os.environ.get(env)
    if given:
        yield given
        return
    binary = find()
    if binary is None:
        missing(
            f"{what} is not installed: install it (Debian: apt-get install {what}), or set {env}"
        )
    started = start(binary)
    try:
        yield started.url
    finally:
        started.stop()


@pytest.fixture(scope="module")
def postgres_dsn() -> Iterator[str]:
    yield from server(
        servers.POSTGRES_ENV, "postgresql", servers.postgres_bindir, servers.start_postgres
    )


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    yield from server(servers.REDIS_ENV, "redis-server", servers.redis_server, servers.start_redis)


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    """A name no other client has: the application or client name the server shows."""
    return f"blockon-{request.node.name[:30]}-{uuid.uuid4().hex[:8]}"


def eventually(check: Callable[[], bool], what: str) -> None:
    """Ask the server again until ``check()`` holds: a closed connection leaves the server's
    lists a moment after the client let it go."""
    deadline = time.monotonic() + HANG
    while not check():
        assert time.monotonic() < deadline, f"still not true after {HANG} s: {what}"


# --- redis.asyncio --------------------------------------------------------------------------


@pytest.fixture
def redis_asyncio() -> Any:
    return library("redis.asyncio")


def client_names(url: str) -> list[str]:
    """The names of the clients connected to the server, from its own CLIENT LIST."""
    redis = library("redis")
    with redis.Redis.from_url(url) as admin:
        return [client.get("name", "") for client in admin.client_list()]


def test_redis_with_closes_the_client_at_exit(target, redis_url, redis_asyncio, name):
    host, port = urlsplit(redis_url).hostname, urlsplit(redis_url).port
    aioredis = target.api.sync(redis_asyncio)
    with aioredis.Redis(host=host, port=port, client_name=name) as r:
        r.set(name, "value")
        assert r.get(name) == b"value"
        assert name in client_names(redis_url)
    eventually(lambda: name not in client_names(redis_url), f"{name} disconnected")


def test_redis_kept_client_then_aclose(target, redis_url, redis_asyncio, name):
    aioredis = target.api.sync(redis_asyncio)
    r = aioredis.Redis.from_url(redis_url, client_name=name)  # awaited: initialized
    try:
        assert r.ping() is True
        assert name in client_names(redis_url)
    finally:
        r.aclose()
    eventually(lambda: name not in client_names(redis_url), f"{name} disconnected")


def test_redis_pipeline_and_many_threads(target, redis_url, redis_asyncio, name):
    aioredis = target.api.sync(redis_asyncio)
    with aioredis.Redis.from_url(redis_url, client_name=name) as r:
        with r.pipeline(transaction=True) as pipe:
            pipe.set(name, 1)
            pipe.incr(name)
            assert pipe.execute() == [True, 2]

        def increment(i: int) -> None:
            for _ in range(10):
                r.incr(name)

        run_in_threads(16, increment)
        assert r.get(name) == b"162"
        r.delete(name)
    eventually(lambda: name not in client_names(redis_url), f"{name} disconnected")


# --- asyncpg --------------------------------------------------------------------------------


@pytest.fixture
def asyncpg() -> Any:
    return library("asyncpg")


def backends(dsn: str, application: str) -> int:
    """How many server processes serve clients named ``application`` (pg_stat_activity),
    asked over a connection of its own, made and closed by asyncio.run in this thread."""
    asyncpg = library("asyncpg")

    async def count() -> int:
        conn = await asyncpg.connect(dsn)
        try:
            query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
            return int(await conn.fetchval(query, application))
        finally:
            await conn.close()

    return asyncio.run(count())


def settings(name: str) -> dict[str, Any]:
    return {"server_settings": {"application_name": name}}


def test_call_makes_a_pool_that_belongs_to_the_loop_thread(target, postgres_dsn, asyncpg, name):
    pool = target.api.call(
        asyncpg.create_pool, postgres_dsn, min_size=1, max_size=2, **settings(name)
    )
    try:
        assert target.run(pool.fetchval("SELECT 40 + 2")) == 42
        assert backends(postgres_dsn, name) == 1
    finally:
        target.run(pool.close(), timeout=HANG)
    eventually(lambda: backends(postgres_dsn, name) == 0, "the pool's connections closed")


def test_with_pool_acquire_releases_the_connection(target, postgres_dsn, asyncpg, name):
    db = target.api.sync(asyncpg)
    with db.create_pool(postgres_dsn, min_size=2, max_size=2, **settings(name)) as pool:
        assert (pool.get_size(), pool.get_idle_size()) == (2, 2)
        with pool.acquire() as conn:
            assert conn.fetchval("SELECT $1::int * 2", 21) == 42
            assert pool.get_idle_size() == 1
        assert pool.get_idle_size() == 2  # released at the end of the block
        assert backends(postgres_dsn, name) == 2
        conn = pool.acquire()  # kept: conn = await pool.acquire()
        assert pool.get_idle_size() == 1
        pool.release(conn)
        assert pool.get_idle_size() == 2
    eventually(lambda: backends(postgres_dsn, name) == 0, "the pool closed at the end of with")


def test_for_row_in_a_cursor_inside_a_transaction(target, postgres_dsn, asyncpg, name):
    db = target.api.sync(asyncpg)
    with db.create_pool(postgres_dsn, min_size=1, max_size=1, **settings(name)) as pool:
        with pool.acquire() as conn:
            query = "SELECT generate_series(1, 500)"
            with pytest.raises(asyncpg.exceptions.NoActiveSQLTransactionError):
                for _ in conn.cursor(query):  # asyncpg's own rule, as under async for
                    pass
            with conn.transaction():
                rows = [row[0] for row in conn.cursor(query, prefetch=50)]
                for row in conn.cursor(query):
                    if row[0] == 3:
                        break  # lockstep: the rest is never fetched
                cursor = conn.cursor(query)  # cursor = await conn.cursor(query)
                first = [row[0] for row in cursor.fetch(3)]
            assert conn.fetchval("SELECT 1") == 1  # the connection is usable afterwards
        assert pool.get_idle_size() == 1
    assert rows == list(range(1, 501))
    assert first == [1, 2, 3]


def test_a_transaction_commits_or_rolls_back(target, postgres_dsn, asyncpg, name):
    table = f"notes_{uuid.uuid4().hex[:8]}"
    db = target.api.sync(asyncpg)
    pool_options = {"min_size": 1, "max_size": 2, **settings(name)}
    with db.create_pool(postgres_dsn, **pool_options) as pool, pool.acquire() as conn:
        conn.execute(f"CREATE TABLE {table} (id serial PRIMARY KEY, text text)")
        try:
            with pytest.raises(Boom), conn.transaction():
                conn.execute(f"INSERT INTO {table} (text) VALUES ('rolled back')")
                raise Boom("abort")
            with conn.transaction():
                conn.execute(f"INSERT INTO {table} (text) VALUES ('kept')")
            with pool.acquire() as other:  # another connection sees what was committed
                rows = other.fetch(f"SELECT text FROM {table}")
            assert [row["text"] for row in rows] == ["kept"]
        finally:
            conn.execute(f"DROP TABLE {table}")


def test_a_pool_shared_by_16_threads(target, postgres_dsn, asyncpg, name):
    db = target.api.sync(asyncpg)
    with db.create_pool(postgres_dsn, min_size=1, max_size=4, **settings(name)) as pool:

        def work(i: int) -> list[int]:
            out = []
            for j in range(5):
                with pool.acquire() as conn:
                    out.append(conn.fetchval("SELECT $1::int", i * 10 + j))
            return out

        results = run_in_threads(16, work)
        assert results == [[i * 10 + j for j in range(5)] for i in range(16)]
        assert pool.get_idle_size() == pool.get_size() <= 4
        assert backends(postgres_dsn, name) <= 4
    eventually(lambda: backends(postgres_dsn, name) == 0, "the pool closed")


def test_failures_release_what_they_acquired_and_the_pool_closes(
    target, postgres_dsn, asyncpg, name
):
    db = target.api.sync(asyncpg)
    pool = db.create_pool(postgres_dsn, min_size=1, max_size=1, **settings(name))
    try:
        with pytest.raises(asyncpg.exceptions.UndefinedTableError), pool.acquire() as conn:
            conn.fetch("SELECT * FROM no_such_table")
        with pytest.raises(Boom), pool.acquire():
            raise Boom("in the body")
        assert pool.get_idle_size() == 1
        # The only connection is taken: acquiring another times out.
        with pool.acquire(), pytest.raises(TimeoutError), pool.acquire(timeout=0.05):
            raise AssertionError("the body must not run")
        assert pool.get_idle_size() == 1
    finally:
        target.run(pool.__wrapped__.close(), timeout=HANG)  # never hangs: nothing held
    eventually(lambda: backends(postgres_dsn, name) == 0, "the pool closed")
