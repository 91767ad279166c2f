"""The optimiser and learning-rate schedule every family's LightningModule uses."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import nn


def configure_optimizers(model: nn.Module, embedding_prefix: str, opt: dict, trainer: pl.Trainer):
    """AdamW with its own learning rate (and no weight decay) for the fine-tuned embedding matrix
    (parameters named `embedding_prefix*`), and an optional per-step cosine decay to 0."""
    embedding = [p for n, p in model.named_parameters() if n.startswith(embedding_prefix) and p.requires_grad]
    rest = [p for n, p in model.named_parameters() if not n.startswith(embedding_prefix) and p.requires_grad]
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
