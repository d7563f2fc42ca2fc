"""K-fold cross-validation of a labelled task's recurrent model, for choosing settings without the test split.

    python benchmarks/cv.py --tag aug-jitter --seeds 0 1 -- data.augment.jitter=0.1
    python benchmarks/cv.py --tag aug-jitter --seeds 0 1 2 --report-only     # the stored runs, ensembles too
    python benchmarks/cv.py --task surname --folds 0 --tag bigru --seeds 0 1 2 -- module.bidirectional=true

`--folds 0`: no folds, the task's own validation split held out (where it is large enough to tell settings apart,
as surname's 1 709 names); the runs are stored as OUT/TAG/val-seed{S}.npz.

Each (fold, seed) composes conf/ as `rnnlab train task=TASK experiment=TASK data.folds=K data.fold=I seed=S`
with the overrides after `--`, builds the data and the model as rnnlab.pipeline.train does (same seeding, so the
same model as the `model` role of that command), fits it with cfg.trainer, no logger, keeping the best checkpoint
by cfg.monitor, and stores its class probabilities on the held-out fold in OUT/TAG/fold{I}-seed{S}.npz. The
report: mean held-out accuracy over the folds for each seed, its mean over seeds, and the accuracy of the
ensembles that average the probabilities of the first 2, 3, ... seeds. The test split is never read.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]


def fit_fold(overrides: list[str]) -> tuple[np.ndarray, np.ndarray, float]:
    """One fold, one seed: (held-out probabilities (N, classes), held-out labels, seconds of fitting)."""
    import lightning as L
    from hydra.utils import instantiate
    from lightning.pytorch.callbacks import ModelCheckpoint

    from rnnlab.core.config import compose
    from rnnlab.core.trainer import make_trainer
    from rnnlab.pipeline.train import build
    from rnnlab.shapes.classification import probabilities

    cfg = compose(*overrides, conf=ROOT / "conf")
    L.seed_everything(cfg.seed, workers=True)
    dm = instantiate(cfg.data)
    model = build(cfg, dm)["model"]  # the baseline too, as train() builds it: the same draws
    L.seed_everything(cfg.seed, workers=True)
    with tempfile.TemporaryDirectory() as tmp:
        best = ModelCheckpoint(dirpath=tmp, filename="best", monitor=cfg.monitor, mode=cfg.monitor_mode,
                               save_top_k=1)
        trainer = make_trainer(cfg.trainer, logger=False, callbacks=[best], enable_progress_bar=False,
                               enable_model_summary=False)
        start = time.perf_counter()
        trainer.fit(model, datamodule=dm)
        seconds = time.perf_counter() - start
        model.load_state_dict(torch.load(best.best_model_path, weights_only=True)["state_dict"])
    model.eval()
    rows = dm.data["validation"]
    probs = probabilities(model, [x for x, _ in rows]).numpy()
    return probs, np.array([y for _, y in rows]), seconds


def held_out(folds: int) -> list[int | None]:
    """The held-out parts: folds 0..K-1, or None alone for the task's own validation split (folds 0)."""
    if folds < 0 or folds == 1:
        raise SystemExit(f"--folds must be 0 (the validation split) or at least 2, got {folds}")
    return [None] if folds == 0 else list(range(folds))


def run_path(out: Path, fold: int | None, seed: int) -> Path:
    return out / (f"val-seed{seed}.npz" if fold is None else f"fold{fold}-seed{seed}.npz")


def fold_overrides(task: str, folds: int, fold: int | None, seed: int) -> list[str]:
    split = [] if fold is None else [f"data.folds={folds}", f"data.fold={fold}"]
    return [f"task={task}", f"experiment={task}", *split, f"seed={seed}"]


def report(out: Path, folds: int, seeds: list[int]) -> None:
    parts = held_out(folds)
    runs = {(f, s): np.load(run_path(out, f, s)) for f in parts for s in seeds if run_path(out, f, s).exists()}
    done = [s for s in seeds if all((f, s) in runs for f in parts)]
    if not done:
        print(f"{out.name}: no seed has all {len(parts)} held-out parts yet")
        return
    per_seed = []
    for s in done:
        accs = [float((runs[f, s]["probs"].argmax(1) == runs[f, s]["labels"]).mean()) for f in parts]
        secs = np.mean([float(runs[f, s]["seconds"]) for f in parts])
        per_seed.append(np.mean(accs))
        print(f"{out.name} seed {s}: cv acc {np.mean(accs):.4f} (folds {' '.join(f'{a:.3f}' for a in accs)}; "
              f"fit {secs:.1f} s)")
    print(f"{out.name}: {len(done)} seed(s), cv acc {np.mean(per_seed):.4f} +- {np.std(per_seed):.4f} (sd over seeds)")
    for n in range(2, len(done) + 1):
        accs = [float((np.mean([runs[f, s]["probs"] for s in done[:n]], 0).argmax(1) == runs[f, done[0]]["labels"])
                      .mean()) for f in parts]
        print(f"{out.name}: ensemble of {n} seeds (mean probabilities), cv acc {np.mean(accs):.4f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="speaker")
    parser.add_argument("--tag", required=True, help="the setting's name: its runs are stored in OUT/TAG")
    parser.add_argument("--folds", type=int, default=5, help="0: the task's own validation split, no folds")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "cv")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the setting (after --)")
    args = parser.parse_args(argv)
    out = args.out / args.tag
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(int(os.environ.get("CV_THREADS", "1")))
    if not args.report_only:
        (out / "overrides.txt").write_text(" ".join(args.overrides) + "\n")
        for seed in args.seeds:
            for fold in held_out(args.folds):
                path = run_path(out, fold, seed)
                if path.exists():
                    continue
                probs, labels, seconds = fit_fold([*fold_overrides(args.task, args.folds, fold, seed),
                                                   *args.overrides])
                np.savez(path, probs=probs, labels=labels, seconds=seconds)
                print(f"{args.tag} fold {fold} seed {seed}: acc {(probs.argmax(1) == labels).mean():.4f} "
                      f"({seconds:.1f} s)", file=sys.stderr, flush=True)
    report(out, args.folds, args.seeds)


if __name__ == "__main__":
    main()
