"""EpochalCallback(histogram_freq=N): weight histograms every N epochs, as keras.callbacks.TensorBoard writes them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import epochal

FIT = textwrap.dedent("""
    import sys, numpy as np, keras
    from epochal.integrations.keras import EpochalCallback
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="hidden"), keras.layers.Dense(1, name="out")])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, y, epochs=3, batch_size=16, verbose=0,
              callbacks=[EpochalCallback(project="kmedia", system_interval=0, histogram_freq=2)])
    np.savez(sys.argv[1], **{w.path: keras.ops.convert_to_numpy(w) for w in model.weights})
    try:
        EpochalCallback(histogram_freq=-1)
    except ValueError as exc:
        print(exc)
""")


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_weight_histograms_every_n_epochs(run_root, tmp_path, backend):
    final = tmp_path / "final.npz"
    env = {**os.environ, "KERAS_BACKEND": backend, "JAX_PLATFORMS": "cpu", "EPOCHAL_DIR": str(run_root)}
    done = subprocess.run([sys.executable, "-c", FIT, str(final)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "histogram_freq must be an int >= 0" in done.stdout
    reader = epochal.open_run(epochal.runs(project="kmedia")["id"][0], project="kmedia")
    media = reader.media()
    weights = dict(np.load(final))
    assert sorted(set(media["key"])) == sorted(f"weights/{path}" for path in weights)
    assert set(media["type"]) == {"histogram"}
    assert sorted(set(media["step"])) == [4, 12]  # after epochs 1 and 3: 4 optimizer steps per epoch
    assert [r["step"] for r in reader.records("train/loss")] == [4, 8, 12]
    last = media[media["step"] == 12]
    for key, path in zip(last["key"], last["path"]):
        bins = json.loads(open(path).read())
        counts, edges = np.histogram(weights[key[len("weights/"):]], bins=64)
        assert bins["counts"] == counts.tolist() and np.allclose(bins["edges"], edges)
