"""Scale-out on existing engines: Lightning DDP over two CPU processes (gloo), Hydra's submitit launcher."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from conftest import ROOT, run_cmd


def _check(proc):
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    return proc


def _run(work, overrides, tag):
    proc = _check(run_cmd(["python", str(ROOT / "pipelines/train.py"), *overrides,
                           f"hydra.run.dir=outputs/{tag}", "classify.trainer.num_threads=1"], work, timeout=400))
    summary = json.loads((work / f"outputs/{tag}/model/train_summary.json").read_text())
    return proc, summary


@pytest.mark.cost(70)
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_ddp_on_two_cpu_processes_matches_one_process_with_one_run_and_one_folder(tiny_project):
    from mlflow.tracking import MlflowClient

    work = tiny_project["dir"]
    common = [*tiny_project["overrides"], "classify.trainer.max_epochs=4", "classify.trainer.patience=4",
              "classify.optim.batch_size=8"]
    _, single = _run(work, common, "single")
    # two ranks of 8 = the same 16 examples per optimizer step as one process with batch 16
    proc, ddp = _run(work, [*common, "trainer@classify.trainer=ddp", "classify.trainer.devices=2",
                            "classify.optim.batch_size=4"], "ddp")
    shown = proc.stdout + proc.stderr
    assert "local DDP, distributed_backend=gloo, MEMBER: 2/2 processes" in shown and "no listening socket" in shown
    assert sorted(p.name for p in (work / "outputs/ddp").iterdir()) == [
        ".hydra", "checkpoints", "metrics.json", "model", "plots", "train.log"]
    metrics_single = json.loads((work / "outputs/single/metrics.json").read_text())
    metrics_ddp = json.loads((work / "outputs/ddp/metrics.json").read_text())
    print("single", metrics_single, single["best_val_acc"], "ddp", metrics_ddp, ddp["best_val_acc"])
    assert abs(metrics_single["accuracy"] - metrics_ddp["accuracy"]) <= 0.1, (metrics_single, metrics_ddp)
    assert abs(single["best_val_acc"] - ddp["best_val_acc"]) <= 0.1
    assert ddp["epochs_run"] == single["epochs_run"] == 4
    client = MlflowClient(tracking_uri=f"sqlite:///{work}/mlruns.db")
    runs = client.search_runs([client.get_experiment_by_name("rnnlab-classify-tiny").experiment_id])
    assert len(runs) == 2  # one per training, not one per rank
    ddp_run = client.get_run(ddp["mlflow"]["run_id"])
    assert ddp_run.data.params["classify.trainer.strategy"] == "ddp" and ddp_run.info.status == "FINISHED"
    assert OmegaConf.load(work / "outputs/ddp/.hydra/config.yaml").classify.trainer.devices == 2


def test_the_slurm_launcher_config_composes_from_the_trainer_settings():
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(str(ROOT / "conf"), version_base=None):
        cfg = hydra_compose("config", overrides=["hydra/launcher=slurm", "trainer@classify.trainer=gpu",
                                                  "classify.trainer.devices=4", "classify.trainer.num_nodes=2",
                                                  "hydra.launcher.partition=gpu"],
                            return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (2, 4, 4)
    assert launcher.partition == "gpu" and launcher.timeout_min == 240


@pytest.mark.cost(35)
@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_sweep_on_the_submitit_local_launcher_records_every_job(tiny_project):
    from mlflow.tracking import MlflowClient

    work = tiny_project["dir"]
    _check(run_cmd(["python", str(ROOT / "pipelines/train.py"), "-m", "hydra/launcher=local",
                    "classify.model.cell=lstm,gru", *tiny_project["overrides"], "classify.trainer.max_epochs=2",
                    "classify.trainer.num_threads=1",
                    "hydra.sweep.dir=outputs/submitit"], work, timeout=380))
    for job in ("0", "1"):
        assert (work / f"outputs/submitit/{job}/model/model.pt").is_file()
        assert (work / f"outputs/submitit/{job}/metrics.json").is_file()
    assert list((work / "outputs/submitit/.submitit").iterdir())  # submitit's own job records
    client = MlflowClient(tracking_uri=f"sqlite:///{work}/mlruns.db")
    runs = client.search_runs([client.get_experiment_by_name("rnnlab-classify-tiny").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(parents) == 1 and sorted(r.data.tags["cell"] for r in children) == ["gru", "lstm"]
    assert all(r.info.status == "FINISHED" for r in runs)


RANK = """
import os, sys, time
import torch.distributed as dist
from rnnlab.training.distributed import STORE_ENV
rank = int(sys.argv[1])
dist.init_process_group("gloo", init_method="file://" + os.environ[STORE_ENV], rank=rank, world_size=2)
dist.barrier()
print("ready", flush=True)
time.sleep(4)  # both ranks connected: the test looks at their sockets now
dist.barrier()
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_single_machine_ddp_listens_on_no_outside_interface(tmp_path):
    """The rendezvous and peer sockets of a one-machine DDP group: nothing listens beyond the loopback."""
    import os
    import subprocess
    import sys

    import psutil

    from rnnlab.training.distributed import STORE_ENV, finish_local_rendezvous, prepare_local_rendezvous

    folder = prepare_local_rendezvous()
    try:
        (tmp_path / "rank.py").write_text(RANK)
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
        assert env[STORE_ENV] and env["GLOO_SOCKET_IFNAME"] in ("lo", "lo0")
        ranks = [subprocess.Popen([sys.executable, str(tmp_path / "rank.py"), str(r)], env=env,
                                  stdout=subprocess.PIPE, text=True) for r in (0, 1)]
        assert [p.stdout.readline().strip() for p in ranks] == ["ready", "ready"]
        listening = [c.laddr for p in ranks for c in psutil.Process(p.pid).net_connections(kind="inet")
                     if c.status == psutil.CONN_LISTEN]
        assert all(addr.ip in ("127.0.0.1", "::1") for addr in listening), listening
        assert [p.wait(timeout=60) for p in ranks] == [0, 0]
    finally:
        finish_local_rendezvous(folder)
    assert not folder.exists()


@pytest.mark.cost(45)
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_bidirectional_lm_trains_under_ddp_with_step_checkpoints(tiny_project):
    """Two gloo processes, each on its own rows of the forward and the reversed streams, with checkpoints
    inside the epoch: every checkpoint gathers both ranks' carried (forward, backward) states (a collective
    that would hang or fail if a rank skipped it)."""
    work = tiny_project["dir"]
    common = ["family=lm", *tiny_project["overrides"], "lm.model.bidirectional=true", "lm.model.residual=true",
              "lm.model.num_layers=2", "lm.bilm.extra_train_text=null", "lm.stream.bptt=5",
              "lm.trainer.checkpoint_every_n_steps=4", "trainer@lm.trainer=ddp", "lm.trainer.devices=2",
              "lm.trainer.max_epochs=2", "lm.trainer.progress_bar=false", "lm.trainer.num_threads=1",
              "hydra.run.dir=outputs/ddp-lm"]
    proc = _check(run_cmd(["python", str(ROOT / "pipelines/train.py"), *common], work, timeout=400))
    assert "MEMBER: 2/2 processes" in proc.stdout + proc.stderr
    summary = json.loads((work / "outputs/ddp-lm/model/train_summary.json").read_text())
    assert summary["epochs_run"] == 2 and summary["best_val_ppl"] < 13  # below uniform over its 13 words
    # an interactive run scores its test split: a biLM in each direction
    metrics = json.loads((work / "outputs/ddp-lm/metrics.json").read_text())
    assert 1 < metrics["test_ppl_forward"] < 13 and 1 < metrics["test_ppl_backward"] < 13


def test_the_carried_state_is_gathered_from_every_rank_and_each_rank_takes_its_own_back():
    import types

    import torch

    from rnnlab.tasks.lm.module import LMModule

    module = LMModule({"cell": "lstm", "embedding_mode": "random", "embedding_dim": 4, "hidden_size": 3,
                       "num_layers": 2, "dropout": 0.0, "embedding_dropout": 0.0, "locked_dropout": False,
                       "tie_weights": False, "output_layer": "full", "adaptive_cutoffs": None,
                       "bidirectional": True, "residual": True}, {"lr": 0.01}, vocab_size=9)
    layer = (torch.ones(1, 2, 3), torch.zeros(1, 2, 3))
    module.state["train"] = ([layer, layer], [layer, layer])  # (forward, backward) x 2 LSTM layers x (h, c)
    module.sums["train"] = [1.5, 3]
    module.trainer = types.SimpleNamespace(world_size=2, global_rank=1)
    module.all_gather = lambda t: torch.stack([t, t + 1])  # rank 0's value, then rank 1's
    checkpoint = {}
    module.on_save_checkpoint(checkpoint)
    forward_h = checkpoint["lm_carry"]["state"][0][0][0]
    assert forward_h.shape == (2, 1, 2, 3) and torch.equal(forward_h[1], torch.full((1, 2, 3), 2.0))
    module.state["train"], module.sums["train"] = None, [0.0, 0]
    module.on_load_checkpoint(checkpoint)
    assert torch.equal(module.state["train"][1][1][1], torch.full((1, 2, 3), 1.0))  # rank 1's backward c
    assert module.sums["train"] == [2.5, 4]
    module.trainer = types.SimpleNamespace(world_size=3, global_rank=0)
    from rnnlab.errors import DataError

    with pytest.raises(DataError, match=r"taken with 2 training processes and this run has 3"):
        module.on_load_checkpoint(checkpoint)
