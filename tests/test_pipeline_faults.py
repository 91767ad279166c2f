"""The tiny pipeline under faults and load: every stage script SIGKILLed at the worst moment (work done,
output not yet renamed) is reported changed by `dvc status` and recovered by `dvc repro`; then two `dvc exp` queue
workers and a parallel Hydra multirun at the same time lose no MLflow run."""

from __future__ import annotations

import json
import time

import pytest

from conftest import ROOT, run_cmd
from test_pipeline import _check, make_dvc_project

SMALL = ["classify.grid.cell=[lstm]", "classify.grid.pooling=[last]", "seq2seq.grid.cell=[gru]",
         "seq2seq.grid.attention=[additive]", "seq2seq.trainer.max_epochs=1", "classify.trainer.max_epochs=2"]

pytestmark = pytest.mark.slow  # DVC pipelines, queue workers and Hydra sweeps

# (stage, the output whose rename the kill precedes) in pipeline order: every stage script of the
# classify family, and the seq2seq family's training (its own model and checkpoint code).
STAGES = [
    ("classify_download", "*data/raw/tiny"),
    ("classify_tokenize", "*data/tokenized/tiny"),
    ("classify_embed", "*data/embeddings/tiny"),
    ("classify_train@lstm-last", "*models/classify/tiny/lstm-last"),
    ("classify_evaluate@lstm-last", "*metrics/classify/tiny/lstm-last.json"),  # its plots folder is already renamed
    ("classify_report", "*reports/classify/tiny.md"),
    ("seq2seq_train@gru-additive", "*models/seq2seq/tinypairs/gru-additive"),
]
SEQ2SEQ_DATA = ["seq2seq_download", "seq2seq_tokenize", "seq2seq_embed"]


def _dvc(work, *args, env=None, timeout=600):
    return run_cmd(["dvc", *args], cwd=work, env=env, timeout=timeout)


def _was_sigkilled(proc) -> bool:
    """DVC reports a SIGKILLed stage as -9 when the shell exec'd the command, or as 137 (128 + 9) when the
    shell (dash, bash) stayed in between; both mean the same."""
    text = proc.stdout + proc.stderr
    return proc.returncode != 0 and ("-9" in text or "exited with 137" in text)


@pytest.mark.timeout(900)
def test_each_stage_killed_before_its_output_is_renamed_is_seen_as_changed_and_recovered(tiny_project):
    work = make_dvc_project(tiny_project, SMALL)
    kills = recovered = 0
    for stage, pattern in STAGES:
        if stage.startswith("seq2seq_train"):
            _check(_dvc(work, "repro", "-s", *SEQ2SEQ_DATA))
        killed = _dvc(work, "repro", "-s", stage, env={"RNNLAB_KILL_BEFORE_COMMIT": pattern})
        assert _was_sigkilled(killed), (stage, killed.returncode, killed.stderr[-2000:])
        kills += 1
        output = work / pattern.lstrip("*")
        assert not output.exists(), f"{stage}: {output} looks finished after the kill"
        status = _check(_dvc(work, "status", stage)).stdout
        assert stage in status and "up to date" not in status, (stage, status)
        _check(_dvc(work, "repro", "-s", stage))
        assert output.exists()
        recovered += 1
    assert "Data and pipelines are up to date" in _check(_dvc(work, "status", *[s for s, _ in STAGES])).stdout
    assert (kills, recovered) == (len(STAGES), len(STAGES))
    # no temporary leftovers next to any output
    assert not [p for p in work.rglob(".*.tmp-*") if ".dvc" not in p.parts]
    print(f"stages killed before their rename: {kills}, recovered by dvc repro: {recovered}")


@pytest.mark.timeout(900)
def test_two_queue_workers_and_a_parallel_multirun_at_once_record_every_run(tiny_project):
    from mlflow.tracking import MlflowClient

    work = make_dvc_project(tiny_project, SMALL)
    _check(_dvc(work, "repro"))
    for name, seed in (("q1", 1), ("q2", 2)):
        _check(_dvc(work, "exp", "run", "--queue", "-n", name, "-S", f"seed={seed}"))
    _check(_dvc(work, "queue", "start", "-j", "2"))
    sweep = _check(run_cmd(["python", str(ROOT / "pipelines/train.py"), "-m", "hydra/launcher=joblib",
                            "hydra.launcher.n_jobs=2", "seed=11,12", *tiny_project["overrides"], *SMALL,
                            "classify.trainer.num_threads=1"], work, timeout=600))
    deadline = time.time() + 600
    while time.time() < deadline:
        status = _dvc(work, "queue", "status").stdout
        if "Running" not in status and "Queued" not in status:
            break
        time.sleep(3)
    assert "Success" in status and "Failed" not in status, status
    table = json.loads(_check(_dvc(work, "exp", "show", "--json")).stdout)
    names = {e.get("name") for base in table for e in (base.get("experiments") or []) for e in e.get("revs") or []}
    assert {"q1", "q2"} <= names, names

    client = MlflowClient(tracking_uri=f"sqlite:///{tiny_project['dir']}/mlruns.db")
    launched = {"classify": 1 + 2 + 2 + 1, "seq2seq": 1 + 2}  # repro + 2 exps + 2 sweep jobs (+ sweep parent)
    recorded = {}
    for family, dataset in (("classify", "tiny"), ("seq2seq", "tinypairs")):
        runs = client.search_runs([client.get_experiment_by_name(f"rnnlab-{family}-{dataset}").experiment_id])
        assert all(r.info.status == "FINISHED" for r in runs), [(r.info.run_name, r.info.status) for r in runs]
        recorded[family] = len(runs)
        by_exp = sorted(r.data.tags.get("dvc_experiment", "") for r in runs if r.data.tags.get("dvc_experiment"))
        assert by_exp == ["q1", "q2"], by_exp
    classify = client.search_runs([client.get_experiment_by_name("rnnlab-classify-tiny").experiment_id])
    children = [r for r in classify if "mlflow.parentRunId" in r.data.tags]
    assert sorted(r.data.params["seed"] for r in children) == ["11", "12"], sweep.stderr[-2000:]
    assert recorded == launched, (recorded, launched)
    print(f"runs recorded / launched under parallel load: {sum(recorded.values())} / {sum(launched.values())}")
