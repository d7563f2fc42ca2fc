"""DVC stage gradients_report: the gradient lab's metrics, DVC plot tables, PNG figures and markdown table."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on CI or servers
import matplotlib.pyplot as plt  # noqa: E402

from rnnlab import RnnlabError  # noqa: E402
from rnnlab.core.io import atomic_path, write_json, write_text  # noqa: E402
from rnnlab.gradients.lab import ADDING_DIR, mlflow_logger, params, profiles  # noqa: E402
from rnnlab.gradients.synthetic import adding_problem  # noqa: E402

FIGURES = Path("reports/figures")


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise RnnlabError(f"cannot read {path}: {e}; run its stage first (dvc repro)") from e


def table(header: list[str], rows: list[list]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def save_figure(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def adding_figure(adding: dict, baseline: dict, lengths: list[int], solved: float):
    fig, ax = plt.subplots(figsize=(6, 4))
    for cell, results in adding.items():
        ax.plot(lengths, [results[f"T{n}"]["test_mse"] for n in lengths], marker="o", label=cell)
    ax.plot(lengths, [baseline[f"T{n}"] for n in lengths], "k--", label="predict 1.0 (trivial)")
    ax.axhline(solved, color="grey", lw=0.8, ls=":", label=f"early stop (validation < {solved:g})")
    ax.set(xscale="log", yscale="log", xlabel="sequence length T", ylabel="test MSE",
           title="Adding problem: test MSE after the same budget")
    ax.set_xticks(lengths, [str(n) for n in lengths])
    ax.set_xticks([], minor=True)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


def profile_figure(prof: dict, length: int):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, when in zip(axes, ("init", "trained")):
        for key, value in prof.items():
            if key.endswith(when):
                ax.plot(range(1, length + 1), value["norms"], label=key.rsplit("_", 1)[0])
        ax.set(yscale="log", xlabel="time step t (loss at t = T)",
               title=f"{'freshly initialised' if when == 'init' else f'trained on the adding problem, T={length}'}")
        ax.legend()
    axes[0].set_ylabel("‖∂L/∂h_t‖")
    return fig


def exploding_figure(curves_csv: Path, summary: dict):
    rows = list(csv.DictReader(curves_csv.open()))
    fig, (loss_ax, norm_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for name, run in summary.items():
        steps = [int(r["step"]) for r in rows if r[f"loss_{name}"]]
        label = f"{name}: diverged at step {run['steps_trained']}" if run["diverged"] else name
        loss_ax.plot(steps, [float(r[f"loss_{name}"]) for r in rows if r[f"loss_{name}"]], label=label)
        norm_ax.plot(steps, [float(r[f"grad_norm_{name}"]) for r in rows if r[f"grad_norm_{name}"]], label=label)
    # the diverging loss reaches 1e30 and more: keep the axis on the scale of the runs that trained
    trained = [float(r[f"loss_{n}"]) for n, run in summary.items() if not run["diverged"]
               for r in rows if r[f"loss_{n}"]]
    if trained:
        loss_ax.set_ylim(min(trained) / 2, max(trained) * 100)
    loss_ax.set(yscale="log", xlabel="step", ylabel="training MSE", title="Loss")
    norm_ax.set(yscale="log", xlabel="step", ylabel="global gradient norm before clipping", title="Gradient norm")
    loss_ax.legend()
    norm_ax.legend()
    return fig


def run_report(params_file: str | Path = "params.yaml") -> dict:
    p = params(params_file, "adding")
    length = params(params_file, "profile")["length"]
    if length not in p["lengths"]:
        raise RnnlabError(f"{params_file}: gradients.profile.length {length} is not one of gradients.adding.lengths")
    adding = {cell: read_json(ADDING_DIR / f"adding_{cell}" / "results.json") for cell in p["cells"]}
    baseline = {}
    for n in p["lengths"]:
        _, y = adding_problem(p["eval_size"], n, seed=p["seed"] + 3)  # the test set each run was scored on
        baseline[f"T{n}"] = round(float(((y - 1.0) ** 2).mean()), 6)
    exploding = read_json(ADDING_DIR / "exploding.json")
    prof = profiles(p["cells"], length, p)

    metrics: dict[str, Any] = {"adding": adding, "adding_baseline_mse": baseline, "exploding": exploding,
               "profile": {key: {"first_over_last": float(f"{v['norms'][0] / v['norms'][-1]:.3e}"),
                                 "spectral_radius": {g: round(r, 4) for g, r in v["spectral_radius"].items()}}
                           for key, v in prof.items()}}
    write_json("metrics/gradients.json", metrics)
    write_text("metrics/gradients_adding.csv",
               table(["T", *p["cells"], "baseline"],
                     [[n, *(adding[c][f"T{n}"]["test_mse"] for c in p["cells"]), baseline[f"T{n}"]]
                      for n in p["lengths"]]))
    # log10, since the norms span twenty orders of magnitude and DVC's templates have linear axes
    write_text("metrics/gradients_profile.csv",
               table(["step", *(f"log10_{k}" for k in prof)],
                     [[t + 1, *(f"{math.log10(max(v['norms'][t], 1e-300)):.4f}" for v in prof.values())]
                      for t in range(length)]))
    write_text("reports/gradients.md", markdown(adding, baseline, exploding, metrics["profile"], p, length))

    figures = {"adding_mse.png": adding_figure(adding, baseline, p["lengths"], p["solved_mse"]),
               "gradient_profile.png": profile_figure(prof, length),
               "exploding.png": exploding_figure(Path("metrics/gradients_exploding.csv"), exploding)}
    for name, fig in figures.items():
        save_figure(fig, FIGURES / name)

    logger = mlflow_logger("gradients-report", experiment="report", dvc_stage="gradients_report")
    client, run_id = logger.experiment, logger.run_id
    for name in figures:
        client.log_artifact(run_id, str(FIGURES / name), "figures")
    client.log_artifact(run_id, "metrics/gradients.json")
    client.log_artifact(run_id, "reports/gradients.md")
    logger.finalize("success")
    print(markdown(adding, baseline, exploding, metrics["profile"], p, length))
    return metrics


def markdown(adding: dict, baseline: dict, exploding: dict, profile: dict, p: dict, length: int) -> str:
    cells = list(adding)
    lines = ["# Gradient lab", "",
             f"Adding problem, test MSE on {p['eval_size']} fresh sequences after at most {p['max_steps']} steps "
             f"of batch {p['batch_size']} (hidden {p['hidden_size']}; a run stops early once validation MSE is "
             f"below {p['solved_mse']:g} or stops improving; steps used in brackets).", "",
             "| T | " + " | ".join(cells) + " | predict 1.0 |", "|---|" + "---|" * (len(cells) + 1)]
    for n in p["lengths"]:
        cells_md = [f"{adding[c][f'T{n}']['test_mse']:.4f} ({adding[c][f'T{n}']['steps']})" for c in cells]
        lines.append(f"| {n} | " + " | ".join(cells_md) + f" | {baseline[f'T{n}']:.4f} |")
    lines += ["", "Exploding gradients (relu RNN, SGD, recurrent spectral radius above 1):", "",
              "| run | diverged | steps trained | max gradient norm | final loss |", "|---|---|---|---|---|"]
    for name, r in exploding.items():
        lines.append(f"| {name} | {r['diverged']} | {r['steps_trained']} | {r['max_grad_norm']:.4g} "
                     f"| {r['final_loss']:.4g} |")
    lines += ["", f"Gradient profile over T={length} steps: ‖∂L/∂h_1‖ / ‖∂L/∂h_T‖, and the recurrent "
              "spectral radius per gate:",
              "", "| model | first / last | spectral radius |", "|---|---|---|"]
    for key, v in profile.items():
        radius = ", ".join(f"{g} {r:.2f}" for g, r in v["spectral_radius"].items())
        lines.append(f"| {key.replace('_', ' ')} | {v['first_over_last']:.1e} | {radius} |")
    return "\n".join(lines) + "\n"
