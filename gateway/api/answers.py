"""A cache of the gateway's answers about closed past ranges, in Django's cache framework
(local memory by default, Redis when REDIS_URL is set).

An answer is kept only when nothing the service is told can change it unseen: its range has ended,
and the meter's readings are written through this project (every such write moves
`Meter.data_version`, which is part of the key). A meter served by files as they are (the `csv`
source) can change behind the project's back, so its answers are never kept.

An answer about a meter is the same for everyone who may see the meter, and reaches no one else:
a kept answer is given only to a caller the access rule (accounts/access.py, the service's own)
lets see the meter as it is now, its owner and public flag read with the version. Any other
caller is sent on to the service, which answers it as it would a missing meter.
"""
import hashlib
import time
from collections.abc import Callable

from django.conf import settings
from django.core.cache import cache

from accounts.access import Caller
from readings.domain import Instant
from readings.models import Meter
from readings.sources import readings_sources
from readings.sources.csv import CsvSource


def answer_key(*, meter: str, url: str, end: Instant, caller: Callable[[], Caller | None]) -> str | None:
    """The cache key of the answer to `url` about `meter` for `caller()`; None when it must not be
    cached, or not given to this caller from the cache."""
    if not settings.API_CACHE_SECONDS or end.ceil() > time.time():
        return None
    found = Meter.objects.filter(name=meter).values_list("pk", "data_version", "source", "account_id", "public").first()
    if found is None:
        return None
    pk, version, alias, account_id, public = found
    who = caller()
    if who is None or not who.sees(Meter(pk=pk, account_id=account_id, public=public)):
        return None
    try:
        if isinstance(readings_sources[alias], CsvSource):
            return None
    except Exception:  # noqa: BLE001  (a source that cannot be built: leave the answer to the service)
        return None
    digest = hashlib.blake2b(url.encode(), digest_size=16).hexdigest()
    # The primary key too: a meter deleted and made again under its name starts its versions anew.
    return f"answer:{pk}:{version}:{digest}"


def cached_answer(key: str | None):
    return cache.get(key) if key else None


def keep_answer(key: str | None, answer) -> None:
    if key:
        cache.set(key, answer, timeout=settings.API_CACHE_SECONDS)
