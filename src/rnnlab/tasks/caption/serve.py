"""An image in, its best captions out: `rnnlab caption IMAGE` and the pyfunc model of the captioner, which reads
base64-encoded PNG or JPEG images in the column "image".

What the model takes is a 64x64 RGBA emoji; other images are converted, as documented here and in
docs/tasks/captioning.md: grayscale, palette, RGB, CMYK and images with or without alpha become RGBA (a JPEG is
opaque); an image of another size is scaled to fit 64x64 (its aspect ratio kept, high-quality Lanczos filter),
centred on a transparent square. Refused, with one line naming the input: no bytes, more than MAX_BYTES bytes,
more than MAX_PIXELS pixels (a decompression bomb), not a PNG or JPEG, or a truncated or corrupt file."""

from __future__ import annotations

import base64
import binascii
import io
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types.schema import Array, ColSpec, ParamSchema, ParamSpec, Schema

from rnnlab import RnnlabError
from rnnlab.serving.adapters import Adapter, strings
from rnnlab.tasks.caption.data import SIZE

# the largest encoded image taken (10 MiB; an emoji of the training data is about 3 KB) and the most pixels
# decoded (a 4096x4096 image): larger input is refused unread, not scaled
MAX_BYTES = 10 * 1024 * 1024
MAX_PIXELS = 4096 * 4096
FORMATS = ("PNG", "JPEG")
DEFAULTS = {"n_best": 3, "beam_width": 0}


def read_image(data: bytes, where: str) -> np.ndarray:
    """PNG or JPEG bytes -> uint8 RGBA (64, 64, 4), converted as the module docstring says; bad input is a
    RnnlabError naming `where`."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise RnnlabError(f"{where} is empty: give a PNG or JPEG image")
    if len(data) > MAX_BYTES:
        raise RnnlabError(f"{where} is {len(data):,} bytes, more than the {MAX_BYTES:,} bytes an image may have")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in FORMATS:
                raise RnnlabError(f"{where} is a {image.format} image, not PNG or JPEG")
            width, height = image.size
            if width * height > MAX_PIXELS:  # before decoding: a bomb is refused unread
                raise RnnlabError(f"{where} is {width}x{height} pixels, more than the {MAX_PIXELS:,} an image may have")
            image.load()  # decodes every row: a truncated or corrupt file fails here
            rgba = image.convert("RGBA")
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, zlib.error, Image.DecompressionBombError) as e:
        raise RnnlabError(f"{where} is not a readable PNG or JPEG image: {e}") from e
    return fit(rgba)


def fit(rgba) -> np.ndarray:
    """A PIL RGBA image -> uint8 (64, 64, 4): scaled to fit (Pillow premultiplies alpha when it resamples RGBA),
    centred on a transparent square; transparent pixels' colour set to 0, as in training."""
    from PIL import Image

    if rgba.size != (SIZE, SIZE):
        scale = SIZE / max(rgba.size)
        size = (max(1, round(rgba.width * scale)), max(1, round(rgba.height * scale)))
        canvas = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
        canvas.paste(rgba.resize(size, Image.Resampling.LANCZOS), ((SIZE - size[0]) // 2, (SIZE - size[1]) // 2))
        rgba = canvas
    out = np.array(rgba, dtype=np.uint8)
    out[out[..., 3] == 0, :3] = 0
    return out


def read_file(path: str | Path) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise RnnlabError(f"image not found: {path}")
    if path.stat().st_size > MAX_BYTES:  # not read: the limit is the point
        raise RnnlabError(f"{path} is {path.stat().st_size:,} bytes, more than the {MAX_BYTES:,} bytes an image may have")
    return read_image(path.read_bytes(), str(path))


def options(params: dict) -> tuple[int, int | None]:
    """n_best (>= 1) and beam_width (0: the model's) of a request."""
    p = {**DEFAULTS, **{k: v for k, v in params.items() if v is not None}}
    n_best, beam = int(p["n_best"]), int(p["beam_width"])
    if n_best < 1 or beam < 0:
        raise RnnlabError(f"n_best must be >= 1 and beam_width >= 0 (0: the model's), got {n_best} and {beam}")
    return n_best, beam or None


class Images(Adapter):
    """base64 PNG/JPEG images -> DataFrame with "caption" and "probability" (the best) and "captions" /
    "probabilities" (the `n_best` of the beam); params `n_best`, `beam_width` (0: the model's)."""

    column = "image"

    def predict(self, model, values: list, params: dict) -> pd.DataFrame:
        if not values:
            raise RnnlabError("empty request: no image to caption")
        n_best, beam = options(params)
        rows = []
        for i, value in enumerate(strings(values, "image")):
            try:
                data = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError) as e:
                raise RnnlabError(f"image {i}: not base64-encoded ({e})") from e
            found = model.captions(read_image(data, f"image {i}"), n_best, beam)
            rows.append({"caption": found[0][0], "probability": found[0][1], "captions": [c for c, _ in found],
                         "probabilities": [p for _, p in found]})
        return pd.DataFrame(rows, columns=["caption", "probability", "captions", "probabilities"])

    def signature(self, hparams: dict) -> tuple[ModelSignature, pd.DataFrame]:
        inputs = Schema([ColSpec("string", "image")])
        outputs = Schema([ColSpec("string", "caption"), ColSpec("double", "probability"),
                          ColSpec(Array("string"), "captions"), ColSpec(Array("double"), "probabilities")])
        params = ParamSchema([ParamSpec("n_best", "long", DEFAULTS["n_best"]),
                              ParamSpec("beam_width", "long", DEFAULTS["beam_width"])])
        return ModelSignature(inputs, outputs, params), pd.DataFrame({"image": [example_image()]})


def example_image() -> str:
    """A red disc on a transparent 64x64 square as base64 PNG: the signature's input example."""
    from PIL import Image, ImageDraw

    image = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse((8, 8, 56, 56), fill=(220, 30, 30, 255))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
