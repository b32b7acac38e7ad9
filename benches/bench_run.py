"""Per-call overhead of ``blockon.run`` against the ways asyncio offers, side by side.

Sections (each a function returning a ``_harness.Section``):

- ``per_call``: a coroutine that returns at once, called from a thread with no running loop;
- ``nest``: the same, from sync code called by a coroutine (the thread's loop is running):
  ``nest=True`` against the default path (to the loop thread);
- ``threads``: 16 threads calling ``blockon.run`` at once against one thread (calls/s).

Run on its own: ``python benches/bench_run.py [--quick]``; ``run_all.py`` runs it with the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import _harness as h

try:
    import blockon
except ImportError as exc:  # the engine may not be built yet: the other contenders still run
    blockon = None  # type: ignore[assignment]
    BLOCKON_MISSING = f"blockon not importable ({exc})"
else:
    BLOCKON_MISSING = ""

try:
    import uvloop
except ImportError:
    uvloop = None  # type: ignore[assignment]

STD = "stdlib"
UV = "uvloop"
BLOCKON = "blockon.run(coro())"
BLOCKON_UV = "LoopThread(uvloop).run(coro())"
RCTS = "run_coroutine_threadsafe().result()"
CONTROL = "control: run_coroutine_threadsafe, 2nd loop"
CACHED = "loop.run_until_complete(coro())"
ARUN = "asyncio.run(coro())"
WAKE = "ref: call_soon_threadsafe wake-up"
NEST = "blockon.run(coro(), nest=True)"
NEST_DEFAULT = "blockon.run(coro())  (to the loop thread)"
GREENBACK = "greenback.await_(coro())"


async def noop() -> None:
    """The coroutine every contender runs: it returns at once."""
    return None


class BackgroundLoop:
    """An event loop running forever in a daemon thread (the hand-rolled loop thread)."""

    def __init__(self, factory: Callable[[], asyncio.AbstractEventLoop], name: str) -> None:
        self.loop = factory()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()
        self._ready.wait()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        self.loop.run_forever()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


def rcts_call(loop: asyncio.AbstractEventLoop) -> h.Call:
    run_threadsafe = asyncio.run_coroutine_threadsafe

    def call() -> object:
        return run_threadsafe(noop(), loop).result()

    return call


def wakeup_call(loop: asyncio.AbstractEventLoop) -> h.Call:
    """The floor: wake the idle loop thread to run one callback that signals back."""
    lock = threading.Lock()
    soon = loop.call_soon_threadsafe

    def call() -> object:
        lock.acquire()
        soon(lock.release)
        lock.acquire()  # blocks until the loop thread has released it
        lock.release()
        return None

    return call


@dataclass
class Row:
    name: str
    loop: str  # STD or UV: ratios are taken against blockon on the same loop type
    call: h.Call
    tid: int | None = None  # native id of the loop thread it wakes (None: runs in the caller)

    @property
    def key(self) -> str:
        return f"{self.name} [{self.loop}]"


def _uvloop_skipped(section: h.Section) -> None:
    if uvloop is None:
        section.notes.append("uvloop is not installed: its rows are skipped (pip install uvloop).")


async def native_tid() -> int:
    return threading.get_native_id()


# --------------------------------------------------------------------------- per call


@contextlib.contextmanager
def per_call_rows() -> Iterator[list[Row]]:
    """The contenders, set up (loops started) and torn down afterwards."""
    with contextlib.ExitStack() as stack:
        rows: list[Row] = []
        if blockon is not None:
            run = blockon.run
            rows.append(Row(BLOCKON, STD, lambda: run(noop()), run(native_tid())))
            if uvloop is not None:
                lt = blockon.LoopThread(uvloop.new_event_loop, name="blockon-uvloop")
                stack.callback(lt.close)
                rows.append(Row(BLOCKON_UV, UV, lambda: lt.run(noop()), lt.run(native_tid())))

        cached = asyncio.new_event_loop()
        stack.callback(cached.close)
        rows.append(Row(CACHED, STD, lambda: cached.run_until_complete(noop())))
        runner = stack.enter_context(asyncio.Runner())
        rows.append(Row("asyncio.Runner().run(coro())", STD, lambda: runner.run(noop())))
        rows.append(Row(ARUN, STD, lambda: asyncio.run(noop())))

        def background(
            kind: str, factory: Callable[[], asyncio.AbstractEventLoop]
        ) -> tuple[asyncio.AbstractEventLoop, int]:
            bg = BackgroundLoop(factory, f"bench-{kind}-loop")
            stack.callback(bg.close)
            return bg.loop, asyncio.run_coroutine_threadsafe(native_tid(), bg.loop).result()

        std_loop, std_tid = background(STD, asyncio.new_event_loop)
        rows.append(Row(RCTS, STD, rcts_call(std_loop), std_tid))
        if uvloop is not None:
            uv_loop, uv_tid = background(UV, uvloop.new_event_loop)
            rows.append(Row(RCTS, UV, rcts_call(uv_loop), uv_tid))
        ctl_loop, ctl_tid = background(STD, asyncio.new_event_loop)
        rows.append(Row(CONTROL, STD, rcts_call(ctl_loop), ctl_tid))
        rows.append(Row(WAKE, STD, wakeup_call(std_loop), std_tid))
        if uvloop is not None:
            rows.append(Row(WAKE, UV, wakeup_call(uv_loop), uv_tid))
        yield rows


def _bases(samples: dict[str, h.Samples]) -> dict[str, h.Samples | None]:
    return {STD: samples.get(f"{BLOCKON} [{STD}]"), UV: samples.get(f"{BLOCKON_UV} [{UV}]")}


def _placed_table(
    rows: list[tuple[str, str]],
    results: dict[str, dict[str, h.Samples]],
    base_of: Callable[[dict[str, h.Samples], str], h.Samples | None],
    ratio_head: str,
) -> h.Table:
    """One row per (key, label-cells); per placement: median µs and the ratio to its base.

    The unpinned placement also gets its min-max, the spread the OS's placement causes.
    """
    head = ["contender"]
    for where in results:
        head += [f"{where} µs", ratio_head]
    if h.UNPINNED.label in results:
        head.append("unpinned min-max")
    table = h.Table(head)
    for key, label in rows:
        cells = [label]
        for samples in results.values():
            s = samples.get(key)
            if s is None or not s.ok:
                cells += ["error" if s is not None else "-", ""]
                continue
            b = base_of(samples, key)
            cells += [
                h.fmt_us(s.median),
                h.fmt_ratio(s.median / b.median) if b is not None and b.ok else "-",
            ]
        if h.UNPINNED.label in results:
            s = results[h.UNPINNED.label].get(key)
            cells.append(f"{h.fmt_us(s.min)}-{h.fmt_us(s.max)}" if s is not None and s.ok else "")
        table.add(*cells)
    return table


def _errors(results: dict[str, dict[str, h.Samples]]) -> list[str]:
    seen: dict[str, str] = {}
    for samples in results.values():
        for k, s in samples.items():
            if s.error and k not in seen:
                seen[k] = s.error
    return [f"{k} failed: {e}" for k, e in seen.items()]


def bench_per_call(cfg: h.Config) -> h.Section:
    sec = h.Section(
        "per_call",
        "Per-call overhead, from a thread with no running loop",
        "One call of a coroutine that returns at once (`async def noop(): return None`), "
        "made from the main thread, which runs no loop. Median µs per call over interleaved "
        "rounds, in three placements: the caller and every loop thread pinned to one CPU "
        "(`same CPU`), the loop threads pinned to another CPU (`other CPU`), and left to the "
        "OS (`unpinned`); then in a child process confined to one CPU from its start "
        "(`1-CPU process`, as under `taskset -c 0` or in a one-CPU container). Targets are "
        "judged in the two pinned placements. Each `÷ blockon` column is the row's median "
        "time divided by "
        "blockon's on the same loop type in the same placement (stdlib rows against "
        "`blockon.run`, uvloop rows against a `LoopThread(uvloop.new_event_loop)`). `ref:` rows "
        "are not contenders: they are the cost of waking an idle loop thread to run one "
        "callback that signals back (the floor of a plain thread hop). The `control` row is "
        "`run_coroutine_threadsafe` again on a second, identical stdlib loop thread: how far "
        "it strays from the first is the measurement's noise.",
    )
    if BLOCKON_MISSING:
        sec.notes.append(BLOCKON_MISSING + ": blockon rows are skipped.")
    _uvloop_skipped(sec)
    with per_call_rows() as rows:
        calls = {r.key: r.call for r in rows}
        tids = [r.tid for r in rows if r.tid is not None]
        results = h.measure_placed(calls, tids, cfg)
    one_cpu = _one_cpu_process(cfg)
    if isinstance(one_cpu, str):
        sec.notes.append(one_cpu)
    else:
        results[ONE_CPU] = one_cpu

    def base_of(samples: dict[str, h.Samples], key: str) -> h.Samples | None:
        return _bases(samples)[UV if key.endswith(f"[{UV}]") else STD]

    sec.table = _placed_table(
        [(r.key, f"{r.name} [{r.loop}]") for r in rows], results, base_of, "÷ blockon"
    )
    sec.notes += _errors(results)
    sec.notes.append(f"{cfg.rounds} rounds per placement, about {cfg.batch_s * 1000:g} ms a batch.")
    sec.data = {w: {k: v.median for k, v in s.items() if v.ok} for w, s in results.items()}

    def k(name: str, loop: str = STD) -> str:
        return f"{name} [{loop}]"

    sec.targets.append(
        h.placed_target(
            "blockon.run >= 4x faster than run_coroutine_threadsafe(...).result() (stdlib)",
            results,
            (k(RCTS), "run_coroutine_threadsafe"),
            (k(BLOCKON), "blockon"),
            4,
        )
    )
    if uvloop is not None:
        sec.targets.append(
            h.placed_target(
                "LoopThread(uvloop).run >= 4x faster than run_coroutine_threadsafe (uvloop)",
                results,
                (k(RCTS, UV), "run_coroutine_threadsafe"),
                (k(BLOCKON_UV, UV), "blockon"),
                4,
            )
        )
    sec.targets.append(
        h.placed_target(
            "blockon.run >= 8x faster than asyncio.run",
            results,
            (k(ARUN), "asyncio.run"),
            (k(BLOCKON), "blockon"),
            8,
        )
    )
    sec.targets.append(
        h.placed_target(
            "(aim) blockon.run within 1.5x of a cached loop's run_until_complete",
            results,
            (k(BLOCKON), "blockon"),
            (k(CACHED), "run_until_complete"),
            1.5,
            at_most=True,
        )
    )
    return sec


ONE_CPU = "1-CPU process"


def _one_cpu_process(cfg: h.Config) -> dict[str, h.Samples] | str:
    """The per-call contenders again in a child process confined to one CPU from its start
    (as under ``taskset -c 0``, or in a one-CPU container): there the engine can see it has
    one CPU. Not judged. Returns the samples, or why there are none."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_setaffinity") else []
    if len(cpus) < 2:
        return "1-CPU process: skipped (needs os.sched_setaffinity and two usable CPUs)."
    path = os.path.abspath(__file__)
    argv = [path, "--one-cpu-child", *(["--quick"] if cfg.quick else [])]
    code = (
        f"import os, sys, runpy; os.sched_setaffinity(0, {{{cpus[0]}}}); "
        f"sys.path.insert(0, {os.path.dirname(path)!r}); sys.argv = {argv!r}; "
        f"runpy.run_path({path!r}, run_name='__main__')"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    lines = p.stdout.strip().splitlines()
    if p.returncode != 0 or not lines:
        err = (p.stderr.strip().splitlines() or ["no output"])[-1]
        return f"1-CPU process: the child failed (exit {p.returncode}): {err}"
    raw: dict[str, dict[str, Any]] = json.loads(lines[-1])
    return {k: h.Samples(k, v["values"], v["error"]) for k, v in raw.items()}


def _one_cpu_child(cfg: h.Config) -> None:
    with per_call_rows() as rows:
        measures, _, failed = h.prepare({r.key: r.call for r in rows}, cfg.batch_s)
        samples = h.interleave(measures, cfg.rounds, failed=failed)
    out = {k: {"values": s.values, "error": s.error} for k, s in samples.items()}
    print(json.dumps(out), flush=True)


# --------------------------------------------------------------------------- nest


def bench_nest(cfg: h.Config) -> h.Section:
    sec = h.Section(
        "nest",
        "From inside a running loop: nest=True against the default path",
        "Sync code called from a coroutine on a running stdlib loop calls "
        "`blockon.run(noop(), nest=True)` (runs on the caller's own loop, re-entrantly) "
        "or `blockon.run(noop())` (the default path: to the default loop thread, while the "
        "caller's loop is blocked; its blocked_warning is None for the run). Median µs per "
        "call over interleaved rounds, in the same three placements as above (the default "
        "loop thread is the one pinned); `÷ nest` is the time divided by nest=True's. Each "
        "batch is one stretch of sync code run inside a fresh `asyncio.run()`, so, as in a "
        "program, the loop gets control back between batches (not between the calls of one).",
    )
    target = "nest=True >= 4x faster than the default path"
    if blockon is None:
        sec.notes.append(BLOCKON_MISSING + ": section skipped.")
        sec.targets.append(h.Target(target, None, "not measured"))
        return sec
    run = blockon.run
    calls: dict[str, h.Call] = {
        NEST: lambda: run(noop(), nest=True),
        NEST_DEFAULT: lambda: run(noop()),
    }
    try:
        import greenback
    except ImportError:
        greenback = None
    else:
        calls[GREENBACK] = lambda: greenback.await_(noop())
    lt = blockon.default_loop_thread()
    tid = run(native_tid())
    old = lt.blocked_warning
    lt.blocked_warning = None
    sizes: dict[str, dict[str, int]] = {}
    try:
        results = h.measure_placed(calls, [tid], cfg, new_loop=True, sizes=sizes)
    finally:
        lt.blocked_warning = old
    sec.table = _placed_table(
        [(k, k) for k in calls], results, lambda samples, _k: samples.get(NEST), "÷ nest"
    )
    sec.notes += _errors(results)
    sec.notes.append(
        "Calls per batch (one stretch of sync code): "
        + "; ".join(
            f"{where}: nest=True {n.get(NEST, 0):,}, default path {n.get(NEST_DEFAULT, 0):,}"
            for where, n in sizes.items()
        )
        + "."
    )
    if greenback is None:
        sec.notes.append("greenback is not installed: its row and target are missing.")
    else:
        sec.targets.append(
            h.placed_target(
                "nest=True within 2x of greenback's await_",
                results,
                (NEST, "nest=True"),
                (GREENBACK, "greenback"),
                2,
                at_most=True,
            )
        )
    sec.data = {w: {k: v.median for k, v in s.items() if v.ok} for w, s in results.items()}
    sec.targets.append(
        h.placed_target(target, results, (NEST_DEFAULT, "default path"), (NEST, "nest=True"), 4)
    )
    return sec


# --------------------------------------------------------------------------- threads


def threaded_rate(call: h.Call, nthreads: int, total: int) -> h.Measure:
    """A measure: ``nthreads`` threads share ``total`` calls; returns total calls per second.

    The threads are started and parked on a barrier first; the clock runs from the barrier's
    release until the last one is joined.
    """
    per = total // nthreads

    def measure() -> float:
        barrier = threading.Barrier(nthreads + 1)
        errors: list[BaseException] = []

        def worker() -> None:
            barrier.wait()
            try:
                for _ in range(per):
                    call()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, name=f"bench-{i}") for i in range(nthreads)]
        for t in threads:
            t.start()
        barrier.wait()
        t0 = time.perf_counter_ns()
        for t in threads:
            t.join()
        ns = time.perf_counter_ns() - t0
        if errors:
            raise errors[0]
        return per * nthreads / (ns / 1e9)

    return measure


def bench_threads(cfg: h.Config) -> h.Section:
    n = cfg.threads
    sec = h.Section(
        "threads",
        f"{n} threads calling at once against one thread",
        f"Total calls per second when {n} threads (no running loop in any) call at once, "
        "against one thread doing the same total number of calls; one shared loop thread "
        "serves them all. The `run_coroutine_threadsafe` rows (one shared background stdlib "
        "loop) are for reference. Median over interleaved rounds; last column: calls/s "
        "÷ the same call's one-thread calls/s.",
    )
    if BLOCKON_MISSING:
        sec.notes.append(BLOCKON_MISSING + ": blockon rows are skipped.")
    with contextlib.ExitStack() as stack:
        bg = BackgroundLoop(asyncio.new_event_loop, "bench-stdlib-loop")
        stack.callback(bg.close)
        singles: dict[str, h.Call] = {}
        if blockon is not None:
            run = blockon.run
            singles["blockon.run(coro())"] = lambda: run(noop())
        singles["run_coroutine_threadsafe().result()"] = rcts_call(bg.loop)

        measures: dict[str, h.Measure] = {}
        failed: dict[str, str] = {}
        pairs: list[tuple[str, str]] = []
        for name, call in singles.items():
            one, many = f"{name}, 1 thread", f"{name}, {n} threads"
            pairs.append((one, many))
            try:
                k = h.calibrate(h.batch_of(call), cfg.thread_round_s)
            except Exception as exc:
                failed[one] = failed[many] = f"{type(exc).__name__}: {exc}"
                continue
            total = max(n, (k // n) * n)
            measures[one] = threaded_rate(call, 1, total)
            measures[many] = threaded_rate(call, n, total)
        samples = h.interleave(measures, cfg.thread_rounds, failed=failed)

    table = h.Table(["contender", "median calls/s", "min", "max", "÷ 1 thread"])
    for one, many in pairs:
        for name in (one, many):
            s = samples[name]
            if not s.ok:
                table.add(name, f"error: {s.error}", "", "", "")
                continue
            base = samples[one]
            ratio = h.fmt_ratio(s.median / base.median) if base.ok else "-"
            table.add(name, h.fmt_rate(s.median), h.fmt_rate(s.min), h.fmt_rate(s.max), ratio)
    sec.table = table
    sec.data = {k: v.median for k, v in samples.items() if v.ok}
    one = samples.get("blockon.run(coro()), 1 thread")
    many = samples.get(f"blockon.run(coro()), {n} threads")
    if one is not None and many is not None and one.ok and many.ok:
        x = many.median / one.median
        sec.targets.append(
            h.Target(
                f"{n} threads: total calls/s >= one thread's",
                x >= 1.0,
                f"{h.fmt_ratio(x)} ({h.fmt_rate(many.median)} vs {h.fmt_rate(one.median)} calls/s)",
            )
        )
    else:
        sec.targets.append(h.Target(f"{n} threads >= one thread", None, "not measured"))
    return sec


SECTIONS = {
    "per_call": bench_per_call,
    "nest": bench_nest,
    "threads": bench_threads,
}


def main() -> None:
    h.main(__doc__, SECTIONS, {"--one-cpu-child": _one_cpu_child})


if __name__ == "__main__":
    main()
