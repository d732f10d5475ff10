"""Keras 3 with epochal: a tiny classifier tracked by ``EpochalCallback``, on any backend.

    python examples/keras_example.py [--dir ./epochal-runs]
    KERAS_BACKEND=jax python examples/keras_example.py

Uses the torch backend unless KERAS_BACKEND is set (tensorflow is never needed). Synthetic
data, a few seconds on a laptop CPU. Prints where the run went and what it holds (metrics,
weight histograms per epoch, the best checkpoint).
"""

from __future__ import annotations

import argparse
import os
import tempfile

os.environ.setdefault("KERAS_BACKEND", "torch")  # must precede `import keras`

import keras  # noqa: E402
import numpy as np  # noqa: E402

from epochal.integrations.keras import EpochalCallback  # noqa: E402
from epochal.store import read_json, read_metrics  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=None, help="run root (default: $EPOCHAL_DIR or ./epochal-runs)")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 16)).astype("float32")
    y = (x[:, :4].sum(axis=1) > 0).astype("int32")
    x_test = rng.normal(size=(128, 16)).astype("float32")
    y_test = (x_test[:, :4].sum(axis=1) > 0).astype("int32")

    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(2, activation="softmax")])
    schedule = keras.optimizers.schedules.ExponentialDecay(0.01, decay_steps=16, decay_rate=0.7)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])

    tracker = EpochalCallback(project=os.environ.get("EPOCHAL_PROJECT", "keras-example"),
                              name=f"dense-{keras.backend.backend()}", dir=args.dir, log_every_n_batches=4,
                              histogram_freq=1)  # weight histograms each epoch (TensorBoard's Histograms tab)
    with tempfile.TemporaryDirectory() as tmp:  # the checkpoint's own folder; the best one is stored at the end
        callbacks = [
            keras.callbacks.ModelCheckpoint(os.path.join(tmp, "best.keras"), monitor="val_accuracy",
                                            save_best_only=True),
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=2),
            tracker,
        ]
        model.fit(x, y, batch_size=32, epochs=5, validation_split=0.2, callbacks=callbacks, verbose=2)
    # the run finished with the fit; evaluate() reopens it for test/* in the summary, then finishes it again
    model.evaluate(x_test, y_test, callbacks=[tracker], verbose=0)

    run = tracker.run
    summary = read_json(run.dir / "summary.json", {})
    points = read_metrics(run.dir)[0]
    manifest = read_json(run.dir / "artifacts" / "manifest.json", {}).get("artifacts", {})
    print(f"\nrun {run.id} ({read_json(run.dir / 'run.json')['status']}) stored in {run.dir}")
    print(f"  {len(points)} metric points; summary:",
          {k: round(v, 4) for k, v in summary.items() if isinstance(v, float)})
    for name, item in manifest.items():
        print(f"  artifact {name}: {len(item['versions'])} version(s), aliases {item['aliases']}")
    print(f"read it back: epochal.open_run({run.id!r}, dir={str(run.root)!r}).history()")


if __name__ == "__main__":
    main()
