"""A recording in, its syllable out: `rnnlab transcribe FILE` and the pyfunc model of the speech recogniser,
which reads base64-encoded audio (wav, ogg, flac) in the column "audio"."""

from __future__ import annotations

import base64
import binascii
import math

import pandas as pd
import torch
from mlflow.models import ModelSignature
from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

from rnnlab import RnnlabError
from rnnlab.serving.adapters import Adapter, strings
from rnnlab.tasks.speech.data import load_audio, log_mel, split_tokens, to_pinyin, to_zhuyin, well_formed

COLUMNS = ["phones", "tone", "zhuyin", "pinyin", "confidence"]


def transcribe(model, audio: bytes | str, name: str = "", beam: int | None = None) -> dict:
    """Audio bytes or a file -> the decoded phones and tone, the syllable in zhuyin and pinyin ("" where the
    tokens are not a syllable), and the confidence: the CTC probability of that output (the sum over its
    paths that the prefix beam search kept; with a beam of 1, the best path's alone)."""
    frames = torch.from_numpy(log_mel(load_audio(audio, name), model.n_mels)).to(model.device)
    model.eval()
    (ids, log_prob), = model.decode(frames.unsqueeze(0), torch.tensor([len(frames)]), beam or model.hparams.beam_width)
    phones, tone = split_tokens([model.tokens[t - 1] for t in ids])
    out = {"phones": " ".join(phones), "tone": tone or "", "zhuyin": "", "pinyin": "",
           "confidence": round(math.exp(log_prob), 4)}
    if tone is not None and well_formed(phones, tone):
        out.update(zhuyin=to_zhuyin(phones, tone), pinyin=to_pinyin(phones, tone))
    return out


class Recordings(Adapter):
    """base64 audio -> DataFrame with phones, tone, zhuyin, pinyin and confidence; param `beam_width` (0: the
    model's own)."""

    column = "audio"

    def predict(self, model, values: list, params: dict) -> pd.DataFrame:
        beam = int(params.get("beam_width") or 0)
        if beam < 0:
            raise RnnlabError(f"beam_width must be >= 1 (or 0: the model's), got {beam}")
        rows = []
        for i, value in enumerate(strings(values, "audio")):
            try:
                audio = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError) as e:
                raise RnnlabError(f"audio {i}: not base64-encoded ({e})") from e
            rows.append(transcribe(model, audio, f"audio {i}", beam or None))
        return pd.DataFrame(rows, columns=COLUMNS)

    def signature(self, hparams: dict) -> tuple[ModelSignature, pd.DataFrame]:
        inputs = Schema([ColSpec("string", "audio")])
        outputs = Schema([ColSpec("string", "phones"), ColSpec("string", "tone"), ColSpec("string", "zhuyin"),
                          ColSpec("string", "pinyin"), ColSpec("double", "confidence")])
        params = ParamSchema([ParamSpec("beam_width", "long", 0)])
        return ModelSignature(inputs, outputs, params), pd.DataFrame({"audio": [example_audio()]})


def example_audio() -> str:
    """A tenth of a second of a 220 Hz tone as base64 WAV: the signature's input example (not speech)."""
    import io

    import numpy as np
    import soundfile as sf

    t = np.arange(1600) / 16000
    buffer = io.BytesIO()
    sf.write(buffer, 0.3 * np.sin(2 * np.pi * 220 * t), 16000, format="WAV")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
