"""Sequence pooling over encoder outputs; every pooling masks padding."""

from __future__ import annotations

import torch
from torch import nn

from rnnlab.models.choices import POOLINGS
from rnnlab.models.encoders import padding_mask


class AttentionPooling(nn.Module):
    """Additive self-attention pooling: score_t = v . tanh(W h_t), softmax over real tokens only."""

    def __init__(self, size: int, attention_size: int | None = None):
        super().__init__()
        attention_size = attention_size or size
        self.proj = nn.Linear(size, attention_size)
        self.score = nn.Linear(attention_size, 1, bias=False)

    def forward(self, outputs: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = self.score(torch.tanh(self.proj(outputs))).squeeze(-1)  # (batch, time)
        scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1)  # (batch, time), zero on padding
        return torch.bmm(weights.unsqueeze(1), outputs).squeeze(1), weights  # (batch, size)


def pool(kind: str, outputs: torch.Tensor, lengths: torch.Tensor, encoder, attention=None):
    """Pool (batch, time, size) -> (batch, size). Returns (pooled, attention weights or None)."""
    mask = padding_mask(lengths.to(outputs.device), outputs.size(1))  # (batch, time)
    if kind == "last":
        return encoder.last_state(outputs, lengths), None
    if kind == "mean":
        summed = (outputs * mask.unsqueeze(-1)).sum(1)
        return summed / lengths.to(outputs.device).clamp(min=1).unsqueeze(-1).to(outputs.dtype), None
    if kind == "max":
        return outputs.masked_fill(~mask.unsqueeze(-1), float("-inf")).max(dim=1).values, None
    if kind == "attention":
        return attention(outputs, mask)
    raise ValueError(f"pooling={kind!r}; allowed: {', '.join(POOLINGS)}")
