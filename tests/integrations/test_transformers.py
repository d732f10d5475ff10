"""EpochalCallback with a real Hugging Face Trainer: a 2-layer BERT (vocab 100, hidden 32) on synthetic tokens."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
import transformers
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainerCallback, TrainingArguments

import epochal
from epochal.integrations import transformers as hf
from epochal.integrations.transformers import EpochalCallback
from epochal.lifecycle import MARKER_FILE
from epochal.store import read_json, read_jsonl, read_metrics

SECRET = "hf_SECRETsecret123456"


class Tokens(torch.utils.data.Dataset):
    """Synthetic token sequences; the label is whether the first token is in the upper half of the vocab."""

    def __init__(self, n: int, seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.x = torch.randint(0, 100, (n, 12), generator=gen)
        self.y = (self.x[:, 0] >= 50).long()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.x[i], "labels": self.y[i]}


def tiny_model() -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=16, num_labels=2)
    return BertForSequenceClassification(config)


def training_args(out: Path, **overrides) -> TrainingArguments:
    values = dict(
        output_dir=str(out), max_steps=6, per_device_train_batch_size=8, per_device_eval_batch_size=8,
        logging_steps=2, eval_strategy="steps", eval_steps=3, save_strategy="no", use_cpu=True,
        report_to="none", disable_tqdm=True, hub_token=SECRET, seed=0, dataloader_num_workers=0,
    )
    values.update(overrides)
    return TrainingArguments(**values)


def make_trainer(args: TrainingArguments, *callbacks, model=None) -> Trainer:
    return Trainer(model=model or tiny_model(), args=args, train_dataset=Tokens(64, 1), eval_dataset=Tokens(16, 2),
                   callbacks=list(callbacks))


def history(run_dir: Path) -> list[dict]:
    return read_metrics(run_dir)[0]


def points(records: list[dict], key: str) -> list[tuple[int, float, float]]:
    return [(r["step"], r[key], r["epoch"]) for r in records if key in r]


def hf_points(trainer: Trainer, key: str) -> list[tuple[int, float, float]]:
    return [(e["step"], e[key], e["epoch"]) for e in trainer.state.log_history if key in e]


def same_points(stored: list[tuple], logged: list[tuple]) -> bool:
    """Same steps exactly; values and epochs equal to float precision (whatever width the store keeps)."""
    return [s for s, _, _ in stored] == [s for s, _, _ in logged] and all(
        v == pytest.approx(w, rel=1e-6) and e == pytest.approx(f) for (_, v, e), (_, w, f) in zip(stored, logged)
    )


def test_history_config_summary_and_status(tmp_path):
    callback = EpochalCallback(project="hf", name="tiny-bert")
    trainer = make_trainer(training_args(tmp_path / "out"), callback)
    trainer.train()
    run_dir = callback.run.dir
    records = history(run_dir)

    keys = set().union(*records) - {"step", "time", "epoch"}
    assert {"train/loss", "val/loss", "lr", "train/grad_norm"} <= keys
    assert not keys & {"epoch", "loss", "eval_loss", "train_runtime", "train/runtime", "total_flos", "train_loss"}
    # steps are the Trainer's global steps, epochs ride on the points, values are the Trainer's own
    assert same_points(points(records, "train/loss"), hf_points(trainer, "loss"))
    assert [s for s, _, _ in points(records, "train/loss")] == [2, 4, 6]
    assert same_points(points(records, "val/loss"), hf_points(trainer, "eval_loss"))
    assert [s for s, _, _ in points(records, "val/loss")] == [3, 6]  # on_evaluate did not log a second copy
    assert same_points(points(records, "lr"), hf_points(trainer, "learning_rate"))
    assert same_points(points(records, "train/grad_norm"), hf_points(trainer, "grad_norm"))

    summary = read_json(run_dir / "summary.json")
    final = trainer.state.log_history[-1]
    for key in ("train_runtime", "train_samples_per_second", "train_steps_per_second", "total_flos", "train_loss"):
        assert summary[key] == pytest.approx(final[key])
    assert summary["train/loss"] == pytest.approx(hf_points(trainer, "loss")[-1][1])

    config = read_json(run_dir / "config.json")
    assert config["training_args"]["hub_token"] == "***"
    assert config["training_args"]["max_steps"] == 6 and config["training_args"]["eval_strategy"] == "steps"
    assert config["model_config"]["vocab_size"] == 100 and config["model_config"]["num_hidden_layers"] == 2
    n_params = sum(p.numel() for p in trainer.model.parameters())
    assert config["model"] == {"class": "BertForSequenceClassification", "parameters": n_params,
                               "trainable_parameters": n_params}

    meta = read_json(run_dir / "run.json")
    assert meta["status"] == "finished" and meta["name"] == "tiny-bert" and meta["project"] == "hf"
    assert meta["name_map"]["val/loss"] == "eval_loss" and meta["name_map"]["lr"] == "learning_rate"
    for path in run_dir.rglob("*"):  # the hub token reaches no file
        if path.is_file():
            assert SECRET not in path.read_text(errors="replace"), path


def test_evaluate_and_predict_after_training_reopen_the_run_and_close_it_again(tmp_path):
    callback = EpochalCallback(project="hf")
    trainer = make_trainer(training_args(tmp_path / "out", eval_strategy="no"), callback)
    trainer.train()
    run_id = callback.run.id
    assert read_json(callback.run.dir / "run.json")["status"] == "finished"
    trainer.evaluate()
    assert read_json(callback.run.dir / "run.json")["status"] == "finished"
    trainer.predict(Tokens(8, 3))
    assert callback.run.id == run_id
    meta = read_json(callback.run.dir / "run.json")
    assert meta["status"] == "finished" and meta["resumed"] == 2
    records = history(callback.run.dir)
    assert [s for s, _, _ in points(records, "val/loss")] == [6]
    assert [s for s, _, _ in points(records, "test/loss")] == [6]
    assert len(list((tmp_path / "runs" / "hf").iterdir())) == 1


def test_injected_run_is_left_open_for_its_owner(tmp_path):
    run = epochal.init(project="mine", config={"lr": "mine"})
    trainer = make_trainer(training_args(tmp_path / "out", eval_strategy="no"), EpochalCallback(run=run))
    trainer.train()
    run.log({"test/extra": 1.0}, step=99)
    run.flush()
    assert read_json(run.dir / "run.json")["status"] == "running"
    run.finish()
    config = read_json(run.dir / "config.json")
    assert config["lr"] == "mine" and config["training_args"]["learning_rate"] == 5e-05
    assert [s for s, _, _ in points(history(run.dir), "train/loss")] == [2, 4, 6]
    with pytest.raises(TypeError):
        EpochalCallback(run=run, project="x")


def test_all_checkpoints_become_model_versions_with_best_and_latest(tmp_path):
    callback = EpochalCallback(project="hf", checkpoints="all", keep_last=1)
    args = training_args(tmp_path / "out", max_steps=8, eval_steps=2, save_strategy="steps", save_steps=2,
                         metric_for_best_model="loss", load_best_model_at_end=True, learning_rate=5e-3)
    trainer = make_trainer(args, callback)
    trainer.train()
    run_dir = callback.run.dir
    item = read_json(run_dir / "artifacts" / "manifest.json")["artifacts"]["model"]
    by_version = {v["version"]: v for v in item["versions"]}
    latest = by_version[item["aliases"]["latest"]]
    best = by_version[item["aliases"]["best"]]
    assert latest["metadata"]["filename"] == "checkpoint-8" and latest["metadata"]["global_step"] == 8
    assert best["metadata"]["filename"] == Path(trainer.state.best_model_checkpoint).name
    assert set(by_version) == {item["aliases"]["latest"], item["aliases"]["best"]}  # keep_last=1 kept the aliased
    assert item["next"] == 4  # four checkpoints were stored
    stored = run_dir / best["path"]
    assert (stored / "model.safetensors").is_file()
    assert read_json(stored / MARKER_FILE)["id"] == callback.run.id
    assert read_json(run_dir / "run.json")["status"] == "finished"


@pytest.mark.parametrize("metric", [None, "loss"])
def test_a_default_training_records_its_best_checkpoint(tmp_path, metric):
    callback = EpochalCallback(project="hf")  # checkpoints="best"
    extra = {"metric_for_best_model": metric, "load_best_model_at_end": True, "eval_steps": 2,
             "save_steps": 2, "learning_rate": 5e-3} if metric else {"eval_strategy": "no"}
    args = training_args(tmp_path / "out", save_strategy="steps", **extra)  # HF saves at the last step
    trainer = make_trainer(args, callback)
    trainer.train()
    (version,) = [v for v in epochal.open_run(callback.run.id, project="hf").artifacts() if v.name == "model"]
    expected = Path(trainer.state.best_model_checkpoint).name if metric else "checkpoint-6"
    assert version.metadata["filename"] == expected and {"best", "latest"} <= set(version.aliases)
    if metric:
        assert version.metadata["best_metric"] == pytest.approx(trainer.state.best_metric)


class Boom(TrainerCallback):
    def __init__(self, at: int) -> None:
        self.at = at

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.at:
            raise RuntimeError("boom")


def test_crash_then_resume_from_checkpoint_continues_the_same_run(tmp_path):
    out = tmp_path / "out"
    args = training_args(out, max_steps=8, eval_strategy="no", save_strategy="steps", save_steps=4)
    first = EpochalCallback(project="hf")
    with pytest.raises(RuntimeError, match="boom"):
        make_trainer(args, first, Boom(at=5)).train()
    run_id = first.run.id
    assert read_json(out / "checkpoint-4" / MARKER_FILE)["id"] == run_id

    second = EpochalCallback(project="hf")  # a fresh Trainer and callback, as after a restart
    trainer = make_trainer(args, second)
    trainer.train(resume_from_checkpoint=True)
    assert second.run.id == run_id
    meta = read_json(second.run.dir / "run.json")
    assert meta["status"] == "finished" and meta["resumed"] == 0  # in one process: the crashed handle, taken over
    steps = [s for s, _, _ in points(history(second.run.dir), "train/loss")]
    assert steps == [2, 4, 6, 8]
    assert [s for s, _, _ in points(history(second.run.dir), "lr")] == steps
    assert len(list((tmp_path / "runs" / "hf").iterdir())) == 1


def test_training_that_never_ends_is_failed_at_exit(tmp_path):
    callback = EpochalCallback(project="hf")
    with pytest.raises(RuntimeError, match="boom"):
        make_trainer(training_args(tmp_path / "out", eval_strategy="no"), callback, Boom(at=3)).train()
    assert read_json(callback.run.dir / "run.json")["status"] == "running"
    from epochal.lifecycle import _fail_unended

    _fail_unended()  # what the exit hook does
    meta = read_json(callback.run.dir / "run.json")
    assert meta["status"] == "failed" and "training did not end" in meta["error"]


CRASH_SCRIPT = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("hf_case", {here!r})
case = importlib.util.module_from_spec(spec)
spec.loader.exec_module(case)
make_trainer, training_args, Boom = case.make_trainer, case.training_args, case.Boom  # the test's own helpers
from epochal.integrations.transformers import EpochalCallback
make_trainer(training_args(sys.argv[1], eval_strategy="no"), EpochalCallback(project="crash"), Boom(at=3)).train()
"""


def test_uncaught_exception_marks_the_run_failed(tmp_path, run_root):
    script = CRASH_SCRIPT.format(here=__file__)
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "out")], capture_output=True, text=True,
                          timeout=180, env={**os.environ, "EPOCHAL_DIR": str(run_root)}, cwd=tmp_path)
    assert proc.returncode != 0 and "boom" in proc.stderr
    (run_dir,) = (run_root / "crash").iterdir()
    meta = read_json(run_dir / "run.json")
    assert meta["status"] == "failed" and "RuntimeError: boom" in meta["error"]
    assert [s for s, _, _ in points(history(run_dir), "train/loss")] == [2]


DDP_SCRIPT = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("hf_case", {here!r})
case = importlib.util.module_from_spec(spec)
spec.loader.exec_module(case)
make_trainer, training_args, Boom = case.make_trainer, case.training_args, case.Boom  # the test's own helpers
from epochal.integrations.transformers import EpochalCallback
args = training_args(sys.argv[1], ddp_backend="gloo", max_steps=4, eval_steps=2, logging_steps=1)
trainer = make_trainer(args, EpochalCallback(project="ddp", system_interval=60))
trainer.train()
assert trainer.args.world_size == 2, trainer.args.world_size
"""


def test_ddp_torchrun_two_processes_one_run(tmp_path, run_root):
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT.format(here=__file__))
    env = {**os.environ, "EPOCHAL_DIR": str(run_root), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
         str(tmp_path / "out")], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    runs = list((run_root / "ddp").iterdir())
    assert len(runs) == 1, runs
    run_dir = runs[0]
    assert not run_dir.name.startswith("ddp-")  # rank 0's id, broadcast over the process group, not a derived one
    meta = read_json(run_dir / "run.json")
    assert meta["status"] == "finished" and meta["world_size"] == 2
    records = history(run_dir)
    pairs = Counter((r["step"], k) for r in records for k in r if k not in ("step", "time", "epoch"))
    assert pairs and max(pairs.values()) == 1  # every metric point once, from rank 0 only
    assert [s for s, _, _ in points(records, "train/loss")] == [1, 2, 3, 4]
    assert [s for s, _, _ in points(records, "val/loss")] == [2, 4]
    for rank in (0, 1):
        samples = read_jsonl(run_dir / f"system.rank{rank}.jsonl")[0]
        assert samples, f"no hardware samples from rank {rank}"
    assert read_json(run_dir / "config.json")["training_args"]["ddp_backend"] == "gloo"


def test_peft_config_is_recorded_duck_typed(tmp_path):
    class LoraLike:
        def to_dict(self):
            return {"r": 4, "target_modules": {"query", "value"}, "peft_type": "LORA"}

    model = tiny_model()
    model.peft_config = {"default": LoraLike()}
    for name, param in model.named_parameters():
        param.requires_grad = "classifier" in name
    config = hf._config(training_args(tmp_path / "out"), model)
    assert config["peft_config"] == {"default": {"r": 4, "target_modules": ["query", "value"], "peft_type": "LORA"}}
    trainable = sum(p.numel() for p in model.classifier.parameters())
    assert config["model"]["trainable_parameters"] == trainable < config["model"]["parameters"]


def test_autolog_adds_one_callback_and_restores_exactly(tmp_path):
    original = Trainer.__dict__["__init__"]
    args = training_args(tmp_path / "out")
    with pytest.raises(TypeError, match="projekt.*epochal.init"):
        hf.autolog(projekt="typo")
    assert Trainer.__dict__["__init__"] is original
    try:
        hf.autolog(project="auto")
        hf.autolog(project="auto")  # twice: still one wrapper over the original
        assert Trainer.__dict__["__init__"].__wrapped__ is original
        added = [cb for cb in make_trainer(args).callback_handler.callbacks if isinstance(cb, EpochalCallback)]
        assert len(added) == 1 and added[0].init_kwargs == {"project": "auto"}
        mine = EpochalCallback(project="mine")
        present = [cb for cb in make_trainer(args, mine).callback_handler.callbacks if isinstance(cb, EpochalCallback)]
        assert present == [mine]
    finally:
        hf.autolog(disable=True)
    assert Trainer.__dict__["__init__"] is original
    assert not any(isinstance(cb, EpochalCallback) for cb in make_trainer(args).callback_handler.callbacks)


def test_import_error_names_the_extra():
    code = "import sys; sys.modules['transformers'] = None\n" \
           "try:\n import epochal.integrations.transformers\nexcept ImportError as e: print(e)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert "EpochalCallback needs transformers: pip install 'epochal[transformers]'" in out


def test_bad_arguments_fail_at_construction():
    with pytest.raises(ValueError, match="keep_last"):
        EpochalCallback(keep_last=0)
    with pytest.raises(TypeError, match="projct.*epochal.init"):
        EpochalCallback(projct="x")
    with pytest.raises(TypeError, match="checkpoints="):
        EpochalCallback(log_checkpoints=True)
    with pytest.raises(ValueError, match="'best', 'last', 'all' or False"):
        EpochalCallback(checkpoints="every")
    assert transformers.TrainerCallback in type(EpochalCallback()).__mro__


def test_a_failing_tracker_never_stops_training(tmp_path, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(epochal.Run, "log_native", broken)
    callback = EpochalCallback(project="hf")
    trainer = make_trainer(training_args(tmp_path / "out", eval_strategy="no"), callback)
    with caplog.at_level("WARNING", logger="epochal"):
        trainer.train()
    assert trainer.state.global_step == 6
    assert "transformers: on_log failed" in caplog.text and "disk full" in caplog.text
    assert read_json(callback.run.dir / "run.json")["status"] == "finished"
