"""The bar chart of docs/benchmarks.png, drawn with matplotlib from the sections' ``data``.

First the realistic coroutines (``workloads``): µs per call of each workload from one thread,
by every contender, one panel per pinned placement; then the total rate of 1, 4 and 16
threads calling ``sleep(0)``. Then per-call overhead (µs, log scale) of blockon, the peers and
the asyncio baselines (from the ``peers`` section, in its two pinned placements where there
are any, plus the in-a-running-loop rows); stream items/s (log scale; ``peers``, else
``stream``); fan-out wall time (``fanout``). A panel whose section did not run is left out.
matplotlib is a benchmark-only dependency: without it, ``write_chart`` returns why and draws
nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import _harness as h

BLOCKON_COLOR = "#d62728"
PEER_COLOR = "#1f77b4"
ASYNCIO_COLOR = "#7f7f7f"


def _color(name: str) -> str:
    if name.startswith("blockon"):
        return BLOCKON_COLOR
    if name.startswith(("asyncio ", "run_coroutine_threadsafe", "asyncio.")):
        return ASYNCIO_COLOR
    return PEER_COLOR


def _per_call(data: dict[str, Any]) -> tuple[list[str], list[tuple[str, list[float]]]]:
    """Rows (names) and series (placement label, values) of the per-call panel."""
    per: dict[str, dict[str, float]] = data.get("per_call_us", {})
    pinned = [w for w in per if w in ("same CPU", "other CPU")] or list(per)[:1]
    names = sorted({k for w in pinned for k in per[w]}, key=lambda k: -per[pinned[0]].get(k, 0))
    series = [(f"no running loop, {w}", [per[w].get(k, 0.0) for k in names]) for w in pinned]
    nested: dict[str, float] = data.get("nested_us", {})
    if nested:
        inner = sorted(nested, key=lambda k: -nested[k])
        names = [*inner, *names]
        series = [(label, [0.0] * len(inner) + vals) for label, vals in series]
        series.append(
            (
                "inside a running loop",
                [nested[k] for k in inner] + [0.0] * (len(names) - len(inner)),
            )
        )
    return names, series


#: The workloads panels' contenders, in drawing order: (name, loop, colour, hatch).
WORKLOAD_CONTENDERS = [
    ("blockon", "stdlib", BLOCKON_COLOR, ""),
    ("blockon", "uvloop", BLOCKON_COLOR, "//"),
    ("run_coroutine_threadsafe", "stdlib", ASYNCIO_COLOR, ""),
    ("run_coroutine_threadsafe", "uvloop", ASYNCIO_COLOR, "//"),
    ("same-thread loop", "stdlib", "#404040", ""),
    ("same-thread loop", "uvloop", "#404040", "//"),
    ("asyncio-thread-runner", "stdlib", PEER_COLOR, ""),
    ("anyio portal", "stdlib", "#6baed6", ""),
    ("synchronicity", "stdlib", "#08306b", ""),
]


def _workloads_panel(ax: Any, data: dict[str, Any], where: str) -> None:
    """One placement: a group of bars per workload, one bar per contender, 1 thread."""
    us: dict[str, float] = data["us"][where]
    titles: dict[str, str] = data["titles"]
    n = len(WORKLOAD_CONTENDERS)
    width = 0.84 / n
    for i, (name, loop, color, hatch) in enumerate(WORKLOAD_CONTENDERS):
        vals = [us.get(f"{w} | {name} [{loop}] | 1", 0.0) for w in titles]
        ys = [j + (i - (n - 1) / 2) * width for j in range(len(titles))]
        bars = ax.barh(
            ys,
            vals,
            height=width,
            color=color,
            hatch=hatch,
            edgecolor="white",
            label=f"{name} [{loop}]",
        )
        ax.bar_label(bars, labels=[h.fmt_us(v) if v else "" for v in vals], padding=2, fontsize=6)
    ax.set_yticks(range(len(titles)), [t.replace("`", "") for t in titles.values()], fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("µs per call (median; log scale; shorter is better)")
    ax.set_title(f"Realistic coroutines from one thread, {where}")
    ax.legend(fontsize=7, loc="upper right", ncol=2)


def _threads_panel(ax: Any, data: dict[str, Any]) -> None:
    """Total calls/s of sleep(0) from 1, 4 and 16 threads, per contender and placement."""
    groups = [
        (f"{name} [{loop}], {where}", name, loop, where, color)
        for name, loop, color, _ in WORKLOAD_CONTENDERS[:5]
        for where in data["us"]
    ]
    counts = (1, 4, 16)
    width = 0.8 / len(counts)
    for i, n in enumerate(counts):
        vals = []
        for _, name, loop, where, _ in groups:
            x = data["us"][where].get(f"sleep0x1 | {name} [{loop}] | {n}")
            vals.append(1e6 / x if x else 0.0)
        ys = [j + (i - 1) * width for j in range(len(groups))]
        bars = ax.barh(
            ys,
            vals,
            height=width,
            color=[g[4] for g in groups],
            alpha=0.45 + 0.25 * i,
            edgecolor="white",
            label=f"{n} thread{'s' if n > 1 else ''}",
        )
        ax.bar_label(bars, labels=[h.fmt_rate(v) if v else "" for v in vals], padding=2, fontsize=6)
    ax.set_yticks(range(len(groups)), [g[0] for g in groups], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("total calls/s of `await asyncio.sleep(0)` (median; longer is better)")
    ax.set_title("Many threads at once: 1, 4 and 16 threads sharing one loop")
    leg = ax.legend(fontsize=7, loc="lower right")
    for patch in leg.get_patches():
        patch.set_facecolor("#888888")


def write_chart(sections: list[h.Section], path: Path) -> str | None:
    """Draw the chart into ``path``; return None, or why nothing was drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib): no chart"
    by_key = {s.key: s.data for s in sections}
    panels: list[str] = []
    workloads = by_key.get("workloads", {})
    if workloads.get("us"):
        panels += [f"workloads:{where}" for where in workloads["us"]] + ["threads"]
    if by_key.get("peers", {}).get("per_call_us"):
        panels.append("per_call")
    stream = by_key.get("peers", {}).get("items_per_s") or by_key.get("stream", {}).get(
        "items_per_s"
    )
    if stream:
        panels.append("stream")
    fanout = by_key.get("fanout", {}).get("wall_s")
    if fanout:
        panels.append("fanout")
    if not panels:
        return "no section with chart data ran: no chart"

    heights = {"per_call": 6.5, "stream": 3.6, "fanout": 1.8, "threads": 5.5}
    height = [heights.get(p, 7.5) for p in panels]
    fig, axes = plt.subplots(
        len(panels),
        1,
        figsize=(11, sum(height)),
        gridspec_kw={"height_ratios": height},
        squeeze=False,
    )
    for ax, panel in zip(axes[:, 0], panels, strict=True):
        if panel.startswith("workloads:"):
            _workloads_panel(ax, workloads, panel.split(":", 1)[1])
        elif panel == "threads":
            _threads_panel(ax, workloads)
        elif panel == "per_call":
            names, series = _per_call(by_key["peers"])
            nested_n = len(by_key["peers"].get("nested_us", {}))
            free_series = [x for x in series if x[0] != "inside a running loop"]
            width = 0.8 / max(1, len(free_series))
            hatches = ["", "//"]
            for i, (label, vals) in enumerate(series):
                if label == "inside a running loop":
                    ys, w, hatch = [float(j) for j in range(len(names))], 0.5, ".."
                else:
                    off = (i - (len(free_series) - 1) / 2) * width
                    ys, w, hatch = [j + off for j in range(len(names))], width, hatches[i % 2]
                bars = ax.barh(
                    ys,
                    vals,
                    height=w,
                    color=[_color(n) for n in names],
                    hatch=hatch,
                    edgecolor="white",
                    label=label,
                )
                ax.bar_label(
                    bars,
                    labels=[h.fmt_us(v) if v else "" for v in vals],
                    padding=2,
                    fontsize=7,
                )
            if nested_n:
                ax.axhline(nested_n - 0.5, color="black", linewidth=0.6)
            ax.set_yticks(range(len(names)), names, fontsize=8)
            ax.set_xscale("log")
            ax.set_xlabel("µs per call (median; log scale; shorter is better)")
            ax.set_title("Per-call overhead of a coroutine that returns at once")
            leg = ax.legend(fontsize=8, loc="lower right")
            for patch in leg.get_patches():
                patch.set_facecolor("#bbbbbb")
        elif panel == "stream":
            names = sorted(stream, key=lambda k: stream[k])
            bars = ax.barh(names, [stream[k] for k in names], color=[_color(n) for n in names])
            ax.bar_label(bars, labels=[h.fmt_rate(stream[k]) for k in names], padding=2, fontsize=7)
            ax.tick_params(axis="y", labelsize=8)
            ax.set_xscale("log")
            ax.set_xlabel("items/s (median; log scale; longer is better)")
            ax.set_title("Stream: items/s over an async generator, from a thread with no loop")
        else:
            names = sorted(fanout, key=lambda k: -fanout[k])
            bars = ax.barh(names, [fanout[k] for k in names], color=[_color(n) for n in names])
            ax.bar_label(bars, labels=[f"{fanout[k]:.3f} s" for k in names], padding=2, fontsize=7)
            ax.tick_params(axis="y", labelsize=8)
            ax.set_xlabel("wall time, s (median; shorter is better)")
            ax.set_title("Fan-out: 10,000 coroutines that each sleep 0.1 s, from sync code")
        ax.margins(x=0.12)
        ax.grid(axis="x", alpha=0.3)
        ax.set_axisbelow(True)
    fig.suptitle(
        "blockon (red) against peers (blue) and asyncio baselines (grey)", fontsize=11, y=0.995
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
