"""The forecasting task's evaluation (rnnlab.pipeline.evaluate runs it): the recurrent model's forecast of
each series' test horizon and validation stretch, the baselines of conf/task/forecast.yaml fitted on the same
history, their MAE/RMSE, the same from several origins inside the test period and inside the validation
stretch (`rolling`, `val_rolling`: the latter is what settings are chosen by), the coverage of the model's
80 % interval (`coverage_80`), a CSV of every forecast and a PNG of history, truth, forecasts and interval, and each
baseline's fit + predict seconds on the whole horizon (reports/forecast_peers.csv: beside the metrics, not in them,
which are byte-identical run to run)."""

from __future__ import annotations

from pathlib import Path
from time import perf_counter
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on CI or servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from rnnlab import RnnlabError  # noqa: E402
from rnnlab.core.io import atomic_path, write_text  # noqa: E402
from rnnlab.evaluation import table  # noqa: E402
from rnnlab.tasks.forecast.baselines import baseline_forecast, coverage, errors  # noqa: E402

FIGURE = "figures/forecast.png"  # under paths.reports_dir
PREDICTIONS = "forecast_predictions.csv"  # under paths.reports_dir
PEERS = "forecast_peers.csv"  # under paths.reports_dir


def score(models: dict, dm, cfg: DictConfig, runs: dict, client) -> dict:
    """{"test": {series: {mae, rmse, coverage_80, rolling}}, "val": {series: {..., rolling}},
    "baseline": {series: {name: {mae, rmse, rolling, val_rolling}}}}."""
    model, run_id = models["model"], runs.get("model")
    baselines: Any = OmegaConf.to_container(cfg.get("baselines") or {}, resolve=True)
    unknown = sorted(set(baselines) - set(dm.names))
    if unknown:
        raise RnnlabError(f"baselines: unknown series {', '.join(unknown)}; the data has {', '.join(dm.names)}")
    scores: dict[str, dict[str, Any]] = {"test": {}, "val": {}, "baseline": {}}
    forecasts, rows, took = {}, [], []
    intervals = {}
    for name in dm.names:
        for split, key in (("validation", "val"), ("test", "test")):
            truth = dm.truth(name, split)
            median, lower, upper = predict(model, name, dm.history(name, split), len(truth))
            scores[key][name] = {**errors(median, truth), "coverage_80": coverage(lower, upper, truth)}
        history, truth = dm.history(name, "test"), dm.truth(name, "test")
        forecasts[name] = {"model": median}
        intervals[name] = (lower, upper)
        for baseline, kwargs in (baselines.get(name) or {}).items():
            start = perf_counter()
            forecasts[name][baseline] = baseline_forecast(baseline, history, len(truth), **(kwargs or {}))
            took.append((baseline, name, round(perf_counter() - start, 2)))
            scores["baseline"].setdefault(name, {})[baseline] = errors(forecasts[name][baseline], truth)
        for split, key in (("validation", "val_rolling"), ("test", "rolling")):
            for label, result in rolling(dm, model, name, baselines.get(name) or {}, cfg.rolling_origin, split).items():
                if label == "model":
                    scores["val" if split == "validation" else "test"][name]["rolling"] = result
                else:
                    scores["baseline"][name][label][key] = result
        dates = dm.series[name]["dates"][len(history):]
        for i, (date, value) in enumerate(zip(dates, truth)):
            rows.append([name, date, i + 1, f"{value:.4f}", *(f"{f[i]:.4f}" for f in forecasts[name].values())])
    reports = Path(cfg.paths.reports_dir)
    # one column per forecast; a series without some baseline leaves that cell empty
    names = list(dict.fromkeys(k for f in forecasts.values() for k in f))
    rows = [r[:4] + [dict(zip(forecasts[r[0]], r[4:])).get(k, "") for k in names] for r in rows]
    write_text(reports / PREDICTIONS, table(["series", "date", "step", "truth", *names], rows))
    write_text(reports / PEERS, table(["peer", "series", "seconds"], took))
    figure(dm, forecasts, intervals, dict(cfg.get("plot_history") or {}), reports / FIGURE)
    if run_id:
        client.log_artifact(run_id, str(reports / PREDICTIONS))
        for baseline, name, seconds in took:
            client.log_metric(run_id, f"baseline_{name}_{baseline}_seconds", seconds)
        client.log_artifact(run_id, str(reports / FIGURE), "figures")
    return scores


def origins(n: int, horizon: int, count: int) -> list[int]:
    """`count` forecast origins (offsets into a test period of `n` steps) spread evenly from its start to the
    last one whose `horizon` steps still end inside it."""
    if not 1 <= horizon <= n or count < 1:
        raise RnnlabError(f"rolling_origin: a horizon of {horizon} steps and {count} origins do not fit a test "
                          f"period of {n} steps")
    return sorted({round(x) for x in np.linspace(0, n - horizon, count)})


def predict(model, name: str, history, steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The model's median forecast of the next `steps` values and its 80 % interval (0.1 and 0.9 quantiles)."""
    levels = [float(q) for q in model.hparams.quantiles]
    if not {0.1, 0.5, 0.9} <= set(levels):
        raise RnnlabError(f"module.quantiles {levels} lack 0.1, 0.5 or 0.9: the median and the 80 % interval")
    q = np.asarray(model.quantile_forecast(name, history))[:, :steps]
    return q[levels.index(0.5)], q[levels.index(0.1)], q[levels.index(0.9)]


def rolling(dm, model, name: str, baselines: dict, settings, split: str = "test") -> dict:
    """Rolling-origin evaluation (Tashman, "Out-of-sample tests of forecasting accuracy", IJF 2000): from each
    origin inside the `split` stretch (test, or validation to choose settings by), forecast `horizon` (a fraction
    of the stretch's length) steps from everything before it: the network re-conditioned on its window (not
    retrained), each classical model refitted. One horizon's score can be a lucky or unlucky stretch; the mean
    over origins and its spread are not. {"model" or baseline: {mae_mean, mae_std, rmse_mean, origins, horizon}},
    the model's with coverage_80, the mean share of the truth inside its 80 % interval."""
    history, truth = dm.history(name, split), dm.truth(name, split)
    horizon = max(1, round(float(settings.horizon) * len(truth)))
    series = np.concatenate([history, truth])
    found: dict[str, list[dict]] = {}
    for offset in origins(len(truth), horizon, int(settings.origins)):
        past, future = series[:len(history) + offset], truth[offset:offset + horizon]
        median, lower, upper = predict(model, name, past, horizon)
        found.setdefault("model", []).append({**errors(median, future), "coverage_80": coverage(lower, upper, future)})
        for baseline, kwargs in baselines.items():
            forecast = baseline_forecast(baseline, past, horizon, **(kwargs or {}))
            found.setdefault(baseline, []).append(errors(forecast, future))
    out: dict[str, dict] = {}
    for label, each in found.items():
        out[label] = {"mae_mean": round(float(np.mean([e["mae"] for e in each])), 4),
                      "mae_std": round(float(np.std([e["mae"] for e in each])), 4),
                      "rmse_mean": round(float(np.mean([e["rmse"] for e in each])), 4),
                      "origins": len(each), "horizon": horizon}
        if "coverage_80" in each[0]:
            out[label]["coverage_80"] = round(float(np.mean([e["coverage_80"] for e in each])), 4)
    return out


def figure(dm, forecasts: dict, intervals: dict, shown: dict, path: Path) -> None:
    """One panel per series: the last `shown[series]` steps of history, the test truth, every forecast and the
    model's 80 % interval (`intervals[series]`: lower, upper)."""
    fig, axes = plt.subplots(len(dm.names), 1, figsize=(10, 3.6 * len(dm.names)))
    for ax, name in zip(np.atleast_1d(axes), dm.names):
        history, truth = dm.history(name, "test"), dm.truth(name, "test")
        steps = np.arange(len(history) + len(truth))
        start = max(0, len(history) - int(shown.get(name, len(history))))
        dates = dm.series[name]["dates"]
        ax.plot(steps[start:len(history)], history[start:], color="black", lw=1.2, label="history")
        ax.plot(steps[len(history):], truth, color="black", lw=1.2, ls="--", label="truth (test)")
        ax.fill_between(steps[len(history):], *intervals[name], color="tab:red", alpha=0.15, lw=0,
                        label="recurrent model, 80 % interval")
        for label, values in forecasts[name].items():
            style = dict(lw=2.0, color="tab:red") if label == "model" else dict(lw=1.0, alpha=0.8)
            ax.plot(steps[len(history):], values, label="recurrent model" if label == "model" else label, **style)
        ax.axvline(len(history) - 0.5, color="grey", lw=0.8, ls=":")
        ticks = np.linspace(start, len(steps) - 1, 6).astype(int)
        ax.set_xticks(ticks, [dates[t] for t in ticks])
        unit = "CO2 (ppmv)" if name == "co2" else "sunspot number" if name == "sunspots" else name
        ax.set(title=f"{name}: {len(truth)}-step forecast from {dates[len(history) - 1]}", ylabel=unit)
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
