"""An example SDK that ships a typed sync API made with blockon.sync().

``weather.sync`` makes the twins; ``weather/sync.pyi``, written by
``python -m blockon stubgen weather.sync``, types them.
"""

from .sync import Reading, Station, Weather, cities, fetch_city

__all__ = ["Reading", "Station", "Weather", "cities", "fetch_city"]
