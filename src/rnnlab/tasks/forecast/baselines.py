"""The forecasting task's reference forecasts, scored beside the recurrent model in its evaluate stage.

Each takes the history (original units, every step before the forecast origin) and the horizon, and
returns that many values: naive (the last value), seasonal naive (the last season repeated), statsmodels'
SARIMAX and AutoReg fitted on the history.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from rnnlab import RnnlabError


def naive(history: np.ndarray, horizon: int) -> np.ndarray:
    """The last observed value at every step."""
    return np.full(horizon, float(history[-1]))


def seasonal_naive(history: np.ndarray, horizon: int, period: int) -> np.ndarray:
    """Step h repeats the value one (or more) whole periods earlier: the last observed season, over and over."""
    if not isinstance(period, int) or not 1 <= period <= len(history):
        raise RnnlabError(f"seasonal_naive: period must be an integer in 1..{len(history)}, got {period!r}")
    season = np.asarray(history[-period:], dtype=float)
    return np.array([season[h % period] for h in range(horizon)])


def sarimax(history: np.ndarray, horizon: int, order, seasonal_order=(0, 0, 0, 0), trend=None) -> np.ndarray:
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    model = SARIMAX(np.asarray(history, dtype=float), order=tuple(order), seasonal_order=tuple(seasonal_order),
                    trend=trend)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter; a failed fit shows as a poor score
        fit = model.fit(disp=False)
    return np.asarray(fit.forecast(horizon))


def autoreg(history: np.ndarray, horizon: int, lags: int, trend: str = "c") -> np.ndarray:
    from statsmodels.tsa.ar_model import AutoReg

    fit = AutoReg(np.asarray(history, dtype=float), lags=lags, trend=trend).fit()
    return np.asarray(fit.predict(start=len(history), end=len(history) + horizon - 1))


BASELINES: dict[str, Callable[..., np.ndarray]] = {
    "naive": naive, "seasonal_naive": seasonal_naive, "sarimax": sarimax, "autoreg": autoreg}


def baseline_forecast(name: str, history: np.ndarray, horizon: int, **kwargs) -> np.ndarray:
    if name not in BASELINES:
        raise RnnlabError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINES)}")
    try:
        return BASELINES[name](np.asarray(history, dtype=float), horizon, **kwargs)
    except TypeError as e:
        raise RnnlabError(f"baselines: {name}: {e}") from e


def errors(pred, truth) -> dict[str, float]:
    """Mean absolute error and root mean squared error, in the series' own units."""
    pred, truth = np.asarray(pred, dtype=float), np.asarray(truth, dtype=float)
    if pred.shape != truth.shape:
        raise RnnlabError(f"a forecast of {pred.shape} steps scored against {truth.shape}")
    diff = pred - truth
    return {"mae": round(float(np.abs(diff).mean()), 4), "rmse": round(float(np.sqrt((diff**2).mean())), 4)}


def coverage(lower, upper, truth) -> float:
    """The share of `truth` inside [lower, upper], step by step: of an 80 % interval, about 0.8 if well calibrated."""
    lower, upper, truth = (np.asarray(a, dtype=float) for a in (lower, upper, truth))
    if not lower.shape == upper.shape == truth.shape:
        raise RnnlabError(f"an interval of {lower.shape} / {upper.shape} steps scored against {truth.shape}")
    return round(float(((lower <= truth) & (truth <= upper)).mean()), 4)
