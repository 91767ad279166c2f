"""The word language model: embedding -> stacked RNN/LSTM/GRU layers with dropout between them (standard,
or locked: one mask per sequence, Gal & Ghahramani 2016) -> output layer over the vocabulary (a full
softmax, weight-tied to the embedding as an option, or an adaptive softmax, Grave et al. 2017).

The recurrent state is passed in and returned, so that training can carry it across truncated
back-propagation windows (rnnlab.tasks.lm.module) and generation can feed one word at a time."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from rnnlab.errors import ConfigError
from rnnlab.models.choices import check_adaptive_cutoffs
from rnnlab.models.encoders import cell_options, init_cells, rnn_from_options

State = list  # one entry per layer: (h, c) for an LSTM layer, h otherwise; each h/c is (1, batch, hidden)


class LockedDropout(nn.Module):
    """Dropout with one mask per sequence, the same at every time step ((batch, time, features) input)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        mask = x.new_empty(x.size(0), 1, x.size(2)).bernoulli_(1.0 - self.p) / (1.0 - self.p)
        return x * mask


def detach_state(state):
    """The same state cut from the graph of the window that produced it (truncated back-propagation): any
    nesting of lists and tuples of tensors (a biLM's state is a (forward, backward) pair of such lists)."""
    from torch.utils._pytree import tree_map

    return None if state is None else tree_map(lambda t: t.detach(), state)


class WordLM(nn.Module):
    def __init__(self, vocab_size: int, embedding_dim: int, hidden_size: int, num_layers: int = 1,
                 cell: str = "lstm", dropout: float = 0.0, embedding_dropout: float = 0.0,
                 locked_dropout: bool = False, tie_weights: bool = False, output_layer: str = "full",
                 adaptive_cutoffs: list[int] | None = None, embeddings: np.ndarray | None = None,
                 embedding_mode: str = "random", cell_options: dict | None = None):
        super().__init__()
        if tie_weights and output_layer != "full":
            raise ConfigError("lm.model.tie_weights=true shares the embedding with a full softmax's output matrix; "
                              "the adaptive softmax has no such matrix. Set output_layer=full or tie_weights=false")
        self.vocab_size, self.cell, self.hidden_size = vocab_size, cell, hidden_size
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        if embedding_mode in ("frozen", "finetune"):
            if embeddings is None or embeddings.shape != (vocab_size, embedding_dim):
                raise ConfigError(f"lm.model.embedding_mode={embedding_mode} needs the embed stage's matrix of "
                                  f"{vocab_size} x {embedding_dim}")
            self.embedding.weight.data.copy_(torch.as_tensor(embeddings))
            self.embedding.weight.requires_grad_(embedding_mode == "finetune")
        rnn = rnn_from_options(cell, cell_options)
        sizes = [embedding_dim] + [hidden_size] * num_layers
        self.layers = nn.ModuleList(rnn(sizes[i], sizes[i + 1], batch_first=True) for i in range(num_layers))
        drop = LockedDropout if locked_dropout else nn.Dropout
        self.embedding_drop = drop(embedding_dropout)
        self.drop = drop(dropout)
        out_dim = hidden_size
        self.projection = None
        if tie_weights and hidden_size != embedding_dim:  # tying needs features of the embedding's width
            self.projection = nn.Linear(hidden_size, embedding_dim)
            out_dim = embedding_dim
        self.output_layer = output_layer
        if output_layer == "adaptive":
            cutoffs = check_adaptive_cutoffs(adaptive_cutoffs, vocab_size, "the vocabulary size")
            self.adaptive = nn.AdaptiveLogSoftmaxWithLoss(out_dim, vocab_size, cutoffs, div_value=4.0)
        else:
            self.decoder = nn.Linear(out_dim, vocab_size)
            if tie_weights:
                self.decoder.weight = self.embedding.weight
        init_cells(self, cell_options)

    def forward(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """(features (batch, time, out_dim) that the output layer scores, the state after the last step)."""
        x = self.embedding_drop(self.embedding(ids))
        new_state = []
        for i, layer in enumerate(self.layers):
            x, s = layer(x, None if state is None else state[i])
            new_state.append(s)
            x = self.drop(x)
        if self.projection is not None:
            x = self.projection(x)
        return x, new_state

    def window_nll(self, batch: dict, state: State | None) -> tuple[torch.Tensor, State]:
        """Per-token loss of a training window and the state after it."""
        features, state = self(batch["ids"], state)
        return self.token_nll(features, batch["targets"]), state

    def token_nll(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood of each target word, flattened ((batch * time,))."""
        flat, gold = features.reshape(-1, features.size(-1)), targets.reshape(-1)
        if self.output_layer == "adaptive":
            return -self.adaptive(flat, gold).output
        return nn.functional.cross_entropy(self.decoder(flat).float(), gold, reduction="none")

    def log_probs(self, features: torch.Tensor) -> torch.Tensor:
        """Log-probabilities of every word: (..., vocab)."""
        flat = features.reshape(-1, features.size(-1))
        out = self.adaptive.log_prob(flat) if self.output_layer == "adaptive" else \
            torch.log_softmax(self.decoder(flat).float(), -1)
        return out.reshape(*features.shape[:-1], self.vocab_size)


def build_lm(model_cfg: dict, vocab_size: int, embeddings: np.ndarray | None = None, words: list[str] | None = None):
    """A WordLM, or with `bidirectional: true` an ELMo-style biLM (rnnlab.models.bilm; `words`, the
    vocabulary by id, spells its words for a character token layer)."""
    if model_cfg.get("bidirectional"):
        from rnnlab.models.bilm import build_bilm

        return build_bilm(model_cfg, vocab_size, embeddings, words)
    mode = model_cfg.get("embedding_mode", "random")
    dim = int(embeddings.shape[1]) if mode != "random" and embeddings is not None else int(model_cfg["embedding_dim"])
    return WordLM(vocab_size, dim, int(model_cfg["hidden_size"]), int(model_cfg["num_layers"]), model_cfg["cell"],
                  float(model_cfg["dropout"]), float(model_cfg["embedding_dropout"]),
                  bool(model_cfg["locked_dropout"]), bool(model_cfg["tie_weights"]), model_cfg["output_layer"],
                  list(model_cfg.get("adaptive_cutoffs") or []), embeddings, mode, cell_options(model_cfg))
