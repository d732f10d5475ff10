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
(tracking never exhausts the training's memory) until it catches up. Images need Pillow, figures
matplotlib: ``pip install 'epochal[media]'``. Importing this module imports neither, nor numpy.
The checks and conversions themselves live in :mod:`epochal._media_convert`.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Mapping, NamedTuple, Sequence

from . import _media_convert as convert
from ._media_convert import (
    INSTALL_HINT, MAX_BINS, MAX_FILE_BYTES, MAX_HISTOGRAM_VALUES, MAX_PIXELS, MAX_TEXT_CHARS,
)
from .values import check_key

__all__ = [
    "Image", "Histogram", "Text", "Media", "MediaItem", "MediaRecord", "is_media", "prepare", "prepare_all",
    "check_media_key", "MAX_BACKLOG_BYTES",
    "image_batch", "markdown_table",
    "MAX_PIXELS", "MAX_BATCH", "MAX_FILE_BYTES", "MAX_HISTOGRAM_VALUES", "MAX_BINS", "MAX_TEXT_CHARS",
    "INSTALL_HINT",
]

MAX_BATCH = 256  # images under one key in one log() call
MAX_BACKLOG_BYTES = 512 << 20  # copies waiting for the writer, all runs of the process; past it media are dropped
log = logging.getLogger("epochal")


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
                    self._data = self._source if isinstance(self._source, bytes) else convert.encode_png(self._source)
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
            self._bins = convert.bin_values(*self._source)
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
    values: list[Any]
    try:
        if isinstance(value, Media):
            kind, values = value.kind, [value]
        else:
            kind, values = _batch(value)
        if kind == "image":
            items = tuple(_image_item(v) for v in values)
        elif kind == "histogram":
            h = values[0]
            items = (MediaItem("histogram", "json", convert.histogram(h.values, h.bins, h.counts, h.edges)),)
        else:
            items = (MediaItem("text", "md", convert.text(values[0].text)),)
    except convert.Bad as exc:
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


def _image_item(image: Image) -> MediaItem:
    caption = convert.caption(image.caption)
    source, ext, width, height = convert.image(image.data)
    return MediaItem("image", ext, source, caption, width, height)


def _batch(values: Sequence[Any]) -> tuple[str, list[Any]]:
    if not all(isinstance(v, Image) for v in values):
        kinds = sorted({type(v).__name__ for v in values})
        raise convert.Bad(f"a list may hold only epochal.Image values (a batch of images), got {', '.join(kinds)}",
                          TypeError)
    if len(values) > MAX_BATCH:
        raise convert.Bad(f"{len(values)} images in one call; at most {MAX_BATCH} (log the rest under another step "
                          "or key)")
    return "image", list(values)
