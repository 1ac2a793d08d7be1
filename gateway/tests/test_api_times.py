"""RFC 3339 out of the HTTP API: the table-driven writer agrees with numpy's across the span served."""
import numpy as np

from gateway.api.times import rfc3339
from readings.domain import MAX_EPOCH, MIN_EPOCH


def test_rfc3339_writes_what_numpy_writes_for_any_time_served():
    epochs = np.random.default_rng(3).integers(MIN_EPOCH, MAX_EPOCH, 50_000)
    edges = np.array([MIN_EPOCH, MAX_EPOCH, 0, -1, 86399, 86400, 951782400, 1546300800])
    every = np.concatenate([epochs, edges])

    assert rfc3339(every) == np.datetime_as_string(every.astype("datetime64[s]"), unit="s", timezone="UTC").tolist()
    assert rfc3339([1546300815]) == ["2019-01-01T00:00:15Z"]
    assert rfc3339([]) == []
