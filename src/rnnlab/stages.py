"""The pipeline's stages for any task family: download -> tokenize -> embed -> train -> evaluate -> report.

Each function takes a family view of the configuration (rnnlab.config.family_view), asks the family's
registry entry for what is task-specific and does the rest itself; pipelines/<stage>.py are thin entry
points over these (`rnnlab.config.cli`). Outputs:
    models/<family>/<dataset>/<variant>/         train     (model.pt, model.json, train_summary.json, ...)
    metrics/<family>/<dataset>/<variant>.json    evaluate  (plots/<family>/<dataset>/<variant>/ beside it)
    reports/<family>/<dataset>.md (+ .png)       report    (+ the MLflow registry alias)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from omegaconf import DictConfig

from rnnlab import tasks
from rnnlab.config import grid_variants, variant_name
from rnnlab.data.prepare import raw_dir, run_data_stage
from rnnlab.errors import ConfigError


def model_dir(cfg: DictConfig, variant: str | None = None) -> Path:
    return Path(cfg.paths.models) / cfg.family / cfg.data.name / (variant or variant_name(cfg))


def metrics_path(cfg: DictConfig) -> Path:
    return Path(cfg.paths.metrics) / cfg.family / cfg.data.name / f"{variant_name(cfg)}.json"


def plots_dir(cfg: DictConfig) -> Path:
    return Path(cfg.paths.plots) / cfg.family / cfg.data.name / variant_name(cfg)


def download(cfg: DictConfig) -> None:
    stats = run_data_stage(cfg, "download")
    print(f"download: {cfg.family} {cfg.data.name} -> {stats['counts']}, {stats['seconds']:.2f}s")


def tokenize(cfg: DictConfig) -> None:
    stats = run_data_stage(cfg, "tokenize")
    print(f"tokenize: {cfg.family} {cfg.data.name}: vocabulary {stats['vocab_size']}, "
          f"{stats['tokens_per_second']:,} tokens/s")


def embed(cfg: DictConfig) -> None:
    cov = run_data_stage(cfg, "embed")
    print(f"embed: {cov['vocab_found']}/{cov['vocab_size']} words in {cov['embeddings']} "
          f"({cov['train_token_coverage']:.1%} of training tokens), {cov['seconds']:.2f}s")


def train(cfg: DictConfig) -> float | None:
    """One training run. Under DVC (`out_dir` given) it writes the stage's model folder; interactively
    (Hydra, `out_dir=null`) it prepares missing data, trains into the Hydra job folder and scores the test
    split there. Returns the best validation score (the objective of a Hydra sweeper such as Optuna)."""
    from rnnlab.training.train import stop_with_dvc_parent
    from rnnlab.training.train import train as train_model

    family = tasks.get(cfg.family)
    interactive = cfg.out_dir is None
    if interactive:  # the Hydra run/sweep folder of this job
        from hydra.core.hydra_config import HydraConfig

        from rnnlab.data.prepare import ensure_prepared

        ensure_prepared(cfg)
        job_dir = Path(HydraConfig.get().runtime.output_dir)
        out_dir, overrides = job_dir / "model", list(HydraConfig.get().overrides.task)
        if out_dir.exists():  # never replace another run's model (folder names are unique per process)
            raise ConfigError(f"{out_dir} already holds a model of another run; refusing to overwrite it. "
                              "Set hydra.run.dir (or hydra.sweep.dir) to a new folder.")
        checkpoints = Path(cfg.checkpoint_dir or job_dir / "checkpoints")
    else:
        out_dir, overrides = Path(cfg.out_dir), sys.argv[1:]
        checkpoints = Path(cfg.checkpoint_dir) if cfg.checkpoint_dir else None
    stop_with_dvc_parent()  # started by dvc: never train on as an orphan when it is killed
    summary = train_model(cfg, out_dir, overrides, checkpoints)
    if not summary:  # not rank 0
        return None
    objective = float(summary["best_" + cfg.monitor])
    best = {k: v for k, v in summary.items() if k.startswith("best_")}
    print(f"train: {summary['variant']} -> {out_dir}  {best}  "
          f"{summary['seconds_per_epoch']:.2f}s/epoch  mlflow run {summary['mlflow']['run_id']}")
    if interactive:  # outside DVC there is no evaluate stage: score the test split here
        metrics = family.evaluate(cfg, out_dir, job_dir / "metrics.json", job_dir / "plots")
        print(f"test: {family.describe_metrics(metrics)}")
    return objective


def evaluate(cfg: DictConfig) -> None:
    family = tasks.get(cfg.family)
    metrics = family.evaluate(cfg, model_dir(cfg), metrics_path(cfg), plots_dir(cfg))
    print(f"evaluate: {cfg.family} {cfg.data.name} {variant_name(cfg)}: {family.describe_metrics(metrics)}")


def machines_note(models: Path, variants: list[str]) -> str:
    """Which machine trained the variants (from their train_summary.json): same code, data and seed on the same
    CPU type give identical numbers; another CPU type rounds floats differently (docs/reproducibility.md)."""
    from rnnlab.io import read_json

    seen: dict[str, list[str]] = {}
    for variant in variants:
        m = read_json(models / variant / "train_summary.json").get("machine")
        key = ("an unrecorded machine" if not m else
               f"{m['cpu_model']} ({m['cpu_capability']}; {m['cpu_flags']}), device {m['device']}, "
               f"precision {m['precision']}, torch {m['torch']}")
        seen.setdefault(key, []).append(variant)
    where = "; ".join(f"{key}" + (f" ({', '.join(v)})" if len(seen) > 1 else "") for key, v in seen.items())
    return (f"Trained on {where}. The same code, data and seed on the same CPU type reproduce these numbers "
            "exactly; on another CPU type float rounding differs and scores move within seed noise "
            "([reproducibility](../../docs/reproducibility.md)).")


def report(cfg: DictConfig) -> None:
    """The grid's report, and the MLflow registry alias `champion` on the variant with the best validation
    score (inside `dvc exp run`: alias `exp-<experiment name>`, so the main pipeline's champion stays)."""
    from rnnlab.io import read_json
    from rnnlab.reporting.report import pick_champion
    from rnnlab.tracking.mlflow_utils import retry, retry_policy, set_champion

    family = tasks.get(cfg.family)
    dataset, paths = cfg.data.name, cfg.paths
    out = Path(paths.reports) / cfg.family / f"{dataset}.md"
    folders = {name: Path(paths[name]) / cfg.family / dataset for name in ("metrics", "models", "plots")}
    stats = read_json(raw_dir(cfg) / "stats.json")
    variants, monitor = grid_variants(cfg), cfg.monitor
    champion, summary = pick_champion(monitor, family.monitors[monitor], folders["models"], variants)
    registered = cfg.tracking.registered_model
    alias = f"exp-{os.environ['DVC_EXP_NAME']}" if os.environ.get("DVC_EXP_NAME") else "champion"
    notes = [f"MLflow registry: alias `{alias}` of model `{registered}` points at **{champion}**, the variant "
             f"with the best validation score ({monitor} {summary['best_' + monitor]:.4f}); the test scores "
             "above played no part in that choice.", "", machines_note(folders["models"], variants), ""]
    for row in family.write_report(cfg, variants, folders, out, stats, notes):
        print(f"report: {family.describe_row(row)}")
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
