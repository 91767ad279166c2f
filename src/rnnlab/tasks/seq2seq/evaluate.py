"""Using a trained sequence-to-sequence model: loading it, decoding new input, test-split evaluation
(sacreBLEU / chrF, greedy and beam), sample outputs and attention heatmaps."""

from __future__ import annotations

import json
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rnnlab.errors import DataError
from rnnlab.io import atomic_dir, load_weights, read_json, write_json


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
    from rnnlab.io import build_from_info, load_tokenizer, read_model_info
    from rnnlab.tasks.seq2seq.data import TOKENIZER_FILES
    from rnnlab.tasks.seq2seq.model import build_seq2seq

    model_dir = Path(model_dir)
    info = read_model_info(model_dir, ("family", "model", "src_vocab_size", "tgt_vocab_size", "embedding_dim"),
                           family="seq2seq")
    needed = ["model.pt", *TOKENIZER_FILES.values()]
    missing = [name for name in needed if not (model_dir / name).is_file()]
    if missing:
        raise DataError(f"{model_dir} is not a trained seq2seq model folder: {', '.join(missing)} missing")
    model = build_from_info(build_seq2seq, model_dir, info["model"], info["src_vocab_size"], info["tgt_vocab_size"],
                            src_embeddings=np.zeros((info["src_vocab_size"], info["embedding_dim"]), np.float32))
    load_weights(model_dir / "model.pt", model)
    tokenizers = {side: load_tokenizer(model_dir / name) for side, name in TOKENIZER_FILES.items()}
    return Translator(model.eval(), info, tokenizers["source"], tokenizers["target"])


def foreign_letters(text: str, script: str | None) -> list[str]:
    """Letters of `text` outside the Unicode script `script` (e.g. "LATIN"); none when script is None."""
    if not script:
        return []
    return [ch for ch in text if ch.isalpha() and not unicodedata.name(ch, "").startswith(script.upper())]


def prepare_input(translator: Translator, text: str) -> tuple[list[int], str | None]:
    """Source ids of one input for decoding, and a warning when it had to be truncated. Refused with a
    DataError: empty input, control characters, letters outside the data's source script, no known word."""
    from rnnlab.data.tokenizer import UNK_ID
    from rnnlab.predict import check_text

    text = check_text(text)
    data = translator.info["config"]["seq2seq"]["data"]
    language = (data.get("languages") or {}).get("source", "the source language")
    script = data.get("source_script")
    foreign = foreign_letters(text, script)
    if foreign:
        raise DataError(f"input {text[:40]!r} contains letters outside the {script.title()} script "
                        f"({''.join(foreign[:10])}); this model reads {language} in the {script.title()} script")
    ids = translator.source_tokenizer.encode(text, add_special_tokens=False).ids
    if not ids or all(i == UNK_ID for i in ids):
        raise DataError(f"none of the words of {text[:60]!r} is in the model's {language} vocabulary "
                        f"({translator.info['src_vocab_size']:,} words); rephrase with common {language} words")
    limit = int(translator.info["max_length"])
    if len(ids) > limit:
        return ids[:limit], (f"the input has {len(ids)} tokens; the model reads at most {limit}: "
                             f"using the first {limit} only")
    return ids, None


def unknown_policy(translator: Translator, override: str | None = None) -> str:
    """How `<unk>` is handled when decoding for a reader: the model's `decoding.unknown` (models trained before
    the setting existed: keep) or `override`. `copy` needs an alignment, i.e. attention; without attention
    it means forbid (both are documented in conf/model/seq2seq.yaml)."""
    policy = override or translator.decoding.get("unknown", "keep")
    return "forbid" if policy == "copy" and translator.model.attention_kind == "none" else policy


def source_words(translator: Translator, text: str) -> list[str]:
    """The words of `text` as written, one per source token: the tokenizer's offsets map each (lower-cased,
    normalised) token back to its span of the original text."""
    encoding = translator.source_tokenizer.encode(text, add_special_tokens=False)
    return [text[start:end] for start, end in encoding.offsets]


def unknown_replacements(output_ids: list[int], attention, words: list[str]) -> dict[int, str]:
    """Each `<unk>` of an output replaced by the source word its decoding step attended to most (Luong et al.
    2015, "Addressing the rare word problem in neural machine translation"): {output position: word}.
    attention: (output steps incl. <eos>, source tokens)."""
    from rnnlab.data.tokenizer import UNK_ID

    return {pos: words[int(np.asarray(attention[pos])[: len(words)].argmax())]
            for pos, token in enumerate(output_ids) if token == UNK_ID}


def translate(translator: Translator, sources: list[str], source_ids: list[list[int]], beam: int,
              unknown: str | None = None, return_attention: bool = False) -> tuple[list[str], list[list[int]], list]:
    """Decode and detokenise: (texts, output ids, attention per sentence or None). `unknown` (default: the
    model's decoding.unknown): keep `<unk>` | forbid it in decoding | copy the most-attended source word."""
    from rnnlab.data.tokenizer import detokenize

    policy = unknown_policy(translator, unknown)
    ids, attention = translate_ids(translator, source_ids, beam, return_attention=return_attention or policy == "copy",
                                   forbid_unknown=policy == "forbid")
    texts = []
    for text, out, weights in zip(sources, ids, attention):
        swaps = unknown_replacements(out, weights, source_words(translator, text)) if policy == "copy" else None
        texts.append(detokenize(translator.target_tokenizer, out, swaps))
    return texts, ids, attention


def translate_ids(translator: Translator, source_ids: list[list[int]], beam: int, batch_size: int = 64,
                  return_attention: bool = False, forbid_unknown: bool = False) -> tuple[list[list[int]], list]:
    """Decode every id sequence (batched by length); (output ids, attention per sentence or None)."""
    from rnnlab.data.batching import pad
    from rnnlab.data.tokenizer import BOS_ID, EOS_ID, UNK_ID
    from rnnlab.tasks.seq2seq.decoding import beam_search, greedy_decode

    d = translator.decoding
    banned = UNK_ID if forbid_unknown else None
    limits = dict(max_length=int(d["max_length"]), max_len_a=float(d["max_len_a"]), max_len_b=int(d["max_len_b"]))
    outputs: list = [None] * len(source_ids)
    attention: list = [None] * len(source_ids)
    order = np.argsort([len(s) for s in source_ids], kind="stable")
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        src = pad([source_ids[i] for i in index])  # (batch, src_len)
        lengths = torch.tensor([len(source_ids[i]) for i in index])
        if beam == 1:
            decoded = greedy_decode(translator.model, src, lengths, BOS_ID, EOS_ID,
                                    return_attention=return_attention, banned=banned, **limits)
        else:
            decoded = beam_search(translator.model, src, lengths, BOS_ID, EOS_ID, beam=beam,
                                  length_penalty=float(d["length_penalty"]), return_attention=return_attention,
                                  banned=banned, **limits)
        for row, i in enumerate(index):
            outputs[i] = decoded.tokens[row]
            if decoded.attention is not None:
                attention[i] = decoded.attention[row]
    return outputs, attention


def attention_heatmap(source_tokens: list[str], output_tokens: list[str], weights: np.ndarray,
                      title: str, path: Path) -> None:
    """weights: (output steps incl. <eos>, source tokens)."""
    from rnnlab.reporting.figures import new_figure, save_figure

    fig, ax = new_figure(0.55 * len(source_tokens) + 2.5, 0.45 * len(output_tokens) + 2)
    ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(source_tokens)), source_tokens, rotation=45, ha="right")
    ax.set_yticks(range(len(output_tokens)), output_tokens)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    ax.set_title(title, fontsize=9)
    save_figure(fig, path)


def heatmap_for(translator: Translator, source_ids: list[int], output_ids: list[int], weights, title: str,
                path: Path) -> None:
    src_tokens = [translator.source_tokenizer.id_to_token(i) for i in source_ids]
    out_tokens = [translator.target_tokenizer.id_to_token(i) for i in output_ids] + ["<eos>"]
    attention_heatmap(src_tokens, out_tokens, np.asarray(weights)[: len(out_tokens)], title, path)


@dataclass
class EvalSet:
    """The unique sources of one split, in file order, with every reference of each."""

    sources: list[str]
    source_ids: list[list[int]]
    references: list[list[str]]
    pairs: int

    @classmethod
    def from_split(cls, split) -> "EvalSet":
        from rnnlab.tasks.seq2seq.data import group_references

        # each column read once, not row by row
        all_ids, all_sources, all_targets = split["source_ids"][:], split["source"][:], split["target"][:]
        _, first, references = group_references(all_sources, all_targets)
        return cls([all_sources[row] for row in first.values()], [all_ids[row] for row in first.values()],
                   list(references.values()), len(all_sources))


def length_key(bucket: str) -> str:
    """A metric-name-safe bucket label: "4-6" -> "words_4_6"."""
    return "words_" + bucket.replace("-", "_")


def bleu_by_length(length_test, short: tuple[EvalSet, dict[str, list[str]]],
                   long: tuple[EvalSet, dict[str, list[str]]]) -> list[dict]:
    """BLEU per source-length bucket over the length view: the test sources shorter than
    length_test.min_words plus every long-split source. short/long: (set, {decoder: outputs})."""
    from rnnlab.tasks.seq2seq.bleu import corpus_scores
    from rnnlab.tasks.seq2seq.data import source_words

    members: dict[str, list[tuple]] = {bucket: [] for bucket in length_test.buckets()}
    for (part, outputs), keep in ((short, lambda w: w < length_test.min_words), (long, lambda w: True)):
        for i, (source, refs) in enumerate(zip(part.sources, part.references)):
            words = source_words(source)
            if keep(words):
                members.setdefault(length_test.bucket(words), []).append(
                    (refs, {name: texts[i] for name, texts in outputs.items()}))
    rows = []
    for bucket, items in members.items():
        row = {"bucket": bucket, "sources": len(items)}
        for name in ("greedy", "beam"):
            row[f"bleu_{name}"] = corpus_scores([out[name] for _, out in items], [r for r, _ in items])["bleu"] \
                if items else None
        rows.append(row)
    return rows


def evaluate(tokenized: Path, model_dir: Path, metrics_path: Path, plots_dir: Path,
             log_to_mlflow: bool = True, n_heatmaps: int = 4, unknown: str | None = None,
             length_test=None) -> dict:
    """Test split: BLEU/chrF of greedy and beam decoding against all references of each unique source, with the
    model's `<unk>` policy (or `unknown`); also the share of outputs that still hold `<unk>`. With
    `length_test` (a data.LengthTest): BLEU per source-length bucket over the test split's short sources and
    the held-out long split (long_* metrics: the long split alone)."""
    from rnnlab.data.tokenizer import UNK_ID
    from rnnlab.tasks.seq2seq.bleu import corpus_scores, sacrebleu_signature
    from rnnlab.tasks.seq2seq.data import LONG_SPLIT, load_tokenized_pairs
    from rnnlab.tracking.mlflow_utils import log_to_run

    translator = load_translator(model_dir)
    summary = read_json(Path(model_dir) / "train_summary.json")
    dataset, tokenizers = load_tokenized_pairs(Path(tokenized))
    for side, model_tokenizer in (("source", translator.source_tokenizer), ("target", translator.target_tokenizer)):
        if tokenizers[side].get_vocab() != model_tokenizer.get_vocab():
            raise DataError(f"the {side} vocabulary of {tokenized} differs from the model's in {model_dir}: "
                            "the model was trained on other data; re-run the train stage")
    if length_test is not None and LONG_SPLIT not in dataset:
        raise DataError(f"{tokenized} has no '{LONG_SPLIT}' split, which data.length_test needs; re-run the "
                        "download and tokenize stages (dvc repro), or set seq2seq.data.length_test=null")
    test = EvalSet.from_split(dataset["test"])
    sources, source_ids, refs = test.sources, test.source_ids, test.references
    beam = int(translator.decoding["beam"])
    policy = unknown_policy(translator, unknown)
    results, seconds = {}, {}
    for name, size in (("greedy", 1), ("beam", beam)):
        start = time.perf_counter()
        results[name] = translate(translator, sources, source_ids, size, policy, return_attention=name == "greedy")
        seconds[name] = time.perf_counter() - start
    metrics: dict = {"beam": beam}
    for name in ("greedy", "beam"):
        for metric, value in corpus_scores(results[name][0], refs).items():
            metrics[f"{metric}_{name}"] = value
        # outputs a reader sees with <unk> in them (copy replaces the token; a copied word is not <unk>)
        texts, ids = results[name][0], results[name][1]
        left = sum("<unk>" in text for text in texts) if policy != "keep" else sum(UNK_ID in x for x in ids)
        metrics[f"unk_share_{name}"] = round(left / max(len(ids), 1), 4)
    metrics.update(sources=len(sources), pairs=test.pairs, references_per_source=round(test.pairs / len(sources), 3))
    by_length, long_outputs = [], {}
    if length_test is not None:
        long = EvalSet.from_split(dataset[LONG_SPLIT])
        long_outputs = {name: translate(translator, long.sources, long.source_ids, size, policy)[0]
                        for name, size in (("greedy", 1), ("beam", beam))}
        for name, texts in long_outputs.items():
            metrics[f"long_bleu_{name}"] = corpus_scores(texts, long.references)["bleu"]
        metrics["long_sources"] = len(long.sources)
        by_length = bleu_by_length(length_test, (test, {k: v[0] for k, v in results.items()}), (long, long_outputs))
        for row in by_length:
            for name in ("greedy", "beam"):
                if row[f"bleu_{name}"] is not None:
                    metrics[f"bleu_{name}_{length_key(row['bucket'])}"] = row[f"bleu_{name}"]
    details = dict(metrics, variant=summary["variant"], dataset=summary["dataset"], unknown=policy,
                   sacrebleu=sacrebleu_signature(results['beam'][0], refs), note="corpus scores over unique test sources; "
                   "bleu/chrf use every reference of a source, *_first_reference only the first",
                   sentences_per_second={k: round(len(sources) / max(v, 1e-9), 1) for k, v in seconds.items()})
    if by_length:
        details["bleu_by_length"] = by_length
    with atomic_dir(plots_dir) as tmp:
        write_json(tmp / "details.json", details)
        _write_samples(tmp / "samples.jsonl", test, {k: v[0] for k, v in results.items()})
        files = [tmp / "samples.jsonl", tmp / "details.json"]
        if by_length:
            _write_samples(tmp / "samples_long.jsonl", long, long_outputs)
            with (tmp / "bleu_by_length.csv").open("w", encoding="utf-8") as handle:
                handle.write("bucket,sources,bleu_greedy,bleu_beam\n")
                for row in by_length:
                    handle.write(",".join("" if row[k] is None else str(row[k])
                                          for k in ("bucket", "sources", "bleu_greedy", "bleu_beam")) + "\n")
            files += [tmp / "samples_long.jsonl", tmp / "bleu_by_length.csv"]
        if translator.model.attention_kind != "none":
            # the first few test sentences of 5-9 source tokens: readable heatmaps
            picks = [i for i, ids in enumerate(source_ids) if 5 <= len(ids) <= 9][:n_heatmaps]
            for n, i in enumerate(picks, start=1):
                path = tmp / f"attention_{n}.png"
                heatmap_for(translator, source_ids[i], results["greedy"][1][i], results["greedy"][2][i],
                            f"{summary['variant']}: {results['greedy'][0][i]}", path)
                files.append(path)
        if log_to_mlflow:
            run = summary["mlflow"]
            log_to_run(run["tracking_uri"], run["run_id"],
                       {f"test_{k}": v for k, v in metrics.items() if k.startswith(("bleu", "chrf", "unk_share", "long_"))},
                       files, "evaluation")
    write_json(metrics_path, metrics)
    return metrics


def _write_samples(path: Path, part: EvalSet, outputs: dict[str, list[str]]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for i, source in enumerate(part.sources):
            handle.write(json.dumps({"source": source, "references": part.references[i],
                                     **{name: texts[i] for name, texts in outputs.items()}},
                                    ensure_ascii=False) + "\n")
