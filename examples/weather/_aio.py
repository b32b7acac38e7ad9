"""The async SDK: an async weather client, as a library would ship it (in memory here)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any, ParamSpec, Self, TypeVar, overload

T = TypeVar("T")
P = ParamSpec("P")


@dataclass
class Reading:
    """One measurement."""

    city: str
    celsius: float


class Station:
    """A weather station: an object with async methods, so results come back twinned."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.readings: list[Reading] = []

    async def latest(self) -> Reading | None:
        """The newest reading, if any."""
        await asyncio.sleep(0)
        return self.readings[-1] if self.readings else None

    async def __aiter__(self) -> AsyncIterator[Reading]:
        for reading in list(self.readings):
            await asyncio.sleep(0)
            yield reading

    def __len__(self) -> int:
        return len(self.readings)


class Subscription:
    """What subscribe() returns: awaited, the first reading; entered with `async with`, a
    live feed; iterated with `async for`, the readings as they come."""

    def __init__(self, station: Station) -> None:
        self.station = station

    def __await__(self) -> Generator[Any, None, Reading]:
        return self._first().__await__()

    async def _first(self) -> Reading:
        await asyncio.sleep(0)
        return self.station.readings[0]

    async def __aenter__(self) -> Station:
        return self.station

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.sleep(0)

    async def __aiter__(self) -> AsyncIterator[Reading]:
        for reading in list(self.station.readings):
            yield reading


class AsyncWeather:
    """An async client for a weather service."""

    def __init__(self, city: str = "Paris", *, units: str = "metric") -> None:
        self.city = city
        self.units = units
        self.calls = 0
        self.loop = asyncio.get_running_loop()  # bound to the loop it was made on
        self._stations: dict[str, Station] = {}

    @classmethod
    async def connect(cls, city: str) -> AsyncWeather:
        """Open a client, as many SDKs do with an async factory."""
        await asyncio.sleep(0)
        return cls(city)

    @staticmethod
    async def version() -> tuple[int, int]:
        return (1, 0)

    @property
    def label(self) -> str:
        """The city and units."""
        return f"{self.city} ({self.units})"

    @overload
    async def temperature(self, day: int) -> float: ...
    @overload
    async def temperature(self, day: str) -> list[float]: ...
    async def temperature(self, day: int | str) -> float | list[float]:
        """The temperature of a day: one value for a day number, the hours' for a name."""
        self.calls += 1
        await asyncio.sleep(0)
        return 21.5 if isinstance(day, int) else [20.0, 22.0]

    async def station(self, name: str, /) -> Station:
        """A station, made on first use: an object with async methods."""
        await asyncio.sleep(0)
        return self._stations.setdefault(name, Station(name))

    async def forecast(self, days: int = 3) -> AsyncIterator[Reading]:
        """Stream a reading per day."""
        for day in range(days):
            await asyncio.sleep(0)
            yield Reading(self.city, 20.0 + day)

    async def conversation(self) -> AsyncGenerator[str, int]:
        """Answer each day number sent in with its forecast."""
        day = yield "ready"
        while True:
            day = yield f"day {day}: sunny"

    @contextlib.asynccontextmanager
    async def session(self, *, retries: int = 1) -> AsyncIterator[list[str]]:
        """A batch of requests, sent when the block ends."""
        sent: list[str] = []
        yield sent
        await asyncio.sleep(0)

    def subscribe(self, station: Station) -> Subscription:
        """A sync method whose result is awaitable, an async context manager and async
        iterable: used as the async syntax would be."""
        return Subscription(station)

    def units_of(self, value: float) -> str:
        return f"{value} {self.units}"

    async def retry(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """Await fn(*args, **kwargs) with this client's retry policy."""
        return await fn(*args, **kwargs)

    async def raw(self, query):  # type: ignore[no-untyped-def]
        """Not annotated: typed Any."""
        return query

    async def close(self) -> None:
        await asyncio.sleep(0)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def fetch_city(city: str, *, retries: int = 3) -> Reading:
    """A module-level async function."""
    await asyncio.sleep(0)
    return Reading(city, 19.0 + retries)


async def cities(prefix: str = "") -> AsyncIterator[str]:
    """A module-level async generator."""
    for city in ("Paris", "Perth", "Oslo"):
        if city.startswith(prefix):
            yield city
