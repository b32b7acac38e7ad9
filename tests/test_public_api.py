"""The public surface of `import blockon`: exactly these names, signatures and members."""

from __future__ import annotations

import inspect

import blockon
import pytest

from tests.support import run_script

#: The whole public surface.
PUBLIC_NAMES = {
    "LoopThread",
    "call",
    "default_loop_thread",
    "enter_context",
    "gather",
    "map",
    "patch_asyncio",
    "run",
    "submit",
    "sync",
    "to_thread",
    "unpatch_asyncio",
    "wrap_context",
    "wrap_iter",
}
#: The module-level functions that are the default loop thread's methods.
LOOP_THREAD_METHODS = [
    "call",
    "run",
    "submit",
    "gather",
    "map",
    "wrap_context",
    "enter_context",
    "wrap_iter",
    "sync",
]

P = inspect.Parameter


def test_all_is_a_tuple_of_public_names_only():
    assert isinstance(blockon.__all__, tuple)
    assert len(set(blockon.__all__)) == len(blockon.__all__), "duplicates in __all__"
    # `map` is public as `blockon.map`, but a star import must not shadow the builtin.
    assert set(blockon.__all__) == PUBLIC_NAMES - {"map"}
    assert list(blockon.__all__) == sorted(blockon.__all__), "keep it sorted"


@pytest.mark.parametrize("name", sorted(PUBLIC_NAMES))
def test_every_public_name_is_importable(name):
    namespace: dict[str, object] = {}
    exec(f"from blockon import {name}", namespace)
    assert namespace[name] is getattr(blockon, name)


def test_star_import_gives_exactly_all():
    namespace: dict[str, object] = {}
    exec("from blockon import *", namespace)
    namespace.pop("__builtins__", None)
    assert set(namespace) == set(blockon.__all__)
    assert "map" not in namespace, "a star import must not shadow the builtin map"


def test_public_objects_report_the_public_module():
    for name in sorted(PUBLIC_NAMES):
        assert getattr(blockon, name).__module__ == "blockon", name
    for name in (
        "call",
        "gather",
        "map",
        "sync",
        "wrap_iter",
        "wrap_context",
        "enter_context",
        "close",
    ):
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


@pytest.mark.parametrize("name", LOOP_THREAD_METHODS)
def test_loop_thread_methods_have_the_module_functions_signatures(name):
    with blockon.LoopThread() as lt:
        method = getattr(lt, name)
        assert describe(inspect.signature(method)) == describe(
            inspect.signature(getattr(blockon, name))
        )


def test_signature_of_loop_thread():
    assert describe(inspect.signature(blockon.LoopThread)) == [
        ("loop_factory", P.POSITIONAL_OR_KEYWORD, None),
        ("name", P.KEYWORD_ONLY, "blockon"),
        ("blocked_warning", P.KEYWORD_ONLY, 10.0),
    ]


@pytest.mark.parametrize("name", ["patch_asyncio", "unpatch_asyncio"])
def test_signature_of_patch_and_unpatch_asyncio(name):
    assert describe(inspect.signature(getattr(blockon, name))) == []


def test_ipython_extension_hooks_take_the_shell():
    for hook in (blockon.load_ipython_extension, blockon.unload_ipython_extension):
        assert describe(inspect.signature(hook)) == [("ipython", P.POSITIONAL_OR_KEYWORD, P.empty)]


def test_signature_of_default_loop_thread():
    assert describe(inspect.signature(blockon.default_loop_thread)) == []


def test_loop_thread_has_the_documented_members():
    members = ["close", "closed", "loop", "name", "blocked_warning", "cancel_grace"]
    for member in [*LOOP_THREAD_METHODS, *members, "__enter__", "__exit__"]:
        assert hasattr(blockon.LoopThread, member), member
    lt = blockon.LoopThread()
    assert lt.closed is False
    lt.close()
    assert lt.closed is True


def test_public_callables_have_docstrings():
    for name in PUBLIC_NAMES:
        assert inspect.getdoc(getattr(blockon, name)), name


def test_import_adds_no_typing_to_what_asyncio_imported():
    # typing is for the type checker only (3.14's asyncio no longer imports it; it costs
    # milliseconds): importing blockon must not pull it in where asyncio did not.
    proc, _ = run_script(
        "import sys, asyncio; before = 'typing' in sys.modules; import blockon; "
        "print(before, 'typing' in sys.modules)"
    )
    assert (proc.returncode, proc.stderr) == (0, "")
    before, after = proc.stdout.split()
    assert after == before, proc.stdout
