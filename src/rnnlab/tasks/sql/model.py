"""The text-to-SQL model: the sequence-to-sequence family's encoder-decoder (rnnlab.tasks.seq2seq.model), and
for `literals=copy` a pointer over the question mixed with the vocabulary (See et al. 2017, "Get to the point").

At each decoder step t, with the attentional vector a_t (the decoder state combined with its attention
context; without attention, with the encoder summary):

    P_vocab = softmax(W a_t)                      over the V target words
    u_t     = pointer(a_t, encoder outputs)       a distribution over the question's positions
    p_gen   = sigmoid(w [a_t ; sum_i u_t,i h_i])  how much of the mass the vocabulary gets
    P(w)    = p_gen P_vocab(w) + (1 - p_gen) sum of u_t,i over the positions i whose word is w

Words live in an extended space: ids below V are target-vocabulary words, `V + i` is the word at question
position i that the vocabulary lacks (its first position when it occurs more than once). A question word the
vocabulary has adds its copy mass to its vocabulary id, so generating and copying a known word are one
event. The pointer has its own additive scorer, so a model without attention (attention=none: the decoder
reads no context by attention) can still copy. A copied word feeds the next step as `<unk>`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from rnnlab.data.tokenizer import UNK_ID
from rnnlab.models.attention import Attention
from rnnlab.tasks.seq2seq.model import PAD_ID, Memory, Seq2Seq, build_seq2seq

TINY = 1e-12


@dataclass
class CopyMemory(Memory):
    """The seq2seq memory plus what the pointer needs: its projected keys, each question word's id in the
    extended space (batch, src_len), and which extended ids a real question word maps to (batch, V + src_len)."""

    pointer_keys: torch.Tensor | None = None
    source_ext: torch.Tensor | None = None
    possible: torch.Tensor | None = None

    def index_select(self, index: torch.Tensor) -> "CopyMemory":
        base = super().index_select(index)
        return CopyMemory(base.outputs, base.keys, base.mask, base.summary, self.pointer_keys.index_select(0, index),
                          self.source_ext.index_select(0, index), self.possible.index_select(0, index))


class CopySeq2Seq(Seq2Seq):
    """Seq2Seq whose output is the copy mixture: `decode_step` returns log-probabilities over V + src_len.

    The shared greedy and beam search decode it unchanged once bound to a batch's extended ids
    (`bind(source_ext)`): a log-softmax of log-probabilities leaves them as they are."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_pointer()

    def add_pointer(self) -> None:
        """The pointer's scorer and the generate/copy switch, on top of the seq2seq network."""
        if self.adaptive:
            raise ValueError("the copy mixture needs every word's probability: output_layer=full")
        self.vocab_size = self.tgt_embedding.num_embeddings
        enc_size = self.encoder.output_size
        self.pointer = Attention("additive", self.hidden_size, enc_size)
        self.switch = nn.Linear(self.hidden_size + enc_size, 1)

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor, source_ext: torch.Tensor | None = None):
        memory, state = super().encode(src, src_lengths)
        possible = None
        if source_ext is not None:
            # An extended id that no real question word maps to (V + a position of padding, or of a word seen
            # again later) is impossible, not merely unlikely: the mixture gives it -inf, so beam search never
            # fills its beam with it. Fixed per sentence, so computed once here, not at every step.
            hits = memory.mask.new_zeros(src.size(0), self.vocab_size + src.size(1), dtype=torch.float)
            possible = hits.scatter_add(-1, source_ext, memory.mask.float()) > 0
            possible[:, : self.vocab_size] = True
        return CopyMemory(memory.outputs, memory.keys, memory.mask, memory.summary,
                          self.pointer.project_keys(memory.outputs), source_ext, possible), state

    def _mixture(self, attentional: torch.Tensor, memory: CopyMemory):
        """attentional (batch, steps, hidden) -> (log P over V + src_len (batch, steps, V + src_len),
        pointer weights (batch, steps, src_len), p_gen (batch, steps, 1))."""
        vocab = torch.softmax(self.scores(self.dropout(attentional)).float(), dim=-1)
        context, pointer = self.pointer(attentional, memory.outputs, memory.mask, memory.pointer_keys)
        p_gen = torch.sigmoid(self.switch(torch.cat([attentional, context], dim=-1))).float()
        batch, steps, src_len = pointer.shape
        mixed = torch.cat([p_gen * vocab, vocab.new_zeros(batch, steps, src_len)], dim=-1)
        index = memory.source_ext.unsqueeze(1).expand(-1, steps, -1)
        mixed = mixed.scatter_add(-1, index, (1 - p_gen) * pointer.float())
        log_probs = mixed.clamp_min(TINY).log().masked_fill(~memory.possible.unsqueeze(1), float("-inf"))
        return log_probs, pointer, p_gen

    def _inputs(self, tokens: torch.Tensor) -> torch.Tensor:
        """Extended ids as decoder inputs: a copied word outside the vocabulary is read as `<unk>`."""
        return tokens.masked_fill(tokens >= self.vocab_size, UNK_ID)

    def decode_step(self, tokens: torch.Tensor, state, memory: CopyMemory, feed: torch.Tensor | None):
        x = self.dropout(self.tgt_embedding(self._inputs(tokens).unsqueeze(1)))  # (batch, 1, emb)
        if memory.summary is not None:
            x = torch.cat([x, memory.summary], dim=-1)
        if feed is not None:
            x = torch.cat([x, feed], dim=-1)
        out, state = self.decoder(x, state)  # (batch, 1, hidden)
        attentional, weights = self._attend(out, memory)
        feed = attentional if self.input_feeding else None
        log_probs, pointer, _ = self._mixture(attentional, memory)
        shown = pointer if weights is None else weights  # what the explorer and heatmaps draw
        return log_probs.squeeze(1), state, shown.squeeze(1), feed

    def copy_pass(self, src: torch.Tensor, src_lengths: torch.Tensor, source_ext: torch.Tensor,
                  tgt_in: torch.Tensor, teacher_forcing: float = 1.0):
        """(log P (batch, tgt_len, V + src_len), pointer weights, p_gen) for the decoder inputs `<bos> y1 .. yn`."""
        memory, state = self.encode(src, src_lengths, source_ext)
        if teacher_forcing >= 1.0 and not self.input_feeding:  # the whole target in one fused call
            x = self.dropout(self.tgt_embedding(self._inputs(tgt_in)))
            if memory.summary is not None:
                x = torch.cat([x, memory.summary.expand(-1, x.size(1), -1)], dim=-1)
            out, _ = self.decoder(x, state)
            attentional, _ = self._attend(out, memory)
            return self._mixture(attentional, memory)
        feed = self.initial_feed(src.size(0), src.device)
        tokens, steps, pointers = tgt_in[:, 0], [], []
        for t in range(tgt_in.size(1)):
            log_probs, state, _, feed = self.decode_step(tokens, state, memory, feed)
            steps.append(log_probs)
            if t + 1 < tgt_in.size(1):
                use_reference = torch.rand(tokens.shape, device=tokens.device) < teacher_forcing
                tokens = torch.where(use_reference, tgt_in[:, t + 1], log_probs.argmax(-1).detach())
        return torch.stack(steps, dim=1), None, None

    def copy_loss(self, src, src_lengths, source_ext, tgt_in, tgt_out, teacher_forcing: float = 1.0) -> torch.Tensor:
        """Mean negative log-likelihood of the real target tokens under the mixture."""
        log_probs = self.copy_pass(src, src_lengths, source_ext, tgt_in, teacher_forcing)[0]
        return nn.functional.nll_loss(log_probs.reshape(-1, log_probs.size(-1)), tgt_out.reshape(-1),
                                      ignore_index=PAD_ID)

    def bind(self, source_ext: torch.Tensor) -> "BoundCopy":
        return BoundCopy(self, source_ext)


class BoundCopy:
    """A copy model bound to one batch's extended question ids, with the interface the shared decoders use
    (`encode`, `decode_step`, `initial_feed`, `training`, `eval`, `train`)."""

    def __init__(self, model: CopySeq2Seq, source_ext: torch.Tensor):
        self.model, self.source_ext = model, source_ext

    @property
    def training(self) -> bool:
        return self.model.training

    def eval(self):
        self.model.eval()
        return self

    def train(self, mode: bool = True):
        self.model.train(mode)
        return self

    def encode(self, src, src_lengths):
        return self.model.encode(src, src_lengths, self.source_ext)

    def decode_step(self, tokens, state, memory, feed):
        return self.model.decode_step(tokens, state, memory, feed)

    def initial_feed(self, batch, device):
        return self.model.initial_feed(batch, device)


def build_text2sql(model_cfg: dict, src_vocab_size: int, tgt_vocab_size: int, src_embeddings: np.ndarray) -> Seq2Seq:
    """A plain Seq2Seq (literals=placeholders) or a CopySeq2Seq (literals=copy) of `model_cfg`."""
    model = build_seq2seq(model_cfg, src_vocab_size, tgt_vocab_size, src_embeddings)
    if model_cfg.get("literals", "copy") != "copy":
        return model
    model.__class__ = CopySeq2Seq  # the same network (and initialisation), with the copy mixture on top
    model.add_pointer()
    return model
