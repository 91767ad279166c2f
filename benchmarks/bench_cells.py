"""The cells from their gate equations (rnnlab.models.cells, cell_impl=gates) against PyTorch's fused kernels
(cell_impl=fused) on the same layer, weights and batch: forward + backward tokens/s and the ratio, per cell.

    .venv/bin/python benchmarks/bench_cells.py [--threads 2] [--device cpu|cuda]

One recurrent layer, input 64, hidden 128 (the classifier's order of size), batch 32 x 40 tokens; the step
times of both implementations are interleaved round by round (best of the rounds: other load on the machine
only slows a round), so the ratio compares like with like.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def measure(cell: str, device: str, rounds: int, steps: int) -> dict:
    import torch
    from torch import nn

    from rnnlab.models.cells import Stacked

    fused_cls = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell]
    torch.manual_seed(0)
    fused = fused_cls(64, 128, 1, batch_first=True).to(device)
    gates = Stacked(cell, 64, 128).to(device)
    gates.load_state_dict(fused.state_dict())
    x = torch.randn(32, 40, 64, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    impls = {"fused": fused, "gates": gates}
    best = {name: float("inf") for name in impls}
    for _ in range(3):  # warm-up: TorchScript profiles and optimises the loop on its first calls
        for module in impls.values():
            out, _ = module(x)
            out.sum().backward()
    for _ in range(rounds):
        for name, module in impls.items():
            sync()
            start = time.perf_counter()
            for _ in range(steps):
                out, _ = module(x)
                out.sum().backward()
            sync()
            best[name] = min(best[name], (time.perf_counter() - start) / steps)
    tokens = x.shape[0] * x.shape[1]
    return {"fused_tokens_per_s": round(tokens / best["fused"]), "gates_tokens_per_s": round(tokens / best["gates"]),
            "fused_ms_per_step": round(1000 * best["fused"], 2), "gates_ms_per_step": round(1000 * best["gates"], 2),
            "gates_over_fused_time": round(best["gates"] / best["fused"], 2)}


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--label", default="gate cells vs fused")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    figures = {cell: measure(cell, args.device, args.rounds, args.steps) for cell in ("rnn", "lstm", "gru")}
    for cell, row in figures.items():
        print(cell, row)
    command = "python benchmarks/bench_cells.py " + " ".join(sys.argv[1:])
    common.record(f"cells_{args.device.split(':')[0]}", args.label, figures, command.strip())


if __name__ == "__main__":
    main()
