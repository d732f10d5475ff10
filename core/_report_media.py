"""The report's media section: the latest image of each image key per run, side by side.

Images are embedded in the page as ``data:`` URIs (PNG, JPEG, GIF, WebP only), each up to
:data:`MAX_IMAGE_BYTES` and all together up to :data:`MEDIA_BUDGET`; past that an image is
named by its path instead, so media never blow up the report's size.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Sequence

from ._report_data import RunData
from .query import RunReader

__all__ = ["MAX_IMAGE_BYTES", "MEDIA_BUDGET", "latest_images", "media_section"]

MAX_IMAGE_BYTES = 1_000_000
MEDIA_BUDGET = 8_000_000
_MIME = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif", "webp": "image/webp"}


def latest_images(run: RunData) -> dict[str, tuple[int, Path, str]]:
    """``{image key: (step, file, caption)}`` of the image last logged under each key; problems noted on the run."""
    try:
        frame = RunReader(run.dir).media()
    except Exception as exc:
        run.problems.append(f"media index unreadable: {type(exc).__name__}: {exc}")
        return {}
    latest: dict[str, tuple[int, Path, str]] = {}
    for row in frame[frame["type"] == "image"].itertuples(index=False):
        latest[row.key] = (int(row.step), Path(row.path), row.caption if isinstance(row.caption, str) else "")
    return latest


def media_section(runs: Sequence[RunData]) -> str:
    """The HTML section (empty when no run logged an image)."""
    images = {run.index: latest_images(run) for run in runs}
    keys = sorted({k for found in images.values() for k in found})
    if not keys:
        return ""
    budget = MEDIA_BUDGET
    rows = []
    for key in keys:
        cells = []
        for run in runs:
            found = images[run.index].get(key)
            if found is None:
                cells.append(f'<td data-run="{run.index}" class="missing">—</td>')
                continue
            step, path, caption = found
            mime = _MIME.get(path.suffix.lower().lstrip("."))
            try:
                size = path.stat().st_size
            except OSError:
                cells.append(f'<td data-run="{run.index}" class="missing">missing file {html.escape(str(path))}</td>')
                continue
            label = f"step {step}" + (f": {caption}" if caption else "")
            if mime and size <= MAX_IMAGE_BYTES and size <= budget:
                budget -= size
                data = base64.b64encode(path.read_bytes()).decode("ascii")
                body = f'<img alt="{html.escape(key)}" src="data:{mime};base64,{data}">'
            else:
                body = f'<code>{html.escape(str(path))}</code> (not embedded: {size:,} bytes)'
            cells.append(f"<td data-run=\"{run.index}\"><figure>{body}<figcaption class=\"sub\">{html.escape(label)}</figcaption></figure></td>")
        rows.append(f"<tr><th>{html.escape(key)}</th>{''.join(cells)}</tr>")
    head = "".join(f'<th data-run="{r.index}">{html.escape(r.name)}</th>' for r in runs)
    return ('<section id="media"><h2>Media</h2><p class="note">The latest image of each key per run.</p>'
            f'<div class="scroll"><table id="media-table" class="media"><thead><tr><th>key</th>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div></section>')
