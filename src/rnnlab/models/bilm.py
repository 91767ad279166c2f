"""An ELMo-style bidirectional language model (Peters et al. 2018) and its use as contextual word features.

The biLM: a token layer (a word embedding, GloVe by default and frozen, projected to `hidden_size`), a
forward and a backward stack of `num_layers` LSTM/GRU layers (a residual connection around every layer
but the first, as in ELMo), and one output layer over the vocabulary shared by both directions. The
forward stack reads left to right and predicts the next word; the backward stack reads right to left and
predicts the previous word. Trained by the language-model family (its `model.bidirectional=true`, the
`lm_bilm` stage): the backward LM is a forward LM over the reversed corpus, so truncated back-propagation
carries both states across windows alike.

Its features for a sentence (`layers`): layer 0 is the token layer [x; x], layer j the forward and backward
outputs of layer j side by side [f_j; b_j], each `2 * hidden_size` wide. `ScalarMix` combines them as
ELMo does: gamma * sum_j softmax(w)_j * h_j, with learned w and gamma. `ContextualFeatures` is what a
consumer (the classifier) holds: the frozen biLM, the token vectors of the consumer's vocabulary, and a
trainable scalar mix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from torch import nn

from rnnlab.errors import ConfigError
from rnnlab.io import read_json
from rnnlab.models.chars import DEFAULT_FILTERS as DEFAULT_CHAR_FILTERS
from rnnlab.models.chars import CharCNN, encode_words
from rnnlab.models.choices import check_adaptive_cutoffs
from rnnlab.models.encoders import cell_options, init_cells, rnn_from_options


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each row's first `length` steps in reverse order, the padding left where it is ((batch, time, ...))."""
    time = x.size(1)
    steps = torch.arange(time, device=x.device).unsqueeze(0)  # (1, time)
    lengths = lengths.to(x.device).unsqueeze(1)
    index = torch.where(steps < lengths, lengths - 1 - steps, steps)  # (batch, time)
    if x.dim() > 2:
        index = index.view(*index.shape, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, index)


TOKEN_LAYERS = ("word", "chars", "word+chars")
CHAR_KEYS = ("char_dim", "char_filters", "char_highway", "max_word_chars")


def char_cnn(cfg: dict) -> CharCNN:
    """The character CNN a biLM's model config describes (its CHAR_KEYS, defaults where absent)."""
    return CharCNN(int(cfg.get("char_dim", 16)), cfg.get("char_filters") or DEFAULT_CHAR_FILTERS,
                   int(cfg.get("char_highway", 1)), int(cfg.get("max_word_chars", 20)))


class BiLM(nn.Module):
    def __init__(self, vocab_size: int, embedding_dim: int, hidden_size: int, num_layers: int = 2,
                 cell: str = "lstm", dropout: float = 0.0, residual: bool = True, output_layer: str = "adaptive",
                 adaptive_cutoffs: list[int] | None = None, embeddings: np.ndarray | None = None,
                 embedding_mode: str = "frozen", token_layer: str = "word", char_cfg: dict | None = None,
                 words: list[str] | None = None, cell_options: dict | None = None):
        super().__init__()
        if token_layer not in TOKEN_LAYERS:
            raise ConfigError(f"model.token_layer={token_layer!r}: expected one of {', '.join(TOKEN_LAYERS)}")
        self.vocab_size, self.hidden_size, self.num_layers, self.residual = vocab_size, hidden_size, num_layers, residual
        self.token_layer = token_layer
        # vocab_size None: the features-only biLM a consumer holds (no token layer of its own, no output
        # layer: the consumer passes its words' token vectors, see `token_inputs`)
        self.embedding = nn.Embedding(vocab_size, embedding_dim) if vocab_size and "word" in token_layer.split("+") \
            else None
        if self.embedding is not None and embedding_mode in ("frozen", "finetune"):
            if embeddings is None or embeddings.shape != (vocab_size, embedding_dim):
                raise ConfigError(f"model.embedding_mode={embedding_mode} needs the embed stage's matrix of "
                                  f"{vocab_size} x {embedding_dim}")
            self.embedding.weight.data.copy_(torch.as_tensor(embeddings))
            self.embedding.weight.requires_grad_(embedding_mode == "finetune")
        self.chars = None
        if vocab_size and "chars" in token_layer.split("+"):
            self.chars = char_cnn(char_cfg or {})
            if words is not None and len(words) != vocab_size:
                raise ConfigError(f"the character table needs one word per vocabulary id: {len(words)} words "
                                  f"for {vocab_size} ids")
            # each vocabulary word's bytes (saved with the weights: a loaded biLM needs no word list)
            table = encode_words(words, self.chars.max_chars) if words is not None else \
                torch.zeros(vocab_size, self.chars.max_chars, dtype=torch.long)
            self.register_buffer("char_table", table)
        width = embedding_dim if vocab_size is None else \
            (embedding_dim if self.embedding is not None else 0) + (self.chars.output_size if self.chars else 0)
        self.projection = nn.Linear(width, hidden_size)
        rnn = rnn_from_options(cell, cell_options)
        self.forward_layers = nn.ModuleList(rnn(hidden_size, hidden_size, batch_first=True) for _ in range(num_layers))
        self.backward_layers = nn.ModuleList(rnn(hidden_size, hidden_size, batch_first=True) for _ in range(num_layers))
        self.drop = nn.Dropout(dropout)
        self.output_layer = output_layer
        if not vocab_size:
            pass
        elif output_layer == "adaptive":
            cutoffs = check_adaptive_cutoffs(adaptive_cutoffs, vocab_size, "the vocabulary size")
            self.adaptive = nn.AdaptiveLogSoftmaxWithLoss(hidden_size, vocab_size, cutoffs, div_value=4.0)
        else:
            self.decoder = nn.Linear(hidden_size, vocab_size)
        init_cells(self, cell_options)

    @property
    def token_width(self) -> int:
        """The width of the token vectors the projection reads."""
        return self.projection.in_features

    def token_inputs(self, ids: torch.Tensor) -> torch.Tensor:
        """The token vectors of vocabulary ids (before the projection): [word embedding; character CNN], each
        part as `token_layer` says. The CNN runs once per distinct word of the batch."""
        parts = [self.embedding(ids)] if self.embedding is not None else []
        if self.chars is not None:
            distinct, inverse = torch.unique(ids, return_inverse=True)
            parts.append(self.chars(self.char_table[distinct])[inverse])
        return parts[0] if len(parts) == 1 else torch.cat(parts, -1)

    @property
    def output_size(self) -> int:
        return 2 * self.hidden_size

    def tokens(self, ids: torch.Tensor, vectors: torch.Tensor | None = None) -> torch.Tensor:
        """The token layer: (batch, time, hidden). `vectors` replaces the embedding lookup (a consumer's own
        vocabulary, embedded in the same space)."""
        return self.projection(self.token_inputs(ids) if vectors is None else vectors)

    def _stack(self, layers: nn.ModuleList, x: torch.Tensor, state: list | None) -> tuple[list, list]:
        outputs, new_state = [], []
        for i, layer in enumerate(layers):
            y, s = layer(x, None if state is None else state[i])
            if self.residual and i > 0:
                y = y + x
            outputs.append(y)
            new_state.append(s)
            x = self.drop(y)
        return outputs, new_state

    def token_nll(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        flat, gold = features.reshape(-1, features.size(-1)), targets.reshape(-1)
        if self.output_layer == "adaptive":
            return -self.adaptive(flat, gold).output
        return nn.functional.cross_entropy(self.decoder(flat).float(), gold, reduction="none")

    def window_nll(self, batch: dict, state: tuple | None) -> tuple[torch.Tensor, tuple]:
        """Per-token loss of a training window in both directions: the forward stack over `ids` predicting
        `targets`, the backward one over `ids_bwd` (the reversed stream) predicting `targets_bwd`."""
        forward_state, backward_state = state if state is not None else (None, None)
        f, forward_state = self._stack(self.forward_layers, self.drop(self.tokens(batch["ids"])), forward_state)
        b, backward_state = self._stack(self.backward_layers, self.drop(self.tokens(batch["ids_bwd"])), backward_state)
        nll = torch.cat([self.token_nll(self.drop(f[-1]), batch["targets"]),
                         self.token_nll(self.drop(b[-1]), batch["targets_bwd"])])
        return nll, (forward_state, backward_state)

    def layers(self, ids: torch.Tensor, lengths: torch.Tensor, vectors: torch.Tensor | None = None) -> torch.Tensor:
        """Every layer's representation of right-padded sentences: (num_layers + 1, batch, time, 2 * hidden).
        The forward stack at position t has read words 1..t, the backward stack words t..n of its sentence
        (padding never reaches a real word: it comes after the sentence in both reading directions)."""
        x = self.tokens(ids, vectors)
        forward, _ = self._stack(self.forward_layers, x, None)
        backward, _ = self._stack(self.backward_layers, reverse_padded(x, lengths), None)
        stacked = [torch.cat([x, x], -1)]
        stacked += [torch.cat([f, reverse_padded(b, lengths)], -1) for f, b in zip(forward, backward)]
        return torch.stack(stacked)


def build_bilm(model_cfg: dict, vocab_size: int, embeddings: np.ndarray | None = None,
               words: list[str] | None = None) -> BiLM:
    """A biLM from a language-model config group; `words` (the vocabulary, by id) fills the character table of
    a character token layer (left out when loading trained weights, which hold it)."""
    mode = model_cfg.get("embedding_mode", "frozen")
    dim = int(embeddings.shape[1]) if mode != "random" and embeddings is not None else int(model_cfg["embedding_dim"])
    return BiLM(vocab_size, dim, int(model_cfg["hidden_size"]), int(model_cfg["num_layers"]), model_cfg["cell"],
                float(model_cfg["dropout"]), bool(model_cfg.get("residual", True)), model_cfg["output_layer"],
                list(model_cfg.get("adaptive_cutoffs") or []), embeddings, mode,
                model_cfg.get("token_layer", "word"), {k: model_cfg[k] for k in CHAR_KEYS if k in model_cfg}, words,
                cell_options(model_cfg))


class ScalarMix(nn.Module):
    """gamma * sum_j softmax(w)_j * h_j over the layers h_j (ELMo's task-specific weighting)."""

    def __init__(self, num_layers: int):
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(num_layers))
        self.gamma = nn.Parameter(torch.ones(()))

    def normalized(self) -> torch.Tensor:
        return torch.softmax(self.weights, 0)

    def forward(self, layers: torch.Tensor) -> torch.Tensor:
        """layers (num_layers, ...) -> (...)."""
        w = self.normalized().view(-1, *([1] * (layers.dim() - 1)))
        return self.gamma * (w * layers).sum(0)


FEATURE_KEYS = ("projection.", "forward_layers.", "backward_layers.")  # what a consumer keeps of a trained biLM


class ContextualFeatures(nn.Module):
    """A frozen biLM's scalar-mixed layers for a consumer's vocabulary: `vectors` holds, per consumer word id,
    the biLM's token-space vector of that word (its GloVe row; the biLM's `<unk>` row for words GloVe does not
    know). Only the biLM's projection and recurrent stacks are kept (`bilm_cfg`: its model.json `model`); they
    never train (requires_grad False, and eval mode, so no dropout); the scalar mix and gamma do."""

    def __init__(self, bilm_cfg: dict, vectors: np.ndarray | torch.Tensor, dropout: float = 0.5):
        super().__init__()
        vectors = torch.as_tensor(np.asarray(vectors, dtype=np.float32))
        self.bilm = BiLM(None, int(vectors.shape[1]), int(bilm_cfg["hidden_size"]), int(bilm_cfg["num_layers"]),
                         bilm_cfg["cell"], 0.0, bool(bilm_cfg.get("residual", True)),
                         cell_options=cell_options(bilm_cfg))
        for p in self.bilm.parameters():
            p.requires_grad_(False)
        self.register_buffer("vectors", vectors)
        self.mix = ScalarMix(self.bilm.num_layers + 1)
        self.dropout = nn.Dropout(dropout)

    @property
    def output_size(self) -> int:
        return self.bilm.output_size

    def train(self, mode: bool = True) -> "ContextualFeatures":
        super().train(mode)
        self.bilm.eval()  # frozen: never in training mode
        return self

    def load_bilm(self, weights: dict) -> None:
        """The projection and stacks of a trained biLM's state dict (its model.pt)."""
        kept = {k: v for k, v in weights.items() if k.startswith(FEATURE_KEYS)}
        result = self.bilm.load_state_dict(kept, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise ConfigError(f"the biLM weights do not fit its model.json (missing {result.missing_keys[:3]}, "
                              f"unexpected {result.unexpected_keys[:3]}); re-run the lm_bilm stage")

    def layers(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.bilm.layers(ids, lengths, nn.functional.embedding(ids, self.vectors))

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(batch, time) ids of the consumer's vocabulary -> (batch, time, 2 * hidden)."""
        return self.dropout(self.mix(self.layers(ids, lengths)))


def contextual_for_vocabulary(encoder_dir: Path, vocab: dict[str, int], dropout: float,
                              key: str = "model.contextual_encoder") -> tuple[ContextualFeatures, dict]:
    """The frozen biLM of `encoder_dir` (an lm_bilm output) made ready for a consumer's vocabulary `vocab`
    (word -> id): each word gets the biLM's token vector (`token_parts`), computed once here, so the consumer
    holds no token layer of the biLM. Returns (the features module, what the consumer's model.json records
    about it)."""
    from rnnlab.io import read_model_info

    encoder_dir = Path(encoder_dir)
    if not (encoder_dir / "model.json").is_file():
        raise ConfigError(f"{key}={encoder_dir}: no trained biLM there (no model.json). Train it with "
                          "`dvc repro lm_bilm` (about 10 minutes on 2 CPU cores), or point the key at one")
    info = read_model_info(encoder_dir, ("family", "model"))
    if not info["model"].get("bidirectional") or "token_embeddings" not in info:
        raise ConfigError(f"{key}={encoder_dir}: that is a {info['family']} model, not a biLM (an lm_bilm output, "
                          "model.bidirectional=true); point the key at models/bilm/<dataset>")
    weights = torch.load(encoder_dir / "model.pt", map_location="cpu", weights_only=True)
    parts, found = token_parts(info, weights, vocab)
    vectors = np.concatenate(parts, 1).astype(np.float32)
    vectors[0] = 0.0  # the consumer's padding (never read: after each sentence)
    features = ContextualFeatures(info["model"], vectors, dropout)
    features.load_bilm(weights)
    summary = read_json(encoder_dir / "train_summary.json") if (encoder_dir / "train_summary.json").is_file() else {}
    record = {"encoder": str(encoder_dir), "bilm": info["model"], "token_dim": int(vectors.shape[1]),
              "vocab_found": None if found is None else int(found.sum()), "bilm_val_ppl": summary.get("best_val_ppl")}
    return features, record


def token_parts(info: dict, weights: dict, vocab: dict[str, int]) -> tuple[list[np.ndarray], np.ndarray | None]:
    """The biLM's token vectors (before its projection) of a consumer's words, as its token layer makes them:
    the GloVe row (its `<unk>` row for words GloVe does not know) and/or the trained character CNN's vector
    of the word's spelling (every word gets one). Returns (the parts, in the biLM's order; which words GloVe
    knows, None without a word part)."""
    from rnnlab.data.glove import build_matrix, load_vectors

    layer = info["model"].get("token_layer", "word").split("+")
    parts, found = [], None
    if "word" in layer:
        words, table = load_vectors(OmegaConf.create(info["token_embeddings"]))
        vectors, found = build_matrix(vocab, words, table, seed=0, pad_id=0)
        vectors[~found] = weights["embedding.weight"][0].numpy()  # the biLM's <unk> row (id 0 in its vocabulary)
        parts.append(vectors)
    if "chars" in layer:
        cnn = char_cnn(info["model"])
        cnn.load_state_dict({k[len("chars."):]: v for k, v in weights.items() if k.startswith("chars.")})
        by_id = [""] * len(vocab)
        for word, i in vocab.items():
            by_id[i] = word
        parts.append(cnn.eval().embed_words(by_id).numpy())
    return parts, found
