"""Bad input of every kind is rejected before any work, with what was wrong and how to fix it, and
leaves nothing behind. The number of cases here is the "bad inputs tried" figure in the README."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from conftest import ROOT, write_tiny_glove
from rnnlab.config import compose, family_view, validate
from rnnlab.errors import ConfigError, DataError


# ---- configuration: wrong type or out of range, named with key, value and what is allowed -------------

@pytest.mark.parametrize("override, expected", [
    ("classify.model.hidden_size=abc", "classify.model.hidden_size='abc' is out of range: expected int in [1, 8192]"),
    ("classify.optim.lr=[0.1]", "classify.optim.lr=[0.1] is out of range: expected float"),
    ("classify.trainer.devices=0", "classify.trainer.devices=0 is out of range: expected int in [1, 4096]"),
    ("tracking.retries=-1", "tracking.retries=-1 is out of range"),
    ("classify.trainer.gradient_clip_val=-1.0", "classify.trainer.gradient_clip_val=-1.0 is out of range"),
    ("classify.model.cell=lstmm", "Allowed values: rnn, lstm, gru"),
    ("classify.trainer.precision=fp8", "Allowed values: 32-true"),
    ("classify.trainer.patience=-1", "classify.trainer.patience=-1 is out of range: expected int in [0, 10000]"),
    ("classify.grid.cell=gru", "classify.grid.cell='gru' must be a non-empty list of values, e.g. "
                               "`classify.grid.cell=[gru]`"),
    ("classify.grid.cell=[]", "classify.grid.cell=[] must be a non-empty list"),
    ("data@classify.data=anki_spa_eng", "classify.data (anki_spa_eng) is not a classify data set"),
    ("data@seq2seq.data=trec", "seq2seq.data (trec) is not a seq2seq data set: it has no languages.source"),
    ("tracking.tracking_uri=weird/place", "tracking.tracking_uri='weird/place' is not a tracking store"),
    ("seq2seq.model.bridge_with_attention=sometimes", "Allowed values: True, False"),
    ("seq2seq.model.forget_bias=99", "seq2seq.model.forget_bias=99 is out of range"),
])
def test_config_values_of_the_wrong_type_or_range_are_rejected_with_key_value_and_allowed(override, expected):
    family = "seq2seq" if "seq2seq" in override else "classify"
    with pytest.raises(ConfigError) as err:
        validate(family_view(compose([override]), family))
    assert expected in str(err.value)


# ---- data and embedding files ------------------------------------------------------------------------

def _local(path):
    from rnnlab.data.sources import load_labeled

    return load_labeled(OmegaConf.create({"source": "local", "local": {
        "train": str(path), "validation": None, "test": None, "text_column": "text", "label_column": "label",
        "label_names": None}, "split": {"val_fraction": 0.1, "test_fraction": 0.1, "seed": 1}}))


def _glove(vectors, words=None):
    from rnnlab.data.glove import load_vectors

    return load_vectors(OmegaConf.create({"source": "local", "local": {"vectors": str(vectors),
                                                                        "words": str(words) if words else None}}))


def _latin1_csv(tmp):
    path = tmp / "latin1.csv"
    path.write_bytes("text,label\nun film très réussi,pos\nennuyeux,neg\n".encode("latin-1"))
    return lambda: _local(path)


def _empty_csv(tmp):
    path = tmp / "empty.csv"
    path.write_bytes(b"")
    return lambda: _local(path)


def _header_only_csv(tmp):
    path = tmp / "header.csv"
    path.write_text("text,label\n", encoding="utf-8")
    return lambda: _local(path)


def _blank_texts_csv(tmp):
    path = tmp / "blank.csv"
    path.write_text('text,label\n"   ",pos\n"",neg\n', encoding="utf-8")
    return lambda: _local(path)


def _truncated_parquet(tmp):
    path = tmp / "data.parquet"
    pd.DataFrame({"text": ["good film"] * 200, "label": ["pos"] * 200}).to_parquet(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return lambda: _local(path)


def _binary_jsonl(tmp):
    path = tmp / "junk.jsonl"
    path.write_bytes(bytes(range(256)) * 4)
    return lambda: _local(path)


def _glove_truncated_text(tmp):
    path = tmp / "glove.txt"
    path.write_text("the 0.1 0.2 0.3\ngood 0.4 0.5 0.6\nbad 0.7 0.", encoding="utf-8")  # cut mid-line
    return lambda: _glove(path)


def _glove_latin1_text(tmp):
    path = tmp / "glove.txt"
    path.write_bytes("the 0.1 0.2\ncafé 0.3 0.4\n".encode("latin-1"))
    return lambda: _glove(path)


def _glove_truncated_npy(tmp):
    vectors, words = write_tiny_glove(tmp)
    vectors.write_bytes(vectors.read_bytes()[:100])
    return lambda: _glove(vectors, words)


def _glove_pickled_npy(tmp):
    _, words = write_tiny_glove(tmp)
    path = tmp / "objects.npy"
    np.save(path, np.array([{"the": 1}], dtype=object), allow_pickle=True)
    return lambda: _glove(path, words)


def _glove_latin1_words(tmp):
    vectors, words = write_tiny_glove(tmp)
    words.write_bytes(words.read_bytes().replace(b"Zebra", "Zèbra".encode("latin-1")))
    return lambda: _glove(vectors, words)


def _pickled_weights(tmp):
    from rnnlab.io import load_weights

    path = tmp / "model.pt"
    torch.save({"model": torch.nn.Linear(2, 2)}, path)  # a pickled module, not a state dict
    return lambda: load_weights(path)


def _weights_of_another_vocabulary(tmp):
    from rnnlab.io import load_weights

    path = tmp / "model.pt"
    torch.save(torch.nn.Embedding(10, 4).state_dict(), path)
    return lambda: load_weights(path, torch.nn.Embedding(12, 4))


BAD_FILES = {
    "data file in Latin-1": (_latin1_csv, "is not UTF-8 text: byte 0xe8"),
    "empty data file": (_empty_csv, "Could not parse"),
    "data file with a header only": (_header_only_csv, "no examples left"),
    "data file whose texts are all blank": (_blank_texts_csv, "no examples left"),
    "truncated parquet": (_truncated_parquet, "Could not parse"),
    "binary junk named .jsonl": (_binary_jsonl, "is not UTF-8 text"),
    "GloVe text cut mid-line": (_glove_truncated_text, "truncated or corrupted"),
    "GloVe text in Latin-1": (_glove_latin1_text, "is not UTF-8 text"),
    "GloVe .npy truncated": (_glove_truncated_npy, "not a readable .npy"),
    "GloVe .npy of pickled objects": (_glove_pickled_npy, "not a readable .npy"),
    "GloVe word list in Latin-1": (_glove_latin1_words, "is not UTF-8 text"),
    "weights file holding a pickled module": (_pickled_weights, "weights_only=True"),
    "weights of another vocabulary": (_weights_of_another_vocabulary, "do not fit the model"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_files_are_clear_data_errors(case, tmp_path):
    make, expected = BAD_FILES[case]
    call = make(tmp_path)
    with pytest.raises(DataError) as err:
        call()
    assert expected in str(err.value), str(err.value)


# ---- damaged stage outputs and a model of other data --------------------------------------------------


@pytest.mark.slow  # trains a model
def test_damaged_stage_outputs_and_a_model_of_other_data_are_rejected(prepared):
    from rnnlab.data.prepare import embeddings_dir, load_matrix, tokenized_dir
    from rnnlab.tasks.classify.data import load_tokenized
    from rnnlab.tasks.classify.evaluate import evaluate
    from rnnlab.training.train import train

    cfg, work = prepared
    cfg.trainer.max_epochs = 1
    train(cfg, work / "model", [])
    # the same data tokenised with another vocabulary: the model's ids would mean other words
    other = work / "other_tokenized"
    shutil.copytree(tokenized_dir(cfg), other)
    vocab = json.loads((other / "tokenizer.json").read_text())
    words = vocab["model"]["vocab"]
    first, second = sorted(w for w in words if words[w] > 5)[:2]
    words[first], words[second] = words[second], words[first]
    (other / "tokenizer.json").write_text(json.dumps(vocab))
    with pytest.raises(DataError, match="vocabulary of .* differs from the one .* was trained with"):
        evaluate(other, work / "model", work / "m.json", work / "plots", log_to_mlflow=False)
    assert not (work / "m.json").exists() and not (work / "plots").exists()

    arrow = sorted((other / "dataset").rglob("*.arrow"))[0]
    arrow.write_bytes(arrow.read_bytes()[:200])
    with pytest.raises(DataError, match="is damaged .* `dvc status` shows it modified"):
        load_tokenized(other)
    matrix = embeddings_dir(cfg) / "matrix.npy"
    matrix.write_bytes(matrix.read_bytes()[:120])
    with pytest.raises(DataError, match="matrix.npy is damaged"):
        load_matrix(embeddings_dir(cfg))


# ---- command lines given nothing or junk -----------------------------------------------------------------

@pytest.mark.parametrize("args, stdin, expected", [
    (["pipelines/train.py", "--params"], None, "--params needs a file"),
    (["pipelines/train.py", "--params", "nope.yaml"], None, "nope.yaml does not exist"),
    (["pipelines/train.py", "--params", "params.yaml", "classify.model.cell"], None, "is not of the form key=value"),
    (["pipelines/train.py", "--params", "params.yaml", "classify.model.cells=gru"], None,
     "does not exist in params.yaml"),
    (["pipelines/compare.py"], None, "error:"),
    (["pipelines/predict.py", "--model", "models/none"], b"\x00\xff\xfe binary \x89PNG\r\n", "does not exist"),
])
def test_command_lines_given_nothing_or_junk_exit_2_with_a_message(args, stdin, expected):
    import subprocess

    proc = subprocess.run([sys.executable, *args], cwd=ROOT, input=stdin, capture_output=True, timeout=120)
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 2 and expected in err and "Traceback" not in err, err


# ---- a hostile user's command lines: each one `error:` line, exit 2, nothing written ------------------------

def _fake_classifier(folder):
    """A real (untrained) classifier folder, as the train stage writes it."""
    from tokenizers import Tokenizer, models

    from rnnlab.tasks.classify.model import build_classifier

    cfg = OmegaConf.to_container(family_view(compose([]), "classify").model)
    folder.mkdir()
    torch.save(build_classifier(cfg, 12, 4, 2).state_dict(), folder / "model.pt")
    (folder / "model.json").write_text(json.dumps({"family": "classify", "model": cfg, "vocab_size": 12,
                                                   "embedding_dim": 4, "label_names": ["neg", "pos"],
                                                   "max_length": 20}))
    Tokenizer(models.WordLevel({"<pad>": 0, "<unk>": 1, "good": 2}, unk_token="<unk>")).save(
        str(folder / "tokenizer.json"))
    return folder


def _cli_model_json_truncated(tmp):
    folder = _fake_classifier(tmp / "m")
    (folder / "model.json").write_text((folder / "model.json").read_text()[:40])
    return ["pipelines/predict.py", "--model", str(folder), "good"], "model.json is damaged (JSONDecodeError"


def _cli_model_json_without_keys(tmp):
    folder = _fake_classifier(tmp / "m")
    (folder / "model.json").write_text(json.dumps({"family": "classify", "model": {}}))
    return ["pipelines/predict.py", "--model", str(folder), "good"], "model.json is damaged: it lacks vocab_size"


def _cli_tokenizer_damaged(tmp):
    folder = _fake_classifier(tmp / "m")
    (folder / "tokenizer.json").write_bytes(b"{\"model\": ")
    return ["pipelines/predict.py", "--model", str(folder), "good"], "tokenizer.json is not a readable tokenizer"


def _cli_model_file_not_folder(tmp):
    folder = _fake_classifier(tmp / "m")
    return (["pipelines/predict.py", "--model", str(folder / "model.pt"), "good"],
            f"model.pt is a file: give the model folder (models/<family>/<dataset>/<variant>), not a file inside "
            f"it; use --model {folder}")


def _cli_heatmap_into_missing_folder(tmp):
    folder = tmp / "s"
    folder.mkdir()
    (folder / "model.json").write_text(json.dumps({"family": "seq2seq", "model": {}}))
    return (["pipelines/predict.py", "--model", str(folder), "--heatmap", str(tmp / "no/such/dir/h.png"), "hi"],
            "the folder " + str(tmp / "no/such/dir") + " does not exist")


def _cli_params_yaml_syntax_error(tmp):
    params = tmp / "params.yaml"
    params.write_text("family: classify\nseed: [42\n")
    return ["pipelines/train.py", "--params", str(params), "family=classify"], "params.yaml is not valid YAML"


def _cli_compose_unknown_group(tmp):
    return [str(ROOT / "src/rnnlab/compose.py"), str(tmp / "params.yaml"), "data=imdb"], "Could not override 'data'"


def _cli_compose_grid_not_a_list(tmp):
    return ([str(ROOT / "src/rnnlab/compose.py"), str(tmp / "params.yaml"), "classify.grid.cell=gru"],
            "must be a non-empty list of values")


def _cli_compose_removed_key(tmp):
    return ([str(ROOT / "src/rnnlab/compose.py"), str(tmp / "params.yaml"), "seq2seq.model.src_embedding_dim=64"],
            "Could not override 'seq2seq.model.src_embedding_dim'")


HOSTILE_COMMANDS = {
    "model.json cut short": _cli_model_json_truncated,
    "model.json without its keys": _cli_model_json_without_keys,
    "damaged tokenizer file": _cli_tokenizer_damaged,
    "--model naming model.pt": _cli_model_file_not_folder,
    "--heatmap into a missing folder": _cli_heatmap_into_missing_folder,
    "params.yaml with a YAML syntax error": _cli_params_yaml_syntax_error,
    "compose with an unknown group": _cli_compose_unknown_group,
    "compose with a grid axis that is not a list": _cli_compose_grid_not_a_list,
    "compose with a key that does not exist": _cli_compose_removed_key,
}


@pytest.mark.parametrize("case", list(HOSTILE_COMMANDS))
def test_hostile_command_lines_are_one_error_line_and_write_nothing(case, tmp_path):
    import subprocess

    args, expected = HOSTILE_COMMANDS[case](tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    args = [str(ROOT / a) if a.startswith("pipelines/") else a for a in args]
    proc = subprocess.run([sys.executable, *args], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT / "src")})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and expected in errors[0], proc.stderr
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written

