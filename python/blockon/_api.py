"""The module-level functions: the default loop thread's own methods.

Each is the bound method of ``default_loop_thread()``, so its signature, overloads and
docstring are those of ``LoopThread``'s method, defined once, and a call adds no frame of
its own to tracebacks. The default loop thread object lives as long as the process (closing
it, or forking, only stops its thread; it starts afresh on next use), so binding once at
import is right.

``run`` and ``submit`` are the engine's own functions instead: a bare ``run()`` follows a
``to_thread`` worker's home loop, which ``LoopThread.run`` does not, and these two are the
hot path.
"""

from __future__ import annotations

from ._blockon import run, submit
from ._loopthread import default_loop_thread

__all__ = (
    "call",
    "enter_context",
    "gather",
    "map",
    "run",
    "submit",
    "sync",
    "wrap_context",
    "wrap_iter",
)

_default = default_loop_thread()

call = _default.call
enter_context = _default.enter_context
gather = _default.gather
map = _default.map
sync = _default.sync
wrap_context = _default.wrap_context
wrap_iter = _default.wrap_iter
