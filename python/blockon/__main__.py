"""``python -m blockon``: blockon's command line.

``python -m blockon stubgen MODULE [MODULE...] [-o DIR] [--check]`` writes ``.pyi`` stubs
that give the ``sync()`` twins of the modules named their sync types (docs/reference.md,
"python -m blockon stubgen").
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m blockon")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    stubgen = commands.add_parser(
        "stubgen",
        help="write .pyi stubs that type the sync() twins of modules",
        description="Import each MODULE, find the twins sync() made in it, and write its "
        ".pyi stub: next to the module's source, or under DIR with -o.",
    )
    stubgen.add_argument("modules", nargs="+", metavar="MODULE", help="a module, e.g. mylib.sync")
    stubgen.add_argument("-o", "--output", type=Path, metavar="DIR", help="write stubs under DIR")
    stubgen.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if a stub on disk differs from what would be written",
    )
    args = parser.parse_args(argv)
    return _stubgen(args.modules, args.output, args.check)


def _stubgen(modules: list[str], output: Path | None, check: bool) -> int:
    from ._stubgen import Run

    # The modules are imported the way `python -m` finds them: from the current directory too.
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, "")
    try:
        stubs = Run(modules).stubs(output)
    except (ImportError, LookupError, ValueError) as exc:
        print(f"blockon stubgen: {exc}", file=sys.stderr)
        return 2
    stale = 0
    for stub in stubs:
        shown = _shown(stub.path)
        for line in stub.fallbacks:
            print(f"{shown}: {line}")
        old = stub.path.read_text(encoding="utf-8") if stub.path.exists() else None
        if check:
            if old != stub.text:
                stale += 1
                print(f"{shown}: out of date (python -m blockon stubgen {stub.module})")
                diff = difflib.unified_diff(
                    (old or "").splitlines(keepends=True),
                    stub.text.splitlines(keepends=True),
                    shown,
                    f"{shown} (generated)",
                )
                sys.stdout.writelines(diff)
            continue
        if old != stub.text:
            stub.path.parent.mkdir(parents=True, exist_ok=True)
            stub.path.write_text(stub.text, encoding="utf-8")
        fell_back = f", {len(stub.fallbacks)} fell back to Any" if stub.fallbacks else ""
        print(f"{shown}: {'written' if old != stub.text else 'up to date'}{fell_back}")
    return 1 if stale else 0


def _shown(path: Path) -> str:
    """A path as the user named the directory: relative to the current one if inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())
