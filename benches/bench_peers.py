"""blockon against the libraries users pick instead, side by side.

One section, ``peers``, in three parts, each measured in interleaved rounds, medians:

- **Per call, from a thread with no running loop**: one call of a coroutine that returns at
  once, by ``blockon.run`` and by each peer as its documentation offers it:

  - asgiref: ``async_to_sync(noop)()`` (with no loop in the thread it runs a new loop in a
    new one-thread executor per call);
  - anyio: ``portal.call(noop)`` on one ``anyio.from_thread.start_blocking_portal()``
    (asyncio backend), entered once;
  - asyncio-thread-runner: ``ThreadRunner().run(noop())``, one runner entered once;
  - asyncer: ``syncify(noop, raise_sync_error=False)()`` (outside an anyio worker thread it
    runs ``anyio.run`` per call);
  - synchronicity: ``Synchronizer().wrap(noop)()`` (its own loop thread);
  - nest-asyncio2: ``nest_asyncio2.apply()``, then ``asyncio.run(noop())`` (patched: it reuses
    the thread's loop). It patches asyncio for the whole process, so it runs in a long-lived
    helper process that, told over a pipe, calibrates or times one batch and reports µs per
    call; the parent interleaves it with the in-process contenders in the same rounds;
  - asyncio baselines: ``run_coroutine_threadsafe(...).result()`` on a background loop,
    ``asyncio.run`` and a cached loop's ``run_until_complete``.

  In the same placements as the ``per_call`` section (caller and loop threads pinned to one
  CPU, to two, then unpinned); ratios against blockon in the same placement.
- **Per call, inside a running loop** (sync code called by a coroutine): blockon's
  ``run(..., nest=True)``, greenback's ``await_``, and a library's own ``asyncio.run`` and
  ``loop.run_until_complete`` patched by ``blockon.patch_asyncio()`` and by nest-asyncio2
  (helper process). No thread hop, so unpinned only. One target: the nested
  ``run_until_complete`` at least 2x faster under ``patch_asyncio()`` than under
  nest-asyncio2.
- **Stream**: items/s over an async generator of small ints, where a peer offers a way to
  iterate one: ``blockon.wrap_iter`` (prefetch 0 and 256), asyncio-thread-runner's
  ``wrap_iter``, synchronicity's wrapped async generator function, anyio's ``portal.call``
  per item (anyio has no iterator helper), nest-asyncio2's ``asyncio.run(anext(it))`` per
  item (helper process), and per-item ``run_coroutine_threadsafe`` as the baseline. asgiref
  and asyncer offer nothing for iterators.

Otherwise no targets: these are comparisons. A peer that is not installed is left out with a
note.

Run on its own: ``python benches/bench_peers.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import IO, Any

import _harness as h
import bench_run as br

try:
    import blockon
except ImportError as exc:
    blockon = None  # type: ignore[assignment]
    BLOCKON_MISSING = f"blockon not importable ({exc})"
else:
    BLOCKON_MISSING = ""

BLOCKON = "blockon.run(coro())"
ASGIREF = "asgiref async_to_sync(f)()"
ANYIO = "anyio blocking portal.call(f)"
ATR = "asyncio-thread-runner ThreadRunner.run(coro())"
ASYNCER = "asyncer syncify(f, raise_sync_error=False)()"
SYNCHRONICITY = "synchronicity Synchronizer().wrap(f)()"
NEST_ASYNCIO = "nest-asyncio2 asyncio.run(coro()) (patched; helper process)"
RCTS = "asyncio run_coroutine_threadsafe().result()"
ARUN = "asyncio asyncio.run(coro())"
CACHED = "asyncio loop.run_until_complete(coro()), cached loop"

IN_NEST = "blockon.run(coro(), nest=True)"
IN_GREENBACK = "greenback.await_(coro())"
IN_NEST_ASYNCIO = "nest-asyncio2 asyncio.run(coro()), re-entrant (helper process)"
IN_NEST_ASYNCIO_RUC = "nest-asyncio2 loop.run_until_complete(coro()), re-entrant (helper process)"
IN_PATCH_RUN = "blockon.patch_asyncio(), asyncio.run(coro())"
IN_PATCH_RUC = "blockon.patch_asyncio(), loop.run_until_complete(coro())"

S_RCTS = "asyncio run_coroutine_threadsafe(anext(it)) per item"
S_LOCKSTEP = "blockon.wrap_iter(prefetch=0)"
S_PREFETCH = "blockon.wrap_iter(prefetch=256)"
S_ATR = "asyncio-thread-runner wrap_iter"
S_SYNCHRONICITY = "synchronicity wrapped async generator"
S_ANYIO = "anyio portal.call(anext) per item"
S_NEST_ASYNCIO = "nest-asyncio2 asyncio.run(anext(it)) per item (helper process)"

DONE = object()


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


async def noop() -> None:
    return None


async def agen(n: int) -> AsyncIterator[int]:
    for i in range(n):
        yield i


async def _next_or_done(it: AsyncIterator[int]) -> object:
    try:
        return await anext(it)
    except StopAsyncIteration:
        return DONE


# --------------------------------------------------------------------------- helper process


class NestChild:
    """The nest-asyncio2 helper process, driven over a pipe, one JSON line each way."""

    def __init__(self) -> None:
        self._err: IO[str] = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed in close()
        here = os.path.abspath(__file__)
        self.proc = subprocess.Popen(
            [sys.executable, here, "--nest-child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._err,
            text=True,
            bufsize=1,
            cwd=os.path.dirname(here),
        )
        self.ask(op="hello")

    def ask(self, **msg: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except OSError:
            line = ""
        if not line:
            self._err.seek(0)
            tail = (self._err.read().strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"the helper process died: {tail}")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply

    def pin(self, cpus: set[int] | None) -> None:
        """Pin the helper (one thread) to ``cpus``; None: back to the parent's set."""
        if hasattr(os, "sched_setaffinity"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(self.proc.pid, cpus or os.sched_getaffinity(0))

    def measure(self, name: str, batch_s: float) -> h.Measure:
        n = int(self.ask(op="calibrate", name=name, batch_s=batch_s)["n"])

        def measure() -> float:
            return float(self.ask(op="measure", name=name, n=n)["us"])

        return measure

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._err.close()


def _nest_child() -> None:
    """The helper's main: nest-asyncio2 applied for the whole process, then serve requests."""
    import nest_asyncio2

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    nest_asyncio2.apply(loop)
    arun = asyncio.run  # the patched one

    free = h.batch_of(lambda: arun(noop()))

    async def timed(n: int) -> int:
        return h.time_batch_ns(free, n)

    def nested(n: int) -> None:
        loop.run_until_complete(timed(n))

    def nested_measure(n: int) -> float:
        return loop.run_until_complete(timed(n)) / n / 1000.0

    ruc = h.batch_of(lambda: asyncio.get_running_loop().run_until_complete(noop()))

    async def timed_ruc(n: int) -> int:
        return h.time_batch_ns(ruc, n)

    def nested_ruc(n: int) -> None:
        loop.run_until_complete(timed_ruc(n))

    def nested_ruc_measure(n: int) -> float:
        return loop.run_until_complete(timed_ruc(n)) / n / 1000.0

    assert NEST_ASYNCIO != IN_NEST_ASYNCIO
    batches: dict[str, tuple[h.Batch, Callable[[int], float]]] = {
        NEST_ASYNCIO: (free, lambda n: h.per_call_us(free, n)()),
        IN_NEST_ASYNCIO: (nested, nested_measure),
        IN_NEST_ASYNCIO_RUC: (nested_ruc, nested_ruc_measure),
    }

    def stream(items: int) -> float:
        it = agen(items)
        count = 0
        t0 = time.perf_counter()
        while True:
            try:
                arun(anext(it))
            except StopAsyncIteration:
                break
            count += 1
        return count / (time.perf_counter() - t0)

    for line in sys.stdin:
        msg = json.loads(line)
        try:
            op = msg["op"]
            if op == "hello":
                reply: dict[str, Any] = {"ok": True}
            elif op == "calibrate":
                reply = {"n": h.calibrate(batches[msg["name"]][0], msg["batch_s"])}
            elif op == "measure":
                gc.collect()
                reply = {"us": batches[msg["name"]][1](msg["n"])}
            elif op == "stream":
                gc.collect()
                reply = {"rate": stream(msg["items"])}
            else:
                reply = {"error": f"unknown op {op!r}"}
        except Exception as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


# --------------------------------------------------------------------------- contenders


async def _tid() -> int:
    return threading.get_native_id()


@contextlib.contextmanager
def free_calls(notes: list[str]) -> Iterator[tuple[dict[str, h.Call], list[int]]]:
    """The in-process per-call contenders (set up, torn down after) and their loop threads."""
    with contextlib.ExitStack() as stack:
        calls: dict[str, h.Call] = {}
        tids: list[int] = []
        if blockon is not None:
            run = blockon.run
            calls[BLOCKON] = lambda: run(noop())
            tids.append(run(_tid()))
        else:
            notes.append(BLOCKON_MISSING + ": blockon rows are skipped.")
        if _has("asgiref"):
            from asgiref.sync import async_to_sync

            a2s = async_to_sync(noop)
            calls[ASGIREF] = lambda: a2s()
        if _has("anyio"):
            from anyio.from_thread import start_blocking_portal

            portal = stack.enter_context(start_blocking_portal("asyncio"))
            calls[ANYIO] = lambda: portal.call(noop)
            tids.append(portal.call(_tid))
        if _has("asyncio_thread_runner"):
            from asyncio_thread_runner import ThreadRunner

            runner = stack.enter_context(ThreadRunner())
            calls[ATR] = lambda: runner.run(noop())
            tids.append(runner.run(_tid()))
        if _has("asyncer"):
            from asyncer import syncify

            sf = syncify(noop, raise_sync_error=False)
            calls[ASYNCER] = lambda: sf()
        if _has("synchronicity"):
            from synchronicity import Synchronizer

            synchronizer = Synchronizer()
            stack.callback(synchronizer._close_loop)  # no public close; atexit does the same
            blocking = synchronizer.wrap(noop)
            calls[SYNCHRONICITY] = lambda: blocking()
            tids.append(synchronizer.wrap(_tid)())
        bg = br.BackgroundLoop(asyncio.new_event_loop, "bench-peers-loop")
        stack.callback(bg.close)
        calls[RCTS] = br.rcts_call(bg.loop)
        tids.append(asyncio.run_coroutine_threadsafe(_tid(), bg.loop).result())
        calls[ARUN] = lambda: asyncio.run(noop())
        cached = asyncio.new_event_loop()
        stack.callback(cached.close)
        calls[CACHED] = lambda: cached.run_until_complete(noop())
        yield calls, tids


def _missing(notes: list[str]) -> None:
    for dist, module in [
        ("asgiref", "asgiref"),
        ("anyio", "anyio"),
        ("asyncio-thread-runner", "asyncio_thread_runner"),
        ("asyncer", "asyncer"),
        ("synchronicity", "synchronicity"),
        ("nest-asyncio2", "nest_asyncio2"),
        ("greenback", "greenback"),
    ]:
        if not _has(module):
            notes.append(f"{dist} is not installed: its rows are missing (pip install {dist}).")


def _measure_free(
    cfg: h.Config, child: NestChild | None, notes: list[str]
) -> dict[str, dict[str, h.Samples]]:
    out: dict[str, dict[str, h.Samples]] = {}
    with free_calls(notes) as (calls, tids):
        for p in h.placements():
            with h.placed(p, tids):
                measures, _, failed = h.prepare(calls, cfg.batch_s)
                if child is not None:
                    child.pin({p.caller} if p.caller is not None else None)
                    try:
                        measures[NEST_ASYNCIO] = child.measure(NEST_ASYNCIO, cfg.batch_s)
                    except Exception as exc:
                        failed[NEST_ASYNCIO] = f"{type(exc).__name__}: {exc}"
                try:
                    out[p.label] = h.interleave(measures, cfg.rounds, failed=failed)
                finally:
                    if child is not None:
                        child.pin(None)
    return out


def _measure_nested(cfg: h.Config, child: NestChild | None) -> dict[str, h.Samples]:
    calls: dict[str, h.Call] = {}
    if blockon is not None:
        run = blockon.run
        calls[IN_NEST] = lambda: run(noop(), nest=True)
        calls[IN_PATCH_RUC] = lambda: asyncio.get_running_loop().run_until_complete(noop())
        calls[IN_PATCH_RUN] = lambda: asyncio.run(noop())
    if _has("greenback"):
        import greenback

        calls[IN_GREENBACK] = lambda: greenback.await_(noop())
    # The patch is process-wide: on for this part only (the other contenders never call the
    # entry points inside the loop; the harness's own asyncio.run, with no loop running,
    # gets the original).
    patch = blockon is not None
    if patch:
        blockon.patch_asyncio()
    try:
        measures, _, failed = h.prepare(calls, cfg.batch_s, new_loop=True)
        if child is not None:
            for name in (IN_NEST_ASYNCIO, IN_NEST_ASYNCIO_RUC):
                try:
                    measures[name] = child.measure(name, cfg.batch_s)
                except Exception as exc:
                    failed[name] = f"{type(exc).__name__}: {exc}"
        return h.interleave(measures, cfg.rounds, failed=failed)
    finally:
        if patch:
            blockon.unpatch_asyncio()


def _patch_target(nested: dict[str, h.Samples]) -> h.Target:
    """The nested-run target: under patch_asyncio(), a nested loop.run_until_complete at
    least 2x faster than under nest-asyncio2's apply()."""
    label = "patch_asyncio() nested run_until_complete >= 2x faster than nest-asyncio2's"
    ours, theirs = nested.get(IN_PATCH_RUC), nested.get(IN_NEST_ASYNCIO_RUC)
    if ours is None or theirs is None or not ours.ok or not theirs.ok:
        return h.Target(label, None, "not measured (a contender is missing or failed)")
    x = theirs.median / ours.median
    return h.Target(
        label,
        x >= 2,
        f"{h.fmt_ratio(x)} (nest-asyncio2 {h.fmt_us(theirs.median)} µs, blockon "
        f"{h.fmt_us(ours.median)} µs)",
    )


Stream = Callable[[], float]  # one run over a fresh generator; returns items/s


def _rate(count_items: Callable[[], int]) -> Stream:
    def run() -> float:
        t0 = time.perf_counter()
        count = count_items()
        return count / (time.perf_counter() - t0)

    return run


def _measure_stream(cfg: h.Config, child: NestChild | None) -> tuple[dict[str, list[float]], int]:
    total = 20_000 if cfg.quick else 100_000
    slow = total // 20  # per-item round trips: fewer items, so a round stays short
    runs: dict[str, Stream] = {}
    with contextlib.ExitStack() as stack:
        bg = br.BackgroundLoop(asyncio.new_event_loop, "bench-peers-stream-loop")
        stack.callback(bg.close)

        def rcts() -> int:
            it, count = agen(slow), 0
            while asyncio.run_coroutine_threadsafe(_next_or_done(it), bg.loop).result() is not DONE:
                count += 1
            return count

        runs[S_RCTS] = _rate(rcts)
        if blockon is not None:
            wrap_iter = blockon.wrap_iter
            runs[S_LOCKSTEP] = _rate(lambda: sum(1 for _ in wrap_iter(agen(total // 2))))
            runs[S_PREFETCH] = _rate(lambda: sum(1 for _ in wrap_iter(agen(total), prefetch=256)))
        if _has("asyncio_thread_runner"):
            from asyncio_thread_runner import ThreadRunner

            runner = stack.enter_context(ThreadRunner())
            runs[S_ATR] = _rate(lambda: sum(1 for _ in runner.wrap_iter(agen(slow))))
        if _has("synchronicity"):
            from synchronicity import Synchronizer

            synchronizer = Synchronizer()
            stack.callback(synchronizer._close_loop)
            sync_agen = synchronizer.wrap(agen)
            runs[S_SYNCHRONICITY] = _rate(lambda: sum(1 for _ in sync_agen(slow)))
        if _has("anyio"):
            from anyio.from_thread import start_blocking_portal

            portal = stack.enter_context(start_blocking_portal("asyncio"))

            def anyio_items() -> int:
                it, count = agen(slow), 0
                while portal.call(_next_or_done, it) is not DONE:
                    count += 1
                return count

            runs[S_ANYIO] = _rate(anyio_items)
        if child is not None:
            runs[S_NEST_ASYNCIO] = lambda: float(child.ask(op="stream", items=slow)["rate"])

        rates: dict[str, list[float]] = {name: [] for name in runs}
        names = list(runs)
        for r in range(max(3, cfg.rounds // 3)):
            k = r % len(names)
            for name in names[k:] + names[:k]:
                gc.collect()
                rates[name].append(runs[name]())
    return rates, total


# --------------------------------------------------------------------------- section


def bench_peers(cfg: h.Config) -> h.Section:
    sec = h.Section(
        "peers",
        "Peers: blockon against the libraries users pick instead",
        "Per-call overhead of a coroutine that returns at once (`async def noop(): return "
        "None`), called from the main thread with no running loop, by blockon and by each "
        "peer as its documentation offers it, with the asyncio baselines; median µs per call "
        "over interleaved rounds, in the placements of the per-call section (`÷ blockon`: the "
        "row's time divided by `blockon.run`'s in the same placement). nest-asyncio2 patches "
        "asyncio for the whole process, so it runs in a long-lived helper process that, told "
        "over a pipe, times one batch and reports µs per call, taking its turn in the same "
        "rounds (pinned to the caller's CPU in the pinned placements). Then the same call "
        "from sync code inside a running loop, and items/s over an async generator where a "
        "peer offers a way to iterate one.",
    )
    _missing(sec.notes)
    child: NestChild | None = None
    if _has("nest_asyncio2"):
        try:
            child = NestChild()
        except Exception as exc:
            sec.notes.append(f"nest-asyncio2 helper process failed to start: {exc}")
    try:
        free = _measure_free(cfg, child, sec.notes)
        nested = _measure_nested(cfg, child)
        rates, total = _measure_stream(cfg, child)
    finally:
        if child is not None:
            child.close()

    keys = list(next(iter(free.values())))
    sec.table = br._placed_table(
        [(k, k) for k in keys], free, lambda samples, _k: samples.get(BLOCKON), "÷ blockon"
    )
    sec.notes += br._errors(free)

    base = nested.get(IN_NEST)
    t = h.Table(["contender", "µs (median)", "min", "max", "÷ nest=True"])
    for name, s in nested.items():
        if not s.ok:
            t.add(name, f"error: {s.error}", "", "", "")
            continue
        ok = base is not None and base.ok
        ratio = h.fmt_ratio(s.median / base.median) if ok and base is not None else "-"
        t.add(name, h.fmt_us(s.median), h.fmt_us(s.min), h.fmt_us(s.max), ratio)
    sec.extra.append(
        (
            "Inside a running loop: sync code called by a coroutine on a running stdlib loop "
            f"(no thread hop, so unpinned only; median µs per call over {cfg.rounds} rounds; "
            "each batch is one stretch of sync code inside the running loop). The "
            "`patch_asyncio()` rows are what a library's own `asyncio.run()` and "
            "`run_until_complete()` cost there, patched by blockon, against the same calls "
            "under nest-asyncio2's `apply()`.",
            t,
        )
    )
    sec.targets.append(_patch_target(nested))

    median = {name: statistics.median(r) for name, r in rates.items() if r}
    sbase = median.get(S_LOCKSTEP)
    t = h.Table(["contender", "items/s (median)", "min", "max", "÷ wrap_iter(prefetch=0)"])
    for name, r in rates.items():
        ratio = h.fmt_ratio(median[name] / sbase) if sbase else "-"
        t.add(name, h.fmt_rate(median[name]), h.fmt_rate(min(r)), h.fmt_rate(max(r)), ratio)
    sec.extra.append(
        (
            "Stream: items/s over an async generator of ints, from a thread with no running "
            f"loop (median of {max(3, cfg.rounds // 3)} interleaved rounds, unpinned; "
            f"prefetch=256 iterates {total:,} items a round, prefetch=0 {total // 2:,}, the "
            f"per-item round trips {total // 20:,}). asgiref and asyncer offer no way to "
            "iterate an async generator; anyio's portal has none either, so its row is "
            "`portal.call` per item.",
            t,
        )
    )
    sec.notes.append(f"{cfg.rounds} rounds per placement, about {cfg.batch_s * 1000:g} ms a batch.")
    sec.data = {
        "per_call_us": {w: {k: v.median for k, v in s.items() if v.ok} for w, s in free.items()},
        "nested_us": {k: v.median for k, v in nested.items() if v.ok},
        "items_per_s": median,
    }
    return sec


SECTIONS = {"peers": bench_peers}


def main() -> None:
    h.main(__doc__, SECTIONS, {"--nest-child": lambda cfg: _nest_child()})


if __name__ == "__main__":
    main()
