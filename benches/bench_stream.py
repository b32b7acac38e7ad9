"""Items per second iterating an async generator from sync code, side by side.

Contenders, each over an async generator of small items (ints), all in one process, in
interleaved rounds:

- a per-item ``asyncio.run_coroutine_threadsafe(anext(it), loop).result()`` loop;
- asyncio-thread-runner's ``ThreadRunner.wrap_iter`` (a round trip per item), if installed;
- ``blockon.wrap_iter(agen(), prefetch=0)`` (lockstep: one ``__anext__`` per ``next()``);
- ``blockon.wrap_iter(agen(), prefetch=256)``.

Targets (docs/benchmarks.md): lockstep at least 3x the items/s of the per-item
``run_coroutine_threadsafe`` loop, prefetch=256 at least 100x.

Run on its own: ``python benches/bench_stream.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import AsyncIterator, Callable

import _harness as h

try:
    import blockon
except ImportError:  # pragma: no cover - the engine is not built
    blockon = None  # type: ignore[assignment]

try:
    import asyncio_thread_runner
except ImportError:
    asyncio_thread_runner = None  # type: ignore[assignment]

RCTS = "run_coroutine_threadsafe(anext(it)) per item"
ATR = "asyncio-thread-runner wrap_iter"
LOCKSTEP = "blockon.wrap_iter(prefetch=0)"
PREFETCH = "blockon.wrap_iter(prefetch=256)"


async def agen(n: int) -> AsyncIterator[int]:
    for i in range(n):
        yield i


def _background_loop() -> asyncio.AbstractEventLoop:
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def main() -> None:
        loop.call_soon(ready.set)
        loop.run_forever()

    threading.Thread(target=main, name="bench-loop", daemon=True).start()
    ready.wait()
    return loop


def contenders(items: dict[str, int]) -> dict[str, Callable[[], int]]:
    loop = _background_loop()

    def rcts() -> int:
        n = items[RCTS]
        it = agen(n)
        count = 0
        while True:
            try:
                asyncio.run_coroutine_threadsafe(anext(it), loop).result()
            except StopAsyncIteration:
                return count
            count += 1

    out: dict[str, Callable[[], int]] = {RCTS: rcts}
    if asyncio_thread_runner is not None:
        runner = asyncio_thread_runner.ThreadRunner().__enter__()

        def atr() -> int:
            return sum(1 for _ in runner.wrap_iter(agen(items[ATR])))

        out[ATR] = atr
    if blockon is not None:
        out[LOCKSTEP] = lambda: sum(1 for _ in blockon.wrap_iter(agen(items[LOCKSTEP])))
        out[PREFETCH] = lambda: sum(
            1 for _ in blockon.wrap_iter(agen(items[PREFETCH]), prefetch=256)
        )
    return out


def bench_stream(cfg: h.Config) -> h.Section:
    total = 20_000 if cfg.quick else 100_000
    # The slow contenders iterate fewer items per round, so a round stays short; rates are
    # per item either way.
    items = {RCTS: total // 10, ATR: total // 10, LOCKSTEP: total // 2, PREFETCH: total}
    sec = h.Section(
        "stream",
        "Streaming: items/s over an async generator",
        f"An async generator yielding small ints, iterated from a thread with no running loop "
        f"(prefetch=256 iterates {total:,} items a round; the slower contenders fewer). "
        f"{max(3, cfg.rounds // 3)} interleaved rounds; medians.",
    )
    runs = contenders(items)
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(max(3, cfg.rounds // 3)):
        for name, run in runs.items():
            t0 = time.perf_counter()
            count = run()
            rates[name].append(count / (time.perf_counter() - t0))
    median = {name: statistics.median(r) for name, r in rates.items()}
    base = median[RCTS]
    table = h.Table(["contender", "items/s (median)", "min", "max", "vs per-item rcts"])
    for name, r in rates.items():
        table.add(
            name,
            h.fmt_rate(median[name]),
            h.fmt_rate(min(r)),
            h.fmt_rate(max(r)),
            h.fmt_ratio(median[name] / base),
        )
    sec.table = table
    sec.data = {"items_per_s": median}
    if asyncio_thread_runner is None:
        sec.notes.append("asyncio-thread-runner is not installed: its row is missing")
    if blockon is None:
        sec.targets.append(h.Target("wrap_iter targets", None, "blockon not importable"))
        return sec
    lock, pre = median[LOCKSTEP] / base, median[PREFETCH] / base
    sec.targets.append(
        h.Target("wrap_iter(prefetch=0) >= 3x per-item rcts", lock >= 3, h.fmt_ratio(lock))
    )
    sec.targets.append(
        h.Target("wrap_iter(prefetch=256) >= 100x per-item rcts", pre >= 100, h.fmt_ratio(pre))
    )
    return sec


SECTIONS = {"stream": bench_stream}


def main() -> None:
    h.main(__doc__, SECTIONS)


if __name__ == "__main__":
    main()
