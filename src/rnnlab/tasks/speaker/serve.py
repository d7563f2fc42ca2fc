"""An utterance in, its speaker out: `rnnlab predict speaker FILE.csv` (one frame per line) and the pyfunc
model's column "frames" (one utterance per row, frames x channels numbers). The frames are standardised with
the training split's per-channel statistics, which the checkpoint carries."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
from mlflow.types.schema import Array, ColSpec, Schema

from rnnlab import RnnlabError
from rnnlab.serving.adapters import Labels, is_number


class Utterances(Labels):
    column = "frames"
    # far beyond the data (utterances of 7-29 frames)
    max_steps, unit, what = 500, "frames", "utterance"

    def read_argument(self, argument: str, hparams) -> list[list[float]]:
        return read_frames(argument, channels(hparams))

    def encode_value(self, raw, i: int, hparams) -> torch.Tensor:
        return self.encode(check_frames(raw, channels(hparams), i), hparams)

    def encode(self, raw, hparams) -> torch.Tensor:
        return self.check_length(standardise(raw, hparams))

    def input_schema(self) -> Schema:
        return Schema([ColSpec(Array(Array("double")), "frames")])

    def example_input(self, hparams: dict) -> pd.DataFrame:
        # a short utterance of the checkpoint's channel count, at the training data's mean
        mean = [float(m) for m in hparams["standardise"]["mean"]]
        return pd.DataFrame({"frames": [[mean, mean, mean]]})


def channels(hparams) -> int:
    return len(hparams["standardise"]["mean"])


def standardise(frames: list[list[float]], hparams) -> torch.Tensor:
    """Frames scaled with the training split's per-channel statistics, which the checkpoint carries."""
    scale = hparams["standardise"]
    return ((torch.tensor(frames) - torch.tensor(scale["mean"])) / torch.tensor(scale["std"])).float()


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


def check_frames(utterance, channels: int, i: int) -> list[list[float]]:
    """One utterance as frames x `channels` finite floats, or an error naming the frame and the problem."""
    if hasattr(utterance, "tolist"):
        utterance = list(utterance)
    if not isinstance(utterance, (list, tuple)) or not len(utterance):
        raise RnnlabError(f"utterance {i}: empty input, expected frames x {channels} numbers")
    frames = []
    for n, frame in enumerate(utterance, 1):
        if isinstance(frame, (str, bytes)) or not hasattr(frame, "__len__"):
            raise RnnlabError(f"utterance {i} frame {n}: {frame!r} is not a list of {channels} numbers")
        if len(frame) != channels:
            raise RnnlabError(f"utterance {i} frame {n}: {len(frame)} values, expected {channels} channels "
                              "per frame")
        bad = next((value for value in frame if not is_number(value)), None)
        if bad is not None:
            raise RnnlabError(f"utterance {i} frame {n}: value {bad!r} is not a finite number")
        frames.append([float(value) for value in frame])
    return frames
