"""Training pieces of the sequence-to-sequence family: batches of sentence pairs and the LightningModule
(teacher-forced cross-entropy, validation BLEU by greedy decoding)."""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
import torchmetrics
from torch import nn

from rnnlab.data.batching import pad
from rnnlab.data.datamodule import SplitDataModule
from rnnlab.data.tokenizer import BOS_ID, EOS_ID
from rnnlab.tasks.seq2seq.decoding import greedy_decode
from rnnlab.tasks.seq2seq.model import build_seq2seq
from rnnlab.training.metrics import epoch_metric
from rnnlab.training.optim import configure_optimizers


def collate(items) -> dict[str, torch.Tensor]:
    """(index, source ids, target ids) items -> right-padded source ids; decoder inputs `<bos> y` and outputs
    `y <eos>` (same length)."""
    index, source, target = zip(*items)
    return {
        "ids": pad(source),  # (batch, src_len)
        "lengths": torch.tensor([len(s) for s in source], dtype=torch.long),
        "tgt_in": pad([[BOS_ID, *t] for t in target]),  # (batch, tgt_len + 1)
        "tgt_out": pad([[*t, EOS_ID] for t in target]),  # (batch, tgt_len + 1)
        "tgt_lengths": torch.tensor([len(t) + 1 for t in target], dtype=torch.long),
        "index": torch.tensor(index, dtype=torch.long),
    }


class PairDataModule(SplitDataModule):
    """Sentence-pair batches, bucketed by source length (target length breaks ties), plus what validation
    BLEU needs: each validation row's source key and the references of every unique source."""

    columns = ("source_ids", "target_ids")
    collate = staticmethod(collate)

    def __init__(self, tokenized, batch_size: int, seed: int, num_workers: int = 0):
        super().__init__(batch_size, seed, num_workers)
        from rnnlab.tasks.seq2seq.data import group_references, load_tokenized_pairs

        self.dataset, self.tokenizers = load_tokenized_pairs(tokenized)
        validation = self.dataset["validation"]
        self.val_keys, _, self.val_references = group_references(validation["source"], validation["target"])

    def bucket_key(self, source_ids: list, target_ids: list) -> list[float]:
        return [len(s) + len(t) / 1000.0 for s, t in zip(source_ids, target_ids)]


def attention_entropy(weights: torch.Tensor, src_lengths: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
    """Normalised entropy of each attention distribution, H(w) / log(source length), over the real target steps
    of sources longer than one token: 1.0 is uniform attention (the decoder reads nothing in particular),
    0.0 is all weight on one source token. weights (batch, tgt_len, src_len), 0 on padding; src_lengths
    (batch,); target_mask (batch, tgt_len) True at real target steps. Returns (steps,) values."""
    plogp = torch.where(weights > 0, weights * weights.clamp_min(1e-12).log(), torch.zeros_like(weights))
    entropy = -plogp.sum(-1)  # (batch, tgt_len)
    scale = src_lengths.float().clamp_min(2).log().unsqueeze(1)  # (batch, 1)
    keep = target_mask & (src_lengths > 1).unsqueeze(1)
    return (entropy / scale)[keep]


def gradient_share(part: list[torch.Tensor], every: list[torch.Tensor]) -> torch.Tensor:
    """||grad of `part`|| / ||grad of `every`|| (L2 over all their elements), 0 when nothing has a gradient."""
    def norm(params):
        grads = [p.grad for p in params if p.grad is not None]
        return torch.stack(torch._foreach_norm(grads)).norm() if grads else torch.zeros(())

    return norm(part) / norm(every).clamp_min(1e-12)  # no host sync: this runs at every step


def teacher_forcing_ratio(model_cfg: dict, epoch: int, max_epochs: int) -> float:
    """Constant `teacher_forcing`, or a linear schedule to `teacher_forcing_final` at the last epoch."""
    start, final = float(model_cfg["teacher_forcing"]), model_cfg.get("teacher_forcing_final")
    if final is None or max_epochs <= 1:
        return start
    return start + (float(final) - start) * min(epoch, max_epochs - 1) / (max_epochs - 1)


class Seq2SeqModule(pl.LightningModule):
    def __init__(self, model_cfg: dict, optim_cfg: dict, src_vocab_size: int, tgt_vocab_size: int,
                 embeddings: np.ndarray | None = None, target_tokenizer=None,
                 val_keys: list[str] | None = None, val_references: dict[str, list[str]] | None = None):
        super().__init__()
        self.save_hyperparameters(ignore=["embeddings", "target_tokenizer", "val_keys", "val_references"])
        self.model = build_seq2seq(model_cfg, src_vocab_size, tgt_vocab_size, embeddings)
        self.metrics = nn.ModuleDict({f"{split}_loss": torchmetrics.MeanMetric() for split in ("train", "val")})
        # What the attention does, epoch by epoch: how much of the gradient reaches its parameters, and how
        # peaked its distributions are on the validation pairs (docs/families/seq2seq.md, "Diagnostics")
        self.watch_attention = self.model.attention_kind != "none"
        if self.watch_attention:
            self.metrics["attn_grad_share"] = torchmetrics.MeanMetric()
            self.metrics["val_attn_entropy"] = torchmetrics.MeanMetric()
            self._attention_params = list(self.model.attention.parameters())
            self._trainable_params = [p for p in self.model.parameters() if p.requires_grad]
            self._batch_idx = 0
        self.target_tokenizer = target_tokenizer
        self.val_keys, self.val_references = val_keys, val_references
        self._val_hypotheses: dict[str, str] = {}

    @staticmethod
    def batch_tokens(batch: dict) -> int:
        """Source tokens plus decoder steps of a training batch (for tokens/s)."""
        return int(batch["lengths"].sum()) + int(batch["tgt_lengths"].sum())

    def _loss(self, batch: dict, teacher_forcing: float) -> torch.Tensor:
        return self.model.loss(batch["ids"], batch["lengths"], batch["tgt_in"], batch["tgt_out"], teacher_forcing,
                               float(self.hparams.model_cfg["label_smoothing"]))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        ratio = teacher_forcing_ratio(self.hparams.model_cfg, self.current_epoch, self.trainer.max_epochs)
        loss = self._loss(batch, ratio)
        epoch_metric(self, "train_loss", batch_idx, loss.detach(), weight=batch["ids"].size(0))
        self._batch_idx = batch_idx
        if batch_idx == 0:  # constant within an epoch
            self.log("teacher_forcing", ratio, on_step=False, on_epoch=True)
        return loss

    def on_after_backward(self) -> None:
        """Before gradient clipping: the share of the gradient's norm that reaches the attention parameters."""
        if self.watch_attention:
            share = gradient_share(self._attention_params, self._trainable_params)
            epoch_metric(self, "attn_grad_share", self._batch_idx, share)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        # The loss is teacher-forced (a perplexity); BLEU below decodes without the reference.
        if self.watch_attention:  # the loss and the attention's entropy from one reference-fed pass
            scores, weights = self.model.reference_pass(batch["ids"], batch["lengths"], batch["tgt_in"])
            loss = self.model.sequence_loss(scores, batch["tgt_out"], float(self.hparams.model_cfg["label_smoothing"]))
            epoch_metric(self, "val_attn_entropy", batch_idx,
                         attention_entropy(weights, batch["lengths"], batch["tgt_out"] != 0))
        else:
            loss = self._loss(batch, 1.0)
        epoch_metric(self, "val_loss", batch_idx, loss, weight=batch["ids"].size(0))
        if self.target_tokenizer is None or self.val_keys is None:
            return
        from rnnlab.data.tokenizer import detokenize

        decoding = self.hparams.model_cfg["decoding"]
        decoded = greedy_decode(self.model, batch["ids"], batch["lengths"], BOS_ID, EOS_ID,
                                int(decoding["max_length"]), float(decoding["max_len_a"]),
                                int(decoding["max_len_b"]))
        for index, tokens in zip(batch["index"].tolist(), decoded.tokens):
            self._val_hypotheses.setdefault(self.val_keys[index], detokenize(self.target_tokenizer, tokens))

    def on_validation_epoch_end(self) -> None:
        if not self._val_hypotheses:
            return
        from rnnlab.tasks.seq2seq.bleu import corpus_scores

        keys = sorted(self._val_hypotheses)
        scores = corpus_scores([self._val_hypotheses[k] for k in keys], [self.val_references[k] for k in keys])
        self._val_hypotheses = {}
        self.log("val_bleu", scores["bleu"])
        self.log("val_chrf", scores["chrf"])

    def configure_optimizers(self):
        return configure_optimizers(self.model, "src_embedding.", self.hparams.optim_cfg, self.trainer)
