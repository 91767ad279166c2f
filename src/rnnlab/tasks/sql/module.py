"""Training pieces of the text-to-SQL family: batches of (question ids, [extended ids,] SQL ids) and the
LightningModule (teacher-forced negative log-likelihood; validation exact match by greedy decoding)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import torchmetrics
from torch import nn

from rnnlab.data.batching import pad
from rnnlab.data.datamodule import SplitDataModule
from rnnlab.data.tokenizer import BOS_ID, EOS_ID
from rnnlab.tasks.seq2seq.module import teacher_forcing_ratio
from rnnlab.tasks.sql.model import build_text2sql
from rnnlab.training.metrics import epoch_metric
from rnnlab.training.optim import configure_optimizers

COLUMNS = {"copy": ("source_ids", "target_ids", "source_ext"),
           "placeholders": ("anon_source_ids", "anon_target_ids")}


def collate(items) -> dict[str, torch.Tensor]:
    """(index, question ids, SQL ids[, extended question ids]) items -> right-padded tensors; decoder inputs
    `<bos> y` and outputs `y <eos>`."""
    index, source, target, *rest = zip(*items)
    batch = {"ids": pad(source), "lengths": torch.tensor([len(s) for s in source], dtype=torch.long),
             "tgt_in": pad([[BOS_ID, *t] for t in target]), "tgt_out": pad([[*t, EOS_ID] for t in target]),
             "tgt_lengths": torch.tensor([len(t) + 1 for t in target], dtype=torch.long),
             "index": torch.tensor(index, dtype=torch.long)}
    if rest:
        batch["source_ext"] = pad(rest[0])
    return batch


class SqlDataModule(SplitDataModule):
    """Question/SQL batches of one literal mode, bucketed by question length; `test` is test_random."""

    collate = staticmethod(collate)

    def __init__(self, tokenized: Path, literals: str, batch_size: int, seed: int, num_workers: int = 0,
                 max_source: int | None = None, max_target: int | None = None):
        super().__init__(batch_size, seed, num_workers)
        from rnnlab.tasks.sql.data import load_tokenized

        self.dataset, self.tokenizers, self.lexicon = load_tokenized(Path(tokenized))
        self.dataset["test"] = self.dataset["test_random"]
        self.columns = COLUMNS[literals]

    def bucket_key(self, source_ids: list, target_ids: list, *rest) -> list[float]:
        return [len(s) + len(t) / 1000.0 for s, t in zip(source_ids, target_ids)]


class SqlModule(pl.LightningModule):
    def __init__(self, model_cfg: dict, optim_cfg: dict, src_vocab_size: int, tgt_vocab_size: int,
                 embeddings: np.ndarray):
        super().__init__()
        self.save_hyperparameters(ignore=["embeddings"])
        self.model = build_text2sql(model_cfg, src_vocab_size, tgt_vocab_size, embeddings)
        self.copy = model_cfg.get("literals", "copy") == "copy"
        self.metrics = nn.ModuleDict({"train_loss": torchmetrics.MeanMetric(), "val_loss": torchmetrics.MeanMetric(),
                                      "val_exact": torchmetrics.MeanMetric()})

    @staticmethod
    def batch_tokens(batch: dict) -> int:
        return int(batch["lengths"].sum()) + int(batch["tgt_lengths"].sum())

    def _loss(self, batch: dict, teacher_forcing: float = 1.0) -> torch.Tensor:
        if self.copy:
            return self.model.copy_loss(batch["ids"], batch["lengths"], batch["source_ext"], batch["tgt_in"],
                                        batch["tgt_out"], teacher_forcing)
        return self.model.loss(batch["ids"], batch["lengths"], batch["tgt_in"], batch["tgt_out"], teacher_forcing)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch, teacher_forcing_ratio(self.hparams.model_cfg, self.current_epoch,
                                                       self.trainer.max_epochs))
        epoch_metric(self, "train_loss", batch_idx, loss.detach(), weight=batch["ids"].size(0))
        return loss

    def decoder_for(self, batch: dict):
        """The network the shared decoders run: the copy model bound to the batch's extended ids."""
        return self.model.bind(batch["source_ext"]) if self.copy else self.model

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        from rnnlab.tasks.seq2seq.decoding import greedy_decode

        epoch_metric(self, "val_loss", batch_idx, self._loss(batch), weight=batch["ids"].size(0))
        decoding = self.hparams.model_cfg["decoding"]
        decoded = greedy_decode(self.decoder_for(batch), batch["ids"], batch["lengths"], BOS_ID, EOS_ID,
                                int(decoding["max_length"]), float(decoding["max_len_a"]), int(decoding["max_len_b"]))
        gold = batch["tgt_out"].tolist()
        exact = [float(tokens == row[: length - 1])
                 for tokens, row, length in zip(decoded.tokens, gold, batch["tgt_lengths"].tolist())]
        epoch_metric(self, "val_exact", batch_idx, torch.tensor(exact))

    def configure_optimizers(self):
        return configure_optimizers(self.model, "src_embedding.", self.hparams.optim_cfg, self.trainer)
