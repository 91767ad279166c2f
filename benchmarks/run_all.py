"""Every benchmark, one after the other (never two at once: they time the same cores), each appending
its measured record to benchmarks/results.json (rendered to benchmarks/RESULTS.md).

    make bench          # = .venv/bin/python benchmarks/run_all.py --label current

Needs the pipeline's outputs (`make repro`): tokenized data, GloVe matrices and the trained
gru-additive translation model.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NEEDED = ["data/tokenized/rotten_tomatoes", "data/tokenized/anki_spa_eng", "data/embeddings/rotten_tomatoes",
          "data/embeddings/anki_spa_eng", "models/seq2seq/anki_spa_eng/gru-additive/model.pt"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--label", default="current")
    ap.add_argument("--only", nargs="*", help="script names to run (default: all)")
    a = ap.parse_args()
    missing = [p for p in NEEDED if not (ROOT / p).exists()]
    if missing:
        sys.exit(f"error: the benchmarks read the pipeline's outputs and these are missing: {', '.join(missing)}. "
                 "Run `make repro` first.")
    runs = [["bench_data.py"], ["bench_train.py", "--family", "classify"], ["bench_train.py", "--family", "seq2seq"],
            ["bench_train.py", "--family", "classify", "--precision", "bf16-mixed"], ["bench_padding.py"],
            ["bench_output_layer.py"], ["bench_decode.py"], ["bench_bf16.py"], ["bench_unknown.py"], ["bench_explorer.py"],
            ["bench_cells.py"], ["bench_serving.py"]]
    for run in runs:
        if a.only and run[0] not in a.only:
            continue
        print(f"== {' '.join(run)}", flush=True)
        subprocess.run([sys.executable, str(HERE / run[0]), *run[1:], "--label", a.label], cwd=ROOT, check=True)
    print(f"results: {HERE / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
