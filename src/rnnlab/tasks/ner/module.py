"""Training pieces of the tagging family: batches of (ids, bytes, tags) and the LightningModule, with the
epoch's entity-level precision, recall and F1 (a torchmetrics Metric: summed across DDP ranks)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import torchmetrics

from rnnlab.data.datamodule import SplitDataModule
from rnnlab.tasks.ner.model import build_tagger, collate_tagged, entity_spans
from rnnlab.training.optim import configure_optimizers


class TaggingDataModule(SplitDataModule):
    """Tagged sentences over the tokenize stage's output; training batches truncated to `max_length` tokens."""

    columns = ("input_ids", "tokens", "tags")

    def __init__(self, tokenized: Path, batch_size: int, seed: int, num_workers: int = 0,
                 max_chars: int | None = 20, max_length: int | None = None):
        super().__init__(batch_size, seed, num_workers)
        from rnnlab.tasks.ner.data import load_tokenized

        self.dataset, self.tokenizer = load_tokenized(Path(tokenized))
        self.tag_names = list(self.dataset["train"].features["tags"].feature.names)
        self.max_chars, self.max_length = max_chars, max_length  # (max_chars None: no bytes in the batches)

    def _loader(self, split: str, shuffle: bool):
        self.collate = partial(collate_tagged, max_chars=self.max_chars,
                               max_length=self.max_length if split == "train" else None)
        return super()._loader(split, shuffle)


class EntityScores(torchmetrics.Metric):
    """Entity-level micro precision / recall / F1 (exact type and span, conlleval's chunks) and the mean loss
    of an epoch."""

    full_state_update = False

    def __init__(self):
        super().__init__()
        for name in ("correct", "predicted", "gold", "loss_sum", "weight"):
            self.add_state(name, torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, loss: torch.Tensor, predicted: list[list[str]], gold: list[list[str]]) -> None:
        for p, g in zip(predicted, gold):
            ps, gs = entity_spans(p), entity_spans(g)
            self.correct += len(ps & gs)
            self.predicted += len(ps)
            self.gold += len(gs)
        self.loss_sum += float(loss.detach()) * len(gold)
        self.weight += len(gold)

    def compute(self) -> dict[str, torch.Tensor]:
        precision = self.correct / self.predicted.clamp(min=1)
        recall = self.correct / self.gold.clamp(min=1)
        f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
        return {"loss": (self.loss_sum / self.weight.clamp(min=1e-12)).float(), "precision": precision.float(),
                "recall": recall.float(), "f1": f1.float()}


class TaggerModule(pl.LightningModule):
    """Tag loss (CRF negative log-likelihood or per-token cross-entropy); entity scores on validation/test."""

    def __init__(self, model_cfg: dict, optim_cfg: dict, vocab_size: int, embedding_dim: int, tag_names: list[str],
                 embeddings: np.ndarray | None = None):
        super().__init__()
        self.save_hyperparameters(ignore=["embeddings"])
        self.model = build_tagger(model_cfg, vocab_size, embedding_dim, tag_names, embeddings)
        self.tag_names = list(tag_names)
        self.val_scores, self.test_scores = EntityScores(), EntityScores()
        self.train_loss = torchmetrics.MeanMetric()

    @staticmethod
    def batch_tokens(batch: dict) -> int:
        return int(batch["lengths"].sum())

    def _scores(self, batch: dict) -> torch.Tensor:
        return self.model(batch["ids"], batch["chars"], batch["lengths"])

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.model.loss(self._scores(batch), batch["tags"], batch["lengths"])
        self.train_loss.update(loss.detach())
        if batch_idx == 0:
            self.log("train_loss", self.train_loss, on_step=False, on_epoch=True)
        return loss

    def _eval_step(self, batch: dict, scores_metric: EntityScores) -> None:
        scores = self._scores(batch)
        loss = self.model.loss(scores, batch["tags"], batch["lengths"])
        names = self.tag_names
        predicted = [[names[t] for t in row] for row in self.model.decode(scores, batch["lengths"])]
        gold = [[names[t] for t in row[:n]] for row, n in zip(batch["tags"].tolist(), batch["lengths"].tolist())]
        scores_metric.update(loss, predicted, gold)

    def _log_scores(self, scores_metric: EntityScores, split: str) -> None:
        for name, value in scores_metric.compute().items():
            self.log(f"{split}_{name}", value, on_step=False, on_epoch=True, batch_size=1)
        scores_metric.reset()

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, self.val_scores)

    def on_validation_epoch_end(self) -> None:
        self._log_scores(self.val_scores, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, self.test_scores)

    def on_test_epoch_end(self) -> None:
        self._log_scores(self.test_scores, "test")

    def configure_optimizers(self):
        return configure_optimizers(self.model, "embedding.", self.hparams.optim_cfg, self.trainer)
