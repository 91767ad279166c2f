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


def _train_cmd(tiny_project, *extra):
    import sys

    from conftest import ROOT

    return [sys.executable, str(ROOT / "pipelines/train.py"), *tiny_project["overrides"],
            "classify.trainer.max_epochs=1", "classify.trainer.num_threads=1", *extra]


@pytest.mark.slow
def test_two_runs_started_in_the_same_second_get_two_folders_and_two_models(tiny_project, prepared):
    import os
    import subprocess

    from conftest import ROOT

    work = tiny_project["dir"]  # its data stages ran (`prepared`): the two runs only train
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    first = _train_cmd(tiny_project, "classify.model.cell=gru")
    second = _train_cmd(tiny_project, "classify.model.cell=rnn")
    procs = [subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for cmd in (first, second)]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-6000:] for o in outs]
    folders = sorted(work.glob("outputs/runs/*/*"))
    assert len(folders) == 2 and all((f / "model/model.pt").is_file() for f in folders), folders
    cells = sorted(__import__("json").loads((f / "model/model.json").read_text())["model"]["cell"] for f in folders)
    assert cells == ["gru", "rnn"]


@pytest.mark.slow
def test_a_rejected_command_leaves_no_run_folder(tiny_project):
    import subprocess

    work = tiny_project["dir"]
    proc = subprocess.run(_train_cmd(tiny_project, "classify.trainer.patience=-1"), cwd=work, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "classify.trainer.patience=-1 is out of range" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(work.glob("outputs/runs/*/*")) == []
