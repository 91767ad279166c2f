"""Decoding without the reference: greedy and batched beam search.

Both follow the same rules, so beam size 1 gives exactly the greedy output:
- sentence i may produce at most `limit_i = min(max_length, ceil(max_len_a * src_len_i) + max_len_b)`
  tokens before `<eos>`; at that point `<eos>` is forced;
- a finished hypothesis only extends with `<eos>` at zero cost (its score is final).
Beam search keeps `beam` hypotheses per sentence in one (batch * beam) tensor, picks the best
`beam` of the beam x vocab continuations per sentence at every step, and ranks finished hypotheses
by log-probability / lp(length) with GNMT's lp = ((5 + length) / 6) ** length_penalty (Wu et al. 2016).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rnnlab.tasks.seq2seq.model import Seq2Seq, select_state


@dataclass
class Hypothesis:
    tokens: list[int]  # without <bos>/<eos>
    score: float  # length-normalised log-probability (incl. <eos>)
    attention: torch.Tensor | None  # (len(tokens) + 1, src_len) incl. the <eos> step


@dataclass
class Decoded:
    tokens: list[list[int]]  # per sentence, without <bos>/<eos>
    scores: list[float]  # log-probability of each output (incl. <eos>), length-normalised for beam
    attention: list[torch.Tensor] | None  # per sentence (output_len + 1, src_len) incl. the <eos> step
    n_best: list[list[Hypothesis]] | None = None  # beam search with n_best > 1: per sentence, best first


def length_limits(src_lengths: torch.Tensor, max_length: int, max_len_a: float, max_len_b: int) -> torch.Tensor:
    limits = torch.ceil(src_lengths.float() * max_len_a).long() + max_len_b
    return limits.clamp(min=1, max=max_length)  # (batch,)


def _restrict(logp: torch.Tensor, rows: torch.Tensor, eos: int) -> torch.Tensor:
    """Rows in `rows` may only emit <eos>, at zero cost."""
    if rows.any():
        forced = torch.full_like(logp[0], float("-inf"))
        forced[eos] = 0.0
        logp = torch.where(rows.unsqueeze(1), forced.unsqueeze(0), logp)
    return logp


def _ban(logp: torch.Tensor, banned: int | None) -> torch.Tensor:
    """No hypothesis may emit token `banned` (e.g. `<unk>`): its log-probability becomes -inf."""
    if banned is None:
        return logp
    logp = logp.clone()
    logp[:, banned] = float("-inf")
    return logp


def _trim(seq: list[int], eos: int) -> list[int]:
    return seq[: seq.index(eos)] if eos in seq else seq


@torch.no_grad()
def greedy_decode(model: Seq2Seq, src: torch.Tensor, src_lengths: torch.Tensor, bos: int, eos: int,
                  max_length: int = 50, max_len_a: float = 2.0, max_len_b: int = 10,
                  return_attention: bool = False, banned: int | None = None) -> Decoded:
    """The most likely token at every step, for the whole batch at once (never `banned` when given)."""
    was_training = model.training
    model.eval()
    batch, device = src.size(0), src.device
    limits = length_limits(src_lengths, max_length, max_len_a, max_len_b).to(device)
    memory, state = model.encode(src, src_lengths)
    feed = model.initial_feed(batch, device)
    tokens = torch.full((batch,), bos, dtype=torch.long, device=device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    lengths = torch.zeros(batch, dtype=torch.long, device=device)
    scores = torch.zeros(batch, device=device)
    outputs, weights_seq = [], []
    for _ in range(int(limits.max()) + 1):
        logits, state, weights, feed = model.decode_step(tokens, state, memory, feed)
        logp = _restrict(_ban(torch.log_softmax(logits.float(), dim=-1), banned), finished | (lengths >= limits), eos)
        best, tokens = logp.max(dim=-1)  # (batch,)
        scores += best
        lengths += (~finished).long()
        finished = finished | (tokens == eos)
        outputs.append(tokens)
        if weights is not None:
            weights_seq.append(weights)
        if bool(finished.all()):
            break
    seqs = torch.stack(outputs, dim=1).tolist()  # (batch, steps)
    attention = None
    if return_attention and weights_seq:
        stacked = torch.stack(weights_seq, dim=1)  # (batch, steps, src_len)
        attention = [stacked[i, : int(lengths[i])].cpu() for i in range(batch)]
    model.train(was_training)
    return Decoded([_trim(s, eos) for s in seqs], scores.tolist(), attention)


@torch.no_grad()
def beam_search(model: Seq2Seq, src: torch.Tensor, src_lengths: torch.Tensor, bos: int, eos: int,
                beam: int = 5, max_length: int = 50, max_len_a: float = 2.0, max_len_b: int = 10,
                length_penalty: float = 0.6, return_attention: bool = False, banned: int | None = None,
                n_best: int = 1) -> Decoded:
    """Batched beam search; `beam=1` is greedy decoding (argmax at each step). No hypothesis emits `banned`.
    n_best > 1 also returns each sentence's `n_best` final hypotheses, best first (at most `beam`; fewer when
    fewer have a finite score)."""
    if beam < 1:
        raise ValueError(f"beam must be >= 1, got {beam}")
    if not 1 <= n_best <= beam:
        raise ValueError(f"n_best must be between 1 and the beam size {beam}, got {n_best}")
    was_training = model.training
    model.eval()
    batch, device = src.size(0), src.device
    limits = length_limits(src_lengths, max_length, max_len_a, max_len_b).to(device)
    memory, state = model.encode(src, src_lengths)
    # Every sentence's row repeated `beam` times: row b * beam + k is hypothesis k of sentence b.
    expand = torch.arange(batch, device=device).repeat_interleave(beam)  # (batch*beam,)
    memory, state = memory.index_select(expand), select_state(state, expand)
    limits = limits.index_select(0, expand)
    feed = model.initial_feed(batch * beam, device)
    tokens = torch.full((batch * beam,), bos, dtype=torch.long, device=device)
    scores = torch.zeros(batch, beam, device=device)
    scores[:, 1:] = float("-inf")  # all hypotheses start identical: expand only the first
    finished = torch.zeros(batch * beam, dtype=torch.bool, device=device)
    lengths = torch.zeros(batch * beam, dtype=torch.long, device=device)  # tokens incl. <eos>
    seqs = torch.empty(batch * beam, 0, dtype=torch.long, device=device)
    weights_seq = [] if return_attention else None
    offsets = (torch.arange(batch, device=device) * beam).unsqueeze(1)  # (batch, 1)
    for step in range(int(limits.max()) + 1):
        logits, state, weights, feed = model.decode_step(tokens, state, memory, feed)
        logp = _ban(torch.log_softmax(logits.float(), dim=-1), banned)  # (batch*beam, vocab)
        logp = _restrict(logp, finished | (lengths >= limits), eos)
        vocab = logp.size(1)
        total = (scores.view(-1, 1) + logp).view(batch, beam * vocab)
        top_scores, top_index = total.topk(beam, dim=1)  # (batch, beam)
        origin = (offsets + torch.div(top_index, vocab, rounding_mode="floor")).view(-1)  # (batch*beam,)
        tokens = (top_index % vocab).view(-1)
        state = select_state(state, origin)
        if feed is not None:
            feed = feed.index_select(0, origin)
        was_finished = finished.index_select(0, origin)
        lengths = lengths.index_select(0, origin) + (~was_finished).long()
        finished = was_finished | (tokens == eos)
        seqs = torch.cat([seqs.index_select(0, origin), tokens.unsqueeze(1)], dim=1)
        if weights_seq is not None:
            weights_seq = [w.index_select(0, origin) for w in weights_seq]
            if weights is not None:
                weights_seq.append(weights.index_select(0, origin))
        scores = top_scores
        if bool(finished.all()):
            break
    norm = ((5.0 + lengths.float()) / 6.0) ** length_penalty if length_penalty else torch.ones_like(scores.view(-1))
    ranked = (scores.view(-1) / norm).view(batch, beam)
    order = torch.sort(ranked, dim=1, descending=True, stable=True).indices  # (batch, beam), best first
    best = order[:, 0] + offsets.squeeze(1)  # (batch,)
    out_tokens = [_trim(seqs[i].tolist(), eos) for i in best.tolist()]
    stacked = torch.stack(weights_seq, dim=1) if weights_seq else None  # (batch*beam, steps, src_len)
    attention = None if stacked is None else [stacked[i, : int(lengths[i])].cpu() for i in best.tolist()]
    alternatives = None
    if n_best > 1:
        alternatives = [[Hypothesis(_trim(seqs[row].tolist(), eos), float(ranked[b, k]),
                                    None if stacked is None else stacked[row, : int(lengths[row])].cpu())
                         for k in order[b, :n_best].tolist()
                         for row in (b * beam + k,) if torch.isfinite(ranked[b, k])]
                        for b in range(batch)]
    model.train(was_training)
    return Decoded(out_tokens, ranked.gather(1, (best - offsets.squeeze(1)).unsqueeze(1)).squeeze(1).tolist(),
                   attention, alternatives)
