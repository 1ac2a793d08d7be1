"""Responses written column-wise are byte for byte what protobuf writes, and the columns view
holds the same readings as the rows view."""
import numpy as np
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from grpc_api import encode
from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb
from testing.helpers import JANUARY

EDGES = np.array([0, -1, 1, 127, 128, 16383, 16384, 2**40, -(2**40), -62135510400, 253402214400, 2**62], dtype=np.int64)
ODD_VALUES = np.array([0.0, -0.0, 1.5, np.inf, -np.inf, 5e-324, 1.7976931348623157e308, -2.25, 3.0, np.nan, 1.0, -7.0])


def by_protobuf(times, values, token: str) -> tuple[bytes, bytes]:
    rows = pb.ListReadingsResponse(
        readings=[pb.Reading(time=Timestamp(seconds=int(t)), value=float(v)) for t, v in zip(times, values)],
        next_page_token=token,
    )
    columns = pb.ListReadingsResponse(times=times.tolist(), values=values.tolist(), next_page_token=token)
    return rows.SerializeToString(), columns.SerializeToString()


@pytest.mark.parametrize("token", ["", "a-token", "x" * 300])
@pytest.mark.parametrize("count", [0, 1, 12, 3000])
def test_the_same_bytes_as_protobuf(token, count):
    rng = np.random.default_rng(count)
    times = np.concatenate([EDGES, rng.integers(1_500_000_000, 1_600_000_000, count)])[:count]
    values = np.concatenate([ODD_VALUES, rng.normal(50, 10, count)])[:count]

    rows, columns = by_protobuf(times, values, token)

    assert encode.readings_rows(times, values, token) == rows
    assert encode.readings_columns(times, values, token) == columns
    stream = pb.StreamReadingsResponse(times=times.tolist(), values=values.tolist(), resume_token=token)
    assert encode.stream_message(times, values, token) == stream.SerializeToString()


@pytest.mark.django_db
def test_the_columns_view_holds_the_rows(stub):
    request = dict(meter="meterusage", page_size=5000, **JANUARY)
    rows = stub.ListReadings(pb.ListReadingsRequest(**request))
    columns = stub.ListReadings(pb.ListReadingsRequest(**request, view=pb.READINGS_VIEW_COLUMNS))

    assert list(columns.readings) == []
    assert list(columns.times) == [r.time.seconds for r in rows.readings]
    assert list(columns.values) == [r.value for r in rows.readings]
    assert len(rows.readings) == 2974


def test_the_same_bytes_for_a_month_of_ordinary_readings():
    # Every part present, every time as long: the fixed-size fast path.
    times = 1546300800 + 900 * np.arange(2976, dtype=np.int64)
    values = np.random.default_rng(7).normal(50, 10, 2976)

    rows, _ = by_protobuf(times, values, "next")

    assert encode.readings_rows(times, values, "next") == rows
