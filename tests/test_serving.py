"""The registered model served by `mlflow models serve` (a real server on 127.0.0.1, real HTTP requests), and
the pyfunc model's input checks in-process."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

import pandas as pd
import pytest

from rnnlab.errors import DataError
from rnnlab.tracking.serving import input_texts

TEXTS = ["the film was great", "an awful boring film", "great great film"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, body, content_type: str = "application/json") -> tuple[int, dict | str]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            status, text = answer.status, answer.read().decode()
    except urllib.error.HTTPError as err:
        status, text = err.code, err.read().decode()
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text


def _cli_answers(model_dir, texts, options=()) -> list[str]:
    """What pipelines/predict.py prints for each text alone (one call each), as one string per text."""
    import argparse

    from rnnlab.predict import model_family

    family = model_family(model_dir)
    parser = argparse.ArgumentParser()
    family.add_predict_arguments(parser)
    args = parser.parse_args(list(options))
    return ["\n".join(family.predict(model_dir, [text], args)) for text in texts]


@pytest.mark.slow
@pytest.mark.cost(45)
@pytest.mark.timeout(400)
def test_mlflow_models_serve_answers_the_champion_over_http_and_refuses_bad_input_with_400(prepared):
    from rnnlab.tracking.mlflow_utils import set_champion
    from rnnlab.tracking.serving import start_server, stop_server
    from rnnlab.training.train import train

    cfg, work = prepared
    cfg.model.pooling = "attention"  # its answers carry an attention line, which the no_attention param drops
    cfg.trainer.max_epochs = 2
    summary = train(cfg, work / "model", ["unit-test"])
    uri = str(cfg.tracking.tracking_uri)
    version = set_champion(uri, "rnnlab-classify-tiny", summary["mlflow"]["model_uri"], summary["mlflow"]["run_id"],
                           "test champion")
    assert version == "1"
    port = _free_port()
    server = start_server("models:/rnnlab-classify-tiny@champion", uri, port, log_path=work / "serve.log")
    url = f"http://127.0.0.1:{port}/invocations"
    try:
        expected = _cli_answers(work / "model", TEXTS)
        assert all("\n  attention: " in answer for answer in expected)
        # a batch, in each of MLflow's JSON layouts: one answer per text, what the CLI prints for it
        for body in ({"dataframe_split": {"columns": ["text"], "data": [[t] for t in TEXTS]}},
                     {"dataframe_records": [{"text": t} for t in TEXTS]},
                     {"inputs": TEXTS}, {"instances": TEXTS}):
            status, answer = _post(url, body)
            assert status == 200, answer
            assert answer == {"predictions": expected}
        # CSV works too, and the family's predict options travel as params
        status, answer = _post(url, ("text\n" + "\n".join(TEXTS) + "\n").encode(), "text/csv")
        assert status == 200 and answer == {"predictions": expected}
        status, answer = _post(url, {"dataframe_split": {"columns": ["text"], "data": [[TEXTS[0]]]},
                                     "params": {"no_attention": True}})
        assert status == 200 and answer == {"predictions": _cli_answers(work / "model", TEXTS[:1], ["--no-attention"])}
        label = answer["predictions"][0].split("\t")[0]
        assert label in ("neg", "pos") and "attention" not in answer["predictions"][0]

        # bad input: a 400 that says what was wrong, never a 500 or a half answer
        status, answer = _post(url, {"dataframe_split": {"columns": ["text"], "data": [["a fine film"], [""]]}})
        assert status == 400 and answer["error_code"] == "INVALID_PARAMETER_VALUE"
        assert "empty input" in answer["message"], answer
        status, answer = _post(url, {"dataframe_split": {"columns": ["text"], "data": [[5]]}})
        assert status == 400 and answer["error_code"] in ("INVALID_PARAMETER_VALUE", "BAD_REQUEST"), answer
        assert "text" in answer["message"], answer
        status, answer = _post(url, {"dataframe_split": {"columns": ["text"], "data": [[None]]}})
        assert status == 400, answer
        status, answer = _post(url, {"dataframe_split": {"columns": ["text"], "data": [["\x00\x01 binary"]]}})
        assert status == 400 and "control characters" in answer["message"], answer
        status, answer = _post(url, b"{not json", "application/json")
        assert status == 400, answer
        status, answer = _post(url, b"text", "text/plain")
        assert status == 415, answer
        # the server is still answering after the refusals
        status, answer = _post(url, {"inputs": TEXTS[:1]})
        assert status == 200 and answer == {"predictions": expected[:1]}
    finally:
        stop_server(server)
    assert server.poll() is not None


def test_the_pyfunc_input_is_texts_and_anything_else_is_refused_clearly():
    assert input_texts("one text") == ["one text"]
    assert input_texts(["a", "b"]) == ["a", "b"]
    assert input_texts(pd.DataFrame({"text": ["a", "b"]})) == ["a", "b"]
    assert input_texts(pd.DataFrame({"review": ["a"]})) == ["a"]  # one column: whatever its name
    assert input_texts(pd.Series(["a"])) == ["a"]
    with pytest.raises(DataError, match="input 1 is 5 \\(int\\), not a text"):
        input_texts(["a", 5])
    with pytest.raises(DataError, match="holds no text"):
        input_texts([])
    with pytest.raises(DataError, match="give one column 'text'"):
        input_texts(pd.DataFrame({"a": ["x"], "b": ["y"]}))
    with pytest.raises(DataError, match="is a dict"):
        input_texts({"text": "x"})


def test_served_options_are_the_familys_predict_options_without_file_paths():
    import argparse

    from rnnlab import tasks
    from rnnlab.tracking.serving import options, predict_parser, signature

    seq2seq = tasks.get("seq2seq")
    params = {p.name: (p.dtype.name, p.default) for p in signature(seq2seq).params}
    assert params == {"beam": ("long", None), "unknown": ("string", None)}  # --heatmap writes a file: not served
    sql = {p.name for p in signature(tasks.get("sql")).params}
    assert sql == {"beam", "any_sql", "rows"}  # --database names a file on the server: not served
    assert [c.type.name for c in signature(seq2seq).inputs.inputs] == ["string"]
    parser = predict_parser(seq2seq)
    assert options(parser, {"beam": 3}) == argparse.Namespace(beam=3, heatmap=None, unknown=None)
    with pytest.raises(DataError, match="unknown param 'heatmap'; this model takes: beam, unknown"):
        options(parser, {"heatmap": "/tmp/x.png"})
    with pytest.raises(DataError, match="param unknown='drop'; allowed: keep, forbid, copy"):
        options(parser, {"unknown": "drop"})


def test_serve_script_without_a_registered_champion_says_which_stage_registers_it(tmp_path, empty_mlflow_store, capsys):
    import shutil
    import sys

    from omegaconf import OmegaConf

    from conftest import ROOT
    from rnnlab.config import compose

    sys.path.insert(0, str(ROOT / "pipelines"))
    try:
        import serve
    finally:
        sys.path.pop(0)
    shutil.copyfile(empty_mlflow_store, tmp_path / "mlruns.db")
    params = tmp_path / "params.yaml"
    OmegaConf.save(compose([f"tracking.tracking_uri=sqlite:///{tmp_path}/mlruns.db"]), params)
    assert serve.main(["--family", "classify", "--params", str(params)]) == 2
    err = capsys.readouterr().err
    assert "error: no model rnnlab-classify-rotten_tomatoes@champion" in err and "dvc repro classify_report" in err
    assert serve.main(["--family", "summarise", "--params", str(params)]) == 2
    assert "Known families" in capsys.readouterr().err
