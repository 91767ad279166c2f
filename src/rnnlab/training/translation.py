"""Using a trained translation model: loading, translating sentences, test-split evaluation
(sacreBLEU / chrF, greedy and beam), sample translations and attention heatmaps."""

from __future__ import annotations

import json
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rnnlab.errors import DataError
from rnnlab.io import atomic_dir, atomic_file, load_weights, read_json, write_json


@dataclass
class Translator:
    model: torch.nn.Module
    info: dict
    source_tokenizer: object
    target_tokenizer: object

    @property
    def decoding(self) -> dict:
        return self.info["model"]["decoding"]


def load_translator(model_dir: Path) -> Translator:
    """Rebuild a trained seq2seq model from its folder (weights loaded with weights_only=True)."""
    from tokenizers import Tokenizer

    from rnnlab.data.prepare import TRANSLATION_TOKENIZERS
    from rnnlab.models.seq2seq import build_seq2seq

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise DataError(f"model folder {model_dir} does not exist. Train one with `dvc repro` (it writes "
                        "models/translate/<dataset>/<cell>-<attention>) or pipelines/train.py task=translate")
    needed = ["model.json", "model.pt", *TRANSLATION_TOKENIZERS.values()]
    info_path = model_dir / "model.json"
    if info_path.is_file() and read_json(info_path).get("task") not in (None, "translate"):
        raise DataError(f"{model_dir} holds a model for task {read_json(info_path).get('task')!r}, "
                        "not a translation model; pass a folder under models/translate/")
    missing = [name for name in needed if not (model_dir / name).is_file()]
    if missing:
        raise DataError(f"{model_dir} is not a trained translation model folder: {', '.join(missing)} missing")
    info = read_json(info_path)
    model = build_seq2seq(info["model"], info["src_vocab_size"], info["tgt_vocab_size"],
                          src_embeddings=np.zeros((info["src_vocab_size"], info["embedding_dim"]), np.float32))
    load_weights(model_dir / "model.pt", model)
    tokenizers = {side: Tokenizer.from_file(str(model_dir / name)) for side, name in TRANSLATION_TOKENIZERS.items()}
    return Translator(model.eval(), info, tokenizers["source"], tokenizers["target"])


def non_latin_letters(text: str) -> list[str]:
    """Letters of `text` that are not Latin script (the model reads English)."""
    return [ch for ch in text if ch.isalpha() and not unicodedata.name(ch, "").startswith("LATIN")]


def translate_ids(translator: Translator, source_ids: list[list[int]], beam: int, batch_size: int = 64,
                  return_attention: bool = False) -> tuple[list[list[int]], list]:
    """Decode every id sequence (batched by length); (output ids, attention per sentence or None)."""
    from rnnlab.data.batching import _pad
    from rnnlab.data.tokenizer import BOS_ID, EOS_ID
    from rnnlab.models.decoding import beam_search, greedy_decode

    d = translator.decoding
    limits = dict(max_length=int(d["max_length"]), max_len_a=float(d["max_len_a"]), max_len_b=int(d["max_len_b"]))
    outputs: list = [None] * len(source_ids)
    attention: list = [None] * len(source_ids)
    order = np.argsort([len(s) for s in source_ids], kind="stable")
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        src = _pad([source_ids[i] for i in index])  # (batch, src_len)
        lengths = torch.tensor([len(source_ids[i]) for i in index])
        if beam == 1:
            decoded = greedy_decode(translator.model, src, lengths, BOS_ID, EOS_ID,
                                    return_attention=return_attention, **limits)
        else:
            decoded = beam_search(translator.model, src, lengths, BOS_ID, EOS_ID, beam=beam,
                                  length_penalty=float(d["length_penalty"]), return_attention=return_attention,
                                  **limits)
        for row, i in enumerate(index):
            outputs[i] = decoded.tokens[row]
            if decoded.attention is not None:
                attention[i] = decoded.attention[row]
    return outputs, attention


def attention_heatmap(source_tokens: list[str], output_tokens: list[str], weights: np.ndarray,
                      title: str, path: Path) -> None:
    """weights: (output steps incl. <eos>, source tokens)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(0.55 * len(source_tokens) + 2.5, 0.45 * len(output_tokens) + 2))
    ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(source_tokens)), source_tokens, rotation=45, ha="right")
    ax.set_yticks(range(len(output_tokens)), output_tokens)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def heatmap_for(translator: Translator, source_ids: list[int], output_ids: list[int], weights, title: str,
                path: Path) -> None:
    src_tokens = [translator.source_tokenizer.id_to_token(i) for i in source_ids]
    out_tokens = [translator.target_tokenizer.id_to_token(i) for i in output_ids] + ["<eos>"]
    attention_heatmap(src_tokens, out_tokens, np.asarray(weights)[: len(out_tokens)], title, path)


def evaluate_translation(tokenized: Path, model_dir: Path, metrics_path: Path, plots_dir: Path,
                         log_to_mlflow: bool = True, n_heatmaps: int = 4) -> dict:
    """Test split: BLEU/chrF of greedy and beam decoding against all references of each unique source."""
    from rnnlab.data.pairs import group_references
    from rnnlab.data.prepare import load_tokenized_pairs
    from rnnlab.data.tokenizer import detokenize
    from rnnlab.tracking.mlflow_utils import log_to_run
    from rnnlab.training.bleu import corpus_scores, sacrebleu_signature

    translator = load_translator(model_dir)
    summary = read_json(Path(model_dir) / "train_summary.json")
    dataset, tokenizers = load_tokenized_pairs(Path(tokenized))
    for side, model_tokenizer in (("source", translator.source_tokenizer), ("target", translator.target_tokenizer)):
        if tokenizers[side].get_vocab() != model_tokenizer.get_vocab():
            raise DataError(f"the {side} vocabulary of {tokenized} differs from the model's in {model_dir}: "
                            "the model was trained on other data; re-run the train stage")
    test = dataset["test"]
    _, first, references = group_references(test["source"], test["target"])
    keys = list(first)  # unique sources in file order
    all_source_ids, all_sources = test["source_ids"][:], test["source"][:]  # read once, not row by row
    source_ids = [all_source_ids[first[k]] for k in keys]
    refs = [references[k] for k in keys]
    beam = int(translator.decoding["beam"])
    results, seconds = {}, {}
    for name, size in (("greedy", 1), ("beam", beam)):
        start = time.perf_counter()
        ids, attention = translate_ids(translator, source_ids, size, return_attention=name == "greedy")
        seconds[name] = time.perf_counter() - start
        results[name] = ([detokenize(translator.target_tokenizer, x) for x in ids], ids, attention)
    metrics: dict = {"beam": beam}
    for name in ("greedy", "beam"):
        for metric, value in corpus_scores(results[name][0], refs).items():
            metrics[f"{metric}_{name}"] = value
    metrics.update(sources=len(keys), pairs=len(test), references_per_source=round(len(test) / len(keys), 3))
    details = dict(metrics, variant=summary["variant"], dataset=summary["dataset"],
                   sacrebleu=sacrebleu_signature(results['beam'][0], refs), note="corpus scores over unique test sources; "
                   "bleu/chrf use every reference of a source, *_first_reference only the first",
                   sentences_per_second={k: round(len(keys) / max(v, 1e-9), 1) for k, v in seconds.items()})
    with atomic_dir(plots_dir) as tmp:
        write_json(tmp / "details.json", details)
        with (tmp / "samples.jsonl").open("w", encoding="utf-8") as handle:
            for i, key in enumerate(keys):
                handle.write(json.dumps({"source": all_sources[first[key]], "references": refs[i],
                                         "greedy": results["greedy"][0][i], "beam": results["beam"][0][i]},
                                        ensure_ascii=False) + "\n")
        pictures = []
        if translator.model.attention_kind != "none":
            # the first few test sentences of 5-9 source tokens: readable heatmaps
            picks = [i for i, ids in enumerate(source_ids) if 5 <= len(ids) <= 9][:n_heatmaps]
            for n, i in enumerate(picks, start=1):
                path = tmp / f"attention_{n}.png"
                heatmap_for(translator, source_ids[i], results["greedy"][1][i], results["greedy"][2][i],
                            f"{summary['variant']}: {results['greedy'][0][i]}", path)
                pictures.append(path)
        if log_to_mlflow:
            run = summary["mlflow"]
            log_to_run(run["tracking_uri"], run["run_id"],
                       {f"test_{k}": v for k, v in metrics.items() if k.startswith(("bleu", "chrf"))},
                       [tmp / "samples.jsonl", tmp / "details.json", *pictures], "evaluation")
    write_json(metrics_path, metrics)
    return metrics
