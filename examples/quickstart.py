"""blockon quickstart: a plain synchronous script using an async-only HTTP client (aiohttp).

An aiohttp ClientSession belongs to the event loop it was created on. blockon keeps one loop
running in a background thread, so the session is created there once and then shared by every
call, from any thread. The script serves its own JSON on 127.0.0.1, so it needs no network.
Run it with `make demo`.
"""

import contextlib
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import aiohttp
import blockon


class JSONHandler(BaseHTTPRequestHandler):
    """GET /hello?name=Ada -> {"greeting": "hello, Ada"}; GET /slow?ms=100 answers in 100 ms."""

    protocol_version = "HTTP/1.1"  # keep-alive: the session's connection pool gets reused

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {key: values[0] for key, values in parse_qs(url.query).items()}
        if url.path == "/slow":
            time.sleep(int(query["ms"]) / 1000)
            body = {"slept_ms": int(query["ms"])}
        else:
            body = {"greeting": f"hello, {query.get('name', 'world')}"}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def handle(self) -> None:
        with contextlib.suppress(ConnectionError):  # a client that gave up early (step 4)
            super().handle()

    def log_message(self, format: str, *args: object) -> None:
        pass  # no access log: keep the output to the demo's own lines


class LocalServer(ThreadingHTTPServer):
    request_queue_size = 64  # listen backlog (default 5): room for 8 threads connecting at once


# The async side: ordinary aiohttp code, exactly as an async program would write it.
async def open_session(base_url: str) -> tuple[aiohttp.ClientSession, str]:
    session = aiohttp.ClientSession(base_url, raise_for_status=True)
    return session, threading.current_thread().name  # the thread this coroutine ran on


async def get_json(session: aiohttp.ClientSession, path: str, **params: str) -> dict:
    async with session.get(path, params=params) as resp:
        return await resp.json()


def main() -> None:  # the program is synchronous: no asyncio.run(), no event loop of its own
    server = LocalServer(("127.0.0.1", 0), JSONHandler)  # port 0: any free port
    threading.Thread(target=server.serve_forever, daemon=True).start()

    # 1. Create the session on blockon's loop thread; it lives there until we close it.
    session, thread_name = blockon.run(open_session(f"http://127.0.0.1:{server.server_port}"))
    print(f"1. created one aiohttp session on blockon's loop thread ({thread_name!r})")

    # 2. Sequential calls: blockon.run() returns what the coroutine returns.
    names = ["Ada", "Grace", "Linus"]
    greetings = [blockon.run(get_json(session, "/hello", name=n))["greeting"] for n in names]
    print(f"2. {len(names)} sequential calls: {'; '.join(greetings)}")

    # 3. Eight threads use the same session at once. Each /slow call takes 100 ms; they
    #    overlap on the loop, so the batch takes about 100 ms rather than 800 ms.
    def fetch_slow(_: int) -> bool:
        return blockon.run(get_json(session, "/slow", ms="100")) == {"slept_ms": 100}

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=8) as pool:
        ok = sum(pool.map(fetch_slow, range(8)))
    elapsed_ms = (time.perf_counter() - start) * 1000
    print(f"3. 8 threads shared the session: {ok}/8 ok in {elapsed_ms:.0f} ms")

    # 4. On timeout the request is cancelled (aiohttp cleans up on the loop), then TimeoutError.
    try:
        blockon.run(get_json(session, "/slow", ms="1000"), timeout=0.2)
    except TimeoutError:
        print("4. a 1 s request with timeout=0.2 raised TimeoutError")
    else:
        raise RuntimeError("expected TimeoutError")

    # 5. Close the session on the loop it belongs to, then stop the server.
    blockon.run(session.close())
    server.shutdown()
    server.server_close()
    print("5. session closed, server stopped")


if __name__ == "__main__":
    main()
