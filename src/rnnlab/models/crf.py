"""A linear-chain conditional random field (CRF) output layer for sequence tagging, e.g. BIO named entities.

The encoder gives, for every token t and tag k, an emission score ``e[t, k]``. The CRF adds learned scores
for how a sentence starts (``start[k]``), how one tag follows another (``transitions[i, j]``: from tag i at
t-1 to tag j at t) and how it ends (``end[k]``). A whole tag sequence y_0 .. y_{n-1} of a sentence of n tokens
scores

    score(y) = start[y_0] + sum_t e[t, y_t] + sum_{t>=1} transitions[y_{t-1}, y_t] + end[y_{n-1}]

and its probability is exp(score(y)) / Z, where the partition function Z sums exp(score) over all K^n
sequences. log Z comes from the forward algorithm (a log-sum-exp recursion over time, O(n K^2)), the best
sequence from Viterbi (the same recursion with max and back-pointers), and the per-token posteriors
p(y_t = k | sentence) from forward-backward. Unlike a per-token softmax, the CRF scores tags jointly, so it
can learn (or be told) that some neighbours never occur.

BIO constraint: with tags O, B-X (begins an entity of type X) and I-X (continues one), I-X is only valid
right after B-X or I-X of the same type X, and never as the first tag. ``bio_constraints`` turns a tag
list into boolean masks of allowed starts, transitions and ends; ``LinearChainCRF`` adds a fixed penalty of
-10000 (a buffer, never learned, and finite so nothing turns into NaN) to every forbidden move. Such paths
then carry probability exp(-10000) = 0 in float32, and Viterbi never picks one while a valid path exists.

All tensors are batch-first: emissions (B, T, K), tags (B, T) long and mask (B, T) bool, each mask row a
prefix of True values (left-aligned padding, every sentence at least one token long). Padded positions are
ignored whatever they contain (tags there may be -100). The recursions run in float32 with autocast off.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn

from rnnlab.errors import DataError

PENALTY = -10000.0


def _split_bio(tag: str) -> tuple[str, str | None]:
    """("O", None), ("B", type) or ("I", type); DataError for anything else."""
    if tag == "O":
        return "O", None
    prefix, sep, kind = tag.partition("-")
    if sep and prefix in ("B", "I") and kind:
        return prefix, kind
    raise DataError(f"tag {tag!r} is not BIO: expected O, B-<type> or I-<type> (e.g. B-person, I-geo-loc)")


def bio_constraints(tag_names: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Boolean masks (allowed_start (K,), allowed_transitions (K, K) indexed [from, to], allowed_end (K,)).

    I-X may only follow B-X or I-X (same type X) and may not start a sentence; everything else is allowed.
    The type is everything after the first "-", so "B-geo-loc" has type "geo-loc".
    """
    parsed = [_split_bio(t) for t in tag_names]
    k = len(parsed)
    start = torch.ones(k, dtype=torch.bool)
    trans = torch.ones(k, k, dtype=torch.bool)
    end = torch.ones(k, dtype=torch.bool)
    for j, (prefix_to, kind_to) in enumerate(parsed):
        if prefix_to != "I":
            continue
        start[j] = False
        for i, (prefix_from, kind_from) in enumerate(parsed):
            trans[i, j] = prefix_from in ("B", "I") and kind_from == kind_to
    return start, trans, end


def _no_autocast(device: torch.device):
    try:
        return torch.autocast(device_type=device.type, enabled=False)
    except RuntimeError:  # a device type autocast does not know
        return nullcontext()


class LinearChainCRF(nn.Module):
    """Linear-chain CRF over ``num_tags`` tags; ``constraints`` as returned by ``bio_constraints`` (None: all
    moves allowed). forward(emissions, tags, mask) is the negative log-likelihood loss."""

    def __init__(self, num_tags: int, constraints: tuple | None = None):
        super().__init__()
        if num_tags < 1:
            raise ValueError(f"num_tags must be >= 1, got {num_tags}")
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags).uniform_(-0.1, 0.1))
        self.start = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))
        self.end = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))
        if constraints is None:
            allowed = (torch.ones(num_tags, dtype=torch.bool), torch.ones(num_tags, num_tags, dtype=torch.bool),
                       torch.ones(num_tags, dtype=torch.bool))
        else:
            allowed = tuple(torch.as_tensor(c, dtype=torch.bool) for c in constraints)
            shapes = [(num_tags,), (num_tags, num_tags), (num_tags,)]
            if len(allowed) != 3 or any(tuple(a.shape) != s for a, s in zip(allowed, shapes)):
                raise ValueError(f"constraints must be (start ({num_tags},), transitions ({num_tags}, {num_tags}), "
                                 f"end ({num_tags},)), got shapes {[tuple(a.shape) for a in allowed]}")
        # additive penalties: 0 where allowed, PENALTY where not (buffers: saved and moved, never learned)
        self.register_buffer("start_penalty", torch.where(allowed[0], 0.0, PENALTY))
        self.register_buffer("transition_penalty", torch.where(allowed[1], 0.0, PENALTY))
        self.register_buffer("end_penalty", torch.where(allowed[2], 0.0, PENALTY))

    def extra_repr(self) -> str:
        return f"num_tags={self.num_tags}"

    # -- helpers ---------------------------------------------------------------------------------------

    def _scores(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Effective (start, transitions, end) in float32, penalties included."""
        return (self.start.float() + self.start_penalty.float(),
                self.transitions.float() + self.transition_penalty.float(),
                self.end.float() + self.end_penalty.float())

    def _check(self, emissions: torch.Tensor, mask: torch.Tensor, tags: torch.Tensor | None = None) -> None:
        if emissions.dim() != 3 or emissions.size(2) != self.num_tags:
            raise ValueError(f"emissions must be (batch, steps, {self.num_tags}), got {tuple(emissions.shape)}")
        if tuple(mask.shape) != tuple(emissions.shape[:2]):
            raise ValueError(f"mask must be {tuple(emissions.shape[:2])}, got {tuple(mask.shape)}")
        if tags is not None and tuple(tags.shape) != tuple(emissions.shape[:2]):
            raise ValueError(f"tags must be {tuple(emissions.shape[:2])}, got {tuple(tags.shape)}")
        if emissions.size(1) == 0 or not bool(mask[:, 0].all()):
            raise ValueError("every sentence needs at least one token (mask[:, 0] must be all True)")

    def _forward_alphas(self, emissions: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward log-scores alpha (B, T, K) (alpha[t, k]: log-sum over prefixes ending in tag k at t;
        frozen after a sentence ends) and log Z (B,)."""
        start, trans, end = self._scores()
        alpha = start + emissions[:, 0]
        alphas = [alpha]
        for t in range(1, emissions.size(1)):
            # (B, K_from, 1) + (K_from, K_to) + (B, 1, K_to) -> log-sum over K_from
            step = torch.logsumexp(alpha.unsqueeze(2) + trans + emissions[:, t].unsqueeze(1), dim=1)
            alpha = torch.where(mask[:, t].unsqueeze(1), step, alpha)
            alphas.append(alpha)
        return torch.stack(alphas, dim=1), torch.logsumexp(alpha + end, dim=1)

    # -- public API ------------------------------------------------------------------------------------

    def log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log Z per sentence, (B,)."""
        self._check(emissions, mask)
        with _no_autocast(emissions.device):
            return self._forward_alphas(emissions.float(), mask.bool())[1]

    def gold_score(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """score(tags) per sentence, (B,); tags at padded positions are ignored (any value)."""
        self._check(emissions, mask, tags)
        with _no_autocast(emissions.device):
            emissions, mask = emissions.float(), mask.bool()
            start, trans, end = self._scores()
            tags = tags.long().masked_fill(~mask, 0)  # pads (e.g. -100) never index anything
            maskf = mask.float()
            score = start[tags[:, 0]]
            score = score + (emissions.gather(2, tags.unsqueeze(2)).squeeze(2) * maskf).sum(1)
            if tags.size(1) > 1:
                score = score + (trans[tags[:, :-1], tags[:, 1:]] * maskf[:, 1:]).sum(1)
            last = mask.long().sum(1) - 1
            return score + end[tags.gather(1, last.unsqueeze(1)).squeeze(1)]

    def log_likelihood(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log p(tags | emissions) per sentence, (B,)."""
        return self.gold_score(emissions, tags, mask) - self.log_partition(emissions, mask)

    def forward(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor,
                reduction: str = "mean") -> torch.Tensor:
        """Negative log-likelihood: "mean" over sentences, "sum", or "none" (B,)."""
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction={reduction!r}; allowed: mean, sum, none")
        nll = -self.log_likelihood(emissions, tags, mask)
        return nll.mean() if reduction == "mean" else nll.sum() if reduction == "sum" else nll

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        """Viterbi: the highest-scoring tag sequence per sentence, each as long as the sentence."""
        self._check(emissions, mask)
        with _no_autocast(emissions.device):
            emissions, mask = emissions.float(), mask.bool()
            start, trans, end = self._scores()
            batch, steps, k = emissions.shape
            identity = torch.arange(k, device=emissions.device).expand(batch, k)
            best = start + emissions[:, 0]
            pointers = []
            for t in range(1, steps):
                step, pointer = (best.unsqueeze(2) + trans + emissions[:, t].unsqueeze(1)).max(dim=1)
                keep = mask[:, t].unsqueeze(1)
                best = torch.where(keep, step, best)
                pointers.append(torch.where(keep, pointer, identity))  # pads: stay on the same tag
            tag = (best + end).argmax(dim=1)
            path = [tag]
            for pointer in reversed(pointers):
                tag = pointer.gather(1, tag.unsqueeze(1)).squeeze(1)
                path.append(tag)
            path = torch.stack(path[::-1], dim=1).tolist()
            lengths = mask.long().sum(1).tolist()
        return [row[:n] for row, n in zip(path, lengths)]

    def marginals(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Posterior p(y_t = k | sentence), (B, T, K) float32, by forward-backward; padded rows are zeros."""
        self._check(emissions, mask)
        with _no_autocast(emissions.device):
            emissions, mask = emissions.float(), mask.bool()
            _, trans, end = self._scores()
            alphas, log_z = self._forward_alphas(emissions, mask)
            steps = emissions.size(1)
            end_b = end.expand(emissions.size(0), -1)
            beta = end_b  # beta[t, k]: log-sum over suffixes after tag k at t, ending included
            betas = [beta]
            for t in range(steps - 2, -1, -1):
                # (K_from, K_to) + (B, 1, K_to) -> log-sum over K_to
                step = torch.logsumexp(trans + (emissions[:, t + 1] + beta).unsqueeze(1), dim=2)
                beta = torch.where(mask[:, t + 1].unsqueeze(1), step, end_b)
                betas.append(beta)
            betas = torch.stack(betas[::-1], dim=1)
            probs = torch.exp(alphas + betas - log_z[:, None, None])
            return probs * mask.unsqueeze(2).float()
