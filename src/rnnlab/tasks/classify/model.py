"""Text classifier: embedding -> recurrent encoder -> pooling -> linear head, and the batches it reads
(used by training and by evaluation, which runs without Lightning)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from rnnlab.data.batching import pad
from rnnlab.errors import ConfigError
from rnnlab.models.encoders import RecurrentEncoder, cell_options, padding_mask
from rnnlab.models.pooling import AttentionPooling, pool


def collate(items) -> dict[str, torch.Tensor]:
    """(index, ids, label) items -> right-padded ids, lengths, labels and each row's index in its split."""
    index, ids, labels = zip(*items)
    return {"ids": pad(ids), "lengths": torch.tensor([len(s) for s in ids], dtype=torch.long),
            "labels": torch.tensor(labels, dtype=torch.long), "index": torch.tensor(index, dtype=torch.long)}


class BagEncoder(nn.Module):
    """The no-recurrence baseline (`encoder: bag`): each word vector alone through one tanh layer, no state
    carried between words. With mean, max or attention pooling the classifier sees a bag of words: shuffling
    a sentence cannot change its answer (Iyyer et al. 2015's deep averaging network is the same idea)."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.layer = nn.Linear(input_size, hidden_size)
        self.output_size, self.cell, self.bidirectional = hidden_size, "bag", False

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.layer(x)) * padding_mask(lengths, x.size(1)).unsqueeze(-1)


class TextClassifier(nn.Module):
    def __init__(self, vocab_size: int, embedding_dim: int, num_classes: int, cell: str = "lstm",
                 hidden_size: int = 128, num_layers: int = 1, bidirectional: bool = True,
                 dropout: float = 0.3, embedding_dropout: float = 0.0, residual: bool = False,
                 pooling: str = "attention", embedding_mode: str = "finetune",
                 embeddings: np.ndarray | None = None, pad_id: int = 0,
                 word_dropout: float = 0.0, unk_id: int = 1, contextual: nn.Module | None = None,
                 cell_options: dict | None = None, encoder: str = "recurrent"):
        super().__init__()
        if encoder == "bag" and pooling == "last":
            raise ConfigError("classify.model.encoder=bag has no last state (no recurrence): pool with mean, max or "
                              "attention")
        self.pooling = pooling
        self.word_dropout, self.pad_id, self.unk_id = word_dropout, pad_id, unk_id
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        if embeddings is not None and embedding_mode != "random":
            self.embedding.weight.data.copy_(torch.as_tensor(embeddings))
        self.embedding.weight.requires_grad_(embedding_mode != "frozen")
        self.embedding_dropout = nn.Dropout(embedding_dropout)
        # optional contextual features (a frozen biLM's scalar mix, rnnlab.models.bilm), beside the word vectors
        self.contextual = contextual
        width = embedding_dim + (contextual.output_size if contextual is not None else 0)
        self.encoder = BagEncoder(width, hidden_size) if encoder == "bag" else \
            RecurrentEncoder(cell, width, hidden_size, num_layers, bidirectional, dropout, residual,
                             **(cell_options or {}))
        size = self.encoder.output_size
        self.attention = AttentionPooling(size) if pooling == "attention" else None
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(size, num_classes)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor, return_attention: bool = False):
        """ids (batch, time), lengths (batch,) -> logits (batch, classes) [, weights (batch, time)]."""
        if self.training and self.word_dropout > 0:  # replace random real tokens by <unk>
            drop = (torch.rand(ids.shape, device=ids.device) < self.word_dropout) & (ids != self.pad_id)
            ids = ids.masked_fill(drop, self.unk_id)
        outputs = self.encoder(self.encoder_inputs(ids, lengths), lengths)  # (batch, time, hidden * directions)
        pooled, weights = pool(self.pooling, outputs, lengths, self.encoder, self.attention)
        logits = self.head(self.dropout(pooled))  # (batch, classes)
        return (logits, weights) if return_attention else logits

    def encoder_inputs(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """What the encoder reads: the word vectors (batch, time, emb) [; the contextual features]."""
        x = self.embedding_dropout(self.embedding(ids))
        if self.contextual is not None:  # (batch, time, emb + 2 * biLM hidden)
            x = torch.cat([x, self.contextual(ids, lengths)], -1)
        return x


def build_classifier(model_cfg: dict, vocab_size: int, embedding_dim: int, num_classes: int,
                     embeddings: np.ndarray | None = None, contextual: nn.Module | None = None) -> TextClassifier:
    """Build a classifier from the `model` config group (a plain dict)."""
    return TextClassifier(
        vocab_size=vocab_size, embedding_dim=embedding_dim, num_classes=num_classes,
        cell=model_cfg["cell"], hidden_size=model_cfg["hidden_size"],
        num_layers=model_cfg["num_layers"], bidirectional=model_cfg["bidirectional"],
        dropout=model_cfg["dropout"], embedding_dropout=model_cfg["embedding_dropout"],
        residual=model_cfg["residual"], pooling=model_cfg["pooling"],
        embedding_mode=model_cfg["embedding_mode"], embeddings=embeddings,
        word_dropout=model_cfg.get("word_dropout", 0.0), contextual=contextual, cell_options=cell_options(model_cfg),
        encoder=model_cfg.get("encoder", "recurrent"),  # models from before the key: recurrent
    )
