"""Bad input: each case a clear error naming the key (or a documented coercion); the run stays readable."""

from __future__ import annotations

import pytest

import epochal
from epochal.store import read_json, read_metrics

BAD_METRICS = [
    ({"": 1.0}, ValueError, "empty"),
    ({" loss": 1.0}, ValueError, "spaces"),
    ({"a\nb": 1.0}, ValueError, "control character"),
    ({"a/../b": 1.0}, ValueError, r"'\.\.'"),
    ({"../up": 1.0}, ValueError, "segment"),
    ({"/abs": 1.0}, ValueError, "segment"),
    ({"x" * 300: 1.0}, ValueError, "300 characters"),
    ({1: 1.0}, TypeError, "use a str"),
    ({"step": 1.0}, ValueError, "reserved"),
    ({"text": "hello"}, TypeError, "'text' is a string"),
    ({"vec": [1.0, 2.0]}, TypeError, "'vec' is a list"),
    ({"none": None}, TypeError, "'none' is a NoneType"),
    ({"cplx": 1j}, TypeError, "'cplx' is a complex"),
]


@pytest.mark.parametrize("metrics, error, message", BAD_METRICS)
def test_bad_metric_raises_clear_error_before_anything_is_written(metrics, error, message):
    run = epochal.init(system_interval=0)
    run.log({"good": 1.0})
    with pytest.raises(error, match=message):
        run.log({"also_good": 2.0, **metrics})
    run.log({"good": 3.0})
    run.finish()
    rows = read_metrics(run.dir)[0]
    assert [r["good"] for r in rows] == [1.0, 3.0]  # the bad call recorded nothing, not even its good key
    assert [r["step"] for r in rows] == [0, 1]  # and consumed no step
    assert read_json(run.dir / "run.json")["status"] == "finished"


def test_array_values_are_refused_with_shape():
    import numpy as np
    import torch
    run = epochal.init(system_interval=0)
    with pytest.raises(TypeError, match=r"'arr' is an array of shape \(3,\)"):
        run.log({"arr": np.zeros(3)})
    with pytest.raises(TypeError, match=r"'t' is an array of shape \(2, 2\)"):
        run.log({"t": torch.zeros(2, 2)})
    run.finish()


@pytest.mark.parametrize("step, error", [(-1, ValueError), (1.5, ValueError), ("3", TypeError)])
def test_bad_steps(step, error):
    run = epochal.init(system_interval=0)
    with pytest.raises(error, match="step"):
        run.log({"a": 1.0}, step=step)
    run.log({"a": 1.0}, step=2.0)  # documented coercion: a whole float is an int step
    run.finish()
    assert read_metrics(run.dir)[0][0]["step"] == 2


def test_non_mapping_is_refused():
    run = epochal.init(system_interval=0)
    with pytest.raises(TypeError, match="mapping"):
        run.log(3.0)
    run.finish()


@pytest.mark.parametrize("field, value", [("id", "../escape"), ("id", "a/b"), ("project", ".."), ("project", "x\x00")])
def test_bad_ids_and_projects(field, value, run_root):
    with pytest.raises(ValueError, match="not usable as a folder name"):
        epochal.init(**{field: value}, system_interval=0)
    assert not any(p.name == "escape" for p in run_root.parent.rglob("*"))


def test_unknown_sink_and_mode():
    with pytest.raises(ValueError, match="unknown sink"):
        epochal.init(sinks=["nope"], system_interval=0)
    with pytest.raises(ValueError, match="mode"):
        epochal.init(mode="sometimes", system_interval=0)
