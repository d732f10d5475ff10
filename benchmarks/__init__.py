"""Side-by-side benchmarks of epochal against the anchors (wandb, mlflow, trackio, dvclive, TensorBoard).

Run everything with ``python -m benchmarks`` (``--quick`` for a smoke run, ``--only hotpath,import``
for some topics). Each measurement runs in a fresh interpreter (:mod:`benchmarks._harness`), so one
tracker's imports, threads and failures never touch another's figures.

Topics, one module each, each exposing ``run(quick: bool) -> Report``:
``hotpath``, ``imports``, ``readback``, ``rss``, ``sampler``, ``listing``, ``export``, and
``lightning`` (from ``benchmarks/lightning_overhead.py``, when present).
"""

__all__: list[str] = []
