"""LightningModule for text classification."""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
import torchmetrics
from torch import nn

from rnnlab.models.classifier import build_classifier


class ClassifierModule(pl.LightningModule):
    """Cross-entropy training with accuracy and macro-F1 (torchmetrics) per split."""

    def __init__(self, model_cfg: dict, optim_cfg: dict, vocab_size: int, embedding_dim: int,
                 num_classes: int, embeddings: np.ndarray | None = None):
        super().__init__()
        self.save_hyperparameters(ignore=["embeddings"])
        self.model = build_classifier(model_cfg, vocab_size, embedding_dim, num_classes, embeddings)
        self.loss = nn.CrossEntropyLoss()
        metrics = {}
        for split in ("train", "val", "test"):
            metrics[f"{split}_acc"] = torchmetrics.Accuracy("multiclass", num_classes=num_classes)
            metrics[f"{split}_f1"] = torchmetrics.F1Score("multiclass", num_classes=num_classes,
                                                          average="macro")
        self.metrics = nn.ModuleDict(metrics)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.model(ids, lengths)

    def _step(self, batch: dict, split: str) -> torch.Tensor:
        logits = self(batch["ids"], batch["lengths"])  # (batch, classes)
        loss = self.loss(logits, batch["labels"])
        preds = logits.argmax(-1)
        size = batch["labels"].numel()
        self.log(f"{split}_loss", loss, on_step=False, on_epoch=True, batch_size=size, sync_dist=True)
        for name in ("acc", "f1"):
            metric = self.metrics[f"{split}_{name}"]
            metric(preds, batch["labels"])
            self.log(f"{split}_{name}", metric, on_step=False, on_epoch=True, batch_size=size)
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "test")

    def configure_optimizers(self):
        return configure_optimizers(self.model, "embedding.", self.hparams.optim_cfg, self.trainer)


def configure_optimizers(model: nn.Module, embedding_prefix: str, opt: dict, trainer: pl.Trainer):
    """AdamW with its own learning rate (and no weight decay) for the fine-tuned embedding matrix
    (parameters named `embedding_prefix*`), and an optional per-step cosine decay to 0."""
    embedding = [p for n, p in model.named_parameters() if n.startswith(embedding_prefix) and p.requires_grad]
    rest = [p for n, p in model.named_parameters() if not n.startswith(embedding_prefix)]
    groups = [{"params": rest, "lr": opt["lr"], "weight_decay": opt["weight_decay"]}]
    if embedding:
        groups.append({"params": embedding, "lr": opt["embedding_lr"], "weight_decay": 0.0})
    optimizer = torch.optim.AdamW(groups)
    if opt.get("scheduler", "none") == "none":
        return optimizer
    # Cosine decay of every group's learning rate to 0 over the whole run, stepped per batch.
    total = max(int(trainer.estimated_stepping_batches), 1)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
