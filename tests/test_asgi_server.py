"""blockon inside an ASGI app: Starlette served by uvicorn on 127.0.0.1.

A real server, real sockets, a real async-only client. The app reaches the client through
blockon from every place a web app runs code:

* a sync (``def``) endpoint, which Starlette runs in its anyio threadpool (a thread with no
  running loop): ``blockon.run(...)`` goes to blockon's default loop thread, and
  ``blockon.run(..., loop=app_loop)`` reaches a client bound to the server's own loop;
* an async endpoint that moves sync code off the loop with ``await blockon.to_thread(fn)``:
  inside ``fn`` a bare ``blockon.run(...)`` runs on the server's loop (its home loop);
* an async endpoint that calls sync code directly (the server's loop is running in the caller's
  thread): the default path goes to the loop thread, ``nest=True`` runs re-entrantly on the
  server's loop (stdlib asyncio), or raises ``RuntimeError`` at once (uvloop).

The async-only client is loop-bound, like aiohttp's or httpx's: it refuses to be used from any
loop but the one it was created on, so every call proves blockon routed it to the right loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import blockon
import pytest

from tests.support import HANG

pytest.importorskip("starlette")
uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

import httpx  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

N_REQUESTS = 40  # per endpoint; more than Starlette's threadpool (40 tokens) handles at once


# --- the backend and its async-only client -------------------------------------------------


async def _backend_handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A line protocol: each line comes back upper-cased, with a prefix."""
    try:
        while line := await reader.readline():
            writer.write(b"BACKEND:" + line.upper())
            await writer.drain()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


class AsyncOnlyClient:
    """An async-only client bound to the loop it was created on.

    Like real async SDKs, it must be used from that loop only: any other loop is an error.
    """

    def __init__(self, port: int) -> None:
        self.loop = asyncio.get_running_loop()
        self.port = port
        self.calls = 0

    async def ask(self, text: str) -> dict[str, Any]:
        running = asyncio.get_running_loop()
        if running is not self.loop:
            raise RuntimeError(f"client bound to {self.loop!r} used from {running!r}")
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(text.encode() + b"\n")
            await writer.drain()
            reply = (await reader.readline()).decode().rstrip("\n")
        finally:
            writer.close()
            await writer.wait_closed()
        self.calls += 1
        return {"reply": reply, "thread": threading.get_ident()}


@pytest.fixture(scope="module")
def backend() -> Iterator[int]:
    """The backend server, on a LoopThread of its own; yields its port."""
    lt = blockon.LoopThread(name="test-asgi-backend")

    async def start() -> asyncio.base_events.Server:
        return await asyncio.start_server(_backend_handle, "127.0.0.1", 0)

    server = lt.run(start())
    port = server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:

        async def stop() -> None:
            server.close()
            await server.wait_closed()

        lt.run(stop())
        lt.close()


# --- the app -------------------------------------------------------------------------------


def make_app(backend_port: int) -> tuple[Starlette, dict[str, Any]]:
    state: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Created on the server's own loop: only usable there.
        state["app_loop"] = asyncio.get_running_loop()
        state["app_thread"] = threading.get_ident()
        state["app_client"] = AsyncOnlyClient(backend_port)
        yield

    def thread_client() -> AsyncOnlyClient:
        # Created once, lazily, on blockon's default loop thread.
        if "thread_client" not in state:
            with state.setdefault("lock", threading.Lock()):
                if "thread_client" not in state:

                    async def make() -> AsyncOnlyClient:
                        return AsyncOnlyClient(backend_port)

                    state["thread_client"] = blockon.run(make())
        return state["thread_client"]  # type: ignore[no-any-return]

    # A sync helper, the kind a sync SDK wrapper or a legacy module provides.
    def fetch_via_loop_thread(text: str) -> dict[str, Any]:
        return blockon.run(thread_client().ask(text), timeout=HANG)

    def sync_default(request: Request) -> JSONResponse:
        """def endpoint (threadpool): bare blockon.run goes to the default loop thread."""
        assert threading.get_ident() != state["app_thread"]
        result = fetch_via_loop_thread(request.query_params["q"])
        return JSONResponse({**result, "where": "loop-thread"})

    def sync_app_loop(request: Request) -> JSONResponse:
        """def endpoint (threadpool): loop= reaches the client bound to the server's loop."""
        assert threading.get_ident() != state["app_thread"]
        client = state["app_client"]
        result = blockon.run(
            client.ask(request.query_params["q"]), loop=state["app_loop"], timeout=HANG
        )
        return JSONResponse({**result, "where": "app-loop"})

    async def async_to_thread(request: Request) -> JSONResponse:
        """async endpoint: sync code moved off the loop; inside, bare run() goes home."""
        client = state["app_client"]

        def sync_fn(text: str) -> dict[str, Any]:
            assert threading.get_ident() != state["app_thread"]
            return blockon.run(client.ask(text), timeout=HANG)

        result = await blockon.to_thread(sync_fn, request.query_params["q"])
        return JSONResponse({**result, "where": "app-loop"})

    async def async_direct(request: Request) -> JSONResponse:
        """async endpoint calling sync code in place: the default path, the loop thread."""
        result = fetch_via_loop_thread(request.query_params["q"])
        return JSONResponse({**result, "where": "loop-thread"})

    async def async_nest(request: Request) -> JSONResponse:
        """async endpoint: nest=True on the server's own loop (RuntimeError on uvloop)."""
        client = state["app_client"]
        coro = client.ask(request.query_params["q"])
        try:
            result = blockon.run(coro, nest=True, timeout=HANG)
        except RuntimeError as exc:
            return JSONResponse({"error": "RuntimeError", "message": str(exc)})
        return JSONResponse({**result, "where": "app-loop"})

    app = Starlette(
        routes=[
            Route("/sync/default", sync_default),
            Route("/sync/app-loop", sync_app_loop),
            Route("/async/to-thread", async_to_thread),
            Route("/async/direct", async_direct),
            Route("/async/nest", async_nest),
        ],
        lifespan=lifespan,
    )
    return app, state


# --- the server ----------------------------------------------------------------------------


class _Server(uvicorn.Server):  # type: ignore[misc,name-defined]
    """uvicorn.Server that signals, without polling, once it is accepting connections."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.ready.set()


@contextlib.contextmanager
def serving(app: Starlette, loop: str) -> Iterator[str]:
    """Serve `app` with uvicorn in a background thread (its own loop); yield the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        loop=loop,
        http="h11",
        ws="none",
        lifespan="on",
        log_level="warning",
        access_log=False,
    )
    server = _Server(config)
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)
        finally:
            server.ready.set()  # never leave the test thread waiting on a failed start

    thread = threading.Thread(target=serve, name=f"test-uvicorn-{loop}", daemon=True)
    thread.start()
    try:
        assert server.ready.wait(HANG), "uvicorn did not start"
        assert not errors, errors
        assert server.started, "uvicorn stopped during startup"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(HANG)
        sock.close()
    assert not thread.is_alive(), "uvicorn did not shut down"
    assert not errors, errors


async def fire(base_url: str, path: str, n: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=base_url, timeout=HANG) as client:
        return await asyncio.gather(
            *(client.get(path, params={"q": f"{path}-{i}"}) for i in range(n))
        )


def loop_thread_ident() -> int:
    async def ident() -> int:
        return threading.get_ident()

    return blockon.run(ident())


def check(responses: list[Any], path: str, state: dict[str, Any], where: str) -> None:
    assert len(responses) == N_REQUESTS
    for i, response in enumerate(responses):
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["reply"] == f"BACKEND:{path}-{i}".upper()
        assert body["where"] == where
        if where == "app-loop":
            assert body["thread"] == state["app_thread"]
        else:
            assert body["thread"] == loop_thread_ident()


# --- tests ---------------------------------------------------------------------------------


@pytest.fixture(params=["asyncio", "uvloop"])
def server_loop(request: pytest.FixtureRequest) -> str:
    if request.param == "uvloop":
        pytest.importorskip("uvloop")
    return request.param  # type: ignore[no-any-return]


PATHS = {
    "/sync/default": "loop-thread",
    "/sync/app-loop": "app-loop",
    "/async/to-thread": "app-loop",
    "/async/direct": "loop-thread",
}


@pytest.mark.timeout(120)
def test_concurrent_requests_reach_the_async_client(backend: int, server_loop: str) -> None:
    app, state = make_app(backend)
    with serving(app, server_loop) as base_url:

        async def all_endpoints() -> list[list[httpx.Response]]:
            # Every endpoint at once: N_REQUESTS each, all in flight together.
            return await asyncio.gather(*(fire(base_url, p, N_REQUESTS) for p in PATHS))

        results = asyncio.run(all_endpoints())
    for (path, where), responses in zip(PATHS.items(), results, strict=True):
        check(responses, path, state, where)
    assert state["app_client"].calls == 2 * N_REQUESTS
    assert state["thread_client"].calls == 2 * N_REQUESTS


@pytest.mark.timeout(120)
def test_nest_on_the_servers_loop(backend: int, server_loop: str) -> None:
    app, state = make_app(backend)
    with serving(app, server_loop) as base_url:
        responses = asyncio.run(fire(base_url, "/async/nest", N_REQUESTS))
    assert len(responses) == N_REQUESTS
    if server_loop == "uvloop":
        # uvloop cannot be re-entered: every request gets the RuntimeError at once.
        for response in responses:
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["error"] == "RuntimeError"
            assert "uvloop" in body["message"]
            assert "nest=True" in body["message"]
        assert state["app_client"].calls == 0
    else:
        check(responses, "/async/nest", state, "app-loop")
        assert state["app_client"].calls == N_REQUESTS
