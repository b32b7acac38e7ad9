"""What ``blockon.sync()`` twins are typed as.

Checked by mypy, strictly (by ``make lint``, and by
``tests/test_sync.py::test_typing_example_passes_mypy``), and run as a script by
``test_typing_example_runs``, so the types and the behaviour are proven to agree.
``assert_type`` is a no-op at run time; the ``assert`` statements check the values.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator
from typing import Any, assert_type

import blockon


async def fetch(url: str, *, retries: int = 3) -> bytes:
    return f"{url}:{retries}".encode()


async def countdown(n: int) -> AsyncIterator[int]:
    while n > 0:
        yield n
        n -= 1


async def echo(prefix: str) -> AsyncGenerator[str, int]:
    received = yield f"{prefix}ready"
    while True:
        received = yield f"{prefix}{received}"


@blockon.sync
async def decorated(x: int) -> list[int]:
    return [x, x]


def plain(x: int) -> int:
    return x + 1


class Client:
    async def get(self, key: str) -> dict[str, str]:
        return {"key": key}

    @classmethod
    async def create(cls) -> Client:
        return cls()

    @staticmethod
    async def version() -> tuple[int, int]:
        return (1, 2)


def main() -> None:
    # async function -> function with the same parameters, returning the awaited type
    fetch_sync = blockon.sync(fetch)
    assert_type(fetch_sync("a", retries=1), bytes)
    assert fetch_sync("a", retries=1) == b"a:1"
    assert_type(decorated(2), list[int])
    assert decorated(2) == [2, 2]

    # methods: unbound, bound, classmethod, staticmethod
    client = Client()
    assert_type(blockon.sync(Client.get)(client, "k"), dict[str, str])
    assert_type(blockon.sync(client.get)("k"), dict[str, str])
    assert blockon.sync(client.get)("k") == {"key": "k"}
    assert_type(blockon.sync(Client.create)(), Client)
    assert_type(blockon.sync(Client.version)(), tuple[int, int])

    # async generator function -> generator function
    countdown_sync = blockon.sync(countdown)
    gen = countdown_sync(3)
    assert_type(gen, Generator[int, Any, None])
    assert list(gen) == [3, 2, 1]
    echo_sync = blockon.sync(echo)
    conversation = echo_sync("> ")
    assert_type(conversation, Generator[str, int, None])
    assert next(conversation) == "> ready"
    assert_type(conversation.send(7), str)
    conversation.close()

    # a LoopThread's twins are typed the same way
    with blockon.LoopThread(name="typing-example") as lt:
        assert_type(lt.sync(fetch)("b"), bytes)
        assert_type(list(lt.sync(countdown)(2)), list[int])

    # sync callables pass through, typed as they were
    same: Callable[[int], int] = blockon.sync(plain)
    assert same is plain


if __name__ == "__main__":
    main()
    print("ok")
