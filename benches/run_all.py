"""Run every benchmark side by side and print the tables (``make bench``).

    python benches/run_all.py            # full run (about a minute or two)
    python benches/run_all.py --quick    # smoke run: few rounds, 50,000 memory calls
    python benches/run_all.py --write    # full run, then rewrite docs/benchmarks.md's results
                                         # and draw docs/benchmarks.png
    python benches/run_all.py --only per_call,nest
    python benches/run_all.py --wait-quiet 600   # first wait (up to 600 s) for an idle machine

The in-process sections (per_call, nest, threads) run in this process; memory and import run
in subprocesses of their own. The performance targets print as PASS/FAIL lines.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import _chart
import _harness as h
import bench_fanout
import bench_idle
import bench_import
import bench_memory
import bench_peers
import bench_run
import bench_stream
import bench_workloads
import per_version

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
CHART = ROOT / "docs" / "benchmarks.png"
BEGIN = "<!-- BEGIN RESULTS: written by `python benches/run_all.py --write`; edits are lost -->"
END = "<!-- END RESULTS -->"
HEAD_BEGIN = (
    "<!-- BEGIN HEADLINE: written by `python benches/run_all.py --write`; edits are lost -->"
)
HEAD_END = "<!-- END HEADLINE -->"

SECTIONS: dict[str, Callable[[h.Config], h.Section]] = {
    **bench_workloads.SECTIONS,  # realistic coroutines, 1/4/16 threads, both loop types
    **bench_run.SECTIONS,
    **bench_stream.SECTIONS,
    **bench_fanout.SECTIONS,  # gather of 10,000 sleeping coroutines
    **bench_peers.SECTIONS,
    **bench_memory.SECTIONS,
    **bench_idle.SECTIONS,
    **bench_import.SECTIONS,
}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git(*args: str) -> str | None:
    try:
        p = subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False
        )
    except OSError:
        return None
    return p.stdout.strip() if p.returncode == 0 else None


def _git_rev() -> str:
    """The commit, and whether the engine's sources differ from it. A copy of the benches
    outside the checkout (scripts/matrix.sh --bench) is told it by BLOCKON_GIT_REV."""
    if os.environ.get("BLOCKON_GIT_REV"):
        return os.environ["BLOCKON_GIT_REV"]
    rev = _git("rev-parse", "--short", "HEAD")
    if not rev:
        return ""
    dirty = _git("status", "--porcelain", "--", "src", "python", "Cargo.toml", "pyproject.toml")
    return rev + (" + uncommitted changes to src/python" if dirty else "")


def machine() -> dict[str, str]:
    cores = os.cpu_count() or 0
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = cores
    rev = _git_rev()
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": f"{cores}" + (f" ({usable} usable)" if usable != cores else ""),
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "blockon": _version("blockon") + (f" (git {rev})" if rev else " (uncommitted tree)"),
        "uvloop": _version("uvloop"),
    }


def targets_table(sections: list[h.Section]) -> h.Table:
    t = h.Table(["target", "result", "measured"], align="lll")
    for s in sections:
        for tg in s.targets:
            t.add(tg.label, tg.verdict, tg.detail)
    return t


def render_markdown(
    m: dict[str, str], sections: list[h.Section], cfg: h.Config, secs: float
) -> str:
    out = [
        BEGIN,
        "",
        "## Results",
        "",
        f"Measured {m['date']} with `python benches/run_all.py --write` "
        f"({secs:.0f} s{', quick run' if cfg.quick else ''}).",
        "",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['os']}",
        f"- Python: {m['python']}",
        f"- blockon: {m['blockon']}; uvloop: {m['uvloop']}",
        f"- Load: {m.get('load', 'not measured')}",
        "",
        "### Targets",
        "",
        targets_table(sections).markdown(),
        "",
    ]
    for s in sections:
        out.append(s.markdown())
    out += [END]
    return "\n".join(out) + "\n"


def render_headline(m: dict[str, str], sections: list[h.Section]) -> str | None:
    """The top of docs/benchmarks.md: the realistic workloads' tables and targets."""
    s = next((s for s in sections if s.key == "workloads"), None)
    if s is None or s.table is None:
        return None
    out = [
        HEAD_BEGIN,
        "",
        "## Realistic coroutines: the headline",
        "",
        f"Measured {m['date']} on {m['cpu']}, {m['cores']} cores, {m['os']}, {m['python']}, "
        f"blockon {m['blockon']}, uvloop {m['uvloop']}. Machine load while the benchmarks ran: "
        f"{m.get('load', 'not measured')}. Method, every other section and the full target "
        "list: [Results](#results) below.",
        "",
        s.intro,
        "",
        s.table.markdown(),
        "",
    ]
    for caption, table in s.extra[:1]:
        out += [caption, "", table.markdown(), ""]
    out += [*(f"- **{t.verdict}** {t.label}: {t.figures}" for t in s.targets), "", HEAD_END]
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description="Run blockon's benchmarks side by side.")
    ap.add_argument("--quick", action="store_true", help="a fast smoke run (not for --write)")
    ap.add_argument("--write", action="store_true", help=f"rewrite the results in {DOC.name}")
    ap.add_argument("--only", default="", help="comma-separated sections: " + ", ".join(SECTIONS))
    ap.add_argument(
        "--row-json",
        metavar="FILE",
        help="also write this run's targets as one per-version row (see benches/per_version.py)",
    )
    ap.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="S",
        help="wait up to S seconds for other processes to leave the CPUs idle before starting",
    )
    args = ap.parse_args()
    if args.write and args.quick:
        ap.error("--write records a full run; drop --quick")
    keys = [k.strip() for k in args.only.split(",") if k.strip()] or list(SECTIONS)
    unknown = [k for k in keys if k not in SECTIONS]
    if unknown:
        ap.error(f"unknown section(s) {unknown}; choose from {list(SECTIONS)}")
    if args.write and keys != list(SECTIONS):
        ap.error("--write records all sections; drop --only")
    cfg = h.QUICK if args.quick else h.FULL

    m = machine()
    print("blockon benchmarks" + (" (quick smoke run)" if cfg.quick else ""))
    for k, v in m.items():
        print(f"  {k:8} {v}")
    deadline = time.monotonic() + args.wait_quiet
    while True:
        with h.watch_load() as before:
            time.sleep(0.5 if args.wait_quiet <= 0 else 2.0)
        busy = bool(before) and before[0].disturbed()
        if not busy or time.monotonic() >= deadline:
            break
    if busy:
        print(f"  WARNING: the machine is busy ({before[0].text()}): numbers will be disturbed")
    print(flush=True)

    t0 = time.monotonic()
    sections: list[h.Section] = []
    with h.watch_load() as total:
        for k in keys:
            with h.watch_load() as load:
                s = SECTIONS[k](cfg)
            if load and load[0].disturbed():
                s.notes.append(
                    f"DISTURBED: while this section ran, {load[0].text()}; "
                    "rerun on a quiet machine."
                )
            sections.append(s)
            print(s.text(), flush=True)
    secs = time.monotonic() - t0
    if total:
        m["load"] = total[0].text() + " (while the benchmarks ran)"

    print("== Targets")
    for s in sections:
        for tg in s.targets:
            print(f"  {tg.line()}")
    print(f"\n({secs:.0f} s; {m.get('load', 'load not measured')})")

    if args.row_json:
        per_version.write_row(Path(args.row_json), m, sections, quick=cfg.quick)
        print(f"wrote {args.row_json}")
    if args.write:
        h.replace_block(DOC, BEGIN, END, render_markdown(m, sections, cfg, secs))
        headline = render_headline(m, sections)
        if headline is not None:
            h.replace_block(DOC, HEAD_BEGIN, HEAD_END, headline, before="## What is measured")
        print(f"wrote {DOC.relative_to(ROOT)}")
        why = _chart.write_chart(sections, CHART)
        print(why or f"wrote {CHART.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
