"""Faults: a real SIGKILL mid-training then resume, non-finite losses, an MLflow backend that is down."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT
from rnnlab.training.checkpointing import TrainingDiverged
from rnnlab.training.curves import read_curve
from rnnlab.training.train import train

pytestmark = pytest.mark.slow  # every test here trains a model (in-process or through the stage script)


def _weights(folder):
    return torch.load(folder / "model.pt", weights_only=True)


def _same_weights(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _train_cmd(params, name: str) -> list[str]:
    return [sys.executable, str(ROOT / "pipelines/train.py"), "--params", str(params), "family=classify",
            f"out_dir=models/{name}", f"checkpoint_dir=checkpoints/{name}", "curves_dir=curves"]


@pytest.mark.cost(53)
@pytest.mark.timeout(300)
def test_sigkill_mid_epoch_then_the_same_command_resumes_and_matches_an_uninterrupted_run(prepared, tiny_project):
    from mlflow.tracking import MlflowClient

    cfg, work = prepared
    params = work / "params.yaml"
    # Small batches: epochs long enough (about a second) for the kill to land inside one.
    subprocess.run([sys.executable, "-m", "rnnlab.compose", str(params), *tiny_project["overrides"],
                    "classify.optim.batch_size=2", "classify.trainer.max_epochs=5", "classify.trainer.patience=5"],
                   check=True, cwd=ROOT)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    reference = subprocess.run(_train_cmd(params, "reference"), cwd=work, env=env, capture_output=True, text=True)
    assert reference.returncode == 0, reference.stderr[-2000:]

    proc = subprocess.Popen(_train_cmd(params, "killed"), cwd=work, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:  # the epoch line is printed after validation; the kill lands in epoch 3
        lines.append(line)
        if line.startswith("epoch 2/"):
            time.sleep(0.3)
            proc.send_signal(signal.SIGKILL)
            break
    assert proc.wait(timeout=60) == -signal.SIGKILL, "".join(lines)
    assert not (work / "models/killed").exists()  # nothing that looks finished
    state = json.loads((work / "checkpoints/killed/state.json").read_text())
    assert state["status"] == "running" and state["epochs_done"] >= 1
    # the learning curves hold the epochs finished before the kill (each table replaced whole, atomically)
    before = read_curve(work / "curves/loss/killed.csv")
    assert [int(r["epoch"]) for r in before] == list(range(1, len(before) + 1)) and len(before) >= 2

    resumed = subprocess.run(_train_cmd(params, "killed"), cwd=work, env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming from checkpoints/killed/resume.ckpt (epoch {state['epochs_done']} done)" in resumed.stdout
    assert _same_weights(_weights(work / "models/reference"), _weights(work / "models/killed"))
    a = json.loads((work / "models/reference/train_summary.json").read_text())
    b = json.loads((work / "models/killed/train_summary.json").read_text())
    assert b["resumed"] and a["best_val_acc"] == b["best_val_acc"] and a["best_epoch"] == b["best_epoch"]
    drop = ("epoch_seconds", "train_tokens_per_second")
    assert [{k: v for k, v in r.items() if k not in drop} for r in a["history"]] == \
           [{k: v for k, v in r.items() if k not in drop} for r in b["history"]]
    # after the resume the curves hold every epoch once, exactly as the uninterrupted run's
    for quantity, columns in (("loss", ["epoch", "train_loss", "val_loss"]), ("acc", ["epoch", "train_acc", "val_acc"])):
        rows = read_curve(work / f"curves/{quantity}/killed.csv")
        assert list(rows[0]) == columns
        assert [int(r["epoch"]) for r in rows] == list(range(1, b["epochs_run"] + 1))
        assert (work / f"curves/{quantity}/killed.csv").read_text() == \
            (work / f"curves/{quantity}/reference.csv").read_text()
        assert [float(r["val_loss"]) for r in rows] == [h["val_loss"] for h in b["history"]] if quantity == "loss" \
            else [float(r["val_acc"]) for r in rows] == [h["val_acc"] for h in b["history"]]
    # the same MLflow run went on, and it finished
    assert b["mlflow"]["run_id"] == state["mlflow_run_id"]
    client = MlflowClient(tracking_uri=cfg.tracking.tracking_uri)
    run = client.get_run(state["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.metrics["best_val_acc"] == b["best_val_acc"]
    assert run.data.tags["resumed_from"].endswith("resume.ckpt")
    finished = json.loads((work / "checkpoints/killed/state.json").read_text())
    assert finished["status"] == "finished" and not list((work / "checkpoints/killed").glob("*.ckpt"))


def test_same_config_and_seed_give_identical_metrics_and_weights(prepared):
    cfg, work = prepared
    cfg.trainer.max_epochs = 2
    a = train(cfg, work / "a", [])
    b = train(cfg, work / "b", [])
    assert _same_weights(_weights(work / "a"), _weights(work / "b"))
    drop = ("epoch_seconds", "train_tokens_per_second")
    assert [{k: v for k, v in r.items() if k not in drop} for r in a["history"]] == \
           [{k: v for k, v in r.items() if k not in drop} for r in b["history"]]


def test_a_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(prepared, monkeypatch):
    from rnnlab.tasks.classify.module import ClassifierModule

    cfg, work = prepared
    cfg.trainer.max_epochs = 3
    original = ClassifierModule.training_step

    def poisoned(self, batch, batch_idx):
        loss = original(self, batch, batch_idx)
        if self.current_epoch == 1 and batch_idx == 4:
            return loss * float("nan")
        return loss

    monkeypatch.setattr(ClassifierModule, "training_step", poisoned)
    with pytest.raises(TrainingDiverged) as err:
        train(cfg, work / "nan", [], checkpoint_dir=work / "ckpt")
    message = str(err.value)
    assert "loss is nan at epoch 2" in message and "batch 4 of the epoch" in message
    assert str(work / "ckpt") in message and "classify.optim.lr" in message
    assert not (work / "nan").exists()
    good = torch.load(work / "ckpt/resume.ckpt", weights_only=True)
    assert good["epoch"] == 0 and all(torch.isfinite(t).all() for t in good["state_dict"].values())
    state = json.loads((work / "ckpt/state.json").read_text())
    assert state["status"] == "running" and state["epochs_done"] == 1


def test_a_checkpoint_of_another_configuration_is_not_resumed(prepared, capsys):
    cfg, work = prepared
    cfg.trainer.max_epochs = 1
    folder = work / "ckpt"
    folder.mkdir()
    (folder / "state.json").write_text(json.dumps({"fingerprint": "0" * 64, "status": "running",
                                                   "mlflow_run_id": "abc"}))
    (folder / "resume.ckpt").write_bytes(b"a checkpoint of another task")
    summary = train(cfg, work / "model", [], checkpoint_dir=folder)
    assert "another configuration or vocabulary" in capsys.readouterr().out
    assert not summary["resumed"] and summary["mlflow"]["run_id"] != "abc"


def test_a_checkpoint_whose_mlflow_run_is_gone_resumes_in_a_new_run(prepared, monkeypatch, capsys):
    from rnnlab.training.checkpointing import EpochSeed

    cfg, work = prepared
    cfg.trainer.max_epochs = 2
    original = EpochSeed.on_train_epoch_start

    def crash_in_epoch_two(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            raise RuntimeError("simulated crash")
        original(self, trainer, pl_module)

    monkeypatch.setattr(EpochSeed, "on_train_epoch_start", crash_in_epoch_two)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, work / "model", [], checkpoint_dir=work / "ckpt")
    monkeypatch.setattr(EpochSeed, "on_train_epoch_start", original)
    state = json.loads((work / "ckpt/state.json").read_text())
    assert state["epochs_done"] == 1
    state["mlflow_run_id"] = "0" * 32  # a run the tracking store does not have (e.g. a wiped mlruns.db)
    (work / "ckpt/state.json").write_text(json.dumps(state))
    cfg.tracking.retries = 0
    summary = train(cfg, work / "model", [], checkpoint_dir=work / "ckpt")
    assert "cannot be opened; continuing in a new run" in capsys.readouterr().out
    assert summary["resumed"] and summary["mlflow"]["run_id"] != "0" * 32 and summary["epochs_run"] == 2


def test_tracking_that_is_down_at_the_start_fails_clearly_before_training(prepared, capsys):
    from rnnlab.tracking.mlflow_utils import TrackingError

    cfg, work = prepared
    cfg.tracking.tracking_uri = "http://127.0.0.1:9"  # nothing listens on the discard port
    cfg.tracking.retries, cfg.tracking.retry_seconds = 2, 0.05
    start = time.perf_counter()
    with pytest.raises(TrackingError, match=r"http://127.0.0.1:9 failed to create or open the run after 3 attempts"):
        train(cfg, work / "model", [], checkpoint_dir=work / "ckpt")
    assert time.perf_counter() - start < 30
    assert not (work / "model").exists() and not list((work / "ckpt").glob("*.ckpt"))
    assert "warning" not in capsys.readouterr().err  # one clear error, no "training goes on" noise


def test_tracking_failures_during_training_are_retried_then_warned_and_the_model_is_kept(prepared, monkeypatch, capsys):
    from mlflow.tracking import MlflowClient

    cfg, work = prepared
    cfg.trainer.max_epochs = 2
    cfg.tracking.retries, cfg.tracking.retry_seconds = 1, 0.01
    calls = {"n": 0}
    original = MlflowClient.log_batch

    def flaky(self, *args, **kwargs):  # every third call fails twice in a row ("database is locked")
        calls["n"] += 1
        if calls["n"] % 3 in (1, 2) and calls["n"] > 3:
            raise RuntimeError("database is locked")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_batch", flaky)
    summary = train(cfg, work / "model", [])
    assert (work / "model/model.pt").is_file() and len(summary["history"]) == 2
    assert summary["mlflow"]["failed_calls"] >= 1
    assert "database is locked" in capsys.readouterr().err


def test_a_run_killed_after_early_stopping_resumes_without_training_further(prepared, monkeypatch):
    import rnnlab.training.train as train_module

    cfg, work = prepared
    cfg.trainer.max_epochs, cfg.trainer.patience = 12, 1
    reference = train(cfg, work / "reference", [])
    assert reference["epochs_run"] < 12  # early stopping ended it

    real_atomic_dir = train_module.atomic_dir

    def crash(*args, **kwargs):  # dies after the last epoch, before the model folder is committed
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "atomic_dir", crash)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, work / "model", [], checkpoint_dir=work / "ckpt")
    monkeypatch.setattr(train_module, "atomic_dir", real_atomic_dir)
    cfg.curves_dir, cfg.out_dir = str(work / "curves"), str(work / "model")  # the curves: <curves>/<q>/model.csv
    resumed = train(cfg, work / "model", [], checkpoint_dir=work / "ckpt")
    assert resumed["resumed"] and resumed["epochs_run"] == reference["epochs_run"]
    assert resumed["best_epoch"] == reference["best_epoch"]
    assert _same_weights(_weights(work / "reference"), _weights(work / "model"))
    rows = read_curve(work / "curves/acc/model.csv")
    assert [int(r["epoch"]) for r in rows] == list(range(1, reference["epochs_run"] + 1))
    assert [float(r["val_acc"]) for r in rows] == [h["val_acc"] for h in reference["history"]]
