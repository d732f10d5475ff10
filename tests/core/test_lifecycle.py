"""The lifecycle every integration calls: which run, guards, ending, exit failure, markers, checkpoints."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading

import pytest

import epochal
from epochal.artifacts import list_versions, read_manifest
from epochal.checkpoints import CheckpointPolicy, detach
from epochal.lifecycle import Tracking, check_init_args, marker, owned_by, read_marker, write_marker


def _status(run) -> str:
    return json.loads((run.dir / "run.json").read_text())["status"]


def test_injected_run_is_used_and_never_finished():
    run = epochal.init(project="p")
    tracking = Tracking("fw", run=run)
    assert tracking.start() is run and not tracking.owns
    tracking.end()
    assert not run._finished
    run.finish()


def test_user_run_is_adopted_unless_the_integration_got_init_arguments():
    with epochal.init(project="user") as user:
        adopted = Tracking("fw")
        assert adopted.start() is user and not adopted.owns
        adopted.end()
        assert not user._finished  # the user's run is the user's to finish
        own = Tracking("fw", project="own")
        run = own.start()
        assert run is not user and own.owns and run.project == "own"
        own.end()
        assert _status(run) == "finished"


def test_an_integrations_own_run_is_never_adopted_by_another_or_by_another_thread():
    first = Tracking("keras", project="a")
    run_a = first.start()
    assert owned_by(run_a) == "keras"
    second = Tracking("sklearn", project="b")
    run_b = second.start()
    found = {}
    thread = threading.Thread(target=lambda: found.setdefault("run", Tracking("sklearn").start()))
    thread.start()
    thread.join()
    assert len({run_a.id, run_b.id, found["run"].id}) == 3
    for t in (first, second):
        t.end()
    found["run"].finish()


def test_end_with_an_error_marks_an_own_run_failed_with_the_traceback():
    tracking = Tracking("fw")
    run = tracking.start(name="n")
    try:
        raise RuntimeError("boom in training")
    except RuntimeError as exc:
        tracking.end(error=exc)
    meta = json.loads((run.dir / "run.json").read_text())
    assert meta["status"] == "failed" and "boom in training" in meta["error"] and meta["name"] == "n"


def test_a_training_that_never_ends_reads_failed_after_exit(tmp_path):
    code = (
        "import epochal\n"
        "from epochal.lifecycle import Tracking\n"
        f"t = Tracking('fw', dir={str(tmp_path)!r}, project='p', id='r1')\n"
        "t.start()\n"
        "try:\n"
        "    raise ValueError('caught by the program')\n"
        "except ValueError:\n"
        "    pass\n"
    )
    code_dropped = code.replace("r1", "r2").replace("t.start()\n", "t.start()\ndel t\nimport gc; gc.collect()\n")
    for program in (code, code_dropped):  # also when the callback holding the Tracking was dropped
        subprocess.run([sys.executable, "-c", program], check=True, timeout=120)
    for run_id in ("r1", "r2"):
        meta = json.loads((tmp_path / "p" / run_id / "run.json").read_text())
        assert meta["status"] == "failed" and "training did not end" in meta["error"]


def test_reopen_resumes_the_own_run_and_closes_it_again():
    tracking = Tracking("keras")
    run = tracking.start()
    run.log({"train/loss": 1.0})
    tracking.end()
    again = tracking.reopen()
    assert again.id == run.id and _status(again) == "running"
    again.log({"test/loss": 0.5})
    tracking.end()
    assert _status(again) == "finished"
    assert epochal.open_run(run.id, project=run.project).history()["train/loss"].notna().any()


def test_reopen_takes_init_settings_but_keeps_the_runs_identity():
    tracking = Tracking("sklearn")
    run = tracking.start(project="p", system_interval=0)
    tracking.end()
    again = tracking.reopen(system_interval=0, project="other", id="elsewhere")
    assert (again.id, again.project, again.root) == (run.id, run.project, run.root)
    assert again._sampler is None  # system_interval=0 reached the reopened handle
    tracking.end()
    assert _status(again) == "finished"


def test_guard_swallows_and_warns_once_per_place(caplog):
    tracking = Tracking("fw")
    with caplog.at_level(logging.WARNING, logger="epochal"):
        for _ in range(3):
            with tracking.guard("on_epoch_end"):
                raise KeyError("x")
        assert tracking.call("other", lambda: 1 / 0) is None
        assert tracking.call("other", lambda: 3) == 3
    messages = [r.getMessage() for r in caplog.records]
    assert sum("on_epoch_end" in m for m in messages) == 1
    assert sum("other" in m for m in messages) == 1


def test_init_arguments_are_checked_once_with_a_clear_error():
    with pytest.raises(TypeError, match=r"\['projekt'\].*epochal.init"):
        check_init_args("EpochalCallback", {"projekt": "x"})
    with pytest.raises(TypeError, match="either run= or"):
        Tracking("fw", run=epochal.init(), project="p")


def test_an_unopenable_run_gives_a_disabled_run_and_training_goes_on(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    run = Tracking("fw", dir=str(blocker)).start()
    assert run.disabled
    run.log({"a": 1})


def test_markers_round_trip_through_dicts_and_folders(tmp_path):
    run = epochal.init(project="p")
    checkpoint = {"state_dict": {}, "epochal": marker(run)}
    assert read_marker(checkpoint, "p") == {"project": "p", "id": run.id, "root": str(run.root)}
    assert read_marker(checkpoint, "other") is None
    write_marker(tmp_path, run)
    assert read_marker(tmp_path)["id"] == run.id
    assert read_marker({"epochal": {"p": run.id}}, "p")["id"] == run.id  # the earlier Lightning form
    for bad in ({"epochal": {"id": "../escape"}}, {"epochal": 5}, {}, tmp_path / "missing", None):
        assert read_marker(bad) is None
    run.finish()


def test_start_with_a_marker_reopens_that_run():
    first = Tracking("fw")
    run = first.start()
    run.log({"train/loss": 2.0}, step=10)
    saved = marker(run)
    first.end()
    second = Tracking("fw")
    again = second.start(resume=saved)
    assert again.id == run.id and again.step == 11
    second.end()


@pytest.mark.parametrize("mode, stored, best_alias", [
    ("best", ["b.ckpt"], "b.ckpt"), ("last", ["c.ckpt"], None), ("all", ["a.ckpt", "b.ckpt", "c.ckpt"], "b.ckpt"),
    (False, [], None),
])
def test_checkpoint_policy(tmp_path, mode, stored, best_alias):
    run = epochal.init(project="p")
    policy = CheckpointPolicy(mode)
    for name, best in (("a.ckpt", True), ("b.ckpt", True), ("c.ckpt", False)):
        path = tmp_path / name
        path.write_bytes(name.encode() * 100)
        policy.saved(run, path, best=best, metadata={"score": 1.0})
    policy.end(run)
    run.flush()  # artifacts are filed on the store's lane
    versions = [v for v in list_versions(run.dir) if v.name == "model"]
    assert [v.metadata["filename"] for v in versions] == stored
    aliases = read_manifest(run.dir)["artifacts"].get("model", {}).get("aliases", {})
    if best_alias:
        best = next(v for v in versions if v.version == aliases["best"])
        assert best.metadata["filename"] == best_alias
    if mode in ("best", "last"):  # recorded at the end: hardlinked, no second copy
        stored_file = run.dir / versions[0].path
        assert os.stat(stored_file).st_ino == os.stat(tmp_path / stored[0]).st_ino
    run.finish()


def test_checkpoint_policy_without_a_monitor_keeps_the_last(tmp_path):
    run = epochal.init(project="p")
    policy = CheckpointPolicy()
    assert not policy.seen
    for name in ("a.ckpt", "b.ckpt"):
        (tmp_path / name).write_text(name)
        policy.saved(run, tmp_path / name)
    assert policy.seen  # the framework saved something: the integration need not save one itself
    policy.end(run)
    run.flush()
    assert [v.metadata["filename"] for v in list_versions(run.dir)] == ["b.ckpt"]
    policy.begin()  # the next training: nothing of the last one is recorded again
    assert not policy.seen and policy.end(run) is None
    run.finish()


def test_checkpoint_policy_rejects_unknown_modes():
    with pytest.raises(ValueError, match="'best', 'last', 'all' or False"):
        CheckpointPolicy("sometimes")
    assert CheckpointPolicy(True).mode == "best"
    with pytest.raises(ValueError, match="keep_last"):
        CheckpointPolicy(keep_last=0)


def test_a_pickled_tracking_hands_its_run_over_and_one_handle_per_run_stays_open():
    import pickle

    tracking = Tracking("fw", project="p")
    run = tracking.start()
    run.log({"train/loss": 1.0}, step=4)
    run.log_native({"loss": 2.0}, step=5)
    copy = pickle.loads(pickle.dumps(tracking))
    assert run._finished and _status(run) == "running"  # this handle is closed, the run is not ended
    again = copy.start(resume=marker(run))
    assert again.id == run.id and again.step == 6 and copy.owns
    third = Tracking("fw", project="p")
    assert third.start(resume=marker(run)) is again and third.owns and not copy.owns  # taken, not a second handle
    again.log({"train/loss": 0.5})
    copy.end()
    assert not again._finished
    third.end()
    meta = json.loads((run.dir / "run.json").read_text())
    assert meta["status"] == "finished" and meta["last_step"] == 6
    assert meta["name_map"] == {"train/loss": "loss"} and meta["metric_names"] == ["train/loss"]


def test_a_run_replaced_by_a_checkpoints_run_is_deleted_only_if_empty(tmp_path):
    stored = Tracking("fw", project="p", dir=str(tmp_path))
    old = stored.start()
    old.log({"train/loss": 1.0})
    stored.end()
    tracking = Tracking("fw", project="p", dir=str(tmp_path))
    empty = tracking.start()
    assert tracking.start(resume=marker(old)).id == old.id
    assert not empty.dir.exists()
    used = Tracking("fw", project="p", dir=str(tmp_path))
    full = used.start()
    full.log({"train/loss": 1.0})
    assert used.start(resume=marker(old)).id == old.id and full.dir.exists()
    tracking.end()
    used.end()


def test_earlier_hugging_face_marker_names_its_root_dir(tmp_path):
    assert read_marker({"epochal": {"id": "r1", "project": "p", "dir": "/x"}})["root"] == "/x"


def test_checkpoint_policy_stores_folders_and_forgets_a_finished_training(tmp_path):
    run = epochal.init(project="p")
    folder = tmp_path / "checkpoint-4"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"w" * 64)
    policy = CheckpointPolicy("best")
    policy.saved(run, folder)
    assert policy.end(run) is not None
    assert policy.end(run) is None  # a later evaluate() ends without recording it twice
    run.flush()
    assert [v.metadata["filename"] for v in list_versions(run.dir)] == ["checkpoint-4"]
    run.finish()


def test_plain_hyperparameters():
    import dataclasses
    import enum
    from argparse import Namespace

    from epochal.values import plain

    class Mode(enum.Enum):
        FAST = "fast"

    @dataclasses.dataclass
    class Optim:
        betas: tuple = (0.9, 0.99)

    assert plain(Namespace(a=1, o=Optim(), m=Mode.FAST, s={"v", "q"}, n=Namespace(x=None))) == {
        "a": 1, "o": {"betas": [0.9, 0.99]}, "m": "fast", "s": ["q", "v"], "n": {"x": None}}


def test_a_marker_naming_the_users_open_run_borrows_it():
    with epochal.init(project="p") as user:
        tracking = Tracking("fw", project="p")
        assert tracking.start(resume=marker(user)) is user and not tracking.owns
        tracking.end()
        assert not user._finished


def test_detach_keeps_a_linked_checkpoint_intact_when_the_framework_rewrites_it(tmp_path):
    run = epochal.init(project="p")
    path = tmp_path / "best.ckpt"
    path.write_bytes(b"epoch 1" * 100)
    policy = CheckpointPolicy()
    policy.saved(run, path, best=True)
    policy.end(run)
    run.finish()
    stored = run.dir / list_versions(run.dir)[0].path
    assert os.stat(stored).st_ino == os.stat(path).st_ino  # recorded without a second copy
    detach(path)
    assert os.stat(stored).st_ino != os.stat(path).st_ino
    with open(path, "wb") as handle:  # what the framework does next: rewrite in place
        handle.write(b"epoch 2")
    assert stored.read_bytes() == b"epoch 1" * 100
    detach(tmp_path / "missing.ckpt")  # nothing there: nothing to do
