"""DVC stage `report` / `translate_report`: reports/<task>/<dataset>.md (+ .png) comparing the grid,
and the MLflow registry alias `champion` on the variant with the best validation score."""

import os
from pathlib import Path

from rnnlab.config import MONITORS, cli, grid_variants
from rnnlab.data.prepare import raw_dir
from rnnlab.io import read_json
from rnnlab.reporting.report import write_report, write_translation_report


def pick_champion(monitor: str, models_dir: Path, variants: list[str]) -> tuple[str, dict]:
    """The variant whose training reached the best validation score (model selection never sees test)."""
    summaries = {v: read_json(models_dir / v / "train_summary.json") for v in variants}
    sign = 1 if MONITORS[monitor] == "max" else -1
    best = max(variants, key=lambda v: (sign * summaries[v]["best_" + monitor], v))
    return best, summaries[best]


def run(cfg):
    from rnnlab.tracking.mlflow_utils import retry, retry_policy, set_champion

    task, dataset, paths = cfg.task.name, cfg.data.name, cfg.paths
    out = Path(paths.reports) / task / f"{dataset}.md"
    folders = {name: Path(paths[name]) / task / dataset for name in ("metrics", "models", "plots")}
    stats = read_json(raw_dir(cfg) / "stats.json")
    variants, monitor = grid_variants(cfg), cfg.task.monitor
    champion, summary = pick_champion(monitor, folders["models"], variants)
    registered = cfg.tracking.registered_model
    # Inside `dvc exp run` the best variant is a candidate, not the champion of the committed pipeline:
    # it gets the alias exp-<experiment name>; `champion` stays where the main pipeline put it.
    alias = f"exp-{os.environ['DVC_EXP_NAME']}" if os.environ.get("DVC_EXP_NAME") else "champion"
    notes = [f"MLflow registry: alias `{alias}` of model `{registered}` points at **{champion}**, the variant "
             f"with the best validation score ({monitor} {summary['best_' + monitor]:.4f}); the test scores "
             "above played no part in that choice.", ""]
    if task == "translate":
        rows = write_translation_report(dataset, variants, folders["metrics"], folders["models"],
                                        folders["plots"], out, stats, notes=notes)
        for row in rows:
            print(f"report: {row['variant']:>16}  BLEU greedy {row['bleu_greedy']:.2f}  "
                  f"beam {row['bleu_beam']:.2f}  chrF {row['chrf_beam']:.2f}")
    else:
        rows = write_report(task, dataset, variants, folders["metrics"], folders["models"], out, stats, notes=notes)
        for row in rows:
            print(f"report: {row['variant']:>16}  accuracy {row['accuracy']:.4f}  macro-F1 {row['macro_f1']:.4f}")
    print(f"report: wrote {out}")
    run_info = summary["mlflow"]
    if "model_uri" not in run_info:
        print(f"report: WARNING: {champion} was trained with tracking.log_model=false; no registry alias set")
        return
    version = retry(lambda: set_champion(run_info["tracking_uri"], registered, run_info["model_uri"],
                                         run_info["run_id"], f"{dataset} {champion} "
                                         f"({monitor} {summary['best_' + monitor]:.4f})", alias=alias),
                    f"set the registry alias {alias}", **retry_policy(cfg))
    print(f"report: MLflow model {registered} version {version} -> alias {alias} ({champion})")


if __name__ == "__main__":
    cli(run, "report")
