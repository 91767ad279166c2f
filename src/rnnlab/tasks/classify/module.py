"""Training pieces of the classification family: batches of (ids, label) and the LightningModule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from rnnlab.data.datamodule import SplitDataModule
from rnnlab.tasks.classify.model import build_classifier, collate
from rnnlab.training.metrics import LabelScores, log_label_scores
from rnnlab.training.optim import configure_optimizers


class ClassificationDataModule(SplitDataModule):
    """Text classification batches (token ids, label) over the tokenize stage's output."""

    columns = ("input_ids", "label")
    collate = staticmethod(collate)

    def __init__(self, tokenized: Path, batch_size: int, seed: int, num_workers: int = 0):
        super().__init__(batch_size, seed, num_workers)
        from rnnlab.tasks.classify.data import load_tokenized

        self.dataset, self.tokenizer = load_tokenized(Path(tokenized))
        self.label_names = list(self.dataset["train"].features["label"].names)


class ClassifierModule(pl.LightningModule):
    """Cross-entropy training; loss, accuracy and macro-F1 per split and epoch from one metric update a step."""

    def __init__(self, model_cfg: dict, optim_cfg: dict, vocab_size: int, embedding_dim: int,
                 num_classes: int, embeddings: np.ndarray | None = None, contextual: nn.Module | None = None):
        super().__init__()
        self.save_hyperparameters(ignore=["embeddings", "contextual"])
        self.model = build_classifier(model_cfg, vocab_size, embedding_dim, num_classes, embeddings, contextual)
        self.loss = nn.CrossEntropyLoss()
        # one LabelScores per split (attributes, since a ModuleDict key "train" would shadow Module.train)
        self.train_scores, self.val_scores, self.test_scores = (LabelScores(num_classes) for _ in range(3))

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.model(ids, lengths)

    @staticmethod
    def batch_tokens(batch: dict) -> int:
        """Tokens a training batch holds (for tokens/s)."""
        return int(batch["lengths"].sum())

    def _step(self, batch: dict, batch_idx: int, split: str) -> torch.Tensor:
        logits = self(batch["ids"], batch["lengths"])  # (batch, classes)
        loss = self.loss(logits, batch["labels"])
        getattr(self, f"{split}_scores").update(loss, logits.argmax(-1), batch["labels"])
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self._step(batch, batch_idx, "train")
        # The epoch's training scores are handed over at its last batch: the module's own
        # on_train_epoch_end runs after the callbacks that record the epoch (History).
        if batch_idx == self.trainer.num_training_batches - 1:
            log_label_scores(self, self.train_scores, "train")
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, batch_idx, "val")

    def on_validation_epoch_end(self) -> None:
        log_label_scores(self, self.val_scores, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, batch_idx, "test")

    def on_test_epoch_end(self) -> None:
        log_label_scores(self, self.test_scores, "test")

    def configure_optimizers(self):
        return configure_optimizers(self.model, "embedding.", self.hparams.optim_cfg, self.trainer)
