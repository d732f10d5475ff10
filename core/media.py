"""Rich media for ``Run.log``: :class:`Image`, :class:`Histogram` and :class:`Text`.

Media values mix with numbers in one call::

    run.log({"val/loss": 0.3, "val/samples": [epochal.Image(x, caption="first")],
             "weights/fc1": epochal.Histogram(layer.weight), "notes": epochal.Text("**ok**")}, step=10)

On the training thread ``log()`` only validates and copies (:func:`prepare`): an array
is copied, a matplotlib figure is rendered (matplotlib is not thread-safe), an image
file is read. PNG encoding, histogram binning and writing happen on the writer side,
once per value, whichever plugin asks first (:class:`MediaItem`). Plugins receive
:class:`MediaRecord` batches through the ``epochal_media`` hook; the store writes
``media/<key>/<step>-<n>.<ext>`` plus an index (:mod:`epochal._media_store`).

Limits (a clear error past them): :data:`MAX_PIXELS` per image, :data:`MAX_BATCH`
images under one key per call, :data:`MAX_FILE_BYTES` per image file,
:data:`MAX_HISTOGRAM_VALUES` values and :data:`MAX_BINS` bins per histogram,
:data:`MAX_TEXT_CHARS` characters of text. When the writer falls behind and the copies
waiting for it pass :data:`MAX_BACKLOG_BYTES`, further media are dropped with a warning
(tracking never exhausts the training's memory) until it catches up. Images need Pillow, figures matplotlib:
``pip install 'epochal[media]'``. Importing this module imports neither, nor numpy.
"""

from __future__ import annotations

import io
import json
import logging
import os
import threading
from typing import Any, Mapping, NamedTuple, Sequence

from .redact import redact_text
from .values import check_key

__all__ = [
    "Image", "Histogram", "Text", "Media", "MediaItem", "MediaRecord", "is_media", "prepare", "prepare_all",
    "check_media_key", "MAX_BACKLOG_BYTES",
    "image_batch", "markdown_table",
    "MAX_PIXELS", "MAX_BATCH", "MAX_FILE_BYTES", "MAX_HISTOGRAM_VALUES", "MAX_BINS", "MAX_TEXT_CHARS",
    "INSTALL_HINT",
]

MAX_PIXELS = 25_000_000  # one image: 5000 x 5000
MAX_BATCH = 256  # images under one key in one log() call
MAX_FILE_BYTES = 64 << 20  # a PNG/JPEG file logged by path
MAX_HISTOGRAM_VALUES = 100_000_000
MAX_BINS = 10_000
MAX_TEXT_CHARS = 1_000_000
MAX_BACKLOG_BYTES = 512 << 20  # copies waiting for the writer, all runs of the process; past it media are dropped
INSTALL_HINT = "pip install 'epochal[media]'"
log = logging.getLogger("epochal")
IMAGE_SHAPES = "HW, HWC or CHW with 1, 3 or 4 channels"
_FORMATS = {"PNG": "png", "JPEG": "jpg"}


class Media:
    """The base of every media value; ``kind`` names it in the index (``image``, ``histogram``, ``text``)."""

    kind = "media"
    __slots__ = ()


class Image(Media):
    """An image to log: a numpy array (HW, HWC or CHW; ``uint8`` 0-255, or float in [0, 1]),
    a PIL image, a torch tensor (same layouts), a matplotlib ``Figure`` or the path of a PNG/JPEG file.

    Integer arrays with values in 0-255 and bool arrays (black/white) are accepted too.
    Nothing is copied until ``log()`` (then at once, on the calling thread): log it
    right after making it. A figure is drawn as it looks at ``log()`` and stays open.
    Log a batch as a list of images under one key.
    """

    kind = "image"
    __slots__ = ("data", "caption")

    def __init__(self, data: Any, caption: str | None = None) -> None:
        self.data = data
        self.caption = caption

    def __repr__(self) -> str:
        return f"Image({type(self.data).__name__}, caption={self.caption!r})"


class Histogram(Media):
    """A histogram: the ``values`` of any array, tensor or sequence binned into ``bins`` equal bins,
    or precomputed ``counts`` with their ``edges`` (``len(edges) == len(counts) + 1``, increasing).

    Binning happens off the training thread; NaN and infinite values are left out
    (their number is stored as ``nonfinite``).
    """

    kind = "histogram"
    __slots__ = ("values", "bins", "counts", "edges")

    def __init__(self, values: Any = None, bins: int = 64, *, counts: Any = None, edges: Any = None) -> None:
        self.values, self.bins, self.counts, self.edges = values, bins, counts, edges

    def __repr__(self) -> str:
        what = "counts" if self.values is None else type(self.values).__name__
        return f"Histogram({what}, bins={self.bins})"


class Text(Media):
    """Markdown text, shown by TensorBoard's text tab; URL credentials are redacted before it is stored."""

    kind = "text"
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Text({self.text[:40]!r})" if isinstance(self.text, str) else "Text(?)"


def is_media(value: Any) -> bool:
    """A media value, or a non-empty list/tuple of them (a batch)."""
    if isinstance(value, Media):
        return True
    return type(value) in (list, tuple) and bool(value) and isinstance(value[0], Media)


def image_batch(images: Any, caption: Sequence[str | None] | None = None) -> list[Image]:
    """A list of images with one caption each, as ``WandbLogger.log_image(key, images, caption=[...])`` takes them."""
    if not isinstance(images, list):
        raise TypeError(f"images must be a list (a batch), got {type(images).__name__}; wrap one image as [image]")
    if caption is not None and (not isinstance(caption, (list, tuple)) or len(caption) != len(images)):
        raise ValueError(f"caption must be a list of {len(images)} captions, one per image, got {caption!r:.80}")
    return [Image(image, caption[i] if caption is not None else None) for i, image in enumerate(images)]


def markdown_table(columns: Sequence[Any] | None = None, data: Sequence[Sequence[Any]] | None = None,
                   dataframe: Any = None) -> Text:
    """A markdown table of ``columns`` and ``data`` rows, or of a pandas ``dataframe`` (``WandbLogger.log_text``)."""
    if dataframe is not None:
        columns, data = list(dataframe.columns), dataframe.itertuples(index=False)
    if data is None:
        raise TypeError("give columns= and data= (a list of rows), or dataframe=")
    rows = [list(row) for row in data]
    width = max([len(columns or ())] + [len(row) for row in rows])
    if not width:
        raise ValueError("the table is empty: give columns= and data= rows, or a non-empty dataframe=")
    header = list(columns or ()) + [""] * (width - len(columns or ()))

    def line(cells: Sequence[Any]) -> str:
        cells = [str(c).replace("|", "\\|").replace("\n", " ") for c in cells]
        return "| " + " | ".join(cells + [""] * (width - len(cells))) + " |"

    return Text("\n".join([line(header), "|" + "---|" * width, *(line(row) for row in rows)]))


# -- what plugins receive ------------------------------------------------------------------------------
class MediaItem:
    """One file's worth of media, prepared on the training thread; its bytes are made once, on first ask.

    ``kind``, ``ext`` (``png``, ``jpg``, ``json``, ``md``), ``caption``, ``width`` and
    ``height`` (images) are known at once; :meth:`data` is the file content,
    :meth:`histogram` the bins. Both are thread-safe and computed once.
    """

    __slots__ = ("kind", "ext", "caption", "width", "height", "_source", "_lock", "_data", "_bins", "_held")

    def __init__(self, kind: str, ext: str, source: Any, caption: str | None = None,
                 width: int = 0, height: int = 0) -> None:
        self.kind, self.ext, self.caption, self.width, self.height = kind, ext, caption, width, height
        self._source = source
        self._lock = threading.Lock()
        self._data: bytes | None = None
        self._bins: dict[str, Any] | None = None
        self._held = 0  # bytes counted in the process's backlog until the copy is encoded or dropped

    def data(self) -> bytes:
        """The file content: PNG/JPEG bytes, the histogram as JSON, or the text as UTF-8."""
        with self._lock:
            if self._data is None:
                if self.kind == "image":
                    self._data = self._source if isinstance(self._source, bytes) else _encode_png(self._source)
                    self._release()
                elif self.kind == "histogram":
                    self._data = json.dumps(self._histogram(), separators=(",", ":")).encode()
                else:
                    self._data = self._source.encode("utf-8")
            return self._data

    def histogram(self) -> dict[str, Any]:
        """``{"edges": [...], "counts": [...], "nonfinite": n}`` of a histogram item."""
        with self._lock:
            return self._histogram()

    def _histogram(self) -> dict[str, Any]:
        if self._bins is None:
            self._bins = _bin(*self._source)
            self._release()
        return self._bins

    def _size(self) -> int:
        source = self._source
        parts = source if isinstance(source, tuple) else (source,)
        return sum(len(p) if isinstance(p, (bytes, str)) else getattr(p, "nbytes", 0) for p in parts)

    def _release(self) -> None:
        self._source = None
        if self._held:
            _backlog.give(self._held)
            self._held = 0

    def __del__(self) -> None:  # dropped unencoded (a discarded event, a disabled plugin)
        if self._held:
            _backlog.give(self._held)
            self._held = 0

    def __repr__(self) -> str:
        return f"<MediaItem {self.kind} .{self.ext}>"


class MediaRecord(NamedTuple):
    """The media of one key in one ``log()`` call: several items for a batch of images, else one."""

    step: int
    time: float
    key: str
    kind: str
    items: tuple[MediaItem, ...]


# -- the training thread: validate and copy ------------------------------------------------------------
def check_media_key(key: Any) -> str:
    """A media key is a metric name whose every ``/`` segment is a safe file name (as artifact names are)."""
    from .artifacts import check_name

    check_key(key)
    for segment in key.split("/"):
        check_name(segment, f"media key {key!r}: segment")
    return key


def prepare(key: str, value: Any, step: int, wall: float) -> MediaRecord:
    """Validate and copy one media value (or batch) logged under ``key``; raises a clear error, writes nothing."""
    check_media_key(key)
    try:
        if isinstance(value, Media):
            kind, values = value.kind, [value]
        else:
            kind, values = _batch(value)
        if kind == "image":
            items = tuple(_image(v) for v in values)
        elif kind == "histogram":
            items = (_histogram_item(values[0]),)
        else:
            items = (_text_item(values[0]),)
    except _Bad as exc:
        raise exc.kind(f"media {key!r}: {exc.args[0]}") from None
    return MediaRecord(step, wall, key, kind, items)


def prepare_all(values: Mapping[str, Any], step: int, wall: float) -> list[MediaRecord]:
    """:func:`prepare` every ``key: value`` (any bad one raises, nothing is kept); records past the backlog
    budget are left out with a warning."""
    records = [prepare(key, value, step, wall) for key, value in values.items()]
    return [record for record in records if _backlog.take(record)]


class _Backlog:
    """Bytes of media copied on training threads and not yet encoded or binned (all runs of the process)."""

    def __init__(self) -> None:
        self.bytes = 0
        self.dropping = False
        self._lock = threading.Lock()

    def take(self, record: MediaRecord) -> bool:
        sizes = [item._size() for item in record.items]
        with self._lock:
            if self.bytes and self.bytes + sum(sizes) > MAX_BACKLOG_BYTES:
                warn, self.dropping = not self.dropping, True
            else:
                self.bytes += sum(sizes)
                self.dropping = False
                for item, size in zip(record.items, sizes):
                    item._held = size
                return True
        if warn:
            log.warning("epochal: media %r at step %d dropped: %d MB of media wait for the writer (more than "
                        "MAX_BACKLOG_BYTES); log media less often. Dropping until it catches up.",
                        record.key, record.step, self.bytes >> 20)
        return False

    def give(self, size: int) -> None:
        with self._lock:
            self.bytes -= size


_backlog = _Backlog()


class _Bad(Exception):
    """An input problem; ``prepare`` re-raises it as ``kind`` naming the key."""

    def __init__(self, message: str, kind: type[Exception] = ValueError) -> None:
        super().__init__(message)
        self.kind = kind


def _batch(values: Sequence[Any]) -> tuple[str, list[Any]]:
    if not all(isinstance(v, Image) for v in values):
        kinds = sorted({type(v).__name__ for v in values})
        raise _Bad(f"a list may hold only epochal.Image values (a batch of images), got {', '.join(kinds)}", TypeError)
    if len(values) > MAX_BATCH:
        raise _Bad(f"{len(values)} images in one call; at most {MAX_BATCH} (log the rest under another step or key)")
    return "image", list(values)


def _numpy() -> Any:
    try:
        import numpy
    except ImportError:
        raise _Bad(f"logging images and histograms needs numpy and Pillow: {INSTALL_HINT}", ImportError) from None
    return numpy


def _pil() -> Any:
    try:
        import PIL.Image
    except ImportError:
        raise _Bad(f"logging images needs Pillow: {INSTALL_HINT}", ImportError) from None
    return PIL.Image


def _caption(caption: Any) -> str | None:
    if caption is None:
        return None
    if not isinstance(caption, str):
        raise _Bad(f"caption must be a str, got {type(caption).__name__}", TypeError)
    if len(caption) > MAX_TEXT_CHARS:
        raise _Bad(f"caption has {len(caption)} characters; at most {MAX_TEXT_CHARS}")
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
        raise _Bad(f"cannot read {type(data).__name__} as {what}: {exc}", TypeError) from None
    if array.dtype.kind not in "biuf":
        raise _Bad(f"{what} has dtype {array.dtype} ({type(data).__name__}); use numbers (uint8 or float)", TypeError)
    if array.size == 0:
        raise _Bad(f"{what} is empty (shape {tuple(array.shape)})")
    return array


def _image(image: Image) -> MediaItem:
    caption = _caption(image.caption)
    data = image.data
    if isinstance(data, (str, os.PathLike)):
        return _image_file(data, caption)
    np = _numpy()
    _pil()  # encoding happens later; a missing Pillow must fail now, before anything is written
    module = _module(data)
    if module == "matplotlib" and hasattr(data, "savefig"):
        pixels = _render_figure(np, data)
    elif module == "PIL" and hasattr(data, "mode"):
        if not data.width * data.height or data.width * data.height > MAX_PIXELS:
            raise _Bad(f"a PIL image of {data.width}x{data.height} pixels is empty or over the limit of {MAX_PIXELS:,}")
        if data.mode not in ("L", "RGB", "RGBA", "1"):
            data = data.convert("RGBA" if "A" in data.mode or "transparency" in data.info else "RGB")
        pixels = np.array(data)  # a copy
    else:
        pixels = _pixels(np, _to_array(np, data, "an image"))
    height, width = pixels.shape[:2]
    return MediaItem("image", "png", pixels, caption, width, height)


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
        raise _Bad(f"an image must be {IMAGE_SHAPES}, got shape {shape}{hint}")
    if hwc.shape[0] * hwc.shape[1] > MAX_PIXELS:
        raise _Bad(f"image of {hwc.shape[1]}x{hwc.shape[0]} pixels is over the limit of {MAX_PIXELS:,}; resize it")
    if hwc.ndim == 3 and hwc.shape[2] == 1:
        hwc = hwc[:, :, 0]
    kind = array.dtype.kind
    if kind == "f":
        if not np.isfinite(hwc).all():
            raise _Bad(f"a float image holds NaN or infinite values (shape {shape}); float images must be in [0, 1]")
        low, high = hwc.min(), hwc.max()
        if low < 0 or high > 1:
            raise _Bad(f"a float image must be in [0, 1], got values in [{low:g}, {high:g}]; "
                       "divide by 255 or pass uint8")
    elif kind in "iu" and array.dtype != np.uint8:
        low, high = hwc.min(), hwc.max()
        if low < 0 or high > 255:
            raise _Bad(f"an integer image must be in 0-255, got values in [{low}, {high}]; scale it or pass uint8")
        return hwc.astype(np.uint8)  # the copy
    return np.array(hwc, order="C")  # the copy (bool and float converted at encoding)


def _render_figure(np: Any, figure: Any) -> Any:
    """Draw a matplotlib figure to RGBA pixels on this (the caller's) thread."""
    dpi = figure.dpi
    width, height = (int(v * dpi) for v in figure.get_size_inches())
    if width * height > MAX_PIXELS:
        raise _Bad(f"figure of {width}x{height} pixels is over the limit of {MAX_PIXELS:,}; make it smaller")
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


def _image_file(path: str | os.PathLike[str], caption: str | None) -> MediaItem:
    try:
        size = os.path.getsize(path)
        if size > MAX_FILE_BYTES:
            raise _Bad(f"image file {os.fspath(path)!r} has {size:,} bytes; at most {MAX_FILE_BYTES:,}")
        with open(path, "rb") as handle:  # read now: the file may be rewritten after log() returns
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise _Bad(f"cannot read image file {os.fspath(path)!r}: {exc.strerror or exc}", FileNotFoundError) from None
    try:
        with _pil().open(io.BytesIO(data)) as opened:  # reads the header only
            fmt, (width, height) = opened.format, opened.size
    except _Bad:
        raise
    except Exception:
        fmt, width, height = None, 0, 0
    if fmt not in _FORMATS:
        raise _Bad(f"image file {os.fspath(path)!r} is not a PNG or JPEG image; pass the pixels as an array instead")
    if width * height > MAX_PIXELS:
        raise _Bad(f"image file {os.fspath(path)!r} has {width}x{height} pixels, over the limit of {MAX_PIXELS:,}")
    return MediaItem("image", _FORMATS[fmt], data, caption, width, height)


def _histogram_item(hist: Histogram) -> MediaItem:
    np = _numpy()
    if hist.values is not None and (hist.counts is not None or hist.edges is not None):
        raise _Bad("give a Histogram either values or counts and edges, not both", TypeError)
    if hist.values is None:
        if hist.counts is None or hist.edges is None:
            raise _Bad("a Histogram needs values, or both counts= and edges=", TypeError)
        counts = _to_array(np, hist.counts, "histogram counts").astype(np.float64).ravel()
        edges = _to_array(np, hist.edges, "histogram edges").astype(np.float64).ravel()
        if len(edges) != len(counts) + 1 or len(counts) > MAX_BINS:
            raise _Bad(f"a histogram needs len(edges) == len(counts) + 1 and at most {MAX_BINS} bins, "
                       f"got {len(counts)} counts and {len(edges)} edges")
        if not (np.isfinite(edges).all() and np.isfinite(counts).all() and (counts >= 0).all()
                and (np.diff(edges) > 0).all()):
            raise _Bad("histogram edges must be finite and increasing, counts finite and >= 0")
        return MediaItem("histogram", "json", (None, 0, counts, edges))
    bins = hist.bins
    if type(bins) is not int or not 1 <= bins <= MAX_BINS:
        raise _Bad(f"bins must be an int from 1 to {MAX_BINS}, got {bins!r}", TypeError)
    values = _to_array(np, hist.values, "histogram values")
    if values.size > MAX_HISTOGRAM_VALUES:
        raise _Bad(f"{values.size:,} histogram values; at most {MAX_HISTOGRAM_VALUES:,} (subsample them)")
    return MediaItem("histogram", "json", (values.ravel().copy(), bins, None, None))


def _text_item(text: Text) -> MediaItem:
    if not isinstance(text.text, str):
        raise _Bad(f"Text takes a str of markdown, got {type(text.text).__name__}", TypeError)
    if not text.text:
        raise _Bad("Text is empty")
    if len(text.text) > MAX_TEXT_CHARS:
        raise _Bad(f"Text has {len(text.text):,} characters; at most {MAX_TEXT_CHARS:,}")
    return MediaItem("text", "md", redact_text(text.text))


# -- the writer side: encode and bin -------------------------------------------------------------------
def _encode_png(pixels: Any) -> bytes:
    import numpy as np
    import PIL.Image

    if pixels.dtype.kind == "f":
        pixels = (pixels * 255.0 + 0.5).astype(np.uint8)
    elif pixels.dtype.kind == "b":
        pixels = pixels.astype(np.uint8) * 255
    buffer = io.BytesIO()
    PIL.Image.fromarray(pixels).save(buffer, format="PNG", compress_level=4)
    return buffer.getvalue()


def _bin(values: Any, bins: int, counts: Any, edges: Any) -> dict[str, Any]:
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
