"""A package description in, its synopsis out: `rnnlab summarize TEXT` (or --file) and the pyfunc model of the
summarizer, which reads the text in the column "text".

Input handling: empty or whitespace-only text is an error; text longer than the model reads (its
`max_source_tokens` SentencePiece pieces) is cut to that many and said so (a note on stderr, the column
"truncated" of the pyfunc output); characters the vocabulary lacks are read as the unknown piece and never
written (text of nothing else is an error); a file that is not UTF-8 is an error naming the file and byte.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

from rnnlab import RnnlabError
from rnnlab.serving.adapters import Adapter, strings

EXAMPLE = ("GNU Wget is a free software package for retrieving files using HTTP, HTTPS and FTP, the most widely-used "
           "Internet protocols. It is a non-interactive commandline tool, so it may easily be called from scripts.")


def read_file(path: str | Path) -> str:
    """The text of a file, which must be UTF-8."""
    try:
        return Path(path).read_bytes().decode("utf-8")
    except FileNotFoundError as e:
        raise RnnlabError(f"{path}: file not found") from e
    except IsADirectoryError as e:
        raise RnnlabError(f"{path} is a directory, not a text file") from e
    except UnicodeDecodeError as e:
        raise RnnlabError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start})") from e


def summarize(model, text: str, beam: int | None = None) -> dict:
    """text -> {"synopsis", "pieces" (of the whole text), "read" (the pieces the model read), "truncated"}."""
    ids, pieces = model.read_text(text)
    model.eval()
    synopsis = model.decode_ids(model.beam_search(ids, beam))
    return {"synopsis": synopsis, "pieces": pieces, "read": len(ids), "truncated": pieces > len(ids)}


def truncation_note(out: dict) -> str:
    return (f"note: the text has {out['pieces']} subword pieces; the model reads the first {out['read']} "
            f"(max_source_tokens), the rest was ignored")


class Descriptions(Adapter):
    """descriptions -> DataFrame with "synopsis" and "truncated" (the text was longer than the model reads and
    only its start was summarized); param `beam_width` (0: the model's own)."""

    def predict(self, model, values: list, params: dict) -> pd.DataFrame:
        beam = int(params.get("beam_width") or 0)
        if beam < 0:
            raise RnnlabError(f"beam_width must be >= 1 (or 0: the model's), got {beam}")
        rows = []
        for i, text in enumerate(strings(values, "text")):
            try:
                out = summarize(model, text, beam or None)
            except RnnlabError as e:
                raise RnnlabError(f"text {i}: {e}") from e
            rows.append({"synopsis": out["synopsis"], "truncated": out["truncated"]})
        return pd.DataFrame(rows, columns=["synopsis", "truncated"])

    def signature(self, hparams: dict) -> tuple[ModelSignature, pd.DataFrame]:
        inputs = Schema([ColSpec("string")])  # unnamed: a plain list of texts is an input too
        outputs = Schema([ColSpec("string", "synopsis"), ColSpec("boolean", "truncated")])
        params = ParamSchema([ParamSpec("beam_width", "long", 0)])
        return ModelSignature(inputs, outputs, params), pd.DataFrame({"text": [EXAMPLE]})
