"""Encoder-decoder (seq2seq) translation model with optional attention.

Encoder: source embedding (GloVe-initialised when given) -> RecurrentEncoder (rnn|lstm|gru, layers,
bidirectional; exact under right padding). A bridge (linear + tanh) maps the encoder's final state
to the decoder's initial state: without attention that state is the only path from source to target
(the classic fixed "context vector" seq2seq). With attention the bridge is optional
(`bridge_with_attention`): without it the decoder starts from zeros and must read the source through its
attention from the first step (measured: with the bridge an LSTM decoder's attention can collapse onto one
source position for several epochs, docs/results.md).

Without attention, `context_every_step` (Cho et al. 2014) also gives the decoder the encoder summary
at every step: concatenated to each input and combined with each output as tanh(W [h_t; summary]).
Without it, the initial state is the only path from source to target, which is very slow to learn
(measured: the decoder ignored the source after 2 epochs on 20k pairs).

Decoder: target embedding -> nn.RNN/LSTM/GRU. With attention, each decoder output h_t queries the
encoder outputs (score: additive = Bahdanau's MLP, dot / general = Luong's) and the attentional
vector tanh(W [h_t; context_t]) feeds the output layer (Luong et al. 2015, "global attention").
Input feeding (Luong) adds the previous attentional vector to the next decoder input.

Training uses teacher forcing with a ratio: 1.0 feeds the reference token at every step and runs
the whole target in one fused RNN call (fast); below 1.0 (or with input feeding) the decoder steps
one token at a time and feeds its own greedy prediction with probability 1 - ratio. Decoding
(greedy, beam search: rnnlab.tasks.seq2seq.decoding) never sees the reference.

Output layer: a full softmax over the target vocabulary (`output_layer=full`), or an adaptive softmax
(`adaptive`: torch's nn.AdaptiveLogSoftmaxWithLoss, Grave et al. 2017): the `adaptive_cutoffs[0]` most
frequent words (word-level ids are frequency-ordered) and one entry per rarer cluster in the head, each
cluster in a narrower projection. Teacher-forced training then scores only the head and the cluster of
each reference word (benchmarks/bench_output_layer.py measures the gain); decoding scores every word.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rnnlab.models.attention import Attention
from rnnlab.models.choices import ATTENTIONS, OUTPUT_LAYERS, check_adaptive_cutoffs
from rnnlab.models.encoders import RecurrentEncoder, padding_mask, rnn_factory, set_forget_bias

PAD_ID = 0


@dataclass
class Memory:
    """Everything the decoder needs from the encoder, batch-first so beams can index it."""

    outputs: torch.Tensor  # (batch, src_len, enc_size)
    keys: torch.Tensor | None  # (batch, src_len, key_size) pre-projected for attention, or None
    mask: torch.Tensor  # (batch, src_len) True at real tokens
    summary: torch.Tensor | None = None  # (batch, 1, enc_size): the context of a model without attention

    def index_select(self, index: torch.Tensor) -> "Memory":
        keys = None if self.keys is None else self.keys.index_select(0, index)
        summary = None if self.summary is None else self.summary.index_select(0, index)
        return Memory(self.outputs.index_select(0, index), keys, self.mask.index_select(0, index), summary)


def select_state(state, index: torch.Tensor):
    """Pick batch rows of a decoder state: a tensor (layers, batch, hidden) or an LSTM (h, c) pair."""
    if isinstance(state, tuple):
        return tuple(s.index_select(1, index) for s in state)
    return state.index_select(1, index)


class Seq2Seq(nn.Module):
    def __init__(self, src_vocab_size: int, tgt_vocab_size: int, cell: str = "lstm",
                 src_embedding_dim: int = 50, tgt_embedding_dim: int = 128, hidden_size: int = 256,
                 encoder_layers: int = 1, decoder_layers: int = 1, bidirectional: bool = True,
                 dropout: float = 0.2, attention: str = "additive", input_feeding: bool = False,
                 src_embeddings: np.ndarray | None = None, embedding_mode: str = "finetune",
                 context_every_step: bool = True, output_layer: str = "full",
                 adaptive_cutoffs: tuple[int, ...] = (2000,), bridge_with_attention: bool = True,
                 forget_bias: float | None = None, attention_scaled: bool = False, cell_impl: str = "fused",
                 cell_variant: str = "vanilla"):
        super().__init__()
        if attention not in ATTENTIONS:
            raise ValueError(f"attention={attention!r}; allowed: {', '.join(ATTENTIONS)}")
        if output_layer not in OUTPUT_LAYERS:
            raise ValueError(f"output_layer={output_layer!r}; allowed: {', '.join(OUTPUT_LAYERS)}")
        if input_feeding and attention == "none":
            raise ValueError("input_feeding needs attention (it feeds the attentional vector)")
        # A decoder without attention always starts from the bridged encoder state (its view of the whole
        # source); one with attention does only if bridge_with_attention, else it starts from zeros and reads
        # the source through attention alone.
        self.use_bridge = attention == "none" or bridge_with_attention
        self.cell, self.attention_kind, self.input_feeding = cell, attention, input_feeding
        self.context_every_step = context_every_step and attention == "none"
        self.hidden_size, self.decoder_layers = hidden_size, decoder_layers
        self.src_embedding = nn.Embedding(src_vocab_size, src_embedding_dim, padding_idx=PAD_ID)
        if src_embeddings is not None and embedding_mode != "random":
            self.src_embedding.weight.data.copy_(torch.as_tensor(src_embeddings))
            self.src_embedding.weight.requires_grad = embedding_mode == "finetune"
        self.encoder = RecurrentEncoder(cell, src_embedding_dim, hidden_size, encoder_layers,
                                        bidirectional, dropout, impl=cell_impl, variant=cell_variant)
        enc_size = self.encoder.output_size
        states = 2 if cell == "lstm" else 1  # LSTM: hidden and cell state
        self.states = states
        if self.use_bridge:
            self.bridge = nn.Linear(enc_size, decoder_layers * hidden_size * states)
        self.tgt_embedding = nn.Embedding(tgt_vocab_size, tgt_embedding_dim, padding_idx=PAD_ID)
        decoder_input = tgt_embedding_dim + (hidden_size if input_feeding else 0)
        decoder_input += enc_size if self.context_every_step else 0
        self.decoder = rnn_factory(cell, cell_impl, cell_variant)(decoder_input, hidden_size, decoder_layers,
                                                                  batch_first=True,
                                                                  dropout=dropout if decoder_layers > 1 else 0.0)
        if attention != "none":
            self.attention = Attention(attention, hidden_size, enc_size, scaled=attention_scaled)
        if attention != "none" or self.context_every_step:
            self.combine = nn.Linear(hidden_size + enc_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.adaptive = output_layer == "adaptive"
        if self.adaptive:
            cutoffs = check_adaptive_cutoffs(adaptive_cutoffs, tgt_vocab_size, "the trained target vocabulary size")
            self.output = nn.AdaptiveLogSoftmaxWithLoss(hidden_size, tgt_vocab_size, cutoffs, div_value=4.0)
        else:
            self.output = nn.Linear(hidden_size, tgt_vocab_size)
        if forget_bias is not None:
            set_forget_bias(self, float(forget_bias))

    # ---- encoder ---------------------------------------------------------------------------
    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor):
        """src (batch, src_len) -> (Memory, initial decoder state)."""
        embedded = self.dropout(self.src_embedding(src))  # (batch, src_len, emb)
        outputs = self.encoder(embedded, src_lengths)  # (batch, src_len, enc_size), 0 at padding
        summary = self.encoder.last_state(outputs, src_lengths)  # (batch, enc_size)
        batch = src.size(0)
        if self.use_bridge:
            bridged = torch.tanh(self.bridge(summary))  # (batch, layers * hidden * states)
        else:  # the decoder starts knowing nothing of the source, which it reads by attention
            bridged = summary.new_zeros(batch, self.states * self.decoder_layers * self.hidden_size)
        parts = bridged.view(batch, -1, self.decoder_layers, self.hidden_size)  # (batch, states, layers, hidden)
        parts = parts.permute(1, 2, 0, 3).contiguous()  # (states, layers, batch, hidden)
        state = (parts[0], parts[1]) if self.cell == "lstm" else parts[0]
        keys = self.attention.project_keys(outputs) if self.attention_kind != "none" else None
        context = summary.unsqueeze(1) if self.context_every_step else None  # (batch, 1, enc_size)
        return Memory(outputs, keys, padding_mask(src_lengths, src.size(1)), context), state

    # ---- decoder ---------------------------------------------------------------------------
    def _attend(self, hidden: torch.Tensor, memory: Memory):
        """hidden (batch, steps, hidden) -> (attentional (batch, steps, hidden), weights or None)."""
        if self.attention_kind == "none":
            if memory.summary is None:
                return hidden, None
            context = memory.summary.expand(-1, hidden.size(1), -1)  # (batch, steps, enc_size)
            return torch.tanh(self.combine(torch.cat([hidden, context], dim=-1))), None
        context, weights = self.attention(hidden, memory.outputs, memory.mask, memory.keys)
        attentional = torch.tanh(self.combine(torch.cat([hidden, context], dim=-1)))
        return attentional, weights  # weights: (batch, steps, src_len)

    def scores(self, attentional: torch.Tensor) -> torch.Tensor:
        """(..., hidden) -> (..., vocab): logits (full softmax) or log-probabilities (adaptive); either
        gives the same log_softmax, cross-entropy and argmax."""
        if not self.adaptive:
            return self.output(attentional)
        flat = self.output.log_prob(attentional.reshape(-1, attentional.size(-1)))
        return flat.view(*attentional.shape[:-1], flat.size(-1))

    def initial_feed(self, batch: int, device: torch.device) -> torch.Tensor | None:
        return torch.zeros(batch, 1, self.hidden_size, device=device) if self.input_feeding else None

    def decode_step(self, tokens: torch.Tensor, state, memory: Memory, feed: torch.Tensor | None):
        """One step for every row: tokens (batch,) -> (logits (batch, vocab), state, weights, feed)."""
        x = self.dropout(self.tgt_embedding(tokens.unsqueeze(1)))  # (batch, 1, emb)
        if memory.summary is not None:
            x = torch.cat([x, memory.summary], dim=-1)  # (batch, 1, emb + enc_size)
        if feed is not None:
            x = torch.cat([x, feed], dim=-1)  # (batch, 1, emb + hidden)
        out, state = self.decoder(x, state)  # (batch, 1, hidden)
        attentional, weights = self._attend(out, memory)
        feed = attentional if self.input_feeding else None
        logits = self.scores(self.dropout(attentional)).squeeze(1)  # (batch, vocab)
        return logits, state, None if weights is None else weights.squeeze(1), feed

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor,
                teacher_forcing: float = 1.0) -> torch.Tensor:
        """Training/validation logits (batch, tgt_len, vocab) for the target inputs `<bos> y1 .. yn`.

        teacher_forcing is the probability of feeding the reference token at each step; the rest of
        the time the decoder is fed its own previous greedy prediction.
        """
        if teacher_forcing >= 1.0 and not self.input_feeding:  # whole target in one fused call
            return self.scores(self.teacher_forced(src, src_lengths, tgt_in))  # (batch, tgt_len, vocab)
        memory, state = self.encode(src, src_lengths)
        feed = self.initial_feed(src.size(0), src.device)
        tokens, steps = tgt_in[:, 0], []
        for t in range(tgt_in.size(1)):
            logits, state, _, feed = self.decode_step(tokens, state, memory, feed)
            steps.append(logits)
            if t + 1 < tgt_in.size(1):
                use_reference = torch.rand(tokens.shape, device=tokens.device) < teacher_forcing
                tokens = torch.where(use_reference, tgt_in[:, t + 1], logits.argmax(-1).detach())
        return torch.stack(steps, dim=1)  # (batch, tgt_len, vocab)

    def _fused_pass(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor):
        """The whole reference-fed target in one fused decoder call (no input feeding): (attentional
        (batch, tgt_len, hidden) before the output dropout, attention weights (batch, tgt_len, src_len) or None)."""
        memory, state = self.encode(src, src_lengths)
        x = self.dropout(self.tgt_embedding(tgt_in))  # (batch, tgt_len, emb)
        if memory.summary is not None:
            x = torch.cat([x, memory.summary.expand(-1, x.size(1), -1)], dim=-1)
        out, _ = self.decoder(x, state)  # (batch, tgt_len, hidden)
        return self._attend(out, memory)

    def teacher_forced(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """The output layer's inputs (batch, tgt_len, hidden), dropout applied, with the reference fed at
        every step: the whole target in one fused RNN call."""
        return self.dropout(self._fused_pass(src, src_lengths, tgt_in)[0])

    def reference_pass(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor):
        """Scores (batch, tgt_len, vocab) and attention weights (batch, tgt_len, src_len; None without attention)
        with the reference fed at every step, in one pass: fused, or step by step with input feeding (the
        decoder then reads its own attentional vectors). The same scores as forward(teacher_forcing=1)."""
        if not self.input_feeding:
            attentional, weights = self._fused_pass(src, src_lengths, tgt_in)
            return self.scores(self.dropout(attentional)), weights
        memory, state = self.encode(src, src_lengths)
        feed, steps, rows = self.initial_feed(src.size(0), src.device), [], []
        for t in range(tgt_in.size(1)):
            logits, state, weights, feed = self.decode_step(tgt_in[:, t], state, memory, feed)
            steps.append(logits)
            rows.append(weights)
        return torch.stack(steps, dim=1), torch.stack(rows, dim=1)  # input feeding implies attention

    @torch.no_grad()
    def attention_weights(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """The attention weights (batch, tgt_len, src_len) of a reference-fed pass, for diagnostics; the model
        must have attention."""
        if self.attention_kind == "none":
            raise ValueError("attention_weights: this model has no attention")
        return self.reference_pass(src, src_lengths, tgt_in)[1]

    @staticmethod
    def sequence_loss(scores: torch.Tensor, tgt_out: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
        """Mean cross-entropy of scores (batch, tgt_len, vocab) over the real (non-padding) target tokens."""
        return F.cross_entropy(scores.reshape(-1, scores.size(-1)), tgt_out.reshape(-1), ignore_index=PAD_ID,
                               label_smoothing=label_smoothing)

    def loss(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor, tgt_out: torch.Tensor,
             teacher_forcing: float = 1.0, label_smoothing: float = 0.0) -> torch.Tensor:
        """Mean cross-entropy over the real (non-padding) target tokens `y1 .. yn <eos>`."""
        if self.adaptive and teacher_forcing >= 1.0 and not self.input_feeding and label_smoothing == 0.0:
            keep = tgt_out != PAD_ID  # only the head and each reference word's cluster are scored
            return self.output(self.teacher_forced(src, src_lengths, tgt_in)[keep], tgt_out[keep]).loss
        return self.sequence_loss(self(src, src_lengths, tgt_in, teacher_forcing), tgt_out, label_smoothing)


def build_seq2seq(model_cfg: dict, src_vocab_size: int, tgt_vocab_size: int, src_embeddings: np.ndarray) -> Seq2Seq:
    """The model of `model_cfg`; the source embeddings have the width of `src_embeddings` (the GloVe matrix),
    which initialises them unless embedding_mode=random."""
    src_dim = int(src_embeddings.shape[1])
    return Seq2Seq(
        src_vocab_size, tgt_vocab_size, cell=model_cfg["cell"], src_embedding_dim=src_dim,
        tgt_embedding_dim=int(model_cfg["tgt_embedding_dim"]), hidden_size=int(model_cfg["hidden_size"]),
        encoder_layers=int(model_cfg["encoder_layers"]), decoder_layers=int(model_cfg["decoder_layers"]),
        bidirectional=bool(model_cfg["bidirectional"]), dropout=float(model_cfg["dropout"]),
        attention=model_cfg["attention"], input_feeding=bool(model_cfg["input_feeding"]),
        src_embeddings=src_embeddings, embedding_mode=model_cfg["embedding_mode"],
        context_every_step=bool(model_cfg.get("context_every_step", True)),
        output_layer=model_cfg.get("output_layer", "full"),
        adaptive_cutoffs=tuple(model_cfg.get("adaptive_cutoffs", (2000,))),
        bridge_with_attention=bool(model_cfg.get("bridge_with_attention", True)),  # models from before the key: True
        forget_bias=model_cfg.get("forget_bias"),
        attention_scaled=bool(model_cfg.get("attention_scaled", False)),  # models from before the key: unscaled
        cell_impl=model_cfg.get("cell_impl", "fused"), cell_variant=model_cfg.get("cell_variant", "vanilla"),
    )
