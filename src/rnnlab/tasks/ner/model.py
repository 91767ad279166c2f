"""The BiLSTM tagger (Huang et al. 2015; Lample et al. 2016): each token's word vector (GloVe, fine-tuned)
and, as an option, its character CNN vector (rnnlab.models.chars: tweets are full of words GloVe does not
know) -> a recurrent encoder (LSTM/GRU, bidirectional or not, stacked) -> per-token tag scores, read by a
softmax per token or by a linear-chain CRF (rnnlab.models.crf) with Viterbi decoding under BIO constraints.

Also the batches it reads and entity spans of tag sequences (the chunks that entity-level scores count)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from rnnlab.data.batching import pad
from rnnlab.models.encoders import RecurrentEncoder, cell_options, padding_mask

OUTPUTS = ("softmax", "crf")
CHAR_ENCODERS = ("cnn", "none")
IGNORE = -100  # tag of padding positions (cross-entropy skips it)


def collate_tagged(items, max_chars: int | None = 20, max_length: int | None = None) -> dict[str, torch.Tensor]:
    """(index, ids, tokens, tags) items -> right-padded ids, the tokens' bytes (batch, time, max_chars; None
    for a tagger without a character encoder, max_chars None), lengths, tags (padding IGNORE) and each row's
    index in its split; `max_length` truncates (training)."""
    from rnnlab.models.chars import encode_words

    index, ids, tokens, tags = zip(*items)
    if max_length:
        ids, tokens, tags = ([r[:max_length] for r in col] for col in (ids, tokens, tags))
    lengths = torch.tensor([len(r) for r in ids], dtype=torch.long)
    time = int(lengths.max())
    chars = None
    if max_chars is not None:
        chars = torch.zeros(len(ids), time, max_chars, dtype=torch.long)
        for row, words in enumerate(tokens):
            chars[row, : len(words)] = encode_words(list(words), max_chars)
    tag_tensor = torch.full((len(ids), time), IGNORE, dtype=torch.long)
    for row, t in enumerate(tags):
        tag_tensor[row, : len(t)] = torch.as_tensor(list(t), dtype=torch.long)
    return {"ids": pad(ids), "chars": chars, "lengths": lengths, "tags": tag_tensor,
            "index": torch.tensor(index, dtype=torch.long)}


def entity_spans(tags: list[str]) -> set[tuple[str, int, int]]:
    """Entities of a BIO tag sequence as (type, first, last) token positions, read as conlleval (and
    seqeval's default mode) reads them: an entity starts at B-X, or at an I-X that does not continue an
    entity of type X, and runs over the I-X that follow."""
    spans, kind, first = set(), None, 0
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, name = tag.partition("-")
        continues = prefix == "I" and kind == name
        if kind is not None and not continues:
            spans.add((kind, first, i - 1))
            kind = None
        if prefix == "B" or (prefix == "I" and not continues):
            kind, first = name, i
    return spans


class Tagger(nn.Module):
    def __init__(self, vocab_size: int, embedding_dim: int, tag_names: list[str], cell: str = "lstm",
                 hidden_size: int = 128, num_layers: int = 1, bidirectional: bool = True, dropout: float = 0.5,
                 embedding_dropout: float = 0.5, word_dropout: float = 0.0, residual: bool = False,
                 embedding_mode: str = "finetune", embeddings: np.ndarray | None = None,
                 char_encoder: str = "cnn", char_cfg: dict | None = None, output: str = "crf",
                 pad_id: int = 0, unk_id: int = 1, cell_options: dict | None = None):
        super().__init__()
        from rnnlab.models.bilm import char_cnn
        from rnnlab.models.crf import LinearChainCRF, bio_constraints

        self.tag_names, self.output = list(tag_names), output
        self.word_dropout, self.pad_id, self.unk_id = word_dropout, pad_id, unk_id
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        if embeddings is not None and embedding_mode != "random":
            self.embedding.weight.data.copy_(torch.as_tensor(embeddings))
        self.embedding.weight.requires_grad_(embedding_mode != "frozen")
        self.chars = char_cnn(char_cfg or {}) if char_encoder == "cnn" else None
        self.embedding_dropout = nn.Dropout(embedding_dropout)
        width = embedding_dim + (self.chars.output_size if self.chars is not None else 0)
        self.encoder = RecurrentEncoder(cell, width, hidden_size, num_layers, bidirectional, dropout, residual,
                                        **(cell_options or {}))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.encoder.output_size, len(self.tag_names))
        self.crf = LinearChainCRF(len(self.tag_names), bio_constraints(self.tag_names)) if output == "crf" else None

    @property
    def max_chars(self) -> int | None:
        """The bytes per token its batches need (None: no character encoder, no bytes)."""
        return self.chars.max_chars if self.chars is not None else None

    def forward(self, ids: torch.Tensor, chars: torch.Tensor | None, lengths: torch.Tensor) -> torch.Tensor:
        """ids (batch, time), chars (batch, time, max_chars) or None, lengths (batch,) -> tag scores
        (batch, time, tags)."""
        if self.training and self.word_dropout > 0:  # replace random real tokens by <unk> (their spelling stays)
            drop = (torch.rand(ids.shape, device=ids.device) < self.word_dropout) & (ids != self.pad_id)
            ids = ids.masked_fill(drop, self.unk_id)
        x = self.embedding(ids)
        if self.chars is not None:
            x = torch.cat([x, self.chars(chars)], -1)
        outputs = self.encoder(self.embedding_dropout(x), lengths)
        return self.head(self.dropout(outputs))

    def loss(self, scores: torch.Tensor, tags: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood per sentence (CRF) or per token (softmax)."""
        if self.crf is not None:
            return self.crf(scores, tags, padding_mask(lengths, scores.size(1)).to(scores.device))
        return nn.functional.cross_entropy(scores.float().reshape(-1, scores.size(-1)), tags.reshape(-1),
                                           ignore_index=IGNORE)

    def decode(self, scores: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
        """Best tag ids per sentence: Viterbi (CRF, BIO-constrained) or each token's most likely tag."""
        if self.crf is not None:
            return self.crf.decode(scores.float(), padding_mask(lengths, scores.size(1)).to(scores.device))
        best = scores.argmax(-1).tolist()
        return [row[:n] for row, n in zip(best, lengths.tolist())]

    def probabilities(self, scores: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Each token's tag distribution: CRF marginals (forward-backward) or the softmax."""
        if self.crf is not None:
            return self.crf.marginals(scores.float(), padding_mask(lengths, scores.size(1)).to(scores.device))
        return torch.softmax(scores.float(), -1) * padding_mask(lengths, scores.size(1)).unsqueeze(-1)


def build_tagger(model_cfg: dict, vocab_size: int, embedding_dim: int, tag_names: list[str],
                 embeddings: np.ndarray | None = None) -> Tagger:
    from rnnlab.models.bilm import CHAR_KEYS

    return Tagger(vocab_size, embedding_dim, tag_names, model_cfg["cell"], model_cfg["hidden_size"],
                  model_cfg["num_layers"], model_cfg["bidirectional"], model_cfg["dropout"],
                  model_cfg["embedding_dropout"], model_cfg.get("word_dropout", 0.0), model_cfg["residual"],
                  model_cfg["embedding_mode"], embeddings, model_cfg["char_encoder"],
                  {k: model_cfg[k] for k in CHAR_KEYS if k in model_cfg}, model_cfg["output"],
                  cell_options=cell_options(model_cfg))
