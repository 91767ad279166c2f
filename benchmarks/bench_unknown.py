"""What a reader sees of unknown words: each translation model of the grid decoded with each `<unk>` policy
(keep | forbid | copy, `seq2seq.model.decoding.unknown`), scored on the whole test split: BLEU greedy and
beam, and the share of outputs that still show `<unk>`.

    .venv/bin/python benchmarks/bench_unknown.py [--models models/seq2seq/anki_spa_eng/*]

Uses the pipeline's trained models and test split (`dvc repro` first) through
`rnnlab.tasks.seq2seq.evaluate.evaluate`, the function the evaluate stage runs (nothing is logged to MLflow,
nothing under metrics/ or plots/ is written).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

POLICIES = ("keep", "forbid", "copy")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="*", default=sorted(str(p.relative_to(common.ROOT)) for p in
                                                          (common.ROOT / "models/seq2seq/anki_spa_eng").glob("*")
                                                          if (p / "model.pt").is_file()))
    ap.add_argument("--tokenized", default="data/tokenized/anki_spa_eng")
    ap.add_argument("--label", default="current")
    a = ap.parse_args()
    if not a.models:
        sys.exit("error: no trained translation model under models/seq2seq/anki_spa_eng; run `make repro` first")

    from rnnlab.tasks.seq2seq.evaluate import evaluate

    figures: dict = {"tokenized": a.tokenized}
    with tempfile.TemporaryDirectory() as scratch:
        for model in a.models:
            row = {}
            for policy in POLICIES:
                out = Path(scratch) / f"{Path(model).name}-{policy}"
                m = evaluate(common.ROOT / a.tokenized, common.ROOT / model, out / "metrics.json", out / "plots",
                             log_to_mlflow=False, n_heatmaps=0, unknown=policy)
                row[policy] = {k: m[k] for k in ("bleu_greedy", "bleu_beam", "chrf_beam", "unk_share_greedy",
                                                 "unk_share_beam")}
                print(Path(model).name, policy, row[policy], flush=True)
            figures[Path(model).name] = row
    figures["sources"] = m["sources"]
    common.record("unknown_words", a.label, figures,
                  f"python benchmarks/bench_unknown.py --models {' '.join(a.models)} --label {a.label!r}")


if __name__ == "__main__":
    main()
