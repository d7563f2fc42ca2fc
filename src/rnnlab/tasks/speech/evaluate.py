"""Score the speech recogniser beside its window baseline on unheard syllables: phone error rate (the edit
distance over phone and tone tokens, torchmetrics), syllables exactly right, tones right; prefix beam search
and greedy decoding; per speaker. Writes reports/speech/errors.csv and one figure per drawn test recording
(its log-mel spectrogram above the CTC posteriors), both logged to the model's MLflow run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from torchmetrics.functional.text import word_error_rate

from rnnlab.core.io import atomic_path, write_text
from rnnlab.evaluation import table
from rnnlab.tasks.speech.data import HOP, SAMPLE_RATE, TOKENS, split_tokens


def transcripts(model, dm, split: str, beam: int) -> list[list[str]]:
    """The decoded tokens of every recording of the split, in its order."""
    out: list[list[str]] = []
    for frames, lengths, _, _ in dm.loader(split):
        out += [[model.tokens[t - 1] for t in ids] for ids, _ in model.decode(frames.to(model.device), lengths, beam)]
    return out


def scores(hyps: list[list[str]], refs: list[list[str]]) -> dict:
    """Phone error rate over the tokens, syllables whose tokens are all right, tones right."""
    tones = [split_tokens(h)[1] == split_tokens(r)[1] for h, r in zip(hyps, refs)]
    return {"per": round(float(word_error_rate([" ".join(h) for h in hyps], [" ".join(r) for r in refs])), 4),
            "syllable_accuracy": round(float(np.mean([h == r for h, r in zip(hyps, refs)])), 4),
            "tone_accuracy": round(float(np.mean(tones)), 4), "recordings": len(refs)}


def split_scores(model, dm, split: str, beam: int) -> tuple[dict, list[list[str]]]:
    part = dm.splits[split]
    refs = [[dm.stats["tokens"][t - 1] for t in row] for row in part["targets"]]
    hyps = transcripts(model, dm, split, beam)
    out = {**scores(hyps, refs), "beam_width": beam}
    out["greedy"] = scores(transcripts(model, dm, split, 1) if beam > 1 else hyps, refs)
    for speaker in sorted(set(part["speaker"])):
        rows = [i for i, s in enumerate(part["speaker"]) if s == speaker]
        out[f"speaker_{speaker}"] = scores([hyps[i] for i in rows], [refs[i] for i in rows])
    return out, hyps


def score(models: dict, dm, cfg: DictConfig, runs: dict, client) -> dict:
    if dm.stats.get("unit") == "characters":  # the English experiment (experiment=speech_en)
        from rnnlab.tasks.speech import english

        return english.score(models, dm, cfg, runs, client)
    model, baseline = models["model"], models["baseline"]
    out: dict = {}
    hyps = {}
    for split, key in (("test", "test"), ("validation", "val")):
        out[key], hyps[split] = split_scores(model, dm, split, model.hparams.beam_width)
    # a baseline's scores are its test scores (as every task's), its validation ones beside them
    window = {**split_scores(baseline, dm, "test", baseline.hparams.beam_width)[0],
              "val": split_scores(baseline, dm, "validation", baseline.hparams.beam_width)[0]}
    out["baseline"] = {"window": window}
    reports = Path(cfg.paths.reports_dir)
    errors = errors_table(dm.splits["test"], hyps["test"])
    write_text(reports / "errors.csv", errors)
    figures = [posterior_figure(model, dm.splits["test"][i], reports / "figures" / f"speech_{i}.png")
               for i in drawn(len(dm.splits["test"]), int(cfg.evaluate.figures))]
    if runs.get("model"):
        client.log_artifact(runs["model"], str(reports / "errors.csv"))
        for path in figures:
            client.log_artifact(runs["model"], str(path), "figures")
    return out


def drawn(n: int, k: int) -> list[int]:
    """k recordings evenly spaced over the split: fixed, whatever the model."""
    return sorted(set(np.linspace(0, n - 1, k).round().astype(int).tolist())) if k > 0 and n else []


def errors_table(part, hyps: list[list[str]]) -> str:
    """Every test recording the model got wrong: its syllable, speaker, the reference and decoded tokens."""
    rows = []
    for row, hyp in zip(part, hyps):
        ref = [TOKENS[t - 1] for t in row["targets"]]
        if hyp != ref:
            rows.append([row["label"], row["syllable"], row["speaker"], " ".join(ref), " ".join(hyp)])
    return table(["label", "syllable", "speaker", "reference", "decoded"], rows)


def posterior_figure(model, row: dict, path: Path) -> Path:
    """The recording's log-mel spectrogram above its CTC frame posteriors (a line per token that wins a frame;
    the blank shaded), titled with the reference and the greedy decoding."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = torch.tensor(row["frames"])
    probs = model.posteriors(frames.to(model.device)).cpu().numpy()
    step = model.stack * HOP / SAMPLE_RATE  # seconds per CTC step
    ref = " ".join(TOKENS[t - 1] for t in row["targets"])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5), sharex=True, height_ratios=(3, 2))
    top.imshow(frames.numpy().T, origin="lower", aspect="auto", cmap="magma",
               extent=(0, len(frames) * HOP / SAMPLE_RATE, 0, frames.shape[1]))
    top.set_ylabel("mel band")
    # the ASCII id, not the zhuyin label: matplotlib's default font has no bopomofo
    top.set_title(f"{row['syllable']} (speaker {row['speaker']}): reference {ref}")
    times = (np.arange(len(probs)) + 0.5) * step
    bottom.fill_between(times, probs[:, 0], color="0.85", label="blank", step="mid")
    for token in sorted(set(probs.argmax(1)) - {0}):
        bottom.plot(times, probs[:, token], label=model.tokens[token - 1], drawstyle="steps-mid")
    bottom.set_ylim(0, 1.02)
    bottom.set_xlabel("seconds")
    bottom.set_ylabel("posterior")
    bottom.legend(loc="upper right", fontsize=8, ncol=4)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return path
