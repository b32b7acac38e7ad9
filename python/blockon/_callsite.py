"""What a caller does next with the result of the call it is making, read from its bytecode.

A twin's call result that is both awaitable and an async context manager (or async iterable)
must be used the way the caller's async code would have used it: ``with twin.f()`` is
``async with obj.f()``, ``for x in twin.f()`` is ``async for x in obj.f()``, anything else is
``await obj.f()``. The twin has to choose before it awaits. While it runs, the caller's frame
is stopped on its call instruction (``frame.f_lasti``), and the instructions after it say what
will happen to the result. They are read with ``dis``, so opcode numbers and inline caches are
the running CPython's own, and what was found is cached per call site (per code object and
offset), so a call site is read once.

What each use compiles to, per CPython version (``dis`` of each):

- ``with f() as x:``: 3.11-3.13 ``CALL``, ``BEFORE_WITH``; 3.14 and later ``CALL``,
  ``COPY 1``, ``LOAD_SPECIAL 1`` (``__exit__``).
- ``for x in f():``, a comprehension's or generator expression's first iterable,
  ``yield from f()``: ``CALL``, ``GET_ITER`` (``GET_YIELD_FROM_ITER``). From 3.15 an inlined
  comprehension first sets its variables aside (``LOAD_FAST_AND_CLEAR``, ``SWAP``,
  ``BUILD_LIST 0``, ``SWAP``, then ``GET_ITER``), and a generator expression takes its first
  iterable as the argument of its own function, made just before (``MAKE_FUNCTION``) and
  called just after (``CALL 0``).
- ``[*f()]``, ``{*f()}``, ``a, b = f()``: ``LIST_EXTEND``, ``SET_UPDATE``,
  ``UNPACK_SEQUENCE``, ``UNPACK_EX``.
- ``list(f())``, ``stack.enter_context(f())``: the result is the one positional argument of
  the next call (3.11 ``PRECALL 1``, ``CALL 1``; 3.12 and later ``CALL 1``), whose callee is
  then looked up: a builtin that iterates its argument (``list``, ``tuple``, ``set``,
  ``frozenset``, ``dict``, ``sorted``, ``enumerate``, ``zip``, ``iter``, ``sum``, ``min``,
  ``max``, ``any``, ``all``) means iteration; ``ExitStack.enter_context`` (and
  ``AsyncExitStack``'s, and ``unittest.TestCase.enterContext``) means ``with``.

The call being made must be the twin itself: its callee expression, found from the
instructions' source positions, is an attribute with the twin's name (``db.connect(...)``)
or a name bound to the twin (``Conn(...)``). Anything else is "cannot tell", and the twin
awaits at once, as before: no frame to read, a caller that is not on a call instruction (the
twin called from C code: ``map()``, ``sorted(key=...)``), no source positions
(``python -X no_debug_ranges``), instructions this module does not know (a future CPython),
a callee it cannot confirm (an alias reached as an attribute, ``getattr()``,
``functools.partial``), or a callee of the next call it cannot look up without running code.
"""

from __future__ import annotations

import builtins
import contextlib
import dis
import inspect
import sys
import types
import weakref

# typing is for the type checker only: CPython 3.14's asyncio no longer imports it, and at
# run time it would add about 3 ms to `import blockon` (docs/how-it-works.md).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

#: The result will be entered by ``with`` (or ``ExitStack.enter_context``).
WITH = "with"
#: The result will be iterated.
ITER = "iter"

_CALLS = frozenset({"CALL", "CALL_KW", "CALL_FUNCTION_EX"})
#: Instructions that consume the top of the stack by iterating it.
_ITERATING_OPS = frozenset(
    {"GET_ITER", "GET_YIELD_FROM_ITER", "LIST_EXTEND", "SET_UPDATE", "UNPACK_SEQUENCE", "UNPACK_EX"}
)
#: What an inlined comprehension does between evaluating its first iterable and iterating it,
#: from 3.15 (before 3.15, GET_ITER comes first): set its own variables aside, make its
#: result, and bring the iterable back on top.
_COMPREHENSION_PROLOGUE = frozenset(
    {"LOAD_FAST_AND_CLEAR", "MAKE_CELL", "SWAP", "BUILD_LIST", "BUILD_SET", "BUILD_MAP"}
)
#: Instructions that never change what happens to the value on top of the stack.
_TRANSPARENT = frozenset({"NOP", "CACHE", "EXTENDED_ARG", "NOT_TAKEN"})
#: Loads of a name, and where each looks it up.
_NAME_LOADS = {
    "LOAD_NAME": "lgb",
    "LOAD_GLOBAL": "gb",
    "LOAD_FROM_DICT_OR_GLOBALS": "lgb",
    "LOAD_FAST": "l",
    "LOAD_FAST_CHECK": "l",
    "LOAD_FAST_BORROW": "l",
    "LOAD_DEREF": "l",
    "LOAD_CLASSDEREF": "l",
    "LOAD_FROM_DICT_OR_DEREF": "l",
}
_ATTR_LOADS = frozenset({"LOAD_ATTR", "LOAD_METHOD", "LOAD_SUPER_ATTR"})
#: Two instructions in one (3.13 and later) whose second half loads a local.
_FUSED_LOADS = frozenset(
    {"LOAD_FAST_LOAD_FAST", "LOAD_FAST_BORROW_LOAD_FAST_BORROW", "STORE_FAST_LOAD_FAST"}
)
#: Builtins that iterate their one argument.
_ITERATING_BUILTINS = tuple(
    getattr(builtins, name)
    for name in (
        "list",
        "tuple",
        "set",
        "frozenset",
        "dict",
        "sorted",
        "enumerate",
        "zip",
        "iter",
        "sum",
        "min",
        "max",
        "any",
        "all",
    )
)


class _Load:
    """A callee expression made of loads only: a name (``op``, ``name``) followed by
    attributes, or, when what comes before the last attribute is not such a chain, only
    that attribute (``name`` is None)."""

    __slots__ = ("attrs", "name", "op")

    def __init__(self, op: str | None, name: str | None, attrs: tuple[str, ...]) -> None:
        self.op = op
        self.name = name
        self.attrs = attrs


class _Site:
    """A call instruction whose result is used by ``with`` or iterated (``use``), or handed
    to a next call (``consumer``) that may do either."""

    __slots__ = ("callee", "consumer", "use")

    def __init__(self, callee: _Load, use: str | None, consumer: _Load | None) -> None:
        self.callee = callee
        self.use = use
        self.consumer = consumer


#: Per code object (by id, with a weak reference to tell a reused id): its sites, by every
#: offset the frame's f_lasti may show while the call runs (3.11 and 3.12 show an offset in
#: the call's inline cache).
_sites: dict[int, tuple[weakref.ref[types.CodeType], dict[int, _Site]]] = {}


def result_use(
    frame: types.FrameType | None, is_callee: Callable[[Any], bool], name: str | None
) -> str | None:
    """``WITH`` or ``ITER`` when ``frame`` is calling the callable that ``is_callee``
    recognises (named ``name``) and will use the result that way; ``None`` otherwise, or
    when it cannot tell."""
    if frame is None:
        return None
    site = _sites_of(frame.f_code).get(frame.f_lasti)
    if site is None or not _calls(site.callee, frame, is_callee, name):
        return None
    if site.consumer is None:
        return site.use
    return _consumer_use(_evaluate(site.consumer, frame))


def _sites_of(code: types.CodeType) -> dict[int, _Site]:
    key = id(code)
    entry = _sites.get(key)
    if entry is not None and entry[0]() is code:
        return entry[1]
    found = _find_sites(code)
    _sites[key] = (weakref.ref(code, _forgetter(key)), found)
    return found


def _forgetter(key: int) -> Callable[[object], None]:
    """What drops the sites of a code object when it is collected (its id may be reused)."""

    def forget(_: object) -> None:
        _sites.pop(key, None)

    return forget


def _find_sites(code: types.CodeType) -> dict[int, _Site]:
    try:
        instrs = list(dis.get_instructions(code))
    except Exception:  # an unreadable code object: nothing can be told about it
        return {}
    found: dict[int, _Site] = {}
    for k, instr in enumerate(instrs):
        if instr.opname not in _CALLS:
            continue
        site = _site(instrs, k)
        if site is None:
            continue
        end = instrs[k + 1].offset if k + 1 < len(instrs) else instr.offset + 2
        for offset in range(instr.offset, end, 2):
            found[offset] = site
    return found


def _site(instrs: list[dis.Instruction], k: int) -> _Site | None:
    """The site of the call at ``instrs[k]``, if its result is used by ``with``, iterated or
    handed to another call as its one positional argument; else None."""
    j = _after(instrs, k)
    if j is None:
        return None
    nxt = instrs[j]
    use: str | None = None
    consumer: _Load | None = None
    if nxt.opname == "BEFORE_WITH" or (nxt.opname == "COPY" and nxt.arg == 1 and _exit(instrs, j)):
        use = WITH
    elif nxt.opname in _ITERATING_OPS or (
        nxt.opname in _COMPREHENSION_PROLOGUE and _iterated_after_prologue(instrs, j)
    ):
        use = ITER
    elif nxt.opname == "PRECALL" and nxt.arg == 1:  # 3.11: PRECALL 1, CALL 1
        after = _after(instrs, j)
        if after is None or instrs[after].opname != "CALL" or instrs[after].arg != 1:
            return None
        consumer = _callee(instrs, after)
    elif nxt.opname == "CALL" and nxt.arg == 1:
        consumer = _callee(instrs, j)
    elif nxt.opname == "CALL" and nxt.arg == 0 and _feeds_a_genexpr(instrs, k):
        use = ITER
    else:
        return None
    if use is None and consumer is None:
        return None
    callee = _callee(instrs, k)
    if callee is None:
        return None
    return _Site(callee, use, consumer)


def _after(instrs: list[dis.Instruction], k: int) -> int | None:
    """The index of the first instruction after ``instrs[k]`` that does something."""
    for j in range(k + 1, len(instrs)):
        if instrs[j].opname not in _TRANSPARENT:
            return j
    return None


def _iterated_after_prologue(instrs: list[dis.Instruction], j: int) -> bool:
    """Whether an inlined comprehension's prologue starts at ``instrs[j]`` and is followed
    by ``GET_ITER``: the value before it is the comprehension's first iterable (3.15)."""
    while j < len(instrs) and (
        instrs[j].opname in _COMPREHENSION_PROLOGUE or instrs[j].opname in _TRANSPARENT
    ):
        j += 1
    return j < len(instrs) and instrs[j].opname == "GET_ITER"


def _exit(instrs: list[dis.Instruction], j: int) -> bool:
    """Whether the ``COPY 1`` at ``instrs[j]`` is followed by ``LOAD_SPECIAL 1`` (the
    ``__exit__`` of a ``with`` statement, 3.14 and later)."""
    k = _after(instrs, j)
    return k is not None and instrs[k].opname == "LOAD_SPECIAL" and instrs[k].arg == 1


def _span(instr: dis.Instruction) -> tuple[int, int, int, int] | None:
    pos = instr.positions
    if pos is None or None in (pos.lineno, pos.end_lineno, pos.col_offset, pos.end_col_offset):
        return None
    return pos.lineno, pos.col_offset, pos.end_lineno, pos.end_col_offset  # type: ignore[return-value]


def _expression(instrs: list[dis.Instruction], k: int) -> tuple[int, list[int]] | None:
    """For the call at ``instrs[k]``: the index of the first instruction of its expression,
    and the indexes of the loads that start where the expression starts (the callee's)."""
    span = _span(instrs[k])
    if span is None:
        return None
    start, end = span[:2], span[2:]
    first = k
    loads: list[int] = []
    for j in range(k - 1, -1, -1):
        instr = instrs[j]
        here = _span(instr)
        if here is None and (instr.opname in _TRANSPARENT or instr.opname == "PUSH_NULL"):
            continue
        if here is None or here[:2] < start or here[2:] > end:  # before the expression
            break
        first = j
        loads_a_value = instr.opname in _NAME_LOADS or instr.opname in _ATTR_LOADS
        if loads_a_value and here[:2] == start and here[2:] < end:
            loads.append(j)
    return first, loads


def _callee(instrs: list[dis.Instruction], k: int) -> _Load | None:
    """The callee of the call at ``instrs[k]``, when it is a name or a chain of attribute
    loads: the load that starts where the call starts and ends last, then (an attribute's
    owner is what the instruction just before it loaded) the loads before it."""
    found = _expression(instrs, k)
    if found is None or not found[1]:
        return None
    last = max(found[1], key=lambda j: (_span(instrs[j])[2:], j))  # type: ignore[index]
    instr = instrs[last]
    if instr.opname in _NAME_LOADS:
        return _Load(instr.opname, instr.argval, ())
    if not isinstance(instr.argval, str):
        return None
    attrs = [instr.argval]
    j = last - 1
    while j >= 0:
        owner = instrs[j]
        if owner.opname in _TRANSPARENT:
            j -= 1
        elif owner.opname in _ATTR_LOADS and isinstance(owner.argval, str):
            attrs.append(owner.argval)
            j -= 1
        elif owner.opname in _NAME_LOADS:
            return _Load(owner.opname, owner.argval, tuple(reversed(attrs)))
        elif owner.opname in _FUSED_LOADS and isinstance(owner.argval, tuple):
            return _Load("LOAD_FAST", owner.argval[-1], tuple(reversed(attrs)))
        else:
            break
    return _Load(None, None, (attrs[0],))


def _feeds_a_genexpr(instrs: list[dis.Instruction], k: int) -> bool:
    """Whether the call at ``instrs[k]`` makes the first iterable of a generator expression
    whose function was made just before it (3.15: the function is then called with it)."""
    found = _expression(instrs, k)
    if found is None:
        return False
    j = found[0] - 1
    while j >= 0 and instrs[j].opname in ("SET_FUNCTION_ATTRIBUTE", *_TRANSPARENT):
        j -= 1
    if j < 1 or instrs[j].opname != "MAKE_FUNCTION":
        return False
    code = instrs[j - 1].argval
    return isinstance(code, types.CodeType) and code.co_name == "<genexpr>"


# ------------------------------------------------------------------------------ at run time


_MISSING = object()


def _lookup(frame: types.FrameType, op: str, name: str) -> Any:
    """The value a name load finds in ``frame``, looked up without running any code."""
    for where in _NAME_LOADS[op]:
        space = frame.f_locals if where == "l" else frame.f_globals if where == "g" else None
        try:
            return (frame.f_builtins if space is None else space)[name]
        except KeyError:
            continue
    return _MISSING


def _calls(
    load: _Load, frame: types.FrameType, is_callee: Callable[[Any], bool], name: str | None
) -> bool:
    """Whether the callee expression ``load`` is the twin: what it finds, when it can be
    looked up without running code; else its last attribute is the twin's name."""
    value = _evaluate(load, frame)
    if value is not _MISSING:
        return is_callee(value)
    return bool(load.attrs) and name is not None and load.attrs[-1] == name


def _evaluate(load: _Load, frame: types.FrameType) -> Any:
    """The callee of a next call, looked up without running code (attributes statically)."""
    if load.op is None or load.name is None:
        return _MISSING
    value = _lookup(frame, load.op, load.name)
    for attr in load.attrs:
        if value is _MISSING:
            break
        value = _static_attr(value, attr)
    return value


def _static_attr(owner: Any, attr: str) -> Any:
    """``owner.attr`` found without running code (no descriptor, no ``__getattr__``); on a
    twin that reads its attributes through to its wrapped object (a module twin), that
    object's."""
    found = inspect.getattr_static(owner, attr, _MISSING)
    if found is _MISSING:
        slot = inspect.getattr_static(owner, "_blockon_target", None)
        if isinstance(slot, types.MemberDescriptorType):
            found = inspect.getattr_static(slot.__get__(owner), attr, _MISSING)
    return found


def _consumer_use(fn: Any) -> str | None:
    if any(fn is known for known in _ITERATING_BUILTINS):
        return ITER
    if fn is contextlib.ExitStack.enter_context:
        return WITH
    case = sys.modules.get("unittest.case")
    if case is not None and fn is getattr(case.TestCase, "enterContext", _MISSING):
        return WITH
    return None
