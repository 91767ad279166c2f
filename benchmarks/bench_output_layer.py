"""The translation model's output layer: full softmax over the target vocabulary against an adaptive
softmax (`seq2seq.model.output_layer=adaptive`, torch's nn.AdaptiveLogSoftmaxWithLoss: frequent words
in a full-width head, rarer ones in narrower clusters), and a smaller target vocabulary.

    .venv/bin/python benchmarks/bench_output_layer.py

Training tokens/s from bench_train.py's bare loop (same batches, same model otherwise), each setting in
its own process, alternated `--repeats` times. BLEU of a full training with the option is measured
separately by the pipeline itself (README "Benchmarks" gives the command and the figure).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

SETTINGS = {
    "full softmax, 6000 words": [],
    "adaptive [2000], 6000 words": ["seq2seq.model.output_layer=adaptive", "seq2seq.model.adaptive_cutoffs=[2000]"],
    "adaptive [1000,3000], 6000 words": ["seq2seq.model.output_layer=adaptive",
                                         "seq2seq.model.adaptive_cutoffs=[1000,3000]"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batches", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--label", default="current")
    a = ap.parse_args()
    script = Path(__file__).resolve().parent / "bench_train.py"
    rates: dict[str, list[float]] = {name: [] for name in SETTINGS}
    shares: dict[str, float] = {}
    for repeat in range(a.repeats):
        for name, overrides in SETTINGS.items():
            out = common.run_worker(script, ["--family", "seq2seq", "--epochs", str(a.epochs), "--batches",
                                             str(a.batches), "--worker", "bare", *overrides])
            rates[name] += out["tokens_per_second"][1:]
            shares[name] = out["rnn_flop_share"]
            print(name, [round(r) for r in out["tokens_per_second"]], flush=True)
    base = common.median(rates["full softmax, 6000 words"])
    figures = {name: {"tokens_per_second": round(common.median(r)),
                      "speedup_vs_full": round(common.median(r) / base, 3),
                      "rnn_share_of_step_flops": round(shares[name], 3)} for name, r in rates.items()}
    common.record("translation_output_layer", a.label, figures,
                  f"python benchmarks/bench_output_layer.py --epochs {a.epochs} --batches {a.batches} "
                  f"--repeats {a.repeats} --label {a.label!r}")
    for name, value in figures.items():
        print(name, value)


if __name__ == "__main__":
    main()
