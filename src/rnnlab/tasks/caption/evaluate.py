"""Score a trained captioner: BLEU-4 (sacrebleu), ROUGE-L (rouge-score's tokenizer, via torchmetrics) and the
exact-match rate of its beam-search captions (and of greedy decoding), in the three views of baselines.VIEWS,
beside the two baselines computed in the same stage (the best constant caption, the nearest training image):

- full: every test image; no_skin_tone: the test images whose caption has no "skin tone" (easy words);
- cross_style: the same captioner trained on the Google images only (the train stage's second model, role
  "baseline"), scored on the Twitter images of test: a style it never saw, as the nearest neighbour is fitted on
  the Google images only. (The main model on the Twitter half of test is reported too, as `twitter`: it saw the
  Twitter drawings of other emoji in training, so it is not across styles.)

Reports (the stage's reports dir, logged to the model's MLflow run): caption_samples.txt (every test image's
true and generated caption), figures/caption_contact_sheet.png and figures/caption_attention.png (where the
decoder looked for each word)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from rnnlab.core.io import atomic_path, write_text
from rnnlab.tasks.caption import baselines
from rnnlab.tasks.caption.data import SIZE

log = logging.getLogger(__name__)


def decode(model, images: torch.Tensor, batch_size: int) -> dict[str, list[str]]:
    """Every image's caption by beam search (the model's width) and by greedy decoding (batched)."""
    model.eval()
    t0 = time.perf_counter()
    greedy = [model.caption_of(ids) for start in range(0, len(images), batch_size)
              for ids in model.greedy(images[start:start + batch_size].to(model.device))[0]]
    t1 = time.perf_counter()
    beam = [model.caption_of(model.beam_search(image.to(model.device))[0][0]) for image in images]
    log.info("captioned %d images greedily in %.1f s, by beam search in %.1f s", len(images), t1 - t0,
             time.perf_counter() - t1)
    return {"beam": beam, "greedy": greedy}


def view_scores(decoded: dict[str, list[str]], refs: list[str], rows: list[int]) -> dict:
    """The beam captions' scores on `rows`, with greedy decoding's BLEU and exact matches beside them."""
    refs = [refs[i] for i in rows]
    greedy = baselines.score([decoded["greedy"][i] for i in rows], refs)
    return {**baselines.score([decoded["beam"][i] for i in rows], refs), "bleu_greedy": greedy["bleu"],
            "exact_greedy": greedy["exact"]}


def rows_of(part, style: str | None = None, skin_tone: bool = True) -> list[int]:
    return [i for i, (s, tone) in enumerate(zip(part["style"], part["skin_tone"]))
            if (style is None or s == style) and (skin_tone or not tone)]


def split_images(dm, split: str) -> torch.Tensor:
    return torch.stack([row[0] for row in dm.rows[split]])


def score(models: dict, dm, cfg: DictConfig, runs: dict, client) -> dict:
    model, batch = models["model"], dm.eval_batch_size
    scores: dict = {}
    decoded = {}
    for split, key in (("test", "test"), ("validation", "val")):
        part = dm.splits[split]
        decoded[split] = d = decode(model, split_images(dm, split), batch)
        refs = list(part["caption"])
        scores[key] = {"full": view_scores(d, refs, rows_of(part)),
                       "no_skin_tone": view_scores(d, refs, rows_of(part, skin_tone=False)),
                       "twitter": view_scores(d, refs, rows_of(part, "twitter"))}
        if "baseline" in models:  # the Google-only captioner on the Twitter images
            fit, scored, _ = baselines.VIEWS["cross_style"]
            rows = rows_of(part, scored)
            other = decode(models["baseline"], split_images(dm, split)[rows], batch)
            scores[key]["cross_style"] = view_scores(other, [refs[i] for i in rows], list(range(len(rows))))
            scores[key]["cross_style"]["beam_width"] = models["baseline"].hparams.beam_width  # its own decoding
        scores[key]["beam_width"] = model.hparams.beam_width
    found = baselines.run(dm.processed_dir, log.info)
    constant = {view: s.pop("caption") for view, s in found["constant"].items()}
    scores["baseline"] = found
    reports = Path(cfg.paths.reports_dir)
    write_reports(model, dm, decoded["test"], constant, reports, cfg.evaluate)
    if runs.get("model"):
        for path in sorted(reports.rglob("caption_*")):
            client.log_artifact(runs["model"], str(path), "figures" if path.suffix == ".png" else None)
    return scores


def write_reports(model, dm, decoded: dict, constant: dict, reports: Path, ev) -> None:
    part = dm.splits["test"]
    lines = [f"# test images: true caption, then beam search (width {model.hparams.beam_width}) and greedy; the "
             f"constant baseline's caption is {constant['full']!r}\n"]
    for i, (caption, style, codepoints) in enumerate(zip(part["caption"], part["style"], part["codepoints"])):
        lines.append(f"{codepoints} {style}\n  true:   {caption}\n  beam:   {decoded['beam'][i]}\n"
                     f"  greedy: {decoded['greedy'][i]}\n")
    write_text(reports / "caption_samples.txt", "\n".join(lines))
    shown = evenly(len(part), int(ev.sheet))
    images = split_images(dm, "test")
    contact_sheet(images[shown].numpy(), [part[i]["caption"] for i in shown], [decoded["beam"][i] for i in shown],
                  reports / "figures" / "caption_contact_sheet.png")
    chosen = evenly(len(part), int(ev.attention))
    attention_figure(model, images[chosen], reports / "figures" / "caption_attention.png")


def evenly(n: int, k: int) -> list[int]:
    """`k` rows evenly spaced over `n` (all of them if fewer): fixed, whatever the model."""
    if k >= n:
        return list(range(n))
    return sorted(set(np.linspace(0, n - 1, k).round().astype(int).tolist()))


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    pyplot().close(fig)


def on_white(image: np.ndarray) -> np.ndarray:
    """RGBA uint8 -> RGB float on a white background, as the emoji are shown."""
    x = image.astype(np.float64) / 255
    return x[..., :3] * x[..., 3:] + (1 - x[..., 3:])


def contact_sheet(images: np.ndarray, truths: list[str], generated: list[str], path: Path, columns: int = 6) -> None:
    """Each image with its true caption (black) and the generated one (green when exact, red otherwise)."""
    plt = pyplot()
    rows = max(1, -(-len(images) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, truth, caption in zip(axes.flat, images, truths, generated):
        ax.imshow(on_white(image))
        ax.set_title(f"{wrap(truth)}\n{wrap(caption)}", fontsize=7, color="darkgreen" if truth == caption else "firebrick")
    fig.suptitle("Test images: true caption (first line) and beam-search caption (green: exact)", fontsize=10)
    fig.tight_layout()
    save(fig, path)


def wrap(text: str, width: int = 30) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)) or "(empty)"


def attention_figure(model, images: torch.Tensor, path: Path) -> None:
    """One row per image: the image, then for each greedy word (and </s>) the attention over the grid, upsampled
    to the image and laid over it."""
    plt = pyplot()
    ids, _, weights = model.greedy(images.to(model.device))
    words = [[model.hparams.vocab[i] for i in row] + ["</s>"] for row in ids]
    columns = 1 + max(map(len, words))
    fig, axes = plt.subplots(len(images), columns, figsize=(1.6 * columns, 1.8 * len(images)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for r, (image, row, w) in enumerate(zip(images.numpy(), words, weights)):
        picture = on_white(image)
        axes[r, 0].imshow(picture)
        side = int(round(w.size(-1) ** 0.5))
        for c, (word, alpha) in enumerate(zip(row, w), 1):
            axes[r, c].imshow(picture)
            axes[r, c].imshow(alpha.view(side, side).numpy(), cmap="magma", alpha=0.6, extent=(0, SIZE, SIZE, 0),
                              interpolation="bilinear")
            axes[r, c].set_title(word, fontsize=8)
    fig.suptitle("Where the decoder looks for each word (greedy caption)", fontsize=10)
    fig.tight_layout()
    save(fig, path)
