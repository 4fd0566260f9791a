"""Hugging Face Transformers: a tiny BERT classifier, trained by ``Trainer`` with ToraCallback.

The model is built from a config (no download) and trained on random tokens for a few steps on
the CPU; the training arguments and model config become the run's config, the trainer's logs
its metrics (train/loss, eval/loss, ...), and the end of training its results. ``evaluate()``
after ``train()`` adds to the same run.
"""

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing from the Hub: the model is made here

import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

from tora.integrations.transformers import ToraCallback


def dataset(n: int, seq_len: int = 12, vocab: int = 64) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(n)
    ids = torch.randint(1, vocab, (n, seq_len), generator=generator)
    labels = (ids[:, 0] > vocab // 2).long()  # learnable: the label is a function of the first token
    return [
        {"input_ids": ids[i], "attention_mask": torch.ones(seq_len, dtype=torch.long), "labels": labels[i]}
        for i in range(n)
    ]


def main() -> None:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, num_labels=2
    )
    model = BertForSequenceClassification(config)
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            run_name="tiny-bert",
            max_steps=8,
            per_device_train_batch_size=8,
            per_device_eval_batch_size=16,
            learning_rate=1e-3,
            logging_steps=2,
            eval_strategy="steps",
            eval_steps=4,
            save_strategy="no",
            report_to="none",
            use_cpu=True,
            disable_tqdm=True,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=dataset(64),
            eval_dataset=dataset(32),
            callbacks=[ToraCallback(project="tora-examples", tags=["transformers", "example"])],
        )
        trainer.train()
        print("eval:", trainer.evaluate())


if __name__ == "__main__":
    main()
