"""Using a trained text-to-SQL model: loading it, turning questions into SQL (greedy, beam, beam restricted to
queries that compile), running them read-only, and the test evaluation: exact match and execution accuracy on
test_random and test_unseen, per query shape and per kind of novelty."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from rnnlab.errors import DataError
from rnnlab.io import atomic_dir, load_weights, read_json, write_json


@dataclass
class LoadedSql:
    model: torch.nn.Module
    info: dict
    tokenizers: dict
    lexicon: dict
    vocab: list[str] = field(default_factory=list)  # target id -> token

    @property
    def decoding(self) -> dict:
        return self.info["model"]["decoding"]

    @property
    def copy(self) -> bool:
        return self.info["model"].get("literals", "copy") == "copy"


def load_sql_model(model_dir: Path) -> LoadedSql:
    from rnnlab.io import build_from_info, load_tokenizer, read_model_info
    from rnnlab.tasks.sql.data import LEXICON, TOKENIZED_FILES, TOKENIZER_FILES
    from rnnlab.tasks.sql.model import build_text2sql

    model_dir = Path(model_dir)
    info = read_model_info(model_dir, ("family", "model", "src_vocab_size", "tgt_vocab_size", "embedding_dim"),
                           family="sql")
    missing = [name for name in ("model.pt", *TOKENIZED_FILES) if not (model_dir / name).is_file()]
    if missing:
        raise DataError(f"{model_dir} is not a trained text-to-SQL model folder: {', '.join(missing)} missing")
    model = build_from_info(build_text2sql, model_dir, info["model"], info["src_vocab_size"], info["tgt_vocab_size"],
                            src_embeddings=np.zeros((info["src_vocab_size"], info["embedding_dim"]), np.float32))
    load_weights(model_dir / "model.pt", model)
    tokenizers = {side: load_tokenizer(model_dir / name) for side, name in TOKENIZER_FILES.items()}
    target = tokenizers["target"]
    vocab = [target.id_to_token(i) for i in range(target.get_vocab_size())]
    return LoadedSql(model.eval(), info, tokenizers, read_json(model_dir / LEXICON), vocab)


# --------------------------------------------------------------------------- questions -> SQL


@dataclass
class Item:
    """One question as the model reads it."""

    words: list[str]                  # the question's tokens (what a copied id points into)
    ids: list[int]                    # question ids (anonymised for placeholders)
    source_ext: list[int] | None      # copy: each question word's id in the extended space
    mapping: dict | None              # placeholders: placeholder -> value tokens
    model_words: list[str] | None = None  # the tokens the model reads (anonymised for placeholders)


def lexicon_words(loaded: LoadedSql) -> set[str]:
    """Every word of every value the database's lexicon holds (cached on the loaded model)."""
    if not hasattr(loaded, "_lexicon_words"):
        loaded._lexicon_words = {w for values in loaded.lexicon.values() for v in values for w in str(v).split()}
    return loaded._lexicon_words


def prepare(loaded: LoadedSql, question: str) -> Item:
    """A question's Item; DataError for empty or binary input."""
    from rnnlab.data.tokenizer import UNK_ID
    from rnnlab.predict import check_text
    from rnnlab.tasks.sql.data import copy_ids, encode_tokens
    from rnnlab.tasks.sql.grammar import anonymise, question_tokens

    words = question_tokens(check_text(question))
    if words and len(words[-1]) > 1 and words[-1].endswith(".") and words[-1] not in lexicon_words(loaded):
        words[-1:] = [words[-1][:-1], "."]  # a sentence's full stop, not part of a value such as "Inc."
    words = words[: int(loaded.info["max_length"])]
    if loaded.copy:
        ids = encode_tokens(loaded.tokenizers["source"], [words])[0]
        ext = copy_ids(words, None, loaded.tokenizers["target"].get_vocab(), UNK_ID)[0]
        return Item(words, ids, ext, None, words)
    anon, _, mapping = anonymise(words, None, loaded.lexicon)
    return Item(words, encode_tokens(loaded.tokenizers["source"], [anon])[0], None, mapping, anon)


def model_tokens(loaded: LoadedSql, item: Item, ids: list[int]) -> list[str]:
    """The tokens of decoded ids as the model wrote them: a copied id (>= V) is the question word it points
    at; specials other than <unk> are dropped; <unk> stays (the query then fails to run)."""
    from rnnlab.data.tokenizer import EOS_ID, UNK_ID

    size, words = len(loaded.vocab), item.words
    return [(words[i - size] if i - size < len(words) else "<unk>") if i >= size else loaded.vocab[i]
            for i in ids if i > EOS_ID or i == UNK_ID]


def output_tokens(loaded: LoadedSql, item: Item, written: list[str]) -> list[str]:
    """SQL tokens of what the model wrote: placeholders put back (a copy model's tokens are final)."""
    from rnnlab.tasks.sql.grammar import deanonymise

    return written if loaded.copy else deanonymise(written, item.mapping or {})


@dataclass
class Hypotheses:
    """The n-best SQL of one question, best first: SQL tokens, scores, the tokens as the model wrote them
    (placeholders not yet put back) and their attention (written tokens + <eos>, question tokens)."""

    tokens: list[list[str]]
    scores: list[float]
    written: list[list[str]]
    attention: list


@torch.no_grad()
def decode_items(loaded: LoadedSql, items: list[Item], beam: int, batch_size: int = 64) -> list[Hypotheses]:
    """Each question's hypotheses: one (greedy) when beam=1, else the beam's n-best (n = beam)."""
    from rnnlab.data.batching import pad
    from rnnlab.data.tokenizer import BOS_ID, EOS_ID
    from rnnlab.tasks.seq2seq.decoding import beam_search

    d = loaded.decoding
    limits = dict(max_length=int(d["max_length"]), max_len_a=float(d["max_len_a"]), max_len_b=int(d["max_len_b"]))
    results: list = [None] * len(items)
    order = np.argsort([len(item.ids) for item in items], kind="stable")
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        src = pad([items[i].ids for i in index])
        lengths = torch.tensor([len(items[i].ids) for i in index])
        model = loaded.model.bind(pad([items[i].source_ext for i in index])) if loaded.copy else loaded.model
        decoded = beam_search(model, src, lengths, BOS_ID, EOS_ID, beam=beam,
                              length_penalty=float(d["length_penalty"]), return_attention=True,
                              n_best=beam if beam > 1 else 1, **limits)
        for k, i in enumerate(index):
            if beam > 1:
                found = [(h.tokens, h.score, h.attention) for h in decoded.n_best[k]]
            else:
                found = [(decoded.tokens[k], decoded.scores[k], None if decoded.attention is None
                          else decoded.attention[k])]
            written = [model_tokens(loaded, items[i], ids) for ids, _, _ in found]
            results[i] = Hypotheses([output_tokens(loaded, items[i], w) for w in written], [sc for _, sc, _ in found],
                                    written, [a for _, _, a in found])
    return results


def compiles(conn, hypotheses: Hypotheses) -> list[bool]:
    """Whether each hypothesis compiles on the database (SQLite EXPLAIN)."""
    from rnnlab.tasks.sql.database import check_sql
    from rnnlab.tasks.sql.grammar import sql_detokenize

    return [check_sql(conn, sql_detokenize(tokens)) is None for tokens in hypotheses.tokens]


def first_valid(conn, hypotheses: Hypotheses, valid: list[bool] | None = None) -> int:
    """The index of the best hypothesis that compiles on the database (`valid`, else checked here); 0 when
    none does."""
    valid = compiles(conn, hypotheses) if valid is None else valid
    return valid.index(True) if True in valid else 0


def open_database(loaded: LoadedSql, database: Path | None, timeout_s: float = 2.0):
    from rnnlab.tasks.sql.database import open_readonly

    path = Path(database) if database is not None else Path(loaded.info.get("database", ""))
    if not path.is_file():
        raise DataError(f"the database {path} is missing: run `dvc repro sql_download` (or the family's data "
                        "stages), or give the SQLite file with --database")
    return open_readonly(path, timeout_s)


def answer_questions(model, questions: list[str], beam: int | None = None, valid_only: bool | None = None,
                     database: Path | None = None, max_rows: int = 20, conn=None) -> list[dict]:
    """Per question: its SQL (the beam's best, or the best that compiles when valid_only), the n-best with
    whether each compiles, the attention (SQL steps x question words), and the query's first rows.
    `model` is a folder or a LoadedSql; the database is opened read-only, with a timeout and a row limit."""
    from rnnlab.tasks.sql.database import execute
    from rnnlab.tasks.sql.grammar import sql_detokenize

    loaded = model if isinstance(model, LoadedSql) else load_sql_model(Path(model))
    beam = int(loaded.decoding["beam"]) if beam is None else int(beam)
    if beam < 1:
        raise DataError(f"beam must be at least 1 (1 = greedy), got {beam}")
    valid_only = bool(loaded.decoding.get("valid_only", True)) if valid_only is None else valid_only
    items = [prepare(loaded, q) for q in questions]
    own = conn is None
    conn = open_database(loaded, database) if own else conn
    try:
        answers = []
        for item, hyps in zip(items, decode_items(loaded, items, beam)):
            valid = compiles(conn, hyps)
            chosen = first_valid(conn, hyps, valid) if valid_only else 0
            sqls = [sql_detokenize(t) for t in hyps.tokens]
            answers.append({"sql": sqls[chosen], "chosen": chosen, "words": item.words,
                            "model_words": item.model_words, "sql_tokens": hyps.tokens[chosen],
                            "written": hyps.written[chosen],
                            "n_best": [{"sql": s, "score": round(float(sc), 4), "valid": v}
                                       for s, sc, v in zip(sqls, hyps.scores, valid)],
                            "attention": hyps.attention[chosen],
                            "result": execute(conn, sqls[chosen], max_rows=max_rows)})
        return answers
    finally:
        if own:
            conn.close()


# --------------------------------------------------------------------------- evaluation


def _stored_items(loaded: LoadedSql, split) -> list[Item]:
    words = split["question_tokens"][:]
    if loaded.copy:
        return [Item(w, ids, ext, None, w) for w, ids, ext in zip(words, split["source_ids"][:], split["source_ext"][:])]
    return [Item(w, ids, None, json.loads(m), a) for w, ids, m, a in
            zip(words, split["anon_source_ids"][:], split["anon_mapping"][:], split["anon_question_tokens"][:])]


class Executor:
    """Predicted queries run once each (cached by their text); a prediction equal to the gold text takes the
    gold result stored by the download stage (the database is read-only: same text, same result)."""

    def __init__(self, conn, max_rows: int):
        self.conn, self.max_rows, self.cache, self.runs = conn, max_rows, {}, 0

    def correct(self, predicted: str, gold_sql: str, gold: dict) -> bool:
        from rnnlab.tasks.sql.database import QueryResult, execute, is_ordered, results_match

        if predicted == gold_sql:
            return True
        if predicted not in self.cache:
            self.cache[predicted] = execute(self.conn, predicted, max_rows=self.max_rows)
            self.runs += 1
        expected = QueryResult(gold["columns"], [tuple(r) for r in gold["rows"]], None, gold["truncated"])
        return results_match(expected, self.cache[predicted], is_ordered(gold_sql))


def _mean(values) -> float:
    values = list(values)
    return round(float(np.mean(values)), 4) if values else float("nan")


def evaluate(tokenized: Path, raw: Path, model_dir: Path, metrics_path: Path, plots_dir: Path,
             log_to_mlflow: bool = True, timeout_s: float = 2.0, max_rows: int = 1000) -> dict:
    import time

    from rnnlab.tasks.sql.data import TEST_SPLITS, TOKENIZER_FILES, database_path, load_tokenized
    from rnnlab.tasks.sql.database import check_sql
    from rnnlab.tasks.sql.grammar import sql_detokenize, sql_tokens
    from rnnlab.tracking.mlflow_utils import log_to_run

    start = time.perf_counter()
    loaded = load_sql_model(model_dir)
    summary = read_json(Path(model_dir) / "train_summary.json")
    for name in TOKENIZER_FILES.values():
        if (Path(model_dir) / name).read_bytes() != (Path(tokenized) / name).read_bytes():
            raise DataError(f"the vocabulary {name} of {tokenized} differs from the one {model_dir} was trained "
                            "with; re-run the train stage")
    dataset, _, _ = load_tokenized(Path(tokenized))
    beam = int(loaded.decoding["beam"])
    valid_only = bool(loaded.decoding.get("valid_only", True))
    conn = open_database(loaded, database_path(raw), timeout_s)
    executor = Executor(conn, max_rows)
    metrics: dict = {"beam": beam, "valid_only": valid_only}
    shapes, rows, categories = [], [], {}
    try:
        for split_name in TEST_SPLITS:
            split = dataset[split_name]
            items = _stored_items(loaded, split)
            greedy = decode_items(loaded, items, 1)
            beamed = decode_items(loaded, items, beam)
            gold_sqls, golds = split["sql"][:], [json.loads(g) for g in split["gold"][:]]
            modes = {"greedy": [h.tokens[0] for h in greedy], "beam": [h.tokens[0] for h in beamed],
                     "valid": [h.tokens[first_valid(conn, h)] for h in beamed]}
            scores = {}
            for mode, predicted in modes.items():
                sqls = [sql_detokenize(t) for t in predicted]
                scores[mode] = {
                    "exact": [float(t == sql_tokens(g)) for t, g in zip(predicted, gold_sqls)],
                    "execution": [float(executor.correct(s, g, gold)) for s, g, gold in zip(sqls, gold_sqls, golds)],
                    "compiles": [float(check_sql(conn, s) is None) for s in sqls], "sql": sqls}
                for key in ("exact", "execution"):
                    metrics[f"{split_name}_{key}_{mode}"] = _mean(scores[mode][key])
                metrics[f"{split_name}_valid_sql_{mode}"] = _mean(scores[mode]["compiles"])
            main = "valid" if valid_only else "beam"
            metrics[f"{split_name}_execution"] = metrics[f"{split_name}_execution_{main}"]
            metrics[f"{split_name}_exact"] = metrics[f"{split_name}_exact_{main}"]
            metrics[f"{split_name}_questions"] = len(items)
            by_shape = defaultdict(list)
            for shape, ok in zip(split["shape"][:], scores[main]["execution"]):
                by_shape[shape].append(ok)
            shapes += [{"split": split_name, "shape": s, "questions": len(v), "execution": _mean(v)}
                       for s, v in sorted(by_shape.items())]
            if split_name == "test_unseen":
                for category in ("shape", "phrasing", "value", "given"):
                    hits = [ok for tags, ok in zip(split["unseen"][:], scores[main]["execution"]) if category in tags]
                    if hits:
                        categories[category] = {"questions": len(hits), "execution": _mean(hits)}
                        metrics[f"test_unseen_execution_{category}"] = _mean(hits)
            for k, question in enumerate(split["question"][:]):
                rows.append({"split": split_name, "question": question, "gold": gold_sqls[k],
                             "shape": split["shape"][k], "unseen": split["unseen"][k],
                             **{f"{m}": scores[m]["sql"][k] for m in modes},
                             **{f"{m}_correct": bool(scores[m]["execution"][k]) for m in modes}})
    finally:
        conn.close()
    details = {"variant": summary["variant"], "dataset": summary["dataset"], "metrics": metrics,
               "unseen_categories": categories, "shapes": shapes, "queries_run": executor.runs,
               "seconds": round(time.perf_counter() - start, 1)}
    with atomic_dir(plots_dir) as tmp:
        with (tmp / "shapes.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=["split", "shape", "questions", "execution"])
            writer.writeheader()
            writer.writerows(shapes)
        write_json(tmp / "details.json", details)
        with (tmp / "predictions.jsonl").open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        if log_to_mlflow:
            run = summary["mlflow"]
            log_to_run(run["tracking_uri"], run["run_id"],
                       {k: float(v) for k, v in metrics.items() if k.startswith("test_")}, [], "evaluation")
    write_json(metrics_path, metrics)
    return metrics
