"""Resident memory growth over many ``blockon.run`` calls, in a subprocess of its own.

The child warms up, collects garbage, reads its resident set size, makes the calls (sampling
RSS every tenth of the way), collects garbage and reads RSS again; it prints one JSON line.
RSS is read from ``/proc/self/statm`` (resident pages x page size), or where there is no
/proc, ``resource.getrusage`` peak RSS (an upper bound on growth). MB here is 10^6 bytes.

Run on its own: ``python benches/bench_memory.py [--quick]``.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time

import _harness as h

MB = 1_000_000


def rss_bytes() -> tuple[int, str]:
    try:
        with open("/proc/self/statm") as f:
            resident_pages = int(f.read().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE"), "/proc/self/statm"
    except OSError:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
        return peak * scale, "getrusage peak"


def child(cfg: h.Config) -> None:
    calls, warmup = cfg.mem_calls, cfg.mem_warmup
    import blockon

    async def noop() -> None:
        return None

    run = blockon.run
    for _ in range(warmup):
        run(noop())
    gc.collect()
    before, how = rss_bytes()
    checkpoints: list[tuple[int, int]] = [(0, before)]
    step = max(1, calls // 10)
    done = 0
    t0 = time.perf_counter_ns()
    while done < calls:
        k = min(step, calls - done)
        for _ in range(k):
            run(noop())
        done += k
        checkpoints.append((done, rss_bytes()[0]))
    ns = time.perf_counter_ns() - t0
    gc.collect()
    after, _ = rss_bytes()
    out = {
        "calls": calls,
        "warmup": warmup,
        "before": before,
        "after": after,
        "checkpoints": checkpoints,
        "us_per_call": ns / calls / 1000,
        "source": how,
    }
    print(json.dumps(out), flush=True)


def bench_memory(cfg: h.Config) -> h.Section:
    calls, warmup = cfg.mem_calls, cfg.mem_warmup
    sec = h.Section(
        "memory",
        f"Resident memory over {calls:,} blockon.run calls",
        f"A fresh interpreter makes {warmup:,} warm-up calls of `blockon.run(noop())`, "
        f"collects garbage and reads its resident set size, then makes {calls:,} more and "
        "reads it again after another collection. MB = 10^6 bytes.",
    )
    target = "RSS growth < 5 MB over 1,000,000 calls"
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        *(["--quick"] if cfg.quick else []),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        sec.notes.append(f"the child failed (exit {proc.returncode}): {err}")
        sec.targets.append(h.Target(target, None, "not measured"))
        return sec
    d = json.loads(lines[-1])
    growth = (d["after"] - d["before"]) / MB
    table = h.Table(["calls", "RSS before MB", "RSS after MB", "growth MB", "µs/call"])
    table.add(
        f"{d['calls']:,}",
        f"{d['before'] / MB:.2f}",
        f"{d['after'] / MB:.2f}",
        f"{growth:+.2f}",
        h.fmt_us(d["us_per_call"]),
    )
    sec.table = table
    sec.notes.append(
        "RSS (MB) after each tenth of the calls: "
        + ", ".join(f"{rss / MB:.1f}" for _, rss in d["checkpoints"])
        + f" (read from {d['source']})"
    )
    sec.data = {"growth_mb": growth, **d}
    if d["calls"] < 1_000_000:
        sec.targets.append(
            h.Target(target, None, f"{growth:+.2f} MB over only {d['calls']:,} calls (quick run)")
        )
    else:
        sec.targets.append(h.Target(target, growth < 5.0, f"{growth:+.2f} MB"))
    return sec


SECTIONS = {"memory": bench_memory}


def main() -> None:
    h.main(__doc__, SECTIONS, {"--child": child})


if __name__ == "__main__":
    main()
