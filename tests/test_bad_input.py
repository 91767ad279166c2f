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
])
def test_config_values_of_the_wrong_type_or_range_are_rejected_with_key_value_and_allowed(override, expected):
    with pytest.raises(ConfigError) as err:
        validate(family_view(compose([override]), "classify"))
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

