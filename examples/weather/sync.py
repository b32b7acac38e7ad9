"""The sync API of the weather SDK: twins made with blockon.sync(), typed by sync.pyi."""

from __future__ import annotations

import blockon

from . import _aio
from ._aio import AsyncWeather, Reading


class Weather(blockon.sync(AsyncWeather)):
    """The sync client: every method of AsyncWeather, without `await`."""


Station = blockon.sync(_aio.Station)
fetch_city = blockon.sync(_aio.fetch_city)
cities = blockon.sync(_aio.cities)
aio = blockon.sync(_aio)
"""The whole async module, twinned."""

__all__ = ["Reading", "Station", "Weather", "aio", "cities", "fetch_city"]
