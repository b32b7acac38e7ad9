"""Sync twins of real async SDKs: the tests write their stubs with
``python -m blockon stubgen sdk_twins`` and type-check ``check_sdks.py`` against them."""

import aiosqlite
import blockon
import httpx
import redis.asyncio

Client = blockon.sync(httpx.AsyncClient)
sqlite = blockon.sync(aiosqlite)
Redis = blockon.sync(redis.asyncio.Redis)
