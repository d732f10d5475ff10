"""From what a user logs to checked copies (the training thread), and from copies to file bytes (the writer).

Every check raises :class:`Bad` with a message and the exception type to raise;
:func:`epochal.media.prepare` re-raises it naming the key. Nothing here imports numpy,
Pillow or matplotlib until a value needs them.
"""

from __future__ import annotations

import io
import os
from typing import Any

from .redact import redact_text

__all__ = [
    "Bad", "caption", "image", "histogram", "text", "encode_png", "bin_values",
    "MAX_PIXELS", "MAX_FILE_BYTES", "MAX_HISTOGRAM_VALUES", "MAX_BINS", "MAX_TEXT_CHARS", "INSTALL_HINT",
]

MAX_PIXELS = 25_000_000  # one image: 5000 x 5000
MAX_FILE_BYTES = 64 << 20  # a PNG/JPEG file logged by path
MAX_HISTOGRAM_VALUES = 100_000_000
MAX_BINS = 10_000
MAX_TEXT_CHARS = 1_000_000
INSTALL_HINT = "pip install 'epochal[media]'"
IMAGE_SHAPES = "HW, HWC or CHW with 1, 3 or 4 channels"
_FORMATS = {"PNG": "png", "JPEG": "jpg"}


class Bad(Exception):
    """An input problem: its message, and the exception type to raise it as (naming the key)."""

    def __init__(self, message: str, kind: type[Exception] = ValueError) -> None:
        super().__init__(message)
        self.kind = kind


def _numpy() -> Any:
    try:
        import numpy
    except ImportError:
        raise Bad(f"logging images and histograms needs numpy and Pillow: {INSTALL_HINT}", ImportError) from None
    return numpy


def _pil() -> Any:
    try:
        import PIL.Image
    except ImportError:
        raise Bad(f"logging images needs Pillow: {INSTALL_HINT}", ImportError) from None
    return PIL.Image


def caption(caption: Any) -> str | None:
    """A caption checked and redacted (or None)."""
    if caption is None:
        return None
    if not isinstance(caption, str):
        raise Bad(f"caption must be a str, got {type(caption).__name__}", TypeError)
    if len(caption) > MAX_TEXT_CHARS:
        raise Bad(f"caption has {len(caption)} characters; at most {MAX_TEXT_CHARS}")
    return redact_text(caption)


def _module(value: Any) -> str:
    return type(value).__module__.split(".")[0]


def _to_array(np: Any, data: Any, what: str) -> Any:
    """numpy array (a view where possible) of an array, tensor or nested sequence; refuses odd dtypes."""
    if _module(data) == "torch":
        data = data.detach()
        if str(data.dtype) in ("torch.bfloat16", "torch.float16"):
            data = data.float()
        data = data.cpu().numpy()
    try:
        array = np.asarray(data)
    except (TypeError, ValueError) as exc:
        raise Bad(f"cannot read {type(data).__name__} as {what}: {exc}", TypeError) from None
    if array.dtype.kind not in "biuf":
        raise Bad(f"{what} has dtype {array.dtype} ({type(data).__name__}); use numbers (uint8 or float)", TypeError)
    if array.size == 0:
        raise Bad(f"{what} is empty (shape {tuple(array.shape)})")
    return array


def image(data: Any) -> tuple[Any, str, int, int]:
    """A checked copy of an image: (pixels as an HW/HWC array, or the bytes of a PNG/JPEG file), extension, width, height."""
    if isinstance(data, (str, os.PathLike)):
        return _image_file(data)
    np = _numpy()
    _pil()  # encoding happens later; a missing Pillow must fail now, before anything is written
    module = _module(data)
    if module == "matplotlib" and hasattr(data, "savefig"):
        pixels = _render_figure(np, data)
    elif module == "PIL" and hasattr(data, "mode"):
        if not data.width * data.height or data.width * data.height > MAX_PIXELS:
            raise Bad(f"a PIL image of {data.width}x{data.height} pixels is empty or over the limit of {MAX_PIXELS:,}")
        if data.mode not in ("L", "RGB", "RGBA", "1"):
            data = data.convert("RGBA" if "A" in data.mode or "transparency" in data.info else "RGB")
        pixels = np.array(data)  # a copy
    else:
        pixels = _pixels(np, _to_array(np, data, "an image"))
    height, width = pixels.shape[:2]
    return pixels, "png", width, height


def _pixels(np: Any, array: Any) -> Any:
    """Checked HWC (or HW) copy of an image array; floats stay floats until encoding."""
    shape = tuple(array.shape)
    if array.ndim == 2:
        hwc = array
    elif array.ndim == 3 and shape[2] in (1, 3, 4):
        hwc = array
    elif array.ndim == 3 and shape[0] in (1, 3, 4):
        hwc = array.transpose(1, 2, 0)
    else:
        hint = "; log a batch as a list of images" if array.ndim == 4 else ""
        raise Bad(f"an image must be {IMAGE_SHAPES}, got shape {shape}{hint}")
    if hwc.shape[0] * hwc.shape[1] > MAX_PIXELS:
        raise Bad(f"image of {hwc.shape[1]}x{hwc.shape[0]} pixels is over the limit of {MAX_PIXELS:,}; resize it")
    if hwc.ndim == 3 and hwc.shape[2] == 1:
        hwc = hwc[:, :, 0]
    kind = array.dtype.kind
    if kind == "f":
        if not np.isfinite(hwc).all():
            raise Bad(f"a float image holds NaN or infinite values (shape {shape}); float images must be in [0, 1]")
        low, high = hwc.min(), hwc.max()
        if low < 0 or high > 1:
            raise Bad(f"a float image must be in [0, 1], got values in [{low:g}, {high:g}]; "
                       "divide by 255 or pass uint8")
    elif kind in "iu" and array.dtype != np.uint8:
        low, high = hwc.min(), hwc.max()
        if low < 0 or high > 255:
            raise Bad(f"an integer image must be in 0-255, got values in [{low}, {high}]; scale it or pass uint8")
        return hwc.astype(np.uint8)  # the copy
    return np.array(hwc, order="C")  # the copy (bool and float converted at encoding)


def _render_figure(np: Any, figure: Any) -> Any:
    """Draw a matplotlib figure to RGBA pixels on this (the caller's) thread."""
    dpi = figure.dpi
    width, height = (int(v * dpi) for v in figure.get_size_inches())
    if width * height > MAX_PIXELS:
        raise Bad(f"figure of {width}x{height} pixels is over the limit of {MAX_PIXELS:,}; make it smaller")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="rgba", dpi=dpi, bbox_inches=None)
    raw = buffer.getbuffer()
    if len(raw) != width * height * 4:  # sized differently than expected (a custom canvas): ask the PNG instead
        return np.array(_pil().open(io.BytesIO(_figure_png(figure))).convert("RGBA"))
    return np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 4).copy()


def _figure_png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=figure.dpi)
    return buffer.getvalue()


def _image_file(path: str | os.PathLike[str]) -> tuple[bytes, str, int, int]:
    try:
        size = os.path.getsize(path)
        if size > MAX_FILE_BYTES:
            raise Bad(f"image file {os.fspath(path)!r} has {size:,} bytes; at most {MAX_FILE_BYTES:,}")
        with open(path, "rb") as handle:  # read now: the file may be rewritten after log() returns
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise Bad(f"cannot read image file {os.fspath(path)!r}: {exc.strerror or exc}", FileNotFoundError) from None
    try:
        with _pil().open(io.BytesIO(data)) as opened:  # reads the header only
            fmt, (width, height) = opened.format, opened.size
    except Bad:
        raise
    except Exception:
        fmt, width, height = None, 0, 0
    if fmt not in _FORMATS:
        raise Bad(f"image file {os.fspath(path)!r} is not a PNG or JPEG image; pass the pixels as an array instead")
    if width * height > MAX_PIXELS:
        raise Bad(f"image file {os.fspath(path)!r} has {width}x{height} pixels, over the limit of {MAX_PIXELS:,}")
    return data, _FORMATS[fmt], width, height


def histogram(values: Any, bins: Any, counts: Any, edges: Any) -> tuple[Any, int, Any, Any]:
    """A checked copy of a histogram's input: (values, bins, None, None) or (None, 0, counts, edges)."""
    np = _numpy()
    if values is not None and (counts is not None or edges is not None):
        raise Bad("give a Histogram either values or counts and edges, not both", TypeError)
    if values is None:
        if counts is None or edges is None:
            raise Bad("a Histogram needs values, or both counts= and edges=", TypeError)
        counts = _to_array(np, counts, "histogram counts").astype(np.float64).ravel()
        edges = _to_array(np, edges, "histogram edges").astype(np.float64).ravel()
        if len(edges) != len(counts) + 1 or len(counts) > MAX_BINS:
            raise Bad(f"a histogram needs len(edges) == len(counts) + 1 and at most {MAX_BINS} bins, "
                       f"got {len(counts)} counts and {len(edges)} edges")
        if not (np.isfinite(edges).all() and np.isfinite(counts).all() and (counts >= 0).all()
                and (np.diff(edges) > 0).all()):
            raise Bad("histogram edges must be finite and increasing, counts finite and >= 0")
        return None, 0, counts, edges
    if type(bins) is not int or not 1 <= bins <= MAX_BINS:
        raise Bad(f"bins must be an int from 1 to {MAX_BINS}, got {bins!r}", TypeError)
    values = _to_array(np, values, "histogram values")
    if values.size > MAX_HISTOGRAM_VALUES:
        raise Bad(f"{values.size:,} histogram values; at most {MAX_HISTOGRAM_VALUES:,} (subsample them)")
    return values.ravel().copy(), bins, None, None


def text(markdown: Any) -> str:
    """Checked, redacted markdown."""
    if not isinstance(markdown, str):
        raise Bad(f"Text takes a str of markdown, got {type(markdown).__name__}", TypeError)
    if not markdown:
        raise Bad("Text is empty")
    if len(markdown) > MAX_TEXT_CHARS:
        raise Bad(f"Text has {len(markdown):,} characters; at most {MAX_TEXT_CHARS:,}")
    return redact_text(markdown)


# -- the writer side: encode and bin -------------------------------------------------------------------
def encode_png(pixels: Any) -> bytes:
    """PNG bytes of an HW/HWC array (float in [0, 1] and bool scaled to 0-255): lossless for uint8."""
    import numpy as np
    import PIL.Image

    if pixels.dtype.kind == "f":
        pixels = (pixels * 255.0 + 0.5).astype(np.uint8)
    elif pixels.dtype.kind == "b":
        pixels = pixels.astype(np.uint8) * 255
    buffer = io.BytesIO()
    PIL.Image.fromarray(pixels).save(buffer, format="PNG", compress_level=4)
    return buffer.getvalue()


def bin_values(values: Any, bins: int, counts: Any, edges: Any) -> dict[str, Any]:
    """``{"edges", "counts", "nonfinite"}`` of a histogram source (see :func:`histogram`)."""
    import numpy as np

    if values is None:
        return {"edges": edges.tolist(), "counts": counts.tolist(), "nonfinite": 0}
    if values.dtype.kind == "b":
        values = values.astype(np.uint8)
    finite = np.isfinite(values)
    nonfinite = int(values.size - np.count_nonzero(finite))
    if nonfinite:
        values = values[finite]
    if values.size == 0:
        return {"edges": [0.0, 1.0], "counts": [0.0], "nonfinite": nonfinite}
    counts, edges = np.histogram(values, bins=bins)
    return {"edges": edges.astype(np.float64).tolist(), "counts": counts.astype(np.float64).tolist(),
            "nonfinite": nonfinite}
