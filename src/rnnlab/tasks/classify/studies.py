"""Studies over the trained classification grid, each a DVC stage run by `pipelines/study.py`:

- `word_order` (stage classify_word_order): every grid model and the bag-of-embeddings baseline
  (`encoder: bag`, stage classify_train_bag) scored on the test sentences as written and with each sentence's
  words shuffled; the drop says how much a model uses word order. A bag of words cannot tell the orders apart
  (its drop is 0 by construction), so it is also the check that the shuffle is the only change.
- `gates` (stage classify_gates): how often each gate of the LSTM and GRU models saturates (below 0.1 or above
  0.9) over the test set, per layer and direction, and the heatmap of one sentence's gate values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from rnnlab.config import grid_variants
from rnnlab.errors import ConfigError
from rnnlab.io import atomic_dir, write_json, write_text
from rnnlab.reporting.report import markdown_table

BASELINE = "bag-mean"  # the word-order baseline: encoder=bag, pooling=mean (stage classify_train_bag)

# The same words, opposite meanings: a bag of words must give both the same answer.
ORDER_PAIRS = (("not bad , really good", "not good , really bad"),
               ("the plot is dull but the acting is superb", "the acting is dull but the plot is superb"))


def _folders(cfg: DictConfig) -> dict:
    paths, dataset = cfg.paths, cfg.data.name
    return {"models": Path(paths.models) / "classify" / dataset,
            "baseline": Path(paths.models) / "classify_baselines" / dataset / BASELINE,
            "reports": Path(paths.reports) / "classify",
            "metrics": Path(paths.metrics) / "classify_studies" / dataset}


def _test_split(cfg: DictConfig):
    from rnnlab.data.prepare import load_tokenized, tokenized_dir

    dataset, _ = load_tokenized(tokenized_dir(cfg))
    test = dataset["test"]
    return [list(s) for s in test["input_ids"][:]], list(test["label"][:])


def _accuracy(model, ids: list[list[int]], labels: list[int]) -> tuple[float, np.ndarray]:
    from rnnlab.tasks.classify.evaluate import predict, test_loader

    gold, preds, _ = predict(model, test_loader(ids, labels))
    return float((gold == preds).mean()), preds


def mcnemar(gold: np.ndarray, first: np.ndarray, second: np.ndarray) -> float:
    """Exact McNemar test of two sets of predictions on the same items: the two-sided binomial p-value of the
    items only one of them gets right (1.0 when there are none)."""
    from scipy.stats import binomtest

    only_first = int(((first == gold) & (second != gold)).sum())
    only_second = int(((first != gold) & (second == gold)).sum())
    if only_first + only_second == 0:
        return 1.0
    return float(binomtest(only_first, only_first + only_second, 0.5).pvalue)


def word_order(cfg: DictConfig) -> dict:
    import torch

    from rnnlab.reporting.report import bar_chart
    from rnnlab.tasks.classify.evaluate import classify_texts, load_classifier
    from rnnlab.tasks.classify.gates import shuffled

    folders = _folders(cfg)
    ids, labels = _test_split(cfg)
    seed = cfg.studies.shuffle_seed
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"classify.studies.shuffle_seed={seed!r}: a non-negative integer, e.g. 0")
    mixed = shuffled(ids, seed)
    multiword = np.array([len(s) > 1 for s in ids])
    models = {v: folders["models"] / v for v in grid_variants(cfg)}
    models[f"{BASELINE} (no recurrence)"] = folders["baseline"]
    rows, pairs = [], []
    for name, folder in models.items():
        loaded = load_classifier(folder)
        with torch.no_grad():
            acc, preds = _accuracy(loaded.model, ids, labels)
            acc_mixed, preds_mixed = _accuracy(loaded.model, mixed, labels)
        rows.append({"variant": name, "accuracy": round(acc, 4), "accuracy_shuffled": round(acc_mixed, 4),
                     "drop": round(acc - acc_mixed, 4), "p": mcnemar(np.asarray(labels), preds, preds_mixed),
                     "changed": round(float((preds != preds_mixed)[multiword].mean()), 4)})
        shown = loaded.info["label_names"][-1]  # the last class: positive in the sentiment data sets
        pairs.append([name] + [f"{classify_texts(loaded, [t])[0]['probabilities'][shown]:.3f}"
                               for pair in ORDER_PAIRS for t in pair])
        print(f"word_order: {name}: accuracy {acc:.4f}, shuffled {acc_mixed:.4f}")
    metrics = {r["variant"].split(" ")[0]: {k: r[k] for k in ("accuracy", "accuracy_shuffled", "drop", "changed", "p")}
               for r in rows}
    report = folders["reports"] / f"{cfg.data.name}-word_order.md"
    png = report.with_suffix(".png")
    bar_chart(rows, [("accuracy", "as written"), ("accuracy_shuffled", "words shuffled")],
              f"{cfg.data.name}: test accuracy with and without word order", "test accuracy", png, top=1.0)
    lines = [
        f"# Word order: {cfg.data.name}",
        "",
        "Generated by the `classify_word_order` stage of `dvc repro`; do not edit. Each test sentence is scored as "
        f"written and with its words shuffled (one fixed shuffle, seed {cfg.studies.shuffle_seed}); `changed` is "
        "the share of answers that change, over sentences of two or more tokens; `p`: exact McNemar test of the two "
        "sets of answers (is the drop more than chance?). The baseline has no recurrence "
        "(`encoder: bag`: each word through one tanh layer, then mean pooling), so it cannot see order.",
        "",
        *markdown_table(["model", "test accuracy", "shuffled", "drop", "answers changed", "p (McNemar)"],
                        [[r["variant"], f"{r['accuracy']:.4f}", f"{r['accuracy_shuffled']:.4f}",
                          f"{r['drop']:+.4f}", f"{100 * r['changed']:.1f}%", f"{r['p']:.3g}"] for r in rows]),
        "",
        f"![accuracy with and without word order]({png.name})",
        "",
        f"Same words, opposite meanings: each model's probability of the class `{shown}`.",
        "",
        *markdown_table(["model", *[f"“{t}”" for pair in ORDER_PAIRS for t in pair]], pairs),
        "",
    ]
    write_text(report, "\n".join(lines))
    write_json(folders["metrics"] / "word_order.json", metrics)
    print(f"word_order: wrote {report}")
    return metrics


def gates(cfg: DictConfig) -> dict:
    from rnnlab.reporting.figures import save_figure
    from rnnlab.tasks.classify.evaluate import load_classifier, test_loader
    from rnnlab.tasks.classify.gates import gate_statistics, gates_figure, sentence_gates

    folders = _folders(cfg)
    ids, labels = _test_split(cfg)
    sentence = str(cfg.studies.gates_sentence)
    rows, images = [], []
    report = folders["reports"] / f"{cfg.data.name}-gates.md"
    from rnnlab.io import read_json

    gated = [v for v in grid_variants(cfg)
             if read_json(folders["models"] / v / "model.json")["model"]["cell"] in ("lstm", "gru")]
    if not gated:
        raise ConfigError("classify_gates needs an lstm or gru model in the grid (classify.grid.cell); the "
                          "grid has none: only those cells have gates")
    with atomic_dir(folders["reports"] / f"{cfg.data.name}-gates") as tmp:
        for variant in gated:
            loaded = load_classifier(folders["models"] / variant)
            for row in gate_statistics(loaded.model, test_loader(ids, labels)):
                rows.append({"variant": variant, **row})
            figure = gates_figure(sentence_gates(loaded, sentence), f"{variant}: “{sentence}”")
            save_figure(figure, tmp / f"{variant}.png")
            images.append(variant)
            print(f"gates: {variant}: statistics over {rows[-1]['tokens']:,} test tokens")
    lines = [
        f"# Gates: {cfg.data.name}",
        "",
        "Generated by the `classify_gates` stage of `dvc repro`; do not edit. Over every real token of the test "
        "set: the share of a gate's values below 0.1 (nearly closed) and above 0.9 (nearly open), the thresholds "
        "of Karpathy et al. 2015, and its mean; per model, layer and direction. Values recomputed from the gate "
        "equations with each model's weights (rnnlab.models.cells).",
        "",
        *markdown_table(["model", "layer", "direction", "gate", "closed (<0.1)", "open (>0.9)", "mean"],
                        [[r["variant"], str(r["layer"]), r["direction"], r["gate"], f"{100 * r['closed']:.1f}%",
                          f"{100 * r['open']:.1f}%", f"{r['mean']:.3f}"] for r in rows]),
        "",
        f"Each gate's values over the words of “{sentence}” (rows: hidden units):",
        "",
        *[f"![{v}]({cfg.data.name}-gates/{v}.png)" for v in images],
        "",
    ]
    write_text(report, "\n".join(lines))
    metrics = {f"{r['variant']}/l{r['layer']}-{r['direction']}/{r['gate']}": {k: r[k] for k in ("closed", "open", "mean")}
               for r in rows}
    write_json(folders["metrics"] / "gates.json", metrics)
    print(f"gates: wrote {report}")
    return metrics


STUDIES = {"word_order": word_order, "gates": gates}
