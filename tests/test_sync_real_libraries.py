"""Two real async-only libraries used through their ``sync()`` twins: aiosqlite (a module
twin: connect, create, insert, query, a cursor iterated, ``with`` on a connection and on a
cursor) and httpx (``AsyncClient``'s twin class against a local server: get, post, errors,
a response streamed line by line).

Real loops on every kind of loop thread; the server is a stdlib HTTP server on 127.0.0.1 in a
thread, synchronised with events, never sleeps.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import sqlite3
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import HANG, run_in_threads

aiosqlite = pytest.importorskip("aiosqlite")
httpx = pytest.importorskip("httpx")


# --- aiosqlite -----------------------------------------------------------------------------


def test_aiosqlite_with_on_a_connection(target):
    sqlite = target.api.sync(aiosqlite)
    with sqlite.connect(":memory:") as db:
        assert isinstance(db, target.api.sync(aiosqlite.Connection))
        db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
        db.execute("INSERT INTO notes (text) VALUES (?)", ("first",))
        db.executemany("INSERT INTO notes (text) VALUES (?)", [("second",), ("third",)])
        db.commit()
        assert db.total_changes == 3  # a property, read through

        cursor = db.execute("SELECT id, text FROM notes ORDER BY id")
        assert cursor.fetchone() == (1, "first")
        assert cursor.fetchall() == [(2, "second"), (3, "third")]
        cursor.close()

        cursor = db.execute("SELECT text FROM notes ORDER BY id")
        assert [row[0] for row in cursor] == ["first", "second", "third"]  # async for

        with db.execute("SELECT count(*) FROM notes") as counted:  # the cursor's own with
            assert counted.fetchone() == (3,)
        with pytest.raises(sqlite3.ProgrammingError, match="closed cursor"):
            counted.fetchone()  # closed by the cursor's __aexit__

        assert db.execute_fetchall("SELECT text FROM notes WHERE id > ?", (2,)) == [("third",)]
        row_id = db.execute_insert("INSERT INTO notes (text) VALUES ('fourth')")
        assert row_id == (4,)

        db.row_factory = sqlite.Row  # a property set, through
        row = db.execute("SELECT id, text FROM notes WHERE id = 4").fetchone()
        assert isinstance(row, sqlite3.Row)
        assert dict(row) == {"id": 4, "text": "fourth"}
    # `with` exited through __aexit__ (close), without awaiting the connection twice
    assert db.__wrapped__._connection is None
    with pytest.raises(ValueError, match="no active connection"):
        db.execute("SELECT 1")


def test_aiosqlite_connect_then_close_and_errors(target, tmp_path):
    sqlite = target.api.sync(aiosqlite)
    path = str(tmp_path / "notes.db")
    db = sqlite.connect(path)  # awaited at once: connected now
    try:
        db.execute("CREATE TABLE t (x INTEGER)")
        db.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(200)])
        db.commit()
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            db.execute("SELECT * FROM missing")
    finally:
        db.close()

    with sqlite.connect(path, iter_chunk_size=16) as again:  # another connection sees it
        cursor = again.execute("SELECT x FROM t ORDER BY x")
        seen = list(cursor)
        assert [x for (x,) in seen] == list(range(200))
        cursor.close()


def test_aiosqlite_one_connection_many_threads(target):
    sqlite = target.api.sync(aiosqlite)
    with sqlite.connect(":memory:") as db:
        db.execute("CREATE TABLE hits (thread INTEGER, n INTEGER)")

        def insert(i: int) -> None:
            for n in range(25):
                db.execute("INSERT INTO hits VALUES (?, ?)", (i, n))

        run_in_threads(4, insert)
        db.commit()
        assert db.execute_fetchall("SELECT count(*) FROM hits") == [(100,)]


# --- httpx ---------------------------------------------------------------------------------


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    release: threading.Event  # set per server: lets /stream send its second part

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def do_GET(self) -> None:
        if self.path.startswith("/hello"):
            self._send(200, json.dumps({"hello": self.path}).encode())
        elif self.path == "/missing":
            self._send(404, b"no", "text/plain")
        elif self.path == "/stream":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self._chunk(b"one\n")
            released = self.server.release.wait(HANG)  # type: ignore[attr-defined]
            # A client that stops after the first line (the tests that break out early) has
            # closed the connection by now.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self._chunk(b"two\nthree\n" if released else b"timed out\n")
                self._chunk(b"")
        else:
            self._send(400, b"?", "text/plain")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self._send(200, json.dumps({"echo": json.loads(body)}).encode())


@pytest.fixture(scope="module")
def http_server() -> Iterator[Any]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.release = threading.Event()  # type: ignore[attr-defined]
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"  # type: ignore[attr-defined]
    thread = threading.Thread(target=srv.serve_forever, name="test-http")
    thread.start()
    try:
        yield srv
    finally:
        srv.release.set()  # type: ignore[attr-defined]
        srv.shutdown()
        srv.server_close()
        thread.join(HANG)


@pytest.fixture
def server(http_server: Any) -> Iterator[Any]:
    """The local server, with a fresh `release` event for /stream."""
    http_server.release = threading.Event()
    try:
        yield http_server
    finally:
        http_server.release.set()  # never leave a handler waiting


def test_httpx_client_twin_get_post_and_errors(target, server):
    Client = target.api.sync(httpx.AsyncClient)
    with Client(base_url=server.url) as client:
        assert isinstance(client, Client)
        response = client.get("/hello/ada")
        assert isinstance(response, target.api.sync(httpx.Response))
        assert response.status_code == 200
        assert response.json() == {"hello": "/hello/ada"}
        assert response.headers["content-type"] == "application/json"
        assert client.post("/echo", json={"x": [1, 2]}).json() == {"echo": {"x": [1, 2]}}
        missing = client.get("/missing")
        assert missing.status_code == 404
        with pytest.raises(httpx.HTTPStatusError):
            missing.raise_for_status()
    assert client.is_closed  # __aexit__ closed it


def test_httpx_stream_lines(target, server):
    hx = target.api.sync(httpx)  # the whole module, twinned
    with hx.AsyncClient() as client, client.stream("GET", f"{server.url}/stream") as response:
        assert response.status_code == 200
        lines = response.aiter_lines()
        # The first line arrives while the server still holds back the rest: streamed.
        assert next(lines) == "one"
        assert not server.release.is_set()
        server.release.set()
        assert list(lines) == ["two", "three"]
    assert response.is_closed


def test_httpx_stream_left_part_way(target, server):
    Client = target.api.sync(httpx.AsyncClient)
    with Client() as client:
        with client.stream("GET", f"{server.url}/stream") as response:
            lines = response.aiter_lines()
            assert next(lines) == "one"
            lines.close()  # aclose() on the loop; the rest is never read
            server.release.set()
        assert response.is_closed
        assert client.get(f"{server.url}/hello/after").status_code == 200


def test_httpx_one_client_many_threads(target, server):
    Client = target.api.sync(httpx.AsyncClient)
    with Client(base_url=server.url) as client:

        def fetch(i: int) -> None:
            for j in range(5):
                path = f"/hello/{i}-{j}"
                assert client.get(path).json() == {"hello": path}

        run_in_threads(6, fetch)
