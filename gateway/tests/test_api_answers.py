"""The gateway's cache of answers about closed past ranges: an answer is kept, and never served
once the meter's readings changed, for a range that has not ended, or for a meter whose files
change behind the project's back.

These tests change readings while the module's servers run, so their writes are committed (not
held in a test transaction); the database is emptied after each.
"""
import pytest

from django.contrib.auth.models import User
from rest_framework.test import APIClient

from accounts.access import forget_resolved
from accounts.models import Account
from readings.models import Meter
from testing.helpers import HEADER, grpc_calls, import_file, require

pytestmark = pytest.mark.django_db(transaction=True)

CACHED = "/api/v1/meters/{}/readings/"
A_PAST_DAY = {"start": "2019-01-01T00:00:00Z", "end": "2019-01-02T00:00:00Z"}


def import_day(write_csv, meter: str, value: float, source: str = "", public: bool = True) -> None:
    """A day of readings of `meter`, public unless said (the anonymous client reads it)."""
    path = write_csv(HEADER + "".join(f"2019-01-01 {h:02d}:00:00,{value}\n" for h in range(24)), f"{meter}.csv")
    import_file(path, meter=meter)
    Meter.objects.filter(name=meter).update(public=public, **({"source": source} if source else {}))


def values(response) -> list[float]:
    assert response.status_code == 200, response.content
    return [reading["value"] for reading in response.json()["readings"]]


@pytest.fixture(params=["locmem", "redis"])
def answer_cache(request, settings):
    """The cache of the settings (local memory), or Redis as production configures it."""
    if request.param == "redis":
        import redis

        try:
            redis.Redis.from_url("redis://127.0.0.1:6379/0").ping()
        except redis.ConnectionError:
            require("Redis is not running on 127.0.0.1:6379 (.ci/run starts Debian's redis-server)")
        # Database 15 of the shared server: clearing it touches nothing else.
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                       "LOCATION": "redis://127.0.0.1:6379/15", "KEY_PREFIX": "meterusage-test"}}
    from django.core.cache import cache

    cache.clear()
    yield request.param
    cache.clear()


def test_an_answer_about_a_past_range_is_kept(api, write_csv, answer_cache):
    import_day(write_csv, "kept", 1.0)
    before = grpc_calls()

    first = api.get(CACHED.format("kept"), A_PAST_DAY)
    again = api.get(CACHED.format("kept"), A_PAST_DAY)

    assert values(first) == values(again) == [1.0] * 24
    assert grpc_calls() - before == 1
    if answer_cache == "redis":
        import redis

        assert any(key.startswith(b"meterusage-test:") for key in redis.Redis.from_url("redis://127.0.0.1:6379/15").keys("*"))


def test_a_write_is_seen_at_once_by_the_next_request(api, write_csv):
    import_day(write_csv, "changing", 1.0)
    assert values(api.get(CACHED.format("changing"), A_PAST_DAY)) == [1.0] * 24

    import_day(write_csv, "changing", 2.5)

    assert values(api.get(CACHED.format("changing"), A_PAST_DAY)) == [2.5] * 24


def test_a_range_that_has_not_ended_is_never_kept(api, write_csv):
    import_day(write_csv, "open", 1.0)
    until_next_year = {"start": A_PAST_DAY["start"], "end": "2999-01-01T00:00:00Z"}
    before = grpc_calls()

    api.get(CACHED.format("open"), until_next_year)
    api.get(CACHED.format("open"), until_next_year)

    assert grpc_calls() - before == 2


def test_a_meter_served_from_files_as_they_are_is_never_kept(api, write_csv, settings):
    import_day(write_csv, "from-file", 1.0, source="csv")
    files = {"from-file": str(write_csv(HEADER + "2019-01-01 00:00:00,7\n", "served.csv"))}
    settings.READINGS_SOURCES = {**settings.READINGS_SOURCES, "csv": {"BACKEND": "readings.sources.csv.CsvSource", "OPTIONS": {"FILES": files}}}
    before = grpc_calls()

    first = api.get(CACHED.format("from-file"), A_PAST_DAY)
    again = api.get(CACHED.format("from-file"), A_PAST_DAY)

    assert values(first) == values(again) == [7.0]
    assert grpc_calls() - before == 2


def test_a_store_that_is_down_is_asked_once_not_again_by_the_retry_policy(api, write_csv):
    import_day(write_csv, "down", 1.0, source="broken")  # a csv source whose folder is missing
    before = grpc_calls()

    response = api.get(CACHED.format("down"), A_PAST_DAY)

    assert response.status_code == 503
    assert grpc_calls() - before == 1


def signed_in(user: User) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def test_a_kept_answer_reaches_no_caller_who_may_not_see_the_meter(api, write_csv, answer_cache):
    import_day(write_csv, "private", 3.0, public=False)
    acme, globex = Account.objects.create(name="acme"), Account.objects.create(name="globex")
    ann, carl = User.objects.create_user("ann"), User.objects.create_user("carl")
    acme.members.add(ann)
    globex.members.add(carl)
    Meter.objects.filter(name="private").update(account=acme)
    ann_client, carl_client = signed_in(ann), signed_in(carl)

    assert values(ann_client.get(CACHED.format("private"), A_PAST_DAY)) == [3.0] * 24
    before = grpc_calls()
    assert values(ann_client.get(CACHED.format("private"), A_PAST_DAY)) == [3.0] * 24
    assert grpc_calls() == before  # kept, and given again to its caller

    for other in (carl_client, api):
        refused = other.get(CACHED.format("private"), A_PAST_DAY)
        assert refused.status_code == 404, refused.content
        assert refused.json()["detail"] == "no meter named 'private'"

    acme.members.remove(ann)
    forget_resolved()
    assert ann_client.get(CACHED.format("private"), A_PAST_DAY).status_code == 404
