"""The MLflow dashboard as a person sees it: after a tiny sweep, `mlflow server` on 127.0.0.1 and headless
Chromium show the sweep's parent run, and expanding it shows one child run per job."""

import os

import pytest

from conftest import ROOT, run_cmd
from rnnlab.tracking.dashboard import browser_missing, mlflow_server, runs_page


@pytest.mark.cost(58)
@pytest.mark.slow
@pytest.mark.timeout(400)
def test_the_dashboard_lists_the_sweep_parent_and_its_child_runs(tiny_project, tmp_path):
    problem = browser_missing()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the dashboard test: {problem}")
        pytest.skip(problem)
    work = tiny_project["dir"]
    proc = run_cmd(["python", str(ROOT / "pipelines/train.py"), "-m", "classify.model.cell=lstm,gru",
                    *tiny_project["overrides"], "classify.trainer.max_epochs=2"], work)
    assert proc.returncode == 0, proc.stderr[-2000:]
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{work}/mlruns.db"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("rnnlab-classify-tiny")
    runs = client.search_runs([experiment.experiment_id])
    parent = next(r for r in runs if r.data.tags.get("launcher") == "hydra-multirun")
    children = sorted(r.info.run_name for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id)
    assert children == ["tiny/gru-attention/seed42", "tiny/lstm-attention/seed42"]
    with mlflow_server(uri) as url:
        assert url.startswith("http://127.0.0.1:")
        shot = tmp_path / "dashboard.png"
        body = runs_page(url, experiment.experiment_id, expand=[parent.info.run_name],
                         expect=[parent.info.run_name, *children], screenshot=shot)
    assert all(name in body for name in children)
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one
