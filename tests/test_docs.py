"""The code in README.md and docs/*.md runs, and prints what the page says it prints.

One convention for every page (README.md, "Examples in the docs", says the same for writers):

- A block fenced ```python is a program. It runs in a fresh interpreter
  (``sys.executable -W error``, from the repository's root, with a timeout), and must exit
  with status 0 and print nothing on standard error. Each block is one test, whose id is
  the page and the line of its opening fence (``docs/reference.md:57``); a failure reports
  the same page and line, and a traceback's line numbers are the page's own.
- Blocks in any other language (sh, text, console, pycon, or none) do not run. ``py`` and
  ``python3`` are refused as ambiguous: a Python block is fenced ```python.
- A block that is deliberately not runnable (a fragment, an outline) is marked by an HTML
  comment on the line right before its fence, ``<!-- no-run: why it cannot run -->``, and
  the reason is required.
- ``<!-- continues -->`` on the line before a fence: the block goes on from the python block
  before it on the page, and runs as one program with it (and with what that one continues),
  for a page that builds one example step by step. Only its own output is compared.
- A ```text block that comes right after a running python block (blank lines between at
  most) is that block's exact standard output, and is compared with it (trailing spaces
  ignored).
- A block that talks to a web server uses the placeholder URL ``https://example.com``: the
  test replaces it with the URL of a local aiohttp server on 127.0.0.1 (``SERVER`` below),
  so no block reaches the internet. The server answers ``/slow?seconds=S`` after S seconds
  with ``slow``, and every other path with three lines of text, ``hello from <path>`` first.

The blocks run a few at a time in a pool started with the first test, so the whole file takes
a few seconds on two cores; each test still waits for, and reports, its own block only.
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PLACEHOLDER = "https://example.com"
BLOCK_TIMEOUT = 60  # seconds, for one block's interpreter
WORKERS = 3  # blocks running at once: most of their time is spent sleeping or starting up

FENCE = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*?)\s*$")
MARK = re.compile(r"^\s*<!--\s*(?P<kind>no-run|continues)\b(?P<rest>.*?)-->\s*$")
ANY_MARK = re.compile(r"^\s*<!--\s*(no-run|continues)\b")
PYTHON_ALIASES = {"py", "python3", "py3", "python2"}


@dataclass
class Block:
    page: str  # relative to the repository's root
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    mark: str | None = None  # "no-run" or "continues"
    reason: str = ""
    output: str | None = None  # the ```text block right after, if any
    errors: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def parse(path: Path, root: Path = ROOT) -> list[Block]:
    """Every fenced block of a page, with its mark and its output block."""
    page = path.relative_to(root).as_posix()
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    ends: list[int] = []  # index of each block's closing fence
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, info = opening["fence"], opening["info"]
        end = i + 1
        while end < len(lines):
            closing = FENCE.match(lines[end])
            if closing and closing["fence"].startswith(fence) and not closing["info"]:
                break
            end += 1
        block = Block(page, i + 1, info.split()[0] if info else "", "\n".join(lines[i + 1 : end]))
        if info and info.split()[1:]:
            block.errors.append(f"put marks in an HTML comment, not in the fence: {info!r}")
        if i > 0 and (mark := MARK.match(lines[i - 1])):
            block.mark = mark["kind"]
            block.reason = mark["rest"].strip().lstrip(":").strip()
        blocks.append(block)
        ends.append(end)
        i = end + 1
    # A ```text block right after a python block is its output.
    for before, after, end in zip(blocks, blocks[1:], ends, strict=False):
        gap = lines[end + 1 : after.line - 1]
        if before.lang == "python" and after.lang == "text" and not any(s.strip() for s in gap):
            before.output = after.code
    return blocks


def all_blocks(pages: list[Path] = PAGES, root: Path = ROOT) -> list[Block]:
    return [block for path in pages for block in parse(path, root)]


@dataclass
class Program:
    """What one test runs: a python block, after the blocks it continues."""

    blocks: list[Block]

    @property
    def last(self) -> Block:
        return self.blocks[-1]

    def __repr__(self) -> str:
        return f"Program({' + '.join(block.where for block in self.blocks)})"

    def script(self, url: str | None) -> str:
        """The blocks at their own line numbers (blank lines elsewhere), so a traceback's
        line numbers are the page's; before the last block of several, a marker on stdout."""
        lines = [""] * (self.last.line + self.last.code.count("\n") + 1)
        for block in self.blocks:
            code = block.code if url is None else block.code.replace(PLACEHOLDER, url)
            for offset, text in enumerate(code.splitlines()):
                lines[block.line + offset] = text
        if len(self.blocks) > 1:
            lines[self.last.line - 1] = f'__import__("sys").stdout.write({MARKER!r})'
        return "\n".join(lines) + "\n"


MARKER = "\x00 the block under test starts here\n"


def programs(blocks: list[Block]) -> list[Program]:
    found: list[Program] = []
    previous: dict[str, Program] = {}  # per page: the last runnable program
    for block in blocks:
        if block.lang != "python" or block.mark == "no-run":
            continue
        if block.mark == "continues" and block.page in previous:
            found.append(Program([*previous[block.page].blocks, block]))
        else:
            found.append(Program([block]))
        previous[block.page] = found[-1]
    return found


PROGRAMS = programs(all_blocks())


def clean(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


# --------------------------------------------------------------------------- the web server

SERVER = """
import asyncio

from aiohttp import web


async def handle(request):
    if request.path == "/slow":
        await asyncio.sleep(float(request.query.get("seconds", "1")))
        return web.Response(text="slow\\n")
    return web.Response(text=f"hello from {request.path}\\nline 2\\nline 3\\n")


async def main():
    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()


asyncio.run(main())
"""


class Server:
    """A local web server in a subprocess, started when the first block needs it."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.lock = threading.Lock()  # the pool's threads may ask for it at once

    def start(self) -> str:
        with self.lock:
            return self._start()

    def _start(self) -> str:
        if self.proc is None:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", SERVER],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                env=block_env(),
            )
            assert self.proc.stdout is not None
            port = self.proc.stdout.readline().strip()
            assert port.isdigit(), "the docs' web server did not start"
            self.url = f"http://127.0.0.1:{port}"
        return self.url

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            assert self.proc.stdout is not None
            self.proc.stdout.close()


def block_env() -> dict[str, str]:
    # asyncio debug mode (which the suite's conftest turns on) logs slow callbacks to stderr.
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTHONASYNCIODEBUG")}


# --------------------------------------------------------------------------- running blocks


class Runner:
    """Runs the selected programs a few at a time, in the order the tests will ask for them."""

    def __init__(self, wanted: list[Program], tmp: Path, server: Server) -> None:
        self.tmp = tmp
        self.server = server
        self.pool = concurrent.futures.ThreadPoolExecutor(WORKERS, "docs-block")
        self.futures = {id(p): self.pool.submit(self.run, p) for p in wanted}

    def run(self, program: Program) -> subprocess.CompletedProcess[str]:
        needs_server = any(PLACEHOLDER in block.code for block in program.blocks)
        url = self.server.start() if needs_server else None
        last = program.last
        script = self.tmp / f"{last.page.replace('/', '_')}-{last.line}.py"
        script.write_text(program.script(url), encoding="utf-8")
        try:
            return subprocess.run(
                [sys.executable, "-W", "error", str(script)],
                capture_output=True,
                text=True,
                cwd=ROOT,
                env=block_env(),
                timeout=BLOCK_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
            return subprocess.CompletedProcess(
                exc.cmd, -1, out, f"timed out after {BLOCK_TIMEOUT} s"
            )

    def result(self, program: Program) -> subprocess.CompletedProcess[str]:
        future = self.futures.get(id(program)) or self.pool.submit(self.run, program)
        return future.result()

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)


@pytest.fixture(scope="module")
def runner(request, tmp_path_factory):
    # Every block this session will test, in order, so the pool can run ahead of the tests.
    wanted = [
        item.callspec.params["program"]
        for item in request.session.items
        if item.module is request.module and hasattr(item, "callspec")
        if "program" in item.callspec.params
    ]
    server = Server()
    runner = Runner(wanted, tmp_path_factory.mktemp("docs"), server)
    yield runner
    runner.close()
    server.stop()


@pytest.mark.timeout(BLOCK_TIMEOUT * 2)
@pytest.mark.parametrize("program", PROGRAMS, ids=[p.last.where for p in PROGRAMS])
def test_python_block_runs(program, runner):
    proc = runner.result(program)
    where = program.last.where
    assert proc.returncode == 0, f"{where} failed:\n{proc.stderr}"
    assert proc.stderr == "", f"{where} wrote to stderr:\n{proc.stderr}"
    if program.last.output is not None:
        out = proc.stdout.rpartition(MARKER)[2]
        assert clean(out) == clean(program.last.output), f"{where} printed:\n{out}"


# --------------------------------------------------------------------------- the convention


def convention_problems(pages: list[Path], root: Path) -> list[str]:
    """Where pages break the convention of this module's docstring."""
    problems = []
    blocks = all_blocks(pages, root)
    for block in blocks:
        problems += [f"{block.where}: {error}" for error in block.errors]
        if block.lang in PYTHON_ALIASES:
            problems.append(f"{block.where}: fence Python code as ```python, not {block.lang}")
        if block.mark and block.lang != "python":
            problems.append(f"{block.where}: a {block.mark} mark before a {block.lang!r} block")
        if block.mark == "no-run" and not block.reason:
            problems.append(f"{block.where}: say why it does not run: <!-- no-run: reason -->")
        if block.mark == "continues" and block.reason:
            problems.append(f"{block.where}: <!-- continues --> takes no text")
    for program in programs(blocks):
        first = program.blocks[0]
        if first.mark == "continues":
            problems.append(f"{first.where}: continues, but no python block runs before it")
    for path in pages:
        lines = path.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if ANY_MARK.search(line) and not (
                MARK.match(line) and i + 1 < len(lines) and FENCE.match(lines[i + 1])
            ):
                where = f"{path.relative_to(root).as_posix()}:{i + 1}"
                problems.append(f"{where}: a mark must be right before a fence: {line.strip()}")
    return problems


def test_every_python_block_runs_or_is_marked_with_a_reason():
    assert convention_problems(PAGES, ROOT) == []


def test_the_convention_is_enforced(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- no-run -->\n```python\nfragment(\n```\n\n"  # fence on 2: no reason
        "<!-- no-run: a fragment -->\n```python\nfragment(\n```\n\n"  # 7: fine
        "```py\nprint(1)\n```\n\n"  # 11: not fenced as python
        "<!-- continues -->\n```text\nout\n```\n\n"  # 16: a mark before text
        "<!-- no-run: where is its fence? -->\n\n"  # 20: a mark before nothing
        "```python no-run\nprint(2)\n```\n",  # 22: a mark in the fence
        encoding="utf-8",
    )
    problems = convention_problems([page], tmp_path)
    assert [p.split(":")[1] for p in problems] == ["2", "11", "16", "22", "20"], problems
    blocks = parse(page, tmp_path)
    assert [(b.line, b.lang, b.mark, b.reason) for b in blocks][:2] == [
        (2, "python", "no-run", ""),
        (7, "python", "no-run", "a fragment"),
    ]
    # The first runnable block here is the ```py one, refused above; the last one runs.
    assert [p.last.line for p in programs(blocks)] == [22]


def test_blocks_are_found():
    # A change to the parser that silently finds nothing would pass every test above.
    assert len(PROGRAMS) >= 40
    assert {p.last.page for p in PROGRAMS} >= {"README.md", "docs/reference.md"}


# --------------------------------------------------------------------------- the text itself


def test_docs_cite_no_internal_documents():
    # Users read the docs only: no internal spec, no issue numbers.
    cited = re.compile(r"\bSPEC\b|\bspec section\b|\bissues? #?\d+|(?<![\w/&])#\d+\b", re.I)
    problems = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in PAGES
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if cited.search(line)
    ]
    assert problems == []


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    in_fence = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and (heading := re.match(r"^#{1,6}\s+(.*)$", line)):
            base = slug(heading[1])
            name, n = base, 0
            while name in found:
                n += 1
                name = f"{base}-{n}"
            found.add(name)
    return found


def test_links_between_pages_resolve():
    link = re.compile(r"\]\((?!https?:|mailto:)([^)\s]*)\)")
    problems = []
    for path in PAGES:
        in_fence = False
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if FENCE.match(line):
                in_fence = not in_fence
            if in_fence:
                continue
            for target in link.findall(line):
                file, _, anchor = target.partition("#")
                where = (path.parent / file).resolve() if file else path
                if not where.exists():
                    problems.append(f"{path.relative_to(ROOT)}:{number}: no file {file}")
                elif anchor and where.suffix == ".md" and anchor not in anchors(where):
                    problems.append(f"{path.relative_to(ROOT)}:{number}: no anchor #{anchor}")
    assert problems == []
