"""The release workflow (.github/workflows/release.yml) cannot run on the project's machines:
these tests parse it and check that it still builds, tests and publishes what the docs say."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")

WORKFLOW = Path(__file__).resolve().parent.parent / ".github" / "workflows" / "release.yml"
pytestmark = pytest.mark.skipif(not WORKFLOW.exists(), reason="run from a copy without .github")


@pytest.fixture(scope="module")
def workflow() -> dict[Any, Any]:
    parsed = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    assert isinstance(parsed, dict)
    return parsed


def runs(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def test_it_runs_on_tags_and_pull_requests(workflow):
    # YAML 1.1 reads the key `on` as True.
    triggers = workflow.get("on", workflow.get(True))
    assert triggers["push"]["tags"] == ["v*"]
    assert "pull_request" in triggers


def test_every_platform_gets_a_wheel_built_by_maturin_and_tested_on_its_own_system(workflow):
    job = workflow["jobs"]["wheels"]
    platforms = {entry["platform"]: entry for entry in job["strategy"]["matrix"]["include"]}
    assert set(platforms) == {
        "linux-x86_64",
        "linux-aarch64",
        "macos-x86_64",
        "macos-arm64",
        "windows-x86_64",
    }
    assert all(platforms[p]["manylinux"] == "2014" for p in ("linux-x86_64", "linux-aarch64"))
    assert job["runs-on"] == "${{ matrix.runner }}"
    uses = [step.get("uses", "") for step in job["steps"]]
    assert any(u.startswith("PyO3/maturin-action@") for u in uses)
    assert "python scripts/wheel_test.py dist/*.whl" in runs(job)
    assert "auditwheel show" in runs(job)


def test_the_sdist_is_built_and_installed_with_pip(workflow):
    job = workflow["jobs"]["sdist"]
    commands = [step.get("with", {}).get("command") for step in job["steps"]]
    assert "sdist" in commands
    assert "scripts/wheel_test.py dist/*.tar.gz" in runs(job)


def test_the_checks_are_the_make_targets_run_here(workflow):
    lines = runs(workflow["jobs"]["checks"]).splitlines()
    assert "make test" in lines
    assert any(line.startswith("sudo ") and line.endswith(" make lint") for line in lines)


def test_publishing_needs_everything_and_only_happens_for_a_tag(workflow):
    job = workflow["jobs"]["publish"]
    assert set(job["needs"]) == {"checks", "wheels", "sdist"}
    assert job["if"] == "startsWith(github.ref, 'refs/tags/v')"
    assert job["permissions"] == {"id-token": "write"}
    assert job["steps"][-1]["uses"].startswith("pypa/gh-action-pypi-publish@")
