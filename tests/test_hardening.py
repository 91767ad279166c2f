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


def _crash_after_first_epoch(cfg, work, monkeypatch):
    """Train two epochs and crash at the start of the second: a resume state of one finished epoch."""
    import json

    from rnnlab.training.checkpointing import EpochSeed

    original = EpochSeed.on_train_epoch_start

    def crash(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            raise RuntimeError("simulated crash")
        original(self, trainer, pl_module)

    cfg.trainer.max_epochs = 2
    monkeypatch.setattr(EpochSeed, "on_train_epoch_start", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, work / "model", [], checkpoint_dir=work / "ckpt")
    monkeypatch.setattr(EpochSeed, "on_train_epoch_start", original)
    return json.loads((work / "ckpt/state.json").read_text())["mlflow_run_id"]


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated resume", "missing best"])
def test_a_damaged_resume_state_is_set_aside_and_training_restarts_cleanly(prepared, monkeypatch, capsys, damage):
    import os

    cfg, work = prepared
    old_run = _crash_after_first_epoch(cfg, work, monkeypatch)
    if damage == "truncated resume":  # e.g. a disk that filled up while it was written
        resume = work / "ckpt/resume.ckpt"
        os.truncate(resume, resume.stat().st_size // 3)
    else:
        (work / "ckpt/best.ckpt").unlink()
    summary = train(cfg, work / "model", [], checkpoint_dir=work / "ckpt")
    out = capsys.readouterr().out
    assert "WARNING: the resume state is damaged" in out and "moved to" in out, out
    assert ("resume.ckpt unreadable" if damage == "truncated resume" else "best.ckpt missing") in out
    assert not summary["resumed"] and summary["epochs_run"] == 2 and (work / "model/model.pt").is_file()
    assert summary["mlflow"]["run_id"] != old_run
    assert (work / "ckpt/damaged-1/state.json").is_file()  # kept for a post-mortem
    statuses = {r.info.run_id: r.info.status for r in _runs(cfg)}
    assert statuses == {old_run: "FAILED", summary["mlflow"]["run_id"]: "FINISHED"}


@pytest.mark.slow
def test_a_checkpoint_folder_in_use_by_another_training_is_refused_with_its_process(prepared):
    from rnnlab.training.checkpointing import CheckpointFolder, FolderBusy

    cfg, work = prepared
    holder = CheckpointFolder(work / "ckpt", "f" * 64).lock()  # another training holds the folder
    try:
        with pytest.raises(FolderBusy, match=r"ckpt is in use: process \d+ on .* is training into it now"):
            train(cfg, work / "model", [], checkpoint_dir=work / "ckpt")
    finally:
        holder.unlock()
    assert _runs(cfg) == [] and not (work / "model").exists()
    assert train(cfg, work / "model", [], checkpoint_dir=work / "ckpt")["epochs_run"] >= 1  # free again


FAKE_DVC = """
import subprocess, sys, time
child = subprocess.Popen(sys.argv[1:])
print(child.pid, flush=True)
time.sleep(600)
"""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_training_whose_dvc_parent_is_killed_stops_and_its_run_is_marked_failed(prepared, tiny_project):
    """`kill -9` of the dvc process: its training child stops within seconds (no orphan training on)."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    from conftest import ROOT, run_cmd

    cfg, work = prepared
    params = work / "params.yaml"
    assert run_cmd([sys.executable, "-m", "rnnlab.compose", str(params), *tiny_project["overrides"],
                    "classify.trainer.max_epochs=400", "classify.trainer.patience=400"], ROOT).returncode == 0
    (work / "fake_dvc.py").write_text(FAKE_DVC)  # its command line names dvc, as `dvc repro`'s does
    cmd = [sys.executable, str(work / "fake_dvc.py"), sys.executable, str(ROOT / "pipelines/train.py"),
           "--params", str(params), "family=classify", "out_dir=models/m", "checkpoint_dir=checkpoints/m"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    parent = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    state = work / "checkpoints/m/state.json"
    deadline = time.time() + 120
    while time.time() < deadline and not (state.is_file() and json.loads(state.read_text()).get("epochs_done")):
        time.sleep(0.5)
    assert state.is_file(), "the training never finished an epoch"
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 30
    while time.time() < deadline and os.path.exists(f"/proc/{child}") and "Z" not in _proc_state(child):
        time.sleep(0.2)
    assert not os.path.exists(f"/proc/{child}") or "Z" in _proc_state(child), "the training trains on as an orphan"
    run_id = json.loads(state.read_text())["mlflow_run_id"]
    from mlflow.tracking import MlflowClient

    assert MlflowClient(tracking_uri=str(cfg.tracking.tracking_uri)).get_run(run_id).info.status == "FAILED"
    assert not (work / "models/m").exists()


def _proc_state(pid: int) -> str:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"
