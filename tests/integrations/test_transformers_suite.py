"""Hugging Face's TrainerCallback suite (tests/trainer/test_trainer_callback.py), rewritten for EpochalCallback.

The cases that concern our callback: given as a class or an instance, added, removed and popped
like any callback; the Trainer's event flow unchanged by it; ``on_train_end`` ending the run once;
evaluate and predict around training.
"""

from __future__ import annotations

import logging

from test_transformers import Tokens, make_trainer, training_args
from transformers import DefaultFlowCallback, TrainerCallback

import epochal
from epochal.integrations.transformers import EpochalCallback
from epochal.store import read_json


class Recorder(TrainerCallback):
    """Every event the Trainer sends, in order."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def __getattribute__(self, name):
        if name.startswith("on_"):
            return lambda *args, **kwargs: self.events.append(name)
        return super().__getattribute__(name)


def ours(trainer) -> list[EpochalCallback]:
    return [cb for cb in trainer.callback_handler.callbacks if isinstance(cb, EpochalCallback)]


def runs(run_root, project="default") -> list[str]:
    folder = run_root / project
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_given_as_a_class_it_is_made_with_defaults_and_tracks(tmp_path, run_root):
    trainer = make_trainer(training_args(tmp_path / "out", eval_strategy="no"), EpochalCallback)
    (callback,) = ours(trainer)
    assert isinstance(callback, EpochalCallback) and DefaultFlowCallback in map(type, trainer.callback_handler.callbacks)
    trainer.train()
    assert runs(run_root) == [callback.run.id] and callback.run.config["training_args"]["max_steps"] == 6


def test_added_removed_and_popped_like_any_callback(tmp_path, run_root):
    args = training_args(tmp_path / "out", eval_strategy="no")
    trainer = make_trainer(args)
    trainer.add_callback(EpochalCallback)
    assert len(ours(trainer)) == 1
    trainer.remove_callback(EpochalCallback)
    assert ours(trainer) == []
    mine = EpochalCallback(project="mine")
    trainer.add_callback(mine)
    assert ours(trainer) == [mine]
    assert trainer.pop_callback(EpochalCallback) is mine and ours(trainer) == []
    trainer.add_callback(mine)
    trainer.remove_callback(mine)
    trainer.train()  # removed: nothing tracked
    assert mine.run is None and runs(run_root, "mine") == []


def test_a_duplicate_class_gets_the_trainers_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="transformers.trainer_callback"):
        trainer = make_trainer(training_args(tmp_path / "out"), EpochalCallback, EpochalCallback)
    assert "EpochalCallback" in caplog.text and len(ours(trainer)) == 2


def test_the_event_flow_is_unchanged_and_the_run_ends_once(tmp_path, run_root):
    args = dict(logging_steps=2, eval_steps=3, save_strategy="steps", save_steps=4)
    alone = Recorder()
    make_trainer(training_args(tmp_path / "a", **args), alone).train()
    beside, callback = Recorder(), EpochalCallback(project="flow")
    trainer = make_trainer(training_args(tmp_path / "b", **args), beside, callback)
    trainer.train()
    assert beside.events == alone.events and beside.events.count("on_train_end") == 1
    meta = read_json(callback.run.dir / "run.json")
    assert meta["status"] == "finished" and meta["resumed"] == 0
    run = epochal.open_run(callback.run.id, project="flow")
    logged = [e for e in trainer.state.log_history if "train_runtime" not in e]  # the last goes to the summary
    assert [r["step"] for r in run.records()] == [e["step"] for e in logged]
    assert beside.events.count("on_log") == len(trainer.state.log_history)
    assert run.summary["train_runtime"] == trainer.state.log_history[-1]["train_runtime"]


def test_evaluate_and_predict_before_and_after_training(tmp_path, run_root):
    recorder, callback = Recorder(), EpochalCallback(project="around")
    trainer = make_trainer(training_args(tmp_path / "out", eval_strategy="no"), recorder, callback)
    trainer.evaluate()  # before any training: a run of its own, closed after on_evaluate
    assert recorder.events[-2:] == ["on_log", "on_evaluate"]
    first = callback.run.id
    assert read_json(callback.run.dir / "run.json")["status"] == "finished"
    trainer.train()
    trainer.predict(Tokens(8, 3))
    assert recorder.events[-1] == "on_predict"
    assert read_json(callback.run.dir / "run.json")["status"] == "finished"
    assert callback.run.id != first and runs(run_root, "around") == sorted([first, callback.run.id])
    test_steps = [r["step"] for r in epochal.open_run(callback.run.id, project="around").records() if "test/loss" in r]
    assert test_steps == [6]
