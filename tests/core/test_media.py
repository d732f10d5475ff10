"""Media through Run.log: every accepted input stored losslessly, the index, crash safety, bad input."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading

import numpy as np
import PIL.Image
import pytest
import torch

import epochal
from epochal import _media_convert, media
from epochal._media_store import INDEX_FILE, read_index
from epochal.store import read_metrics

PROJECT = "media"


def pixels(height: int = 24, width: int = 32, channels: int | None = 3, seed: int = 0) -> np.ndarray:
    shape = (height, width) if channels is None else (height, width, channels)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def decode(path) -> np.ndarray:
    with PIL.Image.open(path) as image:
        assert image.format == "PNG"
        return np.array(image)


def new_run(**kwargs):
    return epochal.init(project=PROJECT, system_interval=0, **kwargs)


def test_images_of_every_kind_are_stored_losslessly(tmp_path):
    hwc, gray, rgba = pixels(), pixels(channels=None, seed=1), pixels(channels=4, seed=2)
    chw = pixels(seed=3).transpose(2, 0, 1).copy()
    floats = np.linspace(0, 1, 24 * 32).reshape(24, 32)
    pil = PIL.Image.fromarray(pixels(seed=4))
    tensor = torch.from_numpy(pixels(seed=5)).permute(2, 0, 1)  # CHW uint8, non-contiguous
    jpeg = tmp_path / "photo.jpg"
    pil.save(jpeg, format="JPEG")
    png = tmp_path / "plot.png"
    PIL.Image.fromarray(pixels(seed=6)).save(png)

    with new_run() as run:
        run.log({"loss": 0.5, "img/hwc": epochal.Image(hwc, caption="hwc")}, step=0)
        run.log({"img/gray": epochal.Image(gray), "img/rgba": epochal.Image(rgba), "img/chw": epochal.Image(chw),
                 "img/float": epochal.Image(floats), "img/pil": epochal.Image(pil),
                 "img/torch": epochal.Image(tensor), "img/jpeg": epochal.Image(str(jpeg)),
                 "img/png": epochal.Image(png), "img/one": epochal.Image(hwc[:, :, :1])}, step=1)
    frame = epochal.open_run(run.id).media()
    paths = dict(zip(frame["key"], frame["path"]))
    assert (decode(paths["img/hwc"]) == hwc).all()
    assert (decode(paths["img/gray"]) == gray).all()
    assert (decode(paths["img/rgba"]) == rgba).all()
    assert (decode(paths["img/chw"]) == chw.transpose(1, 2, 0)).all()
    assert (decode(paths["img/float"]) == np.round(floats * 255).astype(np.uint8)).all()
    assert (decode(paths["img/pil"]) == np.array(pil)).all()
    assert (decode(paths["img/torch"]) == tensor.permute(1, 2, 0).numpy()).all()
    assert (decode(paths["img/one"]) == hwc[:, :, 0]).all()
    assert open(paths["img/jpeg"], "rb").read() == jpeg.read_bytes() and paths["img/jpeg"].endswith("/1-0.jpg")
    assert open(paths["img/png"], "rb").read() == png.read_bytes()
    assert frame.loc[frame["key"] == "img/hwc", "caption"].tolist() == ["hwc"]
    assert [r["loss"] for r in read_metrics(run.dir)[0]] == [0.5]  # media leave the metrics alone
    assert run.step == 2


def test_index_lists_every_file_with_its_hash(run_root):
    batch = [pixels(seed=s) for s in range(3)]
    with new_run() as run:
        run.log({"val/samples": [epochal.Image(b, caption=f"#{i}") for i, b in enumerate(batch)]}, step=4)
        run.log({"val/samples": epochal.Image(batch[0])}, step=4)  # the same step again: a new file
        run.log({"notes/md": epochal.Text("**bold** at http://user:secret@host/x")})
    rows = read_index(run.dir)
    assert [(r["key"], r["step"], r["file"], r["caption"]) for r in rows] == [
        ("val/samples", 4, "media/val/samples/4-0.png", "#0"),
        ("val/samples", 4, "media/val/samples/4-1.png", "#1"),
        ("val/samples", 4, "media/val/samples/4-2.png", "#2"),
        ("val/samples", 4, "media/val/samples/4-3.png", None),
        ("notes/md", 5, "media/notes/md/5-0.md", None),
    ]
    import hashlib

    for row in rows:
        assert hashlib.sha256((run.dir / row["file"]).read_bytes()).hexdigest() == row["sha256"]
        assert row["type"] in ("image", "text") and isinstance(row["time"], float)
    assert (run.dir / "media/notes/md/5-0.md").read_text() == "**bold** at http://***@host/x"
    assert [r["width"] for r in rows[:4]] == [32] * 4
    assert sorted(os.listdir(run.dir / "media/val/samples")) == [f"4-{n}.png" for n in range(4)]  # no temp files


def test_histogram_values_and_precomputed_bins(run_root):
    values = np.random.default_rng(0).normal(size=10_000).astype(np.float32)
    with_nan = np.array([1.0, 2.0, np.nan, np.inf, 3.0])
    with new_run() as run:
        run.log({"w/normal": epochal.Histogram(values, bins=20), "w/tensor": epochal.Histogram(torch.arange(10.0)),
                 "w/nan": epochal.Histogram(with_nan, bins=2),
                 "w/given": epochal.Histogram(counts=[1, 2, 3], edges=[0.0, 1.0, 2.5, 4.0])}, step=7)
    stored = {k: json.loads(open(p).read()) for k, p in epochal.open_run(run.id).media()[["key", "path"]].values}
    counts, edges = np.histogram(values, bins=20)
    assert stored["w/normal"]["counts"] == counts.tolist() and np.allclose(stored["w/normal"]["edges"], edges)
    assert sum(stored["w/tensor"]["counts"]) == 10 and len(stored["w/tensor"]["counts"]) == 64
    assert stored["w/nan"] == {"edges": [1.0, 2.0, 3.0], "counts": [1.0, 2.0], "nonfinite": 2}
    assert stored["w/given"] == {"edges": [0.0, 1.0, 2.5, 4.0], "counts": [1.0, 2.0, 3.0], "nonfinite": 0}


def test_figure_is_drawn_on_the_calling_thread(run_root):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1.5), dpi=50)
    ax.imshow(np.zeros((4, 4)))
    drawn_on = []
    fig.canvas.mpl_connect("draw_event", lambda event: drawn_on.append(threading.current_thread()))
    with new_run() as run:
        run.log({"fig": epochal.Image(fig, caption="zeros")})
        assert drawn_on == [threading.main_thread()]
        ax.set_title("changed after log")  # the logged image is the figure as it was
    image = decode(epochal.open_run(run.id).media("fig")["path"][0])
    assert image.shape == (75, 100, 4)
    plt.close(fig)


def test_the_copy_is_taken_at_log(run_root):
    array = pixels()
    expected = array.copy()
    with new_run() as run:
        run.log({"img": epochal.Image(array)})
        array[:] = 0  # the caller reuses its buffer at once
    assert (decode(epochal.open_run(run.id).media()["path"][0]) == expected).all()


def test_non_owner_rank_and_disabled_run_write_nothing(run_root):
    run = epochal.init(project=PROJECT, mode="disabled")
    run.log({"img": epochal.Image(pixels())})
    run.finish()
    run = epochal.Run(project=PROJECT, root=run_root, run_id="rank1", rank=1, world_size=2, system_interval=0)
    run.log({"img": epochal.Image(pixels()), "loss": 1.0})
    run.finish()
    assert not (run.dir / "media").exists()


BAD_IMAGES = [
    (np.zeros((2, 3, 4, 5, 6), np.uint8), ValueError, r"HW, HWC or CHW with 1, 3 or 4 channels.*\(2, 3, 4, 5, 6\)"),
    (np.zeros((8, 8, 10), np.uint8), ValueError, r"HW, HWC or CHW.*\(8, 8, 10\)"),
    (np.zeros((4, 8, 8, 3), np.uint8), ValueError, r"as a list of images"),
    (np.zeros((0, 8), np.uint8), ValueError, r"empty"),
    (np.full((4, 4), np.nan), ValueError, r"NaN or infinite"),
    (np.full((4, 4), 2.0), ValueError, r"must be in \[0, 1\].*divide by 255"),
    (np.full((4, 4), 300, np.int32), ValueError, r"0-255"),
    (np.array([[object(), object()]]), TypeError, r"dtype object"),
    (np.zeros((4, 4), np.complex64), TypeError, r"dtype complex64"),
    (torch.zeros(2, 3, 4, 5, 6), ValueError, r"HW, HWC or CHW"),
    ("no/such/file.png", FileNotFoundError, r"cannot read image file"),
    (np.zeros((5001, 5000), np.uint8), ValueError, r"over the limit of 25,000,000"),
    (PIL.Image.new("RGB", (0, 4)), ValueError, r"PIL image of 0x4 pixels is empty"),
]


@pytest.mark.parametrize("data, error, message", BAD_IMAGES, ids=[str(i) for i in range(len(BAD_IMAGES))])
def test_bad_images_raise_naming_the_key_before_anything_is_written(run_root, data, error, message):
    with new_run() as run:
        with pytest.raises(error, match=message) as info:
            run.log({"loss": 1.0, "good": epochal.Image(pixels()), "val/bad": epochal.Image(data)})
        assert "media 'val/bad'" in str(info.value)
        run.log({"loss": 2.0})
    assert [r["loss"] for r in read_metrics(run.dir)[0]] == [2.0]  # nothing of the bad call was recorded
    assert read_index(run.dir) == [] and run.step == 1


def test_bad_files_batches_keys_and_captions(run_root, tmp_path):
    text_file = tmp_path / "notes.png"
    text_file.write_text("not an image")
    cases = [
        ({"a": epochal.Image(text_file)}, ValueError, r"media 'a': .*not a PNG or JPEG"),
        ({"a": [epochal.Image(pixels()), epochal.Text("x")]}, TypeError, r"media 'a': a list may hold only"),
        ({"a": [epochal.Image(pixels())] * (media.MAX_BATCH + 1)}, ValueError, r"at most 256"),
        ({"a": epochal.Image(pixels(), caption=3)}, TypeError, r"media 'a': caption must be a str"),
        ({"a b": epochal.Image(pixels())}, ValueError, r"media key 'a b'"),
        ({"../up": epochal.Image(pixels())}, ValueError, r"'\.\.'"),
        ({"a/.hidden": epochal.Image(pixels())}, ValueError, r"media key 'a/.hidden'"),
    ]
    with new_run() as run:
        for values, error, message in cases:
            with pytest.raises(error, match=message):
                run.log(values)
    assert read_index(run.dir) == [] and not (run.dir / "media").exists()


@pytest.mark.parametrize("hist, error, message", [
    (epochal.Histogram([]), ValueError, r"media 'h': histogram values is empty"),
    (epochal.Histogram(np.array(["a", "b"])), TypeError, r"media 'h': histogram values has dtype <U1"),
    (epochal.Histogram(np.array([object()])), TypeError, r"dtype object"),
    (epochal.Histogram([1.0, 2.0], bins=0), TypeError, r"bins must be an int from 1 to 10000"),
    (epochal.Histogram(counts=[1, 2], edges=[0, 1]), ValueError, r"len\(edges\) == len\(counts\) \+ 1"),
    (epochal.Histogram(counts=[1, -2], edges=[0, 1, 2]), ValueError, r"increasing, counts finite and >= 0"),
    (epochal.Histogram(counts=[1, 2], edges=[0, 2, 1]), ValueError, r"increasing"),
    (epochal.Histogram([1.0], counts=[1], edges=[0, 1]), TypeError, r"not both"),
    (epochal.Histogram(counts=[1]), TypeError, r"both counts= and edges="),
])
def test_bad_histograms(run_root, hist, error, message):
    with new_run() as run:
        with pytest.raises(error, match=message):
            run.log({"h": hist})
    assert read_index(run.dir) == []


def test_histogram_size_limit(run_root, monkeypatch):
    monkeypatch.setattr(_media_convert, "MAX_HISTOGRAM_VALUES", 100)
    with new_run() as run:
        with pytest.raises(ValueError, match=r"media 'h': 101 histogram values; at most 100"):
            run.log({"h": epochal.Histogram(np.zeros(101))})


@pytest.mark.parametrize("text, error, message", [
    (epochal.Text(b"bytes"), TypeError, r"media 't': Text takes a str"),
    (epochal.Text(""), ValueError, r"media 't': Text is empty"),
    (epochal.Text("x" * (media.MAX_TEXT_CHARS + 1)), ValueError, r"at most 1,000,000"),
])
def test_bad_texts(run_root, text, error, message):
    with new_run() as run:
        with pytest.raises(error, match=message):
            run.log({"t": text})
    assert read_index(run.dir) == []


def test_a_torn_index_line_is_skipped(run_root):
    with new_run() as run:
        run.log({"a": epochal.Text("one")})
        run.log({"a": epochal.Text("two")})
    with open(run.dir / INDEX_FILE, "a") as index:
        index.write('{"step": 9, "key": "a", "ty')  # a crash mid-line
    assert [r["step"] for r in read_index(run.dir)] == [0, 1]
    with new_run(id=run.id, resume=True) as again:
        again.log({"a": epochal.Text("three")})
    assert [r["step"] for r in read_index(run.dir)] == [0, 1, 2]


def test_index_never_names_a_file_outside_the_run(run_root):
    with new_run() as run:
        run.log({"a": epochal.Text("one")})
    with open(run.dir / INDEX_FILE, "a") as index:
        index.write(json.dumps({"step": 1, "key": "a", "type": "text", "file": "media/../../../etc/passwd"}) + "\n")
        index.write(json.dumps({"step": 1, "key": "a", "type": "text", "file": "/etc/passwd"}) + "\n")
    assert len(read_index(run.dir)) == 1


def test_symlinked_media_folder_is_not_followed(run_root, tmp_path, caplog):
    outside = tmp_path / "outside"
    outside.mkdir()
    run = new_run()
    (run.dir / "media").symlink_to(outside, target_is_directory=True)
    with caplog.at_level("WARNING", logger="epochal"):
        run.log({"a": epochal.Text("escape?")})
        run.log({"loss": 1.0})
        run.finish()
    assert list(outside.iterdir()) == []
    assert "media 'a' at step 0 not stored" in caplog.text and run.failures == {}
    assert [r["loss"] for r in read_metrics(run.dir)[0]] == [1.0]


def test_missing_pillow_names_the_extra(run_root):
    code = ("import sys; sys.modules['PIL'] = None; sys.modules['PIL.Image'] = None\n"
            "import numpy, epochal\n"
            "run = epochal.init(project='p', system_interval=0)\n"
            "try:\n    run.log({'img': epochal.Image(numpy.zeros((4, 4), 'uint8'))})\n"
            "except ImportError as exc:\n    print(exc)\n"
            "run.finish()\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "EPOCHAL_DIR": str(run_root)}).stdout
    assert "media 'img': logging images needs Pillow: pip install 'epochal[media]'" in out


def test_import_epochal_loads_no_media_library():
    code = "import sys, epochal; print([m for m in ('PIL', 'matplotlib', 'numpy') if m in sys.modules])"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "[]"


def test_cli_show_lists_media_keys(run_root, capsys):
    from epochal.cli import main

    with new_run() as run:
        run.log({"img": [epochal.Image(pixels()), epochal.Image(pixels())], "h": epochal.Histogram([1, 2])})
        run.log({"img": epochal.Image(pixels())})
    assert main(["show", run.id, "--dir", str(run_root)]) == 0
    out = capsys.readouterr().out
    assert "\nmedia\n  h  histogram  1 file(s)\n  img  image  3 file(s)\n" in out
    assert main(["show", run.id, "--dir", str(run_root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["media"] == {"h": {"type": "histogram", "files": 1},
                                                             "img": {"type": "image", "files": 3}}


def test_png_bytes_decode_to_logged_pixels():
    item = media.prepare("k", epochal.Image(pixels()), 0, 0.0).items[0]
    assert item.ext == "png" and (item.width, item.height) == (32, 24)
    assert (np.array(PIL.Image.open(io.BytesIO(item.data()))) == pixels()).all()
    assert item.data() is item.data()  # encoded once, whoever asks


def test_media_past_the_backlog_budget_are_dropped_with_a_warning(run_root, monkeypatch, caplog):
    before = media._backlog.bytes
    monkeypatch.setattr(media, "MAX_BACKLOG_BYTES", before + 2 * pixels().nbytes)  # room for two copies
    run = new_run(flush_interval=1000)  # the writer sleeps: nothing is encoded until flush
    with caplog.at_level("WARNING", logger="epochal"):
        for step in range(4):
            run.log({"img": epochal.Image(pixels(seed=step)), "loss": float(step)}, step=step)
        assert caplog.text.count("dropped") == 1 and "'img' at step 2 dropped" in caplog.text
        run.flush()
        assert media._backlog.bytes == before  # encoded and written: the room is back
        run.log({"img": epochal.Image(pixels(seed=9))}, step=4)
        run.finish()
    assert [r["step"] for r in read_index(run.dir)] == [0, 1, 4]
    assert [r["loss"] for r in read_metrics(run.dir)[0]] == [0.0, 1.0, 2.0, 3.0]  # the metrics all stay
    assert media._backlog.bytes == before
