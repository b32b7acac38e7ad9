"""``python -m blockon stubgen``: stubs that type ``sync()`` twins, proven by the checkers.

The stubs of the example package (examples/weather, every shape of twin) are on disk and must
be what the command writes (``--check``); the stubs of twins of real SDKs
(``tests/typing_stubs/sdk_twins.py``: httpx, aiosqlite, redis.asyncio) are written here. Then
mypy --strict and pyright (basedpyright, which bundles its own Node.js) each run once over
``tests/typing_stubs/check_*.py``: every line whose comment starts with "error" must be
reported, and nothing else; and ``mypy.stubtest`` checks the stubs against the run-time twins.
The three run at the same time, in subprocesses.
"""

from __future__ import annotations

import inspect
import json
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import blockon
import pytest

from tests.support import clean_env

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
TYPING = ROOT / "tests" / "typing_stubs"
CHECKS = ("check_weather.py", "check_sdks.py")
CHECKER_TIMEOUT = 240


def stubgen(
    *args: str, cwd: Path = EXAMPLES, path: Path = EXAMPLES
) -> subprocess.CompletedProcess[str]:
    env = clean_env()
    env["PYTHONPATH"] = str(path)
    return subprocess.run(
        [sys.executable, "-m", "blockon", "stubgen", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
        check=False,
    )


def expected_errors(name: str) -> set[int]:
    lines = (TYPING / name).read_text(encoding="utf-8").splitlines()
    return {n for n, line in enumerate(lines, 1) if re.search(r"#\s*error\b", line)}


class Checked:
    """The outputs of one run of each checker over every check file, and of stubgen."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        stubs = tmp / "stubs"
        self.stubgen = stubgen("sdk_twins", "-o", str(stubs), cwd=tmp, path=TYPING)
        assert self.stubgen.returncode == 0, self.stubgen.stdout + self.stubgen.stderr
        shutil.copytree(
            EXAMPLES / "weather", stubs / "weather", ignore=shutil.ignore_patterns("__pycache__")
        )
        for name in CHECKS:
            shutil.copy(TYPING / name, tmp / name)
        # The real SDKs' own inconsistent overrides show up in their twins' stub: only the
        # typing of the check files is asserted on.
        (tmp / "mypy.ini").write_text(
            f"[mypy]\nstrict = True\nmypy_path = {stubs}\ncache_dir = {tmp / 'cache'}\n"
            "[mypy-sdk_twins]\nignore_errors = True\n"
        )
        (tmp / "pyrightconfig.json").write_text(
            json.dumps(
                {
                    "typeCheckingMode": "strict",
                    "pythonVersion": "3.11",
                    "include": list(CHECKS),
                    "extraPaths": [str(stubs)],
                    "reportMissingModuleSource": False,
                }
            )
        )
        pyright = shutil.which("basedpyright", path=str(Path(sys.executable).parent))
        runs = {
            "mypy": [sys.executable, "-m", "mypy", "--config-file", "mypy.ini", *CHECKS],
            "stubtest": [
                sys.executable, "-m", "mypy.stubtest", "weather", "sdk_twins",
                "--mypy-config-file", str(tmp / "mypy.ini"),
            ],
        }  # fmt: skip
        if pyright is not None:
            runs["pyright"] = [pyright, "--pythonpath", sys.executable]
        env = clean_env()
        env["PYTHONPATH"] = f"{EXAMPLES}:{TYPING}"
        env["MYPYPATH"] = str(stubs)
        procs = {
            name: subprocess.Popen(
                command,
                cwd=tmp if name != "stubtest" else stubs.parent.parent,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for name, command in runs.items()
        }
        self.outputs: dict[str, str] = {}
        self.codes: dict[str, int] = {}
        for name, proc in procs.items():
            out, _ = proc.communicate(timeout=CHECKER_TIMEOUT)
            self.outputs[name] = out
            self.codes[name] = proc.returncode

    def errors(self, checker: str) -> dict[str, set[int]]:
        """Lines with an error, per check file."""
        pattern = {
            "mypy": r"^(?P<file>check_\w+\.py):(?P<line>\d+): error:",
            "pyright": r"^\s*\S*?(?P<file>check_\w+\.py):(?P<line>\d+):\d+ - error:",
        }[checker]
        found: dict[str, set[int]] = {name: set() for name in CHECKS}
        for match in re.finditer(pattern, self.outputs[checker], re.M):
            found[match["file"]].add(int(match["line"]))
        return found


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Checked]:
    pytest.importorskip("mypy")
    pytest.importorskip("httpx")
    pytest.importorskip("redis")
    pytest.importorskip("aiosqlite")
    yield Checked(tmp_path_factory.mktemp("stubgen"))


# --- the checkers ---------------------------------------------------------------------------


@pytest.mark.timeout(CHECKER_TIMEOUT + 60)
@pytest.mark.parametrize("checker", ["mypy", "pyright"])
def test_checkers_type_the_twins_and_report_each_deliberate_error(checked, checker):
    if checker not in checked.outputs:
        pytest.skip("basedpyright is not installed (the lint extra has it)")
    output = checked.outputs[checker]
    for name in CHECKS:
        assert checked.errors(checker)[name] == expected_errors(name), output
    assert checked.codes[checker] == 1, output  # the deliberate errors


@pytest.mark.timeout(CHECKER_TIMEOUT + 60)
def test_stubtest_finds_the_stubs_agree_with_the_run_time_twins(checked):
    output = checked.outputs["stubtest"]
    assert checked.codes["stubtest"] == 0, output
    assert "Success: no issues found in 4 modules" in output


@pytest.mark.timeout(CHECKER_TIMEOUT + 60)
def test_the_fallbacks_to_any_are_printed_with_their_reasons(checked):
    out = checked.stubgen.stdout
    assert re.search(r"sdk_twins\.pyi: written, \d+ fell back to Any$", out, re.M), out
    assert "sdk_twins.Redis.__init__: Any, parameter redis_connect_func is not annotated" in out
    assert "JsonType is a recursive type alias" in out


# --- the command ----------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_the_example_stubs_are_up_to_date():
    proc = stubgen("weather.sync", "weather", "--check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == [
        "weather/sync.pyi: weather.sync._AsyncWeather.raw: Any, parameter query is not annotated",
        "weather/sync.pyi: weather.sync._AsyncWeather.raw: Any, its return type is not annotated",
        "weather/sync.pyi: weather.sync._AsyncWeather.loop: Any, attribute loop is set in "
        "__init__ without a type",
    ]


@pytest.mark.timeout(120)
def test_check_fails_on_a_stale_stub_and_writing_brings_it_up_to_date(tmp_path):
    shutil.copytree(EXAMPLES / "weather", tmp_path / "weather")
    stub = tmp_path / "weather" / "sync.pyi"
    stub.write_text(stub.read_text().replace("def latest(self)", "def latest(self, x: int)"))
    stale = stubgen("weather.sync", "--check", cwd=tmp_path, path=tmp_path)
    assert stale.returncode == 1
    assert "weather/sync.pyi: out of date (python -m blockon stubgen weather.sync)" in stale.stdout
    assert "-    def latest(self, x: int)" in stale.stdout  # a diff
    written = stubgen("weather.sync", cwd=tmp_path, path=tmp_path)
    assert written.returncode == 0
    assert "weather/sync.pyi: written, 3 fell back to Any" in written.stdout
    assert stub.read_text() == (EXAMPLES / "weather" / "sync.pyi").read_text()
    assert stubgen("weather.sync", "--check", cwd=tmp_path, path=tmp_path).returncode == 0


@pytest.mark.timeout(120)
def test_errors_teach(tmp_path):
    no_twins = stubgen("weather._aio", "-o", str(tmp_path))
    assert no_twins.returncode == 2
    assert "weather._aio has no sync() twins" in no_twins.stderr
    assert "name that module" in no_twins.stderr
    missing = stubgen("weather.nothing", "-o", str(tmp_path))
    assert missing.returncode == 2
    assert "No module named 'weather.nothing'" in missing.stderr
    assert list(tmp_path.iterdir()) == []


# --- the run-time twins agree -----------------------------------------------------------------


class AsyncSource:
    def __init__(self, name: str, *, size: int = 1) -> None:
        self.name = name

    async def read(self, n: int) -> bytes:
        return b"x" * n

    async def child(self) -> AsyncSource:
        return self


async def count(n: int) -> AsyncIterator[int]:
    yield n


def test_signatures_of_twins_show_what_they_return():
    # annotations written as text (this module's) stay text, mapped
    assert str(inspect.signature(blockon.sync(count))) == "(n: 'int') -> 'Iterator[int]'"
    Source = blockon.sync(AsyncSource)
    assert inspect.signature(Source) == inspect.signature(AsyncSource)
    assert (
        str(inspect.signature(Source.__init__))
        == "(self, name: 'str', *, size: 'int' = 1) -> 'None'"
    )
    assert inspect.signature(Source.child).return_annotation == "AsyncSource"  # its twin
    assert str(inspect.signature(Source("s").read)) == "(n: 'int') -> 'bytes'"

    class Sink(Source):  # type: ignore[misc,valid-type]
        """A subclass of a twin class keeps the constructor's signature."""

    assert inspect.signature(Sink) == inspect.signature(AsyncSource)
    # help(); pydoc shows annotations written as text without quotes from Python 3.14 on
    assert re.search(r"read\(self, n: '?int'?\) -> '?bytes'?", pydoc_text(Source))


def pydoc_text(obj: object) -> str:
    import pydoc

    return pydoc.render_doc(obj, renderer=pydoc.plaintext)  # type: ignore[attr-defined]
