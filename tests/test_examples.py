"""The examples run as a user would run them: a fresh interpreter, clean exit, quiet stderr."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("aiohttp")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.timeout(120)
def test_quickstart() -> None:
    # -W default shows every warning once (ResourceWarning for an unclosed session or socket
    # included), so a leak or a "never awaited" shows up as stderr output.
    proc = subprocess.run(
        [sys.executable, "-W", "default", str(EXAMPLES / "quickstart.py")],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    out = proc.stdout
    assert "1. created one aiohttp session on blockon's loop thread ('blockon')" in out
    assert "2. 3 sequential calls: hello, Ada; hello, Grace; hello, Linus" in out
    threads = re.search(r"^3\. 8 threads shared the session: 8/8 ok in (\d+) ms$", out, re.M)
    assert threads, out
    assert "4. a 1 s request with timeout=0.2 raised TimeoutError" in out
    assert "5. session closed, server stopped" in out
    assert out.count("\n") == 5, out
