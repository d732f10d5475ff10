"""Track a Hugging Face Trainer run with epochal: a tiny BERT from a config, synthetic tokens, CPU, < 1 minute.

    python examples/transformers_example.py

Nothing is downloaded. The run goes to ./epochal-runs (or $EPOCHAL_DIR); the script
prints where, and what was recorded.
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

import epochal
from epochal.integrations.transformers import EpochalCallback


class Tokens(torch.utils.data.Dataset):
    """Random 16-token sequences; label 1 when the first token is in the upper half of the vocabulary."""

    def __init__(self, n: int, seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.x = torch.randint(0, 100, (n, 16), generator=gen)
        self.y = (self.x[:, 0] >= 50).long()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.x[i], "labels": self.y[i]}


def main() -> None:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=32, num_labels=2)
    model = BertForSequenceClassification(config)
    out = tempfile.mkdtemp(prefix="hf-example-")
    args = TrainingArguments(
        output_dir=out, num_train_epochs=2, per_device_train_batch_size=16, learning_rate=5e-3,
        logging_steps=4, eval_strategy="steps", eval_steps=8, save_strategy="steps", save_steps=8,
        metric_for_best_model="loss", load_best_model_at_end=True, save_total_limit=2,
        use_cpu=True, report_to="none",  # report_to="none": no second tracker logs the same run
        disable_tqdm=True,
    )
    callback = EpochalCallback(project=os.environ.get("EPOCHAL_PROJECT", "transformers-example"), name="tiny-bert", tags=["transformers"],
                               checkpoints="all", keep_last=2)
    trainer = Trainer(model=model, args=args, train_dataset=Tokens(192, 1), eval_dataset=Tokens(64, 2),
                      callbacks=[callback])
    trainer.train()
    trainer.evaluate()  # after training: appended to the same run at the last global step
    run = callback.run
    run.finish()

    stored = epochal.open_run(run.id, dir=str(run.root), project=run.project)
    history = stored.history()
    print(f"run {run.id} -> {run.dir}")
    print(f"  status {stored.status}; {len(history)} metric records, steps {history['step'].min()}..{history['step'].max()}")
    print("  columns:", ", ".join(c for c in history.columns if c not in ("time",)))
    print("  summary:", {k: round(v, 4) for k, v in stored.summary.items() if k in ("train_loss", "train_runtime", "val/loss")})
    print("  checkpoints:", [(a.version, a.aliases) for a in stored.artifacts()])
    print(f"  read it back: epochal.open_run({run.id!r}, dir={str(run.root)!r})")


if __name__ == "__main__":
    main()
