"""Hydra callback: a multirun (sweep) is one MLflow parent run with a child run per job.

At the start of a multirun the parent run is created in the experiment of the sweep's base
configuration; its id goes to the environment (`RNNLAB_MLFLOW_PARENT_RUN_ID`), where
`rnnlab.tracking.mlflow_utils.make_logger` finds it and tags each job's run with
`mlflow.parentRunId`, which is what the MLflow UI nests by. The parent ends FINISHED when every
job succeeded, FAILED otherwise.
"""

from __future__ import annotations

import os
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

PARENT_ENV = "RNNLAB_MLFLOW_PARENT_RUN_ID"
EXPERIMENT_ENV = "RNNLAB_MLFLOW_PARENT_EXPERIMENT"


class MlflowSweepParent(Callback):
    def __init__(self) -> None:
        self.client = None
        self.run_id: str | None = None
        self.failed = 0

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from mlflow.tracking import MlflowClient

        from rnnlab.config import task_config
        from rnnlab.tracking.mlflow_utils import artifact_uri, git_commit

        cfg = task_config(OmegaConf.create({k: v for k, v in config.items() if k != "hydra"}))
        OmegaConf.resolve(cfg)
        self.client = MlflowClient(tracking_uri=cfg.tracking.tracking_uri)
        name = cfg.tracking.experiment_name
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else \
            self.client.create_experiment(name, artifact_location=artifact_uri(cfg))
        sweep_dir = str(config.hydra.sweep.dir)
        overrides = " ".join(config.hydra.overrides.task) or "(none)"
        run = self.client.create_run(experiment_id, run_name=f"sweep {os.path.basename(sweep_dir)}", tags={
            "task": cfg.task.name, "dataset": cfg.data.name, "launcher": "hydra-multirun",
            "sweep_dir": sweep_dir, "overrides": overrides, "git_commit": git_commit()})
        self.run_id = run.info.run_id
        os.environ[PARENT_ENV], os.environ[EXPERIMENT_ENV] = self.run_id, name
        print(f"[rnnlab] sweep: MLflow parent run {self.run_id} in experiment {name}")

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        from hydra.core.utils import JobStatus

        if getattr(job_return, "status", None) == JobStatus.FAILED:
            self.failed += 1

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.client is not None and self.run_id is not None:
            self.client.set_terminated(self.run_id, "FAILED" if self.failed else "FINISHED")
        os.environ.pop(PARENT_ENV, None)
        os.environ.pop(EXPERIMENT_ENV, None)
