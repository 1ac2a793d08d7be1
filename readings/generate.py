"""Deterministic synthetic meter data with a daily and weekly shape, for demos and benchmarks."""
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv


def synthetic_readings(*, days: int, start: date, seed: int, meter_index: int = 0, time_zone: str = "UTC"):
    """(times, values) of one meter: naive wall-clock datetime64[s] in `time_zone` every 15
    minutes, values in kWh.

    Load is low at night with a morning and an evening peak, lower at weekends, higher in winter,
    with noise; a few runs of slots are missing, as on real meters. The slots are real instants,
    so in a zone with DST the wall clock skips the spring-forward hour and repeats the fall-back one.
    """
    rng = np.random.default_rng([seed, meter_index])
    slots = days * 96
    first = pd.Timestamp(start).tz_localize(time_zone, nonexistent="shift_forward", ambiguous=True)
    instants = pd.date_range(first, periods=slots, freq="15min")
    times = instants.tz_localize(None).as_unit("s").values if time_zone == "UTC" else (
        instants.tz_convert(time_zone).tz_localize(None).as_unit("s").values
    )
    hours = (times.astype("datetime64[m]").astype(np.int64) % 1440) / 60.0
    day_of_week = (times.astype("datetime64[D]").astype(np.int64) + 3) % 7  # 0 = Monday
    day_of_year = (times.astype("datetime64[D]") - times.astype("datetime64[Y]")).astype(int)

    base = rng.uniform(20.0, 80.0)
    daily = 0.55 + 0.35 * np.exp(-((hours - 8.0) ** 2) / 4.5) + 0.5 * np.exp(-((hours - 19.0) ** 2) / 8.0)
    weekly = np.where(day_of_week >= 5, 0.8, 1.0)
    seasonal = 1.0 + 0.2 * np.cos(2 * np.pi * (day_of_year - 15) / 365.25)
    noise = rng.normal(1.0, 0.03, slots)
    values = np.round(base * daily * weekly * seasonal * noise, 2)

    keep = np.ones(slots, dtype=bool)
    for _ in range(max(1, days // 10)):
        gap_start = int(rng.integers(0, slots))
        keep[gap_start : gap_start + int(rng.integers(1, 13))] = False
    return times[keep], values[keep]


def write_readings_csv(path: Path, times: np.ndarray, values: np.ndarray) -> None:
    """Write readings in the input format: header `time,meterusage`, naive `YYYY-MM-DD HH:MM:SS`."""
    table = pa.table(
        {"time": pa.array(times, pa.timestamp("s")).cast(pa.string()), "meterusage": values}
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with pa.OSFile(str(path), "wb") as sink:
        sink.write(b"time,meterusage\n")
        pa_csv.write_csv(
            table, sink, write_options=pa_csv.WriteOptions(include_header=False, quoting_style="none")
        )


def generated_file_paths(out: Path, meters: int) -> list[Path]:
    """One file per meter: `out` itself for one meter, else `out-001.csv`, `out-002.csv`, ..."""
    if meters == 1:
        return [out]
    return [out.with_name(f"{out.stem}-{i:03d}{out.suffix or '.csv'}") for i in range(1, meters + 1)]



