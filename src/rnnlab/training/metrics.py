"""Epoch metrics of the LightningModules: updated every step, handed to Lightning once per epoch."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
import torchmetrics


def epoch_metric(module: pl.LightningModule, name: str, batch_idx: int, *values, **kwargs) -> None:
    """Add a step to the epoch metric `module.metrics[name]` (torchmetrics: synced across DDP ranks) and hand
    the metric to Lightning once per epoch, at its first batch; Lightning computes it over every update at
    the epoch's end. `self.log` on every step cost 1.4 ms a call and the metrics' per-batch `forward` 0.9 ms
    (cProfile of a classification epoch: 14% of its training time, docs/benchmarks.md)."""
    metric = module.metrics[name]
    metric.update(*values, **kwargs)
    if batch_idx == 0:
        module.log(name, metric, on_step=False, on_epoch=True)


class LabelScores(torchmetrics.Metric):
    """Loss, accuracy and macro-F1 of an epoch from ONE update per step: a confusion matrix and a weighted
    loss sum (a torchmetrics Metric, so its state is summed across DDP ranks before `compute`). It replaces
    three metric objects (mean loss, accuracy, F1) whose separate updates cost 0.8 ms of a classification
    step (docs/benchmarks.md). Accuracy is correct / total; macro-F1 averages 2tp / (2tp + fp + fn) over the
    classes that occur as a label or a prediction (torchmetrics' rule)."""

    full_state_update = False

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.add_state("confusion", torch.zeros(num_classes, num_classes, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("loss_sum", torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("weight", torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, loss: torch.Tensor, preds: torch.Tensor, labels: torch.Tensor) -> None:
        k = self.num_classes
        self.confusion += torch.bincount(labels * k + preds, minlength=k * k).view(k, k)  # (actual, predicted)
        self.loss_sum += loss.detach().float() * labels.numel()
        self.weight += labels.numel()

    def compute(self) -> dict[str, torch.Tensor]:
        tp = self.confusion.diag()
        support, predicted = self.confusion.sum(1), self.confusion.sum(0)
        present = (support + predicted) > 0
        f1 = (2 * tp).float() / (support + predicted).clamp(min=1).float()
        return {"loss": self.loss_sum / self.weight.clamp(min=1e-12),
                "acc": tp.sum().float() / self.confusion.sum().clamp(min=1).float(),
                "f1": f1[present].mean() if bool(present.any()) else torch.zeros(())}


def log_label_scores(module: pl.LightningModule, scores: LabelScores, split: str) -> None:
    """Hand an epoch's `split_loss`, `split_acc`, `split_f1` to Lightning and reset for the next epoch."""
    values = scores.compute()
    for name, value in values.items():
        module.log(f"{split}_{name}", value, on_step=False, on_epoch=True, batch_size=1)
    scores.reset()
