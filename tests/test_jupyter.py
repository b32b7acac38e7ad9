"""blockon in a real notebook: nbclient executes cells on a real ipykernel kernel.

A notebook cell runs on a thread whose loop (the kernel's) is running, so a bare `run()` sends
the work to the loop thread, and `run(..., nest=True)` runs it on the kernel's own loop,
re-entrantly. The session made in one cell lives on the loop thread and later cells (sync ones
and top-level-`await` ones) keep using it. With `%load_ext blockon`, a library's own
`asyncio.run()` and `run_until_complete()` work in a cell, on the kernel's loop, whose HTTP
server keeps serving them meanwhile; `%unload_ext blockon` restores asyncio.
"""

from __future__ import annotations

import json
import sys
import textwrap

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

KERNEL_NAME = "blockon-test-python"

# Each cell prints exactly one line: `RESULT <json>`; the test compares those.
CELLS = [
    # 0: a sync helper built on blockon.run, defined once and reused below.
    """
    import asyncio, json, threading
    import blockon

    def emit(value):
        print("RESULT " + json.dumps(value))

    async def double(x):
        await asyncio.sleep(0)
        return 2 * x, threading.current_thread() is threading.main_thread()

    def double_sync(x):
        "A plain sync helper: callers never see that it is async underneath."
        return blockon.run(double(x), timeout=30)

    kernel_loop = asyncio.get_running_loop()
    value, on_main = double_sync(21)
    emit({"value": value, "ran_on_main_thread": on_main,
          "kernel_loop_running": kernel_loop.is_running()})
    """,
    # 1: a session bound to blockon's loop thread (its queue and lock belong to that loop).
    """
    class Session:
        "A small async client: its state is bound to the loop it was opened on."

        def __init__(self):
            self.loop = asyncio.get_running_loop()
            self.inbox = asyncio.Queue()
            self.lock = asyncio.Lock()
            self.requests = 0

        def _check(self):
            assert asyncio.get_running_loop() is self.loop, "session used off its loop"

        async def request(self, item):
            self._check()
            async with self.lock:
                self.requests += 1
                await self.inbox.put(item)
                return self.requests

        async def take(self):
            self._check()
            return await self.inbox.get()

        async def stream(self, n):
            self._check()
            for _ in range(n):
                yield await self.inbox.get()

    async def open_session():
        return Session()

    session = blockon.run(open_session(), timeout=30)
    emit({"on_loop_thread": session.loop is blockon.default_loop_thread().loop,
          "not_kernel_loop": session.loop is not kernel_loop})
    """,
    # 2: a later cell reuses the session through plain sync calls.
    """
    counts = [blockon.run(session.request(f"item-{i}"), timeout=30) for i in range(5)]
    taken = [blockon.run(session.take(), timeout=30) for _ in range(2)]
    emit({"counts": counts, "taken": taken})
    """,
    # 3: iterate the session's async generator with wrap_iter, lockstep and prefetching.
    """
    lockstep = list(blockon.wrap_iter(session.stream(3)))
    for i in range(4):
        blockon.run(session.request(f"more-{i}"), timeout=30)
    prefetched = [item.upper() for item in blockon.wrap_iter(session.stream(4), prefetch=2)]
    emit({"lockstep": lockstep, "prefetched": prefetched,
          "requests": blockon.run(session.request("last"), timeout=30)})
    """,
    # 4: top-level await on the kernel's loop, mixed with sync blockon calls and the session.
    """
    awaited = await asyncio.sleep(0, result="awaited")
    assert asyncio.get_running_loop() is kernel_loop
    # The session lives on the loop thread: await it from the kernel loop through submit().
    last = await asyncio.wrap_future(blockon.submit(session.take()))
    # Sync code called from an await cell still goes to the loop thread.
    value, on_main = double_sync(50)
    emit({"awaited": awaited, "last": last, "value": value, "ran_on_main_thread": on_main})
    """,
    # 5: nest=True runs on the kernel's loop, whose other tasks keep running meanwhile.
    """
    ready = asyncio.Queue()

    async def producer():
        for i in range(3):
            await ready.put(i)
        return "producer done"

    background = asyncio.ensure_future(producer())  # a task on the kernel's loop

    async def consume():
        assert asyncio.get_running_loop() is kernel_loop
        return [await ready.get() for _ in range(3)]

    def consume_sync():
        return blockon.run(consume(), nest=True, timeout=30)

    got = consume_sync()
    emit({"got": got, "background_done": background.done(),
          "background": background.result()})
    """,
    # 6: the same from a top-level-await cell, and the session is still usable afterwards.
    """
    async def loop_identity():
        await asyncio.sleep(0)
        return asyncio.get_running_loop() is kernel_loop

    first = await loop_identity()
    nested = blockon.run(loop_identity(), nest=True, timeout=30)
    plain = blockon.run(loop_identity(), timeout=30)
    count = blockon.run(session.request("again"), timeout=30)
    again = blockon.run(session.take(), timeout=30)
    emit({"await": first, "nested_on_kernel_loop": nested, "plain_on_kernel_loop": plain,
          "count": count, "again": again})
    """,
]

EXPECTED = [
    {"value": 42, "ran_on_main_thread": False, "kernel_loop_running": True},
    {"on_loop_thread": True, "not_kernel_loop": True},
    {"counts": [1, 2, 3, 4, 5], "taken": ["item-0", "item-1"]},
    {
        "lockstep": ["item-2", "item-3", "item-4"],
        "prefetched": ["MORE-0", "MORE-1", "MORE-2", "MORE-3"],
        "requests": 10,
    },
    {"awaited": "awaited", "last": "last", "value": 100, "ran_on_main_thread": False},
    {"got": [0, 1, 2], "background_done": True, "background": "producer done"},
    {
        "await": True,
        "nested_on_kernel_loop": True,
        "plain_on_kernel_loop": False,
        "count": 11,
        "again": "again",
    },
]


@pytest.fixture
def kernel_env(tmp_path, monkeypatch):
    """A kernelspec that starts ipykernel on this very interpreter, in a private Jupyter tree."""
    data_dir = tmp_path / "jupyter-data"
    spec_dir = data_dir / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "blockon test kernel",
        "language": "python",
        "interrupt_mode": "signal",
        "env": {"PYTHONASYNCIODEBUG": "1"},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(data_dir))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "jupyter-runtime"))
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "jupyter-config"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))

    from jupyter_client.kernelspec import KernelSpecManager

    found = KernelSpecManager().get_kernel_spec(KERNEL_NAME)
    assert found.argv[0] == sys.executable
    return tmp_path


def _cell_results(cell):
    results, stderr = [], []
    for out in cell.outputs:
        assert out.output_type == "stream", out
        if out.name == "stderr":
            stderr.append(out.text)
            continue
        for line in out.text.splitlines():
            if line.startswith("RESULT "):
                results.append(json.loads(line.removeprefix("RESULT ")))
    return results, stderr


def _run_notebook(cells, expected, kernel_env):
    """Execute the cells on a real kernel; each must print `RESULT <json>` once, as expected,
    and nothing on stderr."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(textwrap.dedent(src).strip()) for src in cells]
    client = nbclient.NotebookClient(
        nb,
        kernel_name=KERNEL_NAME,
        timeout=60,  # per cell: a hang guard, every cell finishes in well under a second
        startup_timeout=60,
        resources={"metadata": {"path": str(kernel_env)}},
    )
    client.execute()  # raises CellExecutionError if any cell raises

    for index, (cell, want) in enumerate(zip(nb.cells, expected, strict=True)):
        results, stderr = _cell_results(cell)
        assert stderr == [], f"cell {index} wrote to stderr (a warning?): {stderr}"
        assert results == [want], f"cell {index}"


@pytest.mark.timeout(120)
def test_notebook_on_real_ipykernel(kernel_env):
    _run_notebook(CELLS, EXPECTED, kernel_env)


# `%load_ext blockon`: a library's own asyncio.run() and run_until_complete() in a cell.
PATCH_CELLS = [
    # 0: a local HTTP server on the kernel's own loop, and a third-party style sync client.
    """
    import asyncio, json
    import aiohttp
    from aiohttp import web

    def emit(value):
        print("RESULT " + json.dumps(value))

    kernel_loop = asyncio.get_running_loop()
    kernel_loop.slow_callback_duration = 30  # debug mode: no "took 0.2 s" lines on stderr
    original_run = asyncio.run

    async def hello(request):
        await asyncio.sleep(0)
        return web.Response(text="hello from " + request.path)

    app = web.Application()
    app.router.add_get("/{name}", hello)
    server = web.AppRunner(app)
    await server.setup()
    site = web.TCPSite(server, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]

    async def get(path):
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/{path}") as response:
                return response.status, await response.text()

    def fetch(path):
        "A sync SDK function, as libraries write them: asyncio.run() inside."
        return asyncio.run(get(path))

    def fetch_legacy(path):
        "An older one: the thread's event loop, run_until_complete()."
        return asyncio.get_event_loop().run_until_complete(get(path))

    coro = get("before")
    try:
        fetch_before = asyncio.run(coro)
    except RuntimeError as exc:
        fetch_before = str(exc)
    finally:
        coro.close()
    emit({"before": fetch_before})
    """,
    # 1
    """
    %load_ext blockon
    emit({"patched": asyncio.run is not original_run})
    """,
    # 2: asyncio.run() inside a cell: re-entrant on the kernel's loop, which serves meanwhile.
    """
    task = asyncio.current_task()
    status, text = fetch("notebook")
    emit({"status": status, "text": text, "task_kept": asyncio.current_task() is task})
    """,
    # 3: run_until_complete() on the kernel's loop, and from a top-level-await cell.
    """
    first = fetch_legacy("legacy")
    awaited = await get("awaited")
    emit({"legacy": first, "awaited": awaited, "loop": asyncio.get_running_loop() is kernel_loop})
    """,
    # 4: a library calling a library, both with asyncio.run(); a C task inside.
    """
    async def outer_request():
        inner = fetch("inner")
        task_type = type(asyncio.current_task())
        return inner, task_type is getattr(asyncio.tasks, "_CTask", asyncio.Task)

    emit(asyncio.run(outer_request()))
    """,
    # 5
    """
    %unload_ext blockon
    coro = get("after")
    try:
        asyncio.run(coro)
    except RuntimeError as exc:
        after = str(exc)
    finally:
        coro.close()
    await server.cleanup()
    emit({"restored": asyncio.run is original_run, "after": after})
    """,
]

PATCH_EXPECTED = [
    {"before": "asyncio.run() cannot be called from a running event loop"},
    {"patched": True},
    {"status": 200, "text": "hello from /notebook", "task_kept": True},
    {
        "legacy": [200, "hello from /legacy"],
        "awaited": [200, "hello from /awaited"],
        "loop": True,
    },
    [[200, "hello from /inner"], True],
    {"restored": True, "after": "asyncio.run() cannot be called from a running event loop"},
]


@pytest.mark.timeout(120)
def test_load_ext_blockon_runs_a_librarys_asyncio_run_in_a_cell(kernel_env):
    pytest.importorskip("aiohttp")
    _run_notebook(PATCH_CELLS, PATCH_EXPECTED, kernel_env)
