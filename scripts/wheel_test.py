"""Install one built distribution of blockon (a wheel, or the sdist, which pip then builds)
into a fresh virtualenv, and run the test suite against it.

The suite runs from a copy of the tests, docs and examples outside the checkout, so that
``import blockon`` is the installed package and not ./python; it says which file it
imported before it starts. Used by `make wheel-test` and `make sdist-test`, and by the
release workflow on its Linux, macOS and Windows runners (so it is Python, not shell).

    python scripts/wheel_test.py DIST_FILE [PYTEST_ARG ...]

Exits with pytest's status.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: What the suite reads besides the package: its own files, the pages whose examples and links
#: it checks, the examples, the release workflow, and the pytest configuration.
COPIED = [
    "tests",
    "docs",
    "examples",
    "scripts",
    "benches",
    ".github",
    "pyproject.toml",
    "README.md",
    "CHANGELOG.md",
]
#: The test extra (pytest and the libraries the tests use) and the lint extra (mypy checks
#: that the installed package's types work for a user's code).
EXTRAS = "test,lint"


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    dist = Path(argv[0]).resolve()
    with tempfile.TemporaryDirectory(prefix="blockon-wheel-test-") as tmp:
        work = Path(tmp) / "work"
        work.mkdir()
        for name in COPIED:
            source = ROOT / name
            if source.is_dir():
                shutil.copytree(source, work / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(source, work / name)
        env_dir = Path(tmp) / "venv"
        venv.create(env_dir, with_pip=True)
        bin_dir = env_dir / ("Scripts" if os.name == "nt" else "bin")
        python = str(bin_dir / "python")
        pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        subprocess.run([*pip, "-U", "pip"], check=True)
        subprocess.run([*pip, f"{dist}[{EXTRAS}]"], check=True)
        where = subprocess.run(
            [python, "-c", "import blockon, blockon._blockon as e; print(e.__file__)"],
            cwd=work,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        print(f"testing {dist.name}: blockon's engine is {where}", flush=True)
        if not Path(where).resolve().is_relative_to(env_dir.resolve()):
            print("error: that is not the installed package", file=sys.stderr)
            return 1
        return subprocess.run([python, "-m", "pytest", *argv[1:]], cwd=work, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
