"""What the generated stubs of ``sdk_twins`` (httpx, aiosqlite, redis.asyncio) type their
twins as. Checked by mypy --strict and by pyright (``tests/test_stubgen.py``), against the
stubs ``python -m blockon stubgen sdk_twins`` wrote; every line whose comment starts with
"error" must be reported by both checkers, and nothing else. Not run: no server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import assert_type

import aiosqlite
import httpx
from sdk_twins import Client, Redis, sqlite


def http(url: str) -> None:
    with Client(timeout=5) as client:  # `with` is `async with`
        assert_type(client, Client)
        response = client.get(url, params={"q": "x"})  # httpx.Response, twinned
        assert_type(response.status_code, int)
        assert_type(response.text, str)
        assert_type(response.__wrapped__, httpx.Response)
        assert_type(response.aread(), bytes)  # an async method: awaited
        assert_type(response.aiter_bytes(), Iterator[bytes])  # an async generator
        with client.stream("GET", url) as streamed:  # an @asynccontextmanager method
            assert_type(streamed.status_code, int)
            for line in streamed.aiter_lines():
                assert_type(line, str)
        client.get(url, timeout="slow")  # error (a str for a timeout)
        print(response.missing)  # error (no such attribute)


def database() -> None:
    with sqlite.connect(":memory:") as db:  # awaitable and an async context manager
        assert_type(db.__wrapped__, aiosqlite.Connection)
        cursor = db.execute("select 1")
        assert_type(cursor.fetchone(), aiosqlite.Row | None)
        for row in cursor:  # `for` is `async for`
            assert_type(row, aiosqlite.Row)
        assert_type(db.total_changes, int)
        db.execute(1)  # error (sql is a str)
    kept = sqlite.connect(":memory:")  # awaited at the call
    assert_type(kept.in_transaction, bool)
    kept.close()


def cache() -> None:
    with Redis(host="localhost", decode_responses=True) as r:
        assert_type(r.set("key", "value"), bool | str | bytes | None)
        assert_type(r.get("key"), str | bytes | None)
        assert_type(r.ping(), bool)
        r.set("key")  # error (set needs a value)
