"""Forecasting (many-to-many time series): monthly Mauna Loa CO2 and yearly sunspots, the last 10 % of each series
forecast in one go by one sequence-to-sequence model, beside statistical baselines."""

from rnnlab.tasks import Task, register

register(Task(
    name="forecast",
    shape="many-to-many",
    summary="CO2 and sunspot series -> their next 10 % in one go",
    modules=("rnnlab.shapes.forecasting:Forecaster",),
    metric="test_co2_mae", higher_is_better=False, val_metric="val_mae", val_higher_is_better=False,
    fetch="pypi_wheel",
    baselines=("seasonal_naive", "sarimax", "naive", "autoreg"),
))
