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
            metrics[f"{split}_loss"] = torchmetrics.MeanMetric()
            metrics[f"{split}_acc"] = torchmetrics.Accuracy("multiclass", num_classes=num_classes)
            metrics[f"{split}_f1"] = torchmetrics.F1Score("multiclass", num_classes=num_classes,
                                                          average="macro")
        self.metrics = nn.ModuleDict(metrics)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.model(ids, lengths)

    def _step(self, batch: dict, batch_idx: int, split: str) -> torch.Tensor:
        logits = self(batch["ids"], batch["lengths"])  # (batch, classes)
        loss = self.loss(logits, batch["labels"])
        preds = logits.argmax(-1)
        epoch_metric(self, f"{split}_loss", batch_idx, loss.detach(), weight=batch["labels"].numel())
        for name in ("acc", "f1"):
            epoch_metric(self, f"{split}_{name}", batch_idx, preds, batch["labels"])
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, batch_idx, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, batch_idx, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, batch_idx, "test")

    def configure_optimizers(self):
        return configure_optimizers(self.model, "embedding.", self.hparams.optim_cfg, self.trainer)


def epoch_metric(module: pl.LightningModule, name: str, batch_idx: int, *values, **kwargs) -> None:
    """Add a step to the epoch metric `module.metrics[name]` (torchmetrics: synced across DDP ranks) and hand
    the metric to Lightning once per epoch, at its first batch; Lightning computes it over every update at
    the epoch's end. `self.log` on every step cost 1.4 ms a call and the metrics' per-batch `forward` 0.9 ms
    (cProfile of a classification epoch: 14% of its training time, benchmarks/RESULTS.md)."""
    metric = module.metrics[name]
    metric.update(*values, **kwargs)
    if batch_idx == 0:
        module.log(name, metric, on_step=False, on_epoch=True)


def configure_optimizers(model: nn.Module, embedding_prefix: str, opt: dict, trainer: pl.Trainer):
    """AdamW with its own learning rate (and no weight decay) for the fine-tuned embedding matrix
    (parameters named `embedding_prefix*`), and an optional per-step cosine decay to 0."""
    embedding = [p for n, p in model.named_parameters() if n.startswith(embedding_prefix) and p.requires_grad]
    rest = [p for n, p in model.named_parameters() if not n.startswith(embedding_prefix)]
    groups = [{"params": rest, "lr": opt["lr"], "weight_decay": opt["weight_decay"]}]
    if embedding:
        groups.append({"params": embedding, "lr": opt["embedding_lr"], "weight_decay": 0.0})
    # fused: one kernel for every parameter. Measured on the classifier (1.15M parameters, 2 CPU threads):
    # 0.48 ms a step against 5.1 ms for the default per-tensor loop, 2.2 ms for foreach. Lightning's mixed
    # precision refuses to clip the gradients of a fused optimizer, so mixed precision gets foreach.
    mixed = str(getattr(trainer, "precision", "32-true")).endswith("-mixed")
    optimizer = torch.optim.AdamW(groups, **({"foreach": True} if mixed else {"fused": True}))
    if opt.get("scheduler", "none") == "none":
        return optimizer
    # Cosine decay of every group's learning rate to 0 over the whole run, stepped per batch.
    total = max(int(trainer.estimated_stepping_batches), 1)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
