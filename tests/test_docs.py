"""The audience guides' examples run, each block in a fresh interpreter, and print what the
page says they print. (Other pages have their own doc tests next to their feature's tests.)"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
GUIDES = ["guide-sync-script.md", "guide-notebook.md"]


def blocks(page: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", (DOCS / page).read_text(), re.M | re.S)


EXPECTED = {
    ("guide-sync-script.md", 0): [
        "value of a",
        "value of b",
        "['value of c', 'value of d']",
        "row 0",
        "row 1",
        "row 2",
    ],
    ("guide-sync-script.md", 1): ["value of a"],
    ("guide-notebook.md", 0): ["42"],
    ("guide-notebook.md", 1): ["made with top-level await"],
}


@pytest.mark.parametrize("page, index", sorted(EXPECTED))
def test_guide_example_runs_and_prints_what_the_page_says(page, index):
    code = blocks(page)[index]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONASYNCIODEBUG"}
    proc = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    assert proc.stdout.splitlines() == EXPECTED[page, index]


def test_every_guide_block_is_checked():
    for page in GUIDES:
        assert {i for p, i in EXPECTED if p == page} == set(range(len(blocks(page))))
