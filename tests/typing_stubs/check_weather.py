"""What the generated stubs of examples/weather type its twins as.

Checked by mypy --strict and by pyright (``tests/test_stubgen.py``), against the stubs that
``python -m blockon stubgen`` wrote, and run as a script, so types and behaviour agree.
Every line whose comment starts with "error" must be reported by both checkers, and
nothing else.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterator
from typing import Any, assert_type

import weather
from weather import _aio, sync
from weather.sync import Reading, Station, Weather


def main() -> None:
    with Weather("Oslo", units="metric") as client:  # `with` is `async with`
        assert_type(client, Weather)
        assert_type(client.temperature(1), float)  # overloads kept
        assert_type(client.temperature("monday"), list[float])
        assert_type(client.label, str)  # a property
        assert_type(client.city, str)  # an attribute set in __init__
        assert_type(client.units_of(2.0), str)  # a sync method
        assert_type(client.raw("q"), Any)  # not annotated
        assert_type(client.loop, Any)  # set in __init__ without a type

        station = client.station("north")  # an object with async methods: its twin
        assert_type(station, Station)
        assert_type(station.latest(), Reading | None)
        assert_type(len(station), int)
        for reading in station:  # `for` is `async for`
            assert_type(reading, Reading)

        forecast = client.forecast(2)  # an async generator: a generator
        assert_type(forecast, Iterator[Reading])
        assert [r.celsius for r in forecast] == [20.0, 21.0]
        talk = client.conversation()
        assert_type(talk, Generator[str, int, None])
        assert next(talk) == "ready"
        assert talk.send(3) == "day 3: sunny"
        talk.close()

        with client.session(retries=2) as batch:  # an @asynccontextmanager method
            assert_type(batch, list[str])

        # awaitable, an async context manager and async iterable: as the async syntax
        station.__wrapped__.readings.append(Reading("Oslo", 3.0))
        first = client.subscribe(station)
        assert_type(first.celsius, float)
        with client.subscribe(station) as feed:
            assert_type(feed, Station)
        assert [r.city for r in client.subscribe(station)] == ["Oslo"]

        assert_type(client.retry(_aio.fetch_city, "Perth", retries=1), Reading)  # ParamSpec
        assert_type(Weather.version(), tuple[int, int])  # a static method
        other = Weather.connect("Rome")  # a class method: the plain twin comes back
        assert not isinstance(other, Weather)
        assert_type(other.label, str)
        other.close()

    assert_type(weather.fetch_city("Lima"), Reading)  # re-exported names
    assert_type(list(weather.cities("P")), list[str])
    assert_type(sync.aio.fetch_city("Lima").city, str)  # a module twin
    assert_type(sync.aio.AsyncWeather().station("x"), Station)

    with contextlib.ExitStack() as stack:
        entered = stack.enter_context(Weather())
        assert_type(entered, Weather)


def errors(station: Station) -> None:
    """Deliberate errors, which both checkers must report (never run)."""
    Weather(city=3)  # error (an int for a str)
    Weather().temperature(1.5)  # error (no overload takes a float)
    Weather().forecast("3")  # error
    print(sync.fetch_city("Lima").temperature)  # error (a Reading has none)
    Weather().nothing()  # error (no such method)
    with Weather().subscribe(station) as wrong:
        assert_type(wrong, Reading)  # error (with gives the station)


if __name__ == "__main__":
    main()
    print("ok")
