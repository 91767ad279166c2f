"""Using a trained classifier: loading it, test-split evaluation (metrics, confusion matrix as CSV for DVC
plots and PNG, misclassified examples) and predictions for new texts."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from rnnlab.errors import DataError
from rnnlab.io import atomic_dir, load_weights, read_json, write_json


def load_model(model_dir: Path):
    """Rebuild a trained classifier from its folder (weights loaded with weights_only=True)."""
    from rnnlab.tasks.classify.model import build_classifier

    from rnnlab.io import build_from_info, read_model_info

    model_dir = Path(model_dir)
    info = read_model_info(model_dir, ("family", "model", "vocab_size", "embedding_dim", "label_names"),
                           family="classify")
    if not (model_dir / "model.pt").is_file():
        raise DataError(f"{model_dir} is not a trained model folder: model.pt missing; train one with `dvc repro` "
                        "or pipelines/train.py")
    contextual = None
    if info.get("contextual"):  # the frozen biLM and its token vectors are in model.pt: a same-shaped start
        import numpy as np

        from rnnlab.models.bilm import ContextualFeatures

        record = info["contextual"]
        contextual = ContextualFeatures(record["bilm"], np.zeros((info["vocab_size"], record["token_dim"])))
    model = build_from_info(build_classifier, model_dir, info["model"], info["vocab_size"], info["embedding_dim"],
                            len(info["label_names"]), contextual=contextual)
    load_weights(model_dir / "model.pt", model)
    return model.eval(), info


def test_loader(ids: list[list[int]], labels: list[int], batch_size: int = 256):
    """Deterministic batches in length order (each row's index kept, so results go back in place)."""
    from rnnlab.data.batching import make_loader
    from rnnlab.tasks.classify.model import collate

    return make_loader([ids, labels], collate, [len(s) for s in ids], batch_size, shuffle=False)


@torch.no_grad()
def predict(model, loader) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, predictions, probabilities) in the dataset's original order."""
    n = len(loader.dataset)
    labels = np.zeros(n, dtype=np.int64)
    preds = np.zeros(n, dtype=np.int64)
    probs = None
    for batch in loader:
        logits = model(batch["ids"], batch["lengths"])  # (batch, classes)
        p = torch.softmax(logits.float(), -1).numpy()
        if probs is None:
            probs = np.zeros((n, p.shape[1]), dtype=np.float32)
        index = batch["index"].numpy()
        labels[index], preds[index], probs[index] = batch["labels"].numpy(), p.argmax(-1), p
    return labels, preds, probs


def classification_metrics(labels: np.ndarray, preds: np.ndarray, label_names: list[str]) -> dict:
    k = len(label_names)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (labels, preds), 1)
    per_class = {}
    f1s = []
    for i, name in enumerate(label_names):
        tp = confusion[i, i]
        precision = tp / max(confusion[:, i].sum(), 1)
        recall = tp / max(confusion[i, :].sum(), 1)
        f1 = 2 * precision * recall / max(precision + recall, 1e-12)
        f1s.append(f1)
        per_class[name] = {"precision": round(float(precision), 4), "recall": round(float(recall), 4),
                           "f1": round(float(f1), 4), "support": int(confusion[i, :].sum())}
    return {
        "accuracy": round(float((labels == preds).mean()), 4),
        "macro_f1": round(float(np.mean(f1s)), 4),
        "n": int(labels.size),
        "per_class": per_class,
        "confusion": confusion.tolist(),
    }


def evaluate(tokenized: Path, model_dir: Path, metrics_path: Path, plots_dir: Path,
             log_to_mlflow: bool = True) -> dict:
    from rnnlab.reporting.figures import confusion_png
    from rnnlab.tasks.classify.data import load_tokenized
    from rnnlab.tracking.mlflow_utils import log_to_run

    model, info = load_model(model_dir)
    summary = read_json(Path(model_dir) / "train_summary.json")
    dataset, tokenizer = load_tokenized(Path(tokenized))
    model_tokenizer = Path(model_dir) / "tokenizer.json"
    if model_tokenizer.is_file() and model_tokenizer.read_bytes() != (Path(tokenized) / "tokenizer.json").read_bytes():
        raise DataError(f"the vocabulary of {tokenized} ({tokenizer.get_vocab_size():,} words) differs from the "
                        f"one {model_dir} was trained with ({info['vocab_size']:,}): the model was trained on other "
                        "data or another tokenizer; re-run the train stage")
    label_names = list(dataset["test"].features["label"].names)
    if label_names != info["label_names"]:
        raise DataError(f"labels of {tokenized} {label_names} differ from the model's "
                        f"{info['label_names']}: the model was trained on other data")
    test = dataset["test"]
    labels, preds, probs = predict(model, test_loader(test["input_ids"][:], test["label"][:]))
    details = classification_metrics(labels, preds, info["label_names"])
    details.update(variant=summary["variant"], dataset=summary["dataset"], labels=info["label_names"])
    # The DVC metrics file holds the headline numbers only; per-class scores go beside the plots.
    metrics = {key: details[key] for key in ("accuracy", "macro_f1", "n")}
    texts = test["text"]
    names = info["label_names"]
    with atomic_dir(plots_dir) as tmp:
        with (tmp / "confusion.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["actual", "predicted"])
            writer.writerows([names[a], names[p]] for a, p in zip(labels, preds))
        write_json(tmp / "details.json", details)
        confusion_png(np.array(details["confusion"]), names,
                       f"{summary['dataset']} {summary['variant']} (test acc {metrics['accuracy']:.3f})",
                       tmp / "confusion.png")
        with (tmp / "misclassified.jsonl").open("w", encoding="utf-8") as handle:
            for i in np.flatnonzero(labels != preds):
                handle.write(json.dumps({"text": texts[i], "label": names[labels[i]],
                                         "predicted": names[preds[i]],
                                         "confidence": round(float(probs[i].max()), 4)},
                                        ensure_ascii=False) + "\n")
        if log_to_mlflow:
            run = summary["mlflow"]
            log_to_run(run["tracking_uri"], run["run_id"],
                       {"test_acc": metrics["accuracy"], "test_f1": metrics["macro_f1"]},
                       [tmp / "confusion.png", tmp / "misclassified.jsonl"], "evaluation")
    write_json(metrics_path, metrics)
    return metrics


def _words(tokenizer, ids: list[int]) -> list[str]:
    return [tokenizer.id_to_token(i) for i in ids]


@dataclass
class Classifier:
    """A loaded classifier: the network, its model.json and its tokenizer (load once, classify many)."""

    model: torch.nn.Module
    info: dict
    tokenizer: object
    cache: dict = field(default_factory=dict)  # computed once per loaded model (the reference occurrences)


def load_classifier(model_dir: Path) -> Classifier:
    from rnnlab.io import load_tokenizer

    model, info = load_model(model_dir)
    return Classifier(model, info, load_tokenizer(Path(model_dir) / "tokenizer.json"))


@torch.no_grad()
def classify_texts(model: Path | Classifier, texts: list[str]) -> list[dict]:
    """Label, class probabilities and (attention pooling) each token's attention weight for each text, with a
    model folder or a loaded Classifier. Empty texts, control characters and texts of which no word is in the
    vocabulary are refused."""
    from rnnlab.data.tokenizer import UNK_ID
    from rnnlab.predict import check_text

    loaded = model if isinstance(model, Classifier) else load_classifier(model)
    model, info, tokenizer = loaded.model, loaded.info, loaded.tokenizer
    limit = int(info["max_length"])
    results = []
    for text in texts:
        text = check_text(text)
        ids = tokenizer.encode(text, add_special_tokens=False).ids
        if not ids or all(i == UNK_ID for i in ids):
            raise DataError(f"none of the words of {text[:60]!r} is in the model's vocabulary "
                            f"({info['vocab_size']:,} words); rephrase with more common words")
        warning = None
        if len(ids) > limit:
            warning = f"the input has {len(ids)} tokens; the model reads at most {limit}: classifying the first {limit}"
            ids = ids[:limit]
        batch = torch.tensor([ids]), torch.tensor([len(ids)])
        logits, weights = model(*batch, return_attention=True)  # (1, classes), (1, time) or None
        probs = torch.softmax(logits.float(), -1)[0].tolist()
        best = int(np.argmax(probs))
        results.append({
            "text": text, "label": info["label_names"][best],
            "probabilities": {name: round(p, 4) for name, p in zip(info["label_names"], probs)},
            "attention": None if weights is None else list(zip(_words(tokenizer, ids),
                                                                [round(w, 4) for w in weights[0].tolist()])),
            "warning": warning,
        })
    return results


# Sentences in which ambiguous words take different senses: the reference occurrences whose contextual
# vectors a word's contextual vector is compared with (the explorer's "neighbours" view).
REFERENCE_SENTENCES = (
    "we walked along the river bank at dawn", "the boat drifted toward the muddy bank of the stream",
    "fishermen sat on the grassy bank all afternoon", "the bank approved the loan on monday",
    "she deposited her salary at the bank", "the bank raised its interest rates again",
    "the kids play in the park after school", "the play opened on broadway to great reviews",
    "he will play the piano at the concert", "the actors rehearsed the play for weeks",
    "turn off the light before you leave", "the suitcase was light enough to carry",
    "a light meal of soup and bread", "the morning light filled the room",
    "the film is a fair portrait of the war", "we rode the ferris wheel at the county fair",
    "it is not fair to blame the director", "the story is told in a cold , distant way",
    "i caught a cold after the match", "the movie is a great film about love and loss",
)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-9)


@torch.no_grad()
def _reference_occurrences(loaded: Classifier) -> tuple[list[str], list[str], torch.Tensor]:
    """Every word occurrence of REFERENCE_SENTENCES: (its word, its sentence, its unit contextual vector), the
    sentences run as one padded batch (padding comes after each sentence: it changes no real word's vector),
    once per loaded model."""
    if "references" not in loaded.cache:
        encoded = [loaded.tokenizer.encode(s, add_special_tokens=False).ids for s in REFERENCE_SENTENCES]
        lengths = torch.tensor([len(ids) for ids in encoded])
        batch = torch.zeros(len(encoded), int(lengths.max()), dtype=torch.long)
        for row, ids in enumerate(encoded):
            batch[row, : len(ids)] = torch.tensor(ids)
        vectors = _unit(loaded.model.contextual(batch, lengths))
        words = [w for ids in encoded for w in _words(loaded.tokenizer, ids)]
        sentences = [s for s, ids in zip(REFERENCE_SENTENCES, encoded) for _ in ids]
        refs = torch.cat([vectors[row, : len(ids)] for row, ids in enumerate(encoded)])
        loaded.cache["references"] = (words, sentences, refs)
    return loaded.cache["references"]


@torch.no_grad()
def word_neighbours(loaded: Classifier, text: str, word: str, k: int = 8) -> dict:
    """Nearest neighbours of `word` as it occurs in `text`: {"static": [(word, cosine)]: the vocabulary words
    nearest by the word's own vector (the GloVe row the biLM reads, or the classifier's fine-tuned embedding
    without contextual features), the same in every sentence; "contextual": [(word, sentence, cosine)] or
    None: the occurrences in REFERENCE_SENTENCES nearest by the scalar-mixed biLM vector in this sentence}."""
    from rnnlab.data.tokenizer import UNK_ID
    from rnnlab.predict import check_text

    model, tokenizer = loaded.model, loaded.tokenizer
    text, word = check_text(text), check_text(word)
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    tokens = _words(tokenizer, ids)
    wanted = _words(tokenizer, tokenizer.encode(word, add_special_tokens=False).ids)
    if len(wanted) != 1 or wanted[0] not in tokens:
        raise DataError(f"give one word of the sentence (its words: {' '.join(tokens)}); got {word!r}")
    position = tokens.index(wanted[0])
    if ids[position] == UNK_ID:
        raise DataError(f"{word!r} is not in the model's vocabulary: it has no vector of its own")
    contextual = model.contextual
    table = contextual.vectors if contextual is not None else model.embedding.weight
    sims = _unit(table) @ _unit(table[ids[position]])
    sims[[0, UNK_ID, ids[position]]] = -2.0  # not padding, <unk> or the word itself
    top = torch.topk(sims, min(k, sims.numel()))
    static = [(tokenizer.id_to_token(int(i)), round(float(v), 3)) for v, i in zip(top.values, top.indices)]
    if contextual is None:
        return {"static": static, "contextual": None, "word": wanted[0]}
    contextual.eval()
    query = _unit(contextual(torch.tensor([ids]), torch.tensor([len(ids)]))[0, position])
    words, sentences, refs = _reference_occurrences(loaded)
    occurrences = list(zip(words, sentences, (refs @ query).tolist()))
    occurrences.sort(key=lambda o: -o[2])
    return {"static": static, "contextual": [(w, s, round(c, 3)) for w, s, c in occurrences[:k]], "word": wanted[0]}
