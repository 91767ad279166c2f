"""bf16 autocast against fp32: quality of a full training (the project's train + evaluate, exactly as the
DVC stages run them) for each precision and seed, with its training throughput.

    .venv/bin/python benchmarks/bench_bf16.py [--seeds 42 43] [model.cell=gru ...]

Speed alone, side by side with the bare loop: bench_train.py --precision bf16-mixed.
Classification (rotten_tomatoes, the default lstm-attention classifier); MLflow goes to a temporary store.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def worker(precision: str, seed: int, overrides: list[str]) -> dict:
    from omegaconf import OmegaConf

    from rnnlab.config import load_params
    from rnnlab.data.prepare import tokenized_dir
    from rnnlab.tasks.classify.evaluate import evaluate
    from rnnlab.training.train import train

    cfg = load_params(common.ROOT / "params.yaml", ["family=classify", f"classify.trainer.precision={precision}",
                                                    f"seed={seed}", "classify.trainer.progress_bar=false", *overrides])
    with tempfile.TemporaryDirectory(prefix="rnnlab-bench-bf16-") as tmp:
        tmp = Path(tmp)
        OmegaConf.update(cfg, "tracking.tracking_uri", f"sqlite:///{tmp / 'mlruns.db'}")
        OmegaConf.update(cfg, "tracking.artifact_location", str(tmp / "artifacts"))
        OmegaConf.update(cfg, "tracking.log_model", False)
        summary = train(cfg, tmp / "model", [])
        metrics = evaluate(tokenized_dir(cfg), tmp / "model", tmp / "metrics.json", tmp / "plots",
                           log_to_mlflow=False)
    return {"test_accuracy": metrics["accuracy"], "test_macro_f1": metrics["macro_f1"],
            "best_val_acc": summary["best_val_acc"], "epochs_run": summary["epochs_run"],
            "train_tokens_per_second": summary["train_tokens_per_second"], "peak_rss_mib": common.peak_rss_mib()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 43])
    ap.add_argument("--label", default="current")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_args()
    if a.worker:
        precision, seed = a.worker.split(":")
        common.emit(worker(precision, int(seed), a.overrides))
        return
    figures: dict = {}
    for seed in a.seeds:
        for precision in ("32-true", "bf16-mixed"):
            out = common.run_worker(Path(__file__), ["--worker", f"{precision}:{seed}", *a.overrides])
            figures[f"{precision}, seed {seed}"] = out
            print(precision, seed, out, flush=True)
    for precision in ("32-true", "bf16-mixed"):
        runs = [v for k, v in figures.items() if k.startswith(precision + ",")]
        figures[f"{precision}, mean"] = {
            key: round(sum(r[key] for r in runs) / len(runs), 4)
            for key in ("test_accuracy", "test_macro_f1", "train_tokens_per_second")}
    common.record("bf16_quality_classify", a.label, figures,
                  "python benchmarks/bench_bf16.py --seeds " + " ".join(map(str, a.seeds))
                  + f" --label {a.label!r} " + " ".join(a.overrides))


if __name__ == "__main__":
    main()
