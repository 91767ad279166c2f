"""Using a trained tagger: loading it, test-split evaluation (entity-level precision / recall / F1 with
seqeval, micro and per type; the confusion of entity types as CSV for DVC plots and PNG; every test
sentence's gold and predicted entities) and tagging new text (predict, the explorer)."""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rnnlab.errors import DataError
from rnnlab.io import atomic_dir, load_weights, read_json, write_json

NONE = "(none)"  # the confusion's row/column of spans only one side has
# Raw text split as WNUT's tweets come: URLs, @mentions, #hashtags, HTML entities (&lt;), dotted
# abbreviations (U.S.), ellipses and emoticons stay whole, as do words with an inner apostrophe (don't, the
# data's commoner form); other punctuation is split off.
TOKEN = re.compile(r"https?://\S+|[@#]\w+|&\w+;|(?:[A-Za-z]\.){2,}|\.{2,}|[:;=][-o']?[()\[\]DPpOo/\\|*]"
                   r"|\w+(?:['\u2019]\w+)*|[^\w\s]")


def split_words(text: str) -> list[str]:
    return TOKEN.findall(text)


@dataclass
class LoadedTagger:
    model: torch.nn.Module
    info: dict
    tokenizer: object


def load_tagger(model_dir: Path) -> LoadedTagger:
    from rnnlab.io import build_from_info, load_tokenizer, read_model_info
    from rnnlab.tasks.ner.model import build_tagger

    model_dir = Path(model_dir)
    info = read_model_info(model_dir, ("family", "model", "vocab_size", "embedding_dim", "tag_names"), family="ner")
    if not (model_dir / "model.pt").is_file():
        raise DataError(f"{model_dir} is not a trained model folder: model.pt missing; train one with `dvc repro` "
                        "or pipelines/train.py")
    model = build_from_info(build_tagger, model_dir, info["model"], info["vocab_size"], info["embedding_dim"],
                            info["tag_names"])
    load_weights(model_dir / "model.pt", model)
    return LoadedTagger(model.eval(), info, load_tokenizer(model_dir / "tokenizer.json"))


@torch.no_grad()
def tag_batches(model, ids: list[list[int]], tokens: list[list[str]], batch_size: int = 128,
                with_probabilities: bool = False) -> tuple[list[list[int]], list[np.ndarray] | None]:
    """Every sentence's best tag ids (and each token's tag distribution), in the given order."""
    from rnnlab.data.batching import make_loader
    from rnnlab.tasks.ner.model import collate_tagged

    tags = [[0] * len(t) for t in tokens]
    loader = make_loader([ids, tokens, tags], lambda items: collate_tagged(items, model.max_chars),
                         [len(r) for r in ids], batch_size, shuffle=False)
    best: list = [None] * len(ids)
    probs: list = [None] * len(ids)
    for batch in loader:
        scores = model(batch["ids"], batch["chars"], batch["lengths"])
        decoded = model.decode(scores, batch["lengths"])
        p = model.probabilities(scores, batch["lengths"]) if with_probabilities else None
        for k, (i, n) in enumerate(zip(batch["index"].tolist(), batch["lengths"].tolist())):
            best[i] = decoded[k]
            if p is not None:
                probs[i] = p[k, :n].numpy()
    return best, (probs if with_probabilities else None)


def entity_confusion(gold: list[list[str]], predicted: list[list[str]]) -> list[tuple[str, str]]:
    """(actual type, predicted type) per entity span either side has: the same span on both sides pairs their
    types; a span only one side has pairs with NONE."""
    from rnnlab.tasks.ner.model import entity_spans

    pairs = []
    for g, p in zip(gold, predicted):
        gs = {(a, b): kind for kind, a, b in entity_spans(g)}
        ps = {(a, b): kind for kind, a, b in entity_spans(p)}
        pairs += [(gs.get(span, NONE), ps.get(span, NONE)) for span in sorted(set(gs) | set(ps))]
    return pairs


def entity_metrics(gold: list[list[str]], predicted: list[list[str]]) -> dict:
    """seqeval's entity-level scores (default mode: conlleval's chunks), micro and per type."""
    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

    report = classification_report(gold, predicted, output_dict=True, zero_division=0)
    per_type = {kind: {k: (round(float(v), 4) if k != "support" else int(v)) for k, v in row.items()}
                for kind, row in report.items() if not kind.endswith(" avg")}
    tokens = sum(len(g) for g in gold)
    return {"f1": round(float(f1_score(gold, predicted, zero_division=0)), 4),
            "precision": round(float(precision_score(gold, predicted, zero_division=0)), 4),
            "recall": round(float(recall_score(gold, predicted, zero_division=0)), 4),
            "token_accuracy": round(sum(a == b for g, p in zip(gold, predicted) for a, b in zip(g, p))
                                    / max(tokens, 1), 4),
            "per_type": per_type}


def bio_violations(tags: list[str]) -> int:
    """I-X tags that do not continue an entity of type X (a softmax tagger may emit them; a CRF never)."""
    count, previous = 0, "O"
    for tag in tags:
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            count += 1
        previous = tag
    return count


def evaluate(tokenized: Path, model_dir: Path, metrics_path: Path, plots_dir: Path,
             log_to_mlflow: bool = True) -> dict:
    from rnnlab.reporting.figures import confusion_png
    from rnnlab.tasks.ner.data import load_tokenized
    from rnnlab.tracking.mlflow_utils import log_to_run

    loaded = load_tagger(model_dir)
    info = loaded.info
    summary = read_json(Path(model_dir) / "train_summary.json")
    dataset, tokenizer = load_tokenized(Path(tokenized))
    if (Path(model_dir) / "tokenizer.json").read_bytes() != (Path(tokenized) / "tokenizer.json").read_bytes():
        raise DataError(f"the vocabulary of {tokenized} ({tokenizer.get_vocab_size():,} words) differs from the "
                        f"one {model_dir} was trained with ({info['vocab_size']:,}); re-run the train stage")
    names = list(dataset["test"].features["tags"].feature.names)
    if names != info["tag_names"]:
        raise DataError(f"the tags of {tokenized} {names} differ from the model's {info['tag_names']}: the model "
                        "was trained on other data")
    test = dataset["test"]
    tokens = test["tokens"][:]
    best, _ = tag_batches(loaded.model, test["input_ids"][:], tokens)
    gold = [[names[t] for t in row] for row in test["tags"][:]]
    predicted = [[names[t] for t in row] for row in best]
    details = entity_metrics(gold, predicted)
    violations = sum(bio_violations(p) for p in predicted)
    metrics = {"f1": details["f1"], "precision": details["precision"], "recall": details["recall"],
               "token_accuracy": details["token_accuracy"], "sentences": len(gold),
               "entities": sum(row.get("support", 0) for row in details["per_type"].values()),
               "bio_violations": violations}
    pairs = entity_confusion(gold, predicted)
    kinds = sorted({k for pair in pairs for k in pair} - {NONE}) + [NONE]
    confusion = np.zeros((len(kinds), len(kinds)), dtype=np.int64)
    for actual, guess in pairs:
        confusion[kinds.index(actual), kinds.index(guess)] += 1
    details.update(variant=summary["variant"], dataset=summary["dataset"], entity_types=kinds,
                   confusion=confusion.tolist(), bio_violations=violations)
    with atomic_dir(plots_dir) as tmp:
        with (tmp / "confusion.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["actual", "predicted"])
            writer.writerows(pairs)
        write_json(tmp / "details.json", details)
        confusion_png(confusion, kinds, f"{summary['dataset']} {summary['variant']}: entity types "
                      f"(test F1 {metrics['f1']:.3f})", tmp / "confusion.png")
        with (tmp / "predictions.jsonl").open("w", encoding="utf-8") as handle:
            for words, g, p in zip(tokens, gold, predicted):
                handle.write(json.dumps({"tokens": words, "gold": g, "predicted": p}, ensure_ascii=False) + "\n")
        if log_to_mlflow:
            run = summary["mlflow"]
            log_to_run(run["tracking_uri"], run["run_id"],
                       {"test_f1": metrics["f1"], "test_precision": metrics["precision"],
                        "test_recall": metrics["recall"]}, [tmp / "confusion.png"], "evaluation")
    write_json(metrics_path, metrics)
    return metrics


def tag_texts(model, texts: list[str]) -> list[dict]:
    """Tag raw texts (split into words as tweets are): per text {"tokens", "tags", "entities": [(type, first,
    last, words)], "probabilities": per token {tag: p}, "unknown": words outside the vocabulary}. `model` is a
    folder or a LoadedTagger."""
    from rnnlab.data.tokenizer import UNK_ID
    from rnnlab.predict import check_text
    from rnnlab.tasks.ner.data import encode_tokens
    from rnnlab.tasks.ner.model import entity_spans

    loaded = model if isinstance(model, LoadedTagger) else load_tagger(Path(model))
    words = [split_words(check_text(text)) for text in texts]  # (a non-blank text has a token at least)
    ids = encode_tokens(loaded.tokenizer, words)
    best, probs = tag_batches(loaded.model, ids, words, with_probabilities=True)
    names = loaded.info["tag_names"]
    results = []
    for tokens, row, p, id_row in zip(words, best, probs, ids):
        tags = [names[t] for t in row]
        entities = [(kind, a, b, " ".join(tokens[a:b + 1])) for kind, a, b in sorted(entity_spans(tags),
                                                                                      key=lambda e: e[1])]
        results.append({"tokens": tokens, "tags": tags, "entities": entities,
                        "probabilities": [{n: round(float(v), 4) for n, v in zip(names, dist)} for dist in p],
                        "unknown": [w for w, i in zip(tokens, id_row) if i == UNK_ID]})
    return results
