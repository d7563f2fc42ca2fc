"""The gradient lab: long-range memory on the adding problem, exploding gradients, and how far a gradient reaches.

Each experiment is a DVC stage (dvc.yaml, section "gradients") configured by params.yaml `gradients:`
and tracked in the MLflow experiment "gradients".
"""

from __future__ import annotations

import csv
import io
import math
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.loggers import MLFlowLogger
from torch.utils.data import DataLoader, TensorDataset

from rnnlab import RnnlabError
from rnnlab.core.diagnostics import GradientNormMonitor, gradient_profile, spectral_radius
from rnnlab.core.io import atomic_path, read_params, write_json, write_text
from rnnlab.core.tracking import ends_run, git_commit, tracking_uri
from rnnlab.core.trainer import quiet_trainer
from rnnlab.gradients.synthetic import adding_problem
from rnnlab.shapes.many_to_one import SequenceRegressor

EXPERIMENT = "gradients"
ADDING_DIR = Path("models/gradients")


def params(params_file: str | Path, name: str) -> dict:
    """params.yaml `gradients.<name>`."""
    return read_params(f"gradients.{name}", params_file)


def mlflow_logger(run_name: str, **tags: str) -> MLFlowLogger:
    tags = {"task": EXPERIMENT, "git_commit": git_commit(), **tags}
    return MLFlowLogger(experiment_name=EXPERIMENT, run_name=run_name, tracking_uri=tracking_uri(), tags=tags)


class CurveRecorder(L.Callback):
    """Per-step training loss and gradient norms, kept in memory for plots and metrics."""

    def __init__(self):
        self.rows = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        metrics = trainer.callback_metrics
        self.rows.append({"step": trainer.global_step, "loss": float(outputs["loss"]),
                          "grad_norm": float(metrics["grad_norm_before_clip"]),
                          "grad_norm_clipped": float(metrics["grad_norm_after_clip"])})


# --- adding problem ---------------------------------------------------------------------------------

def adding_model(cell: str, p: dict) -> SequenceRegressor:
    return SequenceRegressor(2, cell=cell, hidden_size=p["hidden_size"], lr=p["lr"][cell])


def adding(cell: str, length: int, p: dict, logger: MLFlowLogger | bool = False) -> tuple[SequenceRegressor, dict]:
    """Train one cell at one sequence length with the budget every cell gets.

    At most max_steps batches; a run stops early once validation MSE is below solved_mse (nothing left
    to learn) or has not improved by min_delta for `patience` validations (stuck on the trivial answer).
    """
    L.seed_everything(p["seed"], verbose=False)
    model = adding_model(cell, p)
    steps, batch = p["max_steps"], p["batch_size"]
    train = TensorDataset(*adding_problem(steps * batch, length, seed=p["seed"] + 1))
    val = TensorDataset(*adding_problem(p["eval_size"], length, seed=p["seed"] + 2))
    test = TensorDataset(*adding_problem(p["eval_size"], length, seed=p["seed"] + 3))
    stop = EarlyStopping("val_mse", stopping_threshold=p["solved_mse"], patience=p["patience"],
                         min_delta=p["min_delta"], check_on_train_epoch_end=False)
    trainer = quiet_trainer(max_steps=steps, val_check_interval=p["val_every"], num_sanity_val_steps=0,
                            gradient_clip_val=p["clip"], logger=logger, callbacks=[stop])
    trainer.fit(model, DataLoader(train, batch_size=batch), DataLoader(val, batch_size=len(val)))
    scores = trainer.test(model, DataLoader(test, batch_size=len(test)), verbose=False)[0]
    return model, {"test_mse": round(scores["test_mse"], 6), "steps": trainer.global_step}


def adding_job(cell: str, length: int, p: dict, out: Path) -> dict:
    """One (cell, length) run in a worker process: its own MLflow run, its model saved under `out`."""
    logger = mlflow_logger(f"adding-{cell}-T{length}", cell=cell, experiment="adding", dvc_stage=f"adding@{cell}")
    logger.log_hyperparams({**p, "lr": p["lr"][cell], "cell": cell, "length": length})
    with ends_run(logger.experiment, logger.run_id):  # type: ignore[arg-type]  # .experiment has started the run
        model, result = adding(cell, length, p, logger)
    torch.save({"hyper_parameters": dict(model.hparams), "state_dict": model.state_dict()}, out / f"T{length}.pt")
    print(f"adding {cell} T={length}: test MSE {result['test_mse']:.4f} after {result['steps']} steps", flush=True)
    return result


def run_adding(cell: str, params_file: str | Path = "params.yaml") -> dict:
    """DVC stage adding@<cell>: every length for one cell -> models/gradients/adding_<cell>/."""
    p = params(params_file, "adding")
    if cell not in p["lr"]:
        raise RnnlabError(f"{params_file}: no gradients.adding.lr.{cell}; cells with a rate: {', '.join(p['lr'])}")
    # create (and migrate) the store and experiment here: two workers doing it at once race on SQLite
    MLFlowLogger(experiment_name=EXPERIMENT, tracking_uri=tracking_uri()).experiment_id  # noqa: B018
    lengths = sorted(p["lengths"], reverse=True)  # longest first: the slowest job should not start last
    with atomic_path(ADDING_DIR / f"adding_{cell}", is_dir=True) as out:
        if p["workers"] == 1:
            done = {n: adding_job(cell, n, p, out) for n in lengths}
        else:
            # small matrices gain little from a second thread, a second worker process gains 2x
            with ProcessPoolExecutor(p["workers"], mp_context=multiprocessing.get_context("spawn"),
                                     initializer=torch.set_num_threads, initargs=(1,)) as pool:
                jobs = {n: pool.submit(adding_job, cell, n, p, out) for n in lengths}
                done = {n: job.result() for n, job in jobs.items()}
        results = {f"T{n}": done[n] for n in p["lengths"]}
        write_json(out / "results.json", results)
    return results


def load_adding_model(cell: str, length: int) -> SequenceRegressor:
    path = ADDING_DIR / f"adding_{cell}" / f"T{length}.pt"
    if not path.is_file():
        raise RnnlabError(f"{path} not found: run `dvc repro adding@{cell}` with T={length} among the lengths")
    ckpt = torch.load(path, weights_only=True)
    model = SequenceRegressor(**ckpt["hyper_parameters"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()


# --- exploding gradients ----------------------------------------------------------------------------

def scale_recurrent_weights(model: SequenceRegressor, radius: float) -> None:
    with torch.no_grad():
        model.rnn.weight_hh_l0.mul_(radius / spectral_radius(model.rnn)["h"])  # type: ignore[operator]  # nn.Module types it Tensor | Module


def exploding(clip: float | None, steps: int = 300, seq_len: int = 50, hidden_size: int = 64,
              radius: float = 1.5, lr: float = 1e-2, seed: int = 0, logger: MLFlowLogger | bool = False) -> dict:
    """A relu RNN whose recurrent matrix has spectral radius `radius` > 1, trained by SGD on the adding problem.

    Without clipping the gradient norm grows until the loss is inf/NaN: the run is stopped and reported
    as diverged (it does not raise). With clipping the same run trains.
    """
    L.seed_everything(seed, verbose=False)
    model = SequenceRegressor(2, cell="rnn", nonlinearity="relu", hidden_size=hidden_size, lr=lr, optimizer="sgd")
    scale_recurrent_weights(model, radius)
    x, y = adding_problem(steps * 64, seq_len, seed=seed + 1)
    recorder = CurveRecorder()
    trainer = quiet_trainer(max_steps=steps, gradient_clip_val=clip, logger=logger, log_every_n_steps=1,
                            limit_val_batches=0, callbacks=[GradientNormMonitor(every_n_steps=1), recorder])
    diverged = None
    try:
        trainer.fit(model, DataLoader(TensorDataset(x, y), batch_size=64))
    except FloatingPointError as e:
        diverged = str(e)
    return {"clip": clip, "diverged": diverged is not None, "reason": diverged, "steps_trained": len(recorder.rows),
            "curve": recorder.rows}


def run_exploding(params_file: str | Path = "params.yaml", out_csv: str | Path = "metrics/gradients_exploding.csv",
                  out_json: str | Path = ADDING_DIR / "exploding.json") -> dict:
    """DVC stage `exploding`: the same relu RNN without and with clipping; loss and gradient-norm curves."""
    p = params(params_file, "exploding")
    runs = {}
    for clip in (None, p["clip"]):
        name = "no_clip" if clip is None else f"clip_{clip:g}"
        logger = mlflow_logger(f"exploding-{name}", cell="rnn", experiment="exploding", dvc_stage="exploding")
        logger.log_hyperparams({**p, "clip": clip})
        with ends_run(logger.experiment, logger.run_id):  # type: ignore[arg-type]  # .experiment has started the run
            run = exploding(clip, steps=p["steps"], seq_len=p["length"], hidden_size=p["hidden_size"],
                            radius=p["radius"], lr=p["lr"], seed=p["seed"], logger=logger)
        if run["diverged"]:
            # diverging is this run's expected outcome, but it is still a failed training run
            logger.experiment.set_tag(logger.run_id, "diverged", run["reason"])
            logger.experiment.set_terminated(logger.run_id, "FAILED")
        runs[name] = run
        outcome = (f"diverged ({run['reason']})" if run["diverged"]
                   else f"trained {run['steps_trained']} steps, final loss {run['curve'][-1]['loss']:.4f}")
        print(f"exploding, {name}: {outcome}")
    write_text(out_csv, exploding_csv(runs))
    summary = {name: {"diverged": r["diverged"], "steps_trained": r["steps_trained"],
                      # the step that diverged may have an infinite norm, which JSON cannot hold
                      "max_grad_norm": round(max(g for row in r["curve"] if math.isfinite(g := row["grad_norm"])), 4),
                      "final_loss": round(r["curve"][-1]["loss"], 6)} for name, r in runs.items()}
    write_json(out_json, summary)
    return summary


def exploding_csv(runs: dict) -> str:
    """Wide table, one row per step: loss and gradient norm of each run (blank once a run has stopped)."""
    names = list(runs)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["step", *(f"loss_{n}" for n in names), *(f"grad_norm_{n}" for n in names)])
    for step in range(max(len(r["curve"]) for r in runs.values())):
        rows = [runs[n]["curve"][step] if step < len(runs[n]["curve"]) else None for n in names]
        writer.writerow([step, *(f"{r['loss']:.6g}" if r else "" for r in rows),
                         *(f"{r['grad_norm']:.6g}" if r else "" for r in rows)])
    return out.getvalue()


# --- gradient profile -------------------------------------------------------------------------------

def profiles(cells: list[str], length: int, p: dict) -> dict:
    """‖∂L/∂h_t‖ over an adding-problem sequence, per cell, freshly initialised and trained at `length`.

    L is the trained readout (the model's linear head) applied to the last state.
    """
    x, _ = adding_problem(64, length, seed=p["seed"] + 4)
    out = {}
    for cell in cells:
        torch.manual_seed(p["seed"])
        for when, model in (("init", adding_model(cell, p)), ("trained", load_adding_model(cell, length))):
            out[f"{cell}_{when}"] = {"norms": gradient_profile(model.rnn, x, model.head.weight[0].detach()),
                                     "spectral_radius": spectral_radius(model.rnn)}
    return out
