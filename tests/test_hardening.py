"""Hardening: no MLflow run is left RUNNING, a damaged or busy checkpoint folder never wedges a variant,
no run folder is shared, and the machine that produced a number is recorded. Tiny data throughout."""

from __future__ import annotations

import pytest
import torch

from rnnlab.config import validate
from rnnlab.errors import ConfigError
from rnnlab.training.train import train


def _runs(cfg):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=str(cfg.tracking.tracking_uri))
    experiment = client.get_experiment_by_name(str(cfg.tracking.experiment_name))
    return [] if experiment is None else client.search_runs([experiment.experiment_id])


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_gpu_accelerator_on_a_machine_without_one_is_refused_before_any_run(prepared):
    cfg, work = prepared
    cfg.trainer.accelerator = "gpu"
    validate(cfg)
    with pytest.raises(ConfigError, match=r"classify.trainer.accelerator=gpu but this machine has no usable CUDA"):
        train(cfg, work / "model", [])
    assert _runs(cfg) == [] and not (work / "model").exists()


@pytest.mark.slow
def test_a_trainer_lightning_refuses_is_one_error_and_its_run_is_marked_failed(prepared):
    cfg, work = prepared
    cfg.trainer.strategy = "nonsense"
    with pytest.raises(ConfigError, match=r"Lightning cannot build a Trainer from classify.trainer .*"
                                          r"strategy=nonsense.*invalid strategy"):
        train(cfg, work / "model", [])
    runs = _runs(cfg)
    assert [r.info.status for r in runs] == ["FAILED"] and not (work / "model").exists()
