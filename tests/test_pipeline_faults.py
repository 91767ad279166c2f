"""The tiny pipeline under faults: a stage script of each kind SIGKILLed at the worst moment (work done, output
not yet renamed) is reported changed by `dvc status` and recovered by `dvc repro`. (Load, two `dvc exp` queue
workers and a parallel Hydra multirun at once, is tested on the tiny pipeline in test_pipeline.py.)"""

from __future__ import annotations

import pytest

from conftest import run_cmd
from test_pipeline import _check, make_dvc_project

SMALL = ["classify.grid.cell=[lstm]", "classify.grid.pooling=[last]", "classify.trainer.max_epochs=2"]

pytestmark = pytest.mark.slow  # DVC pipelines through the real stage scripts

# (stage, the output whose rename the kill precedes) in pipeline order: one stage of each kind, which between
# them commit through both of rnnlab.io's atomic writers (a folder: data stages and trainings; a file:
# evaluations and reports). Every stage of every family commits through these two (tokenize and embed as
# download does, each family's training through the shared train()); a kill is the same there.
STAGES = [
    ("classify_download", "*data/raw/tiny"),
    ("classify_train@lstm-last", "*models/classify/tiny/lstm-last"),
    ("classify_evaluate@lstm-last", "*metrics/classify/tiny/lstm-last.json"),  # its plots folder is already renamed
    ("classify_report", "*reports/classify/tiny.md"),
]


def _dvc(work, *args, env=None, timeout=600):
    return run_cmd(["dvc", *args], cwd=work, env=env, timeout=timeout)


def _was_sigkilled(proc) -> bool:
    """DVC reports a SIGKILLed stage as -9 when the shell exec'd the command, or as 137 (128 + 9) when the
    shell (dash, bash) stayed in between; both mean the same."""
    text = proc.stdout + proc.stderr
    return proc.returncode != 0 and ("-9" in text or "exited with 137" in text)


@pytest.mark.cost(150)
@pytest.mark.timeout(600)
def test_each_stage_killed_before_its_output_is_renamed_is_seen_as_changed_and_recovered(tiny_project):
    """Each stage in turn: `dvc repro <stage>` with the kill armed for that stage's output. That same run first
    re-runs the stage killed before it (DVC sees its output missing), so every kill is recovered by an ordinary
    `dvc repro`, and a last `dvc repro` recovers the last one."""
    work = make_dvc_project(tiny_project, SMALL)
    kills = recovered = 0
    previous = None  # (stage, output) killed last and not yet recovered

    def check_recovered(proc, stage, output):
        nonlocal recovered
        assert f"Running stage '{stage}'" in proc.stdout and output.exists(), (stage, proc.stdout[-2000:])
        recovered += 1

    for stage, pattern in STAGES:
        killed = _dvc(work, "repro", stage, env={"RNNLAB_KILL_BEFORE_COMMIT": pattern})
        assert _was_sigkilled(killed), (stage, killed.returncode, killed.stderr[-2000:])
        kills += 1
        if previous:
            check_recovered(killed, *previous)
        output = work / pattern.lstrip("*")
        assert not output.exists(), f"{stage}: {output} looks finished after the kill"
        status = _check(_dvc(work, "status", stage)).stdout
        assert stage in status and "up to date" not in status, (stage, status)
        previous = (stage, output)
    check_recovered(_check(_dvc(work, "repro", previous[0])), *previous)
    assert "Data and pipelines are up to date" in _check(_dvc(work, "status", *[s for s, _ in STAGES])).stdout
    assert (kills, recovered) == (len(STAGES), len(STAGES))
    # no temporary leftovers next to any output
    assert not [p for p in work.rglob(".*.tmp-*") if ".dvc" not in p.parts]
    print(f"stages killed before their rename: {kills}, recovered by dvc repro: {recovered}")
