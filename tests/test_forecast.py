"""The forecasting task on the statsmodels slice: parsing, monthly aggregation, splits and scaling, windows,
the forecaster's horizon, the baselines on toy series, fast_dev_run from the real conf/, train + evaluate."""

import csv
import json
import zipfile

import mlflow
import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from rnnlab import RnnlabError
from rnnlab.cli import main
from rnnlab.core.trainer import make_trainer
from rnnlab.core.validate import check_config
from rnnlab.pipeline.train import build, train
from rnnlab.shapes import classical
from rnnlab.shapes.forecasting import Forecaster
from rnnlab.tasks import load_checkpoint
from rnnlab.tasks.forecast import data as forecast
from rnnlab.tasks.forecast.baselines import autoreg, baseline_forecast, coverage, errors, naive, sarimax, seasonal_naive
from rnnlab.tasks.forecast.data import ForecastDataModule

from conftest import SLICES, compose, run_task

SLICE = SLICES["forecast"][0]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("forecast")
    run_task(root, "forecast")
    return root


@pytest.fixture(scope="module")
def series(project):
    return json.loads((project / "data" / "processed" / "forecast" / "series.json").read_text())


@pytest.fixture(scope="module")
def trained(project):
    """The smoke budget, trained and evaluated (test=true) by the real train(); its output folder."""
    out = project / "out"
    train(compose("task=forecast", "model=gru", "experiment=smoke_forecast", f"paths.data_dir={project}/data",
                  f"paths.output_dir={out}", f"logger.tracking_uri=sqlite:///{project}/mlflow.db"))
    return out


def test_read_archive_parses_both_series_with_gaps():
    ds = forecast.read_archive(SLICE)
    co2, sun = ds["co2"], ds["sunspots"]
    assert len(co2) == 927 and len(sun) == 309
    assert (co2[0]["date"], co2[0]["value"]) == ("1958-03-29", 316.1)
    assert co2["value"].count(None) > 0  # the weekly gaps are kept as gaps
    assert (sun[0]["date"], sun[0]["value"], sun[-1]["date"], sun[-1]["value"]) == ("1700", 5.0, "2008", 2.9)


@pytest.mark.parametrize("text, message", [
    ("date,co2\n19580329,316.1\n19580405,abc\n", "line 3: value 'abc' is not a number"),
    ("date,co2\n19580329,nan\n", "line 2: value 'nan' is not a number"),
    ("day,co2\n19580329,316.1\n", "expected the header date,co2"),
    ("date,co2\n1958-03,316.1\n", "line 2: date '1958-03' is neither YYYYMMDD nor a year"),
    ("date,co2\n19580405,1\n19580329,2\n", "dates are not strictly increasing"),
    ("date,co2\n", "holds no data lines"),
])
def test_parse_errors_name_the_line(text, message):
    with pytest.raises(RnnlabError, match=message):
        forecast.parse_csv(text, ("date", "co2"), "co2.csv")


def test_a_wheel_without_the_series_is_an_error(tmp_path):
    bad = tmp_path / "bad.whl"
    with zipfile.ZipFile(bad, "w") as whl:
        whl.writestr(forecast.MEMBERS["co2"], "date,co2\n19580329,316.1\n")
    with pytest.raises(RnnlabError, match="sunspots.csv"):
        forecast.read_archive(bad)


def test_monthly_co2_and_splits(series, project):
    co2, sun = series["co2"], series["sunspots"]
    assert co2["frequency"] == "monthly" and co2["dates"][:2] == ["1958-03", "1958-04"]
    assert co2["dates"][-1] == "1975-12" and len(co2["values"]) == 214  # 1958-03 .. 1975-12
    # 1958-06, 1958-10, 1964-02..04 have no reading: interpolated between their neighbours
    may, june, july = (co2["values"][co2["dates"].index(d)] for d in ("1958-05", "1958-06", "1958-07"))
    assert june == pytest.approx((may + july) / 2)
    stats = json.loads((project / "data" / "processed" / "forecast" / "stats.json").read_text())
    assert stats["interpolated"] == {"co2": 5, "sunspots": 0}
    for s, n in ((co2, 214), (sun, 309)):
        splits = s["splits"]
        assert splits["test"] == round(0.1 * n) and splits["validation"] == round(0.1 * n)
        assert sum(splits.values()) == n
    assert sun["dates"][-31:][0] == "1978"  # test = the last 10 %: 1978..2008


def test_scaling_comes_from_train_only(project, series):
    """Changing every validation and test value leaves the scaling (and the train part) as it was."""
    raw = forecast.load_raw(project / "data" / "raw" / "forecast")
    sun = raw["sunspots"].to_dict()
    n_train = series["sunspots"]["splits"]["train"]
    sun["value"] = sun["value"][:n_train] + [1000.0] * (len(sun["value"]) - n_train)
    from datasets import Dataset, DatasetDict

    changed = project / "changed"
    DatasetDict({"co2": raw["co2"], "sunspots": Dataset.from_dict(sun)}).save_to_disk(str(changed / "raw"))
    forecast.preprocess(changed / "raw", changed / "processed", validation=0.1, test=0.1)
    again = json.loads((changed / "processed" / "series.json").read_text())["sunspots"]
    assert again["scale"] == series["sunspots"]["scale"]
    train = np.array(series["sunspots"]["values"][:n_train])
    assert again["scale"]["mean"] == pytest.approx(train.mean()) and again["scale"]["std"] == pytest.approx(train.std())


def test_split_fractions_are_checked(project):
    with pytest.raises(RnnlabError, match="split.test must be in"):
        forecast.preprocess(project / "data" / "raw" / "forecast", project / "x", validation=0.1, test=0.0)
    with pytest.raises(RnnlabError, match="co2_frequency must be monthly or weekly"):
        forecast.preprocess(project / "data" / "raw" / "forecast", project / "x", 0.1, 0.1, co2_frequency="daily")


def test_windows_stay_inside_train(project, series):
    dm = ForecastDataModule(str(project / "data" / "processed" / "forecast"), window=24)
    inputs, ids, _, targets, masks = dm.data["train"].tensors
    assert dm.horizons == [series["co2"]["splits"]["test"], series["sunspots"]["splits"]["test"]]
    for i, name in enumerate(dm.names):
        n_train, h = series[name]["splits"]["train"], dm.horizons[i]
        rows = ids == i
        assert int(rows.sum()) == n_train - 24 - h + 1
        assert bool(masks[rows][:, :h].all()) and not bool(masks[rows][:, h:].any())
        # the last window's last target is the last train value: nothing of validation or test
        assert float(targets[rows][-1, h - 1]) == pytest.approx(float(dm.scaled(name)[n_train - 1]), abs=1e-5)
    # validation forecasts from every validation step, never past the validation stretch into test
    _, vids, _, _, vmasks = dm.data["validation"].tensors
    for i, name in enumerate(dm.names):
        n_val = series[name]["splits"]["validation"]
        assert vmasks[vids == i].sum(1).tolist() == list(range(n_val, 0, -1))
    with pytest.raises(RnnlabError, match="lower data.window"):
        ForecastDataModule(str(project / "data" / "processed" / "forecast"), window=200)


def test_forecast_horizon_length(project):
    dm = ForecastDataModule(str(project / "data" / "processed" / "forecast"), window=24)
    torch.manual_seed(0)
    model = Forecaster(**dm.model_kwargs(), hidden_size=8, embedding_dim=2).eval()
    inputs, ids, base, _, _ = dm.data["train"][:5]
    assert model(inputs, ids, base).shape == (5, dm.horizon, 3)
    for name, h in zip(dm.names, dm.horizons):
        out = model.forecast(name, dm.history(name, "test"))
        assert len(out) == h == len(dm.truth(name, "test")) and all(np.isfinite(out))
    with pytest.raises(RnnlabError, match="unknown series 'ozone'"):
        model.forecast("ozone", [1.0] * 30)
    with pytest.raises(RnnlabError, match="3 values of history, the model reads 24"):
        model.forecast("co2", [1.0, 2.0, 3.0])
    with pytest.raises(RnnlabError, match="not a finite number"):
        model.forecast("co2", [1.0] * 23 + [float("nan")])


def test_rolling_origins_read_only_the_past_and_stay_inside_the_test_period(project):
    from types import SimpleNamespace

    from rnnlab.tasks.forecast.evaluate import origins, rolling

    assert origins(10, 4, 4) == [0, 2, 4, 6] and origins(10, 10, 3) == [0] and origins(7, 2, 2) == [0, 5]
    with pytest.raises(RnnlabError, match="rolling_origin: a horizon of 11 steps and 5 origins do not fit a test "
                                          "period of 10 steps"):
        origins(10, 11, 5)
    dm = ForecastDataModule(str(project / "data" / "processed" / "forecast"), window=24)
    seen = []

    class Recorder:
        """Forecasts the last value it was shown (every quantile); remembers how much history that was."""

        hparams = SimpleNamespace(quantiles=[0.1, 0.5, 0.9])

        def quantile_forecast(self, name, history):
            seen.append(len(history))
            return np.full((3, len(dm.truth(name, "test"))), float(history[-1]))

    n, start = len(dm.truth("co2", "test")), len(dm.history("co2", "test"))
    scores = rolling(dm, Recorder(), "co2", {"naive": {}}, SimpleNamespace(origins=3, horizon=0.5))
    horizon = round(n / 2)
    assert seen == [start + o for o in origins(n, horizon, 3)]
    # the recorder forecasts exactly what the naive baseline refitted from the same origin does
    assert {k: v for k, v in scores["model"].items() if k != "coverage_80"} == scores["naive"]
    assert scores["model"]["origins"] == 3 and scores["model"]["horizon"] == horizon
    # inside the validation stretch: origins from its start, nothing of test read
    seen.clear()
    val = rolling(dm, Recorder(), "co2", {}, SimpleNamespace(origins=3, horizon=0.5), "validation")
    n_val, val_start = len(dm.truth("co2", "validation")), len(dm.history("co2", "validation"))
    assert seen == [val_start + o for o in origins(n_val, round(n_val / 2), 3)] and max(seen) < start
    assert val["model"]["origins"] == 3


def test_baselines_on_toy_series():
    history = np.array([1.0, 2.0, 3.0, 10.0, 20.0, 30.0])
    assert naive(history, 4).tolist() == [30.0] * 4
    assert seasonal_naive(history, 7, period=3).tolist() == [10, 20, 30, 10, 20, 30, 10]
    with pytest.raises(RnnlabError, match="period must be an integer"):
        seasonal_naive(history, 2, period=7)
    assert errors([1, 2, 3], [1, 4, 1]) == {"mae": round(4 / 3, 4), "rmse": round(np.sqrt(8 / 3), 4)}
    # an AR(1) process around 10 without noise: AutoReg recovers it
    ar = [15.0]
    for _ in range(60):
        ar.append(10 + 0.5 * (ar[-1] - 10))
    ar = np.array(ar) + np.tile([0.01, -0.01], 31)[:61]
    forecast_ar = autoreg(ar, 5, lags=1)
    assert len(forecast_ar) == 5 and np.allclose(forecast_ar, 10, atol=0.1)
    # a seasonal random walk with a trend: SARIMAX gives the horizon's length, near the continued pattern
    t = np.arange(72)
    seasonal = 0.1 * t + np.sin(2 * np.pi * t / 12)
    out = sarimax(seasonal, 12, order=[0, 1, 0], seasonal_order=[0, 1, 0, 12])
    truth = 0.1 * np.arange(72, 84) + np.sin(2 * np.pi * np.arange(72, 84) / 12)
    assert len(out) == 12 and np.allclose(out, truth, atol=1e-6)
    with pytest.raises(RnnlabError, match="unknown baseline 'prophet'"):
        baseline_forecast("prophet", history, 3)
    with pytest.raises(RnnlabError, match="baselines: naive"):
        baseline_forecast("naive", history, 3, period=2)


def test_coverage_counts_the_truth_inside_the_interval():
    # inside, above, below, on the upper bound (inside), on the lower bound (inside)
    assert coverage([0, 0, 0, 0, 0], [1, 1, 1, 1, 1], [0.5, 2.0, -1.0, 1.0, 0.0]) == 0.6
    assert coverage([0.0], [0.0], [0.0]) == 1.0
    with pytest.raises(RnnlabError, match="interval of"):
        coverage([0, 0], [1, 1], [0.5])


SPECS = {"co2": {"sarimax": {"order": [1, 1, 1], "seasonal_order": [0, 1, 1, 12]}}, "sunspots": {"autoreg": {"lags": 9}}}


def test_classical_paths_from_one_filter_equal_each_origins_own_forecast(series):
    """One Kalman pass over the series, rolled forward from each origin's state, is the forecast of a filter
    run on that origin's history alone (and AutoReg's, and the last value's)."""
    for name, spec in (*SPECS.items(), ("sunspots", {})):
        values = np.array(series[name]["values"])
        params = classical.fit(spec, values[:150])
        many = classical.paths(spec, params, values, [60, 150, 200], 12)
        for row, origin in zip(many, (60, 150, 200)):
            assert np.allclose(row, classical.path(spec, params, values[:origin], 12), atol=1e-8)
    assert classical.path({}, [], np.array([1.0, 4.0]), 3).tolist() == [4.0] * 3
    with pytest.raises(RnnlabError, match="expected one of sarimax, autoreg"):
        classical.fit({"prophet": {}}, values)


def test_with_a_zero_correction_the_forecast_is_the_classical_path(project):
    """The classical models are fitted on train only; the network adds a correction to their path, so a head
    that outputs zero gives exactly the classical forecast as the median, the other quantiles on either side."""
    dm = ForecastDataModule(str(project / "data" / "processed" / "forecast"), window=24, classical=SPECS)
    for name in dm.names:
        n_train = dm.series[name]["splits"]["train"]
        assert dm.classical[name]["params"] == classical.fit(SPECS[name], np.array(dm.series[name]["values"][:n_train]))
    model = Forecaster(**dm.model_kwargs(), members=2, hidden_size=8, embedding_dim=2).eval()
    for member in model.members:
        torch.nn.init.zeros_(member.head.weight)
        torch.nn.init.zeros_(member.head.bias)
    for name, h in zip(dm.names, dm.horizons):
        history = dm.history(name, "test")
        expected = classical.path(SPECS[name], dm.classical[name]["params"], history, h)
        lower, median, upper = model.quantile_forecast(name, history)
        assert np.allclose(median, expected, atol=1e-3 * dm.series[name]["scale"]["std"])
        assert np.allclose(model.forecast(name, history), median) and (lower < median).all() and (median < upper).all()
    # the pinball loss on a known case: the truth on the classical path, the outer quantiles ln 2 off it
    inputs, ids, base, _, mask = dm.data["train"][:]
    losses, mae = model._loss((inputs, ids, base, base, mask))  # one per member
    assert [loss.item() for loss in losses] == pytest.approx([0.2 * np.log(2) / 3] * len(model.members), rel=1e-5)
    assert mae.item() == pytest.approx(0, abs=1e-6)
    # the training windows carry the same paths, scaled: from the last window's origin
    _, ids, base, _, _ = dm.data["train"].tensors
    values, scale = np.array(dm.series["sunspots"]["values"]), dm.series["sunspots"]["scale"]
    origin = dm.series["sunspots"]["splits"]["train"] - dm.horizons[1]
    expected = classical.path(SPECS["sunspots"], dm.classical["sunspots"]["params"], values[:origin], dm.horizons[1])
    assert np.allclose(base[ids == 1][-1, :dm.horizons[1]], (expected - scale["mean"]) / scale["std"], atol=1e-5)


def test_quantiles_are_ordered_whatever_the_weights(project):
    dm = ForecastDataModule(str(project / "data" / "processed" / "forecast"), window=24)
    torch.manual_seed(0)
    model = Forecaster(**dm.model_kwargs(), quantiles=[0.05, 0.1, 0.5, 0.9, 0.95], members=3, hidden_size=8,
                       embedding_dim=2)
    with torch.no_grad():
        for member in model.members:
            member.head.weight.normal_(0, 10.0)
            member.head.bias.normal_(0, 10.0)
    inputs, ids, base, target, mask = dm.data["train"][:]
    each, out = model.each_member(inputs, ids, base), model(inputs, ids, base)
    assert each.shape == (3, len(inputs), dm.horizon, 5) and torch.allclose(out, each.mean(0))
    # every member's quantiles are in order (softplus steps: a very negative raw one underflows to 0), so their
    # mean's are; the raw head outputs are not
    assert bool((each.diff(dim=-1) >= 0).all()) and bool((out.diff(dim=-1) >= 0).all())
    assert not bool((model.members[0].head(torch.randn(50, 8)).diff(dim=-1) >= 0).all())


def test_each_member_trains_on_its_own_loss_with_its_own_clipping(project):
    """The ensemble as the classifiers' (rnnlab.core.ensemble): the training loss sums the members' own pinball
    losses, so member k's gradient is that of its loss alone, and clipping limits each member's norm."""
    dm = ForecastDataModule(str(project / "data" / "processed" / "forecast"), window=24)
    torch.manual_seed(0)
    model = Forecaster(**dm.model_kwargs(), members=3, hidden_size=8, embedding_dim=2)
    model.log = lambda *args, **kwargs: None  # no Trainer to log to
    batch = dm.data["train"][:64]
    model.training_step(batch, 0).backward()
    for k, member in enumerate(model.members):
        params = list(member.parameters())
        for p, g in zip(params, torch.autograd.grad(model._loss(batch)[0][k], params)):
            torch.testing.assert_close(p.grad, g)
    model.configure_gradient_clipping(None, gradient_clip_val=1e-3, gradient_clip_algorithm="norm")
    for member in model.members:
        norm = torch.stack([p.grad.norm() for p in member.parameters()]).norm().item()
        assert norm == pytest.approx(1e-3, rel=1e-4)
    assert {id(p) for p in model.parameters()} == {id(p) for m in model.members for p in m.parameters()}


@pytest.mark.parametrize("levels, ok", [([0.1, 0.5, 0.9], True), ([0.05, 0.1, 0.5, 0.9, 0.95], True),
                                         ([0.9, 0.5, 0.1], False), ([0.2, 0.5, 0.8], False), ([0.1, 0.5, 1.0, 0.9], False)])
def test_quantile_levels_are_checked_in_the_config(levels, ok):
    cfg = compose("task=forecast", "model=gru", f"module.quantiles=[{','.join(map(str, levels))}]")
    if ok:
        check_config(cfg)
    else:
        with pytest.raises(RnnlabError, match="module.quantiles=.* must be increasing numbers in"):
            check_config(cfg)


@pytest.mark.parametrize("model", ["rnn", "lstm", "gru"])
def test_fast_dev_run_from_the_real_config(project, tmp_path, model):
    cfg = compose("task=forecast", f"model={model}", "experiment=smoke_forecast", "trainer.fast_dev_run=true",
                  f"paths.data_dir={project}/data", f"paths.output_dir={tmp_path}")
    dm = instantiate(cfg.data)
    module = build(cfg, dm)["model"]
    trainer = make_trainer(cfg.trainer, logger=False, callbacks=[])
    trainer.fit(module, datamodule=dm)
    assert trainer.state.finished and type(module.members[0].encoder).__name__ == model.upper()


def test_train_and_evaluate_write_metrics_plot_and_mlflow(trained, project, series):
    metrics = json.loads((trained / "metrics" / "forecast.json").read_text())
    assert set(metrics) == {"test", "val", "baseline"}
    for split in ("test", "val"):
        assert set(metrics[split]) == {"co2", "sunspots"}
        assert all(v["rmse"] >= v["mae"] > 0 for v in metrics[split].values())
        assert all(set(v) == {"mae", "rmse", "coverage_80", "rolling"} for v in metrics[split].values())
    assert set(metrics["baseline"]["co2"]) == {"seasonal_naive", "sarimax"}
    assert set(metrics["baseline"]["sunspots"]) == {"naive", "autoreg"}
    # every forecast is also scored from 5 origins inside the test period and inside the validation stretch
    # (conf/task/forecast.yaml); the model's with the coverage of its 80 % interval
    for name in ("co2", "sunspots"):
        for key, scored in ((k, s) for s in (metrics["test"][name], metrics["val"][name],
                                             *metrics["baseline"][name].values()) for k in ("rolling", "val_rolling")):
            if key not in scored:
                continue
            rolled = scored[key]
            assert rolled["origins"] == 5 and rolled["horizon"] == round(series[name]["splits"]["test"] / 2)
            assert rolled["rmse_mean"] >= rolled["mae_mean"] > 0 and rolled["mae_std"] >= 0
        assert all("val_rolling" in b for b in metrics["baseline"][name].values())
        for split in ("test", "val"):
            assert 0 <= metrics[split][name]["coverage_80"] <= 1 and 0 <= metrics[split][name]["rolling"]["coverage_80"] <= 1
    # the naive baseline, recomputed by hand: the last value before the test horizon, repeated
    sun = np.array(series["sunspots"]["values"])
    h = series["sunspots"]["splits"]["test"]
    assert metrics["baseline"]["sunspots"]["naive"]["mae"] == pytest.approx(np.abs(sun[-h:] - sun[-h - 1]).mean(),
                                                                           abs=1e-4)
    png = trained / "reports" / "figures" / "forecast.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(trained / "reports" / "forecast_predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == series["co2"]["splits"]["test"] + h
    assert {"truth", "model", "seasonal_naive", "sarimax", "naive", "autoreg"} <= set(rows[0])
    assert (trained / "metrics" / "forecast_curves.csv").read_text().startswith("step,train_loss,val_loss,val_mae\n")
    with open(trained / "reports" / "forecast_peers.csv") as f:
        took = list(csv.DictReader(f))
    assert [(r["peer"], r["series"]) for r in took] == [("seasonal_naive", "co2"), ("sarimax", "co2"),
                                                        ("naive", "sunspots"), ("autoreg", "sunspots")]
    assert all(float(r["seconds"]) >= 0 for r in took)

    client = mlflow.MlflowClient(f"sqlite:///{project}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("rnnlab-forecast").experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["role"] == "model" and run.data.tags["cell"] == "gru"
    assert run.data.metrics["test_co2_mae"] == metrics["test"]["co2"]["mae"]
    assert "baseline_sunspots_autoreg_rmse" in run.data.metrics and "baseline_co2_sarimax_seconds" in run.data.metrics
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"forecast_predictions.csv", "figures"}

    model = load_checkpoint(trained / "model" / "model.ckpt", task="forecast")
    assert isinstance(model, Forecaster) and model.hparams.series == ["co2", "sunspots"]


def test_same_seed_same_forecast(trained, project, tmp_path):
    again = tmp_path / "again"
    train(compose("task=forecast", "model=gru", "experiment=smoke_forecast", f"paths.data_dir={project}/data",
                  f"paths.output_dir={again}", f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db"))
    assert (again / "metrics" / "forecast.json").read_text() == (trained / "metrics" / "forecast.json").read_text()


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    return exit_info.value.code, capsys.readouterr().err


def test_bad_inputs_are_one_line_errors_with_exit_2(trained, project, tmp_path, capsys):
    # the store the model was tracked in (a new one would log its creation on stderr)
    common = ["task=forecast", "experiment=smoke_forecast", f"paths.data_dir={project}/data",
              f"logger.tracking_uri=sqlite:///{project}/mlflow.db",
              f"paths.output_dir={tmp_path}/out", f"hydra.run.dir={tmp_path}/hydra"]
    code, err = run_cli(["evaluate", *common, f"paths.model_dir={tmp_path}/none"], capsys)
    assert code == 2 and f"checkpoint not found: {tmp_path}/none/model.ckpt" in err and len(err.splitlines()) == 1
    # a checkpoint of another window than the data's: the data changed since training
    code, err = run_cli(["evaluate", *common, f"paths.model_dir={trained}/model", "data.window=30"], capsys)
    assert code == 2 and "its window differs" in err and len(err.splitlines()) == 1
    code, err = run_cli(["evaluate", *common, f"paths.model_dir={trained}/model", "+baselines.ozone={naive: {}}"],
                        capsys)
    assert code == 2 and "baselines: unknown series ozone" in err and len(err.splitlines()) == 1
    code, err = run_cli(["train", *common, f"paths.data_dir={tmp_path}/nodata"], capsys)
    # (Lightning may log its seed on stderr first: the error itself is the one last line)
    assert code == 2 and err.splitlines()[-1].startswith("rnnlab: error: cannot read")
    assert "(run `rnnlab preprocess forecast` or dvc repro)" in err.splitlines()[-1]
