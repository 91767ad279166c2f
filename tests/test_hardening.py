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


@pytest.mark.cost(29)
@pytest.mark.slow
def test_two_runs_started_in_the_same_second_get_two_folders_and_two_models(tiny_project, prepared):
    import os
    import subprocess

    from conftest import ROOT

    work = tiny_project["dir"]  # its data stages ran (`prepared`): the two runs only train
    (work / "mlruns.db").unlink()  # both create the tracking store at once (MLflow's schema set-up once raced)
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


@pytest.mark.cost(23)
@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("shell", [False, True], ids=["direct child", "through a shell"])
def test_a_training_whose_dvc_parent_is_killed_stops_and_its_run_is_marked_failed(prepared, tiny_project, shell):
    """`kill -9` of the dvc process: its training child stops within seconds (no orphan training on), also
    when a shell sits between dvc and the stage (DVC's `sh -c <cmd>`)."""
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
    (work / "bin").mkdir()
    (work / "bin/dvc").write_text(FAKE_DVC)  # `python .../bin/dvc ...`, as a venv's `dvc repro` runs
    stage = [sys.executable, str(ROOT / "pipelines/train.py"), "--params", str(params), "family=classify",
             "out_dir=models/m", "checkpoint_dir=checkpoints/m"]
    if shell:  # `sh -c "<cmd>; true"` keeps the shell alive between the two
        stage = ["/bin/sh", "-c", " ".join(stage) + "; true"]
    cmd = [sys.executable, str(work / "bin/dvc"), *stage]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    parent = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    if shell:  # the training is the shell's child
        import psutil

        deadline = time.time() + 30
        while time.time() < deadline and not psutil.Process(child).children():
            time.sleep(0.1)
        child = psutil.Process(child).children()[0].pid
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


# ---- item 4: one-line errors where tracebacks were -----------------------------------------------------------

@pytest.fixture
def small_mount(tmp_path):
    """A 256 KiB tmpfs at tmp_path/mnt (a real small disk); skipped where mounting is not allowed."""
    import os
    import subprocess

    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root with CAP_SYS_ADMIN")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _stage_train(cfg, capsys):
    """The train stage as DVC runs it (rnnlab.config.run_stage): its exit code and error lines."""
    from rnnlab import stages
    from rnnlab.config import run_stage

    with pytest.raises(SystemExit) as stop:
        run_stage(stages.train, cfg)
    err = capsys.readouterr().err
    return stop.value.code, [line for line in err.splitlines() if line.startswith("error: ")], err


@pytest.mark.slow
def test_a_full_disk_under_the_model_folder_is_one_error_line_and_loses_no_training(prepared, small_mount, capsys):
    import subprocess

    cfg, work = prepared
    subprocess.run(["dd", "if=/dev/zero", f"of={small_mount}/fill", "bs=4k"], capture_output=True)  # until full
    cfg.out_dir, cfg.checkpoint_dir, cfg.trainer.max_epochs = str(small_mount / "model"), str(work / "ckpt"), 2
    code, errors, err = _stage_train(cfg, capsys)
    assert code == 2 and len(errors) == 1 and "No space left on device" in errors[0] and "Traceback" not in err, err
    assert sorted(p.name for p in small_mount.iterdir()) == ["fill"]  # no half-written model folder
    assert [r.info.status for r in _runs(cfg)] == ["FAILED"]
    (small_mount / "fill").unlink()  # space freed: the same command finishes from the kept checkpoint
    from rnnlab import stages

    stages.train(cfg)
    assert (small_mount / "model/model.pt").is_file() and "resuming from" in capsys.readouterr().out


@pytest.mark.slow
def test_a_read_only_model_folder_is_refused_before_training(prepared, small_mount, capsys):
    import subprocess

    cfg, work = prepared
    assert subprocess.run(["mount", "-o", "remount,ro", str(small_mount)], capture_output=True).returncode == 0
    cfg.out_dir, cfg.checkpoint_dir = str(small_mount / "model"), str(work / "ckpt")
    code, errors, err = _stage_train(cfg, capsys)
    assert code == 2 and len(errors) == 1 and "Traceback" not in err, err
    assert f"the model folder {small_mount / 'model'} cannot be written" in errors[0] and "read-only" in errors[0]
    assert _runs(cfg) == []  # refused before any MLflow run


@pytest.mark.slow
def test_an_embedding_matrix_of_the_wrong_shape_is_one_error(prepared, capsys):
    import numpy as np

    from rnnlab.data.prepare import embeddings_dir

    cfg, work = prepared
    np.save(embeddings_dir(cfg) / "matrix.npy", np.zeros((7, 8), np.float32))
    cfg.out_dir = str(work / "model")
    code, errors, _ = _stage_train(cfg, capsys)
    assert code == 2 and len(errors) == 1 and "matrix.npy has shape (7, 8)" in errors[0], errors
    assert "expected a float matrix of" in errors[0] and _runs(cfg) == []


@pytest.mark.slow
def test_single_class_training_data_is_refused_by_the_download_stage(tiny_project, monkeypatch):
    from rnnlab.config import compose, family_view
    from rnnlab.data.prepare import run_data_stage
    from rnnlab.errors import DataError

    csv = tiny_project["train_csv"]
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join([lines[0], *(line for line in lines[1:] if line.endswith(",pos"))]) + "\n")
    monkeypatch.chdir(tiny_project["dir"])
    cfg = family_view(compose(tiny_project["overrides"]), "classify")
    validate(cfg)
    with pytest.raises(DataError, match=r"the training split holds 1 class \(pos\) of 1 known .* at least two"):
        run_data_stage(cfg, "download")
    assert not (tiny_project["dir"] / "data/raw/tiny").exists()


@pytest.mark.cost(15)
@pytest.mark.slow
def test_an_sqlite_lock_held_for_seconds_is_waited_out(prepared, monkeypatch):
    """Another program holds mlruns.db exclusively for 6 s at the start and again mid-training: the calls
    are retried (tracking.retries), the run finishes with every epoch's metrics, nothing is lost."""
    import sqlite3
    import threading
    import time

    from mlflow.tracking import MlflowClient

    from rnnlab.training.checkpointing import EpochSeed

    cfg, work = prepared
    cfg.trainer.max_epochs, cfg.trainer.patience = 3, 3
    db = str(cfg.tracking.tracking_uri)[len("sqlite:///"):]
    MlflowClient(tracking_uri=str(cfg.tracking.tracking_uri)).search_experiments()  # the store exists

    def hold(seconds):
        conn = sqlite3.connect(db, timeout=30, isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
        time.sleep(seconds)
        conn.execute("ROLLBACK")
        conn.close()

    original = EpochSeed.on_train_epoch_start

    def lock_in_epoch_two(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            threading.Thread(target=hold, args=(6,)).start()
            time.sleep(0.2)
        original(self, trainer, pl_module)

    monkeypatch.setattr(EpochSeed, "on_train_epoch_start", lock_in_epoch_two)
    holder = threading.Thread(target=hold, args=(6,))
    holder.start()
    time.sleep(0.2)
    summary = train(cfg, work / "model", [])
    holder.join()
    client = MlflowClient(tracking_uri=str(cfg.tracking.tracking_uri))
    run = client.get_run(summary["mlflow"]["run_id"])
    assert run.info.status == "FINISHED" and summary["mlflow"]["failed_calls"] == 0
    assert len(client.get_metric_history(run.info.run_id, "val_acc")) == summary["epochs_run"] == 3


# ---- item 8: which machine produced a number ------------------------------------------------------------------

def test_the_report_names_the_machine_that_trained_each_variant(tmp_path):
    import json

    from rnnlab.stages import machines_note
    from rnnlab.tracking.mlflow_utils import cpu_info

    here = {**cpu_info(), "device": "cpu", "precision": "32-true", "torch": torch.__version__, "threads": 2}
    other = {**here, "cpu_model": "Intel Xeon", "cpu_flags": "avx avx2 avx512f"}
    for variant, machine in (("lstm-last", here), ("gru-last", here), ("gru-mean", other)):
        (tmp_path / variant).mkdir()
        (tmp_path / variant / "train_summary.json").write_text(json.dumps({"machine": machine}))
    note = machines_note(tmp_path, ["lstm-last", "gru-last"])
    assert note.startswith(f"Trained on {here['cpu_model']} ({here['cpu_capability']}; {here['cpu_flags']}), "
                           "device cpu, precision 32-true") and "(lstm-last" not in note
    mixed = machines_note(tmp_path, ["lstm-last", "gru-last", "gru-mean"])
    assert "(lstm-last, gru-last)" in mixed and "Intel Xeon" in mixed and "(gru-mean)" in mixed
    assert here["cpu_capability"] != "" and here["cpu_model"] != ""


# ---- item 7: what a user sees ------------------------------------------------------------------------------------

def test_the_progress_bar_counts_epochs_from_one_and_shows_the_monitor_without_v_num():
    from types import SimpleNamespace

    from rnnlab.training.callbacks import epoch_bar

    bar = epoch_bar("val_acc")
    trainer = SimpleNamespace(max_epochs=8, callback_metrics={"val_acc": torch.tensor(0.8125)},
                              progress_bar_metrics={"train_loss": 0.5}, loggers=[SimpleNamespace(version=3)])
    bar._trainer = trainer
    assert bar._get_train_description(0).strip() == "Epoch 1/8"
    assert bar._get_train_description(7).strip() == "Epoch 8/8"
    shown = bar.get_metrics(trainer, None)
    assert "v_num" not in shown and shown["val_acc"] == 0.8125 and shown["train_loss"] == 0.5


@pytest.mark.slow
def test_a_training_prints_no_known_noise_but_real_warnings_still_show(prepared, capsys, caplog, recwarn):
    import logging
    import warnings

    cfg, work = prepared
    cfg.trainer.max_epochs = 1
    caplog.set_level(logging.INFO)
    train(cfg, work / "model", [])
    out = capsys.readouterr()
    shown = out.out + out.err + caplog.text + " ".join(str(w.message) for w in recwarn)
    assert "epoch 1/1" in out.out  # the epoch line with the metrics
    for noise in ("💡 Tip", "LeafSpec", "to estimate number of stepping batches"):
        assert noise not in shown, noise
    with pytest.warns(UserWarning, match="a real problem"):
        warnings.warn("a real problem", UserWarning)
