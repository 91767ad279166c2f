"""The whole pipeline on a tiny generated data set, through the real stage scripts and DVC."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import time

import pytest
from omegaconf import OmegaConf

from conftest import ROOT, run_cmd

# Two variants a family: the cell axis in classification, the attention axis in translation (each
# family's stages are the same code for every variant; the models of every cell x pooling x attention are
# unit-tested in test_models.py and test_seq2seq.py).
GRID = ["classify.grid.cell=[lstm,gru]", "classify.grid.pooling=[attention]",
        "seq2seq.grid.cell=[gru]", "seq2seq.grid.attention=[none,additive]", "ner.grid.output=[crf]",
        "ner.grid.char_encoder=[cnn]", "sql.grid.literals=[copy]", "sql.grid.attention=[additive]", "lm.grid.cell=[gru]",
        "long_range.arms=[rnn,lstm:coupled]", "long_range.lengths=[3]", "long_range.seeds=[0]",
        "long_range.steps=5", "long_range.test_size=50"]
CLASSIFY_VARIANTS = ("lstm-attention", "gru-attention")

pytestmark = pytest.mark.slow  # DVC pipelines and Hydra sweeps through the real stage scripts


def _copy_project(dest):
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout.split("\n")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    for args in (["git", "init", "-q"], ["git", "add", "-A"],
                 ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "tiny"]):
        subprocess.run(args, cwd=dest, check=True, capture_output=True)


def make_dvc_project(tiny_project, extra: list[str]):
    """A copy of the project (its own git repository) set up for the tiny data plus `extra` overrides.
    The set-up goes into the copy's conf/config.yaml, so that DVC's own Hydra composition
    (`dvc exp run -S ...`) composes the same params.yaml as `rnnlab.compose` does."""
    work = tiny_project["dir"] / "project"
    _copy_project(work)
    conf = OmegaConf.load(work / "conf/config.yaml")
    OmegaConf.save(OmegaConf.merge(conf, OmegaConf.from_dotlist([*tiny_project["overrides"], *extra])),
                   work / "conf/config.yaml")
    # (rnnlab.compose reads the installed project's conf/, so it is given the overrides itself)
    _check(run_cmd(["python", "-m", "rnnlab.compose", "params.yaml", *tiny_project["overrides"], *extra], work))
    return work


def _env():
    import os
    import sys

    return {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}"}


def _check(proc):
    assert proc.returncode == 0, f"{proc.args}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    return proc


# The tiny pipeline in two halves, one a test, that the two test workers run side by side: the classification
# stages (with the experiments queued on them), and every other family's stages plus the long-range study.
# Together they reproduce every stage of dvc.yaml (each half checks that what it leaves stale is the other's).
CLASSIFY_TARGETS = ["classify_report", "classify_train_bag", "classify_word_order", "classify_gates"]
OTHER_TARGETS = ["seq2seq_report", "lm_report", "lm_bilm", "ner_report", "sql_report", "study_long_range"]


def _stale_stages(work) -> set[str]:
    """The stages of the project's whole dvc.yaml that `dvc status` finds changed or never run."""
    return set(json.loads(_check(run_cmd(["dvc", "status", "--json"], work)).stdout))


def _check_nothing_left_to_do(work, targets, data_stages):
    """A second `dvc repro` of the targets runs nothing; and their outputs depend only on inputs and
    parameters (timings are printed, not written): the data stages forced to run again leave every later
    stage up to date."""
    second = _check(run_cmd(["dvc", "repro", *targets], work))
    assert "didn't change" in second.stdout or "up to date" in second.stdout
    assert "Running stage" not in second.stdout
    _check(run_cmd(["dvc", "repro", "-f", "-s", *data_stages], work))
    assert "Data and pipelines are up to date" in _check(run_cmd(["dvc", "status", "--with-deps", *targets], work)).stdout


@pytest.mark.cost(500)
@pytest.mark.timeout(1200)
def test_dvc_repro_of_classification_on_tiny_data_then_nothing_to_do_then_experiments_under_load(
        tiny_project, monkeypatch, capsys):
    """`dvc repro` of the classification stages (grid, bag baseline, studies, report) on tiny data: outputs,
    MLflow runs, the champion and the predict CLI; a second `dvc repro` with nothing to do; then two queued DVC
    experiments on two queue workers and a parallel Hydra multirun at once, all into the same MLflow store:
    every run recorded, FINISHED, none lost."""
    work = make_dvc_project(tiny_project, GRID)
    _check(run_cmd(["dvc", "repro", *CLASSIFY_TARGETS], work, timeout=850))
    # the targets leave no classification stage stale; the other half (the next test) reproduces the rest
    assert not {s for s in _stale_stages(work) if s.startswith("classify_")}

    stats = json.loads((work / "data/raw/tiny/stats.json").read_text())
    assert sum(stats["counts"].values()) == 240 and stats["label_names"] == ["neg", "pos"]
    coverage = json.loads((work / "data/embeddings/tiny/glove_6b_50d/coverage.json").read_text())
    assert 0 < coverage["vocab_coverage"] < 1
    for variant in CLASSIFY_VARIANTS:
        metrics = json.loads((work / f"metrics/classify/tiny/{variant}.json").read_text())
        assert metrics["n"] == stats["counts"]["test"]
        assert metrics["accuracy"] >= 0.9, (variant, metrics)  # one cue word decides the label
        assert (work / f"plots/classify/tiny/{variant}/confusion.png").stat().st_size > 1000
        rows = (work / f"plots/classify/tiny/{variant}/confusion.csv").read_text().splitlines()
        assert rows[0] == "actual,predicted" and len(rows) == metrics["n"] + 1
        summary = json.loads((work / f"models/classify/tiny/{variant}/train_summary.json").read_text())
        assert summary["mlflow"]["run_id"] and summary["history"]
    report = (work / "reports/classify/tiny.md").read_text()
    assert all(f"| {variant} |" in report for variant in CLASSIFY_VARIANTS)
    assert (work / "reports/classify/tiny.png").is_file()
    # the studies: the bag-of-words baseline cannot see order (shuffling changes none of its answers), the
    # recurrent models are scored on both; the gate statistics of both gated models, and their heatmaps
    order = json.loads((work / "metrics/classify_studies/tiny/word_order.json").read_text())
    assert set(order) == {*CLASSIFY_VARIANTS, "bag-mean"}
    assert order["bag-mean"]["drop"] == 0 and order["bag-mean"]["changed"] == 0 and order["bag-mean"]["p"] == 1
    assert all(0 <= order[v]["accuracy_shuffled"] <= 1 for v in CLASSIFY_VARIANTS)
    assert "| bag-mean (no recurrence) |" in (work / "reports/classify/tiny-word_order.md").read_text()
    gates = json.loads((work / "metrics/classify_studies/tiny/gates.json").read_text())
    assert {k.split("/")[2] for k in gates} == {"input", "forget", "output", "reset", "update"}
    assert all(0 <= g["closed"] + g["open"] <= 1 for g in gates.values())
    assert all((work / f"reports/classify/tiny-gates/{v}.png").stat().st_size > 1000 for v in CLASSIFY_VARIANTS)

    # Every training run is in MLflow with params, tags, per-epoch metrics and test metrics.
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tiny_project['dir']}/mlruns.db"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    classify_id = client.get_experiment_by_name("rnnlab-classify-tiny").experiment_id
    runs = client.search_runs([classify_id])
    encoders = sorted(r.data.params["classify.model.encoder"] for r in runs)
    assert encoders == ["bag"] + ["recurrent"] * len(CLASSIFY_VARIANTS)  # the grid and classify_train_bag
    for run in [r for r in runs if r.data.params["classify.model.encoder"] == "recurrent"]:
        assert run.data.tags["dataset"] == "tiny" and run.data.tags["launcher"] == "dvc"
        assert run.data.tags["family"] == "classify" and run.data.params["family"] == "classify"
        assert run.data.params["classify.model.cell"] == run.data.tags["cell"]
        assert "test_acc" in run.data.metrics and "val_acc" in run.data.metrics
        assert len(client.get_metric_history(run.info.run_id, "val_acc")) >= 1

    _check_classify_predict_cli(work, monkeypatch, capsys)
    _check_champion(work, tiny_project["dir"], *CHAMPION_CHECKS[0], monkeypatch, capsys)
    _check_nothing_left_to_do(work, CLASSIFY_TARGETS, ["classify_download", "classify_tokenize", "classify_embed"])
    assert "accuracy" in _check(run_cmd(["dvc", "metrics", "show", "--json"], work)).stdout
    _check_learning_curves(work)
    _check_experiments_under_load(work, tiny_project, client)


@pytest.mark.cost(600)
@pytest.mark.timeout(1200)
def test_dvc_repro_of_the_other_families_on_tiny_data_then_nothing_to_do(tiny_project, monkeypatch, capsys):
    """`dvc repro` of translation, language model (and the biLM), tagging, text-to-SQL and the long-range study
    on tiny data: outputs, MLflow runs, each family's champion, the predict CLI; a second `dvc repro` with
    nothing to do."""
    work = make_dvc_project(tiny_project, GRID)
    _check(run_cmd(["dvc", "repro", *OTHER_TARGETS], work, timeout=850))
    # what is left stale is the classification half (the test above); the biLM read classify_download's text
    assert all(s.startswith("classify_") for s in _stale_stages(work))

    # the long-range study with the tiny settings of params.yaml
    long_range = json.loads((work / "reports/studies/long_range/results.json").read_text())
    assert list(long_range["arms"]) == ["rnn", "lstm:coupled"] and long_range["settings"]["steps"] == 5
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tiny_project['dir']}/mlruns.db"
    _check_translation_outputs(work, MlflowClient(tracking_uri=uri, registry_uri=uri))
    _check_translation_predict_cli(work, monkeypatch, capsys)
    for family, dataset, monitor, text in CHAMPION_CHECKS[1:]:
        _check_champion(work, tiny_project["dir"], family, dataset, monitor, text, monkeypatch, capsys)
    _check_nothing_left_to_do(work, OTHER_TARGETS, ["seq2seq_download", "seq2seq_tokenize", "seq2seq_embed"])
    assert "bleu_beam" in _check(run_cmd(["dvc", "metrics", "show", "--json"], work)).stdout
    _check_learning_curves(work)


def _check_learning_curves(work):
    """Every training stage wrote its learning curves, one row per epoch of its history, and `dvc plots show`
    draws each one from the top-level plots of dvc.yaml, without an error."""
    from rnnlab.training.curves import read_curve

    trained = {p.parent: json.loads(p.read_text()) for p in (work / "models").rglob("train_summary.json")}
    # the tiny project's own (plots/ also holds the committed curves of the real data sets)
    curves = sorted(p for p in (work / "plots").rglob("curves/*/*.csv")
                    if (work / "models" / p.parents[3].name / p.parents[2].name).is_dir())
    assert len(curves) == 2 * len(trained), (curves, list(trained))
    for path in curves:  # plots/<family>/<dataset>/curves/<quantity>/<variant>.csv
        family, dataset = path.parents[3].name, path.parents[2].name
        model = work / "models" / family / dataset / path.stem
        model = model if model.is_dir() else model.parent  # the biLM's folder is models/bilm/<dataset>
        rows = read_curve(path)
        assert [int(r["epoch"]) for r in rows] == [h["epoch"] for h in trained[model]["history"]], path
        assert all(value != "" for r in rows for value in r.values()), path
    # `dvc plots show` of the whole dvc.yaml: the plots of the other half of the tiny pipeline (another test) do
    # not exist here, and those alone fail to load; every plot in this half's folders, plots/<family>/<dataset>/,
    # is drawn: the learning curves and the plots the stages declare (confusion matrices, perplexity curves, SQL
    # shapes)
    shown = json.loads(_check(run_cmd(["dvc", "plots", "show", "--json"], work)).stdout)
    prefixes = tuple(sorted({f"{p.parents[2].relative_to(work)}/" for p in curves}))
    failed = {error["source"] for error in shown.get("errors") or []}
    assert not [s for s in failed if s.startswith(prefixes) or (work / s).exists()], shown["errors"]
    drawn = set(shown["data"]) - failed
    assert {name for name in drawn if "/curves/" in name} == {str(p.relative_to(work)) for p in curves}, drawn
    declared = {str(p.relative_to(work)) for prefix in prefixes for p in (work / prefix).glob("*/*")
                if p.name in ("confusion.csv", "confusion.png", "curve.csv", "curve.png", "shapes.csv")}
    assert declared and declared <= drawn, (declared, drawn)


def _check_experiments_under_load(work, tiny_project, client):
    """Two DVC experiments on two queue workers while a Hydra multirun (two joblib workers) trains beside
    them: only the classification stages re-run, every run is recorded and FINISHED, each experiment's best
    model is a candidate (alias exp-<name>) and `champion` stays on the main pipeline."""
    champion = client.get_model_version_by_alias("rnnlab-classify-tiny", "champion").run_id
    # as a user would before queueing experiments: commit the pipeline's results (dvc.lock, metrics,
    # reports, plots); a queued experiment starts from that commit plus the DVC cache
    for args in (["git", "add", "-A"], ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "repro"]):
        _check(run_cmd(args, work))
    # each experiment reproduces the classification report (its grid's trainings and evaluations), not the
    # studies beside it: `dvc exp run <target>`
    for name, hidden in (("tiny-h8", 8), ("tiny-h12", 12)):
        _check(run_cmd(["dvc", "exp", "run", "--queue", "-n", name, "-S", f"classify.model.hidden_size={hidden}",
                        "classify_report"], work))
    # `dvc queue start` returns once its workers are detached; they must not hold this test's pipes
    # (capture_output would wait for them), so the multirun below really trains beside them
    with open(work.parent / "queue-start.log", "w") as log:
        started = subprocess.run(["dvc", "queue", "start", "-j", "2"], cwd=work, env=_env(), stdout=log,
                                 stderr=subprocess.STDOUT, timeout=120)
    assert started.returncode == 0, (work.parent / "queue-start.log").read_text()
    sweep = _check(run_cmd(["python", str(ROOT / "pipelines/train.py"), "-m", "hydra/launcher=joblib",
                            "hydra.launcher.n_jobs=2", "seed=11,12", *tiny_project["overrides"], *GRID,
                            "classify.trainer.max_epochs=2", "classify.trainer.num_threads=1"], work, timeout=600))
    deadline = time.time() + 600
    while time.time() < deadline:  # each `dvc queue status` is a DVC start-up: poll every 10 s, not faster
        status = run_cmd(["dvc", "queue", "status"], work).stdout
        if "Running" not in status and "Queued" not in status:
            break
        time.sleep(10)
    assert status.count("Success") == 2 and "Failed" not in status, status
    for name in ("tiny-h8", "tiny-h12"):
        log = _check(run_cmd(["dvc", "queue", "logs", name], work)).stdout
        assert "Running stage 'classify_train@lstm-attention'" in log and "Running stage 'seq2seq_" not in log, log[-2000:]
    table = json.loads(_check(run_cmd(["dvc", "exp", "show", "--json"], work)).stdout)
    names = {e.get("name") for base in table for e in (base.get("experiments") or []) for e in e.get("revs") or []}
    assert {"tiny-h8", "tiny-h12"} <= names, names

    every = client.search_runs([client.get_experiment_by_name("rnnlab-classify-tiny").experiment_id])
    assert all(r.info.status == "FINISHED" for r in every), [(r.info.run_name, r.info.status) for r in every]
    # the pipeline's runs (the grid and the bag baseline) + 2 experiments' runs (the grid) + the sweep's parent
    # and its 2 jobs: none lost under the load
    assert len(every) == len(CLASSIFY_VARIANTS) + 1 + 2 * len(CLASSIFY_VARIANTS) + 1 + 2, \
        [r.data.tags.get("launcher") for r in every]
    children = [r for r in every if "mlflow.parentRunId" in r.data.tags]
    assert sorted(r.data.params["seed"] for r in children) == ["11", "12"], sweep.stderr[-2000:]
    for name, hidden in (("tiny-h8", "8"), ("tiny-h12", "12")):
        runs = [r for r in every if r.data.tags.get("dvc_experiment") == name]
        assert sorted(r.data.params["classify.model.hidden_size"] for r in runs) == [hidden] * len(CLASSIFY_VARIANTS)
        candidate = client.get_model_version_by_alias("rnnlab-classify-tiny", f"exp-{name}")
        assert candidate.run_id in {r.info.run_id for r in runs}
    assert client.get_model_version_by_alias("rnnlab-classify-tiny", "champion").run_id == champion
    # and the experiments trained nothing of another family
    assert [e.name for e in client.search_experiments() if e.name != "Default"] == ["rnnlab-classify-tiny"]


# every family's champion: (family, tiny data set, monitor, a text its tiny model knows the words of)
CHAMPION_CHECKS = [("classify", "tiny", "val_acc", "a great film"), ("seq2seq", "tinypairs", "val_bleu", "the cat eats fish ."),
                   ("lm", "tinylm", "val_ppl", "the big cat"), ("ner", "tinyner", "val_f1", "we met Ana in Paris"),
                   ("sql", "tinysql", "val_exact", "how many flights left JFK ?")]


def _check_champion(work, root, family, dataset, monitor, text, monkeypatch, capsys):
    """The report stage registered the best-validation variant's model under alias `champion`."""
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{root}/mlruns.db"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    summaries = {p.parent.name: json.loads(p.read_text())
                 for p in (work / f"models/{family}/{dataset}").glob("*/train_summary.json")}
    from rnnlab import tasks

    sign = 1 if tasks.get(family).monitors[monitor] == "max" else -1
    best = max(summaries.values(), key=lambda s: (sign * s["best_" + monitor], s["variant"]))
    version = client.get_model_version_by_alias(f"rnnlab-{family}-{dataset}", "champion")
    assert version.run_id == best["mlflow"]["run_id"] and version.source == best["mlflow"]["model_uri"]
    assert f"points at **{best['variant']}**" in (work / f"reports/{family}/{dataset}.md").read_text()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    champion = mlflow.pyfunc.load_model(f"models:/rnnlab-{family}-{dataset}@champion")
    # the registered model answers what the CLI prints for the best variant's folder: one answer per text
    code, printed, _ = _predict(["--model", str(work / f"models/{family}/{dataset}/{best['variant']}"), text],
                                monkeypatch, capsys)
    assert code == 0 and champion.predict([text]) == [printed.rstrip("\n")], (family, printed)
    assert not (work / "mlflow.db").exists()  # nothing went to MLflow's default store


TRANSLATE_VARIANTS = ("gru-none", "gru-additive")


def _check_translation_outputs(work, client):
    stats = json.loads((work / "data/raw/tinypairs/stats.json").read_text())
    assert stats["source_overlap_with_train"] == {"validation": 0, "test": 0, "test_long": 0}
    # 120 sources: 10 of 4-5 words held out for the length test, 11 each for validation and test
    assert stats["unique_sources"] == {"train": 88, "validation": 11, "test": 11, "test_long": 10}
    assert stats["length_test"]["test_long_sources_per_bucket"] == {"4-6": 10}
    for variant in TRANSLATE_VARIANTS:
        metrics = json.loads((work / f"metrics/seq2seq/tinypairs/{variant}.json").read_text())
        assert metrics["sources"] == 11 and metrics["beam"] == 3 and metrics["long_sources"] == 10
        for key in ("bleu_greedy", "bleu_beam", "chrf_greedy", "chrf_beam", "long_bleu_beam",
                    "bleu_beam_words_1_3", "bleu_beam_words_4_6"):
            assert 0.0 <= metrics[key] <= 100.0
        samples = (work / f"plots/seq2seq/tinypairs/{variant}/samples.jsonl").read_text().splitlines()
        assert len(samples) == 11 and {"source", "references", "greedy", "beam"} <= set(json.loads(samples[0]))
        by_length = (work / f"plots/seq2seq/tinypairs/{variant}/bleu_by_length.csv").read_text().splitlines()
        # 1-3 words: the test split's 3-word sources; 4-6: the long split (min_words=4)
        short = [json.loads(line)["source"] for line in samples]
        assert by_length[0] == "bucket,sources,bleu_greedy,bleu_beam"
        assert by_length[1].startswith(f"1-3,{sum(len(s.split()) < 4 for s in short)},")
        assert by_length[2].startswith("4-6,10,") and len(by_length) == 3
        heatmaps = list((work / f"plots/seq2seq/tinypairs/{variant}").glob("attention_*.png"))
        assert bool(heatmaps) == variant.endswith("additive")
    # word-for-word pseudo-Spanish: attention learns it; the score is real sacreBLEU on held-out sentences
    best = json.loads((work / "metrics/seq2seq/tinypairs/gru-additive.json").read_text())
    assert best["bleu_greedy"] >= 50, best
    report = (work / "reports/seq2seq/tinypairs.md").read_text()
    assert all(f"| {v} |" in report for v in TRANSLATE_VARIANTS) and "## Example outputs" in report
    assert "## BLEU by source length" in report and (work / "reports/seq2seq/tinypairs-length.png").stat().st_size
    runs = client.search_runs([client.get_experiment_by_name("rnnlab-seq2seq-tinypairs").experiment_id])
    assert sorted(r.data.tags["attention"] for r in runs) == ["additive", "none"]
    assert all(r.data.tags["family"] == "seq2seq"
               and r.data.params["seq2seq.model.attention"] == r.data.tags["attention"] for r in runs)
    assert all("test_bleu_beam" in r.data.metrics and "val_bleu" in r.data.metrics for r in runs)


def _predict(argv, monkeypatch, capsys, stdin: bytes | None = None) -> tuple[int, str, str]:
    """rnnlab.predict.main (what pipelines/predict.py runs) in this process: (exit code, stdout, stderr)."""
    from rnnlab.predict import main

    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse's own usage errors
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


def _check_translation_predict_cli(work, monkeypatch, capsys):
    """pipelines/predict.py on the pipeline's seq2seq model: it translates (arguments or stdin lines, --beam,
    --heatmap), and bad input of every kind is one `error:` line, exit 2. The script runs as a process for the
    real uses; the error cases call its main() in this process."""
    from rnnlab.errors import DataError
    from rnnlab.tasks.seq2seq.evaluate import load_translator

    model = "models/seq2seq/tinypairs/gru-additive"
    cli = ["python", str(ROOT / "pipelines/predict.py")]
    out = _check(run_cmd([*cli, "The cat eats fish.", "--model", model, "--heatmap", "h.png"], work))
    assert out.stdout.strip() and (work / "h.png").stat().st_size > 1000
    piped = subprocess.run([*cli, "--model", model, "--beam", "1"], cwd=work, input="The dog has bread.\nTom sees water.\n",
                           capture_output=True, text=True, env=_env())
    assert piped.returncode == 0 and len(piped.stdout.strip().splitlines()) == 2
    junk = run_cmd([*cli, "--model", model, "zzzq qqq"], work)  # an error as the process sees it: exit 2
    assert junk.returncode == 2 and "vocabulary" in junk.stderr and "Traceback" not in junk.stderr, junk.stderr
    monkeypatch.chdir(work)
    for junk, message in ((b"\x00\xff\xfe\x89PNG\r\n", "stdin is not UTF-8"), (b"", "stdin held no input"),
                          (b"\n  \n", "stdin held no input")):
        code, _, err = _predict(["--model", model], monkeypatch, capsys, stdin=junk)
        assert code == 2 and message in err and "Traceback" not in err, err
    for args, message in (([""], "empty input"), (["Привет"], "outside the Latin script"),
                          (["hi", "--model", "models/seq2seq/tinypairs/nope"], "does not exist"),
                          (["hi", "--beam", "0"], "--beam must be at least 1"),
                          (["the big cat", "--model", "models/lm/tinylm/gru", "--beam", "1"],
                           "unrecognized arguments: --beam")):
        model_args = [] if "--model" in args else ["--model", model]
        code, _, err = _predict([*args, *model_args], monkeypatch, capsys)
        assert code == 2 and message in err and "Traceback" not in err, err
    # the seq2seq loader refuses a model of another family
    with pytest.raises(DataError, match="family 'lm'"):
        load_translator(work / "models/lm/tinylm/gru")


def _check_classify_predict_cli(work, monkeypatch, capsys):
    """The same CLI on a classify model: label<TAB>probabilities, then the attention weights; its errors."""
    cli = ["python", str(ROOT / "pipelines/predict.py")]
    labelled = _check(run_cmd([*cli, "--model", "models/classify/tiny/lstm-attention", "the film was great"], work))
    lines = labelled.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[0].split("\t")[0] in ("neg", "pos")
    assert "neg " in lines[0].split("\t")[1] and "pos " in lines[0].split("\t")[1]
    assert lines[1].startswith("  attention: ") and "great:" in lines[1]
    monkeypatch.chdir(work)
    for args, message in ((["zzzq qqq"], "vocabulary"), ([""], "empty input"), (["a good film", "--beam", "1"],
                                                                               "unrecognized arguments: --beam")):
        code, _, err = _predict(["--model", "models/classify/tiny/gru-attention", *args], monkeypatch, capsys)
        assert code == 2 and message in err and "Traceback" not in err, err


def test_stage_script_reports_bad_input_clearly_and_writes_nothing(tiny_project, tmp_path):
    work = tiny_project["dir"]
    params = work / "params.yaml"
    _check(run_cmd(["python", "-m", "rnnlab.compose", str(params), *tiny_project["overrides"],
                    "classify.data.local.text_column=review"], ROOT))
    proc = run_cmd(["python", str(ROOT / "pipelines/download.py"), "--params", str(params), "family=classify"], work)
    assert proc.returncode == 2
    assert "review" in proc.stderr and "Traceback" not in proc.stderr
    assert not (work / "data/raw/tiny").exists()
    proc = run_cmd(["python", str(ROOT / "pipelines/train.py"), "--params", str(params), "family=classify",
                    "classify.model.cell=cnn", "out_dir=models/x"], work)
    assert proc.returncode == 2 and "rnn, lstm, gru" in proc.stderr and "Traceback" not in proc.stderr
    assert not (work / "models").exists()


@pytest.mark.cost(45)
@pytest.mark.timeout(400)
def test_hydra_multirun_creates_one_run_and_folder_per_job_and_the_dashboard_shows_them(tiny_project, tmp_path):
    """A multirun of two jobs: one folder and one MLflow child run per job under one parent run; then the MLflow
    dashboard as a person sees it (`mlflow server` on 127.0.0.1, headless Chromium): the sweep's parent run,
    and expanding it shows both jobs."""
    from rnnlab.tracking.dashboard import browser_missing

    problem = browser_missing()
    if problem and os.environ.get("CI"):
        pytest.fail(f"CI must run the dashboard check: {problem}")
    work = tiny_project["dir"]
    proc = _check(run_cmd(["python", str(ROOT / "pipelines/train.py"), "-m", "classify.model.cell=lstm,gru",
                           *tiny_project["overrides"]], work))
    jobs = sorted(work.glob("outputs/multiruns/*/*/[0-9]*"))
    assert len(jobs) == 2, proc.stdout
    for job in jobs:
        assert (job / "model/model.pt").is_file() and (job / "metrics.json").is_file()
        cfg = OmegaConf.load(job / ".hydra/config.yaml")
        assert cfg.family == "classify" and cfg.classify.model.cell in ("lstm", "gru")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{work}/mlruns.db")
    every = client.search_runs([client.get_experiment_by_name("rnnlab-classify-tiny").experiment_id])
    # the sweep is one parent run (FINISHED) whose children are the two jobs
    parents = [r for r in every if r.data.tags.get("launcher") == "hydra-multirun"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    runs = [r for r in every if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(runs) == 2 and len(every) == 3
    assert sorted(r.data.tags["cell"] for r in runs) == ["gru", "lstm"]
    assert all(r.data.tags["launcher"] == "hydra" for r in runs)
    assert any("classify.model.cell=gru" in r.data.tags["overrides"] for r in runs)
    assert all("test_acc" in r.data.metrics for r in runs)

    # Data made for another configuration is never reused silently.
    proc = run_cmd(["python", str(ROOT / "pipelines/train.py"), "classify.data.split.seed=7",
                    *tiny_project["overrides"]], work)
    assert proc.returncode == 2 and "different data configuration" in proc.stderr

    if problem:  # everything above was checked; only the browser part cannot run here
        pytest.skip(f"dashboard part: {problem}")
    _check_dashboard(f"sqlite:///{work}/mlruns.db", parents[0], runs, tmp_path / "dashboard.png")


def _check_dashboard(uri, parent, children, shot):
    from rnnlab.tracking.dashboard import mlflow_server, runs_page

    names = sorted(r.info.run_name for r in children)
    assert names == ["tiny/gru-attention/seed42", "tiny/lstm-attention/seed42"]
    with mlflow_server(uri) as url:
        assert url.startswith("http://127.0.0.1:")
        body = runs_page(url, parent.info.experiment_id, expand=[parent.info.run_name],
                         expect=[parent.info.run_name, *names], screenshot=shot)
    assert all(name in body for name in names)
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one


def _sweep_runs(work, experiment="rnnlab-classify-tiny"):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{work}/mlruns.db")
    every = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    parents = [r for r in every if r.data.tags.get("launcher") == "hydra-multirun"]
    assert len(parents) == 1, [r.data.tags for r in every]
    children = [r for r in every if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    return client, parents[0], children


@pytest.mark.cost(50)
@pytest.mark.timeout(400)
def test_experiment_sweep_on_two_joblib_workers_loses_no_run_and_writes_the_comparison(tiny_project):
    work = tiny_project["dir"]
    proc = _check(run_cmd(["python", str(ROOT / "pipelines/train.py"), "-m", "experiment=lstm_vs_gru",
                           "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=1,2",
                           *tiny_project["overrides"], "classify.trainer.max_epochs=3"], work, timeout=380))
    assert "Joblib.Parallel(n_jobs=2" in proc.stdout + proc.stderr
    client, parent, children = _sweep_runs(work)
    # 2 cells x 2 seeds = 4 jobs -> 4 child runs, each with its test score, tagged with the comparison
    assert len(children) == 4 and parent.info.status == "FINISHED", proc.stderr[-3000:]
    assert sorted((r.data.params["classify.model.cell"], r.data.params["seed"]) for r in children) == [
        ("gru", "1"), ("gru", "2"), ("lstm", "1"), ("lstm", "2")]
    assert all(r.info.status == "FINISHED" and "test_acc" in r.data.metrics for r in children)
    assert all(r.data.tags["comparison"] == "lstm_vs_gru" for r in children)
    report = work / "reports/compare/lstm_vs_gru-tiny.md"
    text = report.read_text()
    assert "| lstm | 2 |" in text and "| gru | 2 |" in text and "gru - lstm" in text
    assert report.with_suffix(".png").stat().st_size > 10_000
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "comparison")}
    assert logged == {"comparison/lstm_vs_gru-tiny.md", "comparison/lstm_vs_gru-tiny.png"}
    # the same report, rebuilt from MLflow alone by the CLI
    again = _check(run_cmd(["python", str(ROOT / "pipelines/compare.py"), "--comparison", "lstm_vs_gru",
                            "--dataset", "tiny", "--tracking-uri", f"sqlite:///{work}/mlruns.db",
                            "--out", str(work / "again.md")], work))
    assert "gru - lstm" in again.stdout
    tables = lambda md: md.split("## Main group")[1].split("![")[0]  # noqa: E731 (figure names differ)
    assert tables((work / "again.md").read_text()) == tables(text)


@pytest.mark.cost(20)
@pytest.mark.timeout(400)
def test_optuna_search_trials_are_child_runs_and_the_best_trial_is_reported(tiny_project):
    work = tiny_project["dir"]
    overrides = [o for o in tiny_project["overrides"] if not o.startswith("classify.optim.lr=")]
    _check(run_cmd(["python", str(ROOT / "pipelines/train.py"), "-m", "hparams_search=classify_optuna",
                    "hydra.sweeper.n_trials=3", *overrides, "classify.trainer.max_epochs=2"], work, timeout=380))
    client, parent, children = _sweep_runs(work)
    assert len(children) == 3 and parent.info.status == "FINISHED"
    lrs = {r.data.params["classify.optim.lr"] for r in children}
    assert len(lrs) == 3 and all(0.0003 <= float(lr) <= 0.01 for lr in lrs)  # the search space, sampled
    # the reported best trial is a child run with the highest validation accuracy (ties are possible)
    best_lr = float(parent.data.params["best.classify.optim.lr"])
    best = [r for r in children if float(r.data.params["classify.optim.lr"]) == pytest.approx(best_lr)]
    assert len(best) == 1
    assert parent.data.metrics["best_value"] == best[0].data.metrics["best_val_acc"] == max(
        r.data.metrics["best_val_acc"] for r in children)
    assert parent.data.params["best.classify.model.num_layers"] == best[0].data.params["classify.model.num_layers"]


@pytest.mark.cost(11)
@pytest.mark.timeout(300)
def test_a_failing_sweep_job_marks_the_parent_failed(tiny_project):
    work = tiny_project["dir"]
    proc = run_cmd(["python", str(ROOT / "pipelines/train.py"), "-m", "classify.model.cell=lstm,gru",
                    "classify.model.dropout=1.5", *tiny_project["overrides"]], work)
    assert proc.returncode != 0 and "classify.model.dropout=1.5 is out of range" in proc.stderr
    _, parent, children = _sweep_runs(work)
    assert parent.info.status == "FAILED" and children == []
