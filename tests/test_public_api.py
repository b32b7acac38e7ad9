"""The public surface of `import blockon` (SPEC section 3): exactly these names."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import blockon
import pytest

# SPEC section 3, the whole public surface.
ENGINE_NAMES = {"run", "submit", "LoopThread", "default_loop_thread"}
SPEC_NAMES = ENGINE_NAMES | {
    "to_thread",
    "gather",
    "map",
    "wrap_context",
    "enter_context",
    "wrap_iter",
    "sync",
}
EXPECTED_PUBLIC_NAMES = SPEC_NAMES

P = inspect.Parameter


def test_all_is_a_tuple_of_public_names_only():
    assert isinstance(blockon.__all__, tuple)
    assert len(set(blockon.__all__)) == len(blockon.__all__), "duplicates in __all__"
    # `map` is public as `blockon.map`, but a star import must not shadow the builtin.
    assert set(blockon.__all__) == SPEC_NAMES - {"map"}
    assert list(blockon.__all__) == sorted(blockon.__all__), "keep it sorted"


def test_every_name_in_all_is_importable():
    for name in blockon.__all__:
        namespace = {}
        exec(f"from blockon import {name}", namespace)
        assert namespace[name] is getattr(blockon, name)


@pytest.mark.parametrize("name", sorted(EXPECTED_PUBLIC_NAMES))
def test_every_public_name_is_importable(name):
    module = importlib.import_module("blockon")
    assert getattr(module, name) is not None
    namespace = {}
    exec(f"from blockon import {name}", namespace)
    assert namespace[name] is getattr(blockon, name)


def test_star_import_gives_exactly_all():
    namespace = {}
    exec("from blockon import *", namespace)
    namespace.pop("__builtins__", None)
    assert set(namespace) == set(blockon.__all__)
    assert "map" not in namespace, "a star import must not shadow the builtin map"


def test_public_objects_report_the_public_module():
    for name in sorted(EXPECTED_PUBLIC_NAMES):
        assert getattr(blockon, name).__module__ == "blockon", name
    for name in ("gather", "map", "sync", "wrap_iter", "wrap_context", "enter_context", "close"):
        assert getattr(blockon.LoopThread, name).__module__ == "blockon", name


def describe(signature):
    return [(p.name, p.kind, p.default) for p in signature.parameters.values()]


def test_signature_of_run():
    assert describe(inspect.signature(blockon.run)) == [
        ("aw", P.POSITIONAL_ONLY, P.empty),
        ("timeout", P.KEYWORD_ONLY, None),
        ("nest", P.KEYWORD_ONLY, False),
        ("loop", P.KEYWORD_ONLY, None),
    ]


def test_signature_of_submit():
    assert describe(inspect.signature(blockon.submit)) == [("aw", P.POSITIONAL_ONLY, P.empty)]


def test_signature_of_loop_thread_methods():
    lt = blockon.LoopThread()
    try:
        assert describe(inspect.signature(lt.run)) == describe(inspect.signature(blockon.run))
        assert describe(inspect.signature(lt.submit)) == describe(inspect.signature(blockon.submit))
    finally:
        lt.close()


def test_signature_of_loop_thread():
    assert describe(inspect.signature(blockon.LoopThread)) == [
        ("loop_factory", P.POSITIONAL_OR_KEYWORD, None),
        ("name", P.KEYWORD_ONLY, "blockon"),
        ("blocked_warning", P.KEYWORD_ONLY, 10.0),
    ]


def test_signature_of_default_loop_thread():
    assert describe(inspect.signature(blockon.default_loop_thread)) == []


def test_loop_thread_has_the_documented_members():
    lt = blockon.LoopThread()
    try:
        for member in ("run", "submit", "close", "closed", "blocked_warning"):
            assert hasattr(lt, member), member
        assert callable(lt.__enter__)
        assert callable(lt.__exit__)
        assert lt.closed is False
    finally:
        lt.close()
    assert lt.closed is True


def test_public_callables_have_docstrings():
    for name in EXPECTED_PUBLIC_NAMES:
        assert inspect.getdoc(getattr(blockon, name)), name


def test_import_adds_no_typing_to_what_asyncio_imported():
    # typing is for the type checker only (3.14's asyncio no longer imports it; it costs
    # milliseconds): importing blockon must not pull it in where asyncio did not.
    code = (
        "import sys, asyncio; before = 'typing' in sys.modules; import blockon; "
        "print(before, 'typing' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    before, after = out.stdout.split()
    assert after == before, out.stdout
