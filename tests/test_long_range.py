"""The long-range dependency study (rnnlab.studies.long_range): its data, its outputs, determinism, the gradient
property it measures, its input checks and its atomic writing. Tiny settings, one thread: a few seconds."""

from __future__ import annotations

import json
import math
import shlex

import pytest
import torch

from rnnlab.studies import long_range as lr

TINY = {"arms": ["rnn", "lstm", "lstm:forget_bias_1", "gru:no_update_gate"], "lengths": [3, 6], "seeds": [0, 1],
        "steps": 4, "batch_size": 8, "hidden": 4, "lr": 0.01, "test_size": 32}
FILES = ("results.json", "accuracy_vs_k.png", "gradient_vs_distance.png", "report.md")
TIMINGS = ("train_seconds", "train_seconds_by_seed", "wall_seconds")


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "long_range"
    return out, lr.run_study(out, **TINY)


def without_timings(value):
    """results without the wall-clock fields (the only ones allowed to differ between two identical runs)."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k not in TIMINGS}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


# ----------------------------------------------------------------------------------------------------- data

@pytest.mark.parametrize("k", [1, 7, 40])
def test_the_label_is_the_first_token_and_the_rest_are_distractors(k):
    x, y = lr.batch(k, 500, torch.Generator().manual_seed(k))
    assert x.shape == (500, k + 1) and y.shape == (500,)
    assert torch.equal(x[:, 0], y)
    assert set(y.tolist()) == {0, 1}  # both labels occur
    distractors = x[:, 1:]
    assert int(distractors.min()) >= 2 and int(distractors.max()) <= lr.SYMBOLS - 1
    # the distractors carry no information about the label: same distribution under both labels
    assert abs(distractors[y == 0].float().mean() - distractors[y == 1].float().mean()) < 0.25


def test_the_same_generator_seed_gives_the_same_batch():
    a = lr.batch(5, 64, torch.Generator().manual_seed(3))
    b = lr.batch(5, 64, torch.Generator().manual_seed(3))
    c = lr.batch(5, 64, torch.Generator().manual_seed(4))
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])


# --------------------------------------------------------------------------------------------------- arms

def test_arms_map_to_the_cells_and_initialisations():
    assert lr.parse_arm("lstm") == {"arm": "lstm", "cell": "lstm", "impl": "fused", "variant": "vanilla",
                                    "forget_bias": None}
    assert lr.parse_arm("gru:no_update_gate")["impl"] == "gates"
    spec = lr.parse_arm("lstm:forget_bias_1")
    assert (spec["impl"], spec["variant"], spec["forget_bias"]) == ("gates", "vanilla", 1.0)
    torch.manual_seed(0)
    model = lr.LastState(spec["cell"], spec["impl"], spec["variant"], hidden=4, forget_bias=spec["forget_bias"])
    forget = model.rnn.bias_ih_l0[4:8] + model.rnn.bias_hh_l0[4:8]  # PyTorch order: input, forget, cell, output
    assert torch.allclose(forget, torch.ones(4))


# ------------------------------------------------------------------------------------------ outputs of a run

def test_a_tiny_study_writes_all_four_files_with_one_entry_per_arm_length_and_seed(tiny):
    out, results = tiny
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    for name in ("accuracy_vs_k.png", "gradient_vs_distance.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(results))
    assert {"settings", "command", "environment", "wall_seconds", "gradient_k", "arms", "runs"} <= set(on_disk)
    assert on_disk["environment"]["torch"] == torch.__version__
    combos = [(r["arm"], r["k"], r["seed"]) for r in on_disk["runs"]]
    expected = [(a, k, s) for a in TINY["arms"] for k in TINY["lengths"] for s in TINY["seeds"]]
    assert sorted(combos) == sorted(expected) and len(combos) == len(set(combos))
    for run in on_disk["runs"]:
        assert 0.0 <= run["accuracy"] <= 1.0 and run["train_seconds"] >= 0
        # the accuracy is a count over the test set
        assert math.isclose(run["accuracy"] * TINY["test_size"], round(run["accuracy"] * TINY["test_size"]))
        assert ("grad_at_init" in run) == (run["k"] == max(TINY["lengths"]))
    assert list(on_disk["arms"]) == TINY["arms"]
    kmax = max(TINY["lengths"])
    for arm, data in on_disk["arms"].items():
        assert sorted(data["by_k"]) == sorted(str(k) for k in TINY["lengths"])
        for k in TINY["lengths"]:
            row = data["by_k"][str(k)]
            accs = [r["accuracy"] for r in on_disk["runs"] if r["arm"] == arm and r["k"] == k]
            assert row["accuracy_by_seed"] == accs and len(accs) == len(TINY["seeds"])
            assert row["accuracy_min"] <= row["accuracy_mean"] <= row["accuracy_max"]
            assert math.isclose(row["accuracy_mean"], sum(accs) / len(accs), abs_tol=1e-4)
        g = data["gradient"]
        assert g["k"] == kmax and g["distance"] == list(range(kmax + 1))
        for when in ("at_init", "trained"):
            assert len(g[f"{when}_by_seed"]) == len(TINY["seeds"])
            assert all(len(v) == kmax + 1 for v in g[f"{when}_by_seed"])
            assert all(v > 0 for v in g[f"{when}_mean"])
    report = (out / "report.md").read_text()
    assert on_disk["command"] in report and "python -m rnnlab.studies.long_range" in on_disk["command"]
    assert torch.__version__ in report and on_disk["environment"]["cpu"] in report
    assert "accuracy_vs_k.png" in report and "gradient_vs_distance.png" in report
    for arm in TINY["arms"]:
        assert f"| {arm} |" in report


def test_the_recorded_command_reruns_the_same_study(tiny, tmp_path):
    out, results = tiny
    argv = shlex.split(results["command"])[3:]  # after "python -m rnnlab.studies.long_range"
    argv[argv.index("--out") + 1] = str(tmp_path / "again")
    again = lr.main(argv)
    assert without_timings(again["runs"]) == without_timings(results["runs"])
    assert again["settings"] == results["settings"]


def test_the_same_seeds_give_identical_results_and_other_seeds_do_not(tiny, tmp_path):
    _, first = tiny
    second = lr.run_study(tmp_path / "second", **TINY)
    assert without_timings(second["arms"]) == without_timings(first["arms"])
    assert without_timings(second["runs"]) == without_timings(first["runs"])
    other = lr.run_study(tmp_path / "other", **{**TINY, "seeds": [5, 6]})
    assert [r["grad_at_init"] for r in other["runs"] if "grad_at_init" in r] != \
        [r["grad_at_init"] for r in first["runs"] if "grad_at_init" in r]


# --------------------------------------------------------------------------------- the measured property

def _init_gradient(arm: str, k: int, seed: int) -> list[float]:
    spec = lr.parse_arm(arm)
    torch.manual_seed(seed)
    model = lr.LastState(spec["cell"], spec["impl"], spec["variant"], hidden=8, forget_bias=spec["forget_bias"])
    x, y = lr.batch(k, 64, torch.Generator().manual_seed(100 + seed))
    return lr.gradient_by_distance(model, x, y)


@pytest.mark.parametrize("seed", range(5))
def test_at_initialisation_the_rnn_gradient_vanishes_with_distance(seed):
    g = _init_gradient("rnn", 30, seed)
    assert len(g) == 31 and all(v >= 0 for v in g)
    assert g[0] > 0
    assert g[30] < 1e-3 * g[0]  # the key (distance 30) gets a vanishing share of the last token's gradient
    assert max(g[20:]) < max(g[:5])


@pytest.mark.parametrize("seed", range(3))
def test_without_a_forget_gate_the_lstm_gradient_reaches_the_key(seed):
    """The contrast: with f = 1 the cell state carries d loss / d c unchanged back to the key."""
    g = _init_gradient("lstm:no_forget_gate", 30, seed)
    rnn = _init_gradient("rnn", 30, seed)
    assert g[30] > 1e-2 * g[0]
    assert g[30] / g[0] > 1e3 * (rnn[30] / rnn[0])


# --------------------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("arm", ["transformer", "lstm:no_update_gate", "gru:forget_bias_1", "rnn:coupled",
                                 "lstm:forget_bias_x", "LSTM", ""])
def test_an_unknown_arm_is_a_clear_error_naming_the_allowed_arms(arm, tmp_path):
    with pytest.raises(ValueError, match=r"unknown arm .*allowed arms: rnn, lstm, gru, .*lstm:no_forget_gate.*"
                                         r"gru:no_update_gate.*lstm:forget_bias_<value>") as err:
        lr.run_study(tmp_path / "out", **{**TINY, "arms": ["rnn", arm]})
    assert repr(arm) in str(err.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("lengths,bad", [([0], "0"), ([5, -3], "-3"), ([2.5], "2.5"), (["5"], "'5'"),
                                         ([5, 5], "repeated"), ([], "at least one")])
def test_bad_lengths_are_a_clear_error(lengths, bad, tmp_path):
    with pytest.raises(ValueError, match="lengths") as err:
        lr.run_study(tmp_path / "out", **{**TINY, "lengths": lengths})
    assert bad in str(err.value)
    if lengths and bad != "repeated":
        assert "whole number >= 1" in str(err.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("key,value,message", [
    ("seeds", [-1], "seeds: -1 is not allowed; each must be a whole number >= 0"),
    ("steps", 0, "steps=0 is not allowed; it must be a whole number >= 1"),
    ("batch_size", 1.5, "batch_size=1.5 is not allowed"),
    ("hidden", 0, "hidden=0 is not allowed"),
    ("test_size", -1, "test_size=-1 is not allowed"),
    ("lr", 0.0, "lr=0.0 is not allowed; it must be a finite number > 0"),
    ("lr", float("nan"), "lr=nan is not allowed"),
    ("arms", [], "arms: give at least one; allowed arms: rnn"),
    ("arms", ["rnn", "rnn"], "repeated arm"),
])
def test_other_bad_settings_are_clear_errors(key, value, message, tmp_path):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        lr.run_study(tmp_path / "out", **{**TINY, key: value})
    assert not (tmp_path / "out").exists()


def test_the_command_line_reports_a_bad_arm_without_a_trace(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        lr.main(["--out", str(tmp_path / "out"), "--arms", "lstm", "lstn"])
    assert err.value.code == 2
    assert "unknown arm 'lstn'; allowed arms: rnn, lstm, gru" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------ atomic writing

SMALL = {**TINY, "arms": ["rnn"], "lengths": [2, 3], "seeds": [0]}


def test_a_failure_while_writing_leaves_no_out_dir_and_no_temporary_folder(tmp_path, monkeypatch):
    def broken(results, path):
        raise RuntimeError("plotting failed")

    monkeypatch.setattr(lr, "plot_gradient", broken)  # after results.json and the accuracy plot are written
    with pytest.raises(RuntimeError, match="plotting failed"):
        lr.run_study(tmp_path / "out", **SMALL)
    assert list(tmp_path.iterdir()) == []


def test_a_failure_during_training_leaves_an_existing_out_dir_untouched(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text("previous")
    real, calls = lr.run_one, []

    def fails_second(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise RuntimeError("killed midway")
        return real(*args, **kwargs)

    monkeypatch.setattr(lr, "run_one", fails_second)
    with pytest.raises(RuntimeError, match="killed midway"):
        lr.run_study(out, **SMALL)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert [p.name for p in out.iterdir()] == ["results.json"] and (out / "results.json").read_text() == "previous"


def test_a_successful_run_replaces_an_existing_out_dir(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    lr.run_study(out, **SMALL)
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_the_stage_script_runs_the_study_of_params_yaml_and_refuses_a_file_without_it(tmp_path):
    import subprocess
    import sys

    from conftest import ROOT

    params = tmp_path / "params.yaml"
    params.write_text(f"paths: {{reports: {tmp_path / 'reports'}}}\nlong_range: {{arms: [rnn], lengths: [3], "
                      "seeds: [0], steps: 3, batch_size: 8, hidden: 4, lr: 0.01, test_size: 16}\n")
    script = str(ROOT / "pipelines/long_range.py")
    done = subprocess.run([sys.executable, script, "--params", str(params), "long_range.steps=4"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((tmp_path / "reports/studies/long_range/results.json").read_text())
    assert results["settings"]["steps"] == 4 and list(results["arms"]) == ["rnn"]
    params.write_text("paths: {reports: r}\n")
    refused = subprocess.run([sys.executable, script, "--params", str(params)], capture_output=True, text=True,
                             timeout=120)
    assert refused.returncode == 2 and "has no long_range node" in refused.stderr
