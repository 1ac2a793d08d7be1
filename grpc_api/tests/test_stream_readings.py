"""StreamReadings: columnar batches, resuming with a token, cancellation and deadlines."""
import logging

import grpc
import pytest

from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb
from testing.helpers import JANUARY, all_reading_pages, ts, wait_for

pytestmark = [pytest.mark.django_db, pytest.mark.store]


def received(messages) -> list[tuple[int, float]]:
    return [pair for message in messages for pair in zip(message.times, message.values)]


@pytest.mark.parametrize("meter", ["meterusage", "meterusage-csv"])
def test_stream_gives_every_reading_once(stub, reference_csv, meter):
    messages = list(stub.StreamReadings(pb.StreamReadingsRequest(meter=meter, batch_size=500, **JANUARY)))

    assert [len(m.times) for m in messages] == [500] * 5 + [474]
    listed, _ = all_reading_pages(stub, meter="meterusage", page_size=10_000, **JANUARY)
    stream = received(messages)
    assert len(stream) == 2974
    assert [(t, v) for t, v in stream] == [(ts(time).seconds, value) for time, value in listed]


def test_interrupted_stream_resumes_after_the_last_reading(stub):
    request = pb.StreamReadingsRequest(meter="meterusage", batch_size=300, **JANUARY)
    call = stub.StreamReadings(request)
    first_part = [next(call) for _ in range(3)]
    call.cancel()

    request.resume_token = first_part[-1].resume_token
    rest = list(stub.StreamReadings(request))

    times = [t for t, _ in received(first_part + rest)]
    assert len(times) == 2974
    assert len(set(times)) == 2974
    assert times == sorted(times)


def test_resume_token_of_another_range_is_refused(stub):
    message = next(iter(stub.StreamReadings(pb.StreamReadingsRequest(meter="meterusage", batch_size=10, **JANUARY))))

    with pytest.raises(grpc.RpcError) as error:
        list(stub.StreamReadings(pb.StreamReadingsRequest(
            meter="meterusage-csv", resume_token=message.resume_token, **JANUARY
        )))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "resume_token" in error.value.details()


def test_default_batch_is_large(stub):
    request = pb.StreamReadingsRequest(
        meter="gen-a", start_time=ts("2019-08-01T00:00:00Z"), end_time=ts("2020-01-01T00:00:00Z")
    )
    sizes = [len(m.times) for m in stub.StreamReadings(request)]

    meters = {m.name: m for m in stub.ListMeters(pb.ListMetersRequest()).meters}
    # 120 days of 15-minute readings fit in one message of the default size (16384).
    assert sizes == [meters["gen-a"].reading_count]
    assert 11_000 < sizes[0] < 16_384


def test_cancelled_stream_stops_reading(stub, caplog):
    caplog.set_level(logging.INFO, logger="grpc_api.calls")
    request = pb.StreamReadingsRequest(
        meter="gen-a", batch_size=1, start_time=ts("2019-09-01T00:00:00Z"), end_time=ts("2020-01-01T00:00:00Z")
    )
    call = stub.StreamReadings(request)
    next(call)
    call.cancel()

    line = wait_for(
        lambda: next((r.getMessage() for r in caplog.records if "StreamReadings CANCELLED" in r.getMessage()), None)
    )
    sent = int(line.rsplit("messages=", 1)[1])
    # 11,000 one-reading messages were due; the server stopped once the cancel reached it
    # (those already in HTTP/2's flow-control window, a few thousand at most, were sent).
    assert sent < 5000


def test_expired_deadline_ends_the_stream(stub):
    request = pb.StreamReadingsRequest(
        meter="gen-a", batch_size=1, start_time=ts("2019-09-01T00:00:00Z"), end_time=ts("2020-01-01T00:00:00Z")
    )
    got = 0
    with pytest.raises(grpc.RpcError) as error:
        for _ in stub.StreamReadings(request, timeout=0.2):
            got += 1
    assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert got < 11_000
