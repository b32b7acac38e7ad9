"""The per-version table of docs/benchmarks.md: the performance targets on each CPython.

``run_all.py --row-json FILE`` writes one run's targets as a row file; ``make bench-matrix``
(scripts/matrix.sh --bench) runs that on every CPython of the matrix and then

    python benches/per_version.py ROW.json [ROW.json ...]

rewrites the per-version section of docs/benchmarks.md from the row files, one column per
CPython. Only the targets' verdicts and headline figures go in the table; the full run on the
machine's own CPython is the Results section, written by ``run_all.py --write``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import _harness as h

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
BEGIN = "<!-- BEGIN PER-VERSION: written by `make bench-matrix`; edits are lost -->"
END = "<!-- END PER-VERSION -->"


def write_row(path: Path, m: dict[str, str], sections: Sequence[h.Section], *, quick: bool) -> None:
    row = {
        **m,
        "quick": quick,
        "targets": [
            {
                "label": t.label,
                "verdict": t.verdict,
                "figures": t.figures,
                "disturbed": any(n.startswith("DISTURBED") for n in s.notes),
            }
            for s in sections
            for t in s.targets
        ],
    }
    path.write_text(json.dumps(row, indent=1) + "\n")


def render(rows: Sequence[dict[str, object]]) -> str:
    """The per-version section: one column per row file, one line per target."""
    labels: list[str] = []
    for r in rows:
        for t in r["targets"]:  # type: ignore[attr-defined]
            if t["label"] not in labels:
                labels.append(t["label"])
    table = h.Table(["target", *(str(r["python"]) for r in rows)], align="l" * (len(rows) + 1))
    by_label = [{t["label"]: t for t in r["targets"]} for r in rows]  # type: ignore[attr-defined]
    for label in labels:
        cells = []
        for targets in by_label:
            t = targets.get(label)
            if t is None:
                cells.append("not run")
            else:
                mark = " (disturbed)" if t.get("disturbed") else ""
                cells.append(f"{t['verdict']} {t['figures']}{mark}")
        table.add(label, *cells)
    runs = [
        f"- {r['python']}: {r['date']}, blockon {r['blockon']}, uvloop {r['uvloop']}; "
        f"load: {r.get('load', 'not measured')}{' (quick run)' if r['quick'] else ''}"
        for r in rows
    ]
    return "\n".join(
        [
            BEGIN,
            "",
            "## Per-version results",
            "",
            "The performance targets on each CPython of the compatibility matrix, from",
            "`make bench-matrix`: the same `benches/run_all.py` on each, one after another on",
            "the same machine.",
            f"Machine: {rows[0]['cpu']}, {rows[0]['cores']} cores, {rows[0]['os']}. Ratios of",
            "the thread-hopping targets are the two judged placements (same CPU, other CPU),",
            'with blockon\'s own time per call in that placement in brackets. "(disturbed)":',
            "other processes or the hypervisor (steal time) took more than 5% of the CPUs",
            "while that section ran, so its figures are noisier than the rest.",
            "",
            table.markdown(),
            "",
            *runs,
            "",
            END,
        ]
    )


def main(argv: Sequence[str]) -> int:
    if not argv:
        print("usage: python benches/per_version.py ROW.json [ROW.json ...]", file=sys.stderr)
        return 2
    rows = [json.loads(Path(a).read_text()) for a in argv]
    h.replace_block(DOC, BEGIN, END, render(rows) + "\n", before="<!-- BEGIN RESULTS")
    print(f"wrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
