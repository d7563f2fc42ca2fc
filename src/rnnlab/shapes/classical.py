"""Classical forecasts with fixed parameters, the path a recurrent forecaster corrects (rnnlab.shapes.forecasting).

A spec is `{"sarimax": {order, seasonal_order, trend}}` or `{"autoreg": {lags, trend}}` (the kwargs of
rnnlab.tasks.forecast.baselines), or `{}`: no classical model, the path is the last value repeated. `fit` estimates
the parameters once, on the train part; `path` re-conditions them on any history (a Kalman filter for SARIMAX,
the lag recursion for AutoReg) without refitting. That is cheap enough to run from every training origin, and it
makes the forecast a function of the parameters kept in the checkpoint and of the history alone.
"""

from __future__ import annotations

import warnings

import numpy as np

from rnnlab import RnnlabError

KINDS = ("sarimax", "autoreg")


def _model(spec: dict, history: np.ndarray):
    if not spec:
        return None
    if len(spec) != 1 or next(iter(spec)) not in KINDS:
        raise RnnlabError(f"classical model: expected one of {', '.join(KINDS)} with its settings, got {spec!r}")
    (kind, kwargs), = spec.items()
    history = np.asarray(history, dtype=float)
    try:
        if kind == "sarimax":
            from statsmodels.tsa.statespace.sarimax import SARIMAX

            return SARIMAX(history, order=tuple(kwargs["order"]),
                           seasonal_order=tuple(kwargs.get("seasonal_order") or (0, 0, 0, 0)),
                           trend=kwargs.get("trend"))
        from statsmodels.tsa.ar_model import AutoReg

        return AutoReg(history, lags=kwargs["lags"], trend=kwargs.get("trend", "c"))
    except (KeyError, TypeError, ValueError) as e:
        raise RnnlabError(f"classical model {spec!r}: {e}") from e


def fit(spec: dict, train: np.ndarray) -> list[float]:
    """The parameters of `spec` estimated on `train` (plain floats: they go into the checkpoint)."""
    model = _model(spec, train)
    if model is None:
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter, as for the baselines
        result = model.fit(disp=False) if spec.get("sarimax") is not None else model.fit()
    return [float(p) for p in np.asarray(result.params)]


def path(spec: dict, params: list[float], history: np.ndarray, horizon: int) -> np.ndarray:
    """The next `horizon` values after `history` by `spec` with `params` held fixed (the last value repeated
    when `spec` is empty)."""
    history = np.asarray(history, dtype=float)
    return paths(spec, params, history, [len(history)], horizon)[0]


def paths(spec: dict, params: list[float], values: np.ndarray, origins: list[int], horizon: int) -> np.ndarray:
    """(len(origins), horizon): row i the forecast made after `values[:origins[i]]`, exactly as `path` of that
    history. SARIMAX runs its Kalman filter once over `values` (filtering is causal: the state predicted for
    step t has read only the steps before it) and rolls each origin's state forward."""
    values = np.asarray(values, dtype=float)
    if not origins or min(origins) < 1 or max(origins) > len(values):
        raise RnnlabError(f"classical forecast origins must lie in 1..{len(values)}, got {origins!r}")
    model = _model(spec, values[:max(origins)])
    if model is None:
        return np.repeat(values[np.asarray(origins) - 1, None], horizon, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if "autoreg" in spec:  # its lag recursion, from each origin, is cheap
            fixed = np.asarray(params)
            return np.stack([_model(spec, values[:t]).predict(fixed, start=t, end=t + horizon - 1) for t in origins])
        run = model.filter(np.asarray(params)).filter_results
    if not run.time_invariant:
        raise RnnlabError(f"classical model {spec!r}: a time-varying state space (a trend in t) is not supported")
    design, transition = run.design[..., 0], run.transition[..., 0]
    state, out = run.predicted_state[:, origins], []
    for _ in range(horizon):
        out.append(run.obs_intercept[:, 0, None] + design @ state)
        state = run.state_intercept[:, 0, None] + transition @ state
    return np.concatenate(out).T
