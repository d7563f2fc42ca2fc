"""`rnnlab predict TASK INPUT`: a trained classifier on raw input, from its checkpoint alone.

The checkpoint carries what turns raw input into tensors (the token vocabulary, the label names, the frame
standardisation), so predicting needs neither the processed data nor the config.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from rnnlab import RnnlabError
from rnnlab.checkpoint import load_checkpoint
from rnnlab.data import sentiment, surname
from rnnlab.data.padding import pad
from rnnlab.data.vocab import TokenVocab

TASKS = ("sentiment", "speaker", "surname")
# far beyond the data (snippets of at most 64 words, names of 30 characters, utterances of 29 frames):
# longer input is a mistake, not a sentence, a name or an utterance
MAX_STEPS = {"sentiment": 500, "surname": 100, "speaker": 500}


def encode_tokens(tokens: list[str], vocab: list[str]) -> torch.Tensor:
    # unknown words or characters become <unk>, as in training
    return torch.tensor(TokenVocab(tuple(vocab[len(TokenVocab.SPECIALS):])).encode(tokens))


def read_frames(path: str, channels: int) -> list[list[float]]:
    """A CSV file of one utterance: one frame per line, `channels` comma-separated numbers; a first line
    with no number at all is a header."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise RnnlabError(f"cannot read {path}: {e}") from e
    rows = [(n, line.split(",")) for n, line in enumerate(lines, 1) if line.strip()]
    if rows and not any(is_number(field) for field in rows[0][1]):
        rows = rows[1:]
    if not rows:
        raise RnnlabError(f"{path}: empty input, expected frames x {channels} comma-separated numbers")
    frames = []
    for n, fields in rows:
        if len(fields) != channels:
            raise RnnlabError(f"{path} line {n}: {len(fields)} values, expected {channels} channels per frame")
        bad = next((f.strip() for f in fields if not is_number(f)), None)
        if bad is not None:
            raise RnnlabError(f"{path} line {n}: value {bad!r} is not a finite number")
        frames.append([float(f) for f in fields])
    return frames


def is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def standardise(frames: list[list[float]], hparams) -> torch.Tensor:
    """Frames scaled with the training split's per-channel statistics, which the checkpoint carries."""
    scale = hparams["standardise"]
    return ((torch.tensor(frames) - torch.tensor(scale["mean"])) / torch.tensor(scale["std"])).float()


def check_length(task: str, steps: torch.Tensor) -> None:
    if len(steps) > MAX_STEPS[task]:
        unit = {"sentiment": "words", "surname": "characters", "speaker": "frames"}[task]
        raise RnnlabError(f"input of {len(steps)} {unit} is too long for {task}: at most {MAX_STEPS[task]}")


def encode(task: str, raw: str, hparams) -> torch.Tensor:
    """Raw input -> the (steps,) token ids or (steps, channels) standardised frames the model reads."""
    if task == "speaker":
        steps = standardise(read_frames(raw, len(hparams["standardise"]["mean"])), hparams)
    else:
        if not raw.strip():
            raise RnnlabError(f"empty input: give the {'text' if task == 'sentiment' else 'surname'} to classify")
        tokens = sentiment.tokenize(raw) if task == "sentiment" else list(surname.normalise(raw))
        if not tokens:
            raise RnnlabError(f"input {raw!r} holds no words")
        steps = encode_tokens(tokens, hparams["vocab"])
    check_length(task, steps)
    return steps


def probabilities(model, encoded: list[torch.Tensor], batch_size: int = 256) -> torch.Tensor:
    """Class probabilities (N, classes) of encoded inputs (each what `encode` returns), in their order."""
    out = []
    with torch.inference_mode():
        for start in range(0, len(encoded), batch_size):
            inputs, lengths = pad(encoded[start:start + batch_size])
            out.append(model.predict_step((inputs.to(model.device), lengths), 0).float().cpu())
    return torch.cat(out)


def top_labels(model, steps: torch.Tensor, top_k: int) -> list[tuple[str, float]]:
    """The `top_k` most probable labels of one encoded input, with their probabilities."""
    values, ids = probabilities(model, [steps])[0].topk(top_k)
    labels = model.hparams["labels"]
    return [(labels[i], float(p)) for p, i in zip(values.tolist(), ids.tolist())]


def predict(task: str, raw: str, checkpoint: str | Path, top_k: int) -> list[tuple[str, float]]:
    """The `top_k` most probable labels of one raw input, with their probabilities."""
    if task not in TASKS:
        raise RnnlabError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    model = load_checkpoint(checkpoint, task=task, kinds=("SequenceClassifier", "BagClassifier"))
    labels = model.hparams["labels"]
    if not 1 <= top_k <= len(labels):
        raise RnnlabError(f"--top-k must be between 1 and {len(labels)} (the {task} classes), got {top_k}")
    return top_labels(model, encode(task, raw, model.hparams), top_k)
