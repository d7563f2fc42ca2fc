"""The captioner's three views on the VALIDATION split only (never test), for comparing settings over seeds:

    python benchmarks/caption_val.py MODEL_DIR [MODEL_DIR ...]

Each MODEL_DIR holds model.ckpt and baseline.ckpt as `rnnlab train task=caption` writes them. Prints, per folder
and as mean +- sd over them, the BLEU-4 of the model's captions (its own beam width and length penalty) on every
validation image (full) and on those without "skin tone" (no_skin_tone), and of the Google-only twin's captions
(its own decoding) on the Twitter images (cross_style), with greedy decoding's beside them; a folder without
baseline.ckpt (a run with `baseline=null`, the captioner alone) has no cross_style view. The scores are those
of rnnlab.tasks.caption.evaluate, which decodes test as well."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import torch

from rnnlab.tasks import load_checkpoint
from rnnlab.tasks.caption import baselines
from rnnlab.tasks.caption.data import images, load_splits
from rnnlab.tasks.caption.evaluate import decode, rows_of, view_scores

# the nearest neighbour's validation BLEU (conf/experiment/caption.yaml)
NEIGHBOUR = {"full": 60.3, "no_skin_tone": 9.5, "cross_style": 27.9}


def views(folder: Path, processed: Path = Path("data/processed/caption")) -> dict:
    part = load_splits(processed)["validation"]
    pictures = torch.from_numpy(images(part))
    refs = list(part["caption"])
    model = load_checkpoint(folder / "model.ckpt", task="caption")
    d = decode(model, pictures, 256)
    out = {"full": view_scores(d, refs, rows_of(part)),
           "no_skin_tone": view_scores(d, refs, rows_of(part, skin_tone=False))}
    if not (folder / "baseline.ckpt").exists():  # the captioner trained alone
        return out
    twin = load_checkpoint(folder / "baseline.ckpt", task="caption")
    _, scored, _ = baselines.VIEWS["cross_style"]
    rows = rows_of(part, scored)
    other = decode(twin, pictures[rows], 256)
    out["cross_style"] = view_scores(other, [refs[i] for i in rows], list(range(len(rows))))
    return out


def main(folders: list[str]) -> None:
    torch.set_num_threads(1)
    found = {}
    for folder in folders:
        found[folder] = {view: {k: round(v, 2) for k, v in s.items() if k in ("bleu", "bleu_greedy")}
                         for view, s in views(Path(folder)).items()}
        print(folder, json.dumps(found[folder]), flush=True)
    for view, neighbour in NEIGHBOUR.items():
        for key in ("bleu", "bleu_greedy"):
            values = [f[view][key] for f in found.values() if view in f]
            if not values:
                continue
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            print(f"{view} {key}: {statistics.fmean(values):.2f} +- {sd:.2f} (neighbour {neighbour}) {values}")


if __name__ == "__main__":
    main(sys.argv[1:])
