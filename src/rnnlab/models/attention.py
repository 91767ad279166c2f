"""Attention over encoder outputs: additive (Bahdanau), dot and general (Luong) scores, padding masked.

Every score function maps queries (batch, steps, query_size) and keys (batch, src_len, key_size) to
scores (batch, steps, src_len); the softmax over src_len puts exactly zero weight on padding.
"""

from __future__ import annotations

import torch
from torch import nn

from rnnlab.models.choices import ATTENTIONS


class Attention(nn.Module):
    """forward(query, keys, mask) -> (context (batch, steps, key_size), weights (batch, steps, src_len)).

    query: decoder states (batch, steps, query_size); keys: encoder outputs (batch, src_len, key_size);
    mask: (batch, src_len) bool, True at real source tokens.
    """

    def __init__(self, kind: str, query_size: int, key_size: int, attention_size: int | None = None,
                 scaled: bool = False):
        super().__init__()
        if kind not in ATTENTIONS or kind == "none":
            raise ValueError(f"attention={kind!r}; allowed here: additive, dot, general")
        self.kind = kind
        # scaled: dot/general scores divided by sqrt(query_size) (Vaswani et al. 2017), so the softmax does not
        # start saturated as the state size grows; additive scores pass through tanh and a learned vector
        self.scale = query_size ** -0.5 if scaled and kind != "additive" else 1.0
        if kind == "additive":
            size = attention_size or query_size
            self.query_proj = nn.Linear(query_size, size, bias=False)
            self.key_proj = nn.Linear(key_size, size)
            self.v = nn.Linear(size, 1, bias=False)
        elif kind == "general":
            self.key_proj = nn.Linear(key_size, query_size, bias=False)
        elif key_size != query_size:
            raise ValueError(f"dot attention needs equal sizes, got query {query_size}, key {key_size}")

    def project_keys(self, keys: torch.Tensor) -> torch.Tensor:
        """The part of the score that depends only on the source: computed once per sentence."""
        return keys if self.kind == "dot" else self.key_proj(keys)

    def scores(self, query: torch.Tensor, projected_keys: torch.Tensor) -> torch.Tensor:
        if self.kind == "additive":
            q = self.query_proj(query).unsqueeze(2)  # (batch, steps, 1, size)
            k = projected_keys.unsqueeze(1)  # (batch, 1, src_len, size)
            return self.v(torch.tanh(q + k)).squeeze(-1)  # (batch, steps, src_len)
        scores = torch.bmm(query, projected_keys.transpose(1, 2))  # (batch, steps, src_len)
        return scores * self.scale if self.scale != 1.0 else scores

    def forward(self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor,
                projected_keys: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if projected_keys is None:
            projected_keys = self.project_keys(keys)
        scores = self.scores(query, projected_keys)  # (batch, steps, src_len)
        scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
        weights = torch.softmax(scores, dim=-1)  # (batch, steps, src_len), 0 on padding
        context = torch.bmm(weights, keys)  # (batch, steps, key_size)
        return context, weights
