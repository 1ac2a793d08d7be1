"""ListReadingsResponse and StreamReadingsResponse written straight from numpy columns, to the
bytes protobuf would write.

Building one Reading message (and one Timestamp) per reading costs far more than reading them
from the store; these functions write the same wire format column-wise instead. A test checks
byte for byte that they agree with SerializeToString.
"""
import numpy as np

# Field tags (field number << 3 | wire type) of meter_usage.proto.
_READINGS = 0x0A  # ListReadingsResponse.readings = 1, length-delimited
_NEXT_PAGE_TOKEN = 0x12  # ListReadingsResponse.next_page_token = 2
_TIMES = 0x1A  # ListReadingsResponse.times = 3, packed
_VALUES = 0x22  # ListReadingsResponse.values = 4, packed
_TIME = 0x0A  # Reading.time = 1, length-delimited
_VALUE = 0x11  # Reading.value = 2, 64-bit
_SECONDS = 0x08  # Timestamp.seconds = 1, varint
_STREAM_TIMES = 0x0A  # StreamReadingsResponse.times = 1, packed
_STREAM_VALUES = 0x12  # StreamReadingsResponse.values = 2, packed
_RESUME_TOKEN = 0x1A  # StreamReadingsResponse.resume_token = 3


def _varints(numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Varint encodings of int64 numbers (negative ones as their 64-bit two's complement): an
    (n, width) array of bytes, width being the longest encoding, and how many bytes each uses."""
    unsigned = numbers.astype(np.int64).view(np.uint64)
    width = max(1, -(-int(unsigned.max()).bit_length() // 7)) if len(unsigned) else 1
    shifted = unsigned[:, None] >> np.arange(0, 7 * width, 7, dtype=np.uint64)
    groups = (shifted & np.uint64(0x7F)).astype(np.uint8)
    # A varint ends after its last group holding a set bit (at least one group).
    lengths = np.maximum((shifted > 0).sum(axis=1), 1)
    groups[np.arange(width) < (lengths[:, None] - 1)] |= 0x80
    return groups, lengths


def _varint(number: int) -> bytes:
    groups, lengths = _varints(np.array([number], dtype=np.int64))
    return groups[0, : lengths[0]].tobytes()


def _packed(rows: np.ndarray, lengths: np.ndarray) -> bytes:
    """The used bytes of each row, row after row."""
    used = np.arange(rows.shape[1]) < lengths[:, None]
    return rows[used].tobytes()


def _string(tag: int, text: str) -> bytes:
    if not text:
        return b""
    encoded = text.encode()
    return bytes([tag]) + _varint(len(encoded)) + encoded


def _token(next_page_token: str) -> bytes:
    return _string(_NEXT_PAGE_TOKEN, next_page_token)


def _columns(times_tag: int, values_tag: int, times: np.ndarray, values: np.ndarray) -> bytes:
    """Two packed columns: int64 varints and little-endian doubles."""
    if not len(times):
        return b""
    seconds, lengths = _varints(times)
    packed_times = _packed(seconds, lengths)
    packed_values = values.astype("<f8").tobytes()
    return (
        bytes([times_tag]) + _varint(len(packed_times)) + packed_times
        + bytes([values_tag]) + _varint(len(packed_values)) + packed_values
    )


def readings_rows(times: np.ndarray, values: np.ndarray, next_page_token: str = "") -> bytes:
    """ListReadingsResponse with `readings`: one Reading {time {seconds}, value} per reading."""
    count = len(times)
    seconds, seconds_lengths = _varints(times)
    width = seconds.shape[1]
    if count and np.all(seconds_lengths == width) and np.all(times != 0) and np.all(values != 0):
        return _uniform_rows(seconds, values) + _token(next_page_token)
    # proto3 leaves out what holds its default: seconds of 0, a value whose bits are all 0.
    has_seconds = times != 0
    has_value = values.astype(np.float64).view(np.uint64) != 0
    timestamp_length = np.where(has_seconds, 1 + seconds_lengths, 0)
    # Every length is below 128, so each fits one varint byte: a reading takes 14 + width bytes at most.
    out = np.zeros((count, 14 + width), dtype=np.uint8)
    out[:, 0], out[:, 1] = _READINGS, 2 + timestamp_length + np.where(has_value, 9, 0)
    out[:, 2], out[:, 3] = _TIME, timestamp_length
    out[:, 4], out[:, 5 : 5 + width] = _SECONDS, seconds
    used = np.arange(14 + width) < 4 + timestamp_length[:, None]
    # The value follows the timestamp, wherever that ends.
    rows = np.flatnonzero(has_value)
    at = (4 + timestamp_length[rows])[:, None] + np.arange(9)
    out[rows[:, None], at] = np.column_stack(
        [np.full(len(rows), _VALUE, np.uint8), values[rows].astype("<f8").view(np.uint8).reshape(-1, 8)]
    )
    used[rows[:, None], at] = True
    return out[used].tobytes() + _token(next_page_token)


def _uniform_rows(seconds: np.ndarray, values: np.ndarray) -> bytes:
    """Readings whose parts are all there and whose seconds take the same number of bytes (the
    usual case): fixed-size blocks, written column by column."""
    count, width = seconds.shape
    out = np.empty((count, 14 + width), dtype=np.uint8)
    out[:, 0], out[:, 1], out[:, 2], out[:, 3], out[:, 4] = _READINGS, 12 + width, _TIME, 1 + width, _SECONDS
    out[:, 5 : 5 + width] = seconds
    out[:, 5 + width] = _VALUE
    out[:, 6 + width :] = values.astype("<f8").view(np.uint8).reshape(count, 8)
    return out.tobytes()


def readings_columns(times: np.ndarray, values: np.ndarray, next_page_token: str = "") -> bytes:
    """ListReadingsResponse with the `times` and `values` columns (packed) instead of readings."""
    # Fields in number order, as protobuf writes them: the token (2) before the columns (3, 4).
    return _token(next_page_token) + _columns(_TIMES, _VALUES, times, values)


def stream_message(times: np.ndarray, values: np.ndarray, resume_token: str) -> bytes:
    """A StreamReadingsResponse: the two columns, then the resume token."""
    return _columns(_STREAM_TIMES, _STREAM_VALUES, times, values) + _string(_RESUME_TOKEN, resume_token)
