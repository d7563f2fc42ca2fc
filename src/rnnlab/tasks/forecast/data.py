"""Two real time series for forecasting, read from the CSV files inside the PyPI wheel `statsmodels==0.15.0`
(BSD-3; the data public domain) with zipfile; statsmodels is not imported to read them.

- co2: Mauna Loa atmospheric CO2 (ppmv), weekly 1958-03-29 .. 2001-12-29 with gaps; aggregated to monthly
  means (or kept weekly), months without a reading linearly interpolated.
- sunspots: yearly mean sunspot numbers 1700 .. 2008.

The last `test` fraction of each series is its test horizon, the `validation` stretch before it picks the
checkpoint, and train is everything earlier. Scaling statistics come from train only. ForecastDataModule
serves windows of the train part: `window` past values in, the next `horizon` values (the series' test
length) out, with the forecast of each series' classical model from the same origin (its parameters fitted
on the train part once, rnnlab.shapes.classical), the path the network learns to correct.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from datasets import Dataset, DatasetDict
from torch.utils.data import DataLoader, TensorDataset
from torchdata.stateful_dataloader import StatefulDataLoader

from rnnlab import RnnlabError
from rnnlab.core.io import atomic_path, write_json
from rnnlab.core.sources import utf8_text, wheel_members
from rnnlab.data.sampling import PIN_MEMORY
from rnnlab.data.splits import load_raw, read_json

FOLDER = "statsmodels/datasets/"
MEMBERS = {"co2": FOLDER + "co2/co2.csv", "sunspots": FOLDER + "sunspots/sunspots.csv"}
# the CSV columns: date (YYYYMMDD) / year, and the value
COLUMNS = {"co2": ("date", "co2"), "sunspots": ("YEAR", "SUNACTIVITY")}
SERIES = tuple(MEMBERS)
FREQUENCIES = {"monthly": "MS", "weekly": "W-SAT"}
SPLITS = ("train", "validation", "test")


def parse_csv(text: str, columns: tuple[str, str], where: str) -> tuple[list[str], list[float | None]]:
    """A two-column CSV with a header: dates as ISO strings (YYYYMMDD or a year), values as floats; an empty
    value is a gap (None). Anything else that is not a finite number stops with the line named."""
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or [c.strip() for c in rows[0]] != list(columns):
        found = ",".join(rows[0]) if rows else "(empty)"
        raise RnnlabError(f"{where}: expected the header {','.join(columns)}, got {found}")
    dates, values = [], []
    for number, row in enumerate(rows[1:], 2):
        if not row:
            continue
        if len(row) != 2:
            raise RnnlabError(f"{where} line {number}: {len(row)} fields, expected 2")
        date, value = row[0].strip(), row[1].strip()
        if date.isdigit() and len(date) == 8:
            date = f"{date[:4]}-{date[4:6]}-{date[6:]}"
        elif not (date.isdigit() and len(date) == 4):
            raise RnnlabError(f"{where} line {number}: date {date!r} is neither YYYYMMDD nor a year")
        if value:
            try:
                number_value = float(value)
            except ValueError:
                number_value = math.nan
            if not math.isfinite(number_value):
                raise RnnlabError(f"{where} line {number}: value {value!r} is not a number")
        dates.append(date)
        values.append(number_value if value else None)
    if not dates:
        raise RnnlabError(f"{where} holds no data lines")
    if dates != sorted(dates) or len(set(dates)) != len(dates):
        raise RnnlabError(f"{where}: dates are not strictly increasing")
    return dates, values


def read_archive(archive: Path) -> DatasetDict:
    """One dataset per series, as written in the archive: `date` (ISO date or year) and `value` (None: a gap)."""
    files, parts = wheel_members(archive, MEMBERS.values()), {}
    for name, member in MEMBERS.items():
        where = f"{archive}:{member}"
        dates, values = parse_csv(utf8_text(files[member], where), COLUMNS[name], where)
        parts[name] = Dataset.from_dict({"date": dates, "value": values})
    return DatasetDict(parts)


def regular_co2(dates: list[str], values: list, frequency: str) -> tuple[list[str], np.ndarray, int]:
    """Weekly readings -> a regular monthly (mean of the month's readings) or weekly series; steps without a
    reading are interpolated linearly between their neighbours. Returns dates, values, interpolated steps."""
    if frequency not in FREQUENCIES:
        raise RnnlabError(f"params.yaml: tasks.forecast.data.co2_frequency must be monthly or weekly, got {frequency!r}")
    series = pd.Series([np.nan if v is None else v for v in values], index=pd.to_datetime(dates), dtype=float)
    regular = series.resample(FREQUENCIES[frequency]).mean()
    gaps = int(regular.isna().sum())
    if regular.iloc[[0, -1]].isna().any():
        raise RnnlabError("co2: the first or last step has no reading, so it cannot be interpolated")
    regular = regular.interpolate(method="linear")
    fmt = "%Y-%m" if frequency == "monthly" else "%Y-%m-%d"
    return [d.strftime(fmt) for d in regular.index], regular.to_numpy(), gaps


def split_lengths(n: int, validation: float, test: float) -> dict[str, int]:
    """The last round(n * test) steps are test, the round(n * validation) before them validation."""
    for name, fraction in (("validation", validation), ("test", test)):
        if not 0 < fraction < 1:
            raise RnnlabError(f"params.yaml: tasks.forecast.data.split.{name} must be in (0, 1), got {fraction!r}")
    n_test, n_val = int(n * test + 0.5), int(n * validation + 0.5)
    if min(n_test, n_val) < 1 or n - n_test - n_val < 2:
        raise RnnlabError(f"a series of {n} steps leaves no train/validation/test with fractions "
                          f"{validation} / {test}")
    return {"train": n - n_val - n_test, "validation": n_val, "test": n_test}


def preprocess(raw_dir: Path, out_dir: Path, validation: float, test: float, co2_frequency: str = "monthly") -> dict:
    """data/processed/forecast/series.json: per series its dates, values, split lengths and train scaling."""
    raw = load_raw(raw_dir)
    missing = [s for s in SERIES if s not in raw]
    if missing:
        raise RnnlabError(f"{raw_dir}: missing series {', '.join(missing)}")
    stats: dict[str, Any]
    out, stats = {}, {"rows": {}, "splits": {}, "interpolated": {}}
    for name in SERIES:
        dates, values = list(raw[name]["date"]), list(raw[name]["value"])
        if name == "co2":
            dates, array, gaps = regular_co2(dates, values, co2_frequency)
            frequency = co2_frequency
        else:
            if any(v is None for v in values):
                raise RnnlabError(f"{raw_dir}: sunspots has gaps; the yearly series is expected complete")
            array, gaps, frequency = np.asarray(values, dtype=float), 0, "yearly"
        lengths = split_lengths(len(array), validation, test)
        train = array[:lengths["train"]]
        # scaling from the train steps only: nothing of validation or test leaks into the inputs
        std = float(train.std()) or 1.0
        out[name] = {"frequency": frequency, "dates": dates, "values": [round(float(v), 6) for v in array],
                     "splits": lengths, "scale": {"mean": float(train.mean()), "std": std, "from": "train"}}
        stats["rows"][name] = len(array)
        stats["splits"][name] = {s: f"{dates[a]}..{dates[a + lengths[s] - 1]}" for s, a in
                                 zip(SPLITS, (0, lengths["train"], lengths["train"] + lengths["validation"]))}
        stats["interpolated"][name] = gaps
    with atomic_path(out_dir, is_dir=True) as tmp:
        write_json(tmp / "series.json", out)
        write_json(tmp / "stats.json", stats)
    return stats


def load_series(processed_dir: Path) -> dict:
    series = read_json(Path(processed_dir) / "series.json")
    missing = [s for s in SERIES if s not in series]
    if missing:
        raise RnnlabError(f"{processed_dir}/series.json: missing series {', '.join(missing)}")
    return series


class ForecastDataModule(L.LightningDataModule):
    """Windows of both series for one model. A training example is `window` scaled values of one series
    (train steps only) and the `horizon` values after them, horizon = that series' test length; both series'
    targets are padded to the longest horizon and a mask marks the valid steps. Validation: a window
    from every step of the validation stretch, forecasting up to its end. `classical`: {series: spec} of
    rnnlab.shapes.classical (a series left out gets the last value as its path). A batch is
    `(inputs (B, window), series ids (B,), classical path (B, H), targets (B, H), mask (B, H))`, all scaled."""

    def __init__(self, processed_dir: str, window: int = 48, batch_size: int = 32, task: str = "forecast",
                 classical: dict | None = None):
        super().__init__()
        for key, value in (("window", window), ("batch_size", batch_size)):
            if not isinstance(value, int) or value < 1:
                raise RnnlabError(f"data.{key} must be a positive integer, got {value!r}")
        self.task, self.processed_dir = task, Path(processed_dir)
        self.window, self.batch_size = window, batch_size
        try:
            self.series = load_series(self.processed_dir)
        except RnnlabError as e:
            raise RnnlabError(f"{e} (run `rnnlab preprocess {task}` or dvc repro)") from e
        self.names = list(SERIES)
        self.horizons = [self.series[s]["splits"]["test"] for s in self.names]
        self.horizon = max(self.horizons)
        from rnnlab.shapes import classical as classical_models  # stage-deps: not run by the pull and preprocess stages

        self.classical: dict[str, dict] = {}
        for name, spec in (classical or {}).items():
            if name not in self.names:
                raise RnnlabError(f"data.classical: unknown series {name!r}; the data has {', '.join(self.names)}")
            # fitted on the train part only: its validation and test forecasts are out of sample
            train = np.asarray(self.series[name]["values"][:self.series[name]["splits"]["train"]])
            self.classical[name] = {"spec": dict(spec), "params": classical_models.fit(dict(spec), train)}
        self.data = {"train": self._windows("train"), "validation": self._windows("validation")}

    def scaled(self, name: str) -> np.ndarray:
        s = self.series[name]
        return (np.asarray(s["values"]) - s["scale"]["mean"]) / s["scale"]["std"]

    def history(self, name: str, split: str) -> np.ndarray:
        """The original values before `split` starts (train before validation, train + validation before test)."""
        s = self.series[name]
        end = {"train": 0, "validation": s["splits"]["train"],
               "test": s["splits"]["train"] + s["splits"]["validation"]}[split]
        return np.asarray(s["values"][:end])

    def truth(self, name: str, split: str) -> np.ndarray:
        s = self.series[name]
        start = len(self.history(name, split))
        return np.asarray(s["values"][start:start + s["splits"][split]])

    def _windows(self, split: str) -> TensorDataset:
        from rnnlab.shapes import classical as classical_models  # stage-deps: not run by the pull and preprocess stages

        inputs, ids, bases, targets, masks = [], [], [], [], []
        for i, (name, h) in enumerate(zip(self.names, self.horizons)):
            x, n_train = self.scaled(name), self.series[name]["splits"]["train"]
            model: dict = self.classical.get(name, {"spec": {}, "params": []})
            values, scale = np.asarray(self.series[name]["values"]), self.series[name]["scale"]
            if split == "train":
                starts = range(0, n_train - self.window - h + 1)
                lengths = [h] * len(starts)
            else:  # forecasts from every step of the validation stretch, each up to its end (never into test)
                n_val = self.series[name]["splits"]["validation"]
                starts = range(n_train - self.window, n_train - self.window + n_val)
                lengths = [min(h, n_val - k) for k in range(n_val)]
            if split == "train" and not starts:
                raise RnnlabError(f"{name}: {n_train} train steps hold no window of {self.window} + horizon {h}; "
                                  "lower data.window")
            if starts[0] < 0:
                raise RnnlabError(f"{name}: data.window={self.window} is longer than its {n_train} train steps")
            # the classical model reads the whole history before each origin, as at forecast time
            origins = [start + self.window for start in starts]
            paths = classical_models.paths(model["spec"], model["params"], values, origins, h)
            for start, origin, length, path in zip(starts, origins, lengths, paths):
                target, base = np.zeros(self.horizon), np.zeros(self.horizon)
                target[:length] = x[origin:origin + length]
                base[:h] = (path - scale["mean"]) / scale["std"]
                inputs.append(x[start:origin])
                ids.append(i)
                bases.append(base)
                targets.append(target)
                masks.append(np.arange(self.horizon) < length)

        def floats(rows):
            return torch.tensor(np.array(rows), dtype=torch.float32)

        return TensorDataset(floats(inputs), torch.tensor(ids), floats(bases), floats(targets),
                             torch.tensor(np.array(masks)))

    def model_kwargs(self) -> dict:
        """What the model takes from the data, plain lists (checkpoints load with weights_only=True)."""
        return {"task": self.task, "series": list(self.names), "horizons": list(self.horizons),
                "window": self.window, "classical": self.classical,
                "scale": {name: [self.series[name]["scale"]["mean"], self.series[name]["scale"]["std"]]
                          for name in self.names}}

    def train_dataloader(self):
        return StatefulDataLoader(self.data["train"], batch_size=self.batch_size, shuffle=True, pin_memory=PIN_MEMORY)

    def val_dataloader(self):
        return DataLoader(self.data["validation"], batch_size=len(self.data["validation"]), pin_memory=PIN_MEMORY)
