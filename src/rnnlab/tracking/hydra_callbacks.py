"""Hydra callback: a multirun (sweep) is one MLflow parent run with a child run per job.

At the start of a multirun the parent run is created in the experiment of the sweep's base
configuration; its id goes to the environment (`RNNLAB_MLFLOW_PARENT_RUN_ID`), where
`rnnlab.tracking.mlflow_utils.make_logger` finds it and tags each job's run with
`mlflow.parentRunId`, which is what the MLflow UI nests by. The environment variable reaches jobs
run in other processes too (the joblib launcher's workers start after it is set). The parent ends
FINISHED when every child run finished, FAILED otherwise (also when a job's exception ends the sweep
early, which skips Hydra's on_multirun_end: an exit handler marks the parent then). At the end of the sweep:
- an `experiment=` comparison (config key `comparison`) rebuilds its report from MLflow
  (rnnlab.reporting.compare) into reports/compare/ and logs it to the parent run;
- an Optuna search (`hparams_search=`) logs its best trial's parameters and value to the parent run.
"""

from __future__ import annotations

import atexit
import os
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from rnnlab.tracking.mlflow_utils import EXPERIMENT_ENV, PARENT_ENV


class MlflowSweepParent(Callback):
    def __init__(self) -> None:
        self.client = None
        self.run_id: str | None = None
        self.cfg: DictConfig | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from mlflow.tracking import MlflowClient

        from rnnlab.config import family_view
        from rnnlab.tracking.mlflow_utils import artifact_uri, ensure_store, git_commit

        cfg = family_view(OmegaConf.create({k: v for k, v in config.items() if k != "hydra"}))
        OmegaConf.resolve(cfg)
        self.cfg = cfg
        ensure_store(cfg.tracking.tracking_uri)
        self.client = MlflowClient(tracking_uri=cfg.tracking.tracking_uri)
        name = cfg.tracking.experiment_name
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else \
            self.client.create_experiment(name, artifact_location=artifact_uri(cfg))
        sweep_dir = str(config.hydra.sweep.dir)
        overrides = " ".join(config.hydra.overrides.task) or "(none)"
        run = self.client.create_run(experiment_id, run_name=f"sweep {os.path.basename(sweep_dir)}", tags={
            "family": cfg.family, "dataset": cfg.data.name, "launcher": "hydra-multirun",
            "sweep_dir": sweep_dir, "overrides": overrides, "git_commit": git_commit()})
        self.run_id, self.experiment_id, self.ended = run.info.run_id, experiment_id, False
        os.environ[PARENT_ENV], os.environ[EXPERIMENT_ENV] = self.run_id, name
        # Hydra skips on_multirun_end when a job raises: the parent must not stay RUNNING then.
        atexit.register(self._abandoned)
        print(f"[rnnlab] sweep: MLflow parent run {self.run_id} in experiment {name}")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        os.environ.pop(PARENT_ENV, None)
        os.environ.pop(EXPERIMENT_ENV, None)
        if self.client is None or self.run_id is None:
            return
        self.ended = True
        # Jobs may have run in other processes (joblib launcher): their runs' statuses tell.
        children = self.client.search_runs([self.experiment_id], f"tags.mlflow.parentRunId = '{self.run_id}'")
        status = "FAILED" if any(r.info.status != "FINISHED" for r in children) else "FINISHED"
        try:
            self._log_optuna_best(str(config.hydra.sweep.dir))
            if OmegaConf.select(self.cfg, "comparison.name", default=None):
                self._compare()
        except Exception as err:  # the sweep's runs are recorded; say plainly what is missing
            print(f"[rnnlab] sweep: the end-of-sweep summary failed: {err}", file=sys.stderr)
            status = "FAILED"
        finally:
            self.client.set_terminated(self.run_id, status)

    def _abandoned(self) -> None:
        if self.client is not None and self.run_id is not None and not self.ended:
            self.client.set_terminated(self.run_id, "FAILED")
            print(f"[rnnlab] sweep: a job failed; MLflow parent run {self.run_id} marked FAILED", file=sys.stderr)

    def _log_optuna_best(self, sweep_dir: str) -> None:
        results = Path(sweep_dir) / "optimization_results.yaml"
        if not results.is_file():
            return
        best = OmegaConf.to_container(OmegaConf.load(results))
        for key, value in best.get("best_params", {}).items():
            self.client.log_param(self.run_id, f"best.{key}", value)
        if "best_value" in best:
            self.client.log_metric(self.run_id, "best_value", float(best["best_value"]))
        self.client.log_artifact(self.run_id, str(results))
        print(f"[rnnlab] sweep: best trial {best.get('best_params')} -> {best.get('best_value')}")

    def _compare(self) -> None:
        from rnnlab.reporting.compare import write_comparison

        comparison, cfg = self.cfg.comparison, self.cfg
        out = Path(cfg.paths.reports) / "compare" / f"{comparison.name}-{cfg.data.name}.md"
        result = write_comparison(cfg.tracking.tracking_uri, cfg.tracking.experiment_name, comparison.factor,
                                  out, comparison.get("metric"), only_parent=self.run_id,
                                  command=f"python pipelines/compare.py --comparison {comparison.name} "
                                          f"--dataset {cfg.data.name}",
                                  breakdown_metrics=list(comparison.get("breakdown") or []),
                                  covarying=tuple(comparison.get("covarying") or ()))
        for path in sorted(out.parent.glob(f"{out.stem}*")):
            self.client.log_artifact(self.run_id, str(path), "comparison")
        for pair in result["groups"][0]["pairs"]:
            print(f"[rnnlab] compare: {pair['b']} - {pair['a']}: {pair['mean']:+.4f} "
                  f"[{pair['ci'][0]:+.4f}, {pair['ci'][1]:+.4f}] {pair['verdict']}")
        print(f"[rnnlab] compare: wrote {out}")
