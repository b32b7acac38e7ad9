"""``call()``: a callable run on the loop thread, its result awaited there if awaitable.

``LoopThread.call`` holds the public signature and docstring and checks the arguments; this
is the coroutine it runs.
"""

from __future__ import annotations

import inspect

from ._children import Failed

# typing is for the type checker only: CPython 3.14's asyncio no longer imports it, and at
# run time it would add about 3 ms to `import blockon` (docs/how-it-works.md).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


async def call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Call ``fn`` on the loop, and await what it returns if that is awaitable.

    An exception is handed back as a ``Failed`` value, its traceback without this frame, so
    that ``LoopThread.call`` raises it showing ``fn``'s own frames. Cancellation and other
    ``BaseException``s propagate as they do out of any awaitable ``run()`` runs.
    """
    try:
        result = fn(*args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
    except Exception as exc:
        tb = exc.__traceback__
        return Failed(exc.with_traceback(tb.tb_next if tb is not None else None))
    return result
