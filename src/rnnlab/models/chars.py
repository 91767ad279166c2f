"""A word from its characters: a character CNN (Kim et al. 2016, "Character-Aware Neural Language Models";
the token layer of ELMo, Peters et al. 2018), so that a word never seen as a whole word still gets a
vector of its own.

Characters are the word's UTF-8 bytes (any text has them, so there is no character vocabulary to store or
to miss), between a begin-of-word and an end-of-word marker, truncated to `max_chars` (the end marker
kept), right-padded with 0. The CNN embeds each byte, runs one 1-d convolution per filter width over the
sequence, max-pools each filter over time, and passes the concatenation through highway layers
(Srivastava et al. 2015): its output is `sum(count for width, count in filters)` wide."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from rnnlab.errors import ConfigError
from rnnlab.models.choices import check_filters

PAD, BOW, EOW = 0, 1, 2
NUM_CHAR_IDS = 256 + 3  # the byte values, shifted past the three markers
DEFAULT_FILTERS = ((1, 32), (2, 32), (3, 64), (4, 128), (5, 128))


def encode_words(words: Sequence[str], max_chars: int) -> torch.Tensor:
    """(len(words), max_chars) int64 byte ids: [BOW, b1 + 3, ..., EOW, PAD, ...]."""
    if max_chars < 3:
        raise ConfigError(f"max_word_chars={max_chars}: a word needs room for its markers and a byte (>= 3)")
    out = torch.zeros(len(words), max_chars, dtype=torch.long)
    for i, word in enumerate(words):
        ids = [BOW] + [b + 3 for b in str(word).encode("utf-8")[: max_chars - 2]] + [EOW]
        out[i, : len(ids)] = torch.tensor(ids)
    return out


class Highway(nn.Module):
    """y = g * relu(W x) + (1 - g) * x, g = sigmoid(V x): a layer that may pass its input through."""

    def __init__(self, size: int):
        super().__init__()
        self.transform = nn.Linear(size, size)
        self.gate = nn.Linear(size, size)
        nn.init.constant_(self.gate.bias, -1.0)  # start close to carrying the input (Srivastava et al.)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = torch.sigmoid(self.gate(x))
        return g * torch.relu(self.transform(x)) + (1.0 - g) * x


class CharCNN(nn.Module):
    """(..., max_chars) byte ids -> (..., output_size) word vectors."""

    def __init__(self, char_dim: int = 16, filters: Sequence[Sequence[int]] = DEFAULT_FILTERS,
                 highway_layers: int = 1, max_chars: int = 20):
        super().__init__()
        pairs = check_filters(filters, max_chars)
        self.max_chars = int(max_chars)
        self.embedding = nn.Embedding(NUM_CHAR_IDS, char_dim, padding_idx=PAD)
        self.convs = nn.ModuleList(nn.Conv1d(char_dim, count, width) for width, count in pairs)
        self.output_size = sum(count for _, count in pairs)
        self.highways = nn.ModuleList(Highway(self.output_size) for _ in range(highway_layers))

    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        lead = chars.shape[:-1]
        x = self.embedding(chars.reshape(-1, chars.size(-1))).transpose(1, 2)  # (n, char_dim, max_chars)
        y = torch.cat([torch.relu(conv(x)).amax(-1) for conv in self.convs], -1)
        for highway in self.highways:
            y = highway(y)
        return y.reshape(*lead, self.output_size)

    def embed_words(self, words: Sequence[str], batch_size: int = 4096) -> torch.Tensor:
        """Vectors of a list of words (no gradient), in chunks."""
        with torch.no_grad():
            parts = [self(encode_words(words[i:i + batch_size], self.max_chars))
                     for i in range(0, len(words), batch_size)]
        return torch.cat(parts) if parts else torch.zeros(0, self.output_size)
