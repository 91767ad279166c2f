"""The explorer (rnnlab.explorer): what each tab shows for an input, which models it offers, its messages for
bad input, its host rule; and, in headless Chromium, the page itself on tiny trained models."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from rnnlab.errors import ConfigError, DataError
from rnnlab.explorer.app import check_host
from rnnlab.explorer.html import marked_output, shaded_words
from rnnlab.explorer.models import ModelCache, family_models
from rnnlab.explorer.tab import guarded, tab_for
from rnnlab.tasks.seq2seq.explorer_tab import chosen_output, translate_view

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_hosts_are_served(host):
    assert check_host(host) in (host, "127.0.0.1")


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "example.org", "::"])
def test_other_hosts_are_refused_with_the_way_to_reach_it(host):
    with pytest.raises(ConfigError, match="loopback address.*ssh -L"):
        check_host(host)


def test_shading_escapes_the_users_text_and_scales_to_the_largest_weight():
    html = shaded_words([("<b>", 0.2), ("film", 0.8)])
    assert "&lt;b&gt;" in html and "<b>" not in html
    assert 'data-weight="0.8000"' in html and "rgba(255, 140, 0, 1.000)" in html and "rgba(255, 140, 0, 0.250)" in html
    marked = marked_output(["a", "Zoë", "<x>"], {1: "Zoë"})
    assert '<mark class="rnnlab-copied"' in marked and "&lt;x&gt;" in marked and "1 unknown word(s) copied" in marked


def test_handlers_turn_errors_into_messages_and_never_raise():
    def bad_input(text):
        raise DataError("empty input: give a sentence")

    def broken(text):
        raise KeyError("oops")

    assert guarded(bad_input, (None, "", 1), 0)("") == ('<div class="rnnlab-error" role="alert">empty input: give a '
                                                        'sentence</div>', "", 1)
    message = guarded(broken, (None,), 0)("x")[0]
    assert "internal error (KeyError" in message and "the server&#x27;s log has the details" in message


def _model_folder(root: Path, family: str, dataset: str, variant: str) -> Path:
    folder = root / "models" / family / dataset / variant
    folder.mkdir(parents=True)
    (folder / "model.json").write_text(json.dumps({"family": family, "model": {}}), encoding="utf-8")
    return folder


def _params(root: Path) -> OmegaConf:
    return OmegaConf.create({
        "paths": {"models": "models"}, "tracking": {"tracking_uri": f"sqlite:///{root}/none.db"},
        "classify": {"data": {"name": "tiny"}, "tracking": {"registered_model": "rnnlab-classify-tiny"}},
        "seq2seq": {"data": {"name": "pairs"}, "tracking": {"registered_model": "rnnlab-seq2seq-pairs"}}})


def test_models_offered_per_family_and_the_command_when_there_is_none(tmp_path):
    for variant in ("gru-attention", "lstm-last"):
        _model_folder(tmp_path, "classify", "tiny", variant)
    (tmp_path / "models/classify/tiny/half-written").mkdir()  # no model.json: not offered
    cfg = _params(tmp_path)
    found = family_models(cfg, "classify", tmp_path)
    assert [r.label for r in found.models] == ["gru-attention", "lstm-last"] and found.missing is None
    assert found.find("lstm-last").path == tmp_path / "models/classify/tiny/lstm-last"
    with pytest.raises(DataError, match="choose one of: gru-attention, lstm-last"):
        found.find("nope")
    none = family_models(cfg, "seq2seq", tmp_path)
    assert none.models == [] and "`make repro-seq2seq`" in none.missing
    assert not (tmp_path / "none.db").exists()  # looking for a champion creates no MLflow store
    # the user's own model first; a model of another family is refused
    mine = family_models(cfg, "classify", tmp_path, [str(tmp_path / "models/classify/tiny/lstm-last")])
    assert mine.default.path.name == "lstm-last"
    with pytest.raises(ConfigError, match="that is a classify model"):
        family_models(cfg, "seq2seq", tmp_path, [str(tmp_path / "models/classify/tiny/lstm-last")])


def test_every_builtin_family_has_a_tab_with_its_own_element_ids():
    from rnnlab import tasks

    tabs = [tab_for(name) for name in tasks.BUILTIN]
    assert all(tab is not None and tab.family == name and tab.title and tab.example and tab.loader
               for tab, name in zip(tabs, tasks.BUILTIN))
    assert len({tab.prefix for tab in tabs}) == len(tabs) and "side" not in {tab.prefix for tab in tabs}


def test_model_cache_loads_each_folder_once(tmp_path):
    from rnnlab.explorer.models import ModelRef

    calls = []
    cache = ModelCache({"classify": lambda path: calls.append(path) or f"model at {path}"})
    ref = ModelRef("classify", "x", tmp_path)
    assert cache.get(ref) == cache.get(ref) == f"model at {tmp_path}" and calls == [tmp_path]


def test_translation_view_lists_n_best_and_draws_the_chosen_outputs_attention():
    from test_explain import _translator

    view = translate_view(_translator(unk_bias=50.0), "Mary likes tea.", beam=3, length_penalty=0.6, n_best=2)
    assert [row[0] for row in view["n_best"]] == [1, 2] and view["greedy"]
    marked, figure = chosen_output(view, 2)
    assert "rnnlab-copied" in marked  # the <unk> outputs were replaced from the source, and marked
    rows = len(view["outputs"][1]["tokens"]) + 1
    assert [t.get_text() for t in figure.axes[0].get_yticklabels()][-1] == "<eos>"
    assert len(figure.axes[0].get_yticklabels()) == rows
    plain = translate_view(_translator("none"), "Tom likes tea.", beam=2, length_penalty=0.0, n_best=1)
    assert chosen_output(plain, 1)[1] is None and "no attention" in plain["note"]


# --------------------------------------------------------------------------- the page in a browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def trained_project(tmp_path_factory, empty_mlflow_store):
    """Tiny trained models of every family (2 epochs each) in a project folder with its params.yaml."""
    from conftest import tiny_project_files
    from rnnlab.config import compose, dump_params, family_view
    from rnnlab.data.prepare import run_data_stage
    from rnnlab.tracking.mlflow_utils import set_champion
    from rnnlab.training.train import train

    root = tmp_path_factory.mktemp("explorer-project")
    shutil.copyfile(empty_mlflow_store, root / "mlruns.db")
    overrides = [*tiny_project_files(root), "classify.trainer.max_epochs=2", "seq2seq.trainer.max_epochs=2",
                 "tracking.log_checkpoint=false"]
    dump_params(root / "params.yaml", overrides)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        for family, variants in (("classify", [("lstm", "attention")]),
                                 ("seq2seq", [("gru", "additive"), ("gru", "none")])):
            for stage in ("download", "tokenize", "embed"):
                run_data_stage(family_view(compose(overrides), family), stage)
            for cell, kind in variants:
                key = "pooling" if family == "classify" else "attention"
                cfg = family_view(compose([*overrides, f"{family}.model.cell={cell}", f"{family}.model.{key}={kind}"]),
                                  family)
                summary = train(cfg, root / "models" / family / cfg.data.name / f"{cell}-{kind}", ["explorer-test"])
                if family == "classify":  # registered as the champion, as the report stage does
                    run = summary["mlflow"]
                    set_champion(run["tracking_uri"], str(cfg.tracking.registered_model), run["model_uri"],
                                 run["run_id"], f"{cfg.data.name} {cell}-{kind} (val_acc 0.5)")
        lm = family_view(compose(overrides), "lm")  # the next-word model on the tiny grammar corpus
        for stage in ("download", "tokenize"):
            run_data_stage(lm, stage)
        train(lm, root / "models" / "lm" / lm.data.name / "lstm", ["explorer-test"])
        ner = family_view(compose([*overrides, "ner.trainer.max_epochs=6"]), "ner")  # the tagger, tiny names and places
        for stage in ("download", "tokenize", "embed"):
            run_data_stage(ner, stage)
        train(ner, root / "models" / "ner" / ner.data.name / "crf-cnn", ["explorer-test"])
        sql = family_view(compose(overrides), "sql")  # text to SQL over the tiny generated database
        for stage in ("download", "tokenize", "embed"):
            run_data_stage(sql, stage)
        train(sql, root / "models" / "sql" / sql.data.name / "copy-additive", ["explorer-test"])
    finally:
        os.chdir(cwd)
    return root


@pytest.mark.slow
def test_the_registry_champion_comes_first_and_a_registered_version_can_be_named(trained_project, monkeypatch):
    monkeypatch.chdir(trained_project)
    cfg = OmegaConf.load(trained_project / "params.yaml")
    found = family_models(cfg, "classify", trained_project)
    assert found.default.label == "lstm-attention (champion)"
    named = family_models(cfg, "classify", trained_project, ["models:/rnnlab-classify-tiny@champion"])
    assert named.default.label == "models:/rnnlab-classify-tiny@champion"
    assert (named.default.path / "model.pt").is_file() and named.default.path != found.default.path
    with pytest.raises(DataError, match="cannot load models:/rnnlab-classify-tiny@nope"):
        family_models(cfg, "classify", trained_project, ["models:/rnnlab-classify-tiny@nope"])


@pytest.mark.slow
@pytest.mark.cost(40)
@pytest.mark.timeout(300)
def test_the_page_in_a_browser_shows_every_tab_at_work_and_listens_on_loopback_only(trained_project, tmp_path):
    import psutil

    import rnnlab
    from rnnlab.explorer.browser import check_page
    from rnnlab.tracking.dashboard import browser_missing

    problem = browser_missing()
    if problem and os.environ.get("CI"):
        pytest.fail(f"CI must run the explorer's browser test: {problem}")
    if problem:
        pytest.skip(problem)
    port = _free_port()
    log = (tmp_path / "explore.log").open("w")
    # the server runs the rnnlab this test imports (a relative PYTHONPATH=src would not hold in the project folder)
    code = str(Path(rnnlab.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([code, *filter(None, [os.environ.get("PYTHONPATH")])])}
    server = subprocess.Popen([sys.executable, str(ROOT / "pipelines/explore.py"), "--port", str(port)],
                              cwd=trained_project, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and "serving on" not in (tmp_path / "explore.log").read_text():
            assert server.poll() is None, (tmp_path / "explore.log").read_text()
            time.sleep(0.5)
        time.sleep(2)
        listening = {c.laddr for c in psutil.Process(server.pid).net_connections("inet") if c.status == "LISTEN"}
        assert listening and all(addr.ip == "127.0.0.1" for addr in listening), listening
        facts = check_page(f"http://127.0.0.1:{port}/", ["classify", "lm", "ner", "seq2seq", "sql"],
                           {"classify": "a great film", "seq2seq": "the cat eats fish .", "lm": "the big cat",
                            "ner": "we met Ana in New York", "sql": "how many flights left JFK in March?"},
                           side_family="seq2seq", screenshots=tmp_path / "shots")
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    text = (tmp_path / "explore.log").read_text()
    assert "Traceback" not in text, text
    # classification: probabilities of both labels, one shaded span per token with the attention weights
    assert "pos" in facts["classify"]["label"] and "neg" in facts["classify"]["label"]
    words = facts["classify"]["words"]
    assert [w for w, _ in words] == ["a", "great", "film"]
    assert sum(weight for _, weight in words) == pytest.approx(1.0, abs=0.01)
    # its gates section: a column per word, a row per gate and direction holding sentence_gates' means, the heatmaps
    from rnnlab.tasks.classify.evaluate import load_classifier
    from rnnlab.tasks.classify.gates import sentence_gates

    gates = facts["classify"]["gates"]
    view = sentence_gates(load_classifier(next((trained_project / "models/classify").glob("*/lstm-attention"))),
                          "a great film")
    assert gates["words"] == ["a", "great", "film"]
    assert [(r["gate"], r["layer"], r["direction"], pytest.approx(r["means"], abs=1e-5)) for r in gates["rows"]] == \
        [(g, e["layer"], e["direction"], list(v.mean(1))) for e in view["layers"] for g, v in e["gates"].items()]
    assert gates["plot"]["width"] > 300 and gates["plot"]["height"] > 300
    assert gates["screenshot"].stat().st_size > 20_000
    assert facts["bad_input"].startswith("empty input")
    # translation: an output, the n-best table and a drawn heatmap
    assert facts["seq2seq"]["greedy"] and "rank" in facts["seq2seq"]["n_best"]
    assert facts["seq2seq"]["heatmap_size"]["width"] > 100 and facts["seq2seq"]["heatmap_size"]["height"] > 100
    # next word: the bars are the model's 10 most likely words after the prompt, most likely first
    from rnnlab.tasks.lm.evaluate import load_lm, next_words

    expected = next_words(load_lm(next((trained_project / "models/lm").glob("*/lstm"))), "the big cat", 10)
    shown = facts["lm"]["label"].split("\n")[1:]  # "Next word probabilities", the top word, then word / %
    assert shown[0] == expected[0][0] and shown[1::2] == [w for w, _ in expected], (shown, expected)
    assert [int(p.rstrip("%")) for p in shown[2::2]] == [round(100 * p) for _, p in expected]
    sampled = facts["lm"]["continuation"]  # the tab's default 30 sampled tokens, each <eos> shown as a line break
    assert len(sampled.split()) + sampled.count("\n") == 30, sampled
    # entities: every token shown, the entities highlighted by type as the tagger finds them, a row per token
    from rnnlab.tasks.ner.evaluate import tag_texts

    tagged = tag_texts(next((trained_project / "models/ner").glob("*/crf-cnn")), ["we met Ana in New York"])[0]
    assert facts["ner"]["tokens"] == ["we", "met", "Ana", "in", "New", "York"]
    assert facts["ner"]["entities"] == [kind for kind, *_ in tagged["entities"]] and facts["ner"]["entities"]
    assert len(facts["ner"]["rows"]) == 6 and facts["ner"]["rows"][2].split()[:3] == ["2", "Ana", tagged["tags"][2]]
    # text to SQL: the SQL the model writes for the question (read-only database), its n-best, the result rows
    from rnnlab.tasks.sql.evaluate import answer_questions

    answer = answer_questions(next((trained_project / "models/sql").glob("*/copy-additive")),
                              ["how many flights left JFK in March?"], beam=5, valid_only=True,
                              database=next((trained_project / "data/raw").glob("*/database.sqlite")))[0]
    assert facts["sql"]["sql"] == answer["sql"] and "compiles" in facts["sql"]["n_best"]
    assert facts["sql"]["result"]
    # side by side: both translation models answered; only the attention model has a heatmap
    assert facts["side_by_side"]["models"] == ["gru-additive", "gru-none"] and facts["side_by_side"]["heatmaps"] == 1
    assert all(shot.stat().st_size > 20_000 for shot in facts["screenshots"])


@pytest.mark.parametrize("argv,message", [
    (["--host", "0.0.0.0"], "listens on this machine only"),
    (["--port", "0"], "choose 1-65535"),
    (["--params", "missing.yaml"], "missing.yaml does not exist"),
    (["--model", "seq2seq"], "expected FAMILY=REF"),
    (["--model", "nope=models/x"], "family='nope' is not a task family"),
    (["--model", "classify=no/such/folder"], "does not exist"),
])
def test_the_command_line_refuses_bad_arguments_before_serving(argv, message, capsys, monkeypatch):
    import importlib.util

    monkeypatch.chdir(ROOT)
    spec = importlib.util.spec_from_file_location("explore_cli", ROOT / "pipelines/explore.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err


def test_neighbours_of_a_model_without_contextual_features_come_from_its_word_vectors(trained_project):
    from rnnlab.tasks.classify.evaluate import load_classifier, word_neighbours
    from rnnlab.tasks.classify.explorer_tab import neighbours_html

    loaded = load_classifier(next((trained_project / "models/classify").glob("*/lstm-attention")))
    view = word_neighbours(loaded, "a great film", "film")
    assert view["contextual"] is None and len(view["static"]) == 8 and "film" not in dict(view["static"])
    # the nearest word by cosine of the classifier's own (fine-tuned) embedding rows, checked by hand
    table = loaded.model.embedding.weight.detach()
    film = loaded.tokenizer.token_to_id("film")
    sims = torch.nn.functional.cosine_similarity(table, table[film].unsqueeze(0), dim=-1)
    sims[[0, 1, film]] = -2
    assert view["static"][0][0] == loaded.tokenizer.id_to_token(int(sims.argmax()))
    assert "has no contextual features" in neighbours_html(view)


def _without_gates(folder: Path, dest: Path) -> Path:
    """A copy of a classifier folder whose encoder is a plain RNN (fresh weights): a model without gates."""
    from rnnlab.tasks.classify.model import build_classifier

    shutil.copytree(folder, dest)
    info = json.loads((dest / "model.json").read_text(encoding="utf-8"))
    info["model"]["cell"] = "rnn"
    (dest / "model.json").write_text(json.dumps(info), encoding="utf-8")
    model = build_classifier(info["model"], info["vocab_size"], info["embedding_dim"], len(info["label_names"]))
    torch.save(model.state_dict(), dest / "model.pt")
    return dest


def test_the_gates_section_shows_each_gates_mean_per_word_and_says_when_a_model_has_none(trained_project, tmp_path):
    import re
    import warnings

    import numpy as np

    from rnnlab.explorer.app import build_app
    from rnnlab.explorer.models import FamilyModels, ModelRef
    from rnnlab.reporting.figures import save_figure
    from rnnlab.tasks.classify.evaluate import load_classifier
    from rnnlab.tasks.classify.explorer_tab import gated_labels
    from rnnlab.tasks.classify.gates import sentence_gates

    lstm = next((trained_project / "models/classify").glob("*/lstm-attention"))
    rnn = _without_gates(lstm, tmp_path / "rnn-attention")
    found = FamilyModels("classify", "tiny", [ModelRef("classify", "rnn-attention", rnn),
                                              ModelRef("classify", "lstm-attention", lstm)])
    assert gated_labels(found) == ["lstm-attention"]  # the section's model list: LSTM and GRU models only

    def route(models):  # the page's `gates` API route, as the button calls it
        app = build_app({"classify": models})
        return next(fn.fn for fn in app.fns.values() if fn.api_name == "gates")

    gates = route(found)
    status, figure, table = gates("a great film", "lstm-attention")
    view = sentence_gates(load_classifier(lstm), "a great film")
    assert status == "" and view["words"] == ["a", "great", "film"]
    assert re.findall(r'<th class="rnnlab-gate-word">(.*?)</th>', table) == view["words"]  # a column per word
    rows = re.findall(r'<tr data-gate="(\w+)" data-layer="(\d+)" data-direction="(\w+)">(.*?)</tr>', table)
    expected = [(gate, entry["layer"], entry["direction"], values.mean(1)) for entry in view["layers"]
                for gate, values in entry["gates"].items()]
    assert [(g, int(l), d) for g, l, d, _ in rows] == [(g, l, d) for g, l, d, _ in expected]
    assert {g for g, *_ in rows} == {"input", "forget", "output"}
    for (*_, cells), (*_, means) in zip(rows, expected):
        assert np.allclose([float(v) for v in re.findall(r'data-value="([\d.]+)"', cells)], means, atol=1e-6)
    # the heatmaps: a heatmap and a mean line per gate and direction, the words under each column
    heatmaps = [ax for ax in figure.axes if ax.images and ax.get_label() != "<colorbar>"]
    units = view["layers"][0]["gates"]["input"].shape[1]
    assert len(heatmaps) == len(expected) and all(ax.images[0].get_array().shape == (units, 3) for ax in heatmaps)
    labelled = [ax for ax in heatmaps if [t.get_text() for t in ax.get_xticklabels()] == view["words"]]
    assert len(labelled) == len(view["layers"])
    with warnings.catch_warnings():  # saved as the classify_gates study stage does (its tight_layout): no warning
        warnings.simplefilter("error", UserWarning)
        save_figure(figure, tmp_path / "gates.png")
    assert (tmp_path / "gates.png").stat().st_size > 10_000
    # a model without gates, an empty sentence, no model: a message in the page, never a traceback
    message, figure, table = gates("a great film", "rnn-attention")
    assert "encoder is &#x27;rnn&#x27;: only LSTM and GRU cells have gates" in message
    assert message.startswith('<div class="rnnlab-error"') and figure is None and table == ""
    assert "empty input" in gates("   ", "lstm-attention")[0]
    assert "pick an LSTM or GRU model" in gates("a great film", None)[0]
    only_rnn = route(FamilyModels("classify", "tiny", [ModelRef("classify", "rnn-attention", rnn)]))
    assert "none of the classification models has gates" in only_rnn("a great film", None)[0]
