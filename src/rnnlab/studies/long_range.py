"""Long-range dependencies: label a sequence by its FIRST token after k distractors.

Sequences: a key token (0 or 1: the label) then k tokens drawn uniformly from 8 distractor symbols. A recurrent
classifier reads the sequence left to right and answers from its last state, so it must carry one bit across k
steps. For each dependency length k and cell it reports the test accuracy after a fixed training budget and,
on the trained model, the gradient norm of the loss with respect to the input embedding at each distance from
the end: how much a token t steps back can still move the answer (vanishing gradients made visible).

    python -m rnnlab.studies.long_range --lengths 5 20 50 100 --cells rnn lstm gru
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch import nn

from rnnlab.models.encoders import rnn_factory

SYMBOLS = 10  # 0, 1: keys; 2..9: distractors


def batch(k: int, size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    labels = torch.randint(0, 2, (size,), generator=generator)
    distractors = torch.randint(2, SYMBOLS, (size, k), generator=generator)
    return torch.cat([labels.unsqueeze(1), distractors], dim=1), labels


class LastState(nn.Module):
    def __init__(self, cell: str, impl: str = "fused", variant: str = "vanilla", hidden: int = 32):
        super().__init__()
        self.embedding = nn.Embedding(SYMBOLS, 16)
        self.rnn = rnn_factory(cell, impl, variant)(16, hidden, 1, batch_first=True)
        self.out = nn.Linear(hidden, 2)

    def forward(self, x: torch.Tensor | None = None, embedded: torch.Tensor | None = None) -> torch.Tensor:
        embedded = self.embedding(x) if embedded is None else embedded
        out, _ = self.rnn(embedded)
        return self.out(out[:, -1])


def run(cell: str, k: int, impl: str = "fused", variant: str = "vanilla", steps: int = 400, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = LastState(cell, impl, variant)
    probe, probe_labels = batch(k, 256, torch.Generator().manual_seed(20_000 + seed))
    at_init = gradient_by_distance(model, probe, probe_labels)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    start = time.perf_counter()
    for _ in range(steps):
        x, y = batch(k, 64, generator)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    x, y = batch(k, 1000, torch.Generator().manual_seed(10_000 + seed))
    with torch.no_grad():
        accuracy = float((model(x).argmax(-1) == y).float().mean())
    return {"cell": cell, "impl": impl, "variant": variant, "k": k, "steps": steps, "seed": seed,
            "accuracy": round(accuracy, 4), "seconds": round(time.perf_counter() - start, 1),
            "grad_by_distance_at_init": at_init,
            "grad_by_distance_trained": gradient_by_distance(model, probe, probe_labels)}


def gradient_by_distance(model: LastState, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """Mean norm of d loss / d embedding of the token t steps before the end, for t = 0 .. k (the key last)."""
    embedded = model.embedding(x).detach().requires_grad_(True)
    nn.functional.cross_entropy(model(embedded=embedded), y).backward()
    model.zero_grad()
    return [float(f"{v:.3g}") for v in embedded.grad.norm(dim=-1).mean(0).flip(0).tolist()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lengths", type=int, nargs="+", default=[5, 20, 50, 100])
    ap.add_argument("--cells", nargs="+", default=["rnn", "lstm", "gru"])
    ap.add_argument("--impl", default="fused")
    ap.add_argument("--variant", default="vanilla")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    for cell in a.cells:
        for k in a.lengths:
            result = run(cell, k, a.impl, a.variant, a.steps, a.seed)
            g = result["grad_by_distance_at_init"]
            print(json.dumps({**{key: result[key] for key in ("cell", "variant", "k", "accuracy", "seconds")},
                              "init_grad_at_end": g[0], "init_grad_at_key": g[-1]}), flush=True)


if __name__ == "__main__":
    main()
