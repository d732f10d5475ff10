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


# -- issue 11 item 9: documented coercions and clear errors at the int64 / float64 limits ------------
def test_one_element_arrays_count_as_their_element():
    import numpy as np
    import torch

    run = epochal.init(system_interval=0)
    run.log({"a": np.array([4.5]), "t": torch.tensor([3.5])})
    run.log({"a": np.array([[1]]), "t": torch.tensor([[2.0]])})  # known names, one element each
    run.finish()
    rows = read_metrics(run.dir)[0]
    assert [(r["a"], r["t"]) for r in rows] == [(4.5, 3.5), (1.0, 2.0)]


@pytest.mark.parametrize("known", [False, True])
def test_an_int_beyond_float64_is_a_value_error_naming_the_key(known):
    run = epochal.init(system_interval=0)
    if known:
        run.log({"big": 1.0})
    with pytest.raises(ValueError, match=r"metric 'big' is an int of 1329 bits, beyond float64"):
        run.log({"big": 10**400})
    run.log({"big": 2.0})
    run.finish()
    assert [r["big"] for r in read_metrics(run.dir)[0]] == ([1.0, 2.0] if known else [2.0])


def test_steps_beyond_int64_name_the_largest_step_allowed():
    run = epochal.init(system_interval=0)
    with pytest.raises(ValueError, match=r"step 9223372036854775808 is beyond the largest step allowed, "
                                         r"9223372036854775807"):
        run.log({"a": 1.0}, step=2**63)
    with pytest.raises(ValueError, match="largest step allowed"):
        run.log({"a": 1.0}, step=1e30)
    run.log({"a": 1.0}, step=2**63 - 1)
    with pytest.raises(ValueError, match=r"largest step allowed.*automatic step"):
        run.log({"a": 2.0})
    run.log({"a": 3.0}, step=5)
    run.finish()
    assert [(r["step"], r["a"]) for r in read_metrics(run.dir)[0]] == [(2**63 - 1, 1.0), (5, 3.0)]
    assert read_json(run.dir / "run.json")["status"] == "finished"


def test_numpy_values_in_config_are_stored_as_their_json_type():
    import numpy as np

    run = epochal.init(config={"flag": np.bool_(True), "off": [np.bool_(False)], "lr": np.float32(0.5),
                               "n": np.int64(3)}, system_interval=0)
    run.finish()
    stored = read_json(run.dir / "config.json")
    assert stored == {"flag": True, "off": [False], "lr": 0.5, "n": 3}
    assert stored["flag"] is True and stored["off"][0] is False  # not 1 and 0


# -- issue 11 items 4 and 5: a config value never costs the run its metrics, nor init its run -------
def test_a_huge_int_in_config_loses_no_metric(caplog):
    run = epochal.init(config={"seed": 10**5000, "entropy": 2**128}, system_interval=0, flush_interval=0.05)
    for i in range(100):
        run.log({"loss": float(i)})
    run.config["later"] = -(10**30)
    run.finish()
    assert len(read_metrics(run.dir)[0]) == 100
    assert read_json(run.dir / "run.json")["status"] == "finished"
    assert read_json(run.dir / "config.json") == {
        "seed": "<int of 16610 bits>", "entropy": str(2**128), "later": str(-(10**30))}
    assert run.failures == {}
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "seed is an int outside the int64 range" in warned and "later is an int" in warned


class _ReprRaises:
    def __repr__(self):
        raise RuntimeError("user repr exploded")


def test_a_config_value_whose_repr_raises_becomes_a_placeholder(caplog):
    run = epochal.init(config={"model": {"head": _ReprRaises()}, "ok": 1}, system_interval=0)
    run.config["late"] = _ReprRaises()
    run.log({"loss": 1.0})
    run.finish()
    assert read_json(run.dir / "config.json") == {
        "model": {"head": "<unrepresentable _ReprRaises>"}, "ok": 1, "late": "<unrepresentable _ReprRaises>"}
    assert read_json(run.dir / "run.json")["status"] == "finished" and len(read_metrics(run.dir)[0]) == 1
    warned = [r.getMessage() for r in caplog.records if "unrepresentable" in r.getMessage()]
    assert any(m.startswith("epochal: model.head:") for m in warned) and any("late:" in m for m in warned)
