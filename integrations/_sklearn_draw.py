"""Charts for sklearn's training plots, drawn straight with Pillow: a few milliseconds each.

matplotlib (through scikit-learn's ``*Display`` classes) spends 50-75 ms of CPU per plot on
artists, tick objects and text layout; these charts draw the same content (axes with ticks,
labels, a legend; a confusion matrix with its counts) directly onto a Pillow image: shapes on a
canvas twice the size, then halved (anti-aliased lines), text on the halved one (FreeType
anti-aliases it). Every chart is :data:`SIZE`, RGB.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Sequence

__all__ = ["SIZE", "curves", "matrix", "scatter", "BLUE", "INK"]

SIZE = (400, 320)  # width, height of every chart
_S = 2  # drawn at twice the size, then halved: anti-aliasing for Pillow's plain lines
_BOX = (58, 24, 388, 276)  # the plot area: left, top, right, bottom (in output pixels)
INK, BLUE, _GRID = (30, 30, 30), (31, 119, 180), (225, 225, 225)
Series = tuple[Any, Any, str, tuple[int, int, int], bool]  # xs, ys, legend label, colour, dashed


@functools.lru_cache(maxsize=4)
def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 (FreeType): a scalable font
    except TypeError:  # an older Pillow: its small bitmap font
        return ImageFont.load_default()


class _Chart:
    """A white canvas with a title and axis labels; ``to_px`` maps data into the plot area."""

    def __init__(self, title: str, xlabel: str, ylabel: str) -> None:
        from PIL import Image, ImageDraw

        self.image = Image.new("RGB", (SIZE[0] * _S, SIZE[1] * _S), "white")
        self.draw = ImageDraw.Draw(self.image)
        left, top, right, bottom = (v * _S for v in _BOX)
        self.box = (left, top, right, bottom)
        self.texts: list[tuple[float, float, str, int, str, Any]] = []
        self.ylabel = ylabel
        self.text((left + right) / 2, 4 * _S, title, 12, "ma")
        self.text((left + right) / 2, SIZE[1] * _S - 4 * _S, xlabel, 11, "md")

    def text(self, x: float, y: float, text: str, size: int, anchor: str, fill: Any = INK) -> None:
        """Text at ``(x, y)`` of the doubled canvas, drawn at the end on the halved one (it is anti-aliased)."""
        self.texts.append((x / _S, y / _S, text, size, anchor, fill))

    @staticmethod
    def _rotated(text: str, size: int) -> Any:
        from PIL import Image, ImageDraw

        font = _font(size)
        left, top, right, bottom = font.getbbox(text)
        strip = Image.new("L", (right - left + 2, bottom - top + 2), 0)
        ImageDraw.Draw(strip).text((-left + 1, -top + 1), text, font=font, fill=255)
        label = Image.new("RGBA", strip.size, INK + (0,))
        label.putalpha(strip)
        return label.rotate(90, expand=True)

    def axes(self, xlim: tuple[float, float], ylim: tuple[float, float]) -> None:
        """Frame, grid and tick labels of the data ranges ``xlim`` and ``ylim``."""
        self.xlim, self.ylim = xlim, ylim
        left, top, right, bottom = self.box
        for tick in _ticks(*xlim):
            x = self.to_px([tick], [ylim[0]])[0][0]
            self.draw.line([(x, top), (x, bottom)], fill=_GRID, width=_S)
            self.text(x, bottom + 4 * _S, _label(tick), 10, "ma")
        for tick in _ticks(*ylim):
            y = self.to_px([xlim[0]], [tick])[0][1]
            self.draw.line([(left, y), (right, y)], fill=_GRID, width=_S)
            self.text(left - 4 * _S, y, _label(tick), 10, "rm")
        self.draw.rectangle(self.box, outline=INK, width=_S)

    def to_px(self, xs: Any, ys: Any) -> list[tuple[float, float]]:
        import numpy as np

        left, top, right, bottom = self.box
        (x0, x1), (y0, y1) = self.xlim, self.ylim
        px = left + (np.asarray(xs, dtype=float) - x0) / ((x1 - x0) or 1.0) * (right - left)
        py = bottom - (np.asarray(ys, dtype=float) - y0) / ((y1 - y0) or 1.0) * (bottom - top)
        return list(zip(px.tolist(), py.tolist()))

    def legend(self, entries: Sequence[tuple[str, tuple[int, int, int]]], corner: str) -> None:
        left, top, right, bottom = self.box
        rows, font = [e for e in entries if e[0]], _font(10)
        if not rows:
            return
        width = max(font.getlength(label) for label, _ in rows) * _S + 34 * _S
        height = len(rows) * 15 * _S + 6 * _S
        x = right - width - 8 * _S if corner.endswith("right") else left + 8 * _S
        y = bottom - height - 8 * _S if corner.startswith("lower") else top + 8 * _S
        self.draw.rectangle((x, y, x + width, y + height), fill="white", outline=(200, 200, 200), width=_S)
        for i, (label, colour) in enumerate(rows):
            middle = y + 3 * _S + (i + 0.5) * 15 * _S
            self.draw.line([(x + 6 * _S, middle), (x + 26 * _S, middle)], fill=colour, width=2 * _S)
            self.text(x + 30 * _S, middle, label, 10, "lm")

    def done(self) -> Any:
        from PIL import ImageDraw

        image = self.image.reduce(_S)
        draw = ImageDraw.Draw(image)
        for x, y, text, size, anchor, fill in self.texts:
            draw.text((x, y), text, font=_font(size), fill=fill, anchor=anchor)
        label = self._rotated(self.ylabel, 11)
        image.paste(label, (2, int((_BOX[1] + _BOX[3] - label.height) / 2)), label)
        return image


def curves(title: str, xlabel: str, ylabel: str, series: Sequence[Series], corner: str) -> Any:
    """Lines on [0, 1] x [0, 1] (ROC, precision-recall) with a legend in ``corner`` ("lower right"...)."""
    chart = _Chart(title, xlabel, ylabel)
    chart.axes((-0.01, 1.01), (-0.01, 1.01))
    for xs, ys, _, colour, dashed in series:
        points = chart.to_px(xs, ys)
        if dashed:
            for a, b in zip(points[:-1], points[1:]):
                _dashes(chart.draw, a, b, colour)
        elif len(points) > 1:
            chart.draw.line(points, fill=colour, width=2 * _S, joint="curve")
    chart.legend([(label, colour) for _, _, label, colour, _ in series], corner)
    return chart.done()


def matrix(title: str, counts: Any, labels: Sequence[Any]) -> Any:
    """A confusion matrix: rows are true labels, columns predicted; each cell shaded by and showing its count."""
    chart = _Chart(title, "Predicted label", "True label")
    n = len(labels)
    box = chart.box
    side = min(box[2] - box[0], box[3] - box[1])
    left, top = box[0] + (box[2] - box[0] - side) / 2, box[1]
    cell, peak = side / max(n, 1), (float(counts.max()) if n else 0.0) or 1.0
    show = n <= 12  # past that, the numbers no longer fit their cells
    for i in range(n):
        for j in range(n):
            share = float(counts[i, j]) / peak
            colour = tuple(int(round(w + (d - w) * share)) for w, d in zip((247, 251, 255), (8, 48, 107)))
            x, y = left + j * cell, top + i * cell
            chart.draw.rectangle((x, y, x + cell, y + cell), fill=colour)
            if show:
                chart.text(x + cell / 2, y + cell / 2, _count(counts[i, j]), 11 if n <= 6 else 9, "mm",
                           "white" if share > 0.5 else INK)
    chart.draw.rectangle((left, top, left + side, top + side), outline=INK, width=_S)
    step = max(1, math.ceil(n / 12))
    for k in range(0, n, step):
        middle = left + (k + 0.5) * cell, top + (k + 0.5) * cell
        chart.text(middle[0], top + side + 4 * _S, str(labels[k])[:8], 10, "ma")
        chart.text(left - 4 * _S, middle[1], str(labels[k])[:8], 10, "rm")
    return chart.done()


def scatter(title: str, xlabel: str, ylabel: str, xs: Any, ys: Any) -> Any:
    """Points (residuals against predictions), with the zero line dashed."""
    import numpy as np

    chart = _Chart(title, xlabel, ylabel)
    chart.axes(_span(xs), _span(np.append(ys, 0.0)))
    start, end = chart.to_px(list(chart.xlim), [0.0, 0.0])
    _dashes(chart.draw, start, end, INK)
    r = 2 * _S
    for x, y in chart.to_px(xs, ys):
        chart.draw.ellipse((x - r, y - r, x + r, y + r), fill=BLUE)
    return chart.done()


def _dashes(draw: Any, a: tuple[float, float], b: tuple[float, float], colour: Any) -> None:
    length = math.dist(a, b)
    pieces = max(1, int(length / (8 * _S)))
    for k in range(0, pieces, 2):
        t0, t1 = k / pieces, min(1.0, (k + 1) / pieces)
        draw.line([(a[0] + (b[0] - a[0]) * t0, a[1] + (b[1] - a[1]) * t0),
                   (a[0] + (b[0] - a[0]) * t1, a[1] + (b[1] - a[1]) * t1)], fill=colour, width=_S)


def _span(values: Any) -> tuple[float, float]:
    import numpy as np

    lo, hi = float(np.min(values)), float(np.max(values))
    pad = (hi - lo) * 0.05 or 1.0
    return lo - pad, hi + pad


def _ticks(lo: float, hi: float, most: int = 6) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten apart) inside [lo, hi]."""
    raw = (hi - lo) / most
    power = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    step = next((m * power for m in (1, 2, 5, 10) if m * power >= raw), 10 * power)
    first = math.ceil(lo / step) * step
    return [round(first + k * step, 12) for k in range(int((hi - first) / step) + 1)]


def _count(value: Any) -> str:
    return str(int(value)) if float(value).is_integer() else f"{float(value):.3g}"  # weighted counts


def _label(value: float) -> str:
    return f"{value:.6g}" if value else "0"
